"""The ``qcow2`` driver: hidden and active disks, clusters allocated over a backing file.

What a trainee should notice:

* A cluster is *unallocated* (reads fall through to the backing node, or read
  as zeros without one), *allocated* with data, or a *zero cluster*
  (allocated, reads as zeros and hides the backing node).
* An allocating write that covers only part of a cluster also reads the
  rest of that cluster from the backing chain — qcow2's *own* copy-on-write,
  not the backup job's — and writes it, then links the cluster in the L2
  table (a metadata update under ``s->lock``).  That read holds no backup
  ``CowRequest``: it is the 9.3 (a) hazard of the 2.8 read-side design.
* ``make_empty`` (``qcow2_make_empty``) drops every allocation: the
  replication checkpoint uses it to empty active and hidden.

Modelled after ``block/qcow2.c`` / ``qcow2-cluster.c``: ``qcow2_co_preadv``
releases ``s->lock`` around data and backing reads; ``qcow2_co_pwritev``
allocates with ``handle_dependencies`` (a write to a cluster whose allocation
is in flight waits for it).  The order of a partial-cluster allocation is the
era's (the graph's ``era``): 2.8 writes the guest data first and then, in
``qcow2_alloc_cluster_link_l2`` → ``perform_cow``, reads and writes the head
and the tail; since 2.10 (era 7.2) ``perform_cow`` reads head and tail first
(merged into one read when the data between is ≤ 16 KiB) and writes head,
data and tail in one request.  Both give the same data since the cluster is
linked only at the end; what differs is when (and over which range) the COW
reads of the backing chain are in flight.  ``s->lock`` is handed over on
unlock in era 7.2 (``qemu_co_mutex_unlock``, 2.9+).  Host cluster offsets and
refcounts are not modelled: the data of a guest cluster is stored at its guest
offset.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import GraphError
from ..kernel import CoMutex, CoQueue, current_task, emit, sched_point, touch
from ..layers import SECTOR, Layer, Pieces
from ._node import REQ_MAY_UNMAP, BlockNode
from ._store import ChunkStore, zero_pieces

if TYPE_CHECKING:
    from ._graph import BlockGraph

UNALLOCATED = 0
NORMAL = 1
ZERO = 2
_STATE_NAMES = {UNALLOCATED: "unallocated", NORMAL: "data", ZERO: "zero"}
# block/qcow2-cluster.c perform_cow (2.10+): head and tail are read with one request
# when the guest data between them is at most this long (merge_reads)
MERGE_READS_MAX = 16384


def _state_runs(states_map: np.ndarray, cs: int, pos: int,
                end: int) -> list[tuple[int, int, int]]:
    """``(state, offset, length)`` per run of clusters in the same state over
    ``[pos, end)`` — what a loop of ``_run`` gives, found with numpy (a dump spans
    every cluster)."""
    first, last = pos // cs, (end - 1) // cs
    states = states_map[first:last + 1]
    edges = (np.flatnonzero(np.diff(states)) + 1).tolist()
    out = []
    for a, b in zip([0, *edges], [*edges, states.size], strict=True):
        lo, hi = max(pos, (first + a) * cs), min(end, (first + b) * cs)
        out.append((int(states[a]), lo, hi - lo))
    return out


def _chain_pieces(states_map: np.ndarray, cs: int, data: ChunkStore, backing: Any,
                  offset: int, nbytes: int) -> list:
    """What a qcow2 read of ``[offset, offset + nbytes)`` returns, as buffers: per run
    of clusters in one state, the data, zeros, or the backing node's bytes."""
    out: list = []
    for state, pos, cur in _state_runs(states_map, cs, offset, offset + nbytes):
        if state == NORMAL:
            out += data.pieces(pos, cur)
        elif state == UNALLOCATED and backing is not None:
            out += backing.peek_pieces(pos, cur)
        else:
            out += zero_pieces(cur)
    return out


class FrozenQcow2:
    """What a qcow2 node's ``peek`` reads, frozen at a dump: its map, a snapshot of its
    store and its backing node's frozen view (all shared while they do not change)."""

    __slots__ = ("backing", "cluster_size", "data", "map")

    def __init__(self, states_map: np.ndarray, cluster_size: int, data: ChunkStore,
                 backing: Any) -> None:
        self.map, self.cluster_size, self.data, self.backing = (states_map, cluster_size,
                                                                 data, backing)

    def peek_pieces(self, offset: int, nbytes: int) -> list:
        return _chain_pieces(self.map, self.cluster_size, self.data, self.backing,
                             offset, nbytes)


