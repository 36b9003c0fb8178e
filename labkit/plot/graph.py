"""The block graph of the COLO secondary as a figure, with where each task is parked.

What QEMU's ``docs/block-replication.txt`` draws for the secondary, read from the
lab's objects (never redrawn from a fixed picture): the NBD server and its
export, the nodes reachable from the replication node and the export
(``secondary-disk`` raw, ``hidden`` and ``active`` qcow2, ``colo-top`` the
``replication`` filter), their ``file`` and ``backing`` links, the guest (the
secondary VM, whose virtio-blk sits on ``colo-top``), the backup job's copy
arrow while ``replication_start`` has one running (``backup_start`` with
``sync=none``: ``backup_do_cow`` copies the old contents of the secondary disk
to the hidden disk before a primary write lands), and the active commit of
failover while it runs.  In era 7.2 the backup job has inserted a
``copy-before-write`` filter node above the secondary disk (``bdrv_cbw_append``):
the NBD export now points at the filter, whose ``file`` is the secondary disk
and whose ``target`` is the hidden disk.  After failover (``mirror_exit`` →
``bdrv_replace_in_backing_chain``) ``colo-top``'s file child is the secondary
disk; active and hidden are no longer reachable and are not drawn.

What a trainee should notice: a VM read goes down ``file`` then ``backing``
links — active, then hidden, then the secondary disk — and can be parked at
any of them while a primary write, arriving from the NBD server, runs its COW
into the hidden disk; the badges show who is parked where.

A fleecing lab (:class:`labkit.fleecing.FleecingLab`) gets image fleecing's graph,
as QEMU's ``tests/qemu-iotests/tests/image-fleecing`` builds it, per scheme: the
guest on the live disk, the ``fleece`` overlay whose ``backing`` is the live disk,
the NBD export the backup client reads; in "2.12" and "3.0" the export is on the
overlay and the backup job (``sync=none``) copies live → fleece; in "7.2" the
guest's device sits on the ``copy-before-write`` filter (``file`` = live disk,
``target`` = overlay) and the export on a ``snapshot-access`` node above it.
What a trainee should notice there: the client's read of the overlay goes down
its ``backing`` link to the very disk the guest is writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text

from ..block import BlockNode
from ..errors import ArgumentError, ConfigError
from ..fleecing import FleecingLab
from ..lab import Lab
from ._common import TEXT_COLOUR, BlitFigure, Group, new_figure, pt, resize_figure

__all__ = ["CLIENT", "GUEST", "NBD_SERVER", "GraphPlot", "graph_model", "parked_tasks",
           "plot_graph", "task_colour"]

#: Names of the places that are not block nodes (highlight keys besides node names);
#: CLIENT, the backup client, only in a fleecing lab's graph.
GUEST = "guest"
NBD_SERVER = "nbd-server"
CLIENT = "backup-client"

WIDTH, HEIGHT = 820, 456  # HEIGHT: the top; the bottom follows the badges shown
BOX_W, BOX_H = 216, 58
#: Where each part of the standard secondary sits (centre, pixels from bottom-left).
#: Keyed by role, not by name: the names are read from the lab.
SLOTS = {
    GUEST: (698, 398),
    NBD_SERVER: (122, 281),
    "top": (698, 281),
    "cbw": (410, 281),  # era 7.2: the copy-before-write filter, between export and disks
    "secondary": (122, 126),
    "hidden": (410, 126),
    "active": (698, 126),
}
SUBTITLES = {
    GUEST: "virtio-blk of the secondary VM",
    NBD_SERVER: "serves the primary's writes",
    "top": "replication, mode=secondary",
    "cbw": "copy-before-write filter",
    "secondary": "raw: the secondary disk",
    "hidden": "qcow2: the hidden disk",
    "active": "qcow2: the active disk",
}
#: Image fleecing's graph (keyed by role): the guest and the backup client on top, the
#: copy-before-write filter, snapshot-access and the NBD server in the middle (7.2's
#: nodes; empty slots in 2.12 and 3.0), the live disk and the overlay at the bottom.
FLEECING_SLOTS = {
    GUEST: (122, 398),
    CLIENT: (698, 398),
    "cbw": (122, 281),
    "access": (410, 281),
    NBD_SERVER: (698, 281),
    "live": (122, 126),
    "fleece": (410, 126),
}
FLEECING_SUBTITLES = {
    GUEST: "the running VM's disk device",
    CLIENT: "pull-mode backup: NBD reads",
    NBD_SERVER: "exports the point-in-time view",
    "cbw": "copy-before-write filter",
    "access": "snapshot reads only",
    "live": "raw: the live disk",
    "fleece": "qcow2 overlay, backing=live",
}
#: Top-row badges of the fleecing graph are cut shorter: the guest's (right of it) and
#: the client's (left of it) share the row's middle.
TOP_BADGE_CHARS = 27
BADGES = 3  # badge slots per node (the last says "+ N more" when there are more)
BADGE_CHARS = 34  # a badge's label is cut to this many characters (fits 250 px)
BADGE_STEP = 24  # pixels between a node's badges
#: Badge rows under the bottom row's boxes: room for them always (a figure that resized
#: with its badges would need a full draw on most Steps), and no more (no empty band).
BOTTOM_BADGES = 2
#: The bottom row's badges sit under their box, each node in its own third of the width.
BOTTOM_BAND = 180
BOX_COLOUR, BOX_EDGE = "#F3F3F3", "#505050"
LINK_COLOUR, JOB_COLOUR = "#404040", "#CC3311"

#: A task's colour in the badges, by the kind of task (its name before ``#``).
TASK_COLOURS = {"vm-read": "#0077BB", "nbd-write": "#EE7733", "vm-write": "#AA3377",
                "commit": "#009988", "client-read": "#0077BB"}
OTHER_TASK_COLOUR = "#555555"


def task_colour(task: str) -> str:
    """The colour of ``task``'s badge: one per kind (VM reads blue, NBD writes orange...)."""
    return TASK_COLOURS.get(task.split("#", 1)[0], OTHER_TASK_COLOUR)


