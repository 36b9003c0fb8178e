"""The ``raw`` driver: the secondary disk, bytes in a numpy array.

Every data read or write is one scheduling point: the request is submitted,
other coroutines may run, and the bytes move when the task resumes (the I/O
completes).  A raw node has no backing file and cannot be emptied.
"""

from __future__ import annotations

import numpy as np

from ..kernel import sched_point
from ._node import BlockNode


class RawNode(BlockNode):
    """QEMU's ``raw`` format over a file: every sector allocated, data as stored."""

    driver = "raw"

    def __init__(self, name: str, size: int, data: bytes | np.ndarray | None = None) -> None:
        super().__init__(name, size)
        self._data = np.zeros(size, dtype=np.uint8)
        if data is not None:
            arr = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) \
                else data.astype(np.uint8, copy=False)
            if arr.size != size:
                raise ValueError(f"raw node {name}: initial data is {arr.size} bytes, "
                                 f"expected {size}")
            self._data[:] = arr

    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        await sched_point("io-read", self.name, offset, nbytes)
        self._check_injected("read", offset, nbytes)
        return self._data[offset:offset + nbytes].tobytes()

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        await sched_point("io-write", self.name, offset, len(data))
        self._check_injected("write", offset, len(data))
        self._data[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        await sched_point("io-zero", self.name, offset, nbytes)
        self._check_injected("write", offset, nbytes)
        self._data[offset:offset + nbytes] = 0

    def _allocation(self) -> np.ndarray:
        return np.ones(self.size // 512, dtype=bool)

    def _own_data(self) -> np.ndarray:
        return self._data
