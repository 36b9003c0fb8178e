"""A widget's view as one PNG, drawn headless: its figures and its text twin.

Not a browser screenshot (that is ``tests/test_browser.py``'s job): the same
pixels the widget's Image widgets show, stacked, with the text twin — buttons,
labels, banner, block-map table — set in monospace below them.  The docs'
``widget-*.png`` and ``plot-*.png`` are made by :func:`write_docs`
(``python -m labkit.widgets docs``).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from ..plot import figure_png, new_figure

if TYPE_CHECKING:  # _view imports this module to take its stills
    from ._view import App


def snapshot_png(app: App, *, dpi: int = 100, twin: bool = True,
                 title: str | None = None) -> bytes:
    """The widget ``app`` as a PNG: a title, its figure(s) stacked, its text twin below
    (``twin=False``: the figures only).

    Text at 12 px (the twin) and 14 px (the title) at the image's natural size.
    """
    images = [np.asarray(Image.open(io.BytesIO(p.png())).convert("RGB")) for p in app.figures()]
    px = 12.0  # DejaVu Sans Mono: 0.602 em per character
    pad, char_w, size = 10, 0.602 * px, px * 72 / dpi
    line_h = px * 1.17
    fig_w = max((im.shape[1] for im in images), default=800)
    width = fig_w + 2 * pad
    per_line = int((width - 2 * pad) / char_w)
    lines: list[str] = []
    for line in app.text().splitlines() if twin else []:
        lines += textwrap.wrap(line, per_line, subsequent_indent="      ",
                               drop_whitespace=False, replace_whitespace=False) or [""]
    head = 32
    figs_h = sum(im.shape[0] + 6 for im in images)
    height = head + figs_h + (round(len(lines) * line_h) + 2 * pad if twin else 4)
    fig = new_figure(width, height, dpi)
    if title is None:
        title = f"{type(app).__name__}: its figures, as the widget shows them, and its text twin"
    fig.text(pad / width, 1 - 8 / height, title, ha="left",
             va="top", fontsize=14 * 72 / dpi, fontweight="bold")
    y = height - head
    for im in images:
        y -= im.shape[0]
        fig.figimage(im, xo=pad, yo=y)
        y -= 6
    if twin:
        fig.patches.append(Rectangle((pad / 2 / width, pad / 2 / height),
                                     1 - pad / width, (y - pad / 2) / height,
                                     transform=fig.transFigure, fc="#F6F6F6", ec="#D0D0D0",
                                     lw=0.8, zorder=0))
        fig.text(pad / width, (y - 4) / height, "\n".join(lines), ha="left", va="top",
                 family="DejaVu Sans Mono", fontsize=size, linespacing=1.17)
    return figure_png(fig)


def write_docs(outdir: str | Path) -> list[Path]:
    """Render the docs' PNGs (each widget and each plot) into ``outdir``."""
    import labkit as lk
    from labkit import plot, scenarios
    from labkit.lab import ScenarioRun

    from . import RaceReplay, SchedulerPlayground, WorkflowStepper

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, data: bytes) -> None:
        path = out / name
        path.write_bytes(data)
        written.append(path)

    # WorkflowStepper: the click that ran the COW to its end: hidden holds the old
    # copy (outlined), the new data is on its way to the secondary disk (step 3)
    stepper = WorkflowStepper("start\npwrite 5b 4K 0xbb\nvread 5b 4K\nvwrite 20b 4K 0xcc",
                              size="128K")
    while stepper.current_step < 3:
        stepper.step()
    save("widget-stepper.png", snapshot_png(stepper))

    # SchedulerPlayground, design 2.8: the write waits for the read's CowRequest
    canonical = scenarios.load("canonical")
    play = SchedulerPlayground(canonical, design="2.8", timeline=True)
    play.choose("vm-read#1")
    play.choose("nbd-write#1")
    save("widget-playground.png", snapshot_png(play))

    # RaceReplay: the counterexample just before the read resumes with primary data
    replay = RaceReplay(canonical)
    replay.seek(len(replay.schedule) - 3)
    save("widget-racereplay.png", snapshot_png(replay))

    # the plots on their own
    lab = lk.run_scenario("start\npwrite 5b 4K 0xbb\nvwrite 20b 8K 0xcc\ncheckpoint\n"
                          "pwrite 6b 4K 0xbc\nvwrite 4b 4K 0xcf", size="128K")
    layers = plot.plot_layers(lab, title="after: pwrite 0xbb, vwrite 0xcc, checkpoint, "
                                         "pwrite 0xbc, vwrite 0xcf")
    lab.primary_write(24 * 4096, 4096, 0xBD)
    lab.run()
    layers.update(lab, title="... then pwrite 0xbd to block 24 (outlined: changed by it)")
    save("plot-layers.png", layers.png())
    # a read through all three layers: active (the VM's write), hidden (the COW's copy
    # of cluster 0 = blocks 0-15), the secondary disk (blocks 16 on)
    lab = lk.run_scenario("start\npwrite 5b 4K 0xbb\nvwrite 4b 4K 0xcf", size="128K")
    read = lab.vm_read(2 * 4096, 20 * 4096)
    lab.run()
    save("plot-provenance.png", plot.plot_provenance(lab, read).png())
    # the block graph in the race of design 2.8: the read parked at the secondary disk
    # (hidden was empty), the write's COW waiting for the read's CowRequest
    lab = lk.build_secondary(size="128K", design="2.8",
                             policy=lk.Scripted(["start#1"] * 3 + ["vm-read#1", "nbd-write#1"]))
    run = ScenarioRun(lab, canonical)
    for _ in range(5):
        run.step()
    save("plot-graph.png", plot.plot_graph(
        lab, highlight=plot.parked_tasks(lab),
        title="design 2.8: the read parked at the secondary disk, the write waits").png())
    lab = lk.build_secondary(size="128K", design="2.8",
                             policy=lk.Scripted(["start#1"] * 3 + ["vm-read#1", "nbd-write#1"]))
    lab.play(canonical)
    save("plot-timeline.png", plot.plot_timeline(
        lab, title="design 2.8: the write's COW waits for the read's CowRequest").png())
    return written
