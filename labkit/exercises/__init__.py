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

Layout: ``_core`` holds the framework (:class:`Exercise`, :class:`Choice`,
:class:`Option`, :class:`Mistake`, :class:`Feedback`, the answer forms); ``_nb01`` ...
``_nb05`` and ``_nb07`` (image fleecing) hold each notebook's exercises.  A new
notebook's exercises go in a new
``_nbNN`` module, added to ``_GROUPS`` below.
"""

from __future__ import annotations

from collections.abc import Sequence

from labkit.exercises._core import (
    Choice,
    Exercise,
    Feedback,
    Mistake,
    Option,
    choice,
    solutions_enabled,
)
from labkit.exercises._nb01 import AFTER_CHECKPOINT, ex01
from labkit.exercises._nb02 import ex02
from labkit.exercises._nb03 import ex03
from labkit.exercises._nb04 import WAKE, ex04
from labkit.exercises._nb05 import ex05
from labkit.exercises._nb07 import BREAK07, RACE07, ex07

_GROUPS = (ex01, ex02, ex03, ex04, ex05, ex07)

EXERCISES: dict[str, Exercise] = {
    q.name: q for group in _GROUPS for q in vars(group).values()
}


def by_notebook(prefix: str) -> Sequence[Exercise]:
    """The exercises of notebook ``prefix`` ("01" ... "05", "07"), in order."""
    return [q for name, q in EXERCISES.items() if name.startswith(prefix + ".")]


__all__ = ["AFTER_CHECKPOINT", "BREAK07", "EXERCISES", "RACE07", "WAKE", "Choice", "Exercise",
           "Feedback", "Mistake", "Option", "by_notebook", "choice", "ex01", "ex02", "ex03",
           "ex04", "ex05", "ex07", "solutions_enabled"]
