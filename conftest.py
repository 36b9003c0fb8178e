"""Repository-wide pytest set-up for nbval: solutions on, widget views not compared.

nbval runs the stored notebooks again and compares their text outputs.  The
exercises show their solved state only with ``LABKIT_SOLUTIONS=1`` (set here,
before nbval starts any kernel).  A widget's view output carries a random
``model_id``, so that mimetype is skipped; each widget's deterministic text
twin (its ``text/plain``) is still compared.
"""

from __future__ import annotations

import os

os.environ["LABKIT_SOLUTIONS"] = "1"
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def pytest_collectstart(collector):
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("application/vnd.jupyter.widget-view+json", "text/html")
