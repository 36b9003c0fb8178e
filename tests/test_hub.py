"""A class on a real JupyterHub: three trainees log in, pull the lab and step notebook 02.

The hub is ``deploy/local_hub.py``'s (JupyterHub from PyPI, configurable-http-proxy
from npm, one single-user server per trainee, a testing authenticator on
127.0.0.1 only).  Each trainee gets a server through the hub, pulls the lab with
nbgitpuller from a local git repository of this checkout, runs every cell of
notebook 02 in a kernel of that server, and clicks the stepper's ``Step`` through
the widget's comm, as JupyterLab sends it; the stepper's state must have moved
by exactly one step.  About a minute (the machine's speed decides).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from benchmarks.hub import KernelSession, arrive, code_cells
from deploy.local_hub import CONFIG, LocalHub, lab_repository, missing
from labkit.testing import need

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "02-backup-sync-none"
TRAINEES = 3


def _trainee(hub: LocalHub, name: str, repo: Path, results: dict[str, object]) -> None:
    try:
        base, token, _, _ = arrive(hub, name, repo)
        kernel = KernelSession(base, token, f"labkit/notebooks/{NOTEBOOK}.ipynb")
        try:
            for i, (source, may_raise) in enumerate(code_cells(ROOT / "notebooks"
                                                               / f"{NOTEBOOK}.ipynb")):
                status = kernel.execute(source)
                assert status == "ok" or may_raise, f"cell {i} failed on {name}'s server"
            kernel.execute("import os; print(os.getcwd())")
            cwd = kernel.stdout.strip()
            kernel.execute("print(len(stepper.states))")
            before = int(kernel.stdout)
            steps = [c for c, d in kernel.buttons.items() if d == "Step"]
            assert steps, "notebook 02 showed no Step button"
            kernel.click(steps[0])  # the first stepper: `stepper`
            kernel.execute("print(len(stepper.states))")
            results[name] = (cwd, before, int(kernel.stdout))
        finally:
            kernel.close()
    except BaseException as exc:  # reported by the test's thread
        results[name] = exc


def test_three_trainees_pull_the_lab_and_step_notebook_02_through_a_real_hub() -> None:
    why = missing()
    need(why is None, f"a local JupyterHub: {why}",
         "pip install -e '.[hub]' and make hub, or .ci/run")
    with LocalHub(timeout=180.0) as hub:
        repo = lab_repository(hub.workdir / "labkit.git")
        results: dict[str, object] = {}
        names = [f"trainee{i}" for i in range(TRAINEES)]
        threads = [threading.Thread(target=_trainee, args=(hub, n, repo, results))
                   for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        for name in names:
            got = results.get(name)
            if isinstance(got, BaseException):
                raise got
            assert got is not None, f"{name} did not finish"
            cwd, before, after = got  # type: ignore[misc]
            # the kernel ran in the trainee's own pulled copy, and the click took one step
            assert cwd == str(hub.workdir / "home" / name / "labkit" / "notebooks")
            assert after == before + 1
        # every server was spawned by the hub, as a trainee's own
        users = {u["name"]: u for u in hub.api("GET", "/users").json()}
        assert all(users[n]["servers"][""]["ready"] for n in names)


def test_the_local_hub_listens_on_loopback_only() -> None:
    why = missing()
    need(why is None, f"a local JupyterHub: {why}",
         "pip install -e '.[hub]' and make hub, or .ci/run")
    hub = LocalHub()
    try:
        for key in ("url", "hub_url", "proxy_api_url"):
            assert hub.settings[key].startswith("http://127.0.0.1:"), key
        assert "--ip" not in " ".join(hub.settings["singleuser_args"])
        assert 'c.Spawner.ip = "127.0.0.1"' in CONFIG
        assert 'authenticator_class = "shared-password"' in CONFIG  # a testing one
    finally:
        hub.stop()
