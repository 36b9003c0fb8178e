"""One real QEMU 7.2 acting as the COLO block-replication secondary.

:class:`QemuSecondary` builds, in a private temporary directory, the graph of
QEMU's ``docs/block-replication.txt`` (its secondary, with ``blockdev-add``)::

    secondary.raw (node secondary-disk, NBD export "secondary": the primary's writes)
      ^ backing
    hidden.qcow2 (node hidden)
      ^ backing
    active.qcow2 (node active)
      ^ file
    replication, mode=secondary (node colo-top, NBD export "top": the secondary VM)

and drives it over QMP (``xen-set-replication``, ``xen-colo-do-checkpoint``,
``query-xen-replication-status``, ``x-debug-query-block-graph``) and NBD (our
own client, :mod:`labkit.qemu._nbd`).  QEMU runs with ``-machine none``: no
guest, no KVM, no root.

QMP goes through ``qemu.qmp``'s asyncio ``QMPClient``, driven by a private
event loop in a private daemon thread.  The caller's thread never touches
asyncio, so this works inside a Jupyter kernel, whose main thread already runs
a loop.

Everything is synchronous.  A QMP error reply raises :class:`QemuError` with
QMP's ``desc`` and leaves the session usable.  QEMU dying, or not answering
within ``timeout`` seconds, raises :class:`QemuError` with the tail of QEMU's
log and closes the session (QEMU killed, temporary directory removed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np

from labkit.errors import ConfigError, LimitError, QemuTimeout
from labkit.layers import SECTOR, Layer
from labkit.qemu import _cleanup
from labkit.qemu._errors import QemuError, QemuNotAvailable
from labkit.qemu._nbd import (
    ALLOCATION_DEPTH,
    BASE_ALLOCATION,
    STATE_ZERO,
    NbdClient,
    NbdDisconnected,
    NbdError,
)
from labkit.qemu._version import qemu_version, version_reason

_T = TypeVar("_T")

_SUN_PATH_MAX = _cleanup.SUN_PATH_MAX
#: Room left on the temporary filesystem beyond secondary.raw's data: two fresh
#: qcow2 images and QEMU's log, with a margin for hidden and active to grow.
_SPACE_MARGIN = 16 << 20
_LOG_LINES = 20
_QUIT_WAIT = 5.0

# No guest, no devices, no display: QEMU only hosts the block graph.
_QUIET_MACHINE = ("-machine", "none", "-nodefaults", "-nographic", "-display", "none")

#: With ``blkdebug=True``: the blkdebug node under each image file, and the named
#: read-only BlockBackend (drive) through which its breakpoints are set.
BLKDEBUG_DRIVES = {"dbg-sec": "ctl-sec", "dbg-hid": "ctl-hid", "dbg-act": "ctl-act"}


def _fill_index_pattern(path: Path, size: int, block: int) -> None:
    """Write ``size`` bytes where block k holds byte ``0x10 + k % 0x70``."""
    pattern = b"".join(bytes([0x10 + k]) * block for k in range(0x70))  # one period
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = pattern[: min(left, len(pattern))]
            f.write(chunk)
            left -= len(chunk)


def _fill_secondary(path: Path, size: int, block: int, fill: str | int) -> None:
    """Create ``secondary.raw`` with the simulator's ``fill`` (see :class:`QemuSecondary`)."""
    if fill == "index":
        _fill_index_pattern(path, size, block)
        return
    with open(path, "wb") as f:
        if fill == "zero":
            f.truncate(size)  # one hole: reads as zeros, copied as zero clusters
            return
        assert isinstance(fill, int)
        chunk = bytes([fill]) * min(size, 1 << 20)
        left = size
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def _check_fill(fill: object) -> str | int:
    if fill in ("index", "zero"):
        return fill
    if isinstance(fill, int) and not isinstance(fill, bool) and 0 <= fill <= 255:
        return fill
    raise ConfigError(f"fill must be 'index', 'zero' or a byte 0-255, got {fill!r}")


class _Record:
    """What one session created: its directory and, once launched, QEMU's pid."""

    __slots__ = ("pid", "workdir")

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pid: int | None = None


#: Every session this Python process started, so that a test suite can check
#: that none left a QEMU or a directory behind (:func:`leftover_sessions`).
_STARTED: list[_Record] = []


def _qemu_alive(record: _Record) -> bool:
    """Is the QEMU of ``record`` still running (a zombie counts as gone)?

    On Linux the pid is only taken for ours if its command line names our
    directory, so a recycled pid or another user's QEMU is never mistaken
    for it.
    """
    pid = record.pid
    if pid is None:
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return os.fsencode(str(record.workdir)) in cmdline
    return _cleanup.pid_exists(pid)


def leftover_sessions() -> list[str]:
    """QEMU processes and temporary directories that this process's sessions left behind.

    One line per leftover: a QEMU (started by a :class:`QemuSecondary` of this
    Python process) that is still running, or its private directory that
    still exists.  Empty when every session has been closed (or has not been
    started).  A session that is still open is listed too: call it when all
    sessions should be closed, e.g. at the end of a test run.
    """
    out = []
    for rec in _STARTED:
        if _qemu_alive(rec):
            out.append(f"QEMU pid {rec.pid} is still running")
        if rec.workdir.exists():
            out.append(f"temporary directory {rec.workdir} still exists")
    return out


