"""Exercises: engine-computed solutions pass, wrong answers get a helpful message."""

from __future__ import annotations

import pytest

from labkit.exercises import ex01, ex02, ex03, ex04, ex05

ALL = [ex01.served, ex01.partial, ex02.copied, ex02.epochs, ex03.vm_reads, ex03.failover,
       ex04.schedule, ex04.designs, ex05.partial, ex05.preemptions]

WRONG = {
    "01.served": (["secondary"] * 8, "Position 0"),
    "01.partial": ([5], "Missing blocks"),
    "02.copied": ([0, 0, 1], "has 3 cluster indices"),
    "02.epochs": ([2, 0, 0], "wrong order"),
    "03.vm_reads": (0xB8, "visible to the VM"),
    "03.failover": (0xBA, "visible to the VM"),
    "04.schedule": ("start#1*3 nbd-write#1*9 vm-read#1*3", "does not fit the scenario"),
    "04.designs": (["none"], "Missing designs"),
    "05.partial": ({"none": "violation", "2.8": "safe", "4.0": "safe"}, "design '2.8'"),
    "05.preemptions": (3, "3 is not it"),
}


@pytest.mark.parametrize("q", ALL, ids=lambda q: q.name)
def test_solution_is_accepted_and_wrong_answers_explained(q):
    assert q.check(q._answer()).correct
    wrong, message = WRONG[q.name]
    outcome = q.check(wrong)
    assert not outcome.correct and message in outcome.message
    assert repr(outcome).startswith("Not yet. ")
    assert q.hint().startswith("Hint 1: ") and q.solution().startswith("Solution: ")


def test_placeholder_and_solutions_switch(monkeypatch):
    q = ex02.copied
    monkeypatch.delenv("LABKIT_SOLUTIONS", raising=False)
    assert q.your_answer([]) == []
    placeholder = q.check([])
    assert not placeholder.correct and "Replace the placeholder" in placeholder.message
    monkeypatch.setenv("LABKIT_SOLUTIONS", "1")
    assert q.check(q.your_answer([])).correct


def test_a_schedule_that_fits_but_does_not_race_is_explained():
    outcome = ex04.schedule.check("start#1*3 vm-read#1*3 nbd-write#1*9")
    assert not outcome.correct
    assert "does not fit" in outcome.message or "no primary data" in outcome.message
    fifo = ex04.schedule.check("start#1*3 vm-read#1*2 nbd-write#1*5 vm-read#1 vm-read#2*2")
    assert not fifo.correct
