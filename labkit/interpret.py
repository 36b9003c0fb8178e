"""One scenario interpreter: what a scenario's lines *mean*, for every backend.

A scenario (:mod:`labkit.scenario`) is played the same way on the simulator
and on a real QEMU 7.2: the :class:`Interpreter` walks its steps, starts each
command (or every command of a ``par`` block) on a :class:`Backend`, waits for
them to end, and then — in this one place — records each command's
:class:`CommandOutcome`, logs failures (``line N: TEXT: TASK failed: MESSAGE``),
checks ``vread ... BYTE|orig`` and ``expect`` lines (:func:`vread_failure`,
:func:`expect_failure`) and takes ``dump`` snapshots.  Task names
(``nbd-write#2``: QEMU has no such names, they are the simulator's kernel
tasks) are made by :class:`TaskNames` only; :func:`task_names` lists the
names a scenario can create.  The consistency oracle is fed through
:class:`OracleFeed` by both backends, at the moments each request starts and
ends.

The backend protocol (implement it to run scenarios on another machine;
the real-QEMU race comparison builds on it):

``begin(cmd) -> str``
    Start ``cmd`` (an I/O or control :class:`~labkit.scenario.Command`) and
    return its task name, made with the backend's :class:`TaskNames`.  A
    sequential backend may run the command to its end right here.
``busy() -> bool``
    True while some started command can still make progress by one more
    scheduling decision (the simulator: a task is runnable).  The
    interpreter does not touch a step's results while the backend is busy.
``settle() -> None``
    Run every started command to its end.  Raise
    :class:`~labkit.errors.Deadlock` if some can never end.
``outcome(cmd, task) -> CommandOutcome``
    After :meth:`settle`: how ``task`` ended (error message and errno, or
    the bytes a read returned).
``background_failures() -> list[str]``
    After :meth:`settle`: failures of tasks no command started (the
    failover's ``commit#N``), as log lines; each reported once.
``layers() -> dict[str, Layer | None]``
    Every layer (``secondary``, ``hidden``, ``active``, ``vm-view``) for a ``dump``.
``layer(name) -> Layer | None``
    One layer, for an ``expect`` (None: it cannot be read now).
``state() -> str``
    The replication stage (``none``, ``running``, ``done``...).
``original(offset, length) -> bytes``
    The secondary disk's initial contents there (``orig``).

Results go to a :class:`Record` (``dumps``, ``log``,
``expectation_failures``, ``outcomes``): a lab's
:class:`~labkit.run.ScenarioResult` or a :class:`~labkit.qemu.QemuRun`.

Time and memory are linear in the scenario's length and in a ``par``
block's size: each step is looked at once, each task's outcome read once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from .layers import SECTOR, Layer
from .oracle import Oracle, Violation
from .scenario import Command, Par, Scenario

#: The task kind of each I/O and control command (task names are ``KIND#N``).
TASK_KINDS = {
    "pwrite": "nbd-write",
    "vwrite": "vm-write",
    "vread": "vm-read",
    "start": "start",
    "checkpoint": "checkpoint",
    "stop": "stop",
    "failover": "failover",
    "fleece": "fleece",          # image fleecing (labkit.fleecing)
    "cread": "client-read",
    "inject-error": "inject",
}


class TaskNames:
    """``KIND#N``, numbered per kind from 1 in the order tasks are created (one place)."""

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def peek(self, kind: str) -> str:
        """The name the next task of ``kind`` gets (nothing is counted)."""
        return f"{kind}#{self._counters.get(kind, 0) + 1}"

    def take(self, kind: str) -> str:
        """Count a task of ``kind`` and return its name."""
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return f"{kind}#{n}"

    def for_command(self, cmd: Command) -> str:
        """Count the task ``cmd`` starts and return its name."""
        return self.take(TASK_KINDS[cmd.op])


def task_names(scenario: Scenario) -> list[str]:
    """Every task name the scenario can create, in the order they are spawned.

    A ``failover`` may also start the active commit, ``commit#N``.
    """
    names = TaskNames()
    out: list[str] = []
    for c in scenario.commands:
        if c.op in TASK_KINDS:
            out.append(names.for_command(c))
            if c.op == "failover":
                out.append(names.take("commit"))
    return out


