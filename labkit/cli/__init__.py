"""The ``labkit`` command line (also ``python -m labkit``).

Subcommands live in small modules of this package that each expose
``register(subparsers)`` (listed in :data:`SUBCOMMAND_MODULES`); this module
assembles them and applies the one error policy:

* a refused input — any :class:`~labkit.errors.LabkitError`, an unreadable
  file, a bad option — is **one line** on standard error, ``labkit COMMAND:
  what was wrong and what is allowed``, exit status **2**;
* Ctrl-C (``KeyboardInterrupt``) prints one line and exits **130** (any QEMU
  the command started is shut down on the way out);
* anything else is a bug in labkit: Python's traceback, exit status 1.

Every command that reads a scenario takes a file, ``-`` (standard input) or
the name of a shipped scenario (``labkit run canonical``), and applies its
``# config:`` header under the options given (see :mod:`labkit.cli._common`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import LabkitError
from ._common import (
    OneLineParser,
    add_config_arguments,
    configured_from_cli,
    one_line,
    read_scenario,
    scenario_input,
)
from ._run import demo_text, dumps_json, report

SUBCOMMAND_MODULES = ("labkit.cli._run", "labkit.cli._quiz", "labkit.cli._qemu",
                      "labkit.cli._explore", "labkit.cli._reset")
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="labkit",
        description="labkit: see how QEMU's block layer keeps a COLO secondary consistent.",
    )
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``labkit`` command; returns its exit status (see the module docstring)."""
    command = "labkit"
    try:
        parser = build_parser()  # imports the subcommands: a Ctrl-C there is handled too
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        command = f"labkit {args.command}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except (LabkitError, OSError) as exc:
        print(f"{command}: {one_line(exc)}", file=sys.stderr)
        return EXIT_REFUSED


__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_REFUSED",
    "SUBCOMMAND_MODULES",
    "add_config_arguments",
    "build_parser",
    "configured_from_cli",
    "demo_text",
    "dumps_json",
    "main",
    "read_scenario",
    "report",
    "scenario_input",
]
