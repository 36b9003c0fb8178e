"""What the two comparisons share: a difference, one layer's diff, the dumps' diff.

:mod:`labkit.qemu._compare` (a sequential scenario) and
:mod:`labkit.qemu._races` (each forced order of a ``par`` block) compare the
simulator's and QEMU's dumps layer by layer and the commands' outcomes the
same way; the primitives live here, below both, so that neither module
imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from labkit.layers import SECTOR, Layer
from labkit.oracle import Violation
from labkit.qemu._run import CommandOutcome
from labkit.render import block_map
from labkit.scenario import Command

LAYERS = ("secondary", "hidden", "active", "vm-view")
_PER_LINE = 32  # block_map's default


@dataclass(frozen=True)
class Difference:
    """One disagreement between the simulator and QEMU.

    ``kind`` is ``"layer"`` (a dump's layer differs), ``"readable"`` (a layer
    is readable on one side only), ``"dumps"`` (not as many dumps),
    ``"outcome"`` (a command failed differently), ``"expect"`` (an ``expect``
    or ``vread`` check failed on one side only) or ``"violation"`` (the oracle
    found a violation on one side only).  ``sim`` and ``qemu`` describe each
    side's value; for a layer, ``sectors`` is the first run ``[start, end)`` of
    differing 512-byte sectors and ``rows`` the block-map excerpt around it.
    """

    kind: str
    where: str
    sim: str
    qemu: str
    dump: int | None = None
    layer: str | None = None
    sectors: tuple[int, int] | None = None
    rows: str = field(default="", repr=False)

    def __str__(self) -> str:
        return f"{self.where}: simulator {self.sim}; QEMU {self.qemu}"


def _describe(layer: Layer, sector: int) -> str:
    """One sector's value: its allocation and its bytes."""
    if not layer.alloc[sector]:
        return "not allocated"
    data = np.frombuffer(layer.data, dtype=np.uint8)[sector * SECTOR:(sector + 1) * SECTOR]
    values = np.unique(data)
    zero = " (zero cluster)" if layer.zero[sector] else ""
    if values.size == 1:
        return f"allocated, all {int(values[0]):#04x}{zero}"
    shown = ", ".join(f"{int(v):#04x}" for v in values[:4])
    more = ", ..." if values.size > 4 else ""
    return f"allocated, mixed bytes {shown}{more}{zero}"


