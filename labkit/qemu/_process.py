"""One QEMU process: its command line, its log, its QMP socket, its death.

A session's QEMU is ``qemu-system-x86_64 -machine none -nodefaults -nographic
-display none -qmp unix:DIR/qmp.sock,server=on,wait=off`` (:func:`qemu_argv`):
no guest, no devices, no KVM, no root — QEMU only hosts the block graph.  It
runs in the session's private directory (:func:`labkit.qemu._cleanup.make_session_dir`),
writes its stdout and stderr to ``qemu.log`` there, and is started by
:func:`labkit.qemu._cleanup.launch` so that it dies with this process.

:class:`QemuProcess` knows nothing of QMP or NBD.  A failure it reports is a
:class:`~labkit.errors.QemuError` without ``desc`` (QEMU is gone or unusable);
the session (:class:`labkit.qemu._session.QemuSession`) closes itself on one
and re-raises it with the tail of the log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from labkit.errors import QemuError
from labkit.qemu import _cleanup

# No guest, no devices, no display: QEMU only hosts the block graph.
QUIET_MACHINE = ("-machine", "none", "-nodefaults", "-nographic", "-display", "none")
LOG_LINES = 20
_SOCKETS = ("qmp.sock", "nbd.sock")


def qemu_argv(exe: str, qmp_socket: str) -> list[str]:
    """The session QEMU's command line: a quiet machine with its QMP monitor on a unix
    socket that QEMU listens on without waiting for a client (``wait=off``)."""
    return [exe, *QUIET_MACHINE, "-qmp", f"unix:{qmp_socket},server=on,wait=off"]


class _Record:
    """What one session created: its directory and, once launched, QEMU's pid."""

    __slots__ = ("pid", "workdir")

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pid: int | None = None


#: Every session this Python process started, so that a test suite can check
#: that none left a QEMU or a directory behind (:func:`leftover_sessions`).
_STARTED: list[_Record] = []


def leftover_sessions() -> list[str]:
    """QEMU processes and temporary directories that this process's sessions left behind.

    One line per leftover: a QEMU (started by a :class:`~labkit.qemu.QemuSecondary` of
    this Python process) that is still running, or its private directory that
    still exists.  Empty when every session has been closed (or has not been
    started).  A session that is still open is listed too: call it when all
    sessions should be closed, e.g. at the end of a test run.
    """
    out = []
    for rec in _STARTED:
        if rec.pid is not None and _cleanup.names_dir(rec.pid, rec.workdir):
            out.append(f"QEMU pid {rec.pid} is still running")
        if rec.workdir.exists():
            out.append(f"temporary directory {rec.workdir} still exists")
    return out


class QemuProcess:
    """One ``qemu-system-x86_64`` in the session directory ``workdir``.

    Made before QEMU starts (the directory holds the images first); :meth:`start`
    launches it, :meth:`connect_qmp` returns a socket connected to its monitor,
    :meth:`dead` says how it died, :meth:`reap` waits for its exit.
    """

    def __init__(self, workdir: Path) -> None:
        for name in _SOCKETS:
            if len(os.fsencode(str(workdir / name))) > _cleanup.SUN_PATH_MAX:
                raise QemuError(f"socket path {workdir / name} is too long for a unix socket")
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self._record = _Record(workdir)
        _STARTED.append(self._record)

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
        return self.proc.pid if self.proc is not None else None

    def start(self, exe: str) -> None:
        """Launch QEMU (:func:`qemu_argv`) with its output in ``qemu.log``."""
        log = open(self.log_path, "wb")  # handed to the child, closed below
        try:
            # A new session: a terminal's Ctrl-C reaches labkit only, which closes
            # QEMU itself; PR_SET_PDEATHSIG kills QEMU if labkit dies without that.
            self.proc = _cleanup.launch(qemu_argv(exe, self.qmp_socket),
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.workdir,
                                        start_new_session=True)
        finally:
            log.close()
        self._record.pid = self.proc.pid
        _cleanup.record_qemu(self.workdir, self.proc.pid)

    def connect_qmp(self, timeout: float) -> socket.socket:
        """A socket connected to QEMU's QMP monitor, within ``timeout`` seconds.

        The socket file appears at ``bind()``, a moment before ``listen()``:
        the connection is retried until QEMU accepts it.
        """
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise QemuError(f"QEMU exited with status {self.proc.returncode} at launch",
                                command="launch")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.qmp_socket)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if time.monotonic() > deadline:
                raise QemuError(f"QEMU did not open its QMP socket within {timeout} s",
                                command="launch")
            time.sleep(0.002)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def dead(self, wait: float = 0.2) -> str | None:
        """A description of QEMU's death, or None if it is still running.

        A socket can report EOF a moment before the dying process can be
        reaped, so wait up to ``wait`` seconds for the exit.
        """
        proc = self.proc
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

    def settle(self, wait: float = 0.2) -> None:
        """Give a dying QEMU ``wait`` seconds to exit, so that its log is complete."""
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)

    def kill(self) -> None:
        """SIGKILL QEMU now, if it runs."""
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(OSError):
                self.proc.kill()

    def reap(self, wait: float) -> None:
        """Wait ``wait`` seconds for QEMU's exit, then kill it; note its exit status."""
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.exit_code = proc.returncode

    def log_text(self) -> str:
        """QEMU's whole stdout/stderr so far ("" once the directory is gone)."""
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_LINES) -> str:
        """The last ``lines`` lines of QEMU's stdout/stderr."""
        return "\n".join(self.log_text().splitlines()[-lines:])


__all__ = ["LOG_LINES", "QUIET_MACHINE", "QemuProcess", "leftover_sessions", "qemu_argv"]