class CommandOutcome:
    """What one command returned: ``error`` (None: it succeeded), its ``errno``, read ``data``.

    ``task`` is the simulator's name for the command's task (``nbd-write#2``),
    so that two backends' outcomes can be matched command by command.
    """

    __slots__ = ("command", "data", "errno", "error", "task")

    def __init__(self, command: Command, task: str, error: str | None = None,
                 errno: int | None = None, data: bytes | None = None) -> None:
        self.command = command
        self.task = task
        self.error = error
        self.errno = errno
        self.data = data

    def __repr__(self) -> str:
        return f"<CommandOutcome line {self.command.line} {self.task}: {self.error or 'ok'}>"


class OracleFeed:
    """The oracle's view of I/O requests, fed alike by every backend.

    ``begin`` when a request starts (a VM read or write: the oracle notes what
    may be read concurrently), ``end`` when it ends; ``end`` returns the
    :class:`~labkit.oracle.Violation` a read broke, if any.
    """

    __slots__ = ("oracle",)

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle

    def begin(self, op: str, name: str, offset: int, length: int, byte: int | None) -> None:
        if op == "vwrite":
            self.oracle.vm_write_started(name, offset, length, byte or 0)
        elif op == "vread":
            self.oracle.vm_read_started(name, offset, length)

    def end(self, op: str, name: str, offset: int, length: int, byte: int | None, ok: bool,
            data: bytes | None = None) -> Violation | None:
        if op == "pwrite":
            if ok:
                self.oracle.primary_write_done(name, offset, length, byte or 0)
        elif op == "vwrite":
            self.oracle.vm_write_done(name, ok)
        elif op == "vread":
            return self.oracle.vm_read_done(name, data if ok else None)
        return None


class Backend(Protocol):
    """A machine that runs scenario commands (see the module docstring for each method)."""

    def begin(self, cmd: Command) -> str: ...
    def busy(self) -> bool: ...
    def settle(self) -> None: ...
    def outcome(self, cmd: Command, task: str) -> CommandOutcome: ...
    def background_failures(self) -> list[str]: ...
    def layers(self) -> dict[str, Layer | None]: ...
    def layer(self, name: str) -> Layer | None: ...
    def state(self) -> str: ...
    def original(self, offset: int, length: int) -> bytes: ...


class Record(Protocol):
    """Where a run's results go (a lab's :class:`~labkit.run.ScenarioResult`, a QemuRun)."""

    dumps: list[tuple[str, dict[str, Layer | None]]]
    log: list[str]
    expectation_failures: list[str]
    outcomes: list[CommandOutcome]


Original = bytes | Callable[[int, int], bytes]


def _orig(original: Original, offset: int, length: int) -> bytes:
    if callable(original):
        return original(offset, length)
    return original[offset:offset + length]


def expect_failure(cmd: Command, layer: Layer | None, original: Original,
                   state: str = "") -> str | None:
    """Why ``expect LAYER OFF LEN WHAT`` does not hold on ``layer``; None when it holds.

    ``layer`` is None when it cannot be read (the VM view before start);
    ``state`` is the replication stage, for that message.  ``original`` is the
    secondary disk's initial fill (for ``orig``): its bytes, or a function
    ``(offset, length) -> bytes``.  Shared by every backend, so all judge alike.
    """
    if layer is None:
        return f"layer {cmd.layer} cannot be read now (replication {state})"
    s0, s1 = cmd.offset // SECTOR, (cmd.offset + cmd.length) // SECTOR
    alloc = layer.alloc[s0:s1]
    data = layer.read(cmd.offset, cmd.length)  # only the range, not the whole layer
    if cmd.what == "unalloc":
        ok, why = not alloc.any(), "some sectors are allocated"
    elif cmd.what == "alloc":
        ok, why = bool(alloc.all()), "some sectors are not allocated"
    elif cmd.what == "orig":
        ok = bool(alloc.all()) and data == _orig(original, cmd.offset, cmd.length)
        why = "the data is not the original"
    elif cmd.what == "zero":
        ok, why = bool(alloc.all()) and not any(data), "the data is not all zero"
    else:
        ok = bool(alloc.all()) and data == bytes([cmd.byte or 0]) * cmd.length
        why = f"the data is not all {cmd.byte:#04x}"
    return None if ok else why


