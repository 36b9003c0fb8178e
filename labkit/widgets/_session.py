"""What a widget drives: a lab, the scenario played on it, and how to rebuild it.

Widgets hold no state of their own beyond *where they are* (a schedule
prefix): the engine holds everything else.  Undo and scrubbing rebuild the lab
from the scenario and its configuration and replay a prefix of the schedule
with the kernel's :class:`~labkit.kernel.Scripted` policy — a run is
reproduced exactly from (scenario, schedule), so the rebuilt lab has the same
layers, trace and schedule as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import LabConfig
from ..errors import ArgumentError, ConfigError, ScheduleError, StateError
from ..explore import is_preemption
from ..kernel import FIFO, Event, Policy, Scripted, Task
from ..lab import Lab, ScenarioRun, build_lab
from ..layers import Layer
from ..plot._shape import copy_requests, frozen_reads, frozen_words
from ..scenario import Par, Scenario, configured

Source = str | Scenario | Lab | Callable[[], Lab]


class Watched(Policy):
    """A policy that notes, at each decision, which tasks were offered and whether the
    step was forced (the wake rule: ``Kernel.forced``) — what a widget needs to mark a
    preemption (a switch away from a task that could have run on) in the schedule."""

    def __init__(self, inner: Policy, session: Session) -> None:
        self.inner = inner
        self.session = session

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        lab = getattr(self.session, "lab", None)
        forced = lab is not None and lab.kernel.forced is not None
        self.session.offered[position] = (tuple(t.name for t in runnable), forced)
        return self.inner.choose(runnable, position)

    def fork(self) -> Policy:
        return Watched(self.inner.fork(), self.session)


class Session:
    """A lab and the scenario (or lab factory) it came from.

    ``source`` is scenario text, a parsed :class:`~labkit.scenario.Scenario`,
    a zero-argument factory returning a :class:`~labkit.lab.Lab` (tasks
    already spawned), or a lab itself — which can be stepped but not rebuilt,
    so Undo and Reset are unavailable for it.
    """

    def __init__(self, source: Source, config: dict[str, Any]) -> None:
        if "policy" in config:
            raise ConfigError("the widget chooses the policy (its buttons, or FIFO); leave "
                              "policy out of the configuration")
        #: the lab's configuration (a scenario's: its header under the keywords), None
        #: for a lab or a factory, which bring their own
        self.config: LabConfig | None = None
        self.scenario: Scenario | None = None
        self.factory: Callable[[], Lab] | None = None
        self.run: ScenarioRun | None = None
        #: decision position -> (the tasks offered, forced by the wake rule)
        self.offered: dict[int, tuple[tuple[str, ...], bool]] = {}
        if isinstance(source, Lab):
            if config:
                raise ConfigError("configuration keywords apply to a scenario; this lab is "
                                  "already built")
            self.lab = source
            source.kernel.policy = self.watch(source.kernel.policy)
            return
        if isinstance(source, str | Scenario):
            # the scenario's "# config:" header, explicit keywords winning (as lk.explore)
            self.config, self.scenario = configured(source, **config)
        elif callable(source):
            if config:
                raise ConfigError("configuration keywords apply to a scenario, not a factory")
            self.factory = source
        else:
            raise ArgumentError(f"expected scenario text, a Scenario, a Lab or a factory "
                                f"returning a Lab, got {type(source).__name__}")
        self.rebuild([])

    def reconfigure(self, **values: object) -> None:
        """Change configuration values (checked) for the next :meth:`rebuild`."""
        if self.config is None:
            raise StateError("this widget was given a built lab or a factory: its "
                             "configuration is theirs")
        self.config = self.config.replace(**values)

    @property
    def can_rebuild(self) -> bool:
        return self.scenario is not None or self.factory is not None

    # --- rebuilding -------------------------------------------------------------------
    def rebuild(self, prefix: Sequence[str], *, policy: Policy | None = None,
                capture_at: int | None = None) -> tuple[int, dict[str, Layer | None] | None]:
        """Rebuild the lab and replay ``prefix`` (a schedule).  Returns how many choices
        were replayed (fewer than asked when a name is not runnable at its position, as
        after a design switch) and the layers after ``capture_at`` choices, if asked."""
        if not self.can_rebuild:
            raise StateError("this widget was given a built lab, which cannot be rebuilt; "
                             "pass the scenario text (or a lab factory) to undo and reset")
        prefix = list(prefix)
        if getattr(self, "lab", None) is not None:
            self.lab.kernel.close()
        self.offered = {}
        if self.scenario is not None:
            assert self.config is not None  # made with the scenario
            self.lab = build_lab(self.config, self.watch(Scripted(prefix)))
            self.run = ScenarioRun(self.lab, self.scenario)
        else:
            assert self.factory is not None
            self.lab = self.factory()
            self.lab.kernel.policy = self.watch(Scripted(prefix))
        captured = None
        try:
            while len(self.lab.schedule) < len(prefix) and not self.done:
                if capture_at is not None and len(self.lab.schedule) == capture_at:
                    captured = self.lab.layers()
                self.step()
        except ScheduleError:
            pass
        if capture_at is not None and len(self.lab.schedule) == capture_at and captured is None:
            captured = self.lab.layers()
        self.lab.kernel.policy = self.watch(policy if policy is not None else FIFO())
        return len(self.lab.schedule), captured

    def watch(self, policy: Policy) -> Policy:
        """``policy``, noting what each decision offered (:attr:`offered`)."""
        return policy if isinstance(policy, Watched) else Watched(policy, self)

    def preemption_at(self, i: int) -> bool:
        """Whether decision ``i`` switched away from a task that could have run on (a
        forced step, the wake rule's, never is one; unknown decisions are not)."""
        schedule = self.lab.schedule
        if not 0 < i < len(schedule) or i not in self.offered:
            return False
        offered, forced = self.offered[i]
        return not forced and is_preemption(schedule[i - 1], schedule[i], offered)

    def forced_at(self, i: int) -> bool:
        """Whether decision ``i`` was forced by the wake rule."""
        return self.offered.get(i, ((), False))[1]

    # --- stepping ---------------------------------------------------------------------
    def step(self) -> Event:
        """One scheduling decision (the lab's policy chooses)."""
        if self.run is not None:
            return self.run.step()
        return self.lab.step()

    @property
    def done(self) -> bool:
        """Nothing left to run: the scenario is played out (or no task is runnable)."""
        if self.run is not None:
            return self.run.done
        return not self.lab.runnable()

    def runnable(self) -> list[Task]:
        return [] if self.done else self.lab.runnable()

    def blocked(self) -> list[Task]:
        return self.lab.kernel.blocked()

    @property
    def step_started(self) -> int:
        """How many decisions had been made when the current scenario line started."""
        return self.run.started_at if self.run is not None else 0

    @property
    def in_par(self) -> bool:
        """True while the tasks of a ``par { ... }`` block are running (a real choice)."""
        return self.run is not None and isinstance(self.run.current, Par)

    def where(self) -> str:
        """Which scenario line is running, in words (empty without a scenario)."""
        if self.run is None:
            return ""
        cur = self.run.current
        if cur is None:
            return "scenario finished"
        if isinstance(cur, Par):
            inside = "; ".join(c.text for c in cur.commands)
            return f"scenario line {cur.line}: par {{ {inside} }}"
        return f"scenario line {cur.line}: {cur.text}"


def describe_event(e: Event) -> str:
    """One trace event in words (no sequence number: the text twins stay short)."""
    return f"{e.task}: {e.describe()}"


def cow_requests(lab: Lab) -> list[str]:
    """The CowRequests held now, as the engine describes them (a fleecing lab: its copies
    in flight and, in scheme 7.2, its frozen snapshot reads)."""
    return sorted([r.describe() for r in copy_requests(lab)]
                  + [frozen_words(r) for r in frozen_reads(lab)])
