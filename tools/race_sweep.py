"""Every forced order of N seeded random races, on the simulator and QEMU 7.2.

Usage: ``python tools/race_sweep.py [--count N] [--first SEED] [--json OUT]``
(``--count`` defaults to ``LABKIT_RACE_SCENARIOS`` or 100; needs
``qemu-system-x86_64`` with the replication driver: Debian's
``qemu-system-x86``).  Prints one line per scenario, every order that does
not agree with its scenario, then the totals: scenarios, orders, agreeing,
disagreeing, unknown (and any scenario QEMU failed twice).  Exit status 0
when every order agrees, 1 otherwise,
2 when QEMU is not usable.  The suite runs the first
``labkit.qemu._random_races.CI_COUNT`` of the same races
(``tests/test_qemu_races.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from labkit.qemu import QemuNotAvailable, RaceComparison
    from labkit.qemu._random_races import race_sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int,
                        default=int(os.environ.get("LABKIT_RACE_SCENARIOS", "100")))
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="bound on every QMP command, NBD request and wait (default 30: "
                             "a loaded machine starts QEMU slowly)")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="write the totals and every order not agreeing as JSON")
    args = parser.parse_args(argv)

    def progress(seed: int, c: RaceComparison) -> None:
        print(f"seed {seed}: {c.counts()}", flush=True)

    try:
        result = race_sweep(args.count, args.first, timeout=args.timeout, progress=progress)
    except QemuNotAvailable as exc:
        print(f"race_sweep: {exc}", file=sys.stderr)
        return 2
    for seed, text, line in result.failures:
        scenario = " / ".join(x for x in text.splitlines() if not x.startswith("# random"))
        print(f"seed {seed}: {scenario}\n  {line}")
    for seed, error in result.errors:
        print(f"seed {seed}: QEMU failed twice: {error}")
    print(f"{result.summary()} ({result.seconds:.0f} s)")
    if args.json is not None:
        Path(args.json).write_text(json.dumps({
            "scenarios": result.scenarios, "orders": result.orders,
            "agreeing": result.agreeing, "disagreeing": result.disagreeing,
            "unknown": result.unknown, "seconds": round(result.seconds, 1),
            "qemu_errors": [{"seed": s, "error": e} for s, e in result.errors],
            "failures": [{"seed": s, "scenario": t, "order": o}
                         for s, t, o in result.failures]}, indent=1) + "\n")
    return 0 if result.disagreeing == result.unknown == len(result.errors) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
