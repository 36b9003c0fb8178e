"""One real QEMU 7.2 session: its life cycle, around the graph a subclass builds.

:class:`QemuSession` puts the parts together, in this order:

1. the images (:mod:`labkit.qemu._images`): ``secondary.raw`` filled as the
   :class:`~labkit.config.LabConfig` says, the qcow2 overlays the subclass
   names (:meth:`QemuSession._create_images`), after a disk-space check;
2. the process (:mod:`labkit.qemu._process`): ``qemu-system-x86_64 -machine
   none`` in a private directory, within the clean-up's reach
   (:mod:`labkit.qemu._cleanup`: signals, the death signal, stale directories);
3. the QMP channel (:mod:`labkit.qemu._qmp`), negotiated, and a check that this
   QEMU has the COLO commands;
4. the graph, built by the subclass over QMP (:meth:`QemuSession._build_graph`):
   :class:`~labkit.qemu.QemuSecondary` (COLO's secondary) or
   :class:`~labkit.qemu._fleecing.QemuFleecing` (image fleecing);
5. NBD clients of its exports (:mod:`labkit.qemu._exports`), made on first use.

Everything is synchronous.  A QMP error reply raises :class:`QemuError` with
QMP's ``desc`` and leaves the session usable.  QEMU dying, or not answering
within ``timeout`` seconds, raises :class:`QemuError` with the tail of QEMU's
log and closes the session (QEMU killed, temporary directory removed): the
parts report it as a ``QemuError`` without ``desc``, and :meth:`QemuSession._lost`
turns that into the closing.
"""

from __future__ import annotations

import contextlib
import shutil
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, Self, TypeVar

from labkit.block import check_byte_request
from labkit.config import LabConfig
from labkit.errors import ArgumentError, ConfigError, QemuError, QemuNotAvailable
from labkit.layers import Layer
from labkit.qemu import _cleanup
from labkit.qemu._exports import NbdExports
from labkit.qemu._images import check_space, fill_secondary, find_qemu_img
from labkit.qemu._nbd import NbdClient
from labkit.qemu._process import LOG_LINES, QemuProcess
from labkit.qemu._qmp import QmpChannel

_T = TypeVar("_T")

_QUIT_WAIT = 5.0
#: QEMU's request alignment on the session's exports: 1 byte.  file-posix without
#: O_DIRECT (block/file-posix.c, ``raw_probe_alignment``) and qcow2
#: (block/qcow2.c, ``qcow2_refresh_limits``, unencrypted) set ``request_alignment``
#: to 1, and the NBD server advertises that (nbd/server.c, ``nbd_negotiate_handle_info``).
NBD_ALIGNMENT = 1
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 3600.0

# A labkit killed with SIGKILL left its directories: remove them at the next start.
_cleanup.sweep_stale()


