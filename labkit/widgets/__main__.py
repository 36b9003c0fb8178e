"""``python -m labkit.widgets [OUTDIR]``: render the docs' widget and plot PNGs (default docs/)."""

from __future__ import annotations

import sys

from ._snapshot import write_docs

for path in write_docs(sys.argv[1] if len(sys.argv) > 1 else "docs"):
    print(path)
