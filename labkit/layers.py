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
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, TraceFormatError

SECTOR = 512
LAYER_NAMES = ("secondary", "hidden", "active", "vm-view")


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer's own contents: ``data`` (bytes) and ``alloc`` (bool per sector).

    ``zero`` marks sectors that are allocated as qcow2 zero clusters; it is
    shown in tables (``zz``) but not part of equality, since a reader cannot
    tell a zero cluster from written zeros.
    """

    data: bytes
    alloc: np.ndarray
    zero: np.ndarray

    def __init__(self, data: bytes, alloc: np.ndarray, zero: np.ndarray | None = None) -> None:
        # Why not the generated __init__: ``zero`` may be left out (no zero clusters)
        # while the field is always an array; the fields stay read-only copies.
        alloc = np.asarray(alloc, dtype=bool)
        if len(data) != alloc.size * SECTOR:
            raise ConfigError(
                f"Layer data is {len(data)} bytes but alloc has {alloc.size} "
                f"sectors; data must be exactly {SECTOR} bytes per sector"
            )
        alloc = alloc.copy()
        alloc.flags.writeable = False
        zero = np.zeros_like(alloc) if zero is None else np.asarray(zero, dtype=bool).copy()
        zero.flags.writeable = False
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "alloc", alloc)
        object.__setattr__(self, "zero", zero)

    @property
    def size(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Layer):
            return NotImplemented
        return self.data == other.data and bool(np.array_equal(self.alloc, other.alloc))

    def __hash__(self) -> int:
        return hash((self.data, self.alloc.tobytes()))

    def first_difference(self, other: Layer) -> int | None:
        """Index of the first sector where the two layers differ, or None."""
        if self.size != other.size:
            return 0
        a = np.frombuffer(self.data, dtype=np.uint8).reshape(-1, SECTOR)
        b = np.frombuffer(other.data, dtype=np.uint8).reshape(-1, SECTOR)
        diff = (a != b).any(axis=1) | (self.alloc != other.alloc)
        idx = np.flatnonzero(diff)
        return int(idx[0]) if idx.size else None

    @classmethod
    def full(cls, data: bytes) -> Layer:
        """A layer with every sector allocated (a raw disk, or the VM's view)."""
        return cls(bytes(data), np.ones(len(data) // SECTOR, dtype=bool))

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form: zlib+base64 data, packed bit arrays."""
        return {
            "size": self.size,
            "data": base64.b64encode(zlib.compress(self.data, 6)).decode(),
            "alloc": np.packbits(self.alloc).tobytes().hex(),
            "zero": np.packbits(self.zero).tobytes().hex(),
        }

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
