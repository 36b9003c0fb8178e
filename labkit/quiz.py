"""A seeded quiz generator: a small scenario and questions, answered by the engine.

``make_quiz(seed)`` draws a short COLO history (primary writes, VM writes, a
checkpoint) on a 256 KiB disk and asks what the hidden disk holds, what the VM
reads and what failover leaves on the secondary disk.  The answers are never
written by hand: :meth:`Quiz.answers` runs the scenario on the simulator.
Same seed, same quiz, same answers — in the CLI (``labkit quiz --seed N``) and
in the quiz widget alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .errors import ArgumentError, ConfigError, UnknownName
from .lab import Lab, run_scenario

QUIZ_CONFIG = dict(size="256K", block="4K", hidden_cluster="4K", active_cluster="4K")
NBLOCKS = 64


@dataclass(frozen=True)
class Question:
    """One question; ``kind`` says how its answer is computed and compared."""

    key: str
    text: str
    kind: str  # "blocks" (a sorted list of block numbers) or "byte" (an int 0-255)
    block: int = -1


class Quiz:
    """A generated scenario, its questions, and the engine's answers."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
            raise ArgumentError(f"quiz seed must be a non-negative integer, got {seed!r}")
        if seed < 0:
            raise ConfigError(f"quiz seed must be a non-negative integer, got {seed!r}")
        seed = int(seed)  # a numpy integer is read as the Python integer it holds
        self.seed = seed
        rng = random.Random(seed)
        lines = ["start"]
        blocks = rng.sample(range(NBLOCKS), 6)
        p1, p2, v1, p3, v2, probe = blocks
        byte = iter(range(0x80 + 0x10 * (seed % 4), 0x100))
        lines.append(f"pwrite {p1}b 4K {next(byte):#04x}")
        lines.append(f"vwrite {v1}b 4K {next(byte):#04x}")
        if rng.random() < 0.5:
            lines.append("checkpoint")
        lines.append(f"pwrite {p2}b 4K {next(byte):#04x}")
        lines.append(f"pwrite {p3}b 4K {next(byte):#04x}")
        lines.append(f"vwrite {v2}b 4K {next(byte):#04x}")
        self.scenario = "\n".join(lines) + "\n"
        read_block = rng.choice([p1, p2, p3, v1, v2, probe])
        after_block = rng.choice([p2, p3, v2, p1])
        self.questions = [
            Question("hidden", "Which blocks does the hidden disk hold (allocated) at the end? "
                               "Answer a list of block numbers.", "blocks"),
            Question("vm-read", f"What byte does the secondary VM read at block {read_block}? "
                                f"(the original pattern is 0x10 + block)", "byte", read_block),
            Question("failover", f"After a failover at the end, what byte does the secondary "
                                 f"disk hold at block {after_block}?", "byte", after_block),
        ]

    @cached_property
    def lab(self) -> Lab:
        """The scenario run on the simulator (the source of every answer)."""
        return run_scenario(self.scenario, **QUIZ_CONFIG)

    def answers(self) -> dict[str, object]:
        """Each question's answer, computed by the engine."""
        lab = self.lab
        layers = lab.layers()
        hidden = layers["hidden"]
        assert hidden is not None
        per = lab.block // 512
        held = [b for b in range(NBLOCKS) if hidden.alloc[b * per:(b + 1) * per].all()]
        out: dict[str, object] = {"hidden": held}
        view = layers["vm-view"]
        assert view is not None
        for q in self.questions:
            if q.key == "vm-read":
                out[q.key] = view.data[q.block * lab.block]
        after = run_scenario(self.scenario + "failover\n", **QUIZ_CONFIG)
        for q in self.questions:
            if q.key == "failover":
                out[q.key] = after.secondary.peek(q.block * lab.block, 512)[0]
        return out

    def check(self, key: str, answer: object) -> tuple[bool, str]:
        """Compare an answer with the engine's; a message that helps either way."""
        questions = {q.key: q for q in self.questions}
        if key not in questions:
            raise UnknownName(f"no question {key!r}; questions: {', '.join(questions)}")
        q = questions[key]
        want = self.answers()[key]
        if q.kind == "blocks":
            try:
                items: Any = answer  # anything iterable; the except says what is not
                got = sorted({int(b) for b in items})
            except (TypeError, ValueError):
                return False, "Answer a list of block numbers, e.g. [0, 1, 2]."
            if got == want:
                return True, f"Correct: {want}."
            assert isinstance(want, list)
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            return False, (f"Not yet. Missing: {missing or 'none'}; not in hidden: "
                           f"{extra or 'none'}. Hint: the backup copies whole 64 KiB clusters "
                           f"(16 blocks) around each primary write, once per checkpoint epoch.")
        if not isinstance(answer, int) or isinstance(answer, bool):
            return False, "Answer a byte as an integer, e.g. 0x15."
        if answer == want:
            return True, f"Correct: {want:#04x}."
        return False, (f"Not yet: {answer:#04x} is not it. Hint: the VM sees the last "
                       f"checkpoint plus its own writes; failover keeps the VM's view.")

    def text(self, with_answers: bool = False) -> str:
        """The quiz as the CLI prints it."""
        out = [f"labkit quiz, seed {self.seed}", "",
               "Disk: 256 KiB, 64 blocks of 4 KiB; block k holds 0x10+k; hidden and active "
               "have 4 KiB clusters;", "the backup cluster is 64 KiB (16 blocks).", "",
               "Scenario:"]
        out.extend(f"  {line}" for line in self.scenario.splitlines())
        out.append("")
        answers = self.answers() if with_answers else {}
        for i, q in enumerate(self.questions, start=1):
            out.append(f"Q{i} ({q.key}). {q.text}")
            if with_answers:
                a = answers[q.key]
                out.append(f"   answer: {a:#04x}" if isinstance(a, int) else f"   answer: {a}")
        return "\n".join(out)


def make_quiz(seed: int) -> Quiz:
    """The quiz for ``seed`` (the same seed always gives the same quiz)."""
    return Quiz(seed)
