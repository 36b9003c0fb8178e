"""The search behind :func:`labkit.explore`: stateless exploration with partial-order reduction.

Stateless, as in CHESS and loom: coroutines cannot be copied, so every
interleaving is *re-executed from the start* of the scenario, following a
prefix of recorded choices and then a default choice.  The explored choices
form a tree; one node per scheduling decision of the current run holds the
runnable tasks, the task chosen, the tasks still to try (*backtrack set*)
and those already tried (*done*).

Three reductions (``reduction=``):

``"none"``
    the naive baseline: every runnable task is tried at every decision.
``"sleep"``
    sleep sets (Godefroid 1996): after the subtree of task *p* at a node
    has been explored, *p* sleeps in its siblings' subtrees until a step
    dependent with *p*'s pending step runs; a run in which every runnable
    task sleeps is cut short (it could only repeat an equivalent one).
``"dpor"`` (default)
    source-DPOR (Abdulla, Aronis, Jonsson, Sagonas, POPL 2014) with sleep
    sets: a task is added to a node's backtrack set only when a *race* in an
    executed run needs it — two dependent steps of different tasks, adjacent
    in the happens-before order, that could be reversed.  Each equivalence
    class of interleavings (same dependent steps in the same order, a
    Mazurkiewicz trace) is explored at least once, usually exactly once.

Dependence comes from the steps' footprints (:mod:`labkit.explore._footprint`),
which the engine's declared accesses make; each search has its own
:class:`~labkit.explore._footprint.Interner`.
The default choice is *non-preemptive*: keep running the task that ran last
while it is runnable, so the first run is the serial one and every
preemption in a schedule is a choice somebody made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import LabConfig
from ..errors import Deadlock, NondeterminismError, RunAborted
from ..kernel import Policy, Task
from ..scenario import Scenario
from ._footprint import Footprint, Interner, StepInfo, StepRecorder

REDUCTIONS = ("dpor", "sleep", "none")


@dataclass(slots=True)
class _Node:
    enabled: tuple[str, ...]
    chosen: str
    prev: str | None
    preempts: int  # preemptions in the decisions before this one
    sleep: dict[str, Footprint]
    backtrack: list[str]
    done: dict[str, Footprint] = field(default_factory=dict)
    skipped_bound: set[str] = field(default_factory=set)
    step: StepInfo | None = None
    pred: int = -1  # happens-before predecessors of this step (bitset), once computed


def is_preemption(prev: str | None, chosen: str, enabled: tuple[str, ...] | list[str]) -> bool:
    """A context switch away from a task that could have gone on running."""
    return prev is not None and chosen != prev and prev in enabled


def count_preemptions(schedule: list[str], enabled: list[tuple[str, ...]]) -> int:
    """Preemptions of a run: its choices and the runnable tasks at each decision."""
    n = 0
    for i, name in enumerate(schedule):
        if i and is_preemption(schedule[i - 1], name, enabled[i]):
            n += 1
    return n


@dataclass
class RunRecord:
    """One execution: the lab, its choices, how it ended."""

    lab: Any
    schedule: list[str]
    enabled: list[tuple[str, ...]]
    aborted: str = ""  # "sleep" or "bound" when cut short
    deadlock: Deadlock | None = None


class _Policy(Policy):
    """The explorer's policy: follows the tree, records footprints, extends with defaults."""

    def __init__(self, search: Search, branch: int) -> None:
        self.search = search
        self.branch = branch
        self.recorder: StepRecorder | None = None
        self.steps_done = 0
        self.last_position = -1
        self.positions: list[int] = []  # the kernel's schedule position of each decision

    def attach(self, lab: Any) -> None:
        if self.search.reduction != "none":
            self.recorder = StepRecorder(self.search.interner, lab.kernel)
            lab.kernel.add_instrument(self.recorder)

    def finish_previous(self) -> None:
        """Close the step that ran last (its footprint, its node's done set)."""
        if self.steps_done == 0:
            return
        node = self.search.nodes[self.steps_done - 1]
        if self.recorder is not None:
            info = self.recorder.finish()
            node.step = info
            node.done.setdefault(node.chosen, info.footprint)
        else:
            node.done.setdefault(node.chosen, _NO_FP)

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        # ``position`` counts the kernel's schedule entries; the tree counts decisions.
        # They differ if the kernel runs a task without asking (woken tasks run at
        # once): those entries are no choice, and are no node of the tree.
        names = tuple(t.name for t in runnable)
        if position < self.last_position:
            raise NondeterminismError(f"decision at schedule position {position} arrived after "
                                      f"position {self.last_position}", position)
        self.last_position = position
        self.positions.append(position)
        self.finish_previous()
        name = self.search.decide(self.steps_done, names, self.branch)
        if self.recorder is not None:
            self.recorder.open()
        self.steps_done += 1
        for t in runnable:
            if t.name == name:
                return t
        raise NondeterminismError(f"the explorer chose {name!r}, not runnable "
                                  f"({', '.join(names)})", position)


