"""``python -m labkit``: the ``labkit`` command line (:func:`labkit.cli.main`)."""

from .cli import main

raise SystemExit(main())
