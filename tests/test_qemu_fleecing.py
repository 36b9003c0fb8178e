"""Image fleecing on a real QEMU 7.2 against the simulator, scenario by scenario.

Every scenario in ``tests/qemu_fleecing/`` runs on the simulator
(``graph="fleecing"``) and on QEMU 7.2 built as image-fleecing builds it
(:mod:`labkit.qemu._fleecing`), under the backup-job scheme ("3.0": QEMU 7.2
runs it serialising) and the copy-before-write + snapshot-access scheme
("7.2"); every dump's ``live``, ``fleece`` and ``snapshot`` layers must be
equal sector by sector, and the outcomes, checks and violations the same.
``*bitmap*`` scenarios use copy-before-write's ``bitmap``: 7.2 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.config import LabConfig
from labkit.fleecing import FleecingLab
from labkit.lab import build_secondary
from labkit.qemu._fleecing import QemuFleecing, compare_fleecing

SCENARIOS = Path(__file__).parent / "qemu_fleecing"
FILES = sorted(SCENARIOS.glob("*.scn"))
CASES = [(f, d) for f in FILES for d in ("3.0", "7.2") if "bitmap" not in f.name or d == "7.2"]


def test_at_least_ten_scenarios() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize(("path", "design"), CASES, ids=[f"{f.stem}-{d}" for f, d in CASES])
def test_scenario_agrees_with_qemu(qemu: None, path: Path, design: str) -> None:
    c = compare_fleecing(path.read_text(encoding="utf-8"), design=design)
    assert c.agree, c.text()
    assert not c.sim.expectation_failures, c.sim.expectation_failures


def test_spanning_read_is_a_violation_on_both(qemu: None) -> None:
    """QEMU 7.2's hbitmap_status: the simulator and QEMU both return the guest's data."""
    c = compare_fleecing((SCENARIOS / "07-spanning-read.scn").read_text(), design="7.2")
    assert c.agree
    assert [v.kind for v in c.qemu.violations()] == ["fleecing-read"]
    c = compare_fleecing((SCENARIOS / "07-spanning-read.scn").read_text(), design="3.0")
    assert c.agree and not c.qemu.violations()


def test_7_2_graph_is_image_fleecings(qemu: None) -> None:
    """fl-access -> fl-cbw -> live-disk, fl-cbw's target the overlay, as in the simulator."""
    with QemuFleecing(LabConfig(size=256 * 1024, hidden_cluster=64 * 1024, graph="fleecing",
                                design="7.2")) as q:
        q.fleece()
        graph = q.qmp("x-debug-query-block-graph")
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    edges = {(names[e["parent"]], e["name"]): names[e["child"]] for e in graph["edges"]
             if names.get(e["parent"])}
    assert edges[("fl-access", "file")] == "fl-cbw"
    assert edges[("fl-cbw", "file")] == "live-disk"
    assert edges[("fl-cbw", "target")] == "fleece"
    assert edges[("fleece", "backing")] == "live-disk"
    lab = build_secondary(graph="fleecing", size="256K")
    assert isinstance(lab, FleecingLab)
    lab.fleece()
    assert lab.access is not None and lab.cbw is not None
    assert lab.access.file is lab.cbw and lab.cbw.file is lab.live
    assert lab.cbw.target is lab.overlay and lab.overlay.backing is lab.live


# -- the race scenarios' orders, forced with blkdebug ---------------------------------

RACES = [(n, d) for n in ("fleecing-race", "fleecing-two-clusters") for d in ("3.0", "7.2")]


@pytest.mark.parametrize(("name", "design"), RACES, ids=[f"{n}-{d}" for n, d in RACES])
def test_forced_orders_agree(qemu: None, name: str, design: str) -> None:
    """Each order forced on QEMU 7.2 (a blkdebug breakpoint) and on the simulator: the
    same request blocked, the same bytes read, the same layers."""
    from labkit import scenarios
    from labkit.qemu._fleecing import compare_fleecing_race

    text = scenarios.load(name)
    results = compare_fleecing_race(text, design=design)
    assert len(results) == 4
    for sim, q, diffs in results:
        assert not diffs, (sim.hold, diffs)
        assert not sim.not_reached and not q.not_reached
    held_read, held_write, held_copy_read, held_own_write = results
    assert not held_copy_read[1].blocked and not held_own_write[1].blocked
    # 3.0 and 7.2 both: the guest write waits while the client's read is held ...
    assert held_read[1].blocked == ["vm-write#1"]
    # ... and a held copy write blocks the client's read only in 3.0 (its read waits
    # for the serialising write); in 7.2 the read takes the live disk, not yet written
    assert held_write[1].blocked == (["client-read#1"] if design == "3.0" else [])


