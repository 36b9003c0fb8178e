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
  the question, one or two tries, a hint), ``MIN_PER_TRY_SECTION`` for an
  unchecked "Things to try".

It prints the estimate next to the minutes the notebook's header announces;
``docs/trainer-guide.md`` builds its agenda from this table.
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

WORDS_PER_MIN = 120
SECONDS_PER_CODE_LINE = 6
SECONDS_PER_OUTPUT_LINE = 3
MIN_PER_WIDGET = 4
MIN_PER_EXERCISE = 5
MIN_PER_TRY_SECTION = 5
WIDGETS = re.compile(r"^\s*(display\()?(stepper|playground|replay)\)?\s*$", re.M)
EXERCISE = re.compile(r"\.your_answer\(")
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


def time_notebook(path: Path) -> dict[str, Any]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(FOLDER)}}).execute()
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    code = [c for c in nb.cells if c.cell_type == "code"]
    code_lines = sum(1 for c in code for line in c.source.splitlines()
                     if line.strip() and not line.strip().startswith("#"))
    out_lines = sum(_output_lines(c) for c in code)
    run_s = sum(_seconds(c) for c in code)
    widgets = sum(len(WIDGETS.findall(c.source)) for c in code)
    exercises = sum(1 for c in code if EXERCISE.search(c.source))
    tries = sum(1 for c in nb.cells
                if c.cell_type == "markdown" and "### Things to try" in c.source)
    read_min = (words / WORDS_PER_MIN + code_lines * SECONDS_PER_CODE_LINE / 60
                + out_lines * SECONDS_PER_OUTPUT_LINE / 60)
    teaching = read_min + run_s / 60 + widgets * MIN_PER_WIDGET
    exercise_min = exercises * MIN_PER_EXERCISE + tries * MIN_PER_TRY_SECTION
    m = ANNOUNCED.search(nb.cells[0].source)
    return {"notebook": path.stem, "run_s": run_s, "words": words, "code_lines": code_lines,
            "output_lines": out_lines, "widgets": widgets, "exercises": exercises,
            "teaching_min": teaching, "exercise_min": exercise_min,
            "announced": (int(m[1]), int(m[2])) if m else None}


def main(argv: list[str]) -> int:
    os.environ.pop("LABKIT_SOLUTIONS", None)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    paths = [p for p in sorted(FOLDER.glob("*.ipynb"))
             if not argv or any(p.stem.startswith(a) for a in argv)]
    rows = [time_notebook(p) for p in paths]
    print(f"{'notebook':<28} {'run s':>6} {'words':>6} {'code':>5} {'out':>5} {'wdg':>4} "
          f"{'ex':>3} {'teach min':>9} {'ex min':>6} {'announced':>10}")
    for r in rows:
        ann = "{}+{}".format(*r["announced"]) if r["announced"] else "-"
        print(f"{r['notebook']:<28} {r['run_s']:6.1f} {r['words']:6d} {r['code_lines']:5d} "
              f"{r['output_lines']:5d} {r['widgets']:4d} {r['exercises']:3d} "
              f"{r['teaching_min']:9.1f} {r['exercise_min']:6.0f} {ann:>10}")
    teach = sum(r["teaching_min"] for r in rows)
    ex = sum(r["exercise_min"] for r in rows)
    announced = sum(sum(r["announced"]) for r in rows if r["announced"])
    print(f"{'total':<28} {sum(r['run_s'] for r in rows):6.1f} "
          f"{sum(r['words'] for r in rows):6d} {'':>5} {'':>5} {'':>4} "
          f"{sum(r['exercises'] for r in rows):3d} {teach:9.1f} {ex:6.0f} {announced:>10}")
    print(f"\nestimated: {teach + ex:.0f} min of lessons (announced {announced} min); model: "
          f"{WORDS_PER_MIN} words/min, {SECONDS_PER_CODE_LINE} s/code line, "
          f"{SECONDS_PER_OUTPUT_LINE} s/output line, {MIN_PER_WIDGET} min/widget, "
          f"{MIN_PER_EXERCISE} min/exercise")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
