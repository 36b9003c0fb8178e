"""The exercise framework: :class:`Exercise`, :class:`Choice` (multiple choice), the
:class:`Feedback` a check returns, anticipated :class:`Mistake` s and the answer forms.

The notebooks' own exercises live in ``_nb01`` ... ``_nb05``, one module per notebook;
``labkit.exercises`` is the face that re-exports them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.lab import Lab


def solutions_enabled() -> bool:
    """True when ``LABKIT_SOLUTIONS=1`` (the solved edition, the answer key)."""
    return os.environ.get("LABKIT_SOLUTIONS") == "1"


@dataclass
class Feedback:
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
    # the mechanism that answers it, in the words one would use ("never copied twice"):
    # the leak test looks for these in everything a trainee reads before answering
    phrases: tuple[str, ...] = ()
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

    def check(self, answer: Any) -> Feedback:
        """Check ``answer``; the message is about its form, a misconception, or where to look."""
        if _untouched(answer, self.placeholder):
            problem = self.form(answer) or "That is the placeholder."
            return Feedback(False, f"Replace the placeholder with your answer. {problem}",
                           "form")
        if self.normalise is not None:
            answer = self.normalise(answer)
        form_problem = self.form(answer)
        if form_problem is not None:
            return Feedback(False, form_problem, "form")
        want = self.answer
        if self.right(answer, want):
            self._revealed = True
            return Feedback(True, f"Your answer {self.described(answer)} is right. "
                                 f"{self.explanation}", "correct")
        for m in self.mistakes:
            if m.matches(answer, want):
                return Feedback(False, m.message(answer), "mistake", m.name)
        return Feedback(False, "That is not it. q.hint() gives a hint, q.hint(2) two.", "wrong")

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
        out = [] if is_int(value) and not self.hex_answer else [self.shown()]
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


def list_form(kind: str, allowed: Callable[[Any], bool], example: str,
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


def int_form(what: str, low: int, high: int, example: str) -> Callable[[Any], str | None]:
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


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def equal(answer: Any, want: Any) -> bool:
    return list(answer) == list(want) if isinstance(want, list) else answer == want


def same_set(answer: Any, want: Any) -> bool:
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
        # the right option's own words; a letter alone is in every text; and the words
        # the exercise adds (the answer said another way, e.g. in a figure's label)
        text = {o.key: o.text for o in self.options}[self.answer]
        out = [text] if len(text) >= 20 else []
        if self.forms is not None:
            out.extend(self.forms(self.answer))
        return out


def choice(name: str, question: str, options: list[Option], solve: Callable[[], str],
           explanation: str, hints: list[str], phrases: tuple[str, ...] = ()) -> Choice:
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
    q = Choice(name=name,
               question=f"{question}\n{listed}\nAnswer with one letter, {keys[0]} to {keys[-1]}.",
               solve=solve, form=form, right=lambda a, w: a == w,
               mistakes=[mistake(o) for o in options if o.misconception],
               hints=hints, explanation=explanation, placeholder="", normalise=_letter,
               phrases=phrases)
    q.options = options
    return q


def one_line(scenario: str) -> str:
    """A scenario's lines joined with "; ", as a question quotes it."""
    return scenario.strip().replace("\n", "; ")


def answer_is(value: int) -> Callable[[Any, Any], bool]:
    return lambda answer, want: answer == value


def const(value: Any) -> Callable[[Any], Any]:
    return lambda want: value


def lab_after(scenario: str, prefix: list[str], design: str = "none",
               **config: Any) -> Lab:
    """The lab of ``scenario`` after the decisions ``prefix`` (the scenario still running)."""
    from labkit.kernel import Scripted
    from labkit.lab import ScenarioRun, build_secondary
    from labkit.scenario import parse

    lab = build_secondary(design=design, policy=Scripted(prefix), **config)
    run = ScenarioRun(lab, parse(scenario, block=lab.block, size=lab.size))
    while len(lab.schedule) < len(prefix):
        run.step()
    return lab


# the scenario's `start` line runs first, as task start#1, in three decisions
START_STEPS = ["start#1"] * 3
