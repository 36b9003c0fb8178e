"""A swim-lane timeline of a run: who ran when, on which node, who waited for whom.

Lanes per task (the NBD writes, the VM's reads and writes, each write's
backup COW on a lane of its own): requests as bars (one colour per node),
CowRequest spans as dashed boxes, waits as red bars, a tick at each scheduling
decision where the task ran, the circled numbers of the backup workflow's
steps 1–3 (from :func:`labkit.steps.workflow_step`), a dot where a task
finished and a red X where it failed or read conflicting data.  Read from the
trace's ``kind``, ``node`` and ``task`` fields only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.collections import PolyCollection

from ..errors import ArgumentError
from ..kernel import Event
from ..lab import Lab
from ..steps import workflow_step
from ._common import (
    LAYER_COLOURS,
    MARK_COLOUR,
    NODE_LAYER,
    SMALL_PX,
    TEXT_PX,
    TITLE_PX,
    BlitFigure,
    Group,
    LegendRows,
    new_figure,
    pt,
    resize_figure,
)
from ._shape import COLO, Shape, shape

__all__ = ["Lane", "TimelineModel", "TimelinePlot", "plot_timeline", "timeline_model"]

WAIT_COLOUR = "#CC3311"
CURSOR_COLOUR = "#CC3311"  # "red line: now", as the widgets' titles say


@dataclass
class Lane:
    """One swim lane: its label, the task it belongs to, and whether it is a COW lane."""

    label: str
    task: str
    cow: bool = False


@dataclass
class TimelineModel:
    """The timeline read from a trace: lanes, bars, spans, waits, step marks (no drawing)."""

    lanes: list[Lane]
    bars: list[tuple[int, float, float, int, str]]  # lane, x0, x1, depth, layer
    cow_spans: list[tuple[int, float, float]]
    waits: list[tuple[int, float, float]]
    runs: list[tuple[int, float]]
    steps: list[tuple[int, float, int]]  # lane, x, step number
    ends: list[tuple[int, float, str]]  # lane, x, "done" | "failed" | "violation"
    decisions: int
    start: int = 0


def timeline_model(trace: Sequence[Event], violations: Sequence[str] = (),
                   start: int = 0, era: str = "2.8", roles: Shape = COLO) -> TimelineModel:
    """Lay a trace out on swim lanes; x is the scheduling decision (slot [d, d+1)).

    ``start``: leave out everything before decision ``start`` (a window on a
    long run: lanes only for the tasks active from there on).  ``roles``: the
    graph's (:mod:`labkit.plot._shape`): whose writes copy first, to where.
    """
    if start > 0:
        trace = _window(trace, start)
    xs, decisions = _positions(trace, start)
    lanes = _LaneBuilder(violations, era, roles)
    for e, x in zip(trace, xs, strict=True):
        lanes.add(e, x)
    return lanes.model(float(decisions) if decisions > 0 else 1.0, decisions, start)


def _window(trace: Sequence[Event], start: int) -> list[Event]:
    """The trace from decision ``start`` on, with the spawns just before it (their
    lanes show)."""
    runs, prev = 0, 0
    for i, e in enumerate(trace):
        if e.kind == "run":
            if runs == start:
                return [x for x in trace[prev:i] if x.kind == "spawn"] + list(trace[i:])
            runs, prev = runs + 1, i
    return [x for x in trace[prev:] if x.kind == "spawn"] if runs == start else []


def _positions(trace: Sequence[Event], start: int) -> tuple[list[float], int]:
    """Each event's x (the events of decision d spread over [d, d+1)), and how many
    decisions there are."""
    xs: list[float] = []
    d = start - 1
    group: list[int] = []
    for e in trace:
        if e.kind == "run":
            d += 1
            _spread(xs, group)
            group = []
        group.append(d)
    _spread(xs, group)
    return xs, d + 1


_Key = tuple[str, bool]  # (task, on its COW lane)


class _LaneBuilder:
    """Reads a trace event by event into lane-keyed bars, spans, waits and marks."""

    def __init__(self, violations: Sequence[str], era: str = "2.8",
                 roles: Shape = COLO) -> None:
        self.roles = roles
        self.violations = violations
        self.era = era  # the graph's: which QEMU's steps 1-3 the events are (steps.py)
        self.order: list[str] = []  # tasks in spawn order
        self.has_cow: set[str] = set()
        self.open_reqs: dict[str, list[tuple[str, float, bool]]] = {}
        self.in_cow: dict[str, float] = {}
        self.waiting: dict[str, float] = {}
        self.last_step: dict[str, int] = {}
        self.bars: list[tuple[_Key, float, float, int, str]] = []
        self.spans: list[tuple[_Key, float, float]] = []
        self.waits: list[tuple[_Key, float, float]] = []
        self.runs: list[tuple[_Key, float]] = []
        self.steps: list[tuple[_Key, float, int]] = []
        self.ends: list[tuple[_Key, float, str]] = []

    def cow_lane(self, t: str) -> _Key:
        if t.startswith(self.roles.writer):  # the COW runs in the writer's coroutine
            self.has_cow.add(t)
            return (t, True)
        return (t, False)

    def add(self, e: Event, x: float) -> None:
        t = e.task
        if t not in self.order:
            self.order.append(t)
        if e.kind == "run":
            self.runs.append(((t, False), x))
        elif e.kind in ("req-start", "req-end") and e.node in NODE_LAYER:
            self._request(e, x)
        elif e.kind == "cow-begin":
            self.in_cow[t] = x
        elif e.kind == "cow-end" and t in self.in_cow:
            self.spans.append((self.cow_lane(t), self.in_cow.pop(t), x))
        elif e.kind == "wait":
            self.waiting[t] = x
        elif e.kind == "wake" and t in self.waiting:
            self.waits.append(((t, False), self.waiting.pop(t), x))
        elif e.kind in ("done", "failed"):
            what = "failed" if e.kind == "failed" else (
                "violation" if t in self.violations else "done")
            self.ends.append(((t, False), x, what))
        r = self.roles
        note = workflow_step(e, r.source, r.target, era=self.era, writer=r.writer,
                             filter_node=r.filter)
        if note is not None and self.last_step.get(t) != note.step:
            self.last_step[t] = note.step
            on_cow = note.step == 2 and e.kind != "wait" and t in self.in_cow
            self.steps.append((self.cow_lane(t) if on_cow else (t, False), x, note.step))

    def _request(self, e: Event, x: float) -> None:
        t = e.task
        if e.kind == "req-start":
            # requests a write's COW issues go on its COW lane (a read's CowRequest
            # stays on the read's own lane)
            on_cow = t in self.in_cow and t.startswith(self.roles.writer)
            self.open_reqs.setdefault(t, []).append((e.node, x, on_cow))
            return
        stack = self.open_reqs.get(t, [])
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == e.node:
                node, x0, cow = stack.pop(i)
                depth = sum(1 for s in stack if s[2] == cow)
                key = self.cow_lane(t) if cow else (t, False)
                self.bars.append((key, x0, x, depth, NODE_LAYER[node]))
                break

    def _close_open(self, end_x: float) -> None:
        """What is still open at the end is drawn up to now (still visible)."""
        for t, stack in self.open_reqs.items():  # still in flight
            for i, (node, x0, cow) in enumerate(stack):
                depth = sum(1 for s in stack[:i] if s[2] == cow)
                self.bars.append((self.cow_lane(t) if cow else (t, False), x0,
                                  max(end_x, x0 + 0.4), depth, NODE_LAYER[node]))
        for t, x0 in self.in_cow.items():
            self.spans.append((self.cow_lane(t), x0, max(end_x, x0 + 0.4)))
        for t, x0 in self.waiting.items():
            self.waits.append(((t, False), x0, max(end_x, x0 + 0.4)))

    def model(self, end_x: float, decisions: int, start: int) -> TimelineModel:
        self._close_open(end_x)
        lanes: list[Lane] = []
        index: dict[_Key, int] = {}
        for t in self.order:
            index[(t, False)] = len(lanes)
            lanes.append(Lane(t, t))
            if t in self.has_cow:
                index[(t, True)] = len(lanes)
                lanes.append(Lane(f"{t} COW", t, True))

        def at(items: Sequence[tuple]) -> list:
            return [(index[item[0]], *item[1:]) for item in items]

        return TimelineModel(lanes, at(self.bars), at(self.spans), at(self.waits),
                             at(self.runs), at(self.steps), at(self.ends), decisions, start)


def _spread(xs: list[float], group: list[int]) -> None:
    n = len(group)
    for i, d in enumerate(group):
        xs.append(0.0 if d < 0 else d + 0.06 + 0.88 * (i / (n - 1) if n > 1 else 0))



class TimelinePlot(BlitFigure):
    """Swim lanes per task along the scheduling decisions of a run.

    What a trainee should notice: a race is only ever a choice between two
    lanes at a decision; in design ``"2.8"`` the read's CowRequest span and the
    write's COW span never overlap on the same clusters — one lane *waits*.
    """

    HEIGHTS = (0.8, 0.6, 0.4, 0.22, 0.12)
    LANE_H, TOP, BOTTOM, LEFT = 30, 88, 42, 136

    def __init__(self, lab: Lab, *, cursor: float | None = None, dpi: int = 100,
                 width: int = 816, title: str = "", fit: bool = True) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 480:
            raise ArgumentError(f"width must be a whole number of pixels >= 480, got {width!r}")
        self.width, self.dpi, self.fit = width, dpi, fit
        self.fig = fig = new_figure(width, 240, dpi)
        self.ax = ax = fig.add_axes((0.2, 0.2, 0.77, 0.62))
        lw = pt(0.6, dpi)
        self.bar_coll = PolyCollection([], linewidths=lw, edgecolors="#303030", zorder=2)
        self.span_coll = PolyCollection([], facecolors="none", edgecolors="black",
                                        linewidths=pt(1.8, dpi), linestyles="--", zorder=3)
        self.wait_coll = PolyCollection([], facecolors=WAIT_COLOUR, edgecolors=WAIT_COLOUR,
                                        linewidths=lw, zorder=3)
        for c in (self.bar_coll, self.span_coll, self.wait_coll):
            ax.add_collection(c)
        ms = pt(10, dpi)
        (self.run_marks,) = ax.plot([], [], ls="", marker="|", ms=ms, mew=pt(1.6, dpi),
                                    color=MARK_COLOUR, zorder=4)
        (self.done_marks,) = ax.plot([], [], ls="", marker="o", ms=pt(7, dpi),
                                     color=MARK_COLOUR, zorder=4)
        (self.fail_marks,) = ax.plot([], [], ls="", marker="X", ms=pt(12, dpi),
                                     color=WAIT_COLOUR, zorder=4)
        self.cursor = ax.axvline(0, color=CURSOR_COLOUR, lw=pt(2, dpi), alpha=0.85, zorder=7)
        # steps 1-3: a white circle with the number drawn as a path marker
        (self.step_circles,) = ax.plot([], [], ls="", marker="o", ms=pt(17, dpi), mfc="white",
                                       mec="black", mew=pt(1.2, dpi), zorder=5)
        self.step_numbers = [ax.plot([], [], ls="", marker=f"${k}$", ms=pt(9, dpi),
                                     color="black", zorder=6)[0] for k in (1, 2, 3)]
        self.title = fig.text(0.01, 0.985, "", ha="left", va="top",
                              fontsize=pt(TITLE_PX, dpi), fontweight="bold")
        ax.set_xlabel("scheduling decision", fontsize=pt(SMALL_PX, dpi), labelpad=2)
        ax.tick_params(labelsize=pt(SMALL_PX, dpi), length=3)
        ax.grid(axis="x", color="#E4E4E4", lw=pt(0.8, dpi))
        ax.set_axisbelow(True)
        self.legend: LegendRows | None = None
        self._lanes = -1
        self._groups: list[Group] = []
        self._content_key: tuple | None = None
        self._axes_key: tuple | None = None
        self.update(lab, cursor=cursor, title=title)

    def __repr__(self) -> str:
        return f"<TimelinePlot {self._lanes} lanes>"

    def groups(self) -> list[Group]:
        return self._groups

    def _artists(self) -> list:
        return [self.bar_coll, self.span_coll, self.wait_coll, self.run_marks,
                self.done_marks, self.fail_marks, self.step_circles, *self.step_numbers,
                self.cursor]

    def _resize(self, lanes: int) -> None:
        """Fit the figure's height to the lanes (the same figure, resized in place)."""
        width = self.width
        height = self.TOP + self.BOTTOM + max(lanes, 2) * self.LANE_H
        resize_figure(self.fig, width, height)
        self.ax.set_position((self.LEFT / width, self.BOTTOM / height,
                              (width - self.LEFT - 16) / width,
                              (height - self.TOP - self.BOTTOM) / height))
        if self.legend is not None:
            for a in self.legend.artists:
                a.remove()
        ncol = 5  # ten entries at most: all fit in two rows
        self.legend = LegendRows(self.fig, 10, height - 32, 2, ncol=ncol,
                                 col_w=(width - 20) / ncol, row_h=20)
        self.title.set_position((8 / width, 1 - 8 / height))
        x0, y0, x1, y1 = self.ax.bbox.extents
        self._plot_group = Group(self._artists(), x0, y0, x1, y1)
        self._title_group = Group([self.title], 0, height - 30, width, height)
        self._groups = [self._plot_group, self._title_group, *self.legend.row_groups()]
        self._lanes = lanes
        self.invalidate()

    def update(self, lab: Lab | None = None, *, trace: Sequence[Event] | None = None,
               cursor: float | None = None, title: str | None = None,
               start: int = 0) -> None:
        """Redraw from ``lab`` (or an explicit ``trace``), with the cursor at ``cursor``
        decisions (default: after the last one), from decision ``start`` on."""
        if trace is None:
            if lab is None:
                raise ArgumentError("pass a lab or a trace")
            trace = lab.trace
        violating = tuple(v.task for v in lab.violations()) if lab is not None else ()
        key = (id(trace), len(trace), violating, start)
        if key != self._content_key:
            self._content_key = key
            era = lab.graph.era if lab is not None else "2.8"
            self.roles = shape(lab) if lab is not None else COLO
            self._draw_model(timeline_model(trace, violating, start, era, self.roles), start)
        x = self.model.decisions if cursor is None else cursor
        self.cursor.set_xdata([x, x])
        if title is not None:
            self.title.set_text(title)
        self._plot_group.key = (self._content_key, x)
        self._title_group.key = self.title.get_text()
        assert self.legend is not None  # made by _resize, which the first _draw_model calls
        self.legend.set_keys()
        self.changed()

    def _draw_model(self, m: TimelineModel, start: int) -> None:
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
        self.bar_coll.set_facecolor([LAYER_COLOURS[b[4]] for b in bars] or "none")
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
        if (start, right, labels) != self._axes_key:
            self._axes_key = (start, right, labels)
            ax.set_xlim(start - 0.2, right + 0.2)
            ax.set_ylim(n - 0.5, -0.62)
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels, fontsize=pt(TEXT_PX, self.dpi))
            step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1 << 30)
                        if (right - start) / s <= 24)
            ax.set_xticks(np.arange(start, right + 1, step))
            self.invalidate()
        self.model = m
        self._legend(m)

    def _legend(self, m: TimelineModel) -> None:
        """Only what the lanes show: the nodes requests went to, and the marks drawn."""
        assert self.legend is not None
        entries: list[tuple[str, tuple]] = []
        layers = {b[4] for b in m.bars}
        fleecing = getattr(self, "roles", COLO).fleecing
        for layer, label in (("colo-top", "on colo-top"), ("active", "on active"),
                             ("hidden", "on fleece" if fleecing else "on hidden"),
                             ("secondary", "on live disk" if fleecing else
                              "on secondary disk")):
            if layer in layers:
                entries.append((label, ("fill", LAYER_COLOURS[layer])))
        if m.cow_spans:
            entries.append(("copy in flight" if fleecing else "CowRequest held", ("dashed",)))
        if m.waits:
            entries.append(("waiting (blocked)", ("bar", WAIT_COLOUR)))
        if m.runs:
            entries.append(("task runs", ("marker", ("marker", "|"), ("size", 10))))
        if m.steps:
            entries.append(("step 1-3 of a write", ("marker", ("marker", "o"), ("size", 11),
                                                  ("face", "white"))))
        if any(e[2] == "done" for e in m.ends):
            entries.append(("task done", ("marker", ("marker", "o"), ("size", 6))))
        if any(e[2] != "done" for e in m.ends):
            entries.append(("failed / bad read",
                            ("marker", ("marker", "X"), ("size", 10),
                             ("colour", WAIT_COLOUR))))
        self.legend.set_entries(entries)

    def legend_labels(self) -> list[str]:
        """The legend's entries as shown."""
        return [label for label, _ in self.legend.entries] if self.legend else []


def plot_timeline(lab: Lab, *, cursor: float | None = None, dpi: int = 100,
                  width: int = 816, title: str = "", fit: bool = True) -> TimelinePlot:
    """Swim lanes per task (NBD writes, VM reads and writes, each write's backup COW).

    Bars are requests (colour = node), dashed boxes CowRequest spans, red bars
    waits, ticks the decisions where the task ran, circled numbers the steps
    1–3 of each primary write, a red X a task that failed or read conflicting
    data.  The red line is the cursor (after ``cursor`` decisions).
    ``width`` is in pixels; ``fit=False`` lets the x axis grow in steps of ten
    decisions (fewer full redraws while a run grows, as in the playground).
    """
    return TimelinePlot(lab, cursor=cursor, dpi=dpi, width=width, title=title, fit=fit)
