"""The widgets, headless: click buttons, read labels, banners and the text twins; Undo is exact."""

from __future__ import annotations

import importlib.util
import re

import pytest

import labkit as lk
from labkit import scenarios
from labkit.lab import ScenarioRun
from labkit.widgets import RaceReplay, SchedulerPlayground, WorkflowStepper

WORKFLOW = """start
pwrite 5b 4K 0xbb
vread 5b 4K
"""
RACE = """start
par { vread 5b 4K; pwrite 5b 4K 0xbb }
dump after the race
"""
SIZE = "128K"


def state(lab: lk.Lab) -> tuple:
    """Everything Undo must restore: layers, trace and schedule."""
    layers = {name: (None if lay is None else (lay.data, lay.alloc.tobytes()))
              for name, lay in lab.layers().items()}
    return layers, list(lab.trace), list(lab.schedule)


def no_noise(text: str) -> None:
    """Text twins carry no memory addresses, widget ids or timings."""
    assert not re.search(r"0x[0-9a-f]{9,}", text), "a memory address in a text twin"
    assert "model_id" not in text and " ms" not in text and "seconds" not in text


# --- the engine helper the widgets step with ---------------------------------------------------


MIXED = "start\npar { vwrite 0 8K 0xcc; pwrite 4K 4K 0xbb; vread 0 12K }\ncheckpoint\nfailover"


@pytest.mark.parametrize("text", [WORKFLOW, RACE, MIXED])
def test_scenario_run_steps_exactly_like_play(text):
    played = lk.run_scenario(text, size=SIZE, design="none")
    lab = lk.build_secondary(size=SIZE, design="none")
    run = ScenarioRun(lab, text)
    while not run.done:
        run.step()
    assert state(lab) == state(played)
    assert [t for t, _ in lab.dumps] == [t for t, _ in played.dumps]
    assert lab.log == played.log and lab.violations() == played.violations()


def test_writers_name_who_wrote_each_byte():
    lab = lk.run_scenario("start\npwrite 0 4K 0xbb\nvwrite 8K 4K 0xcc\npwrite 12K 4K 0xbb",
                          size=SIZE)
    w = lab.writers()
    assert w[0xBB] == ["nbd-write#1", "nbd-write#2"] and w[0xCC] == ["vm-write#1"]
    assert w[0x15] == ["original"]


# --- WorkflowStepper ------------------------------------------------------------------


def test_stepper_names_steps_one_two_three_in_order():
    s = WorkflowStepper(WORKFLOW, size=SIZE)
    assert "Before step 1" in s.step_label.value
    assert s.undo_button.disabled and s.reset_button.disabled and not s.step_button.disabled
    seen = []
    while not s.session.done:
        s.step_button.click()
        if not seen or seen[-1] != s.current_step:
            seen.append(s.current_step)
        assert f"Step {s.current_step}" in s.step_label.value or s.current_step == 0
    assert seen == [0, 2, 3], "step 1 and the COW's begin share one decision; then step 3"
    assert s.step_button.disabled and s.run_button.disabled
    assert "Step 3" in s.text() and "steps 1-3 done for nbd-write#1" in s.text()


def test_stepper_collapsed_cow_is_one_click_and_expand_shows_each_cluster():
    collapsed = WorkflowStepper(WORKFLOW, size=SIZE)
    expanded = WorkflowStepper(WORKFLOW, size=SIZE, expand=True)
    for s in (collapsed, expanded):
        while s.current_step == 0:
            s.step_button.click()
    assert collapsed.current_step == 2  # the click that began the COW
    collapsed.step_button.click()  # ... and the one that runs it to its end
    assert collapsed.current_step == 3
    lines = collapsed.narration_lines()
    assert any("copied cluster(s) 0" in x for x in lines)
    assert expanded.current_step == 2  # still inside the COW
    clicks = 0
    while expanded.current_step == 2:
        expanded.step_button.click()
        clicks += 1
        if any("write of the old contents to hidden" in x for x in expanded.narration_lines()):
            break
    assert clicks >= 1
    # the expand toggle changes the narration of the last click without stepping
    before = len(collapsed.lab.schedule)
    collapsed.expand_button.value = True
    assert len(collapsed.lab.schedule) == before
    assert any("write of the old contents to hidden" in x
               for x in collapsed.narration_lines())


