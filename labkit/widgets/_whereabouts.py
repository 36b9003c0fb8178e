"""Where each task is parked, and what each finished read returned, in words.

The race the lab teaches depends on one fact that the block map cannot show:
a VM read (``bdrv_co_preadv`` through the replication node, then
``qcow2_co_preadv`` on active and hidden) that found a cluster *unallocated*
in active and hidden goes on to the secondary disk, and is suspended there
with its I/O in flight.  Whatever the secondary disk holds when the read
resumes is what the VM gets.  :func:`whereabouts` says, for every task, where
it is parked in that sense::

    vm-read#1: passed active and hidden (unallocated), its read of the secondary disk is next

It is computed from the engine only: the kernel's ``Task.suspended`` (what a
task last yielded: ``kind``, ``node``, ``offset``, ``length``), ``Task.state``
and ``Task.why_blocked``, and the typed fields of the trace events (``kind``,
``node``, ``offset``, ``length``, ``task``) — never ``Event.detail``.  The
request stack of each task (``req-start`` without its ``req-end``) is folded
incrementally, so a click costs the events of that click, not the whole trace.

:func:`read_results` holds each finished VM read against the oracle (what the
VM must see, :meth:`labkit.lab.Lab.violations`).

This module is the one place the widgets learn "where is a task"; it reads
the engine and nothing else, so it can move into the engine unchanged.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from .. import sources
from ..kernel import BLOCKED, DONE, FAILED, Task
from ..lab import Lab
from ..plot._shape import copy_words, frozen_reads, shape

#: How the lesson names the nodes of the secondary's graph (and of image fleecing's).
NODE_WORDS = {"secondary-disk": "the secondary disk", "hidden": "hidden", "active": "active",
              "colo-top": "the replication node", "nbd-export": "the NBD export",
              "live-disk": "the live disk", "fleece": "the fleece overlay",
              "fl-cbw": "the copy-before-write filter", "fl-access": "snapshot-access"}

#: How the lesson names the layers of :func:`labkit.sources.provenance`.
LAYER_WORDS = {"secondary": "the secondary disk", "hidden": "hidden", "active": "active",
               "mixed": "several layers"}

#: Layers a read can fall through (qcow2 nodes with a backing child).
_QCOW2 = ("active", "hidden", "fleece")


def node_words(node: str) -> str:
    return NODE_WORDS.get(node, node)


def span(offset: int, length: int, block: int) -> str:
    """``block 5`` / ``blocks 0-15``: a byte range in the lab's blocks."""
    if offset < 0 or length <= 0:
        return ""
    first, last = offset // block, (offset + length - 1) // block
    return f"block {first}" if first == last else f"blocks {first}-{last}"


@dataclass
class _Track:
    """One task's open requests (node, offset, length) and its open CowRequest range."""

    stack: list[tuple[str, int, int]] = field(default_factory=list)
    cow: tuple[int, int] | None = None
    cows_done: int = 0
    first: tuple[int, int] | None = None  # the range of its first request (what it asked)
    runs: int = 0  # decisions this task has been given
    reached_at: int = -1  # ``runs`` when its first request started (step 1 of a write)
    landed: bool = False  # its first request ended (a write's data is on the disk)
    last: int = -1  # seq of its latest request, COW or end event (what it did last)
    served: tuple[str, ...] | None = None  # a finished read's layers (sources.provenance)


