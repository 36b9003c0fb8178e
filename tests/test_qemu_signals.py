"""Every QEMU labkit starts dies with it: ``labkit compare`` killed mid-scenario.

``python -m labkit compare`` runs a long sequential scenario in a child
process with its own short ``TMPDIR``; once its QEMU is up, the child gets
SIGTERM, SIGHUP, SIGINT or SIGKILL.  Afterwards no QEMU of it runs and no
session directory is left — for SIGKILL, the kernel kills QEMU
(``PR_SET_PDEATHSIG``) and the directory is gone by the next labkit start.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.config import LabConfig
from labkit.testing import child_processes, process_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lks", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _long_scenario(path: Path) -> None:
    """~1,000 sequential commands: seconds on QEMU (dumps take ~6 ms each)."""
    lines = ["# config: size=1M", "start"]
    for i in range(200):
        b = 0x80 + i % 0x70
        lines += [f"pwrite {i % 256}b 4K {b:#x}", f"vwrite {(i * 7) % 256}b 4K {b:#x}",
                  f"vread {(i * 3) % 256}b 4K", "dump", f"expect secondary {i % 256}b 4K {b:#x}"]
    path.write_text("\n".join(lines) + "\n")


def _qemu_children(ppid: int, tmp: Path) -> list[int]:
    """QEMUs of ``ppid``'s sessions (not the availability probe: its command line names
    no session directory)."""
    return [p.pid for p in child_processes(ppid)
            if p.state != "Z" and os.fsencode(str(tmp)) in p.cmdline]


def _gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z", "X")


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _session_dirs(tmp: Path) -> list[Path]:
    base = tmp / f"lk-{os.getuid()}"
    return sorted(base.iterdir()) if base.exists() else []


def _start(tmp: Path, scenario: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, TMPDIR=str(tmp),
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "compare", str(scenario)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        kids = _qemu_children(proc.pid, tmp)
        if kids:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no QEMU appeared (exit {proc.poll()}): "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.01)
    time.sleep(0.3)  # in the middle of the scenario
    assert proc.poll() is None, "the scenario ended too soon to be interrupted"
    return proc, kids[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_closes_qemu_and_its_directory(qemu: None, short_tmp: Path,
                                              tmp_path: Path, sig: signal.Signals) -> None:
    scenario = tmp_path / "long.scn"
    _long_scenario(scenario)
    proc, qpid = _start(short_tmp, scenario)
    assert _session_dirs(short_tmp), "the session directory is under $TMPDIR/lk-UID"
    proc.send_signal(sig)
    rc = proc.wait(30)
    assert rc != 0
    if sig != signal.SIGINT:  # the handler re-delivers the signal with its default action
        assert rc == -sig
    assert _wait_gone(qpid), f"QEMU pid {qpid} survived {sig.name}"
    assert _session_dirs(short_tmp) == []


def test_sigkill_qemu_dies_and_the_next_start_sweeps(qemu: None, short_tmp: Path,
                                                     tmp_path: Path) -> None:
    scenario = tmp_path / "long.scn"
    _long_scenario(scenario)
    proc, qpid = _start(short_tmp, scenario)
    left = _session_dirs(short_tmp)
    proc.kill()
    proc.wait(30)
    assert _wait_gone(qpid), "PR_SET_PDEATHSIG did not kill QEMU"
    assert _session_dirs(short_tmp) == left  # nothing could run in the killed process
    small = tmp_path / "small.scn"
    small.write_text("start\npwrite 0 4K 0xbb\ndump\n")
    env = dict(os.environ, TMPDIR=str(short_tmp),
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run([sys.executable, "-m", "labkit", "compare", "--size", "128K",
                           str(small)], env=env, capture_output=True, text=True, timeout=60,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert _session_dirs(short_tmp) == []


def test_sweep_keeps_live_owners_and_removes_dead_ones(short_tmp: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.qemu import _cleanup

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    mine = _cleanup.make_session_dir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = _cleanup.runs_dir() / f"{dead.pid}-abcdefgh"
    stale.mkdir()
    (stale / "owner").write_text(f"{dead.pid} 1\n")
    (stale / "qemu.pid").write_text("1\n")  # pid 1 does not name the directory: not killed
    removed = _cleanup.sweep_stale()
    assert stale in removed and not stale.exists()
    assert mine.exists()
    shutil.rmtree(mine)


def test_size_that_does_not_fit_is_refused_before_qemu(qemu: None, short_tmp: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.errors import LimitError
    from labkit.qemu import QemuSecondary, _cleanup

    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(_cleanup, "free_bytes", lambda path: 100 << 20)
    with pytest.raises(LimitError, match="temporary filesystem") as e:
        QemuSecondary(LabConfig(size=1 << 30))
    assert isinstance(e.value, ValueError)
    assert _session_dirs(short_tmp) == []
    with QemuSecondary(LabConfig(size=1 << 30, fill="zero")) as q:  # sparse: fits
        assert (q.workdir / "secondary.raw").stat().st_blocks == 0


def test_handlers_installed_while_a_session_is_open(qemu: None) -> None:
    from labkit.qemu import QemuSecondary, _cleanup

    before = signal.getsignal(signal.SIGTERM)
    with QemuSecondary(LabConfig(size=128 * 1024)):
        assert signal.getsignal(signal.SIGTERM) is not before
        assert all(s in _cleanup.SIGNALS for s in (signal.SIGTERM, signal.SIGHUP,
                                                    signal.SIGINT))
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_in_process_closes_the_session_then_raises_keyboard_interrupt(
        qemu: None) -> None:
    """The previous SIGINT handler (Python's: KeyboardInterrupt) still runs, after the close."""
    from labkit.qemu import QemuSecondary

    q = QemuSecondary(LabConfig(size=128 * 1024))
    wd, pid = q.workdir, q.pid
    assert pid is not None
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            time.sleep(0.001)
    assert q.closed and not wd.exists() and _wait_gone(pid)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_race_comparison(qemu: None, short_tmp: Path, tmp_path: Path,
                                         sig: signal.Signals) -> None:
    """A race comparison killed while requests may be held: nothing is left behind."""
    from labkit import scenarios

    scenario = tmp_path / "race.scn"
    scenario.write_text(scenarios.load("canonical3"))  # 13 orders: seconds of QEMU
    proc, qpid = _start(short_tmp, scenario)
    proc.send_signal(sig)
    proc.wait(30)
    assert _wait_gone(qpid)
    deadline = time.monotonic() + 5
    while _session_dirs(short_tmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_dirs(short_tmp) == []
