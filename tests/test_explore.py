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


@pytest.mark.parametrize("design", ["none", "2.8", "4.0"])
def test_reduction_runs_fewer_interleavings_with_the_same_verdict_and_outcomes(
        design: str) -> None:
    reduced = lk.explore(CANONICAL3, design=design, outcomes=True, shrink=False)
    naive = lk.explore(CANONICAL3, design=design, reduction="none", outcomes=True,
                       shrink=False)
    assert reduced.complete and naive.complete
    assert reduced.runs < naive.runs
    assert naive.pruned == 0 and naive.sleep_blocked == 0 and reduced.pruned > 0
    assert reduced.verdict == naive.verdict
    assert reduced.outcomes == naive.outcomes  # nothing observable is lost


@pytest.mark.parametrize("name", ["partial-cluster-vm-write", "straddle", "checkpoint"])
def test_sleep_sets_alone_and_dpor_reach_the_naive_outcomes(name: str) -> None:
    text = scenarios.load(name)
    for design in ("none", "2.8", "4.0"):
        results = {red: lk.explore(text, design=design, reduction=red, outcomes=True,
                                   shrink=False) for red in ("dpor", "sleep", "none")}
        assert len({r.verdict for r in results.values()}) == 1
        assert results["dpor"].outcomes == results["sleep"].outcomes == results["none"].outcomes
        assert results["dpor"].runs <= results["sleep"].runs <= results["none"].runs


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
    ({"colour": "blue"}, lk.ArgumentError, "unknown configuration keyword 'colour'; allowed: size"),
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
    assert str(info.value).startswith(f"schedule position {position}: ")


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
    assert "labkit replay: schedule position 3: unknown task 'vm-read#7'" in err
