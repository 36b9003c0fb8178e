"""Every QEMU labkit starts dies with it, and its directory goes too.

Three guarantees, from the politest to the bluntest:

* **Signals.**  While a :class:`~labkit.qemu.QemuSecondary` is open, SIGTERM,
  SIGHUP and SIGINT first kill every open session's QEMU and remove its
  directory (:func:`close_all_sessions`), then do what they did before: the
  previous Python handler runs (SIGINT: ``KeyboardInterrupt``), or the signal
  is re-delivered with its default action (SIGTERM, SIGHUP: the process ends
  "killed by SIGTERM", as a caller such as ``timeout`` expects).  The
  handlers are installed when the first session opens and the previous ones
  restored when the last closes (only from the main thread: Python allows
  ``signal.signal`` nowhere else).
* **SIGKILL.**  Nothing runs in a process killed by SIGKILL, so the kernel
  does it: QEMU is started with ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux),
  set in the child between ``fork`` and ``exec``.  The death signal follows
  the *thread* that forked, so every QEMU is forked by one long-lived
  launcher thread, not by whichever thread opened the session.
* **Directories.**  Every session directory lives under
  ``$TMPDIR/lk-UID/`` and is named after its owner's pid; an ``owner`` file
  holds that pid and its start time.  :func:`sweep_stale` (run at import and
  at every launch) removes the directories whose owner is gone — killing a
  QEMU still recorded there, if its command line names that directory — so
  after a SIGKILL they are gone by the next labkit start at the latest.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

from ..errors import ScratchDirError

#: sun_path is 108 bytes including the terminating NUL.
SUN_PATH_MAX = 107
#: The signals that close every open session before they take effect.
SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_PR_SET_PDEATHSIG = 1
_OWNER = "owner"
_QEMU_PID = "qemu.pid"


class Closable(Protocol):
    def close(self, kill: bool = False) -> None: ...


# --- the open sessions and the signal handlers ---------------------------------------

_lock = threading.RLock()
_open: list[Closable] = []
_previous: dict[int, Any] = {}


def _handler(signum: int, frame: Any) -> None:
    """Kill every open session's QEMU, then let the signal do what it did before."""
    prev = _previous.get(signum, signal.SIG_DFL)  # before closing: the last close restores
    close_all_sessions()
    restore_signal_handlers()
    if callable(prev):
        prev(signum, frame)
    elif prev == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or a handler installed outside Python): the default action
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_signal_handlers() -> bool:
    """Make SIGTERM, SIGHUP and SIGINT close every open session first.

    Idempotent; returns False where handlers cannot be installed (not the main
    thread).  Called by every session at launch; the CLI may call it too.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        for sig in SIGNALS:
            current = signal.getsignal(sig)
            if current is _handler:
                continue
            try:
                signal.signal(sig, _handler)
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter
                return False
            _previous[sig] = current
    return True


def restore_signal_handlers() -> None:
    """Put back the handlers :func:`install_signal_handlers` replaced (if still ours)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for sig, prev in list(_previous.items()):
            if signal.getsignal(sig) is _handler:
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            del _previous[sig]


def session_opened(res: Closable) -> None:
    """Register an open session (its resources) and install the handlers."""
    with _lock:
        _open.append(res)
    install_signal_handlers()


def session_closed(res: Closable) -> None:
    """Forget a closed session; restore the handlers when none is left open."""
    with _lock:
        with contextlib.suppress(ValueError):
            _open.remove(res)
        last = not _open
    if last:
        restore_signal_handlers()


def close_all_sessions() -> None:
    """Kill every open session's QEMU and remove its directory, now."""
    with _lock:
        sessions = list(_open)
    for res in sessions:
        with contextlib.suppress(Exception):
            res.close(kill=True)


# --- launching QEMU so that it dies with us ------------------------------------------

