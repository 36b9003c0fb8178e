"""Plots of the COLO secondary: block maps, read provenance and a swim-lane timeline.

Three views, each a small class around one matplotlib
:class:`~matplotlib.figure.Figure` that is **created once and updated in place**:
``update(lab)`` refills the same image artists, collections and texts, so a
widget can redraw after every scheduling decision without building anything new.

* :func:`plot_layers` — the block map: one panel per layer (secondary, hidden,
  active, the VM's view), one cell per block, coloured by the block's byte with
  a fixed colour-blind-safe mapping (:func:`byte_colour`); the legend names
  who wrote each colour (``original``, ``nbd-write#2``, ``vm-write#1``).
  Hatched cells are not allocated in that layer; outlined cells changed in the
  last step; a black dot marks blocks in clusters held by a CowRequest.
* :func:`plot_provenance` — for one VM read, which layer served each block,
  and the bytes it returned.
* :func:`plot_timeline` — swim lanes per task: requests as bars (one colour per
  node), CowRequest spans, waits, each scheduling decision, and the numbers of
  the backup workflow's steps 1–3 (from :func:`labkit.steps.workflow_step`).

The figures are plain ``Figure`` objects on the Agg canvas, never pyplot
figures: they do not accumulate in ``plt.get_fignums()``, render identically in
tests, on the command line and on Binder, and show in a notebook through
``_repr_png_``.  Everything shown is *read* from the engine —
``lab.layers()``, ``lab.writers()``, ``lab.provenance()``, ``lab.trace``,
``lab.top.backup_job.inflight_reqs`` — nothing here re-implements block
semantics.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.patches import Patch
from matplotlib.text import Text

from ..kernel import Event, Task
from ..lab import Lab
from ..layers import SECTOR, Layer
from ..steps import workflow_step

__all__ = [
    "LAYER_COLOURS",
    "WRITE_PALETTE",
    "LayerPlot",
    "ProvenancePlot",
    "TimelinePlot",
    "byte_colour",
    "plot_layers",
    "plot_provenance",
    "plot_timeline",
]

# --- the fixed colour mapping -------------------------------------------------------

#: Colours of written bytes (>= 0x80): byte ``b`` gets ``WRITE_PALETTE[b % 11]``.
#: Okabe–Ito and Paul Tol colours (colour-blind safe).  The order was chosen by
#: maximising the smallest colour difference (CIELAB, averaged over normal vision
#: and simulated deuteranopia/protanopia) between bytes 1–3 apart and between the
#: bytes examples use most (0xaa, 0xbb–0xbe, 0xcc–0xcf); 11 colours, so bytes 16,
#: 17 or 18 apart (0xbb/0xcc, 0xbd/0xcf) never share one.
WRITE_PALETTE = (
    "#E69F00",  # orange          (0xbb)
    "#661100",  # dark brown      (0xbc)
    "#CC79A7",  # reddish purple  (0xbd)
    "#332288",  # indigo          (0xbe)
    "#117733",  # green
    "#56B4E9",  # sky blue        (0xaa)
    "#F0E442",  # yellow          (0xcc)
    "#D55E00",  # vermillion      (0xcd)
    "#882255",  # wine            (0xce)
    "#009E73",  # bluish green    (0xcf)
    "#0072B2",  # blue
)
#: Bytes below 0x80 (the original ``fill="index"`` data) are greys, four levels
#: so that neighbouring blocks stay distinguishable.
ORIGINAL_GREYS = ("#C4C4C4", "#E2E2E2", "#B3B3B3", "#D3D3D3")
ZERO_COLOUR = "#FFFFFF"
UNALLOC_COLOUR = "#FFFFFF"
HATCH_COLOUR = "#8C8C8C"
NODATA_COLOUR = "#ECECEC"
EMPTY_COLOUR = "#FFFFFF"
BORDER_COLOUR = "#FFFFFF"
MARK_COLOUR = "#000000"

#: Which layer served a read (provenance) and request bars in the timeline.
LAYER_COLOURS = {
    "active": "#0077BB",
    "hidden": "#EE7733",
    "secondary": "#009988",
    "mixed": "#EE3377",
    "colo-top": "#BBBBBB",
}
NODE_LAYER = {"secondary-disk": "secondary", "hidden": "hidden", "active": "active",
              "colo-top": "colo-top"}
LAYER_TITLES = {"secondary": "secondary", "hidden": "hidden", "active": "active",
                "vm-view": "VM view"}

UNALLOC = 256  # LUT index: not allocated in this layer
NODATA = 257  # LUT index: no data (the VM gets EIO; a read not finished)
EMPTY = 258  # LUT index: past the end of the disk


def byte_colour(byte: int) -> str:
    """The fixed colour (``"#rrggbb"``) of a block whose bytes are all ``byte``.

    0x00 is white, bytes below 0x80 (the original data of ``fill="index"``) are
    greys, written bytes (0x80 and up, as the examples use) take
    :data:`WRITE_PALETTE` in turn.  The mapping never depends on the run.
    """
    if not 0 <= byte <= 255:
        raise ValueError(f"byte must be 0-255, got {byte!r}")
    if byte == 0:
        return ZERO_COLOUR
    if byte < 0x80:
        return ORIGINAL_GREYS[byte % len(ORIGINAL_GREYS)]
    return WRITE_PALETTE[byte % len(WRITE_PALETTE)]


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


_BYTE_LUT = np.array([_rgb(byte_colour(b)) for b in range(256)]
                     + [_rgb(UNALLOC_COLOUR), _rgb(NODATA_COLOUR), _rgb(EMPTY_COLOUR)],
                     dtype=np.uint8)
_PROV_KEYS = ("", "active", "hidden", "secondary", "mixed")
_PROV_LUT = np.array([_rgb(EMPTY_COLOUR)] + [_rgb(LAYER_COLOURS[k]) for k in _PROV_KEYS[1:]]
                     + [_rgb(EMPTY_COLOUR)] * (EMPTY + 1 - len(_PROV_KEYS)), dtype=np.uint8)
_PROV_LUT[NODATA] = _rgb(NODATA_COLOUR)


def _hex(b: int) -> str:
    return f"0x{b:02x}"


# --- rendering helpers -----------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _encode_png(rgba: np.ndarray) -> bytes:
    """RGB(A) pixels as a PNG (8-bit RGB, filter Up, zlib level 1, no metadata).

    Twice as fast as a general encoder on these flat-coloured figures, and
    deterministic: same pixels, same bytes.
    """
    h, w = rgba.shape[:2]
    rows = np.ascontiguousarray(rgba[..., :3]).reshape(h, w * 3)
    raw = np.empty((h, w * 3 + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter "Up": each row minus the one above (cells repeat vertically)
    raw[0, 0] = 0
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
            + _png_chunk(b"IEND", b""))


def _new_figure(width: int, height: int, dpi: int) -> Figure:
    """A figure of ``width`` x ``height`` pixels on an Agg canvas (not a pyplot figure)."""
    # +0.5: the canvas truncates the size to whole pixels; never lose one to rounding
    fig = Figure(figsize=((width + 0.5) / dpi, (height + 0.5) / dpi), dpi=dpi,
                 facecolor="white")
    FigureCanvasAgg(fig)
    return fig


_TEXT_CACHE: dict[tuple[str, float, str, int], tuple[np.ndarray, int]] = {}


def _text_bitmap(text: str, size: float, dpi: int, weight: str = "normal"
                 ) -> tuple[np.ndarray, int]:
    """A one-line text rasterised by FreeType: (alpha bitmap h x w, baseline row).

    What Agg's ``draw_text`` does, but cached by string: a label is rendered
    once, then pasted with numpy in every later frame.
    """
    key = (text, size, weight, dpi)
    hit = _TEXT_CACHE.get(key)
    if hit is not None:
        return hit
    font = get_font(findfont(FontProperties(family="DejaVu Sans", size=size, weight=weight)))
    font.clear()
    font.set_size(size, dpi)
    font.set_text(text, 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    img = np.array(font.get_image(), dtype=np.uint8)
    out = (img, img.shape[0] - round(font.get_descent() / 64))
    if len(_TEXT_CACHE) > 4096:
        _TEXT_CACHE.clear()
    _TEXT_CACHE[key] = out
    return out


def _blend_text(pixels: np.ndarray, text: str, x: int, baseline: int, size: float, dpi: int,
                colour: str = "#000000", weight: str = "normal", align: str = "left") -> int:
    """Draw ``text`` into an RGB array with its baseline at row ``baseline``; returns its
    width in pixels.  ``x`` is the left edge (``align="left"``) or the right edge."""
    if not text:
        return 0
    alpha, base = _text_bitmap(text, size, dpi, weight)
    h, w = alpha.shape
    left = x if align == "left" else x - w
    top = baseline - base
    y0, y1 = max(top, 0), min(top + h, pixels.shape[0])
    x0, x1 = max(left, 0), min(left + w, pixels.shape[1])
    if y0 >= y1 or x0 >= x1:
        return w
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None].astype(np.float32) / 255
    region = pixels[y0:y1, x0:x1]
    region[:] = (region * (1 - a) + np.array(_rgb(colour), np.float32) * a + 0.5).astype(
        np.uint8)
    return w


class _Pixels:
    """A block of pixels composed with numpy, shown as a figure image at (x0, y0).

    Drawing the figure draws it as an image; the fast :meth:`_Figure.render`
    pastes the same pixels straight into the canvas (identical result).
    """

    def __init__(self, fig: Figure, x0: int, y0: int, w: int, h: int) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.dpi = int(fig.dpi)
        self.pixels = np.full((h, w, 3), 255, np.uint8)
        self.image = fig.figimage(self.pixels, xo=x0, yo=y0, origin="upper", zorder=3)

    def _set(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.image.set_data(pixels)

    def paste(self, buf: np.ndarray) -> None:
        """Write the pixels straight into a canvas's RGBA buffer."""
        top = buf.shape[0] - self.y0 - self.h
        region = buf[top:top + self.h, self.x0:self.x0 + self.w]
        region[..., :3] = self.pixels
        region[..., 3] = 255


