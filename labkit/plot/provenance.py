"""For one VM read: which layer served each block, and the bytes it returned.

What a trainee should notice: after a COW, the read of a block the primary has
overwritten is served by *hidden* (the old copy); a conflicting read is one
served by the *secondary disk* that returned the primary's new byte.  The
figure shows the read's blocks only (a read of blocks 0–7 shows blocks 0–7),
and its legend only the layers, bytes and marks that appear.  Read from
``lab.provenance`` (the trace's reads per node), the read task's result and
``lab.violations()``.
"""

from __future__ import annotations

import textwrap

import numpy as np

from .. import sources
from ..errors import ArgumentError, ConfigError
from ..kernel import Task
from ..lab import Lab
from ._cells import CellPanel, grid_shape
from ._common import (
    BYTE_LUT,
    EMPTY,
    EMPTY_COLOUR,
    LAYER_COLOURS,
    NODATA,
    NODATA_COLOUR,
    TEXT_COLOUR,
    TEXT_PX,
    TITLE_PX,
    BlitFigure,
    Group,
    LegendRows,
    Swatch,
    byte_colour,
    hex_byte,
    new_figure,
    pt,
    resize_figure,
    rgb,
    rgba_table,
)

__all__ = ["ProvenancePlot", "plot_provenance"]

PROV_KEYS = ("", "active", "hidden", "secondary", "mixed")
PROV_LABELS = {"active": "active", "hidden": "hidden", "secondary": "secondary disk",
               "mixed": "mixed (sectors from several)"}
PROV_LUT = rgba_table([EMPTY_COLOUR] + [LAYER_COLOURS[k] for k in PROV_KEYS[1:]]
                      + [EMPTY_COLOUR] * (EMPTY + 1 - len(PROV_KEYS)))
PROV_LUT[NODATA] = (*rgb(NODATA_COLOUR), 255)
LEGEND_ROW, LEGEND_LINES, LEGEND_COLS, LEGEND_COL_W = 19, 2, 3, 190


def _read_span(lab: Lab, name: str) -> tuple[int, int] | None:
    """The read's (offset, length) from its request on the replication node."""
    return next(((e.offset, e.length) for e in lab.trace
                 if e.task == name and e.kind == "req-start" and e.node == lab.top.name), None)