def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets ``PR_SET_PDEATHSIG`` to SIGKILL (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return preexec


_launcher: concurrent.futures.ThreadPoolExecutor | None = None


def launch(argv: list[str], **popen: Any) -> Any:
    """``subprocess.Popen(argv, **popen)`` from the launcher thread, with the death signal.

    The launcher thread lives as long as the process, so the death signal
    (which follows the forking thread) fires only when the process ends.
    """
    import subprocess

    global _launcher
    with _lock:
        if _launcher is None:
            _launcher = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="labkit-qemu-launcher")
        launcher = _launcher
    preexec = _pdeathsig_preexec()
    if preexec is not None:
        popen["preexec_fn"] = preexec
    return launcher.submit(lambda: subprocess.Popen(argv, **popen)).result()


# --- the directories ----------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    """The process's start time (``/proc/PID/stat`` field 22), None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    if Path("/proc/self").exists():
        now = _start_time(pid)
        return now is not None and (start is None or now == start)
    return pid_exists(pid)


def pid_exists(pid: int) -> bool:
    """``kill(pid, 0)``: is there a process with this pid (another user's counts)?  For
    systems without /proc, where nothing better tells whose it is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _short_base() -> str:
    """A temporary base short enough for ``BASE/lk-UID/PID-XXXXXXXX/qmp.sock``."""
    base = tempfile.gettempdir()
    extra = len(f"/lk-{os.getuid()}/{os.getpid()}-12345678/qmp.sock")
    if len(os.fsencode(base)) + extra <= SUN_PATH_MAX:
        return base
    return "/tmp"


def runs_dir() -> Path:
    """``$TMPDIR/lk-UID``: where every session directory of this user lives (mode 0700)."""
    d = Path(_short_base()) / f"lk-{os.getuid()}"
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        st = d.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise ScratchDirError(f"{d} is not a directory of this user; remove it or set TMPDIR "
                                  f"elsewhere") from None
    return d


def make_session_dir() -> Path:
    """A new private directory named after this process, with its ``owner`` file."""
    wd = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=runs_dir()))
    try:
        (wd / _OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid()) or ''}\n")
    except BaseException:  # e.g. ENOSPC: no directory is left without its owner file
        shutil.rmtree(wd, ignore_errors=True)
        raise
    return wd


def record_qemu(workdir: Path, pid: int) -> None:
    """Note QEMU's pid in its directory, for the next run's sweep."""
    with contextlib.suppress(OSError):
        (workdir / _QEMU_PID).write_text(f"{pid}\n")


def names_dir(pid: int, workdir: Path) -> bool:
    """Is ``pid`` a live process whose command line names ``workdir``?  So a QEMU of
    ours: a recycled pid or another user's QEMU never is.  A zombie counts as gone."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return any(str(workdir) in arg for arg in proc.cmdline())
    except psutil.Error:
        return False


def _kill_recorded_qemu(wd: Path) -> None:
    try:
        pid = int((wd / _QEMU_PID).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if names_dir(pid, wd):  # ours, not a recycled pid
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def sweep_stale() -> list[Path]:
    """Remove session directories whose owner process is gone; returns those removed.

    A QEMU still recorded in such a directory (and naming it on its command
    line) is killed first.  Directories of live owners are left alone.
    """
    try:
        base = runs_dir()
        entries = list(base.iterdir())
    except OSError:
        return []
    removed = []
    for wd in entries:
        pid_text = wd.name.split("-", 1)[0]
        if not pid_text.isdigit() or not wd.is_dir():
            continue
        try:
            owner = (wd / _OWNER).read_text().split()
        except OSError:
            owner = []
        start = owner[1] if len(owner) > 1 else None
        if _alive(int(pid_text), start):
            continue
        _kill_recorded_qemu(wd)
        shutil.rmtree(wd, ignore_errors=True)
        removed.append(wd)
    return removed


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged user may still write on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


__all__ = ["SIGNALS", "close_all_sessions", "free_bytes", "install_signal_handlers", "launch",
           "make_session_dir", "names_dir", "pid_exists", "record_qemu",
           "restore_signal_handlers", "runs_dir", "session_closed", "session_opened",
           "sweep_stale"]
