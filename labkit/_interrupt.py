"""Ctrl-C while ``python -m labkit`` imports labkit: one line and exit 130.

``python -m labkit`` imports the package (numpy and the engine: about 0.35 s)
before any of :mod:`labkit.cli` runs, so its ``KeyboardInterrupt`` policy
cannot catch an interrupt then: Python printed a traceback and the process
ended with status −2.  :func:`exit_on_interrupt` is installed first thing by
``labkit/__init__.py`` (only when the command is ``python -m labkit``) and
:mod:`labkit.__main__` hands SIGINT back to Python's handler once the imports
are done — from there on, :func:`labkit.cli.main` handles Ctrl-C (and shuts
down any QEMU it started).  The ``labkit`` console script does the same with
a ``try`` around its imports (:mod:`labkit_entry`).  Imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

MESSAGE = b"labkit: interrupted (Ctrl-C)\n"
EXIT_INTERRUPTED = 130


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, MESSAGE)
    os._exit(EXIT_INTERRUPTED)  # nothing to clean up yet: only imports have run


def exit_on_interrupt() -> None:
    """Until :func:`restore`, Ctrl-C prints one line and exits 130."""
    signal.signal(signal.SIGINT, _interrupted)


def restore() -> None:
    """Ctrl-C raises ``KeyboardInterrupt`` again (Python's own handler)."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
