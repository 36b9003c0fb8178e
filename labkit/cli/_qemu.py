"""``labkit compare`` (a scenario on the simulator and on QEMU 7.2) and ``run --backend qemu``.

Exit status of ``labkit compare``: 0 when the simulator and QEMU agree on
every dump, layer and command outcome (with ``par``: every order agrees; an
unknown order is not agreeing), 1 when they differ, 2 when the
comparison could not run (no usable QEMU, QEMU died or timed out, a bad
scenario or option).  A missing QEMU is one message naming the Debian
packages to install, never a traceback.  ``labkit.qemu`` is imported only
when one of these commands runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from ._common import add_config_arguments, given_config, scenario_input, seconds

QEMU_OPTIONS = ("size", "block", "hidden_cluster", "active_cluster", "fill")


def add_qemu_arguments(parser: argparse.ArgumentParser) -> None:
    """The QEMU session's options: ``--qemu`` (binary) and ``--timeout``."""
    parser.add_argument("--qemu", default="qemu-system-x86_64", metavar="BINARY",
                        help="the QEMU binary (default qemu-system-x86_64)")
    parser.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                        help="bound on every QMP command, NBD request and wait "
                             "(0.1-3600 seconds, default 10)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="run a scenario on the simulator and on a real QEMU 7.2; compare layer by layer",
        description="Run a scenario (a file, - for standard input, or a shipped "
                    "scenario's name) on the simulator (era 7.2) and on a real QEMU 7.2, and "
                    "print for every dump and layer 'same' or the first differing sectors "
                    "with both values.  With a par block, every order QEMU can force "
                    "(blkdebug breakpoints) runs on both: one line per order (an order "
                    "whose blocked request's wait cannot be located is UNKNOWN, never "
                    "agreeing), the conformance (how many of the explorer's era-7.2 "
                    "outcomes QEMU reached, and any it reached that the explorer says are "
                    "impossible), then 'N orders: A agreeing, D disagreeing, U unknown'.  "
                    "The scenario's '# config:' header "
                    "applies under the options.  Exit status: 0 agree, 1 differ, 2 could "
                    "not compare (e.g. no QEMU: install the Debian packages "
                    "qemu-system-x86 and qemu-utils).")
    p.add_argument("file", help="scenario file, - for standard input, or a shipped scenario "
                                "name")
    add_config_arguments(p, (*QEMU_OPTIONS, "design"))
    p.add_argument("--order", default=None, metavar="WORDS",
                   help="with par: run only this order (as the output spells it)")
    p.add_argument("--json", default=None, metavar="OUT",
                   help="with par: write per order and backend the blocked requests, read "
                        "and layer digests as JSON")
    add_qemu_arguments(p)
    p.set_defaults(func=cmd_compare)


def _qemu_config(args: argparse.Namespace) -> dict[str, Any]:
    """The QEMU configuration options given; the QEMU backend applies the scenario's
    ``# config:`` header under them."""
    return given_config(args, QEMU_OPTIONS)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..config import header_config
    from ..qemu import compare
    from ..scenario import configured

    text, _ = scenario_input(args.file)
    config = _qemu_config(args)
    # the graph only (values as written): the header's other values are checked by the
    # comparison itself, which names what it runs (era 7.2) when one does not fit
    if header_config(text).get("graph") == "fleecing":  # image fleecing (labkit.qemu._fleecing)
        from ..qemu._fleecing import compare_fleecing, compare_fleecing_race, fleecing_race_text

        if args.order is not None or args.json is not None:
            raise ConfigError("--order and --json are for COLO races; a fleecing race runs "
                              "every order it has")
        if configured(text, source="cli", **config)[1].has_par:
            races = compare_fleecing_race(text, design=args.design, timeout=args.timeout,
                                          qemu=args.qemu, **config)
            print(fleecing_race_text(races))
            return 0 if not any(d for _, _, d in races) else 1
        fleecing = compare_fleecing(text, design=args.design, timeout=args.timeout,
                                    qemu=args.qemu, **config)
        print(fleecing.text())
        return 0 if fleecing.agree else 1
    if args.design is not None:  # else compare's own default design applies
        config["design"] = configured(text, source="cli", design=args.design)[0].design
    if args.order is not None:
        config["order"] = args.order
    result = compare(text, timeout=args.timeout, qemu=args.qemu, **config)
    if args.json is not None:
        if not hasattr(result, "write_json"):
            raise ConfigError("--json needs a scenario with a par block (a race); "
                              "for a sequential scenario use 'labkit run --json'")
        result.write_json(args.json)
    print(result.text())
    return 0 if result.agree else 1


def run_on_qemu(text: str, args: argparse.Namespace) -> Any:
    """``labkit run --backend qemu``: the scenario's :class:`~labkit.qemu.QemuRun`.

    ``--design`` and ``--era`` are simulator-only and ignored;
    ``--backup-cluster`` (not QEMU) is refused.
    """
    from ..config import resolve
    from ..qemu import run_scenario

    if resolve(text).graph == "fleecing":  # image fleecing (labkit.qemu._fleecing)
        from ..qemu._fleecing import run_fleecing

        return run_fleecing(text, design=args.design, timeout=args.timeout, qemu=args.qemu,
                            **_qemu_config(args))
    if args.backup_cluster is not None:
        raise ConfigError("--backup-cluster is not QEMU (QEMU's backup cluster is "
                          "MAX(64K, hidden cluster)); it exists only with --backend sim")
    return run_scenario(text, timeout=args.timeout, qemu=args.qemu,
                        **_qemu_config(args))
