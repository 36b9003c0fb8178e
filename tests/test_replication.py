"""The COLO secondary: start checks, the backup COW, checkpoint, failover, errors, designs."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import labkit as lk
from labkit.block import BlockGraph, BlockNode, Qcow2Node, RawNode
from labkit.errors import BlockError, JobError, ReplicationError
from labkit.jobs import BackupJob
from labkit.replication import ReplicationNode, ReplicationStage
from labkit.testing import run, snapshot

K = 1024
B = 4 * K


def blocks_of(layer: lk.Layer, block: int = B) -> list[str]:
    """Each block as 'xx' (uniform byte, allocated) or '..' (unallocated)."""
    data = np.frombuffer(layer.data, np.uint8).reshape(-1, block)
    alloc = layer.alloc.reshape(-1, block // 512).all(axis=1)
    return [f"{data[i, 0]:02x}" if alloc[i] else ".." for i in range(data.shape[0])]


def cow_copies(lab: lk.Lab) -> list[int]:
    """Offsets of every backup-cluster copy in the trace."""
    return [e.offset for e in lab.trace if e.kind == "cow-copy"]


# --- start ---------------------------------------------------------------------

def chain(size: int = 64 * K):
    graph = BlockGraph()
    sec = graph.add(RawNode("secondary-disk", size))
    sec.backends.append("nbd:secondary")
    hid = graph.add(Qcow2Node("hidden", size, 4 * K, backing=sec))
    act = graph.add(Qcow2Node("active", size, 4 * K, backing=hid))
    return graph, sec, hid, act


def replication(graph, file, top_id="colo-top") -> ReplicationNode:
    return graph.add(ReplicationNode("colo-top", file, graph, mode="secondary", top_id=top_id))


def start_error(node: ReplicationNode, mode: str = "secondary") -> str:
    nodes = [n for n in node.graph.nodes.values()]
    before = snapshot(*nodes)
    with pytest.raises(ReplicationError) as exc:
        run(node.start(mode))
    assert node.stage is ReplicationStage.NONE
    assert node.backup_job is None and all(not n.before_write_notifiers for n in nodes)
    assert snapshot(*nodes) == before
    return exc.value.message


def test_start_errors_with_qemus_exact_messages():
    graph, _sec, _hid, act = chain()
    top = replication(graph, act)
    assert start_error(top, "primary") == \
        "The parameter mode's value is invalid, needs 1, but got 0"

    graph2, _sec2, _hid2, act2 = chain()
    act2.set_backing(None)
    assert start_error(replication(graph2, act2)) == "Active disk doesn't have backing file"

    graph3, _sec3, hid3, act3 = chain()
    hid3.set_backing(None)
    assert start_error(replication(graph3, act3)) == "Hidden disk doesn't have backing file"

    graph4, sec4, _hid4, act4 = chain()
    sec4.backends.clear()
    assert start_error(replication(graph4, act4)) == \
        "The secondary disk doesn't have block backend"

    graph5, _sec5, hid5, act5 = chain()
    bigger = graph5.add(RawNode("bigger", 128 * K))
    bigger.backends.append("nbd:bigger")
    hid5.children["backing"] = bigger  # labkit's set_backing refuses this; QEMU does not
    assert start_error(replication(graph5, act5)) == \
        "Active disk, hidden disk, secondary disk's length are not the same"

    class NoMakeEmpty(Qcow2Node):
        make_empty = BlockNode.make_empty

    graph6, _sec6, hid6, _ = chain()
    act6 = graph6.add(NoMakeEmpty("active6", 64 * K, 4 * K, backing=hid6))
    assert start_error(replication(graph6, act6)) == \
        "Active disk or hidden disk doesn't support make_empty"

    graph7, _sec7, _hid7, act7 = chain()
    assert start_error(replication(graph7, act7, top_id="nonexistent")) == \
        "No top_bs or it is invalid"
    graph8, _sec8, _hid8, act8 = chain()
    assert start_error(replication(graph8, act8, top_id="active")) == \
        "No top_bs or it is invalid"  # a node, but not a root


def test_start_twice_and_open_errors():
    lab = lk.build_secondary(size="128K")
    lab.start()
    with pytest.raises(ReplicationError, match="^Block replication is running or done$"):
        lab.start()
    graph, _sec, _hid, act = chain()
    for kwargs, message in [
        (dict(mode=None), "Missing the option mode"),
        (dict(mode="tertiary"), "The option mode's value should be primary or secondary"),
        (dict(mode="secondary"), "Missing the option top-id"),
        (dict(mode="primary", top_id="x"), "The primary side does not support option top-id"),
    ]:
        with pytest.raises(ReplicationError, match=f"^{message}$"):
            ReplicationNode("r", act, graph, **kwargs)


def test_start_empties_active_and_hidden():
    lab = lk.build_secondary(size="128K")
    run(lab.hidden.co_pwritev(0, b"\x99" * B))
    run(lab.active.co_pwritev(B, b"\x98" * B))
    lab.start()
    assert not lab.hidden.layer().alloc.any() and not lab.active.layer().alloc.any()
    assert lab.state == "running" and lab.top.error == 0


# --- the backup COW ----------------------------------------------------------------

def test_cow_copies_whole_backup_clusters_once_per_epoch():
    lab = lk.run_scenario("start\npwrite 5b 4K 0xbb\npwrite 6b 512 0xbc", size="256K")
    assert lab.backup_cluster == 64 * K
    layers = lab.layers()
    assert blocks_of(layers["hidden"]) == [f"{0x10 + k:02x}" for k in range(16)] + [".."] * 48
    assert blocks_of(layers["secondary"])[5] == "bb"
    assert blocks_of(layers["vm-view"])[:8] == ["10", "11", "12", "13", "14", "15", "16", "17"]
    assert cow_copies(lab) == [0]  # the second write in cluster 0 copies nothing


def test_straddling_write_copies_both_clusters_in_ascending_order():
    lab = lk.run_scenario("start\npwrite 63K 2K 0xbb", size="256K")
    assert cow_copies(lab) == [0, 64 * K]
    hidden = lab.layers()["hidden"]
    assert hidden.alloc[:256].all() and not hidden.alloc[256:].any()


def test_short_last_cluster_is_copied_up_to_the_end():
    lab = lk.run_scenario("start\npwrite 99K 1K 0xbb", size="100K", block="1K")
    hidden = lab.layers()["hidden"]
    assert not hidden.alloc[:128].any() and hidden.alloc[128:].all()  # [64K, 100K)
    assert [e.length for e in lab.trace if e.kind == "cow-copy"] == [36 * K]


@pytest.mark.parametrize("hidden_cluster, expect", [
    ("4K", 64 * K), ("64K", 64 * K), ("128K", 128 * K), ("256K", 256 * K)])
def test_backup_cluster_is_max_of_64k_and_the_hidden_cluster(hidden_cluster, expect):
    lab = lk.build_secondary(size="1M", hidden_cluster=hidden_cluster)
    lab.start()
    assert lab.backup_cluster == expect
    lab.play("pwrite 70K 512 0x80\npwrite 190K 4K 0x81\npwrite 1023K 512 0x82")
    alloc = lab.layers()["hidden"].alloc
    covered = set(np.flatnonzero(alloc) * 512 // expect)
    last = (1 << 20) // expect - 1
    assert covered == {70 * K // expect, 190 * K // expect, 193 * K // expect, last}


def test_zero_cluster_is_copied_as_write_zeroes():
    lab = lk.run_scenario("start\npwrite 0 4K 0xbb", size="128K", fill="zero")
    hidden = lab.layers()["hidden"]
    assert hidden.alloc[:128].all() and hidden.zero[:128].all()
    assert any(e.kind == "req-start" and e.node == "hidden" and e.op == "zero"
               for e in lab.trace)


def test_checkpoint_clears_the_done_bitmap_and_copies_again():
    lab = lk.run_scenario("start\npwrite 5b 4K 0xbb\ncheckpoint\npwrite 6b 4K 0xbc",
                          size="128K")
    assert cow_copies(lab) == [0, 0]
    hidden = blocks_of(lab.layers()["hidden"])
    assert hidden[5] == "bb" and hidden[6] == "16"  # epoch 2 copied epoch 1's primary write
    assert blocks_of(lab.layers()["vm-view"])[5:7] == ["bb", "16"]


def test_vm_writes_go_to_active_and_never_trigger_cow():
    lab = lk.run_scenario("start\nvwrite 5b 4K 0xcc\nvwrite 20b 512 0xcd", size="128K")
    assert cow_copies(lab) == []
    assert blocks_of(lab.layers()["active"])[5] == "cc"
    assert lab.layers()["active"].alloc.sum() == 16  # two 4 KiB clusters
    assert not lab.layers()["hidden"].alloc.any()


def test_failover_leaves_the_secondary_disk_equal_to_the_vm_view():
    lab = lk.run_scenario("""
        start
        pwrite 5b 4K 0xbb
        vwrite 20b 4K 0xcc
        checkpoint
        pwrite 6b 4K 0xbc
        pwrite 24b 4K 0xbd
        vwrite 4b 4K 0xcf
        vwrite 26b 4K 0xce
        dump before failover
        failover
        dump after failover
    """, size="128K")
    before, after = lab.dumps[0][1], lab.dumps[1][1]
    assert after["secondary"] == before["vm-view"] == after["vm-view"]
    sec = blocks_of(after["secondary"])
    assert sec[5] == "bb" and sec[6] == "16" and sec[24] == "28"  # primary writes reverted
    assert sec[4] == "cf" and sec[26] == "ce" and sec[20] == "24"  # VM writes kept
    assert lab.state == "done" and lab.violations() == [] and lab.top.error == 0
    assert lab.top.file is lab.secondary
    # active and hidden are detached, their contents untouched
    assert after["hidden"] == before["hidden"] and after["active"] == before["active"]


def test_io_after_failover_goes_straight_to_the_secondary_disk():
    lab = lk.run_scenario("start\nfailover\nvwrite 3b 4K 0xc3\npwrite 4b 4K 0xb4\n"
                          "vread 4b 4K 0xb4\nvread 3b 4K 0xc3", size="128K")
    assert lab.expectation_failures == [] and lab.violations() == []
    assert blocks_of(lab.layers()["secondary"])[3:5] == ["c3", "b4"]
    assert cow_copies(lab) == []


def test_injected_eio_on_hidden_fails_the_nbd_write_and_leaves_secondary_unchanged():
    lab = lk.build_secondary(size="256K")
    lab.start()
    lab.hidden.inject_error("write", errno.EIO, offset=64 * K, length=64 * K)
    before = lab.layers()["secondary"]
    w = lab.primary_write(63 * K, 2 * K, 0xBB)  # straddles clusters 0 and 1
    lab.run()
    assert isinstance(w.exception, BlockError) and w.exception.errno == errno.EIO
    assert lab.layers()["secondary"] == before  # none of the guest write happened
    job = lab.top.backup_job
    assert job is not None and job.done_bitmap.tolist()[:2] == [True, False]
    hidden = lab.layers()["hidden"]
    assert hidden.alloc[:128].all() and not hidden.alloc[128:].any()
    assert job.running and lab.state == "running"  # the job keeps running
    lab.play("pwrite 63K 2K 0xbb")  # a retry copies cluster 1 and lands
    assert job.done_bitmap.tolist()[:2] == [True, True]
    assert lab.layers()["secondary"].data[63 * K:65 * K] == b"\xbb" * 2 * K


def test_stop_without_failover_quirk():
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.play("pwrite 0 4K 0xbb\nvwrite 8b 4K 0xcc")
    with pytest.raises(ReplicationError, match="^Backup job was cancelled unexpectedly$"):
        lab.stop()
    assert lab.state == "done" and lab.top.error == -errno.EIO
    assert lab.layers()["hidden"].alloc.any() and lab.layers()["active"].alloc.any()
    with pytest.raises(ReplicationError, match="^Block replication is not running$"):
        lab.top.get_error()  # 2.8: any state but RUNNING


def test_control_commands_before_start():
    lab = lk.build_secondary(size="128K")
    with pytest.raises(ReplicationError, match="^Block replication is not running$"):
        lab.stop()
    with pytest.raises(ReplicationError, match="^Backup job was cancelled unexpectedly$"):
        lab.checkpoint()
    with pytest.raises(ReplicationError, match="^Block replication is not running$"):
        lab.top.get_error()
    r = lab.vm_read(0, 4096)
    lab.run()
    assert isinstance(r.exception, BlockError) and r.exception.errno == errno.EIO
    assert lab.layers()["vm-view"] is None


def test_era_7_2_ignores_commands_after_failover_and_2_8_does_not():
    for era, expect in (("7.2", None), ("2.8", "Backup job was cancelled unexpectedly")):
        lab = lk.build_secondary(size="128K", era=era)
        lab.start()
        lab.failover()
        lab.run()
        if expect is None:
            lab.checkpoint()
            lab.stop()
            lab.top.get_error()
        else:
            with pytest.raises(ReplicationError, match=expect):
                lab.checkpoint()


def test_failover_failed_routes_writes():
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.play("pwrite 0 4K 0xbb\nvwrite 20b 4K 0xcc")
    lab.secondary.inject_error("write", errno.EIO)
    lab.failover()
    lab.run()
    assert lab.state == "failover-failed" and lab.top.error == -errno.EIO
    with pytest.raises(ReplicationError, match="^Block replication is not running$"):
        lab.top.get_error()
    lab.play("vwrite 2b 4K 0xc2\nvwrite 30b 4K 0xde")  # block 2 is in hidden, 30 nowhere
    assert blocks_of(lab.layers()["active"])[2] == "c2"
    assert blocks_of(lab.layers()["secondary"])[30] == "de"
    assert any("failover failed" in line for line in lab.log)


def test_primary_mode_forwarding_errors_are_sticky():
    graph, sec, _hid, _act = chain()
    server = lk.block.NBDServer() if hasattr(lk, "block") else None
    from labkit.block import NBDServer

    server = NBDServer()
    export = server.add(sec, "secondary", writable=False)  # the write will fail

    class NBDClient(BlockNode):
        driver = "nbd"

        async def _co_pwritev(self, offset, data, flags):
            await export.co_write(offset, data)

    client = graph.add(NBDClient("nbd-client", 64 * K))
    primary = graph.add(ReplicationNode("primary", client, graph, mode="primary"))
    run(primary.start("primary"))
    run(primary.co_pwritev(0, b"\x01" * 512))  # succeeds for the caller
    assert primary.error == -1  # EPERM recorded
    with pytest.raises(ReplicationError, match="^I/O error occurred$"):
        primary.get_error()
    with pytest.raises(BlockError):
        run(primary.co_preadv(0, 512))


def test_backup_job_refuses_other_sync_modes_and_same_nodes():
    sec = RawNode("s", 64 * K)
    hid = Qcow2Node("h", 64 * K, backing=sec)
    with pytest.raises(JobError, match="only sync=none"):
        BackupJob(sec, hid, "full")
    with pytest.raises(JobError, match="^Source and target cannot be the same$"):
        BackupJob(sec, sec)
    with pytest.raises(JobError, match="power of two"):
        BackupJob(sec, hid, cluster_size_override=3000)
    job = BackupJob(sec, hid, cluster_size_override=4 * K)
    assert job.cluster_size == 4 * K and not sec.before_write_notifiers


# --- the read designs -------------------------------------------------------------------

RACE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }"


@pytest.mark.parametrize("design", ["2.8", "4.0"])
def test_protected_designs_never_violate_under_200_random_seeds(design):
    for seed in range(200):
        lab = lk.run_scenario(RACE, size="128K", design=design, policy=lk.Random(seed))
        assert lab.violations() == [], f"seed {seed}: {lab.violations()}"


def test_design_none_has_a_seed_with_a_conflicting_read():
    bad = [seed for seed in range(200)
           if lk.run_scenario(RACE, size="128K", design="none",
                              policy=lk.Random(seed)).violations()]
    assert bad
    lab = lk.run_scenario(RACE, size="128K", design="none", policy=lk.Random(bad[0]))
    v = lab.violations()[0]
    assert v.kind == "conflicting-read" and v.task == "vm-read#1" and v.got == 0xBB
    assert v.expected == 0x15 and "nbd-write#1" in v.message


def test_design_2_8_read_holds_a_cowrequest_and_the_write_waits():
    lab = lk.run_scenario(RACE, size="128K", design="2.8")
    waits = [e for e in lab.trace if e.kind == "wait"]
    assert waits and waits[0].task == "nbd-write#1"
    assert waits[0].detail == "CowRequest of vm-read#1 on clusters 0-0"


def read_first_then_write(runnable):
    """The read reaches the secondary disk first, then the write runs whenever it can."""
    names = [t.name for t in runnable]
    if "vm-read#1" in names and not read_first_then_write.read_started:
        read_first_then_write.read_started = True
        return "vm-read#1"
    return "nbd-write#1" if "nbd-write#1" in names else names[0]


def test_design_4_0_cow_write_to_hidden_is_serialising():
    read_first_then_write.read_started = False
    lab = lk.run_scenario(RACE, size="128K", design="4.0",
                          policy=lk.Chooser(read_first_then_write))
    assert lab.violations() == []
    waits = [e for e in lab.trace if e.kind == "wait"]
    assert waits and waits[0].task == "nbd-write#1"
    assert "read by vm-read#1 on hidden" in waits[0].detail
    assert not any(e.kind == "cow-begin" and e.task.startswith("vm-read") for e in lab.trace)


def test_failover_errors_are_dropped_like_xen_set_replication():
    lab = lk.build_secondary(size="128K")
    task = lab.failover()  # before start: replication_stop fails, QMP says {}
    assert task.exception is None and lab.state == "none"
    assert lab.log == ["failover: error dropped by xen-set-replication: Block replication is "
                       "not running"]


# --- drained control: checkpoint, failover, stop (facts §2.7, §2.9) -------------------------

CRASHES = [  # control commands inside par that used to crash the engine (issue 11)
    "par { start; failover }",
    "start\npar { failover; pwrite 80K 512 0xac; failover }",
    "start\npar { checkpoint; failover; checkpoint }",
]


@pytest.mark.parametrize("era", ["2.8", "7.2"])
@pytest.mark.parametrize("design", ["none", "2.8", "4.0"])
@pytest.mark.parametrize("text", CRASHES)
def test_control_commands_inside_par_end_as_qemu_would(text, design, era):
    result = lk.explore(text, design=design, era=era, reduction="none")
    assert result.complete and result.verdict == "safe", result.summary()
    assert not result.expectation_failures


def test_par_start_and_failover_in_either_order():
    first = lk.run_scenario("par { start; failover }")  # FIFO: start, then failover
    assert first.state == "done" and first.kernel.tasks["commit#1"].result == 0
    assert not any("error dropped" in line for line in first.log)
    other = lk.run_scenario("par { start; failover }", policy=lk.Scripted(["failover#1"]))
    assert other.state == "running"
    assert ("failover: error dropped by xen-set-replication: Block replication is not running"
            in other.log)
    assert "commit#1" not in other.kernel.tasks


@pytest.mark.parametrize("era, logged", [("2.8", True), ("7.2", False)])
def test_two_failovers_in_par(era, logged):
    lab = lk.run_scenario("start\npar { failover; failover }", era=era)
    assert lab.state == "done" and not lab.violations()
    assert [t for t in lab.kernel.tasks if t.startswith("commit#")] == ["commit#1"]
    dropped = "failover: error dropped by xen-set-replication: Block replication is not running"
    assert (dropped in lab.log) is logged


@pytest.mark.parametrize("era, failed", [("2.8", True), ("7.2", False)])
def test_checkpoint_while_the_commit_runs(era, failed):
    lab = lk.run_scenario("start\npar { failover; checkpoint }", era=era)
    lines = [line for line in lab.log if "checkpoint#1 failed" in line]
    if failed:
        assert lines and lines[0].endswith("Backup job was cancelled unexpectedly")
    else:
        assert not lines
    assert lab.state == "done" and not lab.violations()


def test_a_new_request_waits_for_the_checkpoint_and_says_why():
    lab = lk.build_secondary(size="128K")
    lab.start()
    cp = lab.checkpoint(wait=False)
    read = lab.vm_read(0, 4096)
    write = lab.primary_write(0, 4096, 0xbb)
    lab.step()  # checkpoint#1: drained, done bitmap cleared, make_empty(active) in flight
    lab.step()  # vm-read#1 arrives: the guest device is quiesced
    lab.step()  # nbd-write#1 arrives: the NBD server does not read it
    assert read.why_blocked == "drained section of checkpoint#1"
    assert write.why_blocked == "drained section of checkpoint#1"
    lab.run()
    assert cp.done and read.result == lab.original[:4096]
    kinds = [(e.task, e.kind) for e in lab.trace if e.kind.startswith("drained")
             or (e.kind == "run" and e.task != "checkpoint#1")]
    end = kinds.index(("checkpoint#1", "drained-end"))
    assert ("vm-read#1", "run") in kinds[end:]
    assert not lab.violations()


def test_the_checkpoint_waits_for_requests_in_flight():
    lab = lk.build_secondary(size="128K")
    lab.start()
    read = lab.vm_read(0, 4096)
    lab.step()  # vm-read#1 in flight (its CowRequest held, at the secondary disk)
    cp = lab.checkpoint(wait=False)
    other = lab.checkpoint(wait=False)
    lab.kernel.policy = lk.Scripted([*lab.schedule, "checkpoint#1", "checkpoint#2"])
    lab.step()
    lab.step()
    assert cp.why_blocked == ("in-flight read of vm-read#1 on secondary-disk to end "
                              "(bdrv_drain for checkpoint#1)")
    assert other.why_blocked == "QMP monitor held by checkpoint#1"
    lab.kernel.policy = lk.FIFO()
    lab.run()
    assert read.done and cp.done and other.done
    runs = [e.task for e in lab.trace if e.kind == "done"]
    assert runs.index("vm-read#1") < runs.index("checkpoint#1") < runs.index("checkpoint#2")


def test_the_commit_drains_a_vm_write_in_flight_before_the_switch():
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.failover()  # failover#1 done; commit#1 spawned, not yet run
    write = lab.vm_write(64 * K, 4096, 0xcc)
    lab.kernel.policy = lk.Scripted([*lab.schedule, "vm-write#1", "commit#1"])
    lab.step()  # vm-write#1 in flight on the active disk
    lab.step()  # commit#1: nothing dirty yet -> drains, and waits for vm-write#1
    commit = lab.kernel.tasks["commit#1"]
    assert "vm-write#1" in commit.why_blocked and "commit#1" in commit.why_blocked
    lab.kernel.policy = lk.FIFO()
    lab.run()
    assert write.done and commit.result == 0 and lab.state == "done"
    assert lab.secondary.peek(64 * K, 4096) == b"\xcc" * 4096  # copied before the switch
    assert not lab.violations()


@pytest.mark.parametrize("design", ["none", "2.8", "4.0"])
@pytest.mark.parametrize("reduction", ["none", "dpor"])
def test_a_checkpoint_never_overlaps_io(design, reduction):
    text = "start\npar { pwrite 0 4K 0xbb; checkpoint }\nvread 0 4K"
    result = lk.explore(text, design=design, reduction=reduction)
    assert result.complete and result.verdict == "safe", result.summary()


def test_failover_racing_vm_io_and_primary_writes_is_never_blamed():
    text = ("start\npwrite 0 4K 0xbb\nvwrite 8K 4K 0xcc\n"
            "par { failover; vwrite 64K 4K 0xdd; pwrite 4K 4K 0xee }\n"
            "vread 64K 4K 0xdd\nvread 8K 4K 0xcc\nvread 0 4K orig")
    # One design: once the backup job is cancelled the three read designs are the same.
    result = lk.explore(text, design="2.8", reduction="dpor")
    assert result.complete and result.verdict == "safe", result.summary()
    assert not result.expectation_failures
    shared = lk.explore("start\nfailover\npar { pwrite 0 4K 0xee; vread 0 4K }", design="2.8")
    assert shared.complete and shared.verdict == "safe", shared.summary()


@pytest.mark.parametrize("design, verdict", [("none", "violation"), ("2.8", "safe"),
                                             ("4.0", "safe")])
def test_the_canonical_race_keeps_its_verdicts(design, verdict):
    from labkit import scenarios

    assert lk.explore(scenarios.load("canonical"), design=design).verdict == verdict
    partial = lk.explore(scenarios.load("partial-cluster-vm-write"), design=design).verdict
    assert partial == ("violation" if design in ("none", "2.8") else "safe")
