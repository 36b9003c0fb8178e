"""labkit's exceptions: a small hierarchy, each naming what was wrong and what is allowed.

Every rejected call leaves the engine's state unchanged.  Two families matter to
a trainee:

* :class:`BlockError` models a failed I/O request in QEMU: it carries an
  ``errno`` (``EIO``, ``EINVAL``, ``ENOTSUP``...) and a QEMU-like message.
  A write that fails this way is an *outcome* of the simulation (the NBD write
  returned ``-EIO``), recorded on its task.
* :class:`ReplicationError` models QEMU's ``Error **errp``: the exact message
  string that QEMU's replication driver or backup job would report.

Everything else is a usage error (bad argument, bad scenario, bad trace file),
a state that does not allow the call, or an error of the real-QEMU backend.

Every exception class of labkit is defined here (a test walks labkit's source
for classes and bare built-in raises elsewhere); a module may re-export the
ones it raises.  Where callers may catch a built-in, the class is also that
built-in (``ConfigError`` is a ``ValueError``, ``ArgumentError`` a
``TypeError``, ``StateError`` a ``RuntimeError``, ``UnknownName`` a
``KeyError``).
"""

from __future__ import annotations

import errno as _errno


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose."""


class ConfigError(LabkitError, ValueError):
    """A bad value for a lab setting or call argument: names it and what is allowed.

    Also a ``ValueError`` (as Hypothesis's ``InvalidArgument`` is), so code
    written ``except ValueError`` keeps working.
    """


class ArgumentError(LabkitError, TypeError):
    """An argument of the wrong type (``None`` for a byte, a ``bool``, a ``str`` size...).

    Also a ``TypeError``, so ``except TypeError`` code keeps working.
    """


class LimitError(ConfigError):
    """A size, count, repeat factor or nesting depth past labkit's documented bound."""


# --- block I/O -------------------------------------------------------------


class BlockError(LabkitError, OSError):
    """A block request failed, as ``-errno`` does in QEMU's block layer."""

    errno: int  # always set (OSError's may be None)

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)
        self.errno = err
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({_errno.errorcode.get(self.errno or 0, self.errno)})"


class BadRequest(BlockError, ValueError):
    """A request QEMU's ``bdrv_check_byte_request`` (or labkit) refuses up front."""


class AlignmentError(BadRequest):
    """Offset or length not a multiple of the node's ``request_alignment``."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.EINVAL, message)


class RangeError(BadRequest):
    """A request that is negative or reaches past the end of the node."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.EIO, message)


