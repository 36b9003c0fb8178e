"""The consistency oracle: what the secondary VM must read, from the scenario's history alone.

The rule COLO depends on: for every byte, the secondary VM reads the secondary
disk's contents *at the last checkpoint* (or at start), overlaid with the VM's
own writes since.  The oracle keeps that view from the history of completed
requests — the primary's writes, the VM's writes, checkpoints, failover —
and never looks at the engine's layers to compute it.

* A VM read that returns anything else is a *conflicting read*.  A byte may
  also hold the value of a VM write that overlapped the read in time (the read
  and the write are concurrent; either order is correct).
* After failover, the secondary disk must equal that view: the primary's
  un-checkpointed writes reverted, the VM's writes kept.
* Two VM writes that overlap in space and in time race each other: the disk
  keeps the bytes of whichever *lands* last, which need not be the one that
  *completes* last (QEMU does not order a guest's overlapping writes; qcow2
  may put one write's data down, then another's, then finish the first).  The
  view takes the last to complete, and a later read, or the failover check,
  may see the other's bytes there too — until a VM write that raced with
  neither covers them, or a checkpoint resets the view.
* A primary write that lands *while* the failover commit runs races the
  commit (COLO never sends one: it fails over when the primary is gone), so
  COLO promises nothing for its bytes: either the VM's view or the written
  byte is accepted, by reads then and by the failover check, and the view
  takes whichever the disk ended with.

Trainees should notice that the oracle needs no knowledge of hidden disks or
CowRequests: it states *what* must hold, the engine shows *how* QEMU makes it
hold (or, in design ``"none"``, does not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .block import BufferBase, ChunkStore
from .kernel import touch

# Declared resources (labkit.kernel.Access): the VM's view with the VM writes in
# flight, the primary's view with its log since the checkpoint, and the list of
# violations (its order is what a user reads).
VIEW = ("oracle", "vm-view")
PRIMARY = ("oracle", "primary")
FOUND = ("oracle", "violations")


@dataclass(frozen=True)
class Violation:
    """An oracle failure: ``kind`` is ``conflicting-read`` or ``failover``."""

    kind: str
    task: str
    offset: int
    expected: int
    got: int
    message: str

    def __str__(self) -> str:
        return self.message


class _ReadWatch:
    __slots__ = ("alternatives", "expected", "length", "offset")

    def __init__(self, offset: int, length: int, expected: np.ndarray) -> None:
        self.offset = offset
        self.length = length
        self.expected = expected
        self.alternatives: list[tuple[int, int, int]] = []  # (offset, length, byte)


class Oracle:
    """The expected VM view, updated by the lab as requests complete.

    ``initial`` is the secondary disk's contents at the start: its bytes, or
    ``(size, fill)`` with ``fill(offset, nbytes) -> array`` computing them
    (:class:`~labkit.block._store.IndexFill`), so that a large disk is not
    held in full.  Both views are sparse :class:`ChunkStore` s (array-like:
    ``oracle.view[i]``); a checkpoint *shares* the primary's view's chunks
    with the VM's view (copy-on-write) instead of copying the whole disk.
    """

    def __init__(self, initial: bytes | tuple[int, Callable[[int, int], np.ndarray]],
                 block: int) -> None:
        self.block = block
        if isinstance(initial, tuple):
            size, fill = initial
            self.secondary = ChunkStore(size, fill)  # primary's view
        else:
            self.secondary = ChunkStore(len(initial), BufferBase(initial))
        self.view = self.secondary.copy()  # what the VM must read
        self.active = False  # replication running (or failed over): reads are checked
        self.failed_over = False  # the VM and the primary now share the secondary disk
        self.failing_over = False  # the failover commit runs (see failover_started)
        self._racing: list[tuple[int, int, int]] = []  # primary writes racing the commit
        self.violations: list[Violation] = []
        self._reads: dict[str, _ReadWatch] = {}
        self._vm_writes: dict[str, tuple[int, int, int]] = {}
        # For each VM write in flight, the overlapping VM writes it raced with so far
        # (in flight with it, done or not); and the bytes such races left ambiguous:
        # (offset, length, byte) that a read may also return (see the docstring).
        self._vm_races: dict[str, list[tuple[int, int, int]]] = {}
        self._vm_ambiguous: list[tuple[int, int, int]] = []
        self._primary_log: list[tuple[str, int, int, int]] = []  # name, off, len, byte

    # --- history --------------------------------------------------------------
    def started(self) -> None:
        self.view = self.secondary.copy()
        self.active = True

    def checkpoint(self) -> None:
        self.view = self.secondary.copy()
        self._primary_log.clear()
        self._vm_ambiguous.clear()  # the VM's writes are gone from its view

    def stopped(self) -> None:
        """A stop without failover: replication no longer promises anything."""
        self.active = False

    def failover_started(self) -> None:
        """``replication_stop(failover=true)`` started the commit: see the module docstring."""
        self.failing_over = True

    def primary_write_done(self, name: str, offset: int, length: int, byte: int) -> None:
        touch(PRIMARY, offset, offset + length, True)
        self.secondary.fill(offset, length, byte)
        if self.failed_over:  # the shared disk: a read it overlaps may see either value
            touch(VIEW, offset, offset + length, True)
            self.view.fill(offset, length, byte)
            self._overlaps_reads(offset, length, byte)
            return
        self._primary_log.append((name, offset, length, byte))
        if self.failing_over:  # races the commit: either value may stay (docstring)
            self._racing.append((offset, length, byte))
            self._overlaps_reads(offset, length, byte)

    def _overlaps_reads(self, offset: int, length: int, byte: int) -> None:
        """A write concurrent with reads in flight: they may return either value."""
        for watch in self._reads.values():
            if offset < watch.offset + watch.length and watch.offset < offset + length:
                watch.alternatives.append((offset, length, byte))

    def vm_write_started(self, name: str, offset: int, length: int, byte: int) -> None:
        touch(VIEW, offset, offset + length, True)
        mine: list[tuple[int, int, int]] = []
        for other, (o_off, o_len, o_byte) in self._vm_writes.items():
            if offset < o_off + o_len and o_off < offset + length:  # they race
                mine.append((o_off, o_len, o_byte))
                self._vm_races[other].append((offset, length, byte))
        self._vm_races[name] = mine
        self._vm_writes[name] = (offset, length, byte)
        self._overlaps_reads(offset, length, byte)

    def vm_write_done(self, name: str, ok: bool) -> None:
        offset, length, byte = self._vm_writes.pop(name)
        raced = self._vm_races.pop(name)
        touch(VIEW, offset, offset + length, True)
        if ok:
            self.view.fill(offset, length, byte)
            # its bytes replace what earlier races left open, except where it raced too
            self._vm_ambiguous = [p for a in self._vm_ambiguous
                                  for p in _minus(a, offset, length)]
            for r_off, r_len, r_byte in raced:
                lo, hi = max(offset, r_off), min(offset + length, r_off + r_len)
                if lo < hi and r_byte != byte:
                    self._vm_ambiguous.append((lo, hi - lo, r_byte))
            if self.failed_over:
                touch(PRIMARY, offset, offset + length, True)
                self.secondary.fill(offset, length, byte)

    def vm_read_started(self, name: str, offset: int, length: int) -> None:
        touch(VIEW, offset, offset + length, False)
        watch = _ReadWatch(offset, length, self.view.read(offset, length))
        for w_off, w_len, byte in [*self._vm_writes.values(), *self._racing,
                                   *self._vm_ambiguous]:
            if w_off < offset + length and offset < w_off + w_len:
                watch.alternatives.append((w_off, w_len, byte))
        self._reads[name] = watch

    def vm_read_done(self, name: str, data: bytes | None) -> Violation | None:
        """Check a finished read (``data`` None: it failed, nothing to check)."""
        watch = self._reads.pop(name)
        touch(VIEW, watch.offset, watch.offset + watch.length, False)
        if data is None or not self.active:
            return None
        got = np.frombuffer(data, dtype=np.uint8)
        bad = got != watch.expected
        for w_off, w_len, byte in watch.alternatives:
            lo = max(w_off, watch.offset) - watch.offset
            hi = min(w_off + w_len, watch.offset + watch.length) - watch.offset
            bad[lo:hi] &= got[lo:hi] != byte
        idx = np.flatnonzero(bad)
        if not idx.size:
            return None
        i = int(idx[0])
        off = watch.offset + i
        source = self._who_wrote(off, int(got[i]))
        msg = (f"conflicting read: {name} read {int(got[i]):#04x} at offset {off:#x} (block "
               f"{off // self.block}) where the VM's view holds {int(watch.expected[i]):#04x}"
               f"{source}; {idx.size} byte(s) differ")
        v = Violation("conflicting-read", name, off, int(watch.expected[i]), int(got[i]), msg)
        touch(FOUND, 0, 1, True)
        self.violations.append(v)
        return v

    def failover_done(self, name: str, secondary_disk: bytes) -> Violation | None:
        """Failover completed: the secondary disk must equal the VM's view.

        ``secondary_disk`` is the engine's result being checked; the expectation
        stays the oracle's own.
        """
        self.failed_over = True
        self.failing_over = False
        self.active = True
        got = np.frombuffer(secondary_disk, dtype=np.uint8)
        view = self.view.to_array()
        bad = got != view
        # either value is correct where a write raced (the commit, or another VM write):
        # keep the disk's
        for off, length, byte in [*self._racing, *self._vm_ambiguous]:
            span = slice(off, off + length)
            ok = got[span] == byte
            bad[span] &= ~ok
            self.view.write(off, np.where(ok, got[span], view[span]).astype(np.uint8))
        self._racing.clear()
        self._vm_ambiguous.clear()
        idx = np.flatnonzero(bad)
        self.secondary = self.view.copy()  # from now on the VM and the primary share this disk
        self._primary_log.clear()
        if not idx.size:
            return None
        i = int(idx[0])
        msg = (f"failover: after {name} the secondary disk holds {int(got[i]):#04x} at offset "
               f"{i:#x} (block {i // self.block}) where the VM's view holds "
               f"{int(view[i]):#04x}; {idx.size} byte(s) differ")
        v = Violation("failover", name, i, int(view[i]), int(got[i]), msg)
        self.violations.append(v)
        return v

    def _who_wrote(self, offset: int, byte: int) -> str:
        touch(PRIMARY, offset, offset + 1, False)
        for name, off, length, b in reversed(self._primary_log):
            if off <= offset < off + length and b == byte:
                return f" (primary data from {name}, written after the checkpoint)"
        return ""


def _minus(piece: tuple[int, int, int], offset: int, length: int) -> list[tuple[int, int, int]]:
    """``piece`` (offset, length, byte) without the bytes ``[offset, offset + length)``."""
    p_off, p_len, byte = piece
    out = []
    if p_off < offset:
        out.append((p_off, min(p_len, offset - p_off), byte))
    end = offset + length
    if p_off + p_len > end:
        start = max(p_off, end)
        out.append((start, p_off + p_len - start, byte))
    return out


# --- image fleecing ---------------------------------------------------------------------

FLEECE_SNAPSHOT = ("oracle", "fleecing-snapshot")
FLEECE_LIVE = ("oracle", "fleecing-live")


class FleecingOracle:
    """What image fleecing promises, from the scenario's history alone.

    * Every backup-client read returns the disk *as it was when the backup
      started* (the ``fleece`` command): the guest's completed writes before
      it, none after.  A read that returns later guest data is a
      ``fleecing-read`` violation, with the bytes and the guest write named.
    * The guest's own I/O is untouched by the backup: a guest read returns
      the guest's view (its completed writes; a write in flight with the read
      may show or not), a guest write is never vetoed (``guest-write``) and
      never lost — the live disk at the end equals the guest's view
      (``lost-write``).
    * A client read fails only where QEMU lets it: before the export exists,
      outside copy-before-write's access ``bitmap`` (``-EACCES``), or once a
      copy failed under ``on-cbw-error=break-snapshot``.  Any other error is
      a ``client-error`` violation.  A copy failure the scenario injected
      (:meth:`copy_error_injected`) may veto a guest write where the scheme
      says so (2.12, 3.0, and 7.2's ``break-guest-write``).

    Like :class:`Oracle`, it never reads the engine's layers to compute what
    is expected; the live disk is compared with that expectation at the end.
    """

    def __init__(self, size: int, initial: Callable[[int, int], np.ndarray], block: int) -> None:
        self.block = block
        self.size = size
        self.live = ChunkStore(size, initial)  # the guest's view
        self.snapshot: ChunkStore | None = None  # the disk when the backup started
        self.access: tuple[int, int] = (0, size)  # copy-before-write's bitmap (7.2)
        self.scheme = ""
        self.on_cbw_error = "break-guest-write"
        self.copy_errors = False  # the scenario made a copy fail (history)
        self.violations: list[Violation] = []
        self._writes: dict[str, tuple[int, int, int]] = {}  # guest writes in flight
        self._racing: list[tuple[int, int, int]] = []  # overlapping guest writes that raced
        self._reads: dict[str, _ReadWatch] = {}
        self._after: list[tuple[str, int, int, int]] = []  # guest writes since the start

    # --- history ------------------------------------------------------------------
    def fleece_started(self, scheme: str, bitmap: tuple[int, int] | None,
                       on_cbw_error: str | None) -> None:
        """The backup started (a drained section: no guest write in flight)."""
        touch(FLEECE_SNAPSHOT, 0, self.size, True)
        touch(FLEECE_LIVE, 0, self.size, False)
        self.snapshot = self.live.copy()
        self.scheme = scheme
        self.access = bitmap if bitmap is not None else (0, self.size)
        self.on_cbw_error = on_cbw_error or "break-guest-write"
        self._after.clear()

    def copy_error_injected(self) -> None:
        """The scenario made the copy's I/O fail (blkdebug): see the class docstring."""
        self.copy_errors = True

    def guest_write_started(self, name: str, offset: int, length: int, byte: int) -> None:
        touch(FLEECE_LIVE, offset, offset + length, True)
        for other in self._writes.values():
            if offset < other[0] + other[1] and other[0] < offset + length:
                self._racing += [other, (offset, length, byte)]
        for watch in self._reads.values():
            if offset < watch.offset + watch.length and watch.offset < offset + length:
                watch.alternatives.append((offset, length, byte))
        self._writes[name] = (offset, length, byte)

    def guest_write_done(self, name: str, error: BaseException | None) -> Violation | None:
        offset, length, byte = self._writes.pop(name)
        touch(FLEECE_LIVE, offset, offset + length, True)
        if error is None:
            self.live.fill(offset, length, byte)
            if self.snapshot is not None:
                self._after.append((name, offset, length, byte))
            return None
        if self.copy_errors and (self.scheme in ("2.12", "3.0")
                                 or self.on_cbw_error == "break-guest-write"):
            return None  # the copy failed and this scheme fails the guest write (QEMU does)
        return self._found("guest-write", name, offset, byte, byte,
                           f"guest write vetoed: {name} failed ({error}) though the backup "
                           f"must never fail a guest write here")

    def guest_read_started(self, name: str, offset: int, length: int) -> None:
        touch(FLEECE_LIVE, offset, offset + length, False)
        watch = _ReadWatch(offset, length, self.live.read(offset, length))
        for w_off, w_len, byte in [*self._writes.values(), *self._racing]:
            if w_off < offset + length and offset < w_off + w_len:
                watch.alternatives.append((w_off, w_len, byte))
        self._reads[name] = watch

    def guest_read_done(self, name: str, data: bytes | None) -> Violation | None:
        watch = self._reads.pop(name)
        if data is None:
            return self._found("guest-read", name, watch.offset, 0, 0,
                               f"guest read failed: {name} got an error from the live disk")
        idx, got = _differences(watch, data)
        if not idx.size:
            return None
        i = int(idx[0])
        off = watch.offset + i
        return self._found("guest-read", name, off, int(watch.expected[i]), int(got[i]),
                           f"guest read: {name} read {int(got[i]):#04x} at offset {off:#x} "
                           f"(block {off // self.block}) where the guest's view holds "
                           f"{int(watch.expected[i]):#04x}; {idx.size} byte(s) differ")

    def client_read_done(self, name: str, offset: int, length: int, data: bytes | None,
                         errno: int | None, message: str = "") -> Violation | None:
        """Check a finished backup-client read against the disk at the backup's start."""
        touch(FLEECE_SNAPSHOT, offset, offset + length, False)
        if self.snapshot is None:
            return None  # no export yet: the client cannot connect (an error is right)
        if data is None:
            a_off, a_len = self.access
            outside = offset < a_off or offset + length > a_off + a_len
            # -EACCES, which QEMU's NBD server sends as EINVAL (system_errno_to_nbd_errno)
            if errno in (13, 22) and (outside or (self.copy_errors
                                            and self.on_cbw_error == "break-snapshot")):
                return None  # -EACCES: outside the bitmap, or the snapshot was broken
            return self._found("client-error", name, offset, 0, 0,
                               f"client read failed: {name} [{offset:#x}+{length:#x}] got "
                               f"{message or 'an error'} where QEMU returns the data")
        watch = _ReadWatch(offset, length, self.snapshot.read(offset, length))
        idx, got = _differences(watch, data)
        if not idx.size:
            return None
        i = int(idx[0])
        off = offset + i
        who = ""
        for w_name, w_off, w_len, w_byte in reversed(self._after):
            if w_off <= off < w_off + w_len and w_byte == int(got[i]):
                who = f" (guest data from {w_name}, written after the backup started)"
                break
        return self._found("fleecing-read", name, off, int(watch.expected[i]), int(got[i]),
                           f"fleecing read: {name} read {int(got[i]):#04x} at offset {off:#x} "
                           f"(block {off // self.block}) where the disk held "
                           f"{int(watch.expected[i]):#04x} when the backup started{who}; "
                           f"{idx.size} byte(s) differ")

    def live_done(self, name: str, disk: bytes) -> Violation | None:
        """The end: the live disk must hold the guest's view (no guest write lost)."""
        touch(FLEECE_LIVE, 0, self.size, False)
        got = np.frombuffer(disk, dtype=np.uint8)
        view = self.live.to_array()
        bad = got != view
        for off, length, byte in self._racing:  # raced guest writes land in either order
            bad[off:off + length] &= got[off:off + length] != byte
        idx = np.flatnonzero(bad)
        if not idx.size:
            return None
        i = int(idx[0])
        return self._found("lost-write", name, i, int(view[i]), int(got[i]),
                           f"lost write: at the end the live disk holds {int(got[i]):#04x} at "
                           f"offset {i:#x} (block {i // self.block}) where the guest wrote "
                           f"{int(view[i]):#04x}; {idx.size} byte(s) differ")

    def _found(self, kind: str, task: str, offset: int, expected: int, got: int,
               message: str) -> Violation:
        touch(FOUND, 0, 1, True)
        v = Violation(kind, task, offset, expected, got, message)
        self.violations.append(v)
        return v


def _differences(watch: _ReadWatch, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (within the read) where ``data`` is neither expected nor an alternative."""
    got = np.frombuffer(data, dtype=np.uint8)
    bad = got != watch.expected
    for w_off, w_len, byte in watch.alternatives:
        lo = max(w_off, watch.offset) - watch.offset
        hi = min(w_off + w_len, watch.offset + watch.length) - watch.offset
        if lo < hi:
            bad[lo:hi] &= got[lo:hi] != byte
    return np.flatnonzero(bad), got
