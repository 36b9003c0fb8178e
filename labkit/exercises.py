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
``LABKIT_SOLUTIONS=1`` is set, when it returns the solution.  The solved edition
(``make solutions``) goes further: ``tools/build_notebooks.py`` writes each answer
into its cell (:meth:`Exercise.literal`), so it stays solved when a trainer re-runs
it.  The trainee edition stored in ``notebooks/`` is executed without either.

Predict, commit, reveal: a cell that *shows* an exercise's answer (the run that
checks a prediction, a worked solution) starts with ``if q.answered():`` and runs
only after the trainee's check said *Correct!* or they asked ``q.solution()``.

Three kinds of exercise need more than reading an output: multiple-choice
predictions (:func:`choice`; every wrong option names its misconception), ordering
tasks (any order the engine accepts is right: 3.3) and open tasks checked by the
engine (a schedule that breaks the oracle: 4.1; a scenario the explorer finds a
violation in: 5.3).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .lab import Lab, run_scenario

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
    # what the engine itself says about this answer, appended to the feedback
    reasoning: Callable[[Any], str] | None = None

    def message(self, answer: Any) -> str:
        """The feedback, with the engine's own reasoning about ``answer`` if any."""
        return self.feedback + (f" {self.reasoning(answer)}" if self.reasoning else "")


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
    # the answer as people write it, made comparable (e.g. range(16) -> a list)
    normalise: Callable[[Any], Any] | None = None
    _solution: Any = field(default=None, init=False, repr=False)
    _solved: bool = field(default=False, init=False, repr=False)
    _revealed: bool = field(default=False, init=False, repr=False)

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
        if self.normalise is not None:
            answer = self.normalise(answer)
        form_problem = self.form(answer)
        if form_problem is not None:
            return Outcome(False, form_problem, "form")
        want = self.answer
        if self.right(answer, want):
            self._revealed = True
            return Outcome(True, f"Your answer {self.described(answer)} is right. "
                                 f"{self.explanation}", "correct")
        for m in self.mistakes:
            if m.matches(answer, want):
                return Outcome(False, m.message(answer), "mistake", m.name)
        return Outcome(False, "That is not it. q.hint() gives a hint, q.hint(2) two.", "wrong")

    def hint(self, n: int = 1) -> str:
        """The first ``n`` hints, one per line."""
        return "\n".join(f"Hint {i + 1}: {h}" for i, h in enumerate(self.hints[:max(1, n)]))

    def shown(self, value: Any | None = None) -> str:
        """``value`` (default: the answer) as the answer key prints it."""
        value = self.answer if value is None else value
        return f"{value:#04x}" if self.hex_answer else repr(value)

    def described(self, value: Any) -> str:
        """``value`` as a *Correct!* message names it."""
        return self.shown(value)

    def solution(self) -> str:
        """The answer, and why (after this, :meth:`answered` is True)."""
        self._revealed = True
        return f"Solution: {self.shown()}. {self.explanation}"

    def answered(self) -> bool:
        """True once a check said *Correct!* or the solution was asked for.

        A notebook cell that shows the answer (the run that checks a prediction)
        starts with ``if q.answered():``, so that nothing on screen gives the
        answer away before the trainee committed to one.  When False it prints
        what to do first.
        """
        if not self._revealed:
            print(f"This cell shows the answer to {self.name}: it runs once q.check(...) "
                  f"says Correct! (or after q.solution()). Answer first, then run it again.")
        return self._revealed

    def literal(self) -> str:
        """The answer as a Python literal (the solved edition writes it into the cell)."""
        return self.shown()

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


