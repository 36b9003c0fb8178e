"""The seeded quiz: same seed, same quiz; answers come from the engine; checks help."""

from __future__ import annotations

import pytest

from labkit.cli import main
from labkit.quiz import make_quiz


def test_same_seed_same_quiz_and_answers(capsys):
    assert main(["quiz", "--seed", "7"]) == 0
    first = capsys.readouterr().out
    assert main(["quiz", "--seed", "7"]) == 0
    assert capsys.readouterr().out == first
    assert "Scenario:" in first and "Q1 (hidden)" in first and "answer:" not in first
    assert make_quiz(7).text() != make_quiz(8).text()


def test_answers_are_the_engines(capsys):
    quiz = make_quiz(3)
    answers = quiz.answers()
    lab = quiz.lab
    view = lab.layers()["vm-view"]
    q = next(q for q in quiz.questions if q.key == "vm-read")
    assert answers["vm-read"] == view.data[q.block * 4096]
    assert main(["quiz", "--seed", "3", "--answers"]) == 0
    out = capsys.readouterr().out
    assert f"answer: {answers['vm-read']:#04x}" in out
    assert f"answer: {answers['hidden']}" in out


def test_checks_accept_the_answer_and_explain_a_wrong_one():
    quiz = make_quiz(5)
    answers = quiz.answers()
    for key, value in answers.items():
        ok, _ = quiz.check(key, value)
        assert ok
    ok, msg = quiz.check("hidden", [])
    assert not ok and "Missing" in msg and "64 KiB" in msg
    ok, msg = quiz.check("vm-read", "0x15")
    assert not ok and "integer" in msg
    with pytest.raises(KeyError, match="no question 'nope'"):
        quiz.check("nope", 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        make_quiz(-1)
