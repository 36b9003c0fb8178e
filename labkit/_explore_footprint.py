"""Footprints: what one scheduling step may touch, and when two steps do not commute.

A *step* is what a task does between two scheduling decisions: from its
``run`` event to its next yield (a scheduling point, a wait) or its end.  The
explorer's partial-order reduction (:mod:`labkit._explore_search`) needs to
know when two steps of different tasks are *independent*: run in either order
from the same state, they give the same state and neither enables nor
disables the other.  Steps that are not independent are *dependent*.

A footprint is a set of accesses ``(resource, lo, hi, write)``; two
footprints are dependent when they access a common resource over
overlapping ranges and at least one of them writes.  Each task's tracked
requests (``req-start`` .. ``req-end`` in the trace) form a stack, and the
code of a step runs in the context of whichever request is on top of that
stack; so a step is charged with:

``("data", NODE)``
    the I/O of the scheduling point the task yielded at, which takes effect
    when the step begins: read for ``io-read``, write for ``io-write`` /
    ``io-zero`` (and for a ``meta`` point: the L2 update writes the map).
``("req", NODE)``
    a tracked request starting or ending.  Non-serialising requests only
    care about serialising ones (``wait_serialising_requests``), so they
    *read*; a serialising request (the 4.0 COW's write to hidden) *writes*
    over its cluster-aligned range.  The flag is read from the engine's
    :class:`~labkit.block.TrackedRequest` right after the step.
``("map", NODE)``, ``("alloc", NODE)``, ``("mutex", NODE)``
    for each qcow2 request that is on top of the stack at some moment of the
    step: its L2 map over its clusters (read), its in-flight allocations
    (``handle_dependencies``; written by write requests) and ``s->lock``.  The
    lock is *read* by a step that takes and releases it (two such steps
    commute) and *written* by a step that yields holding it (the ``meta``
    points), by the step that resumes holding it, by one that blocks on it
    and by one that wakes its waiter.
``("cow", "")``
    the backup job's ``CowRequest`` table over backup clusters:
    ``cow-begin`` / ``cow-end`` write it; a task that waits on a
    ``CowRequest`` read it over its own request's clusters (and scans again
    when woken).  The ``done_bitmap`` is only touched by the task holding a
    ``CowRequest`` over those clusters, so the table's order covers it.
``("oracle", "")``
    the oracle's view: a VM read's first and last steps read it over the
    read's range, a VM write's write it.
waits and wakes
    waking a task writes the resource it waited on (resolved from the engine
    object it blocked on: a ``CowRequest``, a tracked request, a qcow2
    allocation or ``s->lock``); waiting reads it, so two waiters of one
    ``restart_all`` queue commute, while ``s->lock``'s FIFO hand-over does not.
global
    control tasks (``start``, ``checkpoint``, ``stop``, ``failover``,
    ``commit``) change the graph, the stage, the notifiers and the done
    bitmap: each of their steps depends on every other step; so does any I/O
    step while replication is not running (before start, during and after
    failover).

This is a conservative (sound) over-approximation: it may call two steps
dependent when they commute, which costs extra runs, never a missed
interleaving.  Besides dependence, a step may *enable* another task (it
wakes it from a wait, or spawns it): the explorer orders the woken task's
next step after the waker.

Trainees should notice that two VM reads of the same block commute (both
read), while a VM read and a primary write to the same backup cluster do not:
that is the race the three read designs handle differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .block import Qcow2Node
from .kernel import BLOCKED, CoQueue, Event

CONTROL_KINDS = ("start", "checkpoint", "stop", "failover", "commit")
ORACLE_KINDS = ("vm-read", "vm-write")
TERMINAL = ("point", "wait", "done", "failed")


class Footprint:
    """The accesses of one step; ``glob`` marks a step that depends on every other.

    Footprints are interned (:func:`footprint`): equal footprints are the same
    object, so that :func:`dependent` can remember its answers.
    """

    __slots__ = ("accesses", "by_key", "glob", "uid")

    def __init__(self, accesses: tuple[tuple[tuple[str, str], int, int, bool], ...],
                 glob: bool = False, uid: int = -1) -> None:
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
        parts = []
        for (kind, name), lo, hi, write in self.accesses:
            rw = "W" if write else "R"
            where = f"{name} " if name else ""
            parts.append(f"{rw} {kind} {where}[{lo:#x},{hi:#x})")
        return "; ".join(parts)


GLOBAL = Footprint((), True, 0)
_INTERNED: dict[tuple, Footprint] = {}
_DEPENDENT: dict[tuple[int, int], bool] = {}


def footprint(accesses: tuple[tuple[tuple[str, str], int, int, bool], ...]) -> Footprint:
    """The (interned) footprint with these accesses."""
    fp = _INTERNED.get(accesses)
    if fp is None:
        if len(_INTERNED) > 200_000:  # a long-running kernel: start afresh
            _INTERNED.clear()
            _DEPENDENT.clear()
        fp = Footprint(accesses, False, len(_INTERNED) + 1)
        _INTERNED[accesses] = fp
    return fp


def _dependent(a: Footprint, b: Footprint) -> bool:
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


def dependent(a: Footprint, b: Footprint) -> bool:
    """True when the two steps may not commute (a common resource, overlapping, a write)."""
    if a.glob or b.glob:
        return True
    key = (a.uid, b.uid) if a.uid < b.uid else (b.uid, a.uid)
    answer = _DEPENDENT.get(key)
    if answer is None:
        answer = _DEPENDENT[key] = _dependent(a, b)
    return answer


@dataclass(slots=True)
class StepInfo:
    """One executed step: who ran, what it touched, who enabled it, where its task began."""

    task: str
    footprint: Footprint
    enabler: int | None  # the step that woke or spawned this task just before this step
    barrier: int  # the task was spawned between steps: every step before this index precedes it


class FootprintTracker:
    """Computes each step's :class:`Footprint` from the trace, while a lab runs.

    Call :meth:`finish_step` after each step (before the next decision), while
    the lab's state is the state right after that step: waits are resolved
    then, by looking at what the blocked task waits on, and a new tracked
    request's serialising flag is read then.

    Each task's in-flight tracked requests form a stack (a request's nested
    requests start after it and end before it).  The code that runs in a
    step runs in the context of whichever request is on top of the stack at
    that moment, so a step touches the node state of exactly those requests
    that are on top at some moment of the step.
    """

    def __init__(self, lab) -> None:  # lab: labkit.lab.Lab (not imported: no cycle)
        self.lab = lab
        nodes = [lab.secondary, lab.hidden, lab.active, lab.top]
        self._nodes = nodes
        self._by_name = {n.name: n for n in nodes}
        self._align = {n.name: max(1, n.cluster_size) for n in nodes}
        self._qcow2 = {n.name: n for n in nodes if isinstance(n, Qcow2Node)}
        self._stack: dict[str, list[_Req]] = {}
        self._pending: dict[str, Event] = {}  # task -> the scheduling point it yielded at
        self._blocked: dict[str, tuple[tuple[str, str], int, int] | None] = {}
        self._woken_by: dict[str, int] = {}  # task -> step that woke/spawned it
        self._barrier: dict[str, int] = {}  # task -> steps before its (between-steps) spawn
        self._oracle_range: dict[str, tuple[int, int]] = {}
        self._rescan: dict[str, tuple[tuple[str, str], int, int, bool]] = {}
        self._started: set[str] = set()

    def spawned_between_steps(self, events: Sequence[Event], steps_so_far: int) -> None:
        """Note tasks spawned by the lab between steps (a scenario line starting)."""
        for e in events:
            if e.kind == "spawn":
                self._barrier[e.task] = steps_so_far

    def _aligned(self, node: str, lo: int, hi: int) -> tuple[int, int]:
        a = self._align.get(node, 512)
        return (lo // a) * a, -(-hi // a) * a

    def _serialising(self, task: str, e: Event) -> bool:
        node = self._by_name.get(e.node)
        if node is None:
            return True
        for req in node.tracked_requests:
            if (req.task is not None and req.task.name == task and req.offset == e.offset
                    and req.bytes == e.length and req.type == e.detail):
                return req.serialising
        return True  # started and ended within the step: conservatively serialising

    def finish_step(self, index: int, events: Sequence[Event]) -> StepInfo:
        """The footprint of step ``index``, whose events (from its ``run``) are ``events``."""
        assert events and events[0].kind == "run", events[:1]
        task = events[0].task
        first = task not in self._started
        enabler = self._woken_by.pop(task, None)
        barrier = self._barrier.get(task, 0) if first else 0
        self._started.add(task)
        stack = self._stack.setdefault(task, [])
        acc: list[tuple[tuple[str, str], int, int, bool]] = []
        glob = task.split("#", 1)[0] in CONTROL_KINDS or self.lab.state != "running"
        kind_of_task = task.split("#", 1)[0]
        touched: list[_Req] = []
        if stack:
            touched.append(stack[-1])
        mutex_w: set[str] = set()
        rescan = self._rescan.pop(task, None)
        if rescan is not None:  # woken: it scans again for what it waited on
            acc.append(rescan)
        # The scheduling point this task yielded at takes effect now, as the step begins.
        point = self._pending.pop(task, None)
        if point is not None:
            lo, hi = point.offset, point.offset + point.length
            if point.detail.startswith("meta"):
                for what in ("map", "data"):
                    acc.append(((what, point.node), lo, hi, True))
                mutex_w.add(point.node)
            elif point.detail.startswith("io-read"):
                acc.append((("data", point.node), lo, hi, False))
            else:  # io-write, io-zero
                acc.append((("data", point.node), lo, hi, True))
        terminal_seen = False
        ended = False
        for e in events[1:]:
            if terminal_seen:
                if e.kind == "wake":
                    key = self._blocked.pop(e.task, None)
                    self._woken_by[e.task] = index
                    if key is None:
                        glob = True
                    else:
                        acc.append((key[0], key[1], key[2], True))
                elif e.kind == "spawn":  # spawned by the lab after this step: a barrier
                    self._barrier[e.task] = index + 1
                continue
            if e.task != task:
                if e.kind == "spawn":  # spawned inside the step (failover -> commit)
                    self._woken_by[e.task] = index
                    glob = True
                continue
            kind = e.kind
            if kind == "req-start":
                ser = self._serialising(task, e)
                if ser:
                    lo, hi = self._aligned(e.node, e.offset, e.offset + e.length)
                else:
                    lo, hi = e.offset, e.offset + e.length
                req = _Req(e.node, e.offset, e.length, e.detail, ser, lo, hi)
                stack.append(req)
                touched.append(req)
                acc.append((("req", e.node), lo, hi, ser))
                if kind_of_task in ORACLE_KINDS and task not in self._oracle_range:
                    self._oracle_range[task] = (e.offset, e.offset + e.length)
            elif kind == "req-end":
                key = (e.node, e.offset, e.length, e.detail)
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i].key == key:
                        req = stack.pop(i)
                        acc.append((("req", e.node), req.lo, req.hi, req.serialising))
                        if i != len(stack):  # not the innermost: be conservative
                            touched.extend(stack)
                        break
                if stack:
                    touched.append(stack[-1])
            elif kind in ("cow-begin", "cow-end"):
                acc.append((("cow", ""), e.offset, e.offset + e.length, True))
            elif kind in TERMINAL:
                terminal_seen = True
                ended = kind in ("done", "failed")
                if kind == "point":
                    self._pending[task] = e
                    if e.detail.startswith("meta") and e.node in self._qcow2:
                        mutex_w.add(e.node)  # it yields holding s->lock
                elif kind == "wait":
                    key = self._resolve_wait(task)
                    self._blocked[task] = key
                    if key is None:
                        glob = True
                    elif key[0][0] == "mutex":  # CoMutex: FIFO hand-over, order matters
                        mutex_w.add(key[0][1])
                    else:
                        # restart_all wakes every waiter: two waits commute; the waker
                        # writes the key (see "wake"), the scan that found it is read.
                        acc.append((key[0], key[1], key[2], False))
                        scan = self._scan(key, stack)
                        self._rescan[task] = scan
                        acc.append(scan)
        if glob:
            return StepInfo(task, GLOBAL, enabler, barrier)
        if kind_of_task in ORACLE_KINDS and (first or ended):
            rng = self._oracle_range.get(task)
            if rng is None:
                return StepInfo(task, GLOBAL, enabler, barrier)
            acc.append((("oracle", ""), rng[0], rng[1], kind_of_task != "vm-read"))
        mutex_r: set[str] = set()
        for req in dict.fromkeys(touched):
            if req.node in self._qcow2:
                lo, hi = self._aligned(req.node, req.offset, req.offset + req.length)
                acc.append((("map", req.node), lo, hi, False))
                if req.type != "read":
                    acc.append((("alloc", req.node), lo, hi, True))
                mutex_r.add(req.node)
        for node in sorted(mutex_w):
            acc.append((("mutex", node), 0, 1, True))
        for node in sorted(mutex_r - mutex_w):
            acc.append((("mutex", node), 0, 1, False))
        return StepInfo(task, footprint(tuple(dict.fromkeys(acc))), enabler, barrier)

    def _scan(self, key: tuple[tuple[str, str], int, int],
              stack: list[_Req]) -> tuple[tuple[str, str], int, int, bool]:
        """What a waiter scanned to find ``key``: its own request's range in that table.

        ``backup_do_cow`` (under a primary write) and ``replication_co_readv``
        (2.8) scan the CowRequest table over the backup clusters of the request
        on top of their stack; ``wait_serialising_requests`` scans a node's
        tracked requests over the waiter's own range (as a writer when the
        waiter is serialising: it waits for every overlap).
        """
        (what, node), lo, hi = key
        top = stack[-1] if stack else None
        if what == "cow":
            job = self.lab.top.backup_job
            if top is None or job is None:
                return (("cow", ""), 0, self.lab.size, False)
            cs = job.cluster_size
            slo = (top.offset // cs) * cs
            shi = -(-(top.offset + top.length) // cs) * cs
            return (("cow", ""), min(lo, slo), max(hi, shi), False)
        if what == "req":
            if top is None or top.node != node:
                return (("req", node), 0, self.lab.size, True)
            return (("req", node), min(lo, top.lo), max(hi, top.hi), top.serialising)
        # a qcow2 allocation in flight: _wait_dependencies under the writer's request
        if top is None:
            return ((what, node), 0, self.lab.size, True)
        tlo, thi = self._aligned(node, top.offset, top.offset + top.length)
        return ((what, node), min(lo, tlo), max(hi, thi), True)

    def _resolve_wait(self, name: str) -> tuple[tuple[str, str], int, int] | None:
        """The resource a blocked task waits on, from the engine object it waits on."""
        task = self.lab.kernel.tasks.get(name)
        if task is None or task.state != BLOCKED or not isinstance(task.blocked_on, CoQueue):
            return None
        q = task.blocked_on
        job = self.lab.top.backup_job
        if job is not None:
            cs = job.cluster_size
            for req in job.inflight_reqs:
                if req.wait_queue is q:
                    return (("cow", ""), req.start * cs, req.end * cs)
        for node in self._qcow2.values():
            if node.lock._queue is q:
                return (("mutex", node.name), 0, 1)
            cs = node.cluster_size
            for alloc in node._allocs:
                if alloc.queue is q:
                    return (("alloc", node.name), alloc.start * cs, alloc.end * cs)
        for node in self._nodes:
            for req in node.tracked_requests:
                if req.wait_queue is q:
                    lo, hi = self._aligned(node.name, req.overlap_offset,
                                           req.overlap_offset + req.overlap_bytes)
                    return (("req", node.name), lo, hi)
        return None  # e.g. a job's drain queue: treat as global


@dataclass(eq=False, slots=True)
class _Req:
    """A tracked request in flight, as the trace shows it."""

    node: str
    offset: int
    length: int
    type: str
    serialising: bool
    lo: int  # the range other requests see (widened when serialising)
    hi: int

    @property
    def key(self) -> tuple[str, int, int, str]:
        return (self.node, self.offset, self.length, self.type)
