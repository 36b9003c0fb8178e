"""What every figure shares: the fixed colours, figure set-up, blitting and PNG output.

The figures are plain :class:`~matplotlib.figure.Figure` objects on an Agg
canvas, never pyplot figures: they do not accumulate in ``plt.get_fignums()``,
render identically in tests, on the command line and on Binder, and show in a
notebook through ``_repr_png_``.  Matplotlib draws every pixel; Pillow
encodes the PNG (no metadata: same state, same bytes).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image

from ..errors import ArgumentError, ConfigError

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
TEXT_COLOUR = "#202020"

#: Which layer served a read (provenance) and request bars in the timeline.
LAYER_COLOURS = {
    "active": "#0077BB",
    "hidden": "#EE7733",
    "secondary": "#009988",
    "mixed": "#EE3377",
    "colo-top": "#BBBBBB",
}
#: The lab's node names and the layer (panel) each one is.
NODE_LAYER = {"live-disk": "secondary", "fleece": "hidden",  # fleecing: the same roles
              "secondary-disk": "secondary", "hidden": "hidden", "active": "active",
              "colo-top": "colo-top"}
LAYER_TITLES = {"live": "live disk (the guest writes here)",
                "fleece": "fleece: the overlay (old contents copied here)",
                "snapshot": "snapshot: what a new client read would return",
                "secondary": "secondary", "hidden": "hidden", "active": "active",
                "vm-view": "VM view"}

#: Text sizes in pixels at the image's natural size (a trainee reads them at 100 %):
#: nothing below 11 px.
TEXT_PX = 12.0
SMALL_PX = 11.0
TITLE_PX = 14.0


def byte_colour(byte: int) -> str:
    """The fixed colour (``"#rrggbb"``) of a block whose bytes are all ``byte``.

    0x00 is white, bytes below 0x80 (the original data of ``fill="index"``) are
    greys, written bytes (0x80 and up, as the examples use) take
    :data:`WRITE_PALETTE` in turn.  The mapping never depends on the run.
    """
    if isinstance(byte, bool) or not isinstance(byte, int | np.integer):
        raise ArgumentError(f"byte must be an integer 0-255, got {byte!r}")
    if not 0 <= byte <= 255:
        raise ConfigError(f"byte must be 0-255, got {byte!r}")
    if byte == 0:
        return ZERO_COLOUR
    if byte < 0x80:
        return ORIGINAL_GREYS[byte % len(ORIGINAL_GREYS)]
    return WRITE_PALETTE[byte % len(WRITE_PALETTE)]


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as three 0-255 integers."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


UNALLOC = 256  # colour-table index: not allocated in this layer
NODATA = 257  # colour-table index: no data (the VM gets EIO; a read not finished)
EMPTY = 258  # colour-table index: past the end of the disk, outside a read

def rgba_table(colours: list[str]) -> np.ndarray:
    """Colours as an RGBA uint8 table (images given RGBA draw several times faster)."""
    return np.array([(*rgb(c), 255) for c in colours], dtype=np.uint8)


#: Colour table of the block map: bytes 0-255, then UNALLOC, NODATA, EMPTY.
BYTE_LUT = rgba_table([byte_colour(b) for b in range(256)]
                      + [UNALLOC_COLOUR, NODATA_COLOUR, EMPTY_COLOUR])


def hex_byte(b: int) -> str:
    return f"0x{b:02x}"


def pt(px: float, dpi: float) -> float:
    """Points for a size of ``px`` pixels on a figure of ``dpi`` (fonts, line widths)."""
    return px * 72.0 / dpi


def fit_text(text: Any, words: str, max_px: float) -> str:
    """``words`` cut with "…" so that ``text`` (a matplotlib Text) is at most ``max_px``
    wide on its figure's canvas; sets and returns what is shown.

    A figure keeps its natural size (never scaled down), so a long line is cut, not
    squeezed; the widgets show the full words as HTML next to it.
    """
    renderer = text.figure.canvas.get_renderer()
    prop = text.get_fontproperties()

    def width(s: str) -> float:
        return renderer.get_text_width_height_descent(s, prop, ismath=False)[0]

    shown = words
    if words and width(words) > max_px:
        lo, hi = 0, len(words)
        while lo < hi:  # the longest prefix that fits with the ellipsis
            mid = (lo + hi + 1) // 2
            if width(words[:mid].rstrip() + "…") <= max_px:
                lo = mid
            else:
                hi = mid - 1
        shown = words[:lo].rstrip() + "…"
    text.set_text(shown)
    return shown


def new_figure(width: int, height: int, dpi: float) -> Figure:
    """A figure of ``width`` x ``height`` pixels on an Agg canvas (not a pyplot figure)."""
    # +0.5: the canvas truncates the size to whole pixels; never lose one to rounding
    fig = Figure(figsize=((width + 0.5) / dpi, (height + 0.5) / dpi), dpi=dpi,
                 facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def resize_figure(fig: Figure, width: int, height: int) -> None:
    """Give ``fig`` a new size in pixels, in place (its artists stay)."""
    fig.set_size_inches((width + 0.5) / fig.dpi, (height + 0.5) / fig.dpi, forward=False)


def encode_png(rgba: np.ndarray) -> bytes:
    """RGB(A) pixels as a PNG (Pillow; no metadata: same pixels, same bytes).

    The canvas's RGBA buffer is wrapped without a copy and converted to RGB by
    Pillow (the figures are opaque); ``compress_level=1``: these
    flat-coloured figures compress well even at the fastest level, and the
    encoding is part of every Step a trainee clicks.
    """
    h, w = rgba.shape[:2]
    mode = "RGBA" if rgba.shape[2] == 4 else "RGB"
    data = rgba if rgba.flags.c_contiguous else np.ascontiguousarray(rgba)
    image = Image.frombuffer(mode, (w, h), data, "raw", mode, 0, 1)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def canvas_rgba(fig: Figure) -> np.ndarray:
    """The canvas's RGBA pixels, without a copy (every canvas labkit draws on is Agg
    or built on it: an interactive canvas subclasses FigureCanvasAgg)."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg), f"not an Agg canvas: {type(canvas).__name__}"
    return np.asarray(canvas.buffer_rgba())


