"""The ``replication`` filter driver (``block/replication.c``, 2.8 era).

On the secondary, the guest device's node is a ``replication`` node whose
``file`` is the active disk; ``replication_start`` follows the backing links
active → hidden → secondary disk, starts the backup job (secondary disk →
hidden disk, ``sync=none``) and empties active and hidden through a
checkpoint.  On the primary, a ``replication`` node sits above an NBD client
and only forwards writes.

Read protection (``design``), what a trainee compares:

* ``"2.8"`` — ``replication_co_readv`` waits for overlapping CowRequests and
  registers its own over the whole chain read (commit ``a8bbee0edf``), so a
  primary write's COW waits for the read and vice versa; under era 7.2 (no
  CowRequests) the read registers a frozen read of the copy-before-write
  filter instead, which a primary write waits for after its copy and before
  it overwrites the secondary disk (not QEMU's replication: a teaching design);
* ``"4.0"`` — no read-side CowRequest (``e4f9752c4a``); instead the backup's
  writes to the hidden disk are *serialising* requests (``f8d59dfb40``, 3.0):
  they wait for, and make wait, overlapping tracked requests on hidden,
  including reads nested inside a VM write's qcow2 copy-on-write;
* ``"none"`` — neither: the conflicting read is reachable.

The graph's ``era`` selects the QEMU: ``"2.8"`` (default) or ``"7.2"`` — for
the control plane (from ``08ddb4eb6d``, QEMU 5.0: start / checkpoint / stop
are ignored after failover and ``get_error`` errors only before start) and for
the machinery below (the backup job's copy-before-write filter and
block-copy, qcow2's CoMutex and COW order).  See ``docs/qemu-eras.md``.
"""

from __future__ import annotations

import errno as _errno
from enum import Enum, StrEnum
from typing import Any

from .block import BlockGraph, BlockNode, FilterNode
from .config import DESIGNS, check_choice  # the configuration words, defined once
from .errors import BlockError, ReplicationError
from .jobs import (
    BackupJob,
    CommitJob,
    CowRequest,
    backup_cow_request_begin,
    backup_cow_request_end,
    backup_do_checkpoint,
    backup_wait_for_overlapping_requests,
)
from .kernel import Task, current_task, emit, touch
from .layers import SECTOR

MODES = ("primary", "secondary")


class ReplicationMode(int, Enum):
    """``ReplicationMode``: the enum numbers appear in QEMU's start error message."""

    PRIMARY = 0
    SECONDARY = 1


class ReplicationStage(StrEnum):
    """``BLOCK_REPLICATION_*`` (a ``str``: printed, traced and compared as its value)."""

    NONE = "none"
    RUNNING = "running"
    FAILOVER = "failover"
    FAILOVER_FAILED = "failover-failed"
    DONE = "done"


