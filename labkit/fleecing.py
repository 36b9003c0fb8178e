"""Image fleecing: a point-in-time view of a running disk for a pull-mode backup client.

Notebook 07 ("Image fleecing", ``notebooks/src/07-image-fleecing.md``) teaches
it as this kit's copy-before-write with *another reader*: its graph figure (the
live disk under guest writes; the fleecing overlay, qcow2 with ``backing`` = the
live disk, that receives the old data; the NBD export a backup client reads);
the race, mirrored from COLO's — the client's read of the overlay finds a
cluster unallocated, falls through to the live disk and, preempted there,
returns data the guest wrote *after* the backup started (``labkit explore
fleecing-race --design 2.12``: one preemption); then the two fixes, 3.0's
serialising writes to the fleecing target (``f8d59dfb40``, the same commit
COLO's design 4.0 rests on) and 7.x's copy-before-write filter with
``snapshot-access``, where the guest write waits for the client's in-flight
read of the same area (``cbw_snapshot_read_lock`` / ``reqlist_wait_all``);
``on-cbw-error``; and how libvirt (``src/qemu/qemu_backup.c``: pull mode is
``blockdev-backup sync=none`` into a qcow2 scratch image backed by the disk,
exported over NBD) and Proxmox VE (pve-qemu's "PVE backup: add fleecing
option": copy-before-write + ``snapshot-access``, ``on-cbw-error=break-snapshot``)
use it.

The graph (QEMU's ``tests/qemu-iotests/tests/image-fleecing`` builds the
same over QMP; :mod:`labkit.qemu._fleecing` does it on a real QEMU 7.2)::

    vm-write#N / vm-read#N ─▶ guest device ─▶ live-disk (raw)
    client-read#N ─▶ NBD export "fleece" ─▶ fleece (qcow2) ─backing─▶ live-disk

Three schemes, the lab's ``design`` (``build_secondary(graph="fleecing",
design=...)`` or ``# config: graph=fleecing``):

``"2.12"``
    ``blockdev-backup sync=none device=live-disk target=fleece``: the backup
    job's before-write notifier on the live disk (``backup_before_write_notify``
    → ``backup_do_cow``) copies old clusters into the overlay; the client's
    read of the overlay is an ordinary read.  Nothing orders the two: the race.
``"3.0"``
    the same, with the job's writes to the overlay ``BDRV_REQ_SERIALISING``
    (``f8d59dfb40``, "block/backup: fix fleecing scheme: use serialized
    writes"; set because the source is in the target's backing chain): the
    copy's write waits for the client's read in flight on the overlay, and a
    client read that starts later waits for the copy.
``"7.2"``
    ``blockdev-add`` of a ``copy-before-write`` node (``file`` = live disk,
    ``target`` = overlay, optional ``bitmap``, ``on-cbw-error``), the guest
    device moved onto it (``qom-set ... drive``), a ``snapshot-access`` node
    on top, and the export on that.  A client read goes
    ``snapshot_access_co_preadv_part`` → ``cbw_co_preadv_snapshot``: per
    area, ``cbw_snapshot_read_lock`` fails with ``-EACCES`` outside the
    access bitmap, reads the overlay where the copy is done
    (``done_bitmap``), and else reads the live disk *holding a request in
    ``frozen_read_reqs``* — which a guest write's ``cbw_do_copy_before_write``
    waits for (``reqlist_wait_all``) after its copy and before it writes.
    ``on-cbw-error=break-guest-write`` (default) fails the guest write when
    the copy fails; ``break-snapshot`` lets the guest write go on and makes
    every later snapshot read fail (``snapshot_error``, 7.1).  ``cbw-timeout``
    (7.1) is not modelled: labkit has no clock.

What a trainee should notice: the backup client is to fleecing what the
secondary VM's read is to COLO — a reader that falls through an unallocated
cluster to a disk that is being written.
"""

from __future__ import annotations

