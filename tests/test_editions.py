"""The two editions: ``labkit.editions.reset`` restores a pristine trainee copy and keeps
the trainee's as a backup; the answer key is generated, never hand-kept."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.editions import (
    EditionError,
    backup_path,
    find_notebook,
    notebook_from_source,
    pristine,
    reset,
)
from labkit.errors import ConfigError, LabkitError
from labkit.testing import need

ROOT = Path(__file__).resolve().parent.parent
STEM = "04-conflicting-reads"


def _copy_lab(tmp: Path, with_src: bool = True) -> Path:
    """A trainee's copy of notebooks/ (no git)."""
    folder = tmp / "notebooks"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / f"{STEM}.ipynb", folder)
    if with_src:
        (folder / "src").mkdir()
        shutil.copy(ROOT / "notebooks" / "src" / f"{STEM}.md", folder / "src")
    return folder


def _scribble(path: Path) -> bytes:
    nb = json.loads(path.read_text())
    nb["cells"][1]["source"] = "print('my own attempt')"
    path.write_text(json.dumps(nb))
    return path.read_bytes()


def test_reset_from_the_source_keeps_the_trainees_copy(tmp_path, monkeypatch):
    folder = _copy_lab(tmp_path)
    notebook = folder / f"{STEM}.ipynb"
    mine = _scribble(notebook)
    monkeypatch.chdir(tmp_path)
    done = reset("04")
    backup = done.backup
    assert backup == folder / "backups" / f"{STEM}.1.ipynb"
    assert done.notebook == notebook and str(backup) in done.text()
    assert done.text().startswith(f"reset {notebook} to the shipped version")
    assert backup.read_bytes() == mine
    restored = json.loads(notebook.read_text())
    built = notebook_from_source(ROOT / "notebooks" / "src" / f"{STEM}.md")
    assert ["".join(c["source"]) for c in restored["cells"]] == [c["source"] for c in built.cells]
    assert restored["metadata"]["kernelspec"]["name"] == "python3"
    # a second reset never overwrites the first backup
    _scribble(notebook)
    assert reset(f"{STEM}.ipynb").backup == folder / "backups" / f"{STEM}.2.ipynb"
    assert (folder / "backups" / f"{STEM}.1.ipynb").read_bytes() == mine


def test_reset_from_git_restores_the_stored_trainee_edition(tmp_path, monkeypatch):
    need(shutil.which("git"), "git")
    folder = _copy_lab(tmp_path, with_src=False)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "lab"], check=True)
    notebook = folder / f"{STEM}.ipynb"
    _scribble(notebook)
    content, origin = pristine(notebook)
    assert origin == "git HEAD"
    assert content == (ROOT / "notebooks" / f"{STEM}.ipynb").read_bytes()
    backup = reset(str(notebook)).backup
    assert backup is not None and backup.parent == folder / "backups"
    assert notebook.read_bytes() == (ROOT / "notebooks" / f"{STEM}.ipynb").read_bytes()


def test_a_deleted_notebook_is_restored(tmp_path, monkeypatch):
    folder = _copy_lab(tmp_path)
    (folder / f"{STEM}.ipynb").unlink()
    monkeypatch.chdir(folder)
    done = reset("04")
    assert done.notebook == folder / f"{STEM}.ipynb" and done.backup is None
    assert (folder / f"{STEM}.ipynb").exists() and not (folder / "backups").exists()


def test_an_untouched_notebook_gets_no_backup(tmp_path, monkeypatch):
    folder = _copy_lab(tmp_path)
    monkeypatch.chdir(folder)
    reset("04")                       # the stored edition -> the unexecuted source build
    first = (folder / "backups").glob("*.ipynb")
    assert len(list(first)) == 1
    done = reset("04")                # now untouched
    assert done.backup is None and "no backup" in done.text()
    assert len(list((folder / "backups").glob("*.ipynb"))) == 1


def test_a_notebook_open_in_jupyterlab_is_refused_with_what_to_do(tmp_path, monkeypatch):
    import labkit.editions as editions

    folder = _copy_lab(tmp_path)
    notebook = folder / f"{STEM}.ipynb"
    mine = _scribble(notebook)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(editions, "open_in_jupyter", lambda path: ["http://localhost:8888/"])
    with pytest.raises(EditionError, match=r"open in JupyterLab.*close its tab.*Overwrite"):
        reset("04")
    assert notebook.read_bytes() == mine and not (folder / "backups").exists()
    assert reset("04", force=True).backup is not None


def test_open_in_jupyter_finds_a_session_of_a_running_server(tmp_path, monkeypatch):
    import io
    import json as _json
    import urllib.request

    import labkit.editions as editions

    serverapp = pytest.importorskip("jupyter_server.serverapp")
    notebook = tmp_path / f"{STEM}.ipynb"
    notebook.write_text("{}")
    monkeypatch.setattr(serverapp, "list_running_servers", lambda: iter(
        [{"url": "http://127.0.0.1:9/", "token": "t", "root_dir": str(tmp_path)}]))
    sessions = [{"path": f"{STEM}.ipynb"}, {"path": "other.ipynb"}]
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda req, timeout: io.BytesIO(_json.dumps(sessions).encode()))
    assert editions.open_in_jupyter(notebook) == ["http://127.0.0.1:9/"]
    assert editions.open_in_jupyter(tmp_path / "third.ipynb") == []


def test_the_reset_commands_help_names_notebooks_that_exist():
    import argparse

    from labkit.cli import _reset

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    _reset.register(sub)
    help_text = sub.choices["reset"].format_help()
    named = set(re.findall(r"\b(\d\d-[a-z0-9-]+[a-z0-9])\b", help_text))
    assert named, help_text
    stems = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert named <= stems, named - stems