@dataclass(frozen=True)
class GraphModel:
    """What the figure shows, read from a lab (no drawing).

    ``nodes``: ``(name, role)`` of every drawn node, ``role`` one of ``guest``,
    ``nbd-server``, ``top``, ``secondary``, ``hidden``, ``active`` (or ``other``);
    ``links``: ``(parent, label, child)`` with label ``file``, ``backing``,
    ``export`` or ``attached``; ``jobs``: ``(source, label, target)`` for the
    backup job's copy and the failover commit while they run.
    """

    nodes: tuple[tuple[str, str], ...]
    links: tuple[tuple[str, str, str], ...]
    jobs: tuple[tuple[str, str, str], ...]
    state: str
    design: str

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.nodes]


def _roles(lab: Lab) -> dict[str, str]:
    if isinstance(lab, FleecingLab):
        out = {lab.live.name: "live", lab.overlay.name: "fleece"}
        if lab.cbw is not None:
            out[lab.cbw.name] = "cbw"
        if lab.access is not None:
            out[lab.access.name] = "access"
        return out
    roles = {lab.top.name: "top", lab.secondary.name: "secondary", lab.hidden.name: "hidden",
             lab.active.name: "active"}
    job = lab.top.backup_job
    if job is not None and job.cbw is not None:  # era 7.2 (bdrv_cbw_append)
        roles[job.cbw.name] = "cbw"
    return roles


