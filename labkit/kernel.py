"""A tiny deterministic coroutine scheduler: QEMU's coroutines, one AioContext.

QEMU runs every block request of a node in one thread as a coroutine; requests
interleave only where a coroutine *yields* (an I/O it waits for, a lock or a
``CoQueue`` it waits on).  labkit models exactly that with its own loop over
``async def`` coroutines (never asyncio: a Jupyter kernel already runs one):

* A :class:`Task` wraps one coroutine (``nbd-write#1``, ``vm-read#2``...).
* ``await sched_point(...)`` is a scheduling point: the task stays runnable and
  the :class:`Kernel`'s *policy* picks which runnable task goes next.  Leaf
  driver I/O and qcow2 metadata updates are scheduling points; nothing else is.
* :class:`CoQueue` is ``CoQueue`` from ``util/qemu-coroutine-lock.c`` (2.8):
  waiters queue FIFO and ``restart_all`` moves them onto the *waker's* wake-up
  list, so they become runnable only when the waker next yields or ends.
* :class:`CoMutex` is ``CoMutex``: 2.8's (built on a CoQueue) or, with
  ``handoff=True``, 2.9+'s, which hands the mutex over to the woken waiter.

**The wake rule** (util/qemu-coroutine.c, ``qemu_coroutine_enter``: when the
entered coroutine yields or ends, ``qemu_co_queue_run_restart`` in
util/qemu-coroutine-lock.c enters its ``co_queue_wakeup`` list): as soon as
the waker yields or ends, every task it woke is entered at once, in FIFO
order, each running to its own next scheduling point — and the tasks *it* woke
run in turn, depth first — before anything else runs. labkit gives each of
these *forced* steps its own position in the schedule (so a schedule still
names every step), but at that position the policy is offered exactly one
task, the woken one: no policy, playground button or explorer branch can pick
another task there, and a script that names another task gets a
:class:`~labkit.errors.ScheduleError` saying why
(:meth:`Kernel.why_not_runnable`). A forced step is never a preemption and
never a branching point.

Every decision is recorded (``kernel.schedule``) and every step produces
:class:`Event` s (``kernel.trace``), so a run is reproduced exactly from the
same tasks and the same schedule.

The engine also *declares what it touches*: every scheduling point carries
the :class:`Access` es its I/O makes when the task resumes, and the code of
the block layer, the backup job and the oracle calls :func:`touch` where it
reads or writes shared state (a request table, an L2 map, ``s->lock``...).
Observers get them, and every event, through one channel: :class:`Instrument` s
(``kernel.add_instrument``, modelled on trio's ``trio.abc.Instrument``); the
trace is the kernel's own record of the events.  The explorer computes its
footprints from the accesses, never from event text.  Trainees should notice that nothing happens
"between" two events: a race is only ever a choice at a scheduling point.
"""

from __future__ import annotations

import gc
import random
import warnings
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple

from .errors import (
    ArgumentError,
    Deadlock,
    ForeignAwaitError,
    InstrumentWarning,
    LabkitError,
    ScheduleError,
    StateError,
    TaskFailed,
    TaskNotDone,
)


class TaskState(StrEnum):
    """Where a :class:`Task` is: runnable, blocked on a waitable, done or failed.

    A ``str`` (``TaskState.DONE == "done"``), so code and files that spell the
    state as text keep working.
    """

    RUNNABLE = "runnable"
    BLOCKED = "blocked"
    DONE = "done"
    FAILED = "failed"


RUNNABLE = TaskState.RUNNABLE
BLOCKED = TaskState.BLOCKED
DONE = TaskState.DONE
FAILED = TaskState.FAILED


class EventKind(StrEnum):
    """What an :class:`Event` records (its ``kind``).

    The kernel's own: ``spawn``, ``run`` (a decision), ``point`` (a scheduling
    point), ``wait`` / ``wake`` (a block on a CoQueue and its end), ``done`` /
    ``failed``.  The block layer's, named after the QEMU functions they mark:
    ``req-start`` / ``req-end`` (``tracked_request_begin`` / ``_end``),
    ``read-zero``, ``qcow2-cow``, ``cow-begin`` / ``cow-copy`` / ``cow-end``
    (``cow_request_begin``, ``backup_do_cow``, ``cow_request_end``),
    ``drained-begin`` / ``drained-end``, the jobs' and the replication
    driver's.  A ``str``: a trace file spells the kind as this text, byte for
    byte, and ``event.kind == "run"`` keeps working.
    """

    SPAWN = "spawn"
    RUN = "run"
    POINT = "point"
    WAIT = "wait"
    WAKE = "wake"
    DONE = "done"
    FAILED = "failed"
    REQ_START = "req-start"
    REQ_END = "req-end"
    READ_ZERO = "read-zero"
    QCOW2_COW = "qcow2-cow"
    COW_BEGIN = "cow-begin"
    COW_COPY = "cow-copy"
    COW_END = "cow-end"
    DRAINED_BEGIN = "drained-begin"
    DRAINED_END = "drained-end"
    BACKUP_CHECKPOINT = "backup-checkpoint"
    JOB_CANCELLED = "job-cancelled"
    COMMIT_START = "commit-start"
    COMMIT_DONE = "commit-done"
    REPLICATION_START = "replication-start"
    REPLICATION_CHECKPOINT = "replication-checkpoint"
    REPLICATION_FAILOVER = "replication-failover"
    REPLICATION_ERROR = "replication-error"


GLOBAL = ("global", "")  # the resource of a step that may depend on everything


