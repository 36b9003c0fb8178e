"""Shared widget plumbing: a figure shown in an Image widget, text twins, notebook display."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..lab import Lab
from ..render import LEGEND, block_map
from ..steps import STEP_TITLES, workflow_step
from ._session import cow_requests


class FigureImage:
    """A plot (anything with ``.png()``) shown in an ``ipywidgets.Image``.

    The figure is created once; :meth:`refresh` re-renders the *same* figure
    into the same Image widget (PNG works everywhere: JupyterLab, Binder,
    nbval, a headless browser — no interactive backend needed).
    """

    def __init__(self, plot: Any) -> None:
        self.plot = plot
        self.image = w.Image(value=plot.png(), format="png",
                             layout=w.Layout(max_width="100%", height="auto"))

    def refresh(self) -> None:
        self.image.value = self.plot.png()


class App:
    """Base of the three widgets: ``.widget`` (the ipywidgets layout) and ``.text()``."""

    widget: w.Widget

    def text(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def figures(self) -> list[Any]:
        """The plots the widget shows now (for :func:`labkit.widgets.snapshot_png`)."""
        return []

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Show the widget; its text/plain form is the deterministic text twin (nbval)."""
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.text()
        return bundle

    def __repr__(self) -> str:
        return self.text()


def table(lab: Lab) -> str:
    """The CLI's block-map table of the lab's layers, with its legend."""
    return LEGEND + "\n" + block_map(lab.layers(), lab.block)


def current_step(lab: Lab) -> tuple[int, str]:
    """The workflow step (1–3) of the most recent primary-write event and its sentence;
    (0, why) before any primary write reached the secondary disk."""
    for e in reversed(lab.trace):
        note = workflow_step(e)
        if note is not None:
            if note.step == 3 and e.kind == "req-end":
                return 3, f"{note.text} — steps 1-3 done for {e.task}"
            return note.step, note.text
    return 0, "no primary write has reached the secondary disk yet"


def step_heading(step: int) -> str:
    if step == 0:
        return "Before step 1: waiting for an NBD write from the primary"
    return STEP_TITLES[step]


def task_lines(lab: Lab, runnable_names: list[str]) -> list[str]:
    """Runnable and blocked tasks, one line each (why a task is blocked, in words)."""
    out = [f"runnable: {', '.join(runnable_names) if runnable_names else '(none)'}"]
    for t in lab.kernel.blocked():
        out.append(f"blocked: {t.name} waits for {t.why_blocked}")
    cows = cow_requests(lab)
    out.append("CowRequests: " + ("; ".join(cows) if cows else "none held"))
    return out


def button(description: str, *, tooltip: str = "", style: str = "",
           icon: str = "") -> w.Button:
    return w.Button(description=description, tooltip=tooltip or description,
                    button_style=style, icon=icon, layout=w.Layout(width="auto"))
