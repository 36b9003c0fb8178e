"""Layer dumps: what one node of the secondary graph holds, sector by sector.

A :class:`Layer` is the engine's (and the real-QEMU backend's) answer to "what
is in this layer?": its bytes and, per 512-byte sector, whether the sector is
allocated *in this layer* (QEMU's ``qemu:allocation-depth`` = 1) and whether it
is a qcow2 zero cluster.  Two dumps compare equal exactly when the disks are
equal: same bytes, same allocation.

Trainees should notice that an unallocated sector of hidden or active still
*reads* as something (it falls through to the backing node); the dump zeroes
those bytes so that a layer shows only what it owns.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError, TraceFormatError

SECTOR = 512
LAYER_NAMES = ("secondary", "hidden", "active", "vm-view")


def _buffer(piece: Any) -> np.ndarray:
    """A piece (bytes, memoryview or uint8 array) as a flat uint8 array, without a copy."""
    return np.frombuffer(piece, dtype=np.uint8) if not isinstance(piece, np.ndarray) \
        else piece.reshape(-1).view(np.uint8)


def _address(arr: np.ndarray) -> int:
    return int(arr.__array_interface__["data"][0])


def frozen_bits(bits: np.ndarray) -> np.ndarray:
    """A read-only bool array of ``bits``: a read-only one as it is (shared by the
    dumps of a node whose allocation did not change), else a read-only copy."""
    arr = np.asarray(bits, dtype=bool)
    if arr is bits and not arr.flags.writeable:
        return arr
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


@functools.lru_cache(maxsize=16)
def constant_bits(n: int, value: bool) -> np.ndarray:
    """``n`` read-only bools all ``value`` (shared: every dump of a raw disk)."""
    arr = np.full(n, value, dtype=bool)
    arr.flags.writeable = False
    return arr


class Pieces:
    """A layer's bytes as immutable buffers laid end to end, never joined unless asked.

    A dump of a 1 GiB disk that holds a few written chunks is a list of views: of
    the chunks (taken from a :meth:`labkit.block.ChunkStore.copy`, so they never
    change) and of shared read-only runs of the base (zeros, the index fill).
    Its memory is what the disk holds beyond its base, not the disk's size.
    """

    __slots__ = ("_arrays", "_make", "_starts", "size")

    def __init__(self, pieces: Sequence[Any]) -> None:
        arrays = [a for a in (_buffer(p) for p in pieces) if a.size]
        self._arrays: list[np.ndarray] | None = arrays
        self._make: Callable[[int, int], list] | None = None
        sizes = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        self._starts = np.concatenate(([0], np.cumsum(sizes))) if arrays \
            else np.zeros(1, dtype=np.int64)
        self.size = int(self._starts[-1])

    @classmethod
    def lazy(cls, size: int, make: Callable[[int, int], list]) -> Pieces:
        """``size`` bytes that ``make(offset, nbytes)`` gives as frozen buffers on demand
        (a snapshot of a chunk store: nothing is listed until it is read)."""
        self = cls.__new__(cls)
        self._arrays, self._make, self.size = None, make, size
        self._starts = np.zeros(1, dtype=np.int64)
        return self

    def windows(self, offset: int = 0, nbytes: int | None = None) -> Iterator[np.ndarray]:
        """The bytes of ``[offset, offset + nbytes)`` as consecutive read-only arrays."""
        end = self.size if nbytes is None else min(self.size, offset + nbytes)
        if offset >= end:
            return
        if self._make is not None:
            for piece in self._make(offset, end - offset):
                a = _buffer(piece)
                if a.size:
                    yield a
            return
        arrays = self._arrays
        assert arrays is not None
        i = int(np.searchsorted(self._starts, offset, side="right")) - 1
        while offset < end:
            a, start = arrays[i], int(self._starts[i])
            lo, hi = offset - start, min(end, start + a.size) - start
            yield a[lo:hi]
            offset = start + hi
            i += 1

    def read(self, offset: int, nbytes: int) -> bytes:
        """The bytes of ``[offset, offset + nbytes)`` (clipped to the size)."""
        return b"".join(w.data for w in self.windows(offset, nbytes))

    def tobytes(self) -> bytes:
        return self.read(0, self.size)

    def blocks(self, step: int) -> Iterator[np.ndarray]:
        """The bytes ``step`` at a time (the last window may be shorter): a whole-layer
        computation in bounded memory."""
        for pos in range(0, self.size, step):
            parts = list(self.windows(pos, step))
            yield parts[0] if len(parts) == 1 else np.concatenate(parts)

    def equal_runs(self, other: Pieces) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(offset, mine, theirs)`` over aligned runs of the two layouts."""
        mine, theirs = self.windows(), other.windows()
        a = next(mine, None)
        b = next(theirs, None)
        pos = 0
        while a is not None and b is not None:
            n = min(a.size, b.size)
            yield pos, a[:n], b[:n]
            pos += n
            a = a[n:] if a.size > n else next(mine, None)
            b = b[n:] if b.size > n else next(theirs, None)

    def same_as(self, other: Pieces) -> bool:
        if self is other:
            return True
        if self.size != other.size:
            return False
        for _, a, b in self.equal_runs(other):
            # Two dumps share every buffer nothing changed in between: same memory,
            # same (frozen) bytes, no comparison needed.
            if _address(a) != _address(b) and not np.array_equal(a, b):
                return False
        return True

    def first_difference(self, other: Pieces, unit: int) -> int | None:
        """The first ``unit``-aligned index where the bytes differ, or None."""
        for pos, a, b in self.equal_runs(other):
            if _address(a) == _address(b):
                continue
            diff = np.flatnonzero(a != b)
            if diff.size:
                return (pos + int(diff[0])) // unit
        return None