class _InflightAlloc:
    """``QCowL2Meta``: an allocation in flight, with its ``dependent_requests`` queue."""

    __slots__ = ("end", "queue", "start")

    def __init__(self, node: str, start: int, end: int, who: str) -> None:
        self.start = start
        self.end = end
        self.queue = CoQueue(f"qcow2 allocation by {who} of {node} clusters {start}-{end - 1}")


class Qcow2Node(BlockNode):
    """A qcow2 image: per-cluster allocation and zero flags over an optional backing node."""

    driver = "qcow2"
    supports_backing = True

    def __init__(self, name: str, size: int, cluster_size: int = 65536,
                 backing: BlockNode | None = None) -> None:
        if (not isinstance(cluster_size, int) or cluster_size < 512 or cluster_size > 2 << 20
                or cluster_size & (cluster_size - 1)):
            raise GraphError(f"qcow2 node {name}: cluster_size {cluster_size!r} must be a power "
                             f"of two from 512 bytes to 2 MiB")
        super().__init__(name, size)
        self._cluster_size = cluster_size
        self.nb_clusters = -(-size // cluster_size)
        self._map = np.zeros(self.nb_clusters, dtype=np.int8)
        self._map_version = 0  # bumped by every change of _map (see _content_key)
        # The map and allocation a dump shares while the map does not change
        self._map_snap: tuple[int, np.ndarray] | None = None
        self._bits_snap: tuple[int, np.ndarray, np.ndarray] | None = None
        # Data of allocated clusters, at their guest offsets.  Sparse (chunks made
        # on first write) instead of a zeroed array as large as the disk: only
        # allocated clusters are ever read, and a dump zeroes unallocated sectors.
        self._data = ChunkStore(size)
        self.lock = CoMutex(f"{name} s->lock")
        self._allocs: list[_InflightAlloc] = []
        self._lock_waiters = 0  # tasks blocked in _lock (an unlock then hands over)
        self._mutex = ("mutex", name)
        self._l2 = ("map", name)
        self._alloc_key = ("alloc", name)
        self._data_key = ("data", name)
        if backing is not None:
            self.set_backing(backing)

    @property
    def cluster_size(self) -> int:
        return self._cluster_size

    def attached(self, graph: BlockGraph) -> None:
        """``s->lock`` is a CoMutex: handed over on unlock since 2.9."""
        self.lock.handoff = graph.era != "2.8"

    def cluster_state(self, index: int) -> str:
        """'unallocated', 'data' or 'zero' for cluster ``index``."""
        return _STATE_NAMES[int(self._map[index])]

    # --- helpers ---------------------------------------------------------------
    # Declared accesses (see labkit.kernel.Access): ("map", node) is the L2 table,
    # ("alloc", node) the in-flight allocations (QCowL2Meta list), ("mutex", node)
    # s->lock.  Taking and releasing the lock uncontended only *reads* it (two
    # such steps commute); blocking on it, handing it over to a waiter and
    # yielding while holding it *write* it.
    def _span(self, pos: int, end: int) -> tuple[int, int]:
        cs = self._cluster_size
        return (pos // cs) * cs, -(-end // cs) * cs

    def _lock(self) -> Awaitable[None]:
        """``qemu_co_mutex_lock(&s->lock)``, declaring it (``await self._lock()``).

        Not a coroutine itself: a free lock returns CoMutex.lock's own coroutine, so
        the common case costs no extra coroutine frame on the hot path.
        """
        lock = self.lock
        if lock.holder is None:
            touch(self._mutex, 0, 1, False)
            return lock.lock()  # free: taken without yielding
        touch(self._mutex, 0, 1, True, waits=True)
        return self._lock_contended()

    async def _lock_contended(self) -> None:
        self._lock_waiters += 1
        try:
            await self.lock.lock()
        finally:
            self._lock_waiters -= 1
        touch(self._mutex, 0, 1, True)  # resumes holding it, after the hand-over

    def _unlock(self) -> None:
        """``qemu_co_mutex_unlock(&s->lock)``, declaring it (a write if it wakes a waiter)."""
        touch(self._mutex, 0, 1, self._lock_waiters > 0)
        self.lock.unlock()

    def _meta_point(self, offset: int, nbytes: int, detail: str, args: tuple = ()):
        """A metadata update under ``s->lock``: a scheduling point that yields holding
        the lock and, when it resumes, writes the L2 map (and the data it links)."""
        touch(self._mutex, 0, 1, True)  # yields holding s->lock
        lo, hi = self._span(offset, offset + nbytes)
        also = ((self._l2, lo, hi, True), (self._mutex, 0, 1, True))
        return sched_point("meta", self.name, offset, nbytes,
                           detail.format(*args) if args else detail, write=True, also=also)

    def _read_map(self, pos: int, end: int) -> None:
        lo, hi = self._span(pos, end)
        touch(self._l2, lo, hi, False)

    def _run(self, pos: int, end: int, same: frozenset[int]) -> int:
        """Bytes from ``pos`` (≤ end) covered by consecutive clusters whose state is in ``same``."""
        cs = self._cluster_size
        c = pos // cs
        last = (end - 1) // cs
        while c + 1 <= last and int(self._map[c + 1]) in same:
            c += 1
        return min(end, (c + 1) * cs) - pos

    # --- read --------------------------------------------------------------------
    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        """``qcow2_co_preadv``: per run of clusters, data, zeros or the backing node."""
        out = np.zeros(nbytes, dtype=np.uint8)
        end = offset + nbytes
        pos = offset
        await self._lock()
        try:
            while pos < end:
                self._read_map(pos, end)
                state = int(self._map[pos // self._cluster_size])
                cur = self._run(pos, end, frozenset((state,)))
                if state == UNALLOCATED:
                    if self.backing is not None:
                        self._unlock()
                        if self.blkdebug_breaks:  # qcow2_co_preadv_task
                            await self.blkdbg_event("read_backing_aio", pos, cur)
                        data = await self.backing.co_preadv(pos, cur)
                        await self._lock()
                        out[pos - offset:pos - offset + cur] = np.frombuffer(data, np.uint8)
                    else:
                        emit("read-zero", self.name, pos, cur, "unallocated, no backing file")
                elif state == ZERO:
                    emit("read-zero", self.name, pos, cur, "zero cluster")
                elif state == NORMAL:
                    self._unlock()
                    await sched_point("io-read", self.name, pos, cur, write=False)
                    self._check_injected("read", pos, cur)
                    out[pos - offset:pos - offset + cur] = self._data.read(pos, cur)
                    await self._lock()
                pos += cur
        finally:
            self._release()
        return out.tobytes()

    # --- write -------------------------------------------------------------------
    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        """``qcow2_co_pwritev``: overwrite allocated runs, allocate the others with COW."""
        buf = np.frombuffer(data, dtype=np.uint8)
        end = offset + len(data)
        cs = self._cluster_size
        pos = offset
        await self._lock()
        try:
            while pos < end:
                if await self._wait_dependencies(pos, end):
                    continue
                self._read_map(pos, end)
                state = int(self._map[pos // cs])
                if state == NORMAL:
                    cur = self._run(pos, end, frozenset((NORMAL,)))
                    self._unlock()
                    await sched_point("io-write", self.name, pos, cur)
                    self._check_injected("write", pos, cur)
                    self._data.write(pos, buf[pos - offset:pos - offset + cur])
                    await self._lock()
                else:
                    cur = self._run(pos, end, frozenset((UNALLOCATED, ZERO)))
                    cur = self._clip_before_allocs(pos, cur)
                    await self._allocating_write(pos, buf[pos - offset:pos - offset + cur])
                pos += cur
        finally:
            self._release()

    def _release(self) -> None:
        """Unlock ``s->lock`` if this task holds it (an error may have left it unlocked)."""
        if self.lock.holder is not None and self.lock.holder is current_task():
            self._unlock()

    async def _wait_dependencies(self, pos: int, end: int) -> bool:
        """``handle_dependencies``: wait if an allocation in flight covers ``pos``'s cluster."""
        cs = self._cluster_size
        c = pos // cs
        touch(self._alloc_key, c * cs, (c + 1) * cs, False)
        for alloc in self._allocs:
            if alloc.start <= c < alloc.end:
                self._unlock()
                touch(self._alloc_key, alloc.start * cs, alloc.end * cs, False, waits=True)
                await alloc.queue.wait()
                await self._lock()
                return True
        return False

    def _clip_before_allocs(self, pos: int, cur: int) -> int:
        cs = self._cluster_size
        first = pos // cs
        last = (pos + cur - 1) // cs
        touch(self._alloc_key, first * cs, (last + 1) * cs, False)
        for alloc in self._allocs:
            if first < alloc.start <= last:
                cur = min(cur, alloc.start * cs - pos)
        return cur

    async def _allocating_write(self, pos: int, chunk: np.ndarray) -> None:
        """Allocate the clusters under ``chunk``: write the guest data and the COW
        regions (head, tail) in the era's order, then link them in the L2 table.

        Called with ``s->lock`` held; returns with it held (or raises).
        """
        cs = self._cluster_size
        nbytes = chunk.size
        c0 = pos // cs
        c1 = -(-(pos + nbytes) // cs)
        start = c0 * cs
        stop = min(c1 * cs, self.size)
        task = current_task()
        alloc = _InflightAlloc(self.name, c0, c1, task.name if task else "?")
        self._allocs.append(alloc)
        touch(self._alloc_key, start, c1 * cs, True)
        self._unlock()
        try:
            if pos > start or pos + nbytes < stop:
                emit("qcow2-cow", self.name, start, stop - start,
                     "fill clusters {}-{} around [{:#x}+{:#x}] from backing",
                     args=(c0, c1 - 1, pos, nbytes))
            if self.era == "2.8":
                await self._write_then_cow(pos, chunk, start, stop)
            else:
                await self._cow_merged(pos, chunk, start, stop)
            await self._meta_point(start, stop - start, "L2 update: clusters {}-{} allocated",
                                   (c0, c1 - 1))
            self._map[c0:c1] = NORMAL
            self._map_version += 1
        finally:
            self._allocs.remove(alloc)
            touch(self._alloc_key, start, c1 * cs, True)
            alloc.queue.restart_all()

    async def _write_then_cow(self, pos: int, chunk: np.ndarray, start: int, stop: int) -> None:
        """2.8 (``qcow2_co_pwritev``): the guest data goes to the new cluster first;
        ``qcow2_alloc_cluster_link_l2`` then calls ``perform_cow`` for the head and
        for the tail — each a read of the region from this node (through the
        backing chain: the cluster is not linked yet) and a write of it — and only
        then updates L2.  Returns holding ``s->lock``."""
        nbytes = chunk.size
        await sched_point("io-write", self.name, pos, nbytes)
        self._check_injected("write", pos, nbytes)
        self._data.write(pos, chunk)
        await self._lock()
        for lo, hi in ((start, pos), (pos + nbytes, stop)):
            if hi > lo:  # perform_cow: unlock, read, write, lock
                self._unlock()
                if self.blkdebug_breaks:  # do_perform_cow_read
                    await self.blkdbg_event("cow_read", lo, hi - lo)
                data = await self._co_preadv(lo, hi - lo)
                await sched_point("io-write", self.name, lo, hi - lo)
                self._check_injected("write", lo, hi - lo)
                self._data.write(lo, data)
                await self._lock()

    async def _cow_merged(self, pos: int, chunk: np.ndarray, start: int, stop: int) -> None:
        """2.10+ (7.2's ``qcow2_co_pwritev_task``): with COW regions, ``merge_cow``
        hands the guest data to ``perform_cow``, which (under ``s->lock`` taken by
        ``qcow2_handle_l2meta``, released around the I/O) reads head and tail —
        as **one** read of ``[head, tail)`` when both exist and the data between
        is at most 16 KiB (``merge_reads``), else head then tail — and writes
        head, data and tail in one request.  Without COW regions the data is
        written first, then L2 is linked.  Returns holding ``s->lock``."""
        nbytes = chunk.size
        end = pos + nbytes
        if pos == start and end == stop:  # no COW region: bdrv_co_pwritev_part, then link
            await sched_point("io-write", self.name, pos, nbytes)
            self._check_injected("write", pos, nbytes)
            self._data.write(pos, chunk)
            await self._lock()
            return
        await self._lock()  # qcow2_handle_l2meta → qcow2_alloc_cluster_link_l2 → perform_cow
        self._unlock()
        head = tail = b""
        if self.blkdebug_breaks:  # do_perform_cow_read
            await self.blkdbg_event("cow_read", start, stop - start)
        if pos > start and end < stop and nbytes <= MERGE_READS_MAX:  # merge_reads
            whole = await self._co_preadv(start, stop - start)
            head, tail = whole[:pos - start], whole[end - start:]
        else:
            if pos > start:
                head = await self._co_preadv(start, pos - start)
            if end < stop:
                tail = await self._co_preadv(end, stop - end)
        await sched_point("io-write", self.name, start, stop - start)
        self._check_injected("write", start, stop - start)
        self._data.write(start, head)
        self._data.write(pos, chunk)
        self._data.write(end, tail)
        await self._lock()

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        """``qcow2_co_pwrite_zeroes``: whole clusters become zero clusters; partial ones
        fall back to writing zero bytes (``-ENOTSUP`` → bounce-buffer write in block/io.c)."""
        cs = self._cluster_size
        end = offset + nbytes
        first_full = -(-offset // cs) * cs
        last_full = (end // cs) * cs
        if end == self.size:  # the image's last, short cluster counts as whole
            last_full = end
        if first_full >= last_full:
            await self._co_pwritev(offset, bytes(nbytes), flags)
            return
        if offset < first_full:
            await self._co_pwritev(offset, bytes(first_full - offset), flags)
        await self._lock()
        try:
            await self._meta_point(first_full, last_full - first_full,
                                   "L2 update: zero clusters (may unmap)" if flags & REQ_MAY_UNMAP
                                   else "L2 update: zero clusters")
            self._check_injected("write", first_full, last_full - first_full)
            self._map[first_full // cs:-(-last_full // cs)] = ZERO
            self._map_version += 1
            self._data.fill(first_full, last_full - first_full, 0)
        finally:
            self._release()
        if last_full < end:
            await self._co_pwritev(last_full, bytes(end - last_full), flags)

    async def make_empty(self) -> None:
        """``qcow2_make_empty``: drop every cluster; reads fall through to the backing again."""
        await self._lock()
        try:
            await self._meta_point(0, self.size, "make_empty: all clusters dropped")
            self._map[:] = UNALLOCATED
            self._map_version += 1
            self._data.clear()  # every byte back to zero: the chunks are dropped
        finally:
            self._release()

    def _peek(self, offset: int, nbytes: int) -> bytes:
        return b"".join(self._peek_pieces(offset, nbytes))

    def _peek_pieces(self, offset: int, nbytes: int) -> list:
        """Per run of clusters in one state: data, zeros, or the backing node's bytes."""
        return _chain_pieces(self._map, self._cluster_size, self._data, self.backing,
                             offset, nbytes)

    def _state_runs(self, pos: int, end: int) -> list[tuple[int, int, int]]:
        return _state_runs(self._map, self._cluster_size, pos, end)

    def _content_key(self) -> tuple:
        return self._data, self._data.version, self._map_version

    def _layer_bytes(self, alloc: np.ndarray) -> Pieces:
        # A snapshot of the store, read on demand: the dump shares the chunks
        # (copy-on-write) instead of copying the disk.
        snap = self._data.snapshot()
        return Pieces.lazy(self.size, functools.partial(snap.kept_pieces, alloc, SECTOR))

    def _make_layer(self) -> Layer:
        # The store's snapshot and the cluster map, both shared while they do not
        # change: a dump costs what changed since the last one, not two bools per
        # sector of the disk.
        snap, states, cs = self._data.snapshot(), self._frozen_map(), self._cluster_size

        def pieces(offset: int, nbytes: int) -> list:
            out: list = []
            for state, pos, cur in _state_runs(states, cs, offset, offset + nbytes):
                out += snap.pieces(pos, cur) if state != UNALLOCATED else zero_pieces(cur)
            return out

        return Layer.from_map(Pieces.lazy(self.size, pieces), states, cs // SECTOR,
                              UNALLOCATED, ZERO)

    def _frozen_map(self) -> np.ndarray:
        """A read-only copy of the cluster map, shared while it does not change."""
        cached = self._map_snap
        if cached is None or cached[0] != self._map_version:
            frozen = self._map.copy()
            frozen.flags.writeable = False
            cached = self._map_snap = (self._map_version, frozen)
        return cached[1]

    def _dump_bits(self) -> tuple[np.ndarray, np.ndarray]:
        """The allocation and zero bitmaps of a dump, read-only, shared by the dumps
        taken while the map does not change."""
        cached = self._bits_snap
        if cached is None or cached[0] != self._map_version:
            states = self._sector_states()
            alloc, zero = states != UNALLOCATED, states == ZERO
            alloc.flags.writeable = False
            zero.flags.writeable = False
            cached = self._bits_snap = (self._map_version, alloc, zero)
        return cached[1], cached[2]

    def _dump_allocation(self) -> np.ndarray:
        return self._dump_bits()[0]

    def freeze_storage(self) -> None:
        self._data.freeze()

    def frozen(self) -> FrozenQcow2 | None:
        backing = None
        if self.backing is not None:
            backing = self.backing.frozen()
            if backing is None:
                return None
        return FrozenQcow2(self._frozen_map(), self._cluster_size, self._data.snapshot(),
                           backing)

    # --- dumps ----------------------------------------------------------------
    def _sector_states(self) -> np.ndarray:
        per = self._cluster_size // SECTOR
        return np.repeat(self._map, per)[: self.size // SECTOR]

    def _allocation(self) -> np.ndarray:
        return self._sector_states() != UNALLOCATED

    def _zero_map(self) -> np.ndarray:
        return self._dump_bits()[1]

    @property
    def stored_chunks(self) -> int:
        return self._data.chunks

    def _own_data(self) -> np.ndarray:
        return self._data.to_array()