class Access(NamedTuple):
    """One declared access of shared engine state: what a step reads or writes.

    ``resource`` is ``(kind, name)``: ``("data", "hidden")`` (a node's bytes),
    ``("req", node)`` (its tracked-request list), ``("map", node)`` /
    ``("alloc", node)`` / ``("mutex", node)`` (a qcow2 node's L2 map, its
    in-flight allocations, its ``s->lock``), ``("cow", node)`` /
    ``("done", node)`` (the backup job's ``CowRequest`` table and
    ``done_bitmap`` on its source), ``("stage", node)`` (a replication node's
    stage), ``("oracle", ...)`` (the oracle's views) and :data:`GLOBAL` (a
    control task: graph, stage, notifiers — depends on everything).  ``lo`` /
    ``hi`` are the byte range ``[lo, hi)``; ``write`` says whether it changes
    the resource; ``request`` names the task whose request makes it;
    ``waits`` marks the condition a task is about to block on (the step that
    ends the wait writes the same resource).  Two accesses conflict when they
    share a resource, their ranges overlap and one writes.

    A named tuple (immutable, fields by name): the engine declares hundreds of
    thousands of them in an exploration, and a tuple is the cheapest to make.
    """

    resource: tuple[str, str]
    lo: int
    hi: int
    write: bool
    request: str = ""
    waits: bool = False

    def conflicts(self, other: Access) -> bool:
        return (self.resource == other.resource and (self.write or other.write)
                and self.lo < other.hi and other.lo < self.hi)

    def __str__(self) -> str:
        kind, name = self.resource
        where = f"{name} " if name else ""
        return f"{'W' if self.write else 'R'} {kind} {where}[{self.lo:#x},{self.hi:#x})"


class Instrument:
    """An observer of a kernel (trio's ``Instrument``): override what you need.

    Add one with :meth:`Kernel.add_instrument`.  ``before_step(task)`` runs as
    the kernel resumes ``task`` (``task.suspended`` still says where it was
    parked, and its :meth:`_Suspend.accesses` take effect now);
    ``after_step(task)`` once it yielded or ended and the tasks it woke were
    made runnable; ``on_access(task, access)`` for each :class:`Access` the
    running code declares (:func:`touch`); ``on_event(event)`` for every
    event, traced or not.  Every method is a no-op by default, and the kernel
    calls only the ones a class overrides (decided when it is added).

    ``access_sink``: a list instead of ``on_access`` — the kernel appends
    ``(resource, lo, hi, write, waits)`` to it for each declared access, with
    no :class:`Access` made and no call (the explorer's recorder, which sees
    hundreds of thousands of them).

    An instrument that raises is removed from the kernel with an
    :class:`~labkit.errors.InstrumentWarning` (as trio does): the run, and the
    outcome of the task that was running, stay what they would have been.
    """

    access_sink: list[tuple[tuple[str, str], int, int, bool, bool]] | None = None

    def before_step(self, task: Task) -> None:
        """``task`` is about to run."""

    def after_step(self, task: Task) -> None:
        """``task`` yielded, blocked or ended."""

    def on_access(self, task: Task, access: Access) -> None:
        """The running ``task`` declared ``access``."""

    def on_event(self, event: Event) -> None:
        """``event`` was recorded (also with ``kernel.tracing`` off; then ``seq`` is -1).

        The kernel makes the :class:`Event` only for instruments that override
        this method.
        """


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One entry of a trace: a scheduling decision, a block request start or end...

    ``seq`` numbers events from 0 in the order they happened; ``kind`` says what
    happened (``run``, ``point``, ``wait``, ``wake``, ``done``, ``failed``,
    ``req-start``, ``req-end``, ``cow-begin``...); ``node``, ``offset`` and
    ``length`` locate block events; ``op`` is the typed what of it — the
    I/O of a ``point`` (``io-read``, ``io-write``, ``io-zero``, ``meta``), the
    type of a tracked request (``read``, ``write``, ``zero``) — and
    ``detail`` is display-only text (no code outside the kernel decides
    anything from it).
    """

    FIELDS: ClassVar[tuple[str, ...]] = ("seq", "task", "kind", "node", "offset", "length",
                                         "detail", "op")

    seq: int
    task: str
    kind: str
    node: str = ""
    offset: int = -1
    length: int = -1
    detail: str = ""
    op: str = ""

    def __init__(self, seq: int, task: str, kind: str, node: str = "", offset: int = -1,
                 length: int = -1, detail: str = "", op: str = "") -> None:
        # Why not the generated __init__: a frozen dataclass sets each field with
        # object.__setattr__ (~2 µs per event, and a run records hundreds).  The
        # slot descriptors set the same fields about 3× faster; the class stays a
        # frozen dataclass (same fields, eq, hash, repr, FrozenInstanceError).
        _set_seq(self, seq)
        _set_task(self, task)
        _set_kind(self, kind)
        _set_node(self, node)
        _set_offset(self, offset)
        _set_length(self, length)
        _set_detail(self, detail)
        _set_op(self, op)

    def describe(self) -> str:
        """``kind node [offset+length] op: detail``: the event in words, without seq or task."""
        where = ""
        if self.node:
            where = f" {self.node}"
            if self.offset >= 0:
                where += f" [{self.offset:#x}+{self.length:#x}]"
        op, detail = self.op, self.detail
        text = f"{op}: {detail}" if op and detail else (op or detail)
        return f"{self.kind}{where}{' ' + text if text else ''}"

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (the trace file's event object)."""
        return {"seq": self.seq, "task": self.task, "kind": self.kind, "node": self.node,
                "offset": self.offset, "length": self.length, "detail": self.detail,
                "op": self.op}

    def __str__(self) -> str:
        return f"{self.seq:4d} {self.task:<14} {self.describe()}"


