"""Image fleecing on a real QEMU 7.2: the graph over QMP, scenarios, the comparison.

:class:`QemuFleecing` builds what ``tests/qemu-iotests/tests/image-fleecing``
builds, in a private temporary directory, with ``-machine none`` (no guest:
the guest's disk I/O goes through a writable NBD export, ``guest``, whose
BlockBackend stands where the guest device's would)::

    secondary.raw (node live-disk; NBD export "guest")
      ^ backing
    fleece.qcow2 (node fleece)

``fleece`` then runs one of the two schemes image-fleecing tests:

* the backup job (:attr:`scheme` ``"3.0"``, and ``"2.12"`` whose race QEMU
  7.2 no longer has): ``blockdev-backup job-id=fleecing device=live-disk
  target=fleece sync=none`` — QEMU 7.2 inserts a copy-before-write filter
  above ``live-disk`` (the ``guest`` export moves onto it) whose writes to
  ``fleece`` are serialising (``block_copy_state_new``'s ``is_fleecing``) —
  and the read-only export ``fleece`` on node ``fleece``;
* copy-before-write + snapshot-access (``"7.2"``): ``blockdev-add`` of
  ``fl-cbw`` (``file`` live-disk, ``target`` fleece, optional ``bitmap``
  and ``on-cbw-error``), the guest's BlockBackend moved onto it (image-fleecing
  does ``qom-set ... drive fl-cbw``; here the ``guest`` export is deleted
  and added again on ``fl-cbw``), ``blockdev-add`` of ``fl-access``
  (``snapshot-access``, ``file`` fl-cbw) and the read-only export ``fleece``
  on it.  A ``fleece OFF LEN`` bitmap is a dirty bitmap on ``live-disk``
  made dirty over that range by rewriting its own data, then disabled — as
  an incremental backup's bitmap would be.

:func:`compare_fleecing` plays a sequential fleecing scenario on the
simulator (``graph="fleecing"``, the same scheme) and on QEMU, and compares
every dump's ``live``, ``fleece`` and ``snapshot`` layers sector by sector,
each command's outcome (failed on one side only, or with another errno), the
failed checks and the oracle's violations.

:func:`compare_fleecing_race` forces the orders of a fleecing race
(``fleece`` then ``par { cread ...; vwrite ... }``) on QEMU with a blkdebug
node under each image (``dbg-live``, ``dbg-fl``, breakpoints set through the
read-only drives ``ctl-live`` / ``ctl-fl``, as :mod:`labkit.qemu._races` does
for COLO) and on the simulator in the same order (:data:`FLEECING_HOLDS`):
the client's read held at its read of the live disk, or the guest write held
at its copy's write into the overlay; the other request is sent and counted
*blocked* when it is still pending after :data:`FLEECING_BLOCK_WAIT`; then the
release.  Compared: who was blocked, the bytes read, the final layers.
``labkit compare FILE`` runs either, by the scenario.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit.config import LabConfig
from labkit.errors import ConfigError, ScenarioError
from labkit.fleecing import FleecingLab, FleecingStage
from labkit.interpret import Interpreter
from labkit.kernel import Chooser
from labkit.lab import build_lab, check_byte
from labkit.layers import SECTOR, Layer
from labkit.oracle import FleecingOracle
from labkit.qemu._compare import Comparison
from labkit.qemu._diff import compare_dumps, compare_runs
from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._images import create_overlay
from labkit.qemu._nbd import NbdClient, NbdError
from labkit.qemu._probe import qemu_available
from labkit.qemu._races import _Breakpoints
from labkit.qemu._run import QemuBackend, QemuRun, refuse_par
from labkit.qemu._secondary import QemuSecondary, check_backup_cluster
from labkit.qemu._session import check_timeout
from labkit.scenario import Command, Par, Scenario, configured, scenario_graph

FLEECING_LAYERS = ("live", "fleece", "snapshot")
#: With ``blkdebug=True``: the blkdebug node under each image, and its control drive.
BLKDEBUG_FLEECING = {"dbg-live": "ctl-live", "dbg-fl": "ctl-fl"}
_NODES = {"live": "live-disk", "fleece": "fleece"}


class QemuFleecing(QemuSecondary):
    """A real QEMU 7.2 with the fleecing graph (see the module docstring).

    ``config`` is a :class:`~labkit.config.LabConfig` with ``graph="fleecing"``:
    its ``design`` is the scheme — ``"2.12"``, ``"3.0"`` (both: the backup job)
    or ``"7.2"`` (copy-before-write + snapshot-access) — and its
    ``hidden_cluster`` the overlay's qcow2 cluster size.  ``blkdebug=True`` puts
    blkdebug nodes under both images (:data:`BLKDEBUG_FLEECING`);
    ``fail_copy_write=True`` gives the overlay's a one-shot ``inject-error`` rule
    on ``write_aio`` (blkdebug takes rules when it is opened): the first copy
    fails with EIO.  Use it as a context manager.
    """

    def __init__(self, config: LabConfig, *, timeout: float = 10.0,
                 qemu: str = "qemu-system-x86_64", blkdebug: bool = False,
                 fail_copy_write: bool = False) -> None:
        # blkdebug's inject-error rule on the overlay, given when it is opened: its first
        # data write (the first copy's) fails with EIO
        if fail_copy_write and not blkdebug:
            raise ConfigError("fail_copy_write=True needs blkdebug=True (the rule is "
                              "blkdebug's inject-error)")
        self.fail_copy_write = fail_copy_write
        self.fleecing = False
        super().__init__(config, timeout=timeout, qemu=qemu, blkdebug=blkdebug)
        self.scheme = self.config.design

    def _check_config(self, config: LabConfig) -> None:
        if config.graph != "fleecing":
            raise ConfigError(f"QemuFleecing runs image fleecing: its LabConfig needs "
                              f"graph='fleecing', got {config.graph!r}")
        check_backup_cluster(config, "overlay")

    @property
    def cbw_cluster(self) -> int:
        """block-copy's cluster: ``MAX(64 KiB, target cluster)`` (``backup_cluster`` other
        than that is refused)."""
        return self.config.effective_backup_cluster

    def _create_images(self, workdir: Path, qemu_img: str) -> None:
        """``qemu-img create -f qcow2 -b secondary.raw -F raw fleece.qcow2``."""
        create_overlay(qemu_img, workdir, "fleece.qcow2", "secondary.raw", "raw",
                       self.hidden_cluster, self.timeout)

    def _build_graph(self, exe: str, workdir: Path) -> None:
        d = str(workdir)
        self.qmp("blockdev-add", {"driver": "raw", "node-name": "live-disk",
                                  "file": self._image_file("dbg-live", f"{d}/secondary.raw")})
        overlay_file = self._image_file("dbg-fl", f"{d}/fleece.qcow2")
        if self.fail_copy_write:
            overlay_file["inject-error"] = [{"event": "write_aio", "errno": _errno.EIO,
                                             "once": True}]
        self.qmp("blockdev-add", {"driver": "qcow2", "node-name": "fleece",
                                  "file": overlay_file, "backing": "live-disk"})
        self.qmp("nbd-server-start", {"addr": {"type": "unix",
                                               "data": {"path": self.nbd_socket}}})
        self._export("guest", "live-disk", writable=True)
        if self.blkdebug:  # named read-only BlockBackends to set breakpoints through
            self._add_breakpoint_drives(BLKDEBUG_FLEECING)

    # -- the commands ------------------------------------------------------------------

    def fleece(self, bitmap: tuple[int, int] | None = None,
               on_cbw_error: str | None = None) -> None:
        """Start fleecing with this session's scheme (see the module docstring)."""
        if self.fleecing:
            # what QEMU answers to the second blockdev-add / blockdev-backup
            self.qmp("blockdev-add" if self.scheme == "7.2" else "blockdev-backup",
                      {"driver": "copy-before-write", "node-name": "fl-cbw",
                       "file": "live-disk", "target": "fleece"} if self.scheme == "7.2" else
                      {"job-id": "fleecing", "device": "live-disk", "target": "fleece",
                       "sync": "none"})
            return
        if self.scheme != "7.2":
            self.qmp("blockdev-backup", {"job-id": "fleecing", "device": "live-disk",
                                          "target": "fleece", "sync": "none"})
            self._export("fleece", "fleece", writable=False)
            self.fleecing = True
            return
        opts: dict[str, Any] = {"driver": "copy-before-write", "node-name": "fl-cbw",
                                "file": "live-disk", "target": "fleece"}
        if bitmap is not None:
            self.qmp("block-dirty-bitmap-add", {"node": "live-disk", "name": "fl-bitmap",
                                                 "granularity": self.cbw_cluster})
            off, length = bitmap
            self.vwrite_data(off, self.vread(off, length))  # dirty it, data unchanged
            self.qmp("block-dirty-bitmap-disable", {"node": "live-disk", "name": "fl-bitmap"})
            opts["bitmap"] = {"node": "live-disk", "name": "fl-bitmap"}
        if on_cbw_error is not None:
            opts["on-cbw-error"] = on_cbw_error
        self.qmp("blockdev-add", opts)
        # qom-set ... drive fl-cbw: the guest's BlockBackend moves onto the filter
        self._nbd_drop("guest")
        self._delete_export("exp-guest")
        self._export("guest", "fl-cbw", writable=True)
        self.qmp("blockdev-add", {"driver": "snapshot-access", "node-name": "fl-access",
                                   "file": "fl-cbw"})
        self._export("fleece", "fl-access", writable=False)
        self.fleecing = True

    def vwrite(self, off: int, length: int, byte: int) -> None:
        """The guest's write (export ``guest``)."""
        self._check_request("guest write", "export 'guest'", off, length)
        self.vwrite_data(off, bytes([check_byte(byte, "guest write: byte")]) * length)

    def vwrite_data(self, off: int, data: bytes) -> None:
        self._nbd_io("guest", f"guest write on export 'guest' at {off}",
                     lambda c: c.pwrite(data, off))

    def vread(self, off: int, length: int, *, df: bool = True) -> bytes:
        """The guest's read (export ``guest``)."""
        self._check_request("guest read", "export 'guest'", off, length)
        return self._nbd_io("guest", f"guest read on export 'guest' at {off}",
                            lambda c: c.pread(off, length, df=df))

    def cread(self, off: int, length: int) -> bytes:
        """The backup client's read of export ``fleece`` (``NBD_CMD_FLAG_DF``: a failed
        read gets an error reply and the connection stays)."""
        self._check_request("client read", "export 'fleece'", off, length)
        return self._nbd_io("fleece", f"client read on export 'fleece' at {off}",
                            lambda c: c.pread(off, length, df=True))

    def snapshot(self) -> Layer | None:
        """What the client reads, per block-copy cluster; a cluster the client may not
        read (``-EACCES``) is not allocated and reads as zeros.  None before fleece."""
        if not self.fleecing:
            return None
        cs = self.cbw_cluster
        data = bytearray(self.size)
        alloc = np.zeros(self.size // SECTOR, dtype=bool)
        for lo in range(0, self.size, cs):
            n = min(cs, self.size - lo)
            try:
                data[lo:lo + n] = self.cread(lo, n)
            except NbdError:
                continue
            alloc[lo // SECTOR:(lo + n) // SECTOR] = True
        return Layer(bytes(data), alloc)

    def dump(self) -> dict[str, Layer | None]:
        return {"live": self.dump_node("live-disk"), "fleece": self.dump_node("fleece"),
                "snapshot": self.snapshot()}


class QemuFleecingRun(QemuRun):
    """A fleecing scenario's results on QEMU, shaped like a :class:`~labkit.fleecing.FleecingLab`
    after a run."""

    def __init__(self, scenario: Scenario, config: dict[str, Any]) -> None:
        super().__init__(scenario, config)
        self.design = config["design"]
        self.fleecing_oracle = FleecingOracle(self.size, self._initial, self.block)
        self.oracle = self.fleecing_oracle  # type: ignore[assignment]

    def _initial(self, offset: int, length: int) -> np.ndarray:
        return np.frombuffer(self.original, dtype=np.uint8)[offset:offset + length].copy()

    def violations(self) -> list[Any]:
        return list(self.fleecing_oracle.violations)

    def play(self, q: QemuSecondary) -> None:
        assert isinstance(q, QemuFleecing)
        self.version = q.version
        self.config["qemu_version"] = q.version
        refuse_par(self.scenario)
        Interpreter(QemuFleecingBackend(self, q), self.scenario, self).play()
        v = self.fleecing_oracle.live_done("end", q.vread(0, self.size))
        if v is not None:
            self.log.append(str(v))


class QemuFleecingBackend(QemuBackend):
    """The interpreter's backend on a :class:`QemuFleecing` (sequential): COLO's
    :class:`~labkit.qemu._run.QemuBackend` with fleecing's commands and layers."""

    run: QemuFleecingRun
    q: QemuFleecing

    def _nbd_message(self, c: Command, exc: NbdError) -> str:
        code = _errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return (f"NBD {c.op} [{c.offset:#x}+{c.length:#x}]: "
                f"{os.strerror(exc.errno or 0)} ({code})")

    def _run(self, c: Command, name: str) -> bytes | None:
        q, oracle, run = self.q, self.run.fleecing_oracle, self.run
        if c.op == "fleece":
            bitmap = (c.offset, c.length) if c.length else None
            was = q.fleecing
            q.fleece(bitmap, c.what)
            if not was:
                oracle.fleece_started(run.design, bitmap, c.what)
                run.state = FleecingStage.FLEECING
            return None
        if c.op == "vwrite":
            oracle.guest_write_started(name, c.offset, c.length, c.byte or 0)
            error: BaseException | None = None
            try:
                q.vwrite(c.offset, c.length, c.byte or 0)
            except NbdError as exc:
                error = exc
                raise
            finally:
                v = oracle.guest_write_done(name, error)
                if v is not None:
                    run.log.append(str(v))
            return None
        if c.op == "vread":
            oracle.guest_read_started(name, c.offset, c.length)
            data = None
            try:
                data = q.vread(c.offset, c.length)
                return data
            finally:
                v = oracle.guest_read_done(name, data)
                if v is not None:
                    run.log.append(str(v))
        if c.op == "cread":
            data = None
            errno: int | None = None
            try:
                if not q.fleecing:
                    raise NbdError(_errno.ENOENT, "NBD export 'fleece' not found")
                data = q.cread(c.offset, c.length)
                return data
            except NbdError as exc:
                errno = exc.errno
                raise
            finally:
                v = oracle.client_read_done(name, c.offset, c.length, data, errno)
                if v is not None:
                    run.log.append(str(v))
        if c.op == "inject-error":
            raise ScenarioError(c.line, c.text, "inject-error is the simulator's: QEMU's "
                                                "blkdebug takes its rules when the image is "
                                                "opened")
        raise ScenarioError(c.line, c.text, f"{c.op!r} is not a fleecing command")

    def layer(self, name: str) -> Layer | None:
        if name in _NODES:
            return self.q.dump_node(_NODES[name])
        return self.q.snapshot()


def fleecing_config(text: str, **explicit: Any) -> tuple[LabConfig, Scenario]:
    """A fleecing scenario's configuration (its header under ``explicit``:
    :func:`labkit.scenario.configured`), checked for QEMU, and the scenario parsed.

    The copy's cluster on QEMU is ``MAX(64 KiB, overlay cluster)``: a
    ``backup_cluster`` override (simulator-only) is refused here.
    """
    cfg, scenario = configured(text, **explicit)
    if cfg.graph != "fleecing":
        raise ScenarioError(0, "# config:", "a fleecing comparison needs 'graph=fleecing'")
    try:
        check_backup_cluster(cfg, "overlay")
    except ConfigError as exc:
        raise ScenarioError(0, "# config:", str(exc)) from None
    return cfg, scenario


def run_fleecing(text: str, *, design: str | None = None, timeout: float = 10.0,
                 qemu: str = "qemu-system-x86_64", **explicit: Any) -> QemuFleecingRun:
    """Play a sequential fleecing scenario on QEMU 7.2 (see :class:`QemuFleecing`)."""
    config, scenario = fleecing_config(text, design=design, **explicit)
    if scenario_graph(scenario) == "colo":
        raise ScenarioError(0, "", "this scenario uses COLO's commands; use labkit.qemu.compare")
    refuse_par(scenario)
    check_timeout(timeout)
    reason = qemu_available(qemu)
    if reason is not None:
        raise QemuNotAvailable(reason)
    run = QemuFleecingRun(scenario, config.keywords())
    with QemuFleecing(config, timeout=timeout, qemu=qemu) as q:
        run.play(q)
    return run


def compare_fleecing(text: str, *, design: str | None = None, timeout: float = 10.0,
                     qemu: str = "qemu-system-x86_64", **explicit: Any) -> Comparison:
    """Play a sequential fleecing scenario on the simulator and on QEMU 7.2; compare.

    ``design`` is the scheme (both sides run it: QEMU 7.2 runs 2.12's and 3.0's
    backup-job scheme as 7.2 does, serialising).  Every dump's layers are
    compared sector by sector (bytes and allocation), then the outcomes (one
    side failing, or another errno), failed checks and violations.
    """
    q = run_fleecing(text, design=design, timeout=timeout, qemu=qemu, **explicit)
    config = dict(q.config)
    config.pop("backend", None)
    config.pop("qemu_version", None)
    sim = build_lab(LabConfig(**config)).play(q.scenario)
    # fleece's messages are each side's own (QEMU's QMP errors, the simulator's words)
    differences = compare_runs(sim, q, config["block"], FLEECING_LAYERS,
                               by_errno=("vwrite", "vread", "cread"), by_message=False)
    return Comparison(q.scenario, dict(config, era="7.2"), sim, q, differences)


# --- a par block forced on QEMU (blkdebug) and on the simulator ---------------------------

#: The orders forced for ``par { cread ...; vwrite ... }``: (held request, where, the
#: blkdebug drive and event, the simulator's node and event kind where it is held).
FLEECING_HOLDS = {
    "client-read at live-disk": ("cread", "ctl-live", "read_aio", "live-disk", "io-read"),
    "vm-write at the copy's write to fleece": ("vwrite", "ctl-fl", "write_aio", "fleece",
                                              "io-write"),
    "vm-write at the copy's read of live-disk": ("vwrite", "ctl-live", "read_aio", "live-disk",
                                                "io-read"),
    "vm-write at its own write to live-disk": ("vwrite", "ctl-live", "write_aio", "live-disk",
                                              "io-write"),
}
#: How long a request may stay pending before it counts as blocked (seconds); an
#: unblocked request completes in milliseconds here.
FLEECING_BLOCK_WAIT = 1.0


@dataclass
class ForcedOrder:
    """One forced order of a fleecing race, on one side: who was blocked while the
    other was held, what each read returned, the final layers."""

    hold: str
    blocked: list[str] = field(default_factory=list)
    reads: dict[str, bytes | None] = field(default_factory=dict)
    layers: dict[str, Layer | None] = field(default_factory=dict)
    not_reached: str = ""


def _race_parts(text: str, scenario: Scenario) -> tuple[Scenario, list[Command],
                                                         list[Command]]:
    if len(scenario.steps) < 2 or not isinstance(scenario.steps[1], Par) \
            or any(isinstance(st, Par) for st in scenario.steps[2:]) \
            or sorted(c.op for c in scenario.steps[1].commands) != ["cread", "vwrite"]:
        raise ScenarioError(0, text.splitlines()[0] if text else "",
                            "a forced fleecing race is 'fleece' then 'par { cread ...; "
                            "vwrite ... }'")
    first = scenario.steps[0]
    assert isinstance(first, Command)
    return scenario, [first], list(scenario.steps[1].commands)


def force_on_simulator(text: str, hold: str, **explicit: Any) -> ForcedOrder:
    """The order ``hold`` names, on the simulator: the held task runs until it is at
    the place (the event before the yield where blkdebug would suspend it), the other
    runs alone until it ends or blocks, then both run to the end."""
    config, scenario = fleecing_config(text, **explicit)
    _, _, par = _race_parts(text, scenario)
    op, _, _, node, kind = FLEECING_HOLDS[hold]
    prefer: list[str] = []

    def choose(runnable: Any) -> Any:
        names = [t.name for t in runnable]
        return next((n for n in prefer if n in names), names[0])

    lab = build_lab(config, Chooser(choose))
    assert isinstance(lab, FleecingLab)
    lab.fleece()
    tasks = {c.op: (lab.client_read(c.offset, c.length) if c.op == "cread"
                    else lab.vm_write(c.offset, c.length, c.byte or 0)) for c in par}
    held, other = tasks[op], tasks["vwrite" if op == "cread" else "cread"]
    out = ForcedOrder(hold)
    prefer[:] = [held.name]
    while not any(e.task == held.name and e.kind == "point" and e.node == node
                  and e.op == kind for e in lab.trace):
        if held.done or held.name not in [t.name for t in lab.runnable()]:
            out.not_reached = f"{held.name} never reached {hold}"
            break
        lab.step()
    prefer[:] = [other.name]
    while other.name in [t.name for t in lab.runnable()]:
        lab.step()
    if not other.done:
        out.blocked.append(other.name)
    prefer[:] = []
    lab.run()
    for t in (held, other):
        if t.name.startswith("client-read"):
            out.reads[t.name] = t.result if t.exception is None else None
    out.layers = lab.layers()
    return out


def force_on_qemu(text: str, hold: str, *, timeout: float = 10.0,
                  qemu: str = "qemu-system-x86_64", **explicit: Any) -> ForcedOrder:
    """The order ``hold`` names, on QEMU 7.2 with blkdebug under each image: a
    breakpoint at the place, the held request sent, the other sent and waited for
    :data:`FLEECING_BLOCK_WAIT` seconds (pending then: blocked), then the release."""
    config, scenario = fleecing_config(text, **explicit)
    _, _, par = _race_parts(text, scenario)
    op, drive, event, _, _ = FLEECING_HOLDS[hold]
    reason = qemu_available(qemu)
    if reason is not None:
        raise QemuNotAvailable(reason)
    out = ForcedOrder(hold)
    names = {"cread": "client-read#1", "vwrite": "vm-write#1"}
    with QemuFleecing(config, timeout=timeout, qemu=qemu, blkdebug=True) as q:
        q.fleece()
        bps = _Breakpoints(q)
        results: dict[str, Any] = {}
        threads: dict[str, threading.Thread] = {}

        def send(c: Command) -> None:
            export = "fleece" if c.op == "cread" else "guest"
            client = NbdClient(q.nbd_socket, export, timeout=timeout)
            try:
                if c.op == "cread":
                    results[c.op] = client.pread(c.offset, c.length, df=True)
                else:
                    client.pwrite(bytes([c.byte or 0]) * c.length, c.offset)
                    results[c.op] = b""
            except (NbdError, OSError) as exc:
                results[c.op] = exc
            finally:
                client.close()

        def start(c: Command) -> threading.Thread:
            t = threading.Thread(target=send, args=(c,), daemon=True)
            t.start()
            threads[c.op] = t
            return t

        by_op = {c.op: c for c in par}
        other = "vwrite" if op == "cread" else "cread"
        try:
            tag = bps.arm(drive, event)
            held = start(by_op[op])
            deadline = time.monotonic() + 3.0
            while not bps.suspended(tag):
                if not held.is_alive() or time.monotonic() > deadline:
                    out.not_reached = f"{names[op]} never reached {hold}"
                    break
                time.sleep(0.002)
            t = start(by_op[other])
            t.join(FLEECING_BLOCK_WAIT)
            if t.is_alive():
                out.blocked.append(names[other])
        finally:
            bps.release_all()
        for th in threads.values():
            th.join(timeout)
            if th.is_alive():
                raise QemuError(f"a request did not complete within {timeout} s after the "
                                f"release", command="race")
        got = results.get("cread")
        out.reads["client-read#1"] = got if isinstance(got, bytes) else None
        out.layers = q.dump()
    return out


def compare_fleecing_race(text: str, *, design: str | None = None, timeout: float = 10.0,
                          qemu: str = "qemu-system-x86_64",
                          **explicit: Any) -> list[tuple[ForcedOrder, ForcedOrder, list[str]]]:
    """Every order of :data:`FLEECING_HOLDS` on both sides: (simulator, QEMU, differences)."""
    block = fleecing_config(text, design=design, **explicit)[0].block
    out = []
    for hold in FLEECING_HOLDS:
        sim = force_on_simulator(text, hold, design=design, **explicit)
        qem = force_on_qemu(text, hold, design=design, timeout=timeout, qemu=qemu, **explicit)
        diffs = []
        if sim.not_reached != qem.not_reached:
            diffs.append(f"reached: simulator {sim.not_reached or 'yes'}; QEMU "
                         f"{qem.not_reached or 'yes'}")
        if sim.blocked != qem.blocked:
            diffs.append(f"blocked: simulator {sim.blocked}; QEMU {qem.blocked}")
        if sim.reads != qem.reads:
            diffs.append("reads differ")
        diffs += [str(d) for d in compare_dumps([(hold, sim.layers)], [(hold, qem.layers)],
                                                block, FLEECING_LAYERS)]
        out.append((sim, qem, diffs))
    return out


def fleecing_race_text(results: list[tuple[ForcedOrder, ForcedOrder, list[str]]]) -> str:
    """The forced orders as text: one line per order, then ``N orders, K disagreeing``."""
    lines = []
    for sim, qem, diffs in results:
        other = "vm-write#1" if sim.hold.startswith("client") else "client-read#1"
        blocked = ", ".join(qem.blocked) or "none"
        verdict = "same" if not diffs else "DIFFERENT: " + "; ".join(diffs)
        lines.append(f"{sim.hold.split(' at ')[0]}#1 held at {sim.hold.split(' at ', 1)[1]}, "
                     f"then {other}, then released: blocked {blocked}: {verdict}")
    bad = sum(1 for _, _, d in results if d)
    lines.append(f"{len(results)} orders, {bad} disagreeing")
    return "\n".join(lines)


__all__ = ["BLKDEBUG_FLEECING", "FLEECING_HOLDS", "FLEECING_LAYERS", "ForcedOrder",
           "QemuFleecing", "QemuFleecingRun", "compare_fleecing", "compare_fleecing_race",
           "fleecing_race_text", "force_on_qemu", "force_on_simulator", "run_fleecing"]
