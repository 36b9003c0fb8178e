"""A scenario played on a real QEMU 7.2: the same dumps, log and checks as the simulator.

:func:`run_scenario` parses a scenario-language text exactly as
:func:`labkit.run_scenario` does, launches one :class:`QemuSecondary` for the
whole scenario and runs its commands one after the other:

===============  ==============================================================
``start``        ``xen-set-replication enable=true primary=false``
``pwrite``       an NBD write to export ``secondary`` (byte 0: ``WRITE_ZEROES``)
``vwrite``       an NBD write to export ``top`` (the secondary VM)
``vread``        an NBD read from export ``top``
``checkpoint``   ``xen-colo-do-checkpoint``
``failover``     ``xen-set-replication enable=false failover=true``, then wait
``stop``         ``xen-set-replication enable=false`` (no failover)
``dump``         each layer read through a temporary NBD export (``allocation-depth``)
``expect``       the same check as the simulator's, on the layer read from QEMU
===============  ==============================================================

What is modelled: the *outcome* of each command as QEMU reports it.  An error
QEMU returns (a QMP error reply, an NBD error) is an outcome, recorded in
:attr:`QemuRun.log` in the simulator's format (``line N: TEXT: TASK failed:
MESSAGE``) and the scenario goes on, as the simulator's does.  QEMU dying or
not answering is not an outcome: it raises :class:`QemuError` (with the tail
of QEMU's log) after the session has been cleaned up.

``par { ... }`` blocks are refused before QEMU is launched: QEMU's
interleaving cannot be chosen from outside, so a race cannot be replayed on
it.  The consistency oracle (:class:`labkit.oracle.Oracle`) is fed the same
history as in the simulator, so :meth:`QemuRun.violations` says whether QEMU's
reads kept the COLO promise.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

from labkit.errors import ScenarioError
from labkit.lab import _size, expect_failure, index_fill, vread_failure
from labkit.layers import SECTOR, Layer
from labkit.oracle import Oracle, Violation
from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._nbd import NbdError
from labkit.qemu._session import QemuSecondary, qemu_available
from labkit.scenario import Command, Par, Scenario, parse

#: The simulator's task kind for each I/O and control command (task names ``KIND#N``).
TASK_KINDS = {
    "pwrite": "nbd-write",
    "vwrite": "vm-write",
    "vread": "vm-read",
    "start": "start",
    "checkpoint": "checkpoint",
    "stop": "stop",
    "failover": "failover",
}
_NODES = {"secondary": "secondary-disk", "hidden": "hidden", "active": "active"}


class Outcome:
    """What one command returned: ``error`` (None: it succeeded) and its ``errno``.

    ``task`` is the simulator's name for the command's task (``nbd-write#2``),
    so that the two backends' outcomes can be matched command by command.
    """

    __slots__ = ("command", "errno", "error", "task")

    def __init__(self, command: Command, task: str, error: str | None = None,
                 errno: int | None = None) -> None:
        self.command = command
        self.task = task
        self.error = error
        self.errno = errno

    def __repr__(self) -> str:
        return f"<Outcome line {self.command.line} {self.task}: {self.error or 'ok'}>"


def refuse_par(scenario: Scenario) -> None:
    """Raise :class:`ScenarioError` at the first ``par`` block: QEMU runs one command at a time."""
    for step in scenario.steps:
        if isinstance(step, Par):
            raise ScenarioError(step.line, "par { ... }",
                                "the real-QEMU backend runs one command at a time and cannot "
                                "choose QEMU's interleaving, so 'par' blocks cannot run on it; "
                                "write the commands one per line, or run the race on the "
                                "simulator (labkit run)")


def qemu_config(size: int | str = "1M", block: int | str = "4K",
                hidden_cluster: int | str = "4K", active_cluster: int | str = "4K",
                fill: str | int = "index") -> dict[str, Any]:
    """The configuration both backends understand, in bytes (the simulator's defaults)."""
    block_b = _size(block, "block")
    if block_b <= 0 or block_b % SECTOR:
        raise ValueError(f"block must be a positive multiple of {SECTOR} bytes, got {block!r}")
    size_b = _size(size, "size", block_b)
    if size_b <= 0 or size_b % SECTOR:
        raise ValueError(f"size must be a positive multiple of {SECTOR} bytes, got {size!r}")
    if not (fill in ("index", "zero") or (isinstance(fill, int) and not isinstance(fill, bool)
                                          and 0 <= fill <= 255)):
        raise ValueError(f"fill must be 'index', 'zero' or a byte 0-255, got {fill!r}")
    return dict(size=size_b, block=block_b, hidden_cluster=_size(hidden_cluster, "hidden_cluster"),
                active_cluster=_size(active_cluster, "active_cluster"), fill=fill)


class QemuRun:
    """One scenario's results on QEMU, shaped like a :class:`labkit.Lab` after a run.

    :attr:`dumps` is ``[(title, {layer: Layer | None})]`` as the simulator's
    (``vm-view`` None while QEMU answers EIO, before start); :attr:`log` holds
    the errors QEMU returned, per command, and oracle violations;
    :attr:`expectation_failures` the failed ``expect`` lines and ``vread``
    checks; :attr:`outcomes` one :class:`Outcome` per I/O or control command;
    :attr:`state` is ``none``, ``running`` or ``done`` as the replication
    driver's stage.  QEMU has quit when the run is returned.
    """

    def __init__(self, scenario: Scenario, config: dict[str, Any]) -> None:
        self.scenario = scenario
        self.size: int = config["size"]
        self.block: int = config["block"]
        self.config = dict(config, backend="qemu")
        fill = config["fill"]
        self.original = (index_fill(self.size, self.block) if fill == "index"
                         else bytes([0 if fill == "zero" else fill]) * self.size)
        self.oracle = Oracle(self.original, self.block)
        self.dumps: list[tuple[str, dict[str, Layer | None]]] = []
        self.log: list[str] = []
        self.expectation_failures: list[str] = []
        self.outcomes: list[Outcome] = []
        self.state = "none"
        self.version = ""
        self._counters: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"<QemuRun QEMU {self.version or '?'}: {len(self.dumps)} dump(s), "
                f"{len(self.log)} log line(s), replication {self.state}>")

    def violations(self) -> list[Violation]:
        """Oracle failures on QEMU's reads and failover (as :meth:`labkit.Lab.violations`)."""
        return list(self.oracle.violations)

    # --- playing ------------------------------------------------------------------
    def play(self, q: QemuSecondary) -> None:
        """Run every step on ``q``; QEMU errors are outcomes, QEMU's death raises."""
        self.version = q.version
        self.config["qemu_version"] = q.version
        for step in self.scenario.steps:
            assert isinstance(step, Command)  # refuse_par ran first
            if step.op == "dump":
                self.dumps.append((step.title or f"dump {len(self.dumps) + 1}", q.dump()))
            elif step.op == "expect":
                self._expect(q, step)
            else:
                self._command(q, step)

    def _task(self, op: str) -> str:
        kind = TASK_KINDS[op]
        n = self._counters.get(kind, 0) + 1
        self._counters[kind] = n
        return f"{kind}#{n}"

    def _command(self, q: QemuSecondary, c: Command) -> None:
        name = self._task(c.op)
        outcome = Outcome(c, name)
        self.outcomes.append(outcome)
        try:
            self._run(q, c, name)
        except QemuError as exc:
            if q.closed:  # QEMU died or hung: not an outcome of the command
                raise
            outcome.error = exc.desc or str(exc)
        except NbdError as exc:
            if q.closed:
                raise
            outcome.error = _nbd_message(c, exc)
            outcome.errno = exc.errno
        if outcome.error is not None:
            self.log.append(f"line {c.line}: {c.text}: {name} failed: {outcome.error}")

    def _run(self, q: QemuSecondary, c: Command, name: str) -> None:
        oracle = self.oracle
        if c.op == "pwrite":
            assert c.byte is not None
            q.pwrite(c.offset, c.length, c.byte)
            oracle.primary_write_done(name, c.offset, c.length, c.byte)
        elif c.op == "vwrite":
            assert c.byte is not None
            oracle.vm_write_started(name, c.offset, c.length, c.byte)
            ok = False
            try:
                q.vwrite(c.offset, c.length, c.byte)
                ok = True
            finally:
                oracle.vm_write_done(name, ok)
        elif c.op == "vread":
            oracle.vm_read_started(name, c.offset, c.length)
            data = None
            try:
                data = q.vread(c.offset, c.length)
            finally:
                v = oracle.vm_read_done(name, data)
                if v is not None:
                    self.log.append(str(v))
            assert data is not None
            why = vread_failure(c, data, self.original)
            if why is not None:
                self._expect_failed(c, f"{name} {why}")
        elif c.op == "start":
            q.start()  # after failover or stop, QEMU 7.2 ignores it (no error)
            if self.state == "none":
                self.state = "running"
                oracle.started()
        elif c.op == "checkpoint":
            q.checkpoint()  # ignored after failover or stop, as start
            if self.state == "running":
                oracle.checkpoint()
        elif c.op == "stop":
            try:
                q.stop()
                if self.state == "running":
                    self.state = "done"
            except QemuError as exc:
                # QEMU 7.2's stop always fails this way, but replication is stopped.
                if self.state == "running" and exc.desc == "Backup job was cancelled unexpectedly":
                    self.state = "done"
                raise
            finally:
                if self.state == "done":
                    oracle.stopped()
        elif c.op == "failover":
            was = self.state
            q.failover()
            if was == "running":
                self.state = "done"
                v = oracle.failover_done(name, q.pread(0, self.size))
                if v is not None:
                    self.log.append(str(v))
        else:  # pragma: no cover - parse() knows no other command
            raise AssertionError(c.op)

    def _expect_failed(self, cmd: Command, why: str) -> None:
        self.expectation_failures.append(f"line {cmd.line}: {cmd.text}: {why}")

    def _expect(self, q: QemuSecondary, cmd: Command) -> None:
        why = expect_failure(cmd, _read_layer(q, cmd.layer or ""), self.original, self.state)
        if why is not None:
            self._expect_failed(cmd, why)


def _read_layer(q: QemuSecondary, name: str) -> Layer | None:
    """One layer from QEMU: a node's own contents, or the VM's view (None on EIO)."""
    if name in _NODES:
        return q.dump_node(_NODES[name])
    try:
        return Layer.full(q.vread(0, q.size))
    except NbdError as exc:
        if exc.errno not in (_errno.EIO, _errno.ENOTCONN):
            raise
        return None


def _nbd_message(c: Command, exc: NbdError) -> str:
    """An NBD error as one deterministic line (no socket paths, no QEMU log)."""
    export = "secondary" if c.op == "pwrite" else "top"
    kind = "write" if c.op in ("pwrite", "vwrite") else "read"
    code = _errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return (f"NBD {kind} on export '{export}' [{c.offset:#x}+{c.length:#x}]: "
            f"{os.strerror(exc.errno or 0)} ({code})")


def run_scenario(text: str | Scenario, *, size: int | str = "1M", block: int | str = "4K",
                 hidden_cluster: int | str = "4K", active_cluster: int | str = "4K",
                 fill: str | int = "index", timeout: float = 10.0,
                 qemu: str = "qemu-system-x86_64") -> QemuRun:
    """Play a scenario on a real QEMU 7.2 and return its :class:`QemuRun`.

    The keywords are :func:`labkit.build_secondary`'s that QEMU has (defaults
    alike); ``design``, ``era`` and ``backup_cluster`` are simulator-only.
    ``fill="zero"`` makes ``secondary.raw`` one sparse hole.  Raises
    :class:`ScenarioError` for a malformed scenario or a ``par`` block (before
    QEMU is launched), :class:`QemuNotAvailable` (naming the Debian packages to
    install) and :class:`QemuError` if QEMU dies, breaks QMP or does not answer
    within ``timeout`` seconds.  QEMU and its directory are gone on return,
    whatever happened.
    """
    config = qemu_config(size, block, hidden_cluster, active_cluster, fill)
    scenario = text if isinstance(text, Scenario) else parse(text, block=config["block"],
                                                              size=config["size"])
    refuse_par(scenario)
    reason = qemu_available(qemu)
    if reason is not None:
        raise QemuNotAvailable(reason)
    run = QemuRun(scenario, config)
    with QemuSecondary(config["size"], config["block"], config["hidden_cluster"],
                       config["active_cluster"], timeout, qemu, fill=fill) as q:
        run.play(q)
    return run


__all__ = ["Outcome", "QemuRun", "qemu_config", "refuse_par", "run_scenario"]
