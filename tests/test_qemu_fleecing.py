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

from labkit.fleecing import FleecingLab
from labkit.lab import build_secondary
from labkit.qemu import qemu_available
from labkit.qemu._fleecing import QemuFleecing, compare_fleecing
from labkit.testing import need

SCENARIOS = Path(__file__).parent / "qemu_fleecing"
FILES = sorted(SCENARIOS.glob("*.scn"))
CASES = [(f, d) for f in FILES for d in ("3.0", "7.2") if "bitmap" not in f.name or d == "7.2"]


@pytest.fixture
def qemu() -> None:
    reason = qemu_available()
    need(reason is None, f"QEMU 7.2 ({reason})", "apt-get install qemu-system-x86 qemu-utils")


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
    with QemuFleecing(256 * 1024, scheme="7.2") as q:
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
    assert len(results) == 2
    for sim, q, diffs in results:
        assert not diffs, (sim.hold, diffs)
        assert not sim.not_reached and not q.not_reached
    held_read, held_write = results
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
