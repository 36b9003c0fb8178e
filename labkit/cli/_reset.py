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
                       description="Restore NOTEBOOK (a name like 01-the-secondary, or its "
                                   "path) to the state it was shipped in, and print its path.")
    p.add_argument("notebook", help="the notebook's name or path")
    p.set_defaults(func=cmd_reset)


def cmd_reset(args: argparse.Namespace) -> int:
    try:
        editions = importlib.import_module("labkit.editions")
    except ModuleNotFoundError:
        raise StateError("this labkit has no notebook editions (labkit.editions is missing); "
                         "reinstall labkit") from None
    path = editions.reset(args.notebook)
    print(f"reset {path}")
    return 0
