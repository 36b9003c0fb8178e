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
  :mod:`labkit.explore._search`) runs only one interleaving of each class of
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
* outcomes — ``explore(..., keep_runs=True)`` hands back every complete
  run's schedule and outcome digest (:class:`ExploredRun`), so anyone can
  check a reduction against the naive exploration (``reduction="none"``)
  through the public API.

Scenario files may carry a ``# config:`` header (see :mod:`labkit.scenarios`);
:func:`explore` and :func:`replay` apply it, explicit keywords winning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import trace as _trace
from ..config import CONFIG_KEYS, LabConfig
from ..errors import ArgumentError, ConfigError, NondeterminismError
from ..kernel import Event
from ..lab import Lab, build_lab
from ..scenario import Scenario
from ._outcome import outcome_digest
from ._replay import (
    check_determinism,
    parse_schedule,
    preemptions,
    prepare,
    replay,
    replay_lab,
    scenario_tasks,
)
from ._search import REDUCTIONS, RunRecord, Search, count_preemptions, is_preemption
from ._shrink import SHRINK_BUDGET, shrink, signature

DEFAULT_MAX_RUNS = 20_000
MAX_COUNTEREXAMPLES = 20  # distinct (kind, task) violations kept, each shrunk
MAX_EXPECTATION_LINES = 50


def schedule_json(schedule: list[str] | tuple[str, ...]) -> str:
    """The JSON form of a bare schedule: a list of task names (see :func:`parse_schedule`)."""
    import json

    return json.dumps(list(schedule))


@dataclass(frozen=True)
class Counterexample:
    """A run that broke the oracle, shrunk to the fewest preemptions that still break it.

    ``kind`` is the oracle's (``conflicting-read``, ``failover``) or
    ``deadlock``; ``task`` the task that saw it; ``message`` the oracle's
    words.  ``schedule`` replays it (:func:`replay`); ``original_schedule``
    is the run the exploration first found; ``shrunk`` says whether shrinking
    ran and found a simpler schedule.  ``scenario`` and ``config`` are what
    it needs to replay by itself (:meth:`to_json` stores them).
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
    config: LabConfig = field(repr=False, default_factory=LabConfig)
    shrunk: bool = False

    @property
    def schedule_text(self) -> str:
        """The compact schedule string (task names with run-lengths)."""
        return _trace.format_schedule(self.schedule)

    @property
    def schedule_label(self) -> str:
        """``"shrunk schedule (N preemptions)"``, or ``"schedule (...)"`` when not shrunk."""
        plural = "s" if self.preemptions != 1 else ""
        what = "shrunk schedule" if self.shrunk else "schedule"
        return f"{what} ({self.preemptions} preemption{plural})"

    def to_json(self) -> str:
        """The counterexample as a labkit trace file: it stores the scenario and the
        configuration, so ``lk.replay(None, text)`` replays it by itself."""
        meta = {"kind": self.kind, "task": self.task, "message": self.message,
                "preemptions": self.preemptions, "config": self.config.keywords(),
                "scenario": self.scenario}
        return _trace.dumps(self.trace, self.schedule, meta)

    def replay(self) -> Lab:
        """Replay this counterexample's schedule (with its own scenario and configuration)."""
        return replay(self.scenario, self.schedule, **self.config.keywords())

    def __str__(self) -> str:
        return f"{self.message}\n  {self.schedule_label}: {self.schedule_text}"


@dataclass(frozen=True)
class ExploredRun:
    """One complete run of an exploration: its schedule and its outcome digest.

    ``digest`` covers everything the run lets a user observe (see
    :func:`labkit.explore._outcome.outcome_digest`): two runs with equal
    digests cannot be told apart.  ``violations`` are the (kind, task) pairs
    it broke the oracle with.
    """

    schedule: tuple[str, ...]
    digest: str
    violations: tuple[tuple[str, str], ...]

    @property
    def schedule_text(self) -> str:
        return _trace.format_schedule(self.schedule)


