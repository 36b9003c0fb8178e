"""Pause points both backends understand, and forced orders played on the simulator.

A *pause point* says "hold this request when it reaches this place", in the
words a trainee reads (``vm-read#1 held at secondary-disk``).  The places, per
kind of request, and what each is on the two backends:

==========  ====================  ================================  ==============================
request     place                 simulator (where the task parks)  QEMU 7.2 (blkdebug event, node)
==========  ====================  ================================  ==============================
vm-read     ``secondary-disk``    a point on ``secondary-disk``     ``read_aio`` on ``dbg-sec``
vm-read     ``hidden``            a point on ``hidden``             ``read_aio`` on ``dbg-hid``
vm-read     ``active``            the blkdebug point on ``active``  ``read_backing_aio`` on
                                                                    ``dbg-act``
nbd-write   ``copy-read``         a point on ``secondary-disk``     ``read_aio`` on ``dbg-sec``
                                  inside its copy (``cow-copy``)
nbd-write   ``copy-write``        a data write point on ``hidden``  ``write_aio`` on ``dbg-hid``
                                  inside its copy
nbd-write   ``data-write``        a point on ``secondary-disk``     ``write_aio`` on ``dbg-sec``
                                  outside any copy
vm-write    ``secondary-disk``    a point on ``secondary-disk``     ``read_aio`` on ``dbg-sec``
                                  (qcow2's fill-in read)
vm-write    ``active``            the blkdebug point on ``active``  ``cow_read`` on ``dbg-act``
==========  ====================  ================================  ==============================

The two ``active`` places hold a request in active, *before it reaches
hidden*, after active has looked the cluster up (and, for a write, registered
its allocation).  QEMU yields there only because blkdebug's breakpoint
suspends it (``BLKDBG_EVENT(bs->file, ...)`` in ``qcow2_co_preadv_task`` /
``do_perform_cow_read``); the simulator arms the same breakpoint on ``active``
(:meth:`labkit.block.BlockNode.blkdbg_event`), a scheduling point that exists
only while armed.

A :class:`RaceOrder` is one order QEMU can force on a ``par`` block: either
the requests one after the other (``vm-read#1, then nbd-write#1``), or one
request held at a pause point while the others are sent one by one (each runs
until it completes or is blocked), then released.  Breakpoints fire once per
event and node, for the first request to reach them, so the held request is
sent alone, its breakpoint armed just before.

:func:`run_on_simulator` plays a scenario with one order forced on its
``par`` block through the engine's public interface only: a
:class:`labkit.kernel.Chooser` policy that runs only the allowed tasks,
:attr:`labkit.kernel.Task.suspended` for where a task is parked, and the trace
events' ``kind`` and ``node`` (never their ``detail``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import ConfigError, ScenarioError
from labkit.interpret import vread_failure
from labkit.kernel import Chooser, Task
from labkit.lab import Lab, build_secondary
from labkit.layers import Layer
from labkit.scenario import Command, Par, Scenario

#: The simulator's task kind per scenario command (as labkit.qemu's run uses).
REQUEST_KINDS = {"pwrite": "nbd-write", "vwrite": "vm-write", "vread": "vm-read"}


@dataclass(frozen=True)
class Place:
    """Where a request of one kind can be held: simulator test and QEMU breakpoint."""

    op: str  # the scenario command: pwrite, vwrite, vread
    name: str  # the place's short name, as --order spells it
    words: str  # as a trainee reads it, after "held "
    drive: str  # the read-only BlockBackend over the blkdebug node (labkit.qemu._session)
    event: str  # the blkdebug event
    before_first_step: bool = False  # simulator: held at the blkdebug breakpoint in active


PLACES: tuple[Place, ...] = (
    Place("vread", "secondary-disk", "at secondary-disk", "ctl-sec", "read_aio"),
    Place("vread", "hidden", "at hidden", "ctl-hid", "read_aio"),
    Place("vread", "active", "in active, before hidden", "ctl-act", "read_backing_aio",
          before_first_step=True),
    Place("pwrite", "copy-read", "at the copy's read of secondary-disk", "ctl-sec", "read_aio"),
    Place("pwrite", "copy-write", "at the copy's write into hidden", "ctl-hid", "write_aio"),
    Place("pwrite", "data-write", "at its own write to secondary-disk", "ctl-sec", "write_aio"),
    Place("vwrite", "secondary-disk", "at its fill-in read of secondary-disk", "ctl-sec",
          "read_aio"),
    Place("vwrite", "active", "at its fill-in read, in active before hidden", "ctl-act",
          "cow_read", before_first_step=True),
)


@dataclass(frozen=True)
class Request:
    """One command of the ``par`` block, with the simulator's task name for it."""

    name: str  # nbd-write#1, vm-read#2...
    command: Command


