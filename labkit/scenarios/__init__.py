"""The shipped scenarios: plain scenario-language files, and the header convention they use.

Every ``*.scn`` file in this package is an ordinary scenario (see
:mod:`labkit.scenario`) that notebooks, tests and the CLI share.  Its leading
comment block may carry two machine-read lines:

``# config: KEY=VALUE ...``
    the :func:`labkit.build_secondary` keywords the scenario needs, e.g.
    ``# config: active_cluster=64K size=128K``.  Allowed keys:
    :data:`HEADER_KEYS` (``design`` is not one: it is what an exploration
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

from importlib import resources

from labkit.config import (
    DESIGNS,
    FLEECING_SCHEMES,
    HEADER_KEYS,
    LabConfig,
    header_config,
    header_pairs,
)
from labkit.errors import ArgumentError, ConfigError, UnknownScenario

DESIGN_NAMES = DESIGNS + FLEECING_SCHEMES  # COLO's designs and fleecing's schemes

VERDICTS = ("safe", "violation", "unknown")


def names() -> list[str]:
    """The shipped scenarios' names (file names without ``.scn``), sorted."""
    return sorted(entry.name[:-4] for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".scn"))


def load(name: str) -> str:
    """The text of the shipped scenario ``name`` (``"canonical"`` or ``"canonical.scn"``)."""
    if not isinstance(name, str):
        raise ArgumentError(f"a scenario name is a string, got {name!r}")
    stem = name[:-4] if name.endswith(".scn") else name
    available = names()
    if stem not in available:
        raise UnknownScenario(f"no shipped scenario named {name!r}; available: "
                              f"{', '.join(available)}")
    return resources.files(__name__).joinpath(f"{stem}.scn").read_text(encoding="utf-8")


def config(text: str) -> dict[str, str | int]:
    """The ``# config:`` keywords of a scenario text (empty if it has none).

    Parsed by :mod:`labkit.config` (the one parser of configuration words) and
    checked there; sizes stay strings (``"64K"``), as written, and ``fill``
    becomes an int when it is a byte (``fill=0x00``).
    """
    if not isinstance(text, str):
        raise ArgumentError(f"scenarios.config needs a scenario's text (str), got "
                            f"{type(text).__name__}")
    raw = header_config(text)
    out: dict[str, str | int] = dict(raw)
    if raw:
        checked = LabConfig.parse(raw, "header")
        if "fill" in raw:
            out["fill"] = checked.fill
    return out


def verdicts(text: str) -> dict[str, str]:
    """The ``# verdict:`` lines of a scenario text: ``{"none": "violation", ...}``."""
    raw = {design: value for design, (_, value) in header_pairs(text, "verdict").items()}
    for design, verdict in raw.items():
        if design not in DESIGN_NAMES:
            raise ConfigError(f"scenario header: unknown design {design!r} in '# verdict:'; "
                             f"allowed: {', '.join(DESIGN_NAMES)}")
        if verdict not in VERDICTS:
            raise ConfigError(f"scenario header: verdict {verdict!r} for design {design} is not "
                             f"one of {', '.join(VERDICTS)}")
    return raw


__all__ = ["HEADER_KEYS", "config", "load", "names", "verdicts"]
