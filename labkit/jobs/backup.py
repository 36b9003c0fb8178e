"""The backup job in ``sync=none`` mode (``block/backup.c``): steps 1–3.

Replication starts a backup job from the secondary disk (source) to the hidden
disk (target) with ``sync=none``: no copy loop, only the copy before each
write.  How the copy is hooked in is the graph's era:

* **7.2**: ``backup_job_create`` → ``bdrv_cbw_append`` inserts a
  copy-before-write filter node above the source
  (:mod:`labkit.block.copy_before_write`), whose writes copy with
  ``block_copy`` (:mod:`labkit.block.block_copy`) and then go on to the
  source.  The job itself only waits (``backup_run``) and, at a checkpoint,
  sets the copy bitmap again.
* **2.8**, below: a *before-write notifier* on the source.

In 2.8 every write that reaches the secondary disk — the primary's NBD
writes — first calls :meth:`BackupJob.backup_do_cow`, which

1. waits for overlapping ``CowRequest`` s and registers its own
   (``wait_for_overlapping_requests`` + ``cow_request_begin``, with no yield in
   between);
2. for each backup cluster the write touches, in ascending order, skips it if
   its ``done_bitmap`` bit is set, else reads the old contents from the source
   (a *non-serialising* read: it is nested in the guest's own write) and writes
   them to the target — write-zeroes if the cluster is all zeros — and sets the
   bit;
3. ends its ``CowRequest`` (waking every waiter); only then does the guest's
   write reach the disk.

What a trainee should notice: the copy is of *whole backup clusters* (64 KiB,
or the hidden disk's cluster size if larger), at most once per checkpoint
epoch; and a failed copy fails the primary's write, which then writes nothing.

The exported interface of ``include/block/block_backup.h`` (commit
``a8bbee0edf``) — :func:`backup_wait_for_overlapping_requests`,
:func:`backup_cow_request_begin`, :func:`backup_cow_request_end` and
:func:`backup_do_checkpoint` — is what the 2.8 replication driver uses to make
its reads hold a ``CowRequest`` too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..block import REQ_MAY_UNMAP, REQ_NO_SERIALISING, REQ_SERIALISING, BlockNode, TrackedRequest
from ..block.block_copy import BlockReq
from ..block.copy_before_write import CopyBeforeWriteNode, bdrv_cbw_append, bdrv_cbw_drop
from ..errors import JobError
from ..kernel import CoQueue, current_task, emit, touch
from ..layers import SECTOR

BACKUP_CLUSTER_SIZE_DEFAULT = 1 << 16


class CowRequest:
    """``CowRequest``: a half-open range ``[start, end)`` of backup *cluster indices*."""

    __slots__ = ("end", "job", "owner", "start", "wait_queue")

    def __init__(self) -> None:
        self.job: BackupJob | None = None
        self.start = 0
        self.end = 0
        self.owner = ""
        self.wait_queue = CoQueue("CowRequest")

    def describe(self) -> str:
        return f"CowRequest of {self.owner} on clusters {self.start}-{self.end - 1}"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class BackupJob:
    """``BackupBlockJob`` with ``sync=none``: the notifier, the CowRequest table, done bits.

    ``cluster_size`` follows QEMU: ``MAX(64 KiB, target cluster size)``.
    ``cluster_size_override`` is **not QEMU**: it lets a small teaching disk use
    smaller backup clusters.  ``serialising_target_writes`` is the 3.0 change
    (``f8d59dfb40``): target writes carry ``BDRV_REQ_SERIALISING``, which QEMU
    sets when the source is in the target's backing chain (in 7.2:
    ``block_copy_state_new``'s ``is_fleecing``).  The era of the source's
    graph decides the mechanism (see the module docstring).
    """

    def __init__(self, source: BlockNode, target: BlockNode, sync: str = "none", *,
                 job_id: str = "replication-backup",
                 cluster_size_override: int | None = None,
                 serialising_target_writes: bool = False,
                 on_complete: Callable[[int], None] | None = None) -> None:
        if sync != "none":
            raise JobError(f"sync mode {sync!r} is not modelled: labkit's backup job models "
                           f"only sync=none, the mode replication uses (allowed: 'none')")
        if source is target:
            raise JobError("Source and target cannot be the same")
        if source.job is not None:
            raise JobError(f"Node '{source.name}' is busy: block device is in use by block job")
        cluster = max(BACKUP_CLUSTER_SIZE_DEFAULT, target.cluster_size)
        if cluster_size_override is not None:
            if (not isinstance(cluster_size_override, int) or cluster_size_override < SECTOR
                    or cluster_size_override & (cluster_size_override - 1)):
                raise JobError(f"backup cluster size override {cluster_size_override!r} must be "
                               f"a power of two of at least {SECTOR} bytes")
            cluster = cluster_size_override
        self.job_id = job_id
        self.source = source
        self.target = target
        self.sync_mode = sync
        self.cluster_size = cluster
        self.len = source.size
        self.nb_clusters = -(-self.len // cluster)
        self._done_bitmap = np.zeros(self.nb_clusters, dtype=bool)
        # QEMU's QLIST inflight_reqs, kept oldest first in an insertion-ordered dict
        # (O(1) removal); read head first, as QEMU inserts at the head
        self._inflight: dict[CowRequest, None] = {}
        self.serialising_target_writes = serialising_target_writes
        self.cbw: CopyBeforeWriteNode | None = None  # 7.2: the filter node, once started
        self.on_complete = on_complete
        self._offset = 0  # progress: bytes copied (common.offset)
        self.cancelled = False
        self.running = False
        self._cows_in_flight = 0
        self._drained = CoQueue(f"in-flight COWs of {job_id}")
        # Declared resources (labkit.kernel.Access), over byte ranges of the source.
        self._table = ("cow", source.name)  # the CowRequest table (inflight_reqs)
        self._done = ("done", source.name)  # the done_bitmap

    def __repr__(self) -> str:
        return f"<BackupJob {self.job_id} {self.source.name}->{self.target.name} " \
               f"cluster={self.cluster_size}>"

    @property
    def era(self) -> str:
        return self.source.era

    @property
    def done_bitmap(self) -> np.ndarray:
        """Per backup cluster: copied this epoch?  (2.8's ``done_bitmap``; in 7.2 the
        inverse of block-copy's ``copy_bitmap``, a copy.)"""
        if self.cbw is not None:
            return ~self.cbw.bcs.copy_bitmap
        return self._done_bitmap

    @property
    def offset(self) -> int:
        """Progress: bytes copied (``common.offset``; 7.2: block-copy's progress meter)."""
        return self.cbw.bcs.progress if self.cbw is not None else self._offset

    def reset_done_bitmap(self) -> None:
        """2.8: clear the whole ``done_bitmap`` (every cluster to be copied again)."""
        self._done_bitmap[:] = False

    # --- life cycle ----------------------------------------------------------
    def start(self) -> None:
        """``backup_run`` for sync=none: 2.8 registers the notifier on the source; 7.2's
        ``backup_job_create`` has inserted the copy-before-write filter
        (``bdrv_cbw_append``) first.  Then the job only waits."""
        if self.era == "2.8":
            self.source.before_write_notifiers.append(self.before_write_notify)
        else:
            self.cbw = bdrv_cbw_append(self.source, self.target,
                                       serialising=self.serialising_target_writes,
                                       cluster_size=self.cluster_size)
        self.source.job = self
        self.running = True

    async def cancel(self) -> None:
        """``block_job_cancel_sync``: stop copying, wait for copies in flight, complete.

        2.8 removes the notifier and waits for in-flight COWs (``flush_rwlock``);
        7.2 waits for the ``block_copy`` calls in flight and drops the filter
        (``backup_clean`` → ``bdrv_cbw_drop``).  The completion callback gets
        ``-ECANCELED`` (what ``block_job_completed`` passes for a cancelled job).
        """
        if not self.running:
            return
        self.cancelled = True
        self.running = False
        if self.cbw is not None:
            await self.cbw.bcs.wait_for_calls()
            self._offset = self.cbw.bcs.progress
            self._done_bitmap = ~self.cbw.bcs.copy_bitmap
            bdrv_cbw_drop(self.cbw)
            self.cbw = None
        else:
            self.source.before_write_notifiers.remove(self.before_write_notify)
            while self._cows_in_flight:  # flush_rwlock taken for writing
                await self._drained.wait()
        self.source.job = None
        emit("job-cancelled", self.source.name, detail=self.job_id)
        if self.on_complete is not None:
            self.on_complete(-125)  # -ECANCELED

    # --- the notifier and the COW ----------------------------------------------
    async def before_write_notify(self, req: TrackedRequest) -> None:
        """``backup_before_write_notify``: COW the clusters under a write to the source."""
        assert req.node is self.source
        assert req.offset % SECTOR == 0 and req.bytes % SECTOR == 0
        await self.backup_do_cow(req.offset, req.bytes, is_write_notifier=True)

    def cluster_range(self, offset: int, nbytes: int) -> tuple[int, int]:
        """``[floor(off / C), ceil((off + len) / C))``: every cluster touched even partly."""
        return offset // self.cluster_size, -(-(offset + nbytes) // self.cluster_size)

    async def backup_do_cow(self, offset: int, nbytes: int, is_write_notifier: bool) -> None:
        """``backup_do_cow``: copy each not-yet-copied cluster under the range to the target."""
        start, end = self.cluster_range(offset, nbytes)
        self._cows_in_flight += 1  # flush_rwlock taken for reading
        cow_request = CowRequest()
        try:
            await self.wait_for_overlapping_requests(start, end)
            self.cow_request_begin(cow_request, start, end)
            try:
                cs = self.cluster_size
                c = start
                while c < end:
                    touch(self._done, c * cs, (c + 1) * cs, False)
                    if self.done_bitmap[c]:
                        c += 1
                        continue
                    await self._copy_clusters(c, 1, is_write_notifier)
                    c += 1
            finally:
                self.cow_request_end(cow_request)
        finally:
            self._cows_in_flight -= 1
            if not self._cows_in_flight:
                self._drained.restart_all()

    async def _copy_clusters(self, c: int, count: int, is_write_notifier: bool) -> None:
        """Copy clusters ``c .. c+count-1``: one read, then one write per run of
        clusters that are all zero or not (zero ones as write-zeroes)."""
        cs = self.cluster_size
        start = c * cs
        n = min(count * cs, self.len - start)  # only the image's last cluster can be short
        if count == 1:
            emit("cow-copy", self.source.name, start, n,
                 "cluster {}: read old data, write it to {}", args=(c, self.target.name))
        else:
            emit("cow-copy", self.source.name, start, n,
                 "clusters {}-{}: read old data, write it to {}",
                 args=(c, c + count - 1, self.target.name))
        data = await self.source.co_preadv(start, n,
                                           REQ_NO_SERIALISING if is_write_notifier else 0)
        flags = REQ_SERIALISING if self.serialising_target_writes else 0
        zero = [not any(data[i * cs:(i + 1) * cs]) for i in range(count)]
        i = 0
        while i < count:
            j = i + 1
            while j < count and zero[j] == zero[i]:
                j += 1
            lo, hi = i * cs, min(j * cs, n)
            if zero[i]:
                await self.target.co_pwrite_zeroes(start + lo, hi - lo, flags | REQ_MAY_UNMAP)
            else:
                await self.target.co_pwritev(start + lo, data[lo:hi], flags)
            i = j
        touch(self._done, start, (c + count) * cs, True)
        self._done_bitmap[c:c + count] = True
        self._offset += n

    # --- the CowRequest table ----------------------------------------------------
    @property
    def inflight_reqs(self) -> list[CowRequest | BlockReq]:
        """``inflight_reqs``: the CowRequests in flight, head first (newest first); in
        7.2 block-copy's tasks in flight (``s->reqs``), head first."""
        out: list[CowRequest | BlockReq] = []
        out += self.cbw.bcs.reqs if self.cbw is not None else reversed(self._inflight)
        return out

    async def wait_for_overlapping_requests(self, start: int, end: int) -> None:
        """Wait on any overlapping CowRequest's queue, then rescan from the start."""
        cs = self.cluster_size
        retry = True
        while retry:
            retry = False
            touch(self._table, start * cs, end * cs, False)  # the scan
            for req in reversed(self._inflight):  # from the head, as QEMU's list
                if end > req.start and start < req.end:
                    touch(self._table, req.start * cs, req.end * cs, False, waits=True)
                    await req.wait_queue.wait()
                    retry = True
                    break

    def cow_request_begin(self, req: CowRequest, start: int, end: int) -> None:
        """Store the range and insert the request at the *head* of ``inflight_reqs``."""
        task = current_task()
        req.job = self
        req.start, req.end = start, end
        req.owner = task.name if task else "?"
        req.wait_queue.label = req.describe()
        self._inflight[req] = None  # at the head
        cs = self.cluster_size
        touch(self._table, start * cs, end * cs, True)
        emit("cow-begin", self.source.name, start * cs, (end - start) * cs,
             "CowRequest clusters {}-{}", args=(start, end - 1))

    def cow_request_end(self, req: CowRequest) -> None:
        """Remove the request and wake everything waiting on it."""
        del self._inflight[req]
        cs = self.cluster_size
        touch(self._table, req.start * cs, req.end * cs, True)
        emit("cow-end", self.source.name, req.start * cs, (req.end - req.start) * cs,
             "CowRequest clusters {}-{}", args=(req.start, req.end - 1))
        req.wait_queue.restart_all()


# --- the exported interface (include/block/block_backup.h, 2.8) -------------------


def _sectors_to_clusters(job: BackupJob, sector_num: int, nb_sectors: int) -> tuple[int, int]:
    return job.cluster_range(sector_num * SECTOR, nb_sectors * SECTOR)


async def backup_wait_for_overlapping_requests(job: BackupJob, sector_num: int,
                                               nb_sectors: int) -> None:
    """Wait until no CowRequest overlaps the clusters of these sectors."""
    assert isinstance(job, BackupJob)
    await job.wait_for_overlapping_requests(*_sectors_to_clusters(job, sector_num, nb_sectors))


def backup_cow_request_begin(req: CowRequest, job: BackupJob, sector_num: int,
                             nb_sectors: int) -> None:
    """Register ``req`` (the caller owns it) over the clusters of these sectors."""
    assert isinstance(job, BackupJob)
    job.cow_request_begin(req, *_sectors_to_clusters(job, sector_num, nb_sectors))


def backup_cow_request_end(req: CowRequest) -> None:
    """End ``req`` and wake its waiters."""
    assert req.job is not None
    req.job.cow_request_end(req)


def backup_do_checkpoint(job: BackupJob) -> None:
    """Clear the whole ``done_bitmap`` (2.8) / set the whole ``copy_bitmap`` (7.2): every
    cluster is copied again on its next overwrite."""
    assert isinstance(job, BackupJob)
    if job.sync_mode != "none":
        raise JobError("The backup job only supports block checkpoint in sync=none mode")
    if job.cbw is not None:  # 7.2: bdrv_set_dirty_bitmap(block_copy_dirty_bitmap(bcs), 0, len)
        job.cbw.bcs.block_copy_set_all()
        emit("backup-checkpoint", job.source.name, detail="copy_bitmap set")
        return
    job.reset_done_bitmap()
    emit("backup-checkpoint", job.source.name, detail="done_bitmap cleared")
