"""Record notebook 06's comparison on a real QEMU, for machines without one.

Usage: ``python tools/record_qemu_comparison.py`` (needs ``qemu-system-x86_64``
with the replication driver: Debian's ``qemu-system-x86``).

Runs ``notebooks/data/06-real-qemu.scn`` on QEMU (its layer tables) and
compares it with the simulator (``labkit.qemu.compare``), and writes both as
text to ``notebooks/data/06-recorded.json``.  Notebook 06 shows that file,
labelled as recorded, when QEMU is absent; ``tests/test_notebooks.py`` checks
that a live run still prints the same text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "notebooks" / "data"
SCENARIO = DATA / "06-real-qemu.scn"
RECORDED = DATA / "06-recorded.json"

sys.path.insert(0, str(ROOT))


def record() -> dict[str, object]:
    """The comparison as notebook 06 prints it, from a live QEMU run."""
    from labkit import qemu, scenarios
    from labkit.render import block_map

    text = SCENARIO.read_text()
    config = scenarios.config(text)
    reason = qemu.qemu_available()
    if reason is not None:
        raise SystemExit(f"cannot record without QEMU: {reason}")
    run = qemu.run_scenario(text, **config)
    block = 4096
    tables = [[title, block_map(layers, block)] for title, layers in run.dumps]
    result = qemu.compare(text, **config)
    return {"scenario": SCENARIO.name, "config": config, "qemu_tables": tables,
            "comparison": result.text(), "agree": result.agree,
            "made_by": "python tools/record_qemu_comparison.py"}


def main() -> int:
    data = record()
    RECORDED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORDED.relative_to(ROOT)} (agree: {data['agree']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
