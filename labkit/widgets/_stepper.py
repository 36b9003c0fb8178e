"""WorkflowStepper: the backup workflow's steps 1–3, one scheduling decision at a time."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from ..errors import Deadlock
from ..kernel import Event
from ..lab import Lab
from ..layers import Layer
from ..plot import plot_layers
from ..plot._shape import copy_requests, copy_words, shape, step_note
from ..scenario import Command
from ._session import Session, Source, describe_event
from ._view import (
    FONT,
    App,
    FigureImage,
    GraphView,
    button,
    byte_rows_html,
    parked_lines,
    pre,
    spaced,
    table,
    task_lines,
)
from ._whereabouts import Stage, span, stage

RUN_LIMIT = 100_000


class WorkflowStepper(App):
    """Step through what happens to a primary write on the COLO secondary.

    The stepper opens with replication started (``start``'s own decisions are
    one initial state, not clicks) and Step 1 next.  The header always names
    where the lesson is — **Step 1**: the NBD write reaches the secondary disk
    and its before-write notifier calls ``backup_do_cow``; **Step 2**:
    ``backup_do_cow`` (wait for overlapping requests, register a CowRequest,
    read the old contents, write them to hidden, end); **Step 3**: the write's
    request ends with the new data on the secondary disk; **VM read**: what the
    secondary VM's read returned against what it should see (the oracle) — and
    the block map below updates in place after each click.  Beside it, where
    each task is parked, in words.

    Buttons: **Step** (with *Expand COW* off: one workflow step — the click
    after Step 1 runs the COW to its end, a VM read outside ``par`` runs to its
    end; with it on: one scheduling decision), **Expand COW**, **Undo**
    (rebuild the lab from the scenario and replay the schedule up to the
    previous click), **Reset**, **Run** (to the end).

    What a trainee should notice: the hidden row fills *before* the secondary
    row changes; the VM read returns the old contents, never the primary's new
    byte.

    A fleecing scenario (``# config: graph=fleecing``) steps image fleecing's copy
    the same way: a *guest* write reaches the live disk (Step 1), its old contents
    are copied into the fleece overlay (Step 2), its new data lands (Step 3); a
    backup client's read is the **Client read** stage, held against the disk as it
    was when the backup started.

    ``lab_or_scenario``: scenario text (most useful: Undo and Reset work), a
    parsed scenario, a factory returning a lab with tasks spawned, or a lab
    (stepping only).  ``config``: the :func:`labkit.build_secondary` keywords
    for a scenario (not ``policy``: the stepper steps in FIFO order).
    """

    def __init__(self, lab_or_scenario: Source, *, expand: bool = False,
                 cols: int | None = None, **config: Any) -> None:
        self.session = Session(lab_or_scenario, config)
        self._collapse_start()
        lab = self.session.lab
        self.states: list[tuple[int, int]] = [(len(lab.schedule), len(lab.trace))]
        self.mark = len(lab.trace)  # where the events of the last click start
        self.error = ""
        self.plot = plot_layers(lab, cols=cols, header=False)
        self.figure = FigureImage(self.plot)
        self.graph = GraphView(lab)
        self.step_button = button("Step", icon="step-forward", style="primary",
                                  tooltip="the next workflow step (one scheduling decision "
                                          "when Expand COW is on)")
        self.expand_button = w.ToggleButton(value=expand, description="Expand COW",
                                            icon="search-plus",
                                            layout=w.Layout(width="auto",
                                                            min_width="max-content"),
                                            tooltip="step a COW cluster by cluster: read old "
                                                    "data, write it to the overlay")
        self.undo_button = button("Undo", icon="undo",
                                  tooltip="back to the state before the last click (replays "
                                          "the schedule prefix)")
        self.reset_button = button("Reset", icon="fast-backward", tooltip="back to the start")
        self.run_button = button("Run", icon="fast-forward", tooltip="run to the end (FIFO)")
        self.step_button.on_click(lambda _: self.step())
        self.undo_button.on_click(lambda _: self.undo())
        self.reset_button.on_click(lambda _: self.reset())
        self.run_button.on_click(lambda _: self.run())
        self.expand_button.observe(lambda _: self._refresh(redraw=False), names="value")
        self.step_label = w.HTML(layout=w.Layout(height="62px", overflow="auto",
                                                 flex="0 0 auto"))
        self.parked = w.HTML()
        self.bytes = w.HTML()
        self.narration = w.HTML()
        self.status = w.HTML()
        # Fixed slots: the title and the buttons share the first row, the step label has
        # a fixed height, and everything whose height changes with a click comes below
        # the images: no click moves a button.  The graph comes right under the buttons
        # so that Step and the graph are on screen together at 1280x800; the block map
        # (and its bytes) follows.
        self.widget = w.VBox([
            w.HBox([w.HTML(f"<div style='{FONT}'><b>Backup workflow stepper</b></div>",
                           layout=w.Layout(margin="0 8px 0 0")),
                    self.step_button, self.expand_button, self.undo_button,
                    self.reset_button, self.run_button],
                   layout=spaced(4, flex_flow="row wrap", align_items="center")),
            self.step_label, self.graph.figure.image, self.figure.image, self.bytes,
            self.parked, self.narration, self.status],
            layout=spaced(6, overflow="visible"))
        self.widget.add_class("labkit-stepper")
        self.step_label.add_class("labkit-step-label")
        self.parked.add_class("labkit-parked")
        self.bytes.add_class("labkit-bytes")
        self.graph.figure.image.add_class("labkit-graph")
        self._refresh()

    def _collapse_start(self) -> None:
        """Run a leading ``start`` (or ``fleece``) line to its end: its decisions are not
        the lesson."""
        run = self.session.run
        n = 0
        while (run is not None and not run.done and isinstance(run.current, Command)
               and run.current.op in ("start", "fleece") and n < RUN_LIMIT):
            self.session.step()
            n += 1

    # --- state ---------------------------------------------------------------------
    @property
    def lab(self) -> Lab:
        """The lab as it is now (a new object after Undo or Reset)."""
        return self.session.lab

    @property
    def expand(self) -> bool:
        return bool(self.expand_button.value)

    @property
    def stage(self) -> Stage:
        """Where the lesson is: Step 1, 2, 3 of the latest primary write, or a VM read."""
        return stage(self.lab)

    @property
    def current_step(self) -> int:
        """1–3 for Step 1–3, 4 for a VM read, 0 before the first primary write."""
        return STAGE_NUMBER[self.stage.name]

    # --- actions -----------------------------------------------------------------------
    def _act(self, fn) -> None:
        lab = self.lab
        self.mark = len(lab.trace)
        self.error = ""
        try:
            fn()
        except Deadlock as exc:
            self.error = f"deadlock: {exc}"
        self.states.append((len(self.lab.schedule), len(self.lab.trace)))
        self._refresh()

    def step(self) -> None:
        """The next workflow step: one scheduling decision; with Expand COW off, a COW in
        progress (begun by an earlier click) runs to its end in this click, and so does a
        VM read outside ``par``."""
        if self.session.done:
            return

        def go() -> None:
            copying = {r.owner for r in copy_requests(self.lab)}
            roles = shape(self.lab)
            event = self.session.step()
            if self.expand:
                return
            name = event.task
            if name.startswith(roles.writer) and name in copying:
                more = lambda: self._in_cow(name)  # noqa: E731 - the COW runs to its end
            elif name.startswith(roles.reader) and not self.session.in_par:
                more = lambda: not self.lab.kernel.tasks[name].done  # noqa: E731
            else:
                return  # the click that begins a COW shows Step 1
            n = 0
            while (not self.session.done and more() and n < RUN_LIMIT
                   and any(t.name == name for t in self.session.runnable())):
                self.session.step()
                n += 1

        self._act(go)

    def run(self) -> None:
        """Run to the end (FIFO)."""
        if self.session.done:
            return

        def go() -> None:
            n = 0
            while not self.session.done and n < RUN_LIMIT:
                self.session.step()
                n += 1

        self._act(go)

    def undo(self) -> None:
        """Back to the state before the last click: rebuild and replay the schedule prefix."""
        if len(self.states) < 2 or not self.session.can_rebuild:
            return
        schedule = list(self.lab.schedule)
        self.states.pop()
        target = self.states[-1][0]
        before = self.states[-2][0] if len(self.states) > 1 else None
        _, since = self.session.rebuild(schedule[:target], capture_at=before)
        self.mark = self.states[-2][1] if len(self.states) > 1 else len(self.lab.trace)
        self.error = ""
        self._refresh(since=since if since is not None else self.lab.layers())

    def reset(self) -> None:
        """Back to the start of the scenario (replication started, Step 1 next)."""
        if not self.session.can_rebuild:
            return
        self.session.rebuild([])
        self._collapse_start()
        self.states = self.states[:1]
        self.mark = len(self.lab.trace)
        self.error = ""
        self._refresh(since=self.lab.layers())

    def _in_cow(self, task: str) -> bool:
        return any(r.owner == task for r in copy_requests(self.lab))

    # --- views ---------------------------------------------------------------------------
    def figures(self) -> list[Any]:
        return [self.graph.plot, self.plot]

    def last_events(self) -> list[Event]:
        """The trace events of the last click."""
        return self.lab.trace[self.mark:]

    def narration_lines(self) -> list[str]:
        """What the last click did, in words (a COW condensed unless Expand COW is on).

        No line carries a step number of its own: the click's step is the header's
        (Step 1 is the click in which the write reaches the secondary disk and the
        notifier's ``backup_do_cow`` begins; Step 2 the click that finishes the copy;
        Step 3 the click in which the new data lands).
        """
        lines: list[str] = []
        roles = shape(self.lab)
        copying: dict[str, list[int]] = {}  # task -> clusters whose copy started this click
        cluster = self.lab.backup_cluster
        trace = self.lab.trace
        block = self.lab.block
        events = self.last_events()
        copying_tasks = {e.task for e in events
                         if e.kind in ("cow-begin", "cow-copy", "cow-end")}
        for e in events:
            note = step_note(self.lab, e)
            if note is not None:
                if not self.expand and note.step == 2 and e.kind in ("cow-copy", "req-start"):
                    if e.kind == "cow-copy":
                        copying.setdefault(e.task, []).append(e.offset // cluster)
                    continue
                if not self.expand and e.kind == "cow-end":
                    copying.pop(e.task, None)
                    lines.append(_copied(_cow_clusters(trace, e, cluster), e.task, done=True,
                                         lab=self.lab))
                lines.append(_explained(note.text))
            elif e.kind in ("spawn", "run"):
                continue
            elif (e.kind == "point" and e.op == "io-write" and e.node == roles.source
                  and e.task.startswith(roles.writer)):
                # parked before its I/O: the data lands at the write's req-end (Step 3)
                lines.append(f"{e.task}: the copy is done; its own write resumes — the new "
                             f"data lands on {e.node} when it runs next (Step 3)")
            elif (e.kind == "point" and not self.expand and e.task.startswith(roles.writer)
                  and e.task in copying_tasks):
                continue  # the copy's own I/O: condensed into its "copying"/"copied" line
            elif e.kind == "point" and e.op == "meta":
                # qcow2_alloc_cluster_link_l2: the data is written, the L2 entry is next
                lines.append(f"{e.task} parks at {e.node}'s L2 update (qcow2 metadata: "
                             f"qcow2_alloc_cluster_link_l2): the copied data is written; when "
                             f"the task resumes, {e.node}'s map says those blocks are "
                             f"allocated there, and a read of them stops at {e.node}")
            elif e.kind == "point" and e.op in ("io-read", "io-write", "io-zero"):
                what = {"io-read": "read of", "io-write": "write to",
                        "io-zero": "write-zeroes to"}[e.op]
                where = span(e.offset, e.length, block)
                lines.append(f"{e.task} parks: its {what} {e.node} ({where}) is in flight — "
                             f"a scheduling point, another task may run now")
            elif self.expand or e.kind in ("wait", "wake", "done", "failed") or (
                    e.kind == "req-start" and e.node == "colo-top") or (
                    not e.task.startswith(roles.writer) and e.kind not in ("req-start",
                                                                           "req-end")):
                lines.append(describe_event(e))
        for task, clusters in copying.items():
            lines.append(_copied(clusters, task, done=False, lab=self.lab))
        return lines

    def text(self) -> str:
        """The text twin: the stage, where each task is parked, the last click, tasks,
        buttons, the block map."""
        lab = self.lab
        now = self.stage
        where = self.session.where()
        word = "scheme" if shape(lab).fleecing else "design"
        head = f"WorkflowStepper ({word} {lab.design}): {self.counts()}"
        out = [head + (f"; {where}" if where else ""), now.title, f"  now: {now.text}"]
        parked = parked_lines(lab)
        out.append("where each task is:" if parked else "where each task is: (no task)")
        out += [f"  {line}" for line in parked]
        out.append("last click:" if self.states[1:] else "last click: (none yet)")
        out += [f"  - {line}" for line in self.narration_lines()] if self.states[1:] else []
        if self.error:
            out.append(f"ERROR: {self.error}")
        out += task_lines(lab, [t.name for t in self.session.runnable()])
        out.append("buttons: " + ", ".join(_state(b) for b in (
            self.step_button, self.expand_button, self.undo_button, self.reset_button,
            self.run_button)))
        out.append(table(lab))
        return "\n".join(out)

    def _refresh(self, *, redraw: bool = True,
                 since: dict[str, Layer | None] | None = None) -> None:
        lab = self.lab
        now = self.stage
        done = self.session.done
        self.step_button.disabled = done
        self.run_button.disabled = done
        rebuildable = self.session.can_rebuild
        self.undo_button.disabled = not rebuildable or len(self.states) < 2
        self.reset_button.disabled = not rebuildable or len(self.states) < 2
        self.step_label.value = (f"<div style='font-size:15px;line-height:1.4'>"
                                 f"<b>{html.escape(now.title)}</b></div>"
                                 f"<div style='{FONT}'>{html.escape(now.text)}</div>")
        parked = parked_lines(lab)
        self.parked.value = pre(["where each task is:"] + [f"  {x}" for x in parked]
                                if parked else ["where each task is: (no task)"],
                                style="background:#F4F7FA;padding:4px 6px")
        lines = self.narration_lines() if self.states[1:] else ["(click Step)"]
        self.narration.value = pre([f"what the last click did ({now.name}):" if self.states[1:]
                                    else "last click:"] + [f"  {x}" for x in lines])
        status = task_lines(lab, [t.name for t in self.session.runnable()])
        where = self.session.where()
        status.insert(0, self.counts() + (f"; {where}" if where else ""))
        if self.error:
            status.append(f"ERROR: {self.error}")
        self.status.value = pre(status, style="color:#303030")
        if redraw:
            self.plot.update(lab, since=since)
            self.figure.refresh()
            self.graph.refresh(lab)
            self.bytes.value = byte_rows_html(lab, self.plot.changed_cells, self.plot.NAMES)

    def counts(self) -> str:
        """Clicks so far and the scheduling decisions they made (``start``'s own, the
        initial state, not counted)."""
        clicks = len(self.states) - 1
        made = len(self.lab.schedule) - self.states[0][0]
        since = "the backup" if shape(self.lab).fleecing else "replication"
        return (f"{clicks} click{'' if clicks == 1 else 's'}, {made} scheduling "
                f"decision{'' if made == 1 else 's'} since {since} started")


#: :attr:`WorkflowStepper.current_step` of each stage.
STAGE_NUMBER = {"Ready": 0, "Step 1": 1, "Step 2": 2, "Step 3": 3, "VM read": 4,
                "Client read": 4}


def _cow_clusters(trace: Sequence[Event], end: Event, cluster: int) -> list[int]:
    """The clusters a COW copied, from its cow-begin to ``end`` (its cow-end)."""
    out: list[int] = []
    for e in reversed(trace[:end.seq]):
        if e.task != end.task:
            continue
        if e.kind == "cow-begin":
            break
        if e.kind == "cow-copy":
            out.append(e.offset // cluster)
    return sorted(out)


def _copied(clusters: list[int], task: str, *, done: bool, lab: Lab) -> str:
    fleecing = shape(lab).fleecing
    copy = copy_words(lab)[0]
    source = "the live disk" if fleecing else "the secondary disk"
    target = "the fleece overlay" if fleecing else "hidden"
    if not clusters:
        return f"{copy} ({task}): nothing to copy (every cluster done)"
    which = f"{clusters[0]}" if len(clusters) == 1 else f"{clusters[0]}-{clusters[-1]}"
    if done:
        return (f"{copy} ({task}): copied backup cluster(s) {which} — read the old "
                f"contents from {source}, wrote them to {target} (Expand COW shows "
                f"each decision)")
    return (f"{copy} ({task}): copying backup cluster(s) {which} — its read of the "
            f"old contents from {source} is in flight (the next Step runs the "
            f"copy to its end: Step 2)")


def _explained(text: str) -> str:
    """A workflow note with its QEMU shorthand spelt out for a trainee."""
    return text.replace(
        "(no serialising)",
        "with BDRV_REQ_NO_SERIALISING (backup_do_cow: this read must not wait for the very "
        "write it serves, which is in flight over the same bytes)")


def _pre(lines: list[str]) -> str:
    return pre(lines)


def _state(b: w.Widget) -> str:
    label = b.description
    if isinstance(b, w.ToggleButton):
        label += " [on]" if b.value else " [off]"
    return label + (" (disabled)" if b.disabled else "")
