"""The concept check: ten multiple-choice questions taken in notebook 00 and again after 05.

Each wrong option names the misconception that would make someone pick it (the
answer key lists them).  A trainee answers all ten at once::

    from labkit.concepts import concept_check
    cc = concept_check("before")          # "after" at the end of notebook 05
    print(cc.text())
    cc.submit("abcd...")                  # ten letters, one per question

``submit`` prints the score and **one line** to paste into the workshop's shared
document (chat, etherpad, a form — no labkit network service is involved)::

    labkit-concepts v1 before 6/10 abcdabcdab

The trainer pastes everyone's lines into a file and runs
``python tools/concept_report.py FILE``: per question, the share right before and
after, and the misconceptions chosen most.  Before the lessons ``submit`` gives only
the score (the same questions come back at the end); after them it gives
feedback on every wrong answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ArgumentError

VERSION = "v1"
LINE = re.compile(r"labkit-concepts (v\d+) (before|after) (\d+)/(\d+) ([a-d?]+)")


@dataclass(frozen=True)
class Concept:
    """One question: its options (key, text, misconception — empty for the right one)."""

    key: str
    text: str
    options: tuple[tuple[str, str, str], ...]

    @property
    def right(self) -> str:
        return next(k for k, _, why in self.options if not why)

    def misconception(self, letter: str) -> str:
        return next((why for k, _, why in self.options if k == letter), "")


QUESTIONS: tuple[Concept, ...] = (
    Concept("vm-view", "What must the secondary VM see on its disk between two checkpoints?", (
        ("a", "whatever the primary has written so far", "the secondary mirrors the primary "
                                                         "live"),
        ("b", "the disk as at the last checkpoint, plus its own writes since", ""),
        ("c", "only its own writes; everything else reads as zeros", "the secondary starts "
                                                                     "from an empty disk"),
        ("d", "the disk as it was when replication started", "the secondary never moves "
                                                             "forward"))),
    Concept("hidden", "What does the hidden disk hold?", (
        ("a", "the secondary VM's own writes", "hidden and active swapped"),
        ("b", "the primary's new data, until the next checkpoint", "the primary's writes are "
                                                                   "buffered, not applied"),
        ("c", "the old contents of what the primary overwrote since the checkpoint", ""),
        ("d", "a full copy of the disk taken at every checkpoint", "a checkpoint copies the "
                                                                   "whole disk"))),
    Concept("copy-unit", "The primary writes 512 bytes into a never-written area. What does "
                         "the backup job copy into hidden first?", (
        ("a", "nothing: it copies only at a checkpoint", "the backup job copies on a timer or "
                                                         "at checkpoints"),
        ("b", "exactly those 512 bytes' old contents", "the copy unit is the write's range"),
        ("c", "the old contents of the whole backup cluster (64 KiB) around them", ""),
        ("d", "the whole disk", "the first write copies everything"))),
    Concept("once", "The primary writes the same block twice between two checkpoints. How many "
                    "copies into hidden does the backup job make?", (
        ("a", "one, at the first write", ""),
        ("b", "two, one per write", "every write makes its own copy"),
        ("c", "none: the second write cancels the first", "writes to the same place merge"),
        ("d", "one, at the next checkpoint", "copies happen at checkpoints"))),
    Concept("checkpoint", "What does a checkpoint do to active and hidden?", (
        ("a", "commits them into the secondary disk", "a checkpoint is a failover"),
        ("b", "empties both", ""),
        ("c", "empties hidden, keeps active", "the VM's writes survive a checkpoint"),
        ("d", "nothing: only the primary is affected", "checkpoints are a primary-side thing"))),
    Concept("failover", "The primary dies and the secondary fails over. What happens to the "
                        "primary's writes since the last checkpoint?", (
        ("a", "they are kept: they are on the secondary disk", "failover keeps whatever "
                                                               "landed"),
        ("b", "they are reverted: hidden's old copies are committed over them", ""),
        ("c", "they are replayed from the primary's log", "COLO keeps a write log"),
        ("d", "the whole disk goes back to replication start", "failover rolls back to the "
                                                               "start"))),
    Concept("race", "How can the secondary VM read primary data it must never see?", (
        ("a", "it cannot: the backup job always copies first", "copy-before-write makes "
                                                               "every read safe"),
        ("b", "its read passes hidden before the copy, then reads the secondary disk after "
              "the new data landed", ""),
        ("c", "its read reaches the disk before the NBD write arrives", "the danger is a read "
                                                                        "that is too early"),
        ("d", "only when two primary writes overlap", "the race is between primary writes"))),
    Concept("interleave", "Where can two requests in QEMU's block layer interleave?", (
        ("a", "anywhere: the block layer runs on many threads at once", "coroutines are "
                                                                        "preemptive threads"),
        ("b", "only where one of them waits for I/O or a lock", ""),
        ("c", "nowhere: requests run one after the other", "requests never overlap"),
        ("d", "only at checkpoints", "scheduling happens at checkpoints"))),
    Concept("design28", "QEMU 2.8 protects the VM's reads by ...", (
        ("a", "making the read hold a CowRequest, which the copy waits for", ""),
        ("b", "copying the whole disk into hidden at each checkpoint", "protection by copying "
                                                                       "everything"),
        ("c", "retrying a read that raced with a write", "QEMU retries reads"),
        ("d", "making the primary wait for the secondary's reads", "the primary is throttled"))),
    Concept("design40", "QEMU 4.0 protects the VM's reads by ...", (
        ("a", "the same read-side CowRequest as 2.8", "nothing changed after 2.8"),
        ("b", "making the copy's write to hidden wait for reads still in flight on hidden",
         ""),
        ("c", "making every VM read wait for every primary write", "a global lock"),
        ("d", "nothing: 4.0 dropped the protection as unneeded", "4.0 removed the protection "
                                                                 "without replacement"))),
)



def _rotated(questions: tuple[Concept, ...]) -> tuple[Concept, ...]:
    """The options of question i rotated by i (and relettered), so that the right letters
    do not form a pattern; written above in a readable order."""
    out = []
    for i, q in enumerate(questions):
        shift = (i * 3) % len(q.options)
        opts = q.options[shift:] + q.options[:shift]
        out.append(Concept(q.key, q.text, tuple((k, text, why) for k, (_, text, why)
                                                in zip("abcd", opts, strict=True))))
    return tuple(out)


QUESTIONS = _rotated(QUESTIONS)


@dataclass
class ConceptCheck:
    """One sitting of the concept check: ``"before"`` the lessons or ``"after"`` them."""

    when: str

    def __post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ArgumentError(f"concept_check(when): 'before' or 'after', got {self.when!r}")

    def text(self) -> str:
        """The ten questions, as a trainee reads them."""
        out = [f"Concept check ({self.when} the lessons): answer all {len(QUESTIONS)} "
               f"with cc.submit('...'), one letter per question, '?' for \"I don't know\"."]
        for i, q in enumerate(QUESTIONS, start=1):
            out.append(f"\n{i}. {q.text}")
            out.extend(f"   ({k}) {t}" for k, t, _ in q.options)
        return "\n".join(out)

    def score(self, letters: str) -> int:
        return sum(a == q.right for a, q in zip(_letters(letters), QUESTIONS, strict=True))

    def line(self, letters: str) -> str:
        """The one line a trainee pastes for the trainer."""
        given = "".join(_letters(letters))
        return f"labkit-concepts {VERSION} {self.when} {self.score(given)}/{len(QUESTIONS)} {given}"

    def submit(self, letters: str) -> str:
        """Score the answers; after the lessons, feedback per wrong answer; the line to paste."""
        given = _letters(letters)
        out = [f"{self.score(''.join(given))} of {len(QUESTIONS)} right."]
        if self.when == "after":
            for i, (a, q) in enumerate(zip(given, QUESTIONS, strict=True), start=1):
                if a != q.right:
                    why = q.misconception(a)
                    out.append(f"  {i}: ({a}) is the idea that {why}." if why else
                               f"  {i}: no answer.")
        else:
            out.append("  (The same questions come back at the end of notebook 05.)")
        out.append("Paste this line where your trainer collects them:")
        out.append(self.line("".join(given)))
        text = "\n".join(out)
        print(text)
        return self.line("".join(given))


def _letters(letters: str) -> list[str]:
    if not isinstance(letters, str):
        raise ArgumentError(f"answer the concept check as one string of letters, e.g. "
                            f"'abcdabcdab' (got {type(letters).__name__})")
    given = [c for c in letters.lower() if not c.isspace() and c not in ",;"]
    if len(given) != len(QUESTIONS) or any(c not in "abcd?" for c in given):
        raise ArgumentError(f"answer {len(QUESTIONS)} letters a-d ('?' for don't know), one "
                            f"per question, e.g. 'abcdabcdab'; got {letters!r}")
    return given


def concept_check(when: str = "before") -> ConceptCheck:
    """The concept check, ``"before"`` (notebook 00) or ``"after"`` (end of notebook 05)."""
    return ConceptCheck(when)


def report(lines: list[str]) -> str:
    """The class's before/after from pasted result lines (other lines are ignored)."""
    rows = {"before": [], "after": []}  # type: dict[str, list[str]]
    for line in lines:
        m = LINE.search(line)
        if m and m[1] == VERSION and len(m[5]) == len(QUESTIONS):
            rows[m[2]].append(m[5])
    out = [f"concept check {VERSION}: {len(rows['before'])} before, "
           f"{len(rows['after'])} after"]
    for when in ("before", "after"):
        if rows[when]:
            mean = sum(ConceptCheck(when).score(r) for r in rows[when]) / len(rows[when])
            out.append(f"  mean score {when}: {mean:.1f}/{len(QUESTIONS)}")
    out.append(f"{'question':<12} {'before':>7} {'after':>7}  the misconception chosen most")
    for i, q in enumerate(QUESTIONS):
        share, why = {}, []
        for when in ("before", "after"):
            got = [r[i] for r in rows[when]]
            share[when] = (f"{100 * sum(a == q.right for a in got) // len(got)}%"
                           if got else "-")
            wrong = [a for a in got if a not in (q.right, "?")]
            if wrong:
                common = max(sorted(set(wrong)), key=wrong.count)
                why.append(f"{when}: ({common}) {q.misconception(common)} "
                           f"x{wrong.count(common)}")
        out.append(f"{i + 1:>2} {q.key:<9} {share['before']:>7} {share['after']:>7}  "
                   + "; ".join(why))
    return "\n".join(out)


__all__ = ["QUESTIONS", "Concept", "ConceptCheck", "concept_check", "report"]
