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
from PIL import Image

from ..errors import ConfigError

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
NODE_LAYER = {"secondary-disk": "secondary", "hidden": "hidden", "active": "active",
              "colo-top": "colo-top"}
LAYER_TITLES = {"secondary": "secondary", "hidden": "hidden", "active": "active",
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
        raise TypeError(f"byte must be an integer 0-255, got {byte!r}")
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

#: Colour table of the block map: bytes 0-255, then UNALLOC, NODATA, EMPTY.
BYTE_LUT = np.array([rgb(byte_colour(b)) for b in range(256)]
                    + [rgb(UNALLOC_COLOUR), rgb(NODATA_COLOUR), rgb(EMPTY_COLOUR)],
                    dtype=np.uint8)


def hex_byte(b: int) -> str:
    return f"0x{b:02x}"


def pt(px: float, dpi: float) -> float:
    """Points for a size of ``px`` pixels on a figure of ``dpi`` (fonts, line widths)."""
    return px * 72.0 / dpi


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
    """RGB(A) pixels as a PNG (Pillow; 8-bit RGB, no metadata: same pixels, same bytes).

    ``compress_level=1``: these flat-coloured figures compress well even at the
    fastest level, and the encoding is part of every Step a trainee clicks.
    """
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="PNG",
                                                              compress_level=1)
    return buf.getvalue()


def figure_png(fig: Figure) -> bytes:
    """A figure drawn in full and encoded (for one-off images such as the snapshots)."""
    fig.canvas.draw()
    return encode_png(np.asarray(fig.canvas.buffer_rgba()))


class BlitFigure:
    """A figure drawn by matplotlib, re-rendered cheaply after :meth:`update`.

    Blitting: the static parts (axes, ticks, labels, the legend) are drawn once
    into a background; each render restores it and draws only the artists that
    change per step (:meth:`dynamic`, updated in place with ``set_data``,
    ``set_verts``, ``set_text``).  A subclass calls :meth:`invalidate` when a
    static part changed (the next render draws everything).  The PNG of an
    unchanged picture is not encoded again.
    """

    fig: Figure
    _background: Any = None
    _png: bytes | None = None
    _png_pixels: np.ndarray | None = None

    def dynamic(self) -> list[Artist]:
        """The artists drawn in every frame (on top of the static background)."""
        return []

    def invalidate(self) -> None:
        """A static part changed: the next render redraws everything."""
        self._background = None

    def changed(self) -> None:
        """After an update: an interactive canvas redraws when idle; Agg renders on demand."""
        if type(self.fig.canvas) is not FigureCanvasAgg:
            self.fig.canvas.draw_idle()

    def render(self) -> np.ndarray:
        """Draw the current state; returns the canvas's RGBA pixels (a view)."""
        canvas = self.fig.canvas
        if type(canvas) is not FigureCanvasAgg:
            canvas.draw()
            return np.asarray(canvas.buffer_rgba())
        dynamic = self.dynamic()
        if self._background is None or self._background_size != canvas.get_width_height():
            for a in dynamic:
                a.set_animated(True)
            try:
                canvas.draw()
            finally:
                for a in dynamic:
                    a.set_animated(False)
            self._background = canvas.copy_from_bbox(self.fig.bbox)
            self._background_size = canvas.get_width_height()
        else:
            canvas.restore_region(self._background)
        renderer = canvas.get_renderer()
        for a in sorted(dynamic, key=lambda a: a.get_zorder()):
            if a.get_visible():
                a.draw(renderer)
        return np.asarray(canvas.buffer_rgba())

    def png(self) -> bytes:
        """The current view as PNG bytes (the cached bytes when no pixel changed)."""
        pixels = self.render()
        if self._png is not None and self._png_pixels is not None \
                and self._png_pixels.shape == pixels.shape \
                and np.array_equal(self._png_pixels, pixels):
            return self._png
        self._png_pixels = pixels.copy()
        self._png = encode_png(pixels)
        return self._png

    def _repr_png_(self) -> bytes:
        return self.png()

    def save(self, path: str) -> None:
        """Write the current view to ``path`` (PNG)."""
        with open(path, "wb") as f:
            f.write(self.png())
