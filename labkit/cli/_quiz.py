"""``labkit quiz --seed N [--answers]``: a generated scenario and questions."""

from __future__ import annotations

import argparse

from ..quiz import make_quiz
from ._common import natural_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quiz", help="print a generated scenario and questions",
                       description="Print a seeded quiz: a short COLO history and questions; "
                                   "--answers prints the answers computed by the simulator.")
    p.add_argument("--seed", type=natural_int, default=0,
                   help="quiz seed, an integer ≥ 0 (same seed, same quiz)")
    p.add_argument("--answers", action="store_true", help="also print the answers")
    p.set_defaults(func=cmd_quiz)


def cmd_quiz(args: argparse.Namespace) -> int:
    print(make_quiz(args.seed).text(with_answers=args.answers))
    return 0
