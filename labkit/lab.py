"""The lab: the standard COLO secondary graph, the guest device, scenarios and the oracle.

:func:`build_secondary` wires what QEMU's ``docs/block-replication.txt``
secondary runs (and ``qemu-7.2-observed.md`` builds with ``blockdev-add``)::

    nbd-write#N ─▶ NBD export "secondary" ─▶ secondary-disk (raw) ◀─backing─ hidden (qcow2)
                                                                  ◀─backing─ active (qcow2)
    vm-read#N / vm-write#N ─▶ colo-top (replication, mode=secondary, top-id=colo-top) ─file─▶ active

Every request is a task of one :class:`~labkit.kernel.Kernel`: the primary's
NBD writes (``nbd-write#N``), the secondary VM's reads and writes
(``vm-read#N``, ``vm-write#N``), and the control commands (``start#N``,
``checkpoint#N``, ``stop#N``, ``failover#N``; failover spawns ``commit#N``).
Task names are stable, so a schedule can name them.
"""

from __future__ import annotations

import errno as _errno
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from .block import BlockGraph, NBDServer, Qcow2Node, RawNode
from .block._node import LAYER_CACHE_MAX
from .block._store import Base, ConstantFill, IndexFill, zeros_base
from .errors import (
    ArgumentError,
    BlockError,
    ConfigError,
    LabkitError,
    ReplicationError,
    ScenarioError,
    StateError,
)
from .kernel import FIFO, Event, Kernel, Policy, Task, declare_control
from .layers import SECTOR, Layer
from .oracle import Oracle, Violation
from .replication import DESIGNS, ERAS, ReplicationNode, ReplicationStage
from .scenario import Command, Par, Scenario, parse, parse_size

FILLS = ("index", "zero")
NODE_LAYER = {"secondary-disk": "secondary", "hidden": "hidden", "active": "active"}