@dataclass(frozen=True)
class RaceOrder:
    """One forceable order: ``held`` at ``place`` while ``others`` are sent, or a sequence."""

    sequence: tuple[str, ...]  # request names in the order they are sent
    held: str | None = None  # the held request (the first of sequence) or None
    place: Place | None = None

    def words(self) -> str:
        """The order in words (what ``--order`` accepts)."""
        if self.held is None or self.place is None:
            return ", then ".join(self.sequence)
        others = ", then ".join(self.sequence[1:])
        return f"{self.held} held {self.place.words}, then {others}, then {self.held} released"

    def __str__(self) -> str:
        return self.words()


@dataclass
class SideResult:
    """What one backend did in one order."""

    blocked: list[str] = field(default_factory=list)  # requests blocked while one was held
    reads: dict[str, bytes | None] = field(default_factory=dict)  # par reads (None: failed)
    errors: dict[str, str] = field(default_factory=dict)  # par requests that failed
    dumps: list[tuple[str, dict[str, Layer | None]]] = field(default_factory=list)
    expect_lines: list[int] = field(default_factory=list)  # lines whose checks failed
    not_reached: str | None = None  # the pause point was never reached
    #: per blocked request, the node it waits at: on QEMU the last node its trace
    #: events (bdrv_co_preadv_part / bdrv_co_pwritev_part) entered before it stopped,
    #: in the simulator the node of its last tracked request (``req-start``).
    waits_at: dict[str, str] = field(default_factory=dict)
    witness: dict[str, str] = field(default_factory=dict)  # the same, in words
    #: the requests still in flight when the held one was released (it included): on
    #: QEMU they then run together, so two of them writing the same bytes may land in
    #: either order (QEMU orders only serialising requests)
    racing: list[str] = field(default_factory=list)
    version: str = ""  # QEMU's version (QEMU side only)
    #: wall-clock seconds this side took (for benchmarks; never in to_json(), whose
    #: output is compared byte for byte)
    seconds: float = 0.0

    def to_json(self, original: bytes | None = None) -> dict[str, Any]:
        return {
            "blocked": list(self.blocked),
            "reads": {n: None if b is None else {"sha256": hashlib.sha256(b).hexdigest()[:16],
                                                 "bytes": len(b)}
                      for n, b in self.reads.items()},
            "errors": dict(self.errors),
            "layers": [{"title": t, "layers": {n: None if lay is None else
                                               hashlib.sha256(lay.data + lay.alloc.tobytes())
                                               .hexdigest()[:16] for n, lay in layers.items()}}
                       for t, layers in self.dumps],
            "expect_failed_lines": list(self.expect_lines),
            "not_reached": self.not_reached,
            "waits_at": dict(self.waits_at),
            "witness": dict(self.witness),
            "racing": list(self.racing),
        }


# --- the scenario's shape ----------------------------------------------------------

@dataclass(frozen=True)
class RaceScenario:
    """A scenario split around its ``par`` block: prefix, the requests, suffix."""

    scenario: Scenario
    prefix: Scenario
    requests: tuple[Request, ...]
    suffix: Scenario
    par_line: int


