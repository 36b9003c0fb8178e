"""Drained sections: ``bdrv_drained_begin`` … ``bdrv_drained_end`` (``block/io.c``, 2.8).

A drained section is how QEMU makes the block graph hold still:

1. ``bdrv_drained_begin`` raises each node's ``quiesce_counter``; in 2.8 it
   also calls ``aio_disable_external`` on the (single) AioContext, so no new
   *external* request — a guest device's, an NBD client's — is submitted
   until the section ends.  (Modern QEMU parks them in the BlockBackend,
   ``blk_wait_while_drained``; the effect is the same.)
2. It then polls until no request is in flight on the nodes
   (``bdrv_drain_poll`` / ``bdrv_requests_pending``: the tracked requests);
   requests already in flight, with everything nested in them (a COW, a
   qcow2 backing read), run to their end.
3. ``bdrv_drained_end`` lowers the counters; when they reach zero the waiting
   requests go on.  Block jobs pause while a section is open
   (``block_job_pause_point``).

labkit drains the whole graph of the secondary in every section: one
AioContext, so ``aio_disable_external`` stops every external request source
at once.  COLO relies on this (facts §2.7, §2.9): the checkpoint runs with the
VM stopped (``vm_stop`` → ``bdrv_drain_all``), and the failover commit drains
before it switches the graph (``mirror_run``'s ``bdrv_co_drain``).

What a trainee should notice: a request that arrives during a checkpoint
*waits* (its ``why_blocked`` says "drained section of checkpoint#1"); it never
overlaps the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..kernel import CoQueue, current_task, emit
from ._node import BlockNode


def _who() -> str:
    task = current_task()
    return task.name if task is not None else "the main loop"


async def bdrv_drained_begin(nodes: Iterable[BlockNode], who: str | None = None) -> None:
    """Quiesce ``nodes`` (new external requests wait), then wait for in-flight ones.

    ``who`` names the section in waiters' ``why_blocked`` (default: the
    current task's name).
    """
    nodes = list(nodes)
    who = who or _who()
    for node in nodes:
        node.quiesce_counter += 1
        node.quiesced_by.append(who)
    emit("drained-begin", detail=f"{who}: new requests wait")
    await bdrv_drain_poll(nodes, who)


async def bdrv_drain_poll(nodes: Iterable[BlockNode], who: str) -> None:
    """``bdrv_drain_poll``: wait until no request is in flight on ``nodes``.

    The caller's own requests do not count (a coroutine never drains itself;
    QEMU would assert).
    """
    nodes = list(nodes)
    me = current_task()
    while True:
        busy = next((n for n in nodes
                     if any(r.task is not me for r in n.tracked_requests)), None)
        if busy is None:
            return
        if busy.drain_waiters is None:
            busy.drain_waiters = CoQueue()
        req = next(r for r in busy.tracked_requests if r.task is not me)
        owner = req.task.name if req.task is not None else "?"
        busy.drain_waiters.label = (f"in-flight {req.type} of {owner} on {busy.name} to end "
                                    f"(bdrv_drain for {who})")
        await busy.drain_waiters.wait()


def bdrv_drained_end(nodes: Iterable[BlockNode], who: str | None = None) -> None:
    """End the section ``who`` opened: requests waiting for it go on when no section is left."""
    who = who or _who()
    for node in nodes:
        if who not in node.quiesced_by:  # not in this section (e.g. a filter dropped in it)
            continue
        node.quiesced_by.remove(who)
        node.quiesce_counter = max(0, node.quiesce_counter - 1)
        if not node.quiesce_counter and node.drained_queue is not None:
            node.drained_queue.restart_all()
    emit("drained-end", detail=who)


async def blk_wait_while_drained(node: BlockNode) -> None:
    """A new external request (guest or NBD) on ``node`` waits while a section is open.

    Also the pause point of a block job (``block_job_pause_point``).
    """
    while node.quiesce_counter:
        if node.drained_queue is None:
            node.drained_queue = CoQueue()
        node.drained_queue.label = f"drained section of {', '.join(node.quiesced_by)}"
        await node.drained_queue.wait()


def in_flight(nodes: Iterable[BlockNode]) -> list[str]:
    """The tasks with a request in flight on ``nodes`` (for messages and tests)."""
    out: dict[str, None] = {}
    for node in nodes:
        for req in node.tracked_requests:
            if req.task is not None:
                out.setdefault(req.task.name, None)
    return list(out)
