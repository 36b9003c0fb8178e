"""Exercises: every solution passes; each anticipated mistake gets its own feedback;
placeholders and wrong types get a message about the answer's form, never its content."""

from __future__ import annotations

import pytest

from labkit.exercises import EXERCISES, Choice, by_notebook, ex01, ex02, ex03, ex04, ex05

ALL = list(EXERCISES.values())


def test_every_notebook_has_its_exercises():
    assert [len(by_notebook(f"{n:02d}")) for n in range(1, 6)] == [3, 3, 3, 4, 3]


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
        assert (outcome.kind, outcome.mistake) == ("mistake", m.name), (q.name, outcome)
        assert outcome.message == m.message(wrong) and outcome.message.startswith(m.feedback)
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
    "01.checkpoint": ["e", 3, ["c"], None],
    "02.concurrent": ["z", 2, ["b"]],
    "03.order": ["AB", "ABCE", ["A", "A", "B", "C"], 7, None],
    "04.wake": ["e", 1, ["a"]],
    "04.serialise": ["x", 0, ("a",)],
    "05.own_race": [3, ["start"], "   ", None],
    "07.overlay": ["e", 1, ["a"]],
    "07.schedule": ["2.12", ["fleece#1"], 3, "client-read vm-write", "   "],
    "07.serialise": ["x", 0, ("a",)],
    "07.frozen": ["z", 2, ["b"]],
    "07.cbw_error": ["e", None, ["b"]],
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


@pytest.mark.parametrize("q", [q for q in ALL if isinstance(q, Choice)], ids=lambda q: q.name)
def test_every_wrong_choice_names_a_misconception_and_the_engine_picks_the_right_one(q):
    right = [o for o in q.options if not o.misconception]
    assert [o.key for o in right] == [q.answer], (q.name, q.answer)  # the engine agrees
    for o in q.options:
        if o.key != q.answer:
            assert o.misconception and o.feedback, (q.name, o.key)
            outcome = q.check(f"({o.key.upper()})")  # written as people write it
            assert outcome.kind == "mistake" and outcome.message == o.feedback


def test_answers_in_the_forms_people_write_them():
    served = ex01.served.answer
    as_printed = ["secondary disk" if a == "secondary" else a for a in served]
    assert ex01.served.check(as_printed).correct
    assert ex01.partial.check(range(len(ex01.partial.answer))).correct
    unquoted = ex04.designs.check([2.8, 4.0])
    assert unquoted.kind == "form" and "quote them" in unquoted.message
    assert ex03.order.check("".join(ex03.order.answer).lower()).correct


def test_every_order_that_gives_the_vm_0xbb_is_accepted():
    from labkit.exercises._nb03 import _winning_orders

    orders = _winning_orders()
    assert len(orders) > 1
    for order in orders:
        assert ex03.order.check(order).correct, order


def test_the_racing_schedule_gets_the_engines_own_reasons():
    q = ex04.schedule
    names = q.answer.split(" ", 1)[1]                     # without the start steps
    outcome = q.check(names)
    assert outcome.mistake == "the start steps are left out"
    assert "The engine says: choice #1 (after 0 decisions)" in outcome.message
    short = q.answer.replace("nbd-write#1*5", "nbd-write#1*4")  # one write step short
    outcome = q.check(short)
    assert "the schedule ends after" in outcome.message and "too short" in outcome.message
    near = q.answer.replace("nbd-write#1*5 vm-read#1", "nbd-write#1*4 vm-read#1 nbd-write#1")
    outcome = q.check(near)
    assert outcome.mistake == "the read resumes between the copy and the landing"
    assert "e.g. 'start#1" not in q.check("x").message   # the form's example gives nothing


def test_a_reveal_cell_runs_only_after_a_right_answer_or_the_solution(capsys):
    import copy

    from labkit.exercises import Exercise

    q = ex02.concurrent
    fresh = copy.copy(q)
    vars(fresh)["_revealed"] = False
    assert not Exercise.answered(fresh)
    assert "runs once q.check" in capsys.readouterr().out
    fresh.check("d")
    assert not fresh.answered()
    fresh.check(fresh.answer)
    assert fresh.answered()
    other = copy.copy(q)
    vars(other)["_revealed"] = False
    other.solution()
    assert other.answered()