def test_refusals_before_qemu_starts() -> None:
    from labkit.errors import ScenarioError
    from labkit.qemu._fleecing import compare_fleecing_race, run_fleecing

    with pytest.raises(ScenarioError, match="backup_cluster"):
        run_fleecing("# config: graph=fleecing backup_cluster=4K\nfleece\n")
    with pytest.raises(ScenarioError, match="graph=fleecing"):
        run_fleecing("start\n")
    with pytest.raises(ScenarioError, match="par"):
        run_fleecing("# config: graph=fleecing\nfleece\npar { cread 0 4K; vwrite 0 4K 1 }\n")
    with pytest.raises(ScenarioError, match="a forced fleecing race"):
        compare_fleecing_race("# config: graph=fleecing\nfleece\ncread 0 4K\n")


def test_break_snapshot_leaves_a_read_in_flight_unfailed_on_qemu(qemu: None) -> None:
    """fleecing-break-snapshot's counterexample, forced on QEMU 7.2 and on the simulator:
    the client's read of cluster 1 held at the live disk; a guest write to cluster 0
    whose copy fails (blkdebug inject-error on the overlay) breaks the snapshot; a
    guest write to cluster 1 then lands without waiting for the frozen read; released,
    the read returns the guest's new data and no error.  Later reads fail."""
    import threading
    import time

    import labkit as lk
    from labkit.qemu._nbd import NbdClient, NbdError
    from labkit.qemu._races import _Breakpoints

    k = 1024
    res: dict[str, object] = {}

    def send(name: str, q: QemuFleecing, export: str, fn) -> threading.Thread:
        def run() -> None:
            c = NbdClient(q.nbd_socket, export, timeout=10)
            try:
                res[name] = fn(c)
            except (NbdError, OSError) as exc:
                res[name] = exc
            finally:
                c.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    config = LabConfig(size=256 * k, hidden_cluster=64 * k, graph="fleecing", design="7.2")
    with QemuFleecing(config, blkdebug=True, fail_copy_write=True) as q:
        q.fleece(on_cbw_error="break-snapshot")
        bps = _Breakpoints(q)
        try:
            tag = bps.arm("ctl-live", "read_aio")
            tr = send("cread", q, "fleece", lambda c: c.pread(64 * k, 4 * k, df=True))
            deadline = time.monotonic() + 3
            while not bps.suspended(tag):
                assert time.monotonic() < deadline, "the client read never reached live-disk"
                time.sleep(0.002)
            t1 = send("w1", q, "guest", lambda c: c.pwrite(b"\xaa" * 4096, 0))
            t1.join(5)
            t2 = send("w2", q, "guest", lambda c: c.pwrite(b"\xbb" * 4096, 64 * k))
            t2.join(5)
            assert not t1.is_alive() and not t2.is_alive(), "a guest write waited"
        finally:
            bps.release_all()
        tr.join(10)
        assert res["cread"] == b"\xbb" * 4096  # the guest's new data, no error
        with pytest.raises(NbdError):
            q.cread(128 * k, 4096)  # the snapshot is broken from now on
        qemu_live = q.dump_node("live-disk")

    prefer: list[str] = []

    def choose(runnable):
        names = [t.name for t in runnable]
        return next((n for n in prefer if n in names), names[0])

    lab = lk.build_secondary(graph="fleecing", design="7.2", size="256K",
                             policy=lk.Chooser(choose))
    lab.fleece(on_cbw_error="break-snapshot")
    read = lab.client_read(64 * k, 4 * k)
    prefer[:] = [read.name]
    while not any(e.task == read.name and e.kind == "point" and e.node == "live-disk"
                  for e in lab.trace):
        lab.step()
    lab.inject_copy_error("write")
    for off, byte in ((0, 0xaa), (64 * k, 0xbb)):
        w = lab.vm_write(off, 4096, byte)
        prefer[:] = [w.name]
        while w.name in [t.name for t in lab.runnable()]:
            lab.step()
        assert w.done and w.exception is None
    prefer[:] = []
    lab.run()
    assert read.result == res["cread"]
    assert lab.layers()["live"] == qemu_live
    assert [v.kind for v in lab.violations()] == ["fleecing-read"]
