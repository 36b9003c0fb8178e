"""Time each lesson as a trainee meets it: measured execution plus reading estimates.

Usage: ``python tools/lesson_timings.py [PREFIX ...]`` (e.g. ``04 05``; default all).

For each notebook of the trainee edition, executed top to bottom in a fresh
kernel (nbclient, cwd ``notebooks/``, ``LABKIT_SOLUTIONS`` unset):

* **run** — the measured time of every cell (the kernel's ``execute_input`` to
  ``execute_reply``), summed: what a trainee waits for;
* **read** — an estimate: prose at ``WORDS_PER_MIN``, code at
  ``SECONDS_PER_CODE_LINE`` a line, outputs at ``SECONDS_PER_OUTPUT_LINE`` a
  line (block maps are studied, not skimmed);
* **widgets** — ``MIN_PER_WIDGET`` minutes of clicking per interactive widget
  (stepper, playground, replay);
* **exercises** — ``MIN_PER_EXERCISE`` minutes per checked exercise (reading
  the question, one or two tries, a hint), ``MIN_PER_CHOICE`` per multiple-choice
  prediction, ``MIN_PER_CONCEPT_CHECK`` per sitting of the concept check,
  ``MIN_PER_TRY_SECTION`` for an unchecked "Things to try".

It prints the estimate next to the minutes the notebook's header announces;
``docs/trainer-guide.md`` builds its agenda from this table, and
``tests/test_editions.py`` checks the guide's table against :func:`static_counts`
(everything but the measured run time) and :func:`estimate`.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))

WORDS_PER_MIN = 120
SECONDS_PER_CODE_LINE = 6
SECONDS_PER_OUTPUT_LINE = 3
MIN_PER_WIDGET = 4
MIN_PER_EXERCISE = 5
MIN_PER_CHOICE = 2
MIN_PER_CONCEPT_CHECK = 5
MIN_PER_TRY_SECTION = 5
WIDGETS = re.compile(r"^\s*(display\()?(stepper|playground|replay)\)?\s*$", re.M)
EXERCISE = re.compile(r"\.your_answer\(")
EXERCISE_NAME = re.compile(r"\bq = (ex0\d)\.(\w+)")
CONCEPT_CHECK = re.compile(r"^cc = concept_check\(", re.M)
ANNOUNCED = re.compile(r"\*\*Teaching:\*\* (\d+) min · \*\*Exercises:\*\* (\d+) min")


def _seconds(cell: Any) -> float:
    t = cell.metadata.get("execution", {})
    try:
        start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def _output_lines(cell: Any) -> int:
    n = 0
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            n += "".join(o.text).count("\n")
        elif o.output_type in ("execute_result", "display_data"):
            if "image/png" in o.data:
                n += 10  # a figure is looked at a while
            else:
                n += "".join(o.data.get("text/plain", "")).count("\n") + 1
    return n


def _is_choice(source: str) -> bool:
    from labkit.exercises import Choice

    m = EXERCISE_NAME.search(source)
    if m is None:
        return False
    import labkit.exercises as exercises

    return isinstance(getattr(getattr(exercises, m[1]), m[2]), Choice)


def static_counts(nb: Any) -> dict[str, Any]:
    """What the estimate counts in a notebook, its measured run time aside: prose words,
    code lines, output lines (of the stored outputs), widgets, exercises (open and
    multiple-choice), concept-check sittings, and the minutes its header announces."""
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    code = [c for c in nb.cells if c.cell_type == "code"]
    code_lines = sum(1 for c in code for line in c.source.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
    asked = [c.source for c in code if EXERCISE.search(c.source)]
    choices = sum(1 for src in asked if _is_choice(src))
    m = ANNOUNCED.search(nb.cells[0].source)
    return {"words": words, "code_lines": code_lines,
            "output_lines": sum(_output_lines(c) for c in code),
            "widgets": sum(len(WIDGETS.findall(c.source)) for c in code),
            "exercises": len(asked) - choices, "choices": choices,
            "concept_checks": sum(len(CONCEPT_CHECK.findall(c.source)) for c in code),
            "tries": sum(1 for c in nb.cells
                         if c.cell_type == "markdown" and "### Things to try" in c.source),
            "announced": (int(m[1]), int(m[2])) if m else None}


def estimate(counts: dict[str, Any], run_s: float) -> tuple[float, int]:
    """(teaching minutes, exercise minutes) from :func:`static_counts` and the run time."""
    read_min = (counts["words"] / WORDS_PER_MIN
                + counts["code_lines"] * SECONDS_PER_CODE_LINE / 60
                + counts["output_lines"] * SECONDS_PER_OUTPUT_LINE / 60)
    teaching = read_min + run_s / 60 + counts["widgets"] * MIN_PER_WIDGET
    exercise_min = (counts["exercises"] * MIN_PER_EXERCISE + counts["choices"] * MIN_PER_CHOICE
                    + counts["concept_checks"] * MIN_PER_CONCEPT_CHECK
                    + counts["tries"] * MIN_PER_TRY_SECTION)
    return teaching, exercise_min


def time_notebook(path: Path) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient

    stored = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(FOLDER)}}).execute()
    counts = static_counts(stored)  # the stored outputs: what a trainee first reads
    run_s = sum(_seconds(c) for c in nb.cells if c.cell_type == "code")
    teaching, exercise_min = estimate(counts, run_s)
    return {"notebook": path.stem, "run_s": run_s, **counts,
            "teaching_min": teaching, "exercise_min": exercise_min}


def main(argv: list[str]) -> int:
    os.environ.pop("LABKIT_SOLUTIONS", None)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    paths = [p for p in sorted(FOLDER.glob("*.ipynb"))
             if not argv or any(p.stem.startswith(a) for a in argv)]
    rows = [time_notebook(p) for p in paths]
    print(f"{'notebook':<28} {'run s':>6} {'words':>6} {'code':>5} {'out':>5} {'wdg':>4} "
          f"{'ex':>3} {'mc':>3} {'cc':>3} {'teach min':>9} {'ex min':>6} {'announced':>10}")
    for r in rows:
        ann = "{}+{}".format(*r["announced"]) if r["announced"] else "-"
        print(f"{r['notebook']:<28} {r['run_s']:6.1f} {r['words']:6d} {r['code_lines']:5d} "
              f"{r['output_lines']:5d} {r['widgets']:4d} {r['exercises']:3d} "
              f"{r['choices']:3d} {r['concept_checks']:3d} "
              f"{r['teaching_min']:9.1f} {r['exercise_min']:6.0f} {ann:>10}")
    teach = sum(r["teaching_min"] for r in rows)
    ex = sum(r["exercise_min"] for r in rows)
    announced = sum(sum(r["announced"]) for r in rows if r["announced"])
    print(f"{'total':<28} {sum(r['run_s'] for r in rows):6.1f} "
          f"{sum(r['words'] for r in rows):6d} {'':>5} {'':>5} {'':>4} "
          f"{sum(r['exercises'] for r in rows):3d} {sum(r['choices'] for r in rows):3d} "
          f"{sum(r['concept_checks'] for r in rows):3d} {teach:9.1f} {ex:6.0f} "
          f"{announced:>10}")
    print(f"\nestimated: {teach + ex:.0f} min of lessons (announced {announced} min); model: "
          f"{WORDS_PER_MIN} words/min, {SECONDS_PER_CODE_LINE} s/code line, "
          f"{SECONDS_PER_OUTPUT_LINE} s/output line, {MIN_PER_WIDGET} min/widget, "
          f"{MIN_PER_EXERCISE} min/exercise, {MIN_PER_CHOICE} min/multiple-choice, "
          f"{MIN_PER_CONCEPT_CHECK} min/concept check")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
