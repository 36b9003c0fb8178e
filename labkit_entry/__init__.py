"""The ``labkit`` console script: Ctrl-C is labkit's from the first instruction.

``labkit.cli.main`` catches ``KeyboardInterrupt`` (one line, exit 130), but
only once ``labkit`` is imported — numpy and the engine take about 0.35 s, and
a Ctrl-C then printed Python's traceback and ended with status −2.  This
package imports nothing heavy: :func:`main` catches an interrupt during those
imports too.  (``python -m labkit`` imports the package before any labkit code
runs; the console script and ``python -m labkit_entry`` do not.)
"""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # labkit.cli.EXIT_INTERRUPTED, not imported: it is heavy


def main() -> int:
    """``labkit.cli.main`` with the interrupt policy around its imports."""
    try:
        from labkit.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: the same one line
        sys.stderr.write("labkit: interrupted (Ctrl-C)\n")
        return EXIT_INTERRUPTED