# --- multiple choice ----------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One choice of a multiple-choice question.

    Every wrong option names the ``misconception`` that would make someone pick it
    and the ``feedback`` aimed at it; the right option (which the engine decides)
    leaves both empty.
    """

    key: str
    text: str
    misconception: str = ""
    feedback: str = ""


def _letter(answer: Any) -> Any:
    if isinstance(answer, str):
        return answer.strip().strip("()").strip().lower()
    return answer


class Choice(Exercise):
    """A multiple-choice exercise: answer with a letter, ``q.check("b")``."""

    options: list[Option]

    def shown(self, value: Any | None = None) -> str:
        value = self.answer if value is None else value
        return repr(value)

    def described(self, value: Any) -> str:
        text = {o.key: o.text for o in self.options}.get(value, "")
        return f"{value!r} ({text})"

    def solution(self) -> str:
        self._revealed = True
        return f"Solution: {self.described(self.answer)}. {self.explanation}"

    def answer_forms(self) -> list[str]:
        # the right option's own words; a letter alone is in every text
        text = {o.key: o.text for o in self.options}[self.answer]
        return [text] if len(text) >= 20 else []


def choice(name: str, question: str, options: list[Option], solve: Callable[[], str],
           explanation: str, hints: list[str]) -> Choice:
    """A multiple-choice :class:`Exercise` whose right key ``solve()`` computes with the
    engine; each other option becomes an anticipated mistake with its own feedback."""
    keys = [o.key for o in options]

    def form(answer: Any) -> str | None:
        span = f"{keys[0]} to {keys[-1]}"
        if not isinstance(answer, str):
            return (f"Answer with the letter of your choice ({span}) as a string in quotes "
                    f"(you gave {type(answer).__name__} {answer!r}).")
        if answer not in keys:
            return f"{answer!r} is not one of the choices: answer one letter, {span}."
        return None

    def mistake(o: Option) -> Mistake:
        key = o.key

        def matches(answer: Any, want: Any) -> bool:
            return bool(answer == key)

        def example(want: Any) -> str:
            return key

        return Mistake(o.misconception, matches, example, o.feedback)

    listed = "\n".join(f"  ({o.key}) {o.text}" for o in options)
    q = Choice(name, f"{question}\n{listed}\nAnswer with one letter, {keys[0]} to {keys[-1]}.",
               solve,
               form, lambda a, w: a == w, [mistake(o) for o in options if o.misconception],
               hints, explanation, placeholder="", normalise=_letter)
    q.options = options
    return q


# --- notebook 01 ------------------------------------------------------------------------

CHAIN = "start\npwrite 1b 4K 0xb1\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\n"
LAYERS = ("active", "hidden", "secondary")
# the names as the tables, block maps and the trace print them
_LAYER_SPELLINGS = {"secondary disk": "secondary", "secondary-disk": "secondary",
                    "hidden disk": "hidden", "active disk": "active"}


def _layer_names(answer: Any) -> Any:
    if isinstance(answer, (list, tuple)):
        return [(_LAYER_SPELLINGS.get(a.strip().lower(), a.strip().lower())
                 if isinstance(a, str) else a) for a in answer]
    return answer


def _block_numbers(answer: Any) -> Any:
    """range(16), a set or a tuple of block numbers, as a sorted list."""
    if isinstance(answer, (range, set, frozenset)):
        return sorted(answer)
    return answer


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
        "it.", placeholder=[], normalise=_layer_names),
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
        "hidden/secondary: qcow2's own copy-on-write, not the backup job's.", placeholder=[],
        normalise=_block_numbers,
        forms=lambda want: [f"('active', {want[0]}, {len(want)})", f"range({len(want)})"]),
)


# 1.3: a prediction, made before the cell that runs it
AFTER_CHECKPOINT = "start\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\ncheckpoint\n"


def _after_checkpoint_read() -> str:
    lab = run_scenario(AFTER_CHECKPOINT, size="128K", hidden_cluster="4K", active_cluster="4K")
    read = lab.vm_read(2 * 4096, 4096)
    lab.run()
    layer, byte = lab.provenance(read)[2], read.result[0]
    found = {("active", 0xC2): "a", ("hidden", 0x12): "b", ("secondary", 0xB2): "c",
             ("secondary", 0x12): "d"}
    return found.get((layer, byte), "?")


ex01.checkpoint = choice(
    "01.checkpoint",
    "`" + AFTER_CHECKPOINT.strip().replace("\n", "; ") + "` (4 KiB qcow2 clusters), then "
    "the VM reads block 2. Which layer serves the read, and what does it return?",
    [Option("a", "active, 0xc2", "a checkpoint keeps the VM's own writes",
            "A checkpoint makes the secondary VM a copy of the primary: bdrv_make_empty "
            "drops every cluster of active, so the VM's own 0xc2 is gone."),
     Option("b", "hidden, 0x12", "the checkpoint brings the saved old data into view",
            "hidden is emptied by the same checkpoint (bdrv_make_empty on hidden too): the "
            "old data it kept belonged to the epoch that just ended."),
     Option("c", "the secondary disk, 0xb2"),
     Option("d", "the secondary disk, 0x12", "the primary's write stays hidden after a "
            "checkpoint",
            "The read does fall through to the secondary disk — but that disk holds the "
            "primary's 0xb2 since its write landed, and after a checkpoint nothing hides it "
            "any more: the checkpoint made the primary's data the VM's view.")],
    _after_checkpoint_read,
    "The checkpoint emptied active and hidden (bdrv_make_empty), so the read falls through "
    "to the secondary disk, which holds the primary's 0xb2: at a checkpoint the secondary "
    "becomes a copy of the primary.",
    ["After make_empty a qcow2 layer has no allocated cluster: reads fall through.",
     "Which layers does a checkpoint empty?"])


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


def _lab_after(scenario: str, prefix: list[str], design: str = "none",
               **config: Any) -> Lab:
    """The lab of ``scenario`` after the decisions ``prefix`` (the scenario still running)."""
    from .kernel import Scripted
    from .lab import ScenarioRun, build_secondary
    from .scenario import parse

    lab = build_secondary(design=design, policy=Scripted(prefix), **config)
    run = ScenarioRun(lab, parse(scenario, block=lab.block, size=lab.size))
    while len(lab.schedule) < len(prefix):
        run.step()
    return lab


TWO_WRITES = "start\npar { pwrite 5b 4K 0xb5; pwrite 6b 4K 0xb6 }\n"
START_STEPS = ["start#1"] * 3


def _second_write() -> str:
    lab = _lab_after(TWO_WRITES, [*START_STEPS, "nbd-write#1", "nbd-write#2"], size="256K")
    waiting = {t.name: t.why_blocked for t in lab.kernel.blocked()}
    lab.run()
    copies = sum(1 for e in lab.trace if e.kind == "cow-copy")
    if "CowRequest" in waiting.get("nbd-write#2", "") and copies == 1:
        return "b"
    return "a" if copies == 2 else "c"


ex02.concurrent = choice(
    "02.concurrent",
    "`" + TWO_WRITES.strip().replace("\n", "; ") + "` (256 KiB disk). nbd-write#1 reaches "
    "step 2 first and starts copying backup cluster 0; then nbd-write#2's notifier fires, "
    "for block 6 — the same backup cluster, still being copied. What does nbd-write#2 do?",
    [Option("a", "it copies backup cluster 0 too, then lands",
            "every write makes its own copy",
            "The done bitmap exists so that a cluster is copied at most once per epoch: a "
            "second copy would save data that may already be new."),
     Option("b", "it waits for nbd-write#1's CowRequest, then finds cluster 0 done and lands "
                 "without copying"),
     Option("c", "it lands at once: the copy in flight already covers cluster 0",
            "a copy in flight already protects its cluster",
            "The copy reads the secondary disk's old data; if block 6 landed while the copy "
            "was still reading, the copy could save the new data as 'old'. backup_do_cow "
            "first waits for overlapping CowRequests (wait_for_overlapping_requests)."),
     Option("d", "it fails: two writes may not copy the same cluster at once",
            "overlapping copies are an error",
            "Nothing fails: overlapping requests are normal. The CowRequest is a lock — the "
            "second write waits for it, it is not refused.")],
    _second_write,
    "backup_do_cow first waits for overlapping CowRequests; when nbd-write#1's copy ends, "
    "cluster 0 is in the done bitmap, so nbd-write#2 copies nothing and lands.",
    ["Step 2 begins with wait_for_overlapping_requests.",
     "What does the done bitmap say about cluster 0 once the first copy ends?"])


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


# 3.3: order the commands so that the VM ends up reading 0xbb; any such order is accepted
ORDER_LINES = {"A": "pwrite 5b 4K 0xbb", "B": "vwrite 5b 4K 0xcc", "C": "checkpoint",
               "D": "pwrite 5b 4K 0xbd"}
ORDER_GOAL = 0xBB


def _order_letters(answer: Any) -> Any:
    if isinstance(answer, str):
        return [c for c in answer.upper() if not c.isspace() and c not in ",'\"[]"]
    if isinstance(answer, (list, tuple)):
        return [a.strip().upper() if isinstance(a, str) else a for a in answer]
    return answer


def _order_form(answer: Any) -> str | None:
    if not isinstance(answer, list):
        return (f"Answer the four letters in the order you want them run, e.g. "
                f"['D', 'C', 'B', 'A'] or 'DCBA' (you gave {type(answer).__name__} {answer!r}).")
    if sorted(map(str, answer)) != sorted(ORDER_LINES):
        return (f"Use each of {', '.join(ORDER_LINES)} exactly once, e.g. 'DCBA'; you gave "
                f"{''.join(map(str, answer))!r}.")
    return None


def _vm_reads_after(order: list[str]) -> int:
    lab = run_scenario("start\n" + "\n".join(ORDER_LINES[k] for k in order) + "\n",
                       size="128K")
    read = lab.vm_read(5 * 4096, 4096)
    lab.run()
    return read.result[0]


def _an_order() -> list[str]:
    import itertools

    for order in itertools.permutations(ORDER_LINES):
        if _vm_reads_after(list(order)) == ORDER_GOAL:
            return list(order)
    raise AssertionError("no order of the commands gives the VM 0xbb")


def _winning_orders() -> list[str]:
    import itertools

    return ["".join(o) for o in itertools.permutations(ORDER_LINES)
            if _vm_reads_after(list(o)) == ORDER_GOAL]


def _order_reads(byte: int) -> Callable[[Any, Any], bool]:
    return lambda answer, want: _vm_reads_after(answer) == byte


def _order_giving(byte: int) -> Callable[[Any], Any]:
    def example(want: list[str]) -> list[str]:
        import itertools

        return next(list(o) for o in itertools.permutations(ORDER_LINES)
                    if _vm_reads_after(list(o)) == byte)
    return example


ex03.order = Exercise(
    "03.order",
    "After `start`, run these four commands in an order of your choice: "
    + "; ".join(f"{k} = `{v}`" for k, v in ORDER_LINES.items())
    + ". Then the VM reads block 5. Give an order in which that read returns 0xbb (any "
    "such order is accepted; the engine runs yours), e.g. 'DCBA'.",
    _an_order, _order_form, lambda a, w: _vm_reads_after(a) == ORDER_GOAL,
    [Mistake("a primary write is visible without a checkpoint after it", _order_reads(0x15),
             _order_giving(0x15),
             "The VM read the old 0x15: in your order no checkpoint follows the primary's "
             "writes to block 5, so hidden keeps them from the VM. Only a checkpoint makes a "
             "primary write part of the VM's view."),
     Mistake("the VM's own write survives a checkpoint, or sits under the primary's",
             _order_reads(0xCC), _order_giving(0xCC),
             "The VM read its own 0xcc: a VM write after the last checkpoint sits in active, "
             "on top of everything the primary wrote. A VM write before the checkpoint would "
             "have been dropped by it."),
     Mistake("a checkpoint captures only the first write", _order_reads(0xBD),
             _order_giving(0xBD),
             "The VM read 0xbd: the checkpoint captured the secondary disk as it was then, "
             "with D's 0xbd already on it. Where must D go so that the checkpoint sees 0xbb "
             "— or so that it does not matter?")],
    ["The VM's view after a checkpoint is the secondary disk as it was at that checkpoint, "
     "plus the VM's writes since.", "A primary write after the last checkpoint is hidden "
     "from the VM (hidden saved the old data first)."],
    "The checkpoint must come after A and after B (B is dropped by it), and D must either "
    "come before A or after the checkpoint (then hidden keeps it from the VM).",
    placeholder="", normalise=_order_letters,
    forms=lambda want: _winning_orders())


# --- notebook 04 ------------------------------------------------------------------------

RACE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"
READER, WRITER = "vm-read#1", "nbd-write#1"
_SCHEDULE_ITEM = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*#\d+(\*\d+)?$")


def _race_schedule() -> str:
    from .explore import explore

    return explore(RACE, size="128K", design="none").violations[0].schedule_text


def _schedule_as_shown(answer: Any) -> Any:
    """A schedule copied from the playground's "schedule so far" line (``start#1 ×3 ·
    ↯ vm-read#1``) as the schedule syntax (``start#1*3 vm-read#1``): the same choices."""
    if not isinstance(answer, str):
        return answer
    text = answer.split("):", 1)[1] if answer.lstrip().startswith("schedule so far") else answer
    text = re.sub(r"\s*×\s*(\d+)", r"*\1", text)
    return " ".join(text.replace("·", " ").replace("↯", " ").split())


