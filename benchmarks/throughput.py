"""Section 1: the engine's throughput against real QEMU 7.2, and the simulator's memory.

The workload (:mod:`benchmarks.workload`): a 1 GiB secondary disk with 64 KiB
hidden and active clusters, ``start``, then 20,000 primary 4 KiB writes,
20,000 VM 4 KiB reads and 2,000 VM 4 KiB writes in a seeded order at seeded
4 KiB-aligned offsets, one after the other, a checkpoint after every 1,000.
The simulator runs it through the public API (``primary_write`` / ``vm_read``
/ ``vm_write`` + ``run()``, ``checkpoint()``) with tracing off; QEMU runs it as
one :class:`labkit.qemu.QemuSecondary` session (NBD I/O, QMP checkpoints).
Each side runs in its own child process.  Both read digests must agree: the
same 20,000 reads return the same bytes on both.

Memory: the simulator child's peak RSS (``ru_maxrss``) minus its RSS after
imports and after building the operation list, against the bytes the
workload touches: the distinct 4 KiB blocks its requests address (read or
written) × 4 KiB.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from . import workload as wl_mod
from ._common import MiB, peak_rss_bytes, rss_bytes, run_child

SEED = 2026
TARGET_RATIO = 1.0
TARGET_MEMORY = 2.0  # peak ≤ 2× the bytes touched
TARGET_TRACING = 1.25  # tracing off / tracing on ops/s: the cost of recording every event
TRACING_ROUNDS = 5


def _sim(seed: int, tracing: bool) -> dict[str, Any]:
    import labkit as lk

    wl = wl_mod.make(seed)
    baseline = rss_bytes()
    t0 = time.perf_counter()
    lab = lk.build_secondary(size=wl.size, block=wl_mod.IO, hidden_cluster=wl.cluster,
                             active_cluster=wl.cluster)
    lab.kernel.tracing = tracing
    t1 = time.perf_counter()
    lab.start()
    digest = hashlib.sha256()
    every = wl.checkpoint_every
    for i, (kind, off, byte) in enumerate(wl.ops, 1):
        if kind == "pwrite":
            lab.primary_write(off, wl_mod.IO, byte)
            lab.run()
        elif kind == "vwrite":
            lab.vm_write(off, wl_mod.IO, byte)
            lab.run()
        else:
            task = lab.vm_read(off, wl_mod.IO)
            lab.run()
            digest.update(task.result)
        if i % every == 0:
            lab.checkpoint()
    t2 = time.perf_counter()
    peak = peak_rss_bytes()
    return {"setup_s": t1 - t0, "workload_s": t2 - t1, "operations": wl.operations,
            "ops_per_s": wl.operations / (t2 - t1), "reads_sha256": digest.hexdigest(),
            "violations": len(lab.violations()), "tracing": tracing,
            "baseline_rss": baseline, "peak_rss": peak, "peak_over_baseline": peak - baseline,
            "trace_events": len(lab.trace),
            "chunks": {"secondary": lab.secondary.stored_chunks,
                       "hidden": lab.hidden.stored_chunks, "active": lab.active.stored_chunks}}


def _qemu(seed: int) -> dict[str, Any]:
    from labkit.config import LabConfig
    from labkit.qemu import QemuSecondary, qemu_available

    why = qemu_available()
    if why is not None:
        return {"available": False, "why": why}
    wl = wl_mod.make(seed)
    t0 = time.perf_counter()
    config = LabConfig(size=wl.size, block=wl_mod.IO, hidden_cluster=wl.cluster,
                       active_cluster=wl.cluster)
    with QemuSecondary(config, timeout=120) as q:
        t1 = time.perf_counter()
        q.start()
        digest = hashlib.sha256()
        every = wl.checkpoint_every
        for i, (kind, off, byte) in enumerate(wl.ops, 1):
            if kind == "pwrite":
                q.pwrite(off, wl_mod.IO, byte)
            elif kind == "vwrite":
                q.vwrite(off, wl_mod.IO, byte)
            else:
                digest.update(q.vread(off, wl_mod.IO))
            if i % every == 0:
                q.checkpoint()
        t2 = time.perf_counter()
        version = q.version
    return {"available": True, "setup_s": t1 - t0, "workload_s": t2 - t1,
            "operations": wl.operations, "ops_per_s": wl.operations / (t2 - t1),
            "reads_sha256": digest.hexdigest(), "version": version}


def run(seed: int = SEED, log: Callable[[str], None] = print) -> dict[str, Any]:
    wl = wl_mod.make(seed)
    touched = wl.touched_bytes()
    log(f"  workload: {len(wl.ops)} I/Os + {wl.checkpoints} checkpoints + start on a "
        f"{wl.size // MiB} MiB disk; touches {touched / MiB:.1f} MiB")
    sim = run_child("benchmarks.throughput", "sim", str(seed), log=log)
    log(f"  simulator (tracing off): {sim['ops_per_s']:,.0f} ops/s, "
        f"peak +{sim['peak_over_baseline'] / MiB:.0f} MiB")
    # One run of each mode varies by ±15% on this shared machine (two runs of the same
    # mode differ as much as tracing does), and the machine has slow and fast phases
    # lasting longer than a run.  So the ratio is taken over TRACING_ROUNDS pairs, each
    # pair two fresh children run back to back (which one goes first alternates): the
    # median of the pairs' ratios, each measured within one phase of the machine.
    offs, ons = [sim], []
    for r in range(TRACING_ROUNDS):
        modes = ("sim-traced", "sim") if r % 2 == 0 else ("sim", "sim-traced")
        for mode in modes:
            if mode == "sim" and r == 0:
                continue  # the first untraced run is the one above
            (ons if mode == "sim-traced" else offs).append(
                run_child("benchmarks.throughput", mode, str(seed)))
    ratios = [a["ops_per_s"] / b["ops_per_s"] for a, b in zip(offs, ons, strict=True)]
    tracing_cost = statistics.median(ratios)
    traced = ons[sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]]
    log(f"  simulator (tracing on): {traced['ops_per_s']:,.0f} ops/s in the median pair; "
        f"tracing off / on: {tracing_cost:.2f}×, the median of {TRACING_ROUNDS} pairs "
        f"(target ≤ {TARGET_TRACING}×; the pairs: {', '.join(f'{x:.2f}' for x in ratios)})")
    qemu = run_child("benchmarks.throughput", "qemu", str(seed))
    out: dict[str, Any] = {"seed": seed, "disk_bytes": wl.size, "cluster": wl.cluster,
                           "operations": wl.operations, "touched_bytes": touched,
                           "written_bytes": wl.written_bytes(), "simulator": sim,
                           "simulator_traced": traced, "qemu": qemu,
                           "tracing_runs_ops_per_s": {"off": [x["ops_per_s"] for x in offs],
                                                      "on": [x["ops_per_s"] for x in ons]},
                           "tracing_pair_ratios": ratios}
    out["tracing_ratio"] = tracing_cost
    out["tracing_met"] = tracing_cost <= TARGET_TRACING
    out["memory_ratio"] = sim["peak_over_baseline"] / touched
    out["memory_met"] = out["memory_ratio"] <= TARGET_MEMORY
    if qemu.get("available"):
        log(f"  QEMU {qemu['version']}: {qemu['ops_per_s']:,.0f} ops/s")
        out["ratio"] = sim["ops_per_s"] / qemu["ops_per_s"]
        out["ratio_met"] = out["ratio"] >= TARGET_RATIO
        out["reads_agree"] = sim["reads_sha256"] == qemu["reads_sha256"]
    else:
        log(f"  QEMU not available: {qemu.get('why')}")
        out["ratio"] = None
        out["ratio_met"] = None
        out["reads_agree"] = None
    return out


if __name__ == "__main__":
    mode, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else SEED
    result = {"sim": lambda: _sim(seed, tracing=False),
              "sim-traced": lambda: _sim(seed, tracing=True),
              "qemu": lambda: _qemu(seed)}[mode]()
    print(json.dumps(result))
