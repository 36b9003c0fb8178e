"""Section 3: one Step of each widget, headless and in the browser, p50 and p95.

Headless: each widget without a front end (matplotlib's Agg backend); a Step
is what its button does: the engine's decision(s) and the redraw of its
figures into the widget's PNGs.  Disks of 256 and 4096 cells (blocks of 4 KiB)
per layer: 1 MiB and 16 MiB.

In the browser (:mod:`benchmarks.browser_latency`): from the click in
JupyterLab in Chromium to the widget's new image — what a trainee feels —
at 256 and 4,096 cells (targets: p95 ≤ 100 ms and ≤ 200 ms).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from . import browser_latency
from ._common import run_child
from .browser_latency import percentile, races

os.environ.setdefault("MPLBACKEND", "Agg")

STEPS = 200
CELLS = (256, 4096)
TARGET_P95_MS = {256: 50.0, 4096: 150.0}


def _time_steps(step: Callable[[], Any], reset: Callable[[], Any] | None,
                done: Callable[[], bool], steps: int) -> list[float]:
    out: list[float] = []
    while len(out) < steps:
        if done():
            if reset is None:
                raise RuntimeError("the widget ran out of steps")
            reset()  # not timed: going back to the start is a rebuild, not a Step
            continue
        t0 = time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def stepper(cells: int, steps: int = STEPS) -> list[float]:
    from labkit.widgets import WorkflowStepper
    app = WorkflowStepper(races(cells, steps), size=cells * 4096)
    return _time_steps(app.step, app.reset, lambda: app.session.done, steps)


def playground(cells: int, steps: int = STEPS) -> list[float]:
    from labkit.widgets import SchedulerPlayground
    app = SchedulerPlayground(races(cells, steps), size=cells * 4096)

    def step() -> None:
        app.choose(app.session.runnable()[-1].name)  # the last runnable: preempt often

    return _time_steps(step, app.reset, lambda: app.session.done, steps)


def replay(cells: int, steps: int = STEPS) -> list[float]:
    from labkit import scenarios
    from labkit.widgets import RaceReplay
    app = RaceReplay(scenarios.load("canonical"), designs=("none",), size=cells * 4096)
    app.load("none", 0)
    return _time_steps(lambda: app.seek(app.position + 1), lambda: app.seek(0),
                       lambda: app.position >= len(app.schedule), steps)


WIDGETS = {"WorkflowStepper": stepper, "SchedulerPlayground": playground,
           "RaceReplay": replay}


def run(steps: int = STEPS, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Each widget and size in a child of its own: widgets stay registered with
    ipywidgets for the life of a process, and one measurement must not slow the next."""
    rows = []
    for cells in CELLS:
        for name in WIDGETS:
            t0 = time.perf_counter()
            ms = run_child("benchmarks.interactivity", name, str(cells), str(steps))["ms"]
            p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
            target = TARGET_P95_MS[cells]
            rows.append({"widget": name, "cells": cells, "steps": len(ms),
                         "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                         "max_ms": round(max(ms), 2), "target_p95_ms": target,
                         "met": p95 <= target,
                         "wall_s": round(time.perf_counter() - t0, 2)})
            log(f"  {name:<20} {cells:>5} cells: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms "
                f"(target ≤ {target:.0f})")
    t0 = time.perf_counter()
    browser = browser_latency.run(log=log)
    for r in browser:
        r["wall_s"] = round(time.perf_counter() - t0, 2)
    return rows + browser


if __name__ == "__main__":
    import json
    import sys

    if len(sys.argv) == 4:
        import matplotlib
        matplotlib.use("Agg")
        widget, cells, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        print(json.dumps({"ms": WIDGETS[widget](cells, steps)}))
    else:
        run()
