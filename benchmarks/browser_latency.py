"""Section 3b: click-to-new-image latency of each widget's Step, in JupyterLab in Chromium.

What a trainee feels: from the click on a widget's Step button (in the page)
to the widget's first ``<img>`` getting its new ``src`` — the comm message to
the kernel, the engine's decision(s), the redraw and PNG encode, the message
back, the new blob URL (the target's figure); and, reported beside it, to the
last new image of the click (a Step may redraw the block map and the graph).
Measured in the page with ``performance.now()`` and a ``MutationObserver`` on
the images, 40 clicks per widget, at 256 cells (1 MiB disk, 4 KiB blocks) and
4,096 cells (2 MiB, 512-byte blocks).

This module also holds the browser plumbing ``tests/test_browser.py`` uses
(JupyterLab on a free port, Debian's Chromium through Playwright, opening and
running a notebook), so the test and ``make bench`` measure the same way; the
test records the figures (``artifacts/browser-latency.json``) without
asserting them.  ``python -m benchmarks.browser_latency`` runs it alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CLICKS = 40  # p95 of 40 is between the 2nd and 3rd slowest click, not the slowest
SETTLE_MS = 100  # after a click's last image: its labels land, the kernel is idle again
#: cells per layer -> the build_secondary keywords that give them
SIZES = {256: {"size": "1M"}, 4096: {"size": "2M", "block": "512"}}
TARGET_P95_MS = {256: 100.0, 4096: 200.0}
#: the probe class of each widget in the latency notebook, and the button that Steps it
WIDGETS = {"WorkflowStepper": "^Step$", "SchedulerPlayground": "^Step ", "RaceReplay": "^▶$"}


def races(cells: int, n: int) -> str:
    """``n`` canonical races (a VM read and a primary write to one block) spread over the
    disk, each in its own ``par`` block: every decision inside is a real choice."""
    lines = ["start"]
    for i in range(n):
        block = (i * 37) % cells
        lines.append(f"par {{ vread {block}b 4K; pwrite {block}b 4K {0x80 + i % 0x7f:#04x} }}")
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- JupyterLab and Chromium --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, tmp: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on a free loopback port serving ``root``: (url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell rendered, also off screen: the layout checks measure all outputs
    notebook = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True, exist_ok=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LABKIT_SOLUTIONS", None)  # the browser sees what a trainee sees: no answers
    log = open(tmp / "jupyterlab.log", "w")  # closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root", "--ServerApp.port_retries=0"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(tmp / 'jupyterlab.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.3)
        else:
            raise RuntimeError("JupyterLab did not open its port within 90 s")
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_notebook(browser: Any, url: str, token: str, name: str,
                  viewport: tuple[int, int]) -> Any:
    """A page with only ``name`` open (a workspace of its own), the file browser open,
    the kernel idle."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    ws = f"{name.removesuffix('.ipynb')}-{viewport[0]}"
    page.goto(f"{url}/lab/workspaces/{ws}/tree/{name}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    accept_kernel_dialog(page, url, token, name)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=60_000)
    open_file_browser(page)
    return page


def open_file_browser(page: Any) -> None:
    """The trainer's layout: the file browser open in the left sidebar."""
    if page.locator("#filebrowser").is_visible():
        return
    page.locator(".jp-SideBar [data-id='filebrowser']").first.click()
    page.wait_for_selector("#filebrowser", state="visible", timeout=10_000)


def accept_kernel_dialog(page: Any, url: str, token: str, name: str,
                         timeout_s: float = 60.0) -> None:
    """JupyterLab sometimes asks which kernel to start even with a kernelspec: say python3.

    It asks only while the notebook has no kernel session, so the wait ends as soon as
    the server has one for ``name`` (started by itself, or after the dialog), not after
    a fixed wait for a dialog that mostly never comes."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    deadline = time.monotonic() + timeout_s
    while not _has_session(page, url, token, name):
        if dialog.is_visible():
            dialog.get_by_role("button", name="Select", exact=True).click()
            dialog.wait_for(state="detached", timeout=10_000)
        elif time.monotonic() > deadline:
            raise RuntimeError(f"{name}: no kernel and no kernel dialog within {timeout_s} s")
        page.wait_for_timeout(100)


def _has_session(page: Any, url: str, token: str, name: str) -> bool:
    """The server has a kernel session for the notebook ``name`` (REST API)."""
    sessions = page.request.get(f"{url}/api/sessions",
                                headers={"Authorization": f"token {token}"}).json()
    return any(s.get("path") == name and s.get("kernel") for s in sessions)


def run_all_and_wait(page: Any, timeout_ms: int = 180_000) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # every code cell shows an execution count ("[3]:") and the kernel is idle -- or a
    # cell failed (Run All stops there): the caller's checks then report the traceback
    page.wait_for_function(
        r"""() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            const done = prompts.every(p => /\[\d+\]/.test(p.textContent));
            const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
                .some(o => o.textContent.includes('Traceback (most recent call last)'));
            const idle = document.querySelector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]');
            return prompts.length > 0 && (done || failed) && idle !== null;
        }""", timeout=timeout_ms)
    page.wait_for_timeout(500)


def shut_down_kernels(page: Any, url: str, token: str) -> None:
    """Free the kernels of the notebook just checked (REST API: no confirmation dialog)."""
    headers = {"Authorization": f"token {token}"}
    for session in page.request.get(f"{url}/api/sessions", headers=headers).json():
        page.request.delete(f"{url}/api/sessions/{session['id']}", headers=headers)


# --- the measurement --------------------------------------------------------------------------

#: One click: ``[first, last]``, the times (ms) until the first and the last of the widget's
#: <img> elements got a new src (a click may redraw several figures; "last" is the last
#: image change before QUIET_MS without one), or ``[-1, -1]`` when there is no enabled
#: button matching the pattern, ``[-2, -2]`` on a 30 s timeout.
_CLICK_JS = r"""async ([probe, pattern, quiet]) => {
    const root = document.querySelector('.' + probe);
    const re = new RegExp(pattern);
    const button = [...root.querySelectorAll('button')]
        .find(b => !b.disabled && re.test(b.textContent.trim()));
    if (!button) return [-1, -1];
    return await new Promise(resolve => {
        const t0 = performance.now();
        let first = -1, last = -1, timer = null;
        const done = () => { obs.disconnect(); resolve([first, last]); };
        const obs = new MutationObserver(records => {
            if (records.some(r => r.target.tagName === 'IMG')) {
                last = performance.now() - t0;
                if (first < 0) first = last;
                clearTimeout(timer);
                timer = setTimeout(done, quiet);
            }
        });
        obs.observe(root, {attributes: true, attributeFilter: ['src'], subtree: true});
        setTimeout(() => { if (first < 0) { obs.disconnect(); resolve([-2, -2]); } }, 30000);
        button.click();
    });
}"""
QUIET_MS = 250  # no new image for this long: the click's update is complete


def measure(page: Any, probe: str, pattern: str,
            clicks: int = CLICKS) -> tuple[list[float], list[float]]:
    """``clicks`` click-to-new-image times (ms) of the button matching ``pattern`` in the
    widget with class ``probe``: to its first new image, and to its last.  When the
    widget runs out of steps, rewind (not timed: Reset, or RaceReplay's ◀ back to the
    start, each click awaited)."""
    first: list[float] = []
    last: list[float] = []
    page.locator(f".{probe}").scroll_into_view_if_needed()
    rewinds = 0
    while len(first) < clicks:
        a, b = page.evaluate(_CLICK_JS, [probe, pattern, QUIET_MS])
        if a >= 0:
            first.append(a)
            last.append(b)
            # the rest of the click (its labels) lands before the next one, as between
            # two clicks of a trainee reading the result
            page.wait_for_timeout(SETTLE_MS)
            continue
        if a == -2:
            raise RuntimeError(f"{probe}: no new image within 30 s of a click")
        rewinds += 1
        if rewinds > clicks:
            raise RuntimeError(f"{probe}: no button matching {pattern!r} to click")
        while page.evaluate(_CLICK_JS, [probe, "^(◀|Reset)$", QUIET_MS])[0] >= 0:
            page.wait_for_timeout(SETTLE_MS)  # back to the start: Reset, or ◀ until disabled
    return first, last


def latency_cells(clicks: int = CLICKS) -> list[str]:
    """The code cells of the latency notebook: each widget at each size, with a probe
    class the measurement finds it by."""
    cells = ["from labkit import scenarios\n"
             "from labkit.widgets import RaceReplay, SchedulerPlayground, WorkflowStepper"]
    for n, config in SIZES.items():
        kw = ", ".join(f"{k}={v!r}" for k, v in config.items())
        text = races(n, clicks + 5)
        cells.append(f"w = WorkflowStepper({text!r}, {kw})\n"
                     f"w.widget.add_class('probe-WorkflowStepper-{n}')\nw.widget")
        cells.append(f"w = SchedulerPlayground({text!r}, design='none', {kw})\n"
                     f"w.widget.add_class('probe-SchedulerPlayground-{n}')\nw.widget")
        cells.append(f"w = RaceReplay(scenarios.load('canonical'), designs=('none',), {kw})\n"
                     f"w.widget.add_class('probe-RaceReplay-{n}')\nw.widget")
    return cells


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells, with a kernelspec (no "Select Kernel" dialog)."""
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [],
                     "execution_count": None, "source": src} for i, src in enumerate(cells)]}
    path.write_text(json.dumps(nb, indent=1))


