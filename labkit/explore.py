"""Interleavings: exact replay, systematic exploration with reduction, shrinking.

A scenario with a ``par { ... }`` block has many interleavings: at every
scheduling point the kernel may run any runnable task.  This module answers
the questions a trainee asks about them:

* :func:`replay` — *show me that run again*: a schedule (the task names the
  scheduler picked, e.g. ``"start#1*3 vm-read#1 nbd-write#1*5 vm-read#1"``)
  names exactly one run; replaying it gives the same trace, byte for byte.
  A schedule that does not fit the scenario is rejected with
  :class:`~labkit.errors.ScheduleError` naming the position and the reason.
* :func:`explore` — *can it go wrong?*: run every interleaving, re-executing
  the scenario from the start each time (stateless model checking, as in
  Microsoft's CHESS and Rust's loom), and check each run with the oracle.
  A partial-order reduction (source-DPOR with sleep sets, see
  :mod:`labkit._explore_search`) runs only one interleaving of each class of
  equivalent ones — interleavings that differ only in the order of
  independent steps, say two VM reads, cannot differ in outcome.  The
  verdict is ``"violation"`` when a run broke the oracle, ``"safe"`` only
  when *every* interleaving was covered, else ``"unknown"``.
* shrinking — *show me the simplest way it goes wrong*: each violation's
  schedule is replaced by one with the fewest *preemptions* (switching away
  from a task that could have gone on) that still gives that violation.
  For the canonical conflicting read that is a single preemption: the VM
  read is interrupted after it found hidden unallocated, and the primary
  write runs to its end before the read reads the secondary disk.
* :func:`check_determinism` — the self-check every replay depends on.

Scenario files may carry a ``# config:`` header (see :mod:`labkit.scenarios`);
:func:`explore` and :func:`replay` apply it, explicit keywords winning.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import scenarios as _scenarios
from . import trace as _trace
from ._explore_search import (
    REDUCTIONS,
    NondeterminismError,
    RunRecord,
    Search,
    _discard,
    count_preemptions,
)
from .errors import Deadlock, ScheduleError, TraceFormatError
from .kernel import Event, Policy, Task
from .lab import Lab, build_secondary
from .scenario import Scenario, parse

DEFAULT_MAX_RUNS = 20_000
CONFIG_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "design", "fill", "era",
               "backup_cluster")
_TASK_KIND = {"pwrite": "nbd-write", "vwrite": "vm-write", "vread": "vm-read"}


# --- configuration ------------------------------------------------------------------------


def _config(text: str, config: dict[str, Any]) -> dict[str, Any]:
    for key in config:
        if key == "policy":
            raise ValueError("explore and replay choose the interleaving themselves: a 'policy' "
                             "cannot be given (use lk.run_scenario for a policy)")
        if key not in CONFIG_KEYS:
            raise TypeError(f"unknown configuration keyword {key!r}; allowed: "
                            f"{', '.join(CONFIG_KEYS)}")
    merged: dict[str, Any] = dict(_scenarios.config(text))
    merged.update(config)
    return merged


def _parse(text: str | Scenario, config: dict[str, Any]) -> tuple[str, Scenario, dict[str, Any]]:
    if isinstance(text, Scenario):
        text = text.text
    if not isinstance(text, str):
        raise TypeError(f"a scenario is its text (str), got {type(text).__name__}")
    cfg = _config(text, config)
    probe = build_secondary(**cfg)  # validates the configuration once
    return text, parse(text, block=probe.block, size=probe.size), cfg


def scenario_tasks(scenario: Scenario) -> list[str]:
    """Every task name the scenario can create, in the order they are spawned."""
    counters: dict[str, int] = {}
    names: list[str] = []
    for c in scenario.commands:
        if c.op in ("dump", "expect"):
            continue
        kind = _TASK_KIND.get(c.op, c.op)
        counters[kind] = counters.get(kind, 0) + 1
        names.append(f"{kind}#{counters[kind]}")
        if c.op == "failover":
            counters["commit"] = counters.get("commit", 0) + 1
            names.append(f"commit#{counters['commit']}")
    return names


# --- schedules and replay ----------------------------------------------------------------------


def parse_schedule(schedule: str | Sequence[str] | _trace.Recording) -> list[str]:
    """A schedule in any of its forms, as the list of task names.

    Accepted: the compact string (``"vm-read#1*2 nbd-write#1"``), a JSON list
    of names, a labkit trace file's JSON (:func:`labkit.trace.dumps`, e.g.
    :meth:`Counterexample.to_json`), a :class:`~labkit.trace.Recording`, or a
    list of names.
    """
    if isinstance(schedule, _trace.Recording):
        return list(schedule.schedule)
    if isinstance(schedule, str):
        stripped = schedule.strip()
        if stripped.startswith("{"):
            return list(_trace.loads(stripped).schedule)
        if stripped.startswith("["):
            try:
                names = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(f"schedule is not valid JSON: {exc}") from None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise TraceFormatError("a JSON schedule is a list of task names like "
                                       "[\"vm-read#1\", \"nbd-write#1\"]")
            return _trace.parse_schedule(" ".join(names)) if names else []
        return _trace.parse_schedule(stripped)
    if isinstance(schedule, Sequence) and all(isinstance(n, str) for n in schedule):
        return _trace.parse_schedule(" ".join(schedule)) if schedule else []
    raise TypeError(f"a schedule is a string, a list of task names or a trace recording, got "
                    f"{type(schedule).__name__}")


def schedule_json(schedule: Sequence[str]) -> str:
    """The JSON form of a bare schedule: a list of task names (see :func:`parse_schedule`)."""
    return json.dumps(list(schedule))


class _ReplayPolicy(Policy):
    """Follow a schedule exactly; explain any mismatch with the position and the reason."""

    def __init__(self, names: list[str], known: list[str]) -> None:
        self.names = names
        self.known = known
        self.enabled: list[tuple[str, ...]] = []

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        here = tuple(t.name for t in runnable)
        self.enabled.append(here)
        listing = ", ".join(here)
        if position >= len(self.names):
            raise ScheduleError(position, f"the schedule ends after {len(self.names)} choices but "
                                          f"tasks are still runnable ({listing}): it is too short "
                                          f"for this scenario")
        want = self.names[position]
        for task in runnable:
            if task.name == want:
                return task
        kernel = runnable[0].kernel if runnable else None
        existing = kernel.tasks.get(want) if kernel is not None else None
        if existing is not None and kernel is not None:
            # finished, blocked, or another task was just woken and runs at once
            why = kernel.why_not_runnable(want)
        elif want in self.known:
            why = (f"task {want!r} has not started yet: its scenario line runs after the "
                   f"current one")
        else:
            why = (f"unknown task {want!r}: this scenario's tasks are "
                   f"{', '.join(self.known) or '(none)'}")
        raise ScheduleError(position, f"{why}; runnable here: {listing}")


def _replay(scenario: Scenario, names: list[str], cfg: dict[str, Any]) -> tuple[Lab, _ReplayPolicy]:
    policy = _ReplayPolicy(names, scenario_tasks(scenario))
    lab = build_secondary(policy=policy, **cfg)
    try:
        lab.play(scenario)
    except BaseException:
        _discard(lab)
        raise
    done = len(lab.kernel.schedule)
    if done < len(names):
        raise ScheduleError(done, f"the run ended after {done} choices but the schedule has "
                                  f"{len(names)}: it is too long for this scenario (the first "
                                  f"extra choice is {names[done]!r})")
    return lab, policy


def replay(text: str | Scenario, schedule: str | Sequence[str] | _trace.Recording,
           **config: Any) -> Lab:
    """The exact run that ``schedule`` names: a lab that played ``text`` following it.

    ``schedule`` is any form :func:`parse_schedule` accepts; ``config`` the
    :func:`labkit.build_secondary` keywords (over the scenario's ``# config:``
    header).  Raises :class:`~labkit.errors.ScheduleError` (with ``position``
    and ``reason``) when the schedule names an unknown task, a task that is
    not runnable at that point, or is too short or too long; a run that ends
    in a deadlock raises :class:`~labkit.errors.Deadlock`, as the original did.
    """
    text, scenario, cfg = _parse(text, config)
    lab, _ = _replay(scenario, parse_schedule(schedule), cfg)
    return lab


def preemptions(text: str | Scenario, schedule: str | Sequence[str] | _trace.Recording,
                **config: Any) -> int:
    """How many preemptions ``schedule`` makes: switches away from a still-runnable task."""
    text, scenario, cfg = _parse(text, config)
    names = parse_schedule(schedule)
    _, policy = _replay(scenario, names, cfg)
    return count_preemptions(names, policy.enabled)


def _layers_digest(lab: Lab) -> str:
    h = hashlib.sha256()
    for name, layer in lab.layers().items():
        h.update(name.encode())
        if layer is None:
            h.update(b"-")
        else:
            h.update(layer.data)
            h.update(layer.alloc.tobytes())
    return h.hexdigest()


def check_determinism(text: str | Scenario,
                      schedule: str | Sequence[str] | _trace.Recording | None = None,
                      **config: Any) -> str:
    """Run a scenario twice with the same schedule and compare; return the trace digest.

    Without ``schedule`` the first run uses the default FIFO policy and the
    second replays the schedule it made.  A difference raises
    :class:`NondeterminismError` naming the first differing event (or the
    first differing layer after identical traces).  Everything replay and
    exploration promise rests on this: same scenario and same schedule, same
    run.
    """
    text, scenario, cfg = _parse(text, config)
    if schedule is None:
        first = build_secondary(**cfg)
        try:
            first.play(scenario)
        except Deadlock:
            pass
        names = list(first.kernel.schedule)
    else:
        names = parse_schedule(schedule)
        first = _replay_allowing_deadlock(scenario, names, cfg)
    second = _replay_allowing_deadlock(scenario, names, cfg)
    a, b = first.trace, second.trace
    da, db = _trace.digest(a), _trace.digest(b)
    if da != db:
        for i in range(max(len(a), len(b))):
            ea = a[i] if i < len(a) else None
            eb = b[i] if i < len(b) else None
            if ea != eb:
                raise NondeterminismError(
                    f"nondeterminism: the two runs' traces differ first at event {i}: "
                    f"{ea if ea is not None else '(end of trace)'} != "
                    f"{eb if eb is not None else '(end of trace)'}", i, ea, eb)
    if _layers_digest(first) != _layers_digest(second):
        la, lb = first.layers(), second.layers()
        name = next(n for n in la if (la[n] is None) != (lb[n] is None)
                    or (la[n] is not None and la[n] != lb[n]))
        raise NondeterminismError(f"nondeterminism: identical traces, but the final {name!r} "
                                  f"layers differ", len(a), la[name], lb[name])
    return da


def _replay_allowing_deadlock(scenario: Scenario, names: list[str], cfg: dict[str, Any]) -> Lab:
    policy = _ReplayPolicy(names, scenario_tasks(scenario))
    lab = build_secondary(policy=policy, **cfg)
    try:
        lab.play(scenario)
    except Deadlock:
        _discard(lab)
    except BaseException:
        _discard(lab)
        raise
    return lab


# --- exploration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counterexample:
    """A run that broke the oracle, shrunk to the fewest preemptions that still break it.

    ``kind`` is the oracle's (``conflicting-read``, ``failover``) or
    ``deadlock``; ``task`` the task that saw it; ``message`` the oracle's
    words.  ``schedule`` replays it (:func:`replay`); ``original_schedule``
    is the run the exploration first found.
    """

    kind: str
    task: str
    message: str
    schedule: tuple[str, ...]
    preemptions: int
    original_schedule: tuple[str, ...]
    original_preemptions: int
    trace: tuple[Event, ...] = field(repr=False)
    scenario: str = field(repr=False, default="")
    config: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def schedule_text(self) -> str:
        """The compact schedule string (task names with run-lengths)."""
        return _trace.format_schedule(self.schedule)

    def to_json(self) -> str:
        """The counterexample as a labkit trace file (replayable: :func:`replay` accepts it)."""
        meta = {"kind": self.kind, "task": self.task, "message": self.message,
                "preemptions": self.preemptions, "config": self.config,
                "scenario": self.scenario}
        return _trace.dumps(self.trace, self.schedule, meta)

    def replay(self) -> Lab:
        """Replay this counterexample's (shrunk) schedule."""
        return replay(self.scenario, self.schedule, **self.config)

    def __str__(self) -> str:
        return (f"{self.message}\n  schedule ({self.preemptions} preemption"
                f"{'s' if self.preemptions != 1 else ''}): {self.schedule_text}")