class ProvenancePlot(BlitFigure):
    """Two rows of cells over the read's blocks: who served each, and the byte it got."""

    def __init__(self, lab: Lab, task: Task | str, *, cols: int | None = None,
                 dpi: int = 100) -> None:
        self.block = lab.block
        self.nblocks = -(-lab.size // lab.block)
        self.cols_wanted = cols
        self.dpi = dpi
        self.span: tuple[int, int] | None = None
        self.first, self.n = 0, self.nblocks
        self.fig = new_figure(400, 200, dpi)
        self._layout_key: tuple | None = None
        self.update(lab, task)

    def __repr__(self) -> str:
        # the same words as before the figure was sized to the read (stored notebook outputs)
        return f"<ProvenancePlot of a read over {self.nblocks} blocks>"

    def groups(self) -> list[Group]:
        return self._groups

    def _layout(self, first: int, n: int) -> None:
        """(Re)build the figure for blocks ``first`` .. ``first + n - 1``.

        Each row of cells has its own legend right under it (what its colours
        mean), so the figure has no column of legend beside empty space.
        """
        dpi, fig = self.dpi, self.fig
        fig.clear()
        self.first, self.n = first, n
        self.cols, self.rows, self.px = grid_shape(n, self.cols_wanted, max_px=40)
        gw, gh = self.cols * self.px, self.rows * self.px
        left = 130 if self.rows > 1 else 112
        top, ticks, xlabel = 74, 22, 20  # top: a title and two lines of status
        section = gh + ticks + 4 + LEGEND_LINES * LEGEND_ROW + 8
        width = max(640, left + max(gw, LEGEND_COLS * LEGEND_COL_W) + 20)
        height = top + 2 * section + xlabel
        resize_figure(fig, width, height)
        self.width, self.height = width, height
        self.grids: dict[str, CellPanel] = {}
        self.legends: dict[str, LegendRows] = {}
        for i, name in enumerate(("served by", "bytes read")):
            y_top = height - top - i * section
            y0 = y_top - gh
            ax = fig.add_axes((left / width, y0 / height, gw / width, gh / height))
            panel = CellPanel(fig, ax, n, self.cols, self.px)
            panel.ticks(first=first, label=None if i == 0 else (
                "block" if self.rows == 1 else "block = row start (left) + column"))
            ax.annotate(name, (0, 0.5), xycoords="axes fraction",
                        xytext=(-(40 if self.rows > 1 else 8), 0), textcoords="offset pixels",
                        ha="right", va="center", fontsize=pt(13, dpi), fontweight="bold")
            self.grids[name] = panel
            legend_top = y0 - ticks - 4 - (xlabel if i == 1 else 0)
            self.legends[name] = LegendRows(fig, left - 2, legend_top, LEGEND_LINES,
                                            ncol=LEGEND_COLS, col_w=LEGEND_COL_W,
                                            row_h=LEGEND_ROW)
        self.title = fig.text(8 / width, 1 - 8 / height, "", ha="left", va="top",
                              fontsize=pt(TITLE_PX, dpi), fontweight="bold", color="#000000")
        self.status = fig.text(8 / width, 1 - 32 / height, "", ha="left", va="top",
                               fontsize=pt(TEXT_PX, dpi), color=TEXT_COLOUR)
        self._groups = [p.group() for p in self.grids.values()]
        for legend in self.legends.values():
            self._groups += legend.row_groups()
        self._header = Group([self.title, self.status], 0, height - top + 10, width, height)
        self._groups.append(self._header)
        self.invalidate()

    def update(self, lab: Lab, task: Task | str | None = None) -> None:
        """Redraw for ``task`` (default: the same read as before) from ``lab``."""
        if task is None:
            name = getattr(self, "task", None)
            if name is None:
                raise ArgumentError("which read? pass the vm-read task or its name")
        elif isinstance(task, Task):
            name = task.name
        elif isinstance(task, str):
            name = task
        else:
            raise ArgumentError(f"task must be a vm-read Task or its name, got {task!r}")
        if name not in lab.kernel.tasks:
            raise ConfigError(f"no task named {name!r}; tasks: {', '.join(lab.kernel.tasks)}")
        self.task = name
        served = sources.provenance(lab, name)
        t = lab.kernel.tasks[name]
        span = _read_span(lab, name)
        if span is not None:
            first = span[0] // self.block
            n = -(-(span[0] + span[1]) // self.block) - first
        else:
            first, n = 0, self.nblocks
        if (first, n) != self._layout_key:
            self._layout_key = (first, n)
            self._layout(first, n)
        self.span = span
        window = served[first:first + n]
        col = np.array([PROV_KEYS.index(s) for s in window], dtype=np.uint16)
        data_col = np.full(n, EMPTY, dtype=np.uint16)
        result = t.result if t.state == "done" else None
        if isinstance(result, bytes) and span is not None:
            arr = np.frombuffer(result, dtype=np.uint8)
            for k in range(n):
                lo = max((first + k) * self.block, span[0]) - span[0]
                data_col[k] = arr[lo]
        elif span is not None:
            data_col[:] = NODATA
            col[col == 0] = NODATA  # not served yet
        bad = np.zeros(n, dtype=bool)
        msgs = [v.message for v in lab.violations() if v.task == name]
        for v in lab.violations():
            if v.task == name:
                k = v.offset // self.block - first
                if 0 <= k < n:
                    bad[k] = True
        self.grids["served by"].draw(PROV_LUT, col, outline=bad)
        self.grids["bytes read"].draw(BYTE_LUT, data_col, outline=bad)
        counts = {k: int((col == PROV_KEYS.index(k)).sum()) for k in PROV_KEYS[1:]}
        where = f" [{span[0]:#x}+{span[1]:#x}]" if span else ""
        last = first + n - 1
        blocks = f"block {first}" if n == 1 else f"blocks {first}-{last}"
        self.title.set_text(f"{name} reads {blocks}{where}" if span else
                            f"{name}: not started yet")
        got = ", ".join(f"{c} by {PROV_LABELS[k].split(' (')[0]}"
                        for k, c in counts.items() if c)
        status = msgs[0] if msgs else (
            f"served: {got} · {name} is {t.state}" if got else f"{name} is {t.state}")
        lines = textwrap.wrap(status, max(40, int((self.width - 16) / 6.8)))
        self.status.set_text("\n".join(lines[:2]) + (" …" if len(lines) > 2 else ""))
        self._update_legend(lab, counts, data_col, bool(bad.any()), t.state)
        for g, panel in zip(self._groups, self.grids.values(), strict=False):
            g.key = panel.key
        self._header.key = (self.title.get_text(), self.status.get_text())
        self.changed()

    def _update_legend(self, lab: Lab, counts: dict[str, int], data_col: np.ndarray,
                       conflict: bool, state: str) -> None:
        served: list[tuple[str, Swatch]] = [
            (PROV_LABELS[k], ("fill", LAYER_COLOURS[k])) for k, c in counts.items() if c]
        if (data_col == NODATA).any():
            served.append(("not returned yet", ("fill", NODATA_COLOUR)))
        if conflict:
            served.append(("conflicting read here", ("outline",)))
        got = sorted({int(c) for c in data_col if c < 256})
        read: list[tuple[str, Swatch]] = []
        writers = sources.writers(lab)
        originals = [b for b in got if writers.get(b) == ["original"] and b]
        if originals:
            read.append(("original data (greys)", ("fill", byte_colour(originals[0]))))
        for b in got:
            if b in originals:
                continue
            who = writers.get(b)
            label = f"{hex_byte(b)} " + (", ".join(who[:2]) if who else "unknown writer")
            read.append((label, ("fill", byte_colour(b))))
        for name, entries in (("served by", served), ("bytes read", read)):
            legend = self.legends[name]
            room = legend.capacity
            if len(entries) > room:
                entries = [*entries[:room - 1], (f"+ {len(entries) - room + 1} more", ("none",))]
            legend.set_entries(entries)
            legend.set_keys()

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown."""
        return [label for legend in self.legends.values() for label, _ in legend.entries]


def plot_provenance(lab: Lab, read_task: Task | str, *, cols: int | None = None,
                    dpi: int = 100) -> ProvenancePlot:
    """Which layer served each block of a VM read (``lab.provenance``), and what it read.

    Top row: active / hidden / secondary disk / mixed per block of the read;
    bottom row: the bytes returned (same colours as the block map).  A
    conflicting read's block is outlined.  ``.update(lab)`` redraws in place
    as the read proceeds.
    """
    return ProvenancePlot(lab, read_task, cols=cols, dpi=dpi)
