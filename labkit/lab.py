"""The lab: the standard COLO secondary graph, the guest device, scenarios and the oracle.

:func:`build_secondary` wires what QEMU's ``docs/block-replication.txt``
secondary runs (and :mod:`labkit.qemu` builds in QEMU 7.2 with ``blockdev-add``)::

    nbd-write#N ─▶ NBD export "secondary" ─▶ secondary-disk (raw) ◀─backing─ hidden (qcow2)
                                                                  ◀─backing─ active (qcow2)
    vm-read#N / vm-write#N ─▶ colo-top (replication, mode=secondary, top-id=colo-top) ─file─▶ active

Every request is a task of one :class:`~labkit.kernel.Kernel`: the primary's
NBD writes (``nbd-write#N``), the secondary VM's reads and writes
(``vm-read#N``, ``vm-write#N``), and the control commands (``start#N``,
``checkpoint#N``, ``stop#N``, ``failover#N``; failover spawns ``commit#N``).
Task names are stable, so a schedule can name them (they are made by
:class:`labkit.interpret.TaskNames`, the one place that numbers tasks).
Scenarios are played by :class:`labkit.interpret.Interpreter` on
:class:`labkit.run.SimBackend`, the simulator's side of the backend protocol,
into the lab's :class:`labkit.run.ScenarioResult`; the trace analysis the
figures use (who wrote a byte, which layer served a read) is
:mod:`labkit.sources`.
"""

from __future__ import annotations

import errno as _errno
import functools
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

import numpy as np

from .block import (
    LAYER_CACHE_MAX,
    Base,
    BlockGraph,
    BlockNode,
    IndexFill,
    NBDServer,
    Qcow2Node,
    RawNode,
    bdrv_drained_begin,
    bdrv_drained_end,
    blk_wait_while_drained,
    fill_base,
    zeros_base,
)
from .config import LabConfig
from .errors import ArgumentError, BlockError, ConfigError, ReplicationError, StateError
from .interpret import CommandOutcome, Interpreter, TaskNames
from .kernel import FIFO, CoMutex, Event, EventLog, Kernel, Policy, Task, declare_control
from .layers import LAYER_NAMES, Layer, Pieces
from .oracle import Oracle, Violation
from .replication import ReplicationNode, ReplicationStage
from .run import ScenarioResult, ScenarioRun, SimBackend
from .scenario import Scenario, configured, parse_for, safe_title, scenario_graph
from .sources import provenance

_WRITES = ("primary write", "VM write")  # the check_io names whose byte is checked


@functools.lru_cache(maxsize=8)
def index_fill(size: int, block: int = 4096) -> bytes:
    """``fill="index"``'s whole disk as bytes: block k holds ``0x10 + k % 0x70`` (writes in
    examples use ≥ 0x80); :class:`labkit.block.IndexFill` made for ``[0, size)``.

    Cached (the result is immutable bytes): a QEMU run's oracle asks for it per run.
    """
    return np.asarray(IndexFill(block)(0, size), dtype=np.uint8).tobytes()


def _policy(policy: str | Policy | None) -> Policy:
    if policy is None or policy == "fifo":
        return FIFO()
    if isinstance(policy, Policy):
        return policy
    error = ConfigError if isinstance(policy, str) else ArgumentError
    raise error(f"policy must be 'fifo' or a policy object (lk.Random(seed), "
                f"lk.Scripted([...]), lk.Chooser(fn)), got {policy!r}")


def check_io(node: BlockNode, what: str, offset: int, length: int,
             byte: int | None = None) -> tuple[int, int, int]:
    """A guest or NBD request checked where it enters ``node``, before any task exists
    (``bdrv_check_byte_request`` and the alignment rule: :meth:`BlockNode.check_request`),
    as plain Python integers (a numpy integer is read as the integer it holds: the
    trace and the tasks never see numpy types); a write's byte is checked too."""
    node.check_request(offset, length, what)
    if length == 0:
        raise BlockError(_errno.EINVAL, f"{what}: length must be at least one 512-byte "
                                        f"sector")
    value = 0
    if what in _WRITES:  # a write's byte is refused at the call, None included
        value = check_byte(byte, f"{what}: byte")
    return int(offset), int(length), value