def split(scenario: Scenario) -> RaceScenario:
    """Split at the one ``par`` block; refuse what QEMU cannot force."""
    pars = [i for i, s in enumerate(scenario.steps) if isinstance(s, Par)]
    if len(pars) != 1:
        raise ScenarioError(scenario.steps[pars[1]].line if len(pars) > 1 else 0, "par { ... }",
                            "exactly one par block for a race comparison with QEMU "
                            f"(this scenario has {len(pars)})")
    i = pars[0]
    par = scenario.steps[i]
    assert isinstance(par, Par)
    counters: dict[str, int] = {}
    for c in scenario.steps[:i]:
        assert isinstance(c, Command)  # the only par block is at i
        if c.op in REQUEST_KINDS:
            kind = REQUEST_KINDS[c.op]
            counters[kind] = counters.get(kind, 0) + 1
    requests = []
    for c in par.commands:
        if c.op not in REQUEST_KINDS:
            raise ScenarioError(c.line, c.text, "only pwrite, vwrite and vread inside par for "
                                                "a race comparison with QEMU")
        kind = REQUEST_KINDS[c.op]
        counters[kind] = counters.get(kind, 0) + 1
        requests.append(Request(f"{kind}#{counters[kind]}", c))
    if len(requests) < 2:
        raise ScenarioError(par.line, "par { ... }", "at least two requests in the par block")
    return RaceScenario(scenario, Scenario(scenario.steps[:i], scenario.text), tuple(requests),
                        Scenario(scenario.steps[i + 1:], scenario.text), par.line)


# --- the simulator side -------------------------------------------------------------

class _Driver:
    """Runs only the allowed tasks (the Chooser's callback), FIFO among them."""

    def __init__(self) -> None:
        self.allowed: set[str] | None = None  # None: any task

    def choose(self, runnable: Sequence[Task]) -> Task:
        for task in runnable:
            if self.allowed is None or task.name in self.allowed:
                return task
        raise AssertionError("stepped with no allowed task runnable")  # never: see _run_allowed

    def run_allowed(self, lab: Lab, allowed: set[str],
                    stop: Callable[[], bool] = lambda: False) -> None:
        self.allowed = allowed
        try:
            while not stop() and any(t.name in allowed for t in lab.runnable()):
                lab.step()
        finally:
            self.allowed = None


