"""The simulator against a real QEMU 7.2, scenario by scenario and layer by layer.

Every scenario in ``tests/qemu_scenarios/`` (its ``# config:`` line gives the
configuration) runs on the simulator with ``era="7.2"`` and on Debian's QEMU
7.2 (``qemu-system-x86``, ``qemu-utils``); the two must agree on every dump,
every layer, every command's outcome, and every ``expect`` line must hold on
both.  These tests are skipped without a usable QEMU, except under
``CI=true`` where that is a failure (``labkit.testing.need``).

Where QEMU 7.2 and the engine legitimately differ (``docs/qemu-eras.md``,
"What labkit compare checks"), a test below says so: the zero flag of the
secondary disk (QEMU's holes), not part of layer equality.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import labkit as lk
from labkit.cli import main
from labkit.errors import LabkitError, ScenarioError
from labkit.qemu import (
    BackendError,
    Comparison,
    NbdError,
    QemuError,
    QemuNotAvailable,
    QemuSecondary,
    compare,
    leftover_sessions,
    qemu_available,
    race_orders,
    run_scenario,
)
from labkit.testing import need

K = 1024
SCENARIOS = Path(__file__).parent / "qemu_scenarios"
FILES = sorted(SCENARIOS.glob("*.scn"))
INSTALL = "apt-get install qemu-system-x86 qemu-utils"


@pytest.fixture
def qemu() -> None:
    """Skip without a QEMU that has block replication (fail under CI=true)."""
    reason = qemu_available()
    need(reason is None, f"QEMU 7.2 with block replication ({reason})", INSTALL)


def config_of(text: str) -> dict[str, str]:
    """The ``# config: key=value ...`` line of a scenario file."""
    cfg: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"#\s*config:(.*)", line)
        if m:
            cfg.update(kv.split("=", 1) for kv in m.group(1).split())
    return cfg


def cli_args(cfg: dict[str, str]) -> list[str]:
    return [a for k, v in cfg.items() for a in (f"--{k.replace('_', '-')}", v)]


# -- every scenario agrees ---------------------------------------------------------


def test_at_least_twelve_scenarios() -> None:
    assert len(FILES) >= 12


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_agrees(qemu: None, path: Path) -> None:
    text = path.read_text()
    c = compare(text, **config_of(text))
    assert c.agree, c.text()
    # The scenarios' expect lines state QEMU's observed behaviour: they hold on both.
    assert c.sim.expectation_failures == [] and c.qemu.expectation_failures == []
    assert c.sim.violations() == [] and c.qemu.violations() == []
    assert len(c.qemu_dumps) == len(c.sim_dumps) >= 1
    assert c.qemu.version.startswith("7.2")


def random_scenario(seed: int) -> tuple[str, dict[str, object]]:
    """A seeded random sequential scenario and configuration (deterministic)."""
    import random

    rng = random.Random(seed)
    size = rng.choice([100 * K, 128 * K, 200 * K + 512, 384 * K])
    cfg: dict[str, object] = dict(
        size=size, block=rng.choice([K, 4 * K]),
        hidden_cluster=rng.choice([512, 4 * K, 64 * K, 128 * K, 256 * K]),
        active_cluster=rng.choice([512, 4 * K, 64 * K, 128 * K]),
        fill=rng.choice(["index", "index", "zero"]))
    lines = ["start"] if rng.random() < 0.85 else []
    ops = ["pwrite"] * 7 + ["vwrite"] * 5 + ["vread"] * 2 + ["checkpoint"] * 2 + \
        ["dump"] * 2 + ["failover", "stop", "start"]
    sectors = size // 512
    for _ in range(rng.randint(6, 16)):
        op = rng.choice(ops)
        if op in ("pwrite", "vwrite", "vread"):
            n = min(sectors, rng.choice([1, 2, 8, 16, 128, 130, rng.randint(1, 300)]))
            off = rng.randint(0, sectors - n)
            byte = rng.choice([0x80 + rng.randint(0, 0x7F)] * 5 + [0])
            lines.append(f"vread {off}s {n}s" if op == "vread" else f"{op} {off}s {n}s {byte:#04x}")
        else:
            lines.append(op)
    lines.append("dump end")
    return "\n".join(lines), cfg


