"""Jupyter widgets (ipywidgets 8) on top of the engine: see it and drive it.

* :class:`WorkflowStepper` — steps 1–3 of the backup workflow, one decision at
  a time, with Step / Expand COW / Undo / Reset / Run and the block map.
* :class:`SchedulerPlayground` — be the scheduler: a Step button per runnable
  task, why a blocked task waits, a banner when a conflicting read happens.
* :class:`RaceReplay` — every design explored, a counterexample scrubbed with
  a slider beside the block map and the timeline.

Every widget keeps its state in the engine (a lab and a schedule prefix),
shows itself in a notebook through ``.widget`` (an ``AppLayout``), and has a
deterministic text twin, ``.text()`` — also its ``text/plain`` form, so that
stored notebook outputs compare under nbval.
"""

from ._playground import SchedulerPlayground
from ._replay import RaceReplay
from ._session import Session
from ._snapshot import snapshot_png
from ._stepper import WorkflowStepper

__all__ = ["RaceReplay", "SchedulerPlayground", "Session", "WorkflowStepper", "snapshot_png"]
