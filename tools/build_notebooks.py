"""Build and execute the lab's notebooks from their jupytext sources (``notebooks/src/*.md``).

Usage::

    python tools/build_notebooks.py [NAME ...]                 # make notebooks
    python tools/build_notebooks.py --edition solutions [NAME ...]   # make solutions

The **trainee edition** (``notebooks/NAME.ipynb``, kept in git) is executed with
``LABKIT_SOLUTIONS`` unset: exercises unanswered, as a trainee first sees them.
The **solved edition** (``solutions/NAME.ipynb``, gitignored) is executed with
``LABKIT_SOLUTIONS=1``.  Both run in ``notebooks/`` with nbclient, keep widget
state, and drop execution timings; cell ids are ``NN-ii``.  Nothing in the
outputs may depend on time, memory addresses or random ids:
``tests/test_notebooks.py`` executes everything twice and compares.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks" / "src"
RUNTIME_TAG = "runtime-output"
OUTPUT = {"trainee": ROOT / "notebooks", "solutions": ROOT / "solutions"}

sys.path.insert(0, str(ROOT))
from labkit.editions import notebook_from_source  # noqa: E402


def names() -> list[str]:
    """Every notebook, in teaching order (the sources' file names)."""
    return sorted(p.stem for p in SOURCES.glob("*.md"))


ANSWER_CALL = re.compile(r"\bq\.your_answer\((?:[^()]|\([^()]*\))*\)")
EXERCISE_CELL = re.compile(r"\bq = (ex0\d)\.(\w+)")


def make(name: str, edition: str = "trainee") -> nbformat.NotebookNode:
    """The unexecuted notebook ``name`` from its source.

    In the solved edition each exercise cell's ``q.your_answer(...)`` is replaced by
    the engine's answer written out as a literal, so that a trainer sees the answer
    and the notebook stays solved when re-run without ``LABKIT_SOLUTIONS``.
    """
    nb = notebook_from_source(SOURCES / f"{name}.md")
    if edition == "solutions":
        from labkit import exercises

        for cell in nb.cells:
            m = EXERCISE_CELL.search(cell.source) if cell.cell_type == "code" else None
            if m and ANSWER_CALL.search(cell.source):
                literal = getattr(getattr(exercises, m[1]), m[2]).literal()
                cell.source = ANSWER_CALL.sub(lambda _, text=literal: text, cell.source)
                cell.source = re.sub(r"#\s*replace .*$", "# the engine's answer", cell.source,
                                     flags=re.M)
    return nb


def execute(nb: nbformat.NotebookNode, edition: str = "trainee", timeout: int = 600,
            env: dict[str, str] | None = None,
            runtime_outputs: bool = False) -> nbformat.NotebookNode:
    """Run every cell in ``notebooks/``, solutions on only for the solved edition.

    A cell tagged ``runtime-output`` says something true only of the machine that runs
    it (notebook 06: is QEMU usable here, so is the comparison live or recorded?): its
    outputs are dropped unless ``runtime_outputs``, so that a stored notebook never
    claims a run that the reader's machine did not make.
    """
    saved = dict(os.environ)
    try:
        if edition == "solutions":
            os.environ["LABKIT_SOLUTIONS"] = "1"
        else:
            os.environ.pop("LABKIT_SOLUTIONS", None)
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        os.environ.update(env or {})
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}},
                                store_widget_state=True)
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if not runtime_outputs and RUNTIME_TAG in cell.metadata.get("tags", ()):
            cell.outputs = []
        elif cell.get("outputs"):
            cell.outputs = coalesce_streams(cell.outputs)
    return stored_widgets_as_pictures(nb)


def coalesce_streams(outputs: list) -> list:
    """Consecutive ``stream`` outputs of one name as one: how the kernel's stdout was
    cut into messages depends on timing, so a stored notebook would differ run to run."""
    out: list = []
    for o in outputs:
        if (o.get("output_type") == "stream" and out
                and out[-1].get("output_type") == "stream" and out[-1]["name"] == o["name"]):
            out[-1]["text"] = "".join(out[-1]["text"]) + "".join(o["text"])
        else:
            out.append(o)
    return out


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def stored_widgets_as_pictures(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep each widget output's picture and short placeholder, not the widget view.

    A stored widget view shows only "Error displaying widget: model not found" once
    its model is gone (a new kernel), and an untrusted notebook shows the richest safe
    form beside it instead; labkit's widgets put a picture (``image/png``) and a
    three-line ``text/plain`` there (``labkit.widgets``' ``_repr_mimebundle_``).  So
    the stored notebook keeps those, trusted or not, until the cell runs again.
    """
    views_left = False
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data and "image/png" in data:
                del data[WIDGET_VIEW]
            views_left |= WIDGET_VIEW in data
    if not views_left:  # the saved widget state serves only widget views
        nb.metadata.pop("widgets", None)
    return nb


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edition", choices=sorted(OUTPUT), default="trainee")
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(argv)
    known = names()
    for name in args.names:
        if name not in known:
            print(f"unknown notebook {name!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    out = OUTPUT[args.edition]
    out.mkdir(exist_ok=True)
    for name in args.names or known:
        nb = execute(make(name, args.edition), args.edition)
        path = out / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