@dataclass
class Exploration:
    """What :func:`explore` found.

    ``runs`` executions were started; ``interleavings`` of them ran to the end
    (the others were cut short by sleep sets or the preemption bound);
    ``pruned`` choices were never run because the reduction showed them
    equivalent to explored ones; ``bounded`` were skipped by the preemption
    bound.  ``complete`` is True when every interleaving was covered.
    ``violations`` holds one shrunk :class:`Counterexample` per distinct
    (kind, task); ``violating_runs`` counts all runs that broke the oracle.
    """

    design: str
    reduction: str
    runs: int
    interleavings: int
    sleep_blocked: int
    pruned: int
    bounded: int
    complete: bool
    violations: list[Counterexample]
    violating_runs: int
    expectation_failures: list[str]
    outcomes: frozenset[str] | None
    seconds: float = field(compare=False)
    max_runs: int | None = None
    preemption_bound: int | None = None
    stopped_at_first: bool = False

    @property
    def verdict(self) -> str:
        """``"violation"`` if a run broke the oracle, ``"safe"`` if every interleaving was
        covered without one, else ``"unknown"`` (never "safe" on a partial search)."""
        if self.violations:
            return "violation"
        return "safe" if self.complete else "unknown"

    def summary(self) -> str:
        """A few deterministic lines: verdict, counts, the first counterexample."""
        why = ""
        if self.verdict == "unknown":
            if self.preemption_bound is not None and self.bounded:
                why = f" (preemption bound {self.preemption_bound} skipped {self.bounded} " \
                      f"choices)"
            else:
                why = f" (budget of {self.max_runs} runs spent before every interleaving was " \
                      f"covered)"
        lines = [f"design {self.design}: {self.verdict}{why}",
                 f"  runs {self.runs} (complete interleavings {self.interleavings}, cut short "
                 f"by sleep sets {self.sleep_blocked}), pruned choices {self.pruned}, "
                 f"reduction {self.reduction}"]
        for cx in self.violations:
            lines.append(f"  {cx.kind} in {cx.task}: {cx.message}")
            lines.append(f"  shrunk schedule ({cx.preemptions} preemption"
                         f"{'s' if cx.preemptions != 1 else ''}): {cx.schedule_text}")
        return "\n".join(lines)


