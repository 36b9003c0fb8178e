"""Image fleecing (labkit.fleecing): the three schemes, the oracle, the scenario commands."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import labkit as lk
from labkit import scenarios
from labkit.errors import ConfigError, ScenarioError
from labkit.explore import check_determinism, explore, replay
from labkit.fleecing import FleecingLab, hbitmap_status
from labkit.scenario import parse

SCHEMES = ("2.12", "3.0", "7.2")
RACE = scenarios.load("fleecing-race")


def fleecing(design: str = "7.2", **kw) -> FleecingLab:
    kw.setdefault("size", "128K")
    kw.setdefault("backup_cluster", "4K")
    lab = lk.build_secondary(graph="fleecing", design=design, **kw)
    assert isinstance(lab, FleecingLab)
    return lab


# --- the acceptance: verdicts per scheme ---------------------------------------------


def test_race_is_a_violation_under_2_12_shrunk_to_one_preemption() -> None:
    ex = explore(RACE, design="2.12")
    assert ex.complete and ex.verdict == "violation"
    [cx] = ex.violations
    assert cx.kind == "fleecing-read" and cx.task == "client-read#1"
    assert cx.preemptions == 1
    assert "read 0xbb at offset 0x5000" in cx.message and "vm-write#1" in cx.message
    lab = cx.replay()  # the shrunk schedule replays the same violation
    assert [v.kind for v in lab.violations()] == ["fleecing-read"]


@pytest.mark.parametrize("design", ["3.0", "7.2"])
def test_race_is_safe_under_3_0_and_7_2(design: str) -> None:
    ex = explore(RACE, design=design)
    assert ex.complete and ex.verdict == "safe", ex.summary()


@pytest.mark.parametrize("design", SCHEMES)
@pytest.mark.parametrize("name", ["fleecing-race", "fleecing-two-clusters",
                                  "fleecing-break-snapshot"])
def test_reduction_reaches_every_outcome(name: str, design: str) -> None:
    text = scenarios.load(name)
    reduced = explore(text, design=design, outcomes=True, shrink=False)
    naive = explore(text, design=design, reduction="none", outcomes=True, shrink=False)
    assert naive.complete and reduced.outcomes == naive.outcomes


@pytest.mark.parametrize("design", SCHEMES)
def test_deterministic(design: str) -> None:
    check_determinism(RACE, design=design)


@pytest.mark.parametrize("name", [n for n in scenarios.names() if n.startswith("fleecing")])
def test_shipped_fleecing_scenarios_keep_their_verdicts(name: str) -> None:
    text = scenarios.load(name)
    want = scenarios.verdicts(text)
    assert set(want) == set(SCHEMES), name
    for design, verdict in want.items():
        ex = explore(text, design=design)
        assert ex.complete and ex.verdict == verdict, (name, design, ex.summary())


# --- 7.2: a guest write waits for the client's in-flight snapshot read ----------------


def test_7_2_guest_write_waits_for_snapshot_read_of_the_same_area() -> None:
    prefer = ["client-read#1"]  # who runs while runnable; the rest FIFO

    def choose(runnable):
        names = [t.name for t in runnable]
        return next((n for n in prefer if n in names), names[0])

    lab = fleecing("7.2", policy=lk.Chooser(choose))
    lab.fleece()
    read = lab.client_read(5 * 4096, 4096)
    # the client read runs until it is reading the live disk: cbw_snapshot_read_lock
    # found nothing copied yet and took a frozen request over the area
    while not any(e.task == read.name and e.kind == "point" and e.node == "live-disk"
                  for e in lab.trace):
        lab.step()
    assert len(lab.cbw.frozen_read_reqs) == 1
    write = lab.vm_write(5 * 4096, 4096, 0xbb)
    prefer[:] = [write.name]
    while write.name in [t.name for t in lab.runnable()]:
        lab.step()
    # the write copied the old cluster, then waits for the frozen read (reqlist_wait_all)
    assert write.state == "blocked", write
    assert lab.cbw.done_bitmap[5] and lab.overlay.layer().alloc[5 * 8]
    assert lab.live.peek(5 * 4096, 4096) == bytes([0x15]) * 4096  # not written yet
    assert lab.kernel.why_not_runnable(write.name)
    prefer[:] = []
    lab.run()
    assert read.result == bytes([0x15]) * 4096
    assert lab.live.peek(5 * 4096, 4096) == bytes([0xbb]) * 4096
    assert not lab.violations()


def test_7_2_later_read_comes_from_the_overlay() -> None:
    lab = fleecing("7.2").play("fleece\nvwrite 0 4K 0xcc\ncread 0 4K\n")
    assert lab.outcomes[-1].data == bytes([0x10]) * 4096
    assert lab.layers()["snapshot"].data[:4096] == bytes([0x10]) * 4096
    assert not lab.violations()


def test_7_2_hbitmap_status_reads_copied_clusters_from_the_live_disk() -> None:
    # QEMU 7.2's hbitmap_status answers "not done" for a range that starts copied and
    # goes on uncopied: the copied cluster is read from the live disk (seen on QEMU 7.2)
    lab = fleecing("7.2").play("fleece\nvwrite 0 4K 0xcc\ncread 0 8K\n")
    assert lab.outcomes[-1].data[:4096] == bytes([0xcc]) * 4096
    [v] = lab.violations()
    assert v.kind == "fleecing-read" and "vm-write#1" in v.message
    assert hbitmap_status(np.array([True, False]), 4096, 0, 8192) == (False, 4096)
    assert hbitmap_status(np.array([True, True]), 4096, 0, 8192) == (True, 8192)
    assert hbitmap_status(np.array([False, True]), 4096, 0, 8192) == (False, 4096)


# --- 7.2: the access bitmap and on-cbw-error -----------------------------------------


def test_7_2_read_outside_the_bitmap_fails_with_eacces_and_is_no_violation() -> None:
    lab = fleecing("7.2").play("fleece 0 16K\ncread 16K 4K\ncread 0 4K orig\n")
    bad, good = lab.outcomes[-2:]
    # -EACCES in QEMU; the NBD client gets EINVAL (system_errno_to_nbd_errno)
    assert bad.errno == errno.EINVAL and "Permission denied" in bad.error
    assert good.error is None and not lab.expectation_failures
    assert not lab.violations()
    assert not lab.layers()["snapshot"].alloc[16 * 1024 // 512:].any()


def test_7_2_write_outside_the_bitmap_copies_nothing() -> None:
    lab = fleecing("7.2").play("fleece 0 16K\nvwrite 32K 4K 0xdd\n")
    assert not lab.overlay.layer().alloc.any()


def test_7_2_break_guest_write_fails_the_guest_write() -> None:
    lab = fleecing("7.2")
    lab.fleece()
    lab.inject_copy_error("write")
    w = lab.vm_write(0, 4096, 0xbb)
    lab.run()
    assert isinstance(w.exception, lk.BlockError) and w.exception.errno == errno.EIO
    assert lab.live.peek(0, 4096) == bytes([0x10]) * 4096
    assert not lab.violations()  # QEMU fails it too: the scenario broke the copy


def test_7_2_break_snapshot_lets_the_guest_write_and_fails_the_client() -> None:
    lab = fleecing("7.2")
    lab.fleece(on_cbw_error="break-snapshot")
    lab.inject_copy_error("write")
    w = lab.vm_write(0, 4096, 0xbb)
    lab.run()
    assert w.exception is None and lab.state == "broken"
    r = lab.client_read(8192, 4096)
    lab.run()
    assert isinstance(r.exception, lk.BlockError) and r.exception.errno == errno.EINVAL
    assert not lab.violations()


def test_a_vetoed_write_without_an_injected_error_is_a_violation() -> None:
    lab = fleecing("7.2")
    lab.fleece()
    lab.overlay.inject_error("write")  # behind the oracle's back: not in the history
    lab.vm_write(0, 4096, 0xbb)
    lab.run()
    assert [v.kind for v in lab.violations()] == ["guest-write"]


@pytest.mark.parametrize("design", ["2.12", "3.0"])
def test_backup_job_schemes_fail_the_guest_write_on_copy_error(design: str) -> None:
    lab = fleecing(design)
    lab.fleece()
    lab.inject_copy_error("write")
    w = lab.vm_write(0, 4096, 0xbb)
    lab.run()
    assert w.exception is not None and not lab.violations()


# --- the oracle names the bytes ------------------------------------------------------


def test_oracle_names_a_lost_write() -> None:
    lab = fleecing("7.2").play("fleece\nvwrite 0 4K 0xbb\n")
    assert not lab.violations()
    v = lab.oracle.live_done("end", bytes(lab.size))  # a disk that lost everything
    assert v is not None and v.kind == "lost-write" and "0x00 at offset 0x0" in v.message


def test_client_read_before_fleece_fails_without_violation() -> None:
    lab = fleecing("7.2").play("cread 0 4K\nfleece\ncread 0 4K orig\n")
    assert lab.outcomes[0].errno == errno.ENOENT
    assert not lab.violations() and not lab.expectation_failures


# --- errors --------------------------------------------------------------------------


def test_second_fleece_fails_as_qemu_says() -> None:
    lab = fleecing("2.12").play("fleece\nfleece\n")
    assert "is busy" in lab.log[0]
    lab = fleecing("7.2").play("fleece\nfleece\n")
    assert "Duplicate nodes" in lab.log[0]


def test_bitmap_needs_7_2() -> None:
    lab = fleecing("3.0")
    with pytest.raises(ConfigError, match="copy-before-write"):
        lab.fleece(bitmap=(0, 4096))
    assert lab.state == "none"
    lab = fleecing("2.12").play("fleece 0 4K\ncread 0 4K\n")  # a failed command, no crash
    assert "copy-before-write" in lab.log[0] and not lab.violations()


def test_commands_of_the_two_graphs_do_not_mix() -> None:
    with pytest.raises(ScenarioError, match="COLO's or image fleecing's"):
        parse("start\ncread 0 4K\n")
    with pytest.raises(ScenarioError, match="COLO's or image fleecing's"):
        parse("fleece\nexpect hidden 0 4K unalloc\n")


def test_graph_and_scenario_must_agree() -> None:
    with pytest.raises(ConfigError, match="graph=fleecing"):
        lk.run_scenario("fleece\n", size="128K")
    with pytest.raises(ConfigError, match="COLO"):
        lk.run_scenario("start\n", size="128K", graph="fleecing")


def test_config_words() -> None:
    assert lk.build_secondary(graph="fleecing").design == "7.2"
    with pytest.raises(ConfigError, match="'2.12', '3.0', '7.2'"):
        lk.build_secondary(graph="fleecing", design="2.8")
    with pytest.raises(ConfigError, match="'none', '2.8', '4.0'"):
        lk.build_secondary(design="2.12")
    with pytest.raises(ConfigError, match="graph"):
        lk.build_secondary(graph="mirror")


def test_fleece_syntax_errors() -> None:
    with pytest.raises(ScenarioError, match="on-cbw-error"):
        parse("fleece on-cbw-error=ignore\n")
    with pytest.raises(ScenarioError, match="expected 'fleece"):
        parse("fleece 4K\n")
    with pytest.raises(ScenarioError, match="expected 'cread"):
        parse("cread 4K\n")


def test_replay_names_fleecing_tasks() -> None:
    lab = replay(RACE, "fleece#1 client-read#1 vm-write#1*5 client-read#1 client-read#2*2 "
                       "vm-read#1*2", design="2.12")
    assert lab.violations() and lab.state == "fleecing"


def test_7_2_break_snapshot_does_not_fail_a_read_already_in_flight() -> None:
    """From copy-before-write.c (7.2 and later): once a copy failed under
    break-snapshot, cbw_do_copy_before_write returns at once (``snapshot_error``)
    without waiting for frozen reads, and cbw_co_preadv_snapshot does not look at
    the error again after its read.  A snapshot read already reading the live disk
    then returns the guest's new data, with no error: the oracle says so.  (Real
    QEMU 7.2 does the same: tests/test_qemu_fleecing.py.)"""
    prefer: list[str] = []

    def choose(runnable):
        names = [t.name for t in runnable]
        return next((n for n in prefer if n in names), names[0])

    lab = fleecing("7.2", policy=lk.Chooser(choose))
    lab.fleece(on_cbw_error="break-snapshot")
    read = lab.client_read(4096, 4096)  # cluster 1
    prefer[:] = [read.name]
    while not any(e.task == read.name and e.kind == "point" and e.node == "live-disk"
                  for e in lab.trace):
        lab.step()
    lab.inject_copy_error("write")
    w1 = lab.vm_write(0, 4096, 0xaa)  # cluster 0: its copy fails, the snapshot breaks
    prefer[:] = [w1.name]
    while w1.name in [t.name for t in lab.runnable()]:
        lab.step()
    assert w1.done and w1.exception is None and lab.state == "broken"
    w2 = lab.vm_write(4096, 4096, 0xbb)  # cluster 1, under the frozen read: no wait
    prefer[:] = [w2.name]
    while w2.name in [t.name for t in lab.runnable()]:
        lab.step()
    assert w2.done
    prefer[:] = []
    lab.run()
    assert read.exception is None and read.result == bytes([0xbb]) * 4096
    assert [v.kind for v in lab.violations()] == ["fleecing-read"]


# --- the CLI, the header, the stepper ------------------------------------------------


def test_cli_explore_gives_each_scheme_its_verdict(capsys) -> None:
    from labkit.cli import main

    assert main(["explore", "fleecing-race"]) == 0  # every header verdict met
    out = capsys.readouterr().out
    assert "design 2.12: VIOLATION" in out and "design 3.0: SAFE" in out
    assert "design 7.2: SAFE" in out and "design none" not in out


def test_header_graph_gives_the_fleecing_default_design() -> None:
    from labkit.config import resolve

    assert resolve("# config: graph=fleecing\nfleece\n").design == "7.2"
    assert resolve("# config: graph=fleecing\n", {"design": "2.12"}).design == "2.12"
    assert resolve("# config: graph=fleecing\n", {"graph": "colo"}).design == "2.8"


def test_scenario_run_steps_a_fleecing_lab() -> None:
    from labkit.lab import ScenarioRun

    lab = lk.build_secondary(graph="fleecing", design="2.12", size="128K", backup_cluster="4K",
                             policy=lk.Scripted(["fleece#1", "client-read#1", *["vm-write#1"] * 5]))
    run = ScenarioRun(lab, RACE)
    run.run()
    assert run.done and [v.kind for v in lab.violations()] == ["fleecing-read"]


def test_inject_error_command() -> None:
    lab = fleecing("7.2").play("fleece\ninject-error write\nvwrite 0 4K 0xbb\n")
    assert "vm-write#1 failed" in lab.log[0] and not lab.violations()  # break-guest-write
    lab = fleecing("7.2").play("fleece on-cbw-error=break-snapshot\ninject-error read\n"
                               "vwrite 0 4K 0xbb\ncread 8K 4K\n")
    assert lab.state == "broken" and "client-read#1 failed" in lab.log[0]
    assert not lab.violations()
    with pytest.raises(ScenarioError, match="inject-error read|write"):
        parse("inject-error overlay\n")


@pytest.mark.parametrize("design", ["3.0", "7.2"])
def test_expect_reads_one_fleecing_layer(design: str) -> None:
    """``expect`` reads just its layer (Lab.layer): live, fleece and snapshot by name."""
    text = ("# config: graph=fleecing size=128K\nfleece\nvwrite 5b 4K 0xbb\n"
            "expect live 5b 4K 0xbb\nexpect fleece 5b 4K orig\nexpect snapshot 5b 4K orig\n"
            "expect fleece 6b 4K alloc\nexpect fleece 20b 4K unalloc\n")  # a 64K copy
    lab = lk.run_scenario(text, design=design)
    assert lab.expectation_failures == []
    with pytest.raises(lk.errors.ArgumentError, match="no layer named 'hidden'"):
        lab.layer("hidden")
