"""``python -m labkit_entry``: the ``labkit`` command with Ctrl-C handled from the start."""

from . import main

raise SystemExit(main())
