"""Replay: the exact run a schedule names, its checks, and the determinism self-check.

A schedule (the task names the scheduler picked) names exactly one run of a
scenario; replaying it gives the same trace, byte for byte.  A schedule that
does not fit is rejected with :class:`~labkit.errors.ScheduleError` naming
the position and the reason.  A labkit trace file (``labkit explore --json``,
:meth:`Counterexample.to_json`) carries its scenario and configuration: a
replay uses them, refuses an explicit keyword or a scenario that contradicts
them, and checks the replayed events against the file's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from .. import trace as _trace
from ..config import LabConfig, split_lines
from ..errors import (
    ArgumentError,
    ConfigError,
    Deadlock,
    NondeterminismError,
    ScheduleError,
    TraceFormatError,
)
from ..interpret import task_names
from ..kernel import Policy, Task
from ..lab import Lab, build_lab
from ..scenario import Scenario, configured
from ._search import count_preemptions

#: The task names a scenario can create, in spawn order (the interpreter's, one place).
scenario_tasks = task_names

_COMMENT = re.compile(r"(^|\s)#")
ScheduleLike = str | Sequence[str] | _trace.Recording


# --- configuration ------------------------------------------------------------------------


def check_config_keys(config: dict[str, Any]) -> None:
    """No ``policy``: explore and replay choose the interleaving (every other key is
    checked by :class:`~labkit.config.LabConfig`, which names the allowed ones)."""
    if "policy" in config:
        raise ConfigError("explore and replay choose the interleaving themselves: a "
                          "'policy' cannot be given (use lk.run_scenario for a policy)")


def prepare(text: str | Scenario, config: dict[str, Any],
            stored: dict[str, Any] | None = None) -> tuple[str, Scenario, LabConfig]:
    """The scenario text, its parse and the configuration: header < ``stored`` < keywords
    (:func:`labkit.scenario.configured`: checked, nothing built)."""
    if isinstance(text, Scenario):
        text = text.text
    if not isinstance(text, str):
        raise ArgumentError(f"a scenario is its text (str), got {type(text).__name__}")
    check_config_keys(config)
    cfg, scenario = configured(text, **{**(stored or {}), **config})
    return text, scenario, cfg


# --- schedules ------------------------------------------------------------------------------


def parse_schedule(schedule: ScheduleLike) -> list[str]:
    """A schedule in any of its forms, as the list of task names.

    Accepted: the compact string (``"vm-read#1*2 nbd-write#1"``), a JSON list
    of names, a labkit trace file's JSON (:func:`labkit.trace.dumps`, e.g.
    :meth:`Counterexample.to_json`), a :class:`~labkit.trace.Recording`, or a
    list of names.  Lengths are bounded (:data:`labkit.trace.MAX_SCHEDULE`).
    """
    if isinstance(schedule, _trace.Recording):
        return list(schedule.schedule)
    if isinstance(schedule, str):
        stripped = schedule.strip()
        if stripped.startswith("{"):
            return list(_trace.loads(stripped).schedule)
        if stripped.startswith("["):
            names = _trace.load_json(stripped, "schedule")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise TraceFormatError("a JSON schedule is a list of task names like "
                                       "[\"vm-read#1\", \"nbd-write#1\"]")
            return _trace.check_names(names, "JSON schedule")
        return _trace.parse_schedule(stripped)
    if isinstance(schedule, Sequence) and all(isinstance(n, str) for n in schedule):
        return _trace.check_names(schedule)
    raise ArgumentError(f"a schedule is a string, a list of task names or a trace recording, "
                        f"got {type(schedule).__name__}")


def recording_of(schedule: ScheduleLike) -> _trace.Recording | None:
    """The trace file behind a schedule, if it is one (else None)."""
    if isinstance(schedule, _trace.Recording):
        return schedule
    if isinstance(schedule, str) and schedule.lstrip().startswith("{"):
        return _trace.loads(schedule.strip())
    return None


class ReplayPolicy(Policy):
    """Follow a schedule exactly; explain any mismatch with the position and the reason."""

    def __init__(self, names: list[str], known: list[str]) -> None:
        self.names = names
        self.known = known
        self.enabled: list[tuple[str, ...]] = []

    def choose(self, runnable: Sequence[Task], position: int) -> Task:
        here = tuple(t.name for t in runnable)
        while len(self.enabled) < min(position, len(self.names)):  # the kernel ran a task
            self.enabled.append((self.names[len(self.enabled)],))  # without asking: no choice
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
        raise ScheduleError(position, f"{self._why(want, runnable)}; runnable here: {listing}")

    def _why(self, want: str, runnable: Sequence[Task]) -> str:
        kernel = runnable[0].kernel if runnable else None
        existing = kernel.tasks.get(want) if kernel is not None else None
        if existing is not None and kernel is not None:
            # finished, blocked, or another task was just woken and runs at once
            return kernel.why_not_runnable(want)
        if want in self.known:
            return (f"task {want!r} has not started yet: its scenario line runs after the "
                    f"current one")
        return (f"unknown task {want!r}: this scenario's tasks are "
                f"{', '.join(self.known) or '(none)'}")


def replay_lab(scenario: Scenario, names: list[str], cfg: LabConfig,
               allow_deadlock: bool = False) -> tuple[Lab, ReplayPolicy]:
    policy = ReplayPolicy(names, scenario_tasks(scenario))
    lab = build_lab(cfg, policy)
    try:
        lab.play(scenario)
    except Deadlock:
        lab.kernel.close()
        if not allow_deadlock:
            raise
        return lab, policy
    except BaseException:
        lab.kernel.close()
        raise
    done = len(lab.kernel.schedule)
    if done < len(names) and not allow_deadlock:
        raise ScheduleError(done, f"the run ended after {done} choices but the schedule has "
                                  f"{len(names)}: it is too long for this scenario (the first "
                                  f"extra choice is {names[done]!r})")
    return lab, policy


# --- a trace file's scenario, configuration and events --------------------------------------


def _normal(key: str, value: Any) -> Any:
    """A configuration value as :class:`~labkit.config.LabConfig` holds it (``"128K"``
    and 131072 are one size); a value it refuses stays as given (the configuration
    made from both refuses it, naming it)."""
    if key in ("design", "era", "fill"):
        return value
    try:
        return getattr(LabConfig.parse({key: value}), key)
    except (ConfigError, ArgumentError):
        return value


def _stored_config(rec: _trace.Recording, config: dict[str, Any]) -> dict[str, Any]:
    stored = rec.meta.get("config", {})
    if not isinstance(stored, dict):
        raise TraceFormatError("the trace file's \"meta.config\" must be an object")
    check_config_keys(stored)
    for key, value in config.items():
        if key in stored and _normal(key, value) != _normal(key, stored[key]):
            raise ConfigError(f"{key}={value!r} contradicts the trace file, which was recorded "
                              f"with {key}={stored[key]!r}; leave {key} out (the file's value "
                              f"applies) or give the same value")
    return stored


def _stored_scenario(rec: _trace.Recording, text: str | Scenario | None) -> str | Scenario:
    stored = rec.meta.get("scenario")
    if stored is not None and not isinstance(stored, str):
        raise TraceFormatError("the trace file's \"meta.scenario\" must be the scenario text")
    if text is None:
        if not stored:
            raise TraceFormatError("this trace file does not store its scenario: give the "
                                   "scenario text too (lk.replay(text, trace))")
        return stored
    if stored:
        given = text.text if isinstance(text, Scenario) else text
        if _commands(given) != _commands(stored):
            raise TraceFormatError("the trace file was recorded for another scenario than the "
                                   "one given (their commands differ); replay it without a "
                                   "scenario to use the file's own")
    return text


def _commands(text: str) -> list[str]:
    if not isinstance(text, str):
        raise ArgumentError(f"a scenario is its text (str), got {type(text).__name__}")
    out = []
    for raw in split_lines(text):
        m = _COMMENT.search(raw)  # the scenario language's rule: '#' at a start or after a space
        line = " ".join((raw[:m.start()] if m else raw).split())
        if line:
            out.append(line)
    return out


def check_events(lab: Lab, rec: _trace.Recording) -> None:
    """The replayed run's events must be the file's (a trace file that was edited or
    recorded by another engine version is refused, naming the first difference)."""
    if not rec.trace:
        return
    mine = lab.trace
    for i in range(max(len(mine), len(rec.trace))):
        a = mine[i] if i < len(mine) else None
        b = rec.trace[i] if i < len(rec.trace) else None
        if a != b:
            raise TraceFormatError(
                f"the trace file's events differ from the replayed run at event {i}: the file "
                f"has {b if b is not None else '(end of trace)'}, the run "
                f"{a if a is not None else '(end of trace)'}; the file was edited or written by "
                f"another version of the engine")


# --- the public functions -------------------------------------------------------------------


def replay(text: str | Scenario | None, schedule: ScheduleLike, **config: Any) -> Lab:
    """The exact run that ``schedule`` names: a lab that played ``text`` following it.

    ``schedule`` is any form :func:`parse_schedule` accepts; ``config`` the
    :func:`labkit.build_secondary` keywords (over the scenario's ``# config:``
    header).  A trace file (e.g. :meth:`Counterexample.to_json`) brings its
    scenario (``text`` may be None) and configuration; a keyword that
    contradicts it raises :class:`~labkit.errors.ConfigError`, another
    scenario :class:`~labkit.errors.TraceFormatError`, and the replayed events
    must equal the file's.  Raises :class:`~labkit.errors.ScheduleError`
    (with ``position`` and ``reason``) when the schedule names an unknown task,
    a task that is not runnable at that point, or is too short or too long; a
    run that ends in a deadlock raises :class:`~labkit.errors.Deadlock`.
    """
    rec = recording_of(schedule)
    stored: dict[str, Any] = {}
    if rec is not None:
        text = _stored_scenario(rec, text)
        stored = _stored_config(rec, config)
    elif text is None:
        raise ArgumentError("replay needs the scenario text unless the schedule is a trace "
                            "file that stores it")
    _, scenario, cfg = prepare(text, config, stored)
    lab, _ = replay_lab(scenario, parse_schedule(rec if rec is not None else schedule), cfg)
    if rec is not None:
        check_events(lab, rec)
    return lab


def preemptions(text: str | Scenario, schedule: ScheduleLike, **config: Any) -> int:
    """How many preemptions ``schedule`` makes: switches away from a still-runnable task."""
    _, scenario, cfg = prepare(text, config)
    names = parse_schedule(schedule)
    _, policy = replay_lab(scenario, names, cfg)
    return count_preemptions(names, policy.enabled)


def layers_digest(lab: Lab) -> str:
    h = hashlib.sha256()
    for name, layer in lab.layers().items():
        h.update(name.encode())
        if layer is None:
            h.update(b"-")
        else:
            h.update(layer.data)
            h.update(layer.alloc.tobytes())
    return h.hexdigest()


def check_determinism(text: str | Scenario, schedule: ScheduleLike | None = None,
                      **config: Any) -> str:
    """Run a scenario twice with the same schedule and compare; return the trace digest.

    Without ``schedule`` the first run uses the default FIFO policy and the
    second replays the schedule it made.  A difference raises
    :class:`NondeterminismError` naming the first differing event (or the
    first differing layer after identical traces).  Everything replay and
    exploration promise rests on this: same scenario and same schedule, same
    run.
    """
    _, scenario, cfg = prepare(text, config)
    if schedule is None:
        first = build_lab(cfg)
        try:
            first.play(scenario)
        except Deadlock:
            pass
        names = list(first.kernel.schedule)
    else:
        names = parse_schedule(schedule)
        first, _ = replay_lab(scenario, names, cfg, allow_deadlock=True)
    second, _ = replay_lab(scenario, names, cfg, allow_deadlock=True)
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
    if layers_digest(first) != layers_digest(second):
        la, lb = first.layers(), second.layers()
        name = next(n for n in la if (la[n] is None) != (lb[n] is None)
                    or (la[n] is not None and la[n] != lb[n]))
        raise NondeterminismError(f"nondeterminism: identical traces, but the final {name!r} "
                                  f"layers differ", len(a), la[name], lb[name])
    return da
