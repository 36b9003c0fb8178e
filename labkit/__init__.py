"""labkit: an interactive lab kit for QEMU's COLO block replication (secondary side).

The engine (kernel, block graph, backup job, replication driver, lab) imports
without matplotlib, ipywidgets or Jupyter; ``labkit.plot`` and
``labkit.widgets`` are the presentation layer on top.
"""

from . import errors
from .errors import (
    BlockError,
    Deadlock,
    LabkitError,
    ReplicationError,
    ScenarioError,
    ScheduleError,
    StateError,
    TaskFailed,
)
from .kernel import FIFO, Chooser, CoMutex, CoQueue, Event, Kernel, Random, Scripted, Task
from .layers import Layer

__version__ = "0.1.0"

__all__ = [
    "FIFO",
    "BlockError",
    "Chooser",
    "CoMutex",
    "CoQueue",
    "Deadlock",
    "Event",
    "Kernel",
    "LabkitError",
    "Layer",
    "Random",
    "ReplicationError",
    "ScenarioError",
    "ScheduleError",
    "Scripted",
    "StateError",
    "Task",
    "TaskFailed",
    "__version__",
    "errors",
]