def figure_png(fig: Figure) -> bytes:
    """A figure drawn in full and encoded (for one-off images such as the snapshots)."""
    fig.canvas.draw()
    return encode_png(canvas_rgba(fig))


class Group:
    """Artists that change together, inside a fixed rectangle of the figure (pixels).

    ``key`` says what they show; a render redraws the group only when its key
    differs from the one last drawn.  Every artist is clipped to the rectangle,
    so a redraw never leaves stale pixels outside it.
    """

    def __init__(self, artists: list[Artist], x0: float, y0: float, x1: float,
                 y1: float) -> None:
        self.artists = artists
        self.bbox = Bbox.from_extents(x0, y0, x1, y1)
        self.key: Any = None
        self.drawn: Any = _NOTHING
        self.region: Any = None
        for a in artists:
            a.set_clip_box(self.bbox)
            a.set_clip_on(True)


_NOTHING = object()


def _overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _with_overlapping(stale: list[Group], groups: list[Group]) -> list[Group]:
    """``stale`` and every group overlapping one of them, transitively, in figure order."""
    todo = {id(g) for g in stale}
    grown = True
    while grown:
        grown = False
        for g in groups:
            if id(g) not in todo and any(_overlap(g.bbox, h.bbox) for h in groups
                                         if id(h) in todo):
                todo.add(id(g))
                grown = True
    return [g for g in groups if id(g) in todo]