def _signature_of(record: RunRecord) -> list[tuple[tuple[str, str], str]]:
    out: list[tuple[tuple[str, str], str]] = []
    for v in record.lab.violations():
        out.append(((v.kind, v.task), v.message))
    if record.deadlock is not None:
        out.append((("deadlock", ""), str(record.deadlock)))
    return out


def _outcome(record: RunRecord) -> str:
    lab = record.lab
    h = hashlib.sha256(_layers_digest(lab).encode())
    for name, task in sorted(lab.kernel.tasks.items()):
        h.update(f"{name}:{task.state}:".encode())
        if task.state == "done" and isinstance(task._result, bytes):
            h.update(task._result)
    for v in sorted((v.kind, v.task, v.offset, v.expected, v.got) for v in lab.violations()):
        h.update(repr(v).encode())
    if record.deadlock is not None:
        h.update(b"deadlock")
    return h.hexdigest()


def _check_options(reduction: str, max_runs: int | None, preemption_bound: int | None,
                   stop_at_first: bool, shrink: bool) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))} "
                         f"('none' is the naive baseline), got {reduction!r}")
    if max_runs is not None and (not isinstance(max_runs, int) or isinstance(max_runs, bool)
                                 or max_runs < 1):
        raise ValueError(f"max_runs must be a positive integer or None (no budget), got "
                         f"{max_runs!r}")
    if preemption_bound is not None and (not isinstance(preemption_bound, int)
                                         or isinstance(preemption_bound, bool)
                                         or preemption_bound < 0):
        raise ValueError(f"preemption_bound must be an integer ≥ 0 or None (unbounded), got "
                         f"{preemption_bound!r}")
    for name, value in (("stop_at_first", stop_at_first), ("shrink", shrink)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def explore(text: str | Scenario, *, max_runs: int | None = DEFAULT_MAX_RUNS,
            preemption_bound: int | None = None, stop_at_first: bool = False,
            reduction: str = "dpor", shrink: bool = True, outcomes: bool = False,
            **config: Any) -> Exploration:
    """Run the scenario's interleavings and check each with the oracle.

    ``config`` holds the :func:`labkit.build_secondary` keywords (``design``
    above all; the scenario's ``# config:`` header fills in the rest).
    ``reduction`` is ``"dpor"`` (source-DPOR with sleep sets, the default),
    ``"sleep"`` (sleep sets only) or ``"none"`` (every interleaving, the naive
    baseline).  ``max_runs`` bounds the executions (None: no bound);
    ``preemption_bound`` keeps only runs with at most that many preemptions,
    as CHESS's iterative context bounding does (then the exploration is not
    complete, and never "safe", once a choice was skipped; with a reduction
    the bounded search is a quick bug hunt, not a proof for the bound, since
    DPOR is not complete under bounding); ``stop_at_first`` stops at the
    first violating run;
    ``shrink`` minimises each counterexample's preemptions; ``outcomes``
    records a digest of every complete run's final state (layers, read
    results, violations), to compare reductions.

    What a trainee should notice: the reduced and the naive exploration reach
    the same verdict and the same set of outcomes, the reduced one with far
    fewer runs — interleavings that only reorder independent steps (two reads,
    requests on different clusters) cannot differ.
    """
    _check_options(reduction, max_runs, preemption_bound, stop_at_first, shrink)
    text, scenario, cfg = _parse(text, config)
    started = time.perf_counter()
    found: dict[tuple[str, str], tuple[str, RunRecord, list[Event]]] = {}
    expect: dict[str, None] = {}
    digests: set[str] = set()
    violating = 0

    def on_run(record: RunRecord) -> bool:
        nonlocal violating
        sig = _signature_of(record)
        for line in record.lab.expectation_failures:
            if len(expect) < 50:
                expect.setdefault(line, None)
        if outcomes:
            digests.add(_outcome(record))
        if not sig:
            return False
        violating += 1
        for key, message in sig:
            if key not in found and len(found) < 20:
                found[key] = (message, record, list(record.lab.trace))
        return stop_at_first

    search = Search(scenario, cfg, reduction=reduction, max_runs=max_runs,
                    preemption_bound=preemption_bound, on_run=on_run, build=build_secondary)
    search.run()
    counterexamples = []
    for (kind, task), (message, record, trace_) in found.items():
        original = list(record.schedule)
        original_pre = count_preemptions(original, record.enabled)
        best, best_pre, best_trace, best_msg = original, original_pre, trace_, message
        if shrink and original_pre > 0:
            shrunk = _shrink(scenario, cfg, (kind, task), original_pre)
            if shrunk is not None:
                best, best_pre, best_trace, best_msg = shrunk
        public_cfg = {k: v for k, v in cfg.items()}
        counterexamples.append(Counterexample(kind, task, best_msg, tuple(best), best_pre,
                                              tuple(original), original_pre, tuple(best_trace),
                                              text, public_cfg))
    return Exploration(
        design=cfg.get("design", "2.8"), reduction=reduction, runs=search.runs,
        interleavings=search.interleavings, sleep_blocked=search.sleep_blocked,
        pruned=search.pruned, bounded=search.bounded, complete=search.complete,
        violations=counterexamples, violating_runs=violating,
        expectation_failures=list(expect), outcomes=frozenset(digests) if outcomes else None,
        seconds=time.perf_counter() - started, max_runs=max_runs,
        preemption_bound=preemption_bound, stopped_at_first=search.stopped)


SHRINK_BUDGET = 4000


def _shrink(scenario: Scenario, cfg: dict[str, Any], key: tuple[str, str], upto: int,
            ) -> tuple[list[str], int, list[Event], str] | None:
    """The first run with the fewest preemptions (< ``upto``) showing violation ``key``.

    Iterative preemption bounding (CHESS): search every interleaving with at
    most 0, then 1, ... preemptions, naively (bounded search is complete for
    its bound only without reduction), and stop at the first hit.
    """
    budget = SHRINK_BUDGET
    for bound in range(upto):
        hit: list[tuple[list[str], int, list[Event], str]] = []

        def on_run(record: RunRecord, bound: int = bound,
                   hit: list[tuple[list[str], int, list[Event], str]] = hit) -> bool:
            for k, message in _signature_of(record):
                if k == key:
                    pre = count_preemptions(record.schedule, record.enabled)
                    hit.append((list(record.schedule), pre, list(record.lab.trace), message))
                    return True
            return False

        search = Search(scenario, cfg, reduction="none", max_runs=budget,
                        preemption_bound=bound, on_run=on_run, build=build_secondary)
        search.run()
        budget -= search.runs
        if hit:
            return hit[0]
        if budget <= 0:
            return None
    return None


__all__ = [
    "Counterexample",
    "Exploration",
    "NondeterminismError",
    "check_determinism",
    "explore",
    "parse_schedule",
    "preemptions",
    "replay",
    "scenario_tasks",
    "schedule_json",
]
