"""``python -m labkit``: the ``labkit`` command line (:func:`labkit.cli.main`)."""

from ._interrupt import restore
from .cli import main

restore()  # the imports are done: labkit.cli.main's own Ctrl-C policy applies
raise SystemExit(main())
