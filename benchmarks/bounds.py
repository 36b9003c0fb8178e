"""Section "bounds": what a scenario or an input file costs, against what it holds (issue 20).

Each case runs in a fresh child process (``python -m benchmarks.bounds --case NAME``)
and reports its wall time and its peak resident set size (``ru_maxrss``: numpy's
buffers, the interpreter and labkit's modules included):

* ``dump-1g`` / ``dump-1g-base``: ``# config: size=1G``, ``start``, ``pwrite 0 4K 1``,
  ``dump``, ``pwrite 0 4K 2``, ``dump``, one ``expect`` — and the same without the
  dumps and the expect.  Target: the dumps' cost (peak minus the base's peak) within
  2× the bytes the scenario writes (8 KiB) plus 16 MiB (the dumps' fixed part: the
  per-sector bitmaps of four 1 GiB layers and the chunk map's leaf lists);
* ``dump-1000`` / ``dump-1000-base``: on a 1 MiB disk, 1,000 × (``pwrite`` of 4 KiB at
  a changing block; ``dump``), and the same without the dumps.  Target: the dumps'
  cost within 2× the 4 MB written;
* ``parse-1m`` / ``parse-64m``: :func:`labkit.trace.loads` of an adversarial file
  ``{"`` + ``\\"`` × n + ``[`` × 65 of 1 MB and 64 MB (refused; the best of three
  runs).  Target: linear, 64× the size in at most 80× the time;
* ``seq-1k`` / ``seq-100k``: ``start`` then 1,000 / 100,000 sequential commands on a
  1 MiB disk (the scenario of section "length").  Target: peak memory within ×12.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from typing import Any

from ._common import run_child

MiB = 1 << 20
CASES = ("dump-1g", "dump-1g-base", "dump-1000", "dump-1000-base", "parse-1m", "parse-64m",
         "seq-1k", "seq-100k")


def _dump_1g(dumps: bool) -> tuple[str, int]:
    lines = ["# config: size=1G", "start", "pwrite 0 4K 1", "dump", "pwrite 0 4K 2", "dump",
             "expect secondary 0 4K 2"]
    return "\n".join(x for x in lines if dumps or x[:4] not in ("dump", "expe")) + "\n", 8192


def _dump_1000(dumps: bool) -> tuple[str, int]:
    lines = ["# config: size=1M", "start"]
    for i in range(1000):
        lines.append(f"pwrite {(i * 4) % 1024}K 4K {i % 250 + 1}")
        if dumps:
            lines.append("dump")
    return "\n".join(lines) + "\n", 1000 * 4096


def _seq(n: int) -> str:
    from .scenario_length import scenario

    text, _ = scenario("seq", n)
    return "# config: size=1M\n" + text


def adversarial(size: int) -> str:
    """A trace file of ``size`` characters that the old depth check scanned in O(n²)."""
    n = (size - 2 - 65) // 2
    return '{"' + '\\"' * n + "[" * 65


def measure(name: str) -> dict[str, Any]:
    import labkit as lk
    from labkit import trace
    from labkit.errors import LabkitError

    out: dict[str, Any] = {"case": name}
    if name.startswith("parse"):
        text = adversarial(MiB if name == "parse-1m" else 64 * MiB)
        best = float("inf")
        for _ in range(3):  # the best of three: the machine may be shared
            t0 = time.perf_counter()
            try:
                trace.loads(text)
                out["refused"] = False
            except LabkitError:
                out["refused"] = True
            best = min(best, time.perf_counter() - t0)
        out["seconds"] = best
        out["chars"] = len(text)
    else:
        if name.startswith("dump-1g"):
            text, written = _dump_1g(not name.endswith("base"))
        elif name.startswith("dump-1000"):
            text, written = _dump_1000(not name.endswith("base"))
        else:
            text, written = _seq(1000 if name == "seq-1k" else 100_000), 0
        t0 = time.perf_counter()
        lab = lk.run_scenario(text)
        out["seconds"] = time.perf_counter() - t0
        out["dumps"] = len(lab.dumps)
        out["written_bytes"] = written
    out["seconds"] = round(out["seconds"], 4)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def run(log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every case in its own child; the targets."""
    r = {}
    for name in CASES:
        r[name] = run_child("benchmarks.bounds", "--case", name, timeout=900)
        log(f"  {name:<15} {r[name]['seconds']:9.3f} s   peak RSS "
            f"{r[name]['peak_rss_bytes'] / MiB:8.1f} MiB")
    checks = []
    for case, slack in (("dump-1g", 16 * MiB), ("dump-1000", 0)):
        full, base = r[case], r[case + "-base"]
        cost = full["peak_rss_bytes"] - base["peak_rss_bytes"]
        limit = 2 * full["written_bytes"] + slack
        checks.append({"figure": f"{case}: dumps' peak RSS over the base", "value": cost,
                       "limit": limit, "met": cost <= limit})
    t = r["parse-64m"]["seconds"] / max(r["parse-1m"]["seconds"], 1e-9)
    checks.append({"figure": "parser 64 MB / 1 MB time", "value": round(t, 1), "limit": 80,
                   "met": t <= 80 and r["parse-64m"]["refused"]})
    m = r["seq-100k"]["peak_rss_bytes"] / r["seq-1k"]["peak_rss_bytes"]
    checks.append({"figure": "100k / 1k commands peak RSS", "value": round(m, 2), "limit": 12,
                   "met": m <= 12})
    for c in checks:
        log(f"  {c['figure']}: {c['value']:,} (limit {c['limit']:,}): "
            f"{'met' if c['met'] else 'MISSED'}")
    return {"cases": r, "checks": checks}


def rows(result: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The table rows of ``python -m benchmarks``."""
    if not result:
        return []
    out = []
    for name, c in result["cases"].items():
        out.append((f"B {name}: time, peak RSS", f"{c['seconds']:.2f} s, "
                    f"{c['peak_rss_bytes'] / MiB:.0f} MiB", "", ""))
    for c in result["checks"]:
        value = (f"{c['value'] / MiB:.1f} MiB" if c["figure"].startswith("dump")
                 else f"{c['value']}×")
        limit = (f"≤ {c['limit'] / MiB:.1f} MiB" if c["figure"].startswith("dump")
                 else f"≤ {c['limit']}×")
        out.append((f"B {c['figure']}", value, limit, "met" if c["met"] else "MISSED"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bounds", description=__doc__)
    parser.add_argument("--case", choices=CASES, help="run one case (prints JSON)")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case)))
    else:
        run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
