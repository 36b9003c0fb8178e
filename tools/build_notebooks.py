"""Build and execute the lab's notebooks from their source (``tools/notebook_source.py``).

Usage: ``python tools/build_notebooks.py [NAME ...]`` (``make notebooks``).

Each notebook is written with nbformat (deterministic cell ids, a python3
kernelspec), executed with nbclient in ``notebooks/`` with
``LABKIT_SOLUTIONS=1`` (exercises show their solved state), and stored with
its outputs and widget state, so that nbval can compare them and GitHub can
render them.  Nothing in the outputs may depend on time, memory addresses or
random ids: ``tests/test_notebooks.py`` executes everything twice and compares.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from notebook_source import NOTEBOOKS  # noqa: E402

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def make(name: str) -> nbformat.NotebookNode:
    """The unexecuted notebook ``name`` from its source cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(NOTEBOOKS[name]):
        text = text.strip("\n")
        cell = (nbformat.v4.new_markdown_cell(text) if kind == "md"
                else nbformat.v4.new_code_cell(text))
        cell["id"] = f"{name[:2]}-{i:02d}"
        nb.cells.append(cell)
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in ``notebooks/`` with solutions on; keep widget state."""
    os.environ["LABKIT_SOLUTIONS"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}},
                            store_widget_state=True)
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def main(names: list[str]) -> int:
    for name in names or list(NOTEBOOKS):
        if name not in NOTEBOOKS:
            print(f"unknown notebook {name!r}; known: {', '.join(NOTEBOOKS)}", file=sys.stderr)
            return 2
        nb = execute(make(name))
        path = ROOT / "notebooks" / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
