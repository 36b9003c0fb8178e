"""Shrinking: the simplest schedule that still shows a violation, within a run budget.

Iterative preemption bounding (CHESS): search every interleaving with at most
0, then 1, ... preemptions, naively (bounded search is complete for its bound
only without reduction), and stop at the first run that shows the same
violation (same kind, same task).  Every run counts against the budget the
caller gives (what is left of ``max_runs``), so an exploration with shrinking
never makes more runs than it was allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import LabConfig
from ..kernel import Policy
from ..scenario import Scenario
from ._search import RunRecord, Search, count_preemptions

SHRINK_BUDGET = 4000  # the most runs shrinking makes for one counterexample


@dataclass
class Shrunk:
    schedule: list[str]
    preemptions: int
    message: str


def signature(record: RunRecord) -> list[tuple[tuple[str, str], str]]:
    """((kind, task), message) of each violation of a run (a deadlock is one too)."""
    out: list[tuple[tuple[str, str], str]] = []
    for v in record.lab.violations():
        out.append(((v.kind, v.task), v.message))
    if record.deadlock is not None:
        out.append((("deadlock", ""), str(record.deadlock)))
    return out


def shrink(scenario: Scenario, cfg: LabConfig, key: tuple[str, str], upto: int,
           budget: int,
           build: Callable[[LabConfig, Policy], Any]) -> tuple[Shrunk | None, int, bool]:
    """The first run with the fewest preemptions (< ``upto``) showing violation ``key``,
    the number of runs spent (never more than ``budget``), and whether the search
    finished (False: the budget ran out, a simpler schedule may exist)."""
    spent = 0
    for bound in range(upto):
        if spent >= budget:
            return None, spent, False
        hit: list[Shrunk] = []

        def on_run(record: RunRecord, hit: list[Shrunk] = hit) -> bool:
            for k, message in signature(record):
                if k == key:
                    pre = count_preemptions(record.schedule, record.enabled)
                    hit.append(Shrunk(list(record.schedule), pre, message))
                    return True
            return False

        search = Search(scenario, cfg, reduction="none", max_runs=budget - spent,
                        preemption_bound=bound, on_run=on_run, build=build)
        search.run()
        spent += search.runs
        if hit:
            return hit[0], spent, True
        if not search.exhausted:
            return None, spent, False  # the budget ran out inside this bound
    return None, spent, True
