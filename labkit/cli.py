"""The ``labkit`` command line (also ``python -m labkit``).

Subcommands live in small modules that each expose ``register(subparsers)``
(listed in :data:`SUBCOMMAND_MODULES`); this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

SUBCOMMAND_MODULES = ("labkit._cli_run", "labkit._cli_quiz", "labkit._cli_qemu",
                      "labkit._cli_explore")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The :func:`labkit.build_secondary` keywords as options (shared by subcommands)."""
    parser.add_argument("--size", default="1M", help="disk size (default 1M)")
    parser.add_argument("--block", default="4K", help="table block size (default 4K)")
    parser.add_argument("--hidden-cluster", default="4K", help="hidden qcow2 cluster size")
    parser.add_argument("--active-cluster", default="4K", help="active qcow2 cluster size")
    parser.add_argument("--design", default="2.8", choices=("none", "2.8", "4.0"),
                        help="read protection design (default 2.8)")
    parser.add_argument("--era", default="2.8", choices=("2.8", "7.2"),
                        help="control-plane behaviour (default 2.8)")
    parser.add_argument("--backup-cluster", default=None,
                        help="override the backup cluster size (not QEMU)")


def config_from_args(args: argparse.Namespace) -> dict[str, object]:
    return dict(size=args.size, block=args.block, hidden_cluster=args.hidden_cluster,
                active_cluster=args.active_cluster, design=args.design, era=args.era,
                backup_cluster=args.backup_cluster)


def read_scenario(path: str) -> str:
    """A scenario file's text, or standard input for ``-``."""
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="labkit: see how QEMU's block layer keeps a COLO secondary consistent.",
    )
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as exc:
        print(f"labkit {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