def test_bad_names_are_labkit_errors_and_change_nothing(tmp_path, monkeypatch):
    folder = _copy_lab(tmp_path, with_src=False)
    before = (folder / f"{STEM}.ipynb").read_bytes()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no notebook '09'.*known: 04-conflicting-reads"):
        reset("09")
    with pytest.raises(ConfigError, match="name a notebook"):
        reset("")
    with pytest.raises(ConfigError, match="name a notebook"):
        reset(4)  # type: ignore[arg-type]
    shutil.copy(folder / f"{STEM}.ipynb", folder / "04-other.ipynb")
    with pytest.raises(ConfigError, match="more than one notebook"):
        reset("04")
    # tracked by no git and no source beside it: no pristine copy, nothing touched
    with pytest.raises(EditionError, match="no pristine copy") as info:
        reset(f"{STEM}")
    assert isinstance(info.value, LabkitError) and isinstance(info.value, OSError)
    assert (folder / f"{STEM}.ipynb").read_bytes() == before
    assert not (folder / "backups").exists()


def test_find_notebook_and_backup_names(tmp_path):
    folder = _copy_lab(tmp_path)
    assert find_notebook("04", tmp_path) == folder / f"{STEM}.ipynb"
    assert find_notebook(STEM, folder) == folder / f"{STEM}.ipynb"
    assert backup_path(folder / f"{STEM}.ipynb").name == f"{STEM}.1.ipynb"


def test_building_from_the_source_is_deterministic():
    source = ROOT / "notebooks" / "src" / f"{STEM}.md"
    first, second = notebook_from_source(source), notebook_from_source(source)
    assert first == second
    assert [c["id"] for c in first.cells][:2] == ["04-00", "04-01"]
    assert "jupytext" not in first.metadata


def test_the_answer_key_is_generated_and_current():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "answer_key.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    key = (ROOT / "docs" / "answer-key.md").read_text()
    from labkit.exercises import EXERCISES

    for name, q in EXERCISES.items():
        assert f"`{name}`" in key and f"**Answer:** `{q.shown()}`" in key


def test_the_trainer_guide_has_its_ten_parts_and_measured_figures():
    guide = (ROOT / "docs" / "trainer-guide.md").read_text()
    parts = re.findall(r"^## (\d+)\. (.+)$", guide, re.M)
    assert [int(n) for n, _ in parts] == list(range(1, 11))
    titles = " | ".join(t for _, t in parts).lower()
    for word in ("agenda", "timings", "answer key", "common mistakes", "binder", "nbgitpuller",
                 "make lab", "hub sizing", "model not found", "without qemu"):
        assert word in titles, word
    assert "(answer-key.md)" in guide
    for tool in ("tools/lesson_timings.py", "python -m benchmarks --only hub",
                 "tools/record_qemu_comparison.py", "labkit reset"):
        assert tool in guide, tool
    # hub sizing from the class simulator's measured figures, not an estimate
    assert re.search(r"memory per trainee at the room's peak.*\| \d+ MiB \|", guide)
    assert re.search(r"\*\*one GiB carries \d+ trainees\*\*", guide)
    # the agenda's minutes are the ones each notebook announces
    for source in sorted((ROOT / "notebooks" / "src").glob("*.md")):
        m = re.search(r"\*\*Teaching:\*\* (\d+) min · \*\*Exercises:\*\* (\d+) min",
                      source.read_text())
        assert m and f"| {m[1]} + {m[2]} |" in guide, source.name


TIMING_ROW = re.compile(r"^(\d\d-[\w-]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+"
                        r"(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\+(\d+)$", re.M)


def test_the_guides_timings_are_what_tools_lesson_timings_counts_in_the_stored_notebooks():
    """The guide's table (section 2) against the tool: every count recomputed from the
    stored notebooks, every estimate recomputed from the counts and the guide's measured
    run time, and each notebook's header announcing the estimate, rounded."""
    import nbformat

    sys.path.insert(0, str(ROOT / "tools"))
    from lesson_timings import estimate, static_counts

    guide = (ROOT / "docs" / "trainer-guide.md").read_text()
    rows = {m[1]: m for m in TIMING_ROW.finditer(guide)}
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(rows) == stems, "the guide's timing table lists other notebooks"
    for stem, row in rows.items():
        counts = static_counts(nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb",
                                             as_version=4))
        keys = ("words", "code_lines", "widgets", "exercises", "choices", "concept_checks")
        listed = [int(row[i]) for i in (3, 4, 6, 7, 8, 9)]
        counted = [counts[k] for k in keys]
        assert listed == counted, (f"{stem}: the guide's counts {listed} are not the stored "
                                   f"notebook's {counted}: re-run tools/lesson_timings.py")
        # output lines move with every engine or widget wording change: 10 lines is 30 s
        assert abs(int(row[5]) - counts["output_lines"]) <= 10, \
            f"{stem}: {counts['output_lines']} output lines, the guide says {row[5]}"
        teaching, exercises = estimate({**counts, "output_lines": int(row[5])}, float(row[2]))
        assert abs(teaching - float(row[10])) < 0.06 and exercises == int(row[11]), stem
        teaching, _ = estimate(counts, float(row[2]))
        assert counts["announced"] == (int(row[12]), int(row[13])), stem
        announced_teaching, announced_exercises = counts["announced"]
        assert abs(announced_teaching - teaching) < 0.6 and announced_exercises == exercises, \
            f"{stem}: its header announces {counts['announced']}, the estimate is " \
            f"{teaching:.1f}+{exercises}"
