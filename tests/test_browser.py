"""The notebooks in a real JupyterLab, driven by Debian's Chromium through Playwright.

Opens every notebook (copies, so autosave cannot touch the repository), runs
all cells, waits for the kernel to be idle, checks there is no error output and
that widgets rendered, clicks Step in notebook 02 and checks the step label and
the plot changed.  Screenshots go to ``artifacts/`` (ignored by git); the
README's ``docs/notebook-02.png`` is copied from ``artifacts/02-*-after-step.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from labkit.testing import need

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, tmp: Path):
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), LABKIT_SOLUTIONS="1")
    log = open(tmp / "jupyterlab.log", "w")
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


def accept_kernel_dialog(page) -> None:
    """JupyterLab sometimes asks which kernel to start even with a kernelspec: say python3."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=5_000)
    except Exception:  # no dialog: the kernel starts by itself
        return
    dialog.get_by_role("button", name="Select", exact=True).click()
    dialog.wait_for(state="detached", timeout=10_000)


def run_all_and_wait(page, timeout_ms: int = 120_000) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # Wait until every code cell shows an execution count ("[3]:") and the kernel is idle.
    page.wait_for_function(
        r"""() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            const done = prompts.every(p => /\[\d+\]/.test(p.textContent));
            const idle = document.querySelector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]');
            return prompts.length > 0 && done && idle !== null;
        }""", timeout=timeout_ms)
    page.wait_for_timeout(500)


def errors_on_page(page) -> list[str]:
    found = []
    for sel in (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"):
        for el in page.query_selector_all(sel):
            text = el.inner_text()
            if "Traceback" in text or "Error" in text:
                found.append(text[:500])
    if page.get_by_text("Error displaying widget").count():
        found.append("Error displaying widget")
    return found


def test_notebooks_run_in_jupyterlab_and_widgets_respond(tmp_path):
    need(shutil.which("chromium") or Path(CHROMIUM).exists(), "Debian's chromium",
         "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need(sync_playwright, "the playwright Python package", "pip install -e '.[test]'")
    assert NOTEBOOKS, "no notebooks to open"
    root = tmp_path / "lab"
    shutil.copytree(ROOT / "notebooks", root)
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyterlab(root, tmp_path) as (url, token), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in NOTEBOOKS:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                # A workspace of its own: only this notebook is open in the page.
                ws = name.removesuffix(".ipynb")
                page.goto(f"{url}/lab/workspaces/{ws}/tree/{name}?reset&token={token}")
                page.wait_for_selector(".jp-Notebook", timeout=60_000)
                accept_kernel_dialog(page)
                page.wait_for_selector(
                    ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
                run_all_and_wait(page)
                stem = name.removesuffix(".ipynb")
                page.screenshot(path=str(ARTIFACTS / f"{stem}.png"))
                assert errors_on_page(page) == [], f"{name}: error output"
                uses_widgets = "ipywidgets" in (root / name).read_text() or \
                    "labkit.widgets" in (root / name).read_text()
                if uses_widgets:
                    assert page.locator(".jupyter-widgets").count() > 0, \
                        f"{name}: no widget rendered"
                if stem.startswith("02"):
                    click_step_in_stepper(page, stem)
                shut_down_kernels(page, url, token)
                page.close()
        finally:
            browser.close()


def shut_down_kernels(page, url: str, token: str) -> None:
    """Free the kernel of the notebook just checked (REST API: no confirmation dialog)."""
    headers = {"Authorization": f"token {token}"}
    for session in page.request.get(f"{url}/api/sessions", headers=headers).json():
        page.request.delete(f"{url}/api/sessions/{session['id']}", headers=headers)


def click_step_in_stepper(page, stem: str) -> None:
    """Click the WorkflowStepper's Step button; the step label and the plot must change."""
    stepper = page.locator(".labkit-stepper").first
    stepper.scroll_into_view_if_needed()
    label = stepper.locator(".labkit-step-label")
    img = stepper.locator("img").first
    before_text, before_img = label.inner_text(), img.get_attribute("src")
    step = stepper.locator("button", has_text=re.compile(r"^\s*Step\s*$"))
    for _ in range(10):  # replication starts first; a few decisions later the write arrives
        step.click()
        page.wait_for_timeout(800)
        if "Step 2" in label.inner_text():
            break
    assert label.inner_text() != before_text, "the step label did not change after Step"
    assert "Step 2" in label.inner_text(), f"no step 2 after 10 clicks: {label.inner_text()}"
    assert img.get_attribute("src") != before_img, "the plot did not change after Step"
    stepper.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{stem}-after-step.png"))
