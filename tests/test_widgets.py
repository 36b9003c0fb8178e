"""The widgets, headless: click buttons, read labels, banners and the text twins; Undo is exact."""

from __future__ import annotations

import html
import importlib.util
import re

import pytest

import labkit as lk
from labkit import scenarios
from labkit.lab import ScenarioRun
from labkit.sources import writers
from labkit.widgets import (
    RaceReplay,
    SchedulerPlayground,
    WorkflowStepper,
    read_results,
    whereabouts,
)

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
    w = writers(lab)
    assert w[0xBB] == ["nbd-write#1", "nbd-write#2"] and w[0xCC] == ["vm-write#1"]
    assert w[0x15] == ["original"]


# --- WorkflowStepper ------------------------------------------------------------------


def test_stepper_starts_at_step_1_and_names_step_1_2_3_and_the_vm_read():
    s = WorkflowStepper(WORKFLOW, size=SIZE)
    # start's own decisions are the initial state, not clicks
    assert len(s.lab.schedule) == 3 and s.lab.state == "running" and len(s.states) == 1
    assert "Step 1 is next" in s.step_label.value and s.stage.name == "Ready"
    assert s.undo_button.disabled and s.reset_button.disabled and not s.step_button.disabled
    seen = []
    while not s.session.done:
        s.step_button.click()
        seen.append(s.stage.name)
        assert s.stage.title in html.unescape(s.step_label.value)
    assert seen == ["Step 1", "Step 2", "Step 3", "VM read"], "one click per step"
    assert s.step_button.disabled and s.run_button.disabled
    assert "VM read: what the secondary VM gets" in s.text()
    assert ("vm-read#1: finished: returned 0x15 for block 5 (from hidden) — what the VM "
            "should see ✓") in s.text()
    s.reset_button.click()
    assert s.stage.name == "Ready" and len(s.lab.schedule) == 3


def test_stepper_twin_says_step_3_only_once_the_data_has_landed():
    """The prose: step 3 is the write resuming and its data landing (it used to say
    Step 3 while the data was still in flight)."""
    for expand in (False, True):
        s = WorkflowStepper(WORKFLOW, size=SIZE, expand=expand)
        while not s.session.done:
            s.step_button.click()
            secondary = s.lab.layers()["secondary"].data[5 * 4096]
            twin = s.text().splitlines()[1]
            if twin.startswith("Step 3"):
                assert secondary == 0xBB, "Step 3 while the old data is still there"
            elif twin.startswith(("Step 1", "Step 2")):
                assert secondary == 0x15, f"{twin}: the new data landed already"
        # hidden holds the old copy before the secondary row changes
        assert s.lab.layers()["hidden"].data[5 * 4096] == 0x15


def test_demo_loop_of_notebook_02_prints_the_steps_in_the_prose_order():
    demo = WorkflowStepper("start\npwrite 5b 4K 0xbb\nvread 5b 4K", size="128K")
    shown: list[int] = []
    heads = []
    while not demo.session.done:
        demo.step()
        if demo.current_step not in shown:
            shown.append(demo.current_step)
            heads.append(demo.text().splitlines()[1].split(":")[0])
    assert heads == ["Step 1", "Step 2", "Step 3", "VM read"]


def test_stepper_collapsed_cow_is_one_click_and_expand_shows_each_cluster():
    collapsed = WorkflowStepper(WORKFLOW, size=SIZE)
    expanded = WorkflowStepper(WORKFLOW, size=SIZE, expand=True)
    for s in (collapsed, expanded):
        s.step_button.click()
        assert s.current_step == 1  # the write reached the disk, the COW began
    collapsed.step_button.click()  # ... the next click runs the COW to its end
    assert collapsed.current_step == 2
    lines = collapsed.narration_lines()
    assert any("copied backup cluster(s) 0" in x for x in lines)
    assert any("the copy is done; its own write resumes" in x for x in lines)
    # no line carries a step number of its own that could contradict the header
    assert not any(x.startswith("[step") for x in lines)
    clicks = 0
    while expanded.current_step in (1, 2):
        expanded.step_button.click()
        clicks += 1
        if any("write of the old contents to hidden" in x for x in expanded.narration_lines()):
            break
    assert clicks >= 1 and expanded.current_step == 2
    # the expand toggle changes the narration of the last click without stepping
    before = len(collapsed.lab.schedule)
    collapsed.expand_button.value = True
    assert len(collapsed.lab.schedule) == before
    assert any("write of the old contents to hidden" in x
               for x in collapsed.narration_lines())


