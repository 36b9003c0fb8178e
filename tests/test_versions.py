"""Which QEMU the kit compares with live: 7.2 and 8.0-8.2 (labelled), else the recorded run.

No real QEMU needed: a stand-in ``qemu-system-x86_64`` script answers
``--version`` and the QMP probe the way a QEMU of the given version would.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from labkit.qemu import _probe, _version
from labkit.qemu import qemu_available as available


def test_parse_version_reads_the_first_line() -> None:
    text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ..."
    assert _version.parse_version(text) == (7, 2, 22)
    assert _version.parse_version("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)") \
        == (8, 2, 2)
    assert _version.parse_version("QEMU emulator version 10.0") == (10, 0, 0)
    assert _version.parse_version("not qemu") is None


@pytest.mark.parametrize(("version", "live"), [
    ((7, 2, 0), True), ((7, 2, 22), True), ((8, 0, 0), True), ((8, 2, 2), True),
    ((7, 1, 0), False), ((9, 0, 0), False), ((10, 0, 2), False), (None, False),
])
def test_the_version_decides_live_or_recorded(version: tuple[int, int, int] | None, live: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_version.ANY_VERSION_ENV, raising=False)
    reason = _version.version_reason(version)
    assert (reason is None) is live
    if not live:
        assert reason is not None
        assert _version.format_version(version) in reason
        assert "recorded 7.2 comparison" in reason and _version.ANY_VERSION_ENV in reason


def test_any_version_runs_live_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_version.ANY_VERSION_ENV, "1")
    assert _version.version_reason((10, 0, 2)) is None
    assert _version.version_reason(None) is None


def test_label_names_the_qemu_and_says_when_it_was_not_checked() -> None:
    assert _version.version_label((7, 2, 22)) == "QEMU 7.2.22"
    assert _version.version_label((8, 2, 2)) == \
        "QEMU 8.2.2; the model was checked against QEMU 7.2"
    assert _version.version_label(None).startswith("QEMU of an unknown version;")
    assert _version.label_of("7.2.22") == "QEMU 7.2.22"
    assert _version.label_of("8.2.2") == "QEMU 8.2.2; the model was checked against QEMU 7.2"


def _fake_qemu(tmp_path: Path, version: str) -> str:
    """A qemu-system-x86_64 (and qemu-img beside it) answering like QEMU ``version``."""
    replies = [{"return": {}},
               {"return": [{"name": "xen-set-replication"}]},
               {"return": [{"meta-type": "enum", "values": ["qcow2", "replication"]}]},
               {"return": {}}]
    body = "\n".join(json.dumps(r) for r in replies)
    script = tmp_path / "qemu-system-x86_64"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "QEMU emulator version {version}"; exit 0; fi\n'
        f"cat >/dev/null\ncat <<'EOF'\n{body}\nEOF\n")
    img = tmp_path / "qemu-img"
    img.write_text("#!/bin/sh\nexit 0\n")
    for f in (script, img):
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(("version", "live"), [("7.2.5", True), ("8.2.2", True),
                                               ("9.2.0", False)])
def test_qemu_available_applies_the_rule(tmp_path: Path, version: str, live: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_version.ANY_VERSION_ENV, raising=False)
    qemu = _fake_qemu(tmp_path, version)
    reason = available(qemu)
    assert (reason is None) is live, reason
    if not live:
        assert f"QEMU {version} is not one the model was checked against" in str(reason)
        monkeypatch.setenv(_version.ANY_VERSION_ENV, "1")
        assert available(qemu) is None  # the probe's answer is cached, the rule is not
    assert _version.qemu_version(qemu) == tuple(int(x) for x in version.split("."))
    _probe._USABLE.discard(qemu)  # noqa: SLF001 (the stand-in leaves with tmp_path)