# The slot descriptors, from the class dict (to a type checker ``Event.seq`` is an int).
_slots = Event.__dict__
_set_seq = _slots["seq"].__set__
_set_task = _slots["task"].__set__
_set_kind = _slots["kind"].__set__
_set_node = _slots["node"].__set__
_set_offset = _slots["offset"].__set__
_set_length = _slots["length"].__set__
_set_detail = _slots["detail"].__set__
_set_op = _slots["op"].__set__
del _slots


_HOOKS = ("before_step", "after_step", "on_access", "on_event")
_new_tuple = tuple.__new__  # an Access without the named tuple's keyword-handling __new__


class EventLog(Sequence[Event]):
    """``kernel.trace``: the events of a run, as a read-mostly list of :class:`Event`.

    Why not a plain list of Events (or of tuples): a long traced run records
    hundreds of thousands of events, and every Event or tuple that outlives
    its creation is counted by Python's cycle collector, whose extra passes
    over the lab's large heap then cost more than recording.  The log keeps
    the fields of all events in one flat list of strings and ints
    (:data:`_STRIDE` per event, in :attr:`Event.FIELDS` order), which the
    collector never visits, and makes the :class:`Event` when someone reads
    it; events read the same whenever they are read.
    """

    __slots__ = ("_flat",)

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._flat: list[Any] = []
        for e in events:
            self._flat.extend(_row(e))

    def __len__(self) -> int:
        return len(self._flat) // _STRIDE

    def _at(self, i: int) -> Event:
        j = i * _STRIDE
        return Event(*self._flat[j:j + _STRIDE])

    def _index(self, index: int) -> int:
        n = len(self._flat) // _STRIDE
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"trace index {index} out of range ({n} events)")
        return i

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        return self._at(self._index(index))

    def __iter__(self):
        flat = self._flat
        for j in range(0, len(flat), _STRIDE):
            yield Event(*flat[j:j + _STRIDE])

    def __setitem__(self, index: int, event: Event) -> None:
        i = self._index(index)
        self._flat[i * _STRIDE:(i + 1) * _STRIDE] = _row(event)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog):
            return self._flat == other._flat
        if isinstance(other, list | tuple):
            return len(other) == len(self) and all(
                isinstance(e, Event) and e == mine for e, mine in zip(other, self, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def append(self, event: Event) -> None:
        self._flat.extend(_row(event))

    def record(self, task: str, kind: str, node: str, offset: int, length: int, detail: str,
               op: str) -> int:
        """Append one event from its fields (the kernel's hot path); return its seq."""
        flat = self._flat
        seq = len(flat) // _STRIDE
        flat += (seq, task, kind, node, offset, length, detail, op)
        return seq

    def clear(self) -> None:
        self._flat.clear()

    def __repr__(self) -> str:
        return f"<EventLog {len(self)} events>"


_STRIDE = len(Event.FIELDS)


def _row(e: Event) -> tuple:
    return (e.seq, e.task, e.kind, e.node, e.offset, e.length, e.detail, e.op)


class _Suspend:
    """The only object a labkit coroutine ever yields to the kernel.

    ``kind`` is ``"point"`` (a scheduling point: still runnable) or
    ``"block"`` (waiting on ``blocker``).  A point locates its I/O (``node``,
    ``offset``, ``length``), names it (``op``: ``io-read``, ``io-write``,
    ``io-zero``, ``meta``...) and says what it does when the task resumes:
    :meth:`accesses`.  ``detail`` is display text.
    """

    __slots__ = ("also", "blocker", "detail", "kind", "length", "node", "offset", "op", "write")

    def __init__(self, kind: str, blocker: Any = None, node: str = "", offset: int = -1,
                 length: int = -1, detail: str = "", op: str = "", write: bool = True,
                 also: tuple[tuple[tuple[str, str], int, int, bool], ...] = ()) -> None:
        self.kind = kind
        self.blocker = blocker
        self.node = node
        self.offset = offset
        self.length = length
        self.detail = detail
        self.op = op
        self.write = write
        self.also = also

    def accesses(self, request: str = "") -> tuple[Access, ...]:
        """What the I/O of this point does when the task resumes (empty for a wait).

        The point's own I/O on ``("data", node)`` over ``[offset, offset+length)``
        (read or write), plus the ``also`` accesses its site declared (e.g. a
        qcow2 L2 update writes the map and resumes holding ``s->lock``).
        """
        if self.kind != "point" or not self.node:
            return ()
        out = [Access(("data", self.node), self.offset, self.offset + self.length, self.write,
                      request)]
        out += [Access(r, lo, hi, w, request) for r, lo, hi, w in self.also]
        return tuple(out)

    def __await__(self):
        return (yield self)


def sched_point(op: str, node: str = "", offset: int = -1, length: int = -1,
                detail: str = "", *, write: bool = True,
                also: tuple[tuple[tuple[str, str], int, int, bool], ...] = ()) -> _Suspend:
    """A scheduling point (``await sched_point("io-read", "secondary", 0, 4096, write=False)``).

    Models a coroutine yielding while its I/O is in flight: other tasks may run
    before this one resumes, and the I/O takes effect when it does.  ``write``
    says whether that I/O changes the node's data (True unless told: the safe
    answer); ``also`` adds accesses ``(resource, lo, hi, write)`` it makes too.
    A point without a node declares nothing, so an explorer must treat it as
    touching everything.
    """
    return _Suspend("point", None, node, offset, length, detail, op, write, also)


class Task:
    """One coroutine under the kernel: a name, a state, a result or an exception.

    ``blocked_on`` is the :class:`CoQueue` (or other waitable) a blocked task
    waits for; ``why_blocked`` says it in words.  ``suspended`` is what the
    task last yielded to the kernel (its scheduling point or wait: ``kind``,
    ``node``, ``offset``, ``length``), or None before its first step and after
    its end: where the task is parked, for widgets and the explorer to read.
    """

    __slots__ = ("_exception", "_make", "_result", "blocked_on", "co_queue_wakeup", "coro",
                 "kernel", "name", "state", "suspended", "tid")

    def __init__(self, kernel: Kernel, tid: int, name: str, coro: Coroutine[Any, Any, Any]
                 | Callable[[], Coroutine[Any, Any, Any]]):
        self.kernel = kernel
        self.tid = tid
        self.name = name
        # Given a function, the coroutine is made when the task first runs: a task that
        # never runs (its lab dropped by a widget's Reset, a cell run again, a run cut
        # short) then has no coroutine for Python to warn "was never awaited" about.
        self.coro: Coroutine[Any, Any, Any] | None = None
        self._make: Callable[[], Coroutine[Any, Any, Any]] | None = None
        if callable(coro):
            self._make = coro
        else:
            self.coro = coro
        self.state = RUNNABLE
        self.blocked_on: Any = None
        self.suspended: _Suspend | None = None
        self._result: Any = None
        self._exception: BaseException | None = None
        # co->co_queue_wakeup: the tasks this one woke, entered right after its next
        # yield or end (the kernel owns the list; see Kernel.wake).
        self.co_queue_wakeup: list[Task] = []

    def make_coroutine(self) -> Coroutine[Any, Any, Any]:
        """The task's coroutine, made now if the task was spawned with a function."""
        if self.coro is None:
            if self._make is None:
                raise StateError(f"task {self.name} was closed before it ran")
            self.coro, self._make = self._make(), None
        return self.coro

    def close(self) -> None:
        """Abandon the task if it has not finished: close its coroutine (its ``finally``
        blocks run, as when Python collects a suspended coroutine)."""
        self._make = None
        coro = self.coro
        if coro is not None and not self.done:
            try:
                coro.close()
            except Exception:  # a coroutine that refuses to close: nothing to keep
                pass

    def __repr__(self) -> str:
        extra = f" on {self.why_blocked}" if self.state == BLOCKED else ""
        return f"<Task {self.name} {self.state}{extra}>"

    @property
    def done(self) -> bool:
        return self.state in (DONE, FAILED)

    @property
    def why_blocked(self) -> str:
        if self.state != BLOCKED:
            return ""
        describe = getattr(self.blocked_on, "describe", None)
        return describe() if describe else str(self.blocked_on)

    @property
    def exception(self) -> BaseException | None:
        """The error the task ended with, or None."""
        return self._exception

    @property
    def result(self) -> Any:
        """The coroutine's return value; raises :class:`TaskFailed` if it failed."""
        if self.state == FAILED:
            raise TaskFailed(f"task {self.name} failed: {self._exception}") from self._exception
        if self.state != DONE:
            raise TaskNotDone(
                f"task {self.name} is {self.state}, not done: run the lab (lab.run() or "
                f"lab.step()) until it finishes before reading its result"
            )
        return self._result

    def end(self, result: Any = None, exception: BaseException | None = None) -> None:
        """The kernel's record of the coroutine's end: its return value, or the error
        it ended with (the task is then FAILED)."""
        self.state = FAILED if exception is not None else DONE
        self._result = result
        self._exception = exception


# --- policies ----------------------------------------------------------------


class Policy:
    """Chooses the next task among the runnable ones (in the order they became runnable).

    Right after a wake-up the kernel offers exactly one task, the woken one
    (see the module docstring): a policy never sees a choice QEMU cannot make.
    """

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        raise NotImplementedError

    def fork(self) -> Policy:
        """A fresh policy in the same starting state (used to replay a prefix)."""
        return self


class FIFO(Policy):
    """The task that became runnable first runs first (deterministic default)."""

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        return runnable[0]

    def __repr__(self) -> str:
        return "FIFO()"


class Random(Policy):
    """A seeded random choice: same seed, same interleaving."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ArgumentError(f"Random(seed): seed must be an int (the same seed gives the "
                                f"same interleaving), got {seed!r}")
        self.seed = seed
        self._rng = random.Random(seed)

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        return runnable[self._rng.randrange(len(runnable))]

    def fork(self) -> Policy:
        return Random(self.seed)

    def __repr__(self) -> str:
        return f"Random({self.seed})"


class Scripted(Policy):
    """Follow a list of task names, one per decision; then ``then`` (FIFO by default).

    A name that is not runnable at its position raises :class:`ScheduleError`.
    With ``strict=True`` the script must cover the whole run: running past its
    end is an error too (that is what replay uses).
    """

    def __init__(self, names: Iterable[str], then: Policy | None = None, strict: bool = False):
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ArgumentError(f"Scripted(names): names must be a list of task names like "
                                f"['vm-read#1', 'nbd-write#1'], got {names!r}")
        names = list(names)
        for name in names:
            if not isinstance(name, str):
                raise ArgumentError(f"Scripted(names): every name must be a task name (str), "
                                    f"got {name!r}")
        if then is not None and not isinstance(then, Policy):
            raise ArgumentError(f"Scripted(then=...): then must be a policy (lk.FIFO(), "
                                f"lk.Random(seed)...), got {then!r}")
        if not isinstance(strict, bool):
            raise ArgumentError(f"Scripted(strict=...): strict must be True or False, got "
                                f"{strict!r}")
        self.names = names
        self.then = then or FIFO()
        self.strict = strict

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        if position < len(self.names):
            want = self.names[position]
            for task in runnable:
                if task.name == want:
                    return task
            names = ", ".join(t.name for t in runnable)
            why = runnable[0].kernel.why_not_runnable(want) if runnable else ""
            raise ScheduleError(position, f"{why or f'task {want!r} is not runnable here'} "
                                          f"(runnable: {names})")
        if self.strict:
            names = ", ".join(t.name for t in runnable)
            raise ScheduleError(
                position, f"the schedule ends after {len(self.names)} choices but tasks are "
                f"still runnable ({names}); it is too short for this scenario")
        return self.then.choose(runnable, position)

    def fork(self) -> Policy:
        return Scripted(self.names, self.then.fork(), self.strict)

    def __repr__(self) -> str:
        return f"Scripted({self.names!r})"


class Chooser(Policy):
    """Ask a callback: ``fn(runnable_tasks) -> Task | name`` (the interactive widget)."""

    def __init__(self, fn: Callable[[Sequence[Task]], Task | str]) -> None:
        if not callable(fn):
            raise ArgumentError(f"Chooser(fn): fn must be a function of the runnable tasks "
                                f"returning one of them (or its name), got {fn!r}")
        self.fn = fn

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        picked = self.fn(runnable)
        for task in runnable:
            if task is picked or task.name == picked:
                return task
        names = ", ".join(t.name for t in runnable)
        raise ScheduleError(position, f"chooser picked {picked!r}, which is not runnable "
                                      f"(runnable: {names})")


# --- the loop ----------------------------------------------------------------


def _spawn_order(task: Task) -> int:
    return task.tid


# The kernel stepping right now (None between steps), as trio's run context: the
# block layer's code finds the current task through it (current_task(), emit(),
# touch()) without a kernel handed down every call.  The task itself is the
# kernel's (Kernel.current).
_running: Kernel | None = None


def _outside_every_kernel(phase: str, info: dict[str, int]) -> None:
    """``gc.callbacks``: no kernel is stepping while the garbage collector runs.

    A lab dropped with a task suspended (mid-copy, say) leaves coroutines that only
    the collector frees, and freeing one throws GeneratorExit into it: its
    ``finally`` blocks (a request's end, ``cow_request_end``) run then.  A collection
    can start inside another lab's step, at any allocation; without this their
    events would land in that lab's trace and break "same scenario + same schedule
    = same trace".  Outside a kernel, :func:`emit`, :func:`touch` and
    :func:`current_task` are no-ops, as for any code that runs between steps.
    """
    global _running, _collecting_inside
    if phase == "start":
        _collecting_inside, _running = _running, None
    else:
        _running, _collecting_inside = _collecting_inside, None


_collecting_inside: Kernel | None = None
gc.callbacks.append(_outside_every_kernel)

_SPAWN, _RUN, _POINT, _WAIT, _WAKE, _DONE, _FAILED = (
    EventKind.SPAWN, EventKind.RUN, EventKind.POINT, EventKind.WAIT, EventKind.WAKE,
    EventKind.DONE, EventKind.FAILED)


def current_task() -> Task | None:
    """The task whose coroutine is executing right now (None outside the kernel)."""
    kernel = _running
    return kernel.current if kernel is not None else None


def _waker_name() -> str:
    task = current_task()
    return task.name if task is not None else ""


def emit(kind: str, node: str = "", offset: int = -1, length: int = -1, detail: str = "",
         op: str = "", args: tuple = ()) -> None:
    """Record a trace event for the current task (no-op outside the kernel).

    ``detail`` may be a ``str.format`` template filled with ``args`` only when
    the event is recorded: a run with tracing off and no instrument listening
    builds no text.
    """
    kernel = _running
    if kernel is not None and kernel.events_wanted:
        task = kernel.current
        assert task is not None  # the kernel sets it before it resumes a coroutine
        kernel.record(task.name, kind, node, offset, length,
                      detail.format(*args) if args else detail, op)


def touch(resource: tuple[str, str], lo: int, hi: int, write: bool, *,
          waits: bool = False) -> None:
    """Declare that the running task reads (or writes) ``resource`` over ``[lo, hi)``.

    Called where the engine's code touches state shared between requests; a
    no-op outside a task or when no :class:`Instrument` listens (one check:
    cheap on the hot path).  ``waits=True`` says the task is about to block
    until someone changes that resource (see :class:`Access`).
    """
    kernel = _running
    if kernel is not None and kernel.accesses_wanted:
        kernel.declare_access(resource, lo, hi, write, waits)


def declare_control() -> None:
    """The running task is a control-plane task (start, checkpoint, stop, failover...).

    It may change the graph, the replication stage, the notifiers and the
    job's bitmaps, none of which is declared access by access: from now on
    every step of it (and of any task it spawns) depends on every other step.
    """
    touch(GLOBAL, 0, 1, True)


class Kernel:
    """The scheduler: spawns tasks, makes one decision per :meth:`step`, records all.

    Observing it is one channel: :attr:`trace` (the events, while
    :attr:`tracing` is on) and the :class:`Instrument` s added with
    :meth:`add_instrument`.  ``current`` is the task whose coroutine runs right
    now (None between steps).
    """

    def __init__(self, policy: Policy | None = None) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise ArgumentError(f"Kernel(policy): policy must be a labkit policy (lk.FIFO(), "
                                f"lk.Random(seed), lk.Scripted([...]), lk.Chooser(fn)) or "
                                f"None, got {policy!r}")
        self.policy: Policy = policy or FIFO()
        self.tasks: dict[str, Task] = {}
        self.trace = EventLog()
        self.schedule: list[str] = []
        self.current: Task | None = None
        self._ready: deque[Task] = deque()
        # Woken tasks that must run at once (qemu_co_queue_run_restart), each with the
        # name of its waker, in the order they run: the head is the only task the
        # next step may run.  See wake() and _resume().
        self._forced: deque[tuple[Task, str]] = deque()
        # The blocked tasks, kept as they block and wake: scanning every task ever
        # spawned made blocked() — called at the end of every run() — O(n²) over a
        # long run.  blocked() sorts them by spawn order, as that scan listed them.
        self._blocked: set[Task] = set()
        self._tracing = True
        self._instruments: list[Instrument] = []
        # Per hook, the (instrument, bound method) pairs that override it, decided when
        # an instrument is added or removed (trio's Instruments): the hot paths check
        # one tuple, never the instruments' classes.
        self._hooks: dict[str, tuple[tuple[Instrument, Callable[..., None]], ...]] = {
            hook: () for hook in _HOOKS}
        self._sinks: tuple[list[tuple[tuple[str, str], int, int, bool, bool]], ...] = ()
        self._configure()

    # Observation ---------------------------------------------------------
    @property
    def tracing(self) -> bool:
        """Whether :attr:`trace` records the events (instruments see them either way)."""
        return self._tracing

    @tracing.setter
    def tracing(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ArgumentError(f"kernel.tracing must be True or False, got {on!r}")
        self._tracing = on
        self._configure()

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        """The instruments observing this kernel, in the order they were added."""
        return tuple(self._instruments)

    def add_instrument(self, instrument: Instrument) -> None:
        """Start calling ``instrument``'s hooks (trio's ``add_instrument``)."""
        if not isinstance(instrument, Instrument):
            raise ArgumentError(f"add_instrument(instrument): an instance of "
                                f"labkit.kernel.Instrument, got {instrument!r}")
        if instrument in self._instruments:
            raise StateError(f"{instrument!r} is already an instrument of this kernel")
        self._instruments.append(instrument)
        self._configure()

    def remove_instrument(self, instrument: Instrument) -> None:
        """Stop calling ``instrument``'s hooks (trio's ``remove_instrument``)."""
        if instrument not in self._instruments:
            raise StateError(f"{instrument!r} is not an instrument of this kernel")
        self._instruments.remove(instrument)
        self._configure()

    def _configure(self) -> None:
        for hook in _HOOKS:
            base = getattr(Instrument, hook)
            self._hooks[hook] = tuple((i, getattr(i, hook)) for i in self._instruments
                                      if getattr(type(i), hook) is not base)
        self._sinks = tuple(i.access_sink for i in self._instruments
                            if i.access_sink is not None)
        # Whether anyone wants the events / the accesses: emit() and touch() check one
        # attribute and skip building text or tuples nobody reads.
        # the hot paths read these attributes, not the dict
        self._on_event = self._hooks["on_event"]
        self._before_step = self._hooks["before_step"]
        self._after_step = self._hooks["after_step"]
        self.events_wanted = self._tracing or bool(self._on_event)
        self.accesses_wanted = bool(self._sinks or self._hooks["on_access"])

    def _call(self, hook: str, *args: Any) -> None:
        for instrument, method in self._hooks[hook]:
            try:
                method(*args)
            except Exception as exc:
                self._instrument_failed(instrument, hook, exc)

    def _instrument_failed(self, instrument: Instrument, hook: str, exc: Exception) -> None:
        # trio's Instruments.call: the instrument goes, the run (and the running task's
        # own outcome) stays as it would have been without it.
        if instrument in self._instruments:
            self._instruments.remove(instrument)
            self._configure()
        warnings.warn(InstrumentWarning(instrument, hook, exc), stacklevel=3)

    def declare_access(self, resource: tuple[str, str], lo: int, hi: int, write: bool,
                       waits: bool) -> None:
        """Hand an access of the running task to the instruments (see :func:`touch`)."""
        for sink in self._sinks:
            sink.append((resource, lo, hi, write, waits))
        if self._hooks["on_access"]:
            task = self.current
            assert task is not None
            self._call("on_access", task,
                       _new_tuple(Access, (resource, lo, hi, write, task.name, waits)))

    def record(self, task: str, kind: str, node: str = "", offset: int = -1, length: int = -1,
               detail: str = "", op: str = "") -> int:
        """Record an event (if tracing) and hand it to the instruments; its seq, or -1."""
        seq = self.trace.record(task, kind, node, offset, length, detail, op) \
            if self._tracing else -1
        if self._on_event:  # the Event is made only if someone listens
            self._call("on_event", Event(seq, task, kind, node, offset, length, detail, op))
        return seq

    # Tasks -----------------------------------------------------------------
    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]
              | Callable[[], Coroutine[Any, Any, Any]]) -> Task:
        """Create a runnable task named ``name`` (names are unique: schedules use them).

        ``coro`` is a coroutine, or a function that makes it when the task first runs.
        """
        if not isinstance(coro, Coroutine) and not callable(coro):
            raise ArgumentError(f"spawn({name!r}, coro): coro must be a coroutine (an "
                                f"``async def`` function called) or a function making one, "
                                f"got {coro!r}")
        error: LabkitError | None = None
        if not isinstance(name, str) or not name:
            error = ArgumentError(f"spawn(name, coro): name must be a non-empty str like "
                                  f"'vm-read#1', got {name!r}")
        elif name in self.tasks:
            error = StateError(f"a task named {name!r} exists already; task names must be "
                               f"unique")
        if error is not None:
            if isinstance(coro, Coroutine):
                coro.close()  # never to run: no "was never awaited" warning
            raise error
        task = Task(self, len(self.tasks), name, coro)
        self.tasks[name] = task
        self._ready.append(task)
        self.record(name, _SPAWN)
        return task

    def runnable(self) -> list[Task]:
        """The tasks the next step may run, in the order they became runnable.

        Right after a wake-up that is exactly one task, the woken one
        (:attr:`forced`): QEMU enters it before anything else runs.
        """
        if self._forced:
            return [self._forced[0][0]]
        return list(self._ready)

    def has_runnable(self) -> bool:
        """Whether the next step can run a task (without building :meth:`runnable`'s list)."""
        return bool(self._forced or self._ready)

    @property
    def forced(self) -> tuple[Task, str] | None:
        """``(task, waker)`` when the next step must run ``task``, woken by ``waker``.

        ``qemu_co_queue_run_restart``: a task woken by a ``CoQueue`` restart, a
        ``CoMutex`` unlock or a ``qemu_co_queue_next`` runs as soon as its waker
        yields or ends, before any other task.  None when the policy may choose.
        """
        return self._forced[0] if self._forced else None

    def why_not_runnable(self, name: str) -> str:
        """Why the next step cannot run task ``name``, in words ("" if it can)."""
        task = self.tasks.get(name)
        if task is None:
            return f"task {name!r} is not runnable here: there is no task of that name"
        if task.done:
            return f"task {name!r} has already finished"
        if task.state == BLOCKED:
            return f"task {name!r} is blocked (it waits for {task.why_blocked})"
        if self._forced and self._forced[0][0] is not task:
            woken, waker = self._forced[0]
            by = f" by {waker}" if waker else ""
            return (f"{woken.name} was woken{by} and runs at once "
                    f"(qemu_co_queue_run_restart); {name} cannot run here")
        return ""

    def close(self) -> None:
        """Abandon the run: close the coroutine of every unfinished task (a lab replaced
        by a rebuild, a run cut short).  The kernel is not stepped again."""
        for task in self.tasks.values():
            task.close()

    def blocked(self) -> list[Task]:
        """The blocked tasks, in the order they were spawned."""
        return sorted(self._blocked, key=_spawn_order)

    def wake(self, tasks: Iterable[Task], waker: str = "") -> None:
        """Wake blocked tasks: they run at once, FIFO, after the current task next yields.

        ``qemu_co_queue_restart_all`` / ``_next`` put the waiters on the current
        coroutine's wake-up list; ``qemu_coroutine_enter`` enters them right after
        it yields or ends (``qemu_co_queue_run_restart``).  Outside a task of this
        kernel (a lab call between steps, or a coroutine of another lab being
        garbage-collected while this one steps) they only become runnable.
        """
        cur = self.current
        for task in tasks:
            if cur is not None and cur is not task:
                cur.co_queue_wakeup.append(task)
            else:
                self._make_runnable(task, waker)

    def _make_runnable(self, task: Task, waker: str, forced: bool = False) -> bool:
        if task.state != BLOCKED:
            return False
        task.state = RUNNABLE
        task.blocked_on = None
        self._blocked.discard(task)
        if not forced:
            self._ready.append(task)
        self.record(task.name, _WAKE, detail=f"by {waker}" if waker else "")
        return True

    # Scheduling -----------------------------------------------------------
    def step(self) -> Event:
        """Make one scheduling decision and run that task to its next yield or end.

        After a wake-up the decision has one candidate, the woken task (the
        policy is still asked, so that a script is checked and a schedule
        names every step).  A task that awaits something other than a labkit
        scheduling point fails with :class:`~labkit.errors.ForeignAwaitError`,
        which this call raises (the task is then ``failed``, not lost).
        """
        runnable: Sequence[Task]
        if self._forced:
            task, _ = self._forced[0]
            runnable = [task]
        elif self._ready:
            # The deque itself, not a copy: a copy per decision made a par of n tasks
            # O(n²).  Policies only read it, and it does not change until they return.
            runnable = self._ready
        else:
            blocked = self.blocked()
            if blocked:
                raise Deadlock([(t.name, t.why_blocked) for t in blocked])
            raise StateError("no task is runnable: every task has finished")
        chosen = self.policy.choose(runnable, len(self.schedule))
        if self._forced:
            if chosen is not task:
                name = getattr(chosen, "name", chosen)
                raise ScheduleError(len(self.schedule), self.why_not_runnable(str(name))
                                    or f"the policy chose {chosen!r}, not runnable here")
            self._forced.popleft()
        else:
            task = chosen
            self._ready.remove(task)
        self.schedule.append(task.name)
        decision = Event(self.record(task.name, _RUN), task.name, _RUN)
        self._resume(task)
        return decision

    def run(self, max_steps: int | None = None) -> None:
        """Step until nothing is runnable; raise :class:`Deadlock` if tasks stay blocked.

        Like :meth:`step`, raises the :class:`~labkit.errors.ForeignAwaitError` of a
        task that awaited something foreign (a later call runs the other tasks on).
        """
        steps = 0
        while self._ready or self._forced:
            if max_steps is not None and steps >= max_steps:
                return
            self.step()
            steps += 1
        blocked = self.blocked()
        if blocked:
            raise Deadlock([(t.name, t.why_blocked) for t in blocked])

    def _resume(self, task: Task) -> None:
        global _running
        if self._before_step:
            self._call("before_step", task)
        coro = task.coro or task.make_coroutine()
        outer, self.current = self.current, task
        prev, _running = _running, self
        task.suspended = None
        try:
            request = coro.send(None)
            while type(request) is not _Suspend:
                # trio's way: a foreign yield (an asyncio future, a bare ``yield``...) is
                # thrown back into the task as an error; the task may handle it, or it
                # fails with it — never left runnable but in no queue.
                request = coro.throw(ForeignAwaitError(task.name, request))
        except StopIteration as stop:
            task.end(result=stop.value)
            self.record(task.name, _DONE)
        except ForeignAwaitError as exc:
            # A bug in the model or a test, not an outcome of the run: the task fails and
            # step() raises it.
            task.end(exception=exc)
            self.record(task.name, _FAILED, detail=str(exc))
            raise
        except LabkitError as exc:
            # An I/O or QEMU error is an outcome of the run, kept on the task.
            task.end(exception=exc)
            self.record(task.name, _FAILED, detail=str(exc))
        except BaseException as exc:
            # Anything else is a bug in a model or a test: never swallow it.
            task.end(exception=exc)
            self.record(task.name, _FAILED, detail=f"{type(exc).__name__}: {exc}")
            raise
        else:
            task.suspended = request
            if request.kind == "point":
                self._ready.append(task)
                self.record(task.name, _POINT, request.node, request.offset, request.length,
                            request.detail, request.op)
            else:
                task.state = BLOCKED
                task.blocked_on = request.blocker
                self._blocked.add(task)
                self.record(task.name, _WAIT, detail=task.why_blocked)
        finally:
            _running, self.current = prev, outer
            wakeups, task.co_queue_wakeup = task.co_queue_wakeup, []
            if wakeups:
                # qemu_co_queue_run_restart: the woken tasks run next, FIFO, ahead of
                # the tasks still to run from an outer wake-up (their own wake-ups are
                # entered before the rest of this list: depth first, as the nested
                # qemu_coroutine_enter calls do).
                woken = [(t, task.name) for t in wakeups if self._make_runnable(t, task.name,
                                                                                 forced=True)]
                self._forced.extendleft(reversed(woken))
            if self._after_step:
                self._call("after_step", task)


# --- synchronisation ---------------------------------------------------------


class CoQueue:
    """QEMU's ``CoQueue``: FIFO waiters, entered when the waker next yields — then at once.

    A restarted waiter does not run while its waker runs on (the waker keeps
    going to its next scheduling point); as soon as the waker yields or ends,
    the waiters run, FIFO, each to its own next scheduling point, before any
    other task (``qemu_co_queue_run_restart``; see the module docstring).

    ``label`` says what a waiter waits for, as the widgets and Deadlock show it
    (e.g. "CowRequest of vm-read#1 on clusters 0-0").
    """

    __slots__ = ("_waiters", "label")

    def __init__(self, label: str = "a CoQueue") -> None:
        self.label = label
        self._waiters: deque[Task] = deque()

    def describe(self) -> str:
        return self.label

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def waiters(self) -> list[Task]:
        return list(self._waiters)

    async def wait(self) -> None:
        """``qemu_co_queue_wait``: block the current task until restarted."""
        task = current_task()
        if task is None:
            raise StateError("CoQueue.wait() called outside a labkit task")
        self._waiters.append(task)
        await _Suspend("block", self)

    def restart_all(self) -> None:
        """``qemu_co_queue_restart_all``: wake every waiter; they run, FIFO, right after
        the current task's next yield or end, before anything else."""
        if not self._waiters:
            return
        waiters = list(self._waiters)
        self._waiters.clear()
        kernel = waiters[0].kernel
        kernel.wake(waiters, _waker_name())

    def next(self) -> bool:
        """``qemu_co_queue_next``: wake the first waiter (it runs right after the current
        task's next yield or end, before anything else); True if there was one."""
        if not self._waiters:
            return False
        task = self._waiters.popleft()
        task.kernel.wake([task], _waker_name())
        return True


class CoMutex:
    """QEMU's ``CoMutex`` (``util/qemu-coroutine-lock.c``), 2.8's or 2.9+'s unlock.

    ``handoff=False`` is 2.8: ``qemu_co_mutex_unlock`` clears ``locked`` and calls
    ``qemu_co_queue_next``: the first waiter runs right after the unlocking task
    yields, before any other task — but the unlocking task itself may lock it
    again before it yields; the waiter then finds it held and waits again.

    ``handoff=True`` is 2.9 and later (the thread-safe, lock-free CoMutex):
    ``qemu_co_mutex_unlock`` pops the first waiter and calls ``qemu_co_mutex_wake`` on
    it *without* releasing ``locked``: the waiter owns the mutex from that
    moment, and the unlocking task, should it lock again before yielding, queues
    behind it.  A qcow2 node sets its ``s->lock``'s ``handoff``
    from its block graph's era.
    """

    __slots__ = ("_queue", "handoff", "holder", "name")

    def __init__(self, name: str = "CoMutex", *, handoff: bool = False) -> None:
        self.name = name
        self.holder: Task | None = None
        self.handoff = handoff
        self._queue = CoQueue(f"{name} held")

    @property
    def locked(self) -> bool:
        return self.holder is not None

    async def lock(self) -> None:
        """``qemu_co_mutex_lock``: take it, or wait (FIFO) until it is free or handed over."""
        while self.holder is not None:
            self._queue.label = f"{self.name} held by {self.holder.name}"
            await self._queue.wait()
            if self.handoff:  # qemu_co_mutex_wake made this task the holder
                return
        self.holder = current_task()

    def unlock(self) -> None:
        """``qemu_co_mutex_unlock``: release and wake the first waiter (2.8), or hand the
        mutex over to it (2.9+: ``qemu_co_mutex_wake``, ``locked`` stays set)."""
        if self.holder is None:
            raise StateError(f"{self.name} unlocked while not locked")
        if self.handoff and len(self._queue):
            self.holder = self._queue.waiters[0]
        else:
            self.holder = None
        self._queue.next()