def _rows(name: str, sim: Layer | None, qemu: Layer | None, block: int, sector: int) -> str:
    """The block-map window (header, simulator row, QEMU row) around ``sector``, marked."""
    table = block_map({f"sim {name}": sim, f"qemu {name}": qemu}, block, per_line=_PER_LINE)
    lines = table.split("\n")
    first_block = sector * SECTOR // block
    window = first_block // _PER_LINE
    excerpt = lines[3 * window:3 * window + 3]
    width = max(18, len(f"qemu {name}") + 2)
    i = first_block - window * _PER_LINE
    col = width + (i // 4) * 9 + (i % 4) * 2
    excerpt.append(" " * col + f"^^ block {first_block}")
    return "\n".join(excerpt)


def compare_layers(dump: int, title: str, name: str, sim: Layer | None, qemu: Layer | None,
                   block: int) -> Difference | None:
    """The first difference between two dumps of one layer, or None when equal."""
    where = f"dump {dump} ({title}), {name}"
    if sim is None and qemu is None:
        return None
    if sim is None or qemu is None:
        def state(layer: Layer | None) -> str:
            return "cannot read it (EIO)" if layer is None else "reads it"
        return Difference("readable", where, state(sim), state(qemu), dump, name,
                          rows=_rows(name, sim, qemu, block, 0))
    s0 = sim.first_difference(qemu)
    if s0 is None:
        return None
    a = np.frombuffer(sim.data, dtype=np.uint8).reshape(-1, SECTOR)
    b = np.frombuffer(qemu.data, dtype=np.uint8).reshape(-1, SECTOR)
    diff = (a != b).any(axis=1) | (sim.alloc != qemu.alloc)
    same_after = np.flatnonzero(~diff[s0:])
    s1 = s0 + int(same_after[0]) if same_after.size else diff.size
    return Difference("layer", where, _describe(sim, s0), _describe(qemu, s0), dump, name,
                      (s0, s1), _rows(name, sim, qemu, block, s0))


#: The commands whose failures are compared by errno (their messages are each side's
#: own); a control command's message is QEMU's, which the simulator copies.
COLO_IO = ("pwrite", "vwrite", "vread")


def compare_outcomes(sim: list[CommandOutcome], qemu: list[CommandOutcome],
                     by_errno: Sequence[str] = COLO_IO,
                     by_message: bool = True) -> list[Difference]:
    """Commands that failed on one side only, or failed otherwise: the commands of
    ``by_errno`` with another errno, the others (``by_message``) with another message."""
    out = []
    for s, q in zip(sim, qemu, strict=True):
        c: Command = s.command
        if (s.error is None) != (q.error is None):
            differs = True
        elif s.error is None:
            differs = False
        elif c.op in by_errno:
            differs = s.errno != q.errno
        else:
            differs = by_message and s.error != q.error
        if differs:
            out.append(Difference("outcome", f"line {c.line}: {c.text} ({s.task})",
                                  _outcome(s), _outcome(q)))
    return out


def _outcome(o: CommandOutcome) -> str:
    return "succeeded" if o.error is None else f"failed: {o.error}"


def one_sided(kind: str, sim: list[str], qemu: list[str]) -> list[Difference]:
    out = []
    for line in sim:
        if line not in qemu:
            out.append(Difference(kind, line, "reports it", "does not"))
    for line in qemu:
        if line not in sim:
            out.append(Difference(kind, line, "does not", "reports it"))
    return out


def compare_dumps(sim: list[tuple[str, dict[str, Layer | None]]],
                  qemu: list[tuple[str, dict[str, Layer | None]]],
                  block: int, layers: Sequence[str] = LAYERS) -> list[Difference]:
    """How many dumps each side took, and each of ``layers`` of each dump that differs
    (COLO's :data:`LAYERS` by default; fleecing's are ``live``, ``fleece``, ``snapshot``)."""
    diffs = []
    if len(sim) != len(qemu):
        diffs.append(Difference("dumps", "number of dumps", str(len(sim)), str(len(qemu))))
    for i, ((title, sl), (_, ql)) in enumerate(zip(sim, qemu, strict=False), start=1):
        for name in layers:
            d = compare_layers(i, title, name, sl.get(name), ql.get(name), block)
            if d is not None:
                diffs.append(d)
    return diffs


class Run(Protocol):
    """What a comparison reads of a scenario's run, on either side (a lab after
    :func:`labkit.run_scenario`, a :class:`~labkit.qemu.QemuRun`)."""

    @property
    def dumps(self) -> Sequence[tuple[str, dict[str, Layer | None]]]: ...
    @property
    def outcomes(self) -> list[CommandOutcome]: ...
    @property
    def expectation_failures(self) -> list[str]: ...
    def violations(self) -> Sequence[Violation]: ...


def compare_runs(sim: Run, qemu: Run, block: int, layers: Sequence[str] = LAYERS,
                 by_errno: Sequence[str] = COLO_IO, by_message: bool = True) -> list[Difference]:
    """Two runs of one sequential scenario: their dumps (:func:`compare_dumps`), each
    command's outcome (:func:`compare_outcomes`), the failed checks and the oracle's
    violations found on one side only."""
    return (compare_dumps(list(sim.dumps), list(qemu.dumps), block, layers)
            + compare_outcomes(sim.outcomes, qemu.outcomes, by_errno, by_message)
            + one_sided("expect", sim.expectation_failures, qemu.expectation_failures)
            + one_sided("violation", [v.message for v in sim.violations()],
                        [v.message for v in qemu.violations()]))


__all__ = ["COLO_IO", "LAYERS", "Difference", "Run", "compare_dumps", "compare_layers",
           "compare_outcomes", "compare_runs", "one_sided"]
