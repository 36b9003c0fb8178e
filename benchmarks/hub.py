"""Section 8: a class on a real JupyterHub — N simulated trainees, on loopback only.

``python -m benchmarks --only hub`` (N = 10 and 30) or
``python -m benchmarks.hub --trainees 10 [--stagger 2] [--clicks 3]``.

The hub is ``deploy/local_hub.py``'s: JupyterHub from PyPI behind
configurable-http-proxy, one single-user server per trainee
(``SimpleLocalProcessSpawner``), a testing authenticator on 127.0.0.1.  The lab
is pulled with nbgitpuller from a local bare git repository of this checkout.

Each trainee (a thread), arriving ``stagger`` seconds after the previous one:

1. logs in through the hub's login form and asks the hub for a server
   (``/hub/spawn``, as the home page's button does) — *spawn time*, until the
   hub reports the server ready;
2. pulls the lab through nbgitpuller's API (``/user/NAME/git-pull/api``);
3. opens every notebook in turn (a kernel through the server's sessions API),
   runs all its cells (Run All: one ``execute_request`` per code cell, in
   order; the exercise checks are cells), then clicks each Step button the
   notebook shows (02's ``Step``, 05's ``▶``) ``clicks`` times, one second apart — a ``comm_msg``
   ``{"method": "custom", "content": {"event": "click"}}`` as JupyterLab sends
   it — *click-to-reply*: from sending the click to the kernel going idle after
   handling it; then shuts the notebook's kernel down, as "Close and Shut Down"
   does;
4. waits for the whole room, and then everybody presses **Run All in 05** at
   the same moment and clicks its Steps (*the burst*).

A sampler reads every trainee's resident memory every 0.5 s (the single-user
server and all its children: kernels and, in notebook 06, QEMU).  Printed and
returned: spawn p50/p95, nbgitpuller pull p50/p95, click-to-reply p50/p95 (the
whole run and the burst), per-trainee memory at the room's peak, the hub and
proxy's memory, errors, and how busy the machine was.  Bounded: at most
``MAX_TRAINEES`` trainees and ``deadline`` seconds; every request has a timeout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import ROOT, MiB, cores_busy

sys.path.insert(0, str(ROOT))
from deploy.local_hub import LocalHub, lab_repository, login, missing

MAX_TRAINEES = 40
NOTEBOOKS = ("00-start-here", "01-block-graph", "02-backup-sync-none",
             "03-replication-secondary", "04-conflicting-reads",
             "05-exploring-interleavings", "06-real-qemu")
BURST = "05-exploring-interleavings"
CLICK_TARGET_MS = 200.0
RUNS = (10, 30)
#: the buttons a trainee steps with: the stepper's Step (02), the replay's ▶ (05)
STEP_BUTTONS = ("Step", "▶")


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


class KernelSession:
    """One notebook's kernel, driven over the server's REST and websocket API as JupyterLab does."""

    def __init__(self, base: str, token: str, path: str, timeout: float = 300.0) -> None:
        import requests
        import websocket

        self.base, self.timeout = base, timeout
        self.headers = {"Authorization": f"token {token}"}
        r = requests.post(f"{base}/api/sessions", headers=self.headers, timeout=timeout,
                          json={"path": path, "name": Path(path).name, "type": "notebook",
                                "kernel": {"name": "python3"}})
        r.raise_for_status()
        self.session_id = r.json()["id"]
        kernel_id = r.json()["kernel"]["id"]
        self.client_session = uuid.uuid4().hex
        ws_url = base.replace("http://", "ws://", 1)
        self.ws = websocket.create_connection(
            f"{ws_url}/api/kernels/{kernel_id}/channels?session_id={self.client_session}",
            header=[f"Authorization: token {token}"], timeout=timeout)
        self.buttons: dict[str, str] = {}  # comm id -> description
        self.stdout = ""  # what the last cell printed

    def close(self) -> None:
        import requests

        try:
            self.ws.close()
        finally:
            requests.delete(f"{self.base}/api/sessions/{self.session_id}", headers=self.headers,
                            timeout=self.timeout)

    def _send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "trainee",
                       "session": self.client_session, "version": "5.3",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
            "buffers": []}))
        return msg_id

    def _recv(self) -> dict[str, Any]:
        data = self.ws.recv()
        if isinstance(data, bytes):  # a message with binary buffers: offsets, then JSON first
            (n,) = struct.unpack("!I", data[:4])
            offsets = struct.unpack(f"!{n}I", data[4:4 + 4 * n])
            end = offsets[1] if n > 1 else len(data)
            data = data[offsets[0]:end].decode()
        msg: dict[str, Any] = json.loads(data)
        return msg

    def _wait(self, msg_id: str, reply: bool) -> str:
        """Read messages until the kernel is idle after ``msg_id`` (and its reply came);
        note every widget button the kernel opens and keep what the cell printed
        (``self.stdout``).  Returns the reply's status."""
        status, idle, replied = "ok", False, not reply
        self.stdout = ""
        deadline = time.monotonic() + self.timeout
        while not (idle and replied):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply within {self.timeout:.0f} s")
            msg = self._recv()
            kind = msg.get("msg_type") or msg["header"]["msg_type"]
            if kind == "comm_open":
                state = msg["content"].get("data", {}).get("state", {})
                if state.get("_model_name") == "ButtonModel":
                    self.buttons[msg["content"]["comm_id"]] = str(state.get("description", ""))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if kind == "stream" and msg["content"].get("name") == "stdout":
                self.stdout += msg["content"].get("text", "")
            elif kind == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
            elif kind.endswith("_reply"):
                replied, status = True, msg["content"].get("status", "ok")
        return status

    def execute(self, code: str) -> str:
        """Run one cell; the reply's status ("ok" or "error")."""
        return self._wait(self._send("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}), reply=True)

    def click(self, comm_id: str) -> float:
        """Click a button; seconds until the kernel is idle again after handling it."""
        t0 = time.perf_counter()
        self._wait(self._send("comm_msg", {"comm_id": comm_id, "data": {
            "method": "custom", "content": {"event": "click"}}}), reply=False)
        return time.perf_counter() - t0


def code_cells(notebook: Path) -> list[tuple[str, bool]]:
    """(source, may raise) of every code cell; a cell tagged ``raises-exception`` may."""
    nb = json.loads(notebook.read_text())
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        out.append((source, "raises-exception" in cell.get("metadata", {}).get("tags", [])))
    return out


class Room:
    """What the trainees record, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spawn_s: list[float] = []
        self.pull_s: list[float] = []
        self.click_s: list[float] = []
        self.burst_click_s: list[float] = []
        self.run_all_s: dict[str, list[float]] = {}
        self.burst_run_all_s: list[float] = []
        self.errors: list[str] = []
        self.done = 0

    def add(self, what: str, value: Any, key: str = "") -> None:
        with self.lock:
            if key:
                getattr(self, what).setdefault(key, []).append(value)
            elif isinstance(getattr(self, what), list):
                getattr(self, what).append(value)


def run_notebook(server: str, token: str, name: str, room: Room, clicks: int,
                 burst: bool = False, think: float = 1.0) -> None:
    """Open ``name``, Run All, click its Step buttons ``clicks`` times, shut its kernel down."""
    path = f"labkit/notebooks/{name}.ipynb"
    kernel = KernelSession(server, token, path)
    where = "Run All"
    try:
        t0 = time.perf_counter()
        for i, (source, may_raise) in enumerate(code_cells(ROOT / "notebooks" / f"{name}.ipynb")):
            if kernel.execute(source) != "ok" and not may_raise:
                room.add("errors", f"{name} cell {i}: error")
                break
        if burst:
            room.add("burst_run_all_s", time.perf_counter() - t0)
        else:
            room.add("run_all_s", time.perf_counter() - t0, key=name)
        steps = [c for c, d in kernel.buttons.items() if d in STEP_BUTTONS]
        where = "clicks"
        for _ in range(clicks):
            for comm_id in steps:
                time.sleep(think)
                room.add("burst_click_s" if burst else "click_s", kernel.click(comm_id))
    except Exception as exc:
        raise RuntimeError(f"{name} ({'burst, ' if burst else ''}{where}): "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        kernel.close()


def arrive(hub: LocalHub, name: str, repo: Path) -> tuple[str, str, float, float]:
    """``name`` logs in, gets a server through the hub and pulls the lab with nbgitpuller.

    Returns (the server's base URL, a token of ``name``'s, spawn seconds, pull seconds).
    """
    import requests

    session = login(hub.url, name, hub.password)
    t0 = time.perf_counter()
    r = session.get(f"{hub.url}/hub/spawn/{name}", timeout=hub.timeout, allow_redirects=False)
    if r.status_code >= 400:
        raise RuntimeError(f"spawn: HTTP {r.status_code}")
    while True:
        server = (hub.api("GET", f"/users/{name}").json().get("servers") or {}).get("", {})
        if server.get("ready"):
            break
        if time.perf_counter() - t0 > hub.timeout:
            raise TimeoutError("the server did not become ready")
        time.sleep(0.25)
    spawn_s = time.perf_counter() - t0
    token = hub.user_token(name)
    base = f"{hub.url}/user/{name}"
    t0 = time.perf_counter()
    with requests.get(f"{base}/git-pull/api", headers={"Authorization": f"token {token}"},
                      params={"repo": f"file://{repo}", "branch": "main",
                              "targetpath": "labkit", "depth": "1"},
                      stream=True, timeout=hub.timeout) as pull:
        phase = ""
        for line in pull.iter_lines():
            if line.startswith(b"data:"):
                phase = json.loads(line[5:]).get("phase", phase)
                if phase in ("finished", "error"):
                    break
    if phase != "finished":
        raise RuntimeError(f"nbgitpuller: {phase or 'no answer'}")
    return base, token, spawn_s, time.perf_counter() - t0


def trainee(hub: LocalHub, index: int, repo: Path, room: Room, barrier: threading.Barrier,
            notebooks: tuple[str, ...], clicks: int, deadline: float) -> None:
    """One trainee's session; errors are recorded, never raised."""
    name = f"trainee{index:02d}"
    arrived = False
    try:
        base, token, spawn_s, pull_s = arrive(hub, name, repo)
        room.add("spawn_s", spawn_s)
        room.add("pull_s", pull_s)
        for nb in notebooks:
            if time.monotonic() > deadline:
                raise TimeoutError("the simulation's deadline passed")
            run_notebook(base, token, nb, room, clicks)
        arrived = True
        barrier.wait(max(1.0, deadline - time.monotonic()))
        run_notebook(base, token, BURST, room, clicks, burst=True)
        with room.lock:
            room.done += 1
    except Exception as exc:  # recorded: the figures say how many trainees failed, and why
        room.add("errors", f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
        if not arrived:
            barrier.abort()


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def _cpu(hub_pid: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds (user + system) of the hub and every descendant in ``seen``
    (pid -> the latest reading: a process's total once it has gone)."""
    import psutil

    try:
        hub = psutil.Process(hub_pid)
        procs = [hub, *hub.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            t = p.cpu_times()
            seen[p.pid] = t.user + t.system  # children_*: counted under their own pid
        except psutil.Error:
            continue


def _memory(hub_pid: int) -> tuple[list[int], int]:
    """(each single-user server's tree RSS, the hub's and the proxy's RSS): the hub's
    children running ``jupyterhub-singleuser`` are the trainees' servers, the rest is
    the hub's own (the proxy)."""
    import psutil

    servers: list[int] = []
    own = 0
    try:
        hub = psutil.Process(hub_pid)
        own = hub.memory_info().rss
        children = hub.children()
    except psutil.Error:
        return servers, own
    for child in children:
        try:
            if any("jupyterhub-singleuser" in part for part in child.cmdline()):
                servers.append(_tree_rss(child.pid))
            else:
                own += _tree_rss(child.pid)
        except psutil.Error:
            continue
    return [s for s in servers if s], own


def sampler(hub: LocalHub, room: Room, stop: threading.Event, out: dict[str, Any]) -> None:
    """Every 0.5 s: each trainee's server tree RSS; keep the room's peak."""
    out.update(peak_total=0, peak_users=0, peak_max_user=0, hub_rss=0)
    cpu: dict[int, float] = {}
    out["cpu"] = cpu
    while not stop.wait(0.5):
        if hub.proc is None:
            continue
        _cpu(hub.proc.pid, cpu)
        sizes, own = _memory(hub.proc.pid)
        total = sum(sizes)
        if total > out["peak_total"]:
            out.update(peak_total=total, peak_users=len(sizes), peak_max_user=max(sizes))
        out["hub_rss"] = max(out["hub_rss"], own)


def simulate(trainees: int, *, stagger: float = 2.0, clicks: int = 3,
             notebooks: tuple[str, ...] = NOTEBOOKS, deadline_s: float = 1800.0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a class of ``trainees`` against a fresh local hub; the figures as a dict."""
    if not 1 <= trainees <= MAX_TRAINEES:
        raise ValueError(f"trainees must be from 1 to {MAX_TRAINEES}, got {trainees}")
    room = Room()
    mem: dict[str, Any] = {}
    busy_before = cores_busy()
    started = time.perf_counter()
    with LocalHub(timeout=300.0) as hub:
        repo = lab_repository(hub.workdir / "labkit.git")
        deadline = time.monotonic() + deadline_s
        barrier = threading.Barrier(trainees)
        stop = threading.Event()
        watch = threading.Thread(target=sampler, args=(hub, room, stop, mem), daemon=True)
        watch.start()
        threads = []
        for i in range(trainees):
            t = threading.Thread(target=trainee, args=(hub, i, repo, room, barrier, notebooks,
                                                       clicks, deadline), daemon=True)
            t.start()
            threads.append(t)
            time.sleep(stagger)
        for t in threads:
            t.join(max(1.0, deadline - time.monotonic() + 60))
        stop.set()
        watch.join(5)
        if room.errors:  # the hub's log (servers' and kernels' too) outlives the hub
            kept = Path(tempfile.gettempdir()) / f"labkit-hub-N{trainees}.log"
            shutil.copy(hub.log_path, kept)
            log(f"errors: the hub's log is kept in {kept}")
    wall = time.perf_counter() - started
    ms = [s * 1000 for s in room.click_s]
    burst_ms = [s * 1000 for s in room.burst_click_s]
    every_ms = ms + burst_ms
    result = {
        "trainees": trainees, "stagger_s": stagger, "clicks": clicks,
        "completed": room.done, "errors": room.errors,
        "spawn_p50_s": percentile(room.spawn_s, 50), "spawn_p95_s": percentile(room.spawn_s, 95),
        "pull_p50_s": percentile(room.pull_s, 50), "pull_p95_s": percentile(room.pull_s, 95),
        "click_n": len(ms), "click_p50_ms": percentile(ms, 50), "click_p95_ms": percentile(ms, 95),
        "burst_click_n": len(burst_ms), "burst_click_p50_ms": percentile(burst_ms, 50),
        "burst_click_p95_ms": percentile(burst_ms, 95),
        "all_click_p95_ms": percentile(every_ms, 95),
        "burst_run_all_p50_s": percentile(room.burst_run_all_s, 50),
        "burst_run_all_max_s": max(room.burst_run_all_s, default=None),
        "run_all_p50_s": {k: statistics.median(v) for k, v in room.run_all_s.items()},
        "peak_total_mib": mem.get("peak_total", 0) / MiB,
        "peak_servers": mem.get("peak_users", 0),
        "peak_per_trainee_mib": (mem["peak_total"] / mem["peak_users"] / MiB
                                 if mem.get("peak_users") else None),
        "peak_max_trainee_mib": mem.get("peak_max_user", 0) / MiB,
        "hub_and_proxy_mib": mem.get("hub_rss", 0) / MiB,
        "cpu_s": round(sum(mem.get("cpu", {}).values()), 1),
        "cpu_s_per_trainee": round(sum(mem.get("cpu", {}).values()) / trainees, 1),
        "cores_busy_before": round(busy_before, 2),
        "wall_s": round(wall, 1),
    }
    log(summary(result))
    return result


def _fmt(v: float | None, unit: str, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v * scale:.{digits}f} {unit}"


def summary(r: dict[str, Any]) -> str:
    """One paragraph of the figures."""
    return (f"N={r['trainees']}: completed {r['completed']}/{r['trainees']}, "
            f"errors {len(r['errors'])}; spawn p50 {_fmt(r['spawn_p50_s'], 's')}, "
            f"p95 {_fmt(r['spawn_p95_s'], 's')}; pull p95 {_fmt(r['pull_p95_s'], 's')}; "
            f"click p50 {_fmt(r['click_p50_ms'], 'ms', digits=0)}, "
            f"p95 {_fmt(r['click_p95_ms'], 'ms', digits=0)} (n={r['click_n']}); burst click "
            f"p95 {_fmt(r['burst_click_p95_ms'], 'ms', digits=0)} (n={r['burst_click_n']}), "
            f"burst Run All in 05 p50 {_fmt(r['burst_run_all_p50_s'], 's')}, "
            f"max {_fmt(r['burst_run_all_max_s'], 's')}; memory at the peak "
            f"{r['peak_total_mib']:.0f} MiB for {r['peak_servers']} servers "
            f"({_fmt(r['peak_per_trainee_mib'], 'MiB', digits=0)} each, largest "
            f"{r['peak_max_trainee_mib']:.0f} MiB), hub + proxy "
            f"{r['hub_and_proxy_mib']:.0f} MiB; CPU {r['cpu_s']:.0f} s "
            f"({r['cpu_s_per_trainee']:.1f} s per trainee); other jobs kept "
            f"{r['cores_busy_before']} cores busy before; wall {r['wall_s']:.0f} s")


def run(runs: tuple[int, ...] = RUNS, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The section: the class simulator at each N in ``runs``."""
    why = missing()
    if why is not None:
        log(f"hub: not available ({why})")
        return {"available": False, "missing": why}
    return {"available": True, "runs": [simulate(n, log=log) for n in runs]}


def rows(r: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The section's rows of the ``python -m benchmarks`` table."""
    if not r:
        return []
    if not r.get("available"):
        return [("8 class on a JupyterHub", f"not available ({r.get('missing')})", "", "n/a")]
    out = []
    for x in r["runs"]:
        n = x["trainees"]
        p95 = x["all_click_p95_ms"]
        out += [
            (f"8 hub N={n}: spawn p50 / p95", f"{_fmt(x['spawn_p50_s'], 's')} / "
             f"{_fmt(x['spawn_p95_s'], 's')}", "", ""),
            (f"8 hub N={n}: click-to-reply p95 (all / burst)", f"{_fmt(p95, 'ms', digits=0)} / "
             f"{_fmt(x['burst_click_p95_ms'], 'ms', digits=0)}", f"≤ {CLICK_TARGET_MS:.0f} ms",
             "n/a" if p95 is None else ("met" if p95 <= CLICK_TARGET_MS else "MISSED")),
            (f"8 hub N={n}: memory per trainee at the peak",
             _fmt(x["peak_per_trainee_mib"], "MiB", digits=0), "", ""),
            (f"8 hub N={n}: errors", f"{len(x['errors'])} ({x['completed']}/{n} completed)",
             "0", "met" if not x["errors"] else "MISSED"),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainees", type=int, default=10)
    parser.add_argument("--stagger", type=float, default=2.0, help="seconds between arrivals")
    parser.add_argument("--clicks", type=int, default=3, help="clicks per Step button")
    parser.add_argument("--notebooks", nargs="*", default=list(NOTEBOOKS))
    parser.add_argument("--deadline", type=float, default=1800.0)
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    why = missing()
    if why is not None:
        print(f"the local hub needs {why}", file=sys.stderr)
        return 1
    result = simulate(args.trainees, stagger=args.stagger, clicks=args.clicks,
                      notebooks=tuple(args.notebooks), deadline_s=args.deadline)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