class _TextPanel(_Pixels):
    """One line of text on white, re-rasterised only when the text changes."""

    def __init__(self, fig: Figure, x0: int, y0: int, w: int, h: int, *, size: float = 7.5,
                 colour: str = "#404040", align: str = "left", weight: str = "normal") -> None:
        super().__init__(fig, x0, y0, w, h)
        self.size, self.colour, self.align, self.weight = size, colour, align, weight
        self.text = ""

    def get_text(self) -> str:
        return self.text

    def set_text(self, text: str) -> None:
        if text == self.text:
            return
        self.text = text
        pixels = np.full((self.h, self.w, 3), 255, np.uint8)
        baseline = self.h // 2 + round(self.size * self.dpi / 72 * 0.36)
        x = 0 if self.align == "left" else self.w - 1
        _blend_text(pixels, text, x, baseline, self.size, self.dpi, self.colour,
                    weight=self.weight, align=self.align)
        self._set(pixels)


class _LegendPanel(_Pixels):
    """A legend composed with numpy from cached text bitmaps (cheap to redraw).

    Each entry is ``(label, swatch)`` where swatch is ``("fill", "#rrggbb")``,
    ``("hatch",)``, ``("outline",)``, ``("dashed",)``, ``("dot",)``,
    ``("bar", "#rrggbb")``, ``("tick",)``, ``("circle",)`` or ``("none",)``.
    Entries fill ``ncol`` columns row by row, below the title (if any).
    """

    ROW = 15

    def __init__(self, fig: Figure, x0: int, y0: int, w: int, h: int, title: str,
                 ncol: int = 1) -> None:
        super().__init__(fig, x0, y0, w, h)
        self.title = title
        self.ncol = ncol
        self.entries: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def capacity(self) -> int:
        """How many entries fit below the title."""
        return max(0, self.h // self.ROW - (1 if self.title else 0)) * self.ncol

    def set_entries(self, entries: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        entries = tuple(entries)
        if entries == self.entries:
            return
        self.entries = entries
        px = np.full((self.h, self.w, 3), 255, np.uint8)
        fs = 8.0
        lift = round(fs * self.dpi / 72 * 0.36)
        first = 0
        if self.title:
            _blend_text(px, self.title, 1, self.ROW // 2 + lift, 8.5, self.dpi, "#000000")
            first = 1
        colw = self.w // self.ncol
        for i, (label, swatch) in enumerate(entries[:self.capacity]):
            row, c = divmod(i, self.ncol)
            top = (row + first) * self.ROW + 2 * first
            x = c * colw
            self._swatch(px, swatch, x + 3, top + 1, 17, self.ROW - 4)
            _blend_text(px, label, x + 26, top + self.ROW // 2 - 1 + lift, fs, self.dpi)
        self._set(px)

    @staticmethod
    def _swatch(px: np.ndarray, swatch: tuple[str, ...], x: int, y: int, w: int,
                h: int) -> None:
        kind = swatch[0]
        if kind == "none":
            return
        box = px[y:y + h, x:x + w]
        edge = _rgb("#808080")
        if kind == "fill":
            box[:] = _rgb(swatch[1])
        elif kind == "hatch":
            yy, xx = np.mgrid[0:h, 0:w]
            box[((xx + yy) % 5) < 2] = _rgb(HATCH_COLOUR)
        elif kind == "outline":
            edge = _rgb(MARK_COLOUR)
            box[:2, :] = box[-2:, :] = box[:, :2] = box[:, -2:] = edge
            return
        elif kind == "dot":
            yy, xx = np.mgrid[0:h, 0:w]
            box[(xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2 <= 12] = _rgb(MARK_COLOUR)
            return
        elif kind == "dashed":
            dash = (np.arange(w) % 5) < 3
            box[:2, dash] = box[-2:, dash] = _rgb(MARK_COLOUR)
            dash = (np.arange(h) % 5) < 3
            box[dash, :2] = box[dash, -2:] = _rgb(MARK_COLOUR)
            return
        elif kind == "bar":
            box[h // 2 - 2:h // 2 + 2, :] = _rgb(swatch[1])
            return
        elif kind == "tick":
            box[:, w // 2 - 1:w // 2 + 1] = _rgb(MARK_COLOUR)
            return
        elif kind == "circle":
            yy, xx = np.mgrid[0:h, 0:w]
            d2 = (xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2
            r = (h - 1) / 2
            box[(d2 <= r * r) & (d2 >= (r - 1.7) ** 2)] = _rgb(MARK_COLOUR)
            return
        box[0, :] = box[-1, :] = box[:, 0] = box[:, -1] = edge


class _CellGrid(_Pixels):
    """One figure image showing ``n`` cells in rows of ``cols``, ``px`` pixels a cell.

    Every pixel belongs to one cell and one *pattern class* (fill, cell border,
    outline ring, hatch stripe, the upper triangle of a mixed block, the
    CowRequest dot and its rim, and their overlaps), both computed once.
    :meth:`draw` works out each cell's colour for each class (cells x classes,
    small) and gathers the image in one numpy indexing step.
    """

    BORDER, RING, STRIPE, UPPER, DOT, RIM = 1, 2, 4, 8, 16, 32

    def __init__(self, fig: Figure, n: int, cols: int, px: int, x0: int, y0: int) -> None:
        self.n, self.cols, self.px = n, cols, px
        self.rows = -(-n // cols)
        h, w = self.rows * px, cols * px
        yy, xx = np.mgrid[0:h, 0:w]
        cell = (yy // px) * cols + (xx // px)
        cell[cell >= n] = n  # past the end of the disk
        self.cellpix = cell
        iy, ix = yy % px, xx % px
        border = (iy == px - 1) | (ix == px - 1)
        ringw = max(1, round(px / 9))
        inner = ~border
        ring = inner & ((iy < ringw) | (ix < ringw) | (iy >= px - 1 - ringw)
                        | (ix >= px - 1 - ringw))
        period = max(4, round(px / 3.2))
        stripe = inner & (((xx + yy) % period) < max(1, round(period / 3)))
        upper = inner & (ix > iy)
        c = (px - 2) / 2
        d2 = (ix - c) ** 2 + (iy - c) ** 2
        dot = inner & (d2 <= (px * 0.16) ** 2)
        rim = inner & (d2 <= (px * 0.25) ** 2) & ~dot
        bits = (border * self.BORDER + ring * self.RING + stripe * self.STRIPE
                + upper * self.UPPER + dot * self.DOT + rim * self.RIM)
        self.classes, inverse = np.unique(bits, return_inverse=True)
        self.classpix = inverse.reshape(bits.shape).astype(np.intp)
        # The image is drawn pixel for pixel (no resampling); the axes behind it,
        # at exactly the same pixels, only carry the frame and the ticks.
        super().__init__(fig, x0, y0, w, h)
        W, H = fig.bbox.width, fig.bbox.height
        self.ax = ax = fig.add_axes((x0 / W, y0 / H, w / W, h / H))
        ax.set_xlim(0, cols)
        ax.set_ylim(self.rows, 0)
        ax.patch.set_visible(False)

    def draw(self, lut: np.ndarray, col: np.ndarray, col2: np.ndarray | None = None,
             hatch: np.ndarray | None = None, ring: np.ndarray | None = None,
             dot: np.ndarray | None = None) -> None:
        n = self.n
        no = np.zeros(n + 1, dtype=bool)

        def ext(a: np.ndarray | None) -> np.ndarray:
            return no if a is None else np.append(a.astype(bool), False)

        c1 = np.append(col, EMPTY).astype(np.intp)
        c2 = c1 if col2 is None else np.append(col2, EMPTY).astype(np.intp)
        split, hat, rng, dt = c2 != c1, ext(hatch), ext(ring), ext(dot)
        base, second = lut[c1], lut[c2]
        table = np.empty((n + 1, len(self.classes), 3), dtype=np.uint8)
        for k, bits in enumerate(self.classes):
            out = base
            if bits & self.BORDER:
                table[:, k] = _rgb(BORDER_COLOUR)
                continue
            if bits & self.UPPER:
                out = np.where(split[:, None], second, out)
            if bits & self.STRIPE:
                out = np.where(hat[:, None], np.array(_rgb(HATCH_COLOUR), np.uint8), out)
            if bits & self.RING:
                out = np.where(rng[:, None], np.array(_rgb(MARK_COLOUR), np.uint8), out)
            if bits & self.RIM:
                out = np.where(dt[:, None], np.array((255, 255, 255), np.uint8), out)
            if bits & self.DOT:
                out = np.where(dt[:, None], np.array(_rgb(MARK_COLOUR), np.uint8), out)
            table[:, k] = out
        table[n] = _rgb(EMPTY_COLOUR)
        self._set(table[self.cellpix, self.classpix])


@dataclass
class _Cells:
    """Per block of one layer: colour indices, hatch (not fully allocated), signature."""

    col: np.ndarray
    col2: np.ndarray
    hatch: np.ndarray
    allocated: int
    sig: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sig = (self.col.astype(np.int64) | (self.col2.astype(np.int64) << 9)
                    | (self.hatch.astype(np.int64) << 18))


def _layer_cells(layer: Layer, block: int, nblocks: int) -> _Cells:
    """Summarise a layer per block (same reading as :func:`labkit.render.block_cells`)."""
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
    first_sec = np.argmax(a, axis=1)
    first = blocks[rows, first_sec * SECTOR]
    col = first.astype(np.uint16)
    col2 = col.copy()
    neq = blocks != blocks[:, :1]
    mixed = full & neq.any(axis=1)
    if mixed.any():
        where = np.flatnonzero(mixed)
        col2[where] = blocks[where, neq[where].argmax(axis=1)]
    col[none] = UNALLOC
    col2[none] = UNALLOC
    hatch = ~full
    return _Cells(col, col2, hatch, int((~none).sum()))


def _bytes_cells(data: bytes, offset: int, block: int, nblocks: int) -> np.ndarray:
    """Per block: the byte of ``data`` placed at ``offset`` (NODATA outside it)."""
    col = np.full(nblocks, NODATA, dtype=np.uint16)
    arr = np.frombuffer(data, dtype=np.uint8)
    for b in range(offset // block, -(-(offset + len(data)) // block)):
        lo = max(b * block, offset) - offset
        col[b] = arr[lo]
    return col


def _grid_shape(nblocks: int, cols: int | None) -> tuple[int, int]:
    if cols is None:
        cols = nblocks if nblocks <= 32 else (32 if nblocks <= 512 else 64)
    cols = max(1, min(cols, nblocks))
    return cols, -(-nblocks // cols)


def _ticks(ax, cols: int, rows: int, show_x: bool, fontsize: float = 7) -> None:
    step = 1 if cols <= 16 else (4 if cols <= 64 else 8)
    ax.set_xticks([c + 0.5 for c in range(0, cols, step)])
    ax.set_xticklabels([str(c) for c in range(0, cols, step)] if show_x else [],
                       fontsize=fontsize)
    if rows > 1:
        rstep = 1 if rows <= 8 else (4 if rows <= 32 else 8)
        ax.set_yticks([r + 0.5 for r in range(0, rows, rstep)])
        ax.set_yticklabels([str(r * cols) for r in range(0, rows, rstep)], fontsize=fontsize)
    else:
        ax.set_yticks([])
    ax.tick_params(length=2, pad=1)
    for s in ax.spines.values():
        s.set_linewidth(0.6)
        s.set_color("#606060")


def _cow_blocks(lab: Lab, nblocks: int) -> tuple[np.ndarray, list[str]]:
    """Blocks in clusters held by a CowRequest now, and a sentence per request."""
    held = np.zeros(nblocks, dtype=bool)
    job = lab.top.backup_job
    notes: list[str] = []
    if job is None:
        return held, notes
    cs = job.cluster_size
    for req in sorted(job.inflight_reqs, key=lambda r: (r.start, r.owner)):
        b0 = req.start * cs // lab.block
        b1 = min(nblocks, -(-(req.end * cs) // lab.block))
        held[b0:b1] = True
        notes.append(f"{req.owner} holds clusters {req.start}-{req.end - 1} "
                     f"(blocks {b0}-{b1 - 1})")
    return held, notes


class _Figure:
    """Shared bits: the figure, fast re-rendering, PNG output.

    Rendering blits in three levels: the static parts (axes, ticks, labels)
    are drawn once into a background; the *semi-static* artists
    (:meth:`_semi`, e.g. the legend) are drawn onto a copy of it when they
    change; each :meth:`render` restores that and draws only the artists that
    change per step (:meth:`_dynamic`) — cell grids are pasted pixel for pixel.
    """

    fig: Figure
    _background: object | None = None
    _semi_background: object | None = None

    def _dynamic(self) -> list:
        return []

    def _semi(self) -> list:
        return []

    def _invalidate(self) -> None:
        """A static part changed: the next render redraws everything."""
        self._background = None

    def _invalidate_semi(self) -> None:
        """A semi-static artist changed: the next render redraws those."""
        self._semi_background = None

    def _changed(self) -> None:
        """After an update: interactive canvases redraw when idle; Agg renders on demand."""
        if type(self.fig.canvas) is not FigureCanvasAgg:
            self.fig.canvas.draw_idle()

    def render(self) -> np.ndarray:
        """Draw the current state; returns the canvas's RGBA pixels (a view)."""
        canvas = self.fig.canvas
        dynamic, semi = self._dynamic(), self._semi()
        if type(canvas) is not FigureCanvasAgg:
            canvas.draw()
            return np.asarray(canvas.buffer_rgba())
        if self._background is None:
            artists = [a.image if isinstance(a, _Pixels) else a for a in dynamic] + semi
            for a in artists:
                a.set_animated(True)
            canvas.draw()
            for a in artists:
                a.set_animated(False)
            self._background = canvas.copy_from_bbox(self.fig.bbox)
            self._semi_background = None
        if self._semi_background is None:
            canvas.restore_region(self._background)
            for a in semi:
                self.fig.draw_artist(a)
            self._semi_background = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._semi_background)
        buf = np.asarray(canvas.buffer_rgba())
        for a in dynamic:
            if isinstance(a, _Pixels):
                a.paste(buf)
            elif a.get_visible() and not (isinstance(a, Text) and not a.get_text()):
                self.fig.draw_artist(a)
        return buf

    def png(self) -> bytes:
        """The current view as PNG bytes."""
        return _encode_png(self.render())

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str) -> None:
        """Write the current view to ``path`` (PNG)."""
        with open(path, "wb") as f:
            f.write(self.png())


# --- the block map --------------------------------------------------------------------------


class LayerPlot(_Figure):
    """The block map of the secondary: one panel per layer, one cell per block.

    What a trainee should notice: a primary write changes the *secondary* row
    only after the *hidden* row received the old contents (step 2 before step
    3); the *VM view* row keeps the old colour until a checkpoint; hatched
    cells of hidden and active read through to the layer below.
    """

    NAMES = ("secondary", "hidden", "active", "vm-view")
    LEGEND_FIXED = 5  # legend entries besides the writers: original, "+ more", 3 marks

    def __init__(self, lab: Lab, *, cols: int | None = None, dpi: int = 80,
                 title: str = "", header: bool = True) -> None:
        self.header = header
        self.block = lab.block
        self.nblocks = -(-lab.size // lab.block)
        self.cols, self.rows = _grid_shape(self.nblocks, cols)
        self.side_by_side = self.rows > 8
        self._prev: dict[str, np.ndarray] | None = None
        self.changed: dict[str, np.ndarray] = {}
        self._build(dpi)
        self.update(lab, title=title)

    def __repr__(self) -> str:
        return (f"<LayerPlot {len(self.NAMES)} layers x {self.nblocks} blocks of "
                f"{self.block} bytes>")

    def _dynamic(self) -> list:
        heads = [self.title, self.status] if self.header else []
        return [*self.grids.values(), *self.alloc_texts.values(), self.legend,
                *self.eio_texts.values(), *heads]

    @property
    def max_writers(self) -> int:
        """How many written bytes the legend names one by one (the rest are summarised)."""
        return self.legend.capacity - self.LEGEND_FIXED

    # layout (in pixels: the cell images are drawn pixel for pixel) ------------------------
    def _build(self, dpi: int) -> None:
        cols, rows, n = self.cols, self.rows, self.nblocks
        legend_w, top = 215, (58 if self.header else 10)
        legend_min = (1 + 4 + self.LEGEND_FIXED) * _LegendPanel.ROW  # 4 writers at least
        if self.side_by_side:
            px = max(4, min(12, 320 // cols))
            gw, gh = cols * px, rows * px
            left, gap, bottom, head = 50, 56, 38, 18
            width = left + 4 * gw + 3 * gap + 26 + legend_w
            height = max(top + head + gh + bottom, top + legend_min + 4)
            origins = [(left + i * (gw + gap), bottom) for i in range(4)]
        else:
            px = 16 if cols <= 32 else max(6, 512 // cols)
            gw, gh = cols * px, rows * px
            left, gap, bottom = 80 + (32 if rows > 1 else 0), 12, 38
            width = left + gw + 78 + legend_w
            height = max(top + 4 * gh + 3 * gap + bottom, top + legend_min + 4)
            stack = 4 * gh + 3 * gap
            bottom = height - top - stack  # spare height goes below the grids
            origins = [(left, bottom + (3 - i) * (gh + gap)) for i in range(4)]
        self.fig = fig = _new_figure(width, height, dpi)
        self.grids: dict[str, _CellGrid] = {}
        self.alloc_texts: dict[str, _TextPanel] = {}
        self.eio_texts: dict[str, Text] = {}
        for i, name in enumerate(self.NAMES):
            x0, y0 = origins[i]
            grid = _CellGrid(fig, n, cols, px, x0, y0)
            ax = grid.ax
            last = self.side_by_side or i == 3
            _ticks(ax, cols, rows, show_x=last)
            if self.side_by_side:
                ax.set_title(LAYER_TITLES[name], fontsize=9.5, loc="left", pad=4)
                self.alloc_texts[name] = _TextPanel(fig, x0 + gw - 90, y0 + gh + 2, 90, 14,
                                                    align="right")
            else:
                ax.annotate(LAYER_TITLES[name], (0, 0.5), xycoords="axes fraction",
                            xytext=(-8 - (30 if rows > 1 else 0), 0),
                            textcoords="offset pixels", ha="right", va="center",
                            fontsize=9.5)
                self.alloc_texts[name] = _TextPanel(fig, x0 + gw + 6, y0 + gh // 2 - 7, 70,
                                                    14)
            self.eio_texts[name] = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center",
                                           va="center", fontsize=8.5, color="#303030",
                                           zorder=5, bbox=dict(fc="white", ec="none",
                                                               alpha=0.85, pad=2))
            if last:
                ax.set_xlabel("block" if rows == 1 else "block = row start (left) + column",
                              fontsize=7.5, labelpad=1)
            self.grids[name] = grid
        # title and status: pixel text (cached per string), drawn in every frame cheaply
        self.title = _TextPanel(fig, 8, height - 26, width - 16, 20, size=10,
                                colour="#000000", weight="bold")
        self.status = _TextPanel(fig, 8, height - 46, width - 16, 16, size=8,
                                 colour="#303030")
        if not self.header:
            self.title.image.set_visible(False)
            self.status.image.set_visible(False)
        lh = height - top - 4
        self.legend = _LegendPanel(fig, width - legend_w + 4, height - top + 2 - lh,
                                   legend_w - 8, lh, "colour = who wrote it")

    # update -----------------------------------------------------------------------
    def update(self, lab: Lab, *, title: str | None = None,
               since: dict[str, Layer | None] | None = None) -> None:
        """Redraw from ``lab`` (the same figure, the same artists).

        Cells are outlined where they differ from the previous update, or from
        ``since`` (layer dumps, e.g. taken before the last step) when given.
        """
        if -(-lab.size // lab.block) != self.nblocks or lab.block != self.block:
            raise ValueError("this plot was made for another disk geometry; make a new one "
                             "with plot_layers(lab)")
        layers = lab.layers()
        held, notes = _cow_blocks(lab, self.nblocks)
        prev = self._prev
        if since is not None:
            prev = {n: _layer_cells(lay, self.block, self.nblocks).sig
                    for n, lay in since.items() if lay is not None and n in self.NAMES}
        sigs: dict[str, np.ndarray] = {}
        seen: set[int] = set()
        for name in self.NAMES:
            grid = self.grids[name]
            layer = layers.get(name)
            if layer is None:
                col = np.full(self.nblocks, NODATA, dtype=np.uint16)
                grid.draw(_BYTE_LUT, col)
                self.eio_texts[name].set_text("not readable: the VM gets EIO "
                                              "(replication not running)")
                self.alloc_texts[name].set_text("")
                self.changed[name] = np.zeros(self.nblocks, dtype=bool)
                continue
            cells = _layer_cells(layer, self.block, self.nblocks)
            sigs[name] = cells.sig
            changed = (cells.sig != prev[name]) if prev is not None and name in prev \
                else np.zeros(self.nblocks, dtype=bool)
            self.changed[name] = changed
            grid.draw(_BYTE_LUT, cells.col, cells.col2, cells.hatch, changed,
                      held if name == "secondary" else None)
            self.eio_texts[name].set_text("")
            self.alloc_texts[name].set_text(
                "" if name in ("secondary", "vm-view")
                else f"alloc {cells.allocated}/{self.nblocks}")
            for arr in (cells.col, cells.col2):
                seen.update(int(b) for b in np.unique(arr) if b < 256)
        self._prev = sigs
        if title is not None and self.header:
            self.title.set_text(title)
        if self.header:
            self.status.set_text("CowRequests: " + ("; ".join(notes) if notes else
                                                    "none held"))
        self._update_legend(lab, seen)
        self._changed()

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown (who wrote each colour, then the marks)."""
        return [label for label, _ in self.legend.entries]

    def _update_legend(self, lab: Lab, seen: set[int]) -> None:
        writers = lab.writers()
        entries: list[tuple[str, tuple[str, ...]]] = []
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
                label = f"{_hex(b)} {names}"
            else:
                label = f"{_hex(b)} unknown writer"
            entries.append((label, ("fill", byte_colour(b))))
        if more:
            entries.append((f"+ {len(more)} more bytes ({_hex(more[0])}-{_hex(more[-1])})",
                            ("none",)))
        entries.append(("not allocated in this layer", ("hatch",)))
        entries.append(("changed by the last step", ("outline",)))
        entries.append(("cluster held by a CowRequest", ("dot",)))
        self.legend.set_entries(entries)


def plot_layers(lab: Lab, *, cols: int | None = None, dpi: int = 80,
                title: str = "", header: bool = True) -> LayerPlot:
    """The block map of ``lab``: secondary, hidden, active and VM view, one cell per block.

    Colour = the block's byte (fixed colour-blind-safe mapping, see
    :func:`byte_colour`), the legend names who wrote it; hatched = not
    allocated in that layer; outlined = changed since the previous
    :meth:`LayerPlot.update`; black dot = in a cluster held by a CowRequest.
    ``cols`` blocks per row (default 32, or 64 for more than 512 blocks);
    ``header=False`` leaves out the title and the CowRequest line (the widgets
    show those as text).  Call ``.update(lab)`` after each step: the figure is
    reused.
    """
    return LayerPlot(lab, cols=cols, dpi=dpi, title=title, header=header)


# --- provenance -------------------------------------------------------------------------------


class ProvenancePlot(_Figure):
    """For one VM read: which layer served each block, and the bytes it returned.

    What a trainee should notice: after a COW, the read of a block the primary
    has overwritten is served by *hidden* (the old copy); a conflicting read is
    one served by *secondary* that returned the primary's new byte.
    """

    def __init__(self, lab: Lab, task: Task | str, *, cols: int | None = None,
                 dpi: int = 80) -> None:
        self.block = lab.block
        self.nblocks = -(-lab.size // lab.block)
        self.cols, self.rows = _grid_shape(self.nblocks, cols)
        px = 16 if self.cols <= 32 else max(6, 512 // self.cols)
        gw, gh = self.cols * px, self.rows * px
        left, gap, top, bottom, legend_w = 80 + (32 if self.rows > 1 else 0), 12, 58, 38, 215
        width = left + gw + 24 + legend_w
        height = max(top + 2 * gh + gap + bottom, 190)
        self.fig = fig = _new_figure(width, height, dpi)
        self.grids = {}
        for i, name in enumerate(("served by", "bytes read")):
            grid = _CellGrid(fig, self.nblocks, self.cols, px, left,
                             bottom + (1 - i) * (gh + gap))
            self.grids[name] = grid
            _ticks(grid.ax, self.cols, self.rows, show_x=i == 1)
            grid.ax.annotate(name, (0, 0.5), xycoords="axes fraction",
                             xytext=(-8 - (30 if self.rows > 1 else 0), 0),
                             textcoords="offset pixels", ha="right", va="center", fontsize=9)
            if i == 1:
                grid.ax.set_xlabel("block" if self.rows == 1
                                   else "block = row start (left) + column", fontsize=7.5,
                                   labelpad=1)
        self.title = fig.text(8 / width, 1 - 8 / height, "", ha="left", va="top",
                              fontsize=10, fontweight="bold")
        self.status = fig.text(8 / width, 1 - 32 / height, "", ha="left", va="top",
                               fontsize=8, color="#303030")
        handles = [Patch(facecolor=LAYER_COLOURS[k], edgecolor="#808080", lw=0.5)
                   for k in ("active", "hidden", "secondary", "mixed")]
        labels = ["active", "hidden", "secondary disk", "mixed (sectors from several)"]
        handles += [Patch(facecolor="white", edgecolor="#808080", lw=0.5),
                    Patch(facecolor=NODATA_COLOUR, edgecolor="#808080", lw=0.5),
                    Patch(facecolor="white", edgecolor="black", lw=1.6)]
        labels += ["outside the read", "not returned yet", "conflicting read here"]
        fig.legend(handles, labels, loc="upper left",
                   bbox_to_anchor=((width - legend_w + 4) / width, 1 - 54 / height),
                   frameon=False, fontsize=8, title="served by", title_fontsize=8.5,
                   alignment="left", handlelength=1.4, handleheight=1.1)
        self.update(lab, task)

    def __repr__(self) -> str:
        return f"<ProvenancePlot of a read over {self.nblocks} blocks>"

    def _dynamic(self) -> list:
        return [*self.grids.values(), self.title, self.status]

    def update(self, lab: Lab, task: Task | str | None = None) -> None:
        """Redraw for ``task`` (default: the same read as before) from ``lab``."""
        name = getattr(self, "task", None) if task is None else (
            task if isinstance(task, str) else task.name)
        if name is None:
            raise ValueError("which read? pass the vm-read task or its name")
        self.task = name
        served = lab.provenance(name)
        col = np.array([_PROV_KEYS.index(s) for s in served], dtype=np.uint16)
        t = lab.kernel.tasks[name]
        span = next(((e.offset, e.length) for e in lab.trace
                     if e.task == name and e.kind == "req-start" and e.node == "colo-top"),
                    None)
        data_col = np.full(self.nblocks, EMPTY, dtype=np.uint16)
        if t.state == "done" and span is not None and isinstance(t.result, bytes):
            data_col = _bytes_cells(t.result, span[0], self.block, self.nblocks)
            data_col[data_col == NODATA] = EMPTY
        elif span is not None:
            b0, b1 = span[0] // self.block, -(-(span[0] + span[1]) // self.block)
            data_col[b0:b1] = NODATA
        bad = np.zeros(self.nblocks, dtype=bool)
        msgs = [v.message for v in lab.violations() if v.task == name]
        for v in lab.violations():
            if v.task == name:
                bad[min(self.nblocks - 1, v.offset // self.block)] = True
        self.grids["served by"].draw(_PROV_LUT, col, ring=bad)
        self.grids["bytes read"].draw(_BYTE_LUT, data_col, ring=bad)
        counts = {k: served.count(k) for k in _PROV_KEYS[1:] if served.count(k)}
        where = f"[{span[0]:#x}+{span[1]:#x}]" if span else ""
        self.title.set_text(f"{name} {where}: " + (", ".join(
            f"{n} block(s) from {k}" for k, n in counts.items()) or "nothing read yet"))
        if msgs:
            status = msgs[0]
        else:
            writers = lab.writers()
            who = [f"{_hex(b)} {', '.join(writers[b])}" for b in sorted(
                {int(c) for c in data_col if c < 256}) if b in writers
                and writers[b] != ["original"]]
            status = f"{name} is {t.state}" + (
                "; bytes read coloured as in the block map: greys = original data"
                + "".join(f", {x}" for x in who) if t.state == "done" else "")
        self.status.set_text(status)
        self._changed()


def plot_provenance(lab: Lab, read_task: Task | str, *, cols: int | None = None,
                    dpi: int = 80) -> ProvenancePlot:
    """Which layer served each block of a VM read (``lab.provenance``), and what it read.

    Top row: active / hidden / secondary disk / mixed per block; bottom row: the
    bytes returned (same colours as the block map).  A conflicting read's block
    is outlined.  ``.update(lab)`` redraws in place as the read proceeds.
    """
    return ProvenancePlot(lab, read_task, cols=cols, dpi=dpi)


# --- the timeline ---------------------------------------------------------------------------------


@dataclass
class _Lane:
    label: str
    task: str
    cow: bool = False


@dataclass
class TimelineModel:
    """The timeline read from a trace: lanes, bars, spans, waits, step marks (no drawing)."""

    lanes: list[_Lane]
    bars: list[tuple[int, float, float, int, str]]  # lane, x0, x1, depth, layer
    cow_spans: list[tuple[int, float, float]]
    waits: list[tuple[int, float, float]]
    runs: list[tuple[int, float]]
    steps: list[tuple[int, float, int]]  # lane, x, step number
    ends: list[tuple[int, float, str]]  # lane, x, "done" | "failed" | "violation"
    decisions: int
    start: int = 0


def timeline_model(trace: Sequence[Event], violations: Sequence[str] = (),
                   start: int = 0) -> TimelineModel:
    """Lay a trace out on swim lanes; x is the scheduling decision (slot [d, d+1)).

    ``start``: leave out everything before decision ``start`` (a window on a
    long run: lanes only for the tasks active from there on).
    """
    if start > 0:
        runs, prev = 0, 0
        for i, e in enumerate(trace):
            if e.kind == "run":
                if runs == start:  # keep the spawns just before: their lanes show
                    trace = [x for x in trace[prev:i] if x.kind == "spawn"] + list(trace[i:])
                    break
                runs, prev = runs + 1, i
        else:
            trace = [x for x in trace[prev:] if x.kind == "spawn"] if runs == start else []
    # x positions: events of decision d are spread over [d, d+1)
    xs: list[float] = []
    d, group = start - 1, []
    for e in trace:
        if e.kind == "run":
            d += 1
            _spread(xs, group)
            group = []
        group.append(d)
    _spread(xs, group)
    decisions = d + 1
    order: list[str] = []  # tasks in spawn order
    has_cow: set[str] = set()
    main, cow_key = False, True
    open_reqs: dict[str, list[tuple[str, float, bool]]] = {}
    in_cow: dict[str, float] = {}
    waiting: dict[str, float] = {}
    last_step: dict[str, int] = {}
    bars: list = []
    spans: list = []
    waits: list = []
    runs: list = []
    steps: list = []
    ends: list = []
    end_x = float(decisions) if decisions > 0 else 1.0  # "now", for what is still open

    def cow_lane(t: str) -> tuple[str, bool]:
        if t.startswith("nbd-write#"):  # the backup job's COW runs in the writer's coroutine
            has_cow.add(t)
            return (t, cow_key)
        return (t, main)

    for e, x in zip(trace, xs, strict=True):
        t = e.task
        if t not in order:
            order.append(t)
        if e.kind == "run":
            runs.append(((t, main), x))
        elif e.kind == "req-start" and e.node in NODE_LAYER:
            # requests a write's COW issues go on its COW lane (a read's CowRequest
            # stays on the read's own lane)
            on_cow = t in in_cow and t.startswith("nbd-write#")
            open_reqs.setdefault(t, []).append((e.node, x, on_cow))
        elif e.kind == "req-end" and e.node in NODE_LAYER:
            stack = open_reqs.get(t, [])
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] == e.node:
                    node, x0, cow = stack.pop(i)
                    depth = sum(1 for s in stack if s[2] == cow)
                    key = cow_lane(t) if cow else (t, main)
                    bars.append((key, x0, x, depth, NODE_LAYER[node]))
                    break
        elif e.kind == "cow-begin":
            in_cow[t] = x
        elif e.kind == "cow-end" and t in in_cow:
            spans.append((cow_lane(t), in_cow.pop(t), x))
        elif e.kind == "wait":
            waiting[t] = x
        elif e.kind == "wake" and t in waiting:
            waits.append(((t, main), waiting.pop(t), x))
        elif e.kind in ("done", "failed"):
            what = "failed" if e.kind == "failed" else (
                "violation" if t in violations else "done")
            ends.append(((t, main), x, what))
        note = workflow_step(e)
        if note is not None and last_step.get(t) != note.step:
            last_step[t] = note.step
            on_cow = note.step == 2 and e.kind != "wait" and t in in_cow
            steps.append((cow_lane(t) if on_cow else (t, main), x, note.step))
    for t, stack in open_reqs.items():  # still in flight: draw up to now
        for i, (node, x0, cow) in enumerate(stack):
            depth = sum(1 for s in stack[:i] if s[2] == cow)
            bars.append((cow_lane(t) if cow else (t, main), x0, max(end_x, x0 + 0.4), depth,
                         NODE_LAYER[node]))
    for t, x0 in in_cow.items():
        spans.append((cow_lane(t), x0, max(end_x, x0 + 0.4)))
    for t, x0 in waiting.items():
        waits.append(((t, main), x0, max(end_x, x0 + 0.4)))  # still waiting: visible
    lanes: list[_Lane] = []
    index: dict[tuple[str, bool], int] = {}
    for t in order:
        index[(t, main)] = len(lanes)
        lanes.append(_Lane(t, t))
        if t in has_cow:
            index[(t, cow_key)] = len(lanes)
            lanes.append(_Lane(f"{t} COW", t, True))

    def at(items: list) -> list:
        return [(index[item[0]], *item[1:]) for item in items]

    bars, spans, waits, runs, steps, ends = (at(v) for v in (bars, spans, waits, runs, steps,
                                                             ends))
    return TimelineModel(lanes, bars, spans, waits, runs, steps, ends, decisions, start)


def _spread(xs: list[float], group: list[int]) -> None:
    n = len(group)
    for i, d in enumerate(group):
        xs.append(0.0 if d < 0 else d + 0.06 + 0.88 * (i / (n - 1) if n > 1 else 0))


class TimelinePlot(_Figure):
    """Swim lanes per task along the scheduling decisions of a run.

    What a trainee should notice: a race is only ever a choice between two
    lanes at a decision; in design ``"2.8"`` the read's CowRequest span and the
    write's COW span never overlap on the same clusters — one lane *waits*.
    """

    HEIGHTS = (0.8, 0.6, 0.4, 0.22, 0.12)

    def __init__(self, lab: Lab, *, cursor: float | None = None, dpi: int = 80,
                 width: int = 820, title: str = "", fit: bool = True) -> None:
        self.width, self.dpi, self.fit = width, dpi, fit
        self.fig = fig = _new_figure(width, 240, dpi)
        self.ax = ax = fig.add_axes((0.2, 0.2, 0.77, 0.62))
        self.bar_coll = PolyCollection([], linewidths=0.4, edgecolors="#303030")
        self.span_coll = PolyCollection([], facecolors="none", edgecolors="black",
                                        linewidths=1.4, linestyles="--")
        self.wait_coll = PolyCollection([], facecolors="#CC3311", edgecolors="#CC3311",
                                        linewidths=0.5)
        for c in (self.bar_coll, self.span_coll, self.wait_coll):
            ax.add_collection(c)
        (self.run_marks,) = ax.plot([], [], ls="", marker="|", ms=7, mew=1.2, color="#000000")
        (self.done_marks,) = ax.plot([], [], ls="", marker="o", ms=4.5, color="#000000")
        (self.fail_marks,) = ax.plot([], [], ls="", marker="X", ms=8, color="#CC3311")
        self.cursor = ax.axvline(0, color="#CC3311", lw=1.2, alpha=0.8)
        # steps 1-3: a white circle with the number drawn as a path marker (cheap)
        (self.step_circles,) = ax.plot([], [], ls="", marker="o", ms=11, mfc="white",
                                       mec="black", mew=0.9, zorder=5)
        self.step_numbers = [ax.plot([], [], ls="", marker=f"${k}$", ms=6, color="black",
                                     zorder=6)[0] for k in (1, 2, 3)]
        self.title = fig.text(0.01, 0.985, "", ha="left", va="top", fontsize=10,
                              fontweight="bold")
        ax.set_xlabel("scheduling decision", fontsize=8, labelpad=1)
        ax.tick_params(labelsize=7.5, length=2)
        ax.grid(axis="x", color="#E4E4E4", lw=0.6)
        ax.set_axisbelow(True)
        self._legend_entries = [
            ("request on colo-top", ("fill", LAYER_COLOURS["colo-top"])),
            ("on active", ("fill", LAYER_COLOURS["active"])),
            ("on hidden", ("fill", LAYER_COLOURS["hidden"])),
            ("on secondary disk", ("fill", LAYER_COLOURS["secondary"])),
            ("CowRequest held", ("dashed",)), ("waiting (blocked)", ("bar", "#CC3311")),
            ("task runs", ("tick",)), ("workflow step 1-3", ("circle",))]
        self.legend: _LegendPanel | None = None
        self._lanes = -1
        self.update(lab, cursor=cursor, title=title)

    def __repr__(self) -> str:
        return f"<TimelinePlot {self._lanes} lanes>"

    def _semi(self) -> list:
        return [self.bar_coll, self.span_coll, self.wait_coll, self.run_marks,
                self.done_marks, self.fail_marks, self.step_circles, *self.step_numbers,
                self.title]

    def _dynamic(self) -> list:
        return [self.cursor]

    def _resize(self, lanes: int) -> None:
        """Fit the figure's height to the lanes (the same figure, resized in place)."""
        lane_h, top, bottom, left = 30, 62, 36, 120
        width = self.width
        height = top + bottom + max(lanes, 3) * lane_h
        self.fig.set_size_inches((width + 0.5) / self.dpi, (height + 0.5) / self.dpi,
                                 forward=False)
        self.ax.set_position((left / width, bottom / height, (width - left - 14) / width,
                              (height - top - bottom) / height))
        if self.legend is not None:
            self.legend.image.remove()
        self.legend = _LegendPanel(self.fig, left - 4, height - 58, width - left - 10, 32, "",
                                   ncol=4)
        self.legend.set_entries(self._legend_entries)
        self.title.set_position((8 / width, 1 - 6 / height))
        self._lanes = lanes
        self._invalidate()

    def update(self, lab: Lab | None = None, *, trace: Sequence[Event] | None = None,
               cursor: float | None = None, title: str | None = None,
               start: int = 0) -> None:
        """Redraw from ``lab`` (or an explicit ``trace``), with the cursor at ``cursor``
        decisions (default: after the last one), from decision ``start`` on."""
        if trace is None:
            if lab is None:
                raise ValueError("pass a lab or a trace")
            trace = lab.trace
        violating = tuple(v.task for v in lab.violations()) if lab is not None else ()
        key = (id(trace), len(trace), violating, start)
        if key == getattr(self, "_content_key", None):
            self._move_cursor(cursor, title)
            return
        self._content_key = key
        self._invalidate_semi()
        m = timeline_model(trace, violating, start)
        n = len(m.lanes)
        if n != self._lanes:
            self._resize(n)
        ax = self.ax

        def rect(lane: int, x0: float, x1: float, h: float) -> list[tuple[float, float]]:
            return [(x0, lane - h / 2), (x1, lane - h / 2), (x1, lane + h / 2),
                    (x0, lane + h / 2)]

        bars = sorted(m.bars, key=lambda b: b[3])
        self.bar_coll.set_verts([rect(b[0], b[1], max(b[2], b[1] + 0.04),
                                      self.HEIGHTS[min(b[3], 4)]) for b in bars])
        self.bar_coll.set_facecolor([LAYER_COLOURS[b[4]] for b in bars])
        self.span_coll.set_verts([rect(s[0], s[1], s[2], 0.86) for s in m.cow_spans])
        self.wait_coll.set_verts([rect(w[0], w[1], max(w[2], w[1] + 0.04), 0.16)
                                  for w in m.waits])
        self.run_marks.set_data([r[1] for r in m.runs], [r[0] - 0.42 for r in m.runs])
        done = [e for e in m.ends if e[2] == "done"]
        bad = [e for e in m.ends if e[2] != "done"]
        self.done_marks.set_data([e[1] for e in done], [e[0] for e in done])
        self.fail_marks.set_data([e[1] for e in bad], [e[0] for e in bad])
        self.step_circles.set_data([st[1] for st in m.steps], [st[0] for st in m.steps])
        for k, line in zip((1, 2, 3), self.step_numbers, strict=True):
            mine = [st for st in m.steps if st[2] == k]
            line.set_data([st[1] for st in mine], [st[0] for st in mine])
        span = m.decisions - start
        if self.fit:
            right = start + max(span, 1)
        else:
            right = start + max(10, -(-(span + 1) // 10) * 10)  # grows by tens: few redraws
        labels = tuple(ln.label for ln in m.lanes)
        if (start, right, labels) != getattr(self, "_axes_key", None):
            self._axes_key = (start, right, labels)
            ax.set_xlim(start - 0.2, right + 0.2)
            ax.set_ylim(n - 0.5, -0.62)
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels, fontsize=8)
            step = 1 if right - start <= 20 else (5 if right - start <= 100 else 20)
            ax.set_xticks(np.arange(start, right + 1, step))
            self._invalidate()
        self.model = m
        self._move_cursor(cursor, title)

    def _move_cursor(self, cursor: float | None, title: str | None) -> None:
        x = self.model.decisions if cursor is None else cursor
        self.cursor.set_xdata([x, x])
        if title is not None and title != self.title.get_text():
            self.title.set_text(title)
            self._invalidate_semi()
        self._changed()


def plot_timeline(lab: Lab, *, cursor: float | None = None, dpi: int = 80,
                  width: int = 820, title: str = "", fit: bool = True) -> TimelinePlot:
    """Swim lanes per task (NBD writes, VM reads and writes, each write's backup COW).

    Bars are requests (colour = node), dashed boxes CowRequest spans, red bars
    waits, ticks the decisions where the task ran, circled numbers the steps
    1–3 of each primary write, a red X a task that failed or read conflicting
    data.  The red line is the cursor (after ``cursor`` decisions).  ``width``
    is in pixels; ``fit=False`` lets the x axis grow in steps of ten decisions
    (fewer full redraws while a run grows, as in the playground).
    """
    return TimelinePlot(lab, cursor=cursor, dpi=dpi, width=width, title=title, fit=fit)
