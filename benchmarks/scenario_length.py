"""Section "length": time and memory against scenario length and ``par`` size (issue 12, item 5).

Four scenarios, each played with :func:`labkit.run_scenario` in a fresh child
process (so that one case's memory does not skew the next):

* ``seq-5000`` / ``seq-50000``: ``start``, then 5,000 / 50,000 sequential
  commands on a 1 MiB disk — primary writes, VM reads and VM writes of 4 KiB
  in turn at changing blocks, a checkpoint every 1,000 commands;
* ``par-200`` / ``par-2000``: ``start``, then one ``par`` block of 200 /
  2,000 VM reads of distinct 4 KiB blocks of a 16 MiB disk (the disk is the
  same size in both, so only the number of tasks changes), design ``"2.8"``
  with a 4 KiB backup cluster (each read holds its own CowRequest) — and the
  same with design ``"none"`` (no CowRequests), which separates the
  interpreter's and kernel's cost from the backup job's.

Reported per case: the best of three CPU times of the process (stable on a
shared machine; the best wall time is kept too), and the peak of Python's
heap during one more run (``tracemalloc``: numpy's buffers included).  The
target: the 10× case within 12× of the 1× case, in time and in memory.

``python -m benchmarks.scenario_length`` runs them all and prints a table;
``--case NAME`` runs one (the child's job) and prints its JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ._common import run_child

TARGET_RATIO = 12.0
CASES: dict[str, dict[str, Any]] = {
    "seq-5000": dict(kind="seq", n=5_000, design="2.8"),
    "seq-50000": dict(kind="seq", n=50_000, design="2.8"),
    "par-200": dict(kind="par", n=200, design="2.8"),
    "par-2000": dict(kind="par", n=2_000, design="2.8"),
    "par-200-none": dict(kind="par", n=200, design="none"),
    "par-2000-none": dict(kind="par", n=2_000, design="none"),
}
PAIRS = (("seq-5000", "seq-50000"), ("par-200", "par-2000"), ("par-200-none", "par-2000-none"))


def scenario(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    """The scenario text of a case and its configuration keywords."""
    if kind == "seq":
        lines = ["start"]
        for i in range(n):
            block = (i * 7) % 256
            op = i % 3
            if i and i % 1000 == 0:
                lines.append("checkpoint")
            elif op == 0:
                lines.append(f"pwrite {block}b 4K {0x80 + i % 0x70:#04x}")
            elif op == 1:
                lines.append(f"vread {block}b 4K")
            else:
                lines.append(f"vwrite {block}b 4K {0x80 + i % 0x70:#04x}")
        return "\n".join(lines) + "\n", dict(size="1M")
    reads = "\n".join(f"  vread {i}b 4K" for i in range(n))
    return f"start\npar {{\n{reads}\n}}\n", dict(size="16M", backup_cluster="4K")


def measure(name: str) -> dict[str, Any]:
    """Play one case: best-of-3 seconds, then the heap peak of one traced run."""
    import labkit as lk

    case = CASES[name]
    text, cfg = scenario(case["kind"], case["n"])
    best, wall = float("inf"), float("inf")
    decisions = 0
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        lab = lk.run_scenario(text, design=case["design"], **cfg)
        best = min(best, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - t0)
        decisions = len(lab.schedule)
        del lab
    tracemalloc.start()
    kept = lk.run_scenario(text, design=case["design"], **cfg)  # alive at the peak reading
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del kept
    return {"case": name, "commands": case["n"], "design": case["design"],
            "decisions": decisions, "seconds": round(best, 4), "wall_seconds": round(wall, 4),
            "peak_bytes": peak}


def run(log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every case in its own child process; the ratios of each 10× pair."""
    results = {}
    for name in CASES:
        r = run_child("benchmarks.scenario_length", "--case", name, timeout=900)
        results[name] = r
        log(f"  {name:<14} {r['commands']:>6} commands  {r['decisions']:>7} decisions  "
            f"{r['seconds']:8.3f} s CPU ({r['wall_seconds']:.3f} s wall)  "
            f"peak {r['peak_bytes'] / 2**20:7.1f} MiB")
    ratios = []
    for small, big in PAIRS:
        a, b = results[small], results[big]
        t = b["seconds"] / a["seconds"]
        m = b["peak_bytes"] / a["peak_bytes"]
        ratios.append({"pair": f"{small} → {big}", "time_ratio": round(t, 2),
                       "memory_ratio": round(m, 2), "met": t <= TARGET_RATIO and m <= TARGET_RATIO})
        log(f"  {small} → {big}: time ×{t:.1f}, memory ×{m:.1f} (target ≤ ×{TARGET_RATIO:.0f}: "
            f"{'met' if ratios[-1]['met'] else 'MISSED'})")
    return {"cases": results, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scenario_length",
                                     description=__doc__)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case (prints JSON)")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case)))
    else:
        run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
