"""Era 7.2's machinery: the copy-before-write filter, block-copy, qcow2's COW order.

Each test names the QEMU function whose behaviour it pins down.
"""

from __future__ import annotations

import errno

import pytest

import labkit as lk
from labkit.block import BlockGraph, Qcow2Node, RawNode
from labkit.block.copy_before_write import CBW_NODE_NAME, CopyBeforeWriteNode
from labkit.errors import BlockError, GraphError
from labkit.kernel import Kernel, Scripted

K = 1024


def events(lab, task: str, kind: str | None = None) -> list:
    return [e for e in lab.trace if e.task == task and (kind is None or e.kind == kind)]


def req_starts(lab, task: str) -> list[tuple[str, str, int, int]]:
    return [(e.node, e.op, e.offset, e.length) for e in events(lab, task, "req-start")]


def test_the_write_reaches_the_filter_and_the_secondary_disk_only_after_the_copy() -> None:
    """cbw_co_pwritev: block_copy first, then bdrv_co_pwritev(bs->file)."""
    lab = lk.run_scenario("start\npwrite 4K 4K 0xbb\n", size="128K", era="7.2")
    assert req_starts(lab, "nbd-write#1") == [
        (CBW_NODE_NAME, "write", 4 * K, 4 * K),  # the export's node is the filter
        ("secondary-disk", "read", 0, 64 * K),  # block_copy_do_copy: read ...
        ("hidden", "write", 0, 64 * K),  # ... then write the old contents
        ("secondary-disk", "write", 4 * K, 4 * K),  # only now the guest write
    ]
    old = lk.run_scenario("start\npwrite 4K 4K 0xbb\n", size="128K", era="2.8")
    assert req_starts(old, "nbd-write#1")[0] == ("secondary-disk", "write", 4 * K, 4 * K)


def test_a_task_clears_its_bits_when_it_is_created_and_others_wait_only_for_it() -> None:
    """block_copy_task_create clears the copy bitmap at creation; block_copy_common
    waits (reqlist_wait_one) for an overlapping task only once nothing of its own
    is left to copy."""
    second_first = lk.Chooser(lambda rs: next((t for t in rs if t.name == "nbd-write#2"),
                                              rs[0]))
    lab = lk.build_secondary(size="256K", era="7.2", design="4.0", policy=second_first)
    lab.start()
    first = lab.primary_write(0, 8 * K, 0xBB)  # cluster 0
    lab.step()  # runs to its copy's read of the secondary disk
    job = lab.top.backup_job
    assert job is not None and job.done_bitmap.tolist()[:2] == [True, False]
    assert [(r.owner, r.start, r.end) for r in job.inflight_reqs] == [("nbd-write#1", 0, 1)]
    second = lab.primary_write(4 * K, 64 * K, 0xCC)  # clusters 0 and 1
    lab.step()  # second: a task for cluster 1 only (0's bit is clear), its read
    assert [(r.owner, r.start) for r in job.inflight_reqs] == [("nbd-write#2", 1),
                                                              ("nbd-write#1", 0)]
    while second.state != "blocked":
        lab.step()  # second copies cluster 1, then finds nothing dirty and waits
    assert second.why_blocked == "block-copy task of nbd-write#1 on clusters 0-0"
    assert [e.offset for e in lab.trace if e.kind == "cow-copy"] == [0, 64 * K]
    lab.run()
    assert first.exception is None and second.exception is None
    assert [e.offset for e in lab.trace if e.kind == "cow-copy"] == [0, 64 * K]
    assert lab.layers()["hidden"].alloc[:256].all()  # clusters 0 and 1, copied once each


