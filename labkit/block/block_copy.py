"""QEMU 7.2's copy engine: ``block/block-copy.c`` over ``block/reqlist.c``.

The copy-before-write filter (:mod:`labkit.block.copy_before_write`) calls
:meth:`BlockCopyState.block_copy` for the clusters under every guest write
before the write goes on.  What a trainee should notice, compared with 2.8's
``backup_do_cow``:

* there is no "CowRequest over the whole write": ``block_copy_task_create``
  takes the first *dirty* (not yet copied) area of the range, clears its bits
  in the copy bitmap **at once**, and registers a ``BlockReq`` (a *task*) over
  exactly that area in ``s->reqs``;
* a caller waits (``reqlist_wait_one``) only for an overlapping *in-flight
  task* of someone else, and only once it found no dirty cluster of its own
  left to copy (``block_copy_common``): a write over clusters 0-1 whose
  cluster 0 is being copied by another write copies cluster 1 first, then
  waits for cluster 0's task;
* the source's block status cuts tasks (``block_copy_block_status``): an area
  that reads as zeros (a hole of a sparse secondary disk) becomes a
  ``COPY_WRITE_ZEROES`` task, written to the target as zeroes *without
  reading the source*;
* a task is one read of up to ``BLOCK_COPY_MAX_BUFFER`` (1 MiB) and one write
  (``block_copy_do_copy``); the target writes carry ``BDRV_REQ_SERIALISING``
  when the source is in the target's backing chain (``block_copy_state_new``'s
  ``is_fleecing``, commit ``f8d59dfb40``): always, for replication.

QEMU runs the tasks of one call in an ``aio_task_pool`` of up to
``BLOCK_COPY_MAX_WORKERS`` coroutines.  labkit creates the tasks of a call as
QEMU does — each one right after the previous one started, with no other
coroutine running in between, so the bitmap and the request list read the
same to everyone else — and then runs their I/O one after the other in the
calling task (labkit's kernel has no way to enter a new coroutine at once):
a call that makes several tasks (a range cut by a zero area, or by a cluster
someone else is copying) has only one of them in flight at a time.

The ``s->lock`` CoMutex of QEMU's state is never held across a yield here
(the bitmap and the list are only touched between scheduling points), so it
is not modelled; ``reqlist_wait_one`` drops it while it waits.
"""

from __future__ import annotations

import errno as _errno

import numpy as np

from ..errors import BlockError
from ..kernel import CoQueue, current_task, emit, touch
from ._node import REQ_SERIALISING, BlockNode

BLOCK_COPY_MAX_BUFFER = 1 << 20  # the largest bounce-buffer copy (COPY_READ_WRITE)
BLOCK_COPY_MAX_WORKERS = 64  # the size of a call's aio_task_pool
BLOCK_COPY_CLUSTER_SIZE_DEFAULT = 1 << 16

COPY_READ_WRITE = "read-write"  # BlockCopyMethod COPY_READ_WRITE
COPY_WRITE_ZEROES = "write-zeroes"  # BlockCopyMethod COPY_WRITE_ZEROES


