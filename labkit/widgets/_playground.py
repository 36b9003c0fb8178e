"""SchedulerPlayground: be the scheduler, find the conflicting read."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from ..config import designs_for
from ..errors import ConfigError, Deadlock, ScheduleError
from ..kernel import Chooser, Event, Task
from ..lab import Lab
from ..layers import Layer
from ..plot import TimelinePlot, plot_layers, plot_timeline
from ..plot._shape import shape
from ..scenario import Scenario
from ._session import Session, describe_event
from ._view import (
    FONT,
    App,
    FigureImage,
    GraphView,
    banner_html,
    button,
    byte_rows_html,
    pre,
    spaced,
    table,
    task_lines,
)
from ._whereabouts import read_results, whereabouts

AUTO_LIMIT = 100_000
READS_SHOWN = 6  # the most recent finished reads listed under the buttons


class SchedulerPlayground(App):
    """Be the scheduler: one Step button per runnable task; you pick every decision.

    Inside a ``par { ... }`` block every scheduling decision is yours: each
    runnable task has a **Step** button, and beside every task, where it is
    parked, in words (e.g. "passed active and hidden (unallocated), its read of
    the secondary disk (block 5) is next" — the fact the race depends on); a
    blocked task's button is disabled and the words beside it say what it
    waits for (e.g. "waits for CowRequest of vm-read#1 on clusters 0-0").
    The header talks about the task you just stepped.  Lines outside ``par``
    run by themselves (there is no choice to make).  A red banner appears
    when a VM read returns data it must never see — a *conflicting read*,
    with the read and its bytes (expected vs got): the trainee has won.  **Undo** goes back
    one click (rebuilding the lab and replaying the schedule), **Reset** to the
    start, and the **design** switch rebuilds the lab with another read
    protection and replays the same choices as far as they remain possible.

    What a trainee should notice: with design ``"none"`` the read can be
    parked between hidden and the secondary disk while the primary's write
    completes; with ``"2.8"`` the same order is impossible — a button turns
    grey with the CowRequest it waits for.

    A fleecing scenario (``# config: graph=fleecing``, or ``graph="fleecing"``)
    makes the backup client a task beside the guest: its ``cread`` steps are
    buttons like the guest's writes, the switch offers fleecing's schemes
    ("2.12", "3.0", "7.2"), and the banner turns red when the client reads data
    the guest wrote after the backup started.  ``designs`` defaults to the
    graph's designs (:func:`labkit.config.designs_for`).
    """

    def __init__(self, scenario: str | Scenario, design: str = "2.8", *,
                 designs: Sequence[str] | None = None, cols: int | None = None,
                 timeline: bool = False, **config: Any) -> None:
        if designs is None:
            designs = designs_for(_graph_of(scenario, config))
        if design not in designs:
            raise ConfigError(f"design must be one of {', '.join(map(repr, designs))}, "
                              f"got {design!r}")
        self._pick: str | None = None
        self._pool: list[tuple[w.Button, w.HTML, w.HBox]] = []
        self._slot_names: list[str] = []
        self._rows: list[str] = []  # the tasks with a row: those of the current par block
        self._rows_block: int | None = None  # which par block (where it started)
        self._button_width = "20ch"
        self._words_of: dict[str, str] = {}
        self.note = ""
        self.error = ""
        self.session = Session(scenario, {**config, "design": design})
        self.lab.kernel.policy = self.session.watch(self._policy())
        self._auto()
        lab = self.lab
        self.states: list[tuple[int, int]] = [(len(lab.schedule), len(lab.trace))]
        self.mark = len(lab.trace)
        self.plot = plot_layers(lab, cols=cols)
        self.figure = FigureImage(self.plot)
        self.graph = GraphView(lab)
        self.timeline: TimelinePlot | None = None
        self.timeline_figure: FigureImage | None = None
        self.timeline_box = w.VBox()
        self.timeline_button = w.ToggleButton(
            value=False, description="Timeline", icon="stream", layout=w.Layout(width="auto"),
            tooltip="swim lanes of the tasks of the current par block (costs a redraw per "
                    "click)")
        self.timeline_button.observe(lambda ch: self.show_timeline(ch["new"]), names="value")
        self.task_buttons: dict[str, w.Button] = {}
        self.task_words: dict[str, w.HTML] = {}
        self.task_box = w.VBox(layout=spaced(4))
        self.last_task = ""
        self.design_buttons = w.ToggleButtons(options=list(designs), value=design,
                                              description="scheme" if shape(lab).fleecing
                                              else "design",
                                              tooltips=[_DESIGN_TIPS.get(d, d) for d in designs],
                                              style={"button_width": "auto"})
        self.design_buttons.observe(lambda ch: self.switch_design(ch["new"]), names="value")
        self.undo_button = button("Undo", icon="undo", tooltip="back one click (replays the "
                                                              "schedule prefix)")
        self.reset_button = button("Reset", icon="fast-backward", tooltip="back to the start")
        self.undo_button.on_click(lambda _: self.undo())
        self.reset_button.on_click(lambda _: self.reset())
        self.banner = w.HTML()
        self.header = w.HTML()
        self.played = w.HTML()
        self.bytes = w.HTML()
        self.info = w.HTML()
        # Fixed slots: every control sits above anything whose height changes with a
        # click (the design switch and Undo/Reset/Timeline in one row at the top, then
        # one row of fixed height per task of the par block, kept while the block
        # runs), so no click moves a button under the mouse.  What a click changes —
        # the header, the banner, the schedule so far — comes below the buttons.
        self.widget = w.VBox([
            w.HTML(f"<div style='{FONT}'><b>Scheduler playground</b> — you choose which "
                   f"task runs next</div>"),
            w.HBox([self.design_buttons, self.undo_button, self.reset_button,
                    self.timeline_button],
                   layout=spaced(6, align_items="center", flex_flow="row wrap")),
            w.HTML(f"<div style='{FONT}'><b>Next decision</b> (each task of this "
                   f"<code>par</code> block, and where it is parked)</div>"),
            self.task_box, self.header, self.banner, self.played,
            self.graph.figure.image, self.figure.image, self.bytes, self.timeline_box,
            self.info],
            layout=spaced(6, overflow="visible"))
        self.widget.add_class("labkit-playground")
        self.banner.add_class("labkit-banner")
        self.header.add_class("labkit-header")
        self.played.add_class("labkit-played")
        self.graph.figure.image.add_class("labkit-graph")
        self._refresh()
        if timeline:
            self.timeline_button.value = True

    # --- state ----------------------------------------------------------------------
    @property
    def lab(self) -> Lab:
        """The lab as it is now (a new object after Undo, Reset or a design switch)."""
        return self.session.lab

    @property
    def design(self) -> str:
        return self.lab.design

    @property
    def won(self) -> bool:
        """True once a conflicting read (or another oracle violation) happened."""
        return bool(self.lab.violations())

    def banner_text(self) -> str:
        """The banner's words: the win (the read and its bytes), the end, or empty."""
        v = self.lab.violations()
        fleecing = shape(self.lab).fleecing
        if v:
            bad = next((r for r in read_results(self.lab) if r.task == v[0].task), None)
            got = f" {bad.task} {bad.text()}." if bad is not None else ""
            won = ("the backup client read data written after the backup started!"
                   if fleecing else "conflicting read!")
            return f"You won — {won}{got}\n{v[0].message}"
        if self.session.done:
            if fleecing:
                return (f"All tasks finished; every client read saw the disk as it was when "
                        f"the backup started (scheme {self.design}). Undo and try another "
                        f"order, or switch the scheme.")
            return (f"All tasks finished without a conflicting read (design {self.design}). "
                    f"Undo and try another order, or switch the design.")
        return ""

    def _policy(self) -> Chooser:
        return Chooser(self._choose)

    def _choose(self, runnable: Sequence[Task]) -> Task | str:
        return self._pick if self._pick is not None else runnable[0]

    def _auto(self) -> None:
        """Run the lines outside ``par`` by themselves: no choice to make there."""
        n = 0
        self._pick = None
        while not self.session.done and not self.session.in_par and n < AUTO_LIMIT:
            self.session.step()
            n += 1

    # --- actions --------------------------------------------------------------------------
    def choose(self, task: str) -> Event:
        """Run ``task`` for one scheduling decision (what its Step button does)."""
        runnable = [t.name for t in self.session.runnable()]
        if task not in runnable:
            blocked = {t.name: t.why_blocked for t in self.session.blocked()}
            why = f"it waits for {blocked[task]}" if task in blocked else (
                f"runnable now: {', '.join(runnable) or 'none'}")
            raise ScheduleError(len(self.lab.schedule), f"{task} cannot run now: {why}")
        self.mark = len(self.lab.trace)
        self.note = ""
        self.error = ""
        self.last_task = task
        self._pick = task
        try:
            event = self.session.step()
            self._auto()
        except Deadlock as exc:
            self.error = f"deadlock: {exc}"
            event = self.lab.trace[-1]
        finally:
            self._pick = None
        self.states.append((len(self.lab.schedule), len(self.lab.trace)))
        self._refresh()
        return event

    def undo(self) -> None:
        """Back one click: rebuild the lab and replay the schedule up to there."""
        if len(self.states) < 2:
            return
        schedule = list(self.lab.schedule)
        self.states.pop()
        before = self.states[-2][0] if len(self.states) > 1 else None
        _, since = self.session.rebuild(schedule[:self.states[-1][0]], policy=self._policy(),
                                        capture_at=before)
        self.mark = self.states[-2][1] if len(self.states) > 1 else len(self.lab.trace)
        # the task chosen by the click that led here: its first decision
        self.last_task = schedule[self.states[-2][0]] if len(self.states) > 1 else ""
        self.note = self.error = ""
        self._refresh(since=since if since is not None else self.lab.layers())

    def reset(self) -> None:
        """Back to the start (the lines before the first ``par`` already run)."""
        self.session.rebuild(self.lab.schedule[:self.states[0][0]], policy=self._policy())
        self.states = self.states[:1]
        self.mark = len(self.lab.trace)
        self.last_task = ""
        self.note = self.error = ""
        self._refresh(since=self.lab.layers())

    def switch_design(self, design: str) -> None:
        """Rebuild with another read protection and replay the same choices where possible."""
        if design == self.design:
            return
        schedule = list(self.lab.schedule)
        self.session.reconfigure(design=design)
        n, _ = self.session.rebuild(schedule, policy=self._policy())
        if n < len(schedule) and not self.session.done:
            blocked = {t.name: t.why_blocked for t in self.session.blocked()}
            want = schedule[n]
            why = f"it waits for {blocked[want]}" if want in blocked else "it is not runnable"
            word = "scheme" if shape(self.lab).fleecing else "design"
            self.note = (f"{word} {design}: the same choices stop after {n} decisions — "
                         f"{want} cannot run next: {why}")
        else:
            word = "scheme" if shape(self.lab).fleecing else "design"
            self.note = f"{word} {design}: the same {n} choices replayed"
        if not self.session.done and not self.session.in_par:
            self._auto()
        # keep the undo history to the prefixes that still exist under this design
        keep = [s for s in self.states if s[0] <= len(self.lab.schedule)]
        self.states = [(s, self._trace_len_at(s)) for s, _ in keep] or [
            (len(self.lab.schedule), len(self.lab.trace))]
        if self.states[-1][0] != len(self.lab.schedule):
            self.states.append((len(self.lab.schedule), len(self.lab.trace)))
        self.mark = len(self.lab.trace)
        self.error = ""
        if self.design_buttons.value != design:
            self.design_buttons.value = design
        self._refresh(since=self.lab.layers())

    def show_timeline(self, on: bool = True) -> None:
        """Show (or hide) the swim lanes of the current ``par`` block under the block map."""
        if on and self.timeline is None:
            self.timeline = plot_timeline(self.lab, width=max(816, int(self.plot.fig.bbox.width)),
                                          fit=False)
            self.timeline_figure = FigureImage(self.timeline)
        if self.timeline_button.value != on:
            self.timeline_button.value = on  # the observer calls us again: harmless
        self.timeline_box.children = (self.timeline_figure.image,) if on and \
            self.timeline_figure is not None else ()
        if on:
            self._draw_timeline()

    def _draw_timeline(self) -> None:
        if self.timeline is None or self.timeline_figure is None:
            return
        start = self._window
        self.timeline.update(self.lab, start=start,
                             title=f"who ran when (from decision {start}) · design "
                                   f"{self.design}")
        self.timeline_figure.refresh()

    def _trace_len_at(self, decisions: int) -> int:
        """Trace length when ``decisions`` choices had been made (from the trace itself)."""
        runs = 0
        for i, e in enumerate(self.lab.trace):
            if e.kind == "run":
                if runs == decisions:
                    return i
                runs += 1
        return len(self.lab.trace)

    # --- views ---------------------------------------------------------------------------------
    def figures(self) -> list[Any]:
        shown = self.timeline_button.value and self.timeline is not None
        base = [self.graph.plot, self.plot]
        return [*base, self.timeline] if shown else base

    def button_lines(self) -> list[str]:
        """Each task button as text, with where the task is parked: ``[Step x] — words``
        or ``[disabled] x — waits for ...``."""
        out = []
        for name, b in self._visible_buttons():
            shown = f"[disabled] {b.description}" if b.disabled else f"[{b.description}]"
            out.append(f"{shown} — {self._words_of[name]}")
        return out

    def _row_names(self) -> list[str]:
        """The tasks with a row: every task of the current ``par`` block, finished ones
        too (a row never disappears while its block runs: the rows below it would move),
        in the order they were spawned.  Rows start afresh with the next block."""
        lab = self.lab
        tasks = lab.kernel.tasks
        live = [n for n, t in tasks.items() if not t.done]
        block = self.session.step_started if self.session.in_par else self._rows_block
        if self.session.in_par and block != self._rows_block:
            self._rows = []
        self._rows_block = block
        keep = [n for n in self._rows if n in tasks]
        self._rows = keep + [n for n in live if n not in keep]
        if self.session.done and not self._rows:
            return []
        return list(self._rows)

    def header_text(self) -> str:
        """The header: the task just stepped and where it is now (or whose turn it is)."""
        lab = self.lab
        if not self.last_task or self.last_task not in lab.kernel.tasks:
            return "Your move: pick which task runs next."
        # a primary write's words name its workflow step already ("step 2: ...")
        return f"You stepped {self.last_task}: {whereabouts(lab)[self.last_task]}"

    def wake_rule_text(self) -> str:
        """At a forced step, why there is one button: the wake rule, in words ("" else)."""
        forced = self.lab.kernel.forced
        if forced is None or self.session.done:
            return ""
        woken, waker = forced
        by = waker or "its waker"
        return (f"The wake rule: {by} woke {woken.name}, which waited for it. As soon as "
                f"the waker yields or ends, QEMU enters the woken coroutine, before any "
                f"other (qemu_coroutine_enter → qemu_co_queue_run_restart): {woken.name} "
                f"is the only task you can step now; any other waits this one step.")

    def schedule_text(self) -> str:
        """The schedule played so far, runs of one task folded (``name ×k``); ``↯`` marks
        a preemption (the switch away from a task that could have run on)."""
        sched = self.lab.schedule
        parts: list[str] = []
        i = 0
        while i < len(sched):
            j = i
            while j + 1 < len(sched) and sched[j + 1] == sched[i]:
                j += 1
            mark = "↯ " if self.session.preemption_at(i) else ""
            parts.append(f"{mark}{sched[i]}" + (f" ×{j - i + 1}" if j > i else ""))
            i = j + 1
        n = sum(self.session.preemption_at(k) for k in range(len(sched)))
        return (f"schedule so far ({len(sched)} decisions, {n} preemption"
                f"{'' if n == 1 else 's'}): " + (" · ".join(parts) or "(none)"))

    @property
    def shown_tasks(self) -> list[str]:
        """The tasks that have a button row now (runnable or blocked, not finished)."""
        return list(self._shown)

    def _visible_buttons(self) -> list[tuple[str, w.Button]]:
        return [(n, self.task_buttons[n]) for n in self._shown]

    def last_lines(self) -> list[str]:
        out = []
        for e in self.lab.trace[self.mark:]:
            if e.kind in ("spawn",):
                continue
            if e.kind == "run":
                out.append(f"{e.task} runs")
                continue
            out.append(f"  {describe_event(e)}")
        return out

    def text(self) -> str:
        """The text twin: design, buttons, banner, the last click, the block map."""
        lab = self.lab
        where = self.session.where()
        word = "scheme" if shape(lab).fleecing else "design"
        out = [f"SchedulerPlayground ({word} {self.design}): {len(lab.schedule)} decisions"
               + (f"; {where}" if where else "")]
        out.append(self.header_text())
        wake = self.wake_rule_text()
        if wake:
            out.append(wake)
        out.append(self.schedule_text())
        out.append("task buttons:" if self._shown else "task buttons: (none: nothing to choose)")
        out += [f"  {line}" for line in self.button_lines()]
        banner = self.banner_text()
        if banner:
            out.append(f"BANNER: {banner.replace(chr(10), ' ')}")
        if self.note:
            out.append(f"note: {self.note}")
        if self.error:
            out.append(f"ERROR: {self.error}")
        out.append("last click:" if self.states[1:] else "last click: (none yet)")
        if self.states[1:]:
            out += [f"  {line}" for line in self.last_lines()]
        out += task_lines(lab, [t.name for t in self.session.runnable()])
        out.append(table(lab))
        return "\n".join(out)

    def _row(self, slot: int, name: str) -> w.Button:
        """The button of row ``slot``, now for task ``name``.  Rows are a pool reused
        for every task (a scenario of many ``par`` blocks has hundreds of tasks; a new
        widget per task costs the browser a model and a view each)."""
        while len(self._pool) <= slot:
            i = len(self._pool)
            b = w.Button(layout=w.Layout(width=self._button_width, flex="0 0 auto"))
            b.on_click(lambda _, i=i: self.choose(self._slot_names[i]))
            # two lines of words in a row of fixed height: a longer sentence scrolls in
            # its row rather than pushing the rows below (and their buttons) down
            words = w.HTML(layout=w.Layout(flex="1 1 auto", min_width="0", height="40px",
                                           overflow="auto"))
            words.add_class("labkit-task-words")
            row = w.HBox([b, words], layout=spaced(8, align_items="center", height="42px",
                                                  flex="0 0 auto"))
            self._pool.append((b, words, row))
            self._slot_names.append("")
        self._slot_names[slot] = name
        b, words, _ = self._pool[slot]
        if b.layout.width != self._button_width:
            b.layout.width = self._button_width
        self.task_buttons[name] = b
        self.task_words[name] = words
        return b

    def _refresh(self, *, since: dict[str, Layer | None] | None = None) -> None:
        lab = self.lab
        if self.session.in_par:  # the timeline shows the current (or last) par block
            self._window = self.session.step_started
        elif len(lab.schedule) < getattr(self, "_window", 0):
            self._window = 0
        self.task_buttons, self.task_words = {}, {}
        shown = self._row_names()
        self._button_width = f"{max((len(n) for n in shown), default=8) + 13}ch"
        runnable = {t.name for t in self.session.runnable()}
        forced = lab.kernel.forced
        where = whereabouts(lab)
        words_of: dict[str, str] = {}
        for slot, name in enumerate(shown):
            t = lab.kernel.tasks[name]
            b = self._row(slot, name)
            b.disabled = name not in runnable
            b.button_style = "primary" if name in runnable else ""
            words = where[name]
            if name in runnable:
                b.description = f"Step {name}"
                b.tooltip = f"run {name} until its next scheduling point"
                if forced is not None:
                    words = f"{words} — the only choice now: the wake rule (below)"
            elif t.done:
                b.description = f"{name}: done"
                b.tooltip = f"{name} has finished"
            elif t.state == "blocked":
                b.description = f"{name}: blocked"
                b.tooltip = f"{name} waits for {t.why_blocked}"
            else:  # runnable, but not offered: a woken task must run first (the wake rule)
                b.description = f"{name}: must wait"
                b.tooltip = lab.kernel.why_not_runnable(name) or f"{name} cannot run now"
                words = f"cannot run at this step: {forced[0].name} runs first (the wake " \
                        f"rule, below); then {words}" if forced is not None else words
            words_of[name] = words
        self._shown = shown
        self._words_of = words_of
        roles = shape(lab)
        for name in shown:
            task = lab.kernel.tasks[name]
            parked = task.suspended
            # the fact the race depends on: a read parked at the disk being written
            key = (name.startswith(roles.reader) and not task.done and parked is not None
                   and parked.kind == "point" and parked.node == roles.source)
            style = "background:#FFF3C4;border-left:4px solid #E0A800;padding:2px 6px" \
                if key else "padding:2px 6px"
            self.task_words[name].value = (f"<div style='{FONT};{style}'>"
                                           f"{html.escape(words_of[name])}</div>")
        finished = [f"{r.task}: {r.text()}" for r in read_results(lab)]
        self.task_box.children = tuple(self._pool[i][2] for i in range(len(shown)))
        earlier = [f"  ({len(finished) - READS_SHOWN} earlier)"] \
            if len(finished) > READS_SHOWN else []
        reads = ["finished reads:", *earlier, *[f"  {x}" for x in finished[-READS_SHOWN:]]] \
            if finished else []
        wake = self.wake_rule_text()
        self.played.value = (
            (f"<div style='{FONT};background:#E8F1F8;border-left:4px solid #0077BB;"
             f"padding:4px 8px;margin-bottom:4px'>{html.escape(wake)}</div>" if wake else "")
            + f"<div style='{FONT};background:#F4F7FA;padding:4px 6px'>"
            f"{html.escape(self.schedule_text())}<br><span style='color:#404040'>↯ = a "
            f"preemption: the scheduler switched away from a task that could have run on "
            f"(a task that has to wait is not preempted)</span></div>"
            + (pre(reads) if reads else ""))
        self.undo_button.disabled = len(self.states) < 2
        self.reset_button.disabled = len(self.states) < 2
        banner = self.banner_text()
        if self.lab.violations():
            head, _, rest = banner.partition("\n")
            self.banner.value = banner_html(f"<b>{html.escape(head)}</b><br>"
                                            f"{html.escape(rest)}", bad=True)
        elif banner:
            self.banner.value = banner_html(html.escape(banner), bad=False)
        else:
            self.banner.value = ""
        self.header.value = (f"<div style='font-size:15px;line-height:1.4'>"
                             f"{html.escape(self.header_text())}</div>")
        info = [f"{len(lab.schedule)} decisions; {self.session.where()}"]
        if self.note:
            info.append(f"note: {self.note}")
        if self.error:
            info.append(f"ERROR: {self.error}")
        info += ["last click:"] + (self.last_lines() if self.states[1:] else ["  (none yet)"])
        self.info.value = pre(info)
        title = (f"{'scheme' if roles.fleecing else 'design'} {self.design} · after "
                 f"{len(lab.schedule)} decisions")
        self.plot.update(lab, title=title, since=since)
        self.figure.refresh()
        self.bytes.value = byte_rows_html(lab, self.plot.changed_cells, self.plot.NAMES)
        self.graph.refresh(lab)
        if self.timeline_button.value:
            self._draw_timeline()


_DESIGN_TIPS = {
    "none": "no read protection: the conflicting read is reachable",
    "2.8": "the read holds a CowRequest over its whole chain read (QEMU 2.8)",
    "4.0": "the backup's writes to hidden are serialising (QEMU 3.0/4.0 on)",
    "2.12": "fleecing: backup sync=none into the overlay, nothing serialising (QEMU 2.12)",
    "3.0": "fleecing: the backup's writes to the overlay are serialising (QEMU 3.0)",
    "7.2": "fleecing: copy-before-write filter + snapshot-access (QEMU 7.0-7.2)",
}


def _graph_of(scenario: str | Scenario, config: dict[str, Any]) -> str:
    """The graph a scenario runs on: its ``# config:`` header's, the keywords winning."""
    from ..scenarios import config as scenario_config

    if "graph" in config:
        return str(config["graph"])
    text = scenario if isinstance(scenario, str) else scenario.text
    return str(scenario_config(text).get("graph", "colo"))