import errno as _errno
import os
from enum import StrEnum
from typing import Any

import numpy as np

from .block import BlockNode, Qcow2Node, RawNode, blk_wait_while_drained
from .block.block_copy import BlockReq
from .block.copy_before_write import CopyBeforeWriteNode
from .errors import ArgumentError, BlockError, ConfigError, StateError
from .interpret import CommandOutcome
from .jobs.backup import BackupJob
from .kernel import Task, touch
from .lab import OTHER_GRAPHS, Lab, check_io
from .layers import SECTOR, Layer
from .oracle import FleecingOracle, Violation
from .run import SimBackend
from .scenario import Command, Scenario, scenario_graph

LIVE, OVERLAY, CBW, ACCESS = "live-disk", "fleece", "fl-cbw", "fl-access"
EXPORT = "fleece"


class FleecingStage(StrEnum):
    """A fleecing lab's state (:attr:`FleecingLab.state`): ``none`` before ``fleece``,
    ``fleecing`` after, ``broken`` once a failed copy broke the snapshot (7.2's
    ``snapshot_error``)."""

    NONE = "none"
    FLEECING = "fleecing"
    BROKEN = "broken"


class GuestDevice:
    """The guest's BlockBackend (a virtio disk): its root moves to the filter on
    ``qom-set drive`` (7.2) and, in 2.12/3.0, stays on the live disk."""

    backend_name = "guest"

    def __init__(self, node: BlockNode) -> None:
        self.node = node
        node.backends.append(self.backend_name)
        node.blk_parents.append(self)

    def attach(self, node: BlockNode) -> None:
        """``qom-set /machine/peripheral/DEV drive NODE``: the device's root is ``node``."""
        self.node.backends.remove(self.backend_name)
        self.node.blk_parents.remove(self)
        self.node = node
        node.backends.append(self.backend_name)
        node.blk_parents.append(self)