def test_every_stepper_click_changes_its_header_and_the_l2_update_is_a_step_of_its_own():
    """Each click changes what the header says (its title or its "now:" line), collapsed
    or expanded; with Expand COW on, hidden's L2 update (qcow2_alloc_cluster_link_l2) is
    the click after the copy's write and the header says so."""
    for expand in (False, True):
        s = WorkflowStepper(WORKFLOW, size=SIZE, expand=expand)
        seen = [(s.stage.title, s.stage.text)]
        while not s.session.done:
            s.step_button.click()
            seen.append((s.stage.title, s.stage.text))
            assert seen[-1] != seen[-2], (expand, len(seen), seen[-1])
        if expand:
            l2 = [i for i, (_, now) in enumerate(seen) if "L2 update is next" in now]
            assert len(l2) == 1 and "write of the old contents" in seen[l2[0] - 1][1]
            assert "hidden does not find them" in seen[l2[0]][1]


def test_stepper_shows_where_each_task_is_parked():
    s = WorkflowStepper(WORKFLOW, size=SIZE)
    s.step_button.click()
    assert ("nbd-write#1: step 2 next: backup_do_cow holds a CowRequest on backup cluster 0; "
            "its read of the old contents (blocks 0-15) from the secondary disk is next") in \
        html.unescape(s.parked.value)
    assert s.graph.plot.highlight == {"nbd-write#1": ("secondary-disk", "COW reads old data")}
    s.step_button.click()
    assert "step 3 next: the old contents are in hidden" in s.text()
    assert s.graph.plot.highlight == {"nbd-write#1": ("secondary-disk", "data lands next")}
    before = s.graph.figure.image.value
    s.step_button.click()
    assert s.graph.plot.highlight == {"vm-read#1": ("guest", "not started")}
    assert s.graph.figure.image.value != before
    s.step_button.click()
    assert s.graph.plot.highlight == {"vm-read#1": ("guest", "got 0x15 ✓")}


def test_stepper_undo_returns_to_the_exact_previous_state():
    s = WorkflowStepper(WORKFLOW, size=SIZE, expand=True)
    snapshots = [state(s.lab)]
    texts = [s.text()]
    while not s.session.done:
        s.step_button.click()
        snapshots.append(state(s.lab))
        texts.append(s.text())
    clicks = len(snapshots) - 1
    assert clicks >= 6  # every decision of steps 1-3 and the read
    for i in range(clicks, 0, -1):
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
    for _ in range(3):
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


def test_stepper_text_twin_is_deterministic_and_is_the_repr():
    def make() -> WorkflowStepper:
        s = WorkflowStepper(WORKFLOW, size=SIZE)
        for _ in range(4):
            s.step_button.click()
        return s

    a, b = make(), make()
    assert a.text() == b.text()
    no_noise(a.text())
    assert "block(4 KiB)" in a.text() and "runnable:" in a.text()
    assert repr(a) == a.text()
    assert a.figure.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_forms_are_a_short_placeholder_and_a_picture():
    """What a notebook keeps beside the widget output: shown when the notebook is not
    trusted (the picture) or the widget cannot run; a few lines, not the text twin."""
    for app in (WorkflowStepper(WORKFLOW, size=SIZE), SchedulerPlayground(RACE, size=SIZE)):
        bundle = app._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        lines = bundle["text/plain"].splitlines()
        assert len(lines) == 3 and "run this cell to use it" in lines[0]
        assert lines[1] == app.text().splitlines()[0]
        assert bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
        assert bundle["image/png"] == app._repr_mimebundle_()["image/png"]  # deterministic


