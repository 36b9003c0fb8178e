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
