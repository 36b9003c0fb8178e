"""The concept check: ten questions, every wrong option a named misconception, one pasted
line per trainee, and the trainer's before/after report from those lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labkit.concepts import QUESTIONS, concept_check, report
from labkit.errors import ArgumentError, LabkitError

ROOT = Path(__file__).resolve().parent.parent
RIGHT = "".join(q.right for q in QUESTIONS)


def test_ten_questions_one_right_option_each_and_a_misconception_for_every_other():
    assert 8 <= len(QUESTIONS) <= 10
    for q in QUESTIONS:
        assert [k for k, _, _ in q.options] == ["a", "b", "c", "d"]
        assert sum(1 for _, _, why in q.options if not why) == 1, q.key
    # the right letters make no pattern a guesser could follow
    assert max(RIGHT.count(c) for c in "abcd") <= 4


def test_the_right_option_is_not_the_one_a_test_taker_would_guess():
    """Picking the longest (most specific) option must not pass the check: the right option
    is the longest (or tied for it) in at most 3 of the 10 questions, and no option states
    a mechanism in the words an exercise asks for (4.2: what 2.8 prevents; 4.4: who waits
    for whom under 4.0)."""
    from labkit.exercises import EXERCISES

    longest = [q.key for q in QUESTIONS
               if len(dict((k, t) for k, t, _ in q.options)[q.right])
               == max(len(t) for _, t, _ in q.options)]
    assert len(longest) <= 3, longest
    guess = "".join(max(q.options, key=lambda o: len(o[1]))[0] for q in QUESTIONS)
    assert concept_check("before").score(guess) <= 3
    serialise = EXERCISES["04.serialise"]
    words = [p.lower() for q in EXERCISES.values() for p in q.phrases]
    words.append({o.key: o.text for o in serialise.options}[serialise.answer].lower())
    for q in QUESTIONS:
        for _, text, _ in q.options:
            assert not [w for w in words if w in text.lower()], (q.key, text)


def test_the_answer_key_lists_every_misconception():
    key = (ROOT / "docs" / "answer-key.md").read_text()
    for q in QUESTIONS:
        assert q.text in key
        for _, text, why in q.options:
            assert (f"*{why}*" if why else "**right**") in key and text in key


def test_one_line_to_paste_before_and_feedback_after(capsys):
    line = concept_check("before").submit(RIGHT)
    out = capsys.readouterr().out
    assert line == f"labkit-concepts v2 before 10/10 {RIGHT}" and line in out
    wrong = "".join("a" if c != "a" else "b" for c in RIGHT)
    after = concept_check("after").submit(wrong)
    out = capsys.readouterr().out
    assert after.startswith("labkit-concepts v2 after 0/10")
    assert out.count("is the idea that") == len(QUESTIONS)
    before_out = concept_check("before")
    before_out.submit(wrong)
    assert "is the idea that" not in capsys.readouterr().out  # before: the score only


def test_bad_answers_are_labkit_errors():
    cc = concept_check("after")
    for bad in ("abc", "abcdabcdaz", 42):
        with pytest.raises(ArgumentError):
            cc.submit(bad)  # type: ignore[arg-type]
    with pytest.raises(LabkitError, match="'before' or 'after'"):
        concept_check("during")


def test_the_trainers_report_from_pasted_lines():
    wrong = "".join("a" if c != "a" else "b" for c in RIGHT)
    lines = ["chat: alice: " + concept_check("before").line(wrong),
             concept_check("before").line(RIGHT),
             concept_check("after").line(RIGHT),
             concept_check("after").line(RIGHT[:-1] + "?"),
             "not a result line"]
    text = report(lines)
    assert "2 before, 2 after" in text
    first = next(line for line in text.splitlines() if line.startswith(" 1 "))
    assert "50%" in first and "100%" in first
    assert f"({wrong[0]}) {QUESTIONS[0].misconception(wrong[0])}" in text
    tool = subprocess.run([sys.executable, str(ROOT / "tools" / "concept_report.py"), "-"],
                          input="\n".join(lines), capture_output=True, text=True, check=False)
    assert tool.returncode == 0 and tool.stdout.strip() == text
