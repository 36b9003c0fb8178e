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
from collections.abc import Mapping
from typing import Any

import numpy as np

from labkit.block import fill_base, zeros_base
from labkit.config import LabConfig
from labkit.errors import ScenarioError
from labkit.interpret import TASK_KINDS, CommandOutcome, Interpreter, OracleFeed, TaskNames
from labkit.layers import Layer
from labkit.oracle import Oracle, Violation
from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._nbd import NbdError
from labkit.qemu._probe import qemu_available
from labkit.qemu._secondary import QemuSecondary
from labkit.qemu._session import check_timeout
from labkit.replication import ReplicationStage
from labkit.scenario import Command, Par, Scenario, configured

_NODES = {"secondary": "secondary-disk", "hidden": "hidden", "active": "active"}
#: The configuration keys QEMU has (``design``, ``era``, ``backup_cluster`` are simulator-only).
QEMU_KEYS = ("size", "block", "hidden_cluster", "active_cluster", "fill")


def refuse_par(scenario: Scenario) -> None:
    """Raise :class:`ScenarioError` at the first ``par`` block: QEMU runs one command at a time."""
    for step in scenario.steps:
        if isinstance(step, Par):
            raise ScenarioError(step.line, "par { ... }",
                                "the real-QEMU backend runs one command at a time and cannot "
                                "choose QEMU's interleaving, so 'par' blocks cannot run on it; "
                                "write the commands one per line, or run the race on the "
                                "simulator (labkit run)")


def qemu_lab_config(config: Mapping[str, Any]) -> LabConfig:
    """The :class:`LabConfig` a QEMU session takes, from a configuration of
    :func:`configured_scenario` (its :data:`QEMU_KEYS`; the rest at their defaults)."""
    return LabConfig(**{k: config[k] for k in QEMU_KEYS})


def configured_scenario(text: str | Scenario, size: int | str | None = None,
                        block: int | str | None = None, hidden_cluster: int | str | None = None,
                        active_cluster: int | str | None = None,
                        fill: str | int | None = None) -> tuple[dict[str, Any], Scenario]:
    """The configuration both backends use (the scenario's ``# config:`` header under
    the explicit values: :func:`labkit.scenario.configured`), QEMU's keys of it
    (:data:`QEMU_KEYS`), and the scenario parsed with it."""
    cfg, scenario = configured(text, size=size, block=block, hidden_cluster=hidden_cluster,
                               active_cluster=active_cluster, fill=fill)
    return {k: getattr(cfg, k) for k in QEMU_KEYS}, scenario


class QemuRun:
    """One scenario's results on QEMU, shaped like a :class:`labkit.Lab` after a run.

    :attr:`dumps` is ``[(title, {layer: Layer | None})]`` as the simulator's
    (``vm-view`` None while QEMU answers EIO, before start); :attr:`log` holds
    the errors QEMU returned, per command, and oracle violations;
    :attr:`expectation_failures` the failed ``expect`` lines and ``vread``
    checks; :attr:`outcomes` one :class:`CommandOutcome` per I/O or control command;
    :attr:`state` is ``none``, ``running`` or ``done`` as the replication
    driver's stage.  QEMU has quit when the run is returned.
    """

    def __init__(self, scenario: Scenario, config: dict[str, Any]) -> None:
        self.scenario = scenario
        self.size: int = config["size"]
        self.block: int = config["block"]
        self.config = dict(config, backend="qemu")
        # The simulator's own reading of ``fill`` (labkit.block.fill_base), whole: a
        # QEMU run's disk is small (its size is checked against the free space).
        base = fill_base(config["fill"], self.block) or zeros_base
        self.original = np.asarray(base(0, self.size), dtype=np.uint8).tobytes()
        self.oracle = Oracle(self.original, self.block)
        self.dumps: list[tuple[str, dict[str, Layer | None]]] = []
        self.log: list[str] = []
        self.expectation_failures: list[str] = []
        self.outcomes: list[CommandOutcome] = []
        self.state: str = ReplicationStage.NONE  # a FleecingStage on a fleecing run
        self.version = ""

    def __repr__(self) -> str:
        return (f"<QemuRun QEMU {self.version or '?'}: {len(self.dumps)} dump(s), "
                f"{len(self.log)} log line(s), replication {self.state}>")

    def violations(self) -> list[Violation]:
        """Oracle failures on QEMU's reads and failover (as :meth:`labkit.Lab.violations`)."""
        return list(self.oracle.violations)

    def play(self, q: QemuSecondary) -> None:
        """Run every step on ``q``; QEMU errors are outcomes, QEMU's death raises."""
        self.version = q.version
        self.config["qemu_version"] = q.version
        refuse_par(self.scenario)
        Interpreter(QemuBackend(self, q), self.scenario, self).play()


