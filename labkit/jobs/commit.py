"""Active commit (``commit_active_start`` → the mirror job's commit-active driver).

Failover commits everything allocated *above* the base — in the active disk
*or* the hidden disk — into the secondary disk, reading through the active
disk's chain (so active wins over hidden, hidden over the secondary disk).
Writes that land on the top while the job runs are tracked in a dirty bitmap
(``bdrv_set_dirty``) and copied again.  Once nothing is dirty, the job
completes (``auto_complete``) and ``mirror_exit`` replaces the top node by the
base in the graph (``bdrv_replace_in_backing_chain``): the replication node's
``file`` now points at the secondary disk; active and hidden drop out of the
graph with their contents untouched.

It drains before it switches (block/mirror.c, ``mirror_run``): once nothing is
dirty it opens a drained section over the graph (``bdrv_co_drain``, then
``mirror_exit`` under ``bdrv_drained_begin``), so every request still in flight
— a VM write on the active disk above all — ends first and, if it dirtied
something, is copied before the switch; never lost in the detached active
disk.  Between copies the job pauses while someone else's drained section is
open (``block_job_pause_point``).

What a trainee should notice: the hidden disk's old copies overwrite the
primary's un-checkpointed writes in the secondary disk — failover reverts them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..block import (
    BlockGraph,
    BlockNode,
    bdrv_drained_begin,
    bdrv_drained_end,
    blk_wait_while_drained,
)
from ..errors import BlockError
from ..kernel import current_task, emit
from ..layers import SECTOR

MIRROR_BUF = 1 << 20  # one copy request at most (the mirror's buf-size default)


class CommitJob:
    """An internal active commit of ``top`` (and its backing chain above ``base``) into ``base``."""

    def __init__(self, graph: BlockGraph, top: BlockNode, base: BlockNode, *,
                 job_id: str = "replication-commit",
                 on_complete: Callable[[int], None] | None = None) -> None:
        self.graph = graph
        self.top = top
        self.base = base
        self.job_id = job_id
        self.on_complete = on_complete
        self.copied = 0
        self.ret: int | None = None

    async def run(self) -> int:
        """Copy until in sync, then replace top by base; return 0 or ``-errno``."""
        dirty = self.top.create_dirty_bitmap()
        dirty |= self.top.allocated_above(self.base)
        emit("commit-start", self.top.name, detail=f"{int(dirty.sum())} sectors above "
                                                   f"{self.base.name}")
        task = current_task()
        who = f"{task.name if task is not None else self.job_id} (mirror_run's bdrv_co_drain)"
        nodes = list(self.graph.nodes.values())
        try:
            while True:
                await blk_wait_while_drained(self.top)  # block_job_pause_point
                if not dirty.any():
                    # Wait for pending operations before the last count (mirror_run),
                    # and switch with the graph drained (mirror_exit).
                    await bdrv_drained_begin(nodes, who)
                    if dirty.any():  # a request that was in flight dirtied more
                        bdrv_drained_end(nodes, who)
                        continue
                    try:
                        self.ret = 0
                        self.graph.replace(self.top, self.base)  # mirror_exit
                        emit("commit-done", self.base.name, detail=f"{self.top.name} replaced "
                                                                   f"by {self.base.name}")
                        self.top.release_dirty_bitmap(dirty)
                        if self.on_complete is not None:  # block_job_completed, still drained
                            self.on_complete(0)
                    finally:
                        bdrv_drained_end(nodes, who)
                    return 0
                first = int(np.argmax(dirty))
                change = np.flatnonzero(~dirty[first:])
                run = int(change[0]) if change.size else dirty.size - first
                run = min(run, MIRROR_BUF // SECTOR)
                offset, nbytes = first * SECTOR, run * SECTOR
                dirty[first:first + run] = False
                data = await self.top.co_preadv(offset, nbytes)
                await self.base.co_pwritev(offset, data)
                self.copied += nbytes
        except BlockError as exc:
            self.ret = -exc.errno
        self.top.release_dirty_bitmap(dirty)
        if self.on_complete is not None:
            self.on_complete(self.ret)
        return self.ret
