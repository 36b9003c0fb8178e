"""labkit: an interactive lab kit for QEMU's COLO block replication (secondary side).

The engine (kernel, block graph, backup job, replication driver, lab) imports
without matplotlib, ipywidgets or Jupyter; ``labkit.plot`` and
``labkit.widgets`` are the presentation layer on top.
"""

import sys as _sys

if _sys.orig_argv[1:3] == ["-m", "labkit"]:  # ``python -m labkit``: see labkit/_interrupt.py
    from ._interrupt import exit_on_interrupt as _exit_on_interrupt

    _exit_on_interrupt()

from . import errors  # after the interrupt policy: these imports are heavy
from . import fleecing as _fleecing  # noqa: F401  registers the fleecing graph with build_lab
from .config import LabConfig
from .errors import (
    ArgumentError,
    BlockError,
    ConfigError,
    Deadlock,
    LabkitError,
    LimitError,
    ReplicationError,
    ScenarioError,
    ScenarioLimitError,
    ScheduleError,
    StateError,
    TaskFailed,
)
from .explore import (
    Counterexample,
    Exploration,
    NondeterminismError,
    check_determinism,
    explore,
    replay,
)
from .kernel import (
    FIFO,
    Access,
    Chooser,
    CoMutex,
    CoQueue,
    Event,
    EventKind,
    Instrument,
    Kernel,
    Random,
    Scripted,
    Task,
    TaskState,
)
from .lab import Lab, build_lab, build_secondary, run_scenario
from .layers import Layer
from .oracle import Violation

__version__ = "0.1.0"

__all__ = [
    "FIFO",
    "Access",
    "ArgumentError",
    "BlockError",
    "Chooser",
    "CoMutex",
    "CoQueue",
    "ConfigError",
    "Counterexample",
    "Deadlock",
    "Event",
    "EventKind",
    "Exploration",
    "Instrument",
    "Kernel",
    "Lab",
    "LabConfig",
    "LabkitError",
    "Layer",
    "LimitError",
    "NondeterminismError",
    "Random",
    "ReplicationError",
    "ScenarioError",
    "ScenarioLimitError",
    "ScheduleError",
    "Scripted",
    "StateError",
    "Task",
    "TaskFailed",
    "TaskState",
    "Violation",
    "__version__",
    "build_lab",
    "build_secondary",
    "check_determinism",
    "errors",
    "explore",
    "replay",
    "run_scenario",
]