def _schedule_form(answer: Any) -> str | None:
    example = "'name#1*2 other#1 ...'"
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


def _without_start(answer: str, want: str) -> bool:
    return _does_not_fit(answer, want) and not _names(answer)[:1] == ["start#1"]


def _engine_says(answer: str) -> str:
    """lk.replay's own reason for refusing the schedule."""
    lab = _replayed(answer)
    return f"The engine says: {lab}" if isinstance(lab, Exception) else ""


def _resumes_between_copy_and_landing(answer: str, want: str) -> bool:
    """The instructive near-miss: the read passed hidden first, then the write copied, then
    the read resumed before the write landed (and read the old data)."""
    lab = _replayed(answer)
    if isinstance(lab, Exception) or lab.violations():
        return False
    names = [n for n in _names(answer) if n in (READER, WRITER)]
    if not names or names[0] != READER or WRITER not in names:
        return False
    first_write = names.index(WRITER)
    resumed = [i for i in range(first_write, len(names)) if names[i] == READER]
    return bool(resumed) and WRITER in names[resumed[0]:]


def _near_miss(want: str) -> str:
    from .trace import format_schedule, parse_schedule

    names = parse_schedule(want)
    last_write = max(i for i, n in enumerate(names) if n == WRITER)
    moved = names[:last_write] + [n for n in names[last_write + 1:]] + [WRITER]
    return format_schedule(moved)


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


