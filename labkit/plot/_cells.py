"""A panel of cells, one per block, drawn by matplotlib and updated in place.

Used by the block map (one panel per layer) and the provenance figure.  Each
panel is one ``imshow`` image (one pixel of data per cell, scaled up with
nearest-neighbour sampling) whose array is replaced with ``set_data``, and a
few collections on top whose polygons are replaced with ``set_verts``: the
upper triangle of a block holding two bytes, hatching over runs of cells not
allocated in that layer, outlines around runs that changed, dashed boxes
around blocks a CowRequest holds.  Runs, not cells: a 4,096-cell panel needs
a handful of polygons, not thousands.
"""

from __future__ import annotations

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from ._common import (
    BORDER_COLOUR,
    EMPTY_COLOUR,
    HATCH_COLOUR,
    MARK_COLOUR,
    SMALL_PX,
    TEXT_COLOUR,
    Group,
    pt,
    rgb,
)

HATCH = "////"
MAX_PANEL_W = 512  # pixels: the widest cell grid (the figures stay under ~880 px)
MAX_PANEL_H = 128  # pixels: rows * cell size stays at or under this when it can


def grid_shape(n: int, cols: int | None = None, *, max_px: int = 15,
               width: int = MAX_PANEL_W) -> tuple[int, int, int]:
    """``(cols, rows, px)`` for ``n`` cells: rows of ``cols`` cells of ``px`` pixels.

    By default the smallest column count (32, 64, 128, ...) whose grid fits
    ``width`` x :data:`MAX_PANEL_H`; fewer than 32 cells make one row.
    """
    if cols is None:
        cols = n
        if n > 32:
            for cols in (32, 64, 128, 256, 512, 1024):
                if -(-n // cols) * max(1, min(max_px, width // cols)) <= MAX_PANEL_H:
                    break
    cols = max(1, min(int(cols), n))
    px = max(1, min(max_px, width // cols))
    return cols, -(-n // cols), px


def runs(mask: np.ndarray, cols: int) -> list[tuple[int, int, int]]:
    """Runs of True cells per row: ``(row, first column, end column)``."""
    n = mask.size
    rows = -(-n // cols)
    grid = np.zeros((rows, cols + 2), dtype=np.int8)
    flat = np.zeros(rows * cols, dtype=np.int8)
    flat[:n] = mask
    grid[:, 1:-1] = flat.reshape(rows, cols)
    d = np.diff(grid, axis=1)
    r0, c0 = np.nonzero(d == 1)
    _, c1 = np.nonzero(d == -1)
    return list(zip(r0.tolist(), c0.tolist(), c1.tolist(), strict=True))


def _rects(spans: list[tuple[int, int, int]], inset: float = 0.0) -> list[np.ndarray]:
    return [np.array([(c0 + inset, r + inset), (c1 - inset, r + inset),
                      (c1 - inset, r + 1 - inset), (c0 + inset, r + 1 - inset)])
            for r, c0, c1 in spans]


class CellPanel:
    """``n`` cells in rows of ``cols`` on the axes ``ax`` (placed pixel-exactly by the caller).

    Cell ``i`` is at row ``i // cols``, column ``i % cols``; the axes run
    from 0 to ``cols`` across and ``rows`` down.
    """

    def __init__(self, fig: Figure, ax: Axes, n: int, cols: int, px: int) -> None:
        self.n, self.cols, self.px = n, cols, px
        self.rows = -(-n // cols)
        self.ax = ax
        dpi = fig.dpi
        ax.set_xlim(0, cols)
        ax.set_ylim(self.rows, 0)
        ax.patch.set_visible(False)
        self.pixels = np.full((self.rows, cols, 4), 255, np.uint8)  # RGBA: fastest to draw
        self.image = ax.imshow(self.pixels, extent=(0, cols, self.rows, 0),
                               interpolation="nearest", aspect="auto", zorder=1)
        self.upper = PolyCollection([], linewidths=0, zorder=2)
        self.hatch = PolyCollection([], facecolors="none", edgecolors=HATCH_COLOUR,
                                    linewidths=0, hatch=HATCH,
                                    zorder=3)
        lines = []
        if px >= 6:  # white lines between cells (not on tiny cells: they would be all line)
            lines = [[(c, 0), (c, self.rows)] for c in range(1, cols)] + \
                    [[(0, r), (cols, r)] for r in range(1, self.rows)]
        self.borders = LineCollection(lines, colors=BORDER_COLOUR, linewidths=pt(1, dpi),
                                      zorder=4)
        self.outline = PolyCollection([], facecolors="none", edgecolors=MARK_COLOUR,
                                      linewidths=pt(2 if px >= 8 else 1.5, dpi), zorder=5)
        self.held = PolyCollection([], facecolors="none", edgecolors=MARK_COLOUR,
                                   linewidths=pt(2, dpi), linestyles=(0, (3, 2)), zorder=6)
        for c in (self.upper, self.hatch, self.borders, self.outline, self.held):
            ax.add_collection(c)
        self.message = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center",
                               va="center", fontsize=pt(13, dpi), color=TEXT_COLOUR, zorder=7,
                               bbox=dict(fc="white", ec="none", alpha=0.9, pad=3))
        self.stats = {"upper": 0, "hatch": 0, "outline": 0, "held": 0}
        self.key: tuple = ()

    def group(self) -> Group:
        """The panel's changing artists, inside the axes' rectangle.

        The frame (spines) is redrawn with them: it overlaps the cells' edge pixels,
        and a full draw paints it over the image.
        """
        x0, y0, x1, y1 = self.ax.bbox.extents
        group = Group([*self.artists, *self.ax.spines.values()], x0 - 2, y0 - 2, x1 + 2,
                      y1 + 2)
        self.groups = [group]
        return group

    @property
    def artists(self) -> list[Artist]:
        """What changes per update (drawn in every frame)."""
        return [self.image, self.upper, self.hatch, self.borders, self.outline, self.held,
                self.message]  # empty ones are hidden (see draw): nothing to draw

    def draw(self, lut: np.ndarray, col: np.ndarray, col2: np.ndarray | None = None,
             hatch: np.ndarray | None = None, outline: np.ndarray | None = None,
             held: np.ndarray | None = None, message: str = "") -> None:
        """Colour cell ``i`` ``lut[col[i]]`` (``lut``: an RGBA table), its upper triangle
        ``lut[col2[i]]`` where that differs; hatch, outline and box (dashed) the runs of
        cells so marked."""
        n, cols = self.n, self.cols
        flat = np.empty((self.rows * cols, 4), np.uint8)
        flat[:] = (*rgb(EMPTY_COLOUR), 255)
        flat[:n] = lut[col]
        self.pixels = flat.reshape(self.rows, cols, 4)
        self.image.set_data(self.pixels)
        if col2 is not None:
            split = np.flatnonzero(col2 != col)
            self.upper.set_verts([np.array([(c, r), (c + 1, r), (c + 1, r + 1)])
                                  for r, c in zip(*np.divmod(split, cols), strict=True)])
            self.upper.set_facecolor(lut[col2[split]] / 255.0 if split.size else "none")
            self.upper.set_visible(bool(split.size))
            self.stats["upper"] = int(split.size)
        else:
            self.upper.set_verts([])
            self.upper.set_visible(False)
            self.stats["upper"] = 0
        for name, coll, mask, inset in (("hatch", self.hatch, hatch, 0.0),
                                        ("outline", self.outline, outline, 0.06),
                                        ("held", self.held, held, 0.0)):
            spans = runs(mask, cols) if mask is not None and mask.any() else []
            coll.set_verts(_rects(spans, inset))
            coll.set_visible(bool(spans))
            self.stats[name] = int(mask.sum()) if mask is not None else 0
        self.message.set_text(message)
        self.message.set_visible(bool(message))
        self.key = (id(lut), col.tobytes(), b"" if col2 is None else col2.tobytes(),
                    *(b"" if m is None else np.packbits(m).tobytes()
                      for m in (hatch, outline, held)), message)

    def ticks(self, *, first: int = 0, show_x: bool = True, label: str | None = None) -> None:
        """Column ticks (the block number is ``first`` + row start + column) and row starts."""
        ax, cols, rows, dpi = self.ax, self.cols, self.rows, self.ax.figure.dpi
        fs = pt(SMALL_PX, dpi)
        width_px = cols * self.px
        step = next(s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1 << 30)
                    if width_px / (cols / s) >= 34 or s >= cols)
        if rows == 1:
            marks = list(range(0, cols, step))
            ax.set_xticks([c + 0.5 for c in marks])
            ax.set_xticklabels([str(first + c) for c in marks] if show_x else [], fontsize=fs)
            ax.set_yticks([])
        else:
            marks = list(range(0, cols, step))
            ax.set_xticks([c + 0.5 for c in marks])
            ax.set_xticklabels([str(c) for c in marks] if show_x else [], fontsize=fs)
            rstep = next(s for s in (1, 2, 4, 8, 16, 32, 64, 1 << 30)
                         if self.px * s >= 15 or s >= rows)
            ax.set_yticks([r + 0.5 for r in range(0, rows, rstep)])
            ax.set_yticklabels([str(first + r * cols) for r in range(0, rows, rstep)],
                               fontsize=fs)
        ax.tick_params(length=3, pad=2, width=pt(0.8, dpi))
        for s in ax.spines.values():
            s.set_linewidth(pt(0.8, dpi))
            s.set_color("#606060")
        if label is not None:
            ax.set_xlabel(label, fontsize=pt(SMALL_PX, dpi), labelpad=2)
