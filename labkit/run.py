"""A scenario played on the simulator: its backend, its step-by-step player, its result.

:class:`labkit.interpret.Interpreter` says what a scenario's lines mean for
every backend; this module is the simulator's side of it.
:class:`SimBackend` turns commands into the lab's kernel tasks,
:class:`ScenarioRun` plays a scenario one scheduling decision at a time (the
widgets drive it), and :class:`ScenarioResult` holds what the runs produced —
the same four fields, with the same names, as the real-QEMU run
(:class:`labkit.qemu.QemuRun`), so a comparison, the CLI's report and the
explorer's outcome digest read either alike.

The lab is known here only by what these classes call on it
(``primary_write``, ``run``, ``layers``...): this module sits below
:mod:`labkit.lab`, which builds labs and plays scenarios on them with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ArgumentError, BlockError, ReplicationError, StateError
from .interpret import CommandOutcome, Interpreter
from .kernel import Event, Task
from .layers import Layer
from .scenario import Command, Par, Scenario

if TYPE_CHECKING:
    from .lab import Lab


@dataclass(eq=False)
class ScenarioResult:
    """What playing scenarios on a lab produced (the interpreter's
    :class:`~labkit.interpret.Record`), field for field as
    :class:`labkit.qemu.QemuRun` has them.

    ``dumps``: ``[(title, {layer: Layer | None})]``, one per ``dump`` (or
    :meth:`labkit.Lab.dump`); ``log``: the failures of commands, the oracle's
    violations and the failover errors QMP drops, in the order they happened;
    ``expectation_failures``: the ``expect`` lines and ``vread ... BYTE`` checks
    that did not hold; ``outcomes``: one :class:`~labkit.interpret.CommandOutcome`
    per command played.  A lab owns one from its start (``lab.result``) and
    every scenario it plays adds to it.
    """

    dumps: list[tuple[str, dict[str, Layer | None]]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    expectation_failures: list[str] = field(default_factory=list)
    outcomes: list[CommandOutcome] = field(default_factory=list)


class SimBackend:
    """The simulator's side of the interpreter's backend protocol (:mod:`labkit.interpret`).

    Commands become kernel tasks of the lab (``Lab.primary_write`` and
    friends, the control methods with ``wait=False``); :meth:`settle` is
    :meth:`Lab.run`.  Each task's outcome is read once, so a scenario costs
    time linear in its length.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._commit: Task | None = None  # the failover's commit task, once seen

    def begin(self, cmd: Command) -> str:
        lab = self.lab
        if cmd.op == "pwrite":
            task = lab.primary_write(cmd.offset, cmd.length, cmd.byte)  # type: ignore[arg-type]
        elif cmd.op == "vwrite":
            task = lab.vm_write(cmd.offset, cmd.length, cmd.byte)  # type: ignore[arg-type]
        elif cmd.op == "vread":
            task = lab.vm_read(cmd.offset, cmd.length)
        else:
            task = getattr(lab, cmd.op)(wait=False)
        return task.name

    def busy(self) -> bool:
        return self.lab.kernel.has_runnable()

    def settle(self) -> None:
        self.lab.run()

    def outcome(self, cmd: Command, task: str) -> CommandOutcome:
        t = self.lab.kernel.tasks[task]
        exc = t.exception
        if exc is None:
            return CommandOutcome(cmd, task, data=t.result if cmd.op == "vread" else None)
        if isinstance(exc, ReplicationError):
            return CommandOutcome(cmd, task, exc.message)
        return CommandOutcome(cmd, task, str(exc),
                              exc.errno if isinstance(exc, BlockError) else None)

    def background_failures(self) -> list[str]:
        commit = self.lab.top.commit_task  # started by a failover; it runs on after it
        if commit is None or commit is self._commit or not commit.done:
            return []
        self._commit = commit
        exc = commit.exception
        return [] if exc is None else [f"{commit.name} failed: {exc}"]

    def layers(self) -> dict[str, Layer | None]:
        return self.lab.layers()

    def layer(self, name: str) -> Layer | None:
        return self.lab.layer(name)

    def state(self) -> str:
        return self.lab.state

    def original(self, offset: int, length: int) -> bytes:
        return self.lab.original_bytes(offset, length)


class ScenarioRun:
    """A scenario played one scheduling decision at a time: :meth:`Lab.play`, step by step.

    The widgets drive a scenario with it.  Each :meth:`step` is one decision of
    the lab's policy; between decisions, exactly as in :meth:`Lab.play` (the
    same :class:`~labkit.interpret.Interpreter`), a command (or a ``par``
    block) whose tasks have all finished is checked and the next one is
    started, and ``dump`` / ``expect`` lines take effect.  :attr:`current` is
    the scenario step whose tasks are running (None when :attr:`done`).
    Invariant: while not done, some task is runnable.
    """

    def __init__(self, lab: Lab, scenario: str | Scenario) -> None:
        if not isinstance(getattr(lab, "result", None), ScenarioResult):
            raise ArgumentError(f"ScenarioRun needs a Lab, got {type(lab).__name__}")
        scenario = lab.parsed(scenario)
        self.lab = lab
        self.scenario = scenario
        self.started_at = 0  # len(lab.schedule) when the current step's tasks started
        self._interp = Interpreter(lab.backend(scenario), scenario, lab.result)
        self._advance()

    @property
    def index(self) -> int:
        """Index into ``scenario.steps`` of the step being run."""
        return self._interp.index

    def _advance(self) -> None:
        before = self._interp.index
        self._interp.advance()
        if self._interp.index != before or not self.lab.schedule:
            self.started_at = len(self.lab.schedule)

    @property
    def done(self) -> bool:
        """True once every step of the scenario has been played and settled."""
        return self._interp.done

    @property
    def current(self) -> Command | Par | None:
        """The scenario step whose tasks are running now (None when done)."""
        return self._interp.current

    def step(self) -> Event:
        """One scheduling decision (the lab's policy picks); returns its ``run`` event."""
        if self.done:
            raise StateError("the scenario has been played to its end; nothing left to step")
        event = self.lab.step()
        self._advance()
        return event

    def run(self) -> None:
        """Play the rest of the scenario."""
        while not self.done:
            self.step()


__all__ = ["ScenarioResult", "ScenarioRun", "SimBackend"]