def test_a_hole_is_copied_as_write_zeroes_without_reading_it() -> None:
    """block_copy_block_status: a hole of the source becomes a COPY_WRITE_ZEROES task."""
    lab = lk.run_scenario("start\npwrite 4K 4K 0xbb\n", size="128K", era="7.2", fill="zero")
    starts = req_starts(lab, "nbd-write#1")
    assert ("hidden", "zero", 0, 64 * K) in starts
    assert not any(node == "secondary-disk" and op == "read" for node, op, _, _ in starts)
    assert lab.hidden.cluster_state(0) == "zero"
    # 2.8's backup_do_cow reads it, and writes zeroes because the bytes are zero
    old = lk.run_scenario("start\npwrite 4K 4K 0xbb\n", size="128K", era="2.8", fill="zero")
    assert ("secondary-disk", "read", 0, 64 * K) in req_starts(old, "nbd-write#1")


def test_tasks_are_cut_at_block_status_boundaries() -> None:
    """A range over a hole and data makes two tasks: write-zeroes, then read-write."""
    lab = lk.build_secondary(size="256K", era="7.2", fill="zero")
    lab.play("pwrite 64K 4K 0xaa")  # before start: data in chunk [64K, 68K)
    lab.play("start\npwrite 60K 8K 0xbb")
    copies = [e.detail for e in lab.trace if e.kind == "cow-copy" and e.task == "nbd-write#2"]
    assert copies == ["clusters 0-0: write zeroes to hidden",
                      "clusters 1-1: read old data, write it to hidden"]
    assert lab.layers()["hidden"].data[64 * K:68 * K] == b"\xaa" * 4 * K


def test_a_failed_copy_fails_the_write_and_sets_its_bits_again() -> None:
    """block_copy_task_end(ret < 0) sets the task's bits again; the guest write fails
    (on-cbw-error=break-guest-write) and a retry copies."""
    lab = lk.build_secondary(size="256K", era="7.2")
    lab.start()
    lab.hidden.inject_error("write", errno.EIO, offset=0, length=64 * K)
    w = lab.primary_write(4 * K, 4 * K, 0xBB)
    lab.run()
    assert isinstance(w.exception, BlockError) and w.exception.errno == errno.EIO
    job = lab.top.backup_job
    assert job is not None and not job.done_bitmap[0] and job.inflight_reqs == []
    assert lab.layers()["secondary"].data[4 * K:8 * K] != b"\xbb" * 4 * K
    lab.play("pwrite 4K 4K 0xbb")
    assert job.done_bitmap[0]


def test_checkpoint_sets_the_copy_bitmap_and_stop_drops_the_filter() -> None:
    lab = lk.run_scenario("start\npwrite 0 4K 0xbb\n", size="128K", era="7.2")
    job = lab.top.backup_job
    assert job is not None and job.done_bitmap[0]
    lab.checkpoint()
    assert not job.done_bitmap.any()
    export = lab.export
    assert export.node.name == CBW_NODE_NAME and lab.secondary.backends == []
    with pytest.raises(lk.ReplicationError, match="Backup job was cancelled unexpectedly"):
        lab.stop()  # 2.8 and 7.2 alike: the checkpoint after the cancel fails
    assert CBW_NODE_NAME not in lab.graph.nodes and export.node is lab.secondary
    assert lab.secondary.backends == ["nbd:secondary"]


def test_the_filter_is_inserted_only_into_a_graph() -> None:
    src = RawNode("s", 64 * K)
    with pytest.raises(GraphError, match="in no block graph"):
        from labkit.block.copy_before_write import bdrv_cbw_append
        bdrv_cbw_append(src, Qcow2Node("h", 64 * K), serialising=True)
    graph = BlockGraph("7.2")
    with pytest.raises(GraphError, match="era '9.9' is not one of"):
        BlockGraph("9.9")
    node = graph.add(RawNode("x", 64 * K))
    with pytest.raises(GraphError, match="another block graph"):
        BlockGraph("2.8").add(node)
    assert isinstance(CopyBeforeWriteNode("c", node, graph.add(Qcow2Node("t", 64 * K)),
                                          cluster_size=64 * K, serialising=False).bcs.len,
                      int)


# --- qcow2's partial-cluster COW, per era (block/qcow2-cluster.c perform_cow) ------------