def test_stepper_undo_returns_to_the_exact_previous_state():
    s = WorkflowStepper(WORKFLOW, size=SIZE, expand=True)
    snapshots = [state(s.lab)]
    texts = [s.text()]
    for _ in range(8):
        s.step_button.click()
        snapshots.append(state(s.lab))
        texts.append(s.text())
    for i in range(8, 0, -1):
        old_lab = s.lab
        s.undo_button.click()
        assert s.lab is not old_lab, "Undo rebuilds the lab and replays the prefix"
        assert state(s.lab) == snapshots[i - 1]
        assert s.text() == texts[i - 1]
    assert s.undo_button.disabled
    s.run_button.click()
    assert s.session.done
    s.reset_button.click()
    assert state(s.lab) == snapshots[0] and s.reset_button.disabled


def test_stepper_undo_after_run_and_outline_of_last_step():
    s = WorkflowStepper(WORKFLOW, size=SIZE)
    s.step_button.click()
    mid = state(s.lab)
    s.run_button.click()
    s.undo_button.click()
    assert state(s.lab) == mid


def test_stepper_on_a_lab_steps_but_cannot_undo():
    lab = lk.build_secondary(size=SIZE)
    lab.start()
    lab.primary_write(0, 4096, 0xBB)
    s = WorkflowStepper(lab)
    assert s.undo_button.disabled
    s.step_button.click()
    s.step_button.click()
    assert s.current_step == 3 and s.undo_button.disabled and s.reset_button.disabled


def test_stepper_on_a_factory_can_undo():
    def factory() -> lk.Lab:
        lab = lk.build_secondary(size=SIZE)
        lab.start()
        lab.primary_write(0, 4096, 0xBB)
        lab.vm_read(0, 4096)
        return lab

    s = WorkflowStepper(factory, expand=True)
    first = state(s.lab)
    s.step_button.click()
    s.step_button.click()
    s.undo_button.click()
    s.undo_button.click()
    assert state(s.lab) == first


def test_stepper_text_twin_is_deterministic_and_is_the_plain_text_repr():
    def make() -> WorkflowStepper:
        s = WorkflowStepper(WORKFLOW, size=SIZE)
        for _ in range(4):
            s.step_button.click()
        return s

    a, b = make(), make()
    assert a.text() == b.text()
    no_noise(a.text())
    assert "block(4 KiB)" in a.text() and "runnable:" in a.text()
    assert a._repr_mimebundle_()["text/plain"] == a.text()
    assert a.figure.image.value[:8] == b"\x89PNG\r\n\x1a\n"


# --- SchedulerPlayground --------------------------------------------------------------


def test_playground_buttons_blocked_reason_and_win_banner():
    p = SchedulerPlayground(RACE, design="none", size=SIZE)
    # "start" ran by itself: the par block's two tasks wait for the trainee
    assert sorted(p.task_buttons) == ["nbd-write#1", "vm-read#1"]
    assert all(not b.disabled for b in p.task_buttons.values())
    assert p.banner.value == "" and not p.won
    p.task_buttons["vm-read#1"].click()  # the read reaches the secondary disk and parks
    while "nbd-write#1" in p._shown:
        p.task_buttons["nbd-write#1"].click()  # the write runs steps 1-3 to the end
    assert "BANNER" not in p.text()
    p.task_buttons["vm-read#1"].click()  # the read resumes: primary data!
    assert p.won and "You won" in p.banner.value and "conflicting read" in p.banner.value
    assert "BANNER: You won — conflicting read!" in p.text()
    assert p.session.done and p.task_box.children == ()


