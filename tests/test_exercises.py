"""Exercises: every solution passes; each anticipated mistake gets its own feedback;
placeholders and wrong types get a message about the answer's form, never its content."""

from __future__ import annotations

import pytest

from labkit.exercises import EXERCISES, by_notebook, ex02, ex03, ex04, ex05

ALL = list(EXERCISES.values())


def test_every_notebook_has_its_exercises():
    assert [len(by_notebook(f"{n:02d}")) for n in range(1, 6)] == [2, 2, 2, 2, 2]


@pytest.mark.parametrize("q", ALL, ids=lambda q: q.name)
def test_the_solution_passes(q):
    outcome = q.check(q.answer)
    assert outcome.correct and outcome.kind == "correct"
    assert repr(outcome).startswith("Correct! ") and q.explanation in repr(outcome)
    assert q.solution().startswith("Solution: ") and q.shown() in q.solution()
    assert q.hint().startswith("Hint 1: ")


@pytest.mark.parametrize("q", ALL, ids=lambda q: q.name)
def test_each_anticipated_mistake_gets_its_feedback(q):
    assert len(q.mistakes) >= 2, f"{q.name}: fewer than two anticipated mistakes"
    feedbacks = [m.feedback for m in q.mistakes]
    assert len(set(feedbacks)) == len(feedbacks)
    for m in q.mistakes:
        wrong = m.example(q.answer)
        assert wrong != q.answer
        outcome = q.check(wrong)
        assert not outcome.correct, (q.name, m.name, wrong)
        assert (outcome.kind, outcome.mistake, outcome.message) == ("mistake", m.name, m.feedback)
        assert repr(outcome).startswith("Not yet. ")
        # the feedback never states the solution
        assert q.shown() not in m.feedback, (q.name, m.name)


@pytest.mark.parametrize("q", ALL, ids=lambda q: q.name)
def test_the_untouched_placeholder_gets_a_form_message(q):
    outcome = q.check(q.placeholder)
    assert not outcome.correct and outcome.kind == "form"
    assert "Replace the placeholder" in outcome.message
    assert q.shown() not in outcome.message
    assert not any(m.feedback in outcome.message for m in q.mistakes)


WRONG_TYPES = {
    "01.served": ["hidden", 3, ["top"] * 8, ["hidden"] * 3],
    "01.partial": [5, "0-15", [5.0], [40]],
    "02.copied": [0, "0 1", [5, 15, 16, 6], [True]],
    "02.epochs": [0, [-1], {"0": 1}],
    "03.vm_reads": ["0xb7", "b7", 0x1B7, -1, 7.0, True, [0xB7]],
    "03.failover": ["0xb9", 256, None],
    "04.schedule": ["2.8", ["start#1"], 3, "vm-read nbd-write", "   "],
    "04.designs": ["2.8", "none", 2.8, ["2.9"], ["4"]],
    "05.partial": ["violation", ["none"], {"none": "safe"}, {"none": "ok", "2.8": "safe",
                                                                "4.0": "safe"},
                   {"none": "safe", "2.8": "safe", "4.0": "safe", "5.0": "safe"}],
    "05.preemptions": ["1", 1.0, -1, [1], True],
}


@pytest.mark.parametrize("q", ALL, ids=lambda q: q.name)
def test_wrong_types_get_a_message_about_the_form(q):
    for wrong in WRONG_TYPES[q.name]:
        outcome = q.check(wrong)
        assert not outcome.correct and outcome.kind == "form", (q.name, wrong, outcome)
        echoed = outcome.message.replace(repr(wrong), "").replace(str(wrong), "")
        if len(q.shown()) > 1:  # a one-digit answer is in too many messages to test
            assert q.shown() not in echoed, (q.name, wrong)


def test_the_reported_misleading_feedback_is_gone():
    # issue 14: "[0,0,1] gets 'Your list has 3 ... the answer has 2'"
    assert "the answer has" not in ex02.copied.check([0, 0, 1]).message
    assert ex02.copied.check([0, 0, 1]).mistake == "a cluster is copied on every write"
    # "0xc7 gets a hint that also describes the right answer"
    assert ex03.vm_reads.check(0xC7).message != ex03.vm_reads.check(0xB8).message
    assert "0xb7" not in ex03.vm_reads.check(0xC7).message
    # "q.check('2.8') answers not expected: ['.', '2', '8']"
    msg = ex04.designs.check("2.8").message
    assert "square brackets" in msg and "'.'" not in msg
    # "the {} placeholder in 05 gets a content hint"
    assert ex05.partial.check({}).kind == "form"
    # "5.1's explanation says 'see notebook 05' inside notebook 05"
    for q in ALL:
        assert f"notebook {q.name[:2]}" not in q.explanation


def test_a_wrong_answer_that_is_not_anticipated_gives_nothing_away():
    outcome = ex02.copied.check([2, 3])
    assert outcome.kind == "wrong" and "hint" in outcome.message
    assert "2" not in outcome.message.replace("q.hint(2)", "")


def test_solutions_switch(monkeypatch):
    q = ex02.copied
    monkeypatch.delenv("LABKIT_SOLUTIONS", raising=False)
    assert q.your_answer([]) == []
    monkeypatch.setenv("LABKIT_SOLUTIONS", "1")
    assert q.check(q.your_answer([])).correct


def test_answer_forms_include_the_text_the_leak_test_looks_for():
    assert "[0, 1]" in ex02.copied.answer_forms()
    assert "0xb7" in ex03.vm_reads.answer_forms()
    assert f"{ex05.preemptions.answer} preemption)" in ex05.preemptions.answer_forms()
    assert any("2.8=" in f for f in ex05.partial.answer_forms())
