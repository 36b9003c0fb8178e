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
                 "does not pass through replication_co_readv", "not by replication_co_readv",
                 "issued by qcow2 itself"),
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


# 5.3: an open task, checked by the explorer: break 2.8 with the VM's writes and the
# primary's in *different* backup clusters (5.2's scenario shares one). What it takes:
# an active cluster larger than a backup cluster, so that qcow2's fill for the VM's write
# (block/qcow2.c: perform_cow) reads a backup cluster the VM never wrote.
OWN_RACE = ("# config: size=256K active_cluster=128K\nstart\n"
            "par { vwrite 2b 4K 0xcc; pwrite 21b 4K 0xbb }\nvread 21b 4K orig\n")


def _explored(answer: str, design: str) -> Any:
    from labkit import scenarios
    from labkit.errors import LabkitError
    from labkit.explore import explore

    try:
        config: dict[str, Any] = {"size": "128K", **scenarios.config(answer)}
        return explore(answer, design=design, max_runs=5000, **config)
    except LabkitError as exc:
        return exc


def _shared_clusters(answer: str) -> set[int] | None:
    """The backup clusters that both a VM write and a primary write of ``answer`` touch
    (None if the engine cannot read the scenario)."""
    from labkit import scenarios
    from labkit.errors import LabkitError
    from labkit.lab import build_secondary
    from labkit.scenario import parse

    try:
        config: dict[str, Any] = {"size": "128K", **scenarios.config(answer)}
        lab = build_secondary(**config)
        commands = parse(answer, block=lab.block, size=lab.size).commands
    except LabkitError:
        return None
    unit = lab.backup_cluster

    def clusters(op: str) -> set[int]:
        return {c for cmd in commands if cmd.op == op and cmd.length > 0
                for c in range(cmd.offset // unit, (cmd.offset + cmd.length - 1) // unit + 1)}

    return clusters("vwrite") & clusters("pwrite")


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
        return (not isinstance(found, Exception) and found.verdict == "violation"
                and _shared_clusters(answer) == set())
    return right


def _refused(answer: str, want: str) -> bool:
    return isinstance(_explored(answer, "2.8"), Exception)


def _no_race(answer: str, want: str) -> bool:
    return "par" not in answer


def _breaks(design: str, answer: str) -> bool:
    found = _explored(answer, design)
    return not isinstance(found, Exception) and found.verdict == "violation"


def _same_cluster(answer: str, want: str) -> bool:
    return bool(_shared_clusters(answer)) and _breaks("2.8", answer)


def _replication_read_race(answer: str, want: str) -> bool:
    return _breaks("none", answer) and not _breaks("2.8", answer)


def _no_shared_cluster_but_safe(answer: str, want: str) -> bool:
    return (_shared_clusters(answer) == set() and "vwrite" in answer and "pwrite" in answer
            and not _breaks("2.8", answer))


def _explorer_says(answer: str) -> str:
    found = _explored(answer, "2.8")
    if isinstance(found, Exception):
        return f"The engine says: {found}"
    return f"The explorer says: {found.summary().splitlines()[0]}."


def _shared_says(answer: str) -> str:
    shared = sorted(_shared_clusters(answer) or ())
    return (f"(Backup cluster{'s' if len(shared) > 1 else ''} "
            f"{', '.join(map(str, shared))} has both.)")


ex05.own_race = Exercise(
    name="05.own_race",
    question="Write a scenario (text; a '# config: KEY=VALUE ...' first line may set the lab "
             "as the shipped scenarios' do; the default disk is 128K) in which the explorer "
             "finds a violation under design '2.8' although no backup cluster (64 KiB by "
             "default) is touched both by a VM write and by a primary write.",
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
              Mistake("the shipped race again", _same_cluster,
                      lambda want: "# config: size=128K active_cluster=64K\nstart\npar { "
                                   "vwrite 5b 4K 0xcc; pwrite 7b 4K 0xbb }\nvread 7b 4K orig\n",
                      "That breaks 2.8 — but a VM write and a primary write share a backup "
                      "cluster, as in the shipped scenario. The task is a race in which they "
                      "do not.", _shared_says),
              Mistake("2.8's CowRequest covers every read", _replication_read_race,
                      lambda want: "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n",
                      "Your race breaks design 'none' — but under 2.8 the VM's reads through the "
                      "replication driver hold a CowRequest. Which reader of hidden and the "
                      "secondary disk does not go through replication_co_readv?", _explorer_says),
              Mistake("qcow2 fills only the VM write's own backup cluster",
                      _no_shared_cluster_but_safe,
                      lambda want: "# config: size=128K active_cluster=64K\nstart\npar { "
                                   "vwrite 5b 4K 0xcc; pwrite 20b 4K 0xbb }\n"
                                   "vread 20b 4K orig\n",
                      "Under 2.8 the explorer finds no violation: whatever qcow2 reads to fill "
                      "around your VM write stays out of the backup cluster the primary writes. "
                      "What decides how far that fill reaches?", _explorer_says)],
    hints=["qcow2's fill for a partial-cluster VM write covers the rest of the *active* "
           "cluster, whatever the backup cluster is.",
           "Notebook 01 and the shipped scenario's config line show which sizes a scenario "
           "may set."],
    explanation="qcow2 fills the whole unallocated active cluster around a partial VM write, "
                "reading hidden and the secondary disk without a CowRequest; when an active "
                "cluster is larger than a backup cluster, that fill reaches backup clusters the "
                "VM never wrote, and a primary write into one of them can copy and land "
                "between its two reads: active captures the primary's new data.",
    placeholder="", forms=lambda want: [])
