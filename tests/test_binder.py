"""The Binder configuration cannot rot unseen: build it fresh and run the notebooks in it.

A new virtualenv gets exactly ``binder/requirements.txt``, then ``binder/postBuild``
runs in the repository (as repo2docker does), then every notebook is executed
with that environment's ``jupyter nbconvert``, as a trainee meets them (the
trainee edition: ``LABKIT_SOLUTIONS`` unset), and ``labkit.editions`` can rebuild
a notebook from its source there (``jupytext`` is in the requirements for
``labkit reset`` outside git).  It needs PyPI (pip's cache makes it quick on a
warm machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from labkit.testing import need

ROOT = Path(__file__).resolve().parent.parent


def test_binder_environment_builds_and_runs_every_notebook(tmp_path):
    need(shutil.which("bash"), "bash")
    env_dir = tmp_path / "binder-env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               VIRTUAL_ENV=str(env_dir))
    env.pop("PYTHONPATH", None)
    env.pop("LABKIT_SOLUTIONS", None)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "binder" / "requirements.txt")], check=True, env=env,
                   cwd=tmp_path, timeout=900)
    # repo2docker runs postBuild from a copy of the repository; so do we.
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".venv", ".git", "artifacts", "*.egg-info", "build", "__pycache__", ".pytest_cache"))
    subprocess.run(["bash", str(repo / "binder" / "postBuild")], check=True, env=env, cwd=repo,
                   timeout=600)
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import labkit; print(labkit.__file__)"],
                           check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert str(env_dir) in probe.stdout, "postBuild did not install labkit into the Binder env"
    out = tmp_path / "executed"
    notebooks = sorted((repo / "notebooks").glob("*.ipynb"))
    assert notebooks
    subprocess.run([str(bin_dir / "python"), "-m", "jupyter", "nbconvert", "--to", "notebook",
                    "--execute", "--ExecutePreprocessor.timeout=300", "--output-dir", str(out),
                    *map(str, notebooks)], check=True, env=env, cwd=repo / "notebooks",
                   timeout=1200)
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in notebooks]
    source = repo / "notebooks" / "src" / "04-conflicting-reads.md"
    rebuilt = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import sys; from labkit.editions import notebook_from_source as f; "
         "print(len(f(sys.argv[1]).cells))", str(source)],
        check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert int(rebuilt.stdout) > 5
    assert sys.version_info >= (3, 11)