class Lab:
    """One secondary: its graph, its kernel, its oracle, its run's results.

    ``Lab(config, policy)`` builds the graph a checked
    :class:`~labkit.config.LabConfig` describes (:func:`build_secondary` checks
    keywords into one; :func:`build_lab` also picks the lab class of the
    config's graph).  :attr:`config` is that configuration, the one place its
    values live: :attr:`size`, :attr:`block`, :attr:`design` and :attr:`era`
    read it.
    """

    #: The :attr:`LabConfig.graph <labkit.config.LabConfig.graph>` this class builds.
    graph_name = "colo"

    def __init__(self, config: LabConfig, policy: str | Policy | None = "fifo") -> None:
        if not isinstance(config, LabConfig):
            raise ArgumentError(f"a lab is built from a LabConfig (lk.LabConfig(...), or "
                                f"lk.build_secondary(**keywords)), got "
                                f"{type(config).__name__}")
        if config.graph != self.graph_name:
            raise ConfigError(f"{type(self).__name__} builds the {self.graph_name!r} graph, "
                              f"this configuration the {config.graph!r} one: build it with "
                              f"lk.build_lab(config)")
        self.config = config
        self.kernel = Kernel(_policy(policy))
        self.graph = BlockGraph(config.era)
        # The initial contents as a function of (offset, length), not as bytes: the
        # disk and the oracle keep only what is written (a 1 GiB disk stays small);
        # ``original`` makes the whole bytes only if someone asks for them.
        self._fill = fill_base(config.fill, config.block)
        self._initial: Base = self._fill or zeros_base
        self._original: bytes | None = None
        self.nbd = NBDServer()
        #: what the scenarios played on this lab produced (dumps, log, expectations, outcomes)
        self.result = ScenarioResult()
        #: each write task's byte (the primary's and the VM's): who wrote what, for
        #: :func:`labkit.sources.writers`
        self.write_bytes: dict[str, int] = {}
        self._names = TaskNames()
        self._failover_pending: str | None = None
        # QMP dispatches one command at a time: a control command runs to its end
        # before the next starts (see _control).
        self.monitor = CoMutex("QMP monitor")
        self._view_cache: tuple[tuple, Layer] | None = None  # see layers()
        self._build()

    def _build(self) -> None:
        """The graph, its export and its oracle (a lab of another graph has its own)."""
        config = self.config
        self.secondary = self.graph.add(RawNode("secondary-disk", config.size, fill=self._fill))
        self.hidden = self.graph.add(Qcow2Node("hidden", config.size, config.hidden_cluster,
                                               backing=self.secondary))
        self.active = self.graph.add(Qcow2Node("active", config.size, config.active_cluster,
                                               backing=self.hidden))
        self.top = ReplicationNode(
            "colo-top", self.active, self.graph, mode="secondary", top_id="colo-top",
            design=config.design, backup_cluster_override=config.backup_cluster)
        self.graph.add(self.top)
        self.export = self.nbd.add(self.secondary, "secondary", writable=True)
        self.oracle = Oracle((config.size, self._initial), config.block)

    def __repr__(self) -> str:
        return (f"<Lab {self.size} bytes, design {self.design!r}, replication "
                f"{self.state}, {len(self.kernel.tasks)} tasks>")

    # --- state ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The disk size in bytes (:attr:`config`)."""
        return self.config.size

    @property
    def block(self) -> int:
        """The table block in bytes, the scenarios' ``b`` unit (:attr:`config`)."""
        return self.config.block

    @property
    def design(self) -> str:
        """The read protection (COLO) or the fleecing scheme (:attr:`config`)."""
        return self.config.design

    @property
    def era(self) -> str:
        """The control-plane era, ``"2.8"`` or ``"7.2"`` (:attr:`config`)."""
        return self.config.era

    @property
    def original(self) -> bytes:
        """The secondary disk's initial contents (the ``fill``), ``size`` bytes."""
        if self._original is None:
            self._original = self.original_bytes(0, self.size)
        return self._original

    def original_bytes(self, offset: int, length: int) -> bytes:
        """The initial contents of ``[offset, offset + length)`` (made for that range only)."""
        return np.asarray(self._initial(offset, length), dtype=np.uint8).tobytes()

    @property
    def state(self) -> StrEnum:
        """The replication stage (a :class:`~labkit.replication.ReplicationStage`, a
        ``str``): none, running, failover, failover-failed or done."""
        return self.top.stage

    @property
    def trace(self) -> EventLog:
        return self.kernel.trace

    @property
    def schedule(self) -> list[str]:
        return self.kernel.schedule

    @property
    def backup_cluster(self) -> int:
        """The backup cluster size the job uses (or would use) in bytes."""
        job = self.top.backup_job
        return job.cluster_size if job is not None else self.config.effective_backup_cluster

    def violations(self) -> list[Violation]:
        """Conflicting reads and failover mismatches found so far."""
        return list(self.oracle.violations)

    # --- what the scenarios played here produced (:attr:`result`) ----------------------
    @property
    def dumps(self) -> list[tuple[str, dict[str, Layer | None]]]:
        """``[(title, layers)]``, one per ``dump`` (:attr:`result`)."""
        return self.result.dumps

    @property
    def log(self) -> list[str]:
        """Failed commands, oracle violations, dropped failover errors (:attr:`result`)."""
        return self.result.log

    @property
    def expectation_failures(self) -> list[str]:
        """The ``expect`` and ``vread ... BYTE`` checks that failed (:attr:`result`)."""
        return self.result.expectation_failures

    @property
    def outcomes(self) -> list[CommandOutcome]:
        """One per scenario command played (:attr:`result`)."""
        return self.result.outcomes

    # --- tasks --------------------------------------------------------------------
    def _spawn(self, kind: str, coro_fn: Callable[[str], Coroutine[Any, Any, Any]]) -> Task:
        name = self._names.peek(kind)
        task = self.kernel.spawn(name, lambda: coro_fn(name))
        self._names.take(kind)  # counted only once the task exists
        return task

    def primary_write(self, offset: int, length: int, byte: int) -> Task:
        """An NBD write from the primary to the secondary disk (task ``nbd-write#N``)."""
        offset, length, byte = check_io(self.top, "primary write", offset, length, byte)

        zeroes = byte == 0 and self.graph.era != "2.8"

        async def body(name: str) -> None:
            if zeroes:
                # era 7.2: zeros go as NBD_CMD_WRITE_ZEROES, as labkit's QEMU 7.2 backend
                # sends them (labkit.qemu), punching holes that 7.2's block-copy sees in
                # the secondary disk's block status (block_copy_block_status)
                await self.export.co_write_zeroes(offset, length)
            else:
                await self.export.co_write(offset, bytes([byte]) * length)
            self.oracle.primary_write_done(name, offset, length, byte)

        task = self._spawn("nbd-write", body)
        self.write_bytes[task.name] = byte
        return task

    def vm_write(self, offset: int, length: int, byte: int) -> Task:
        """A write by the secondary VM through the replication node (``vm-write#N``)."""
        offset, length, byte = check_io(self.top, "VM write", offset, length, byte)

        async def body(name: str) -> None:
            await blk_wait_while_drained(self.top)  # the guest device is quiesced
            self.oracle.vm_write_started(name, offset, length, byte)
            ok = False
            try:
                await self.top.co_pwritev(offset, bytes([byte]) * length)
                ok = True
            finally:
                self.oracle.vm_write_done(name, ok)

        task = self._spawn("vm-write", body)
        self.write_bytes[task.name] = byte
        return task

    def vm_read(self, offset: int, length: int) -> Task:
        """A read by the secondary VM through the replication node (``vm-read#N``)."""
        offset, length, _ = check_io(self.top, "VM read", offset, length)

        async def body(name: str) -> bytes:
            await blk_wait_while_drained(self.top)  # the guest device is quiesced
            self.oracle.vm_read_started(name, offset, length)
            data = None
            try:
                data = await self.top.co_preadv(offset, length)
                return data
            finally:
                v = self.oracle.vm_read_done(name, data)
                if v is not None:
                    self.log.append(str(v))

        return self._spawn("vm-read", body)

    def _control(self, kind: str, body: Callable[[], Coroutine[Any, Any, None]],
                 after: Callable[[str], None] | None, wait: bool) -> Task:
        """Spawn a control command (``start#N``...): one at a time, in a drained section.

        QMP runs one command at a time, so a control command first takes the
        :attr:`monitor`.  Then it drains the whole graph
        (``bdrv_drained_begin``, :mod:`labkit.block._drain`): requests in flight
        end first, new guest and NBD requests wait until the command is done —
        what COLO guarantees by stopping both VMs around a checkpoint
        (cpus.c, ``do_vm_stop`` → ``bdrv_drain_all``).  ``after`` (telling the
        oracle) runs inside the section, before any new request starts.
        """
        async def run(name: str) -> None:
            declare_control()  # the graph, the stage, the job: every step is global
            await self.monitor.lock()
            try:
                nodes = list(self.graph.nodes.values())
                await bdrv_drained_begin(nodes, name)
                try:
                    await body()
                    if after is not None:
                        after(name)
                finally:
                    # with any node the command added (the copy-before-write filter
                    # inserted by start joins the section drained)
                    bdrv_drained_end(nodes + [n for n in self.graph.nodes.values()
                                              if n not in nodes], name)
            finally:
                self.monitor.unlock()

        task = self._spawn(kind, run)
        if wait:
            self._run_until(task)
            if task.exception is not None:
                raise task.exception
        return task

    def start(self, wait: bool = True) -> Task:
        """``xen-set-replication enable=true primary=false``: replication_start."""
        return self._control("start", lambda: self.top.start("secondary"),
                             lambda _: self._if_running(self.oracle.started), wait)

    def checkpoint(self, wait: bool = True) -> Task:
        """``xen-colo-do-checkpoint``: replication_do_checkpoint."""
        return self._control("checkpoint", self.top.do_checkpoint,
                             lambda _: self._if_running(self.oracle.checkpoint), wait)

    def _if_running(self, update: Callable[[], None]) -> None:
        """Tell the oracle of a start or checkpoint only if it took effect.

        In ``era="7.2"`` both return without error but do nothing after
        failover or stop (the stage stays ``done``); the oracle must not start
        checking reads again then.
        """
        if self.top.stage is ReplicationStage.RUNNING:
            update()

    def stop(self, wait: bool = True) -> Task:
        """``xen-set-replication enable=false``: replication_stop without failover."""
        async def body() -> None:
            try:
                await self.top.stop(failover=False)
            finally:
                if self.top.stage is ReplicationStage.DONE:
                    self.oracle.stopped()

        return self._control("stop", body, None, wait)

    def failover(self, wait: bool = True) -> Task:
        """``xen-set-replication enable=false failover=true``: stop with failover.

        Returns the ``failover#N`` task; the active commit runs on as ``commit#N``
        (:meth:`run` finishes it), as QEMU's internal job does.  Like QMP, it
        never reports an error: ``xen-set-replication`` drops failover errors
        (they go to :attr:`log`).
        """
        started: list[Task | None] = []

        def after(name: str) -> None:
            # Only the command that started the commit waits for it: a second failover
            # fails (2.8) or is ignored (7.2) while the first one's commit runs.
            if started and started[0] is not None:
                self._failover_pending = name
                self.oracle.failover_started()
                self._check_failover()

        async def body() -> None:
            before = self.top.commit_task
            try:
                await self.top.stop(failover=True)
            except ReplicationError as exc:
                # qmp_xen_set_replication passes errp only when failover is false.
                self.log.append(f"failover: error dropped by xen-set-replication: {exc}")
            commit = self.top.commit_task
            started.append(commit if commit is not before else None)

        return self._control("failover", body, after, wait)

    def _check_failover(self) -> None:
        if self._failover_pending is None:
            return
        stage = self.top.stage
        if stage is ReplicationStage.DONE:
            name, self._failover_pending = self._failover_pending, None
            v = self.oracle.failover_done(name, self.secondary.peek(0, self.size))
            if v is not None:
                self.log.append(str(v))
        elif stage is ReplicationStage.FAILOVER_FAILED:
            name, self._failover_pending = self._failover_pending, None
            self.log.append(f"{name}: failover failed (FAILOVER_FAILED); writes now go to "
                            f"active where active or hidden hold data, else to the secondary "
                            f"disk")

    # --- running ----------------------------------------------------------------
    def step(self) -> Event:
        """One scheduling decision; returns the decision's event."""
        event = self.kernel.step()
        self._check_failover()
        return event

    def run(self) -> None:
        """Step until no task is runnable (:class:`~labkit.errors.Deadlock` if some are stuck)."""
        while self.kernel.has_runnable():
            self.step()
        self.kernel.run()  # raises Deadlock if tasks stay blocked

    def _run_until(self, task: Task) -> None:
        while not task.done:
            self.step()

    def runnable(self) -> list[Task]:
        return self.kernel.runnable()

    # --- what is on the disks ---------------------------------------------------------
    def layers(self) -> dict[str, Layer | None]:
        """Each layer's own contents, and the VM's view (None while the VM gets EIO)."""
        return {"secondary": self.secondary.layer(), "hidden": self.hidden.layer(),
                "active": self.active.layer(), "vm-view": self._view()}

    def layer(self, name: str) -> Layer | None:
        """One of :meth:`layers` (``secondary``, ``hidden``, ``active`` or ``vm-view``),
        without dumping the others: what an ``expect`` reads."""
        if name == "vm-view":
            return self._view()
        node = {"secondary": self.secondary, "hidden": self.hidden,
                "active": self.active}.get(name) if isinstance(name, str) else None
        if node is None:
            raise ArgumentError(f"no layer named {name!r}; layers: {', '.join(LAYER_NAMES)}")
        return node.layer()

    def _view(self) -> Layer | None:
        if self.top.get_io_status() < 0:
            return None
        # The replication node reads through its ``file`` child, so the view changes
        # exactly when that chain does: an unchanged chain reuses the last view (a
        # widget dumps the layers after every decision; most decisions change none).
        file = self.top.file
        key = file.peek_key() if file is not None else None
        if key is not None and self._view_cache is not None and self._view_cache[0] == key:
            return self._view_cache[1]
        # Frozen buffers shared with the disks (copy-on-write): the view costs what
        # the chain holds beyond its bases, not the disk's size.
        frozen = self.top.frozen()
        view = Layer.full(Pieces.lazy(self.size, frozen.peek_pieces) if frozen is not None
                          else self.top.frozen_peek_pieces(0, self.size))
        if key is not None and self.size <= LAYER_CACHE_MAX:
            self._view_cache = (key, view)
        return view

    def drop_layer_caches(self) -> None:
        """Forget every reused dump (each layer's and the VM view's): the next
        :meth:`layers` computes them all from scratch."""
        for node in (self.secondary, self.hidden, self.active):
            node.drop_layer_cache()
        self._view_cache = None

    def provenance(self, task: Task | str) -> list[str]:
        """Which layer served each block of a read task: :func:`labkit.sources.provenance`."""
        return provenance(self, task)

    def dump(self, title: str = "") -> dict[str, Layer | None]:
        """Record the layers under ``title`` in :attr:`dumps` and return them."""
        if not isinstance(title, str):
            raise ArgumentError(f"a dump title is a string, got {title!r}")
        layers = self.layers()
        self.dumps.append((safe_title(title) or f"dump {len(self.dumps) + 1}", layers))
        return layers

    # --- scenarios ------------------------------------------------------------------------
    def play(self, scenario: str | Scenario) -> Lab:
        """Run a scenario (text or parsed) on this lab; returns the lab.

        The lab is already built: a ``# config:`` header in ``scenario`` is not
        applied here (:func:`run_scenario` applies it).  A parsed scenario is parsed
        again from its text against this lab (its ``block`` units and its size).
        What it produces goes to :attr:`result`.
        """
        scenario = self.parsed(scenario)
        Interpreter(self.backend(scenario), scenario, self.result).play()
        return self

    def backend(self, scenario: Scenario) -> SimBackend:
        """The interpreter's backend for this lab (a fleecing lab has its own); a
        scenario written for the other graph is refused here, before anything runs."""
        if scenario_graph(scenario) == "fleecing":
            raise ConfigError("this scenario uses image fleecing's commands (fleece, cread): "
                              "it needs '# config: graph=fleecing' (or graph=\"fleecing\")")
        return SimBackend(self)

    def parsed(self, scenario: object) -> Scenario:
        """``scenario`` (text, or a parsed one parsed again from its text) for this lab:
        :func:`labkit.scenario.parse_for` with its size and its ``b`` unit."""
        return parse_for(scenario, block=self.block, size=self.size)