class _Tracker:
    """The trace folded into per-task request stacks, up to ``seen`` events."""

    def __init__(self) -> None:
        self.seen = 0
        self.tasks: dict[str, _Track] = {}

    def fold(self, lab: Lab) -> dict[str, _Track]:
        trace = lab.trace
        if len(trace) < self.seen:  # cannot happen for one lab; be safe
            self.seen, self.tasks = 0, {}
        for e in trace[self.seen:]:
            kind = e.kind
            if kind not in ("req-start", "req-end", "cow-begin", "cow-end", "run", "done",
                            "failed"):
                continue
            t = self.tasks.get(e.task)
            if t is None:
                t = self.tasks[e.task] = _Track()
            if kind == "run":
                t.runs += 1
                continue
            t.last = e.seq
            if kind in ("done", "failed"):
                continue
            if kind == "req-start":
                t.stack.append((e.node, e.offset, e.length))
                if t.first is None:
                    t.first = (e.offset, e.length)
                    t.reached_at = t.runs
            elif kind == "req-end":
                for i in range(len(t.stack) - 1, -1, -1):
                    if t.stack[i][0] == e.node:
                        del t.stack[i]
                        break
                if not t.stack:
                    t.landed = True
            elif kind == "cow-begin":
                t.cow = (e.offset, e.length)
            else:
                t.cow = None
                t.cows_done += 1
        self.seen = len(trace)
        return self.tasks


_TRACKERS: weakref.WeakKeyDictionary[Lab, _Tracker] = weakref.WeakKeyDictionary()


def _tracks(lab: Lab) -> dict[str, _Track]:
    tracker = _TRACKERS.get(lab)
    if tracker is None:
        tracker = _TRACKERS[lab] = _Tracker()
    return tracker.fold(lab)


def whereabouts(lab: Lab) -> dict[str, str]:
    """For every task of ``lab`` (in spawn order), where it is parked, in words.

    A read parked at the secondary disk after falling through active and
    hidden says so (the fact the conflicting read depends on); a primary
    write says which workflow step it is in; a blocked task says what it
    waits for; a finished read says what it returned.
    """
    tracks = _tracks(lab)
    results = {r.task: r for r in read_results(lab)}
    out: dict[str, str] = {}
    for task in lab.kernel.tasks.values():
        out[task.name] = _describe(lab, task, tracks.get(task.name), results.get(task.name))
    return out


def _describe(lab: Lab, task: Task, track: _Track | None, result: ReadResult | None) -> str:
    if task.state == DONE:
        return f"finished: {result.text()}" if result is not None else "finished"
    if task.state == FAILED:
        return f"failed: {task.exception}"
    stack = track.stack if track is not None else []
    where = task.suspended
    if where is None:
        return "not started yet (runnable: its first step is next)"
    s = shape(lab)
    if task.name.startswith(s.writer):
        return _primary_write(lab, task, track)
    holds = ""
    if track is not None and track.cow is not None:
        clusters = span(track.cow[0], track.cow[1], lab.backup_cluster).replace("block",
                                                                                "cluster")
        holds = f"holding a CowRequest on backup {clusters}, "
    if task.state == BLOCKED:
        inside = f" inside its request to {node_words(stack[-1][0])}" if stack else ""
        return f"{holds}waits for {task.why_blocked}{inside}"
    node = where.node
    if where.kind != "point" or not node:
        # woken from a wait (it has not run since), or a control command's own step
        return f"{holds}runnable: it goes on from where it stopped when it runs"
    rng = span(where.offset, where.length, lab.block)
    if task.name.startswith(s.reader):
        fell = [n for n, _, _ in stack if n in _QCOW2 and n != node]
        head = (f"passed {' and '.join(fell)} (unallocated), " if fell else "")
        frozen = [r for r in frozen_reads(lab) if r.owner == task.name]
        if frozen:  # fleecing 7.2: cbw_snapshot_read_lock found the clusters not copied
            head = (f"holding a frozen snapshot read on clusters {frozen[0].start}-"
                    f"{frozen[0].end - 1} (not copied yet), ")
        return f"{holds}{head}its read of {node_words(node)} ({rng}) is next"
    return f"{holds}parked at {node_words(node)} ({rng}): its I/O there is next"


