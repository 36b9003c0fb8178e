"""The generic block layer (QEMU's ``block/io.c``): what every node does the same way.

A :class:`BlockNode` is a ``BlockDriverState``: a named node with a size, up
to two children (``file`` and ``backing``), and the generic request path that
every driver shares:

1. ``bdrv_check_byte_request``: the request must be aligned to the node's
   ``request_alignment`` (512 bytes) and inside the node;
2. a *tracked request* is registered on the node for the request's whole life
   (``tracked_request_begin``), so that serialising requests can find it;
3. ``wait_serialising_requests``: a serialising request waits for every
   overlapping request, any request waits for overlapping serialising ones;
4. for writes, the *before-write notifiers* run (the backup job's
   ``backup_before_write_notify`` is one) and may veto the write with an error;
5. the driver does the I/O (``_co_preadv``, ``_co_pwritev``...), where the
   scheduling points are.

Trainees should notice step 4: the copy of the old data happens *inside* the
primary's write, before the write reaches the disk.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AlignmentError, BlockError, ConfigError, GraphError, NotSupported, RangeError
from ..kernel import CoQueue, Task, current_task, emit, sched_point, touch
from ..layers import SECTOR, Layer, Pieces, constant_bits

if TYPE_CHECKING:
    from ._graph import BlockGraph

# Request flags (BdrvRequestFlags)
REQ_NO_SERIALISING = 0x1  # BDRV_REQ_NO_SERIALISING (2.5-4.2): skip wait_serialising_requests
REQ_SERIALISING = 0x2  # BDRV_REQ_SERIALISING (3.0+): this write serialises against overlaps
REQ_MAY_UNMAP = 0x4  # BDRV_REQ_MAY_UNMAP: write-zeroes may deallocate

# Layer dumps of disks up to this size are kept for reuse (see BlockNode.layer); a
# larger disk's dump is made afresh each time, so that it is not held in memory.
LAYER_CACHE_MAX = 64 << 20

_FLAG_NAMES = {REQ_NO_SERIALISING: "no-serialising", REQ_SERIALISING: "serialising",
               REQ_MAY_UNMAP: "may-unmap"}


def flag_names(flags: int) -> str:
    return ",".join(name for bit, name in _FLAG_NAMES.items() if flags & bit)


class TrackedRequest:
    """``BdrvTrackedRequest``: an in-flight request on one node."""

    __slots__ = ("_wait_queue", "bytes", "node", "offset", "overlap_bytes", "overlap_offset",
                 "serialising", "task", "type", "waiting_for")

    def __init__(self, node: BlockNode, offset: int, nbytes: int, type_: str, task: Task | None):
        self.node = node
        self.offset = offset
        self.bytes = nbytes
        self.type = type_
        self.task = task
        self.serialising = False
        self.overlap_offset = offset
        self.overlap_bytes = nbytes
        self.waiting_for: TrackedRequest | None = None
        self._wait_queue: CoQueue | None = None

    @property
    def wait_queue(self) -> CoQueue:
        """The queue overlapping requests wait on (``req->wait_queue``).

        Made on first use: most requests are never waited for, and building the
        queue and its label for each one was a hot spot.  The label is made of
        fields that never change, so it reads the same whenever it is made.
        """
        if self._wait_queue is None:
            who = self.task.name if self.task else "?"
            self._wait_queue = CoQueue(f"{self.type} by {who} on {self.node.name} "
                                       f"[{self.offset:#x}+{self.bytes:#x}] (tracked request)")
        return self._wait_queue

    def wake_waiters(self) -> None:
        """``qemu_co_queue_restart_all(&req->wait_queue)`` — if anyone ever waited."""
        if self._wait_queue is not None:  # no queue made: nobody ever waited
            self._wait_queue.restart_all()

    def overlaps(self, offset: int, nbytes: int) -> bool:
        return offset < self.overlap_offset + self.overlap_bytes and \
            self.overlap_offset < offset + nbytes

    def __repr__(self) -> str:
        return f"<TrackedRequest {self.type} {self.node.name} {self.offset:#x}+{self.bytes:#x}>"


WriteNotifier = Callable[["TrackedRequest"], Awaitable[None]]


@dataclass
class InjectedError:
    """A blkdebug-style rule: fail the next matching leaf I/O on a node with ``errno``."""

    op: str  # "read", "write" or "any"
    errno: int = _errno.EIO
    offset: int | None = None  # only requests overlapping [offset, offset+length)
    length: int = 1
    once: bool = True

    def matches(self, op: str, offset: int, nbytes: int) -> bool:
        if self.op not in ("any", op):
            return False
        if self.offset is None:
            return True
        return offset < self.offset + self.length and self.offset < offset + nbytes


def check_byte_request(op: str, node: str, size: int, offset: int, nbytes: int,
                       alignment: int = SECTOR) -> tuple[int, int]:
    """A request's range checked as ``bdrv_check_byte_request`` (block/io.c) does, plus the
    node's ``request_alignment``; returns it as Python integers, or raises
    :class:`~labkit.errors.RangeError` / :class:`~labkit.errors.AlignmentError`.

    The one range check of labkit: the engine's nodes (:meth:`BlockNode.check_request`)
    and the real-QEMU backend's NBD I/O (:mod:`labkit.qemu`) both use it.
    """
    for what, value in (("offset", offset), ("length", nbytes)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise RangeError(f"{op} on {node}: {what} must be an integer, got {value!r}")
    # As Python integers: numpy's fixed-width sums wrap (uint32 0xFFFFFE00 + 0x400 is 0x200)
    offset, nbytes = int(offset), int(nbytes)
    if offset < 0 or nbytes < 0:
        raise RangeError(f"{op} on {node}: offset {offset} and length {nbytes} must not "
                         f"be negative")
    if offset % alignment or nbytes % alignment:
        raise AlignmentError(
            f"{op} on {node}: offset {offset} and length {nbytes} must be multiples of "
            f"the node's request_alignment ({alignment} bytes)")
    if offset + nbytes > size:
        raise RangeError(f"{op} on {node}: [{offset}, {offset + nbytes}) reaches past "
                         f"the end of the node ({size} bytes)")
    return offset, nbytes


class BlockNode:
    """``BlockDriverState``: a node of the block graph with QEMU's generic request path.

    Subclasses (the drivers) implement ``_co_preadv``, ``_co_pwritev``,
    ``_co_pwrite_zeroes``, ``_allocation`` and optionally ``_make_empty``.
    """

    driver = "generic"

    def __init__(self, name: str, size: int, *, request_alignment: int = SECTOR) -> None:
        if not isinstance(name, str) or not name:
            raise GraphError(f"node name must be a non-empty string, got {name!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise GraphError(f"node {name}: size must be a non-negative integer number of bytes, "
                             f"got {size!r}")
        if size % SECTOR:
            raise GraphError(f"node {name}: size {size} is not a multiple of {SECTOR} bytes; "
                             f"QEMU sizes images in whole 512-byte sectors")
        self.name = name
        self.size = size
        self.request_alignment = request_alignment
        self.children: dict[str, BlockNode] = {}
        # QEMU's QLIST of BdrvTrackedRequest: insertion-ordered, O(1) removal (a
        # dict used as an ordered set; a list's remove() made a wide par O(n²))
        self.tracked_requests: dict[TrackedRequest, None] = {}
        self.serialising_in_flight = 0
        self.before_write_notifiers: list[WriteNotifier] = []
        self.backends: list[str] = []  # names of BlockBackends attached (bdrv_has_blk)
        # The BlockBackends themselves (an NBD export...): objects with a ``node``
        # attribute, which bdrv_replace_node moves to a node inserted above this one.
        self.blk_parents: list[Any] = []
        self.graph: BlockGraph | None = None  # set by BlockGraph.add
        # the block job using this node as its source (bs->job in 2.8): an object of the
        # jobs layer above, which the block layer does not know (users check its type)
        self.job: object | None = None
        self.injected: list[InjectedError] = []
        # blkdebug breakpoints armed on this node's file ("break EVENT TAG"): see blkdbg_event
        self.blkdebug_breaks: set[str] = set()
        self.dirty_bitmaps: list[np.ndarray] = []  # BdrvDirtyBitmap, one bool per sector
        # Drained sections (see _drain.py): bs->quiesce_counter, who opened them, the
        # new requests waiting for their end, and the drainers waiting for this
        # node's in-flight requests to end (bdrv_drain_poll).
        self.quiesce_counter = 0
        self.quiesced_by: list[str] = []
        self.drained_queue: CoQueue | None = None
        self.drain_waiters: CoQueue | None = None
        # The last dump and the content key it was made at (see layer()).  A widget
        # redraws the layers after every decision, and most decisions change none.
        self._layer_cache: tuple[tuple, Layer] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.size} bytes>"

    # --- graph ------------------------------------------------------------
    @property
    def era(self) -> str:
        """The QEMU this node behaves as: its graph's era ("2.8" outside a graph)."""
        graph = self.graph
        return graph.era if graph is not None else "2.8"

    def attached(self, graph: BlockGraph) -> None:
        """Called when the node joins ``graph`` (``blockdev-add``): a driver reads the
        graph's era here for what it sets up once (a qcow2 node's CoMutex)."""

    @property
    def file(self) -> BlockNode | None:
        return self.children.get("file")

    @property
    def backing(self) -> BlockNode | None:
        return self.children.get("backing")

    def set_backing(self, node: BlockNode | None) -> None:
        """Attach ``node`` as this node's backing child (or detach with None)."""
        self._check_child("backing", node)
        if node is None:
            self.children.pop("backing", None)
        else:
            self.children["backing"] = node

    def set_file(self, node: BlockNode | None) -> None:
        """Attach ``node`` as this node's ``file`` child (or detach with None)."""
        self._check_child("file", node)
        if node is None:
            self.children.pop("file", None)
        else:
            self.children["file"] = node

    def _check_child(self, role: str, node: BlockNode | None) -> None:
        if node is None:
            return
        if not isinstance(node, BlockNode):
            raise GraphError(f"{self.name}: a {role} child must be a BlockNode, got {node!r}")
        if role == "backing" and not self.supports_backing:
            raise GraphError(f"{self.name}: driver '{self.driver}' does not support backing "
                             f"files; only qcow2 nodes have a backing child")
        if node.size != self.size:
            raise GraphError(
                f"{self.name}: {role} node {node.name} is {node.size} bytes but {self.name} is "
                f"{self.size}; labkit's COLO chain needs every layer the same size")
        if node is self or self in node.chain_nodes():
            raise GraphError(f"{self.name}: making {node.name} its {role} child would create a "
                             f"loop ({node.name} already reaches {self.name}); the graph must be "
                             f"a tree")

    supports_backing = False

    def chain_nodes(self) -> list[BlockNode]:
        """This node and every node reachable through its children (depth first)."""
        out: list[BlockNode] = []
        stack: list[BlockNode] = [self]
        while stack:
            node = stack.pop()
            if node in out:
                continue
            out.append(node)
            stack.extend(reversed(list(node.children.values())))
        return out

    # --- request checks ---------------------------------------------------
    def check_request(self, offset: int, nbytes: int, op: str) -> None:
        """``bdrv_check_byte_request`` plus labkit's alignment rule; raises, changes nothing."""
        check_byte_request(op, self.name, self.size, offset, nbytes, self.request_alignment)

    # --- tracked and serialising requests ----------------------------------
    def _tracked_begin(self, offset: int, nbytes: int, type_: str) -> TrackedRequest:
        req = TrackedRequest(self, offset, nbytes, type_, current_task())
        self.tracked_requests[req] = None
        # A non-serialising request matters to the list only through serialising
        # ones (wait_serialising_requests): it reads the list over its range.
        touch(("req", self.name), offset, offset + nbytes, False)
        emit("req-start", self.name, offset, nbytes, op=type_)
        return req

    def _tracked_end(self, req: TrackedRequest) -> None:
        if req.serialising:
            self.serialising_in_flight -= 1
        del self.tracked_requests[req]
        touch(("req", self.name), req.overlap_offset, req.overlap_offset + req.overlap_bytes,
              req.serialising)
        emit("req-end", self.name, req.offset, req.bytes, op=req.type)
        req.wake_waiters()
        if self.drain_waiters is not None:  # a drained section polls for this end
            self.drain_waiters.restart_all()

    def mark_request_serialising(self, req: TrackedRequest, align: int) -> None:
        """``mark_request_serialising``: widen the overlap range to ``align``; count once."""
        start = (req.offset // align) * align
        end = -(-(req.offset + req.bytes) // align) * align
        if not req.serialising:
            req.serialising = True
            self.serialising_in_flight += 1
        req.overlap_offset = min(req.overlap_offset, start)
        req.overlap_bytes = max(req.overlap_offset + req.overlap_bytes, end) - req.overlap_offset
        touch(("req", self.name), req.overlap_offset, req.overlap_offset + req.overlap_bytes, True)

    async def wait_serialising_requests(self, me: TrackedRequest) -> bool:
        """``wait_serialising_requests``: wait for conflicting overlaps, rescan after each wait."""
        # The scan reads the list over our range (as a writer when we serialise: we
        # wait for every overlap); serialising_in_flight only summarises the list.
        touch(("req", self.name), me.overlap_offset, me.overlap_offset + me.overlap_bytes,
              me.serialising)
        if not self.serialising_in_flight:
            return False
        waited = False
        retry = True
        while retry:
            retry = False
            # bdrv_find_conflicting_request walks bs->tracked_requests from its head,
            # and tracked_request_begin inserts at the head (QLIST_INSERT_HEAD, block/io.c,
            # 2.8 and 7.2): newest first.
            for req in reversed(self.tracked_requests):
                if req is me or (not req.serialising and not me.serialising):
                    continue
                if not req.overlaps(me.overlap_offset, me.overlap_bytes):
                    continue
                # QEMU asserts here: a coroutine must never wait for its own request.
                assert req.task is None or req.task is not me.task, (
                    f"reentrant request: {me!r} would wait for {req!r} of the same task")
                if req.waiting_for is None:
                    me.waiting_for = req
                    touch(("req", self.name), req.overlap_offset,
                          req.overlap_offset + req.overlap_bytes, False, waits=True)
                    await req.wait_queue.wait()
                    touch(("req", self.name), me.overlap_offset,
                          me.overlap_offset + me.overlap_bytes, me.serialising)  # rescan
                    me.waiting_for = None
                    retry = True
                    waited = True
                    break
        return waited

    # --- the public request path ---------------------------------------------
    async def co_preadv(self, offset: int, nbytes: int, flags: int = 0) -> bytes:
        """``bdrv_co_preadv``: read ``nbytes`` at ``offset`` (tracked, maybe waiting)."""
        self.check_request(offset, nbytes, "read")
        req = self._tracked_begin(offset, nbytes, "read")
        try:
            if not flags & REQ_NO_SERIALISING:
                await self.wait_serialising_requests(req)
            return await self._co_preadv(offset, nbytes)
        finally:
            self._tracked_end(req)

    async def co_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        """``bdrv_co_pwritev`` → ``bdrv_aligned_pwritev``: serialise, notify, write."""
        nbytes = len(data)
        self.check_request(offset, nbytes, "write")
        await self._write_request(offset, nbytes, flags, "write", data)

    async def co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int = 0) -> None:
        """``bdrv_co_pwrite_zeroes``: like a write (notifiers run too), data all zero."""
        self.check_request(offset, nbytes, "write-zeroes")
        await self._write_request(offset, nbytes, flags, "zero", None)

    async def _write_request(self, offset: int, nbytes: int, flags: int, type_: str,
                             data: bytes | None) -> None:
        req = self._tracked_begin(offset, nbytes, type_)
        try:
            if flags & REQ_SERIALISING:
                self.mark_request_serialising(req, self.cluster_size)
            await self.wait_serialising_requests(req)
            for notifier in list(self.before_write_notifiers):
                await notifier(req)  # raises BlockError to veto the write
            if data is None:
                await self._co_pwrite_zeroes(offset, nbytes, flags)
            else:
                await self._co_pwritev(offset, data, flags)
            for bitmap in self.dirty_bitmaps:  # bdrv_set_dirty, after the write lands
                bitmap[offset // SECTOR:(offset + nbytes) // SECTOR] = True
        finally:
            self._tracked_end(req)

    def co_block_status(self, offset: int, nbytes: int) -> tuple[bool, int]:
        """``bdrv_co_block_status_above(bs, NULL, ...)`` with ``want_zero``: is
        ``[offset, offset + n)`` known to read as zeros, and ``n`` (bytes in that state).

        The default answer is "data" for the whole range; a driver that can tell
        holes (raw over a sparse file) overrides :meth:`_block_status`.  Reads the
        node's data map (a write there can change the answer).  No yield: the
        answer comes from the node's own metadata (``lseek(SEEK_HOLE)``).
        """
        self.check_request(offset, nbytes, "block_status")
        zero, n = self._block_status(offset, nbytes)
        touch(("data", self.name), offset, offset + n, False)
        return zero, n

    def _block_status(self, offset: int, nbytes: int) -> tuple[bool, int]:
        return False, nbytes

    async def co_is_allocated(self, offset: int, nbytes: int) -> tuple[bool, int]:
        """``bdrv_is_allocated`` for this layer only: (allocated?, bytes in that state)."""
        self.check_request(offset, nbytes, "is_allocated")
        touch(("map", self.name), offset, offset + nbytes, False)
        alloc = self._allocation()[offset // SECTOR:(offset + nbytes) // SECTOR]
        if alloc.size == 0:
            return False, 0
        first = bool(alloc[0])
        change = np.flatnonzero(alloc != first)
        run = int(change[0]) if change.size else alloc.size
        return first, run * SECTOR

    async def make_empty(self) -> None:
        """``bdrv_make_empty``: drop every allocation, so reads fall through again."""
        raise NotSupported(f"driver '{self.driver}' of node {self.name} does not support "
                           f"make_empty; only qcow2 nodes can be emptied")

    @property
    def supports_make_empty(self) -> bool:
        return type(self).make_empty is not BlockNode.make_empty

    @property
    def cluster_size(self) -> int:
        """``bdrv_get_info``'s cluster size (a raw node answers its alignment)."""
        return self.request_alignment

    # --- dirty bitmaps ------------------------------------------------------------
    def create_dirty_bitmap(self) -> np.ndarray:
        """``bdrv_create_dirty_bitmap``: one bool per sector, set by every write that lands."""
        bitmap = np.zeros(self.size // SECTOR, dtype=bool)
        self.dirty_bitmaps.append(bitmap)
        return bitmap

    def release_dirty_bitmap(self, bitmap: np.ndarray) -> None:
        self.dirty_bitmaps = [b for b in self.dirty_bitmaps if b is not bitmap]

    # --- synchronous inspection (no scheduling, no tracking) ---------------------
    def peek(self, offset: int, nbytes: int) -> bytes:
        """What a read would return right now, without a request: for dumps and plots."""
        self.check_request(offset, nbytes, "peek")
        return self._peek(offset, nbytes)

    def _peek(self, offset: int, nbytes: int) -> bytes:
        return self._own_data()[offset:offset + nbytes].tobytes()

    def _peek_pieces(self, offset: int, nbytes: int) -> list:
        """What :meth:`_peek` returns, as buffers for ``b"".join``: a whole-disk peek
        through a chain then costs one copy, not one per layer (raw and qcow2
        override it; a driver that overrides only ``_peek`` still works)."""
        return [self._peek(offset, nbytes)]

    def allocated_above(self, base: BlockNode | None) -> np.ndarray:
        """``bdrv_is_allocated_above``: per sector, allocated in this node or any backing
        node above ``base`` (exclusive)."""
        out = np.zeros(self.size // SECTOR, dtype=bool)
        node: BlockNode | None = self
        while node is not None and node is not base:
            touch(("map", node.name), 0, node.size, False)  # reads its whole allocation map
            out |= node.allocation()
            node = node.backing
        return out

    # --- fault injection (blkdebug) ----------------------------------------
    def inject_error(self, op: str = "any", errno: int = _errno.EIO, offset: int | None = None,
                     length: int = 1, once: bool = True) -> InjectedError:
        """Make the next matching leaf ``op`` on this node fail with ``errno`` (blkdebug)."""
        if op not in ("read", "write", "any"):
            raise ConfigError(f"inject_error op must be 'read', 'write' or 'any', got {op!r}")
        rule = InjectedError(op, errno, offset, length, once)
        self.injected.append(rule)
        return rule

    async def blkdbg_event(self, event: str, offset: int, nbytes: int) -> None:
        """``BLKDBG_EVENT(bs->file, event)``: with a blkdebug breakpoint armed for ``event``
        (``blkdebug_breaks``, what ``qemu-io "break EVENT TAG"`` arms), the request
        is suspended here — a scheduling point that QEMU has only under blkdebug —
        and the breakpoint is gone (it fires once).  Callers check
        ``blkdebug_breaks`` first, so an unarmed node costs nothing."""
        if event in self.blkdebug_breaks:
            self.blkdebug_breaks.discard(event)
            await sched_point("blkdebug", self.name, offset, nbytes,
                              f"suspended at blkdebug breakpoint {event}", write=False)

    def _check_injected(self, op: str, offset: int, nbytes: int) -> None:
        for rule in self.injected:
            if rule.matches(op, offset, nbytes):
                if rule.once:
                    self.injected.remove(rule)
                raise BlockError(rule.errno, f"{op} on {self.name} at [{offset:#x}+{nbytes:#x}] "
                                             f"failed (injected error)")

    # --- the driver interface -------------------------------------------------
    async def _co_preadv(self, offset: int, nbytes: int) -> bytes:
        raise NotImplementedError

    async def _co_pwritev(self, offset: int, data: bytes, flags: int) -> None:
        raise NotImplementedError

    async def _co_pwrite_zeroes(self, offset: int, nbytes: int, flags: int) -> None:
        raise NotImplementedError

    def _allocation(self) -> np.ndarray:
        """Per 512-byte sector: allocated in this layer?"""
        raise NotImplementedError

    def _zero_map(self) -> np.ndarray:
        """Per sector: a qcow2 zero cluster? (for a dump: read-only, may be shared)"""
        return constant_bits(self.size // SECTOR, False)

    def _dump_allocation(self) -> np.ndarray:
        """:meth:`_allocation` for a dump (a driver may return a shared read-only array)."""
        return self._allocation()

    def allocation(self) -> np.ndarray:
        """Per 512-byte sector: allocated in this node's own layer (the driver's answer)."""
        return self._allocation()

    def peek_pieces(self, offset: int, nbytes: int) -> list:
        """What :meth:`peek` returns, as buffers (no checks): for a backing chain's peek."""
        return self._peek_pieces(offset, nbytes)

    def _own_data(self) -> np.ndarray:
        raise NotImplementedError

    def freeze_storage(self) -> None:
        """Make buffers taken from this node's storage immutable (copy-on-write from now
        on, :meth:`labkit.block.ChunkStore.freeze`); a node without storage has none."""

    def frozen(self) -> Any | None:
        """What :meth:`peek` reads now, as an object whose ``peek_pieces(offset, nbytes)``
        never changes (a dump of the VM's view shares the disks' chunks, copy-on-write,
        instead of copying them); None for a driver that cannot freeze its contents."""
        return None

    def frozen_peek_pieces(self, offset: int, nbytes: int) -> list:
        """:meth:`peek` as buffers that never change, for a driver without
        :meth:`frozen`: every node below is frozen first."""
        self.check_request(offset, nbytes, "peek")
        seen: set[int] = set()
        todo: list[BlockNode] = [self]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            node.freeze_storage()
            todo.extend(node.children.values())
        return self._peek_pieces(offset, nbytes)

    @property
    def stored_chunks(self) -> int:
        """How many ``CHUNK``-byte chunks this node's own storage holds (about
        ``stored_chunks * CHUNK`` bytes of memory); 0 for a node that owns no data."""
        return 0

    def layer(self) -> Layer:
        """A dump of this node's own contents (unallocated sectors read as zero)."""
        key = self._content_key()
        cached = self._layer_cache
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]  # nothing changed since: the same (immutable) Layer
        layer = self._make_layer()
        if key is not None and self.size <= LAYER_CACHE_MAX:
            self._layer_cache = (key, layer)
        return layer

    def _make_layer(self) -> Layer:
        """A new dump of this node's own contents (see :meth:`layer`)."""
        alloc = self._dump_allocation()
        return Layer(self._layer_bytes(alloc), alloc, self._zero_map())

    def drop_layer_cache(self) -> None:
        """Forget the last dump: the next :meth:`layer` is computed from scratch (for
        tests that check the reuse against a fresh dump)."""
        self._layer_cache = None

    def _content_key(self) -> tuple | None:
        """A value that changes whenever this node's own contents (data, allocation) do,
        or None if the driver cannot tell.  Lets :meth:`layer` reuse its last dump."""
        return None

    def peek_key(self) -> tuple | None:
        """Like :meth:`_content_key` for what :meth:`peek` reads: this node's contents and
        its children's, or None if some node cannot tell."""
        own = self._content_key()
        if own is None:
            return None
        children = []
        for role, child in self.children.items():
            key = child.peek_key()
            if key is None:
                return None
            children.append((role, key))
        return own, tuple(children)

    def _layer_bytes(self, alloc: np.ndarray) -> bytes | list | Pieces:
        """This node's own bytes with the sectors not in ``alloc`` zeroed."""
        data = self._own_data().reshape(-1, SECTOR).copy()
        data[~alloc] = 0
        return data.tobytes()


class FilterNode(BlockNode):
    """A filter driver's node (``BlockDriver.is_filter``): it owns no data, and what it
    holds is what its ``file`` child holds (``bdrv_filter_bs``) — replication and
    copy-before-write are two.  A trainee sees it in the graph, never in a layer dump."""

    is_filter = True

    def _allocation(self) -> np.ndarray:
        return np.zeros(self.size // SECTOR, dtype=bool)

    def _own_data(self) -> np.ndarray:
        return np.zeros(self.size, dtype=np.uint8)

    def _peek(self, offset: int, nbytes: int) -> bytes:
        assert self.file is not None
        return self.file.peek(offset, nbytes)

    def _peek_pieces(self, offset: int, nbytes: int) -> list:
        assert self.file is not None
        return self.file.peek_pieces(offset, nbytes)
