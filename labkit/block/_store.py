"""Sparse byte storage for the disks and the oracle: chunks made on first write.

A node used to keep one numpy array as large as its disk, zeroed up front:
three of them for a 1 GiB secondary, plus the oracle's two copies, while a
workload touches a small part of the disk.  A :class:`ChunkStore` holds the
same bytes as ``CHUNK``-byte numpy chunks, each made the first time a write
reaches it; every other byte reads as the store's *base*: zeros (a qcow2
layer's unallocated data), a fill pattern (the secondary disk's initial
contents, see :class:`IndexFill`) or an initial buffer given by the caller.

A chunk that :meth:`fill` set whole is held as its byte alone (an ``int``),
not as 4 KiB: the oracle's history is nothing but such fills.

It behaves exactly like the array it replaces: :meth:`read` returns the bytes
the array would hold, :meth:`write` / :meth:`fill` change them, :meth:`clear`
puts every byte back to the base (for a zero base that is the old
``data[:] = 0``), :meth:`to_array` is the whole array.  :meth:`copy` is a
copy-on-write snapshot: the two stores share their chunks until either one
writes to a shared chunk (the oracle takes one at every checkpoint).
:meth:`copy` is also a dump's snapshot: the buffers it returns never change
afterwards, because the store copies a chunk before its next write to it — a
dump costs what changes after it, not the disk (:class:`labkit.layers.Layer`
keeps the buffers, not a joined copy).

Nothing here schedules or traces: it is storage only, below the block layer's
semantics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ..errors import ConfigError

CHUNK = 4096  # bytes per chunk: the I/O size of most requests, so a 4 KiB write makes one

Base = Callable[[int, int], np.ndarray]  # (offset, nbytes) -> a fresh, writable uint8 array


def zeros_base(offset: int, nbytes: int) -> np.ndarray:
    return np.zeros(nbytes, dtype=np.uint8)


# Dumps are built as ``b"".join(pieces)``: one allocation and one copy of each
# piece, where a numpy array per layer cost several full-size temporaries (and
# their page faults) per dump.  Long runs of a base come from these read-only
# buffers, sliced without copying.
_PIECE = 1 << 20
_ZEROS = memoryview(bytes(_PIECE))


def zero_pieces(nbytes: int) -> list[memoryview]:
    """``nbytes`` zero bytes as slices of one shared buffer."""
    return [_ZEROS[:min(_PIECE, nbytes - i)] for i in range(0, nbytes, _PIECE)]


@functools.lru_cache(maxsize=16)
def _constant_buffer(byte: int) -> memoryview:
    return memoryview(bytes([byte]) * (_PIECE // 4))


class ConstantFill:
    """Every byte is ``byte``."""

    __slots__ = ("byte",)

    def __init__(self, byte: int) -> None:
        self.byte = byte

    def __call__(self, offset: int, nbytes: int) -> np.ndarray:
        return np.full(nbytes, self.byte, dtype=np.uint8)

    def pieces(self, offset: int, nbytes: int) -> list[memoryview]:
        buf = _constant_buffer(self.byte)
        step = len(buf)
        return [buf[:min(step, nbytes - i)] for i in range(0, nbytes, step)]


@functools.lru_cache(maxsize=8)
def _index_period(block: int) -> np.ndarray:
    """Two periods of the index pattern (0x70 blocks each), so that any window of up to
    one period is a single slice."""
    per_block = (0x10 + np.arange(2 * 0x70, dtype=np.int64) % 0x70).astype(np.uint8)
    period = np.repeat(per_block, block)
    period.flags.writeable = False
    return period


class IndexFill:
    """``fill="index"`` without the whole disk in memory: block ``k`` (of ``block``
    bytes) holds ``0x10 + k % 0x70`` (:func:`labkit.lab.index_fill`, computed per window)."""

    __slots__ = ("block",)

    def __init__(self, block: int) -> None:
        self.block = block

    def __call__(self, offset: int, nbytes: int) -> np.ndarray:
        period_bytes = 0x70 * self.block
        start = offset % period_bytes
        if nbytes <= period_bytes:
            return _index_period(self.block)[start:start + nbytes].copy()
        first = offset // self.block
        per_block = (0x10 + np.arange(first, -(-(offset + nbytes) // self.block),
                                      dtype=np.int64) % 0x70).astype(np.uint8)
        skip = offset - first * self.block
        return np.repeat(per_block, self.block)[skip:skip + nbytes]

    def pieces(self, offset: int, nbytes: int) -> list[memoryview]:
        period = _index_period(self.block).data  # read-only: shared by every dump
        period_bytes = 0x70 * self.block
        out = []
        pos, end = offset, offset + nbytes
        while pos < end:
            start = pos % period_bytes
            n = min(end - pos, period_bytes)
            out.append(period[start:start + n])
            pos += n
        return out


def fill_base(fill: str | int, block: int) -> Base | None:
    """A disk's initial contents as a function of ``(offset, nbytes)``, from a lab's ``fill``.

    The one reading of ``fill`` (:class:`labkit.config.LabConfig` has checked it):
    ``"index"`` is :class:`IndexFill` of ``block``, ``"zero"`` None (a raw file that
    is one sparse hole, read as zeros), a byte :class:`ConstantFill`.  As a function,
    not as bytes: a disk and the oracle keep only what is written (a 1 GiB disk
    stays small).
    """
    if fill == "index":
        return IndexFill(block)
    if fill == "zero":
        return None
    return ConstantFill(int(fill))


class BufferBase:
    """The bytes of a caller's buffer (kept by reference, read-only); zeros past its end."""

    __slots__ = ("array",)

    def __init__(self, data: bytes | np.ndarray) -> None:
        arr = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) \
            else data.astype(np.uint8, copy=False)
        self.array = arr

    def __call__(self, offset: int, nbytes: int) -> np.ndarray:
        out = self.array[offset:offset + nbytes].copy()
        if out.size < nbytes:
            out = np.concatenate([out, np.zeros(nbytes - out.size, dtype=np.uint8)])
        return out

    def pieces(self, offset: int, nbytes: int) -> list[memoryview]:
        own = self.array[offset:offset + nbytes].data
        return [own, *zero_pieces(nbytes - len(own))] if len(own) < nbytes else [own]