class _Where:
    """Where a primary write is in its copy, from its trace events' ``kind`` and ``node``."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.seen = 0
        self.copying = False
        self.hidden_in_copy = False

    def update(self) -> None:
        trace = self.lab.trace
        for e in trace[self.seen:]:
            if e.task != self.name:
                continue
            if e.kind == "cow-copy":
                self.copying, self.hidden_in_copy = True, False
            elif e.kind == "cow-end":
                self.copying = False
            elif e.kind == "point" and e.node == "hidden" and self.copying:
                self.hidden_in_copy = True
        self.seen = len(trace)

    def at(self, task: Task, place: Place) -> bool:
        s = task.suspended
        if s is None or s.kind != "point":
            return False
        # blkdebug's read_aio / write_aio fire on data I/O of the image file only: a copy
        # that writes zeroes (block-copy's COPY_WRITE_ZEROES: a zero write to hidden is
        # qcow2 metadata, io-zero here) or a metadata step has no breakpoint on QEMU.
        if place.name == "copy-read":
            return (s.node == "secondary-disk" and s.op == "io-read" and self.copying
                    and not self.hidden_in_copy)
        if place.name == "copy-write":
            return s.node == "hidden" and s.op == "io-write" and self.copying
        if place.name == "data-write":
            return s.node == "secondary-disk" and s.op == "io-write" and not self.copying
        # a read held at a node (read_aio), or in active at blkdebug's own breakpoint
        # (BlockNode.blkdbg_event: read_backing_aio / cow_read)
        return s.node == place.name and s.op in ("io-read", "blkdebug")


def _spawn(lab: Lab, c: Command) -> Task:
    if c.op == "pwrite":
        assert c.byte is not None
        return lab.primary_write(c.offset, c.length, c.byte)
    if c.op == "vwrite":
        assert c.byte is not None
        return lab.vm_write(c.offset, c.length, c.byte)
    return lab.vm_read(c.offset, c.length)


def _reaches_active_place(lab: Lab, name: str, op: str) -> bool:
    """Did the finished request ``name`` pass the 'active, before hidden' place?"""
    for e in lab.trace:
        if e.task != name:
            continue
        if op == "vread" and e.kind == "req-start" and e.node == "hidden":
            return True  # active sent it to its backing
        if op == "vwrite" and e.kind == "qcow2-cow" and e.node == "active":
            return True  # qcow2 fills part of an active cluster from the chain
    return False


class SimulatorHold:
    """The simulator in the middle of a forced order: the held request parked, the
    others sent (each ran until it completed or blocked).  :attr:`lab` is the
    :class:`labkit.Lab` in that state — ``lab.kernel.blocked()`` and each
    task's ``why_blocked`` say who waits for whom — and :attr:`tasks` maps each
    request name to its task.  :meth:`release` lets everything run to the end
    and plays the rest of the scenario.
    """

    def __init__(self, rs: RaceScenario, order: RaceOrder, config: dict[str, Any],
                 design: str = "4.0") -> None:
        self.rs = rs
        self.order = order
        self.driver = _Driver()
        self.lab = build_secondary(**config, design=design, era="7.2",
                                   policy=Chooser(self.driver.choose))
        self.lab.play(rs.prefix)
        self.result = SideResult()
        # The lab names tasks in the order they are spawned, so a request's task
        # may be named otherwise than the request (vm-read#2 sent first is the
        # lab's vm-read#1): request names map to tasks here, never through names.
        self.tasks: dict[str, Task] = {}
        self.released = False
        lab, driver, tasks, out = self.lab, self.driver, self.tasks, self.result
        by_name = {r.name: r for r in rs.requests}
        if order.held is None:
            for name in order.sequence:
                tasks[name] = _spawn(lab, by_name[name].command)
                driver.run_allowed(lab, {tasks[name].name})
            return
        assert order.place is not None
        held = order.held
        place = order.place
        tasks[held] = _spawn(lab, by_name[held].command)
        parked: Callable[[], bool]
        if place.before_first_step:
            # the blkdebug breakpoint in active (BLKDBG_EVENT on active's file), armed as
            # QEMU's is: the request has looked active up and stops before hidden
            lab.graph.nodes[place.name].blkdebug_breaks.add(place.event)

            def parked() -> bool:
                s = tasks[held].suspended
                return s is not None and s.kind == "point" and s.op == "blkdebug"
        else:
            where = _Where(lab, tasks[held].name)

            def parked() -> bool:
                where.update()
                return where.at(tasks[held], place)

        driver.run_allowed(lab, {tasks[held].name}, parked)
        if not parked():
            out.not_reached = f"{held} never reached the place {place.words}"
        if out.not_reached is None:
            for name in order.sequence[1:]:
                tasks[name] = _spawn(lab, by_name[name].command)
                driver.run_allowed(lab, {t.name for n, t in tasks.items() if n != held})
            out.blocked = [n for n in order.sequence[1:] if not tasks[n].done]
            out.racing = [n for n in order.sequence if not tasks[n].done]
            for n in out.blocked:
                last = [e for e in lab.trace
                        if e.task == tasks[n].name and e.kind == "req-start"][-1:]
                if last:
                    e = last[0]
                    out.waits_at[n] = e.node
                    out.witness[n] = f"{e.node} [{e.offset:#x}+{e.length:#x}]"

    def release(self) -> SideResult:
        """Run everything to its end, play the rest of the scenario, dump the layers."""
        if self.released:
            return self.result
        self.released = True
        lab, out = self.lab, self.result
        by_name = {r.name: r for r in self.rs.requests}
        for name in self.order.sequence:
            if name not in self.tasks:  # the held request never reached its place
                self.tasks[name] = _spawn(lab, by_name[name].command)
        lab.run()  # everything runs to its end (Deadlock if something is stuck)
        for r in self.rs.requests:
            _outcome(out, r, self.tasks[r.name], lab)
        lab.play(self.rs.suffix)
        lab.dump("final layers")
        out.dumps = list(lab.dumps)
        out.expect_lines += sorted({int(f.split(":", 1)[0].split()[1])
                                    for f in lab.expectation_failures})
        return out


def run_on_simulator(rs: RaceScenario, order: RaceOrder, config: dict[str, Any],
                     design: str = "4.0") -> SideResult:
    """Play ``rs`` on the simulator (era 7.2) with ``order`` forced on its par block."""
    return SimulatorHold(rs, order, config, design).release()


def _outcome(out: SideResult, r: Request, task: Task, lab: Lab) -> None:
    if task.exception is not None:
        out.errors[r.name] = str(task.exception)
        if r.command.op == "vread":
            out.reads[r.name] = None
        return
    if r.command.op == "vread":
        data = task.result
        out.reads[r.name] = data
        if vread_failure(r.command, data, lab.original) is not None:
            out.expect_lines.append(r.command.line)


def reachable(rs: RaceScenario, config: dict[str, Any], design: str = "4.0") -> list[RaceOrder]:
    """Every order QEMU can force on ``rs``'s par block, found with the simulator.

    The sequences: every permutation of the requests (two or three of them;
    with more, the par block's order and its reverse).  The holds: every
    request at every place of its kind that it reaches when sent alone after
    the prefix (the simulator says which; the same place is what QEMU's
    breakpoint catches, since the held request is sent alone), then the others
    in the par block's order.
    """
    names = [r.name for r in rs.requests]
    if len(names) <= 3:
        seqs = list(itertools.permutations(names))
    else:
        seqs = [tuple(names), tuple(reversed(names))]
    orders = [RaceOrder(tuple(s)) for s in seqs]
    for r in rs.requests:
        others = tuple(n for n in names if n != r.name)
        solo = None
        solo_name = ""
        for place in PLACES:
            if place.op != r.command.op:
                continue
            if place.name == "data-write" and r.command.byte == 0:
                continue  # sent as NBD_CMD_WRITE_ZEROES on QEMU: no write_aio fires
            order = RaceOrder((r.name, *others), r.name, place)
            if place.before_first_step:
                if solo is None:
                    solo = build_secondary(**config, design=design, era="7.2")
                    solo.play(rs.prefix)
                    solo_name = _spawn(solo, r.command).name
                    solo.run()
                if _reaches_active_place(solo, solo_name, r.command.op):
                    orders.append(order)
                continue
            probe = run_on_simulator(rs, order, config, design)
            if probe.not_reached is None:
                orders.append(order)
    return orders


def find_order(orders: Sequence[RaceOrder], words: str) -> RaceOrder:
    """The order whose words are ``words`` (case and spacing aside); ConfigError if none."""
    def norm(s: str) -> str:
        return " ".join(s.lower().replace(";", ",").split())

    for o in orders:
        if norm(o.words()) == norm(words):
            return o
    listed = "; ".join(f"'{o.words()}'" for o in orders)
    raise ConfigError(f"order {words!r} is not one QEMU can force on this scenario; "
                      f"the forceable orders are: {listed}")


__all__ = ["PLACES", "REQUEST_KINDS", "Place", "RaceOrder", "RaceScenario", "Request",
           "SideResult", "SimulatorHold", "find_order", "reachable", "run_on_simulator", "split"]
