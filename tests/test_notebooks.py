"""The stored notebooks (the trainee edition): built from their sources, executed,
stable, structured as lessons, and giving no answer away before its exercise.

This module runs each notebook once (one execution per notebook, shared by every
check here through the session fixture ``executed``) and compares it with the
stored outputs cell by cell, exactly: each output's kind, its MIME types and its
text.  The stored outputs were made by a run too, so two runs agree byte for
byte.  That is nbval's comparison and more (nbval masks addresses and compares
per MIME type, not in order), so ``make test`` does not run nbval as well: one
execution per notebook serves both.  (``make test-bare``, on a machine without
QEMU, runs nbval: notebook 06 shows its recorded comparison there.)  It also
checks the outputs hold nothing that varies from run to run or machine to
machine (addresses, timings, paths) and give no exercise's answer away.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
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
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06", "07"]
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
    first = source(cells[0])
    # the last section is the key points: its heading cell, and (folded under it, in 00)
    # any cells of its body — prose only
    last_heading = max(i for i, c in enumerate(cells) if source(c).startswith("## "))
    last = source(cells[last_heading])
    assert all(c["cell_type"] == "markdown" for c in cells[last_heading:]), path.name
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
    for term in ("CowRequest", "backup cluster", "qcow2 cluster", "checkpoint epoch",
                 "done bitmap", "oracle"):
        assert f"**{term}**" in start, term
    # the words only 04 and 05 need are defined at 04's top, before its first code cell
    cells = make("04-conflicting-reads").cells
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    top = "\n".join(source(c) for c in cells[:first_code])
    for term in ("tracked request", "serialising request", "design", "task", "schedule",
                 "preemption"):
        assert f"**{term}**" in top and f"**{term}**" not in start, term
    for word in ("`par { A; B }`", "`5b`", "`orig`", "`expect", "`dump"):
        assert word in start, word
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    for term in ("CowRequest", "backup cluster", "qcow2 cluster", "serialising request",
                 "checkpoint epoch"):
        assert f"**{term}**" in glossary, term


def test_what_answers_the_before_concept_check_is_folded_until_it_is_taken():
    """Notebook 00 asks the concept check first; the glossary, the COLO table and the key
    points below it sit under headings stored folded (JupyterLab's
    ``jp-MarkdownHeadingCollapsed``), so they are not on screen while a trainee answers."""
    nb = json.loads((ROOT / "notebooks" / "00-start-here.ipynb").read_text())
    cells = nb["cells"]
    start = next(i for i, c in enumerate(cells) if 'concept_check("before")' in source(c))
    folded, seen = False, []
    for cell in cells[start + 1:]:
        text = source(cell)
        heading = cell["cell_type"] == "markdown" and text.startswith("## ")
        if heading:
            folded = bool(cell["metadata"].get("jp-MarkdownHeadingCollapsed"))
            seen.append((text.splitlines()[0], folded))
            # folding hides the cells under a heading, never the heading cell's own text
            assert not folded or text.strip() == text.splitlines()[0], \
                f"00: {text.splitlines()[0]!r} is folded but its cell holds more than it"
        if folded and not heading:
            continue
        shown = text + "".join(cell_text(cell))
        for answer in ("**CowRequest** —", "**checkpoint** —", "**serialising request** —",
                       "**tracked request** —", "| **hidden** |", "**Step 2**"):
            assert answer not in shown, f"00: {answer!r} is on screen below the before check"
    assert ("## Key points", True) in seen and ("## Words used in this lab", True) in seen


def exercise_positions(nb: dict) -> list[tuple[int, str]]:
    """(cell index, exercise name) of every exercise cell."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        m = EXERCISE_CELL.search(source(cell)) if cell["cell_type"] == "code" else None
        if m and ".your_answer(" in source(cell):
            group, attr = m.groups()
            out.append((i, getattr(getattr(exercises, group), attr).name))
    return out


def visible_text(nb: dict) -> list[str]:
    """Everything a trainee reads in a stored notebook: its prose and its text outputs."""
    return [source(c) for c in nb["cells"] if c["cell_type"] == "markdown"] + text_outputs(nb)


SCENARIO_WRITE = re.compile(r"\b[pv](write|read) \S+ \S+ 0x[0-9a-f]{2}\b")


