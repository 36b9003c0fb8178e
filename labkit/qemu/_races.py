"""A ``par`` block forced through every order QEMU can force, on QEMU 7.2 and the simulator.

:func:`compare_races` splits a scenario at its ``par`` block
(:func:`labkit.qemu._pause.split`), lists the forceable orders
(:func:`~labkit.qemu._pause.reachable`) and plays each on a fresh QEMU 7.2
with a blkdebug node under each image file (block/blkdebug.c: ``break``,
``resume`` through ``qemu-io``) and on the simulator under era 7.2, design "4.0" (QEMU 7.2's read
protection).  Per order it compares which requests were blocked while one
was held, what every read of the ``par`` block returned, the scenario's dumps
and the final layers, and the failed checks.

On QEMU an order is forced like this:

1. the prefix (the commands before ``par``) is played as by
   :func:`labkit.qemu.run_scenario`;
2. a held request: ``qemu-io ctl-X "break EVENT TAG"`` on the named
   read-only BlockBackend over the blkdebug node (never HMP ``qemu-io`` on a
   node name: it drains the graph and hangs the monitor while a request is
   suspended), then the request is sent on its own NBD connection and thread,
   and QEMU's log is polled for ``blkdebug: Suspended request 'TAG'``;
3. each other request is sent on its own connection and waited for
   :data:`BLOCK_WAIT` seconds; one still pending then, and still pending
   after a probe read of the secondary disk (which never waits) has
   completed and 20 times that probe's latency more, is *blocked*;
4. ``qemu-io ctl-X "resume TAG"``, every request is waited for, the suffix is
   played and the layers dumped.

Robustness: whatever happens, a suspended request is resumed before QEMU is
stopped (``quit`` hangs while one is suspended); if that fails QEMU is killed
by its pid (:meth:`QemuSecondary.kill`); the session's directory goes with it
and a signal kills everything (:mod:`labkit.qemu._cleanup`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit.block.copy_before_write import CBW_NODE_NAME
from labkit.interpret import vread_failure
from labkit.layers import SECTOR, Layer
from labkit.qemu._conformance import Conformance, conformance
from labkit.qemu._diff import Difference, compare_dumps
from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._nbd import NbdClient, NbdError
from labkit.qemu._pause import (
    RaceOrder,
    RaceScenario,
    Request,
    SideResult,
    SimulatorHold,
    find_order,
    reachable,
    run_on_simulator,
    split,
)
from labkit.qemu._probe import qemu_available
from labkit.qemu._run import QemuRun, configured_scenario, qemu_lab_config
from labkit.qemu._secondary import BLKDEBUG_DRIVES, QemuSecondary
from labkit.scenario import Command, Scenario

#: How long a request may stay pending before it counts as blocked (seconds).  An
#: unblocked request completes in 1-10 ms on a 2-core machine (the reference).
BLOCK_WAIT = 0.25
#: How long a breakpoint may take to fire after its request is sent (seconds).
HOLD_WAIT = 3.0

BLKDEBUG_NOTE = ("QEMU runs with a blkdebug node under each image file (to hold requests); "
                 "through blkdebug, copy-before-write cannot offload its copy "
                 "(copy_file_range), so it reads the old data before its serialising write "
                 "to hidden instead of after its wait, as without blkdebug")


class InflightRequest:
    """One request sent to QEMU on its own NBD connection and thread."""

    def __init__(self, q: QemuSecondary, r: Request) -> None:
        self.request = r
        self.result: bytes | None = None
        self.error: str | None = None
        self.done = threading.Event()
        c = r.command
        export = "secondary" if c.op == "pwrite" else "top"
        self.client = NbdClient(q.nbd_socket, export, timeout=max(q.timeout, HOLD_WAIT * 4))
        self.thread = threading.Thread(target=self._run, name=f"labkit-{r.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        c = self.request.command
        try:
            if c.op == "vread":
                self.result = self.client.pread(c.offset, c.length, df=True)
            elif c.op == "pwrite" and c.byte == 0:
                self.client.write_zeroes(c.offset, c.length)
            else:
                assert c.byte is not None
                self.client.pwrite(bytes([c.byte]) * c.length, c.offset)
        except (NbdError, OSError) as exc:
            self.error = str(exc)
        finally:
            self.done.set()

    def wait(self, seconds: float) -> bool:
        return self.done.wait(seconds)

    def close(self) -> None:
        try:
            self.client.close()
        except OSError:
            pass


_TRACE_EVENTS = ("bdrv_co_preadv_part", "bdrv_co_pwritev_part", "block_copy_skip_range",
                 "block_copy_process")
_TRACE_LINE = re.compile(r"^(bdrv_co_preadv_part|bdrv_co_pwritev_part) bs (0x[0-9a-f]+) "
                         r"offset (\d+) (?:bytes|bytes_) ?(\d+) flags (0x[0-9a-f]+)"
                         r"|^(block_copy_skip_range|block_copy_process) bcs (0x[0-9a-f]+) "
                         r"start (\d+)(?: bytes (\d+))?", re.M)
#: The name the comparison gives QEMU 7.2's copy-before-write filter node (QEMU
#: names it ``#blockNNN``: replication's ``backup_job_create`` passes no
#: ``filter_node_name``); the simulator's filter node is reported by its driver too.


@dataclass(frozen=True)
class WaitPlace:
    """Where a blocked request waits: the node its last tracked request entered."""

    node: str
    words: str


class _Tracer:
    """QEMU's block-layer trace events, with the BDS pointers mapped to node names.

    The witness of "blocked": the request entered a node's block layer
    (``bdrv_co_preadv_part`` / ``bdrv_co_pwritev_part`` in ``block/io.c``) and
    got no further.  The pointers are mapped by one calibration read per node
    (its first trace line is the node's own): an HMP ``qemu-io`` read of
    ``secondary-disk``, ``hidden``, ``active``, ``colo-top`` and, after
    ``start``, of the copy-before-write filter that ``bdrv_cbw_append`` put
    above the secondary disk.

    Inside the filter, ``block/block-copy.c`` says how far a primary write got:
    ``block_copy_process`` (``block_copy_dirty_clusters`` made a task of its
    own: it copies) or ``block_copy_skip_range`` with nothing after it (no
    dirty cluster left for it: ``block_copy_common`` then waits in
    ``reqlist_wait_one`` for another request's in-flight copy task).
    """

    def __init__(self, q: QemuSecondary) -> None:
        self.q = q
        self.names: dict[str, str] = {}
        for event in _TRACE_EVENTS:
            q.qmp("trace-event-set-state", {"name": event, "enable": True})
        # A read on each node itself (HMP qemu-io makes a BlockBackend on it that takes
        # no permission): unlike a dump or an NBD read, which skip holes (block status,
        # NBD_REPLY_TYPE_OFFSET_HOLE), it reads even where nothing is allocated.
        # Nothing is suspended yet, so its drain returns.  The filter has no name of
        # its own (#blockNNN): found by its driver.
        nodes = {"secondary-disk": "secondary-disk", "hidden": "hidden", "active": "active",
                 "colo-top": "colo-top"}
        for n in q.qmp("query-named-block-nodes", {"flat": True}):
            if n.get("drv") == CBW_NODE_NAME:
                nodes[CBW_NODE_NAME] = n["node-name"]
        for name, node in nodes.items():
            self._calibrate(name, functools.partial(q.hmp, f'qemu-io {node} "read 0 512"'))

    def _calibrate(self, name: str, read: Callable[[], object]) -> None:
        mark = self.mark()
        try:
            read()
        except (QemuError, NbdError, OSError):
            pass  # e.g. the VM's export answers EIO before start: the trace line came first
        m = _TRACE_LINE.search(self.q.log_text(), mark)
        if m is not None and m.group(1) == "bdrv_co_preadv_part":
            self.names.setdefault(m.group(2), name)

    def mark(self) -> int:
        return len(self.q.log_text())

    def last_node(self, start: int, end: int) -> WaitPlace | None:
        """Where the request sent between two marks stopped, or None if no line says."""
        found: WaitPlace | None = None
        for m in _TRACE_LINE.finditer(self.q.log_text()[:end], start):
            if m.group(6) is not None:  # block-copy, inside the filter
                if found is None or found.node != CBW_NODE_NAME:
                    continue
                off = int(m.group(8))
                if m.group(6) == "block_copy_skip_range":
                    found = WaitPlace(CBW_NODE_NAME,
                                      f"{CBW_NODE_NAME}: block_copy has no dirty cluster of "
                                      f"its own at [{off:#x}+{int(m.group(9)):#x}]; waits "
                                      f"for an in-flight copy task (reqlist_wait_one)")
                else:
                    found = WaitPlace(CBW_NODE_NAME,
                                      f"{CBW_NODE_NAME}: block_copy copies from {off:#x}")
                continue
            node = self.names.get(m.group(2))
            if node is None:
                continue
            op = "read" if m.group(1) == "bdrv_co_preadv_part" else "write"
            flags = int(m.group(5), 16)
            if op == "write" and flags & 0x2:  # BDRV_REQ_ZERO_WRITE
                op = "write-zeroes"
            serialising = " serialising" if flags & 0x80 else ""  # BDRV_REQ_SERIALISING
            found = WaitPlace(node, f"{node} [{int(m.group(3)):#x}+{int(m.group(4)):#x}] "
                                    f"{op}{serialising}")
        return found


class _Breakpoints:
    """Armed and suspended blkdebug breakpoints, so that each is resumed before QEMU stops."""

    def __init__(self, q: QemuSecondary) -> None:
        self.q = q
        self.armed: dict[str, str] = {}  # tag -> drive
        self.seq = 0

    def arm(self, drive: str, event: str) -> str:
        self.seq += 1
        tag = f"lk{self.seq}"
        self.q.hmp(f'qemu-io {drive} "break {event} {tag}"')
        self.armed[tag] = drive
        return tag

    def suspended(self, tag: str) -> bool:
        return f"blkdebug: Suspended request '{tag}'" in self.q.log_tail(100_000)

    def resume(self, tag: str) -> None:
        drive = self.armed.pop(tag)
        if self.suspended(tag):
            self.q.hmp(f'qemu-io {drive} "resume {tag}"')
        else:
            self.q.hmp(f'qemu-io {drive} "remove_break {tag}"')

    def release_all(self) -> None:
        for tag in list(self.armed):
            self.resume(tag)


def _dump_or_none(q: QemuSecondary, title: str) -> tuple[str, dict[str, Layer | None]]:
    return title, q.dump()


def run_on_qemu(rs: RaceScenario, order: RaceOrder, config: dict[str, Any], *,
                timeout: float = 10.0, qemu: str = "qemu-system-x86_64") -> SideResult:
    """Play ``rs`` on a fresh QEMU 7.2 (with blkdebug) with ``order`` forced on its par block."""
    out = SideResult()
    by_name = {r.name: r for r in rs.requests}
    q = QemuSecondary(qemu_lab_config(config), timeout=timeout, qemu=qemu, blkdebug=True)
    inflight: dict[str, InflightRequest] = {}
    bps = _Breakpoints(q)
    clean = False
    out.version = q.version
    try:
        run = QemuRun(rs.prefix, config)
        run.play(q)
        if order.held is None:
            _play_sequence(q, order, by_name, inflight, timeout)
        else:
            _play_held(q, order, by_name, inflight, bps, out, timeout)
        _collect(rs, run, inflight, out)
        if any(isinstance(c, Command) and c.op == "failover" for c in rs.suffix.steps):
            _drop_breakpoint_drives(q, bps)
        run.scenario = rs.suffix
        run.play(q)
        out.dumps = [*run.dumps, _dump_or_none(q, "final layers")]
        out.expect_lines += sorted({int(f.split(":", 1)[0].split()[1])
                                    for f in run.expectation_failures})
        clean = True
    finally:
        _shut_down(q, bps, inflight, clean)
    return out


def _drop_breakpoint_drives(q: QemuSecondary, bps: _Breakpoints) -> None:
    """Delete the read-only ``ctl-*`` BlockBackends before a failover.

    Observed on QEMU 7.2: with them attached the failover commit does not
    start (``query-xen-replication-status`` says "I/O error occurred",
    ``colo-top``'s ``file`` stays ``active``, the secondary disk keeps the
    primary's writes); with them deleted it completes.  The conformance check
    found it (every order of ``failover`` reached an outcome the explorer says
    is impossible).  Every breakpoint is resumed by then, so nothing needs
    them any more.
    """
    bps.release_all()
    for drive in BLKDEBUG_DRIVES.values():
        q.hmp(f"drive_del {drive}")


def _play_sequence(q: QemuSecondary, order: RaceOrder, by_name: dict[str, Request],
                   inflight: dict[str, InflightRequest], timeout: float) -> None:
    """Nothing held: each request of the par block in turn, to its completion."""
    for name in order.sequence:
        f = inflight[name] = InflightRequest(q, by_name[name])
        if not f.wait(timeout):
            raise QemuError(f"{name} did not complete within {timeout} s "
                            f"with nothing held", command="race")


def _play_held(q: QemuSecondary, order: RaceOrder, by_name: dict[str, Request],
               inflight: dict[str, InflightRequest], bps: _Breakpoints, out: SideResult,
               timeout: float) -> None:
    """Hold the first request at a blkdebug breakpoint, send the others (noting which
    block and where), release, and wait for them all."""
    assert order.place is not None and order.held is not None
    held = order.held
    tracer = _Tracer(q)
    tag = bps.arm(order.place.drive, order.place.event)
    f = inflight[held] = InflightRequest(q, by_name[held])
    deadline = time.monotonic() + HOLD_WAIT
    while not bps.suspended(tag):
        if f.done.is_set() or time.monotonic() > deadline:
            out.not_reached = (f"{held} never reached the place {order.place.words} "
                               f"(blkdebug {order.place.event} did not fire)")
            break
        time.sleep(0.002)
    if out.not_reached is None:
        for name in order.sequence[1:]:
            _send_while_held(q, tracer, name, by_name, inflight, out)
        out.racing = [n for n in order.sequence if not inflight[n].done.is_set()]
    bps.release_all()
    for name in order.sequence:
        if name not in inflight:
            inflight[name] = InflightRequest(q, by_name[name])
    for name, g in inflight.items():
        if not g.wait(timeout):
            raise QemuError(f"{name} did not complete within {timeout} s after "
                            f"the release", command="race")


def _send_while_held(q: QemuSecondary, tracer: _Tracer, name: str, by_name: dict[str, Request],
                     inflight: dict[str, InflightRequest], out: SideResult) -> None:
    """Send one request while another is held; if it does not complete, note it blocked
    and at which node (the last trace line it left)."""
    mark = tracer.mark()
    g = inflight[name] = InflightRequest(q, by_name[name])
    if g.wait(BLOCK_WAIT):
        return
    end = tracer.mark()
    # An unrelated request (a read of the secondary disk, which never waits)
    # completes meanwhile; on a loaded machine it is slow too, so the request
    # gets 20 times its latency more.
    t0 = time.monotonic()
    q.pread(0, 512)
    if not g.wait(max(BLOCK_WAIT, 20 * (time.monotonic() - t0))):
        out.blocked.append(name)
        last = tracer.last_node(mark, end)
        if last is not None:
            out.waits_at[name], out.witness[name] = last.node, last.words


def _collect(rs: RaceScenario, run: QemuRun, inflight: dict[str, InflightRequest],
             out: SideResult) -> None:
    """Each par request's outcome into ``out`` (errors, read bytes, failed expectations)."""
    original = run.original
    for r in rs.requests:
        g = inflight[r.name]
        if g.error is not None:
            out.errors[r.name] = g.error
            if r.command.op == "vread":
                out.reads[r.name] = None
            continue
        _tell_oracle(run, r, g)
        if r.command.op == "vread":
            assert g.result is not None
            out.reads[r.name] = g.result
            if vread_failure(r.command, g.result, original) is not None:
                out.expect_lines.append(r.command.line)


def _shut_down(q: QemuSecondary, bps: _Breakpoints, inflight: dict[str, InflightRequest],
               clean: bool) -> None:
    """Resume what is still suspended and stop QEMU: quit after a clean run, else kill."""
    try:
        if not q.closed:
            bps.release_all()
    except QemuError:
        clean = False
    for g in inflight.values():
        if clean:
            g.thread.join(1.0)
        g.close()
    if clean:
        q.close()
    else:
        q.kill()  # a request may still be suspended: quit would hang


def _tell_oracle(run: QemuRun, r: Request, g: InflightRequest) -> None:
    """Feed the QEMU run's oracle the par request, so that later reads are judged right."""
    c = r.command
    if c.op == "pwrite":
        assert c.byte is not None
        run.oracle.primary_write_done(r.name, c.offset, c.length, c.byte)
    elif c.op == "vwrite":
        assert c.byte is not None
        run.oracle.vm_write_started(r.name, c.offset, c.length, c.byte)
        run.oracle.vm_write_done(r.name, True)


# --- comparing ------------------------------------------------------------------------


def _digest(b: bytes | None) -> str:
    return "failed" if b is None else hashlib.sha256(b).hexdigest()[:12]


def compare_sides(order: RaceOrder, sim: SideResult, qem: SideResult,
                  block: int, requests: Sequence[Request] = ()) -> list[Difference]:
    """Where the two backends differ in one order (blocked set, reads, layers, checks).

    A layer that differs only where writes in flight together on QEMU after the
    release overlap (``requests`` names them), each side holding one of those
    writes' bytes there, is not a difference: QEMU does not order two
    non-serialising writes in flight (``bdrv_co_pwritev`` waits only for
    serialising requests; file-posix hands both to its thread pool), so either
    may land last.
    """
    where = order.words()
    diffs: list[Difference] = []
    if sim.not_reached or qem.not_reached:
        if bool(sim.not_reached) != bool(qem.not_reached):
            diffs.append(Difference("reached", where, sim.not_reached or "reached it",
                                    qem.not_reached or "reached it"))
        return diffs
    if sorted(sim.blocked) != sorted(qem.blocked):
        def said(b: list[str]) -> str:
            return ", ".join(b) if b else "nothing"
        diffs.append(Difference("blocked", "while held", said(sim.blocked),
                                said(qem.blocked)))
    for name in sorted(set(sim.blocked) & set(qem.blocked)):
        s_at, q_at = sim.waits_at.get(name), qem.waits_at.get(name)
        if s_at is None or q_at is None:
            # Blocked on both, but one side cannot say where: the order is *unknown*
            # (OrderResult.status), never counted as agreeing.
            diffs.append(Difference("unlocated", name,
                                    sim.witness.get(name, "wait not located"),
                                    qem.witness.get(name, "wait not located")))
        elif s_at != q_at:
            diffs.append(Difference("waits-at", name, sim.witness.get(name, s_at),
                                    qem.witness.get(name, q_at)))
    diffs += _read_differences(sim, qem)
    if sim.errors.keys() != qem.errors.keys():
        diffs.append(Difference("outcome", "failed requests", ", ".join(sim.errors) or "none",
                                ", ".join(qem.errors) or "none"))
    diffs += [d for d in compare_dumps(sim.dumps, qem.dumps, block)
              if not _either_write_order(d, sim, qem, requests)]
    if sim.expect_lines != qem.expect_lines:
        diffs.append(Difference("expect", "failed checks (lines)",
                                str(sim.expect_lines), str(qem.expect_lines)))
    return diffs


def _either_write_order(d: Difference, sim: SideResult, qem: SideResult,
                        requests: Sequence[Request]) -> bool:
    """Does layer difference ``d`` lie where two racing writes overlap, each side holding
    one of their bytes (see :func:`compare_sides`)?"""
    if d.kind != "layer" or d.dump is None or d.layer is None or len(qem.racing) < 2:
        return False
    s_layer = sim.dumps[d.dump - 1][1].get(d.layer)
    q_layer = qem.dumps[d.dump - 1][1].get(d.layer)
    if s_layer is None or q_layer is None:
        return False
    writers = [r.command for r in requests if r.name in qem.racing
               and r.command.op in ("pwrite", "vwrite") and r.command.byte is not None]
    a = np.frombuffer(s_layer.data, dtype=np.uint8).reshape(-1, SECTOR)
    b = np.frombuffer(q_layer.data, dtype=np.uint8).reshape(-1, SECTOR)
    if (s_layer.alloc != q_layer.alloc).any():
        return False
    for sector in np.flatnonzero((a != b).any(axis=1)):
        pos = int(sector) * SECTOR
        here = {c.byte for c in writers if c.offset <= pos < c.offset + c.length}
        if len(here) < 2:
            return False
        sv, qv = np.unique(a[sector]), np.unique(b[sector])
        if sv.size != 1 or qv.size != 1 or int(sv[0]) not in here or int(qv[0]) not in here:
            return False
    return True


def _read_differences(sim: SideResult, qem: SideResult) -> list[Difference]:
    """The par reads whose bytes differ (digests, and the first differing byte)."""
    diffs = []
    for name, s in sim.reads.items():
        qb = qem.reads.get(name)
        if s != qb:
            first = ""
            if s is not None and qb is not None:
                off = next(i for i, (a, b) in enumerate(zip(s, qb, strict=True)) if a != b)
                first = f" (first at byte {off:#x}: simulator {s[off]:#04x}, QEMU {qb[off]:#04x})"
            diffs.append(Difference("read", name,
                                    f"{_digest(s)}{first}", _digest(qb)))
    return diffs


@dataclass
class OrderResult:
    """One order on both backends, and how they differ."""

    order: RaceOrder
    sim: SideResult
    qemu: SideResult
    differences: list[Difference]

    @property
    def status(self) -> str:
        """``agree``; ``disagree`` (a difference); ``unknown`` (the only gap: a request
        blocked on both sides whose wait one side could not locate)."""
        if not self.differences:
            return "agree"
        if all(d.kind == "unlocated" for d in self.differences):
            return "unknown"
        return "disagree"

    @property
    def agree(self) -> bool:
        return self.status == "agree"

    def line(self) -> str:
        """The order in words, then ``same`` (with what blocked), ``UNKNOWN`` (where a
        blocked request waits was not located) or what differs."""
        if self.status == "unknown":
            gaps = [f"{d.where} blocked on both; simulator {d.sim}; QEMU {d.qemu}"
                    for d in self.differences]
            return f"{self.order.words()}: UNKNOWN: " + "; ".join(gaps)
        if self.agree:
            if self.sim.not_reached:
                return f"{self.order.words()}: same (not reached on either)"
            waits = [f"{n} at {self.sim.waits_at.get(n, '?')}" for n in self.sim.blocked]
            what = ((f"blocked: {', '.join(waits)}" if waits else "nothing blocked")
                    if self.order.held else "sequential")
            return f"{self.order.words()}: same ({what})"
        parts = []
        for d in self.differences:
            if d.kind == "layer":
                parts.append(f"{d.where}: {d.sim} vs {d.qemu}")
            else:
                parts.append(f"{d.kind} {d.where}: simulator {d.sim}; QEMU {d.qemu}")
        return f"{self.order.words()}: DIFFERENT: " + "; ".join(parts)


@dataclass
class RaceComparison:
    """The result of :func:`compare_races`: one :class:`OrderResult` per order."""

    scenario: Scenario
    config: dict[str, Any]
    results: list[OrderResult] = field(default_factory=list)
    qemu_version: str = ""
    #: the explorer's era-7.2 outcomes against the ones QEMU reached (every order run;
    #: None when only one order ran or conformance was not asked for)
    conformance: Conformance | None = None

    @property
    def agree(self) -> bool:
        """True when every order agrees (an unknown order is not agreeing)."""
        return all(r.agree for r in self.results)

    @property
    def disagreeing(self) -> list[OrderResult]:
        return [r for r in self.results if r.status == "disagree"]

    @property
    def unknown(self) -> list[OrderResult]:
        return [r for r in self.results if r.status == "unknown"]

    def counts(self) -> str:
        """``N orders: A agreeing, D disagreeing, U unknown``."""
        n = len(self.results)
        d, u = len(self.disagreeing), len(self.unknown)
        return f"{n} orders: {n - d - u} agreeing, {d} disagreeing, {u} unknown"

    def __repr__(self) -> str:
        return f"<RaceComparison simulator vs QEMU {self.qemu_version}: {self.counts()}>"

    def text(self) -> str:
        """One line per order, the conformance, then :meth:`counts` (deterministic text)."""
        cfg = self.config
        out = [f"simulator (era 7.2, design {cfg['design']}) vs QEMU {self.qemu_version}: "
               f"orders forced on the par block",
               f"size {cfg['size']}, block {cfg['block']}, hidden cluster "
               f"{cfg['hidden_cluster']}, active cluster {cfg['active_cluster']}, "
               f"fill {cfg['fill']}",
               f"note: {BLKDEBUG_NOTE}"]
        out += [r.line() for r in self.results]
        if self.conformance is not None:
            out += self.conformance.lines()
        out.append(self.counts())
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """Per order and backend: blocked requests, read digests, layer digests."""
        cfg = {k: v for k, v in self.config.items()}
        orders = []
        for r in self.results:
            first: dict[str, int | None] = {}
            for name, s in r.sim.reads.items():
                qb = r.qemu.reads.get(name)
                first[name] = (None if s == qb or s is None or qb is None else
                               next(i for i, (a, b) in enumerate(zip(s, qb, strict=True))
                                    if a != b))
            orders.append({"order": r.order.words(), "agree": r.agree, "status": r.status,
                           "simulator": r.sim.to_json(), "qemu": r.qemu.to_json(),
                           "first_differing_read_offset": first,
                           "differences": [str(d) for d in r.differences]})
        return {"qemu_version": self.qemu_version, "config": cfg, "note": BLKDEBUG_NOTE,
                "orders": orders, "disagreeing": len(self.disagreeing),
                "unknown": len(self.unknown),
                "conformance": None if self.conformance is None else self.conformance.to_json()}

    def write_json(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")


def race_orders(text: str | Scenario, *, size: int | str | None = None,
                block: int | str | None = None, hidden_cluster: int | str | None = None,
                active_cluster: int | str | None = None,
                fill: str | int | None = None) -> list[RaceOrder]:
    """The orders QEMU can force on the scenario's par block (no QEMU needed; the
    scenario's ``# config:`` header applies under the keywords)."""
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    return reachable(split(scenario), config)


def compare_races(text: str | Scenario, *, size: int | str | None = None,
                  block: int | str | None = None, hidden_cluster: int | str | None = None,
                  active_cluster: int | str | None = None, fill: str | int | None = None,
                  design: str = "4.0", order: str | None = None,
                  timeout: float = 10.0, qemu: str = "qemu-system-x86_64",
                  with_conformance: bool = True) -> RaceComparison:
    """Every forceable order of the scenario's par block, on QEMU 7.2 and the simulator.

    The configuration keywords are :func:`labkit.qemu.compare`'s (the scenario's
    ``# config:`` header applies under them).
    ``design`` is the simulator's read protection ("4.0" is QEMU 7.2's;
    another one shows what the comparison catches); ``order`` runs only the
    order with those words (see :meth:`RaceOrder.words`).  With every order run
    and ``with_conformance``, :attr:`RaceComparison.conformance` sets the
    outcomes QEMU reached beside the explorer's (:mod:`labkit.qemu._conformance`).
    Raises
    :class:`ScenarioError` for a scenario without exactly one par block of
    pwrite / vwrite / vread, :class:`~labkit.errors.ConfigError` for an
    unknown order, :class:`QemuNotAvailable` and :class:`QemuError`.
    """
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    rs = split(scenario)
    orders = reachable(rs, config)
    if order is not None:
        orders = [find_order(orders, order)]
    reason = qemu_available(qemu, timeout)
    if reason is not None:
        raise QemuNotAvailable(reason)
    result = RaceComparison(scenario, dict(config, design=design, era="7.2"))
    for o in orders:
        t0 = time.perf_counter()
        sim = run_on_simulator(rs, o, config, design)
        t1 = time.perf_counter()
        qem = run_on_qemu(rs, o, config, timeout=timeout, qemu=qemu)
        sim.seconds, qem.seconds = t1 - t0, time.perf_counter() - t1
        result.results.append(OrderResult(o, sim, qem, compare_sides(
            o, sim, qem, config["block"], rs.requests)))
        result.qemu_version = result.qemu_version or qem.version
    if order is None and with_conformance:
        result.conformance = conformance(rs, config, [(r.order.words(), r.sim, r.qemu)
                                                      for r in result.results], design)
    return result


def hold_on_simulator(text: str | Scenario, order: str, *, size: int | str | None = None,
                      block: int | str | None = None, hidden_cluster: int | str | None = None,
                      active_cluster: int | str | None = None, fill: str | int | None = None,
                      design: str = "4.0") -> SimulatorHold:
    """The simulator stopped in the middle of ``order`` (its words), to see *why*.

    Returns a :class:`SimulatorHold`: the held request parked at its pause
    point, the others sent; ``.lab.kernel.blocked()`` and ``Task.why_blocked``
    name what each blocked request waits for.  No QEMU is needed.
    """
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    rs = split(scenario)
    return SimulatorHold(rs, find_order(reachable(rs, config, design), order), config, design)


def check_race_scenario(scenario: Scenario) -> None:
    """Raise :class:`ScenarioError` unless the scenario can be race-compared."""
    split(scenario)


__all__ = ["BLKDEBUG_NOTE", "BLOCK_WAIT", "InflightRequest", "OrderResult", "RaceComparison",
           "check_race_scenario", "compare_races", "compare_sides", "hold_on_simulator",
           "race_orders", "run_on_qemu"]
