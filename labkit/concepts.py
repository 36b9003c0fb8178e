"""The concept check: ten multiple-choice questions taken in notebook 00 and again after 05.

Each wrong option names the misconception that would make someone pick it (the
answer key lists them).  A trainee answers all ten at once::

    from labkit.concepts import concept_check
    cc = concept_check("before")          # "after" at the end of notebook 05
    print(cc.text())
    cc.submit("abcd...")                  # ten letters, one per question

``submit`` prints the score and **one line** to paste into the workshop's shared
document (chat, etherpad, a form — no labkit network service is involved)::

    labkit-concepts v2 before 6/10 abcdabcdab

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

VERSION = "v2"  # v2: options rewritten (like lengths); v1 lines are not mixed in
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


# The options of each question are of like length and specificity (the right one is
# not the longest, tests/test_concepts.py), and none states a mechanism in the words an
# exercise asks for (notebook 04's 4.2 and 4.4 ask what 2.8's and 4.0's protections do).
QUESTIONS: tuple[Concept, ...] = (
    Concept("vm-view", "What must the secondary VM see on its disk between two checkpoints?", (
        ("a", "every write the primary has made, as soon as it arrives",
         "the secondary mirrors the primary live"),
        ("b", "the disk as at the last checkpoint, plus its own writes since", ""),
        ("c", "only its own writes since the checkpoint; other blocks read as zeros",
         "the secondary starts from an empty disk"),
        ("d", "the disk as it was when replication started, plus its own writes",
         "the secondary never moves forward"))),
    Concept("hidden", "What does the hidden disk hold?", (
        ("a", "the secondary VM's own writes since the last checkpoint",
         "hidden and active swapped"),
        ("b", "the primary's new data, held back there until the next checkpoint",
         "the primary's writes are buffered, not applied"),
        ("c", "the old data the primary's writes replaced since the checkpoint", ""),
        ("d", "a full copy of the whole disk, taken anew at every checkpoint",
         "a checkpoint copies the whole disk"))),
    Concept("copy-unit", "The primary writes 512 bytes into a never-written area. What does "
                         "the backup job copy into hidden first?", (
        ("a", "nothing yet: it copies all changed areas at the next checkpoint",
         "the backup job copies on a timer or at checkpoints"),
        ("b", "the old contents of exactly those 512 bytes, nothing more",
         "the copy unit is the write's range"),
        ("c", "the old contents of the whole 64 KiB backup cluster around them", ""),
        ("d", "the old contents of the whole disk, all at once, at the first write",
         "the first write copies everything"))),
    Concept("once", "The primary writes the same block twice between two checkpoints. How many "
                    "copies into hidden does the backup job make?", (
        ("a", "one, made by the first write before its data lands", ""),
        ("b", "two, one per write, each before that write's data lands",
         "every write makes its own copy"),
        ("c", "none: the second write replaces the first before any copy",
         "writes to the same place merge"),
        ("d", "one, made at the next checkpoint for both writes together",
         "copies happen at checkpoints"))),
    Concept("checkpoint", "What does a checkpoint do to active and hidden?", (
        ("a", "commits both into the secondary disk, then empties them",
         "a checkpoint is a failover"),
        ("b", "drops every cluster of both: both are empty afterwards", ""),
        ("c", "empties hidden and keeps active, the VM's own writes",
         "the VM's writes survive a checkpoint"),
        ("d", "nothing: a checkpoint only changes the primary's side",
         "checkpoints are a primary-side thing"))),
    Concept("failover", "The primary dies and the secondary fails over. What happens to the "
                        "primary's writes since the last checkpoint?", (
        ("a", "they are kept: they had already landed on the secondary disk",
         "failover keeps whatever landed"),
        ("b", "they are undone: the saved old contents are committed over them", ""),
        ("c", "they are replayed from a log the primary sent along with each write",
         "COLO keeps a write log"),
        ("d", "the whole disk goes back to how it was when replication started",
         "failover rolls back to the start"))),
    Concept("race", "How can the secondary VM read primary data it must never see?", (
        ("a", "it cannot: the backup job always copies before the data lands",
         "copy-before-write makes every read safe"),
        ("b", "it checks hidden before the copy, then reads the disk after the write", ""),
        ("c", "its read reaches the secondary disk before the primary's NBD write arrives",
         "the danger is a read that is too early"),
        ("d", "when two primary writes to one cluster overlap and mix their data",
         "the race is between primary writes"))),
    Concept("interleave", "Where can two requests in QEMU's block layer interleave?", (
        ("a", "anywhere: the block layer runs each request on a thread of its own",
         "coroutines are preemptive threads"),
        ("b", "only where one of them yields: waiting for I/O or for a lock", ""),
        ("c", "nowhere: each request runs to its end before the next one starts",
         "requests never overlap"),
        ("d", "only at checkpoints, when COLO stops and drains both VMs",
         "scheduling happens at checkpoints"))),
    Concept("design28", "QEMU 2.8 protects the VM's reads against that race by ...", (
        ("a", "making each VM read hold a CowRequest, like a copy in progress", ""),
        ("b", "copying the whole disk into hidden at every checkpoint, in advance",
         "protection by copying everything"),
        ("c", "retrying every VM read that overlapped a primary write in flight",
         "QEMU retries reads"),
        ("d", "making the primary VM wait for the secondary VM's reads to finish",
         "the primary is throttled"))),
    Concept("design40", "QEMU 4.0 protects the VM's reads against that race by ...", (
        ("a", "keeping the read-side CowRequest of 2.8, unchanged since then",
         "nothing changed after 2.8"),
        ("b", "a protection on the copy's side, replacing 2.8's read-side one", ""),
        ("c", "one lock that every VM read and every primary write must take",
         "a global lock"),
        ("d", "nothing: 4.0 dropped the protection, as the race can never happen",
         "4.0 removed the protection without replacement"))),
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