def base_pieces(base: Base, offset: int, nbytes: int) -> list:
    """The bytes a base gives ``[offset, offset + nbytes)``, as buffers for ``b"".join``."""
    if nbytes <= 0:
        return []
    if base is zeros_base:
        return zero_pieces(nbytes)
    pieces = getattr(base, "pieces", None)
    return pieces(offset, nbytes) if pieces is not None else [base(offset, nbytes)]


LEAF_BITS = 4  # chunks per leaf of the chunk map: 16 (64 KiB of disk)


class ChunkStore:
    """``size`` bytes stored as ``CHUNK``-byte chunks made on first write (see the module).

    ``base`` gives the bytes of chunks never written (zeros by default).  A
    chunk covers ``CHUNK`` bytes even past ``size``; callers never read there.

    The chunks are held in a two-level map: a list of leaves, each a dict of up
    to ``2**LEAF_BITS`` chunks.  :meth:`copy` copies only the list; a leaf or a
    chunk shared with a copy is copied by the first write to it.  A dump taken
    after every write thus costs one leaf and the chunks written, not the disk.
    """

    __slots__ = ("_count", "_fresh", "_fresh_leaves", "_leaves", "_snap", "base", "size",
                 "version")

    def __init__(self, size: int, base: Base | None = None) -> None:
        self.size = size
        self.base: Base = base or zeros_base
        nleaves = -(-size // (CHUNK << LEAF_BITS)) or 1
        # dict values: an array (the chunk's bytes) or an int (every byte of the chunk)
        self._leaves: list[dict[int, np.ndarray | int] | None] = [None] * nleaves
        self._count = 0
        # Chunks (and leaves) made since the last copy()/freeze(): only those may be
        # changed in place; any other may be seen by a copy or a dump, so a write
        # copies it first.  freeze() is O(1): new, empty sets.
        self._fresh: set[int] = set()
        self._fresh_leaves: set[int] = set()
        self.version = 0  # bumped by every change: a dump of an unchanged store is reused
        self._snap: ChunkStore | None = None  # the last snapshot(), while it is current

    def __repr__(self) -> str:
        return f"<ChunkStore {self.size} bytes, {self._count} chunks of {CHUNK}>"

    def __len__(self) -> int:
        return self.size

    @property
    def chunks(self) -> int:
        """How many chunks are held (the memory used is about ``chunks * CHUNK``)."""
        return self._count

    # --- the chunk map -------------------------------------------------------------
    def _get(self, c: int) -> np.ndarray | int | None:
        leaf = self._leaves[c >> LEAF_BITS]
        return None if leaf is None else leaf.get(c)

    def _leaf_for_write(self, c: int) -> dict[int, np.ndarray | int]:
        li = c >> LEAF_BITS
        leaf = self._leaves[li]
        if li not in self._fresh_leaves:
            leaf = {} if leaf is None else dict(leaf)
            self._leaves[li] = leaf
            self._fresh_leaves.add(li)
        assert leaf is not None
        return leaf

    def _set(self, c: int, chunk: np.ndarray | int) -> None:
        leaf = self._leaf_for_write(c)
        if c not in leaf:
            self._count += 1
        leaf[c] = chunk

    def _pop(self, c: int) -> None:
        leaf = self._leaves[c >> LEAF_BITS]
        if leaf is not None and c in leaf:
            del self._leaf_for_write(c)[c]
            self._count -= 1

    def _present(self, c0: int, c1: int) -> list[int]:
        """The chunks held in ``[c0, c1]``, in order."""
        out: list[int] = []
        for li in range(c0 >> LEAF_BITS, (c1 >> LEAF_BITS) + 1):
            leaf = self._leaves[li]
            if leaf:
                out += sorted(c for c in leaf if c0 <= c <= c1)
        return out

    def is_hole(self, chunk: int) -> bool:
        """Whether chunk number ``chunk`` holds no data, as a hole of a sparse file: never
        written over a zero base, or last set whole to zero by :meth:`fill` (a
        write-zeroes, which punches a hole) — not by writing zero bytes."""
        held = self._get(chunk)
        if held is None:
            return self.base is zeros_base
        return isinstance(held, int) and held == 0

    # --- reading -----------------------------------------------------------------
    def read(self, offset: int, nbytes: int) -> np.ndarray:
        """A fresh array of the bytes at ``[offset, offset + nbytes)``."""
        out = self.base(offset, nbytes)
        if not self._count or nbytes <= 0:
            return out
        end = offset + nbytes
        for c in self._present(offset // CHUNK, (end - 1) // CHUNK):
            chunk = self._get(c)
            lo = max(offset, c * CHUNK)
            hi = min(end, (c + 1) * CHUNK)
            if isinstance(chunk, int):
                out[lo - offset:hi - offset] = chunk
            else:
                assert chunk is not None
                out[lo - offset:hi - offset] = chunk[lo - c * CHUNK:hi - c * CHUNK]
        return out

    def to_array(self) -> np.ndarray:
        """The whole store as one fresh array of ``size`` bytes."""
        return self.read(0, self.size)

    def pieces(self, offset: int, nbytes: int) -> list:
        """The bytes at ``[offset, offset + nbytes)`` as buffers for ``b"".join`` (views of
        the chunks and of the base: join them before the store changes, or
        :meth:`freeze` first)."""
        end = offset + nbytes
        if nbytes <= 0:
            return []
        if not self._count:
            return base_pieces(self.base, offset, nbytes)
        out: list = []
        pos = offset
        for c in self._present(offset // CHUNK, (end - 1) // CHUNK):
            lo, hi = max(offset, c * CHUNK), min(end, (c + 1) * CHUNK)
            if lo > pos:
                out += base_pieces(self.base, pos, lo - pos)
            chunk = self._get(c)
            if isinstance(chunk, int):
                out += ConstantFill(chunk).pieces(lo, hi - lo)
            else:
                assert chunk is not None
                out.append(chunk.data[lo - c * CHUNK:hi - c * CHUNK])
            pos = hi
        if end > pos:
            out += base_pieces(self.base, pos, end - pos)
        return out

    def to_bytes(self, keep: np.ndarray | None = None, sector: int = 512) -> bytes:
        """The whole store as bytes; with ``keep`` (a bool per ``sector`` bytes), the bytes
        of sectors not kept read as zero (a layer dump's unallocated sectors)."""
        if keep is None:
            return b"".join(self.pieces(0, self.size))
        return b"".join(self.kept_pieces(keep, sector))

    def kept_pieces(self, keep: np.ndarray, sector: int = 512, offset: int = 0,
                    nbytes: int | None = None) -> list:
        """:meth:`to_bytes` with ``keep`` as buffers (see :meth:`pieces`), of the range
        ``[offset, offset + nbytes)`` only (the whole store by default)."""
        end = self.size if nbytes is None else min(self.size, offset + nbytes)
        s0, s1 = offset // sector, -(-end // sector)
        keep = np.asarray(keep, dtype=bool)[s0:s1]
        if not keep.size or end <= offset:
            return []
        edges = np.flatnonzero(np.diff(keep.view(np.int8))) + 1
        starts = np.concatenate(([0], edges)).tolist()
        stops = np.concatenate((edges, [keep.size])).tolist()
        out: list = []
        for a, b in zip(starts, stops, strict=True):
            lo, hi = max(offset, (s0 + a) * sector), min(end, (s0 + b) * sector)
            out += self.pieces(lo, hi - lo) if keep[a] else zero_pieces(hi - lo)
        return out

    # --- writing -----------------------------------------------------------------
    def _chunk_for_write(self, c: int) -> np.ndarray:
        chunk = self._get(c)
        if chunk is None:
            chunk = self.base(c * CHUNK, CHUNK)
        elif isinstance(chunk, int):
            chunk = np.full(CHUNK, chunk, dtype=np.uint8)
        elif c in self._fresh:
            return chunk
        else:
            chunk = chunk.copy()
        self._set(c, chunk)
        self._fresh.add(c)
        return chunk

    def write(self, offset: int, data: np.ndarray | bytes) -> None:
        """Store ``data`` at ``offset`` (as ``array[offset:offset + len(data)] = data``)."""
        buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        end = offset + buf.size
        if end <= offset:
            return
        self.version += 1
        c0, c1 = offset // CHUNK, (end - 1) // CHUNK
        # Whole chunks become slices of one private copy of the data: one copy for a
        # 64 KiB cluster, not sixteen (each slice owns its 4 KiB; a partial write
        # later changes only that slice).
        own = buf.copy() if c1 > c0 else None
        for c in range(c0, c1 + 1):
            start = c * CHUNK
            lo, hi = max(offset, start), min(end, start + CHUNK)
            if hi - lo == CHUNK:
                self._set(c, own[lo - offset:hi - offset] if own is not None
                          else buf[lo - offset:hi - offset].copy())
                self._fresh.add(c)
            else:
                self._chunk_for_write(c)[lo - start:hi - start] = buf[lo - offset:hi - offset]

    def fill(self, offset: int, nbytes: int, byte: int) -> None:
        """Set ``[offset, offset + nbytes)`` to ``byte`` (as ``array[...] = byte``)."""
        end = offset + nbytes
        if end <= offset:
            return
        self.version += 1
        drop_zero = self.base is zeros_base and byte == 0  # whole zero chunks read as the base
        for c in range(offset // CHUNK, (end - 1) // CHUNK + 1):
            start = c * CHUNK
            lo, hi = max(offset, start), min(end, start + CHUNK)
            if hi - lo == CHUNK:
                if drop_zero:
                    self._pop(c)
                else:
                    self._set(c, int(byte))
            else:
                self._chunk_for_write(c)[lo - start:hi - start] = byte

    def clear(self) -> None:
        """Every byte back to the base, every chunk dropped."""
        self.version += 1
        self._leaves = [None] * len(self._leaves)
        self._count = 0
        self.freeze()

    def copy(self) -> ChunkStore:
        """A copy-on-write snapshot: same bytes, leaves and chunks shared until either
        side writes to them (O(leaves), not O(chunks))."""
        other = ChunkStore(self.size, self.base)
        other._leaves = list(self._leaves)
        other._count = self._count
        other.version = self.version
        self.freeze()
        return other

    def snapshot(self) -> ChunkStore:
        """A copy (:meth:`copy`) for a dump, never written: the same one again while
        nothing changed, so the dumps of an unchanged store share it."""
        snap = self._snap
        if snap is None or snap.version != self.version:
            snap = self._snap = self.copy()
        return snap

    def freeze(self) -> None:
        """From now on, every chunk and leaf held is copied before it is written: buffers
        taken from the store (:meth:`pieces`) keep today's bytes.  O(1)."""
        self._fresh = set()
        self._fresh_leaves = set()

    # --- array-like access (a few callers and tests index the oracle's arrays) ----------
    def __getitem__(self, key: int | slice) -> int | np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise IndexError("ChunkStore slices take no step")
            return self.read(start, max(0, stop - start))
        index = int(key)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {key} is outside the store's {self.size} bytes")
        return int(self.read(index, 1)[0])

    def __setitem__(self, key: int | slice, value: int | np.ndarray | bytes) -> None:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise IndexError("ChunkStore slices take no step")
            n = max(0, stop - start)
        else:
            start = int(key) + (self.size if int(key) < 0 else 0)
            if not 0 <= start < self.size:
                raise IndexError(f"index {key} is outside the store's {self.size} bytes")
            n = 1
        if isinstance(value, int | np.integer):
            self.fill(start, n, int(value))
            return
        buf = np.frombuffer(value, dtype=np.uint8) if not isinstance(value, np.ndarray) \
            else value.astype(np.uint8, copy=False)
        if buf.size != n:
            raise ConfigError(f"cannot store {buf.size} bytes into a range of {n}")
        self.write(start, buf)


class FrozenStore:
    """What a raw node's :meth:`~labkit.block.BlockNode.peek` reads, frozen at a dump."""

    __slots__ = ("store",)

    def __init__(self, store: ChunkStore) -> None:
        self.store = store

    def peek_pieces(self, offset: int, nbytes: int) -> list:
        return self.store.pieces(offset, nbytes)