class ReplicationNode(FilterNode):
    """A ``replication`` node (``BDRVReplicationState``): mode, stage, sticky error.

    ``graph`` is where ``top-id`` is looked up (``bdrv_lookup_bs``).
    ``backup_cluster_override`` (not QEMU) is passed to the backup job.
    """

    driver = "replication"

    def __init__(self, name: str, file: BlockNode, graph: BlockGraph, *,
                 mode: str | None, top_id: str | None = None, design: str = "2.8",
                 backup_cluster_override: int | None = None) -> None:
        if mode is None:
            raise ReplicationError("Missing the option mode")
        if mode not in MODES:
            raise ReplicationError("The option mode's value should be primary or secondary")
        if mode == "secondary" and top_id is None:
            raise ReplicationError("Missing the option top-id")
        if mode == "primary" and top_id is not None:
            raise ReplicationError("The primary side does not support option top-id")
        check_choice("design", design, DESIGNS)  # LabConfig's own check, for a node built alone
        super().__init__(name, file.size)
        self.set_file(file)
        self.graph = graph  # where top-id is looked up; its era is this node's
        self._graph = graph  # the same, never None (BlockNode.graph is optional)
        self.mode = ReplicationMode.PRIMARY if mode == "primary" else ReplicationMode.SECONDARY
        self.top_id = top_id
        self.design = design
        self.backup_cluster_override = backup_cluster_override
        self.stage = ReplicationStage.NONE
        self.error = 0
        self.active_disk: BlockNode | None = None
        self.hidden_disk: BlockNode | None = None
        self.secondary_disk: BlockNode | None = None
        self.backup_job: BackupJob | None = None
        self.commit_job: CommitJob | None = None
        self.commit_task: Task | None = None

    def __repr__(self) -> str:
        return f"<ReplicationNode {self.name} {self.mode.name.lower()} {self.stage.value}>"

    # --- I/O -----------------------------------------------------------------
    def get_io_status(self) -> int:
        """``replication_get_io_status``: <0 fail, 0 use ``file``, 1 failover-failed routing."""
        stage = self.stage
        if stage is ReplicationStage.NONE:
            return -_errno.EIO
        if stage is ReplicationStage.RUNNING:
            return 0
        if stage is ReplicationStage.FAILOVER_FAILED:
            return -_errno.EIO if self.mode is ReplicationMode.PRIMARY else 1
        # FAILOVER, DONE
        return -_errno.EIO if self.mode is ReplicationMode.PRIMARY else 0

    def _io_error(self, op: str) -> BlockError:
        return BlockError(_errno.EIO, f"{op} on replication node {self.name} "
                                      f"({self.mode.name.lower()}, {self.stage.value}): "
                                      f"Input/output error")

    def _return_value(self, exc: BlockError | None) -> None:
        """``replication_return_value``: the primary swallows errors into ``s->error``."""
        if exc is None:
            return
        if self.mode is ReplicationMode.PRIMARY:
            self.error = -exc.errno
            emit("replication-error", self.name, detail=f"sticky error: {exc}")
            return
        raise exc

    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        """``replication_co_readv``."""
        touch(("stage", self.name), 0, 1, False)  # get_io_status, the disks, the job
        if self.mode is ReplicationMode.PRIMARY:
            raise self._io_error("read")
        if self.get_io_status() < 0:
            raise self._io_error("read")
        file = self.file
        assert file is not None
        job = self.secondary_disk.job if self.secondary_disk is not None else None
        if self.design == "2.8" and isinstance(job, BackupJob) and job.cbw is not None:
            # era 7.2 has no CowRequest interface: the read is registered as a frozen
            # read of the copy-before-write filter (cbw_snapshot_read_lock's list),
            # which a guest write waits for after its copy (cbw_do_copy_before_write)
            frozen = job.cbw.frozen_read_begin(offset, nbytes)
            try:
                return await file.co_preadv(offset, nbytes)
            finally:
                job.cbw.frozen_read_end(frozen)
        if self.design == "2.8" and isinstance(job, BackupJob):
            sector_num, nb = offset // SECTOR, nbytes // SECTOR
            await backup_wait_for_overlapping_requests(job, sector_num, nb)
            req = CowRequest()
            backup_cow_request_begin(req, job, sector_num, nb)
            try:
                return await file.co_preadv(offset, nbytes)
            finally:
                backup_cow_request_end(req)
        return await file.co_preadv(offset, nbytes)

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        """``replication_co_writev``."""
        touch(("stage", self.name), 0, 1, False)  # get_io_status, the disks
        status = self.get_io_status()
        if status < 0:
            raise self._io_error("write")
        file = self.file
        assert file is not None
        if status == 0:
            try:
                await file.co_pwritev(offset, data)
            except BlockError as exc:
                self._return_value(exc)
            return
        await self._failover_failed_write(offset, data)

    async def _failover_failed_write(self, offset: int, data: bytes) -> None:
        """Status 1: runs allocated in active or hidden go to active, the rest to the
        secondary disk directly (``bdrv_is_allocated_above(active, secondary)``)."""
        assert self.active_disk is not None and self.secondary_disk is not None
        above = self.active_disk.allocated_above(self.secondary_disk)
        pos, end = offset, offset + len(data)
        while pos < end:
            first = bool(above[pos // SECTOR])
            n = SECTOR
            while pos + n < end and bool(above[(pos + n) // SECTOR]) == first:
                n += SECTOR
            target = self.active_disk if first else self.secondary_disk
            await target.co_pwritev(pos, data[pos - offset:pos - offset + n])
            pos += n

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        await self._co_pwritev(offset, bytes(nbytes), flags)


    def frozen(self) -> Any | None:
        # A filter reads its file child: its frozen view is the child's.
        return self.file.frozen() if self.file is not None else None

    # --- control: start, checkpoint, get_error, stop -------------------------------
    def _ignored_after_failover(self) -> bool:
        return self.era == "7.2" and self.stage in (ReplicationStage.FAILOVER,
                                                    ReplicationStage.DONE)

    async def start(self, mode: str) -> None:
        """``replication_start``: every check with QEMU's message, then backup + checkpoint."""
        if self._ignored_after_failover():
            return
        if self.stage is not ReplicationStage.NONE:
            raise ReplicationError("Block replication is running or done")
        want = ReplicationMode.PRIMARY if mode == "primary" else ReplicationMode.SECONDARY
        if want is not self.mode:
            raise ReplicationError(f"The parameter mode's value is invalid, needs "
                                   f"{self.mode.value}, but got {want.value}")
        if self.mode is ReplicationMode.PRIMARY:
            self.stage = ReplicationStage.RUNNING
            self.error = 0
            emit("replication-start", self.name, detail="primary")
            return
        active = self.file
        if active is None or active.backing is None:
            raise ReplicationError("Active disk doesn't have backing file")
        hidden = active.backing
        if hidden.backing is None:
            raise ReplicationError("Hidden disk doesn't have backing file")
        secondary = hidden.backing
        if not secondary.backends:
            raise ReplicationError("The secondary disk doesn't have block backend")
        if not active.size == hidden.size == secondary.size:
            raise ReplicationError("Active disk, hidden disk, secondary disk's length are not "
                                   "the same")
        if not (active.supports_make_empty and hidden.supports_make_empty):
            raise ReplicationError("Active disk or hidden disk doesn't support make_empty")
        top = self._graph.lookup(self.top_id or "")
        if top is None or not self._graph.is_root(top) or self not in top.chain_nodes():
            raise ReplicationError("No top_bs or it is invalid")
        job = BackupJob(secondary, hidden, "none", job_id="replication-backup",
                        cluster_size_override=self.backup_cluster_override,
                        serialising_target_writes=self.design == "4.0",
                        on_complete=self._backup_job_completed)
        self.active_disk, self.hidden_disk, self.secondary_disk = active, hidden, secondary
        self.backup_job = job
        job.start()
        self.stage = ReplicationStage.RUNNING
        emit("replication-start", self.name,
             detail=f"secondary; backup cluster {job.cluster_size} bytes")
        try:
            await self.secondary_do_checkpoint()
        finally:
            self.error = 0

    def _backup_job_completed(self, ret: int) -> None:
        """``backup_job_completed``: any end outside failover is an unexpected cancel."""
        if self.stage is not ReplicationStage.FAILOVER:
            self.error = -_errno.EIO
        self.backup_job = None

    async def secondary_do_checkpoint(self) -> None:
        """``secondary_do_checkpoint``, strictly in QEMU's order."""
        job = self.secondary_disk.job if self.secondary_disk is not None else None
        if not isinstance(job, BackupJob):
            raise ReplicationError("Backup job was cancelled unexpectedly")
        backup_do_checkpoint(job)
        assert self.active_disk is not None and self.hidden_disk is not None
        try:
            await self.active_disk.make_empty()
        except BlockError:
            raise ReplicationError("Cannot make active disk empty") from None
        try:
            await self.hidden_disk.make_empty()
        except BlockError:
            raise ReplicationError("Cannot make hidden disk empty") from None
        emit("replication-checkpoint", self.name, detail="active and hidden emptied")

    async def do_checkpoint(self) -> None:
        """``replication_do_checkpoint``: no state check in 2.8; secondary only."""
        if self._ignored_after_failover():
            return
        if self.mode is ReplicationMode.SECONDARY:
            await self.secondary_do_checkpoint()

    def get_error(self) -> None:
        """``replication_get_error``: raise QEMU's message, or return for no error."""
        if self.era == "7.2":
            if self.stage is ReplicationStage.NONE:
                raise ReplicationError("Block replication is not running")
        elif self.stage is not ReplicationStage.RUNNING:
            raise ReplicationError("Block replication is not running")
        if self.error:
            raise ReplicationError("I/O error occurred")

    async def stop(self, failover: bool = False) -> None:
        """``replication_stop``: cancel the backup, then checkpoint (quirk) or fail over."""
        if self._ignored_after_failover():
            return
        if self.stage is not ReplicationStage.RUNNING:
            raise ReplicationError("Block replication is not running")
        if self.mode is ReplicationMode.PRIMARY:
            self.stage = ReplicationStage.DONE
            self.error = 0
            return
        job = self.secondary_disk.job if self.secondary_disk is not None else None
        if isinstance(job, BackupJob):
            await job.cancel()  # stage is still RUNNING: error becomes -EIO (quirk)
        if not failover:
            try:
                await self.secondary_do_checkpoint()
            finally:
                self.stage = ReplicationStage.DONE
            return
        self.stage = ReplicationStage.FAILOVER
        assert self.active_disk is not None and self.secondary_disk is not None
        self.commit_job = CommitJob(self._graph, self.active_disk, self.secondary_disk,
                                    on_complete=self._replication_done)
        task = current_task()
        assert task is not None, "replication_stop runs inside a labkit task"
        n = sum(1 for name in task.kernel.tasks if name.startswith("commit#")) + 1
        self.commit_task = task.kernel.spawn(f"commit#{n}", self.commit_job.run)
        emit("replication-failover", self.name, detail=f"commit#{n} started: "
                                                        f"{self.active_disk.name} -> "
                                                        f"{self.secondary_disk.name}")

    def _replication_done(self, ret: int) -> None:
        """``replication_done``: DONE and error cleared, or FAILOVER_FAILED with -EIO."""
        if ret == 0:
            self.stage = ReplicationStage.DONE
            self.active_disk = self.hidden_disk = self.secondary_disk = None
            self.error = 0
        else:
            self.stage = ReplicationStage.FAILOVER_FAILED
            self.error = -_errno.EIO



class ReplicationRegistry:
    """The framework list of ``replication.c`` (``replication_new`` inserts at the head).

    The ``*_all`` calls walk the list newest-first, stop at the first error and
    propagate it, with no rollback — what ``xen-set-replication`` and
    ``xen-colo-do-checkpoint`` call.
    """

    def __init__(self) -> None:
        self.states: list[ReplicationNode] = []

    def add(self, node: ReplicationNode) -> ReplicationNode:
        """``replication_new``."""
        self.states.insert(0, node)
        return node

    def remove(self, node: ReplicationNode | None) -> None:
        """``replication_remove`` (None tolerated)."""
        if node is not None and node in self.states:
            self.states.remove(node)

    async def start_all(self, mode: str) -> None:
        for node in list(self.states):
            await node.start(mode)

    async def do_checkpoint_all(self) -> None:
        for node in list(self.states):
            await node.do_checkpoint()

    def get_error_all(self) -> None:
        for node in list(self.states):
            node.get_error()

    async def stop_all(self, failover: bool) -> None:
        for node in list(self.states):
            await node.stop(failover)
