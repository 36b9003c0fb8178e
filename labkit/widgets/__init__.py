"""Jupyter widgets (ipywidgets 8) on top of the engine: see it and drive it.

* :class:`WorkflowStepper` — steps 1–3 of the backup workflow, one decision at
  a time, with Step / Expand COW / Undo / Reset / Run and the block map.
* :class:`SchedulerPlayground` — be the scheduler: a Step button per runnable
  task, why a blocked task waits, a banner when a conflicting read happens.
* :class:`RaceReplay` — every design explored, a counterexample scrubbed with
  a slider beside the block map and the timeline.

:func:`whereabouts` (where each task is parked, in words), :func:`read_results`
(each finished VM read against the oracle) and :func:`stage` (Step 1, 2, 3 or
the VM read) are the one place the widgets learn the state the lesson depends on.

Each takes an image-fleecing scenario (``# config: graph=fleecing``, notebook 07)
as it takes a COLO one: the guest is then the writer whose copy runs steps 1–3, and
the backup client's reads (``cread``) are the reads checked against the oracle;
``labkit.plot._shape`` says which graph a lab is.

Every widget keeps its state in the engine (a lab and a schedule prefix),
shows itself in a notebook through ``.widget`` (a plain ``VBox``), and has a
deterministic text twin, ``.text()`` — also its ``text/plain`` form, so that
stored notebook outputs compare under nbval.
"""

from ._playground import SchedulerPlayground
from ._replay import RaceReplay
from ._session import Session
from ._snapshot import snapshot_png
from ._stepper import WorkflowStepper
from ._whereabouts import ReadResult, Stage, read_results, stage, whereabouts

__all__ = ["RaceReplay", "ReadResult", "SchedulerPlayground", "Session", "Stage",
           "WorkflowStepper", "read_results", "snapshot_png", "stage", "whereabouts"]
