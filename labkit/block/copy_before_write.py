"""The ``copy-before-write`` filter node (``block/copy-before-write.c``, QEMU 6.0+).

In QEMU 7.2 the backup job does not hook a notifier into the source node, as
2.8 did: ``backup_job_create`` → ``bdrv_cbw_append`` inserts a filter node
*above* the source (the secondary disk).  Every parent of the source that
writes through it — the NBD export's BlockBackend, the replication driver's
``secondary disk`` child, the job itself — now points at the filter; the
filter's ``file`` child is the source and its ``target`` child the hidden
disk.  The hidden disk's ``backing`` link still goes straight to the
secondary disk (``x-debug-query-block-graph`` on QEMU 7.2 shows it), so a
read through the chain does not pass the filter.

A write to the filter (``cbw_co_pwritev``) first copies the old contents of
the clusters it covers (``cbw_do_copy_before_write`` → ``block_copy``), and
only then writes to ``file`` (``bdrv_co_pwritev(bs->file, ...)``).  What a
trainee should notice: the guest write's own tracked request on the
secondary disk starts *after* the copy has ended, where 2.8's notifier ran
inside a request already registered on the secondary disk.

``frozen_read_reqs`` is the filter's list of reads that a guest write must not
overwrite (fleecing readers, ``cbw_snapshot_read_lock``): after its copy a
write waits for the overlapping ones (``reqlist_wait_all``).  labkit's
``design="2.8"`` read protection uses it under era 7.2 (see
:mod:`labkit.replication`); QEMU's replication driver does not.
"""

from __future__ import annotations

from typing import Any

from ..errors import GraphError
from ..kernel import current_task
from ._node import BlockNode, FilterNode
from .block_copy import (
    BlockCopyState,
    BlockReq,
    BlockReqList,
    block_copy_calculate_cluster_size,
    block_copy_state_new,
)

CBW_NODE_NAME = "copy-before-write"  # QEMU names it "#blockNNN" (no filter-node-name given)


class CopyBeforeWriteNode(FilterNode):
    """``BDRVCopyBeforeWriteState``: a filter with ``file`` (source) and ``target``."""

    driver = "copy-before-write"

    def __init__(self, name: str, source: BlockNode, target: BlockNode, *,
                 cluster_size: int, serialising: bool) -> None:
        super().__init__(name, source.size)
        self.set_file(source)
        self._check_child("target", target)
        self.children["target"] = target
        self.bcs: BlockCopyState = block_copy_state_new(source, target, cluster_size,
                                                        serialising)
        self.frozen_read_reqs = BlockReqList(("frozen", source.name))

    @property
    def target(self) -> BlockNode:
        return self.children["target"]

    def __repr__(self) -> str:
        return f"<CopyBeforeWriteNode {self.name} {self.bcs.source.name}->{self.target.name}>"

    # --- I/O ------------------------------------------------------------------------
    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        """``cbw_co_preadv``: a read passes through to ``file``."""
        assert self.file is not None
        return await self.file.co_preadv(offset, nbytes)

    async def cbw_do_copy_before_write(self, offset: int, nbytes: int) -> None:
        """Copy the old contents of the clusters under the write (``block_copy``; an
        error fails the guest write: ``on-cbw-error=break-guest-write``), then wait
        for overlapping frozen reads."""
        cs = self.bcs.cluster_size
        off = (offset // cs) * cs
        end = -(-(offset + nbytes) // cs) * cs
        await self.bcs.block_copy(off, end - off)
        await self.frozen_read_reqs.reqlist_wait_all(off, end - off)

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        """``cbw_co_pwritev``: copy before write, then ``bdrv_co_pwritev(bs->file)``."""
        await self.cbw_do_copy_before_write(offset, len(data))
        assert self.file is not None
        await self.file.co_pwritev(offset, data, flags)

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        """``cbw_co_pwrite_zeroes``: copy before write, then write zeroes to ``file``."""
        await self.cbw_do_copy_before_write(offset, nbytes)
        assert self.file is not None
        await self.file.co_pwrite_zeroes(offset, nbytes, flags)

    # --- frozen reads (cbw_snapshot_read_lock / _unlock) ----------------------------
    def frozen_read_begin(self, offset: int, nbytes: int) -> BlockReq:
        """Register a read that guest writes must not overwrite until it ends."""
        task = current_task()
        req = BlockReq(offset, nbytes, self.bcs.cluster_size,
                       task.name if task is not None else "?")
        self.frozen_read_reqs.reqlist_init_req(req)
        return req

    def frozen_read_end(self, req: BlockReq) -> None:
        self.frozen_read_reqs.reqlist_remove_req(req)


    def _content_key(self) -> tuple:
        return ()


def bdrv_cbw_append(source: BlockNode, target: BlockNode, *, serialising: bool,
                    cluster_size: int | None = None) -> CopyBeforeWriteNode:
    """``bdrv_cbw_append``: insert a copy-before-write filter above ``source``.

    ``bdrv_insert_node`` → ``bdrv_replace_node``: the BlockBackends on ``source``
    (an NBD export) move to the filter; ``source``'s node parents (the hidden
    disk's backing link) stay, as QEMU 7.2 shows them.  The filter joins the
    graph drained as ``source`` is (a parent attached to a drained node is
    drained too), so a request that arrives during the command that starts the
    job waits for its end.
    """
    graph = source.graph
    if graph is None:
        raise GraphError(f"node {source.name} is in no block graph: the copy-before-write "
                         f"filter is inserted into the source's graph")
    cluster = cluster_size if cluster_size is not None else \
        block_copy_calculate_cluster_size(target)
    cbw = CopyBeforeWriteNode(CBW_NODE_NAME, source, target, cluster_size=cluster,
                              serialising=serialising)
    cbw.quiesce_counter = source.quiesce_counter
    cbw.quiesced_by = list(source.quiesced_by)
    graph.add(cbw)
    for blk in list(source.blk_parents):
        _move_backend(blk, source, cbw)
    return cbw


def bdrv_cbw_drop(cbw: CopyBeforeWriteNode) -> None:
    """``bdrv_cbw_drop`` → ``bdrv_drop_filter``: the filter's parents get its ``file``
    back, and the filter leaves the graph."""
    source = cbw.file
    assert source is not None
    for blk in list(cbw.blk_parents):
        _move_backend(blk, cbw, source)
    graph = cbw.graph
    cbw.children.clear()
    if graph is not None:
        graph.remove(cbw)


def _move_backend(blk: Any, old: BlockNode, new: BlockNode) -> None:
    """Re-attach a BlockBackend's root from ``old`` to ``new`` (``bdrv_replace_child``)."""
    old.blk_parents.remove(blk)
    new.blk_parents.append(blk)
    name = blk.backend_name
    if name in old.backends:
        old.backends.remove(name)
        new.backends.append(name)
    blk.node = new