class BlitFigure:
    """A figure drawn by matplotlib, re-rendered cheaply after :meth:`update`.

    Blitting by groups: the static parts (axes, ticks, labels) are drawn once
    (a full ``canvas.draw()`` with the changing artists left out); each
    :class:`Group` of changing artists (a panel's image and collections, a
    text, the legend rows), updated in place with ``set_data``, ``set_verts``
    and ``set_text``, is redrawn over its saved piece of that background only
    when its key changed — the canvas keeps the other groups' pixels.  A
    subclass calls :meth:`invalidate` when a static part changed (the next
    render draws everything).  An unchanged picture is not encoded again.
    """

    fig: Figure
    _drawn_size: tuple[int, int] | None = None
    _full: bool = True
    _png: bytes | None = None

    def groups(self) -> list[Group]:
        """The groups of changing artists (their keys set by the last update)."""
        return []

    #: How many PNGs :meth:`png` keeps by what the groups show (0: none); a state seen
    #: before (Undo, a replay going back) is then not drawn or encoded again.
    png_cache_size: int = 0
    _png_cache: dict[Any, bytes] | None = None

    def invalidate(self) -> None:
        """A static part changed: the next render redraws everything."""
        self._full = True
        self._png_cache = None

    def changed(self) -> None:
        """After an update: an interactive canvas redraws when idle; Agg renders on demand."""
        if type(self.fig.canvas) is not FigureCanvasAgg:
            self.fig.canvas.draw_idle()

    def render(self) -> np.ndarray:
        """Draw the current state; returns the canvas's RGBA pixels (a view)."""
        self._render()
        return canvas_rgba(self.fig)

    def _render(self) -> bool:
        """Bring the canvas up to date; True if any pixel may have changed."""
        canvas = self.fig.canvas
        if type(canvas) is not FigureCanvasAgg:
            canvas.draw()
            return True
        groups = self.groups()
        moving = [a for g in groups for a in g.artists]
        redrawn = False
        if self._full or self._drawn_size != canvas.get_width_height():
            for a in moving:
                a.set_animated(True)
            try:
                canvas.draw()
            finally:
                for a in moving:
                    a.set_animated(False)
            for g in groups:
                g.region = canvas.copy_from_bbox(g.bbox)
                g.drawn = _NOTHING
            self._full = False
            self._drawn_size = canvas.get_width_height()
            redrawn = True
        renderer = canvas.get_renderer()
        stale = [g for g in groups if g.drawn is _NOTHING or g.key != g.drawn]
        if any(g.region is None for g in stale):  # a group made after the last full draw
            self._full = True
            return self._render()
        # restoring a group's background erases whatever another group drew where they
        # overlap: redraw those too (most figures' groups do not overlap)
        todo = _with_overlapping(stale, groups)
        for g in todo:
            canvas.restore_region(g.region)
        for g in todo:
            for a in sorted(g.artists, key=lambda a: a.get_zorder()):
                if a.get_visible():
                    a.draw(renderer)
            g.drawn = g.key
            redrawn = True
        if redrawn:
            self._png = None
        return redrawn

    def png(self) -> bytes:
        """The current view as PNG bytes (the cached bytes when nothing was redrawn)."""
        key = None
        if self.png_cache_size and not self._full:
            key = (self.fig.canvas.get_width_height(), tuple(g.key for g in self.groups()))
            cache = self._png_cache or {}
            if key in cache:  # the canvas stays as drawn: the groups' drawn keys say so
                return cache[key]
        if self._render() or self._png is None:
            self._png = encode_png(canvas_rgba(self.fig))
        if key is not None:
            if self._png_cache is None or len(self._png_cache) >= self.png_cache_size:
                self._png_cache = {}
            self._png_cache[key] = self._png
        return self._png

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str) -> None:
        """Write the current view to ``path`` (PNG)."""
        with open(path, "wb") as f:
            f.write(self.png())


Swatch = tuple[Any, ...]  # a legend row's key: (kind, *arguments); see LegendRows


