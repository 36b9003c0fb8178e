"""What every section shares: the project's paths, running a child, the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def run_child(module: str, *args: str, timeout: float = 900,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh interpreter; its last stdout line is JSON.

    A section measures in a child what must not be skewed by what ran before in
    this process (memory, widgets left registered, imported modules).  The
    child's other stdout lines go to ``log`` as they come; its stderr is shown
    only if it fails.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        last = ""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("{"):
                last = line
            elif log is not None:
                log(line)
            if time.monotonic() > deadline:
                proc.kill()
                break
        code = proc.wait()
        if code != 0 or not last:
            err.seek(0)
            raise RuntimeError(f"python -m {module} {' '.join(args)} failed ({code}):\n"
                               f"{err.read()[-3000:]}")
    return json.loads(last)


def rss_bytes() -> int:
    """This process's resident set size now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux: ru_maxrss is in KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cores_busy(window: float = 1.0) -> float:
    """How many cores other processes keep busy, sampled over ``window`` seconds while
    this process sleeps (from ``/proc/stat``; 0.0 where it cannot be read).  The machine
    may be shared: a benchmark taken while another job runs says so."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)
    try:
        busy0, total0 = sample()
        time.sleep(window)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    if total1 == total0:
        return 0.0
    return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    qemu = ""
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                             text=True, timeout=10).stdout
        qemu = out.splitlines()[0] if out else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / (1 << 30), 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "qemu": qemu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