@dataclass
class Exploration:
    """What :func:`explore` found.

    ``runs`` executions were started; ``interleavings`` of them ran to the end
    (the others were cut short by sleep sets or the preemption bound);
    ``pruned`` choices were never run because the reduction showed them
    equivalent to explored ones; ``bounded`` were skipped by the preemption
    bound.  ``complete`` is True when every interleaving was covered.
    ``violations`` holds one shrunk :class:`Counterexample` per distinct
    (kind, task); ``violating_runs`` counts all runs that broke the oracle;
    ``shrink_runs`` the runs shrinking made (within ``max_runs`` with
    ``runs``).  ``outcomes`` is the set of outcome digests of the complete
    runs (with ``outcomes=True`` or ``keep_runs=True``), ``runs_detail`` each
    complete run's :class:`ExploredRun` (with ``keep_runs=True``).
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
    shrink_runs: int = 0
    runs_detail: list[ExploredRun] | None = field(default=None, repr=False)

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
            lines.append(f"  {cx.schedule_label}: {cx.schedule_text}")
        return "\n".join(lines)


def _check_count(name: str, value: Any, low: int, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgumentError(f"{name} must be {what}, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _check_options(reduction: Any, max_runs: Any, preemption_bound: Any,
                   flags: dict[str, Any]) -> None:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))} "
                          f"('none' is the naive baseline), got {reduction!r}")
    _check_count("max_runs", max_runs, 1, "a positive integer or None (no budget)")
    _check_count("preemption_bound", preemption_bound, 0, "an integer ≥ 0 or None (unbounded)")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")


class _Collector:
    """What explore keeps of each complete run (on_run of the Search)."""

    def __init__(self, stop_at_first: bool, digests: bool, keep_runs: bool) -> None:
        self.stop_at_first = stop_at_first
        self.digests = digests or keep_runs
        self.keep_runs = keep_runs
        self.found: dict[tuple[str, str], tuple[str, RunRecord]] = {}
        self.expect: dict[str, None] = {}
        self.outcomes: set[str] = set()
        self.runs: list[ExploredRun] = []
        self.violating = 0

    def __call__(self, record: RunRecord) -> bool:
        sig = signature(record)
        for line in record.lab.expectation_failures:
            if len(self.expect) < MAX_EXPECTATION_LINES:
                self.expect.setdefault(line, None)
        if self.digests:
            digest = outcome_digest(record.lab, record.deadlock)
            self.outcomes.add(digest)
            if self.keep_runs:
                self.runs.append(ExploredRun(tuple(record.schedule), digest,
                                            tuple(k for k, _ in sig)))
        if not sig:
            return False
        self.violating += 1
        for key, message in sig:
            if key not in self.found and len(self.found) < MAX_COUNTEREXAMPLES:
                self.found[key] = (message, record)
        return self.stop_at_first


def _counterexamples(found: dict[tuple[str, str], tuple[str, RunRecord]], scenario: Scenario,
                     text: str, cfg: LabConfig, shrinking: bool,
                     budget: int) -> tuple[list[Counterexample], int]:
    out = []
    spent = 0
    for (kind, task), (message, record) in found.items():
        original = list(record.schedule)
        original_pre = count_preemptions(original, record.enabled)
        best, best_pre, best_msg = original, original_pre, message
        shrunk = shrinking and original_pre == 0  # no preemption: nothing simpler exists
        if shrinking and original_pre > 0 and budget - spent > 0:
            result, used, shrunk = shrink(scenario, cfg, (kind, task), original_pre,
                                          min(SHRINK_BUDGET, budget - spent), build_lab)
            spent += used
            if result is not None:
                best, best_pre, best_msg = result.schedule, result.preemptions, result.message
        # The exploration ran without a trace: replaying the schedule makes it (same run).
        lab, _ = replay_lab(scenario, best, cfg, allow_deadlock=True)
        out.append(Counterexample(kind, task, best_msg, tuple(best), best_pre, tuple(original),
                                  original_pre, tuple(lab.trace), text, cfg, shrunk))
    return out, spent


def explore(text: str | Scenario, *, max_runs: int | None = DEFAULT_MAX_RUNS,
            preemption_bound: int | None = None, stop_at_first: bool = False,
            reduction: str = "dpor", shrink: bool = True, outcomes: bool = False,
            keep_runs: bool = False, **config: Any) -> Exploration:
    """Run the scenario's interleavings and check each with the oracle.

    ``config`` holds the :func:`labkit.build_secondary` keywords (``design``
    above all; the scenario's ``# config:`` header fills in the rest).
    ``reduction`` is ``"dpor"`` (source-DPOR with sleep sets, the default),
    ``"sleep"`` (sleep sets only) or ``"none"`` (every interleaving, the naive
    baseline).  ``max_runs`` bounds the executions, shrinking included (None:
    no bound); ``preemption_bound`` keeps only runs with at most that many
    preemptions, as CHESS's iterative context bounding does (then the
    exploration is not complete, and never "safe", once a choice was
    skipped; with a reduction the bounded search is a quick bug hunt, not a
    proof for the bound, since DPOR is not complete under bounding);
    ``stop_at_first`` stops at the first violating run; ``shrink`` minimises
    each counterexample's preemptions; ``outcomes`` records the digest of
    every complete run's observable outcome, ``keep_runs`` also each run's
    schedule (:attr:`Exploration.runs_detail`), to compare reductions.

    What a trainee should notice: the reduced and the naive exploration reach
    the same verdict and the same set of outcomes, the reduced one with far
    fewer runs — interleavings that only reorder independent steps (two reads,
    requests on different clusters) cannot differ.
    """
    _check_options(reduction, max_runs, preemption_bound,
                   {"stop_at_first": stop_at_first, "shrink": shrink, "outcomes": outcomes,
                    "keep_runs": keep_runs})
    text, scenario, cfg = prepare(text, config)
    started = time.perf_counter()
    collect = _Collector(stop_at_first, outcomes, keep_runs)
    search = Search(scenario, cfg, reduction=reduction, max_runs=max_runs,
                    preemption_bound=preemption_bound, on_run=collect, build=build_lab)
    search.run()
    budget = SHRINK_BUDGET * len(collect.found) if max_runs is None else max_runs - search.runs
    counterexamples, shrink_runs = _counterexamples(collect.found, scenario, text, cfg, shrink,
                                                    budget)
    return Exploration(
        design=cfg.design, reduction=reduction, runs=search.runs,
        interleavings=search.interleavings, sleep_blocked=search.sleep_blocked,
        pruned=search.pruned, bounded=search.bounded, complete=search.complete,
        violations=counterexamples, violating_runs=collect.violating,
        expectation_failures=list(collect.expect),
        outcomes=frozenset(collect.outcomes) if collect.digests else None,
        seconds=time.perf_counter() - started, max_runs=max_runs,
        preemption_bound=preemption_bound, stopped_at_first=search.stopped,
        shrink_runs=shrink_runs, runs_detail=collect.runs if keep_runs else None)


__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_MAX_RUNS",
    "Counterexample",
    "Exploration",
    "ExploredRun",
    "NondeterminismError",
    "check_determinism",
    "explore",
    "is_preemption",
    "outcome_digest",
    "parse_schedule",
    "preemptions",
    "replay",
    "scenario_tasks",
    "schedule_json",
]