# --- SchedulerPlayground --------------------------------------------------------------


def test_playground_buttons_blocked_reason_and_win_banner():
    p = SchedulerPlayground(RACE, design="none", size=SIZE)
    # "start" ran by itself: the par block's two tasks wait for the trainee
    assert sorted(p.task_buttons) == ["nbd-write#1", "vm-read#1"]
    assert all(not b.disabled for b in p.task_buttons.values())
    assert p.banner.value == "" and not p.won
    p.task_buttons["vm-read#1"].click()  # the read reaches the secondary disk and parks
    while not p.lab.kernel.tasks["nbd-write#1"].done:
        p.task_buttons["nbd-write#1"].click()  # the write runs steps 1-3 to the end
    assert "BANNER" not in p.text()
    p.task_buttons["vm-read#1"].click()  # the read resumes: primary data!
    assert p.won and "You won" in p.banner.value and "conflicting read" in p.banner.value
    assert ("vm-read#1 returned 0xbb for block 5 (from the secondary disk) where the VM "
            "should see 0x15") in html.unescape(p.banner.value)
    assert "BANNER: You won — conflicting read!" in p.text()
    # the rows stay (a row that vanished would move the ones below it), all disabled
    assert p.session.done and len(p.task_box.children) == 2
    assert all(b.disabled for b in p.task_buttons.values())
    assert "vm-read#1: returned 0xbb" in p.played.value


def test_playground_design_28_shows_the_blocked_task_and_why_beside_its_button():
    p = SchedulerPlayground(RACE, design="2.8", size=SIZE)
    p.task_buttons["vm-read#1"].click()  # the read holds a CowRequest over block 5's cluster
    p.task_buttons["nbd-write#1"].click()  # the write's COW must wait for it
    b = p.task_buttons["nbd-write#1"]
    assert b.disabled and b.description == "nbd-write#1: blocked"  # short: never cut
    words = html.unescape(p.task_words["nbd-write#1"].value)
    assert "waits for CowRequest of vm-read#1 on clusters 0-0" in words
    assert ("[disabled] nbd-write#1: blocked — step 2: backup_do_cow waits for CowRequest "
            "of vm-read#1 on clusters 0-0") in p.text()
    with pytest.raises(ValueError, match="waits for CowRequest"):
        p.choose("nbd-write#1")
    while not p.session.done:
        p.choose(p.session.runnable()[0].name)
    assert not p.won and "without a conflicting read" in p.banner_text()


PARKED_READ = ("passed active and hidden (unallocated), its read of the secondary disk "
               "(block 5) is next")


def test_playground_shows_the_read_parked_at_the_secondary_disk():
    """The one fact the race depends on, visible after the read's first step."""
    p = SchedulerPlayground(RACE, design="none", size=SIZE)
    assert "Your move" in p.header.value
    p.choose("vm-read#1")
    assert f"You stepped vm-read#1: {PARKED_READ}" in html.unescape(p.header.value)
    words = html.unescape(p.task_words["vm-read#1"].value)
    assert PARKED_READ in words and "#FFF3C4" in words  # highlighted
    assert "#FFF3C4" not in p.task_words["nbd-write#1"].value
    # ... and on the block graph: a badge at the secondary disk
    assert p.graph.plot.highlight == {"vm-read#1": ("secondary-disk", "found hidden empty"),
                                      "nbd-write#1": ("nbd-server", "not started")}
    p.choose("nbd-write#1")  # the header follows the task just stepped
    assert p.graph.plot.highlight["nbd-write#1"] == ("secondary-disk", "COW reads old data")
    assert "You stepped nbd-write#1: step 2 next: backup_do_cow holds a CowRequest" in \
        html.unescape(p.header.value)
    p.undo_button.click()
    assert f"You stepped vm-read#1: {PARKED_READ}" in html.unescape(p.header.value)