_design_names = _list_form("designs 'none', '2.8', '4.0'", lambda d: d in DESIGNS, "['none']")


def _design_list_form(answer: Any) -> str | None:
    """Design names are strings: an unquoted 2.8 or 4.0 gets "quote them"."""
    items = answer if isinstance(answer, (list, tuple)) else [answer]
    numbers = [a for a in items if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if numbers:
        return (f"Design names are strings: quote them, e.g. ['{numbers[0]}'] "
                f"(you wrote {numbers[0]!r} without quotes).")
    return _design_names(answer)


def _designs() -> list[str]:
    from .explore import explore

    return [d for d in DESIGNS if explore(RACE, size="128K", design=d).verdict == "safe"]


ex04 = SimpleNamespace(
    schedule=Exercise(
        "04.schedule",
        "Write a schedule string for `" + RACE.strip().replace("\n", "; ") + "` (design "
        "'none') that makes the VM read primary data.",
        _race_schedule, _schedule_form, _schedule_violates,
        [Mistake("the start steps are left out", _without_start,
                 lambda want: want.split(" ", 1)[1],
                 "Your schedule does not begin with the start task's decisions: the scenario's "
                 "`start` line runs first, as task start#1 (the playground takes those steps "
                 "itself before it shows you buttons; format_schedule(playground.lab.schedule) "
                 "includes them).", _engine_says),
         Mistake("a schedule the scenario cannot follow", _does_not_fit, _bad_schedule,
                 "That schedule does not fit the scenario. Play it in the playground, then "
                 "copy format_schedule(playground.lab.schedule).", _engine_says),
         Mistake("the read resumes between the copy and the landing",
                 _resumes_between_copy_and_landing, _near_miss,
                 "Close: the read passed hidden before the copy — but it resumed after step 2 "
                 "and before step 3, so the secondary disk still held the old data and the "
                 "read returned it. A conflicting read needs the new data on the secondary "
                 "disk: let the write land before the read resumes."),
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
        "the read took the new data from the secondary disk.", placeholder="",
        normalise=_schedule_as_shown),
    designs=Exercise(
        "04.designs",
        "Which designs ('none', '2.8', '4.0') prevent every conflicting read in that "
        "scenario? Answer a list of design names.",
        _designs, _design_list_form,
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


# 4.2: the wake rule, 4.3: the 4.0 mechanism (predictions, answered by the engine)
WAKE = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb; vread 20b 4K }\n"


def _after_wake() -> str:
    lab = _lab_after(WAKE, [*START_STEPS, READER, WRITER], design="2.8", size="128K")
    assert WRITER in {t.name for t in lab.kernel.blocked()}
    from .kernel import Scripted

    while READER in {t.name for t in lab.runnable()}:
        lab.kernel.policy = Scripted([*lab.schedule, READER])
        lab.step()
    offered = {t.name for t in lab.runnable()}
    return {frozenset({WRITER}): "a", frozenset({WRITER, "vm-read#2"}): "b",
            frozenset({"vm-read#2"}): "c", frozenset(): "d"}.get(frozenset(offered), "?")


ex04.wake = choice(
    "04.wake",
    "Design 2.8, `" + WAKE.strip().replace("\n", "; ") + "`. You step vm-read#1 past hidden; "
    "then nbd-write#1, which now waits for vm-read#1's CowRequest (its button is grey). "
    "vm-read#2 (block 20, another cluster) could run too. You step vm-read#1 until it ends, "
    "ending its CowRequest. Which Step buttons does the playground then offer?",
    [Option("a", "only nbd-write#1: the woken write runs next"),
     Option("b", "nbd-write#1 and vm-read#2: you choose",
            "every scheduling point is a free choice",
            "When a task ends a CowRequest, the tasks waiting for it are woken and run at "
            "once, in the order they began waiting, before anything else "
            "(qemu_co_queue_run_restart): there is no choice at that point."),
     Option("c", "only vm-read#2: a woken task waits its turn behind the others",
            "a woken task goes to the back of the queue",
            "A woken coroutine is not queued behind the runnable ones: QEMU runs it as soon "
            "as its waker yields or ends (qemu_co_queue_run_restart)."),
     Option("d", "none: nbd-write#1 must first be woken by hand",
            "waking is the scheduler's job",
            "Nobody wakes it by hand: ending the CowRequest (cow_request_end) wakes every "
            "task waiting for it.")],
    _after_wake,
    "Ending the CowRequest woke nbd-write#1, and a woken task runs at once when its waker "
    "yields or ends, before any other task: vm-read#2 waits until the write yields.",
    ["What does cow_request_end do with the tasks waiting for it?",
     "Woken tasks run at once, in order, when the waker next yields or ends."])

SERIALISE = RACE


def _copy_meets_read() -> str:
    from .errors import ScheduleError

    lab = _lab_after(SERIALISE, [*START_STEPS, READER], design="4.0", size="128K")
    from .kernel import Scripted

    for _ in range(20):
        if WRITER not in {t.name for t in lab.runnable()}:
            break
        lab.kernel.policy = Scripted([*lab.schedule, WRITER])
        try:
            lab.step()
        except ScheduleError:
            break
    why = {t.name: t.why_blocked for t in lab.kernel.blocked()}.get(WRITER, "")
    if READER in why and "hidden" in why:
        return "a"
    return "b" if any(e.kind == "cow-copy" for e in lab.trace) else "d"


ex04.serialise = choice(
    "04.serialise",
    "Design 4.0, the same race. vm-read#1 has looked at hidden (nothing there) and waits "
    "for its read of the secondary disk. nbd-write#1 runs: its copy of backup cluster 0 "
    "now wants to write the old data into hidden. What happens?",
    [Option("a", "the copy's write to hidden waits until vm-read#1's read has finished"),
     Option("b", "the copy writes hidden at once: the read has already left hidden",
            "a read leaves a layer once it has looked there",
            "The read of hidden is a tracked request: it stays in flight on hidden until "
            "the read below it (of the secondary disk) returns. A serialising write waits "
            "for every overlapping request in flight on its node."),
     Option("c", "vm-read#1 is cancelled and read again after the copy",
            "QEMU retries a read that raced",
            "Nothing is cancelled or retried in QEMU's block layer: requests wait for each "
            "other (wait_serialising_requests), they do not restart."),
     Option("d", "vm-read#1 waits for the copy's write to hidden",
            "serialising makes the reader wait",
            "New reads of hidden wait for a serialising write — but vm-read#1 is already in "
            "flight there, so it is the copy's write that waits for it.")],
    _copy_meets_read,
    "The copy's write to hidden is serialising (mark_request_serialising): it waits for "
    "every overlapping request in flight on hidden, and vm-read#1's read of hidden is still "
    "in flight (a tracked request) until its read of the secondary disk returns. So the "
    "write cannot land before the read has its data.",
    ["How long is a read of hidden in flight on hidden?",
     "A serialising request waits for overlapping requests in flight on its node."])


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
                            *(form for d, v in want.items() if d == "2.8"
                              for form in (f"{d}: {v}", f"{d}={v}", f"{d} = {v}"))]),
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
        forms=lambda want: [f"{want} preemption" + ("s" if want != 1 else ""),
                            f"{want} preemption" + ("s" if want != 1 else "") + ")",
                            f"preemptions: {want}", f"preemptions={want}"]),
)


