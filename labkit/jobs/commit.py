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

What a trainee should notice: the hidden disk's old copies overwrite the
primary's un-checkpointed writes in the secondary disk — failover reverts them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..block import BlockGraph, BlockNode
from ..errors import BlockError
from ..kernel import emit
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
        try:
            while dirty.any():
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
        else:
            self.ret = 0
            self.graph.replace(self.top, self.base)  # mirror_exit
            emit("commit-done", self.base.name, detail=f"{self.top.name} replaced by "
                                                       f"{self.base.name}")
        finally:
            self.top.release_dirty_bitmap(dirty)
        if self.on_complete is not None:
            self.on_complete(self.ret)
        return self.ret
