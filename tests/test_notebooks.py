"""The stored notebooks (the trainee edition): built from their sources, executed,
stable, structured as lessons, and giving no answer away before its exercise.

nbval (``make test`` runs ``pytest --nbval notebooks``) compares a fresh run with
the stored outputs; this test also runs every notebook twice more and compares
the two runs with each other, and checks the outputs hold nothing that varies
from run to run or machine to machine (addresses, timings, paths).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from labkit import exercises
from labkit.exercises import EXERCISES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCES = sorted((ROOT / "notebooks" / "src").glob("*.md"))
FORBIDDEN = [
    (re.compile(r"0x[0-9a-f]{8,}"), "a memory address"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|µs|seconds)\b"), "a timing"),
    (re.compile(r"/(work|tmp|root|home)/"), "a machine path"),
]
EXERCISE_CELL = re.compile(r"\bq = (ex0\d)\.(\w+)")
SCHEDULE = re.compile(r"(?:\b[a-z][a-z-]*#\d+(?:\*\d+)?(?:\s+|$)){2,}")


def cell_text(cell: dict) -> list[str]:
    """A cell's text outputs; consecutive stream chunks are joined (the kernel may
    flush one print in several messages)."""
    out: list[str] = []
    streaming = False
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            if streaming:
                out[-1] += "".join(o["text"])
            else:
                out.append("".join(o["text"]))
            streaming = True
            continue
        streaming = False
        if o["output_type"] in ("execute_result", "display_data"):
            out.append("".join(o["data"].get("text/plain", "")))
        elif o["output_type"] == "error":
            out.append(f"ERROR {o['ename']}: {o['evalue']}")
    return out


def text_outputs(nb: dict) -> list[str]:
    """Every cell's text outputs, in order."""
    return [t for cell in nb["cells"] for t in cell_text(cell)]


def source(cell: dict) -> str:
    s = cell["source"]
    return s if isinstance(s, str) else "".join(s)


def test_every_notebook_has_a_source_and_is_stored_executed_with_a_kernelspec():
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in SOURCES]
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        assert "jupytext" not in nb["metadata"], f"{path.name}: paired, not built"
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and all(c["execution_count"] for c in code), f"{path.name}: not executed"
        for text in text_outputs(nb):
            assert not text.startswith("ERROR"), f"{path.name}: {text}"
            for pattern, what in FORBIDDEN:
                assert not pattern.search(text), f"{path.name}: output holds {what}: {text[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_stored_notebook_matches_its_source(path):
    from build_notebooks import make

    stored = json.loads(path.read_text())["cells"]
    built = make(path.stem).cells
    assert [(c["cell_type"], source(c)) for c in stored] == \
        [(c["cell_type"], source(c)) for c in built], \
        f"{path.name} and src/{path.stem}.md disagree: run `make notebooks`"
    assert [c["id"] for c in stored] == [c["id"] for c in built]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_each_lesson_opens_with_questions_objectives_minutes_and_ends_with_key_points(path):
    from build_notebooks import make

    cells = make(path.stem).cells
    first, last = source(cells[0]), source(cells[-1])
    assert first.startswith(f"# {path.stem[:2]} ")
    assert re.search(r"\*\*Teaching:\*\* \d+ min · \*\*Exercises:\*\* \d+ min", first), path.name
    assert "**Questions**" in first and "**Objectives**" in first, path.name
    assert last.startswith("## Key points"), path.name
    text = "\n".join(source(c) for c in cells)
    assert "/work/" not in text and "qemu-replication-facts" not in text, \
        f"{path.name} points outside the repository"
    for c in cells:
        if c["cell_type"] == "code":
            assert not re.search(r"\blabkit\.\w*\._|from labkit\._|import labkit\._|\._cli",
                                 source(c)), f"{path.name}: a private import: {source(c)}"


def test_the_glossary_and_the_scenario_language_come_first():
    from build_notebooks import make

    start = "\n".join(source(c) for c in make("00-start-here").cells)
    for term in ("CowRequest", "backup cluster", "qcow2 cluster", "serialising request",
                 "checkpoint epoch", "done bitmap", "preemption"):
        assert f"**{term}**" in start, term
    for word in ("`par { A; B }`", "`5b`", "`orig`", "`expect", "`dump"):
        assert word in start, word
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    for term in ("CowRequest", "backup cluster", "qcow2 cluster", "serialising request",
                 "checkpoint epoch"):
        assert f"**{term}**" in glossary, term


