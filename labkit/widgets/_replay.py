"""RaceReplay: every design explored, a counterexample loaded, scrubbed decision by decision."""

from __future__ import annotations

import html
import importlib
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from ..config import designs_for
from ..errors import ConfigError, StateError
from ..kernel import Scripted
from ..lab import Lab
from ..plot import plot_layers, plot_timeline
from ..plot._shape import shape
from ..trace import format_schedule
from ._session import Session, describe_event
from ._view import FONT, App, FigureImage, banner_html, button, pre, spaced, table
from ._whereabouts import read_results, span, whereabouts


def _explorer() -> Any:
    # imported when a RaceReplay is made: importing the widgets stays cheap
    return importlib.import_module("labkit.explore")


class RaceReplay(App):
    """Explore a scenario under each read-protection design and replay a counterexample.

    On creation the explorer (:func:`labkit.explore`) checks every
    interleaving of the scenario for each design; the verdict table says which
    designs are safe.  Pick a counterexample, press **Load**, and scrub
    through it with the slider (or ◀ ▶): the block map shows the layers after
    that many decisions (cells changed by the last decision outlined), the
    timeline shows the whole run with the cursor at that point.

    What a trainee should notice: in the counterexample the read passes the
    hidden disk *before* the COW copies the cluster, and reads the secondary
    disk *after* step 3 — the one order that ``"2.8"`` and ``"4.0"`` forbid.

    ``config``: the :func:`labkit.build_secondary` keywords (not ``design``:
    every design in ``designs`` is explored); ``explore_options`` go to
    ``explore`` only (e.g. a run limit).
    """

    def __init__(self, scenario: str, *, designs: Sequence[str] | None = None,
                 cols: int | None = None, explore_options: dict[str, Any] | None = None,
                 **config: Any) -> None:
        if "design" in config or "policy" in config:
            raise ConfigError("RaceReplay explores every design with its own policy; leave "
                              "design and policy out of the configuration (use designs=...)")
        from ._playground import _graph_of

        graph = _graph_of(scenario, config)
        #: what the lesson calls a design: fleecing's are schemes
        self.word = "scheme" if graph == "fleecing" else "design"
        if designs is None:  # the graph's: COLO's designs, or fleecing's schemes
            designs = designs_for(graph)
        mod = _explorer()
        self.scenario = scenario
        self.config = dict(config)
        self.designs = list(designs)
        self.results = {d: mod.explore(scenario, design=d, **(explore_options or {}),
                                       **config) for d in self.designs}
        self._replay = mod.replay
        self.counterexamples = [(d, i) for d in self.designs
                                for i in range(len(self.results[d].violations))]
        self.loaded: tuple[str, int] | None = None
        self.schedule: list[str] = []
        self.full: Lab | None = None
        self.session: Session | None = None
        self.position = 0
        # a lab to draw before anything is loaded: the scenario's start state
        first = self.counterexamples[0][0] if self.counterexamples else self.designs[0]
        idle = Session(scenario, {**config, "design": first})
        self.plot = plot_layers(idle.lab, cols=cols, title="no counterexample loaded")
        self.timeline = plot_timeline(idle.lab, title="timeline",
                                      width=max(816, int(self.plot.fig.bbox.width)))
        idle.lab.kernel.close()
        self.figure = FigureImage(self.plot)
        self.timeline_figure = FigureImage(self.timeline)
        self.verdicts = w.HTML(self._verdict_html())
        options: list[tuple[str, Any]] = [(self._option_label(d, i), (d, i))
                                          for d, i in self.counterexamples]
        self.picker = w.Dropdown(options=options or [("(no counterexample)", None)],
                                 description="counterexample", style={"description_width":
                                                                      "initial"},
                                 layout=w.Layout(width="auto", min_width="max-content"))
        self.load_button = button("Load", icon="folder-open", style="primary",
                                  tooltip="replay the chosen counterexample")
        self.load_button.disabled = not options
        self.load_button.on_click(lambda _: self._load_picked())
        self.slider = w.IntSlider(value=0, min=0, max=0, description="decision",
                                  continuous_update=False, disabled=True,
                                  layout=w.Layout(width="100%"))
        self.slider.observe(self._on_slider, names="value")
        self.prev_button = button("◀", tooltip="one decision back")
        self.next_button = button("▶", tooltip="one decision on")
        self.prev_button.on_click(lambda _: self._nudge(-1))
        self.next_button.on_click(lambda _: self._nudge(1))
        self.info = w.HTML()
        self.banner = w.HTML()
        self.parked = w.HTML()
        self.slider.layout = w.Layout(width="520px")
        self.widget = w.VBox([
            w.HTML(f"<div style='{FONT}'><b>Race replay</b> — every interleaving checked, a "
                   f"counterexample replayed</div>"), self.verdicts,
            w.HBox([self.picker, self.load_button], layout=spaced(6)),
            w.HBox([self.prev_button, self.slider, self.next_button],
                   layout=spaced(4, align_items="center")),
            self.banner, self.parked, self.figure.image, self.timeline_figure.image,
            self.info], layout=spaced(6, overflow="visible"))
        self.widget.add_class("labkit-racereplay")
        self.banner.add_class("labkit-banner")
        self.parked.add_class("labkit-parked")
        self._refresh_info()
        if self.counterexamples:
            self.load(*self.counterexamples[0])

    # --- loading and scrubbing ----------------------------------------------------------------
    def _option_label(self, design: str, i: int) -> str:
        """A short whole phrase for the dropdown (the oracle's message, which the banner
        shows in full, was cut mid-sentence there)."""
        v = self.results[design].violations[i]
        return (f"{self.word} {design} #{i + 1}: {v.kind.replace('-', ' ')} seen by {v.task} "
                f"({len(v.schedule)} decisions)")

    def _load_picked(self) -> None:
        if self.picker.value is not None:
            self.load(*self.picker.value)

    def load(self, design: str, index: int = 0) -> None:
        """Load counterexample ``index`` of ``design``; the slider goes back to 0."""
        v = self.results[design].violations[index]
        self.loaded = (design, index)
        self.schedule = list(v.schedule)
        self.full = self._replay(self.scenario, self.schedule, design=design, **self.config)
        if self.session is not None:
            self.session.lab.kernel.close()
        self.session = Session(self.scenario, {**self.config, "design": design})
        self.position = 0
        if self.picker.value != (design, index):
            self.picker.value = (design, index)
        self.slider.max = len(self.schedule)
        self.slider.value = 0  # position is 0 already: the observer does nothing
        self.slider.disabled = False
        self._show(since=self.session.lab.layers())

    def seek(self, position: int) -> None:
        """Show the state after ``position`` decisions of the loaded counterexample."""
        if self.session is None:
            raise StateError("no counterexample loaded")
        position = max(0, min(position, len(self.schedule)))
        lab = self.session.lab
        since = None
        if position == self.position + 1 and lab.schedule == self.schedule[:self.position]:
            # one decision on: step instead of replaying the prefix; the plot outlines
            # what changed since its last update, which is exactly this decision
            lab.kernel.policy = Scripted(self.schedule)
            if not self.session.done:
                self.session.step()
            self.position = position
            self.slider.value = position
            self._show(since=None)
            return
        elif position != self.position:
            before = position - 1 if position > 0 else None
            _, since = self.session.rebuild(self.schedule[:position], capture_at=before)
        self.position = position
        if self.slider.value != position:
            self.slider.value = position  # the observer sees position unchanged
        self._show(since=since if since is not None else self.session.lab.layers())

    def _on_slider(self, change: dict[str, Any]) -> None:
        if self.session is not None and change["new"] != self.position:
            self.seek(change["new"])

    def _nudge(self, delta: int) -> None:
        if self.session is not None:
            self.seek(self.position + delta)

    # --- views ------------------------------------------------------------------------------------
    def figures(self) -> list[Any]:
        return [self.plot, self.timeline]

    @property
    def lab(self) -> Lab | None:
        """The lab after :attr:`position` decisions of the loaded counterexample."""
        return self.session.lab if self.session is not None else None

    def verdict_lines(self) -> list[str]:
        out = []
        for d in self.designs:
            r = self.results[d]
            n = len(r.violations)
            extra = f"; {n} counterexample(s)" if n else ""
            out.append(f"{self.word} {d}: {r.verdict} — {r.runs} runs, "
                       f"{'complete' if r.complete else 'not complete'}{extra}")
        return out

    def _verdict_html(self) -> str:
        rows = []
        for d in self.designs:
            r = self.results[d]
            colour = {"safe": "#117733", "violation": "#CC3311"}.get(r.verdict, "#555555")
            rows.append(f"<tr><td style='padding:0 8px'>{self.word} <b>{html.escape(d)}</b></td>"
                        f"<td style='padding:0 8px;color:{colour}'><b>{html.escape(r.verdict)}"
                        f"</b></td><td style='padding:0 8px'>{r.runs} runs, "
                        f"{'complete' if r.complete else 'not complete'}</td>"
                        f"<td style='padding:0 8px'>{len(r.violations)} counterexample(s)"
                        f"</td></tr>")
        return "<table>" + "".join(rows) + "</table>"

    def last_lines(self) -> list[str]:
        """The events of the decision that led to the current position."""
        lab = self.lab
        if lab is None or self.position == 0:
            return []
        runs = [i for i, e in enumerate(lab.trace) if e.kind == "run"]
        start = runs[self.position - 1]
        out = []
        for e in lab.trace[start:]:
            if e.kind == "spawn":
                continue
            out.append(f"{e.task} runs" if e.kind == "run" else f"  {describe_event(e)}")
        return out

    def text(self) -> str:
        """The text twin: verdicts, the loaded counterexample, the position, the block map."""
        out = [f"RaceReplay: {len(self.designs)} designs explored"]
        out += self.verdict_lines()
        if self.loaded is None or self.lab is None:
            out.append("no counterexample loaded" if self.counterexamples
                       else "no counterexample: no design shows a violation")
            return "\n".join(out)
        d, i = self.loaded
        v = self.results[d].violations[i]
        out.append(f"loaded: {self.word} {d}, counterexample {i + 1}: {v.message}")
        out.append(f"schedule: {format_schedule(self.schedule)}")
        out.append(f"position: after {self.position} of {len(self.schedule)} decisions")
        out += ["last decision:"] + [f"  {x}" for x in self.last_lines()]
        vs = self.lab.violations()
        banner = self.banner_text()
        if banner:
            out.append(f"BANNER: {banner.replace(chr(10), ' ')}")
        out.append("violations so far: " + ("; ".join(x.message for x in vs) if vs else "none"))
        out.append("where each task is:")
        out += [f"  {k}: {x}" for k, x in whereabouts(self.lab).items()]
        out.append(table(self.lab))
        return "\n".join(out)

    def banner_text(self) -> str:
        """At (and after) the violation: the read, the bytes it got and what it should get."""
        lab = self.lab
        if lab is None:
            return ""
        vs = lab.violations()
        if not vs:
            return ""
        v = vs[0]
        got = next((r for r in read_results(lab) if r.task == v.task), None)
        where = span(v.offset, 1, lab.block) or "the disk"
        if got is not None:
            where = span(got.offset, got.length, lab.block)
        if shape(lab).fleecing:
            return (f"Point-in-time view broken at decision {self._violation_at()}: {v.task} "
                    f"read {where} — expected {v.expected:#04x} (the disk when the backup "
                    f"started), got {v.got:#04x}.\n{v.message}")
        return (f"Conflicting read at decision {self._violation_at()}: {v.task} read "
                f"{where} — expected {v.expected:#04x} (what the VM should see), got "
                f"{v.got:#04x}.\n{v.message}")

    def _violation_at(self) -> int:
        """The decision (1-based) after which the oracle reported the violation."""
        lab = self.lab
        assert lab is not None
        runs = 0
        done = {v.task for v in lab.violations()}
        for e in lab.trace:
            if e.kind == "run":
                runs += 1
            elif e.kind == "done" and e.task in done:
                return runs
        return runs

    def _refresh_info(self) -> None:
        lines = []
        if self.loaded is not None:
            lines.append(f"schedule: {format_schedule(self.schedule)}")
            lines.append(f"after {self.position} of {len(self.schedule)} decisions")
            lines += self.last_lines()
        elif not self.counterexamples:
            lines.append("no counterexample: no design shows a violation")
        self.info.value = pre(lines)
        banner = self.banner_text()
        head, _, rest = banner.partition("\n")
        self.banner.value = banner_html(f"<b>{html.escape(head)}</b><br>{html.escape(rest)}",
                                        bad=True) if banner else ""
        lab = self.lab
        parked = [f"  {k}: {x}" for k, x in whereabouts(lab).items()] if lab is not None else []
        self.parked.value = pre(["where each task is:", *parked],
                                style="background:#F4F7FA;padding:4px 6px") if parked else ""
        self.prev_button.disabled = self.loaded is None or self.position == 0
        self.next_button.disabled = self.loaded is None or self.position >= len(self.schedule)

    def _show(self, since) -> None:
        """Redraw; ``since``: the layers to outline changes against (None: the plot's
        previous state, right after a single step)."""
        assert self.session is not None and self.loaded is not None and self.full is not None
        lab = self.session.lab
        d, i = self.loaded
        self.plot.update(lab, title=f"{self.word} {d} · counterexample {i + 1} · after "
                                    f"{self.position}/{len(self.schedule)} decisions",
                         since=since)
        self.timeline.update(self.full, cursor=self.position,
                             title=f"the whole counterexample ({self.word} {d}); red line: now")
        self.figure.refresh()
        self.timeline_figure.refresh()
        self._refresh_info()
