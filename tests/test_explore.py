"""Replay, exploration with reduction, shrinking, the determinism self-check and the CLI."""

from __future__ import annotations

import importlib
import json
import os

import pytest

import labkit as lk
from labkit import scenarios
from labkit import trace as tr
from labkit.cli import main
from labkit.errors import ScheduleError, TraceFormatError
from labkit.explore import (
    NondeterminismError,
    parse_schedule,
    preemptions,
    scenario_tasks,
    schedule_json,
)
from labkit.scenario import parse

CANONICAL = scenarios.load("canonical")
CANONICAL3 = scenarios.load("canonical3")
CANONICAL4 = scenarios.load("canonical4")
SHRUNK = "start#1*3 vm-read#1 nbd-write#1*5 vm-read#1 vm-read#2*2"
SLOW = os.environ.get("LABKIT_SLOW_TESTS") == "1"


@pytest.fixture(scope="module")
def canonical_none() -> lk.Exploration:
    return lk.explore(CANONICAL, design="none")


# --- the acceptance: canonical scenario -----------------------------------------------------


def test_canonical_none_finds_the_violation_shrunk_to_one_preemption(canonical_none) -> None:
    ex = canonical_none
    assert ex.verdict == "violation" and ex.complete
    (cx,) = ex.violations
    assert cx.kind == "conflicting-read" and cx.task == "vm-read#1"
    assert "read 0xbb at offset 0x5000 (block 5)" in cx.message
    assert "primary data from nbd-write#1" in cx.message
    assert cx.preemptions == 1
    assert cx.schedule_text == SHRUNK


def test_replaying_the_shrunk_schedule_reproduces_the_violation(canonical_none) -> None:
    cx = canonical_none.violations[0]
    lab = lk.replay(CANONICAL, cx.schedule_text, design="none")
    assert [v.message for v in lab.violations()] == [cx.message]
    assert tuple(lab.trace) == cx.trace
    assert tr.format_schedule(lab.schedule) == cx.schedule_text
    assert preemptions(CANONICAL, cx.schedule, design="none") == 1
    assert cx.replay().violations()[0].message == cx.message


@pytest.mark.parametrize("design", ["2.8", "4.0"])
def test_canonical_protected_designs_are_complete_and_safe(design: str) -> None:
    ex = lk.explore(CANONICAL, design=design)
    assert ex.complete and ex.verdict == "safe" and ex.violations == []
    assert ex.violating_runs == 0 and ex.runs == ex.interleavings + ex.sleep_blocked


def test_the_same_schedule_is_safe_in_the_protected_designs() -> None:
    """In 2.8 the write cannot run to its end while the read holds its CowRequest."""
    with pytest.raises(ScheduleError, match="nbd-write#1' is blocked.*CowRequest of vm-read#1"):
        lk.replay(CANONICAL, SHRUNK, design="2.8")


# --- reduction vs the naive baseline ---------------------------------------------------------


# The reduction losing no outcome (and pruning canonical3) is tested in one place:
# tests/test_properties.py.


def test_four_concurrent_requests_reduced_runs_fewer_than_the_naive_budget() -> None:
    """canonical4: the reduced exploration completes; the naive one needs more runs."""
    reduced = lk.explore(CANONICAL4, design="none", shrink=False)
    assert reduced.complete and reduced.verdict == "violation"
    naive = lk.explore(CANONICAL4, design="none", reduction="none", max_runs=reduced.runs,
                       shrink=False)
    assert not naive.complete  # it needs strictly more than the reduced total
    assert naive.verdict == "violation"  # and finds the same verdict within it


@pytest.mark.skipif(not SLOW, reason="minutes of naive exploration: set LABKIT_SLOW_TESTS=1")
@pytest.mark.parametrize("design", ["2.8", "4.0"])
def test_four_concurrent_requests_naive_complete_same_verdict(design: str) -> None:
    reduced = lk.explore(CANONICAL4, design=design, shrink=False)
    naive = lk.explore(CANONICAL4, design=design, reduction="none", max_runs=None,
                       shrink=False)
    assert naive.complete and reduced.complete
    assert reduced.runs < naive.runs and reduced.verdict == naive.verdict == "safe"


