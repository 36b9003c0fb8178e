"""Repository-wide pytest set-up for nbval: the trainee edition, widget views not compared.

``pytest --nbval notebooks`` validates the stored notebooks, which are the
*trainee* edition (exercises unanswered): ``LABKIT_SOLUTIONS`` is removed from
the environment here, before nbval starts any kernel (the solved edition is
built by ``make solutions`` and not stored).  A widget's view output carries a
random ``model_id``, so that mimetype is skipped; each widget's deterministic
text twin (its ``text/plain``) is still compared.  ``tests/sanitize.cfg``
masks what legitimately differs between machines (QEMU's patch version, and
whether notebook 06 ran QEMU live or showed its recorded comparison).
"""

from __future__ import annotations

import os

os.environ.pop("LABKIT_SOLUTIONS", None)
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def pytest_collectstart(collector):
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("application/vnd.jupyter.widget-view+json", "text/html")