@pytest.mark.parametrize("seed", range(8))
def test_random_scenario_agrees(qemu: None, seed: int) -> None:
    """Seeded random sequential scenarios (800 such agreed when this was written)."""
    text, cfg = random_scenario(seed)
    c = compare(text, **cfg)  # type: ignore[arg-type]
    assert c.agree, f"{cfg}\n{text}\n{c.text()}"


def test_outcomes_and_messages(qemu: None) -> None:
    """Errors QEMU returns are logged per command, in the simulator's words."""
    text = (SCENARIOS / "14-stop.scn").read_text()
    c = compare(text, **config_of(text))
    assert c.agree
    assert c.qemu.log == [
        "line 4: stop: stop#1 failed: Block replication is not running",
        "line 5: checkpoint: checkpoint#1 failed: Backup job was cancelled unexpectedly",
        "line 9: stop: stop#2 failed: Backup job was cancelled unexpectedly",
    ]
    assert c.qemu.log == c.sim.log
    assert c.qemu.state == c.sim.state == "done"
    errors = {o.task: o.error for o in c.qemu.outcomes if o.error}
    assert errors == {
        "stop#1": "Block replication is not running",
        "checkpoint#1": "Backup job was cancelled unexpectedly",
        "stop#2": "Backup job was cancelled unexpectedly",
    }

    text = (SCENARIOS / "01-start.scn").read_text()
    c = compare(text, **config_of(text))
    assert c.qemu.log == [
        "line 3: vread 0 4K: vm-read#1 failed: NBD read on export 'top' [0x0+0x1000]: "
        "Input/output error (EIO)",
        "line 10: start: start#2 failed: Block replication is running or done",
    ]
    assert c.qemu.outcomes[0].errno == c.sim.kernel.tasks["vm-read#1"].exception.errno
    assert c.qemu_dumps[0][1]["vm-view"] is None  # EIO before start, on both


def test_zero_flag_is_shown_but_not_compared(qemu: None) -> None:
    """A legitimate difference: QEMU's secondary disk has holes, the simulator's none.

    The primary's zeros go as NBD WRITE_ZEROES, which punch holes in
    ``secondary.raw``; ``base:allocation`` reports them as zero.  The
    simulator's raw disk only holds bytes.  Same data, same allocation —
    equal layers — but the tables show ``zz`` for QEMU and ``00`` for the
    simulator.  Hidden's zero clusters match.
    """
    text = (SCENARIOS / "12-zero-regions.scn").read_text()
    c = compare(text, **config_of(text))
    assert c.agree
    (_, sim), (_, q) = c.sim_dumps[0], c.qemu_dumps[0]
    s0, s1 = 64 * K // 512, 128 * K // 512
    assert q["secondary"].zero[s0:s1].sum() == (64 - 4) * 2  # all but 0xbb's 4K block
    assert not sim["secondary"].zero.any()
    assert np.array_equal(sim["hidden"].zero, q["hidden"].zero)
    assert q["hidden"].zero[s0:s1].all()


def test_zero_bytes_as_data_are_copied_as_data(qemu: None) -> None:
    """Which copies become zero clusters: block-copy decides by block status.

    With ``fill=0`` the secondary disk holds zero *bytes* (data, no holes).
    QEMU 7.2's block-copy (``block_copy_block_status``) copies them as data,
    and so does era 7.2's engine (2.8's ``backup_do_cow`` looked at the bytes:
    ``buffer_is_zero`` → zero clusters).
    """
    c = compare("start\npwrite 4K 4K 0xbb\ndump\n", size="192K", fill=0)
    assert c.agree, c.text()
    sim, q = c.sim_dumps[0][1]["hidden"], c.qemu_dumps[0][1]["hidden"]
    assert not sim.zero.any() and not q.zero.any()
    assert sim == q
    old = lk.run_scenario("start\npwrite 4K 4K 0xbb\n", size="192K", fill=0, era="2.8")
    assert old.hidden.layer().zero[:128].all()  # 2.8: by content