def graph_model(lab: Lab) -> GraphModel:
    """The nodes, links and running jobs of ``lab``'s graph, as the figure draws them.

    Reachable from the guest's node (``lab.top``) and the NBD exports, through
    each node's ``children`` (``file``, ``backing``): what QEMU's graph holds
    now, so after failover active and hidden are gone.
    """
    if isinstance(lab, FleecingLab):
        return _fleecing_model(lab)
    roles = _roles(lab)
    nodes: list[tuple[str, str]] = [(GUEST, GUEST)]
    links: list[tuple[str, str, str]] = [(GUEST, "attached", lab.top.name)]
    exports = list(lab.nbd.exports.values())
    if exports:
        nodes.append((NBD_SERVER, NBD_SERVER))
        links += [(NBD_SERVER, f"export '{e.name}'", e.node.name) for e in exports]
    _walk([lab.top] + [e.node for e in exports], roles, nodes, links)
    jobs: list[tuple[str, str, str]] = []
    job = lab.top.backup_job
    if job is not None and job.running and job.cbw is not None:  # 7.2: the filter copies
        jobs.append((job.cbw.name, f"target: backup job\n(sync={job.sync_mode}) copies\n"
                                   f"old contents", job.target.name))
    elif job is not None and job.running:
        jobs.append((job.source.name, f"backup job (sync={job.sync_mode}):\ncopy old contents",
                     job.target.name))
    commit = lab.top.commit_job
    if lab.state == "failover" and commit is not None and commit.ret is None:
        jobs.append((commit.top.name, "failover: active commit\ninto the secondary disk",
                     commit.base.name))
    return GraphModel(tuple(nodes), tuple(dict.fromkeys(links)), tuple(jobs), lab.state,
                      lab.design)


def _walk(starts: list[BlockNode], roles: dict[str, str], nodes: list[tuple[str, str]],
          links: list[tuple[str, str, str]]) -> None:
    """Add every node reachable from ``starts`` (each once, in the order met) and its
    child edges (``bs->children``: file, backing, target...) to ``nodes`` and ``links``."""
    seen: set[str] = set()
    for start in starts:
        for node in start.chain_nodes():
            if node.name in seen:
                continue
            seen.add(node.name)
            nodes.append((node.name, roles.get(node.name, "other")))
            links += [(node.name, role, child.name) for role, child in node.children.items()]


def _fleecing_model(lab: FleecingLab) -> GraphModel:
    """Image fleecing's graph: the guest's device, the backup client and the NBD
    export, every node reachable from the device, the overlay and the export."""
    roles = _roles(lab)
    nodes: list[tuple[str, str]] = [(GUEST, GUEST), (CLIENT, CLIENT)]
    links: list[tuple[str, str, str]] = [(GUEST, "attached", lab.guest.node.name)]
    exports = list(lab.nbd.exports.values())
    if exports:
        nodes.append((NBD_SERVER, NBD_SERVER))
        links.append((CLIENT, "NBD_CMD_READ", NBD_SERVER))
        links += [(NBD_SERVER, f"export '{e.name}'", e.node.name) for e in exports]
    _walk([lab.guest.node, lab.overlay] + [e.node for e in exports], roles, nodes, links)
    jobs: list[tuple[str, str, str]] = []
    if lab.cbw is not None:
        jobs.append((lab.cbw.name, "target: old contents\ncopied here",
                     lab.overlay.name))
    elif lab.job is not None and lab.job.running:
        jobs.append((lab.live.name, "backup job (sync=none):\ncopy old contents",
                     lab.overlay.name))
    return GraphModel(tuple(nodes), tuple(dict.fromkeys(links)), tuple(jobs), lab.state,
                      lab.design)


def parked_tasks(lab: Lab) -> dict[str, tuple[str, str]]:
    """Where each unfinished task is parked: ``{task: (node, label)}``.

    A plain default for :meth:`GraphPlot.update`'s ``highlight`` (the widgets
    give finer words).  The node is ``Task.suspended.node``; a task blocked on
    a queue (which names no node) is placed at the node of its last trace
    event, labelled with what it waits for (``Task.why_blocked``).  Tasks that
    have not touched a node yet (control commands, a request not started) are
    left out.
    """
    last_node: dict[str, str] = {}
    for e in lab.trace:
        if e.node in lab.graph.nodes:
            last_node[e.task] = e.node
    out: dict[str, tuple[str, str]] = {}
    for name, task in lab.kernel.tasks.items():
        s = task.suspended
        if task.done or s is None:
            continue
        node = s.node or last_node.get(name, "")
        if not node:
            continue
        if task.why_blocked:
            label = f"waits: {task.why_blocked}"
        else:
            where = f" [{s.offset:#x}+{s.length:#x}]" if s.offset >= 0 and s.length > 0 else ""
            label = f"parked{where}"
        out[name] = (node, label)
    return out