def _find_qemu_img(qemu: str) -> str | None:
    """qemu-img next to the given QEMU binary, else on PATH."""
    exe = shutil.which(qemu)
    if exe:
        sibling = Path(exe).with_name("qemu-img")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("qemu-img")


_USABLE: set[str] = set()

# A labkit killed with SIGKILL left its directories: remove them at the next start.
_cleanup.sweep_stale()


class _ProbeProcess:
    """The probe's QEMU as an open session of :mod:`labkit.qemu._cleanup`: SIGTERM,
    SIGHUP or SIGINT kill it first, and it is launched with the death signal."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def close(self, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)


def _probe(qemu: str, timeout: float = 30.0) -> str | None:
    """Why ``qemu`` cannot run the secondary (None: it can), asked within ``timeout`` s."""
    exe = shutil.which(qemu)
    if exe is None:
        return f"QEMU binary {qemu!r} not found"
    if _find_qemu_img(qemu) is None:
        return "qemu-img not found"
    cmds = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-commands"},
        {"execute": "query-qmp-schema"},
        {"execute": "quit"},
    ]
    try:
        proc = _cleanup.launch([exe, *_QUIET_MACHINE, "-qmp", "stdio"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"{exe} could not be run: {exc}"
    res = _ProbeProcess(proc)
    _cleanup.session_opened(res)  # within the cleanup's reach until it is reaped
    try:
        out, err = proc.communicate("".join(json.dumps(c) + "\n" for c in cmds).encode(),
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{exe} did not answer the QMP probe within {timeout:g} s (--timeout)"
    finally:
        res.close(kill=True)
        _cleanup.session_closed(res)
    # QEMU's output as text whatever bytes it printed (a binary may print anything)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    has_cmd = has_driver = False
    for line in stdout.splitlines():
        try:
            ret = json.loads(line).get("return")
        except (ValueError, AttributeError):
            continue
        if not isinstance(ret, list):
            continue
        for item in ret:
            if not isinstance(item, dict):
                continue
            if item.get("name") == "xen-set-replication":
                has_cmd = True
            values = item.get("values") or []
            if item.get("meta-type") == "enum" and "qcow2" in values and "replication" in values:
                has_driver = True
    if not has_cmd:
        tail = stderr.strip().splitlines()[-3:]
        return f"{exe} has no QMP command xen-set-replication" + (
            f" ({' '.join(tail)})" if tail else ""
        )
    if not has_driver:
        return f"{exe} has no 'replication' block driver"
    return None


def qemu_available(qemu: str = "qemu-system-x86_64", timeout: float = 30.0) -> str | None:
    """None if ``qemu`` can run the replication secondary, else the reason.

    A QEMU whose version the model was not checked against (see
    :mod:`labkit.qemu._version`: 7.2, and 8.0-8.2 labelled) is not usable
    either, unless ``LABKIT_QEMU_ANY_VERSION=1``.

    Runs the binary once (``-machine none -qmp stdio``) to check for the QMP
    command ``xen-set-replication`` and the ``replication`` block driver
    (about 0.1 s), for at most ``timeout`` seconds; a positive answer is cached per
    binary.  The probe's QEMU is within the session cleanup's reach (signals, the
    death signal), like a session's.
    """
    exe = shutil.which(qemu)
    if exe is not None and exe in _USABLE:
        return version_reason(qemu_version(qemu))
    reason = _probe(qemu, timeout)
    if reason is not None and exe is not None and "has no" in reason:
        reason = _probe(qemu, timeout)  # once more: a loaded machine was seen to cut the answer
    if reason is None and exe is not None:
        _USABLE.add(exe)  # only success is cached: a missing QEMU may be installed later
        # a QEMU the model was not checked against: the recorded comparison (_version.py)
        reason = version_reason(qemu_version(qemu))
    return reason


class _LoopThread:
    """A private asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="labkit-qmp", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
        """Run ``coro`` in the loop; raise TimeoutError after ``timeout`` s."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise QemuTimeout(f"no answer from QEMU within {timeout} s") from None

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class _Resources:
    """Everything a session owns; closed by :meth:`close` exactly once.

    Kept apart from :class:`QemuSecondary` so that ``weakref.finalize`` can
    hold it without keeping the session alive.
    """

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.loop: _LoopThread | None = None
        self.qmp: Any = None  # qemu.qmp.QMPClient
        self.nbd: dict[str, NbdClient] = {}
        self.exit_code: int | None = None
        self.closed = False

    def close(self, kill: bool = False) -> None:
        """Quit QEMU (``kill``: SIGKILL it at once), stop the loop, remove the directory."""
        if self.closed:
            if kill:  # a signal handler while a close is in progress: finish it now
                self._kill_now()
            return
        self.closed = True
        for client in self.nbd.values():
            with contextlib.suppress(Exception):
                client.close()
        self.nbd.clear()
        proc, loop, qmp = self.proc, self.loop, self.qmp
        if kill and proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        if loop is not None and qmp is not None:
            if not kill and proc is not None and proc.poll() is None:
                with contextlib.suppress(Exception):
                    loop.call(qmp.execute("quit"), 2.0)
            with contextlib.suppress(Exception):
                loop.call(qmp.disconnect(), 2.0)
        if proc is not None:
            try:
                proc.wait(_QUIT_WAIT if qmp is not None else 0.1)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            self.exit_code = proc.returncode
        if loop is not None:
            loop.stop()
        self.qmp = None
        self.loop = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _cleanup.session_closed(self)

    def _kill_now(self) -> None:
        """SIGKILL QEMU and remove the directory, whatever else is under way."""
        _kill_proc_and_dir(self)


def _kill_proc_and_dir(res: _Resources) -> None:
    proc = res.proc
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    if res.workdir is not None:
        shutil.rmtree(res.workdir, ignore_errors=True)


def _layer_from(
    size: int, data: bytearray, extents: dict[str, list[tuple[int, int, int]]]
) -> Layer:
    """Build a Layer: allocation-depth == 1 → allocated here; others zeroed."""
    sectors = size // SECTOR
    depth = np.zeros(sectors, dtype=np.int64)
    for start, length, flags in extents[ALLOCATION_DEPTH]:
        depth[start // SECTOR : -(-(start + length) // SECTOR)] = flags
    zero = np.zeros(sectors, dtype=bool)
    for start, length, flags in extents[BASE_ALLOCATION]:
        if flags & STATE_ZERO:
            s, e = -(-start // SECTOR), (start + length) // SECTOR
            zero[s:e] = True
    alloc = depth == 1
    buf = np.frombuffer(data, dtype=np.uint8).reshape(sectors, SECTOR)  # writable view
    buf[~alloc] = 0
    return Layer(buf.tobytes(), alloc, zero & alloc)


class QemuSecondary:
    """A real QEMU 7.2 running the COLO secondary's block replication.

    ``size`` is the disk size in bytes (a multiple of 512).  The secondary
    disk ``secondary.raw`` is filled as the simulator's ``fill`` says:
    ``"index"`` (default; block ``k`` of ``block`` bytes holds byte
    ``0x10 + k % 0x70``), ``"zero"`` (a sparse file: one hole, so CBW copies
    whole chunks of it as qcow2 zero clusters) or a byte 0-255 (every byte,
    written as data).  ``hidden.qcow2`` and
    ``active.qcow2`` get the given cluster sizes.  ``timeout`` bounds every
    QMP command, NBD request and wait.  QEMU is launched by the constructor;
    use the session as a context manager (or call :meth:`close`).

    ``blkdebug=True`` puts a ``blkdebug`` node (``dbg-sec``, ``dbg-hid``,
    ``dbg-act``) under each image file and a named read-only BlockBackend
    over each (``ctl-sec``...), so that requests can be held at breakpoints
    (:mod:`labkit.qemu._pause`).  Note that blkdebug changes QEMU's own path:
    the copy-before-write filter cannot offload its copy
    (``copy_file_range``) through it, and reads then writes instead.

    The secondary disk's data is written in bounded chunks (``fill="zero"``:
    not at all, one hole); the qcow2 images are sparse.  A ``size`` whose
    ``secondary.raw`` would not fit the temporary filesystem is refused with
    :class:`~labkit.errors.LimitError` before anything is written.  QEMU dies
    with this process (see :mod:`labkit.qemu._cleanup`).
    """

    def __init__(
        self,
        size: int,
        block: int = 4096,
        hidden_cluster: int = 65536,
        active_cluster: int = 65536,
        timeout: float = 10.0,
        qemu: str = "qemu-system-x86_64",
        *,
        fill: str | int = "index",
        blkdebug: bool = False,
    ) -> None:
        if size <= 0 or size % SECTOR:
            raise ConfigError(f"size must be a positive multiple of {SECTOR} bytes, got {size}")
        if block <= 0:
            raise ConfigError(f"block must be a positive number of bytes, got {block}")
        for name, cl in (("hidden_cluster", hidden_cluster), ("active_cluster", active_cluster)):
            if cl < 512 or cl > 2 * 1024 * 1024 or cl & (cl - 1):
                raise ConfigError(
                    f"{name} must be a power of two from 512 to 2M (qcow2's limits), got {cl}"
                )
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout}")
        self.fill = _check_fill(fill)
        self.blkdebug = bool(blkdebug)
        self.size = size
        self.block = block
        self.hidden_cluster = hidden_cluster
        self.active_cluster = active_cluster
        self.timeout = timeout
        self.qemu = qemu
        self.version: str = ""
        self._dump_seq = 0
        self._drops_seen = 0
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.close)

        exe = shutil.which(qemu)
        if exe is None:
            self.close()
            raise QemuNotAvailable(f"QEMU binary {qemu!r} not found")
        qemu_img = _find_qemu_img(qemu)
        if qemu_img is None:
            self.close()
            raise QemuNotAvailable("qemu-img not found")
        try:
            self._launch(exe, qemu_img)
        except BaseException:
            self.close()
            raise

    # -- properties ------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """The private temporary directory (removed by :meth:`close`)."""
        assert self._res.workdir is not None
        return self._res.workdir

    @property
    def qmp_socket(self) -> str:
        return str(self.workdir / "qmp.sock")

    @property
    def nbd_socket(self) -> str:
        return str(self.workdir / "nbd.sock")

    @property
    def log_path(self) -> Path:
        return self.workdir / "qemu.log"

    @property
    def pid(self) -> int | None:
        """QEMU's process id (None before launch)."""
        return self._res.proc.pid if self._res.proc is not None else None

    @property
    def closed(self) -> bool:
        return self._res.closed

    @property
    def exit_code(self) -> int | None:
        """QEMU's exit status once closed (negative: killed by that signal)."""
        return self._res.exit_code

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self.pid}, {self.workdir}"
        return (
            f"<QemuSecondary size={self.size} block={self.block} "
            f"hidden_cluster={self.hidden_cluster} active_cluster={self.active_cluster} "
            f"QEMU {self.version or '?'} ({state})>"
        )

    # -- life cycle ------------------------------------------------------------

    def __enter__(self) -> QemuSecondary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Quit QEMU (kill it if it does not exit) and remove the directory."""
        self._finalizer()

    def kill(self) -> None:
        """Kill QEMU by its pid at once (no ``quit``) and remove the directory.

        For when ``quit`` could hang: QEMU drains every request before it
        exits, and a request held at a blkdebug breakpoint never drains.
        """
        self._res.close(kill=True)
        self._finalizer.detach()

    def _image_bytes(self) -> int:
        """Bytes ``secondary.raw`` takes on disk: none for ``fill="zero"`` (one hole)."""
        return 0 if self.fill == "zero" else self.size

    def _check_space(self, base: Path) -> None:
        """Refuse, before anything is written, images that would not fit ``base``'s filesystem."""
        need = self._image_bytes() + _SPACE_MARGIN
        free = _cleanup.free_bytes(base)
        if need > free:
            raise LimitError(
                f"size {self.size} bytes: secondary.raw needs {self._image_bytes()} bytes "
                f"(plus {_SPACE_MARGIN >> 20} MiB for hidden, active and the log) but the "
                f"temporary filesystem of {base} has {free} bytes free; choose a smaller size, "
                f"fill='zero' (a sparse file), or point TMPDIR at a larger filesystem")

    def _launch(self, exe: str, qemu_img: str) -> None:
        _cleanup.sweep_stale()  # directories left by a labkit killed with SIGKILL
        self._check_space(_cleanup.runs_dir())
        # Registered before anything exists, so that a signal from here on closes
        # whatever has been made (the directory, QEMU once its pid is known).
        _cleanup.session_opened(self._res)
        wd = _cleanup.make_session_dir()
        self._res.workdir = wd
        record = _Record(wd)
        _STARTED.append(record)
        for sock_name in ("qmp.sock", "nbd.sock"):
            if len(os.fsencode(str(wd / sock_name))) > _SUN_PATH_MAX:
                raise QemuError(f"socket path {wd / sock_name} is too long for a unix socket")
        _fill_secondary(wd / "secondary.raw", self.size, self.block, self.fill)
        self._create_overlays(wd, qemu_img)
        sock = self._start_qemu(exe, wd, record)
        self._negotiate(sock, exe)
        self._build_graph(exe, wd)

    def _create_overlays(self, wd: Path, qemu_img: str) -> None:
        """``qemu-img create`` hidden.qcow2 over secondary.raw and active.qcow2 over it."""
        for name, backing, fmt, cluster in (
            ("hidden.qcow2", "secondary.raw", "raw", self.hidden_cluster),
            ("active.qcow2", "hidden.qcow2", "qcow2", self.active_cluster),
        ):
            argv = [
                qemu_img,
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                f"cluster_size={cluster}",
                "-b",
                backing,
                "-F",
                fmt,
                str(wd / name),
            ]
            res = subprocess.run(
                argv, capture_output=True, text=True, cwd=wd, check=False, timeout=self.timeout
            )
            if res.returncode:
                raise QemuError(
                    f"qemu-img create {name} failed (exit {res.returncode}): "
                    f"{(res.stderr or res.stdout).strip()}",
                    command="qemu-img create",
                )

    def _start_qemu(self, exe: str, wd: Path, record: _Record) -> socket.socket:
        """Start QEMU with its QMP socket; return a connected socket to it."""
        log = open(wd / "qemu.log", "wb")  # handed to the child, closed below
        try:
            # A new session: a terminal's Ctrl-C reaches labkit only, which closes
            # QEMU itself; PR_SET_PDEATHSIG kills QEMU if labkit dies without that.
            self._res.proc = _cleanup.launch(
                [exe, *_QUIET_MACHINE, "-qmp", f"unix:{self.qmp_socket},server=on,wait=off"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=wd,
                start_new_session=True,
            )
        finally:
            log.close()
        record.pid = self._res.proc.pid
        _cleanup.record_qemu(wd, record.pid)
        # The socket file appears at bind(), a moment before listen(): retry
        # the connection until QEMU accepts it.
        deadline = time.monotonic() + self.timeout
        while True:
            if self._res.proc.poll() is not None:
                self._fatal(
                    f"QEMU exited with status {self._res.proc.returncode} at launch", "launch"
                )
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.qmp_socket)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if time.monotonic() > deadline:
                self._fatal(f"QEMU did not open its QMP socket within {self.timeout} s", "launch")
            time.sleep(0.002)
        return sock

    def _negotiate(self, sock: socket.socket, exe: str) -> None:
        """Read the QMP greeting, hand the socket to a ``QMPClient``, negotiate, and check
        that this QEMU has the COLO commands."""
        try:
            greeting = self._read_greeting(sock)
        except BaseException:
            sock.close()
            raise
        v = greeting["QMP"]["version"]["qemu"]
        self.version = f"{v['major']}.{v['minor']}.{v['micro']}"

        from qemu.qmp import QMPClient

        self._res.loop = _LoopThread()

        async def connect() -> Any:
            client = QMPClient("labkit-secondary")
            # The greeting was read above; negotiate by hand below.
            client.await_greeting = False
            client.negotiate = False
            await client.connect(sock)
            return client

        try:
            self._res.qmp = self._call(connect(), "connect")  # the transport owns sock now
        except BaseException:
            sock.close()
            raise
        self._qmp("qmp_capabilities")
        commands = self._qmp("query-commands")
        if not any(c.get("name") == "xen-set-replication" for c in commands):
            raise QemuNotAvailable(f"{exe} has no QMP command xen-set-replication")

    def _build_graph(self, exe: str, wd: Path) -> None:
        """``blockdev-add`` the secondary's graph and export it over NBD (as
        QEMU's ``docs/block-replication.txt`` describes the secondary's)."""
        d = str(wd)
        self._qmp(
            "blockdev-add",
            {
                "driver": "raw",
                "node-name": "secondary-disk",
                "file": self._image_file("dbg-sec", f"{d}/secondary.raw"),
            },
        )
        self._qmp(
            "blockdev-add",
            {
                "driver": "qcow2",
                "node-name": "hidden",
                "file": self._image_file("dbg-hid", f"{d}/hidden.qcow2"),
                "backing": "secondary-disk",
            },
        )
        self._qmp(
            "blockdev-add",
            {
                "driver": "qcow2",
                "node-name": "active",
                "file": self._image_file("dbg-act", f"{d}/active.qcow2"),
                "backing": "hidden",
            },
        )
        try:
            self._qmp(
                "blockdev-add",
                {
                    "driver": "replication",
                    "node-name": "colo-top",
                    "mode": "secondary",
                    "top-id": "colo-top",
                    "file": "active",
                },
            )
        except QemuError as exc:
            if "replication" in (exc.desc or "") and "driver" in (exc.desc or "").lower():
                raise QemuNotAvailable(
                    f"{exe} has no 'replication' block driver ({exc.desc})"
                ) from exc
            raise
        self._qmp("nbd-server-start", {"addr": {"type": "unix", "data": {"path": self.nbd_socket}}})
        self._qmp(
            "block-export-add",
            {
                "type": "nbd",
                "id": "exp-secondary",
                "node-name": "secondary-disk",
                "name": "secondary",
                "writable": True,
            },
        )
        self._qmp(
            "block-export-add",
            {
                "type": "nbd",
                "id": "exp-top",
                "node-name": "colo-top",
                "name": "top",
                "writable": True,
            },
        )
        if self.blkdebug:
            # block/monitor/block-hmp-cmds.c, hmp_qemu_io: on a node name it makes a
            # temporary BlockBackend (local_blk) and blk_unref() drains it, which hangs the
            # monitor for good while a request is suspended.  A named read-only
            # BlockBackend per blkdebug node, made before any breakpoint, does not.
            self._add_breakpoint_drives(BLKDEBUG_DRIVES)

    def _add_breakpoint_drives(self, drives: dict[str, str]) -> None:
        """A named read-only BlockBackend (``drive_add``) over each blkdebug node of
        ``drives`` (node → drive id), to set breakpoints through with ``qemu-io``."""
        for node, drive in drives.items():
            out = self.hmp(f'drive_add 0 if=none,id={drive},readonly=on,'
                           f'file=json:{{"driver":"raw",,"file":"{node}"}}')
            if out.strip() != "OK":
                raise QemuError(f"drive_add {drive} failed: {out.strip()}",
                                command="drive_add", log_tail=self.log_tail())

    def _image_file(self, debug_node: str, filename: str) -> dict[str, Any]:
        """An image's ``file`` child: the file itself, or a blkdebug node over it."""
        file = {"driver": "file", "filename": filename}
        if not self.blkdebug:
            return file
        return {"driver": "blkdebug", "node-name": debug_node, "image": file}

    def _read_greeting(self, sock: socket.socket) -> dict[str, Any]:
        """Read QMP's greeting from ``sock``, skipping events sent before it.

        QEMU 7.2 can send an event (``RESUME``) *before* the greeting to a
        client that connects while it is still starting up; ``qemu.qmp``
        takes that for a bad greeting.  So the greeting is read here, byte by
        byte so that nothing after it is consumed.
        """
        sock.settimeout(self.timeout)
        line = bytearray()
        try:
            while True:
                c = sock.recv(1)
                if not c:
                    break
                if c != b"\n":
                    line += c
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = None
                line.clear()
                if isinstance(msg, dict) and "QMP" in msg:
                    return msg
        except OSError as exc:
            dead = self._dead()
            self._fatal(f"reading QMP's greeting failed: {dead or exc}", "connect")
        dead = self._dead()
        self._fatal(f"QEMU closed QMP before its greeting{': ' + dead if dead else ''}", "connect")

    # -- error handling ----------------------------------------------------------

    def log_text(self) -> str:
        """QEMU's whole stdout/stderr so far ("" once closed)."""
        wd = self._res.workdir
        if wd is None:
            return ""
        try:
            return (wd / "qemu.log").read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = _LOG_LINES) -> str:
        """The last ``lines`` lines of QEMU's stdout/stderr ("" once closed)."""
        wd = self._res.workdir
        if wd is None:
            return ""
        try:
            text = (wd / "qemu.log").read_bytes().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _fatal(self, message: str, command: str | None) -> NoReturn:
        """Close the session and raise QemuError(message + log tail)."""
        proc = self._res.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.2)
        tail = self.log_tail()
        self._res.close(kill=True)
        self._finalizer.detach()
        raise QemuError(message, command=command, log_tail=tail)

    def _dead(self, wait: float = 0.2) -> str | None:
        """A description of QEMU's death, or None if it is still running.

        A socket can report EOF a moment before the dying process can be
        reaped, so wait up to ``wait`` seconds for the exit.
        """
        proc = self._res.proc
        if proc is None:
            return "QEMU is not running"
        rc = proc.poll()
        if rc is None and wait > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(wait)
        if rc is None:
            return None
        if rc < 0:
            with contextlib.suppress(ValueError):
                return f"QEMU died (killed by {signal.Signals(-rc).name})"
        return f"QEMU exited unexpectedly with status {rc}"

    def _check_open(self, what: str) -> None:
        if self._res.closed:
            raise QemuError(f"{what}: the QEMU session is closed", command=what)

    def _call(self, coro: Coroutine[Any, Any, _T], what: str) -> _T:
        loop = self._res.loop
        assert loop is not None
        try:
            return loop.call(coro, self.timeout)
        except TimeoutError:
            dead = self._dead()
            if dead:
                self._fatal(f"{what}: {dead}", what)
            self._fatal(f"{what}: QEMU did not answer within {self.timeout} s", what)
        except QemuError:
            raise
        except Exception as exc:
            from qemu.qmp import ExecuteError

            if isinstance(exc, ExecuteError):
                desc = exc.error.error.desc
                raise QemuError(
                    f"{what}: {desc}", desc=desc, command=what, log_tail=self.log_tail()
                ) from None
            dead = self._dead()
            self._fatal(f"{what}: {dead or f'QMP connection failed: {exc!r}'}", what)

    def _qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self._check_open(command)
        return self._call(self._res.qmp.execute(command, arguments), command)

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run any QMP command and return its result (QemuError on an error reply)."""
        return self._qmp(command, arguments)

    def hmp(self, command_line: str) -> str:
        """Run an HMP command (``human-monitor-command``); return its output."""
        return str(self._qmp("human-monitor-command", {"command-line": command_line}))

    # -- NBD -------------------------------------------------------------------------

    def _client(self, export: str) -> NbdClient:
        client = self._res.nbd.get(export)
        if client is None or client.closed:
            client = self._nbd_connect(export)
            self._res.nbd[export] = client
        return client

    def _nbd_connect(self, export: str, meta_contexts: tuple[str, ...] = ()) -> NbdClient:
        try:
            return NbdClient(
                self.nbd_socket, export, meta_contexts=meta_contexts, timeout=self.timeout
            )
        except NbdDisconnected as exc:
            self._nbd_failed(exc, f"connect to NBD export {export!r}")
            raise

    def _nbd_failed(self, exc: NbdError, what: str) -> None:
        """Turn a lost NBD connection into the right exception."""
        if not isinstance(exc, NbdDisconnected):
            return
        # QEMU's NBD server drops a client after a failed read and logs why.
        reason = ""
        lines = self.log_tail(10_000).splitlines()
        drops = [line.strip() for line in lines if "Disconnect client" in line]
        if len(drops) > self._drops_seen:
            reason = drops[-1]
        self._drops_seen = len(drops)
        dead = self._dead(0.0 if reason else 0.5)
        if dead:
            self._fatal(f"{what}: {dead}", what)
        if exc.errno == errno.ETIMEDOUT:
            self._fatal(f"{what}: QEMU did not answer within {self.timeout} s", what)
        if exc.errno != errno.ENOTCONN:
            self._fatal(f"{what}: {exc.strerror}", what)
        err = errno.EIO if "Input/output error" in reason else errno.ENOTCONN
        raise NbdError(
            err,
            f"{what} failed: {os.strerror(err)} ({exc.strerror}"
            + (f"; QEMU logged: {reason}" if reason else "")
            + "); the next I/O reconnects",
        ) from exc

    def _nbd_io(self, export: str, what: str, fn: Callable[[NbdClient], _T]) -> _T:
        self._check_open(what)
        client = self._client(export)
        try:
            return fn(client)
        except NbdError as exc:
            if isinstance(exc, NbdDisconnected):
                self._res.nbd.pop(export, None)
                self._nbd_failed(exc, what)
            raise

    def _check_range(self, off: int, length: int) -> None:
        if off < 0 or length < 0 or off + length > self.size:
            raise ConfigError(f"range [{off}, {off + length}) is outside the disk [0, {self.size})")

    def pwrite(self, off: int, length: int, byte: int, *, zeroes: bool | None = None) -> None:
        """The primary's write: ``length`` bytes of ``byte`` at ``off`` on export ``secondary``.

        With ``zeroes`` (default: ``byte == 0``) it is sent as
        ``NBD_CMD_WRITE_ZEROES`` instead: QEMU punches a hole in
        ``secondary.raw``, and a whole CBW chunk of hole is later copied into
        hidden as a qcow2 zero cluster.  (QEMU 7.2 decides by block status,
        not by looking at the bytes: zero *bytes* written as data are copied
        as data clusters.)
        """
        self._check_range(off, length)
        if not 0 <= byte <= 255:
            raise ConfigError(f"byte must be 0..255, got {byte}")
        if zeroes is None:
            zeroes = byte == 0
        elif zeroes and byte != 0:
            raise ConfigError(f"zeroes=True writes zeros, but byte is {byte:#04x}")
        if zeroes:
            self._nbd_io(
                "secondary",
                f"primary write-zeroes on export 'secondary' at {off}",
                lambda c: c.write_zeroes(off, length),
            )
        else:
            data = bytes([byte]) * length
            self._nbd_io(
                "secondary",
                f"primary write on export 'secondary' at {off}",
                lambda c: c.pwrite(data, off),
            )

    def vwrite(self, off: int, length: int, byte: int) -> None:
        """The secondary VM's write: ``length`` bytes of ``byte`` at ``off`` on export ``top``."""
        self._check_range(off, length)
        if not 0 <= byte <= 255:
            raise ConfigError(f"byte must be 0..255, got {byte}")
        data = bytes([byte]) * length
        self._nbd_io("top", f"vm write on export 'top' at {off}", lambda c: c.pwrite(data, off))

    def vread(self, off: int, length: int, *, df: bool = True) -> bytes:
        """The secondary VM's read through export ``top`` (EIO before start).

        Sent with ``NBD_CMD_FLAG_DF`` so that QEMU's NBD server reads through
        the replication driver even where the chain below is a hole; without
        it the server answers holes from the block status alone and a read
        before start of an all-hole range (``fill="zero"``) would succeed
        where the VM gets EIO.  With it, a failed read gets an error reply and
        the connection stays up.  ``df=False`` sends a plain structured read
        (sparse: block status first): a failure then happens while QEMU's
        server is sending, it drops the client, and the next I/O reconnects.
        """
        self._check_range(off, length)
        what = f"vm read on export 'top' at {off}" if df else \
            f"sparse vm read on export 'top' at {off}"
        return self._nbd_io("top", what, lambda c: c.pread(off, length, df=df))

    def pread(self, off: int, length: int) -> bytes:
        """Read the secondary disk through the primary's export ``secondary``."""
        self._check_range(off, length)
        return self._nbd_io(
            "secondary", f"read on export 'secondary' at {off}", lambda c: c.pread(off, length)
        )

    # -- replication -------------------------------------------------------------------

    def start(self) -> None:
        """``xen-set-replication enable=true primary=false``."""
        self._qmp("xen-set-replication", {"enable": True, "primary": False})

    def checkpoint(self) -> None:
        """``xen-colo-do-checkpoint``: empty active and hidden, re-arm the copy."""
        self._qmp("xen-colo-do-checkpoint")

    def stop(self) -> None:
        """``xen-set-replication enable=false`` without failover.

        QEMU 7.2 always answers ``Backup job was cancelled unexpectedly``
        here (raised as :class:`QemuError`); replication is stopped anyway.
        """
        self._qmp("xen-set-replication", {"enable": False, "primary": False})

    def status(self) -> dict[str, Any]:
        """``query-xen-replication-status``: ``{"error": bool[, "desc": str]}``."""
        return dict(self._qmp("query-xen-replication-status"))

    def block_graph(self) -> dict[str, Any]:
        """``x-debug-query-block-graph``."""
        return dict(self._qmp("x-debug-query-block-graph"))

    def node_edges(self) -> list[tuple[str, str, str]]:
        """Every child edge of ``x-debug-query-block-graph`` as ``(parent, edge, child)``,
        sorted.  A block node is named by its node-name, or by its driver when QEMU
        made the name up (``#blockNNN``: the copy-before-write filter, the image files;
        ``query-named-block-nodes``); a BlockBackend or a job by its type."""
        drivers = {n["node-name"]: n["drv"]
                   for n in self._qmp("query-named-block-nodes", {"flat": True})}
        graph = self.block_graph()
        names = {}
        for n in graph.get("nodes", []):
            name = n.get("name", "") if n["type"] == "block-driver" else n["type"]
            names[n["id"]] = drivers.get(name, name) if name.startswith("#") else name
        return sorted((names[e["parent"]], e["name"], names[e["child"]])
                      for e in graph.get("edges", []))

    def colo_top_children(self) -> dict[str, str]:
        """``colo-top``'s child edges: edge name → child node name."""
        return _children(self.block_graph(), "colo-top")

    def failover(self) -> None:
        """``xen-set-replication enable=false failover=true``, then wait for the commit.

        QEMU discards failover errors and runs the active commit as an
        internal job without events, so completion is found by polling
        ``x-debug-query-block-graph`` until no ``block-job`` node is left and
        ``colo-top``'s ``file`` child is ``secondary-disk`` (while the commit
        runs it is the commit job's filter node, ``#blockNNN``).  If replication
        is not running (never started, stopped, or already failed over) QEMU
        ignores the command; so does this method.  If the commit cannot
        complete (``query-xen-replication-status`` reports an error), raise
        :class:`QemuError`.
        """
        before = self.status()
        self._qmp("xen-set-replication", {"enable": False, "primary": False, "failover": True})
        if before.get("error"):
            return  # not running or stopped: QEMU ignored the command
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        while True:
            graph = self.block_graph()
            job = any(n.get("type") == "block-job" for n in graph.get("nodes", []))
            children = _children(graph, "colo-top")
            if not job and children.get("file") == "secondary-disk":
                return
            if not job and children.get("file") == "active":
                # No commit job and still on active: the commit did not start
                # (or failed).  While it runs, the status says "I/O error
                # occurred" too, so only trust it here.
                st = self.status()
                if st.get("error"):
                    raise QemuError(
                        "failover did not complete: query-xen-replication-status says "
                        f"{st.get('desc')!r}; QEMU discards failover errors (a reader of "
                        f"node 'hidden' blocks the commit job); colo-top's children: "
                        f"{children}",
                        desc=st.get("desc"),
                        command="xen-set-replication",
                        log_tail=self.log_tail(),
                    )
            if time.monotonic() > deadline:
                self._fatal(
                    f"failover did not complete within {self.timeout} s; "
                    f"colo-top's children: {children}",
                    "xen-set-replication",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- dumps ---------------------------------------------------------------------------

    def dump(self) -> dict[str, Layer | None]:
        """Each layer's own contents, read live through temporary NBD exports.

        For ``secondary-disk``, ``hidden`` and ``active`` a read-only export
        with ``allocation-depth`` is added, read (``qemu:allocation-depth`` = 1
        → allocated in this layer, other bytes zeroed; ``base:allocation``'s
        zero bit there → ``zero``), and deleted again, waiting for
        ``BLOCK_EXPORT_DELETED``: a reader left on ``hidden`` would make a
        later failover fail.  ``"vm-view"`` is read through ``top`` (all
        allocated); it is None before start, when QEMU answers EIO.
        """
        layers: dict[str, Layer | None] = {
            "secondary": self.dump_node("secondary-disk"),
            "hidden": self.dump_node("hidden"),
            "active": self.dump_node("active"),
        }
        try:
            layers["vm-view"] = Layer.full(self.vread(0, self.size))
        except NbdError as exc:
            if exc.errno not in (errno.EIO, errno.ENOTCONN):
                raise
            layers["vm-view"] = None
        return layers

    def dump_node(self, node: str) -> Layer:
        """One node's own contents (see :meth:`dump`)."""
        self._check_open(f"dump {node}")
        self._dump_seq += 1
        name = f"dump-{self._dump_seq}"
        self._qmp(
            "block-export-add",
            {
                "type": "nbd",
                "id": name,
                "node-name": node,
                "name": name,
                "writable": False,
                "allocation-depth": True,
            },
        )
        try:
            try:
                with NbdClient(
                    self.nbd_socket,
                    name,
                    timeout=self.timeout,
                    meta_contexts=(BASE_ALLOCATION, ALLOCATION_DEPTH),
                ) as c:
                    extents = c.block_status(0, self.size)
                    data = bytearray(self.size)
                    c.pread_into(data, 0)
            except NbdDisconnected as exc:
                self._nbd_failed(exc, f"dump of node {node!r}")
                raise
        finally:
            if not self._res.closed:
                self._delete_export(name)
        return _layer_from(self.size, data, extents)

    def _delete_export(self, name: str) -> None:
        from qemu.qmp import EventListener

        qmp = self._res.qmp

        async def delete() -> None:
            listener = EventListener("BLOCK_EXPORT_DELETED")
            with qmp.listen(listener):
                await qmp.execute("block-export-del", {"id": name, "mode": "hard"})
                async for event in listener:
                    data = event.get("data")  # a Message maps str to object
                    if isinstance(data, dict) and data.get("id") == name:
                        break
            qmp.events.clear()  # the default listener keeps every event

        self._call(delete(), "block-export-del")


def _children(graph: dict[str, Any], node: str) -> dict[str, str]:
    names = {n["id"]: n.get("name", "") for n in graph.get("nodes", [])}
    ids = [i for i, n in names.items() if n == node]
    return {
        e["name"]: names.get(e["child"], "") for e in graph.get("edges", []) if e["parent"] in ids
    }
