"""Shared widget plumbing: a figure shown in an Image widget, text twins, notebook display."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from ..lab import Lab
from ..plot import CLIENT, GUEST, NBD_SERVER, GraphPlot, plot_graph
from ..plot._shape import shape
from ..render import LEGEND, block_cells, block_map
from ._session import cow_requests
from ._whereabouts import parked_at, whereabouts


class FigureImage:
    """A plot (anything with ``.png()``) shown in an ``ipywidgets.Image``.

    The figure is created once; :meth:`refresh` re-renders the *same* figure
    into the same Image widget (PNG works everywhere: JupyterLab, Binder,
    nbval, a headless browser — no interactive backend needed).
    """

    def __init__(self, plot: Any) -> None:
        self.plot = plot
        data = plot.png()
        # Shown at its natural size, never scaled down: a figure squeezed into a
        # narrow pane had text of 5-7 px.  The figures are sized to fit the output
        # area; a wider one scrolls rather than shrinks.
        self.width = png_width(data)
        self.image = w.Image(value=data, format="png",
                             layout=w.Layout(width=f"{self.width}px", max_width="none",
                                             height="auto", flex="0 0 auto"))

    def refresh(self) -> None:
        data = self.plot.png()
        width = png_width(data)
        if width != self.width:
            self.width = width
            self.image.layout.width = f"{width}px"
        self.image.value = data


def png_width(data: bytes) -> int:
    """The width in pixels a PNG declares (its IHDR chunk, bytes 16-19)."""
    return int.from_bytes(data[16:20], "big")


class App:
    """Base of the three widgets: ``.widget`` (the ipywidgets layout) and ``.text()``."""

    widget: w.Widget

    def text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def figures(self) -> list[Any]:
        """The plots the widget shows now (for :func:`labkit.widgets.snapshot_png`)."""
        return []

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Show the widget, with two fallbacks stored beside it in the notebook.

        JupyterLab shows a widget output (``application/vnd.jupyter.widget-view+json``)
        only when the notebook is trusted and the widget's model is known (a live
        kernel, or widget state saved in the notebook's metadata); otherwise it shows
        the richest *safe* form beside it: ``image/png`` in an untrusted notebook (a
        fresh clone), ``text/plain`` where images are not shown.  So the stored forms
        are a picture of the widget's figures under a line saying what to do, and a
        short placeholder — not the 20-40-line text twin (``.text()``), which stays
        the widget's ``repr``.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.placeholder()
        bundle["image/png"] = self.still_png()
        return bundle

    def placeholder(self) -> str:
        """What a notebook shows of the widget when it cannot run it (a few lines)."""
        name = type(self).__name__
        return (f"[{name}: an interactive widget; run this cell to use it]\n"
                f"{self.status_line()}\n"
                f"(its full state in text: print the widget's .text())")

    def status_line(self) -> str:
        """One line: where the widget is (the first line of the text twin)."""
        return self.text().splitlines()[0]

    def still_png(self) -> bytes:
        """A picture of the widget now: its figures, under a line saying it is a picture."""
        from ._snapshot import snapshot_png
        return snapshot_png(self, twin=False,
                            title=f"{type(self).__name__} (a picture: run the cell to use "
                                  f"the widget)")

    def __repr__(self) -> str:
        return self.text()


def table(lab: Lab) -> str:
    """The CLI's block-map table of the lab's layers, with its legend."""
    return LEGEND + "\n" + block_map(lab.layers(), lab.block)


#: The most blocks a widget lists byte by byte under its block map (two rows of 32).
BYTES_MAX_BLOCKS = 64


def byte_rows_html(lab: Lab, changed: dict[str, Any], names: tuple[str, ...]) -> str:
    """The block map's bytes as text (the CLI table's cells: ``bb`` = every byte of the
    block is 0xbb, ``..`` = not allocated in that layer), cells changed by the last step
    highlighted; empty for a disk of more than :data:`BYTES_MAX_BLOCKS` blocks (the text
    twin has them all)."""
    nblocks = -(-lab.size // lab.block)
    if nblocks > BYTES_MAX_BLOCKS:
        return ""
    layers = lab.layers()
    width = max(len(n) for n in names) + 2
    rows = [html.escape("block".ljust(width))
            + html.escape(" ".join(str(b).ljust(8) for b in range(0, nblocks, 4)).rstrip())]
    for name in names:
        layer = layers.get(name)
        if layer is None:
            rows.append(html.escape(name.ljust(width) + "(not readable)"))
            continue
        cells = block_cells(layer, lab.block)
        hot = changed.get(name)
        out = []
        for i, c in enumerate(cells):
            if i and i % 4 == 0:
                out.append(" ")
            cell = html.escape(c)
            if hot is not None and i < len(hot) and hot[i]:
                cell = (f"<b style='background:#FFE08A;outline:1px solid #B08800'>"
                        f"{cell}</b>")
            out.append(cell)
        rows.append(html.escape(name.ljust(width)) + "".join(out))
    note = ("xx = every byte of the block is 0xXX · .. = not allocated in this layer (reads "
            "go to the layer below) · highlighted: changed by the last click")
    return (f"<pre style='margin:0;{FONT};white-space:pre;overflow-x:auto'>"
            + "\n".join(rows) + f"</pre><div style='{FONT};color:#404040'>"
            f"{html.escape(note)}</div>")


def task_lines(lab: Lab, runnable_names: list[str]) -> list[str]:
    """Runnable and blocked tasks, one line each (why a task is blocked, in words)."""
    out = [f"runnable: {', '.join(runnable_names) if runnable_names else '(none)'}"]
    for t in lab.kernel.blocked():
        out.append(f"blocked: {t.name} waits for {t.why_blocked}")
    cows = cow_requests(lab)
    held = "copies and frozen reads" if shape(lab).fleecing else "CowRequests"
    out.append(f"{held}: " + ("; ".join(cows) if cows else "none held"))
    return out


def parked_lines(lab: Lab, *, finished: bool = False) -> list[str]:
    """Where each task is parked (``task: words``); finished tasks only when ``finished``
    (a finished VM read — or backup-client read — always: what it returned is part of the
    lesson)."""
    out = []
    tasks = lab.kernel.tasks
    reader = shape(lab).reader  # a VM read (COLO), a backup client's read (fleecing)
    for name, words in whereabouts(lab).items():
        if tasks[name].done and not (finished or name.startswith(reader)):
            continue
        out.append(f"{name}: {words}")
    return out


def button(description: str, *, tooltip: str = "", style: str = "",
           icon: str = "") -> w.Button:
    """A button as wide as its text (a fixed width cut labels to "L…")."""
    return w.Button(description=description, tooltip=tooltip or description,
                    button_style=style, icon=icon,
                    layout=w.Layout(width="auto", min_width="max-content"))


def spaced(gap_px: int, **layout: Any) -> w.Layout:
    """A box layout whose children are ``gap_px`` apart.

    ipywidgets 8.1's ``Layout`` has no ``gap`` (a ``gap=`` is dropped, with only a
    DeprecationWarning); CSS ``grid-gap`` is ``gap``'s legacy alias, and spaces the
    children of a flex box (HBox, VBox) as well as a grid's.
    """
    return w.Layout(grid_gap=f"{gap_px}px", **layout)


#: Text in the widgets: never below 12 CSS px (the workshop projector).
FONT = "font-size:13px;line-height:1.35"


def pre(lines: list[str], *, style: str = "") -> str:
    """Lines as preformatted HTML that wraps instead of being cut."""
    body = html.escape("\n".join(lines))
    return (f"<pre style='margin:0;{FONT};white-space:pre-wrap;overflow-wrap:break-word;"
            f"{style}'>{body}</pre>")


def banner_html(text: str, *, bad: bool) -> str:
    """A coloured banner (red: the oracle found a violation)."""
    colours = "background:#CC3311;color:white" if bad else "background:#E8F1F8;color:#102030"
    return (f"<div style='{colours};padding:8px 12px;border-radius:4px;font-size:14px;"
            f"line-height:1.4;white-space:normal'>{text}</div>")


def graph_highlight(lab: Lab) -> dict[str, tuple[str, str]]:
    """:func:`parked_at` as the graph figure's badges: a task at no node waits at the
    guest (VM requests), the NBD server (the primary's writes) or the backup client (its
    reads, in a fleecing lab)."""
    out = {}
    for task, (node, label) in parked_at(lab).items():
        if not node:
            node = NBD_SERVER if task.startswith("nbd-write#") else (
                CLIENT if task.startswith("client-read#") else GUEST)
        out[task] = (node, label)
    return out


class GraphView:
    """The block graph with the request in flight and where each task is parked, in an
    Image widget; redrawn only when what it shows changed."""

    def __init__(self, lab: Lab) -> None:
        self.key: tuple = (dict(graph_highlight(lab)), lab.state, lab.design)
        self.plot: GraphPlot = plot_graph(lab, highlight=self.key[0], title=self._title(lab))
        self.figure = FigureImage(self.plot)

    @staticmethod
    def _title(lab: Lab) -> str:
        if shape(lab).fleecing:
            return f"Who is where · {lab.state} · scheme {lab.design}"
        return f"Who is where · replication {lab.state} · design {lab.design}"

    def refresh(self, lab: Lab) -> None:
        marks = graph_highlight(lab)
        key = (marks, lab.state, lab.design)
        if key == self.key:
            return
        self.key = key
        self.plot.update(lab, highlight=marks, title=self._title(lab))
        self.figure.refresh()