def check_byte(byte: object, what: str = "byte") -> int:
    """A data byte: an ``int`` 0-255, not a ``bool`` (else ArgumentError / ConfigError)."""
    if isinstance(byte, bool) or not isinstance(byte, int | np.integer):
        raise ArgumentError(f"{what} must be an integer 0-255, got {byte!r}")
    if not 0 <= byte <= 255:
        raise ConfigError(f"{what} must be an integer 0-255, got {byte!r}")
    return int(byte)


def build_secondary(size: int | str = "1M", block: int | str = "4K",
                    hidden_cluster: int | str = "4K", active_cluster: int | str = "4K",
                    design: str | None = None, fill: str | int = "index",
                    policy: str | Policy | None = "fifo", *, era: str = "2.8",
                    backup_cluster: int | str | None = None, graph: str = "colo") -> Lab:
    """Build the standard secondary graph (see the module docstring).

    ``design`` is the read protection (``"none"``, ``"2.8"`` (default), ``"4.0"``);
    ``era`` the control-plane behaviour (``"2.8"`` or ``"7.2"``).  With
    ``graph="fleecing"`` the lab is image fleecing's instead
    (:class:`labkit.fleecing.FleecingLab`) and ``design`` its scheme
    (``"2.12"``, ``"3.0"``, ``"7.2"`` (default)).  The backup cluster is
    QEMU's ``MAX(64 KiB, hidden cluster)`` unless ``backup_cluster`` overrides it
    (not QEMU: for small teaching disks; a power of two from 512 bytes to 2 MiB).
    Every value is checked by :class:`labkit.config.LabConfig`: a bad one raises
    :class:`~labkit.errors.ConfigError` (or :class:`~labkit.errors.ArgumentError`
    for a bad type, :class:`~labkit.errors.LimitError` past a bound) naming the
    keyword and what is allowed.
    """
    cfg = LabConfig.parse(dict(size=size, block=block, hidden_cluster=hidden_cluster,
                               active_cluster=active_cluster, design=design, fill=fill,
                               era=era, backup_cluster=backup_cluster, graph=graph))
    return build_lab(cfg, policy)