def test_playground_design_28_shows_the_blocked_task_and_why():
    p = SchedulerPlayground(RACE, design="2.8", size=SIZE)
    p.task_buttons["vm-read#1"].click()  # the read holds a CowRequest over block 5's cluster
    p.task_buttons["nbd-write#1"].click()  # the write's COW must wait for it
    b = p.task_buttons["nbd-write#1"]
    assert b.disabled
    assert b.description == "nbd-write#1 waits for CowRequest of vm-read#1 on clusters 0-0"
    assert "[disabled] nbd-write#1 waits for CowRequest of vm-read#1 on clusters 0-0" in p.text()
    with pytest.raises(ValueError, match="waits for CowRequest"):
        p.choose("nbd-write#1")
    while not p.session.done:
        p.choose(p.session.runnable()[0].name)
    assert not p.won and "without a conflicting read" in p.banner_text()


def test_playground_undo_is_exact_and_design_switch_replays_the_choices():
    p = SchedulerPlayground(RACE, design="none", size=SIZE)
    snaps = [state(p.lab)]
    order = ["vm-read#1"] + ["nbd-write#1"] * 5 + ["vm-read#1"]
    for name in order:
        p.choose(name)
        snaps.append(state(p.lab))
    assert p.won
    p.undo_button.click()
    assert state(p.lab) == snaps[-2] and not p.won and p.banner.value == ""
    p.undo_button.click()
    assert state(p.lab) == snaps[-3]
    # the same choices under 2.8: the write's COW cannot run while the read holds its
    # CowRequest, so the replay stops where the write would have to wait
    p.design_buttons.value = "2.8"
    assert p.design == "2.8" and p.lab.design == "2.8"
    assert "cannot run next" in p.note and "CowRequest of vm-read#1" in p.note
    assert p.task_buttons["nbd-write#1"].disabled
    p.design_buttons.value = "none"
    assert p.design == "none"
    p.reset_button.click()
    assert state(p.lab) == snaps[0]


def test_playground_timeline_toggle_and_text_twin():
    p = SchedulerPlayground(RACE, design="none", size=SIZE, timeline=True)
    assert p.timeline is not None and p.timeline_box.children
    p.choose("vm-read#1")
    assert [ln.task for ln in p.timeline.model.lanes] == ["vm-read#1", "nbd-write#1"]
    p.timeline_button.value = False
    assert p.timeline_box.children == ()
    no_noise(p.text())
    assert p._repr_mimebundle_()["text/plain"] == p.text()


# --- RaceReplay -----------------------------------------------------------------------

needs_explorer = pytest.mark.skipif(importlib.util.find_spec("labkit.explore") is None,
                                    reason="the explorer (labkit.explore) is not there yet")


@needs_explorer
def test_race_replay_verdicts_load_and_scrub():
    r = RaceReplay(scenarios.load("canonical"))
    verdicts = {d: r.results[d].verdict for d in r.designs}
    assert verdicts == {"none": "violation", "2.8": "safe", "4.0": "safe"}
    assert r.loaded == ("none", 0)
    assert r.slider.continuous_update is False and r.slider.max == len(r.schedule)
    n = len(r.schedule)
    full = lk.replay(scenarios.load("canonical"), r.schedule, design="none")
    # scrub forward one decision at a time, then jump: each position is the prefix's state
    for k in range(1, n + 1):
        r.next_button.click()
        assert r.position == k and r.slider.value == k
        assert r.lab.schedule == r.schedule[:k]
    assert state(r.lab)[0] == state(full)[0] and r.lab.violations() == full.violations()
    r.slider.value = 4
    assert r.position == 4 and list(r.lab.schedule) == r.schedule[:4]
    r.prev_button.click()
    assert r.position == 3
    text = r.text()
    assert "design none: violation" in text and "design 2.8: safe" in text
    assert "position: after 3 of" in text
    no_noise(text)
    assert RaceReplay(scenarios.load("canonical")).text().split("position")[0] == \
        text.split("position")[0]
    assert r.timeline.model.decisions == n


@needs_explorer
def test_race_replay_without_counterexample():
    r = RaceReplay(scenarios.load("canonical"), designs=("2.8", "4.0"))
    assert r.loaded is None and r.load_button.disabled and r.slider.disabled
    assert "no counterexample" in r.text()
