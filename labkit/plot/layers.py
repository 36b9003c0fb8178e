"""The block map: one panel per layer (secondary, hidden, active, the VM's view).

One cell per block, coloured by the block's byte with a fixed colour-blind-safe
mapping (:func:`~labkit.plot.byte_colour`); the legend names who wrote each
colour shown (``original``, ``nbd-write#2``, ``vm-write#1``) and only the marks
the figure shows: hatched cells are not (fully) allocated in that layer,
outlined cells changed in the last step, a dashed box surrounds blocks in
clusters held by a CowRequest (the backup job's ``inflight_reqs``).
Everything is read from the engine — ``lab.layers()``, :func:`labkit.sources.writers`,
``lab.top.backup_job.inflight_reqs`` — nothing here re-implements block
semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import sources
from ..errors import ConfigError
from ..lab import Lab
from ..layers import SECTOR, Layer
from ._cells import HATCH, CellPanel, grid_shape
from ._common import (
    BYTE_LUT,
    LAYER_TITLES,
    NODATA,
    SMALL_PX,
    TEXT_COLOUR,
    TEXT_PX,
    TITLE_PX,
    UNALLOC,
    BlitFigure,
    Group,
    LegendRows,
    Swatch,
    byte_colour,
    fit_text,
    hex_byte,
    new_figure,
    pt,
)
from ._shape import copy_requests, frozen_reads, shape

__all__ = ["LayerPlot", "cow_blocks", "plot_layers"]

LEGEND_ROW = 19  # pixels per legend entry at 12 px text
LEGEND_W = 214


@dataclass
class Cells:
    """Per block of one layer: colour indices (two where a block holds two bytes),
    hatch (not fully allocated), and a signature to tell what changed."""

    col: np.ndarray
    col2: np.ndarray
    hatch: np.ndarray
    allocated: int
    sig: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sig = (self.col.astype(np.int64) | (self.col2.astype(np.int64) << 9)
                    | (self.hatch.astype(np.int64) << 18))


def layer_cells(layer: Layer, block: int, nblocks: int) -> Cells:
    """Summarise a layer per block (the same reading as :func:`labkit.render.block_cells`)."""
    data = np.frombuffer(layer.data, dtype=np.uint8)
    alloc = layer.alloc
    pad = nblocks * block - data.size
    if pad:
        data = np.concatenate([data, np.repeat(data[-1:], pad)])
        alloc = np.concatenate([alloc, np.repeat(alloc[-1:], pad // SECTOR)])
    per = block // SECTOR
    a = alloc.reshape(nblocks, per)
    n_alloc = a.sum(axis=1)
    full = n_alloc == per
    none = n_alloc == 0
    blocks = data.reshape(nblocks, block)
    rows = np.arange(nblocks)
    first = blocks[rows, np.argmax(a, axis=1) * SECTOR]
    col = first.astype(np.uint16)
    col2 = col.copy()
    neq = blocks != blocks[:, :1]
    mixed = full & neq.any(axis=1)
    if mixed.any():
        where = np.flatnonzero(mixed)
        col2[where] = blocks[where, neq[where].argmax(axis=1)]
    col[none] = UNALLOC
    col2[none] = UNALLOC
    return Cells(col, col2, ~full, int((~none).sum()))


def cow_blocks(lab: Lab, nblocks: int) -> tuple[np.ndarray, list[str]]:
    """Blocks in clusters held by a copy in flight now (COLO's CowRequests, fleecing's
    copy requests and, in 7.2, its frozen snapshot reads), and a sentence per request."""
    held = np.zeros(nblocks, dtype=bool)
    notes: list[str] = []
    cs = lab.backup_cluster
    reqs = [(r, f"{r.owner} holds clusters") for r in copy_requests(lab)]
    reqs += [(r, f"{r.owner}'s frozen snapshot read holds clusters") for r in frozen_reads(lab)]
    for req, words in sorted(reqs, key=lambda x: (x[0].start, x[0].owner)):
        b0 = req.start * cs // lab.block
        b1 = min(nblocks, -(-(req.end * cs) // lab.block))
        held[b0:b1] = True
        notes.append(f"{words} {req.start}-{req.end - 1} (blocks {b0}-{b1 - 1})")
    return held, notes


class LayerPlot(BlitFigure):
    """The block map of the secondary: one panel per layer, one cell per block.

    What a trainee should notice: a primary write changes the *secondary* row
    only after the *hidden* row received the old contents (step 2 before step
    3); the *VM view* row keeps the old colour until a checkpoint; hatched
    cells of hidden and active read through to the layer below.
    """

    NAMES: tuple[str, ...] = ("secondary", "hidden", "active", "vm-view")  # a fleecing lab's:
    # live, fleece, snapshot (labkit.plot._shape)
    LEGEND_MARKS = 3  # entries besides the bytes: hatch, outline, CowRequest

    def __init__(self, lab: Lab, *, cols: int | None = None, dpi: int = 100,
                 title: str = "", header: bool = True) -> None:
        if cols is not None and (isinstance(cols, bool) or not isinstance(cols, int)
                                 or cols < 1):
            raise ConfigError(f"cols must be a positive number of blocks per row, got {cols!r}")
        self.header = header
        self.shape = shape(lab)
        self.NAMES = self.shape.layers
        self.block = lab.block
        self.nblocks = -(-lab.size // lab.block)
        self.cols, self.rows, self.px = grid_shape(self.nblocks, cols)
        self._prev: dict[str, np.ndarray] | None = None
        self.changed_cells: dict[str, np.ndarray] = {}
        self._build(dpi)
        self.update(lab, title=title)

    def __repr__(self) -> str:
        return (f"<LayerPlot {len(self.NAMES)} layers x {self.nblocks} blocks of "
                f"{self.block} bytes>")

    # layout (pixels) -----------------------------------------------------------
    def _build(self, dpi: int) -> None:
        cols, rows, px, n = self.cols, self.rows, self.px, self.nblocks
        k = len(self.NAMES)
        gw, gh = cols * px, rows * px
        # each panel's name sits above it (not left of it): the figure stays within the
        # 840 px a notebook's output area has at 1280x800 with the file browser open
        left = 44 if rows > 1 else 10
        label = 20  # the panel's name and allocation count, above the panel
        top, bottom = (58 if self.header else 8) + label, 46 if rows == 1 else 44
        width = left + gw + 16 + LEGEND_W
        legend_min = LEGEND_ROW * (2 + 4 + self.LEGEND_MARKS) + 8  # title, original, 4 bytes
        min_gap = label + 8
        height = max(top + k * gh + (k - 1) * min_gap + bottom, top - label + legend_min)
        gap = (height - top - bottom - k * gh) / (k - 1)  # spare height: between panels
        self.width, self.height, self.left, self.top = width, height, left, top
        self.fig = fig = new_figure(width, height, dpi)
        self.grids: dict[str, CellPanel] = {}
        self.alloc_texts = {}
        for i, name in enumerate(self.NAMES):
            y0 = round(bottom + (k - 1 - i) * (gh + gap))
            ax = fig.add_axes((left / width, y0 / height, gw / width, gh / height))
            panel = CellPanel(fig, ax, n, cols, px)
            last = i == k - 1
            panel.ticks(show_x=last, label=("block" if rows == 1 else
                                            "block = row start (left) + column")
                        if last else None)
            ax.annotate(LAYER_TITLES[name], (0, 1), xycoords="axes fraction",
                        xytext=(0, 4), textcoords="offset pixels", ha="left", va="bottom",
                        fontsize=pt(13, dpi), fontweight="bold", color="#000000")
            self.alloc_texts[name] = ax.annotate(
                "", (1, 1), xycoords="axes fraction", xytext=(0, 4),
                textcoords="offset pixels", ha="right", va="bottom",
                fontsize=pt(SMALL_PX, dpi), color=TEXT_COLOUR)
            self.grids[name] = panel
        self.title = fig.text(8 / width, 1 - 8 / height, "", ha="left", va="top",
                              fontsize=pt(TITLE_PX, dpi), fontweight="bold", color="#000000")
        self.status = fig.text(8 / width, 1 - 32 / height, "", ha="left", va="top",
                               fontsize=pt(TEXT_PX, dpi), color=TEXT_COLOUR)
        legend_rows = (height - top + label - 8) // LEGEND_ROW - 1
        self.legend = LegendRows(fig, width - LEGEND_W + 2, height - top + label + 4,
                                 legend_rows,
                                 row_h=LEGEND_ROW, col_w=LEGEND_W - 4,
                                 title="colour = who wrote it", hatch=HATCH)
        self.title.set_visible(self.header)
        self.status.set_visible(self.header)
        # what changes, in rectangles that do not overlap: each panel's cells, its
        # allocation count (left of it), the legend (right), the header (top)
        self._groups = [panel.group() for panel in self.grids.values()]
        self._alloc_groups = {}
        for name, panel in self.grids.items():
            _, _, x1, y1 = panel.ax.bbox.extents
            g = Group([self.alloc_texts[name]], x1 - 140, y1 + 3, x1 + 1, y1 + label + 2)
            self._alloc_groups[name] = g
            self._groups.append(g)
        self._groups += self.legend.row_groups()
        if self.header:
            self._header_group = Group([self.title, self.status], 0, height - top + label + 10,
                                       width, height)
            self._groups.append(self._header_group)

    @property
    def max_writers(self) -> int:
        """How many bytes the legend names one by one (the rest are summarised in a line)."""
        return self.legend.capacity - self.LEGEND_MARKS - 2  # original, "+ N more"

    def groups(self) -> list[Group]:
        return self._groups

    # update --------------------------------------------------------------------
    def update(self, lab: Lab, *, title: str | None = None,
               since: dict[str, Layer | None] | None = None) -> None:
        """Redraw from ``lab`` (the same figure, the same artists).

        Cells are outlined where they differ from the previous update, or from
        ``since`` (layer dumps, e.g. taken before the last step) when given.
        """
        if -(-lab.size // lab.block) != self.nblocks or lab.block != self.block:
            raise ConfigError("this plot was made for another disk geometry "
                              f"({self.nblocks} blocks of {self.block} bytes); make a new "
                              f"one with plot_layers(lab)")
        layers = lab.layers()
        held, notes = cow_blocks(lab, self.nblocks)
        prev = self._prev
        if since is not None:
            prev = {n: layer_cells(lay, self.block, self.nblocks).sig
                    for n, lay in since.items() if lay is not None and n in self.NAMES}
        sigs: dict[str, np.ndarray] = {}
        seen: set[int] = set()
        marks = {"hatch": False, "outline": False, "held": False}
        no = np.zeros(self.nblocks, dtype=bool)
        for name in self.NAMES:
            panel = self.grids[name]
            layer = layers.get(name)
            if layer is None:
                panel.draw(BYTE_LUT, np.full(self.nblocks, NODATA, dtype=np.uint16),
                           message="nothing to read yet: the backup has not started (fleece)"
                           if self.shape.fleecing else
                           "not readable: the VM gets EIO (replication not running)")
                self.alloc_texts[name].set_text("")
                self.changed_cells[name] = no
                continue
            cells = layer_cells(layer, self.block, self.nblocks)
            sigs[name] = cells.sig
            changed = (cells.sig != prev[name]) if prev is not None and name in prev else no
            self.changed_cells[name] = changed
            hatch = cells.hatch
            panel.draw(BYTE_LUT, cells.col, cells.col2, hatch, changed,
                       held if name == self.NAMES[0] else None)
            marks["hatch"] |= bool(hatch.any())
            marks["outline"] |= bool(changed.any())
            marks["held"] |= name == self.NAMES[0] and bool(held.any())
            self.alloc_texts[name].set_text(
                "" if name in ("secondary", "vm-view", "live", "snapshot")
                else f"alloc {cells.allocated}/{self.nblocks}")
            for arr in (cells.col, cells.col2):
                seen.update(int(b) for b in np.unique(arr) if b < 256)
        self._prev = sigs
        if title is not None:
            self.full_title = title
            fit_text(self.title, title, self.width - 16)
        # Only while a copy is held: on a finished lab (most figures in a lesson) a
        # "none held" line is a term the trainee may not have met yet, saying nothing.
        held_words = "copies in flight: " if self.shape.fleecing else "CowRequests: "
        fit_text(self.status, held_words + "; ".join(notes) if notes else "", self.width - 16)
        self._update_legend(lab, seen, marks)
        for name, g in self._alloc_groups.items():
            g.key = self.alloc_texts[name].get_text()
        for g, panel in zip(self._groups, self.grids.values(), strict=False):
            g.key = panel.key
        self.legend.set_keys()
        if self.header:
            self._header_group.key = (self.title.get_text(), self.status.get_text())
        self.changed()

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown (who wrote each colour shown, then the marks shown)."""
        return [label for label, _ in self.legend.entries]

    def _update_legend(self, lab: Lab, seen: set[int], marks: dict[str, bool]) -> None:
        writers = sources.writers(lab)
        entries: list[tuple[str, Swatch]] = []
        originals = sorted(b for b in seen if b < 0x80 and b
                           and writers.get(b, []) == ["original"])
        if originals:
            entries.append(("original data (greys)", ("fill", byte_colour(originals[0]))))
        shown = [b for b in sorted(seen) if b not in originals]
        room = self.max_writers
        more = shown[room:] if len(shown) > room + 1 else []
        for b in shown[:len(shown) - len(more)]:
            who = writers.get(b)
            if b == 0 and (who is None or who == ["original"]):
                label = "0x00 zeros" + (" (original)" if who else "")
            elif who:
                names = ", ".join(who[:2]) + (f" +{len(who) - 2}" if len(who) > 2 else "")
                label = f"{hex_byte(b)} {names}"
            else:
                label = f"{hex_byte(b)} unknown writer"
            entries.append((label, ("fill", byte_colour(b))))
        if more:
            entries.append((f"+ {len(more)} more ({hex_byte(more[0])}-{hex_byte(more[-1])})",
                            ("none",)))
        if marks["hatch"]:
            entries.append(("not allocated/unreadable" if self.shape.fleecing
                            else "not allocated in this layer", ("hatch",)))
        if marks["outline"]:
            entries.append(("changed by the last step", ("outline",)))
        if marks["held"]:
            entries.append(("held: copy/frozen read" if self.shape.fleecing
                            else "held by a CowRequest", ("dashed",)))
        self.legend.set_entries(entries)


def plot_layers(lab: Lab, *, cols: int | None = None, dpi: int = 100,
                title: str = "", header: bool = True) -> LayerPlot:
    """The block map of ``lab``: secondary, hidden, active and VM view, one cell per block.

    Colour = the block's byte (fixed colour-blind-safe mapping, see
    :func:`~labkit.plot.byte_colour`), the legend names who wrote the colours
    shown; hatched = not allocated in that layer; outlined = changed since the
    previous :meth:`LayerPlot.update`; dashed box = in a cluster held by a
    CowRequest.  ``cols`` blocks per row (default: 32, or more for big disks so
    that each panel stays at most 128 px tall); ``header=False`` leaves out the
    title and the CowRequest line (the widgets show those as text).  Call
    ``.update(lab)`` after each step: the figure is reused.
    """
    return LayerPlot(lab, cols=cols, dpi=dpi, title=title, header=header)