class QemuBackend:
    """The real-QEMU side of the interpreter's backend protocol (:mod:`labkit.interpret`).

    Sequential: :meth:`begin` runs the command on QEMU to its end (QMP or NBD)
    and keeps its :class:`CommandOutcome`; nothing is ever :meth:`busy`.  The oracle
    is fed as the simulator feeds it (:class:`~labkit.interpret.OracleFeed`).
    """

    def __init__(self, run: QemuRun, q: QemuSecondary) -> None:
        self.run = run
        self.q = q
        self.names = TaskNames()
        self.feed = OracleFeed(run.oracle)
        self._outcomes: dict[str, CommandOutcome] = {}

    def begin(self, cmd: Command) -> str:
        name = self.names.for_command(cmd)
        outcome = CommandOutcome(cmd, name)
        self._outcomes[name] = outcome
        q = self.q
        try:
            outcome.data = self._run(cmd, name)
        except QemuError as exc:
            if q.closed:  # QEMU died or hung: not an outcome of the command
                raise
            outcome.error = exc.desc or str(exc)
        except NbdError as exc:
            if q.closed:
                raise
            outcome.error = self._nbd_message(cmd, exc)
            outcome.errno = exc.errno
        return name

    def _nbd_message(self, c: Command, exc: NbdError) -> str:
        return _nbd_message(c, exc)

    def busy(self) -> bool:
        return False

    def settle(self) -> None:
        return None

    def outcome(self, cmd: Command, task: str) -> CommandOutcome:
        return self._outcomes.pop(task)

    def background_failures(self) -> list[str]:
        return []

    def layers(self) -> dict[str, Layer | None]:
        return self.q.dump()

    def layer(self, name: str) -> Layer | None:
        return _read_layer(self.q, name)

    def state(self) -> str:
        return self.run.state

    def original(self, offset: int, length: int) -> bytes:
        return self.run.original[offset:offset + length]

    def _run(self, c: Command, name: str) -> bytes | None:
        q, feed = self.q, self.feed
        if c.op in ("pwrite", "vwrite", "vread"):
            feed.begin(c.op, name, c.offset, c.length, c.byte)
            data, ok = None, False
            try:
                if c.op == "pwrite":
                    q.pwrite(c.offset, c.length, c.byte or 0)
                elif c.op == "vwrite":
                    q.vwrite(c.offset, c.length, c.byte or 0)
                else:
                    data = q.vread(c.offset, c.length)
                ok = True
            finally:
                v = feed.end(c.op, name, c.offset, c.length, c.byte, ok, data)
                if v is not None:
                    self.run.log.append(str(v))
            return data
        self._control(c, name)
        return None

    def _control(self, c: Command, name: str) -> None:
        q, run, oracle = self.q, self.run, self.run.oracle
        if c.op == "start":
            q.start()  # after failover or stop, QEMU 7.2 ignores it (no error)
            if run.state == "none":
                run.state = ReplicationStage.RUNNING
                oracle.started()
        elif c.op == "checkpoint":
            q.checkpoint()  # ignored after failover or stop, as start
            if run.state == "running":
                oracle.checkpoint()
        elif c.op == "stop":
            try:
                q.stop()
                if run.state == "running":
                    run.state = ReplicationStage.DONE
            except QemuError as exc:
                # QEMU 7.2's stop always fails this way, but replication is stopped.
                if run.state == "running" and exc.desc == "Backup job was cancelled unexpectedly":
                    run.state = ReplicationStage.DONE
                raise
            finally:
                if run.state == "done":
                    oracle.stopped()
        elif c.op == "failover":
            was = run.state
            q.failover()
            if was == "running":
                run.state = ReplicationStage.DONE
                v = oracle.failover_done(name, q.pread(0, run.size))
                if v is not None:
                    run.log.append(str(v))
        else:  # pragma: no cover - parse() knows no other command
            raise AssertionError(c.op)


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


def run_scenario(text: str | Scenario, *, size: int | str | None = None,
                 block: int | str | None = None, hidden_cluster: int | str | None = None,
                 active_cluster: int | str | None = None, fill: str | int | None = None,
                 timeout: float = 10.0, qemu: str = "qemu-system-x86_64") -> QemuRun:
    """Play a scenario on a real QEMU 7.2 and return its :class:`QemuRun`.

    The keywords are :func:`labkit.build_secondary`'s that QEMU has (defaults
    alike; the scenario's ``# config:`` header applies under them);
    ``design``, ``era`` and ``backup_cluster`` are simulator-only.
    ``fill="zero"`` makes ``secondary.raw`` one sparse hole.  Raises
    :class:`ScenarioError` for a malformed scenario or a ``par`` block (before
    QEMU is launched), :class:`QemuNotAvailable` (naming the Debian packages to
    install) and :class:`QemuError` if QEMU dies, breaks QMP or does not answer
    within ``timeout`` seconds.  QEMU and its directory are gone on return,
    whatever happened.
    """
    config, scenario = configured_scenario(text, size, block, hidden_cluster, active_cluster,
                                           fill)
    refuse_par(scenario)
    check_timeout(timeout)
    reason = qemu_available(qemu, timeout)
    if reason is not None:
        raise QemuNotAvailable(reason)
    run = QemuRun(scenario, config)
    with QemuSecondary(qemu_lab_config(config), timeout=timeout, qemu=qemu) as q:
        run.play(q)
    return run


__all__ = ["QEMU_KEYS", "TASK_KINDS", "CommandOutcome", "QemuBackend", "QemuRun", "check_timeout",
           "configured_scenario", "qemu_lab_config", "refuse_par", "run_scenario"]