#: whereabouts of the canonical race, design none, after each of the trainee's choices
CANONICAL_NONE = [
    ("vm-read#1", {"vm-read#1": PARKED_READ,
                   "nbd-write#1": "not started yet (runnable: its first step is next)"}),
    ("nbd-write#1", {"nbd-write#1": "step 2 next: backup_do_cow holds a CowRequest on backup "
                                    "cluster 0; its read of the old contents (blocks 0-15) "
                                    "from the secondary disk is next"}),
    ("nbd-write#1", {"nbd-write#1": "step 2: backup_do_cow holds a CowRequest on backup "
                                    "cluster 0; its write of the old contents (blocks 0-15) "
                                    "to hidden is next"}),
    ("nbd-write#1", {}),
    ("nbd-write#1", {"nbd-write#1": "step 3 next: the old contents are in hidden; its new "
                                    "data lands on the secondary disk (block 5) when it "
                                    "resumes", "vm-read#1": PARKED_READ}),
    ("nbd-write#1", {"nbd-write#1": "finished", "vm-read#1": PARKED_READ}),
    ("vm-read#1", {"vm-read#1": "finished: returned 0xbb for block 5 (from the secondary "
                                "disk) where the VM should see 0x15 ✗ (conflicting read)",
                   "vm-read#2": "finished: returned 0x15 for block 5 (from hidden) — what the "
                                "VM should see ✓"}),
]


def test_whereabouts_of_the_canonical_race_at_each_step():
    p = SchedulerPlayground(scenarios.load("canonical"), design="none")
    assert whereabouts(p.lab) == {"start#1": "finished",
                                  "vm-read#1": "not started yet (runnable: its first step "
                                               "is next)",
                                  "nbd-write#1": "not started yet (runnable: its first step "
                                                 "is next)"}
    for task, expected in CANONICAL_NONE:
        p.choose(task)
        got = whereabouts(p.lab)
        for name, words in expected.items():
            assert got[name] == words, (task, name)


def test_whereabouts_under_28_and_40_say_what_the_write_waits_for():
    p = SchedulerPlayground(scenarios.load("canonical"), design="2.8")
    p.choose("vm-read#1")
    assert whereabouts(p.lab)["vm-read#1"] == "holding a CowRequest on backup cluster 0, " \
        + PARKED_READ
    p.choose("nbd-write#1")
    assert whereabouts(p.lab)["nbd-write#1"].startswith(
        "step 2: backup_do_cow waits for CowRequest of vm-read#1 on clusters 0-0 before it "
        "registers its own CowRequest")
    q = SchedulerPlayground(scenarios.load("canonical"), design="4.0")
    for name in ("vm-read#1", "nbd-write#1", "nbd-write#1"):
        q.choose(name)
    assert "(CowRequest on backup cluster 0) waits for read by vm-read#1 on hidden" in \
        whereabouts(q.lab)["nbd-write#1"]


def test_whereabouts_reads_no_event_detail():
    """Where a task is comes from typed fields only (helper engine-access forbids detail)."""
    import ast
    import inspect

    from labkit.widgets import _whereabouts
    tree = ast.parse(inspect.getsource(_whereabouts))
    assert not [n.lineno for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and n.attr == "detail"]


def test_read_results_hold_each_finished_read_against_the_oracle():
    lab = lk.run_scenario(scenarios.load("canonical"), design="2.8")
    results = read_results(lab)
    assert [r.task for r in results] == ["vm-read#1", "vm-read#2"]
    assert all(r.ok and r.got == bytes([0x15]) * 4096 for r in results)
    bad = lk.replay(scenarios.load("canonical"), RaceReplay(
        scenarios.load("canonical"), designs=("none",)).schedule, design="none")
    r = read_results(bad)[0]
    assert not r.ok and (r.expected, r.bad) == (0x15, 0xBB) and r.got == bytes([0xBB]) * 4096


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
    assert repr(p) == p.text()


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