def _vm_write_ops(era: str, text: str) -> list[tuple[str, str, int, int]]:
    lab = lk.run_scenario(text, size="128K", era=era, active_cluster="64K")
    return [(e.node, e.op or e.kind, e.offset, e.length) for e in lab.trace
            if e.task == "vm-write#1" and ((e.kind == "req-start" and e.node != "active")
                                           or (e.kind == "point" and e.node == "active"))]


def test_qcow2_2_8_writes_the_data_first_then_head_and_tail() -> None:
    ops = _vm_write_ops("2.8", "start\nvwrite 8K 4K 0xee\n")
    active = [(op, off, n) for node, op, off, n in ops if node == "active"]
    assert active[:3] == [("io-write", 8 * K, 4 * K),  # the guest data first
                          ("io-write", 0, 8 * K),  # perform_cow: the head ...
                          ("io-write", 12 * K, 52 * K)]  # ... then the tail
    reads = [(off, n) for node, op, off, n in ops if node == "hidden" and op == "read"]
    assert reads == [(0, 8 * K), (12 * K, 52 * K)]


def test_qcow2_7_2_merges_small_reads_and_writes_once() -> None:
    """merge_reads when the data between head and tail is ≤ 16 KiB; one write."""
    ops = _vm_write_ops("7.2", "start\nvwrite 8K 4K 0xee\n")
    reads = [(off, n) for node, op, off, n in ops if node == "hidden" and op == "read"]
    assert reads == [(0, 64 * K)]  # one read of [head, tail), the data's range included
    active = [(op, off, n) for node, op, off, n in ops if node == "active"]
    assert active[0] == ("io-write", 0, 64 * K)  # head, data and tail in one request
    big = _vm_write_ops("7.2", "start\nvwrite 8K 20K 0xee\n")  # 20 KiB > 16 KiB: two reads
    assert [(off, n) for node, op, off, n in big if node == "hidden" and op == "read"] == \
        [(0, 8 * K), (28 * K, 36 * K)]


# --- the CoMutex of a qcow2 node follows its graph's era -----------------------------------


@pytest.mark.parametrize("era, handoff", [("2.8", False), ("7.2", True)])
def test_a_qcow2_lock_hands_over_from_2_9(era: str, handoff: bool) -> None:
    graph = BlockGraph(era)
    node = graph.add(Qcow2Node("q", 64 * K))
    assert node.lock.handoff is handoff


# --- tracked requests: newest first (QLIST_INSERT_HEAD in tracked_request_begin) ---------


def test_a_serialising_request_waits_for_the_newest_overlapping_request_first() -> None:
    from labkit.block import REQ_SERIALISING

    k = Kernel(Scripted(["r1", "r2", "w"]))
    node = RawNode("n", 64 * K)
    order: list[str] = []

    async def reader(name: str) -> None:
        await node.co_preadv(0, 4 * K)
        order.append(name)

    async def writer() -> None:
        await node.co_pwritev(0, bytes(4 * K), REQ_SERIALISING)

    k.spawn("r1", reader("r1"))
    k.spawn("r2", reader("r2"))
    k.spawn("w", writer())
    for _ in range(3):
        k.step()
    w = k.tasks["w"]
    assert w.state == "blocked" and "by r2" in w.why_blocked  # the newest, r2, first
    k.run()
    assert order == ["r1", "r2"]


# --- blkdebug breakpoints (BLKDBG_EVENT on a node's file) ----------------------------------


def test_an_armed_blkdebug_breakpoint_suspends_once_where_qemu_would() -> None:
    """qcow2_co_preadv_task: read_backing_aio before the backing read; unarmed, no point."""
    lab = lk.build_secondary(size="128K", era="7.2")
    lab.start()
    lab.active.blkdebug_breaks.add("read_backing_aio")
    r = lab.vm_read(0, 4 * K)
    lab.step()
    assert r.suspended is not None and r.suspended.op == "blkdebug"
    assert r.suspended.node == "active" and lab.active.blkdebug_breaks == set()
    lab.run()
    r2 = lab.vm_read(0, 4 * K)
    lab.run()
    assert not any(e.op == "blkdebug" for e in lab.trace if e.task == r2.name)
    assert r.result == r2.result
