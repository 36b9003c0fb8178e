"""The stored notebooks: executed twice, their text outputs are identical, and stable.

nbval (``make test`` runs ``pytest --nbval notebooks``) compares a fresh run with
the stored outputs; this test also runs every notebook twice more and compares
the two runs with each other, and checks the outputs hold nothing that varies
from run to run or machine to machine (addresses, timings, paths).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FORBIDDEN = [
    (re.compile(r"0x[0-9a-f]{8,}"), "a memory address"),
    (re.compile(r"\b\d+(\.\d+)?\s?(ms|µs|seconds)\b"), "a timing"),
    (re.compile(r"/(work|tmp|root|home)/"), "a machine path"),
]


def text_outputs(nb: dict) -> list[str]:
    """Each cell's text outputs; consecutive stream chunks are joined (the kernel may
    flush one print in several messages)."""
    out: list[str] = []
    for cell in nb["cells"]:
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


def test_every_notebook_is_stored_executed_with_a_kernelspec():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and all(c["execution_count"] for c in code), f"{path.name}: not executed"
        first = "".join(nb["cells"][0]["source"])
        last = "".join(nb["cells"][-1]["source"])
        assert "What you will learn" in first, f"{path.name}: no statement of what it teaches"
        assert "Recap" in last, f"{path.name}: no recap"
        for text in text_outputs(nb):
            assert not text.startswith("ERROR"), f"{path.name}: {text}"
            for pattern, what in FORBIDDEN:
                assert not pattern.search(text), f"{path.name}: output holds {what}: {text[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_two_executions_give_identical_text(path):
    from build_notebooks import execute, make

    if path.stem.startswith("06"):
        from labkit.qemu import qemu_available
        from labkit.testing import need

        need(qemu_available() is None, "QEMU with the replication driver",
             "apt-get install qemu-system-x86 qemu-utils")
    first = text_outputs(execute(make(path.stem)))
    second = text_outputs(execute(make(path.stem)))
    assert first == second
    assert first == text_outputs(json.loads(path.read_text())), \
        f"{path.name}: the stored outputs are stale: run `make notebooks`"
