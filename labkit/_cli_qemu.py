"""``labkit compare`` (a scenario on the simulator and on QEMU 7.2) and ``run --backend qemu``.

Exit status of ``labkit compare``: 0 when the simulator and QEMU agree on
every dump, layer and command outcome, 1 when they differ, 2 when the
comparison could not run (no usable QEMU, QEMU died or timed out, a bad
scenario or option).  A missing QEMU is one message naming the Debian
packages to install, never a traceback.  ``labkit.qemu`` is imported only
when one of these commands runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _fill(value: str) -> str | int:
    if value in ("index", "zero"):
        return value
    try:
        byte = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        byte = -1
    if not 0 <= byte <= 255:
        raise argparse.ArgumentTypeError(f"fill must be index, zero or a byte 0-255, "
                                         f"got {value!r}")
    return byte


def _positive(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if x <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return x


def add_qemu_arguments(parser: argparse.ArgumentParser) -> None:
    """The QEMU session's options: ``--qemu`` (binary) and ``--timeout``."""
    parser.add_argument("--qemu", default="qemu-system-x86_64", metavar="BINARY",
                        help="the QEMU binary (default qemu-system-x86_64)")
    parser.add_argument("--timeout", type=_positive, default=10.0, metavar="SECONDS",
                        help="bound on every QMP command, NBD request and wait (default 10)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="run a scenario on the simulator and on a real QEMU 7.2; compare layer by layer",
        description="Run a scenario (a file, or - for standard input) on the "
                    "simulator (era 7.2) and on a real QEMU 7.2, and print for every dump "
                    "and layer 'same' or the first differing sectors with both values. "
                    "With a par block, every order QEMU can force (blkdebug breakpoints) "
                    "runs on both: one line per order, then 'N orders, K disagreeing'. "
                    "Exit status: 0 agree, 1 differ, 2 could not compare (e.g. no QEMU: "
                    "install the Debian packages qemu-system-x86 and qemu-utils).")
    p.add_argument("file", help="scenario file, or - for standard input")
    p.add_argument("--size", default="1M", help="disk size (default 1M)")
    p.add_argument("--block", default="4K", help="table block size (default 4K)")
    p.add_argument("--hidden-cluster", default="4K", help="hidden qcow2 cluster size (default 4K)")
    p.add_argument("--active-cluster", default="4K", help="active qcow2 cluster size (default 4K)")
    p.add_argument("--fill", type=_fill, default="index",
                   help="secondary disk contents: index (block k = 0x10+k, default), zero "
                        "(a sparse file) or a byte")
    p.add_argument("--design", default=None, choices=("none", "2.8", "4.0"),
                   help="the simulator's read protection (no effect without par; with par "
                        "the default is 4.0, QEMU 7.2's)")
    p.add_argument("--order", default=None, metavar="WORDS",
                   help="with par: run only this order (as the output spells it)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="with par: write per order and backend the blocked requests, read "
                        "and layer digests as JSON")
    add_qemu_arguments(p)
    p.set_defaults(func=cmd_compare)


def _fail(command: str, exc: Exception) -> int:
    print(f"labkit {command}: {exc}", file=sys.stderr)
    return 2


def cmd_compare(args: argparse.Namespace) -> int:
    from .cli import read_scenario
    from .qemu import BackendError, compare

    text = read_scenario(args.file)
    try:
        result = compare(text, size=args.size, block=args.block,
                         hidden_cluster=args.hidden_cluster, active_cluster=args.active_cluster,
                         fill=args.fill, design=args.design, timeout=args.timeout,
                         qemu=args.qemu, order=args.order)
    except BackendError as exc:
        return _fail("compare", exc)
    if args.json is not None:
        if not hasattr(result, "write_json"):
            return _fail("compare", ValueError("--json needs a scenario with a par block"))
        result.write_json(args.json)
    print(result.text())
    return 0 if result.agree else 1


def run_on_qemu(args: argparse.Namespace) -> Any:
    """``labkit run --backend qemu``: the scenario's :class:`~labkit.qemu.QemuRun`.

    Returns an exit status (int) instead when QEMU cannot be used, after
    printing why.  ``--design`` and ``--era`` are simulator-only and ignored;
    ``--backup-cluster`` (not QEMU) is refused.
    """
    from .cli import read_scenario
    from .qemu import BackendError, run_scenario

    if args.backup_cluster is not None:
        raise ValueError("--backup-cluster is not QEMU (QEMU's backup cluster is "
                         "MAX(64K, hidden cluster)); it exists only with --backend sim")
    text = read_scenario(args.file)
    try:
        return run_scenario(text, size=args.size, block=args.block,
                            hidden_cluster=args.hidden_cluster,
                            active_cluster=args.active_cluster,
                            timeout=getattr(args, "timeout", 10.0),
                            qemu=getattr(args, "qemu", "qemu-system-x86_64"))
    except BackendError as exc:
        return _fail("run", exc)
