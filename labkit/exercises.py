"""Checked exercises for the notebooks: ``q.check(answer)``, ``q.hint()``, ``q.solution()``.

Each exercise poses a question about the model and computes its answer with
the engine (never a hand-written constant), so the exercise stays right if the
model changes.  A check answers in one of four ways:

* the answer has the wrong *form* (a placeholder left untouched, a string
  where a list is asked, a block number out of range): a message about the
  form only, never about the content;
* an *anticipated mistake* (each exercise lists at least two, with the
  misconception behind it): feedback aimed at that misconception;
* another wrong answer: "not yet", and where to look — without giving the
  answer's length, order or value away;
* right: the explanation, which never points at the notebook it is shown in.

In a notebook::

    from labkit.exercises import ex02
    answer = ex02.copied.your_answer([])   # replace [] with your answer
    ex02.copied.check(answer)

``your_answer(default)`` returns ``default`` — unless the environment variable
``LABKIT_SOLUTIONS=1`` is set, when it returns the solution: that is how the
solved edition (``make solutions``) is built.  The trainee edition stored in
``notebooks/`` is executed without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .lab import run_scenario

DESIGNS = ("none", "2.8", "4.0")


def solutions_enabled() -> bool:
    """True when ``LABKIT_SOLUTIONS=1`` (the solved edition, the answer key)."""
    return os.environ.get("LABKIT_SOLUTIONS") == "1"


@dataclass
class Outcome:
    """What a check found: ``correct``, a message, and which kind of answer it was.

    ``kind`` is ``"correct"``, ``"form"`` (the answer's form is wrong),
    ``"mistake"`` (an anticipated misconception; ``mistake`` names it) or
    ``"wrong"``.
    """

    correct: bool
    message: str
    kind: str = "wrong"
    mistake: str = ""

    def __repr__(self) -> str:
        return ("Correct! " if self.correct else "Not yet. ") + self.message

    def __bool__(self) -> bool:
        return self.correct


@dataclass(frozen=True)
class Mistake:
    """An anticipated wrong answer: the misconception, how to spot it, what to say.

    ``matches(answer, solution)`` is True for answers that show the
    misconception; ``example(solution)`` is one such answer (used by the
    tests and the answer key); ``feedback`` is aimed at the misconception and
    does not give the solution away.
    """

    name: str
    matches: Callable[[Any, Any], bool]
    example: Callable[[Any], Any]
    feedback: str


@dataclass
class Exercise:
    """One question, with an engine-computed solution, form checks, mistakes, hints."""

    name: str
    question: str
    solve: Callable[[], Any]
    form: Callable[[Any], str | None]  # None when the answer has the right form
    right: Callable[[Any, Any], bool]  # is this (well-formed) answer correct?
    mistakes: list[Mistake]
    hints: list[str]
    explanation: str
    placeholder: Any = None  # what the notebook cell passes to your_answer()
    hex_answer: bool = False  # show the solution as 0xNN (a byte)
    forms: Callable[[Any], list[str]] | None = None  # extra text forms of the answer
    _solution: Any = field(default=None, init=False, repr=False)
    _solved: bool = field(default=False, init=False, repr=False)

    @property
    def answer(self) -> Any:
        """The engine's answer (computed once)."""
        if not self._solved:
            self._solution = self.solve()
            self._solved = True
        return self._solution

    def your_answer(self, default: Any) -> Any:
        """``default`` for a trainee; the solution when ``LABKIT_SOLUTIONS=1``."""
        return self.answer if solutions_enabled() else default

    def check(self, answer: Any) -> Outcome:
        """Check ``answer``; the message is about its form, a misconception, or where to look."""
        if _untouched(answer, self.placeholder):
            problem = self.form(answer) or "That is the placeholder."
            return Outcome(False, f"Replace the placeholder with your answer. {problem}",
                           "form")
        form_problem = self.form(answer)
        if form_problem is not None:
            return Outcome(False, form_problem, "form")
        want = self.answer
        if self.right(answer, want):
            return Outcome(True, self.explanation, "correct")
        for m in self.mistakes:
            if m.matches(answer, want):
                return Outcome(False, m.feedback, "mistake", m.name)
        return Outcome(False, "That is not it. q.hint() gives a hint, q.hint(2) two.", "wrong")

    def hint(self, n: int = 1) -> str:
        """The first ``n`` hints, one per line."""
        return "\n".join(f"Hint {i + 1}: {h}" for i, h in enumerate(self.hints[:max(1, n)]))

    def shown(self, value: Any | None = None) -> str:
        """``value`` (default: the answer) as the answer key prints it."""
        value = self.answer if value is None else value
        return f"{value:#04x}" if self.hex_answer else repr(value)

    def solution(self) -> str:
        """The answer, and why."""
        return f"Solution: {self.shown()}. {self.explanation}"

    def answer_forms(self) -> list[str]:
        """The text forms in which the answer could leak into an output above the exercise.

        Used by the answer-leak test of the stored notebooks: the answer's
        ``repr``, its items joined, its hex form, and any forms the exercise
        adds (a verdict line, "1 preemption").
        """
        value = self.answer
        # a bare small number ("1") is in every output; its forms say what it counts
        out = [] if _is_int(value) and not self.hex_answer else [self.shown()]
        if isinstance(value, list) and len(value) > 1:
            out.append(", ".join(map(str, value)))
        if self.forms is not None:
            out.extend(self.forms(value))
        return out


def _untouched(answer: Any, placeholder: Any) -> bool:
    if answer is None:
        return True
    try:
        return type(answer) is type(placeholder) and answer == placeholder
    except Exception:  # a numpy array or the like: not the placeholder
        return False


# --- answer forms ---------------------------------------------------------------------


def _list_form(kind: str, allowed: Callable[[Any], bool], example: str,
               length: int | None = None) -> Callable[[Any], str | None]:
    """A list (or tuple) whose items are ``allowed``; ``length`` if the question fixes it."""
    def form(answer: Any) -> str | None:
        if isinstance(answer, str) or not isinstance(answer, (list, tuple)):
            return (f"Answer a list of {kind} in square brackets, e.g. {example} "
                    f"(you gave {type(answer).__name__} {answer!r}).")
        if not answer:
            return f"Your list is empty: answer a list of {kind}, e.g. {example}."
        bad = [a for a in answer if not allowed(a)]
        if bad:
            return f"{bad[0]!r} is not one of the {kind}; e.g. {example}."
        if length is not None and len(answer) != length:
            return (f"The question asks for one entry per block, {length} in all; "
                    f"your list has {len(answer)}.")
        return None
    return form


def _int_form(what: str, low: int, high: int, example: str) -> Callable[[Any], str | None]:
    def form(answer: Any) -> str | None:
        if isinstance(answer, str):
            return (f"Answer {what} as a Python integer, without quotes "
                    f"(e.g. {example}, not '{example}').")
        if isinstance(answer, bool) or not isinstance(answer, int):
            return f"Answer {what} as an integer, e.g. {example} (you gave {answer!r})."
        if not low <= answer <= high:
            return f"{what.capitalize()} is between {low} and {high}; you gave {answer}."
        return None
    return form


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _equal(answer: Any, want: Any) -> bool:
    return list(answer) == list(want) if isinstance(want, list) else answer == want


def _same_set(answer: Any, want: Any) -> bool:
    return set(answer) == set(want)


# --- notebook 01 ------------------------------------------------------------------------

CHAIN = "start\npwrite 1b 4K 0xb1\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\n"
LAYERS = ("active", "hidden", "secondary")


def _served() -> list[str]:
    lab = run_scenario(CHAIN, size="128K", hidden_cluster="4K", active_cluster="4K")
    read = lab.vm_read(0, 8 * 4096)
    lab.run()
    return lab.provenance(read)[:8]


def _only_written_block_copied(answer: Any, want: list[str]) -> bool:
    # hidden where the primary wrote (block 1), the secondary disk for the rest of cluster 0
    return any(a == "secondary" and w == "hidden" for a, w in zip(answer, want, strict=False))


def _vm_write_not_on_top(answer: Any, want: list[str]) -> bool:
    return any(w == "active" and a != "active" for a, w in zip(answer, want, strict=False))


def _active_partial_blocks() -> list[int]:
    lab = run_scenario("start\nvwrite 5b 512 0xcc", size="128K", active_cluster="64K")
    active = lab.layers()["active"]
    assert active is not None
    return [b for b in range(32) if active.alloc[b * 8:(b + 1) * 8].all()]


ex01 = SimpleNamespace(
    served=Exercise(
        "01.served",
        "After `" + CHAIN.strip().replace("\n", "; ") + "` (4 KiB blocks; hidden and active "
        "with 4 KiB clusters), a VM read of blocks 0-7: which layer serves each of blocks "
        "0-7? Answer a list of 8 names, each 'active', 'hidden' or 'secondary'.",
        _served, _list_form("layer names", lambda a: a in LAYERS,
                            "['active', 'secondary', ...]", length=8),
        _equal,
        [Mistake("only the written block is copied", _only_written_block_copied,
                 lambda want: [("secondary" if w == "hidden" and i != 1 else w)
                               for i, w in enumerate(want)],
                 "Some blocks you sent to the secondary disk were saved in hidden. The "
                 "backup job does not copy just the block being written: it copies the whole "
                 "backup cluster (64 KiB, blocks 0-15) the first time the primary writes into "
                 "it, and the read takes each block from the topmost layer that has it."),
         Mistake("the VM's own write is not on top", _vm_write_not_on_top,
                 lambda want: [("hidden" if w == "active" else w) for w in want],
                 "Look at block 2: the VM wrote it itself. The VM's writes go to active, the "
                 "top of the chain, and a read takes each block from the topmost layer that "
                 "holds it — whatever the primary wrote later lives below.")],
        ["A read takes each block from the topmost layer that has it: active, then hidden, "
         "then the secondary disk.",
         "The primary's first write to a 64 KiB backup cluster copies all 16 of its blocks "
         "into hidden."],
        "Block 2 comes from active (the VM's own write); the other blocks of backup cluster 0 "
        "come from hidden, which received the whole cluster when the primary first wrote to "
        "it.", placeholder=[]),
    partial=Exercise(
        "01.partial",
        "With 64 KiB active clusters, the VM writes 512 bytes into block 5 (4 KiB blocks, "
        "32 of them). Which blocks are then allocated in active? Answer a list of block "
        "numbers.",
        _active_partial_blocks,
        _list_form("block numbers 0-31", lambda b: _is_int(b) and 0 <= b < 32, "[3, 4]"),
        _same_set,
        [Mistake("allocation is per written block", lambda a, w: set(a) == {5},
                 lambda want: [5],
                 "qcow2 does not allocate 4 KiB blocks: it allocates whole clusters, and "
                 "active's clusters are 64 KiB here. A write that touches any part of an "
                 "unallocated cluster allocates all of it."),
         Mistake("more than one cluster", lambda a, w: bool(set(a) - set(w)),
                 lambda want: list(range(32)),
                 "Only one cluster is touched by a 512-byte write; the other clusters of "
                 "active stay unallocated (reads fall through them to hidden and the "
                 "secondary disk). Which 64 KiB cluster holds block 5?"),
         Mistake("part of the cluster", lambda a, w: set(a) < set(w) and set(a) != {5},
                 lambda want: [4, 5, 6, 7],
                 "A cluster is allocated as a whole or not at all. How many 4 KiB blocks "
                 "does one 64 KiB cluster hold?")],
        ["qcow2 allocates whole clusters.",
         "An allocating write that covers part of a cluster fills the rest from the backing "
         "chain (qcow2's own copy-on-write)."],
        "The whole 64 KiB cluster (blocks 0-15) is allocated; the rest of it was filled from "
        "hidden/secondary: qcow2's own copy-on-write, not the backup job's.", placeholder=[]),
)


# --- notebook 02 ------------------------------------------------------------------------

def _copied(scenario: str) -> Callable[[], list[int]]:
    def solve() -> list[int]:
        lab = run_scenario(scenario, size="256K")
        return [e.offset // lab.backup_cluster for e in lab.trace if e.kind == "cow-copy"]
    return solve


COPY_SCENARIO = "start\npwrite 5b 4K 0xb5\npwrite 15b 8K 0xb6\npwrite 6b 4K 0xb7\n"
EPOCH_SCENARIO = "start\npwrite 3b 4K 0xb3\ncheckpoint\npwrite 4b 4K 0xb4\npwrite 40b 4K 0xb5\n"
CLUSTERS = 4  # a 256 KiB disk has four 64 KiB backup clusters
_cluster_form = _list_form("backup cluster indices 0-3 (block // 16)",
                           lambda c: _is_int(c) and 0 <= c < CLUSTERS, "[2, 3]")


def _repeats(answer: Any, want: list[int]) -> bool:
    return len(set(answer)) < len(answer)


def _same_items_other_order(answer: Any, want: list[int]) -> bool:
    return sorted(answer) == sorted(want) and list(answer) != list(want)


ex02 = SimpleNamespace(
    copied=Exercise(
        "02.copied",
        "Backup clusters are 64 KiB (16 blocks of 4 KiB) on a 256 KiB disk. For `"
        + COPY_SCENARIO.strip().replace("\n", "; ") + "`, list the backup cluster index of "
        "every copy, in the order the copies happen.",
        _copied(COPY_SCENARIO), _cluster_form, _equal,
        [Mistake("a cluster is copied on every write", _repeats,
                 lambda want: [0, 0, 1, 0],
                 "A cluster appears twice in your list. The backup job copies a cluster at "
                 "most once per checkpoint epoch: its done bitmap remembers what it copied, "
                 "and later writes into a done cluster go straight to the secondary disk."),
         Mistake("a write copies only the cluster of its first block",
                 lambda a, w: set(a) < set(w),
                 lambda want: [0],
                 "One copy is missing. `pwrite 15b 8K` covers blocks 15 and 16: which "
                 "backup cluster is block 16 in? A write copies every cluster it touches."),
         Mistake("copies in another order", _same_items_other_order,
                 lambda want: list(reversed(want)),
                 "The right clusters, in the wrong order: copies happen write by write, in "
                 "the order of the writes, and in ascending order within one write.")],
        ["Cluster of block b = b // 16. A write copies every cluster it touches, in ascending "
         "order.", "A cluster is copied at most once per checkpoint epoch (the done bitmap)."],
        "Block 5 copies cluster 0; blocks 15-16 straddle clusters 0 and 1, but 0 is done, so "
        "only 1 is copied; block 6 is in cluster 0, already done.", placeholder=[]),
    epochs=Exercise(
        "02.epochs",
        "Same disk. For `" + EPOCH_SCENARIO.strip().replace("\n", "; ") + "`, list the backup "
        "cluster index of every copy, in order.",
        _copied(EPOCH_SCENARIO), _cluster_form, _equal,
        [Mistake("the done bitmap survives a checkpoint",
                 lambda a, w: sorted(set(a)) == sorted(set(w)) and len(a) < len(w),
                 lambda want: sorted(set(want)),
                 "A checkpoint starts a new epoch: backup_do_checkpoint clears the whole done "
                 "bitmap (and hidden is emptied), so a cluster copied before the checkpoint is "
                 "copied again the next time the primary writes into it."),
         Mistake("block 40 in the wrong cluster",
                 lambda a, w: len(a) == len(w) and list(a)[:-1] == list(w)[:-1],
                 lambda want: [*want[:-1], (want[-1] + 1) % CLUSTERS],
                 "Look at the last write again: block 40 is in backup cluster 40 // 16."),
         Mistake("copies in another order", _same_items_other_order,
                 lambda want: list(reversed(want)),
                 "The right clusters, in the wrong order: copies happen in the order of the "
                 "writes.")],
        ["backup_do_checkpoint clears the whole done bitmap."],
        "The checkpoint clears the done bitmap, so cluster 0 is copied again (now holding "
        "0xb3 in block 3); block 40 is in cluster 2.", placeholder=[]),
)


# --- notebook 03 ------------------------------------------------------------------------

VM_READ_SCENARIO = ("start\npwrite 7b 4K 0xb7\nvwrite 7b 4K 0xc7\ncheckpoint\n"
                    "pwrite 7b 4K 0xb8\n")
FAILOVER_SCENARIO = "start\npwrite 9b 4K 0xb9\ncheckpoint\npwrite 9b 4K 0xba\nfailover\n"
_byte_form = _int_form("a byte", 0, 255, "0x2a")


def _vm_reads() -> int:
    lab = run_scenario(VM_READ_SCENARIO, size="128K")
    read = lab.vm_read(7 * 4096, 4096)
    lab.run()
    return read.result[0]


def _after_failover() -> int:
    lab = run_scenario(FAILOVER_SCENARIO, size="128K")
    return lab.secondary.peek(9 * 4096, 512)[0]


def _is(value: int) -> Callable[[Any, Any], bool]:
    return lambda answer, want: answer == value


def _const(value: Any) -> Callable[[Any], Any]:
    return lambda want: value


ex03 = SimpleNamespace(
    vm_reads=Exercise(
        "03.vm_reads",
        "`" + VM_READ_SCENARIO.strip().replace("\n", "; ") + "` — what byte does the VM then "
        "read at block 7? (Before anything is written, block k holds 0x10 + k.)",
        _vm_reads, _byte_form, _equal,
        [Mistake("the VM's write survives the checkpoint", _is(0xC7), _const(0xC7),
                 "0xc7 was the VM's own write, before the checkpoint. A checkpoint makes the "
                 "secondary VM a copy of the primary again: it empties active, so what the VM "
                 "wrote before it is gone."),
         Mistake("the primary's newest write is visible", _is(0xB8), _const(0xB8),
                 "0xb8 is the primary's write after the checkpoint. It lands on the secondary "
                 "disk only after the backup job copied the cluster's old contents into "
                 "hidden, and the VM reads hidden before the secondary disk."),
         Mistake("the original pattern", _is(0x17), _const(0x17),
                 "0x17 is what block 7 held at start. The checkpoint moved the VM's view "
                 "forward: it is now the secondary disk as the primary left it at that "
                 "checkpoint.")],
        ["A checkpoint drops the VM's own writes: active is emptied.",
         "After a checkpoint the primary's next write to a cluster first copies that "
         "cluster's current contents into hidden."],
        "0xb7: the checkpoint made the primary's 0xb7 the VM's view (and dropped 0xc7); the "
        "later 0xb8 is hidden from the VM by the COW copy of 0xb7 in hidden.",
        placeholder=None, hex_answer=True),
    failover=Exercise(
        "03.failover",
        "`" + FAILOVER_SCENARIO.strip().replace("\n", "; ") + "` — what byte does the "
        "secondary disk hold at block 9 afterwards?",
        _after_failover, _byte_form, _equal,
        [Mistake("failover keeps the primary's last write", _is(0xBA), _const(0xBA),
                 "0xba reached the secondary disk after the checkpoint — but failover commits "
                 "active and hidden into the secondary disk, and hidden holds the "
                 "checkpoint-time copy of that cluster: what the primary wrote since the "
                 "checkpoint is reverted."),
         Mistake("failover goes back to the start", _is(0x19), _const(0x19),
                 "0x19 is what block 9 held at start. Failover goes back to the last "
                 "checkpoint, not to the start, and a write before that checkpoint is part "
                 "of it.")],
        ["Failover commits active and hidden into the secondary disk.",
         "hidden holds the checkpoint-time copy of block 9."],
        "0xb9: hidden's copy (from the checkpoint epoch) is committed over the primary's "
        "un-checkpointed 0xba — failover reverts it.", placeholder=None, hex_answer=True),
)


# --- notebook 04 ------------------------------------------------------------------------

RACE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"
READER, WRITER = "vm-read#1", "nbd-write#1"
_SCHEDULE_ITEM = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*#\d+(\*\d+)?$")


def _race_schedule() -> str:
    from .explore import explore

    return explore(RACE, size="128K", design="none").violations[0].schedule_text


def _schedule_form(answer: Any) -> str | None:
    example = "'start#1*3 vm-read#1 nbd-write#1 ...'"
    if not isinstance(answer, str):
        return (f"Answer a schedule as a string of task names, e.g. {example} "
                f"(you gave {type(answer).__name__} {answer!r}).")
    items = [t for t in re.split(r"[\s,]+", answer.strip()) if t]
    if not items:
        return f"Your schedule is empty: write the task chosen at each decision, e.g. {example}."
    bad = [t for t in items if not _SCHEDULE_ITEM.match(t)]
    if not items or bad:
        return (f"A schedule is a string of task names, each optionally with a run-length, "
                f"e.g. {example}; {bad[0] if bad else answer!r} is not a task name (task "
                f"names are as the playground's buttons show them).")
    return None


def _replayed(answer: str) -> Any:
    """The lab the schedule names, or the labkit error that refused it."""
    from .errors import LabkitError
    from .explore import replay

    try:
        return replay(RACE, answer, size="128K", design="none")
    except LabkitError as exc:
        return exc


def _schedule_violates(answer: str, want: str) -> bool:
    lab = _replayed(answer)
    return not isinstance(lab, Exception) and bool(lab.violations())


def _names(answer: str) -> list[str]:
    from .trace import parse_schedule

    return parse_schedule(answer)


def _does_not_fit(answer: str, want: str) -> bool:
    return isinstance(_replayed(answer), Exception)


def _read_before_write(answer: str, want: str) -> bool:
    names = _names(answer)
    reads = [i for i, n in enumerate(names) if n == READER]
    writes = [i for i, n in enumerate(names) if n == WRITER]
    return bool(reads) and (not writes or max(reads) < min(writes))


def _write_before_read(answer: str, want: str) -> bool:
    names = _names(answer)
    reads = [i for i, n in enumerate(names) if n == READER]
    writes = [i for i, n in enumerate(names) if n == WRITER]
    return bool(writes) and (not reads or max(writes) < min(reads))


def _sequential(first: str) -> Callable[[str], str]:
    """The solution's schedule with ``first`` run to its end before the other task."""
    def example(want: str) -> str:
        from .trace import format_schedule, parse_schedule

        names = parse_schedule(want)
        cut = names.index(READER)
        tail = names[cut:]
        second = WRITER if first == READER else READER
        order = ([n for n in tail if n == first] + [n for n in tail if n == second]
                 + [n for n in tail if n not in (READER, WRITER)])
        return format_schedule(names[:cut] + order)
    return example


def _bad_schedule(want: str) -> str:
    from .trace import format_schedule, parse_schedule

    names = parse_schedule(want)
    return format_schedule([n for n in names if n != READER])


def _designs() -> list[str]:
    from .explore import explore

    return [d for d in DESIGNS if explore(RACE, size="128K", design=d).verdict == "safe"]


ex04 = SimpleNamespace(
    schedule=Exercise(
        "04.schedule",
        "Write a schedule string for `" + RACE.strip().replace("\n", "; ") + "` (design "
        "'none') that makes the VM read primary data.",
        _race_schedule, _schedule_form, _schedule_violates,
        [Mistake("a schedule the scenario cannot follow", _does_not_fit, _bad_schedule,
                 "That schedule does not fit the scenario: at some point it names a task that "
                 "is not running (or not there). Play it in the playground, then copy "
                 "format_schedule(playground.lab.schedule)."),
         Mistake("the read runs to its end first", _read_before_write, _sequential(READER),
                 "Your schedule lets the read run to its end before the write starts: the "
                 "read sees the old data. The read must be preempted after it has passed "
                 "hidden and before it reads the secondary disk."),
         Mistake("the write runs to its end first", _write_before_read, _sequential(WRITER),
                 "Your schedule lets the write run to its end first: its copy saved the old "
                 "data in hidden before the read looked there, so the read finds it. The read "
                 "must pass hidden before the copy.")],
        ["Let vm-read#1 run until it waits for the secondary disk, then let nbd-write#1 run "
         "to the end, then finish the read.",
         "labkit.trace.format_schedule(lab.schedule) prints the schedule of a run you made "
         "with the playground."],
        "The read checked hidden (empty), then the write copied the cluster and landed, then "
        "the read took the new data from the secondary disk.", placeholder=""),
    designs=Exercise(
        "04.designs",
        "Which designs ('none', '2.8', '4.0') prevent every conflicting read in that "
        "scenario? Answer a list of design names.",
        _designs, _list_form("designs 'none', '2.8', '4.0'", lambda d: d in DESIGNS,
                             "['none']"),
        _same_set,
        [Mistake("'none' protects", lambda a, w: "none" in a and "none" not in w,
                 lambda want: ["none", *want],
                 "'none' has no protection at all: you made the read return the primary's "
                 "data under it in the playground."),
         Mistake("only the reader-side design protects",
                 lambda a, w: set(a) < set(w) and "4.0" not in a, lambda want: ["2.8"],
                 "4.0 has no CowRequest in the read, but the copy's write to hidden is a "
                 "serialising request: it waits for every read in flight on hidden. Is "
                 "that enough here?"),
         Mistake("only the writer-side design protects",
                 lambda a, w: set(a) < set(w) and "2.8" not in a, lambda want: ["4.0"],
                 "In 2.8 the read holds a CowRequest over its backup clusters: the write's "
                 "backup_do_cow waits for it. You saw the playground grey out the write.")],
        ["2.8 makes the read hold a CowRequest; 4.0 makes the COW's write to hidden wait for "
         "reads of hidden."],
        "Both 2.8 (reader-side CowRequest) and 4.0 (serialising writes to hidden) are safe; "
        "'none' is not.", placeholder=[],
        forms=lambda want: [f"{d}: safe" for d in want] + [" and ".join(want)]),
)


# --- notebook 05 ------------------------------------------------------------------------

def _partial_verdicts() -> dict[str, str]:
    from . import scenarios
    from .explore import explore

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
    from .explore import explore

    return explore(RACE, size="128K", design="none").violations[0].preemptions


ex05 = SimpleNamespace(
    partial=Exercise(
        "05.partial",
        "The shipped scenario 'partial-cluster-vm-write' races a partial-cluster VM write "
        "(64 KiB active clusters) with a primary write. Predict the explorer's verdict for "
        "each design as a dict {'none': ..., '2.8': ..., '4.0': ...} with values 'safe' or "
        "'violation'.",
        _partial_verdicts, _verdict_form, _equal,
        [Mistake("2.8's CowRequest covers every read", _wrong_at("2.8"), _flip("2.8"),
                 "Think about where 2.8's protection lives: replication_co_readv takes the "
                 "CowRequest, for reads that come through the replication driver. qcow2's "
                 "fill read for a partial-cluster write is issued by qcow2 itself, below "
                 "it."),
         Mistake("serialising writes do not cover qcow2's fill read", _wrong_at("4.0"),
                 _flip("4.0"),
                 "In 4.0 the backup job's write to hidden is a serialising request: it waits "
                 "for every overlapping request in flight on hidden — and qcow2's fill read "
                 "of hidden is such a request, whoever issued it."),
         Mistake("no protection can still be safe", _wrong_at("none"), _flip("none"),
                 "Design 'none' has no protection at all: whatever a protected design lets "
                 "through, 'none' lets through too.")],
        ["qcow2's own copy-on-write reads hidden and the secondary disk without going through "
         "replication_co_readv.", "In 4.0 every read of hidden is a tracked request."],
        "'none' and '2.8' have a violation: qcow2's fill read for the partial write reads "
        "hidden and the secondary disk without a CowRequest (it does not pass through "
        "replication_co_readv), so the primary's copy and write can land between its two "
        "reads and active captures the new data. '4.0' is safe: the copy's serialising "
        "write to hidden waits for the fill read in flight there.",
        placeholder={},
        forms=lambda want: [" ".join(f"{d}={v}" for d, v in want.items()),
                            *(f"design {d}: {v}" for d, v in want.items() if d == "2.8")]),
    preemptions=Exercise(
        "05.preemptions",
        "How many preemptions (switches away from a task that could have run on) does the "
        "shrunk counterexample for the canonical race need?",
        _preemptions, _int_form("a number of preemptions", 0, 1000, "3"), _equal,
        [Mistake("no interruption needed", _is(0), _const(0),
                 "With no preemption every task runs until it ends or has to wait, in turn: "
                 "the read would either end before the write starts or start after it ended. "
                 "Can that give a conflicting read?"),
         Mistake("every switch counts", lambda a, w: a > w, lambda want: want + 2,
                 "You may be counting every switch between tasks. A preemption is a switch "
                 "away from a task that could have gone on; switching when a task ends or "
                 "has to wait does not count, and shrinking keeps as few preemptions as "
                 "still break the oracle.")],
        ["Shrinking keeps the fewest preemptions that still violate.",
         "A conflicting read needs the read interrupted between its look at hidden and its "
         "read of the secondary disk."],
        "One: the read is preempted once, right before it reads the secondary disk.",
        placeholder=None,
        forms=lambda want: [f"{want} preemption" + ("s" if want != 1 else "") + ")"]),
)

EXERCISES: dict[str, Exercise] = {
    q.name: q
    for group in (ex01, ex02, ex03, ex04, ex05) for q in vars(group).values()
}


def by_notebook(prefix: str) -> Sequence[Exercise]:
    """The exercises of notebook ``prefix`` ("01" ... "05"), in order."""
    return [q for name, q in EXERCISES.items() if name.startswith(prefix + ".")]


__all__ = ["EXERCISES", "Exercise", "Mistake", "Outcome", "by_notebook", "ex01", "ex02",
           "ex03", "ex04", "ex05", "solutions_enabled"]