#: The labs of the graphs beside COLO's secondary, by ``LabConfig.graph``.  A graph
#: module imports this one (layers import downward), so it registers its lab class here
#: when imported: ``labkit/__init__`` imports :mod:`labkit.fleecing`.
OTHER_GRAPHS: dict[str, Callable[[LabConfig, Policy], Lab]] = {}


def build_lab(config: LabConfig, policy: str | Policy | None = "fifo") -> Lab:
    """The secondary a checked :class:`~labkit.config.LabConfig` describes."""
    # No catch-all re-labelling here: the config is checked already, so an error from
    # building the graph is the engine's own (a GraphError, a StateError...) and keeps its
    # class and traceback.
    chosen = _policy(policy)
    if isinstance(config, LabConfig) and config.graph != "colo":  # else Lab refuses it
        if config.graph not in OTHER_GRAPHS:
            raise StateError(f"the {config.graph!r} graph is not loaded: import labkit (its "
                             f"package face imports every graph module)")
        return OTHER_GRAPHS[config.graph](config, chosen)
    return Lab(config, chosen)


def run_scenario(text: str | Scenario, **config: Any) -> Lab:
    """Build a secondary and play the scenario on it.

    The configuration is the scenario's ``# config:`` header (see
    :mod:`labkit.scenarios`), then ``config`` (the :func:`build_secondary`
    keywords, ``policy`` included) over it: :func:`labkit.scenario.configured`.
    A bad value or a malformed scenario is rejected before anything is built.
    """
    policy = config.pop("policy", "fifo")
    cfg, scenario = configured(text, **config)
    return build_lab(cfg, policy).play(scenario)


__all__ = ["OTHER_GRAPHS", "Lab", "ScenarioRun", "SimBackend", "build_lab", "build_secondary",
           "check_byte", "check_io", "index_fill", "run_scenario"]
