"""Suite-wide checks: no real QEMU and no temporary directory outlives the test run.

The real-QEMU backend (``labkit.qemu``) records every QEMU it launches and
its private directory (:func:`labkit.qemu.leftover_sessions`).  At the end of
the session, every one of them must be gone.  Only what *this* test process
started is checked — its own sessions, and ``qemu-system-*`` processes whose
parent is this process — so other users' (or other test runs') QEMUs on the
machine never make it fail.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _qemu_children() -> list[str]:
    """Running ``qemu-system-*`` processes whose parent is this process (Linux /proc)."""
    me = os.getpid()
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) < 2 or not comm.startswith("qemu-system"):
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != "Z":
            out.append(f"QEMU pid {entry.name} (a child of this test process) is still running")
    return out


def _leftovers() -> list[str]:
    found: list[str] = []
    if "labkit.qemu" in sys.modules:
        found += sys.modules["labkit.qemu"].leftover_sessions()
    if Path("/proc/self").exists():
        found += _qemu_children()
    return found


@pytest.fixture(scope="session", autouse=True)
def no_qemu_left_behind() -> Iterator[None]:
    """At the end of the run, assert that no QEMU or labkit temp directory survives."""
    yield
    gc.collect()  # sessions only referenced by garbage close in their finalizer
    left = _leftovers()
    deadline = time.monotonic() + 2.0
    while left and time.monotonic() < deadline:  # a just-killed QEMU may need a moment
        time.sleep(0.05)
        left = _leftovers()
    assert not left, "the test run left real-QEMU resources behind:\n" + "\n".join(left)
