"""One scenario on the simulator and on a real QEMU 7.2, compared layer by layer.

:func:`compare` plays the scenario on :func:`labkit.run_scenario` with
``era="7.2"`` (QEMU 7.2's control plane: start / checkpoint / stop ignored
after failover) and on :func:`labkit.qemu.run_scenario`, then checks

* every dump, layer by layer (``secondary``, ``hidden``, ``active``,
  ``vm-view``): same bytes and same allocation per 512-byte sector (the zero
  flag is shown but, as in :class:`~labkit.layers.Layer` equality, not
  compared);
* every command's outcome: failed on one side only, or — for the control
  commands, whose messages the simulator copies from QEMU — failed with
  another message;
* the failed ``expect`` lines and ``vread`` checks, and the oracle's
  violations.

A trainee reads :meth:`Comparison.text`: per dump and layer ``same``, or the
first differing sectors with both values and the two block-map rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labkit.config import header_config
from labkit.errors import ConfigError
from labkit.lab import Lab
from labkit.lab import run_scenario as sim_run_scenario
from labkit.layers import SECTOR, Layer
from labkit.qemu._run import Outcome, QemuRun, configured_scenario, refuse_par
from labkit.qemu._run import run_scenario as qemu_run_scenario
from labkit.render import LEGEND, block_map
from labkit.scenario import Command, Scenario

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


@dataclass
class Comparison:
    """The result of :func:`compare`: both runs and their differences."""

    scenario: Scenario
    config: dict[str, Any]
    sim: Lab
    qemu: QemuRun
    differences: list[Difference]

    @property
    def agree(self) -> bool:
        """True when no difference was found."""
        return not self.differences

    @property
    def sim_dumps(self) -> list[tuple[str, dict[str, Layer | None]]]:
        return self.sim.dumps

    @property
    def qemu_dumps(self) -> list[tuple[str, dict[str, Layer | None]]]:
        return self.qemu.dumps

    def __repr__(self) -> str:
        verdict = "agree" if self.agree else f"{len(self.differences)} difference(s)"
        return f"<Comparison simulator vs QEMU {self.qemu.version}: {verdict}>"

    def text(self) -> str:
        """The comparison as deterministic text (no timings, pids or paths)."""
        cfg = self.config
        out = [
            f"simulator (era 7.2, design {self.sim.design}) vs QEMU {self.qemu.version}",
            f"size {cfg['size']}, block {cfg['block']}, hidden cluster {cfg['hidden_cluster']}, "
            f"active cluster {cfg['active_cluster']}, fill {cfg['fill']}",
            LEGEND,
        ]
        by_layer = {(d.dump, d.layer): d for d in self.differences
                    if d.kind in ("layer", "readable")}
        for i, (title, layers) in enumerate(self.sim.dumps, start=1):
            out.append(f"-- dump {i}: {title}")
            if i > len(self.qemu.dumps):
                out.append("   (no such dump on QEMU)")
                continue
            for name in layers:
                d = by_layer.get((i, name))
                if d is None:
                    out.append(f"   {name:<10} same")
                    continue
                out.append(f"   {name:<10} DIFFERENT: {_short(d)}")
                if d.rows:
                    out.extend("      " + line for line in d.rows.split("\n"))
        others = [d for d in self.differences if d.kind not in ("layer", "readable")]
        for d in others:
            out.append(f"DIFFERENT {d.kind}: {d}")
        notes = [("simulator", line) for line in self.sim.log] + \
                [("QEMU", line) for line in self.qemu.log]
        for who, line in notes:
            out.append(f"note ({who}): {line}")
        ndumps = len(self.sim.dumps)
        ncmds = len(self.qemu.outcomes)
        if self.agree:
            out.append(f"result: AGREE ({ndumps} dump(s) x {len(LAYERS)} layers, "
                       f"{ncmds} command(s))")
        else:
            out.append(f"result: DISAGREE ({len(self.differences)} difference(s))")
        return "\n".join(out)


def _short(d: Difference) -> str:
    if d.sectors is None:
        return f"simulator {d.sim}; QEMU {d.qemu}"
    s0, s1 = d.sectors
    return (f"sectors {s0}-{s1 - 1} (bytes {s0 * SECTOR:#x}-{s1 * SECTOR - 1:#x}) differ; "
            f"at sector {s0}: simulator {d.sim}, QEMU {d.qemu}")


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


def compare_outcomes(sim: list[Outcome], qemu: list[Outcome]) -> list[Difference]:
    """Commands that failed on one side only, or (control commands) with other messages."""
    out = []
    for s, q in zip(sim, qemu, strict=True):
        c: Command = s.command
        where = f"line {c.line}: {c.text} ({s.task})"
        if (s.error is None) != (q.error is None):
            out.append(Difference("outcome", where, _outcome(s), _outcome(q)))
        elif s.error is not None and q.error is not None:
            if c.op in ("pwrite", "vwrite", "vread"):
                if s.errno != q.errno:
                    out.append(Difference("outcome", where, _outcome(s), _outcome(q)))
            elif s.error != q.error:
                out.append(Difference("outcome", where, _outcome(s), _outcome(q)))
    return out


def _outcome(o: Outcome) -> str:
    return "succeeded" if o.error is None else f"failed: {o.error}"


def _one_sided(kind: str, sim: list[str], qemu: list[str]) -> list[Difference]:
    out = []
    for line in sim:
        if line not in qemu:
            out.append(Difference(kind, line, "reports it", "does not"))
    for line in qemu:
        if line not in sim:
            out.append(Difference(kind, line, "does not", "reports it"))
    return out


def compare(text: str | Scenario, *, size: int | str | None = None,
            block: int | str | None = None, hidden_cluster: int | str | None = None,
            active_cluster: int | str | None = None, fill: str | int | None = None,
            design: str | None = None, era: str | None = None,
            timeout: float = 10.0, qemu: str = "qemu-system-x86_64",
            order: str | None = None) -> Any:
    """Run a scenario on the simulator (``era="7.2"``) and on QEMU; compare.

    A sequential scenario gives a :class:`Comparison`.  A scenario with a
    ``par`` block is a race: every order QEMU can force on it is run on both
    (:func:`labkit.qemu.compare_races`, design "4.0" by default) and a
    :class:`~labkit.qemu.RaceComparison` is returned; ``order`` runs only the
    order with those words.  Both have ``agree`` and ``text()``.

    ``size``, ``block``, ``hidden_cluster``, ``active_cluster`` and ``fill``
    configure both (the simulator's defaults; the scenario's ``# config:``
    header applies under the keywords, as in :func:`labkit.run_scenario`);
    ``design`` is the simulator's read protection (without ``par`` it does not
    matter; default "2.8"); ``era`` (keyword or header) must be ``"7.2"``, the
    QEMU the kit checks against.  ``timeout`` and ``qemu`` are the QEMU
    session's.  Raises what :func:`labkit.qemu.run_scenario` raises.
    """
    source = text.text if isinstance(text, Scenario) else text
    if era is None:
        era = header_config(source).get("era", "7.2") if isinstance(source, str) else "7.2"
    if era != "7.2":
        raise ConfigError(f"era must be '7.2' for a comparison with QEMU 7.2, got {era!r}; "
                          f"docs/qemu-eras.md lists where the 2.8 era differs")
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    if scenario.has_par:
        from labkit.qemu._races import compare_races

        return compare_races(scenario, design=design or "4.0", order=order,
                             timeout=timeout, qemu=qemu, **config)
    if order is not None:
        raise ConfigError(f"order {order!r}: only a scenario with a par block has orders "
                          f"to force; this one is sequential")
    design = design or "2.8"
    refuse_par(scenario)
    sim = sim_run_scenario(scenario, design=design, era="7.2", **config)
    q = qemu_run_scenario(scenario, timeout=timeout, qemu=qemu, **config)
    differences: list[Difference] = []
    if len(sim.dumps) != len(q.dumps):
        differences.append(Difference("dumps", "number of dumps", str(len(sim.dumps)),
                                      str(len(q.dumps))))
    for i, ((title, sl), (_, ql)) in enumerate(zip(sim.dumps, q.dumps, strict=False), start=1):
        for name in LAYERS:
            d = compare_layers(i, title, name, sl.get(name), ql.get(name), config["block"])
            if d is not None:
                differences.append(d)
    # The interpreter records each command's outcome on both backends the same way.
    differences += compare_outcomes(sim.outcomes, q.outcomes)
    differences += _one_sided("expect", sim.expectation_failures, q.expectation_failures)
    differences += _one_sided("violation", [v.message for v in sim.violations()],
                              [v.message for v in q.violations()])
    return Comparison(scenario, dict(config, design=design, era="7.2"), sim, q, differences)


__all__ = ["Comparison", "Difference", "compare", "compare_layers", "compare_outcomes"]
