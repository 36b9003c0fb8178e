"""The ``raw`` driver: the secondary disk, bytes in a sparse chunk store.

Every data read or write is one scheduling point: the request is submitted,
other coroutines may run, and the bytes move when the task resumes (the I/O
completes).  A raw node has no backing file and cannot be emptied.

The bytes live in a :class:`~labkit.block._store.ChunkStore`: only the chunks
a write reached are held, the rest read as the initial contents (``data``, or
a ``fill`` pattern computed on demand), so a 1 GiB disk costs what is written.
"""

from __future__ import annotations

import numpy as np

from ..kernel import sched_point
from ._node import BlockNode
from ._store import CHUNK, Base, BufferBase, ChunkStore


class RawNode(BlockNode):
    """QEMU's ``raw`` format over a file: every sector allocated, data as stored.

    The initial contents are ``data`` (``size`` bytes) or ``fill`` (a function
    ``(offset, nbytes) -> array`` such as :class:`~labkit.block._store.IndexFill`),
    else zeros.
    """

    driver = "raw"

    def __init__(self, name: str, size: int, data: bytes | np.ndarray | None = None, *,
                 fill: Base | None = None) -> None:
        super().__init__(name, size)
        base = fill
        if data is not None:
            if fill is not None:
                raise ValueError(f"raw node {name}: give the initial data or a fill, not both")
            arr = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) \
                else data.astype(np.uint8, copy=True)
            if arr.size != size:
                raise ValueError(f"raw node {name}: initial data is {arr.size} bytes, "
                                 f"expected {size}")
            base = BufferBase(arr)
        self._data = ChunkStore(size, base)

    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        await sched_point("io-read", self.name, offset, nbytes, write=False)
        self._check_injected("read", offset, nbytes)
        return self._data.read(offset, nbytes).tobytes()

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        await sched_point("io-write", self.name, offset, len(data))
        self._check_injected("write", offset, len(data))
        self._data.write(offset, data)

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        await sched_point("io-zero", self.name, offset, nbytes)
        self._check_injected("write", offset, nbytes)
        self._data.fill(offset, nbytes, 0)

    def _block_status(self, offset: int, nbytes: int) -> tuple[bool, int]:
        """``raw_co_block_status`` → file-posix ``find_allocation``: a hole of the
        image file (a ``CHUNK`` never written over a zero fill, as a sparse
        ``secondary.raw`` of ``fill=zero``, or one a write-zeroes punched) reads
        as zeros; the rest is data."""
        store = self._data
        end = offset + nbytes
        pos = offset
        first: bool | None = None
        while pos < end:
            c = pos // CHUNK
            hole = store.is_hole(c)
            if first is None:
                first = hole
            elif hole != first:
                break
            pos = (c + 1) * CHUNK
        return bool(first), min(pos, end) - offset

    def _allocation(self) -> np.ndarray:
        return np.ones(self.size // 512, dtype=bool)

    @property
    def stored_chunks(self) -> int:
        return self._data.chunks

    def _own_data(self) -> np.ndarray:
        return self._data.to_array()

    def _peek(self, offset: int, nbytes: int) -> bytes:
        return b"".join(self._data.pieces(offset, nbytes))

    def _peek_pieces(self, offset: int, nbytes: int) -> list:
        return self._data.pieces(offset, nbytes)

    def _content_key(self) -> tuple:
        return self._data, self._data.version

    def _layer_bytes(self, alloc: np.ndarray) -> bytes:
        return self._data.to_bytes()  # every sector is allocated
