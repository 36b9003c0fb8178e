"""Steps 1–3 of the backup workflow, named from the trace (one place for the whole kit).

``docs/block-replication.txt`` numbers what happens to a primary write on the
secondary:

1. the NBD write reaches the secondary disk (``bdrv_aligned_pwritev``) and the
   before-write notifier calls ``backup_do_cow``;
2. ``backup_do_cow`` waits for overlapping requests, registers a CowRequest,
   reads each not-yet-copied backup cluster's old contents from the secondary
   disk and writes them to the hidden disk, then ends the CowRequest;
3. the write resumes and puts the new contents on the secondary disk.

:func:`workflow_step` maps one trace event to its step and a sentence; the
CLI demo and the WorkflowStepper widget both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .block.copy_before_write import CBW_NODE_NAME
from .kernel import Event

STEP_TITLES = {
    1: "Step 1: the NBD write reaches the secondary disk; the before-write notifier fires",
    2: "Step 2: backup_do_cow copies the old contents to the hidden disk",
    3: "Step 3: the write resumes and the new data lands on the secondary disk",
}


@dataclass(frozen=True)
class StepNote:
    """Which workflow step an event belongs to, and what it means in words."""

    step: int
    text: str


def workflow_step(event: Event, source: str = "secondary-disk",
                  target: str = "hidden", era: str = "2.8", writer: str = "nbd-write#",
                  filter_node: str = CBW_NODE_NAME) -> StepNote | None:
    """The step (1–3) of a primary write's event, or None for other events.

    Image fleecing runs the same three steps for a *guest* write: ``writer="vm-write#"``,
    ``source`` the live disk, ``target`` the fleecing overlay, ``filter_node`` its
    copy-before-write filter (scheme 7.2).

    Decided from the event's typed fields (``kind``, ``node``, ``op``: the
    request type or the I/O op); ``detail`` is only quoted in the sentence.
    ``era="7.2"``: the write reaches the copy-before-write filter first
    (``cbw_co_pwritev``), block-copy copies, and only then does the write's
    own request on the secondary disk start (Step 3).
    """
    if not event.task.startswith(writer):
        return None
    span = f"[{event.offset:#x}+{event.length:#x}]" if event.offset >= 0 else ""
    kind, node, op = event.kind, event.node, event.op
    writes = op in ("write", "zero")
    if era != "2.8":
        note = _step_7_2(event, span, source, target, filter_node)
        if note is not None:
            return note
    if kind == "req-start" and node == source and writes:
        return StepNote(1, f"{event.task} reaches {source} {span} (bdrv_aligned_pwritev); "
                           f"the before-write notifier calls backup_do_cow")
    if kind == "wait":
        return StepNote(2, f"{event.task} waits: {event.detail}")
    if kind == "cow-begin":
        return StepNote(2, f"backup_do_cow: {event.detail} registered (cow_request_begin)")
    if kind == "cow-copy":
        return StepNote(2, f"backup_do_cow: {event.detail}")
    if kind == "req-start" and node == source and op == "read":
        return StepNote(2, f"read the old contents of {source} {span} (no serialising)")
    if kind == "req-start" and node == target:
        what = "write-zeroes (an all-zero cluster)" if op == "zero" else "write"
        return StepNote(2, f"{what} of the old contents to {target} {span}")
    if kind == "cow-end":
        return StepNote(2, f"backup_do_cow: {event.detail} ended (cow_request_end wakes "
                           f"waiters)")
    # the write's ``point io-write`` only parks it before the I/O: the data is on the
    # secondary disk when the write request ends, so that is Step 3
    if kind == "req-end" and node == source and writes:
        return StepNote(3, f"the new data of {event.task} lands on {source} {span}; "
                           f"the write completes")
    if kind == "failed":
        return StepNote(3, f"{event.task} failed: {event.detail}")
    return None


def _step_7_2(event: Event, span: str, source: str, target: str,
              filter_node: str = CBW_NODE_NAME) -> StepNote | None:
    """Era 7.2's words, where they differ from 2.8's."""
    kind, node, op = event.kind, event.node, event.op
    writes = op in ("write", "zero")
    if kind == "req-start" and node == filter_node and writes:
        return StepNote(1, f"{event.task} reaches the copy-before-write filter {span} "
                           f"(cbw_co_pwritev), which calls block_copy first")
    if kind == "cow-begin":
        return StepNote(2, f"block_copy: {event.detail} created (block_copy_task_create "
                           f"clears its bits in the copy bitmap)")
    if kind == "cow-copy":
        return StepNote(2, f"block_copy_task_entry: {event.detail}")
    if kind == "req-start" and node == source and op == "read":
        return StepNote(2, f"read the old contents of {source} {span}")
    if kind == "cow-end":
        return StepNote(2, f"block_copy: {event.detail} ended (block_copy_task_end wakes "
                           f"waiters)")
    if kind == "req-start" and node == source and writes:
        return StepNote(3, f"after the copy, {event.task} goes on to {source} {span} "
                           f"(bdrv_co_pwritev(bs->file))")
    return None