def check_timeout(timeout: object) -> float:
    """A QEMU timeout in seconds: a finite number from 0.1 to 3600 (one hour)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ArgumentError(f"timeout must be a number of seconds, got {timeout!r}")
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:  # also refuses nan and inf
        raise ConfigError(f"timeout must be from {MIN_TIMEOUT} to {MAX_TIMEOUT:.0f} seconds, "
                          f"got {timeout!r}")
    return float(timeout)


class _Resources:
    """Everything a session owns; closed by :meth:`close` exactly once.

    Kept apart from :class:`QemuSession` so that ``weakref.finalize`` can
    hold it without keeping the session alive.
    """

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.process: QemuProcess | None = None
        self.channel: QmpChannel | None = None
        self.exports: NbdExports | None = None
        self.exit_code: int | None = None
        self.closed = False

    def close(self, kill: bool = False) -> None:
        """Quit QEMU (``kill``: SIGKILL it at once), stop QMP, remove the directory."""
        if self.closed:
            if kill:  # a signal handler while a close is in progress: finish it now
                self._kill_now()
            return
        self.closed = True
        if self.exports is not None:
            self.exports.close()
        proc, channel = self.process, self.channel
        if kill and proc is not None:
            proc.kill()
        connected = channel is not None and channel.connected
        if channel is not None:
            channel.close(quit=not kill and proc is not None and proc.running())
        if proc is not None:
            proc.reap(_QUIT_WAIT if connected else 0.1)
            self.exit_code = proc.exit_code
        self.channel = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        _cleanup.session_closed(self)

    def _kill_now(self) -> None:
        """SIGKILL QEMU and remove the directory, whatever else is under way."""
        if self.process is not None:
            self.process.kill()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


class QemuSession:
    """A real QEMU 7.2 with a graph a subclass builds (see the module docstring).

    ``config`` (a :class:`~labkit.config.LabConfig`, checked when it was made)
    gives the disk ``size``, the ``block`` of the ``"index"`` fill, the qcow2
    cluster sizes and the ``fill``; its ``design``, ``era`` are the simulator's.
    ``timeout`` (0.1-3600 s) bounds every QMP command, NBD request and wait.
    ``blkdebug=True`` puts a ``blkdebug`` node under each image file and a named
    read-only BlockBackend over each, to hold requests at breakpoints
    (:mod:`labkit.qemu._pause`).  QEMU is launched by the constructor; use the
    session as a context manager (or call :meth:`close`).
    """

    def __init__(self, config: LabConfig, *, timeout: float = 10.0,
                 qemu: str = "qemu-system-x86_64", blkdebug: bool = False) -> None:
        if not isinstance(config, LabConfig):
            raise ArgumentError(f"{type(self).__name__} takes a labkit.config.LabConfig, got "
                                f"{type(config).__name__}")
        self.timeout = check_timeout(timeout)
        self._check_config(config)
        self.config = config
        self.size = config.size
        self.block = config.block
        self.hidden_cluster = config.hidden_cluster
        self.active_cluster = config.active_cluster
        self.fill = config.fill
        self.qemu = qemu
        self.blkdebug = bool(blkdebug)
        self.version: str = ""
        self._dump_seq = 0
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.close)
        try:
            exe = shutil.which(qemu)
            if exe is None:
                raise QemuNotAvailable(f"QEMU binary {qemu!r} not found")
            qemu_img = find_qemu_img(qemu)
            if qemu_img is None:
                raise QemuNotAvailable("qemu-img not found")
            self._launch(exe, qemu_img)
        except BaseException:
            self.close()
            raise

    # -- what a subclass provides ------------------------------------------------------

    def _check_config(self, config: LabConfig) -> None:
        """Refuse a configuration this graph cannot run (a :class:`ConfigError`)."""

    def _create_images(self, workdir: Path, qemu_img: str) -> None:
        """Create the qcow2 images over ``secondary.raw`` (with
        :func:`~labkit.qemu._images.create_overlay`)."""
        raise NotImplementedError

    def _build_graph(self, exe: str, workdir: Path) -> None:
        """``blockdev-add`` the graph and export it over NBD."""
        raise NotImplementedError

    # -- properties ------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """The private temporary directory (removed by :meth:`close`)."""
        assert self._res.workdir is not None
        return self._res.workdir

    @property
    def qmp_socket(self) -> str:
        return self._process.qmp_socket

    @property
    def nbd_socket(self) -> str:
        return self._process.nbd_socket

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    @property
    def _process(self) -> QemuProcess:
        assert self._res.process is not None
        return self._res.process

    @property
    def pid(self) -> int | None:
        """QEMU's process id (None before launch)."""
        return self._res.process.pid if self._res.process is not None else None

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
            f"<{type(self).__name__} size={self.size} block={self.block} "
            f"hidden_cluster={self.hidden_cluster} active_cluster={self.active_cluster} "
            f"QEMU {self.version or '?'} ({state})>"
        )

    # -- life cycle ------------------------------------------------------------

    def __enter__(self) -> Self:
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

    def _launch(self, exe: str, qemu_img: str) -> None:
        _cleanup.sweep_stale()  # directories left by a labkit killed with SIGKILL
        check_space(_cleanup.runs_dir(), self.size, self.fill)
        # Registered before anything exists, so that a signal from here on closes
        # whatever has been made (the directory, QEMU once its pid is known).
        _cleanup.session_opened(self._res)
        wd = _cleanup.make_session_dir()
        self._res.workdir = wd
        process = self._res.process = QemuProcess(wd)
        fill_secondary(wd / "secondary.raw", self.size, self.block, self.fill)
        self._create_images(wd, qemu_img)
        with self._lost():
            process.start(exe)
            sock = process.connect_qmp(self.timeout)
            # the process's methods, never the session's: the resources must not hold it
            self._res.channel = QmpChannel(self.timeout, process.dead, process.log_tail)
            greeting = self._res.channel.connect(sock)  # the channel owns sock now
        v = greeting["QMP"]["version"]["qemu"]
        self.version = f"{v['major']}.{v['minor']}.{v['micro']}"
        commands = self.qmp("query-commands")
        if not any(c.get("name") == "xen-set-replication" for c in commands):
            raise QemuNotAvailable(f"{exe} has no QMP command xen-set-replication")
        self._res.exports = NbdExports(process.nbd_socket, self.timeout, process.dead,
                                       process.log_text)
        self._build_graph(exe, wd)

    # -- errors ----------------------------------------------------------------------

    def log_text(self) -> str:
        """QEMU's whole stdout/stderr so far ("" once closed)."""
        proc = self._res.process
        return "" if proc is None else proc.log_text()

    def log_tail(self, lines: int = LOG_LINES) -> str:
        """The last ``lines`` lines of QEMU's stdout/stderr ("" once closed)."""
        proc = self._res.process
        return "" if proc is None else proc.log_tail(lines)

    @contextlib.contextmanager
    def _lost(self) -> Iterator[None]:
        """A part's :class:`QemuError` without ``desc`` (QEMU died, hung or broke the
        connection) closes the session and is raised again with the log's tail."""
        try:
            yield
        except QemuError as exc:
            if exc.desc is not None:
                raise
            self._fatal(str(exc), exc.command)

    def _fatal(self, message: str, command: str | None) -> NoReturn:
        """Close the session and raise QemuError(message + log tail)."""
        if self._res.process is not None:
            self._res.process.settle()  # a dying QEMU's last log lines
        tail = self.log_tail()
        self._res.close(kill=True)
        self._finalizer.detach()
        raise QemuError(message, command=command, log_tail=tail)

    def _check_open(self, what: str) -> None:
        if self._res.closed:
            raise QemuError(f"{what}: the QEMU session is closed", command=what)

    def _check_request(self, what: str, node: str, off: int, length: int) -> None:
        """The request's range on the disk, as the engine checks its own (one check)."""
        check_byte_request(what, node, self.size, off, length, NBD_ALIGNMENT)

    # -- QMP -------------------------------------------------------------------------

    def qmp(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run any QMP command and return its result (QemuError on an error reply)."""
        self._check_open(command)
        assert self._res.channel is not None
        with self._lost():
            return self._res.channel.execute(command, arguments)

    def hmp(self, command_line: str) -> str:
        """Run an HMP command (``human-monitor-command``); return its output."""
        return str(self.qmp("human-monitor-command", {"command-line": command_line}))

    def _export(self, name: str, node: str, writable: bool, export_id: str | None = None,
                **options: object) -> None:
        """``block-export-add`` of an NBD export ``name`` on ``node`` (id ``exp-NAME``)."""
        self.qmp("block-export-add", {"type": "nbd", "id": export_id or f"exp-{name}",
                                      "node-name": node, "name": name, "writable": writable,
                                      **options})

    def _delete_export(self, export_id: str) -> None:
        """``block-export-del mode=hard``, then wait for ``BLOCK_EXPORT_DELETED``: a reader
        left on a node (e.g. ``hidden``) would make a later failover fail."""
        self._check_open("block-export-del")
        assert self._res.channel is not None
        with self._lost():
            self._res.channel.execute_until("block-export-del",
                                            {"id": export_id, "mode": "hard"},
                                            "BLOCK_EXPORT_DELETED", {"id": export_id})

    def _image_file(self, debug_node: str, filename: str) -> dict[str, Any]:
        """An image's ``file`` child: the file itself, or a blkdebug node over it."""
        file = {"driver": "file", "filename": filename}
        if not self.blkdebug:
            return file
        return {"driver": "blkdebug", "node-name": debug_node, "image": file}

    def _add_breakpoint_drives(self, drives: dict[str, str]) -> None:
        """A named read-only BlockBackend (``drive_add``) over each blkdebug node of
        ``drives`` (node → drive id), to set breakpoints through with ``qemu-io``.

        block/monitor/block-hmp-cmds.c, ``hmp_qemu_io``: on a node name it makes a
        temporary BlockBackend (``local_blk``) and ``blk_unref()`` drains it, which
        hangs the monitor for good while a request is suspended.  A named
        BlockBackend per blkdebug node, made before any breakpoint, does not.
        """
        for node, drive in drives.items():
            out = self.hmp(f'drive_add 0 if=none,id={drive},readonly=on,'
                           f'file=json:{{"driver":"raw",,"file":"{node}"}}')
            if out.strip() != "OK":
                raise QemuError(f"drive_add {drive} failed: {out.strip()}",
                                command="drive_add", log_tail=self.log_tail())

    # -- NBD -------------------------------------------------------------------------

    def _nbd_io(self, export: str, what: str, fn: Callable[[NbdClient], _T]) -> _T:
        """``fn`` on a client of ``export``; a dropped client is an :class:`NbdError` (the
        next I/O reconnects), QEMU's death closes the session."""
        self._check_open(what)
        assert self._res.exports is not None
        with self._lost():
            return self._res.exports.io(export, what, fn)

    def _nbd_drop(self, export: str) -> None:
        """Close the client of ``export`` (before QEMU's export moves or goes)."""
        if self._res.exports is not None:
            self._res.exports.drop(export)

    def dump_node(self, node: str) -> Layer:
        """One node's own contents, read live through a temporary NBD export.

        A read-only export with ``allocation-depth`` is added, read
        (``qemu:allocation-depth`` = 1 → allocated in this node, other bytes
        zeroed; ``base:allocation``'s zero bit there → ``zero``), and deleted
        again, waiting for ``BLOCK_EXPORT_DELETED``.
        """
        self._check_open(f"dump {node}")
        self._dump_seq += 1
        name = f"dump-{self._dump_seq}"
        self._export(name, node, False, export_id=name, **{"allocation-depth": True})
        try:
            assert self._res.exports is not None
            with self._lost():
                return self._res.exports.read_node(name, self.size, f"dump of node {node!r}")
        finally:
            if not self._res.closed:
                self._delete_export(name)


__all__ = ["MAX_TIMEOUT", "MIN_TIMEOUT", "QemuSession", "check_timeout"]
