"""One lab configuration: its words, its bounds, and the one parser for keywords, headers and CLI.

A COLO secondary in labkit is set up by a handful of values — the disk size,
the table block, the two qcow2 cluster sizes (QEMU's ``cluster_size`` of the
hidden and active images), the read-protection ``design``, the control-plane
``era``, the secondary disk's ``fill`` and the (not-QEMU) ``backup_cluster``
override.  :class:`LabConfig` holds them, checked, as a frozen dataclass.

The same words reach labkit three ways, and this module is the only parser
of all three, so they mean the same everywhere:

* keywords of :func:`labkit.build_secondary` (``size="128K"`` or ``131072``);
* a scenario's ``# config: KEY=VALUE`` header lines (see :mod:`labkit.scenarios`);
* command-line options (``--size 128K``, ``--backup-cluster 4K``).

:func:`resolve` merges them: the scenario's header first, explicit values
over it.  Every refused value raises :class:`~labkit.errors.ConfigError`
(a bad value), :class:`~labkit.errors.ArgumentError` (a bad type) or
:class:`~labkit.errors.LimitError` (past a bound below) naming the key as the
user wrote it (``size``, ``--size``, ``# config: size`` on line 3) and what is
allowed.

Bounds (checked before anything is allocated):

=====================  =============================================================
``size``               a multiple of 512 bytes, at most :data:`MAX_SIZE` (1 GiB)
``block``              a multiple of 512 bytes, at most :data:`MAX_BLOCK` (1 MiB)
``*_cluster``          a power of two from 512 bytes to 2 MiB (qcow2's ``cluster_size``
                       rule, ``qcow2_update_options``/``validate_cluster_size``)
``backup_cluster``     the same rule: QEMU's backup cluster is
                       ``MAX(64 KiB, target cluster)`` (block/block-copy.c,
                       ``block_copy_calculate_cluster_size``), a qcow2
                       cluster size, so a power of two; the override only lets a
                       teaching disk go below 64 KiB
=====================  =============================================================

Sizes take the units of :data:`SIZE_FORMS`; ``b`` is one ``block`` — the
configured one for every key (``block="1K", size="8b", hidden_cluster="4b"`` is
an 8 KiB disk with 4 KiB hidden clusters), the default 4 KiB for ``block``
itself.  A numpy integer is read as the Python integer it holds.

What a trainee should notice: none of these is labkit's invention except
``backup_cluster`` and ``fill``; they are the knobs QEMU's own
``blockdev-add`` and ``qemu-img create -o cluster_size=`` turn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast, get_args

import numpy as np

from .errors import ArgumentError, ConfigError, LimitError
from .layers import SECTOR

Design = Literal["none", "2.8", "4.0"]
Era = Literal["2.8", "7.2"]
#: The graph a lab builds: the COLO secondary, or image fleecing (:mod:`labkit.fleecing`).
Graph = Literal["colo", "fleecing"]
#: Image fleecing's schemes, by the QEMU release that ran them (the ``design`` of a
#: fleecing lab): 2.12's backup ``sync=none`` with nothing serialising, 3.0's
#: serialising target writes (``f8d59dfb40``), 7.2's copy-before-write filter with
#: ``snapshot-access``.
FleecingScheme = Literal["2.12", "3.0", "7.2"]
FillName = Literal["index", "zero"]
Fill = FillName | int

DESIGNS: tuple[str, ...] = get_args(Design)
ERAS: tuple[str, ...] = get_args(Era)
FILLS: tuple[str, ...] = get_args(FillName)
GRAPHS: tuple[str, ...] = get_args(Graph)
FLEECING_SCHEMES: tuple[str, ...] = get_args(FleecingScheme)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MAX_SIZE = GiB
MAX_BLOCK = MiB
MIN_CLUSTER, MAX_CLUSTER = SECTOR, 2 * MiB

#: Every configuration key, in the order the CLI lists them.
CONFIG_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "design", "era", "fill",
               "backup_cluster", "graph")
#: The keys a scenario's ``# config:`` header may set (``design`` is chosen per run).
HEADER_KEYS = tuple(k for k in CONFIG_KEYS if k != "design")
SIZE_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "backup_cluster")

#: How a key is named to the user, per source: ``{key}`` is replaced.
SOURCES = {"keyword": "{key}", "cli": "--{dash}", "header": "'# config: {key}'"}

_SIZE = re.compile(r"0x(?P<hex>[0-9a-fA-F]+)|(?P<num>[0-9]+)(?P<unit>[KkMmGgsb]?)", re.ASCII)
_BYTE = re.compile(r"0x[0-9a-fA-F]+|[0-9]+", re.ASCII)
_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "s": SECTOR}
SIZE_FORMS = "4096, 4K, 1M, 0x1000, 3s (sectors) or 5b (blocks)"
BYTE_FORMS = "0x00-0xff or 0-255"
_MAX_TOKEN = 40  # longer than any sane size: refused before int() sees it


def size_token(token: str, block: int = 4096) -> int | None:
    """``4096``, ``4K``, ``1M``, ``0x1000``, ``3s``, ``5b`` → bytes; None if not a size.

    ASCII digits only: ``1_0``, ``0x_bb``, ``+5``, ``٤K`` or ``４K`` are not
    sizes (Python's ``int()`` would accept them).
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN:
        return None
    m = _SIZE.fullmatch(token)
    if m is None:
        return None
    if m["hex"] is not None:
        return int(m["hex"], 16)
    unit = m["unit"]
    return int(m["num"]) * (block if unit == "b" else _UNITS[unit.lower()])


def byte_token(token: str) -> int | None:
    """``0xbb`` or ``187`` → 187; None if not a byte 0-255 in ASCII digits."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _BYTE.fullmatch(token):
        return None
    value = int(token, 16) if token[:2] == "0x" else int(token, 10)
    return value if value <= 255 else None


def key_name(key: str, source: str = "keyword") -> str:
    """``size`` as the user wrote it: ``size``, ``--size`` or ``'# config: size'``."""
    return SOURCES.get(source, "{key}").format(key=key, dash=key.replace("_", "-"))


def _bad(key: str, source: str, allowed: str, value: object,
         error: type[ConfigError] | type[ArgumentError] = ConfigError) -> Exception:
    return error(f"{key_name(key, source)} must be {allowed}, got {value!r}")


def _as_size(key: str, value: object, source: str, block: int = 4096) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | str):
        raise _bad(key, source, f"a size like {SIZE_FORMS}", value, ArgumentError)
    if isinstance(value, np.integer):
        value = int(value)  # checked as the Python integer it holds
    if isinstance(value, str):
        parsed = size_token(value.strip(), block)
        if parsed is None:
            raise _bad(key, source, f"a size like {SIZE_FORMS}", value)
        return parsed
    return value


def _check_multiple(key: str, value: int, source: str, upto: int, raw: object) -> None:
    if value <= 0 or value % SECTOR:
        raise _bad(key, source, f"a positive multiple of {SECTOR} bytes", raw)
    if value > upto:
        raise LimitError(f"{key_name(key, source)} {raw!r} is {value} bytes, past labkit's "
                         f"bound of {upto} bytes ({upto // MiB} MiB)")


def _check_cluster(key: str, value: int, source: str, raw: object) -> None:
    if value < MIN_CLUSTER or value > MAX_CLUSTER or value & (value - 1):
        raise _bad(key, source, f"a power of two from {MIN_CLUSTER} bytes to 2M (qcow2's "
                                f"cluster_size rule)", raw)


def _as_choice(key: str, value: object, source: str, allowed: tuple[str, ...]) -> str:
    listing = ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        raise _bad(key, source, f"one of {listing} (a string)", value, ArgumentError)
    if value not in allowed:
        raise _bad(key, source, f"one of {listing}", value)
    return value


def check_choice(key: str, value: object, allowed: tuple[str, ...],
                 source: str = "keyword") -> str:
    """``value`` if it is one of ``allowed`` (else :class:`ConfigError`, or
    :class:`ArgumentError` for a non-string), naming ``key`` as ``source`` spells it:
    the one check of a configuration word, for a node built without a LabConfig too."""
    return _as_choice(key, value, source, allowed)


def _as_fill(value: object, source: str) -> Fill:
    allowed = "'index', 'zero' or a byte 0-255"
    if isinstance(value, bool) or not isinstance(value, int | np.integer | str):
        raise _bad("fill", source, allowed, value, ArgumentError)
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, str):
        if value in FILLS:
            return cast(FillName, value)
        byte = byte_token(value)
        if byte is None:
            raise _bad("fill", source, allowed, value)
        return byte
    if not 0 <= value <= 255:
        raise _bad("fill", source, allowed, value)
    return value


@dataclass(frozen=True)
class LabConfig:
    """A checked lab configuration, in bytes and words (see the module docstring).

    ``LabConfig()`` is :func:`labkit.build_secondary`'s default lab.  Build one
    from user input with :meth:`parse`; :meth:`replace` gives a checked copy
    with some values changed; :meth:`keywords` the ``build_secondary`` keywords.
    """

    size: int = MiB
    block: int = 4096
    hidden_cluster: int = 4096
    active_cluster: int = 4096
    design: Design | FleecingScheme = "2.8"
    era: Era = "2.8"
    fill: Fill = "index"
    backup_cluster: int | None = None
    graph: Graph = "colo"

    def __post_init__(self) -> None:
        checked = _checked(asdict(self), "keyword")
        for f in fields(self):
            object.__setattr__(self, f.name, checked[f.name])

    @classmethod
    def parse(cls, values: Mapping[str, object], source: str = "keyword",
              base: LabConfig | None = None) -> LabConfig:
        """A config from user values (strings or typed), over ``base`` (default: defaults).

        ``source`` says how keys are named in errors: ``"keyword"``, ``"cli"``
        or ``"header"``.  An unknown key is an :class:`ArgumentError` listing
        the allowed ones.
        """
        if not isinstance(values, Mapping):
            raise ArgumentError(f"LabConfig.parse needs a mapping of configuration keys to "
                                f"values, got {type(values).__name__}")
        if base is not None and not isinstance(base, LabConfig):
            raise ArgumentError(f"LabConfig.parse: base must be a LabConfig or None, got "
                                f"{type(base).__name__}")
        merged = asdict(base or cls())
        if "graph" in values and "design" not in values and values["graph"] != merged["graph"]:
            merged["design"] = None  # another graph, no design named: that graph's default
        for key, value in values.items():
            if not isinstance(key, str) or key not in CONFIG_KEYS:
                allowed = ", ".join(key_name(k, source) for k in CONFIG_KEYS)
                shown = key_name(key, source) if isinstance(key, str) else repr(key)
                raise ArgumentError(f"unknown configuration key {shown}; "
                                    f"allowed: {allowed}")
            merged[key] = value
        return cls(**_checked(merged, source))

    def replace(self, **values: object) -> LabConfig:
        """A checked copy with ``values`` changed (keyword spelling)."""
        return LabConfig.parse(values, "keyword", self)

    def keywords(self) -> dict[str, Any]:
        """The :func:`labkit.build_secondary` keywords (bytes and words)."""
        return asdict(self)

    @property
    def fill_values(self) -> range:
        """The byte values the initial ``fill`` puts on the disk: ``index`` block k holds
        ``0x10 + k % 0x70`` (only as many values as there are blocks), else one byte."""
        if self.fill == "index":
            return range(0x10, 0x10 + min(-(-self.size // self.block), 0x70))
        byte = 0 if self.fill == "zero" else int(self.fill)
        return range(byte, byte + 1)

    @property
    def effective_backup_cluster(self) -> int:
        """The backup cluster the job uses: the override, else ``MAX(64 KiB, hidden cluster)``."""
        return self.backup_cluster or max(64 * KiB, self.hidden_cluster)


def _checked(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Every value coerced and checked; errors name the key as ``source`` spells it."""
    out = dict(values)
    block = _as_size("block", values["block"], source)
    _check_multiple("block", block, source, MAX_BLOCK, values["block"])
    out["block"] = block
    size = _as_size("size", values["size"], source, block)
    _check_multiple("size", size, source, MAX_SIZE, values["size"])
    out["size"] = size
    for key in ("hidden_cluster", "active_cluster", "backup_cluster"):
        raw = values[key]
        if key == "backup_cluster" and (raw is None or raw == "none"):
            out[key] = None
            continue
        value = _as_size(key, raw, source, block)  # ``b`` is the configured block
        _check_cluster(key, value, source, raw)
        out[key] = value
    out["graph"] = _as_choice("graph", values.get("graph", "colo"), source, GRAPHS)
    design = values["design"]
    if design is None:  # see LabConfig.parse: the graph changed, no design was named
        design = "7.2" if out["graph"] == "fleecing" else "2.8"
    out["design"] = _as_choice("design", design, source, designs_for(out["graph"]))
    out["era"] = _as_choice("era", values["era"], source, ERAS)
    if out["graph"] == "fleecing":
        # The scheme is an era's: 2.12 and 3.0 hook the backup job in as 2.8 did (a
        # before-write notifier), 7.2 uses 7.2's copy-before-write filter.
        out["era"] = "7.2" if out["design"] == "7.2" else "2.8"
    out["fill"] = _as_fill(values["fill"], source)
    return out


def designs_for(graph: str) -> tuple[str, ...]:
    """The designs a graph's labs run: COLO's read protections, or fleecing's schemes."""
    return FLEECING_SCHEMES if graph == "fleecing" else DESIGNS


# --- scenario headers ----------------------------------------------------------------

_HEADER = re.compile(r"\s*#\s*(?P<what>config|verdict)\s*:(?P<rest>.*)")
_PAIR = re.compile(r"(?P<key>[A-Za-z0-9_.]+)=(?P<value>\S+)", re.ASCII)


def split_lines(text: str) -> list[str]:
    """A scenario's lines: split at ``\\n`` only (a ``\\r`` before it dropped), as an
    editor counts them.  ``str.splitlines`` also splits at ``\\x0b``, ``\\x0c``,
    ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029, which put error line numbers off."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def header_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, 'config'|'verdict', rest) in the scenario's leading comment block."""
    out = []
    for number, raw in enumerate(split_lines(text), start=1):
        stripped = raw.strip().lstrip("\ufeff")
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        m = _HEADER.fullmatch(raw.lstrip("\ufeff"))
        if m:
            out.append((number, m["what"], m["rest"].strip()))
    return out


def header_pairs(text: str, what: str = "config") -> dict[str, tuple[int, str]]:
    """``{key: (line, value)}`` of the ``# config:`` (or ``# verdict:``) lines; raw strings."""
    found: dict[str, tuple[int, str]] = {}
    for number, kind, rest in header_lines(text):
        if kind != what:
            continue
        for item in rest.split():
            m = _PAIR.fullmatch(item)
            if not m:
                raise ConfigError(f"scenario header line {number}: {item!r} in '# {what}:' is "
                                  f"not KEY=VALUE")
            key, value = m["key"], m["value"]
            if key in found:
                raise ConfigError(f"scenario header line {number}: {key!r} is given twice in "
                                  f"'# {what}:' lines")
            found[key] = (number, value)
    return found


def header_config(text: str) -> dict[str, str]:
    """The ``# config:`` values of a scenario, as written (keys checked, values not yet)."""
    out: dict[str, str] = {}
    for key, (number, value) in header_pairs(text, "config").items():
        if key not in HEADER_KEYS:
            raise ConfigError(f"scenario header line {number}: unknown config key {key!r}; "
                              f"allowed: {', '.join(HEADER_KEYS)} (the design is chosen per "
                              f"run, not in the file)")
        out[key] = value
    return out


def resolve(text: str | None = None, explicit: Mapping[str, object] | None = None,
            source: str = "keyword") -> LabConfig:
    """The configuration a run of ``text`` uses: its ``# config:`` header, then ``explicit``.

    Explicit values (keywords or CLI options; None means "not given") win over
    the header.  The header's values are checked with header wording, the
    explicit ones with ``source``'s.
    """
    cfg = LabConfig()
    if text is not None:
        header = header_config(text)
        if header:
            cfg = LabConfig.parse(header, "header", cfg)
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    return LabConfig.parse(given, source, cfg) if given else cfg


__all__ = [
    "CONFIG_KEYS",
    "DESIGNS",
    "ERAS",
    "FILLS",
    "FLEECING_SCHEMES",
    "GRAPHS",
    "HEADER_KEYS",
    "MAX_BLOCK",
    "MAX_CLUSTER",
    "MAX_SIZE",
    "Design",
    "Era",
    "Fill",
    "LabConfig",
    "byte_token",
    "check_choice",
    "designs_for",
    "header_config",
    "header_lines",
    "header_pairs",
    "key_name",
    "resolve",
    "size_token",
]
