"""Notebook 05's exercises."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from labkit.config import DESIGNS
from labkit.exercises._core import Exercise, Mistake, answer_is, const, equal, int_form


def _partial_verdicts() -> dict[str, str]:
    from labkit import scenarios
    from labkit.explore import explore

    text = scenarios.load("partial-cluster-vm-write")
    config: dict[str, Any] = dict(scenarios.config(text))
    return {d: explore(text, design=d, **config).verdict for d in DESIGNS}


def _verdict_form(answer: Any) -> str | None:
    example = "{'none': ..., '2.8': ..., '4.0': ...}"
    if not isinstance(answer, dict):
        return (f"Answer a dict {example} with 'safe' or 'violation' for each design "
                f"(you gave {type(answer).__name__} {answer!r}).")
    if not answer:
        return f"Your dict is empty: fill in {example}, 'safe' or 'violation' for each design."
    missing = [d for d in DESIGNS if d not in answer]
    extra = [k for k in answer if k not in DESIGNS]
    if missing or extra:
        return ("Give one verdict for each of the designs 'none', '2.8', '4.0'"
                + (f"; missing: {', '.join(map(repr, missing))}" if missing else "")
                + (f"; not a design: {', '.join(map(repr, extra))}" if extra else "") + ".")
    bad = [v for v in answer.values() if v not in ("safe", "violation")]
    if bad:
        return f"Each verdict is 'safe' or 'violation'; {bad[0]!r} is neither."
    return None


def _flip(design: str) -> Callable[[Any], Any]:
    def example(want: dict[str, str]) -> dict[str, str]:
        out = dict(want)
        out[design] = "safe" if want[design] == "violation" else "violation"
        return out
    return example


def _wrong_at(design: str) -> Callable[[Any, Any], bool]:
    return lambda answer, want: answer.get(design) != want[design]


def _preemptions() -> int:
    from labkit import scenarios
    from labkit.explore import explore

    text = scenarios.load("canonical3")
    config: dict[str, Any] = dict(scenarios.config(text))
    return explore(text, design="none", **config).violations[0].preemptions


ex05 = SimpleNamespace(
    partial=Exercise(
        name="05.partial",
        question="The shipped scenario 'partial-cluster-vm-write' races a partial-cluster VM "
                 "write (64 KiB active clusters) with a primary write. Predict the explorer's "
                 "verdict for each design as a dict {'none': ..., '2.8': ..., '4.0': ...} with "
                 "values 'safe' or 'violation'.",
        solve=_partial_verdicts, form=_verdict_form, right=equal,
        mistakes=[Mistake("2.8's CowRequest covers every read", _wrong_at("2.8"), _flip("2.8"),
                          "Think about where 2.8's protection lives: replication_co_readv takes "
                          "the CowRequest, for reads that come through the replication driver. "
                          "qcow2's fill read for a partial-cluster write is issued by qcow2 "
                          "itself, below it."),
                  Mistake("serialising writes do not cover qcow2's fill read", _wrong_at("4.0"),
                          _flip("4.0"),
                          "In 4.0 the backup job's write to hidden is a serialising request: it "
                          "waits for every overlapping request in flight on hidden — and qcow2's "
                          "fill read of hidden is such a request, whoever issued it."),
                  Mistake("no protection can still be safe", _wrong_at("none"), _flip("none"),
                          "Design 'none' has no protection at all: whatever a protected design "
                          "lets through, 'none' lets through too.")],
        hints=["qcow2's own copy-on-write reads hidden and the secondary disk without going "
               "through "
               "replication_co_readv.", "In 4.0 every read of hidden is a tracked request."],
        explanation="'none' and '2.8' have a violation: qcow2's fill read for the partial write "
                    "reads hidden and the secondary disk without a CowRequest (it does not pass "
                    "through replication_co_readv), so the primary's copy and write can land "
                    "between its two reads and active captures the new data. '4.0' is safe: the "
                    "copy's serialising write to hidden waits for the fill read in flight there.",
        placeholder={},
        phrases=("fill read", "without a CowRequest", "not through replication_co_readv",
                 "does not pass through replication_co_readv"),
        forms=lambda want: [" ".join(f"{d}={v}" for d, v in want.items()),
                            *(form for d, v in want.items() if d == "2.8"
                              for form in (f"{d}: {v}", f"{d}={v}", f"{d} = {v}"))]),
    preemptions=Exercise(
        name="05.preemptions",
        question="`canonical3` races two VM reads of block 5 with the primary's write to it. "
                 "How many preemptions (switches away from a task that could have gone on) does "
                 "its shrunk counterexample under design 'none' need?",
        solve=_preemptions, form=int_form("a number of preemptions", 0, 1000, "3"), right=equal,
        mistakes=[Mistake("no interruption needed", answer_is(0), const(0),
                          "With no preemption every task runs until it ends or has to wait, in "
                          "turn: each read would either end before the write starts or start "
                          "after it ended. Can that give a conflicting read?"),
                  Mistake("each task in the race needs its own preemption", answer_is(2),
                          const(2),
                          "A violation needs only one read to return the primary's data: the "
                          "other read may run whenever it likes — before, after, or where a "
                          "preemption happens anyway. Which switch can no conflicting read do "
                          "without?"),
                  Mistake("every switch counts", lambda a, w: a > 2, lambda want: want + 3,
                          "You may be counting every switch between tasks. A preemption is a "
                          "switch away from a task that could have gone on; switching when a task "
                          "ends or has to wait does not count, and shrinking keeps as few "
                          "preemptions as still break the oracle.")],
        hints=["Shrinking keeps the fewest preemptions that still violate.",
               "A conflicting read needs one read interrupted between its look at hidden and its "
               "read of the secondary disk; does the second read change that?"],
        explanation="One, as with one reader: one read is preempted once, right before it reads "
                    "the secondary disk; the other read needs no preemption of its own — it runs "
                    "at switches that happen anyway (when a task ends or has to wait).",
        placeholder=None,
        forms=lambda want: [f"{want} preemption" + ("s" if want != 1 else ""),
                            f"{want} preemption" + ("s" if want != 1 else "") + ")",
                            f"preemptions: {want}", f"preemptions={want}"]),
)


# 5.3: an open task, checked by the explorer
OWN_RACE = ("# config: size=128K active_cluster=64K\nstart\n"
            "par { vwrite 9b 4K 0xcc; pwrite 12b 4K 0xbb }\nvread 12b 4K orig\n")


def _explored(answer: str, design: str) -> Any:
    from labkit import scenarios
    from labkit.errors import LabkitError
    from labkit.explore import explore

    try:
        config: dict[str, Any] = {"size": "128K", **scenarios.config(answer)}
        return explore(answer, design=design, max_runs=5000, **config)
    except LabkitError as exc:
        return exc


def _scenario_form(answer: Any) -> str | None:
    if not isinstance(answer, str):
        return (f"Answer scenario text as a string, one command per line, e.g. "
                f'"start\\npar {{ ... }}" (you gave {type(answer).__name__} {answer!r}).')
    if not answer.strip():
        return "Your scenario is empty: write one command per line, starting with start."
    return None


def _violates_under(design: str) -> Callable[[Any, Any], bool]:
    def right(answer: str, want: str) -> bool:
        found = _explored(answer, design)
        return not isinstance(found, Exception) and found.verdict == "violation"
    return right


def _refused(answer: str, want: str) -> bool:
    return isinstance(_explored(answer, "2.8"), Exception)


def _no_race(answer: str, want: str) -> bool:
    return "par" not in answer


def _replication_read_race(answer: str, want: str) -> bool:
    found = _explored(answer, "none")
    return not isinstance(found, Exception) and found.verdict == "violation"


def _explorer_says(answer: str) -> str:
    found = _explored(answer, "2.8")
    if isinstance(found, Exception):
        return f"The engine says: {found}"
    return f"The explorer says: {found.summary().splitlines()[0]}."


ex05.own_race = Exercise(
    name="05.own_race",
    question="Write a scenario (text; a '# config: KEY=VALUE' line may set the lab, e.g. "
             "active_cluster=64K; the default disk is 128K) in which the explorer finds a "
             "violation under design '2.8'. Not the shipped scenario: your own blocks and bytes.",
    solve=lambda: OWN_RACE, form=_scenario_form, right=_violates_under("2.8"),
    mistakes=[Mistake("a scenario the engine refuses", _refused,
                      lambda want: "start\npar { vread }",
                      "The engine cannot run that scenario.", _explorer_says),
              Mistake("a race needs no concurrency", _no_race, lambda want: "start\nvwrite 5b 4K "
                      "0xcc\npwrite 5b 4K 0xbb\nvread 5b 4K orig\n",
                      "Outside par { } each command runs to its end before the next starts: "
                      "nothing can interleave. Start the racing commands together with par { A; B "
                      "}.",
                      _explorer_says),
              Mistake("2.8's CowRequest covers every read", _replication_read_race,
                      lambda want: "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n",
                      "Your race breaks design 'none' — but under 2.8 the VM's reads through the "
                      "replication driver hold a CowRequest. Which reader of hidden and the "
                      "secondary disk does not go through replication_co_readv?", _explorer_says)],
    hints=["qcow2's fill read for a partial-cluster VM write does not hold a CowRequest.",
           "With 64 KiB active clusters a 4 KiB VM write fills the rest of the cluster; the "
           "primary must write into the same backup cluster meanwhile."],
    explanation="A VM write that covers part of an unallocated 64 KiB active cluster makes qcow2 "
                "read the rest of the cluster from hidden and the secondary disk without a "
                "CowRequest; a primary write into that cluster can copy and land between those "
                "reads, and active captures the primary's new data.",
    placeholder="", forms=lambda want: [])