@needs_explorer
def test_race_replay_banner_names_the_read_and_the_bytes():
    r = RaceReplay(scenarios.load("canonical"))
    label = r.picker.options[0][0]
    assert label == "design none #1: conflicting read seen by vm-read#1 (12 decisions)"
    n = len(r.schedule)
    r.seek(n - 3)
    assert r.banner.value == "" and "BANNER" not in r.text()
    assert PARKED_READ in html.unescape(r.parked.value)
    r.seek(n)
    banner = html.unescape(r.banner.value)
    assert "#CC3311" in banner
    assert "Conflicting read at decision 10: vm-read#1 read block 5 — expected 0x15 (what the " \
           "VM should see), got 0xbb" in banner
    assert "BANNER: Conflicting read at decision 10" in r.text()
    r.prev_button.click()
    assert r.banner.value != ""  # still after the violation (decision 10 of 12)


def test_playground_marks_preemptions_and_explains_the_wake_rule():
    """The schedule so far, a preemption marked; at the wake rule's forced step the rows
    stay (none vanishes under the mouse) and the widget says why one button is left."""
    p = SchedulerPlayground(RACE, design="2.8", size=SIZE)
    rows = list(p.task_box.children)
    p.choose("vm-read#1")
    p.choose("nbd-write#1")  # vm-read#1 could have gone on: a preemption
    assert p.schedule_text() == ("schedule so far (5 decisions, 1 preemption): start#1 ×3 · "
                                 "vm-read#1 · ↯ nbd-write#1")
    assert p.wake_rule_text() == ""
    p.choose("vm-read#1")  # ends its CowRequest: nbd-write#1 is woken and runs at once
    assert p.lab.kernel.forced is not None
    wake = p.wake_rule_text()
    assert wake.startswith("The wake rule: vm-read#1 woke nbd-write#1") and \
        "qemu_co_queue_run_restart" in wake
    assert wake in p.text() and html.escape(wake) in p.played.value
    assert list(p.task_box.children) == rows  # the same rows, in the same places
    assert p.task_buttons["vm-read#1"].disabled and \
        p.task_buttons["vm-read#1"].description == "vm-read#1: done"
    p.choose("nbd-write#1")  # a forced step is never a preemption
    assert "1 preemption)" in p.schedule_text()
    p.undo()
    assert p.lab.kernel.forced is not None and "1 preemption)" in p.schedule_text()


def test_stepper_shows_the_bytes_and_what_changed():
    s = WorkflowStepper(WORKFLOW, size=SIZE)
    assert "hidden" in s.bytes.value and "........" in s.bytes.value
    s.step()
    s.step()  # the COW: hidden receives the old contents of cluster 0
    assert "#FFE08A" in s.bytes.value  # highlighted: changed by the click
    assert s.counts() == "2 clicks, 4 scheduling decisions since replication started"


def test_a_widget_checks_its_configuration_without_a_probe_lab(lab_builds) -> None:
    """The scenario's header and the keywords are checked by labkit.scenario.configured:
    the only lab a widget builds is the one it steps (a bad value builds none)."""
    built = lab_builds
    with pytest.raises(lk.ConfigError, match="design must be one of"):
        SchedulerPlayground("# config: size=128K\n" + RACE, design="2.9")
    assert built == []
    p = SchedulerPlayground("# config: size=128K\n" + RACE, design="none")
    assert len(built) == 1 and p.lab.size == 128 * 1024 and p.lab.design == "none"
    p.switch_design("2.8")  # a rebuild with the design changed, checked by LabConfig
    assert len(built) == 2 and p.lab.config.design == "2.8"
