"""``python -m benchmarks`` (``make bench``): run the sections, print a table, write JSON.

Options: ``--only throughput,exploration,interactivity,notebooks,setup,length,races,bounds,hub``
runs some sections (``hub``: a class of 10, then 30, simulated trainees on a real
JupyterHub, about 15 minutes); ``--full-naive`` runs the 4-task naive explorations to the end
(minutes each) instead of within a budget; ``--tests`` also runs ``make test`` in
the clean clone (6-7 minutes more: past the 10-minute budget of the default
run, so it is separate); ``--output PATH`` (default ``benchmarks/results.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from . import (
    bounds,
    exploration,
    hub,
    interactivity,
    notebooks,
    qemu_races,
    scenario_length,
    setup_time,
    throughput,
)
from ._common import ROOT, MiB, cores_busy, machine

SECTIONS = ("throughput", "exploration", "interactivity", "notebooks", "setup", "length", "races",
            "bounds", "hub")
BUSY_CORES = 0.3  # CPU used by other processes above which the figures are suspect


def _met(flag: bool | None) -> str:
    return "n/a" if flag is None else ("met" if flag else "MISSED")


Row = tuple[str, str, str, str]


def table(results: dict[str, Any]) -> list[Row]:
    """(figure, value, target, met) rows for every figure that has a target or matters."""
    return [*_throughput_rows(results.get("throughput")),
            *_exploration_rows(results.get("exploration", [])),
            *_interactivity_rows(results.get("interactivity", [])),
            *_notebook_rows(results.get("notebooks")),
            *_setup_rows(results.get("setup")),
            *_length_rows(results.get("length")),
            *qemu_races.rows(results.get("races")),
            *bounds.rows(results.get("bounds")),
            *hub.rows(results.get("hub"))]


def _throughput_rows(t: dict[str, Any] | None) -> list[Row]:
    if not t:
        return []
    rows: list[Row] = []
    sim, traced, q = t["simulator"], t["simulator_traced"], t["qemu"]
    rows.append(("1 simulator ops/s (tracing off)", f"{sim['ops_per_s']:,.0f}", "", ""))
    runs = t.get("tracing_runs_ops_per_s")
    if runs:
        for mode in ("off", "on"):
            rows.append((f"1 tracing {mode}: ops/s, {len(runs[mode])} runs in pair order",
                         ", ".join(f"{v:,.0f}" for v in runs[mode]), "", ""))
    else:
        rows.append(("1 simulator ops/s (tracing on)", f"{traced['ops_per_s']:,.0f}", "", ""))
    if "tracing_ratio" in t:
        pairs = ", ".join(f"{x:.2f}" for x in t.get("tracing_pair_ratios", []))
        rows.append((f"1 tracing off / on (median pair; pairs {pairs})",
                     f"{t['tracing_ratio']:.2f}×", "≤ 1.25×",
                     _met(t["tracing_met"])))
    if q.get("available"):
        rows.append((f"1 QEMU {q['version']} ops/s", f"{q['ops_per_s']:,.0f}", "", ""))
        rows.append(("1 simulator / QEMU", f"{t['ratio']:.2f}×", "≥ 1.0×",
                     _met(t["ratio_met"])))
        rows.append(("1 reads agree (20,000 reads)", "yes" if t["reads_agree"] else "NO",
                     "yes", _met(t["reads_agree"])))
    else:
        rows.append(("1 QEMU", "not available", "", "n/a"))
    if q.get("available"):
        rows.append(("1 set-up: simulator / QEMU", f"{sim['setup_s']:.2f} s / "
                     f"{q['setup_s']:.2f} s", "", ""))
    rows.append(("1 bytes the workload touches", f"{t['touched_bytes'] / MiB:.1f} MiB", "",
                 ""))
    rows.append(("1 simulator peak RSS over baseline",
                 f"{sim['peak_over_baseline'] / MiB:.1f} MiB "
                 f"({t['memory_ratio']:.2f}× touched)", "≤ 2× touched",
                 _met(t["memory_met"])))
    return rows


def _exploration_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        if r.get("era") == "7.2":
            rows.append((f"2 era 7.2 {r['scenario']} ({r['tasks']} tasks, design 4.0): "
                         f"complete verification",
                         f"{r['reduced_s']:.2f} s, {r['reduced_runs']} runs "
                         f"({r['reduced_verdict']})",
                         f"≤ {r['target_s']:g} s", _met(r["time_met"])))
            continue
        if r["tasks"] != 4 and r["design"] != "2.8":
            continue
        naive = f"{r['naive_runs']}" if r["naive_complete"] else f"≥ {r['naive_runs']}"
        fewer = f"{'≥ ' if r['fewer_is_lower_bound'] else ''}{r['fewer']}×"
        target = "≥ 10×" if r["tasks"] == 4 else ""
        rows.append((f"2 {r['tasks']} tasks {r['design']}: runs reduced / naive",
                     f"{r['reduced_runs']} / {naive} ({fewer} fewer)", target,
                     _met(r.get("fewer_met")) if r["tasks"] == 4 else ""))
        if "time_met" in r:
            rows.append((f"2 {r['tasks']} tasks 2.8: complete verification",
                         f"{r['reduced_s']:.2f} s ({r['reduced_verdict']})",
                         f"≤ {r.get('target_s', 10):g} s",
                         _met(r["time_met"])))
    return rows


def _interactivity_rows(results: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    for r in results:
        rows.append((f"3 {r['widget']} Step, {r['cells']} cells: p50 / p95",
                     f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms",
                     f"p95 ≤ {r['target_p95_ms']:.0f} ms", _met(r["met"])))
        if "last_image_p95_ms" in r:  # in the browser: also until the click's last image
            rows.append(("  … until every image of the click: p50 / p95",
                         f"{r['last_image_p50_ms']:.1f} / {r['last_image_p95_ms']:.1f} ms",
                         "", ""))
    return rows


def _notebook_rows(nb: dict[str, Any] | None) -> list[Row]:
    if not nb:
        return []
    rows: list[Row] = [(f"4 {r['notebook']}", f"{r['seconds']:.1f} s"
                        + (" ERROR" if r["error"] else ""), "≤ 20 s", _met(r["met"]))
                       for r in nb["notebooks"]]
    rows.append(("4 notebooks total", f"{nb['total_s']:.1f} s", "≤ 90 s", _met(nb["met"])))
    return rows


def _setup_rows(s: dict[str, Any] | None) -> list[Row]:
    if not s:
        return []
    rows: list[Row] = [
        ("5 clean clone → venv installed", f"{s['setup_s']:.1f} s", "", ""),
        ("5 .venv installed size", f"{s['venv_bytes'] / 1e6:.0f} MB", "", ""),
    ]
    if "test_s" not in s:
        rows.append(("5 make test in the clone", "not run (--tests runs it)", "passes",
                     "n/a"))
    else:
        rows.append(("5 make test in the clone", f"{s['test_s']:.1f} s "
                     f"({s['test_summary']})", "passes", _met(s["tests_passed"])))
        rows.append(("5 clean clone → passing make test", f"{s['clone_to_passing_s']:.1f} s",
                     "", ""))
    return rows


def _length_rows(length: dict[str, Any] | None) -> list[Row]:
    if not length:
        return []
    rows: list[Row] = []
    for name, r in length["cases"].items():
        rows.append((f"6 {name} ({r['decisions']} decisions)",
                     f"{r['seconds']:.3f} s, peak {r['peak_bytes'] / MiB:.1f} MiB", "", ""))
    for r in length["ratios"]:
        rows.append((f"6 {r['pair']}: time / memory",
                     f"×{r['time_ratio']:.1f} / ×{r['memory_ratio']:.1f}",
                     f"≤ ×{scenario_length.TARGET_RATIO:.0f}", _met(r["met"])))
    return rows


def print_table(rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    heads = ("figure", "value", "target", "")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--full-naive", action="store_true",
                        help="run the 4-task naive explorations to the end (minutes each)")
    parser.add_argument("--tests", action="store_true",
                        help="also run make test in the clean clone (6-7 minutes more)")
    parser.add_argument("--steps", type=int, default=interactivity.STEPS,
                        help="widget Steps timed per widget and size")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SECTIONS)}")

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {"command": "python -m benchmarks " + " ".join(
        argv if argv is not None else sys.argv[1:]), "machine": machine()}
    runners = {
        "throughput": lambda: throughput.run(log=log),
        "exploration": lambda: exploration.run(full_naive=args.full_naive, log=log),
        "interactivity": lambda: interactivity.run(steps=args.steps, log=log),
        "notebooks": lambda: notebooks.run(log=log),
        "setup": lambda: setup_time.run(tests=args.tests, log=log),
        "length": lambda: scenario_length.run(log=log),
        "races": lambda: qemu_races.run(log=log),
        "bounds": lambda: bounds.run(log=log),
        "hub": lambda: hub.run(log=log),
    }
    for n, name in enumerate(SECTIONS, 1):
        if name not in wanted:
            continue
        others = cores_busy()
        busy = f"  (other jobs keep {others:.1f} cores busy: timings may be inflated)" \
            if others > BUSY_CORES else ""
        log(f"[{n}] {name}{busy}")
        results.setdefault("cores_busy_at_start", {})[name] = round(others, 2)
        t0 = time.perf_counter()
        results[name] = runners[name]()
        results.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    print()
    print_table(table(results))
    print(f"\nwall time {results['wall_s']:.0f} s; results in {args.output}")
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