def exercise_positions(nb: dict) -> list[tuple[int, str]]:
    """(cell index, exercise name) of every exercise cell."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        m = EXERCISE_CELL.search(source(cell)) if cell["cell_type"] == "code" else None
        if m and ".your_answer(" in source(cell):
            group, attr = m.groups()
            out.append((i, getattr(getattr(exercises, group), attr).name))
    return out


def leaks(nb: dict) -> list[str]:
    """Each exercise whose answer (a text form of it, or for a schedule any schedule
    the checker accepts) is in an output above it."""
    found = []
    for index, name in exercise_positions(nb):
        q = EXERCISES[name]
        above = [t for cell in nb["cells"][:index] for t in cell_text(cell)]
        for text in above:
            for form in q.answer_forms():
                if form in text:
                    found.append(f"{name}: {form!r} in {text[:120]!r}")
            if name == "04.schedule":
                for m in SCHEDULE.finditer(text):
                    if q.check(m.group(0).strip()).correct:
                        found.append(f"{name}: a winning schedule {m.group(0)!r}")
    return found


def test_every_exercise_is_in_the_stored_notebooks_once():
    names = [n for path in NOTEBOOKS for _, n in exercise_positions(json.loads(path.read_text()))]
    assert sorted(names) == sorted(EXERCISES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_output_above_an_exercise_gives_its_answer_away(path):
    nb = json.loads(path.read_text())
    assert leaks(nb) == []
    for index, name in exercise_positions(nb):  # and every exercise is stored unanswered
        shown = " ".join(cell_text(nb["cells"][index]))
        assert "Correct!" not in shown and "Replace the placeholder" in shown, name


def test_the_leak_test_catches_a_leak():
    path = ROOT / "notebooks" / "04-conflicting-reads.ipynb"
    nb = json.loads(path.read_text())
    first = exercise_positions(nb)[0][0]
    winning = EXERCISES["04.schedule"].answer
    nb["cells"][first - 1]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": f"one way: {winning}\n"}]
    assert any("04.schedule" in leak for leak in leaks(nb))
    served = json.loads((ROOT / "notebooks" / "01-block-graph.ipynb").read_text())
    at = exercise_positions(served)[0][0]
    served["cells"][at - 1]["outputs"] = [
        {"output_type": "stream", "name": "stdout",
         "text": f"served by: {EXERCISES['01.served'].answer}\n"}]
    assert any("01.served" in leak for leak in leaks(served))


def _skip_06_without_qemu(path: Path) -> None:
    if path.stem.startswith("06"):
        from labkit.qemu import qemu_available
        from labkit.testing import need

        need(qemu_available() is None, "QEMU with the replication driver",
             "apt-get install qemu-system-x86 qemu-utils")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_two_executions_give_identical_text(path):
    from build_notebooks import execute, make

    _skip_06_without_qemu(path)
    first = text_outputs(execute(make(path.stem)))
    second = text_outputs(execute(make(path.stem)))
    assert first == second
    assert first == text_outputs(json.loads(path.read_text())), \
        f"{path.name}: the stored outputs are stale: run `make notebooks`"


def _path_without(program: str, tmp: Path) -> str:
    """PATH with every directory's programs except ``program`` (symlinked into tmp)."""
    hidden = tmp / "bin"
    hidden.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not Path(folder).is_dir() or folder == str(Path(sys.executable).parent):
            continue
        for entry in Path(folder).iterdir():
            target = hidden / entry.name
            if entry.name != program and not target.exists():
                target.symlink_to(entry)
    return os.pathsep.join([str(Path(sys.executable).parent), str(hidden)])


def test_notebook_06_runs_to_the_end_without_qemu(tmp_path):
    from build_notebooks import execute, make

    path = _path_without("qemu-system-x86_64", tmp_path)
    nb = execute(make("06-real-qemu"), env={"PATH": path}, runtime_outputs=True)
    texts = text_outputs(nb)
    assert not any(t.startswith("ERROR") for t in texts)
    assert any("QEMU is not available here" in t for t in texts)
    recorded = json.loads((ROOT / "notebooks" / "data" / "06-recorded.json").read_text())
    assert any(recorded["comparison"] in t for t in texts)
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_no_stored_notebook_claims_a_live_or_recorded_run():
    """The stored edition was executed on the build machine: whether QEMU is usable is a
    fact about the reader's machine, so no stored output may claim either."""
    claims = re.compile(r"\b(live|recorded)\b.*QEMU|QEMU.*\bavailable"
                        r"|run (it|them) live", re.I)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        found = [t for t in text_outputs(nb) if claims.search(t)]
        assert not found, f"{path.name} claims a live or recorded run: {found[0][:200]!r}"


def test_the_recorded_qemu_comparison_is_what_qemu_prints_today():
    from record_qemu_comparison import RECORDED, record

    from labkit.qemu import qemu_available
    from labkit.testing import need

    need(qemu_available() is None, "QEMU with the replication driver",
         "apt-get install qemu-system-x86 qemu-utils")
    assert json.loads(RECORDED.read_text()) == json.loads(json.dumps(record())), \
        "notebooks/data/06-recorded.json is stale: run tools/record_qemu_comparison.py"


def test_every_exercise_passes_with_its_solution_in_the_solved_edition():
    from build_notebooks import execute, make

    for stem in ("01-block-graph",):  # one notebook end to end; tests/test_exercises covers all
        nb = execute(make(stem), "solutions")
        for index, name in exercise_positions(nb):
            assert any(t.startswith("Correct!") for t in cell_text(nb.cells[index])), name
