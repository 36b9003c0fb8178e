"""Section 2: exploration of the canonical conflicting read with 2, 3 and 4 tasks.

For each scenario (``labkit/scenarios/canonical*.scn``) and each read design,
:func:`labkit.explore` runs the interleavings twice: with the default
reduction (source-DPOR with sleep sets) and naively (``reduction="none"``).
Reported: runs, wall time, verdict, and how many times fewer runs the
reduction needed.

The naive exploration of 4 tasks runs 91,000-160,000 interleavings (1.5-3
minutes per design).  Design ``"4.0"`` (the smallest) is run to the end; the
other two get a budget of ``NAIVE_FACTOR`` × the reduced run count: when one
has not finished within it, its naive count is reported as "≥ budget" and the
reduction as "≥ NAIVE_FACTOR×" — a lower bound, honestly labelled.
``--full-naive`` runs every design to the end (about 5 minutes more).

Five tasks (``labkit/scenarios/canonical5.scn``): the reduced exploration of
every design, to the end; the naive one only within a budget of
``NAIVE_FACTOR_AT_5`` × the reduced runs (it would take hours), so its count
and the ratio are lower bounds.  Targets: complete verification of ``"2.8"``
at 4 tasks within ``TARGET_28_SECONDS``, at 5 tasks within
``TARGET_28_SECONDS_AT_5``.

Era 7.2 (QEMU 7.2's machinery: the copy-before-write filter and block-copy,
CoMutex hand-over, 7.2's qcow2 COW) under design ``"4.0"`` (QEMU 7.2's read
protection), reduced exploration to the end: ``canonical4`` within
``TARGET_72_SECONDS``, and :data:`HEAVY_MIX_5` — five tasks, a VM write among
them — within ``TARGET_72_SECONDS_AT_5``.

The footprints come from the accesses the engine declares; with a kernel
that runs woken tasks at once (QEMU's rule) two waits on one queue no longer
commute, and fewer interleavings exist: both change these figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SCENARIOS = {2: "canonical", 3: "canonical3", 4: "canonical4", 5: "canonical5"}
DESIGNS = ("none", "2.8", "4.0")
NAIVE_FACTOR = 12
FULL_NAIVE_AT_4 = ("4.0",)  # designs whose 4-task naive exploration runs to the end anyway
TARGET_FEWER = 10.0  # at 4 tasks
TARGET_28_SECONDS = 2.0  # complete verification of "2.8" at 4 tasks
TARGET_28_SECONDS_AT_5 = 30.0  # ... and at 5 tasks
NAIVE_FACTOR_AT_5 = 1
TARGET_72_SECONDS = 2.0  # complete verification of canonical4 under era 7.2
TARGET_72_SECONDS_AT_5 = 30.0  # ... and of the 5-task heavy mix
#: Five tasks under era 7.2: two overlapping reads, a primary write over them, a VM
#: write inside a 4K block they read (a partial qcow2 cluster: COW reads of hidden and
#: the secondary disk), and a primary write elsewhere in the same backup cluster.
HEAVY_MIX_5 = ("start\npwrite 20b 4K 0xaa\n"
               "par { vread 5b 4K; pwrite 5b 4K 0xbb; vread 5b 4K; vwrite 6b 2K 0xee; "
               "pwrite 21b 4K 0xdd }\nvread 5b 4K orig\n")


def _explore(text: str, design: str, **options: Any) -> tuple[Any, float]:
    import labkit as lk

    t0 = time.perf_counter()
    ex = lk.explore(text, design=design, **options)
    return ex, time.perf_counter() - t0


def run(full_naive: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    from labkit import scenarios

    rows = []
    for tasks, name in SCENARIOS.items():
        text = scenarios.load(name)
        for design in DESIGNS:
            red, red_s = _explore(text, design)
            full = tasks < 4 or (tasks == 4 and (full_naive or design in FULL_NAIVE_AT_4))
            factor = NAIVE_FACTOR if tasks == 4 else NAIVE_FACTOR_AT_5
            budget = None if full else factor * red.runs
            naive, naive_s = _explore(text, design, reduction="none", max_runs=budget,
                                      shrink=False)
            fewer = naive.runs / red.runs
            row = {"scenario": name, "tasks": tasks, "design": design,
                   "reduced_runs": red.runs, "reduced_s": round(red_s, 3),
                   "reduced_complete": red.complete, "reduced_verdict": red.verdict,
                   "naive_runs": naive.runs, "naive_s": round(naive_s, 3),
                   "naive_complete": naive.complete, "naive_verdict": naive.verdict,
                   "naive_budget": budget, "fewer": round(fewer, 1),
                   "fewer_is_lower_bound": not naive.complete}
            if tasks == 4:
                row["target_fewer"] = TARGET_FEWER
                row["fewer_met"] = fewer >= TARGET_FEWER
            if tasks >= 4 and design == "2.8":
                row["target_s"] = TARGET_28_SECONDS if tasks == 4 else TARGET_28_SECONDS_AT_5
                row["time_met"] = red.complete and red.verdict == "safe" \
                    and red_s <= row["target_s"]
            rows.append(row)
            naive_txt = f"{naive.runs}" if naive.complete else f"≥ {naive.runs} (budget)"
            log(f"  {name:<11} {design:<4} reduced {red.runs:>5} runs {red_s:6.2f} s "
                f"{red.verdict:<9} naive {naive_txt:>16} {naive_s:6.1f} s {naive.verdict:<9} "
                f"{'≥ ' if not naive.complete else ''}{fewer:.1f}× fewer")
    return rows + run_era72(log)


def run_era72(log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Complete verification under era 7.2, design 4.0 (reduced exploration only)."""
    from labkit import scenarios

    rows = []
    for name, text, tasks, target in (
            ("canonical4", scenarios.load("canonical4"), 4, TARGET_72_SECONDS),
            ("heavy-mix5", HEAVY_MIX_5, 5, TARGET_72_SECONDS_AT_5)):
        ex, secs = _explore(text, "4.0", era="7.2")
        rows.append({"scenario": name, "tasks": tasks, "design": "4.0", "era": "7.2",
                     "reduced_runs": ex.runs, "reduced_s": round(secs, 3),
                     "reduced_complete": ex.complete, "reduced_verdict": ex.verdict,
                     "target_s": target,
                     "time_met": ex.complete and ex.verdict == "safe" and secs <= target})
        log(f"  {name:<11} 4.0  era 7.2 reduced {ex.runs:>5} runs {secs:6.2f} s "
            f"{ex.verdict} (target ≤ {target:g} s)")
    return rows


if __name__ == "__main__":
    import sys
    if "--era72" in sys.argv:
        run_era72()
    else:
        run(full_naive="--full-naive" in sys.argv)