def _primary_write(lab: Lab, task: Task, track: _Track | None) -> str:
    """The copying writer (COLO: an NBD write; fleecing: a guest write) in the terms of
    the backup workflow's steps 1-3."""
    where = task.suspended
    assert where is not None
    s = shape(lab)
    source, target = node_words(s.source), node_words(s.target)
    copy, req = copy_words(lab)
    cow = track.cow if track is not None else None
    clusters = span(cow[0], cow[1], lab.backup_cluster).replace("block", "cluster") \
        if cow is not None else ""
    if task.state == BLOCKED:
        if cow is not None:
            return (f"step 2: {copy} ({req} on backup {clusters}) waits for "
                    f"{task.why_blocked}; the new data is not written yet")
        if s.fleecing and track is not None and track.cows_done:
            # cbw_do_copy_before_write: after the copy, reqlist_wait_all(frozen_read_reqs)
            return (f"step 2 done (the old contents are in {target}); before its own write "
                    f"it waits for {task.why_blocked} (cbw_do_copy_before_write)")
        return (f"step 2: {copy} waits for {task.why_blocked} before it registers its "
                f"own {req}; the new data is not written yet")
    if where.kind != "point" or not where.node:
        return (f"step 2: woken — what it waited for has ended; {copy} goes on when "
                f"it runs")
    if cow is not None:
        rng = span(where.offset, where.length, lab.block)
        if where.node == s.target and where.op == "meta":
            # qcow2_alloc_cluster_link_l2: the data is written, the mapping is not yet
            return (f"step 2: {copy} holds a {req} on backup {clusters}; the old contents "
                    f"({rng}) are written into {target}'s clusters, and {target}'s L2 update "
                    f"is next (until it runs, a read of {target} does not find them)")
        if where.node == s.target:
            return (f"step 2: {copy} holds a {req} on backup {clusters}; its "
                    f"write of the old contents ({rng}) to {target} is next")
        # registered (the Step that did it was step 1's), nothing copied yet: the copy
        # itself, step 2, is what the next Step runs
        return (f"step 2 next: {copy} holds a {req} on backup {clusters}; its read of "
                f"the old contents ({rng}) from {node_words(where.node)} is next")
    if where.node == s.source:
        copied = track is not None and track.cows_done > 0
        before = f"the old contents are in {target}; " if copied else ""
        return (f"step 3 next: {before}its new data lands on {source} "
                f"({span(where.offset, where.length, lab.block)}) when it resumes")
    return f"parked at {node_words(where.node)}: its I/O there is next"


@dataclass(frozen=True)
class ReadResult:
    """A finished VM read: what it returned against what the VM must see (the oracle)."""

    task: str
    offset: int
    length: int
    block: int
    got: bytes
    expected: int | None  # the byte the VM should have seen where it differs (violation)
    bad: int | None  # the byte it got there instead
    message: str  # the oracle's message for a conflicting read, else ""
    served: tuple[str, ...] = ()  # the layers that served it (sources.provenance)
    fleecing: bool = False  # a backup client's read: checked against the backup's start

    @property
    def ok(self) -> bool:
        return not self.message

    def got_words(self) -> str:
        values = sorted(set(self.got))
        if len(values) == 1:
            return f"{values[0]:#04x}"
        if len(values) <= 4:
            return "a mix of " + ", ".join(f"{v:#04x}" for v in values)
        return f"{len(values)} different byte values"

    def text(self) -> str:
        where = span(self.offset, self.length, self.block)
        if self.served:
            layers = " and ".join(LAYER_WORDS.get(x, x) for x in self.served)
            where += f" (from {layers})"
        if self.fleecing:
            if self.ok:
                return (f"returned {self.got_words()} for {where} — the disk as it was when "
                        f"the backup started ✓")
            return (f"returned {self.bad:#04x} for {where} where the disk held "
                    f"{self.expected:#04x} when the backup started ✗ (written after it)")
        if self.ok:
            return f"returned {self.got_words()} for {where} — what the VM should see ✓"
        return (f"returned {self.bad:#04x} for {where} where the VM should see "
                f"{self.expected:#04x} ✗ (conflicting read)")