def _forms_in(q, text: str) -> list[str]:
    """The forms of ``q``'s answer in ``text``.  The exercises' questions do not count
    (they name the candidates, e.g. every byte 3.1 might return), nor does a byte
    written by a scenario command (``pwrite 7b 4K 0xb7`` says what was written, not
    what is read)."""
    for other in EXERCISES.values():
        text = text.replace(other.question, "")
    text = SCENARIO_WRITE.sub("", text)
    found = [f"{q.name}: {form!r} in {text[:120]!r}" for form in q.answer_forms()
             if form and form in text]
    if q.name in ("04.schedule", "07.schedule"):  # any schedule the checker accepts
        for m in SCHEDULE.finditer(text):
            if q.check(m.group(0).strip()).correct:
                found.append(f"{q.name}: a winning schedule {m.group(0)!r}")
    return found


def leaks(nb: dict, before: list[dict] = ()) -> list[str]:
    """Each exercise of ``nb`` whose answer (a text form of it, or for a schedule any
    schedule the checker accepts) is anywhere a trainee reads before answering it: the
    prose and outputs of its notebook, above *and* below it, and of the notebooks
    ``before`` it.  (A later notebook may use what an earlier exercise asked.)"""
    texts = [t for earlier in before for t in visible_text(earlier)] + visible_text(nb)
    found = []
    for _, name in exercise_positions(nb):
        q = EXERCISES[name]
        for text in texts:
            found += _forms_in(q, text)
    return found


def _gated(cell: dict) -> bool:
    """A cell that runs only once an exercise was answered (``if q.answered():``)."""
    return cell["cell_type"] == "code" and ".answered()" in source(cell)


def readable_ungated(nb: dict) -> list[str]:
    """What a trainee reads before answering anything: the prose, every text output (a
    gated cell's is its placeholder) and the code of every cell that is not gated."""
    return visible_text(nb) + [source(c) for c in nb["cells"]
                               if c["cell_type"] == "code" and not _gated(c)]


def _without_questions(text: str) -> str:
    """``text`` without the exercises' questions and the concept check's (a question names
    its candidates; that is no leak)."""
    from labkit.concepts import concept_check

    for other in EXERCISES.values():
        text = text.replace(other.question, "")
    for when in ("before", "after"):
        text = text.replace(concept_check(when).text(), "")
    return text


def phrase_leaks(nb: dict, before: list[dict] = ()) -> list[str]:
    """Each exercise of ``nb`` whose mechanism (one of its ``phrases``: the words that
    answer it, e.g. "never copied twice") a trainee can read before answering it: the
    prose, outputs and ungated code of its notebook, above and below it (key points
    included), and of the notebooks before it."""
    texts = [t for earlier in before for t in readable_ungated(earlier)] + readable_ungated(nb)
    found = []
    for _, name in exercise_positions(nb):
        q = EXERCISES[name]
        for text in texts:
            low = _without_questions(text).lower()
            found += [f"{name}: {p!r} in {text[:160]!r}" for p in q.phrases if p.lower() in low]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_mechanism_that_answers_an_exercise_is_readable_before_it(path):
    before = [json.loads(p.read_text()) for p in NOTEBOOKS if p.stem < path.stem]
    assert phrase_leaks(json.loads(path.read_text()), before) == []


def test_the_phrase_leak_test_catches_a_key_point_that_answers_an_exercise():
    for stem, name, key_point in (
            ("02-backup-sync-none", "02.concurrent",
             "* Two writes into one backup cluster never copy it twice in an epoch: the "
             "CowRequest and the done bitmap see to that (exercise 2.3)."),
            ("03-replication-secondary", "03.failover",
             "The primary's writes since the checkpoint are **reverted** (hidden's old copies "
             "win)"),
            ("04-conflicting-reads", "04.serialise",
             "* it waits for the overlapping tracked requests in flight on hidden (exercise "
             "4.4: which are they?)."),
            ("05-exploring-interleavings", "05.partial",
             "qcow2's fill read is issued below the replication driver")):
        nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
        nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": key_point})
        assert any(leak.startswith(name) for leak in phrase_leaks(nb)), name
    for name in ("02.concurrent", "03.failover", "04.designs", "04.serialise", "05.partial"):
        assert EXERCISES[name].phrases, name


