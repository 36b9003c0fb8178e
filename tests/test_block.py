"""The block graph: raw and qcow2 semantics, tracked requests, notifiers, bad input."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from labkit.block import REQ_SERIALISING, NBDServer, Qcow2Node, RawNode
from labkit.errors import AlignmentError, BlockError, GraphError, NotSupported, RangeError
from labkit.kernel import Kernel, Scripted
from labkit.testing import index_pattern, run, snapshot

K4 = 4096
SIZE = 64 * K4


@pytest.fixture
def chain():
    sec = RawNode("secondary-disk", SIZE, index_pattern(SIZE))
    hid = Qcow2Node("hidden", SIZE, K4, backing=sec)
    act = Qcow2Node("active", SIZE, K4, backing=hid)
    return sec, hid, act


def blocks(data: bytes, size: int = K4) -> list[int]:
    """The byte of each block, asserting blocks are uniform."""
    arr = np.frombuffer(data, np.uint8).reshape(-1, size)
    assert (arr == arr[:, :1]).all(), "a block holds mixed bytes"
    return arr[:, 0].tolist()


def test_read_takes_each_byte_from_the_topmost_layer_that_has_it(chain):
    _sec, hid, act = chain
    run(hid.co_pwritev(1 * K4, b"\x81" * K4))
    run(hid.co_pwritev(2 * K4, b"\x82" * K4))
    run(act.co_pwritev(2 * K4, b"\x91" * K4))
    run(act.co_pwritev(3 * K4, b"\x92" * K4))
    data = run(act.co_preadv(0, 5 * K4))
    assert blocks(data) == [0x10, 0x81, 0x91, 0x92, 0x14]
    # Each layer holds only its own clusters.
    assert hid.layer().alloc.reshape(-1, 8)[:5, 0].tolist() == [False, True, True, False, False]
    assert act.layer().alloc.reshape(-1, 8)[:5, 0].tolist() == [False, False, True, True, False]


def test_raw_without_backing_and_qcow2_without_backing_read_zeros():
    q = Qcow2Node("q", SIZE, K4)
    assert run(q.co_preadv(0, K4)) == bytes(K4)
    assert not q.layer().alloc.any()


def test_partial_allocating_write_fills_the_rest_of_its_cluster_from_the_backing_chain():
    sec = RawNode("secondary-disk", SIZE, index_pattern(SIZE))
    hid = Qcow2Node("hidden", SIZE, 65536, backing=sec)
    act = Qcow2Node("active", SIZE, 65536, backing=hid)
    run(hid.co_pwritev(K4, b"\xaa" * K4))  # hidden: cluster 0 = 10 aa 12 13 ... 1f
    run(act.co_pwritev(5 * K4 + 512, b"\xcc" * 512))
    layer = act.layer()
    assert layer.alloc[:128].all() and not layer.alloc[128:].any()  # whole 64 KiB cluster
    own = np.frombuffer(layer.data, np.uint8)
    expect = np.frombuffer(index_pattern(SIZE), np.uint8)[:65536].copy()
    expect[K4:2 * K4] = 0xAA
    expect[5 * K4 + 512:5 * K4 + 1024] = 0xCC
    assert (own[:65536] == expect).all()


def test_write_zeroes_makes_a_zero_cluster_that_hides_the_backing(chain):
    _sec, hid, act = chain
    run(hid.co_pwrite_zeroes(2 * K4, 2 * K4))
    assert blocks(run(act.co_preadv(K4, 4 * K4))) == [0x11, 0, 0, 0x14]
    layer = hid.layer()
    assert layer.zero[16:32].all() and layer.alloc[16:32].all() and not layer.zero[:16].any()
    # A partial write-zeroes writes zero bytes into an allocated cluster.
    run(hid.co_pwrite_zeroes(5 * K4 + 512, 512))
    assert hid.cluster_state(5) == "data"
    assert run(act.co_preadv(5 * K4, 1024)) == b"\x15" * 512 + bytes(512)


def test_make_empty_lets_every_read_fall_through_again(chain):
    _sec, hid, act = chain
    run(hid.co_pwritev(0, b"\x81" * SIZE))
    run(act.co_pwrite_zeroes(0, SIZE))
    assert run(act.co_preadv(0, K4)) == bytes(K4)
    run(act.make_empty())
    assert run(act.co_preadv(0, K4)) == b"\x81" * K4
    run(hid.make_empty())
    assert run(act.co_preadv(0, SIZE)) == index_pattern(SIZE)
    assert not act.layer().alloc.any() and not hid.layer().alloc.any()


def test_short_last_cluster():
    size = 100 * 1024
    sec = RawNode("s", size, index_pattern(size))
    q = Qcow2Node("q", size, 65536, backing=sec)
    run(q.co_pwritev(99 * 1024, b"\xee" * 1024))
    assert q.layer().alloc.sum() == (size - 65536) // 512
    assert run(q.co_preadv(64 * 1024, 36 * 1024))[:1024] == index_pattern(size)[65536:65536 + 1024]
    run(q.co_pwrite_zeroes(65536, size - 65536))
    assert q.cluster_state(1) == "zero"


def test_concurrent_allocations_of_one_cluster_wait_for_each_other(chain):
    _sec, _hid, act = chain
    k = Kernel()
    k.spawn("w#1", act.co_pwritev(0, b"\xa1" * 512))
    k.spawn("w#2", act.co_pwritev(1024, b"\xa2" * 512))
    k.run()
    data = run(act.co_preadv(0, K4))
    assert data[:512] == b"\xa1" * 512 and data[1024:1536] == b"\xa2" * 512
    assert data[512:1024] == b"\x10" * 512 and data[2048:] == b"\x10" * 2048
    assert any(e.kind == "wait" and "qcow2 allocation by w#1" in e.detail for e in k.trace)


def test_serialising_write_waits_for_an_overlapping_read(chain):
    _sec, hid, _act = chain
    k = Kernel(Scripted(["r#1", "w#1"]))
    r = k.spawn("r#1", hid.co_preadv(0, K4))  # reaches the secondary disk and yields
    k.spawn("w#1", hid.co_pwritev(0, b"\xee" * K4, REQ_SERIALISING))
    k.run()
    assert r.result == b"\x10" * K4
    waits = [e for e in k.trace if e.kind == "wait"]
    assert waits and waits[0].task == "w#1" and "read by r#1 on hidden" in waits[0].detail


def test_before_write_notifier_runs_first_and_can_veto(chain):
    sec, _hid, _act = chain
    seen = []

    async def notifier(req):
        seen.append((req.offset, req.bytes, run_data()))
        if req.offset == 0:
            raise BlockError(errno.EIO, "vetoed")

    def run_data():
        return bytes(sec.layer().data[8 * K4:8 * K4 + 1])

    sec.before_write_notifiers.append(notifier)
    run(sec.co_pwritev(8 * K4, b"\x99" * K4))
    assert seen == [(8 * K4, K4, b"\x18")]  # the notifier saw the old data
    before = snapshot(sec)
    with pytest.raises(BlockError) as exc:
        run(sec.co_pwritev(0, b"\x99" * K4))
    assert exc.value.errno == errno.EIO
    assert snapshot(sec) == before


def test_injected_error_fails_the_request(chain):
    _sec, hid, _act = chain
    hid.inject_error("write", errno.ENOSPC)
    with pytest.raises(BlockError) as exc:
        run(hid.co_pwritev(0, b"\x01" * K4))
    assert exc.value.errno == errno.ENOSPC and "injected" in str(exc.value)
    assert not hid.layer().alloc.any()
    run(hid.co_pwritev(0, b"\x01" * K4))  # once only
    assert hid.layer().alloc[:8].all()
    with pytest.raises(ValueError, match="'read', 'write' or 'any'"):
        hid.inject_error("flush")


def test_nbd_export_is_a_block_backend(chain):
    sec, hid, _act = chain
    server = NBDServer()
    exp = server.add(sec, "secondary", writable=True)
    assert sec.backends == ["nbd:secondary"]
    run(exp.co_write(0, b"\xbb" * K4))
    assert run(exp.co_read(0, 512)) == b"\xbb" * 512
    ro = server.add(hid, "dump", writable=False)
    with pytest.raises(BlockError, match="read-only"):
        run(ro.co_write(0, b"\x00" * 512))
    with pytest.raises(GraphError, match="already exists"):
        server.add(hid, "dump")
    server.remove("dump")
    assert hid.backends == []
    with pytest.raises(GraphError, match="no NBD export named 'dump'"):
        server.remove("dump")


# --- bad input: the error type, the message, and nothing changed ------------------

@pytest.mark.parametrize("op, args, error, message", [
    ("co_preadv", (100, 512), AlignmentError, "request_alignment \\(512 bytes\\)"),
    ("co_preadv", (0, 100), AlignmentError, "multiples of"),
    ("co_pwritev", (512, b"x" * 100), AlignmentError, "multiples of"),
    ("co_preadv", (SIZE - 512, 1024), RangeError, "past the end"),
    ("co_pwritev", (SIZE, b"x" * 512), RangeError, "past the end"),
    ("co_pwrite_zeroes", (-512, 512), RangeError, "must not be negative"),
    ("co_preadv", (0, -512), RangeError, "must not be negative"),
    ("co_preadv", (0.5, 512), RangeError, "must be an integer"),
])
def test_bad_requests_are_refused_and_change_nothing(chain, op, args, error, message):
    sec, hid, act = chain
    before = snapshot(sec, hid, act)
    with pytest.raises(error, match=message):
        run(getattr(act, op)(*args))
    assert snapshot(sec, hid, act) == before


def test_bad_sizes():
    with pytest.raises(GraphError, match="non-negative"):
        RawNode("r", -512)
    with pytest.raises(GraphError, match="multiple of 512"):
        RawNode("r", 1000)
    with pytest.raises(GraphError, match="power of two from 512 bytes to 2 MiB"):
        Qcow2Node("q", SIZE, 3000)
    with pytest.raises(GraphError, match="power of two"):
        Qcow2Node("q", SIZE, 4 << 20)


def test_backing_of_another_size_is_refused(chain):
    sec, hid, act = chain
    other = RawNode("other", SIZE * 2)
    before = snapshot(sec, hid, act)
    with pytest.raises(GraphError, match="other is 524288 bytes but hidden is 262144"):
        hid.set_backing(other)
    assert hid.backing is sec and snapshot(sec, hid, act) == before


def test_backing_loop_is_refused(chain):
    sec, hid, act = chain
    with pytest.raises(GraphError, match="loop"):
        hid.set_backing(act)
    with pytest.raises(GraphError, match="loop"):
        act.set_backing(act)
    assert hid.backing is sec and act.backing is hid


def test_raw_nodes_have_no_backing_and_cannot_be_emptied(chain):
    sec, hid, _act = chain
    with pytest.raises(GraphError, match="does not support backing"):
        sec.set_backing(RawNode("x", SIZE))
    before = snapshot(sec)
    with pytest.raises(NotSupported, match="does not support make_empty") as exc:
        run(sec.make_empty())
    assert exc.value.errno == errno.ENOTSUP
    assert snapshot(sec) == before
    assert not sec.supports_make_empty and hid.supports_make_empty