_NO_FP = Footprint((), True)


class Search:
    """One exploration: the tree of choices, the runs, the counts.

    ``on_run(record) -> bool`` is called after each complete (or deadlocked)
    run; returning True stops the search.
    """

    def __init__(self, scenario: Scenario, config: LabConfig, *, reduction: str,
                 max_runs: int | None, preemption_bound: int | None,
                 on_run: Callable[[RunRecord], bool], build: Callable[[LabConfig, Policy], Any],
                 tracing: bool = False) -> None:
        self.scenario = scenario
        self.config = config
        self.reduction = reduction
        self.max_runs = max_runs
        self.bound = preemption_bound
        self.on_run = on_run
        self.build = build
        # No trace while exploring: nothing here reads it (footprints come from the
        # declared accesses), and a counterexample's is made by replaying it.
        self.tracing = tracing
        self.nodes: list[_Node] = []
        self.runs = 0
        self.interleavings = 0
        self.sleep_blocked = 0
        self.bound_cut = 0  # runs cut because only over-the-bound choices were left
        self.pruned = 0  # choices never run because reduction showed them redundant
        self.bounded = 0  # choices never run because of the preemption bound
        self.interner = Interner()  # this search's footprints (ids never shared or reused)
        self.complete = False
        self.exhausted = False  # the tree was searched to its end (within any bound)
        self.stopped = False

    # --- decisions ------------------------------------------------------------------
    def _within_bound(self, node_preempts: int, prev: str | None, name: str,
                      enabled: tuple[str, ...]) -> bool:
        if self.bound is None:
            return True
        return node_preempts + is_preemption(prev, name, enabled) <= self.bound

    def decide(self, position: int, enabled: tuple[str, ...], branch: int) -> str:
        nodes = self.nodes
        if position < len(nodes):
            node = nodes[position]
            if node.enabled != enabled:
                raise NondeterminismError(
                    f"re-executing the same choices gave other runnable tasks at decision "
                    f"{position}: {', '.join(enabled)} instead of {', '.join(node.enabled)}",
                    position, node.enabled, enabled)
            return node.chosen
        # A fresh decision beyond the recorded prefix.
        if nodes:
            parent = nodes[-1]
            prev = parent.chosen
            preempts = parent.preempts + is_preemption(parent.prev, parent.chosen,
                                                       parent.enabled)
            sleep: dict[str, Footprint] = {}
            if self.reduction != "none" and parent.step is not None:
                fp = parent.step.footprint
                for r, rfp in (parent.sleep | parent.done).items():
                    if r != parent.chosen and not self.interner.dependent(rfp, fp):
                        sleep[r] = rfp
        else:
            prev, preempts, sleep = None, 0, {}
        order = ([prev] if prev in enabled else []) + [n for n in enabled if n != prev]
        awake = [n for n in order if n not in sleep]
        allowed = [n for n in awake if self._within_bound(preempts, prev, n, enabled)]
        if not allowed:
            node = _Node(enabled, "", prev, preempts, sleep, [])
            node.skipped_bound = set(awake)
            nodes.append(node)
            raise RunAborted("bound" if awake else "sleep")
        chosen = allowed[0]
        if self.reduction == "dpor":
            backtrack = [chosen]
        else:
            backtrack = list(order)
        node = _Node(enabled, chosen, prev, preempts, sleep, backtrack)
        nodes.append(node)
        return chosen

    # --- runs ------------------------------------------------------------------------
    def execute(self, branch: int) -> RunRecord:
        policy = _Policy(self, branch)
        lab = self.build(self.config, policy)
        lab.kernel.tracing = self.tracing
        policy.attach(lab)
        record = RunRecord(lab, [], [])
        try:
            try:
                lab.play(self.scenario)
            except Deadlock as exc:
                record.deadlock = exc
            policy.finish_previous()
        except RunAborted as abort:
            record.aborted = abort.why
        finally:
            lab.kernel.close()
        record.schedule = list(lab.kernel.schedule)
        # What was runnable at each schedule position: a node's tasks where a decision
        # was made, only the task that ran where the kernel made none.
        enabled: list[tuple[str, ...]] = [(name,) for name in record.schedule]
        for node, pos in zip(self.nodes, policy.positions, strict=False):
            if pos < len(enabled):
                enabled[pos] = node.enabled
        record.enabled = enabled
        return record

    def run(self) -> None:
        """Explore until the tree is exhausted, the budget is spent or ``on_run`` stops it."""
        branch = 0
        while True:
            if self.max_runs is not None and self.runs >= self.max_runs:
                return
            record = self.execute(branch)
            self.runs += 1
            if record.aborted:
                node = self.nodes.pop()  # where every runnable task slept or was over the bound
                self.bounded += len(node.skipped_bound)
                self.pruned += len(node.enabled) - len(node.skipped_bound)
                if record.aborted == "sleep":
                    self.sleep_blocked += 1
                else:
                    self.bound_cut += 1
            else:
                self.interleavings += 1
            if self.reduction == "dpor":
                self._add_races(branch)
            if not record.aborted and self.on_run(record):
                self.stopped = True
                return
            nxt = self._next_branch()
            if nxt is None:
                self.exhausted = True
                self.complete = self.bounded == 0
                return
            branch = nxt

    def _next_branch(self) -> int | None:
        nodes = self.nodes
        while nodes:
            m = len(nodes) - 1
            node = nodes[m]
            for t in node.backtrack:
                if t in node.done or t in node.sleep or t in node.skipped_bound:
                    continue
                if not self._within_bound(node.preempts, node.prev, t, node.enabled):
                    node.skipped_bound.add(t)
                    self.bounded += 1
                    continue
                node.chosen = t
                node.step = None
                node.pred = -1
                return m
            nodes.pop()
            self.pruned += len(node.enabled) - len(node.done) - len(node.skipped_bound)
        return None

    # --- source-DPOR race analysis -------------------------------------------------------
    def _add_races(self, start: int) -> None:
        """Find the races of the run just executed; add their reversals to backtrack sets.

        Races whose later step lies in the replayed prefix (before ``start``)
        were analysed when that prefix first ran.
        """
        nodes = [n for n in self.nodes if n.step is not None]
        steps: list[StepInfo] = [n.step for n in nodes if n.step is not None]
        pred = [n.pred for n in nodes]
        last: dict[str, int] = {}
        dependent = self.interner.dependent
        for i, s in enumerate(steps):
            if i < start and pred[i] >= 0:  # replayed: same step, same predecessors
                for t in s.tasks:
                    last[t] = i
                continue
            p = 0
            for t in s.tasks:  # program order of every task that ran in the step
                prev = last.get(t)
                if prev is not None:
                    p |= pred[prev] | (1 << prev)
            if s.enabler is not None and s.enabler < i:
                p |= pred[s.enabler] | (1 << s.enabler)
            if s.barrier:
                p |= (1 << s.barrier) - 1
            races: list[int] = []
            fp = s.footprint
            mine = set(s.tasks)
            for j in range(i - 1, -1, -1):
                other = steps[j]
                if mine.intersection(other.tasks) or not dependent(other.footprint, fp):
                    continue
                if not (p >> j) & 1:
                    races.append(j)
                p |= pred[j] | (1 << j)
            pred[i] = p
            nodes[i].pred = p
            for t in s.tasks:
                last[t] = i
            if i >= start:
                for j in races:
                    self._reverse(steps, pred, j, i)

    def _reverse(self, steps: list[StepInfo], pred: list[int], j: int, i: int) -> None:
        node = self.nodes[j]
        v = [k for k in range(j + 1, i) if not (pred[k] >> j) & 1] + [i]
        initials: list[str] = []
        seen: set[str] = set()
        in_v = 0
        for k in v:
            task = steps[k].task
            if task not in seen:
                seen.add(task)
                if not pred[k] & in_v:
                    initials.append(task)
            in_v |= 1 << k
        initials = [t for t in initials if t in node.enabled]
        if not initials and j > 0 and len(node.enabled) == 1:
            # A forced step (the kernel's wake rule: only the woken task may run there)
            # cannot be reversed where it ran: reverse at the choice before it.
            self._reverse(steps, pred, j - 1, i)
            return
        if not initials:  # cannot happen with a sound footprint; stay conservative
            initials = [t for t in node.enabled]
            for t in initials:
                if t not in node.backtrack:
                    node.backtrack.append(t)
            return
        if any(t in node.backtrack or t in node.done for t in initials):
            return
        awake = [t for t in initials if t not in node.sleep]
        want = steps[i].task
        pick = want if want in awake else (awake[0] if awake else initials[0])
        node.backtrack.append(pick)

