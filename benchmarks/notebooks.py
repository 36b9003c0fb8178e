"""Section 4: each notebook's execution time with nbclient, and the total.

Every ``notebooks/*.ipynb`` is executed top to bottom in a fresh ``python3``
kernel, in ``notebooks/`` (as ``make lab`` opens them), with
``LABKIT_SOLUTIONS`` unset (the trainee edition, as stored and as a trainee
first runs it).  The time includes the kernel's start.  The stored files are
not changed.  ``tools/lesson_timings.py`` adds reading estimates per lesson.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ._common import ROOT, run_child

TARGET_EACH_S = 20.0
TARGET_TOTAL_S = 90.0


def run(log: Callable[[str], None] = print) -> dict[str, Any]:
    """Execute the notebooks in a child process (the kernels' start-up chatter on stderr
    stays there unless something fails)."""
    return run_child("benchmarks.notebooks", "child", log=log)


def _run(log: Callable[[str], None] = print) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient

    os.environ.pop("LABKIT_SOLUTIONS", None)  # the trainee edition; the kernels inherit it
    os.environ.setdefault("MPLBACKEND", "Agg")
    folder = ROOT / "notebooks"
    rows = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}})
        t0 = time.perf_counter()
        error = ""
        try:
            client.execute()
        except Exception as exc:  # a failing notebook is reported, not fatal to the run
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
        seconds = time.perf_counter() - t0
        rows.append({"notebook": path.name, "seconds": round(seconds, 2),
                     "met": seconds <= TARGET_EACH_S and not error, "error": error})
        log(f"  {path.name:<36} {seconds:6.1f} s{'  ERROR ' + error if error else ''}")
    total = sum(r["seconds"] for r in rows)
    log(f"  {'total':<36} {total:6.1f} s")
    return {"notebooks": rows, "total_s": round(total, 2), "target_each_s": TARGET_EACH_S,
            "target_total_s": TARGET_TOTAL_S,
            "met": all(r["met"] for r in rows) and total <= TARGET_TOTAL_S}


if __name__ == "__main__":
    import json
    import sys

    if sys.argv[1:] == ["child"]:
        print(json.dumps(_run(log=lambda line: print(line, flush=True))))
    else:
        run()