class LegendRows:
    """A legend made of a fixed pool of rows (a swatch patch and a text each), updated in
    place: :meth:`set_entries` changes the words, colours and which rows show.

    Unlike ``fig.legend`` (rebuilt and laid out again whenever its entries change),
    the rows are plain artists drawn in every frame, so a legend that follows the
    figure's content — only what is shown — costs no full redraw.  Each entry is
    ``(label, swatch)``; swatch is ``("fill", "#rrggbb")``, ``("hatch",)``,
    ``("outline",)``, ``("dashed",)``, ``("bar", "#rrggbb")``, ``("marker", m)``
    or ``("none",)``.  Rows fill ``ncol`` columns row by row.
    """

    def __init__(self, fig: Figure, x: float, y: float, rows: int, *, ncol: int = 1,
                 col_w: float = 200, row_h: float = 19, title: str = "",
                 hatch: str = "////") -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        W, H = fig.bbox.width, fig.bbox.height
        dpi = fig.dpi
        self.fig = fig
        self.capacity = rows * ncol
        self.col_w, self.row_h = col_w, row_h
        self.groups: list[Group] = []
        self.hatch = hatch
        self.entries: tuple[tuple[str, Swatch], ...] = ()
        self.title = fig.text(x / W, (y - 7) / H, title, ha="left", va="center",
                              fontsize=pt(TEXT_PX, dpi), color="#000000")
        first = 1 if title else 0
        self.swatches: list[Rectangle] = []
        self.marks: list[Line2D] = []
        self.texts = []
        for i in range(self.capacity):
            r, c = divmod(i, ncol)
            x0 = x + c * col_w
            yc = y - (r + first) * row_h - 7
            sw = Rectangle((x0 / W, (yc - 6) / H), 22 / W, 12 / H, transform=fig.transFigure,
                           lw=pt(0.8, dpi), visible=False)
            fig.add_artist(sw)
            mk = Line2D([(x0 + 11) / W], [yc / H], transform=fig.transFigure, ls="",
                        visible=False)
            fig.add_artist(mk)
            tx = fig.text((x0 + 28) / W, yc / H, "", ha="left", va="center",
                          fontsize=pt(TEXT_PX, dpi), color=TEXT_COLOUR)
            self.swatches.append(sw)
            self.marks.append(mk)
            self.texts.append(tx)

    @property
    def artists(self) -> list[Artist]:
        return [self.title, *self.swatches, *self.marks, *self.texts]

    def row_groups(self) -> list[Group]:
        """One group per row (a new or changed entry redraws only its row)."""
        out = []
        for sw, mk, tx in zip(self.swatches, self.marks, self.texts, strict=True):
            x0 = sw.get_x() * self.fig.bbox.width - 2
            yc = (sw.get_y() + sw.get_height() / 2) * self.fig.bbox.height
            x1 = x0 + self.col_w
            g = Group([sw, mk, tx], x0, yc - self.row_h / 2, x1 - 2, yc + self.row_h / 2)
            out.append(g)
        self.groups = out
        return out

    def set_keys(self) -> None:
        """Set each row group's key from the entries shown."""
        for i, g in enumerate(self.groups):
            g.key = self.entries[i] if i < len(self.entries) else None

    def set_entries(self, entries: list[tuple[str, Swatch]]) -> None:
        entries = list(entries)[:self.capacity]
        key = tuple(entries)
        if key == self.entries:
            return
        self.entries = key
        dpi = self.fig.dpi
        for i, (sw, mk, tx) in enumerate(zip(self.swatches, self.marks, self.texts,
                                             strict=True)):
            if i >= len(entries):
                sw.set_visible(False)
                mk.set_visible(False)
                tx.set_text("")
                continue
            label, swatch = entries[i]
            tx.set_text(label)
            kind = swatch[0]
            sw.set_visible(kind in ("fill", "hatch", "outline", "dashed", "bar"))
            mk.set_visible(kind == "marker")
            sw.set_hatch(None)  # type: ignore[arg-type]  # no hatch: matplotlib's stub says str
            sw.set_linestyle("-")
            sw.set_linewidth(pt(0.8, dpi))
            sw.set_edgecolor("#808080")
            if kind == "fill":
                sw.set_facecolor(swatch[1])
            elif kind == "hatch":
                sw.set_facecolor("white")
                sw.set_hatch(self.hatch)
                sw.set_edgecolor(HATCH_COLOUR)
            elif kind in ("outline", "dashed"):
                sw.set_facecolor("white")
                sw.set_edgecolor(MARK_COLOUR)
                sw.set_linewidth(pt(2, dpi))
                if kind == "dashed":
                    sw.set_linestyle((0, (3, 2)))
            elif kind == "bar":
                sw.set_facecolor(swatch[1])
                sw.set_edgecolor(swatch[1])
            elif kind == "marker":
                style: dict[str, Any] = dict(swatch[1:]) if len(swatch) > 1 else {}
                mk.set_marker(style.get("marker", "o"))
                mk.set_markersize(float(style.get("size", 8)))
                mk.set_color(style.get("colour", MARK_COLOUR))
                mk.set_markerfacecolor(style.get("face", style.get("colour", MARK_COLOUR)))
                mk.set_markeredgecolor(MARK_COLOUR if style.get("face") else
                                       style.get("colour", MARK_COLOUR))
