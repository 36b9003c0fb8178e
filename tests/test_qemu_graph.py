"""The simulator's block graph after ``start`` is QEMU 7.2's (``x-debug-query-block-graph``).

Era 7.2's backup job inserts a copy-before-write filter above the secondary
disk (``bdrv_cbw_append``): the NBD export's BlockBackend and the job point at
the filter, whose ``file`` is the secondary disk and ``target`` the hidden
disk; the hidden disk's backing link stays on the secondary disk.  Era 2.8 has
no filter (the copy is a before-write notifier on the secondary disk).
"""

from __future__ import annotations

import pytest

import labkit as lk
from labkit.config import LabConfig
from labkit.lab import Lab
from labkit.qemu import QemuSecondary, qemu_available
from labkit.testing import need

K = 1024

# What the simulator does not model, each with why (docs/qemu-eras.md):
#: the image files under each format node (protocol nodes, driver "file")
PROTOCOL = "file"
#: 7.2's replication attaches hidden and secondary disk as children of its own ("hidden
#: disk", "secondary disk"); labkit's replication node reads them from the backing chain
REPLICATION_OWN_CHILDREN = ("hidden disk", "secondary disk")
#: the backend's export of colo-top for the VM's I/O: labkit's VM is attached directly
VM_EXPORT_ROOT = ("block-backend", "root", "colo-top")


def sim_node_edges(lab: Lab) -> list[tuple[str, str, str]]:
    """The lab's graph as ``(parent, edge, child)``: nodes' children, the NBD exports'
    BlockBackends and the backup job's two edges, as QEMU reports them."""
    edges = [(node.name, role, child.name) for node in lab.graph.nodes.values()
             for role, child in node.children.items()]
    edges += [("block-backend", "root", e.node.name) for e in lab.nbd.exports.values()]
    job = lab.top.backup_job
    if job is not None and job.running:
        main = job.cbw.name if job.cbw is not None else job.source.name
        edges += [("block-job", "main node", main), ("block-job", "target", job.target.name)]
    return sorted(edges)


def test_the_simulator_graph_after_start_per_era() -> None:
    lab = lk.run_scenario("start\n", size="128K", era="7.2")
    edges = sim_node_edges(lab)
    assert ("block-backend", "root", "copy-before-write") in edges
    assert ("copy-before-write", "file", "secondary-disk") in edges
    assert ("copy-before-write", "target", "hidden") in edges
    assert ("hidden", "backing", "secondary-disk") in edges
    assert lab.graph.nodes["copy-before-write"].driver == "copy-before-write"
    old = sim_node_edges(lk.run_scenario("start\n", size="128K", era="2.8"))
    assert not any("copy-before-write" in e for e in old)
    assert ("block-backend", "root", "secondary-disk") in old


def test_stop_drops_the_filter_in_era_7_2() -> None:
    lab = lk.run_scenario("start\nstop\n", size="128K", era="7.2")
    assert "copy-before-write" not in lab.graph.nodes
    assert ("block-backend", "root", "secondary-disk") in sim_node_edges(lab)


@pytest.mark.qemu
def test_the_graph_after_start_is_qemu_7_2s() -> None:
    reason = qemu_available()
    need(reason is None, f"QEMU 7.2 with block replication ({reason})",
         "apt-get install qemu-system-x86 qemu-utils")
    lab = lk.run_scenario("start\n", size="256K", era="7.2", design="4.0")
    with QemuSecondary(LabConfig(size=256 * K)) as q:
        q.start()
        qemu = q.node_edges()
    kept = sorted(e for e in qemu if e[2] != PROTOCOL and e[1] not in REPLICATION_OWN_CHILDREN
                  and e != VM_EXPORT_ROOT)
    assert kept == sim_node_edges(lab)