def test_the_solved_edition_writes_each_answer_into_its_cell():
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent / "tools"))
    from build_notebooks import make

    nb = make("04-conflicting-reads", "solutions")
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "q = ex04." in c.source]
    assert cells and not any("your_answer" in c for c in cells)
    assert any(repr(ex04.schedule.answer) in c for c in cells)


OPEN_TASKS = {"03.order", "04.schedule", "05.own_race"}  # checked by running the answer


def test_each_notebook_has_an_exercise_that_needs_more_than_reading_an_output():
    for n in range(1, 6):
        kinds = [q.name for q in by_notebook(f"{n:02d}")
                 if isinstance(q, Choice) or q.name in OPEN_TASKS]
        assert kinds, f"notebook {n:02d} has only questions answered by reading an output"
    # the 4.0 mechanism and the wake rule each have their own prediction
    assert "serialising" in ex04.serialise.explanation
    assert "in flight" in ex04.serialise.explanation
    assert "qemu_co_queue_run_restart" in " ".join(o.feedback for o in ex04.wake.options)


def test_4_1_takes_the_schedule_as_the_playground_shows_it() -> None:
    """A trainee copies the playground's "schedule so far" line: the same choices."""
    from labkit.exercises import ex04
    from labkit.exercises._nb04 import _schedule_as_shown

    shown = ("schedule so far (10 decisions, 1 preemption): start#1 ×3 · vm-read#1 · "
             "↯ nbd-write#1 ×5 · vm-read#1")
    assert _schedule_as_shown(shown) == "start#1*3 vm-read#1 nbd-write#1*5 vm-read#1"
    assert ex04.schedule.check(shown).correct
    assert not ex04.schedule.check("start#1 ×3 · vm-read#1 ×2").correct


def test_7_2_takes_the_schedule_with_or_without_the_fleece_step() -> None:
    """The playground takes the ``fleece`` line's step itself: a schedule that leaves
    ``fleece#1`` out is the same play, and so is the playground's "schedule so far" line."""
    from labkit.exercises import ex07

    q = ex07.schedule
    full = q.answer
    assert full.startswith("fleece#1 ")
    assert q.check(full).correct
    assert q.check(full.split(" ", 1)[1]).correct
    shown = ("schedule so far (8 decisions, 1 preemption): fleece#1 · client-read#1 · "
             "↯ vm-write#1 ×5 · client-read#1")
    assert q.check(shown).correct
    assert q.check("client-read#1 · ↯ vm-write#1 ×5 · client-read#1").correct
    # without the fleece step a losing or unfinished schedule is still refused, with why
    late = q.check("client-read#1 vm-write#1*5")
    assert not late.correct and "too short" in late.message
    assert not q.check("vm-write#1*5 client-read#1*2").correct


def test_own_race_asks_for_a_race_not_shown_and_says_what_is_missing():
    """5.3 wants a 2.8 violation with no backup cluster shared by a VM write and a primary
    write: the shipped partial-cluster race (one shared cluster) and a VM write whose fill
    cannot reach the primary's cluster each get feedback aimed at what they miss."""
    from labkit import scenarios
    from labkit.exercises import ex05

    q = ex05.own_race
    assert q.check(q.answer).correct
    shipped = q.check(scenarios.load("partial-cluster-vm-write"))
    assert shipped.mistake == "the shipped race again" and "Backup cluster 0" in shipped.message
    apart = q.check("# config: size=128K active_cluster=64K\nstart\n"
                    "par { vwrite 5b 4K 0xcc; pwrite 20b 4K 0xbb }\nvread 20b 4K orig\n")
    assert apart.mistake == "qcow2 fills only the VM write's own backup cluster"
    assert "design 2.8: safe" in apart.message
    assert "active_cluster=" not in q.question + " ".join(q.hints)