def _edge_point(c: tuple[float, float], towards: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from box centre ``c`` to ``towards`` leaves the box."""
    (x0, y0), (x1, y1) = c, towards
    dx, dy = x1 - x0, y1 - y0
    if dx == 0 and dy == 0:
        return c
    sx = (BOX_W / 2 + 3) / abs(dx) if dx else float("inf")
    sy = (BOX_H / 2 + 3) / abs(dy) if dy else float("inf")
    s = min(sx, sy)
    return x0 + dx * s, y0 + dy * s


class GraphPlot(BlitFigure):
    """The secondary's block graph, its running jobs, and badges: who is parked where.

    ``update(lab, highlight={"vm-read#1": ("secondary-disk", "reading")})``
    redraws in place: the node boxes and links are made once (shown or hidden
    as the graph changes), the badges are a fixed pool of texts per node whose words,
    positions and colours change; a Step redraws only the nodes whose badges changed,
    and a state shown before (Undo) reuses its PNG.
    """

    png_cache_size = 32

    def __init__(self, lab: Lab, *, highlight: Mapping[str, tuple[str, str]] | None = None,
                 title: str | None = None, dpi: int = 100) -> None:
        self.dpi = dpi
        self.fleecing = isinstance(lab, FleecingLab)
        self.slots = FLEECING_SLOTS if self.fleecing else SLOTS
        self.subtitles = FLEECING_SUBTITLES if self.fleecing else SUBTITLES
        self.y_low = self._bottom(False)
        self.fig = fig = new_figure(WIDTH, HEIGHT - self.y_low, dpi)
        self.ax = ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, WIDTH)
        ax.set_ylim(self.y_low, HEIGHT)
        ax.set_axis_off()
        self._fs = pt(12, dpi)
        self.boxes: dict[str, tuple[FancyBboxPatch, Text, Text]] = {}
        self.rings: dict[str, FancyBboxPatch] = {}
        self.links: dict[tuple[str, str, str], tuple[FancyArrowPatch, Text]] = {}
        self._slot_of: dict[str, tuple[float, float]] = {}
        self._names = {role: name for name, role in _roles(lab).items()}
        self._names[NBD_SERVER] = "NBD server"
        # the primary's writes arrive at the NBD server from outside the graph
        nx, ny = SLOTS[NBD_SERVER]
        self.primary_arrow = FancyArrowPatch((nx, ny + 112), (nx, ny + BOX_H / 2 + 3),
                                             arrowstyle="-|>", mutation_scale=pt(16, dpi),
                                             lw=pt(1.6, dpi), color=LINK_COLOUR)
        ax.add_patch(self.primary_arrow)
        self.primary_text = ax.text(nx, ny + 118, "from the primary: nbd-write#N",
                                    ha="center", va="bottom", fontsize=self._fs,
                                    color=TEXT_COLOUR)
        if self.fleecing:  # no primary: the client is a box of its own
            self.primary_arrow.set_visible(False)
            self.primary_text.set_visible(False)
        self.title = ax.text(8, HEIGHT - 8, "", ha="left", va="top",
                             fontsize=pt(14, dpi), fontweight="bold", color="#000000")
        self.note = ax.text(8, self.y_low + 4, "", ha="left", va="bottom",
                            fontsize=self._fs, color=TEXT_COLOUR)
        # after failover: where active and hidden were
        self.gone = ax.text(550, SLOTS["hidden"][1], "", ha="center", va="center",
                            fontsize=self._fs, color="#606060", linespacing=1.3,
                            bbox=dict(boxstyle="round,pad=0.6", fc="white", ec="#A0A0A0",
                                      ls="--", lw=pt(1.2, dpi)))
        self.gone.set_visible(False)
        self.badges: list[Text] = []  # all of them
        self.node_badges: dict[str, list[Text]] = {}  # per node, a fixed pool of BADGES
        self._groups: list[Group] = []
        self._node_groups: dict[str, Group] = {}
        self.highlight: dict[str, tuple[str, str]] = {}
        self.model: GraphModel | None = None
        self._title = ""
        self.update(lab, highlight=highlight, title=title)

    def __repr__(self) -> str:
        n = len(self.model.nodes) if self.model else 0
        return f"<GraphPlot {n} nodes, {len(self.highlight)} tasks highlighted>"

    # --- made once ------------------------------------------------------------------
    def _slot_of_role(self, role: str) -> tuple[float, float]:
        return self.slots.get(role, (410, 405))

    def _box(self, name: str, role: str) -> tuple[FancyBboxPatch, Text, Text]:
        if name in self.boxes:
            return self.boxes[name]
        x, y = self._slot_of_role(role)
        ax, dpi = self.ax, self.dpi
        patch = FancyBboxPatch((x - BOX_W / 2, y - BOX_H / 2), BOX_W, BOX_H,
                               boxstyle=f"round,pad=0,rounding_size={pt(9, dpi) * dpi / 72}",
                               fc=BOX_COLOUR, ec=BOX_EDGE, lw=pt(1.3, dpi), zorder=2)
        ax.add_patch(patch)
        label = "NBD server" if role == NBD_SERVER else (
            ("guest (the VM)" if self.fleecing else "secondary VM (guest)") if role == GUEST
            else "backup client" if role == CLIENT else name)
        head = ax.text(x, y + 9, label, ha="center", va="center", fontsize=pt(14, dpi),
                       fontweight="bold", color="#000000", zorder=3)
        sub = ax.text(x, y - 13, self.subtitles.get(role, ""), ha="center", va="center",
                      fontsize=self._fs, color=TEXT_COLOUR, zorder=3)
        ring = FancyBboxPatch((x - BOX_W / 2 - 4, y - BOX_H / 2 - 4), BOX_W + 8, BOX_H + 8,
                              boxstyle=f"round,pad=0,rounding_size={pt(12, dpi) * dpi / 72}",
                              fc="none", ec="#000000", lw=pt(3.5, dpi), zorder=4,
                              visible=False)
        ax.add_patch(ring)
        self.rings[name] = ring
        self.node_badges[name] = [self._badge() for _ in range(BADGES)]
        self.badges += self.node_badges[name]
        self._slot_of[name] = (x, y)
        self.boxes[name] = (patch, head, sub)
        return self.boxes[name]

    def _link(self, key: tuple[str, str, str], job: bool) -> tuple[FancyArrowPatch, Text]:
        if key in self.links:
            return self.links[key]
        parent, label, child = key
        a, b = self._slot_of[parent], self._slot_of[child]
        dpi, ax = self.dpi, self.ax
        colour = JOB_COLOUR if job else LINK_COLOUR
        same_row = abs(a[1] - b[1]) < 1
        if job and same_row:
            # a job's copy between two nodes of the bottom row: an arc above (the backup)
            # or below (the commit) the backing links
            up = a[0] < b[0]
            dy = BOX_H / 2 + 3
            p0 = (a[0] + (40 if up else -40), a[1] + (dy if up else -dy))
            p1 = (b[0] - (40 if up else -40), b[1] + (dy if up else -dy))
            style = f"arc3,rad={-0.35 if up else -0.25}"
            mid = ((p0[0] + p1[0]) / 2, max(p0[1], p1[1]) + 58 if up else p0[1] - 58)
            va = "center"
        else:
            p0, p1 = _edge_point(a, b), _edge_point(b, a)
            style = "arc3,rad=0"
            mid = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
            va = "bottom" if same_row else "center"
        arrow = FancyArrowPatch(p0, p1, arrowstyle="-|>", connectionstyle=style,
                                mutation_scale=pt(16, dpi), lw=pt(2.0 if job else 1.6, dpi),
                                color=colour, linestyle="--" if job else "-", zorder=1)
        ax.add_patch(arrow)
        words = label
        if same_row and not job:
            pos = (mid[0], mid[1] + 4)
            ha = "center"
        elif job:
            pos, ha = mid, "center"
        elif abs(a[0] - b[0]) < 1 and a[0] < WIDTH / 2:  # a vertical link on the left
            pos, ha = (mid[0] - 8, mid[1]), "right"
        else:
            pos, ha = (mid[0] + 8, mid[1]), "left"
        text = ax.text(*pos, words, ha=ha, va=va, fontsize=self._fs, color=colour, zorder=3,
                       linespacing=1.15,
                       fontweight="bold" if job else "normal",
                       bbox=dict(fc="white", ec="none", pad=1.0) if not same_row or job
                       else None)
        self.links[key] = (arrow, text)
        return self.links[key]

    def _badge(self) -> Text:
        t = self.ax.text(0, 0, "", fontsize=self._fs, zorder=6, color="#000000",
                         bbox=dict(boxstyle="round,pad=0.3", fc="white", lw=pt(2, self.dpi)))
        t.set_visible(False)
        return t

    @staticmethod
    def _bottom(note: bool) -> int:
        """The lowest y the figure shows: under the bottom row's boxes, room for
        :data:`BOTTOM_BADGES` badges, and for the note when there is one."""
        low = SLOTS["secondary"][1] - BOX_H // 2 - 14 - BADGE_STEP * (BOTTOM_BADGES - 1) - 18
        return low - (20 if note else 0)

    def _regroup(self) -> None:
        """The changing parts, each in its own rectangle: one per node (its ring and
        badges), the title, the note; a Step redraws only those that changed."""
        lo = self.y_low

        def group(artists: list, x0: float, y0: float, x1: float, y1: float) -> Group:
            return Group(artists, x0, max(y0, lo) - lo, x1, min(y1, HEIGHT) - lo)

        self._node_groups = {}
        for name, (x, y) in self._slot_of.items():
            artists = [self.rings[name], *self.node_badges[name]]
            top = y + BOX_H / 2 + 7
            if y < BOTTOM_BAND:  # badges under the box, each node in its third of the width
                third = WIDTH / 3 - 7
                i = min(2, int(x // third))
                g = group(artists, i * third if i else 0, lo, WIDTH if i == 2 else (i + 1) * third,
                          top)
            elif x > WIDTH / 2:  # badges left of the box
                g = group(artists, x - BOX_W / 2 - 290, y - BOX_H / 2 - 44, x + BOX_W / 2 + 8,
                          top)
            else:  # badges right of the box
                g = group(artists, x - BOX_W / 2 - 8, y - BOX_H / 2 - 44, x + BOX_W / 2 + 290,
                          top)
            self._node_groups[name] = g
        self._title_group = group([self.title], 0, HEIGHT - 22, WIDTH, HEIGHT)
        self._note_group = group([self.note], 0, lo, WIDTH, lo + 20)
        self._groups = [*self._node_groups.values(), self._title_group, self._note_group]

    # --- updated ----------------------------------------------------------------------
    def groups(self) -> list[Group]:
        return self._groups

    def update(self, lab: Lab, *, highlight: Mapping[str, tuple[str, str]] | None = None,
               title: str | None = None) -> None:
        """Redraw from ``lab``; ``highlight`` maps task name → (node name, short label).

        The node is one of the lab's node names (``secondary-disk``, ``hidden``,
        ``active``, ``colo-top``) or ``"guest"`` / ``"nbd-server"``.  A task at a
        node that is no longer in the graph (after failover) is named in the
        note under the figure.  ``title``: the line at the top (default: the
        replication state and design).
        """
        marks = self._check_highlight(lab, highlight)
        model = graph_model(lab)
        if model != self.model:
            self._show_model(model)
        self.highlight = marks
        if title is None:
            title = (f"Image fleecing's block graph · {model.state} · scheme {model.design}"
                     if self.fleecing else
                     f"The secondary's block graph · replication {model.state} · "
                     f"design {model.design}")
        self.title.set_text(title)
        self._place_badges(model, marks)
        low = self._bottom(bool(self.note.get_text()))
        if low != self.y_low:  # a note (a task outside the graph) appeared or went: resize
            self.y_low = low
            resize_figure(self.fig, WIDTH, HEIGHT - low)
            self.ax.set_ylim(low, HEIGHT)
            self.note.set_y(low + 4)
            self._regroup()
            self.invalidate()
        self._title_group.key = title
        self._note_group.key = self.note.get_text()
        for name, g in self._node_groups.items():
            ring = self.rings[name]
            g.key = (ring.get_visible(), ring.get_edgecolor(),
                     tuple((b.get_text(), b.get_position(), b.get_horizontalalignment())
                           for b in self.node_badges[name] if b.get_visible()))
        self.changed()

    def _check_highlight(self, lab: Lab, highlight: Mapping[str, tuple[str, str]] | None
                         ) -> dict[str, tuple[str, str]]:
        if highlight is None:
            return {}
        if not isinstance(highlight, Mapping):
            raise ArgumentError(f"highlight must be a mapping task name -> (node, label), "
                                f"got {type(highlight).__name__}")
        allowed = [GUEST, NBD_SERVER, *([CLIENT] if self.fleecing else []), *lab.graph.nodes]
        out: dict[str, tuple[str, str]] = {}
        for task, where in highlight.items():
            if not isinstance(task, str) or not (isinstance(where, tuple) and len(where) == 2
                                                 and all(isinstance(w, str) for w in where)):
                raise ArgumentError(f"highlight entries must be task name -> (node, label) "
                                    f"strings, got {task!r}: {where!r}")
            if where[0] not in allowed:
                raise ConfigError(f"highlight: {task} is at {where[0]!r}, which is not a node "
                                  f"of this lab (allowed: {', '.join(allowed)})")
            out[task] = (where[0], where[1])
        return out

    def _show_model(self, model: GraphModel) -> None:
        for patch, head, sub in self.boxes.values():
            for a in (patch, head, sub):
                a.set_visible(False)
        for arrow, text in self.links.values():
            arrow.set_visible(False)
            text.set_visible(False)
        for name, role in model.nodes:
            for box_part in self._box(name, role):
                box_part.set_visible(True)
        jobs_between = {(j[0], j[2]) for j in model.jobs}
        for key in model.links:
            if (key[0], key[2]) in jobs_between:  # the job's arrow is this link (7.2's target)
                continue
            for link_part in self._link(key, job=False):
                link_part.set_visible(True)
        for key in model.jobs:
            for link_part in self._link(key, job=True):
                link_part.set_visible(True)
        roles = {r for _, r in model.nodes}
        dropped = [] if self.fleecing else [self._names[r] for r in ("active", "hidden")
                                            if r not in roles]
        self.gone.set_visible(bool(dropped))
        self.gone.set_text(f"{' and '.join(dropped)}: no longer in the graph\n"
                           f"(failover's commit replaced them by the secondary disk)"
                           if dropped else "")
        has_nbd = NBD_SERVER in model.names and not self.fleecing
        self.primary_arrow.set_visible(has_nbd)
        self.primary_text.set_visible(has_nbd)
        self.model = model
        self._regroup()
        self.invalidate()

    def _place_badges(self, model: GraphModel, marks: dict[str, tuple[str, str]]) -> None:
        """Set the badges' words and places (the last one of a node says "+ N more"
        when more tasks are parked there than it has room for)."""
        drawn = set(model.names)
        per_node: dict[str, list[tuple[str, str]]] = {}
        elsewhere: list[str] = []
        for task, (node, label) in marks.items():
            if node in drawn:
                per_node.setdefault(node, []).append((task, label))
            else:
                elsewhere.append(f"{task} at {node} (not in the graph now): {label}")
        for ring in self.rings.values():
            ring.set_visible(False)
        for badge in self.badges:
            badge.set_visible(False)
        for node, tasks in per_node.items():
            x, y = self._slot_of[node]
            ring = self.rings[node]
            ring.set_edgecolor(task_colour(tasks[0][0]))
            ring.set_visible(True)
            room = BOTTOM_BADGES if y < BOTTOM_BAND else BADGES
            chars = TOP_BADGE_CHARS if self.fleecing and y > 350 else BADGE_CHARS
            under = self.fleecing and (x, y) == FLEECING_SLOTS["cbw"]
            if under:  # the filter's row is full: one badge under it, right of its file link
                room, chars = 1, TOP_BADGE_CHARS + 4
            for k, (task, label) in enumerate(tasks[:room]):
                text = f"{task}: {label}" if label else task
                if len(text) > chars:
                    text = text[:chars - 1] + "…"
                if k == room - 1 and len(tasks) > room:
                    text = f"+ {len(tasks) - room + 1} more tasks"
                bx, by, ha, va = self._badge_at(x, y, k)
                if under:
                    bx, by, ha = x - BOX_W / 2 + 116, y - BOX_H / 2 - 14, "left"
                badge = self.node_badges[node][k]
                colour = task_colour(task)
                badge.set_text(text)
                badge.set_position((bx, by))
                badge.set_horizontalalignment(ha)
                badge.set_verticalalignment(va)
                patch = badge.get_bbox_patch()
                assert patch is not None  # every badge is made with a bbox
                patch.set_edgecolor(colour)
                badge.set_visible(True)
        self.note.set_text("; ".join(elsewhere))

    @staticmethod
    def _badge_at(x: float, y: float,
                  k: int) -> tuple[float, float, Literal["left", "center", "right"],
                                   Literal["center"]]:
        """Where the ``k``-th badge of the node at (x, y) goes: under the bottom row's
        boxes (flush with the figure's edge at the sides), beside the others (left of the
        right-hand column, right of the left)."""
        if y < BOTTOM_BAND:
            by = y - BOX_H / 2 - 14 - BADGE_STEP * k
            if x < WIDTH / 3:
                return x - BOX_W / 2 - 4, by, "left", "center"
            if x > 2 * WIDTH / 3:
                return x + BOX_W / 2 + 4, by, "right", "center"
            return x, by, "center", "center"
        if x > WIDTH / 2:
            return x - BOX_W / 2 - 12, y + 18 - BADGE_STEP * k, "right", "center"
        return x + BOX_W / 2 + 12, y + 18 - BADGE_STEP * k, "left", "center"


def plot_graph(lab: Lab, *, highlight: Mapping[str, tuple[str, str]] | None = None,
               title: str | None = None, dpi: int = 100) -> GraphPlot:
    """The block graph of ``lab``'s secondary — or of a fleecing lab's image fleecing,
    per scheme — as a figure (820 x 415 px; 435 px with a note naming a task at a node
    no longer in the graph).

    ``highlight``: ``{task: (node, label)}`` — a badge per task at its node
    (e.g. ``{"vm-read#1": ("secondary-disk", "reading")}``; node names are the
    lab's, plus ``"guest"`` and ``"nbd-server"``); :func:`parked_tasks` gives a
    plain one from ``Task.suspended``.  ``.update(lab, highlight=...)`` redraws
    the same figure.
    """
    return GraphPlot(lab, highlight=highlight, title=title, dpi=dpi)