class BlockReq:
    """``BlockReq`` (``block/reqlist.c``): ``[offset, offset + bytes)`` in flight, with
    the queue its waiters wait on.  ``start`` / ``end`` are the same range in
    clusters (what the figures and widgets show, as for a 2.8 CowRequest)."""

    __slots__ = ("bytes", "cluster_size", "offset", "owner", "wait_queue")

    def __init__(self, offset: int, nbytes: int, cluster_size: int, owner: str) -> None:
        self.offset = offset
        self.bytes = nbytes
        self.cluster_size = cluster_size
        self.owner = owner
        self.wait_queue = CoQueue(self.describe())

    @property
    def start(self) -> int:
        return self.offset // self.cluster_size

    @property
    def end(self) -> int:
        return -(-(self.offset + self.bytes) // self.cluster_size)

    def describe(self) -> str:
        return f"block-copy task of {self.owner} on clusters {self.start}-{self.end - 1}"

    def overlaps(self, offset: int, nbytes: int) -> bool:
        return offset < self.offset + self.bytes and self.offset < offset + nbytes

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class BlockReqList:
    """``BlockReqList``: a QLIST with inserts at the head (``reqlist_init_req``), so
    every scan (``reqlist_find_conflict``) sees the newest request first.

    ``resource`` names the declared access (:class:`labkit.kernel.Access`) over
    byte ranges: scans read it, inserting, shrinking and removing write it.
    """

    def __init__(self, resource: tuple[str, str]) -> None:
        self.resource = resource
        self._reqs: dict[BlockReq, None] = {}  # insertion order: the head is the last

    def __iter__(self):
        return iter(reversed(list(self._reqs)))  # head first

    def __len__(self) -> int:
        return len(self._reqs)

    def reqlist_init_req(self, req: BlockReq) -> None:
        self._reqs[req] = None
        touch(self.resource, req.offset, req.offset + req.bytes, True)

    def reqlist_find_conflict(self, offset: int, nbytes: int) -> BlockReq | None:
        touch(self.resource, offset, offset + nbytes, False)
        for req in reversed(self._reqs):
            if req.overlaps(offset, nbytes):
                return req
        return None

    async def reqlist_wait_one(self, offset: int, nbytes: int) -> bool:
        """Wait for the first conflicting request (head first) to end or shrink; True
        if it waited (the caller rescans), False if nothing conflicts."""
        req = self.reqlist_find_conflict(offset, nbytes)
        if req is None:
            return False
        touch(self.resource, req.offset, req.offset + req.bytes, False, waits=True)
        await req.wait_queue.wait()
        touch(self.resource, offset, offset + nbytes, False)  # the caller's rescan
        return True

    async def reqlist_wait_all(self, offset: int, nbytes: int) -> None:
        while await self.reqlist_wait_one(offset, nbytes):
            pass

    def reqlist_shrink_req(self, req: BlockReq, new_bytes: int) -> None:
        """Cut the request's tail and wake its waiters (the cut part may be theirs)."""
        touch(self.resource, req.offset + new_bytes, req.offset + req.bytes, True)
        req.bytes = new_bytes
        req.wait_queue.label = req.describe()
        req.wait_queue.restart_all()

    def reqlist_remove_req(self, req: BlockReq) -> None:
        del self._reqs[req]
        touch(self.resource, req.offset, req.offset + req.bytes, True)
        req.wait_queue.restart_all()


class BlockCopyTask:
    """``BlockCopyTask``: one area to copy, its method and its ``BlockReq``."""

    __slots__ = ("call_state", "method", "req")

    def __init__(self, call_state: BlockCopyCallState, req: BlockReq, method: str) -> None:
        self.call_state = call_state
        self.req = req
        self.method = method

    @property
    def end(self) -> int:
        """``task_end``."""
        return self.req.offset + self.req.bytes


class BlockCopyCallState:
    """``BlockCopyCallState``: one ``block_copy`` call and the first error of its tasks."""

    __slots__ = ("bytes", "error", "offset")

    def __init__(self, offset: int, nbytes: int) -> None:
        self.offset = offset
        self.bytes = nbytes
        self.error: BlockError | None = None  # call_state->ret, set by the first failing task


class BlockCopyState:
    """``BlockCopyState``: the copy bitmap, the request list, the source and target.

    ``copy_bitmap`` has one bit per cluster, set = still to copy (QEMU starts it
    all set; a replication checkpoint sets it all again).  ``write_flags`` are
    the target writes' flags (``BDRV_REQ_SERIALISING`` when fleecing).
    """

    def __init__(self, source: BlockNode, target: BlockNode, cluster_size: int,
                 write_flags: int) -> None:
        self.source = source
        self.target = target
        self.cluster_size = cluster_size
        self.len = source.size
        self.write_flags = write_flags
        self.copy_bitmap = np.ones(-(-self.len // cluster_size), dtype=bool)
        self.reqs = BlockReqList(("cow", source.name))
        self._bitmap = ("done", source.name)  # declared accesses of the copy bitmap
        self.calls = 0  # block_copy calls in flight (s->calls)
        self.progress = 0  # bytes copied (the job's progress meter)
        self._calls_done = CoQueue(f"block-copy calls on {source.name}")

    def __repr__(self) -> str:
        return (f"<BlockCopyState {self.source.name}->{self.target.name} "
                f"cluster={self.cluster_size}>")

    # --- the bitmap -------------------------------------------------------------
    def _next_dirty_area(self, offset: int, nbytes: int, max_chunk: int) -> tuple[int, int] | None:
        """``bdrv_dirty_bitmap_next_dirty_area``: the first run of set bits in the range
        (at most ``max_chunk`` bytes), as (offset, bytes), or None."""
        cs = self.cluster_size
        c0, c1 = offset // cs, -(-(offset + nbytes) // cs)
        bits = self.copy_bitmap[c0:c1]
        dirty = np.flatnonzero(bits)
        if not dirty.size:
            touch(self._bitmap, c0 * cs, c1 * cs, False)
            return None
        first = c0 + int(dirty[0])
        limit = min(c1, first + max(1, max_chunk // cs))
        clean = np.flatnonzero(~self.copy_bitmap[first:limit])
        last = first + int(clean[0]) if clean.size else limit
        # read: the clean bits before the area, the area, the bit that ended it
        touch(self._bitmap, c0 * cs, min(last + 1, c1) * cs, False)
        return first * cs, (last - first) * cs

    def block_copy_set_all(self) -> None:
        """``bdrv_set_dirty_bitmap(copy_bitmap, 0, len)``: copy every cluster again."""
        touch(self._bitmap, 0, len(self.copy_bitmap) * self.cluster_size, True)
        self.copy_bitmap[:] = True

    # --- tasks ------------------------------------------------------------------
    def block_copy_task_create(self, call_state: BlockCopyCallState, offset: int,
                               nbytes: int) -> BlockCopyTask | None:
        """The first dirty area of the range becomes a task: its bits are cleared and
        its ``BlockReq`` inserted now, before anything is copied."""
        area = self._next_dirty_area(offset, nbytes, BLOCK_COPY_MAX_BUFFER)
        if area is None:
            return None
        off, n = area
        # region is dirty, so no existing task is possible in it
        assert self.reqs.reqlist_find_conflict(off, n) is None
        cs = self.cluster_size
        touch(self._bitmap, off, off + n, True)
        self.copy_bitmap[off // cs:(off + n) // cs] = False
        task = current_task()
        req = BlockReq(off, n, cs, task.name if task is not None else "?")
        self.reqs.reqlist_init_req(req)
        emit("cow-begin", self.source.name, off, n, "block-copy task on clusters {}-{}",
             args=(req.start, req.end - 1))
        return BlockCopyTask(call_state, req, COPY_READ_WRITE)

    def block_copy_task_shrink(self, task: BlockCopyTask, new_bytes: int) -> None:
        """Give the tail back: its bits set again, waiters woken."""
        req = task.req
        if new_bytes == req.bytes:
            return
        cs = self.cluster_size
        touch(self._bitmap, req.offset + new_bytes, req.offset + req.bytes, True)
        self.copy_bitmap[(req.offset + new_bytes) // cs:(req.offset + req.bytes) // cs] = True
        self.reqs.reqlist_shrink_req(req, new_bytes)

    def block_copy_task_end(self, task: BlockCopyTask, failed: bool) -> None:
        """Remove the task's ``BlockReq`` (waking its waiters); on failure its bits are
        set again, so that a later call copies the area."""
        req = task.req
        if failed:
            cs = self.cluster_size
            touch(self._bitmap, req.offset, req.offset + req.bytes, True)
            self.copy_bitmap[req.offset // cs:(req.offset + req.bytes) // cs] = True
        self.reqs.reqlist_remove_req(req)
        emit("cow-end", self.source.name, req.offset, req.bytes,
             "block-copy task on clusters {}-{}", args=(req.start, req.end - 1))

    def block_copy_block_status(self, offset: int, nbytes: int) -> tuple[bool, int]:
        """Zero or data, and for how many bytes (whole clusters; less than a cluster
        counts as one cluster of data)."""
        cs = self.cluster_size
        zero, num = self.source.co_block_status(offset, min(nbytes, self.len - offset))
        if num < cs:  # too small a chunk (or an error): copy one cluster as data
            return False, cs
        if offset + num == self.len:
            return zero, -(-num // cs) * cs
        return zero, (num // cs) * cs

    async def block_copy_task_entry(self, task: BlockCopyTask) -> None:
        """``block_copy_task_entry`` → ``block_copy_do_copy``: write zeroes, or read the
        source and write what was read to the target."""
        req = task.req
        offset = req.offset
        nbytes = min(offset + req.bytes, self.len) - offset
        what = "write zeroes" if task.method == COPY_WRITE_ZEROES else "read old data, write it"
        emit("cow-copy", self.source.name, offset, nbytes, "clusters {}-{}: {} to {}",
             args=(req.start, req.end - 1, what, self.target.name))
        failed = False
        try:
            if task.method == COPY_WRITE_ZEROES:
                await self.target.co_pwrite_zeroes(offset, nbytes, self.write_flags)
            else:
                data = await self.source.co_preadv(offset, nbytes)
                await self.target.co_pwritev(offset, data, self.write_flags)
            self.progress += nbytes
        except BlockError as exc:
            failed = True
            if task.call_state.error is None:
                task.call_state.error = exc
        self.block_copy_task_end(task, failed)

    # --- a call -----------------------------------------------------------------
    async def block_copy_dirty_clusters(self, call_state: BlockCopyCallState) -> bool:
        """Copy the dirty clusters of the call's range; True if it found any.

        Tasks are created as QEMU creates them, one right after the other (see the
        module docstring), then copied in order; the first failure stops the copy.
        """
        offset, nbytes = call_state.offset, call_state.bytes
        end = offset + nbytes
        tasks: list[BlockCopyTask] = []
        while nbytes:
            task = self.block_copy_task_create(call_state, offset, nbytes)
            if task is None:
                break  # no more dirty bits in the range
            zero, status_bytes = self.block_copy_block_status(task.req.offset, task.req.bytes)
            if status_bytes < task.req.bytes:
                self.block_copy_task_shrink(task, status_bytes)
            if zero:
                task.method = COPY_WRITE_ZEROES
            offset = task.end
            nbytes = end - offset
            tasks.append(task)
        for i, task in enumerate(tasks):
            if call_state.error is not None:  # aio_task_pool_status < 0: give the rest back
                for rest in tasks[i:]:
                    self.block_copy_task_end(rest, True)
                break
            await self.block_copy_task_entry(task)
        return bool(tasks)

    async def block_copy(self, offset: int, nbytes: int) -> None:
        """``block_copy`` → ``block_copy_common``: copy until nothing in the range is dirty
        and no task of another caller overlaps it; raise the first task error."""
        call_state = BlockCopyCallState(offset, nbytes)
        self.calls += 1
        try:
            while True:
                found = await self.block_copy_dirty_clusters(call_state)
                if call_state.error is not None:
                    raise call_state.error
                if not found:
                    if not await self.reqs.reqlist_wait_one(offset, nbytes):
                        # no task to wait for: look at the bitmap again (a task that
                        # failed meanwhile set its bits again)
                        if self._next_dirty_area(offset, nbytes, nbytes) is None:
                            return
        finally:
            self.calls -= 1
            if not self.calls:
                self._calls_done.restart_all()

    async def wait_for_calls(self) -> None:
        """Until no ``block_copy`` call is in flight (the job's end waits for them)."""
        while self.calls:
            await self._calls_done.wait()


def block_copy_calculate_cluster_size(target: BlockNode) -> int:
    """``MAX(BLOCK_COPY_CLUSTER_SIZE_DEFAULT, target cluster size)``."""
    return max(BLOCK_COPY_CLUSTER_SIZE_DEFAULT, target.cluster_size)


def block_copy_state_new(source: BlockNode, target: BlockNode, cluster_size: int,
                         serialising: bool) -> BlockCopyState:
    """``block_copy_state_new``: every cluster dirty; ``serialising`` is QEMU's
    ``is_fleecing`` (the source is in the target's backing chain)."""
    if source.size != target.size:
        raise BlockError(_errno.EINVAL, f"block-copy: {source.name} and {target.name} differ "
                                        f"in size")
    return BlockCopyState(source, target, cluster_size, REQ_SERIALISING if serialising else 0)