def read_results(lab: Lab) -> list[ReadResult]:
    """Every finished VM read of ``lab`` with its bytes, checked against the oracle (in a
    fleecing lab: every finished backup-client read, against the backup's start)."""
    s = shape(lab)
    bad = {v.task: v for v in lab.violations()
           if v.kind == ("fleecing-read" if s.fleecing else "conflicting-read")}
    tracks = _tracks(lab)
    out = []
    for task in lab.kernel.tasks.values():
        if not task.name.startswith(s.reader) or task.state != DONE:
            continue
        offset, length = _read_range(lab, task.name, tracks)
        data = task.result
        v = bad.get(task.name)
        track = tracks.get(task.name)
        if track is not None and track.served is None:  # once: a finished read is final
            # (a fleecing lab has no provenance: its trace shows where a read went)
            track.served = () if s.fleecing else tuple(
                dict.fromkeys(x for x in sources.provenance(lab, task.name) if x))
        served = track.served if track is not None and track.served else ()
        out.append(ReadResult(task.name, offset, length if length > 0 else len(data),
                              lab.block, data, v.expected if v else None,
                              v.got if v else None, v.message if v else "", served,
                              s.fleecing))
    return out


def _read_range(lab: Lab, name: str, tracks: dict[str, _Track]) -> tuple[int, int]:
    """The range a read asked for: its first request (to the replication node)."""
    track = tracks.get(name)
    return track.first if track is not None and track.first is not None else (-1, -1)


# --- the lesson's stage: Step 1, Step 2, Step 3 of the latest primary write, or a VM read ---


@dataclass(frozen=True)
class Stage:
    """Where the lesson is: ``name`` is "Step 1", "Step 2", "Step 3", "VM read" or "Ready"."""

    name: str
    title: str
    text: str
    task: str = ""


#: The three steps of the backup workflow as the notebooks' prose numbers them.
STEP_NAMES = {
    "Step 1": "Step 1: the NBD write reaches the secondary disk; the before-write notifier "
              "fires",
    "Step 2": "Step 2: backup_do_cow copies the old contents to the hidden disk",
    "Step 3": "Step 3: the write resumes and the new data lands on the secondary disk",
    "VM read": "VM read: what the secondary VM gets",
    "Ready": "Ready: replication is running; Step 1 is next",
}
#: The same three steps for image fleecing's guest write, and the client's read.
FLEECING_STEP_NAMES = {
    "Step 1": "Step 1: the guest write reaches the live disk; its copy-before-write starts",
    "Step 2": "Step 2: the old contents are copied into the fleece overlay",
    "Step 3": "Step 3: the write resumes and the new data lands on the live disk",
    "Client read": "Client read: what the backup client gets",
    "Ready": "Ready: the backup has started (fleece); Step 1 is next",
}