def measure_all(page: Any, clicks: int = CLICKS,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every widget at every size on a page where the latency cells have run."""
    rows = []
    load = os.getloadavg()[0]
    log(f"  (load average {load:.1f} on {os.cpu_count()} cores: other jobs inflate timings)")
    for n in SIZES:
        for name, pattern in WIDGETS.items():
            ms, all_ms = measure(page, f"probe-{name}-{n}", pattern, clicks)
            p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
            all50, all95 = percentile(all_ms, 0.5), percentile(all_ms, 0.95)
            target = TARGET_P95_MS[n]
            rows.append({"widget": f"{name} in Chromium", "cells": n, "steps": len(ms),
                         "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                         "max_ms": round(max(ms), 1), "target_p95_ms": target,
                         "met": p95 <= target, "load_1min": round(load, 1),
                         "last_image_p50_ms": round(all50, 1),
                         "last_image_p95_ms": round(all95, 1)})
            log(f"  {name + ' in Chromium':<32} {n:>5} cells: p50 {p50:6.1f} ms  "
                f"p95 {p95:6.1f} ms (target ≤ {target:.0f}); every image of the click: "
                f"p50 {all50:6.1f}  p95 {all95:6.1f} ms")
    return rows


def run(clicks: int = CLICKS, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Start JupyterLab and Chromium, run the latency notebook, measure every widget."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        log("  (skipped: no Chromium at /usr/bin/chromium)")
        return []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        log("  (skipped: the playwright package is not installed)")
        return []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        root = tmp / "lab"
        root.mkdir()
        write_notebook(root / "latency.ipynb", latency_cells(clicks))
        with jupyterlab(root, tmp) as (url, token), sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = open_notebook(browser, url, token, "latency.ipynb", (1280, 800))
                run_all_and_wait(page)
                return measure_all(page, clicks, log)
            finally:
                browser.close()


if __name__ == "__main__":
    print(json.dumps({"rows": run()}))
