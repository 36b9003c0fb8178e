"""Conformance of a race: the explorer's era-7.2 outcomes against what QEMU reached.

The explorer (:func:`labkit.explore.explore`, era 7.2, design "4.0") runs
every interleaving of a ``par`` block; the forced orders
(:func:`labkit.qemu.compare_races`) run the few QEMU 7.2 can force with
blkdebug breakpoints.  :func:`conformance` sets them side by side:

* an *outcome* is what a run lets a trainee see of the race: the bytes each
  ``par`` read returned (or that it failed), which ``par`` requests failed,
  and every dump of the layers, the final one included (each layer's bytes
  and allocation).  Which requests *blocked* is a property of a forced order
  (a request held at one place), not of a complete run, so it is compared
  per order by :func:`labkit.qemu.compare_races` and not here;
* *reached*: the explorer's outcomes that some forced order produced on
  QEMU;
* *impossible*: an outcome QEMU produced that no interleaving of the
  explorer produces -- QEMU doing what the simulator says cannot happen;
* each explorer outcome not reached is named with the preemptions its
  explorer run needs (where each preempted request was parked), so a reader
  sees why no forced order gets there (e.g. no blkdebug event exists at that
  place, or it needs two requests held at once).

What a trainee should notice: agreement of the forced orders is only as good
as the orders QEMU can force; the conformance says how much of the space of
outcomes that is.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import Deadlock
from labkit.explore import explore, replay
from labkit.layers import Layer
from labkit.qemu._diff import LAYERS
from labkit.qemu._pause import RaceScenario, SideResult

#: The explorer's budget for a conformance (runs); beyond it the explorer's set of
#: outcomes is partial and the conformance says so.
CONFORMANCE_MAX_RUNS = 20_000


def outcome_key(reads: dict[str, bytes | None], errors: Iterable[str],
                dumps: list[tuple[str, dict[str, Layer | None]]]) -> str:
    """A short digest of one run's race outcome (see the module docstring)."""
    h = hashlib.sha256()
    for name in sorted(reads):
        b = reads[name]
        h.update(f"read {name}\0".encode())
        h.update(b"failed" if b is None else b)
    h.update(("errors " + ",".join(sorted(errors)) + "\0").encode())
    for title, layers in dumps:
        h.update(f"dump {title}\0".encode())
        for name in LAYERS:
            lay = layers.get(name)
            h.update(f"{name}\0".encode())
            if lay is None:
                h.update(b"-")
            else:
                h.update(lay.data)
                h.update(lay.alloc.tobytes())
    return h.hexdigest()[:12]


def side_key(side: SideResult) -> str:
    """The outcome of one forced order on one backend."""
    return outcome_key(side.reads, side.errors, side.dumps)


@dataclass
class ExplorerOutcome:
    """One distinct outcome of the explorer, with the run that shows it."""

    key: str
    schedule: str
    summary: str  # the par reads and the final layers, in words
    preemptions: list[str]  # where each preempted request was parked, in words
    #: per preemption: does QEMU 7.2 have a blkdebug event at that place (a data read or
    #: write of the secondary disk's or hidden's image file)?
    pausable: list[bool] = field(default_factory=list)

    def why(self) -> str:
        """Why no forced order reaches this outcome, in words."""
        if not self.preemptions:
            return ("its run needs no preemption, yet no forced order produced it on QEMU "
                    "(the orders disagree: see them above)")
        where = "; ".join(self.preemptions)
        if not all(self.pausable):
            return (f"needs {where}: no pause point exists there (no blkdebug event fires "
                    f"at a qcow2 metadata step or inside active / colo-top)")
        if len(self.preemptions) > 1:
            return (f"needs {len(self.preemptions)} preemptions ({where}): a forced order "
                    f"holds one request at a time")
        return (f"needs {where}, then the others interleaved otherwise than one by one to "
                f"their end or block (how a forced order sends them)")


@dataclass
class Conformance:
    """What the forced orders on QEMU covered of the explorer's outcomes."""

    explorer: dict[str, ExplorerOutcome]
    complete: bool  # the explorer covered every interleaving
    reached: dict[str, list[str]] = field(default_factory=dict)  # key -> order words
    impossible: dict[str, list[str]] = field(default_factory=dict)  # QEMU only
    simulator_outside: dict[str, list[str]] = field(default_factory=dict)  # sanity

    @property
    def missing(self) -> list[ExplorerOutcome]:
        return [o for k, o in self.explorer.items() if k not in self.reached]

    def lines(self) -> list[str]:
        """Deterministic text: the counts, then each outcome not reached and why."""
        total = len(self.explorer)
        part = "" if self.complete else " (explorer budget spent: its set is partial)"
        out = [f"conformance: {len(self.reached)} of {total} explorer outcome(s) (era 7.2) "
               f"reached on QEMU{part}; {len(self.impossible)} QEMU outcome(s) the explorer "
               f"says are impossible"]
        for key, orders in sorted(self.impossible.items()):
            out.append(f"  IMPOSSIBLE on the simulator, reached on QEMU [{key}] by: "
                       + "; ".join(orders))
        for key, orders in sorted(self.simulator_outside.items()):
            out.append(f"  forced simulator outcome outside the explorer's set [{key}] by: "
                       + "; ".join(orders))
        for o in self.missing:
            out.append(f"  not reached [{o.key}] {o.summary}: {o.why()}; "
                       f"explorer schedule {o.schedule}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"explorer_outcomes": len(self.explorer), "complete": self.complete,
                "reached": len(self.reached), "impossible": sorted(self.impossible),
                "not_reached": [{"key": o.key, "summary": o.summary, "why": o.why(),
                                 "preemptions": o.preemptions, "schedule": o.schedule}
                                for o in self.missing]}