# 5.3: an open task, checked by the explorer
OWN_RACE = ("# config: size=128K active_cluster=64K\nstart\n"
            "par { vwrite 9b 4K 0xcc; pwrite 12b 4K 0xbb }\nvread 12b 4K orig\n")


def _explored(answer: str, design: str) -> Any:
    from . import scenarios
    from .errors import LabkitError
    from .explore import explore

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
    "05.own_race",
    "Write a scenario (text; a '# config: KEY=VALUE' line may set the lab, e.g. "
    "active_cluster=64K; the default disk is 128K) in which the explorer finds a violation "
    "under design '2.8'. Not the shipped scenario: your own blocks and bytes.",
    lambda: OWN_RACE, _scenario_form, _violates_under("2.8"),
    [Mistake("a scenario the engine refuses", _refused, lambda want: "start\npar { vread }",
             "The engine cannot run that scenario.", _explorer_says),
     Mistake("a race needs no concurrency", _no_race, lambda want: "start\nvwrite 5b 4K "
             "0xcc\npwrite 5b 4K 0xbb\nvread 5b 4K orig\n",
             "Outside par { } each command runs to its end before the next starts: nothing "
             "can interleave. Start the racing commands together with par { A; B }.",
             _explorer_says),
     Mistake("2.8's CowRequest covers every read", _replication_read_race,
             lambda want: "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n",
             "Your race breaks design 'none' — but under 2.8 the VM's reads through the "
             "replication driver hold a CowRequest. Which reader of hidden and the secondary "
             "disk does not go through replication_co_readv?", _explorer_says)],
    ["qcow2's fill read for a partial-cluster VM write does not hold a CowRequest.",
     "With 64 KiB active clusters a 4 KiB VM write fills the rest of the cluster; the "
     "primary must write into the same backup cluster meanwhile."],
    "A VM write that covers part of an unallocated 64 KiB active cluster makes qcow2 read "
    "the rest of the cluster from hidden and the secondary disk without a CowRequest; a "
    "primary write into that cluster can copy and land between those reads, and active "
    "captures the primary's new data.",
    placeholder="", forms=lambda want: [])


EXERCISES: dict[str, Exercise] = {
    q.name: q
    for group in (ex01, ex02, ex03, ex04, ex05) for q in vars(group).values()
}


def by_notebook(prefix: str) -> Sequence[Exercise]:
    """The exercises of notebook ``prefix`` ("01" ... "05"), in order."""
    return [q for name, q in EXERCISES.items() if name.startswith(prefix + ".")]


__all__ = ["EXERCISES", "Choice", "Exercise", "Mistake", "Option", "Outcome", "by_notebook",
           "choice", "ex01", "ex02",
           "ex03", "ex04", "ex05", "solutions_enabled"]

# notebook 07 (image fleecing): its exercises live in their own module
from .exercises_nb07 import BREAK07, RACE07, ex07  # noqa: E402

EXERCISES.update({q.name: q for q in vars(ex07).values()})
__all__ += ["BREAK07", "RACE07", "ex07"]