@functools.lru_cache(maxsize=8)
def index_fill(size: int, block: int = 4096) -> bytes:
    """``fill="index"``: block k holds ``0x10 + k % 0x70`` (writes in examples use ≥ 0x80).

    Cached (the result is immutable bytes): the explorer builds the same lab
    thousands of times.
    """
    per_block = (0x10 + np.arange(-(-size // block), dtype=np.int64) % 0x70).astype(np.uint8)
    return np.repeat(per_block, block)[:size].tobytes()


def _size(value: int | str, what: str, block: int = 4096) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size like 4096, '4K' or '1M', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_size(value.strip(), block, 0, value, what)
        except ScenarioError:
            pass
    raise ValueError(f"{what} must be a size like 4096, '4K' or '1M', got {value!r}")


def _policy(policy: str | Policy | None) -> Policy:
    if policy is None or policy == "fifo":
        return FIFO()
    if isinstance(policy, Policy):
        return policy
    raise ValueError(f"policy must be 'fifo' or a policy object (lk.Random(seed), "
                     f"lk.Scripted([...]), lk.Chooser(fn)), got {policy!r}")


class Lab:
    """One secondary: its graph, its kernel, its oracle, its dumps.  Use :func:`build_secondary`."""

    def __init__(self, *, size: int, block: int, hidden_cluster: int, active_cluster: int,
                 design: str, fill: str | int, policy: Policy, era: str,
                 backup_cluster: int | None) -> None:
        self.size = size
        self.block = block
        self.design = design
        self.era = era
        self.config = dict(size=size, block=block, hidden_cluster=hidden_cluster,
                           active_cluster=active_cluster, design=design, fill=fill, era=era,
                           backup_cluster=backup_cluster)
        # The initial contents as a function of (offset, length), not as bytes: the
        # disk and the oracle keep only what is written (a 1 GiB disk stays small);
        # ``original`` makes the whole bytes only if someone asks for them.
        if fill == "index":
            initial: Base | None = IndexFill(block)
        elif fill == "zero":
            initial = None
        else:
            initial = ConstantFill(int(fill))
        self._original: bytes | None = None
        self.kernel = Kernel(policy)
        self.graph = BlockGraph()
        self.secondary = self.graph.add(RawNode("secondary-disk", size, fill=initial))
        self.hidden = self.graph.add(Qcow2Node("hidden", size, hidden_cluster,
                                               backing=self.secondary))
        self.active = self.graph.add(Qcow2Node("active", size, active_cluster,
                                               backing=self.hidden))
        self.top = self.graph.add(ReplicationNode(
            "colo-top", self.active, self.graph, mode="secondary", top_id="colo-top",
            design=design, era=era, backup_cluster_override=backup_cluster))
        self.nbd = NBDServer()
        self.export = self.nbd.add(self.secondary, "secondary", writable=True)
        self.oracle = Oracle((size, initial or zeros_base), block)
        self.dumps: list[tuple[str, dict[str, Layer | None]]] = []
        self.log: list[str] = []
        self.expectation_failures: list[str] = []
        self._counters: dict[str, int] = {}
        self._failover_pending: str | None = None
        self._write_bytes: dict[str, int] = {}  # write task -> its byte (see writers())
        self._view_cache: tuple[tuple, Layer] | None = None  # see layers()

    def __repr__(self) -> str:
        return (f"<Lab {self.size} bytes, design {self.design!r}, replication "
                f"{self.state}, {len(self.kernel.tasks)} tasks>")

    # --- state ------------------------------------------------------------------
    @property
    def original(self) -> bytes:
        """The secondary disk's initial contents (the ``fill``), ``size`` bytes."""
        if self._original is None:
            fill = self.config["fill"]
            if fill == "index":
                self._original = index_fill(self.size, self.block)
            elif fill == "zero":
                self._original = bytes(self.size)
            else:
                self._original = bytes([fill]) * self.size
        return self._original

    @property
    def state(self) -> str:
        """The replication stage: none, running, failover, failover-failed or done."""
        return self.top.stage.value

    @property
    def trace(self) -> list[Event]:
        return self.kernel.trace

    @property
    def schedule(self) -> list[str]:
        return self.kernel.schedule

    @property
    def backup_cluster(self) -> int:
        """The backup cluster size the job uses (or would use) in bytes."""
        job = self.top.backup_job
        if job is not None:
            return job.cluster_size
        override = self.config["backup_cluster"]
        return override or max(1 << 16, self.hidden.cluster_size)

    def writers(self) -> dict[int, list[str]]:
        """Who wrote each byte value: ``{0xbb: ["nbd-write#1"], 0x15: ["original"], ...}``.

        ``"original"`` for every byte of the initial fill, then the write tasks
        (the primary's and the VM's, in the order they were issued) that write
        that byte.  A copy — the backup's COW into hidden, the failover commit —
        moves bytes without changing who wrote them, so the plots can name the
        writer of any block's content from its byte value alone.
        """
        fill = self.config["fill"]
        if fill == "index":  # block k holds 0x10 + k % 0x70 (see index_fill)
            nblocks = -(-self.size // self.block)
            original = range(0x10, 0x10 + min(nblocks, 0x70))
        else:
            original = range(0, 1) if fill == "zero" else range(int(fill), int(fill) + 1)
        out: dict[int, list[str]] = {b: ["original"] for b in original}
        for name, byte in self._write_bytes.items():
            out.setdefault(byte, []).append(name)
        return out

    def violations(self) -> list[Violation]:
        """Conflicting reads and failover mismatches found so far."""
        return list(self.oracle.violations)

    # --- tasks --------------------------------------------------------------------
    def _spawn(self, kind: str, coro_fn: Callable[[str], Coroutine[Any, Any, Any]]) -> Task:
        n = self._counters.get(kind, 0) + 1
        name = f"{kind}#{n}"
        task = self.kernel.spawn(name, coro_fn(name))
        self._counters[kind] = n
        return task

    def _check_io(self, what: str, offset: int, length: int, byte: int | None = None) -> None:
        self.top.check_request(offset, length, what)
        if length == 0:
            raise BlockError(_errno.EINVAL, f"{what}: length must be at least one 512-byte "
                                            f"sector")
        if byte is not None and (not isinstance(byte, int) or not 0 <= byte <= 255):
            raise ValueError(f"{what}: byte must be an integer 0-255, got {byte!r}")

    def primary_write(self, offset: int, length: int, byte: int) -> Task:
        """An NBD write from the primary to the secondary disk (task ``nbd-write#N``)."""
        self._check_io("primary write", offset, length, byte)

        async def body(name: str) -> None:
            await self.export.co_write(offset, bytes([byte]) * length)
            self.oracle.primary_write_done(name, offset, length, byte)

        task = self._spawn("nbd-write", body)
        self._write_bytes[task.name] = byte
        return task

    def vm_write(self, offset: int, length: int, byte: int) -> Task:
        """A write by the secondary VM through the replication node (``vm-write#N``)."""
        self._check_io("VM write", offset, length, byte)

        async def body(name: str) -> None:
            self.oracle.vm_write_started(name, offset, length, byte)
            ok = False
            try:
                await self.top.co_pwritev(offset, bytes([byte]) * length)
                ok = True
            finally:
                self.oracle.vm_write_done(name, ok)

        task = self._spawn("vm-write", body)
        self._write_bytes[task.name] = byte
        return task

    def vm_read(self, offset: int, length: int) -> Task:
        """A read by the secondary VM through the replication node (``vm-read#N``)."""
        self._check_io("VM read", offset, length)

        async def body(name: str) -> bytes:
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
        async def run(name: str) -> None:
            declare_control()  # the graph, the stage, the job: every step is global
            await body()
            if after is not None:
                after(name)

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
        def after(name: str) -> None:
            if self.top.stage is ReplicationStage.FAILOVER:
                self._failover_pending = name
                self._check_failover()

        async def body() -> None:
            try:
                await self.top.stop(failover=True)
            except ReplicationError as exc:
                # qmp_xen_set_replication passes errp only when failover is false.
                self.log.append(f"failover: error dropped by xen-set-replication: {exc}")

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
        while self.kernel.runnable():
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
        view = None
        if self.top.get_io_status() >= 0:
            # The replication node reads through its ``file`` child, so the view changes
            # exactly when that chain does: an unchanged chain reuses the last view (a
            # widget dumps the layers after every decision; most decisions change none).
            file = self.top.file
            key = file.peek_key() if file is not None else None
            if key is not None and self._view_cache is not None and self._view_cache[0] == key:
                view = self._view_cache[1]
            else:
                view = Layer.full(self.top.peek(0, self.size))
                if key is not None and self.size <= LAYER_CACHE_MAX:
                    self._view_cache = (key, view)
        return {"secondary": self.secondary.layer(), "hidden": self.hidden.layer(),
                "active": self.active.layer(), "vm-view": view}

    def provenance(self, task: Task | str) -> list[str]:
        """Which layer served each block of a read task, from the trace.

        One entry per block: ``"active"``, ``"hidden"`` or ``"secondary"`` (the
        layer whose data or zero cluster the read used), ``"mixed"`` when
        sectors of the block came from different layers, ``""`` outside the read.
        Read from the events' typed fields: a ``point`` whose ``op`` is
        ``io-read`` and the ``read-zero`` events, on the layers' nodes.  An
        unknown task raises :class:`~labkit.errors.ConfigError`, a value that
        is not a task :class:`~labkit.errors.ArgumentError`.
        """
        if isinstance(task, Task):
            name = task.name
        elif isinstance(task, str):
            name = task
        else:
            raise ArgumentError(f"provenance needs a task or a task name, got "
                                f"{type(task).__name__}")
        if name not in self.kernel.tasks:
            raise ConfigError(f"no task named {name!r}; tasks: "
                              f"{', '.join(self.kernel.tasks) or '(none yet)'}")
        served = np.full(self.size // SECTOR, "", dtype=object)
        for e in self.kernel.trace:
            if e.task != name or e.node not in NODE_LAYER:
                continue
            if (e.kind == "point" and e.op == "io-read") or e.kind == "read-zero":
                served[e.offset // SECTOR:(e.offset + e.length) // SECTOR] = NODE_LAYER[e.node]
        per = self.block // SECTOR
        out = []
        for b in range(-(-self.size // self.block)):
            values = set(served[b * per:(b + 1) * per]) - {""}
            out.append(values.pop() if len(values) == 1 else ("mixed" if values else ""))
        return out

    def dump(self, title: str = "") -> dict[str, Layer | None]:
        """Record the layers under ``title`` in :attr:`dumps` and return them."""
        layers = self.layers()
        self.dumps.append((title or f"dump {len(self.dumps) + 1}", layers))
        return layers

    # --- scenarios ------------------------------------------------------------------------
    def play(self, scenario: str | Scenario) -> Lab:
        """Run a scenario (text or parsed) on this lab; returns the lab."""
        if isinstance(scenario, str):
            scenario = parse(scenario, block=self.block, size=self.size)
        for step in scenario.steps:
            if isinstance(step, Par):
                tasks = [(c, self._spawn_command(c)) for c in step.commands]
                self._settle(tasks)
            elif step.op == "dump":
                self.dump(step.title)
            elif step.op == "expect":
                self._expect(step)
            else:
                self._settle([(step, self._spawn_command(step))])
        return self

    def _spawn_command(self, c: Command) -> Task:
        if c.op == "pwrite":
            return self.primary_write(c.offset, c.length, c.byte)  # type: ignore[arg-type]
        if c.op == "vwrite":
            return self.vm_write(c.offset, c.length, c.byte)  # type: ignore[arg-type]
        if c.op == "vread":
            return self.vm_read(c.offset, c.length)
        return getattr(self, c.op)(wait=False)

    def _settle(self, tasks: list[tuple[Command, Task]]) -> None:
        self.run()
        for cmd, task in tasks:
            if task.exception is not None:
                self.log.append(f"line {cmd.line}: {cmd.text}: {task.name} failed: "
                                f"{task.exception}")
            elif cmd.op == "vread" and cmd.what is not None:
                why = vread_failure(cmd, task.result, self.original)
                if why is not None:
                    self._expect_failed(cmd, f"{task.name} {why}")
        for task in self.kernel.tasks.values():  # e.g. commit#N spawned by failover
            if task.name.startswith("commit#") and task.exception is not None:
                msg = f"{task.name} failed: {task.exception}"
                if msg not in self.log:
                    self.log.append(msg)

    def _expect_failed(self, cmd: Command, why: str) -> None:
        self.expectation_failures.append(f"line {cmd.line}: {cmd.text}: {why}")

    def _expect(self, cmd: Command) -> None:
        why = expect_failure(cmd, self.layers()[cmd.layer or ""], self.original, self.state)
        if why is not None:
            self._expect_failed(cmd, why)


def expect_failure(cmd: Command, layer: Layer | None, original: bytes,
                   state: str = "") -> str | None:
    """Why ``expect LAYER OFF LEN WHAT`` does not hold on ``layer``; None when it holds.

    ``layer`` is None when it cannot be read (the VM view before start);
    ``state`` is the replication stage, for that message.  ``original`` is the
    secondary disk's initial fill (for ``orig``).  Shared by the simulator and
    the real-QEMU backend, so both judge alike.
    """
    if layer is None:
        return f"layer {cmd.layer} cannot be read now (replication {state})"
    s0, s1 = cmd.offset // SECTOR, (cmd.offset + cmd.length) // SECTOR
    alloc = layer.alloc[s0:s1]
    data = layer.data[cmd.offset:cmd.offset + cmd.length]
    if cmd.what == "unalloc":
        ok, why = not alloc.any(), "some sectors are allocated"
    elif cmd.what == "alloc":
        ok, why = bool(alloc.all()), "some sectors are not allocated"
    elif cmd.what == "orig":
        ok = bool(alloc.all()) and data == original[cmd.offset:cmd.offset + cmd.length]
        why = "the data is not the original"
    elif cmd.what == "zero":
        ok, why = bool(alloc.all()) and not any(data), "the data is not all zero"
    else:
        ok = bool(alloc.all()) and data == bytes([cmd.byte or 0]) * cmd.length
        why = f"the data is not all {cmd.byte:#04x}"
    return None if ok else why


def vread_failure(cmd: Command, data: bytes, original: bytes) -> str | None:
    """Why the ``data`` a ``vread OFF LEN BYTE|orig`` returned is not what it expects.

    None when it is (or when the ``vread`` expects nothing).  The reason reads
    after the task's name: ``"read other data than 0xbb"``.  Shared by the
    simulator and the real-QEMU backend.
    """
    if cmd.what is None:
        return None
    want = (original[cmd.offset:cmd.offset + cmd.length] if cmd.what == "orig"
            else bytes([cmd.byte or 0]) * cmd.length)
    if data == want:
        return None
    what = "the original" if cmd.what == "orig" else f"{cmd.byte:#04x}"
    return f"read other data than {what}"


class ScenarioRun:
    """A scenario played one scheduling decision at a time: :meth:`Lab.play`, step by step.

    The widgets drive a scenario with it.  Each :meth:`step` is one decision of
    the lab's policy; between decisions, exactly as in :meth:`Lab.play`, a
    command (or a ``par`` block) whose tasks have all finished is checked and
    the next one is started, and ``dump`` / ``expect`` lines take effect.
    :attr:`current` is the scenario step whose tasks are running (None when
    :attr:`done`).  Invariant: while not done, some task is runnable.
    """

    def __init__(self, lab: Lab, scenario: str | Scenario) -> None:
        if isinstance(scenario, str):
            scenario = parse(scenario, block=lab.block, size=lab.size)
        self.lab = lab
        self.scenario = scenario
        self.index = 0  # index into scenario.steps of the step being run
        self.started_at = 0  # len(lab.schedule) when the current step's tasks started
        self._tasks: list[tuple[Command, Task]] | None = None
        self._advance()

    def _advance(self) -> None:
        lab, steps = self.lab, self.scenario.steps
        while self.index < len(steps):
            if self._tasks is not None:
                if lab.kernel.runnable():
                    return
                tasks, self._tasks = self._tasks, None
                self.index += 1
                lab._settle(tasks)  # nothing runnable: Deadlock if stuck, then the checks
                continue
            step = steps[self.index]
            self.started_at = len(lab.schedule)
            if isinstance(step, Par):
                self._tasks = [(c, lab._spawn_command(c)) for c in step.commands]
            elif step.op == "dump":
                lab.dump(step.title)
                self.index += 1
            elif step.op == "expect":
                lab._expect(step)
                self.index += 1
            else:
                self._tasks = [(step, lab._spawn_command(step))]

    @property
    def done(self) -> bool:
        """True once every step of the scenario has been played and settled."""
        return self.index >= len(self.scenario.steps)

    @property
    def current(self) -> Command | Par | None:
        """The scenario step whose tasks are running now (None when done)."""
        return None if self.done else self.scenario.steps[self.index]

    def step(self) -> Event:
        """One scheduling decision (the lab's policy picks); returns its ``run`` event."""
        if self.done:
            raise StateError("the scenario has been played to its end; nothing left to step")
        event = self.lab.step()
        self._advance()
        return event

    def run(self) -> None:
        """Play the rest of the scenario."""
        while not self.done:
            self.step()


def build_secondary(size: int | str = "1M", block: int | str = "4K",
                    hidden_cluster: int | str = "4K", active_cluster: int | str = "4K",
                    design: str = "2.8", fill: str | int = "index",
                    policy: str | Policy | None = "fifo", *, era: str = "2.8",
                    backup_cluster: int | str | None = None) -> Lab:
    """Build the standard secondary graph (see the module docstring).

    ``design`` is the read protection (``"none"``, ``"2.8"``, ``"4.0"``); ``era``
    the control-plane behaviour (``"2.8"`` or ``"7.2"``).  The backup cluster is
    QEMU's ``MAX(64 KiB, hidden cluster)`` unless ``backup_cluster`` overrides it
    (not QEMU: for small teaching disks).
    """
    block_b = _size(block, "block")
    if block_b <= 0 or block_b % SECTOR:
        raise ValueError(f"block must be a positive multiple of {SECTOR} bytes, got {block!r}")
    size_b = _size(size, "size", block_b)
    if size_b <= 0 or size_b % SECTOR:
        raise ValueError(f"size must be a positive multiple of {SECTOR} bytes, got {size!r}")
    hidden_b = _size(hidden_cluster, "hidden_cluster")
    active_b = _size(active_cluster, "active_cluster")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(map(repr, DESIGNS))}, got {design!r}")
    if era not in ERAS:
        raise ValueError(f"era must be one of {', '.join(map(repr, ERAS))}, got {era!r}")
    if not (fill in FILLS or (isinstance(fill, int) and not isinstance(fill, bool)
                              and 0 <= fill <= 255)):
        raise ValueError(f"fill must be 'index', 'zero' or a byte 0-255, got {fill!r}")
    backup_b = None if backup_cluster is None else _size(backup_cluster, "backup_cluster")
    try:
        return Lab(size=size_b, block=block_b, hidden_cluster=hidden_b, active_cluster=active_b,
                   design=design, fill=fill, policy=_policy(policy), era=era,
                   backup_cluster=backup_b)
    except LabkitError as exc:
        raise ValueError(str(exc)) from None


def run_scenario(text: str | Scenario, **config: Any) -> Lab:
    """Build a secondary with ``config`` (the :func:`build_secondary` keywords) and play
    the scenario on it.  A malformed scenario is rejected before anything runs."""
    lab = build_secondary(**config)
    scenario = text if isinstance(text, Scenario) else parse(text, block=lab.block,
                                                              size=lab.size)
    return lab.play(scenario)


__all__ = ["Lab", "ScenarioRun", "build_secondary", "expect_failure", "index_fill",
           "run_scenario", "vread_failure"]
