"""Nothing unbounded (issue 20): wrong types and numpy integers at the public entry points,
refused with a labkit error before anything changes; plain Python values in the trace."""

from __future__ import annotations

import json

import numpy as np
import pytest

import labkit as lk
from labkit import scenarios, trace
from labkit.config import LabConfig
from labkit.errors import ArgumentError, ConfigError, LabkitError, RangeError, ScenarioError
from labkit.lab import ScenarioRun
from labkit.quiz import make_quiz
from labkit.scenario import parse


def _state(lab):
    return (len(lab.kernel.tasks), list(lab.schedule), len(lab.trace), lab.state)


@pytest.mark.parametrize("call", ["vm_read", "vm_write", "primary_write"])
def test_numpy_offsets_that_wrap_are_refused(call):
    lab = lk.build_secondary(size="128K")
    lab.start()
    before = _state(lab)
    args = (np.uint32(0xFFFFFE00), np.uint32(0x400)) + ((np.uint8(1),) if call != "vm_read"
                                                          else ())
    with pytest.raises(RangeError, match="past the end"):
        getattr(lab, call)(*args)
    assert _state(lab) == before


def test_numpy_integers_are_read_as_python_integers_and_the_trace_stays_plain():
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.primary_write(np.int64(4096), np.int32(4096), np.uint8(0xbb))
    lab.vm_write(np.uint16(8192), np.int64(512), np.int64(0xcc))
    lab.run()
    task = lab.vm_read(np.int64(8192), np.uint64(512))
    lab.run()
    assert task.result == bytes([0xcc]) * 512
    assert lab.layers()["secondary"].read(4096, 4096) == bytes([0xbb]) * 4096
    for event in lab.trace:
        for value in event.as_dict().values():
            assert type(value) in (int, str), event
    json.loads(trace.dumps(lab.trace, lab.schedule))  # serialisable: no numpy types
    with pytest.raises(ConfigError):
        lab.vm_write(0, 512, np.int64(256))


@pytest.mark.parametrize("bad", [None, b"start\n", 5, ["start"]])
def test_play_and_scenario_run_refuse_what_is_not_a_scenario(bad):
    lab = lk.build_secondary(size="128K")
    before = _state(lab)
    with pytest.raises(ArgumentError, match="scenario"):
        lab.play(bad)
    with pytest.raises(ArgumentError, match="scenario"):
        ScenarioRun(lab, bad)
    assert _state(lab) == before
    with pytest.raises(ArgumentError, match="Lab"):
        ScenarioRun(None, "start\n")  # type: ignore[arg-type]


def test_a_parsed_scenario_is_checked_against_the_lab_before_it_runs():
    parsed = parse("start\nvread 900K 4K\n")
    with pytest.raises(ScenarioError, match="line 2"):
        lk.run_scenario(parsed, size="128K")
    lab = lk.build_secondary(size="128K")
    with pytest.raises(ScenarioError):
        lab.play(parsed)
    assert lab.state == "none" and not lab.schedule
    # ``b`` is the lab's block, not the one of the parse
    lab = lk.build_secondary(size="128K", block="1K")
    lab.play(parse("start\nvwrite 5b 1K 0xaa\n"))
    assert lab.layers()["vm-view"].read(5 * 1024, 1024) == b"\xaa" * 1024


@pytest.mark.parametrize("values, base", [(None, None), (["size"], None), ("size=1M", None),
                                          ({}, 5), ({}, {"size": "1M"}), ({1: 2}, None)])
def test_labconfig_parse_refuses_wrong_types(values, base):
    with pytest.raises(ArgumentError):
        LabConfig.parse(values, base=base)


def test_labconfig_takes_numpy_integers_and_b_follows_block():
    cfg = LabConfig.parse({"size": np.int64(1 << 20), "fill": np.uint8(7)})
    assert cfg.size == 1 << 20 and type(cfg.size) is int and cfg.fill == 7
    with pytest.raises(ConfigError):
        LabConfig.parse({"fill": np.int64(300)})
    cfg = LabConfig(block="1K", size="8b", hidden_cluster="4b")
    assert cfg.size == 8192 and cfg.hidden_cluster == 4096


def test_quiz_scenarios_and_schedules_refuse_wrong_types():
    with pytest.raises(ConfigError):
        make_quiz(-1)
    with pytest.raises(ArgumentError):
        make_quiz("3")  # type: ignore[arg-type]
    assert make_quiz(np.int64(3)).scenario == make_quiz(3).scenario
    with pytest.raises(ArgumentError):
        scenarios.config(None)  # type: ignore[arg-type]
    for bad in (None, "vm-read#1", [None], ["not a name"]):
        with pytest.raises(ArgumentError):
            trace.format_schedule(bad)  # type: ignore[arg-type]
    assert trace.format_schedule(["a#1", "a#1", "b#2"]) == "a#1*2 b#2"


def test_every_refusal_is_a_labkit_error():
    for call in (lambda: LabConfig.parse(None), lambda: scenarios.config(3),
                 lambda: trace.format_schedule(7)):
        with pytest.raises(LabkitError):
            call()