def _summary(rs: RaceScenario, reads: dict[str, bytes | None],
             dumps: list[tuple[str, dict[str, Layer | None]]]) -> str:
    parts = []
    for r in rs.requests:
        if r.name in reads:
            b = reads[r.name]
            parts.append(f"{r.name} read " + ("failed" if b is None else _bytes(b)))
    if dumps:
        final = dumps[-1][1]
        for name in ("secondary", "hidden", "active"):
            lay = final.get(name)
            if lay is not None:
                parts.append(f"{name} {int(lay.alloc.sum())} sector(s) allocated, "
                             f"sha {hashlib.sha256(lay.data).hexdigest()[:8]}")
    return ", ".join(parts)


def _bytes(b: bytes) -> str:
    values = sorted(set(b))
    shown = " ".join(f"{v:#04x}" for v in values[:4])
    return f"[{shown}{' ...' if len(values) > 4 else ''}]"


def _preemptions(lab: Any) -> list[tuple[str, bool]]:
    """Where the run switched away from a request that could have gone on, and whether
    QEMU has a blkdebug event there (``labkit.qemu._pause.PLACES``: the data I/O of
    the secondary disk and of hidden; active's are caught before hidden only)."""
    out = []
    segments: list[tuple[str, Any]] = []  # (task, last event of its run segment)
    current: str | None = None
    last: Any = None
    for e in lab.trace:
        if e.kind == "run":
            if current is not None:
                segments.append((current, last))
            current, last = e.task, None
        elif e.task == current:
            last = e
    if current is not None:
        segments.append((current, last))
    for (task, e), (nxt, _) in itertools.pairwise(segments):
        if nxt != task and e is not None and e.kind == "point":
            where = f"{e.node} {e.op}" + (f" [{e.offset:#x}+{e.length:#x}]" if e.length else "")
            words = f"{task} preempted at {where}{_in_parentheses(e.detail)}"
            pausable = e.node in ("secondary-disk", "hidden") and e.op in ("io-read", "io-write")
            out.append((words, pausable))
    return out


def explorer_outcomes(rs: RaceScenario, config: dict[str, Any], design: str = "4.0",
                      max_runs: int = CONFORMANCE_MAX_RUNS
                      ) -> tuple[dict[str, ExplorerOutcome], bool]:
    """Every distinct race outcome of the explorer (era 7.2), and whether it was complete."""
    text = rs.scenario.text
    cfg = dict(config, design=design, era="7.2")
    ex = explore(text, keep_runs=True, shrink=False, max_runs=max_runs, **cfg)
    seen: dict[str, ExplorerOutcome] = {}
    by_digest: dict[str, list[tuple[str, ...]]] = {}
    for run in ex.runs_detail or []:
        by_digest.setdefault(run.digest, []).append(run.schedule)
    names = {r.name: r for r in rs.requests}
    for schedules in by_digest.values():
        schedule = min(schedules, key=len)
        try:
            lab = replay(text, schedule, **cfg)
        except Deadlock:
            continue  # the explorer reports deadlocks itself; no QEMU outcome to match
        lab.dump("final layers")
        reads: dict[str, bytes | None] = {}
        errors = []
        for name, r in names.items():
            task = lab.kernel.tasks[name]
            if task.exception is not None:
                errors.append(name)
                if r.command.op == "vread":
                    reads[name] = None
            elif r.command.op == "vread":
                reads[name] = task.result
        dumps = list(lab.dumps)
        key = outcome_key(reads, errors, dumps)
        if key not in seen:
            pre = _preemptions(lab)
            seen[key] = ExplorerOutcome(key, " ".join(schedule), _summary(rs, reads, dumps),
                                        [w for w, _ in pre], [p for _, p in pre])
        lab.kernel.close()
    return seen, ex.complete


def conformance(rs: RaceScenario, config: dict[str, Any],
                orders: list[tuple[str, SideResult, SideResult]],
                design: str = "4.0") -> Conformance:
    """The forced orders' outcomes ``(words, simulator, qemu)`` against the explorer's."""
    outcomes, complete = explorer_outcomes(rs, config, design)
    c = Conformance(outcomes, complete)
    for words, sim, qem in orders:
        if qem.not_reached is None:
            k = side_key(qem)
            (c.reached if k in outcomes else c.impossible).setdefault(k, []).append(words)
        if sim.not_reached is None:
            k = side_key(sim)
            if k not in outcomes:
                c.simulator_outside.setdefault(k, []).append(words)
    return c


__all__ = ["CONFORMANCE_MAX_RUNS", "Conformance", "ExplorerOutcome", "conformance",
           "explorer_outcomes", "outcome_key", "side_key"]


def _in_parentheses(text: str) -> str:
    """`` (text)``, or nothing for an empty text: words only, nothing decided from them."""
    return f" ({text})" if text else ""