def vread_failure(cmd: Command, data: bytes | None, original: Original) -> str | None:
    """Why the ``data`` a ``vread OFF LEN BYTE|orig`` returned is not what it expects.

    None when it is (or when the ``vread`` expects nothing).  The reason reads
    after the task's name: ``"read other data than 0xbb"``.
    """
    if cmd.what is None:
        return None
    want = (_orig(original, cmd.offset, cmd.length) if cmd.what == "orig"
            else bytes([cmd.byte or 0]) * cmd.length)
    if data == want:
        return None
    what = "the original" if cmd.what == "orig" else f"{cmd.byte:#04x}"
    return f"read other data than {what}"


class Interpreter:
    """Plays a scenario on a backend, step by step, into a record.

    :meth:`advance` goes as far as it can without a scheduling decision: it
    finishes the current step once the backend is no longer busy, takes
    ``dump``/``expect`` lines, and starts the next command or ``par`` block.
    :meth:`play` plays to the end.  :attr:`current` is the step whose
    commands are running (None when :attr:`done`).
    """

    def __init__(self, backend: Backend, scenario: Scenario, record: Record) -> None:
        self.backend = backend
        self.scenario = scenario
        self.record = record
        self.index = 0  # the step being run
        self._running: Sequence[tuple[Command, str]] | None = None

    @property
    def done(self) -> bool:
        return self.index >= len(self.scenario.steps)

    @property
    def current(self) -> Command | Par | None:
        return None if self.done else self.scenario.steps[self.index]

    def advance(self) -> None:
        """Go on until a started step needs scheduling decisions, or to the end."""
        steps, backend = self.scenario.steps, self.backend
        while self.index < len(steps):
            if self._running is not None:
                if backend.busy():
                    return
                running, self._running = self._running, None
                self.index += 1
                self._finish(running)
                continue
            step = steps[self.index]
            if isinstance(step, Par):
                self._running = [(c, backend.begin(c)) for c in step.commands]
            elif step.op == "dump":
                self.record.dumps.append((step.title, backend.layers()))
                self.index += 1
            elif step.op == "expect":
                self._expect(step)
                self.index += 1
            else:
                self._running = [(step, backend.begin(step))]

    def play(self) -> None:
        """Play the rest of the scenario."""
        self.advance()
        while not self.done:
            self.backend.settle()
            self.advance()

    def _finish(self, running: Sequence[tuple[Command, str]]) -> None:
        backend, record = self.backend, self.record
        backend.settle()  # nothing can run: a Deadlock if some task is stuck
        for cmd, task in running:
            outcome = backend.outcome(cmd, task)
            record.outcomes.append(outcome)
            if outcome.error is not None:
                record.log.append(f"line {cmd.line}: {cmd.text}: {task} failed: "
                                  f"{outcome.error}")
            elif cmd.op in ("vread", "cread") and cmd.what is not None:
                why = vread_failure(cmd, outcome.data, backend.original)
                if why is not None:
                    self._failed(cmd, f"{task} {why}")
        record.log.extend(backend.background_failures())

    def _failed(self, cmd: Command, why: str) -> None:
        self.record.expectation_failures.append(f"line {cmd.line}: {cmd.text}: {why}")

    def _expect(self, cmd: Command) -> None:
        backend = self.backend
        why = expect_failure(cmd, backend.layer(cmd.layer or ""), backend.original,
                             backend.state())
        if why is not None:
            self._failed(cmd, why)


__all__ = ["TASK_KINDS", "Backend", "CommandOutcome", "Interpreter", "OracleFeed", "Record",
           "TaskNames", "expect_failure", "task_names", "vread_failure"]
