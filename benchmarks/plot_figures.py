"""The figures alone: ``update(lab)`` + ``png()`` per scheduling decision, p50 and p95.

``python -m benchmarks.plot_figures``.  What a widget's Step costs in
``labkit.plot`` (the engine's decision is not timed): disks of 256 cells
(``size="1M", block="4K"``) and 4,096 cells (``size="2M", block="512"``), a run of
races (a VM read and a primary write to one block in each ``par``), each figure
updated and encoded after every decision.  Not part of ``make bench`` (the
interactivity section times whole widget Steps).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")

STEPS = 120
GEOMETRIES = {256: ("1M", "4K"), 4096: ("2M", "512")}


def _races(cells: int, block: int, n: int) -> str:
    lines = ["start"]
    for i in range(n):
        b = (i * 37) % cells
        lines.append(f"par {{ vread {b * block} {block}; pwrite {b * block} {block} "
                     f"{0x80 + i % 0x7f:#04x} }}")
    return "\n".join(lines)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q))]


def measure(cells: int, figure: str, steps: int = STEPS) -> list[float]:
    import labkit as lk
    from labkit import plot
    from labkit.lab import ScenarioRun

    size, block = GEOMETRIES[cells]
    lab = lk.build_secondary(size=size, block=block)
    run = ScenarioRun(lab, _races(cells, lab.block, steps))
    if figure == "layers":
        fig = plot.plot_layers(lab, header=False)

        def update() -> None:
            fig.update(lab)
    else:
        fig = plot.plot_timeline(lab, fit=False)

        def update() -> None:
            fig.update(lab, start=max(0, len(lab.schedule) - 30))
    fig.png()
    out: list[float] = []
    while len(out) < steps and not run.done:
        run.step()
        t0 = time.perf_counter()
        update()
        fig.png()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    for cells in GEOMETRIES:
        for figure in ("layers", "timeline"):
            ms = measure(cells, figure)
            print(f"{figure:9s} {cells:5d} cells: update()+png() p50 {_pct(ms, 0.5):6.1f} ms"
                  f"  p95 {_pct(ms, 0.95):6.1f} ms  ({len(ms)} calls)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