# --- options, budgets, bounds --------------------------------------------------------------------


def test_a_spent_budget_gives_unknown_never_safe() -> None:
    ex = lk.explore(CANONICAL3, design="2.8", max_runs=3)
    assert ex.runs == 3 and not ex.complete and ex.verdict == "unknown"
    assert "budget of 3 runs" in ex.summary()


def test_stop_at_first() -> None:
    ex = lk.explore(CANONICAL3, design="none", stop_at_first=True)
    assert ex.verdict == "violation" and not ex.complete and ex.stopped_at_first
    assert ex.violating_runs == 1
    full = lk.explore(CANONICAL3, design="none", shrink=False)
    assert full.runs > ex.runs and full.violating_runs > 1


@pytest.mark.parametrize("reduction", ["dpor", "none"])
def test_preemption_bound(reduction: str) -> None:
    zero = lk.explore(CANONICAL, design="none", preemption_bound=0, reduction=reduction)
    assert zero.violations == [] and not zero.complete and zero.verdict == "unknown"
    assert zero.bounded > 0 and "preemption bound 0" in zero.summary()
    one = lk.explore(CANONICAL, design="none", preemption_bound=1, reduction=reduction)
    assert one.verdict == "violation" and one.violations[0].preemptions == 1


def test_shrink_can_be_turned_off() -> None:
    ex = lk.explore(CANONICAL3, design="none", shrink=False)
    for cx in ex.violations:
        assert cx.schedule == cx.original_schedule


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"reduction": "magic"}, lk.ConfigError, "reduction must be one of 'dpor', 'sleep', 'none'"),
    ({"max_runs": 0}, lk.ConfigError, "max_runs must be a positive integer or None"),
    ({"max_runs": 2.5}, lk.ArgumentError, "max_runs must be a positive integer"),
    ({"max_runs": True}, lk.ArgumentError, "max_runs must be a positive integer"),
    ({"preemption_bound": -1}, lk.ConfigError, "preemption_bound must be an integer ≥ 0 or None"),
    ({"stop_at_first": "yes"}, lk.ConfigError, "stop_at_first must be True or False"),
    ({"keep_runs": 1}, lk.ConfigError, "keep_runs must be True or False"),
    ({"policy": lk.FIFO()}, lk.ConfigError, "cannot be given"),
    ({"colour": "blue"}, lk.ArgumentError, "unknown configuration key colour; allowed: size"),
    ({"design": "5.0"}, ValueError, "design must be one of 'none', '2.8', '4.0'"),
])
def test_bad_options_say_what_is_allowed(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        lk.explore(CANONICAL, **kwargs)


def test_explicit_config_wins_over_the_header() -> None:
    text = "# config: size=64K\nstart\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\n"
    assert lk.replay(text, "start#1*3 vm-read#1*2 nbd-write#1*5").size == 64 * 1024
    lab = lk.replay(text, "start#1*3 vm-read#1*2 nbd-write#1*5", size="128K")
    assert lab.size == 128 * 1024
    with pytest.raises(lk.ScenarioError, match="reaches past the end"):
        lk.explore("# config: size=16K\nstart\nvread 5b 4K\n")


# --- replay: forms and rejections ------------------------------------------------------------


def test_schedule_forms_round_trip(canonical_none) -> None:
    cx = canonical_none.violations[0]
    names = list(cx.schedule)
    assert parse_schedule(cx.schedule_text) == names
    assert parse_schedule(names) == names
    assert parse_schedule(schedule_json(names)) == names
    assert parse_schedule(cx.to_json()) == names
    assert parse_schedule(tr.loads(cx.to_json())) == names
    assert tr.format_schedule(parse_schedule(cx.schedule_text)) == cx.schedule_text
    assert parse_schedule("vm-read#1, nbd-write#1*2") == ["vm-read#1", "nbd-write#1",
                                                         "nbd-write#1"]


def test_a_counterexample_file_replays(canonical_none, tmp_path) -> None:
    cx = canonical_none.violations[0]
    doc = json.loads(cx.to_json())
    assert doc["format"] == "labkit-trace" and doc["meta"]["kind"] == "conflicting-read"
    assert doc["meta"]["config"]["design"] == "none"
    lab = lk.replay(doc["meta"]["scenario"], cx.to_json(), **doc["meta"]["config"])
    assert lab.violations()[0].message == cx.message


@pytest.mark.parametrize(("schedule", "position", "reason"), [
    ("start#1*3 vm-read#7", 3, "unknown task 'vm-read#7': this scenario's tasks are start#1, "
                               "vm-read#1, nbd-write#1, vm-read#2; runnable here: vm-read#1, "
                               "nbd-write#1"),
    ("start#1*3 vm-read#2", 3, "task 'vm-read#2' has not started yet"),
    ("start#1*4", 3, "task 'start#1' has already finished"),
    ("start#1*3 vm-read#1 nbd-write#1*2", 5, "task 'nbd-write#1' is blocked (it waits for "
                                             "CowRequest of vm-read#1 on clusters 0-0)"),
    ("start#1*2", 2, "the schedule ends after 2 choices but tasks are still runnable (start#1): "
                     "it is too short"),
    ("start#1*3 vm-read#1*2 nbd-write#1*5 vm-read#2*2 vm-read#2", 12,
     "the run ended after 12 choices but the schedule has 13: it is too long for this scenario "
     "(the first extra choice is 'vm-read#2')"),
])
def test_a_schedule_that_does_not_fit_is_rejected_with_position_and_reason(
        schedule: str, position: int, reason: str) -> None:
    with pytest.raises(ScheduleError) as info:
        lk.replay(CANONICAL, schedule, design="2.8")
    assert info.value.position == position
    assert reason in info.value.reason
    made = f"{position} decision{'' if position == 1 else 's'}"
    assert str(info.value).startswith(f"choice #{position + 1} (after {made}): ")


@pytest.mark.parametrize(("schedule", "error", "message"), [
    ("vm-read", TraceFormatError, "not a task name"),
    ("vm-read#1*0", TraceFormatError, "run-length must be ≥ 1"),
    ("[1, 2]", TraceFormatError, "a JSON schedule is a list of task names"),
    ("[oops", TraceFormatError, "not valid JSON"),
    ("{\"format\": \"x\"}", TraceFormatError, "not a labkit trace"),
    (42, TypeError, "a schedule is a string, a list of task names or a trace recording"),
])
def test_malformed_schedules(schedule, error, message) -> None:
    with pytest.raises(error, match=message):
        lk.replay(CANONICAL, schedule)


def test_scenario_tasks_lists_every_task_in_spawn_order() -> None:
    sc = parse("start\npar { vread 0 4K; pwrite 0 4K 0x80 }\ncheckpoint\nfailover\nvwrite 0 4K "
               "0x81\ndump x\n")
    assert scenario_tasks(sc) == ["start#1", "vm-read#1", "nbd-write#1", "checkpoint#1",
                                  "failover#1", "commit#1", "vm-write#1"]


# --- determinism -------------------------------------------------------------------------


def test_check_determinism_returns_the_trace_digest() -> None:
    digest = lk.check_determinism(CANONICAL, SHRUNK, design="none")
    lab = lk.replay(CANONICAL, SHRUNK, design="none")
    assert digest == tr.digest(lab.trace)
    fifo = lk.check_determinism(CANONICAL, design="none")
    assert fifo == tr.digest(lk.run_scenario(CANONICAL, design="none", size="128K").trace)


def test_a_nondeterministic_run_names_the_first_differing_event(monkeypatch) -> None:
    replay_module = importlib.import_module("labkit.explore._replay")
    real = replay_module.replay_lab
    calls = {"n": 0}

    def flaky(scenario, names, cfg, allow_deadlock=False):
        lab, policy = real(scenario, names, cfg, allow_deadlock)
        calls["n"] += 1
        if calls["n"] == 2:  # the second run "drifts" at event 7
            lab.kernel.trace[7] = lk.Event(7, "vm-read#9", "run")
        return lab, policy

    monkeypatch.setattr(replay_module, "replay_lab", flaky)
    with pytest.raises(NondeterminismError) as info:
        lk.check_determinism(CANONICAL, SHRUNK, design="none")
    assert info.value.index == 7 and info.value.second.task == "vm-read#9"
    assert "differ first at event 7" in str(info.value)


def test_exploration_is_deterministic() -> None:
    a = lk.explore(CANONICAL3, design="none")
    b = lk.explore(CANONICAL3, design="none")
    assert (a.runs, a.pruned, a.sleep_blocked, a.violating_runs) == \
        (b.runs, b.pruned, b.sleep_blocked, b.violating_runs)
    assert [(c.schedule, c.message) for c in a.violations] == \
        [(c.schedule, c.message) for c in b.violations]
    assert a.summary() == b.summary()


def test_summary_names_verdict_counts_and_the_shrunk_schedule(canonical_none) -> None:
    text = canonical_none.summary()
    assert text.startswith("design none: violation")
    assert "shrunk schedule (1 preemption): " + SHRUNK in text
    assert "pruned choices" in text


def test_deadlocks_are_reported_as_violations(monkeypatch) -> None:
    """A run that deadlocks is a finding of its own (kind 'deadlock')."""
    from labkit.explore import _search

    real = _search.Search.execute

    def execute(self, branch):
        record = real(self, branch)
        if record.schedule[3:4] == ["nbd-write#1"]:  # the write ran first: "deadlock"
            record.deadlock = lk.Deadlock([("nbd-write#1", "nothing (injected)")])
        return record

    monkeypatch.setattr(_search.Search, "execute", execute)
    ex = lk.explore(CANONICAL, design="2.8", shrink=False)
    assert ex.verdict == "violation"
    assert ex.violations[0].kind == "deadlock" and "deadlock" in ex.violations[0].message


# --- the command line -------------------------------------------------------------------------


def test_cli_explore_prints_verdict_shrunk_schedule_and_conflicting_read(capsys) -> None:
    assert main(["explore", "canonical", "--design", "none"]) == 0
    out = capsys.readouterr().out
    assert "design none: VIOLATION" in out
    assert f"shrunk schedule (1 preemption; found with 1): {SHRUNK}" in out
    assert "conflicting read: vm-read#1 read 0xbb at offset 0x5000" in out
    assert "the scenario header expects: violation" in out


def test_cli_explore_stats_compares_with_the_naive_baseline(capsys) -> None:
    path = os.path.join(os.path.dirname(scenarios.__file__), "canonical3.scn")
    assert main(["explore", path, "--design", "4.0", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "design 4.0: SAFE" in out
    reduced = next(line for line in out.splitlines() if "reduced (dpor)" in line)
    naive = next(line for line in out.splitlines() if "naive (none)" in line)
    runs = [int(line.split("runs")[1].split()[0]) for line in (reduced, naive)]
    assert runs[0] < runs[1]
    assert "the reduction ran" in out


def test_cli_explore_all_designs_and_budget(capsys) -> None:
    assert main(["explore", "canonical3", "--max-runs", "2"]) == 1  # unknown != header
    out = capsys.readouterr().out
    for design in ("none", "2.8", "4.0"):
        assert f"design {design}:" in out
    assert "UNKNOWN" in out and "budget of 2 runs was spent" in out and "MISMATCH" in out


def test_cli_explore_writes_a_replayable_counterexample(tmp_path, capsys) -> None:
    out = tmp_path / "cx.json"
    assert main(["explore", "canonical", "--design", "none", "--json", str(out)]) == 0
    path = tmp_path / "cx-none.json"
    assert path.exists()
    capsys.readouterr()
    assert main(["replay", "canonical", "--design", "none", "--schedule", f"@{path}"]) == 1
    text = capsys.readouterr().out
    assert "VIOLATION: conflicting read" in text


def test_cli_replay_prints_the_trace_and_the_dumps(capsys) -> None:
    assert main(["replay", "canonical", "--design", "none", "--schedule", SHRUNK]) == 1
    out = capsys.readouterr().out
    assert "nbd-write#1    cow-begin secondary-disk" in out
    assert f"-- schedule: {SHRUNK}" in out
    assert "-- dump 1:" in out and "vm-view" in out
    assert "VIOLATION: conflicting read: vm-read#1" in out


def test_cli_replay_rejects_a_bad_schedule(capsys) -> None:
    assert main(["replay", "canonical", "--schedule", "start#1*3 vm-read#7"]) == 2
    err = capsys.readouterr().err
    assert "labkit replay: choice #4 (after 3 decisions): unknown task 'vm-read#7'" in err


# --- a counterexample replays by itself; trace files are checked against the run ---------------


def test_the_canonical_none_counterexample_replays_without_its_design(canonical_none) -> None:
    cx = canonical_none.violations[0]
    text = cx.to_json()
    lab = lk.replay(None, text)  # scenario and design "none" come from the file
    assert [v.message for v in lab.violations()] == [cx.message]
    assert lk.replay(CANONICAL, text).schedule == list(cx.schedule)
    assert lk.replay(None, text, design="none", size=128 * 1024).violations()
    assert tuple(lk.replay(None, tr.loads(text)).trace) == cx.trace


def test_a_keyword_that_contradicts_the_trace_file_is_an_error(canonical_none) -> None:
    text = canonical_none.violations[0].to_json()
    with pytest.raises(lk.ConfigError, match=r"design='2.8' contradicts the trace file, which "
                                             r"was recorded with design='none'"):
        lk.replay(None, text, design="2.8")
    with pytest.raises(lk.ConfigError, match="size='64K' contradicts"):
        lk.replay(None, text, size="64K")


def test_a_trace_files_configuration_is_checked_without_building_a_lab(canonical_none,
                                                                     lab_builds) -> None:
    """Normalising a keyword against the file's value (``"128K"`` is 131072) and checking
    the whole configuration build no Lab (LabConfig checks them); only the run does."""
    text = canonical_none.violations[0].to_json()
    assert tr.loads(text).meta["config"]["size"] == 128 * 1024  # LabConfig's values
    built = lab_builds
    with pytest.raises(lk.ConfigError, match="size='64K' contradicts"):
        lk.replay(None, text, size="64K", block="4K")
    with pytest.raises(lk.ConfigError, match="design must be one of"):
        lk.replay(CANONICAL, "start#1", design="5.0")
    assert built == []
    lab = lk.replay(None, text, size="128K", design="none")
    assert len(built) == 1 and lab.violations()  # the replayed run, and nothing else


def test_a_trace_file_for_another_scenario_is_refused(canonical_none) -> None:
    text = canonical_none.violations[0].to_json()
    with pytest.raises(TraceFormatError, match="recorded for another scenario"):
        lk.replay(CANONICAL3, text)
    # comments and spacing are not the scenario
    assert lk.replay("# same commands\n" + CANONICAL.replace("\n", "  \n"), text).violations()


def test_a_tampered_trace_file_is_refused_naming_the_event(canonical_none) -> None:
    doc = json.loads(canonical_none.violations[0].to_json())
    doc["events"][9]["offset"] = 0x7000
    with pytest.raises(TraceFormatError, match="differ from the replayed run at event 9"):
        lk.replay(None, json.dumps(doc))
    del doc["meta"]["scenario"]
    with pytest.raises(TraceFormatError, match="does not store its scenario"):
        lk.replay(None, json.dumps(doc))


def test_an_old_schema_version_is_refused_clearly(canonical_none) -> None:
    doc = json.loads(canonical_none.violations[0].to_json())
    assert doc["version"] == tr.SCHEMA_VERSION == 2
    assert all("op" in e for e in doc["events"])
    doc["version"] = 1
    for e in doc["events"]:
        del e["op"]
    with pytest.raises(TraceFormatError, match="schema version 1, written by an older labkit"):
        tr.loads(json.dumps(doc))
    with pytest.raises(TraceFormatError, match="schema version 1"):
        lk.replay(None, json.dumps(doc))


@pytest.mark.parametrize(("schedule", "error", "message"), [
    ("start#1*99999999999", lk.LimitError, "more than 10,000,000 choices"),
    ("start#1*" + "9" * 5000, lk.LimitError, "more than 10,000,000 choices"),
    ("start#1*6000000 start#1*6000000", lk.LimitError, "item 2"),
    ("[" * 200_000, TraceFormatError, "more than 64 levels deep"),
    ("{\"a\": " * 200_000, TraceFormatError, "more than 64 levels deep"),
])
def test_schedules_and_trace_files_are_bounded(schedule, error, message) -> None:
    with pytest.raises(error, match=message):
        parse_schedule(schedule)
    with pytest.raises(error, match=message):
        lk.replay(CANONICAL, schedule, design="none")


def test_a_deep_trace_file_gives_a_labkit_error_not_a_recursion_error() -> None:
    with pytest.raises(TraceFormatError, match="levels deep"):
        tr.loads("[" * 200_000 + "]" * 200_000)
    deep_but_in_a_string = json.dumps({"x": "[" * 1000})
    with pytest.raises(TraceFormatError, match="not a labkit trace"):
        tr.loads(deep_but_in_a_string)


# --- shrinking within the budget -------------------------------------------------------------


@pytest.mark.parametrize("budget", [8, 20, 60])
def test_shrinking_stays_within_max_runs(budget: int) -> None:
    ex = lk.explore(CANONICAL3, design="none", max_runs=budget)
    assert ex.runs + ex.shrink_runs <= budget
    assert ex.violations


def test_without_shrinking_nothing_is_called_shrunk() -> None:
    ex = lk.explore(CANONICAL3, design="none", shrink=False)
    assert ex.shrink_runs == 0
    assert all(not cx.shrunk for cx in ex.violations)
    assert "shrunk" not in ex.summary() and "  schedule (" in ex.summary()
    assert "shrunk schedule" in lk.explore(CANONICAL, design="none").summary()


# --- public results: schedules and outcome digests ---------------------------------------------


def test_keep_runs_hands_back_every_complete_run_with_its_digest() -> None:
    ex = lk.explore(CANONICAL, design="none", reduction="none", keep_runs=True)
    assert ex.runs_detail is not None and len(ex.runs_detail) == ex.interleavings
    assert {r.digest for r in ex.runs_detail} == ex.outcomes
    for run in ex.runs_detail:  # every schedule replays to a run with that digest
        lab = lk.replay(CANONICAL, run.schedule, design="none")
        assert lk.explore.__module__ == "labkit.explore"
        from labkit.explore import outcome_digest
        assert outcome_digest(lab) == run.digest
        assert bool(run.violations) == bool(lab.violations())
    assert lk.explore(CANONICAL, design="none").runs_detail is None


def test_the_digest_sees_an_intermediate_dump() -> None:
    from labkit.explore import outcome_digest

    a = lk.run_scenario("start\npwrite 0 4K 0xbb\ndump x\npwrite 0 4K 0xcc\n")
    b = lk.run_scenario("start\npwrite 0 4K 0xcc\ndump x\npwrite 0 4K 0xcc\n")
    assert a.layers() == b.layers()
    assert outcome_digest(a) != outcome_digest(b)


def test_the_digest_sees_an_error_message_and_an_expectation() -> None:
    import errno

    from labkit.explore import outcome_digest

    def failing_read(code: int) -> lk.Lab:
        lab = lk.build_secondary(size="64K")
        lab.start()
        lab.active.inject_error("read", errno=code)
        lab.hidden.inject_error("read", errno=code)
        lab.secondary.inject_error("read", errno=code)
        lab.vm_read(0, 4096)
        lab.run()
        return lab

    a, b = failing_read(errno.EIO), failing_read(errno.ENOSPC)
    assert [t.state for t in a.kernel.tasks.values()] == [t.state for t in b.kernel.tasks.values()]
    assert outcome_digest(a) != outcome_digest(b)
    c = lk.run_scenario("start\nexpect secondary 0 4K 0xbb\n", size="64K")
    d = lk.run_scenario("start\nexpect secondary 0 4K orig\n", size="64K")
    assert c.expectation_failures and not d.expectation_failures
    assert outcome_digest(c) != outcome_digest(d)


# --- interning ---------------------------------------------------------------------------------


def test_each_search_has_its_own_interning_with_ids_never_reused(monkeypatch) -> None:
    from labkit.explore import _footprint

    a, b = _footprint.Interner(), _footprint.Interner()
    w = ((("cow", "d"), 0, 4096, True),)
    r = ((("cow", "d"), 0, 4096, False),)
    other = ((("cow", "d"), 8192, 12288, True),)
    fw, fr, fo = a.footprint(w), a.footprint(r), a.footprint(other)
    assert a.footprint(w) is fw and len({fw.uid, fr.uid, fo.uid}) == 3
    assert b.footprint(other).uid == 1 and b.footprint(other) is not fo
    monkeypatch.setattr(_footprint, "DEPENDENT_CACHE_MAX", 2)
    for _ in range(3):  # the answer cache starts afresh, the ids stay unique: answers stay right
        assert a.dependent(fw, fr) and not a.dependent(fw, fo) and not a.dependent(fr, fo)
        many = [a.footprint(((("x", str(i)), 0, 1, True),)) for i in range(50)]
        assert len({f.uid for f in many}) == 50
    assert a.dependent(a.glob, fr)


# --- the engine declares what it touches ------------------------------------------------------


def test_an_instrument_sees_every_declared_access_and_step() -> None:
    class Log(lk.Instrument):
        def __init__(self) -> None:
            self.accesses: list[tuple[str, lk.Access]] = []
            self.steps = 0
            self.events: list[lk.Event] = []

        def before_step(self, task: lk.Task) -> None:
            self.steps += 1
            if task.suspended is not None:
                for a in task.suspended.accesses(task.name):
                    self.accesses.append((task.name, a))

        def on_access(self, task: lk.Task, access: lk.Access) -> None:
            self.accesses.append((task.name, access))

        def on_event(self, event: lk.Event) -> None:
            self.events.append(event)

    lab = lk.build_secondary(size="128K", design="2.8")
    log = Log()
    lab.kernel.add_instrument(log)
    lab.kernel.tracing = False
    lab.play(CANONICAL)
    assert log.steps == len(lab.schedule) and not lab.trace
    assert [e.kind for e in log.events][:2] == ["spawn", "run"] and log.events[0].seq == -1
    seen = {(t, a.resource, a.write) for t, a in log.accesses}
    assert ("nbd-write#1", ("cow", "secondary-disk"), True) in seen  # cow_request_begin/end
    assert ("vm-read#1", ("cow", "secondary-disk"), True) in seen  # 2.8: the read's CowRequest
    assert ("nbd-write#1", ("data", "secondary-disk"), True) in seen  # step 3
    assert ("nbd-write#1", ("map", "hidden"), True) in seen  # the COW's L2 update
    assert ("vm-read#1", ("oracle", "vm-view"), False) in seen
    assert ("start#1", ("global", ""), True) in seen  # a control task
    assert all(a.request == t for t, a in log.accesses)
    waits = [a for t, a in log.accesses if a.waits]
    assert waits and all(a.resource == ("cow", "secondary-disk") for a in waits)


def test_a_parked_task_says_what_its_io_will_do() -> None:
    lab = lk.build_secondary(size="64K")
    lab.start()
    task = lab.primary_write(0, 4096, 0xbb)
    while task.suspended is None or task.suspended.op != "io-read":
        lab.step()
    parked = task.suspended
    assert (parked.kind, parked.node, parked.write) == ("point", "secondary-disk", False)
    (access,) = parked.accesses(task.name)
    assert access == lk.Access(("data", "secondary-disk"), 0, 65536, False, "nbd-write#1")
    assert str(access) == "R data secondary-disk [0x0,0x10000)"
    ev = lab.trace[-1]
    assert (ev.kind, ev.op, ev.detail) == ("point", "io-read", "")
    assert ev.describe() == "point secondary-disk [0x0+0x10000] io-read"


def test_nothing_outside_the_kernel_decides_from_event_detail() -> None:
    import pathlib
    import re

    root = pathlib.Path(lk.__file__).parent
    # a condition on .detail (not the text quoted inside an f-string's braces)
    deciding = re.compile(r"\b(if|elif|while|and|or|not)\b[^#\n]*\.detail\b(?!\s*[}!:])"
                          r"|\.detail\s*(==|!=|\bin\b)|\bin\s+\w+(\.\w+)*\.detail\b"
                          r"|\.detail\.(startswith|endswith|split|partition|find|index)")
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in ("kernel.py", "trace.py"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if deciding.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], offenders
