"""Size a JupyterHub for the lab: memory and CPU per trainee kernel, N trainees at once.

Usage::

    python tools/hub_sizing.py --trainees 1
    python tools/hub_sizing.py --trainees 4 [--notebooks 00 04 05] [--timeout 600]

Each simulated trainee is a process that runs the trainee edition
(``notebooks/*.ipynb``) top to bottom, one fresh ``python3`` kernel per
notebook (as JupyterLab starts one per open notebook), in ``notebooks/``.
The N trainees start together.  A sampler reads every kernel's resident
memory (RSS, the kernel plus its children, e.g. QEMU in notebook 06) and CPU
time every 0.1 s with psutil.  Printed: per notebook the peak RSS and CPU
seconds of its kernel (worst over the trainees), the per-trainee-kernel peak,
what a trainee who keeps every notebook's kernel open holds at most, the
peak of all kernels together, and the wall time.  Widgets are not clicked:
clicks cost CPU in bursts of well under a second (``benchmarks/interactivity``),
not memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "notebooks"
MAX_TRAINEES = 8


def trainee(index: int, paths: list[str], timeout: int, queue: Any) -> None:
    """One trainee: each notebook in its own fresh kernel, in order."""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    os.environ.pop("LABKIT_SOLUTIONS", None)  # the trainee edition
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        km = KernelManager(kernel_name="python3")
        km.start_kernel(cwd=str(FOLDER))
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        queue.put({"trainee": index, "notebook": Path(path).stem, "pid": pid, "event": "start"})
        error = ""
        try:
            NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(FOLDER)}}).execute()
        except Exception as exc:  # reported, not fatal: the sizing still means something
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160]}"
        queue.put({"trainee": index, "notebook": Path(path).stem, "pid": pid, "event": "end",
                   "error": error})
        if km.has_kernel:
            km.shutdown_kernel(now=True)


def _rss_and_cpu(pid: int) -> tuple[int, float] | None:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        rss = 0
        cpu = 0.0
        for p in procs:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system
            except psutil.Error:
                continue
        return rss, cpu
    except psutil.Error:
        return None


def measure(trainees: int, names: list[str], timeout: int) -> dict[str, Any]:
    paths = sorted(str(p) for p in FOLDER.glob("*.ipynb")
                   if not names or any(p.stem.startswith(n) for n in names))
    if not paths:
        raise SystemExit(f"no notebook matches {names}")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    live: dict[int, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []
    peak_total = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_total
        while not stop.is_set():
            total = 0
            for run in list(live.values()):
                got = _rss_and_cpu(run["pid"])
                if got is not None:
                    run["peak_rss"] = max(run["peak_rss"], got[0])
                    run["cpu"] = max(run["cpu"], got[1])
                    total += got[0]
            peak_total = max(peak_total, total)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=trainee, args=(i, paths, timeout, queue))
             for i in range(trainees)]
    for p in procs:
        p.start()
    ended = 0
    deadline = time.monotonic() + timeout * len(paths) + 120
    while ended < trainees * len(paths) and time.monotonic() < deadline:
        try:
            msg = queue.get(timeout=1)
        except Exception:
            if not any(p.is_alive() for p in procs):
                break
            continue
        if msg["event"] == "start":
            live[msg["pid"]] = dict(msg, peak_rss=0, cpu=0.0, t0=time.perf_counter())
        else:
            run = live.pop(msg["pid"])
            run.update(error=msg["error"], seconds=time.perf_counter() - run["t0"])
            runs.append(run)
            ended += 1
    wall = time.perf_counter() - t0
    stop.set()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.terminate()
    return {"trainees": trainees, "runs": runs, "peak_total_rss": peak_total, "wall_s": wall,
            "cores": psutil.cpu_count(), "load_at_start": os.getloadavg()[0]}


def report(result: dict[str, Any]) -> str:
    mib = 1024 * 1024
    runs = result["runs"]
    out = [f"hub sizing: {result['trainees']} trainee(s) at once, {len(runs)} kernel runs, "
           f"{result['cores']} cores (load {result['load_at_start']:.1f} at start)", "",
           f"{'notebook':<30} {'peak RSS MiB':>12} {'CPU s':>7} {'wall s':>7}"]
    by_nb: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_nb.setdefault(r["notebook"], []).append(r)
    for name in sorted(by_nb):
        rs = by_nb[name]
        err = next((r["error"] for r in rs if r["error"]), "")
        out.append(f"{name:<30} {max(r['peak_rss'] for r in rs) / mib:12.0f} "
                   f"{max(r['cpu'] for r in rs):7.1f} {max(r['seconds'] for r in rs):7.1f}"
                   + (f"  ERROR {err}" if err else ""))
    peaks = [r["peak_rss"] for r in runs]
    per_trainee_all_open = max(
        (sum(r["peak_rss"] for r in runs if r["trainee"] == t) for t in
         {r["trainee"] for r in runs}), default=0)
    cpu_per_trainee = max(
        (sum(r["cpu"] for r in runs if r["trainee"] == t) for t in {r["trainee"] for r in runs}),
        default=0.0)
    out += ["",
            f"per-trainee-kernel peak RSS: max {max(peaks) / mib:.0f} MiB, median "
            f"{statistics.median(peaks) / mib:.0f} MiB",
            f"one trainee with every notebook's kernel left open: {per_trainee_all_open / mib:.0f}"
            f" MiB at most",
            f"CPU per trainee for the whole lab: {cpu_per_trainee:.1f} s",
            f"all kernels together at the peak: {result['peak_total_rss'] / mib:.0f} MiB",
            f"wall time: {result['wall_s']:.1f} s"]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainees", type=int, default=1,
                        help=f"simulated trainees at once (1-{MAX_TRAINEES})")
    parser.add_argument("--notebooks", nargs="*", default=[], metavar="PREFIX",
                        help="only these notebooks (e.g. 04 05); default all")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.trainees <= MAX_TRAINEES:
        parser.error(f"--trainees must be 1-{MAX_TRAINEES} (this measures, it is not a load "
                     f"test); got {args.trainees}")
    result = measure(args.trainees, args.notebooks, args.timeout)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 1 if any(r["error"] for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
