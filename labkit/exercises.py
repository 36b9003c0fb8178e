"""Checked exercises for the notebooks: ``q.check(answer)``, ``q.hint()``, ``q.solution()``.

Each exercise poses a question about the model and computes its answer with
the engine (never a hand-written constant), so the exercise stays right if the
model changes.  A check explains what is wrong and where to look — never a
bare assertion.

In a notebook::

    from labkit.exercises import ex02
    answer = ex02.copied.your_answer([])   # replace [] with your answer
    ex02.copied.check(answer)

``your_answer(default)`` returns ``default`` — unless the environment variable
``LABKIT_SOLUTIONS=1`` is set, when it returns the solution: that is how the
stored notebooks show the solved state and how nbval validates them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .lab import run_scenario


def solutions_enabled() -> bool:
    """True when ``LABKIT_SOLUTIONS=1`` (stored notebooks, nbval, the browser test)."""
    return os.environ.get("LABKIT_SOLUTIONS") == "1"


@dataclass
class Outcome:
    """What a check found: ``correct`` and a message (shown as the cell's output)."""

    correct: bool
    message: str

    def __repr__(self) -> str:
        return ("Correct! " if self.correct else "Not yet. ") + self.message

    def __bool__(self) -> bool:
        return self.correct


@dataclass
class Exercise:
    """One question, with an engine-computed solution, a checker, hints and an explanation."""

    name: str
    question: str
    solve: Callable[[], Any]
    compare: Callable[[Any, Any], str | None]  # None when right, else what is wrong
    hints: list[str]
    explanation: str
    hex_answer: bool = False  # show the solution as 0xNN (a byte)
    _solution: Any = field(default=None, init=False, repr=False)
    _solved: bool = field(default=False, init=False, repr=False)

    def _answer(self) -> Any:
        if not self._solved:
            self._solution = self.solve()
            self._solved = True
        return self._solution

    def your_answer(self, default: Any) -> Any:
        """``default`` for a trainee; the solution when ``LABKIT_SOLUTIONS=1``."""
        return self._answer() if solutions_enabled() else default

    def check(self, answer: Any) -> Outcome:
        """Check ``answer``; the message says what is wrong and where to look."""
        if answer is None or answer == [] or answer == "" or answer == set():
            return Outcome(False, f"{self.question} Replace the placeholder with your "
                                  f"answer (q.hint() helps).")
        problem = self.compare(answer, self._answer())
        if problem is None:
            return Outcome(True, self.explanation)
        return Outcome(False, problem)

    def hint(self, n: int = 1) -> str:
        """The first ``n`` hints, one per line."""
        return "\n".join(f"Hint {i + 1}: {h}" for i, h in enumerate(self.hints[:max(1, n)]))

    def solution(self) -> str:
        """The answer, and why."""
        value = self._answer()
        shown = f"{value:#04x}" if self.hex_answer else repr(value)
        return f"Solution: {shown}. {self.explanation}"


# --- comparers ----------------------------------------------------------------------

def _same_list(kind: str) -> Callable[[Any, Any], str | None]:
    def compare(answer: Any, want: list) -> str | None:
        try:
            got = list(answer)
        except TypeError:
            return f"Answer a list of {kind}, e.g. {want[:2] or [0]}."
        if got == want:
            return None
        if sorted(map(str, got)) == sorted(map(str, want)):
            return f"The right {kind}, in the wrong order."
        if len(got) != len(want):
            return f"Your list has {len(got)} {kind}; the answer has {len(want)}."
        wrong = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
        return f"Position {wrong[0]} ({got[wrong[0]]!r}) is not right."
    return compare


def _same_set(kind: str) -> Callable[[Any, Any], str | None]:
    def compare(answer: Any, want: list) -> str | None:
        try:
            got = sorted(set(answer))
        except TypeError:
            return f"Answer a list of {kind}."
        if got == sorted(want):
            return None
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        return f"Missing {kind}: {missing or 'none'}; not expected: {extra or 'none'}."
    return compare


def _same_int(answer: Any, want: int) -> str | None:
    if not isinstance(answer, int) or isinstance(answer, bool):
        return "Answer a whole number."
    return None if answer == want else f"{answer} is not it."


def _same_byte(answer: Any, want: int) -> str | None:
    if not isinstance(answer, int) or isinstance(answer, bool):
        return "Answer a byte as an integer, e.g. 0x15."
    if answer == want:
        return None
    if answer >= 0x80:
        return (f"{answer:#04x} is data written after the start; ask whether that write is "
                f"visible to the VM at this point.")
    return f"{answer:#04x} is not it; which layer serves this block?"


# --- the exercises, notebook by notebook --------------------------------------------------

CHAIN = "start\npwrite 1b 4K 0xb1\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\n"


def _served() -> list[str]:
    lab = run_scenario(CHAIN, size="128K", hidden_cluster="4K", active_cluster="4K")
    read = lab.vm_read(0, 8 * 4096)
    lab.run()
    return lab.provenance(read)[:8]


def _active_blocks_after_partial_write() -> list[int]:
    lab = run_scenario("start\nvwrite 5b 512 0xcc", size="128K", active_cluster="64K")
    alloc = lab.layers()["active"].alloc  # type: ignore[union-attr]
    return [b for b in range(32) if alloc[b * 8:(b + 1) * 8].all()]


ex01 = SimpleNamespace(
    served=Exercise(
        "01.served",
        "After `" + CHAIN.strip().replace("\n", "; ") + "`, which layer serves each of "
        "blocks 0-7 of a VM read of blocks 0-7? Answer a list of 'active', 'hidden' or "
        "'secondary'.",
        _served, _same_list("layer names"),
        ["A read takes each block from the topmost layer that has it: active, then hidden, "
         "then the secondary disk.",
         "The primary's first write to a 64 KiB backup cluster copies all 16 of its blocks "
         "into hidden."],
        "Block 2 comes from active (the VM's own write); the other blocks of backup cluster 0 "
        "come from hidden, which received the whole cluster when the primary first wrote to "
        "it."),
    partial=Exercise(
        "01.partial",
        "With 64 KiB active clusters, the VM writes 512 bytes into block 5. Which blocks "
        "(4 KiB) are then allocated in active? Answer a list of block numbers.",
        _active_blocks_after_partial_write, _same_set("blocks"),
        ["qcow2 allocates whole clusters.",
         "An allocating write that covers part of a cluster fills the rest from the backing "
         "chain (qcow2's own copy-on-write)."],
        "The whole 64 KiB cluster (blocks 0-15) is allocated; the rest of it was filled from "
        "hidden/secondary: qcow2's own copy-on-write, not the backup job's."),
)


def _copied(scenario: str) -> Callable[[], list[int]]:
    def solve() -> list[int]:
        lab = run_scenario(scenario, size="256K")
        return [e.offset // lab.backup_cluster for e in lab.trace if e.kind == "cow-copy"]
    return solve


COPY_SCENARIO = "start\npwrite 5b 4K 0xb5\npwrite 15b 8K 0xb6\npwrite 6b 4K 0xb7\n"
EPOCH_SCENARIO = "start\npwrite 3b 4K 0xb3\ncheckpoint\npwrite 4b 4K 0xb4\npwrite 40b 4K 0xb5\n"

ex02 = SimpleNamespace(
    copied=Exercise(
        "02.copied",
        "Backup clusters are 64 KiB (16 blocks). For `" + COPY_SCENARIO.strip().replace(
            "\n", "; ") + "`, list the backup cluster index of every copy, in the order the "
        "copies happen.",
        _copied(COPY_SCENARIO), _same_list("cluster indices"),
        ["Cluster of block b = b // 16. A write copies every cluster it touches, in ascending "
         "order.", "A cluster is copied at most once per checkpoint epoch (the done bitmap)."],
        "Block 5 copies cluster 0; blocks 15-16 straddle clusters 0 and 1, but 0 is done, so "
        "only 1 is copied; block 6 is in cluster 0, already done."),
    epochs=Exercise(
        "02.epochs",
        "For `" + EPOCH_SCENARIO.strip().replace("\n", "; ") + "`, list the backup cluster "
        "index of every copy, in order.",
        _copied(EPOCH_SCENARIO), _same_list("cluster indices"),
        ["backup_do_checkpoint clears the whole done bitmap."],
        "The checkpoint clears the done bitmap, so cluster 0 is copied again (now holding "
        "0xb3 in block 3); block 40 is in cluster 2."),
)


def _vm_reads() -> int:
    lab = run_scenario("start\npwrite 7b 4K 0xb7\nvwrite 7b 4K 0xc7\ncheckpoint\n"
                       "pwrite 7b 4K 0xb8", size="128K")
    read = lab.vm_read(7 * 4096, 4096)
    lab.run()
    return read.result[0]


def _after_failover() -> int:
    lab = run_scenario("start\npwrite 9b 4K 0xb9\ncheckpoint\npwrite 9b 4K 0xba\n"
                       "failover", size="128K")
    return lab.secondary.peek(9 * 4096, 512)[0]


ex03 = SimpleNamespace(
    vm_reads=Exercise(
        "03.vm_reads",
        "`start; pwrite 7b 4K 0xb7; vwrite 7b 4K 0xc7; checkpoint; pwrite 7b 4K 0xb8` — what "
        "byte does the VM then read at block 7?",
        _vm_reads, _same_byte,
        ["A checkpoint drops the VM's own writes: active is emptied.",
         "After a checkpoint the primary's next write to a cluster first copies that "
         "cluster's current contents into hidden."],
        "0xb7: the checkpoint made the primary's 0xb7 the VM's view (and dropped 0xc7); the "
        "later 0xb8 is hidden from the VM by the COW copy of 0xb7 in hidden.", hex_answer=True),
    failover=Exercise(
        "03.failover",
        "`start; pwrite 9b 4K 0xb9; checkpoint; pwrite 9b 4K 0xba; failover` — what byte does "
        "the secondary disk hold at block 9 afterwards?",
        _after_failover, _same_byte,
        ["Failover commits active and hidden into the secondary disk.",
         "hidden holds the checkpoint-time copy of block 9."],
        "0xb9: hidden's copy (from the checkpoint epoch) is committed over the primary's "
        "un-checkpointed 0xba — failover reverts it.", hex_answer=True),
)

RACE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"


def _race_schedule() -> str:
    import importlib

    ex = importlib.import_module("labkit.explore")
    found = ex.explore(RACE, size="128K", design="none")
    return found.violations[0].schedule_text


def _schedule_violates(answer: Any, want: str) -> str | None:
    import importlib

    from .errors import LabkitError

    ex = importlib.import_module("labkit.explore")

    if not isinstance(answer, str):
        return "Answer a schedule string such as 'start#1*4 vm-read#1 nbd-write#1*3 ...'."
    try:
        lab = ex.replay(RACE, answer, size="128K", design="none")
    except LabkitError as exc:
        return f"That schedule does not fit the scenario: {exc}"
    if lab.violations():
        return None
    return ("That schedule runs, but the VM read no primary data. The read must pass hidden "
            "(nothing there yet) and read the secondary disk after the write landed.")


def _designs() -> list[str]:
    from .explore import explore

    return [d for d in ("none", "2.8", "4.0")
            if explore(RACE, size="128K", design=d).verdict == "safe"]


ex04 = SimpleNamespace(
    schedule=Exercise(
        "04.schedule",
        "Write a schedule string for `" + RACE.strip().replace("\n", "; ") + "` (design "
        "'none') that makes the VM read primary data.",
        _race_schedule, _schedule_violates,
        ["Let vm-read#1 run until it waits for the secondary disk, then let nbd-write#1 run "
         "to the end, then finish the read.",
         "labkit.trace.format_schedule(lab.schedule) prints the schedule of a run you made "
         "with the playground."],
        "The read checked hidden (empty), then the write copied the cluster and landed, then "
        "the read took the new data from the secondary disk."),
    designs=Exercise(
        "04.designs",
        "Which designs ('none', '2.8', '4.0') prevent every conflicting read in that "
        "scenario? Answer a list.",
        _designs, _same_set("designs"),
        ["2.8 makes the read hold a CowRequest; 4.0 makes the COW's write to hidden wait for "
         "reads of hidden."],
        "Both 2.8 (reader-side CowRequest) and 4.0 (serialising writes to hidden) are safe; "
        "'none' is not."),
)


def _partial_verdicts() -> dict[str, str]:
    from . import scenarios
    from .explore import explore

    text = scenarios.load("partial-cluster-vm-write")
    config = scenarios.config(text)
    return {d: explore(text, design=d, **config).verdict for d in ("none", "2.8", "4.0")}


def _same_verdicts(answer: Any, want: dict[str, str]) -> str | None:
    if not isinstance(answer, dict):
        return "Answer a dict such as {'none': 'violation', '2.8': 'safe', '4.0': 'safe'}."
    wrong = [d for d in want if answer.get(d) != want[d]]
    if not wrong:
        return None
    return f"Look again at design {wrong[0]!r}: which requests hold a CowRequest there?"


def _preemptions() -> int:
    from .explore import explore

    found = explore(RACE, size="128K", design="none")
    return found.violations[0].preemptions


ex05 = SimpleNamespace(
    partial=Exercise(
        "05.partial",
        "The shipped scenario 'partial-cluster-vm-write' races a partial-cluster VM write "
        "(64 KiB active clusters) with a primary write. Predict the explorer's verdict for "
        "each design as a dict {'none': ..., '2.8': ..., '4.0': ...} with values 'safe' or "
        "'violation'.",
        _partial_verdicts, _same_verdicts,
        ["qcow2's own copy-on-write reads hidden and the secondary disk without going through "
         "replication_co_readv.", "In 4.0 every read of hidden is a tracked request."],
        "The faithful model's verdicts; see notebook 05 for why each design gives its answer."),
    preemptions=Exercise(
        "05.preemptions",
        "How many preemptions (switches away from a task that could have run on) does the "
        "shrunk counterexample for the canonical race need?",
        _preemptions, _same_int,
        ["Shrinking keeps the fewest context switches that still violate."],
        "One: the read is preempted once, right before it reads the secondary disk."),
)

__all__ = ["Exercise", "Outcome", "ex01", "ex02", "ex03", "ex04", "ex05", "solutions_enabled"]