# -- the report --------------------------------------------------------------------


def test_text_is_deterministic(qemu: None) -> None:
    text = (SCENARIOS / "09-failover.scn").read_text()
    cfg = config_of(text)
    a, b = compare(text, **cfg), compare(text, **cfg)
    out = a.text()
    assert out == b.text()
    assert "result: AGREE" in out
    assert out.count(" same") == 3 * 4
    assert "/tmp" not in out and "pid" not in out and " ms" not in out
    assert isinstance(a, Comparison) and repr(a).endswith("agree>")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_cli_compare_agrees(qemu: None, capsys: pytest.CaptureFixture[str], path: Path) -> None:
    """``labkit compare FILE --size ... --hidden-cluster ...`` agrees: exit status 0."""
    rc = main(["compare", str(path), *cli_args(config_of(path.read_text()))])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "result: AGREE" in out and "DIFFERENT" not in out


def test_cli_run_backend_qemu(qemu: None, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    path = SCENARIOS / "09-failover.scn"
    args = cli_args(config_of(path.read_text()))
    assert main(["run", str(path), *args]) == 0
    sim_out = capsys.readouterr().out
    out_json = tmp_path / "q.json"
    assert main(["run", str(path), *args, "--backend", "qemu", "--json", str(out_json)]) == 0
    qemu_out = capsys.readouterr().out
    assert qemu_out == sim_out  # the same tables, block for block
    assert "secondary         1011cf13 14bbbc17" in qemu_out
    doc = out_json.read_text()
    assert '"backend": "qemu"' in doc and '"qemu_version": "7.2' in doc
    rc = main(["run", str(path), "--backend", "qemu", "--backup-cluster", "4K"])
    assert rc == 2
    assert "--backup-cluster is not QEMU" in capsys.readouterr().err


# -- a wrong engine is caught ------------------------------------------------------


def _copy_only_the_written_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the engine (era 7.2's copy-before-write filter): copy the written bytes,
    not whole clusters."""
    from labkit.block.copy_before_write import CopyBeforeWriteNode

    async def cbw_do_copy_before_write(self: CopyBeforeWriteNode, offset: int,
                                       nbytes: int) -> None:
        data = await self.bcs.source.co_preadv(offset, nbytes)
        await self.bcs.target.co_pwritev(offset, data)

    monkeypatch.setattr(CopyBeforeWriteNode, "cbw_do_copy_before_write",
                        cbw_do_copy_before_write)


def test_wrong_engine_is_caught(qemu: None, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _copy_only_the_written_bytes(monkeypatch)
    path = SCENARIOS / "02-straddle.scn"
    text = path.read_text()
    c = compare(text, **config_of(text))
    assert not c.agree
    first = c.differences[0]
    assert (first.kind, first.dump, first.layer) == ("layer", 1, "hidden")
    # The broken engine copied only [70K, 70.5K) into hidden's 4K cluster at 68K;
    # QEMU copied the whole chunk [64K, 128K).
    assert first.sectors == (128, 136)
    assert first.sim == "not allocated"
    assert first.qemu == "allocated, all 0x20"
    assert "sim hidden" in first.rows and "qemu hidden" in first.rows
    assert "^^ block 16" in first.rows
    text_out = c.text()
    assert "hidden     DIFFERENT: sectors 128-135" in text_out
    assert "result: DISAGREE" in text_out
    # The CLI exits 1.
    rc = main(["compare", str(path), *cli_args(config_of(text))])
    assert rc == 1
    assert "DIFFERENT" in capsys.readouterr().out


# -- robustness --------------------------------------------------------------------


def test_par_is_refused_before_qemu_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_qemu(*args: object, **kwargs: object) -> None:
        raise AssertionError("QEMU must not be launched for a par scenario")

    monkeypatch.setattr("labkit.qemu._run.QemuSecondary", no_qemu)
    text = "start\npwrite 0 4K 0xbb\npar {\n  pwrite 0 4K 0xbc\n  vread 0 4K\n}\n"
    for fn in (run_scenario,):  # compare() races a par block on QEMU (test_qemu_races.py)
        with pytest.raises(ScenarioError) as e:
            fn(text, size="128K")
        assert e.value.line == 3
        assert "scenario line 3" in str(e.value) and "par" in str(e.value)
        assert "one command at a time" in str(e.value)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="era must be '7.2'"):
        compare("start", era="2.8")
    with pytest.raises(ValueError, match="fill must be"):
        compare("start", fill="random")
    with pytest.raises(ScenarioError, match="past the end"):
        run_scenario("pwrite 128K 4K 0xbb", size="128K")


def test_compare_reads_the_config_header_under_its_keywords() -> None:
    # As lk.run_scenario: the header configures both sides, an explicit keyword wins.
    # (No QEMU needed: the scenario is parsed with the configuration before QEMU starts.)
    past = "start\nvread 200K 4K\n"
    with pytest.raises(ScenarioError, match="past the end of the 131072-byte disk"):
        compare("# config: size=128K\n" + past)
    with pytest.raises(ScenarioError, match="past the end of the 131072-byte disk"):
        compare("# config: size=1M\n" + past, size="128K")
    with pytest.raises(ValueError, match="era must be '7.2'.*got '2.8'"):
        compare("# config: era=2.8\nstart\n")
    race = "start\npar {\n  pwrite 200K 4K 0xbb\n  vread 0 4K\n}\n"
    with pytest.raises(ScenarioError, match="past the end of the 131072-byte disk"):
        race_orders("# config: size=128K\n" + race)
    assert race_orders("# config: size=128K\n" + race, size="1M")


def test_backend_error_is_a_labkit_error() -> None:
    assert issubclass(BackendError, LabkitError)
    assert issubclass(QemuError, LabkitError) and issubclass(QemuNotAvailable, LabkitError)
    assert issubclass(NbdError, OSError) and issubclass(NbdError, LabkitError)


def test_labkit_does_not_import_the_backend() -> None:
    code = "import labkit, labkit.cli, sys; print('labkit.qemu' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_missing_qemu_names_the_packages(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    scn = tmp_path / "s.scn"
    scn.write_text("start\n")
    rc = main(["compare", str(scn), "--qemu", str(tmp_path / "no-such-qemu")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "not found" in err and "qemu-system-x86 and qemu-utils" in err
    assert "Traceback" not in err
    with pytest.raises(QemuNotAvailable, match="qemu-system-x86 and qemu-utils"):
        run_scenario("start", qemu=str(tmp_path / "no-such-qemu"))


@pytest.mark.parametrize(("commands", "reason"), [
    ("[]", "no QMP command xen-set-replication"),
    ('[{"name": "xen-set-replication"}]', "no 'replication' block driver"),
])
def test_qemu_without_replication_names_the_packages(
        qemu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        commands: str, reason: str) -> None:
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{{\"return\": {commands}}}'\n")
    fake.chmod(0o755)
    scn = tmp_path / "s.scn"
    scn.write_text("start\n")
    rc = main(["compare", str(scn), "--qemu", str(fake)])
    err = capsys.readouterr().err
    assert rc == 2
    assert reason in err and "qemu-system-x86 and qemu-utils" in err
    assert "Traceback" not in err


def _tracked(monkeypatch: pytest.MonkeyPatch, method: str, action: str) -> list[QemuSecondary]:
    """Patch ``QemuSecondary.<method>`` to kill or stop QEMU first; collect the sessions."""
    seen: list[QemuSecondary] = []
    original = getattr(QemuSecondary, method)

    def patched(self: QemuSecondary, *args: object, **kwargs: object) -> object:
        seen.append(self)
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL if action == "kill" else signal.SIGSTOP)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QemuSecondary, method, patched)
    return seen


def _gone(q: QemuSecondary) -> None:
    pid, wd = q.pid, q.workdir
    assert q.closed and wd is not None and not wd.exists()
    assert pid is not None
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()
    assert leftover_sessions() == []


def test_qemu_killed_mid_scenario(qemu: None, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    seen = _tracked(monkeypatch, "checkpoint", "kill")
    path = SCENARIOS / "08-checkpoints.scn"
    with pytest.raises(QemuError) as e:
        compare(path.read_text(), size="256K")
    assert "xen-colo-do-checkpoint: QEMU died (killed by SIGKILL)" in str(e.value)
    assert "--- qemu.log is empty ---" in str(e.value) or "last lines of qemu.log" in str(e.value)
    _gone(seen[0])
    # The CLI: one message, exit 2, no traceback, nothing left behind.
    rc = main(["compare", str(path), "--size", "256K"])
    err = capsys.readouterr().err
    assert rc == 2 and "SIGKILL" in err and "Traceback" not in err
    _gone(seen[1])


def test_qemu_killed_during_a_dump(qemu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _tracked(monkeypatch, "dump_node", "kill")
    with pytest.raises(QemuError, match="SIGKILL"):
        run_scenario("start\npwrite 0 4K 0xbb\ndump\n", size="128K")
    _gone(seen[0])


def test_qemu_hung_times_out(qemu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _tracked(monkeypatch, "pwrite", "stop")
    t0 = time.monotonic()
    with pytest.raises(QemuError, match=r"did not answer within 0\.5 s") as e:
        run_scenario("start\npwrite 0 4K 0xbb\n", size="128K", timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert "qemu.log" in str(e.value)
    _gone(seen[0])


def test_qmp_error_carries_the_log_tail(qemu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A QMP error outside a command's outcome (here: a dump) raises with QEMU's log."""
    original = QemuSecondary.dump_node
    seen: list[QemuSecondary] = []

    def dump_node(self: QemuSecondary, node: str) -> object:
        seen.append(self)
        # A sparse read of 'top' before start: QEMU logs "Disconnect client".
        with pytest.raises(NbdError):
            self._nbd_io("top", "sparse read", lambda c: c.pread(0, 4096))
        return original(self, "no-such-node")

    monkeypatch.setattr(QemuSecondary, "dump_node", dump_node)
    with pytest.raises(QemuError) as e:
        run_scenario("dump\n", size="128K")
    assert e.value.command == "block-export-add"
    assert "no-such-node" in (e.value.desc or "")
    assert "last lines of qemu.log" in str(e.value) and "Disconnect client" in str(e.value)
    _gone(seen[0])


def test_fill_byte_and_zero(qemu: None) -> None:
    """fill="zero" is a sparse file; a byte fill is data; both as the simulator's."""
    for fill in ("zero", 0x42):
        c = compare("start\npwrite 4K 4K 0xbb\nvwrite 100K 1K 0xcc\ndump\nfailover\ndump\n",
                    size="192K", active_cluster="64K", fill=fill)
        assert c.agree, c.text()
    q = c.qemu_dumps[0][1]
    assert q["hidden"].data[:4096] == b"\x42" * 4096


# -- the engine fix found by comparing (sim only) -----------------------------------


def test_ignored_start_does_not_rearm_the_oracle() -> None:
    """era 7.2 ignores start after stop; the oracle must not check reads again.

    Before the fix, ``Lab.start`` told the oracle "started" after an ignored
    start, so a read of the primary's later write (which replication, stopped,
    no longer hides) was flagged as a conflicting read.
    """
    text = "start\nstop\nstart\ncheckpoint\npwrite 30b 1b 0xb9\nvread 30b 1b 0xb9\n"
    for era in ("2.8", "7.2"):
        lab = lk.run_scenario(text, size="128K", era=era)
        assert lab.violations() == []
        assert lab.expectation_failures == []
