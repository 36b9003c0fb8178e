"""Footprints: what one scheduling step touched, and when two steps do not commute.

A *step* is what runs between two scheduling decisions: the chosen task from
its resumption to its next yield or end (and, with a kernel that runs woken
tasks at once, those tasks' runs too).  The explorer's partial-order
reduction (:mod:`labkit.explore._search`) needs to know when two steps of
different tasks are *independent*: run in either order from the same state,
they give the same state and neither enables nor disables the other.

The engine declares what it touches (:class:`labkit.kernel.Access`): every
scheduling point carries the accesses its I/O makes when the task resumes
(a data read or write, a qcow2 L2 update), and the block layer, the backup
job, the replication node and the oracle call :func:`labkit.kernel.touch`
where they read or write shared state — a node's tracked requests, a qcow2
map, its allocations in flight and ``s->lock``, the ``CowRequest`` table and
the ``done_bitmap``, the oracle's views.  A :class:`StepRecorder` (a kernel
:class:`~labkit.kernel.Instrument`) collects them; a step's
:class:`Footprint` is the set of its accesses, and two footprints are
dependent when they access a common resource over overlapping ranges and at
least one of them writes.

Nothing here knows a node, a task kind or an event's text.  What is not
declared is treated as touching everything (sound: unknown → dependent):

* a scheduling point that declares no access (a new yield point);
* a task that blocks without having declared what it waits for (a new lock
  or queue);
* a control task (:func:`labkit.kernel.declare_control`: it changes the graph,
  the stage, the notifiers) and every task it spawns;
* a task spawned from inside a step.

Besides dependence, a step may *enable* another task (it wakes it, or spawns
it): the explorer orders the woken task's next step after the waker.

Trainees should notice that two VM reads of the same block commute (both
read), while a VM read and a primary write to the same backup cluster do not:
that is the race the three read designs handle differently.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from ..kernel import (
    BLOCKED,
    GLOBAL,
    Access,
    Chooser,
    CoQueue,
    Instrument,
    Kernel,
    Task,
    sched_point,
)

_Acc = tuple[tuple[str, str], int, int, bool]

# Answers of dependent() kept per Search before the cache starts afresh (the
# answers are recomputed, ids are never reused: clearing the cache is safe).
DEPENDENT_CACHE_MAX = 1_000_000


@functools.cache
def woken_run_at_once() -> bool:
    """Does this kernel run woken tasks at once, FIFO (QEMU's ``qemu_co_queue_run_restart``)?

    Found by trying it on a tiny kernel, not by a flag: a waiter blocks, a
    waker restarts the queue and yields, and we look whether the waiter ran
    before the policy was asked again (or was the only task it was offered).
    Then the order in which tasks wait on a queue decides the order they run
    in, so two waits on one resource do not commute (see ``Access.waits``).
    """
    queue = CoQueue("probe")
    ran: list[str] = []
    offered: list[tuple[str, ...]] = []

    async def waiter() -> None:
        await queue.wait()
        ran.append("waiter")
        await sched_point("probe", "probe", 0, 1, write=False)

    async def waker() -> None:
        await sched_point("probe", "probe", 0, 1, write=False)
        queue.restart_all()
        await sched_point("probe", "probe", 0, 1, write=False)

    def choose(runnable: Sequence[Task]) -> Task:
        offered.append(tuple(t.name for t in runnable))
        return runnable[0]

    kernel = Kernel(Chooser(choose))
    kernel.spawn("waiter#1", waiter())
    kernel.spawn("waker#1", waker())
    for _ in range(3):  # the waiter blocks; the waker yields; the waker restarts it
        kernel.step()
    if not ran and kernel.runnable():
        kernel.step()
    kernel.close()
    return bool(ran) and (len(offered) < 4 or "waker#1" not in offered[3])


class Footprint:
    """The accesses of one step; ``glob`` marks a step that depends on every other.

    Made by an :class:`Interner`: equal footprints are the same object with a
    ``uid`` unique within that interner, so that answers can be remembered.
    """

    __slots__ = ("accesses", "by_key", "glob", "uid")

    def __init__(self, accesses: tuple[_Acc, ...], glob: bool = False, uid: int = -1) -> None:
        self.accesses = accesses
        self.glob = glob
        self.uid = uid
        by_key: dict[tuple[str, str], list[tuple[int, int, bool]]] = {}
        for key, lo, hi, w in accesses:
            by_key.setdefault(key, []).append((lo, hi, w))
        self.by_key = {k: tuple(v) for k, v in by_key.items()}

    def __repr__(self) -> str:
        return f"<Footprint {self}>"

    def __str__(self) -> str:
        if self.glob:
            return "global"
        return "; ".join(str(Access(key, lo, hi, w)) for key, lo, hi, w in self.accesses)


def _conflict(a: Footprint, b: Footprint) -> bool:
    if len(a.by_key) > len(b.by_key):
        a, b = b, a
    other = b.by_key
    for key, ranges in a.by_key.items():
        ranges2 = other.get(key)
        if ranges2 is None:
            continue
        for lo, hi, w in ranges:
            for lo2, hi2, w2 in ranges2:
                if (w or w2) and lo < hi2 and lo2 < hi:
                    return True
    return False


class Interner:
    """One exploration's footprints: equal ones shared, ids from a counter, never reused.

    Each :class:`~labkit.explore._search.Search` has its own, so answers
    remembered by :meth:`dependent` can never be answered for another
    footprint that happened to get the same id.
    """

    def __init__(self) -> None:
        self.glob = Footprint((), True, 0)
        self._table: dict[tuple[_Acc, ...], Footprint] = {}
        self._answers: dict[tuple[int, int], bool] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._table)

    def footprint(self, accesses: tuple[_Acc, ...]) -> Footprint:
        """The footprint with these accesses (the same object for equal accesses)."""
        fp = self._table.get(accesses)
        if fp is None:
            fp = Footprint(accesses, False, self._next)
            self._next += 1
            self._table[accesses] = fp
        return fp

    def dependent(self, a: Footprint, b: Footprint) -> bool:
        """True when the two steps may not commute (a common resource, overlapping, a write)."""
        if a.glob or b.glob:
            return True
        key = (a.uid, b.uid) if a.uid < b.uid else (b.uid, a.uid)
        answer = self._answers.get(key)
        if answer is None:
            if len(self._answers) >= DEPENDENT_CACHE_MAX:
                self._answers.clear()
            answer = self._answers[key] = _conflict(a, b)
        return answer


@dataclass(slots=True)
class StepInfo:
    """One executed step: who was chosen, who ran, what it touched, who enabled it.

    ``task`` is the chosen task; ``tasks`` every task that ran in the step (the
    chosen one first).  ``enabler`` is the step that woke or spawned ``task``
    just before; ``barrier``: the task was spawned between steps, after every
    step before that index.
    """

    task: str
    tasks: tuple[str, ...]
    footprint: Footprint
    enabler: int | None
    barrier: int


class StepRecorder(Instrument):
    """Collects the declared accesses of each step while a lab runs (an Instrument).

    The explorer's policy calls :meth:`open` as it makes decision ``n`` and
    :meth:`finish` before the next one (or at the end of the run) for the
    step that decision ran.  Spawns and wakes are seen from the kernel's
    public state (``kernel.tasks``, each task's ``state``), so the kernel
    never has to make an :class:`~labkit.kernel.Event` for the recorder.
    """

    def __init__(self, interner: Interner, kernel: Kernel) -> None:
        self.interner = interner
        self.kernel = kernel
        self._known = len(kernel.tasks)  # tasks seen so far (kernel.tasks keeps spawn order)
        self._sink: list[tuple[tuple[str, str], int, int, bool, bool]] = []
        self.access_sink = self._sink  # the kernel appends every declared access here
        self._blocked: set[Task] = set()
        self.fifo_waits = woken_run_at_once()
        self.decisions = 0
        self._acc: list[_Acc] = []
        self._glob = False
        self._tasks: list[str] = []
        self._running: Task | None = None
        self._waits_declared = False
        self._control: set[str] = set()
        self._woken_by: dict[str, int] = {}
        self._barrier: dict[str, int] = {}
        self._started: set[str] = set()

    # --- the policy's side -------------------------------------------------------------
    def open(self) -> None:
        """A decision was made: the steps that follow belong to it."""
        for name in self._new_tasks():  # the lab started a scenario line between steps
            self._barrier[name] = self.decisions
        self.decisions += 1
        self._acc = []
        self._glob = False
        self._tasks = []

    def finish(self) -> StepInfo:
        """The step of the last decision: its footprint, enabler and barrier."""
        index = self.decisions - 1
        tasks = tuple(dict.fromkeys(self._tasks))
        if not tasks:  # the decision ran nothing observable: stay conservative
            return StepInfo("", (), self.interner.glob, None, 0)
        task = tasks[0]
        enabler = self._woken_by.pop(task, None)
        barrier = self._barrier.get(task, 0) if task not in self._started else 0
        for t in tasks:
            self._started.add(t)
            if t != task and self._woken_by.get(t) == index:
                del self._woken_by[t]  # woken and run inside this very step
        if self._glob:
            fp = self.interner.glob
        else:
            fp = self.interner.footprint(tuple(dict.fromkeys(self._acc)))
        return StepInfo(task, tasks, fp, enabler, barrier)

    # --- the kernel's side (Instrument) --------------------------------------------------
    def before_step(self, task: Task) -> None:
        self._sink.clear()  # declared between steps (none today): not this step's
        self._running = task
        self._waits_declared = False
        self._tasks.append(task.name)
        if task.name in self._control:
            self._glob = True
        parked = task.suspended
        if parked is not None and parked.kind == "point":
            accesses = parked.accesses(task.name)
            if not accesses:  # a point that says nothing of its I/O
                self._glob = True
            for a in accesses:
                self._acc.append((a.resource, a.lo, a.hi, a.write))

    def _take_accesses(self, task: Task) -> None:
        """The accesses ``task`` declared in the step that just ended (from the sink)."""
        sink = self._sink
        if not sink:
            return
        acc = self._acc
        fifo = self.fifo_waits
        for resource, lo, hi, write, waits in sink:
            if resource == GLOBAL:
                self._control.add(task.name)
                self._glob = True
            elif waits:
                self._waits_declared = True
                # the order of waiters decides the order they will run in
                acc.append((resource, lo, hi, True if fifo else write))
            else:
                acc.append((resource, lo, hi, write))
        sink.clear()

    def _new_tasks(self) -> list[str]:
        tasks = self.kernel.tasks
        if len(tasks) == self._known:
            return []
        names = list(tasks)[self._known:]
        self._known = len(tasks)
        return names

    def after_step(self, task: Task) -> None:
        self._take_accesses(task)
        index = self.decisions - 1
        if self._blocked:  # the tasks this step woke
            for other in [t for t in self._blocked if t.state != BLOCKED]:
                self._blocked.discard(other)
                self._woken_by[other.name] = index
        if task.state == BLOCKED:
            self._blocked.add(task)
            if not self._waits_declared:
                self._glob = True  # it waits for something it did not declare
        for name in self._new_tasks():  # spawned inside the step (failover -> commit)
            self._woken_by[name] = index
            self._glob = True
            if task.name in self._control:
                self._control.add(name)
        self._running = None