class FleecingCbw(CopyBeforeWriteNode):
    """``BDRVCopyBeforeWriteState`` as fleecing opens it (``cbw_open``): with the
    ``access_bitmap``, the ``done_bitmap``, ``on_cbw_error`` and ``snapshot_error``.

    ``bitmap`` is ``(offset, bytes)``: the areas to copy (``block_copy_state_new``
    starts the copy bitmap from it) and the only ones the client may read
    (``access_bitmap`` starts equal to the copy bitmap).  One bit per
    block-copy cluster, as QEMU's bitmaps have ``cluster_size`` granularity.
    """

    def __init__(self, name: str, source: BlockNode, target: BlockNode, *, cluster_size: int,
                 bitmap: tuple[int, int] | None, on_cbw_error: str) -> None:
        # is_fleecing: the source is in the target's backing chain (block_copy_state_new)
        super().__init__(name, source, target, cluster_size=cluster_size,
                         serialising=source in target.chain_nodes())
        n = len(self.bcs.copy_bitmap)
        if bitmap is not None:
            off, nbytes = bitmap
            init = np.zeros(n, dtype=bool)
            init[off // cluster_size:-(-(off + nbytes) // cluster_size)] = True
            self.bcs.copy_bitmap[:] = init
        self.access_bitmap = self.bcs.copy_bitmap.copy()
        self.done_bitmap = np.zeros(n, dtype=bool)
        self.on_cbw_error = on_cbw_error
        self.snapshot_error = 0
        self._state = ("cbw-state", source.name)  # s->lock's data: the bitmaps, the error

    def frozen_read_begin(self, offset: int, nbytes: int) -> BlockReq:
        """``reqlist_init_req(&s->frozen_read_reqs, ...)``; its waiters read why they wait."""
        req = super().frozen_read_begin(offset, nbytes)
        req.wait_queue.label = (f"frozen snapshot read of {req.owner} on clusters "
                                f"{req.start}-{req.end - 1}")
        return req

    def _clusters(self, offset: int, nbytes: int) -> tuple[int, int]:
        cs = self.bcs.cluster_size
        return offset // cs, -(-(offset + nbytes) // cs)

    async def cbw_do_copy_before_write(self, offset: int, nbytes: int) -> None:
        """``cbw_do_copy_before_write``: copy, then mark done and wait for frozen reads.

        A failed copy fails the guest write (``break-guest-write``) or breaks the
        snapshot (``break-snapshot``: the write goes on, snapshot reads fail).
        Once the snapshot is broken nothing is copied or waited for.
        """
        touch(self._state, 0, self.size, False)
        if self.snapshot_error:
            return
        cs = self.bcs.cluster_size
        off = (offset // cs) * cs
        end = -(-(offset + nbytes) // cs) * cs
        ret = 0
        try:
            await self.bcs.block_copy(off, end - off)
        except BlockError as exc:
            if self.on_cbw_error == "break-guest-write":
                raise
            ret = -exc.errno
        touch(self._state, off, end, True)
        if ret < 0:
            if not self.snapshot_error:
                touch(self._state, 0, self.size, True)
                self.snapshot_error = ret
        else:
            self.done_bitmap[off // cs:end // cs] = True
        await self.frozen_read_reqs.reqlist_wait_all(off, end - off)

    def cbw_snapshot_read_lock(self, offset: int,
                               nbytes: int) -> tuple[BlockReq | None, int, BlockNode] | None:
        """``cbw_snapshot_read_lock``: None (-EACCES) when the snapshot is broken or
        the area is not all in the access bitmap; else (the frozen request or None,
        how many bytes, the node to read them from)."""
        touch(self._state, offset, offset + nbytes, False)
        touch(self._state, 0, self.size, False)  # snapshot_error
        if self.snapshot_error:
            return None
        c0, c1 = self._clusters(offset, nbytes)
        if not self.access_bitmap[c0:c1].all():
            return None
        done, pnum = hbitmap_status(self.done_bitmap, self.bcs.cluster_size, offset, nbytes)
        if done:
            return None, pnum, self.target
        req = self.frozen_read_begin(offset, pnum)
        assert self.file is not None
        return req, pnum, self.file

    async def cbw_co_preadv_snapshot(self, offset: int, nbytes: int) -> bytes:
        """``cbw_co_preadv_snapshot``: area by area, lock, read, unlock."""
        out = []
        while nbytes:
            locked = self.cbw_snapshot_read_lock(offset, nbytes)
            if locked is None:
                raise BlockError(_errno.EACCES, f"snapshot read [{offset:#x}+{nbytes:#x}] from "
                                                f"{self.name}: Permission denied")
            req, cur, node = locked
            try:
                out.append(await node.co_preadv(offset, cur))
            finally:
                if req is not None:  # cbw_snapshot_read_unlock
                    self.frozen_read_end(req)
            offset += cur
            nbytes -= cur
        return b"".join(out)

    def snapshot_view(self) -> Layer:
        """What a client reads now (the overlay where done, else the live disk);
        sectors outside the access bitmap, or all once broken, not allocated."""
        assert self.file is not None
        cs = self.bcs.cluster_size
        data = bytearray(self.file.peek(0, self.size))
        alloc = np.zeros(self.size // SECTOR, dtype=bool)
        for c in np.flatnonzero(self.done_bitmap):
            lo, hi = int(c) * cs, min((int(c) + 1) * cs, self.size)
            data[lo:hi] = self.target.peek(lo, hi - lo)
        if not self.snapshot_error:
            for c in np.flatnonzero(self.access_bitmap):
                lo, hi = int(c) * cs, min((int(c) + 1) * cs, self.size)
                alloc[lo // SECTOR:hi // SECTOR] = True
        # what cannot be read reads as nothing: zeros, as a dump shows unallocated data
        view = np.frombuffer(bytes(data), dtype=np.uint8).reshape(-1, SECTOR).copy()
        view[~alloc] = 0
        return Layer(view.tobytes(), alloc)


def hbitmap_status(bitmap: np.ndarray, granularity: int, offset: int,
                   nbytes: int) -> tuple[bool, int]:
    """``bdrv_dirty_bitmap_status`` → ``hbitmap_status`` *as QEMU 7.2 has it*: (dirty
    at ``offset``?, how many bytes from ``offset`` share that answer).

    QEMU 7.2's ``util/hbitmap.c`` returns **false** when the range starts dirty
    and a clean bit follows inside it (the last ``return false``; fixed after
    7.2 by "hbitmap: fix hbitmap_status() return value for first dirty bit
    case", which makes it ``return true``).  So ``cbw_snapshot_read_lock``
    takes copied clusters followed by uncopied ones for uncopied, and a
    snapshot read that spans both reads the copied ones from the *live* disk:
    the guest's new data.  Real QEMU 7.2 does this (a ``cread 0 192K`` after
    guest writes to clusters 0-1 returns them), and the oracle calls it a
    ``fleecing-read`` violation, which it is.
    """
    c0, c1 = offset // granularity, -(-(offset + nbytes) // granularity)
    bits = bitmap[c0:c1]
    dirty = np.flatnonzero(bits)
    if not dirty.size:  # next_dirty == -1
        return False, nbytes
    if dirty[0] > 0:  # next_dirty > start
        return False, (c0 + int(dirty[0])) * granularity - offset
    clean = np.flatnonzero(~bits)
    if not clean.size:  # next_zero == -1
        return True, nbytes
    return False, (c0 + int(clean[0])) * granularity - offset  # QEMU 7.2: false (see above)


class SnapshotAccessNode(BlockNode):
    """``snapshot-access`` (``block/snapshot-access.c``, 7.0): a read-only node whose
    reads are its ``file``'s snapshot reads (``bdrv_co_preadv_snapshot``)."""

    driver = "snapshot-access"

    def __init__(self, name: str, cbw: FleecingCbw) -> None:
        super().__init__(name, cbw.size)
        self.set_file(cbw)
        self.cbw = cbw

    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        """``snapshot_access_co_preadv_part``."""
        return await self.cbw.cbw_co_preadv_snapshot(offset, nbytes)

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        """``snapshot_access_co_pwritev_part``: -EPERM."""
        raise BlockError(_errno.EPERM, f"write to {self.name}: Operation not permitted")

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        raise BlockError(_errno.EPERM, f"write to {self.name}: Operation not permitted")

    def _allocation(self) -> np.ndarray:
        return np.zeros(self.size // SECTOR, dtype=bool)

    def _own_data(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.uint8)

    def _peek(self, offset: int, nbytes: int) -> bytes:
        return self.cbw.snapshot_view().data[offset:offset + nbytes]

    def _content_key(self) -> tuple | None:
        return None


class FleecingLab(Lab):
    """One fleecing graph: the live disk, the overlay, the guest, the backup client.

    Built by :func:`labkit.build_secondary` with ``graph="fleecing"`` (``design``
    is the scheme).  It plays the same scenario language (``fleece``,
    ``cread``, and ``vwrite`` / ``vread`` for the guest), runs under the same
    kernel, explorer, replay and shrinking as the COLO lab, and its oracle is
    :class:`~labkit.oracle.FleecingOracle`.  ``hidden_cluster`` is the
    overlay's cluster size; ``backup_cluster`` overrides the copy's cluster
    (QEMU: ``MAX(64 KiB, overlay cluster)``).
    """

    graph_name = "fleecing"

    def _build(self) -> None:
        """The live disk, the overlay backed by it, the guest device on the live disk;
        the filter, the job and the export come with ``fleece``."""
        config = self.config
        self.live = self.graph.add(RawNode(LIVE, config.size, fill=self._fill))
        self.overlay = self.graph.add(Qcow2Node(OVERLAY, config.size, config.hidden_cluster,
                                                backing=self.live))
        self.guest = GuestDevice(self.live)
        self.export: Any = None
        self.job: BackupJob | None = None
        self.cbw: FleecingCbw | None = None
        self.access: SnapshotAccessNode | None = None
        # fleecing's promises, not COLO's (self.oracle names the same object)
        self.fleecing_oracle = FleecingOracle(config.size, self._initial, config.block)
        self.oracle = self.fleecing_oracle  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<FleecingLab {self.size} bytes, scheme {self.design!r}, {self.state}, "
                f"{len(self.kernel.tasks)} tasks>")

    # --- state ---------------------------------------------------------------------
    @property
    def state(self) -> FleecingStage:
        """``none`` before ``fleece``, ``fleecing`` after, ``broken`` once a failed
        copy broke the snapshot (``on-cbw-error=break-snapshot``)."""
        if self.export is None:
            return FleecingStage.NONE
        if self.cbw is not None and self.cbw.snapshot_error:
            return FleecingStage.BROKEN
        return FleecingStage.FLEECING

    @property
    def backup_cluster(self) -> int:
        """The copy's cluster: the job's, or ``MAX(64 KiB, overlay cluster)`` unless
        overridden (:attr:`labkit.config.LabConfig.effective_backup_cluster`)."""
        return self.config.effective_backup_cluster

    def violations(self) -> list[Violation]:
        return list(self.fleecing_oracle.violations)

    def inject_copy_error(self, op: str = "write", errno: int = _errno.EIO) -> None:
        """Make the copy's next ``op`` fail (blkdebug): ``write`` on the overlay,
        ``read`` on the live disk.  The oracle is told (history)."""
        node = self.overlay if op == "write" else self.live
        node.inject_error(op, errno)
        self.fleecing_oracle.copy_error_injected()

    def inject_error(self, op: str = "write") -> Task:
        """The scenario's ``inject-error read|write`` (task ``inject#N``): the copy's next
        ``op`` fails (:meth:`inject_copy_error`), as a blkdebug rule would make it."""
        if op not in ("read", "write"):
            raise ConfigError(f"inject-error takes 'read' or 'write', got {op!r}")

        async def body() -> None:
            self.inject_copy_error(op)

        return self._control("inject", body, None, False)

    # --- the commands ----------------------------------------------------------------
    def fleece(self, bitmap: tuple[int, int] | None = None, on_cbw_error: str | None = None,
               wait: bool = True) -> Task:
        """Start the backup's point-in-time view (task ``fleece#N``): the scheme's QMP
        commands in one drained section (image-fleecing runs them in a transaction)."""
        if bitmap is not None:
            self.live.check_request(bitmap[0], bitmap[1], "fleece bitmap")

        async def body() -> None:
            if self.design != "7.2" and (bitmap is not None or on_cbw_error is not None):
                # a failed command, as QMP answers one (the task fails, the run goes on)
                raise ConfigError(f"scheme {self.design}: 'bitmap' and 'on-cbw-error' are "
                                  f"options of the copy-before-write filter (QEMU 7.0/7.1); "
                                  f"use design '7.2'")
            if self.export is not None:
                raise StateError(f"Duplicate nodes with node-name='{CBW}'"
                                 if self.design == "7.2" else
                                 f"Node '{LIVE}' is busy: block device is in use by block job: "
                                 f"backup")
            if self.design == "7.2":
                self.cbw = FleecingCbw(CBW, self.live, self.overlay,
                                       cluster_size=self.backup_cluster, bitmap=bitmap,
                                       on_cbw_error=on_cbw_error or "break-guest-write")
                self.cbw.quiesce_counter = self.live.quiesce_counter
                self.cbw.quiesced_by = list(self.live.quiesced_by)
                self.graph.add(self.cbw)
                self.guest.attach(self.cbw)  # qom-set ... drive fl-cbw
                self.access = SnapshotAccessNode(ACCESS, self.cbw)
                self.access.quiesce_counter = self.live.quiesce_counter
                self.access.quiesced_by = list(self.live.quiesced_by)
                self.graph.add(self.access)
                self.export = self.nbd.add(self.access, EXPORT)
            else:
                self.job = BackupJob(self.live, self.overlay, "none", job_id="fleecing-backup",
                                     cluster_size_override=self.config.backup_cluster,
                                     serialising_target_writes=self.design == "3.0")
                self.job.start()
                self.export = self.nbd.add(self.overlay, EXPORT)

        def after(_: str) -> None:
            self.fleecing_oracle.fleece_started(self.design, bitmap, on_cbw_error)

        return self._control("fleece", body, after, wait)

    def vm_write(self, offset: int, length: int, byte: int) -> Task:
        """A guest write through the guest device (``vm-write#N``)."""
        offset, length, byte = check_io(self.live, "VM write", offset, length, byte)

        async def body(name: str) -> None:
            await blk_wait_while_drained(self.guest.node)
            self.fleecing_oracle.guest_write_started(name, offset, length, byte)
            error: BaseException | None = None
            try:
                await self.guest.node.co_pwritev(offset, bytes([byte]) * length)
            except BlockError as exc:
                error = exc
                raise
            finally:
                v = self.fleecing_oracle.guest_write_done(name, error)
                if v is not None:
                    self.log.append(str(v))

        task = self._spawn("vm-write", body)
        self.write_bytes[task.name] = byte
        return task

    def vm_read(self, offset: int, length: int) -> Task:
        """A guest read through the guest device (``vm-read#N``)."""
        offset, length, _ = check_io(self.live, "VM read", offset, length)

        async def body(name: str) -> bytes:
            await blk_wait_while_drained(self.guest.node)
            self.fleecing_oracle.guest_read_started(name, offset, length)
            data = None
            try:
                data = await self.guest.node.co_preadv(offset, length)
                return data
            finally:
                v = self.fleecing_oracle.guest_read_done(name, data)
                if v is not None:
                    self.log.append(str(v))

        return self._spawn("vm-read", body)

    def client_read(self, offset: int, length: int) -> Task:
        """The backup client's ``NBD_CMD_READ`` of the export (``client-read#N``)."""
        offset, length, _ = check_io(self.live, "client read", offset, length)

        async def body(name: str) -> bytes:
            data: bytes | None = None
            errno: int | None = None
            message = ""
            try:
                if self.export is None:
                    raise BlockError(_errno.ENOENT, f"NBD export '{EXPORT}' not found: the "
                                                    f"backup client connects after fleece")
                try:
                    data = await self.export.co_read(offset, length)
                except BlockError as exc:
                    raise nbd_client_error(exc, offset, length) from None
                return data
            except BlockError as exc:
                errno, message = exc.errno, str(exc)
                raise
            finally:
                v = self.fleecing_oracle.client_read_done(name, offset, length, data, errno,
                                                          message)
                if v is not None:
                    self.log.append(str(v))

        return self._spawn("client-read", body)

    # --- what is on the disks ----------------------------------------------------------
    def layers(self) -> dict[str, Layer | None]:
        """``live`` and ``fleece`` (the overlay's own clusters), and ``snapshot``: what
        the client reads now (None before ``fleece``)."""
        snapshot = None
        if self.cbw is not None:
            snapshot = self.cbw.snapshot_view()
        elif self.export is not None:
            snapshot = Layer.full(self.overlay.peek(0, self.size))
        return {"live": self.live.layer(), "fleece": self.overlay.layer(),
                "snapshot": snapshot}

    def layer(self, name: str) -> Layer | None:
        """One of :meth:`layers` (``live``, ``fleece`` or ``snapshot``) without the
        others: what an ``expect`` reads."""
        if name == "live":
            return self.live.layer()
        if name == "fleece":
            return self.overlay.layer()
        if name == "snapshot":
            return self.layers()["snapshot"]
        raise ArgumentError(f"no layer named {name!r}; layers: live, fleece, snapshot")

    def drop_layer_caches(self) -> None:
        for node in (self.live, self.overlay):
            node.drop_layer_cache()

    # --- scenarios -----------------------------------------------------------------------
    def backend(self, scenario: Scenario) -> SimBackend:
        if scenario_graph(scenario) == "colo":
            raise ConfigError("this scenario uses COLO's commands or layers (start, pwrite, "
                              "checkpoint, failover, stop; secondary, hidden, active, vm-view): "
                              "it needs a COLO lab, not graph=fleecing")
        return FleecingBackend(self)

    def play(self, scenario: str | Scenario) -> Lab:
        """Play a scenario, then check that no guest write was lost (the oracle)."""
        super().play(scenario)
        v = self.fleecing_oracle.live_done("end", self.live.peek(0, self.size))
        if v is not None:
            self.log.append(str(v))
        return self


def system_errno_to_nbd_errno(err: int) -> int:
    """``nbd/server.c``'s ``system_errno_to_nbd_errno``: the errno an NBD client sees
    (the protocol has a few codes; everything else, ``EACCES`` included, is EINVAL)."""
    if err in (_errno.EPERM, _errno.EROFS):
        return _errno.EPERM
    if err in (_errno.EIO, _errno.ENOMEM, _errno.EOVERFLOW, _errno.ESHUTDOWN):
        return err
    if err in (_errno.EDQUOT, _errno.EFBIG, _errno.ENOSPC):
        return _errno.ENOSPC
    if err in (_errno.ENOTSUP, _errno.EOPNOTSUPP):
        return _errno.ENOTSUP
    return _errno.EINVAL


def nbd_client_error(exc: BlockError, offset: int, length: int) -> BlockError:
    """A failed ``NBD_CMD_READ`` as the backup client sees it: QEMU's error, sent with
    the NBD protocol's errno (a snapshot read's ``-EACCES`` arrives as EINVAL)."""
    err = system_errno_to_nbd_errno(exc.errno)
    return BlockError(err, f"NBD read on export '{EXPORT}' [{offset:#x}+{length:#x}]: "
                           f"{os.strerror(err)} (QEMU: {exc})")


class FleecingBackend(SimBackend):
    """The interpreter's backend for a fleecing lab (``fleece``, ``cread``, guest I/O)."""

    lab: FleecingLab

    def begin(self, cmd: Command) -> str:
        lab = self.lab
        if cmd.op == "vwrite":
            return lab.vm_write(cmd.offset, cmd.length, cmd.byte).name  # type: ignore[arg-type]
        if cmd.op == "vread":
            return lab.vm_read(cmd.offset, cmd.length).name
        if cmd.op == "cread":
            return lab.client_read(cmd.offset, cmd.length).name
        if cmd.op == "fleece":
            bitmap = (cmd.offset, cmd.length) if cmd.length else None
            return lab.fleece(bitmap, cmd.what, wait=False).name
        if cmd.op == "inject-error":
            return lab.inject_error(cmd.what or "write").name
        raise ConfigError(f"line {cmd.line}: {cmd.op!r} is not a fleecing command")

    def outcome(self, cmd: Command, task: str) -> CommandOutcome:
        t = self.lab.kernel.tasks[task]
        exc = t.exception
        if exc is None:
            return CommandOutcome(cmd, task,
                                  data=t.result if cmd.op in ("vread", "cread") else None)
        return CommandOutcome(cmd, task, str(exc),
                              exc.errno if isinstance(exc, BlockError) else None)

    def background_failures(self) -> list[str]:
        return []


OTHER_GRAPHS["fleecing"] = FleecingLab  # build_lab's lab for LabConfig(graph="fleecing")

__all__ = ["FleecingBackend", "FleecingCbw", "FleecingLab", "FleecingStage", "GuestDevice",
           "SnapshotAccessNode", "hbitmap_status"]
