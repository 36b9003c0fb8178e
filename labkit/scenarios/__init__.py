"""The shipped scenarios: plain scenario-language files, and the header convention they use.

Every ``*.scn`` file in this package is an ordinary scenario (see
:mod:`labkit.scenario`) that notebooks, tests and the CLI share.  Its leading
comment block may carry two machine-read lines:

``# config: KEY=VALUE ...``
    the :func:`labkit.build_secondary` keywords the scenario needs, e.g.
    ``# config: active_cluster=64K size=128K``.  Allowed keys:
    :data:`CONFIG_KEYS` (``design`` is not one: it is what an exploration
    compares).  :func:`labkit.explore`, :func:`labkit.replay`, ``labkit explore``
    and ``labkit replay`` read it; keywords given explicitly win over it.
``# verdict: DESIGN=VERDICT ...``
    what :func:`labkit.explore` finds for each read design, e.g.
    ``# verdict: none=violation 2.8=safe 4.0=safe`` (``tests/test_scenarios.py``
    checks every file against it).

Several ``config:`` / ``verdict:`` lines add up; a key given twice is an
error.  Only the comment lines before the first command count.

>>> from labkit import scenarios
>>> "canonical" in scenarios.names()
True
>>> scenarios.config(scenarios.load("partial-cluster-vm-write"))["active_cluster"]
'64K'
"""

from __future__ import annotations

import re
from importlib import resources

CONFIG_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "backup_cluster", "era",
               "fill")
DESIGN_NAMES = ("none", "2.8", "4.0")
VERDICTS = ("safe", "violation", "unknown")

_HEADER = re.compile(r"^\s*#\s*(?P<what>config|verdict)\s*:(?P<rest>.*)$")
_PAIR = re.compile(r"^(?P<key>[A-Za-z0-9_.]+)=(?P<value>\S+)$")


def names() -> list[str]:
    """The shipped scenarios' names (file names without ``.scn``), sorted."""
    return sorted(entry.name[:-4] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".scn"))


def load(name: str) -> str:
    """The text of the shipped scenario ``name`` (``"canonical"`` or ``"canonical.scn"``)."""
    if not isinstance(name, str):
        raise TypeError(f"a scenario name is a string, got {name!r}")
    stem = name[:-4] if name.endswith(".scn") else name
    available = names()
    if stem not in available:
        raise KeyError(f"no shipped scenario named {name!r}; available: {', '.join(available)}")
    return resources.files(__name__).joinpath(f"{stem}.scn").read_text(encoding="utf-8")


def _header_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, 'config'|'verdict', rest) for the leading comment block."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        m = _HEADER.match(raw)
        if m:
            out.append((number, m["what"], m["rest"].strip()))
    return out


def _pairs(text: str, what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, kind, rest in _header_lines(text):
        if kind != what:
            continue
        for item in rest.split():
            m = _PAIR.match(item)
            if not m:
                raise ValueError(f"scenario header line {number}: {item!r} in '# {what}:' is not "
                                 f"KEY=VALUE")
            key, value = m["key"], m["value"]
            if key in found:
                raise ValueError(f"scenario header line {number}: {key!r} is given twice in "
                                 f"'# {what}:' lines")
            found[key] = value
    return found


def config(text: str) -> dict[str, str | int]:
    """The ``# config:`` keywords of a scenario text (empty if it has none).

    Sizes stay strings (``"64K"``), as :func:`labkit.build_secondary` accepts
    them; ``fill`` becomes an int when it is a byte (``fill=0x00``).
    """
    raw = _pairs(text, "config")
    out: dict[str, str | int] = {}
    for key, value in raw.items():
        if key not in CONFIG_KEYS:
            raise ValueError(f"scenario header: unknown config key {key!r}; allowed: "
                             f"{', '.join(CONFIG_KEYS)} (the design is chosen per run, not in "
                             f"the file)")
        if key == "fill" and value not in ("index", "zero"):
            try:
                out[key] = int(value, 16) if value.lower().startswith("0x") else int(value)
            except ValueError:
                raise ValueError(f"scenario header: fill={value!r} must be 'index', 'zero' or "
                                 f"a byte") from None
        else:
            out[key] = value
    return out


def verdicts(text: str) -> dict[str, str]:
    """The ``# verdict:`` lines of a scenario text: ``{"none": "violation", ...}``."""
    raw = _pairs(text, "verdict")
    for design, verdict in raw.items():
        if design not in DESIGN_NAMES:
            raise ValueError(f"scenario header: unknown design {design!r} in '# verdict:'; "
                             f"allowed: {', '.join(DESIGN_NAMES)}")
        if verdict not in VERDICTS:
            raise ValueError(f"scenario header: verdict {verdict!r} for design {design} is not "
                             f"one of {', '.join(VERDICTS)}")
    return raw


__all__ = ["CONFIG_KEYS", "config", "load", "names", "verdicts"]