def scenario_comments() -> dict[str, str]:
    """The comment lines of every shipped scenario, without the machine-read header
    lines (``# config:``; a ``# verdict:`` line counts: it is an answer a trainee can read)."""
    folder = ROOT / "labkit" / "scenarios"
    out = {}
    for path in sorted(folder.glob("*.scn")):
        lines = [line for line in path.read_text().splitlines()
                 if "#" in line and not re.match(r"#\s*(config):", line)]
        out[path.name] = "\n".join(line[line.index("#"):] for line in lines)
    return out


def test_every_exercise_is_in_the_stored_notebooks_once():
    names = [n for path in NOTEBOOKS for _, n in exercise_positions(json.loads(path.read_text()))]
    assert sorted(names) == sorted(EXERCISES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nothing_a_trainee_reads_gives_an_answer_away(path):
    before = [json.loads(p.read_text()) for p in NOTEBOOKS if p.stem < path.stem]
    nb = json.loads(path.read_text())
    assert leaks(nb, before) == []
    for index, name in exercise_positions(nb):  # and every exercise is stored unanswered
        shown = " ".join(cell_text(nb["cells"][index]))
        assert "Correct!" not in shown and "Replace the placeholder" in shown, name


def test_no_shipped_scenario_comment_gives_an_answer_away():
    for name, comments in scenario_comments().items():
        for q in EXERCISES.values():
            assert _forms_in(q, comments) == [], name
            assert [p for p in q.phrases if p.lower() in comments.lower()] == [], (name, q.name)


def test_every_answer_has_a_text_form_the_leak_test_looks_for():
    for q in EXERCISES.values():
        assert q.answer_forms() or q.name in ("05.own_race",), q.name


def test_the_leak_test_catches_a_leak_above_below_in_prose_and_in_a_scenario():
    path = ROOT / "notebooks" / "04-conflicting-reads.ipynb"
    nb = json.loads(path.read_text())
    first = exercise_positions(nb)[0][0]
    winning = EXERCISES["04.schedule"].answer
    nb["cells"][first - 1]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": f"one way: {winning}\n"}]
    assert any("04.schedule" in leak for leak in leaks(nb))
    served = json.loads((ROOT / "notebooks" / "01-block-graph.ipynb").read_text())
    at = exercise_positions(served)[0][0]
    served["cells"][at + 1]["outputs"] = [   # below the exercise
        {"output_type": "stream", "name": "stdout",
         "text": f"served by: {EXERCISES['01.served'].answer}\n"}]
    assert any("01.served" in leak for leak in leaks(served))
    prose = json.loads((ROOT / "notebooks" / "05-exploring-interleavings.ipynb").read_text())
    verdicts = EXERCISES["05.partial"].answer
    prose["cells"].append({"cell_type": "markdown", "metadata": {},
                           "source": f"Under 2.8 the verdict is {verdicts['2.8']}: "
                                     f"design 2.8: {verdicts['2.8']}"})
    assert any("05.partial" in leak for leak in leaks(prose))
    choice = EXERCISES["04.serialise"]
    right = {o.key: o.text for o in choice.options}[choice.answer]
    assert _forms_in(choice, f"# in QEMU 4.0 {right}") != []
    assert _forms_in(choice, choice.question) == []  # a choice in its own question is no leak


def _skip_06_without_qemu(path: Path) -> None:
    if path.stem.startswith("06"):
        from labkit.qemu import qemu_available
        from labkit.testing import need

        need(qemu_available() is None, "QEMU with the replication driver",
             "apt-get install qemu-system-x86 qemu-utils")


@pytest.fixture(scope="session")
def executed() -> Callable[[Path], dict]:
    """``executed(path)``: the notebook at ``path`` run once in this session (as a dict).

    Each notebook costs seconds to minutes to run: every check of this module
    that needs a fresh run shares this one.
    """
    from build_notebooks import execute, make

    runs: dict[str, dict] = {}

    def run(path: Path) -> dict:
        if path.stem not in runs:
            runs[path.stem] = json.loads(nbformat.writes(execute(make(path.stem))))
        return runs[path.stem]

    return run


def cell_outputs(cell: dict) -> list[tuple[str, tuple[str, ...], str]]:
    """A code cell's outputs as ``(kind, MIME types, text)``: the kind is the output type
    (a stream's: ``stream:stdout``), the text as :func:`cell_text` gives it (consecutive
    chunks of one stream joined)."""
    kinds: list[tuple[str, tuple[str, ...]]] = []
    for o in cell.get("outputs", []):
        kind = o["output_type"] + (f":{o['name']}" if o["output_type"] == "stream" else "")
        if kinds and kind.startswith("stream") and kinds[-1][0].startswith("stream"):
            if not kinds[-1][0].endswith(kind):  # stdout then stderr: one text, both kinds
                kinds[-1] = (f"{kinds[-1][0]}+{kind}", ())
            continue
        kinds.append((kind, tuple(sorted(o.get("data", {})))))
    return [(kind, mimes, text) for (kind, mimes), text in zip(kinds, cell_text(cell),
                                                                  strict=True)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_fresh_execution_gives_the_stored_outputs_exactly(path, executed):
    """Cell by cell: the same outputs, of the same kinds and MIME types, with the same
    text (what nbval compares, unmasked and in order)."""
    _skip_06_without_qemu(path)
    fresh, stored = executed(path)["cells"], json.loads(path.read_text())["cells"]
    assert [c["id"] for c in fresh] == [c["id"] for c in stored]
    for new, old in zip(fresh, stored, strict=True):
        if old["cell_type"] == "code":
            assert cell_outputs(new) == cell_outputs(old), \
                f"{path.name}, cell {old['id']}: a fresh run differs from the stored " \
                f"outputs (stale: run `make notebooks`; or nondeterministic)"


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


def test_the_solved_edition_shows_each_answer_and_stays_solved_when_rerun():
    """The solved edition writes each answer into its cell: executed *without*
    LABKIT_SOLUTIONS (a trainer re-running it) every check still says Correct!, names
    the answer, and the cells that show an answer run."""
    from build_notebooks import execute, make

    nb = execute(make("04-conflicting-reads", "solutions"), "trainee")
    cells = [(c, EXERCISE_CELL.search(source(c))) for c in nb.cells if c.cell_type == "code"]
    asked = [(c, getattr(getattr(exercises, m[1]), m[2])) for c, m in cells if m]
    assert len(asked) == 4
    for cell, q in asked:
        assert "your_answer" not in source(cell) and q.literal() in source(cell), q.name
        shown = " ".join(cell_text(cell))
        assert shown.count("Correct! Your answer") == 1, (q.name, shown[:300])
        assert q.described(q.answer) in shown, q.name
    assert not any("This cell shows the answer" in t for t in text_outputs(nb))


def test_the_leak_test_catches_any_winning_fleecing_schedule_in_notebook_07():
    """07.schedule, like 04.schedule, is caught in any form the checker accepts (here the
    engine's schedule with its run-lengths spelt out), not only as the stored answer."""
    from labkit.trace import format_schedule, parse_schedule

    path = ROOT / "notebooks" / "07-image-fleecing.ipynb"
    nb = json.loads(path.read_text())
    assert leaks(nb) == []
    spelt = " ".join(parse_schedule(EXERCISES["07.schedule"].answer))
    assert spelt != format_schedule(parse_schedule(spelt))
    nb["cells"][-2]["outputs"] = [
        {"output_type": "stream", "name": "stdout", "text": f"played: {spelt}\n"}]
    assert any("07.schedule: a winning schedule" in leak for leak in leaks(nb))


def figure_labels() -> list[str]:
    """Every fixed label the figures draw (node subtitles, layer titles): text a trainee
    reads in a PNG, which the text outputs the leak test reads do not hold."""
    import labkit as lk
    from labkit.plot import _common, graph

    jobs = [label for design in ("2.12", "3.0", "7.2")
            for _, label, _ in graph.graph_model(
                lk.run_scenario("fleece", graph="fleecing", design=design, size="128K")).jobs]
    return [*graph.SUBTITLES.values(), *graph.FLEECING_SUBTITLES.values(),
            *_common.LAYER_TITLES.values(), *jobs]


def test_no_figure_label_gives_an_answer_away():
    """A figure shown above an exercise must not say its answer: 07's graph once labelled
    the copy-before-write filter "filter: copies, then writes", 7.4's answer (copy, then
    wait for the frozen reads, then write)."""
    for label in figure_labels():
        for q in EXERCISES.values():
            assert _forms_in(q, label) == [], (label, q.name)
    assert _forms_in(EXERCISES["07.frozen"], "fl-cbw: filter: copies, then writes") != []