def stage(lab: Lab) -> Stage:
    """The lesson's stage after the latest decision, from the latest primary write or VM
    read (whichever acted last); in a fleecing lab, the latest guest write or backup-client
    read ("Client read").

    Step 1 is the decision in which the write reaches the secondary disk (the
    notifier fires, and ``backup_do_cow`` registers its CowRequest in the same
    decision: nothing yields in between); Step 2 lasts until its CowRequest ends
    (every decision of the copy); Step 3 is when the write's request *ends*, its
    new data on the disk — not when the data is merely in flight.
    """
    s = shape(lab)
    names = FLEECING_STEP_NAMES if s.fleecing else STEP_NAMES
    read_stage = "Client read" if s.fleecing else "VM read"
    source, target = node_words(s.source), node_words(s.target)
    copy, req = copy_words(lab)
    tracks = _tracks(lab)
    tasks = lab.kernel.tasks
    latest = None
    for name, t in tracks.items():
        if t.last >= 0 and name.startswith((s.writer, s.reader)) and (
                latest is None or t.last > tracks[latest].last):
            latest = name
    if latest is None:
        who = "guest write has reached the live disk" if s.fleecing else \
            "primary write has reached the secondary disk"
        return Stage("Ready", names["Ready"], f"no {who} yet: the first Step sends it")
    t = tracks[latest]
    task = tasks[latest]
    where = whereabouts_of(lab, task)
    if latest.startswith(s.reader):
        return Stage(read_stage, names[read_stage], f"{latest}: {where}", latest)
    if task.state == FAILED:
        return Stage("Step 3", names["Step 3"], f"{latest} failed: {task.exception}",
                     latest)
    if t.landed:
        return Stage("Step 3", names["Step 3"],
                     f"{latest}: the new data is on {source} — steps 1-3 done", latest)
    if t.cows_done and t.cow is None:
        ended = f"ended its {req}"
        return Stage("Step 2", names["Step 2"],
                     f"{latest}: {copy} {ended} (the old contents are in {target}); the new "
                     f"data lands when the write resumes (Step 3)", latest)
    if t.runs == t.reached_at:  # the decision that reached the disk is its latest
        cow = ""
        if t.cow is not None:
            clusters = span(t.cow[0], t.cow[1], lab.backup_cluster).replace("block", "cluster")
            cow = f", which registered a {req} on backup {clusters}"
        if s.fleecing:
            return Stage("Step 1", names["Step 1"],
                         f"{latest} reached the live disk's copy-before-write before its "
                         f"data{cow}. Next: the copy (Step 2)", latest)
        return Stage("Step 1", names["Step 1"],
                     f"{latest} reached the secondary disk before its data: the before-write "
                     f"notifier called backup_do_cow{cow}. Next: the copy (Step 2)", latest)
    return Stage("Step 2", names["Step 2"], f"{latest}: {where}", latest)


def whereabouts_of(lab: Lab, task: Task) -> str:
    """:func:`whereabouts` for one task."""
    tracks = _tracks(lab)
    result = None
    if task.name.startswith(shape(lab).reader) and task.state == DONE:
        result = next((r for r in read_results(lab) if r.task == task.name), None)
    return _describe(lab, task, tracks.get(task.name), result)


# --- the same, short: a badge on the block graph ------------------------------------------


def parked_at(lab: Lab) -> dict[str, tuple[str, str]]:
    """Each task's node and a short label (≤ 22 characters) for a badge on the graph.

    The node is the one it is parked at (``Task.suspended.node``; for a task
    blocked on a queue, the node of its innermost open request); ``""`` for a
    task at no node: not started yet, or a finished VM read (labelled with
    what it got).  Other finished tasks, and tasks that never touch a node,
    are left out.
    """
    tracks = _tracks(lab)
    results = {r.task: r for r in read_results(lab)}
    s = shape(lab)
    out: dict[str, tuple[str, str]] = {}
    for task in lab.kernel.tasks.values():
        name = task.name
        track = tracks.get(name)
        stack = track.stack if track is not None else []
        where = task.suspended
        if task.state == DONE:
            r = results.get(name)
            if r is not None:
                out[name] = ("", f"got {r.got_words()} {'✓' if r.ok else '✗'}")
            continue
        if task.state == FAILED:
            continue
        if where is None:
            if name.startswith(("vm-read#", "vm-write#", "nbd-write#", "client-read#")):
                out[name] = ("", "not started")
            continue
        write = name.startswith(s.writer)
        cow = track is not None and track.cow is not None
        if task.state == BLOCKED or where.kind != "point" or not where.node:
            node = stack[-1][0] if stack else ""
            if not node:
                continue
            word = "blocked" if task.state == BLOCKED else "woken"
            out[name] = (node, f"{word} (step 2)" if write else word)
            continue
        node = where.node
        if write:
            if cow:
                label = "COW writes old data" if node == s.target else "COW reads old data"
            else:
                label = "data lands next"
        elif name.startswith(s.reader):
            fell = s.target in [n for n, _, _ in stack] and node != s.target
            frozen = any(r.owner == name for r in frozen_reads(lab))
            label = (f"found {s.target} empty" if fell else
                     "frozen read next" if frozen else "reads here next")
        else:
            label = "I/O here next"
        out[name] = (node, label)
    return out
