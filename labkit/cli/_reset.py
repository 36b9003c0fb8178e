"""``labkit reset NOTEBOOK``: put a workshop notebook back as it was shipped.

The work is :func:`labkit.editions.reset`'s (imported only when the command
runs); this module only names the notebook and prints where it went.
"""

from __future__ import annotations

import argparse
import importlib

from ..errors import StateError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reset", help="restore a notebook to its shipped state",
                       description="Restore NOTEBOOK (a number like 04, a name like "
                                   "04-conflicting-reads, or its path) to the state it was "
                                   "shipped in. Your copy is kept in backups/ beside it. Close "
                                   "the notebook's tab in JupyterLab first: an open notebook "
                                   "is refused.")
    p.add_argument("notebook", help="the notebook: 04, 04-conflicting-reads, or a path")
    p.add_argument("--force", action="store_true",
                   help="reset even if JupyterLab has the notebook open (then answer its "
                        "'File Changed' dialog with Revert, not Overwrite)")
    p.set_defaults(func=cmd_reset)


def cmd_reset(args: argparse.Namespace) -> int:
    try:
        editions = importlib.import_module("labkit.editions")
    except ModuleNotFoundError:
        raise StateError("this labkit has no notebook editions (labkit.editions is missing); "
                         "reinstall labkit") from None
    result = editions.reset(args.notebook, force=args.force)
    print(result.text())
    return 0
