"""Section 5: from a clean clone to an installed venv, its size, and the test run.

A ``git clone`` of this repository's last commit into a temporary folder, then
``make .venv/.test-installed`` there (what ``make test`` does first: a venv,
``pip install -e '.[test]'``) with the machine's warm package cache — the
set-up — and the installed size of ``.venv``.  Then, with ``--tests``,
``make test`` in the clone: ruff and the whole suite with the notebooks
(nbval), as a trainee's first ``make test`` runs it.  The clone is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import ROOT


def _env() -> dict[str, str]:
    """This environment without what would point the clone at our own venv."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    return env


def _size(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def run(tests: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    env = _env()
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
    clone = tmp / "labkit"
    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, env=env)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
        t1 = time.perf_counter()
        proc = subprocess.run(["make", ".venv/.test-installed"], cwd=clone, env=env,
                              capture_output=True, text=True)
        t2 = time.perf_counter()
        if proc.returncode != 0:
            raise RuntimeError(f"installing the clone's venv failed:\n{proc.stderr[-3000:]}")
        size = _size(clone / ".venv")
        out.update(commit=commit, clone_s=round(t1 - t0, 2), install_s=round(t2 - t1, 2),
                   setup_s=round(t2 - t0, 2), venv_bytes=size)
        log(f"  clean clone of {commit} → venv installed: {t2 - t0:.1f} s "
            f"(clone {t1 - t0:.1f} s, install {t2 - t1:.1f} s); .venv {size / 1e6:.0f} MB")
        if tests:
            proc = subprocess.run(["make", "test"], cwd=clone, env=env, capture_output=True,
                                  text=True)
            t3 = time.perf_counter()
            tail = (proc.stdout + proc.stderr).strip().splitlines()
            summary = next((line.strip("= ") for line in reversed(tail)
                            if re.search(r"\d+ (passed|failed|error)", line)), "")
            out.update(test_s=round(t3 - t2, 2), tests_passed=proc.returncode == 0,
                       test_summary=summary, clone_to_passing_s=round(t3 - t0, 2))
            log(f"  make test in the clone: {t3 - t2:.1f} s, "
                f"{'passed' if proc.returncode == 0 else 'FAILED'} ({summary}); clean clone → "
                f"passing make test: {t3 - t0:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    import sys
    run(tests="--tests" in sys.argv)
