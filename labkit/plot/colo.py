"""COLO in one picture: the two hosts, the NBD write path, the secondary's chain, checkpoints.

A static overview for notebook 00 (``plot_colo()``), drawn once: nothing here
reads a lab.  It shows what QEMU builds for COLO block replication —

* on the **primary**: the VM's writes go to its own disk and, through the
  ``quorum`` node's second child (an NBD client, QEMU's ``replication`` driver in
  primary mode), to the secondary over the network;
* on the **secondary**: the NBD server writes them into the **secondary disk**;
  its backup job (``sync=none``) first copies the old contents into **hidden**
  (``backup_do_cow``, steps 1–3); the secondary VM reads and writes through the
  ``replication`` node (``colo-top``) into **active** → hidden → secondary disk;
* the **checkpoint** (``xen-colo-do-checkpoint``): the primary's VM state is
  copied to the secondary, and active and hidden are emptied.

The layer colours are the other figures' (:data:`LAYER_COLOURS`), so the
picture's boxes match the block maps' rows.  Returned as a
:class:`~matplotlib.figure.Figure` on an Agg canvas, shown in a notebook
through ``_repr_png_``; the same call gives the same bytes.
"""

from __future__ import annotations

from typing import cast

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ._common import LAYER_COLOURS, TEXT_COLOUR, figure_png, new_figure

# 840 px: the widest a notebook output shows at its natural size at 1280x800 with the
# file browser open; drawn at 9.0 x 4.7 in, the layout it was made for
WIDTH, HEIGHT, DPI = 840, 439, 100 * 840 / 900
_PRIMARY = "#DDDDDD"
_VM = "#F4F4F4"
_NET = "#555555"


class ColoFigure(Figure):
    """The overview figure; ``_repr_png_`` shows it in a notebook."""

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def _box(ax: Axes, x: float, y: float, w: float, h: float, title: str, sub: str,
         colour: str, text: str = TEXT_COLOUR) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.004,rounding_size=0.012",
                                facecolor=colour, edgecolor="#404040", linewidth=1.0))
    ax.text(x + w / 2, y + h * 0.62, title, ha="center", va="center", fontsize=11.5,
            fontweight="bold", color=text)
    ax.text(x + w / 2, y + h * 0.27, sub, ha="center", va="center", fontsize=9.5, color=text)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str = "",
           colour: str = TEXT_COLOUR, style: str = "-|>", dashed: bool = False,
           at: tuple[float, float] | None = None, rad: float = 0.0, ha: str = "center") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=13,
                                 color=colour, linewidth=1.6,
                                 linestyle="--" if dashed else "-",
                                 connectionstyle=f"arc3,rad={rad}"))
    if label:
        x, y = at if at is not None else ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(x, y, label, ha=ha, va="center", fontsize=9.5, color=colour,
                bbox=dict(facecolor="white", edgecolor="none", pad=1.0))


def plot_colo() -> ColoFigure:
    """COLO block replication in one figure (primary, NBD, the secondary's chain, checkpoint)."""
    fig = new_figure(WIDTH, HEIGHT, DPI)
    fig.__class__ = ColoFigure
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")

    # the two hosts
    for x, w, name in ((0.01, 0.32, "primary host"), (0.37, 0.62, "secondary host")):
        ax.add_patch(FancyBboxPatch((x, 0.03), w, 0.86, boxstyle="round,pad=0.004",
                                    facecolor="#FAFAFA", edgecolor="#A0A0A0", linewidth=1.0))
        ax.text(x + 0.012, 0.855, name, ha="left", va="center", fontsize=12.5,
                fontweight="bold", color=TEXT_COLOUR)
    ax.text(0.5, 0.955, "COLO block replication: the secondary VM must see the last "
                        "checkpoint plus its own writes", ha="center", va="center",
            fontsize=12, color=TEXT_COLOUR)

    # primary
    _box(ax, 0.04, 0.66, 0.26, 0.12, "primary VM", "runs ahead freely", _VM)
    _box(ax, 0.04, 0.40, 0.26, 0.12, "quorum + replication", "each write goes to both",
         _PRIMARY)
    _box(ax, 0.04, 0.10, 0.26, 0.12, "primary disk", "the primary's own copy", _PRIMARY)
    _arrow(ax, (0.17, 0.66), (0.17, 0.52), "reads / writes", at=(0.17, 0.59))
    _arrow(ax, (0.17, 0.40), (0.17, 0.22), "write", at=(0.17, 0.31))

    # secondary: VM, replication node, active, hidden, secondary disk
    x0, w = 0.68, 0.28
    _box(ax, x0, 0.72, w, 0.10, "secondary VM", "sees: checkpoint + own writes", _VM)
    _box(ax, x0, 0.575, w, 0.10, "replication (colo-top)", "routes the VM's I/O",
         LAYER_COLOURS["colo-top"])
    _box(ax, x0, 0.43, w, 0.10, "active  (qcow2)", "the VM's own writes",
         LAYER_COLOURS["active"], "white")
    _box(ax, x0, 0.285, w, 0.10, "hidden  (qcow2)", "old data the primary overwrote",
         LAYER_COLOURS["hidden"])
    _box(ax, x0, 0.07, w, 0.12, "secondary disk  (raw)", "the primary's data, as it arrives",
         LAYER_COLOURS["secondary"], "white")
    mid = x0 + w / 2
    for top, bottom in ((0.72, 0.675), (0.575, 0.53), (0.43, 0.385), (0.285, 0.19)):
        _arrow(ax, (mid, top), (mid, bottom))
    ax.text(x0 - 0.015, 0.52, "the VM's reads fall through:\nactive, else hidden,\n"
                              "else the secondary disk", ha="right", va="center",
            fontsize=9.5, color=TEXT_COLOUR)

    # the NBD write path: primary -> NBD server -> (step 2 copy) -> secondary disk
    _box(ax, 0.44, 0.07, 0.17, 0.12, "NBD server", "the primary's writes", "#EEEEEE")
    _arrow(ax, (0.30, 0.43), (0.50, 0.19), colour=_NET)
    ax.text(0.475, 0.225, "writes over NBD, as they happen", ha="left", va="center",
            fontsize=9.5, color=_NET)
    _arrow(ax, (0.61, 0.13), (x0, 0.13), "step 3", at=(0.645, 0.165))
    _arrow(ax, (x0 + 0.03, 0.19), (x0 + 0.03, 0.285), colour=LAYER_COLOURS["hidden"],
           rad=-0.0)
    ax.text(x0 - 0.015, 0.335, "step 2, before a write lands: the\nbackup job copies "
                               "the old data",
            ha="right", va="center", fontsize=9.5, color="#B0541B")

    # checkpoint
    _arrow(ax, (0.30, 0.74), (x0, 0.77), dashed=True)
    ax.text(0.49, 0.69, "checkpoint: the VM state is copied;\nactive and hidden are "
                        "emptied", ha="center", va="center", fontsize=9.5,
            color=TEXT_COLOUR)
    return cast(ColoFigure, fig)


__all__ = ["ColoFigure", "plot_colo"]
