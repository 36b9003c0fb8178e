"""Which graph a lab is, in the terms the figures and widgets need (read, never modelled).

The kit's labs are of two graphs (``LabConfig.graph``): COLO's secondary
(:class:`labkit.lab.Lab`) and image fleecing (:class:`labkit.fleecing.FleecingLab`).
Both run the same copy-before-write — a write that reaches the disk being
written first has the old contents copied into a qcow2 overlay — with another
writer and another reader:

============  ==========================  ===============================
role          COLO secondary              image fleecing
============  ==========================  ===============================
source        ``secondary-disk`` (raw)    ``live-disk`` (raw)
target        ``hidden`` (qcow2)          ``fleece`` (qcow2 overlay)
writer        ``nbd-write#N`` (primary)   ``vm-write#N`` (the guest)
reader        ``vm-read#N`` (secondary)   ``client-read#N`` (backup client)
============  ==========================  ===============================

:func:`shape` says which; :func:`copy_requests` and :func:`frozen_reads` read the
requests in flight from the engine's own lists (the backup job's
``inflight_reqs``, block-copy's ``s->reqs``, copy-before-write's
``frozen_read_reqs``).  Nothing here decides anything the engine decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..block.copy_before_write import CBW_NODE_NAME
from ..fleecing import ACCESS, CBW, LIVE, OVERLAY, FleecingLab
from ..kernel import Event
from ..lab import Lab
from ..steps import StepNote, workflow_step

__all__ = ["Shape", "copy_requests", "copy_words", "frozen_reads", "frozen_words",
           "is_fleecing", "shape", "step_note"]


@dataclass(frozen=True)
class Shape:
    """The roles of a lab's graph (see the module's table)."""

    fleecing: bool
    layers: tuple[str, ...]  # the block map's panels, top to bottom
    source: str  # the node being written (its old contents are copied)
    target: str  # the qcow2 overlay the old contents are copied into
    writer: str  # the task kind whose writes copy first ("nbd-write#")
    reader: str  # the task kind whose reads the oracle checks ("vm-read#")
    filter: str  # era 7.2: the copy-before-write filter's node name
    access: str = ""  # fleecing 7.2: the snapshot-access node

    @property
    def overlays(self) -> tuple[str, ...]:
        """The qcow2 nodes a read can fall through (unallocated) to the node below."""
        return (self.target,) if self.fleecing else ("active", "hidden")


COLO = Shape(False, ("secondary", "hidden", "active", "vm-view"), "secondary-disk", "hidden",
             "nbd-write#", "vm-read#", CBW_NODE_NAME)
FLEECING = Shape(True, ("live", "fleece", "snapshot"), LIVE, OVERLAY, "vm-write#",
                 "client-read#", CBW, ACCESS)


def is_fleecing(lab: Lab) -> bool:
    return isinstance(lab, FleecingLab)


def shape(lab: Lab) -> Shape:
    """The roles of ``lab``'s graph."""
    return FLEECING if is_fleecing(lab) else COLO


def copy_requests(lab: Lab) -> list[Any]:
    """The copies in flight, head first: COLO's backup job's ``inflight_reqs`` (2.8:
    CowRequests; 7.2: block-copy's tasks), fleecing's backup job's (2.12, 3.0) or its
    copy-before-write filter's block-copy tasks (``s->bcs->reqs``, 7.2).  Each has
    ``owner``, ``start``, ``end`` (clusters) and ``describe()``."""
    if isinstance(lab, FleecingLab):
        if lab.job is not None:
            return list(lab.job.inflight_reqs)
        if lab.cbw is not None:
            return list(lab.cbw.bcs.reqs)
        return []
    job = lab.top.backup_job
    return list(job.inflight_reqs) if job is not None else []


def frozen_reads(lab: Lab) -> list[Any]:
    """Fleecing 7.2: the snapshot reads of the live disk in flight
    (``frozen_read_reqs``, which a guest write waits for after its copy); else none."""
    if isinstance(lab, FleecingLab) and lab.cbw is not None:
        return list(lab.cbw.frozen_read_reqs)
    return []


def frozen_words(req: Any) -> str:
    """A frozen snapshot read as the lesson names it."""
    return f"frozen snapshot read of {req.owner} on clusters {req.start}-{req.end - 1}"


def step_note(lab: Lab, event: Event) -> StepNote | None:
    """:func:`labkit.steps.workflow_step` for ``lab``'s graph: the step (1-3) of the
    copying writer's event (a primary write in COLO, a guest write in fleecing)."""
    s = shape(lab)
    return workflow_step(event, s.source, s.target, era=lab.graph.era, writer=s.writer,
                         filter_node=s.filter)


def copy_words(lab: Lab) -> tuple[str, str]:
    """(the QEMU function that copies, the request it holds) for a writer's copy: the
    backup job's ``backup_do_cow`` and CowRequest (COLO; fleecing 2.12 and 3.0, whose
    job's before-write notifier calls it), or, for fleecing 7.2, the filter's
    ``cbw_do_copy_before_write`` and block-copy's task."""
    if isinstance(lab, FleecingLab) and lab.design == "7.2":
        return "cbw_do_copy_before_write", "block-copy task"
    return "backup_do_cow", "CowRequest"