class NotSupported(BlockError):
    """The driver does not implement the operation (``-ENOTSUP``)."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.ENOTSUP, message)


# --- graph and jobs --------------------------------------------------------


class GraphError(LabkitError, ValueError):
    """The block graph would become invalid (size mismatch, backing loop...)."""


class JobError(LabkitError):
    """A block job cannot be created or used this way (QEMU's job errors)."""


class ReplicationError(LabkitError):
    """An error reported by the replication driver, with QEMU's exact message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StateError(LabkitError, RuntimeError):
    """The lab or a task is not in a state that allows this call.

    Also a ``RuntimeError``, so ``except RuntimeError`` code keeps working.
    """


# --- kernel ----------------------------------------------------------------


class Deadlock(LabkitError):
    """Tasks remain blocked and none can run; names each task and what it waits for."""

    def __init__(self, blocked: list[tuple[str, str]]) -> None:
        self.blocked = blocked
        lines = "; ".join(f"{name} waits for {what}" for name, what in blocked)
        super().__init__(f"deadlock: no task can run, {len(blocked)} blocked: {lines}")


class ForeignAwaitError(StateError, TypeError):
    """A labkit task awaited something that is not a labkit scheduling point.

    labkit's kernel is its own loop (never asyncio's): a task may await only
    ``sched_point()``, a ``CoQueue`` or a ``CoMutex``.  As trio does, the kernel
    throws this error into the task at the foreign ``await``; the task fails
    with it and ``Kernel.step()`` / ``run()`` raise it.  Also a ``TypeError``.
    """

    def __init__(self, task: str, awaited: object) -> None:
        self.task = task
        self.awaited = awaited
        super().__init__(
            f"task {task} awaited {awaited!r}, which is not a labkit scheduling point: "
            f"labkit tasks run on labkit's own kernel (not asyncio's or trio's loop) and may "
            f"only await sched_point(), a CoQueue or a CoMutex")


class InstrumentWarning(RuntimeWarning):
    """A kernel instrument raised: the kernel removed it and ran on without it.

    ``instrument``, ``hook`` (``before_step``...) and ``exception`` say which
    and why; the task that was running keeps its own outcome.
    """

    def __init__(self, instrument: object, hook: str, exception: BaseException) -> None:
        self.instrument = instrument
        self.hook = hook
        self.exception = exception
        super().__init__(f"instrument {instrument!r} raised {type(exception).__name__}: "
                         f"{exception} in {hook}(); it was removed from the kernel (the run "
                         f"goes on without it)")


class TaskFailed(LabkitError):
    """Reading the result of a task that ended with an error; ``__cause__`` is it."""


class TaskNotDone(StateError):
    """Reading the result of a task that has not finished yet."""


class ScheduleError(LabkitError, ValueError):
    """A schedule that does not fit the run: names the choice and the reason.

    ``position`` counts from 0 (the number of decisions made before it); the message
    counts choices from 1, as a person does, and says both: "choice #6 (after 5
    decisions)", so that it reads right next to "schedule so far (5 decisions)".
    """

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        made = f"{position} decision{'' if position == 1 else 's'}"
        super().__init__(f"choice #{position + 1} (after {made}): {reason}")


# --- files and input -------------------------------------------------------


class ScenarioError(LabkitError, ValueError):
    """A malformed scenario: the line number, the offending text, what was expected."""

    def __init__(self, line: int, text: str, expected: str, source: str = "") -> None:
        self.line = line
        self.text = text
        self.expected = expected
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}scenario line {line}: {text!r}: {expected}")


class ScenarioLimitError(ScenarioError, LimitError):
    """A scenario past a documented bound (its length, a ``par`` block's size...).

    Both a :class:`ScenarioError` (it names the line) and a :class:`LimitError`.
    """


class UnknownName(ConfigError, KeyError):
    """A lookup by name that found nothing (also a ``KeyError``, as a failed lookup)."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class UnknownScenario(UnknownName):
    """No shipped scenario has this name."""


class TraceFormatError(LabkitError, ValueError):
    """A trace or schedule file that is malformed or from a newer labkit."""


# --- the explorer, the editions --------------------------------------------


class NondeterminismError(LabkitError):
    """The same scenario and the same choices gave two different runs (a bug in a model).

    ``index`` is where they first differ (a trace event or a decision),
    ``first`` and ``second`` what each run had there (None where one ended).
    """

    def __init__(self, message: str, index: int = -1, first: object = None,
                 second: object = None) -> None:
        self.index = index
        self.first = first
        self.second = second
        super().__init__(message)


class EditionError(LabkitError, OSError):
    """A pristine copy that cannot be found or written: says where it looked."""


class RunAborted(Exception):
    """The explorer stops one run early (sleep-set blocked or over the preemption bound).

    Control flow inside :mod:`labkit.explore`, never seen by a caller: not a
    :class:`LabkitError`, so that nothing that catches labkit errors (the
    kernel keeps them as a task's outcome) takes it for one.  ``why`` is
    ``"sleep"`` or ``"bound"``.
    """

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


# --- the real-QEMU backend (labkit.qemu) --------------------------------------

DEBIAN_PACKAGES = "qemu-system-x86 and qemu-utils"


class BackendError(LabkitError):
    """Base class of the real-QEMU backend's errors."""


class QemuNotAvailable(BackendError):
    """No usable QEMU: the binary is missing or lacks block replication."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"{reason}. The real-QEMU backend needs qemu-system-x86_64 with the "
            f"'replication' block driver and the QMP command xen-set-replication, "
            f"plus qemu-img: install the Debian packages {DEBIAN_PACKAGES} "
            f"(apt-get install qemu-system-x86 qemu-utils; on Binder, list them "
            f"in binder/apt.txt)."
        )


class QemuError(BackendError):
    """QEMU refused a command, died, or did not answer in time.

    ``desc`` is QMP's error description when QEMU answered with an error,
    else None; ``command`` is the QMP command (or operation) that failed;
    ``log_tail`` holds the last lines of QEMU's log (stdout and stderr); the
    message ends with them.
    """

    def __init__(
        self,
        message: str,
        *,
        desc: str | None = None,
        command: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        self.desc = desc
        self.command = command
        self.log_tail = log_tail or ""
        text = message
        if log_tail is not None:
            if log_tail.strip():
                text += "\n--- last lines of qemu.log ---\n" + log_tail.rstrip("\n")
            elif desc is None:
                text += "\n--- qemu.log is empty ---"
        super().__init__(text)


class QemuTimeout(QemuError, TimeoutError):
    """QEMU (or its QMP monitor) did not answer within the time allowed."""


class ScratchDirError(BackendError, OSError):
    """The scratch directory for QEMU's images and sockets is unsafe or unusable."""


class NbdError(OSError, BackendError):
    """An NBD command or option failed; ``errno`` is the server's error."""


class NbdDisconnected(NbdError):
    """The server closed the connection or broke the protocol."""