class Layer:
    """One layer's own contents: ``data`` (bytes) and ``alloc`` (bool per sector).

    ``zero`` marks sectors that are allocated as qcow2 zero clusters; it is
    shown in tables (``zz``) but not part of equality, since a reader cannot
    tell a zero cluster from written zeros.

    The bytes are kept as :class:`Pieces` (``data`` joins them on each access):
    use :meth:`read` for a range and :meth:`blocks` to walk a large layer.  A
    qcow2 layer keeps its cluster map, not two bools per sector
    (:meth:`from_map`): ``alloc`` and ``zero`` are made from it when read.
    Immutable: every field is read-only.
    """

    __slots__ = ("_alloc", "_map", "_zero", "pieces")
    pieces: Pieces
    _alloc: np.ndarray | None
    _zero: np.ndarray | None
    _map: tuple[np.ndarray, int, int, int] | None

    def __init__(self, data: bytes | Pieces | Sequence[Any], alloc: np.ndarray,
                 zero: np.ndarray | None = None) -> None:
        # Why not the generated __init__: ``zero`` may be left out (no zero clusters)
        # while the field is always an array; the fields stay read-only copies.
        if isinstance(data, Pieces):
            pieces = data
        elif isinstance(data, bytes):
            pieces = Pieces([data])
        elif isinstance(data, bytearray | memoryview | np.ndarray):
            pieces = Pieces([bytes(data)])  # a caller's buffer may change: keep a copy
        else:
            pieces = Pieces(data)  # frozen buffers (of a ChunkStore.copy)
        alloc = np.asarray(alloc, dtype=bool)
        if pieces.size != alloc.size * SECTOR:
            raise ConfigError(
                f"Layer data is {pieces.size} bytes but alloc has {alloc.size} "
                f"sectors; data must be exactly {SECTOR} bytes per sector"
            )
        alloc = frozen_bits(alloc)
        zero = constant_bits(alloc.size, False) if zero is None else frozen_bits(zero)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "_alloc", alloc)
        object.__setattr__(self, "_zero", zero)
        object.__setattr__(self, "_map", None)

    @classmethod
    def from_map(cls, pieces: Pieces, states: np.ndarray, per: int, unallocated: int,
                 zero_state: int) -> Layer:
        """A layer whose sector bitmaps come from a cluster map (``per`` sectors per
        cluster; read-only, shared by the dumps taken while it does not change)."""
        nsec = pieces.size // SECTOR
        if pieces.size != nsec * SECTOR or states.size * per < nsec:
            raise ConfigError(f"Layer of {pieces.size} bytes does not match its map of "
                             f"{states.size} clusters of {per} sectors")
        self = cls.__new__(cls)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "_alloc", None)
        object.__setattr__(self, "_zero", None)
        object.__setattr__(self, "_map", (states, per, unallocated, zero_state))
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Layer is immutable (cannot set {name!r})")

    def _bits(self, zero: bool) -> np.ndarray:
        assert self._map is not None
        states, per, unallocated, zero_state = self._map
        bits = (states == zero_state) if zero else (states != unallocated)
        out = np.repeat(bits, per)[:self.pieces.size // SECTOR]
        out.flags.writeable = False
        return out

    @property
    def alloc(self) -> np.ndarray:
        """Per 512-byte sector: allocated in this layer (read-only)."""
        return self._alloc if self._alloc is not None else self._bits(False)

    @property
    def zero(self) -> np.ndarray:
        """Per 512-byte sector: a qcow2 zero cluster (read-only)."""
        return self._zero if self._zero is not None else self._bits(True)

    def __repr__(self) -> str:
        return f"<Layer {self.size} bytes, {int(self.alloc.sum())} sectors allocated>"

    @property
    def data(self) -> bytes:
        """Every byte of the layer, joined now (a large layer: prefer :meth:`read`)."""
        return self.pieces.tobytes()

    def read(self, offset: int, nbytes: int) -> bytes:
        """The layer's bytes at ``[offset, offset + nbytes)``, without joining the rest."""
        return self.pieces.read(offset, nbytes)

    def blocks(self, step: int = 1 << 24) -> Iterator[np.ndarray]:
        """The layer's bytes, ``step`` at a time, as read-only arrays."""
        return self.pieces.blocks(step)

    @property
    def size(self) -> int:
        return self.pieces.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        return bool(np.array_equal(self.alloc, other.alloc)) and \
            self.pieces.same_as(other.pieces)

    def __hash__(self) -> int:
        h = hashlib.blake2b(digest_size=8)
        for block in self.blocks():
            h.update(block.data)
        h.update(self.alloc.tobytes())
        return int.from_bytes(h.digest(), "little", signed=True)

    def first_difference(self, other: Layer) -> int | None:
        """Index of the first sector where the two layers differ, or None."""
        if self.size != other.size:
            return 0
        alloc = np.flatnonzero(self.alloc != other.alloc)
        data = self.pieces.first_difference(other.pieces, SECTOR)
        found = [int(alloc[0])] if alloc.size else []
        if data is not None:
            found.append(data)
        return min(found) if found else None

    @classmethod
    def full(cls, data: bytes | list | Pieces) -> Layer:
        """A layer with every sector allocated (a raw disk, or the VM's view); ``data``
        is bytes or a list of frozen buffers (:meth:`labkit.block.BlockNode.frozen_peek_pieces`)."""
        if isinstance(data, Pieces):
            layer_bytes = data
        else:
            layer_bytes = Pieces(data if isinstance(data, list) else [bytes(data)])
        return cls(layer_bytes, constant_bits(layer_bytes.size // SECTOR, True))

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form: zlib+base64 data, packed bit arrays."""
        return {
            "size": self.size,
            "data": base64.b64encode(self._compressed()).decode(),
            "alloc": np.packbits(self.alloc).tobytes().hex(),
            "zero": np.packbits(self.zero).tobytes().hex(),
        }

    def _compressed(self) -> bytes:
        z = zlib.compressobj(6)
        out = [z.compress(block.data) for block in self.blocks()]
        out.append(z.flush())
        return b"".join(out)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Layer:
        """Inverse of :meth:`to_json`; raises ValueError naming the bad field."""
        try:
            size = int(doc["size"])
            data = zlib.decompress(base64.b64decode(doc["data"]))
            nsec = size // SECTOR
            alloc = np.unpackbits(np.frombuffer(bytes.fromhex(doc["alloc"]), np.uint8))[:nsec]
            zero = np.unpackbits(np.frombuffer(bytes.fromhex(doc["zero"]), np.uint8))[:nsec]
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise TraceFormatError(f"malformed layer in JSON: {exc}; expected the fields size, "
                                   f"data, alloc and zero written by Layer.to_json") from None
        if len(data) != size or alloc.size != nsec or zero.size != nsec:
            raise TraceFormatError(f"malformed layer in JSON: size {size} does not match its "
                                   f"data ({len(data)} bytes) or bitmaps")
        return cls(data, alloc.astype(bool), zero.astype(bool))
