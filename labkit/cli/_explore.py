"""``labkit explore`` (every interleaving, a verdict per design) and ``labkit replay`` (one run).

``FILE`` is a scenario file, ``-`` for standard input, or the name of a
shipped scenario (``labkit explore canonical``).  The scenario's ``# config:``
header applies; options given on the command line win over it (checked by
:mod:`labkit.config`, as every command's).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from .. import scenarios
from .. import trace as _trace
from ..config import LabConfig, designs_for
from ..errors import Deadlock, TraceFormatError
from ..explore import DEFAULT_MAX_RUNS, Exploration, explore, parse_schedule, replay
from ._common import (
    add_config_arguments,
    configured_from_cli,
    given_config,
    json_only_stdout,
    natural_int,
    positive_int,
    read_json_text,
    scenario_input,
)
from ._run import config_json, report


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "explore", help="run every interleaving of a scenario and give the verdict per design",
        description="Explore a scenario's interleavings (source-DPOR with sleep sets unless "
                    "--reduction says otherwise), check each run with the oracle, and print the "
                    "verdict: safe (every interleaving covered, no violation), violation (with "
                    "the shrunk schedule and the conflicting read) or unknown (budget spent). "
                    "Without --design, all three designs are explored.")
    e.add_argument("file", help="scenario file, - for standard input, or a shipped scenario "
                                f"name ({', '.join(scenarios.names())})")
    e.add_argument("--max-runs", type=positive_int, default=DEFAULT_MAX_RUNS, metavar="N",
                   help=f"stop after N runs (default {DEFAULT_MAX_RUNS}); the verdict is then "
                        f"'unknown' unless a violation was found")
    e.add_argument("--preemption-bound", type=natural_int, default=None, metavar="K",
                   help="only runs with at most K preemptions (never 'safe' if one was skipped)")
    e.add_argument("--reduction", default="dpor", choices=("dpor", "sleep", "none"),
                   help="partial-order reduction (default dpor; none = naive baseline)")
    e.add_argument("--stop-at-first", action="store_true",
                   help="stop at the first violating run")
    e.add_argument("--no-shrink", action="store_true",
                   help="report violations as found, without minimising preemptions")
    e.add_argument("--stats", action="store_true",
                   help="also run the naive exploration (reduction none) and compare counts")
    e.add_argument("--json", metavar="OUT",
                   help="write each counterexample as a replayable trace file "
                        "(OUT-DESIGN.json; - for stdout)")
    add_config_arguments(e)
    e.set_defaults(func=cmd_explore)

    r = sub.add_parser(
        "replay", help="replay the exact run a schedule names: its trace and its dumps",
        description="Replay a scenario following a schedule (the compact string, e.g. "
                    "'start#1*3 vm-read#1 nbd-write#1*5 vm-read#1 vm-read#2*2', or a JSON "
                    "schedule / trace file written by labkit explore --json; @PATH reads it "
                    "from a file) and print the trace and the dumps.")
    r.add_argument("file", help="scenario file, - for standard input, or a shipped scenario name")
    r.add_argument("--schedule", required=True, metavar="SCHEDULE",
                   help="the schedule string, or @PATH for a file holding it (text or JSON)")
    r.add_argument("--json", metavar="OUT",
                   help="also write the trace file (- for stdout: then only the JSON there)")
    r.add_argument("--no-trace", action="store_true", help="print only the dumps and outcomes")
    add_config_arguments(r)
    r.set_defaults(func=cmd_replay)


def _config(text: str, args: argparse.Namespace) -> tuple[dict[str, Any], bool, LabConfig]:
    """The options given (checked over the header, CLI wording), whether --design was,
    and the whole configuration.

    Only the given ones are passed on: explore and replay apply the header
    themselves, and a replayed trace file's stored configuration must not be
    contradicted by defaults nobody asked for.
    """
    cfg, _ = configured_from_cli(text, args)
    given = {k: getattr(cfg, k) for k in given_config(args)}
    return given, "design" in given, cfg


def _line(label: str, ex: Exploration) -> str:
    state = "complete" if ex.complete else ("stopped at the first violation"
                                            if ex.stopped_at_first else "NOT complete")
    return (f"  {label:<16} runs {ex.runs:>6}  complete interleavings {ex.interleavings:>6}  "
            f"cut by sleep sets {ex.sleep_blocked:>5}  pruned choices {ex.pruned:>6}  "
            f"{ex.verdict:<9} {state}  {ex.seconds:.2f} s")


def cmd_explore(args: argparse.Namespace) -> int:
    with json_only_stdout(args.json) as stdout:
        return _explore(args, stdout)


def _explore(args: argparse.Namespace, stdout: TextIO) -> int:
    text, label = scenario_input(args.file)
    config, chosen, cfg = _config(text, args)
    designs = [config.pop("design")] if chosen else list(designs_for(cfg.graph))
    expected = scenarios.verdicts(text)
    mismatches = 0
    for design in designs:
        ex = explore(text, design=design, max_runs=args.max_runs,
                     preemption_bound=args.preemption_bound, reduction=args.reduction,
                     stop_at_first=args.stop_at_first, shrink=not args.no_shrink, **config)
        print(f"{label}, design {design}: {ex.verdict.upper()}")
        print(f"  runs {ex.runs} (complete interleavings {ex.interleavings}), pruned choices "
              f"{ex.pruned}, {'complete' if ex.complete else 'not complete'}, reduction "
              f"{ex.reduction}")
        if ex.verdict == "unknown":
            why = (f"the preemption bound skipped {ex.bounded} choices" if ex.bounded
                   else f"the budget of {args.max_runs} runs was spent")
            print(f"  unknown: {why} before every interleaving was covered")
        for cx in ex.violations:
            print(f"  {cx.message}")
            print(f"  {cx.schedule_label[:-1]}; found with {cx.original_preemptions}): "
                  f"{cx.schedule_text}")
            print(f"  replay it: labkit replay {args.file} --design {design} --schedule "
                  f"'{cx.schedule_text}'")
        if ex.violating_runs > 1:
            print(f"  {ex.violating_runs} of the runs broke the oracle")
        for line in ex.expectation_failures[:5]:
            print(f"  note: in some run, {line}")
        want = expected.get(design)
        if want is not None:
            ok = want == ex.verdict
            mismatches += not ok
            print(f"  the scenario header expects: {want}"
                  f"{'' if ok else '  <-- MISMATCH'}")
        if args.stats:
            naive = explore(text, design=design, max_runs=args.max_runs,
                            preemption_bound=args.preemption_bound, reduction="none",
                            shrink=False, **config)
            print("  stats:")
            print(_line(f"reduced ({ex.reduction})", ex))
            print(_line("naive (none)", naive))
            if naive.complete and ex.complete and naive.runs:
                print(f"  the reduction ran {ex.runs} of {naive.runs} interleavings "
                      f"({100 * ex.runs / naive.runs:.1f}%)")
        if args.json and ex.violations:
            docs = [json.loads(cx.to_json()) for cx in ex.violations]
            out = json.dumps(docs[0] if len(docs) == 1 else docs, indent=1, sort_keys=True)
            if args.json == "-":
                stdout.write(out + "\n")
            else:
                stem = args.json.removesuffix(".json")
                path = f"{stem}-{design}.json"
                with open(path, "w", encoding="utf-8") as f:
                    f.write(out + "\n")
                print(f"  counterexample written to {path}")
    return 1 if mismatches else 0


def _read_schedule(value: str) -> str:
    """The schedule as given (the string, or the text of the file @PATH names), checked.

    It goes to :func:`labkit.explore.replay` as it is: a trace file then brings its
    scenario, its configuration and its events, exactly as ``lk.replay`` applies them.
    """
    if value.startswith("@"):
        value = read_json_text(value[1:], "a schedule file")
    try:
        parse_schedule(value)  # refused here, before the scenario is built
    except RecursionError:  # json.loads on a very deeply nested file
        raise TraceFormatError("the schedule file nests too deeply to be a schedule or a "
                               "labkit trace") from None
    return value


def cmd_replay(args: argparse.Namespace) -> int:
    with json_only_stdout(args.json) as stdout:
        return _replay(args, stdout)


def _replay(args: argparse.Namespace, stdout: TextIO) -> int:
    text, label = scenario_input(args.file)
    config, _, _ = _config(text, args)
    schedule = _read_schedule(args.schedule)
    try:
        lab = replay(text, schedule, **config)
    except Deadlock as exc:
        print(f"{label}: the run deadlocked: {exc}")
        return 1
    if not args.no_trace:
        print(f"-- trace of {label}, design {lab.design} ({len(lab.trace)} events, "
              f"{len(lab.schedule)} decisions)")
        for event in lab.trace:
            print(event)
        print(f"-- schedule: {_trace.format_schedule(lab.schedule)}")
    print(report(lab))
    if args.json:
        doc = _trace.dumps(lab.trace, lab.schedule, {"config": config_json(lab.config),
                                                            "scenario": text})
        if args.json == "-":
            stdout.write(doc + "\n")
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(doc + "\n")
    return 1 if lab.violations() or lab.expectation_failures else 0
