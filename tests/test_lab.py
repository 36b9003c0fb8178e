"""The lab API, the scenario language, the oracle's bookkeeping and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import labkit as lk
from labkit import trace as tr
from labkit.cli import demo_text, main
from labkit.errors import AlignmentError, RangeError, ScenarioError
from labkit.layers import Layer
from labkit.replication import ReplicationStage
from labkit.scenario import Par, parse
from labkit.testing import snapshot


def test_scenario_sizes_and_par_blocks():
    sc = parse("""
        # a comment
        start
        pwrite 5b 4K 0xbb        # trailing comment
        par {
            vread 0x5000 8s
            pwrite 20480 1K 187
        }
        par { vread 3s 1s orig; vwrite 1M 512 0x80 }
        dump after nbd-write#1
        expect hidden 0 64K orig
    """, block=4096, size=2 << 20)
    start, pw, par1, par2, dump, exp = sc.steps
    assert start.op == "start" and pw.offset == 5 * 4096 and pw.length == 4096 and pw.byte == 0xBB
    assert isinstance(par1, Par) and [c.op for c in par1.commands] == ["vread", "pwrite"]
    assert par1.commands[0].offset == 0x5000 and par1.commands[0].length == 4096
    assert par1.commands[1].byte == 187
    assert par2.commands[0].what == "orig" and par2.commands[1].offset == 1 << 20
    assert dump.title == "after nbd-write#1"
    assert exp.layer == "hidden" and exp.what == "orig" and exp.length == 65536


@pytest.mark.parametrize("text, line, expected", [
    ("start\nfrobnicate", 2, "unknown command 'frobnicate'"),
    ("pwrite 0 4K", 1, "expected 'pwrite OFF LEN BYTE'"),
    ("pwrite 0 4K 0x100", 1, "is not a byte"),
    ("pwrite 0 4Q 0x80", 1, "is not a size"),
    ("vwrite 100 512 0x80", 1, "multiples of 512"),
    ("vread 0 0", 1, "at least one 512-byte sector"),
    ("\n\nvread 1020K 8K", 3, "past the end"),
    ("start now", 1, "takes no arguments"),
    ("par {\nvread 0 4K", 1, "never closed"),
    ("}", 1, "without an open"),
    ("par vread 0 4K", 1, "must be followed by '{'"),
    ("par { par { start } }", 1, "cannot be nested"),
    ("par { dump x }", 1, "cannot run inside par"),
    ("par { }", 1, "at least one command"),
    ("expect hidden 0 4K", 1, "expected 'expect LAYER OFF LEN WHAT'"),
    ("expect cache 0 4K orig", 1, "unknown layer 'cache'"),
])
def test_malformed_scenarios_name_the_line_text_and_expectation(text, line, expected):
    with pytest.raises(ScenarioError) as exc:
        parse(text, size=1 << 20)
    assert exc.value.line == line
    assert expected in str(exc.value)
    assert f"line {line}:" in str(exc.value)


def test_a_malformed_scenario_runs_nothing():
    with pytest.raises(ScenarioError, match="line 3"):
        lk.run_scenario("start\npwrite 0 4K 0xbb\nbogus", size="128K")


@pytest.mark.parametrize("call, error, message", [
    (lambda lab: lab.primary_write(100, 512, 0x80), AlignmentError, "multiples"),
    (lambda lab: lab.vm_read(0, 1000), AlignmentError, "request_alignment"),
    (lambda lab: lab.vm_write(128 * 1024, 512, 0x80), RangeError, "past the end"),
    (lambda lab: lab.primary_write(0, 512, 256), ValueError, "byte must be an integer 0-255"),
    (lambda lab: lab.vm_write(-512, 512, 1), RangeError, "negative"),
])
def test_bad_io_is_refused_before_any_task_exists(call, error, message):
    lab = lk.build_secondary(size="128K")
    lab.start()
    before = (snapshot(lab.secondary, lab.hidden, lab.active), list(lab.kernel.tasks),
              len(lab.trace))
    with pytest.raises(error, match=message):
        call(lab)
    assert (snapshot(lab.secondary, lab.hidden, lab.active), list(lab.kernel.tasks),
            len(lab.trace)) == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(size="1Q"), "size must be a size"),
    (dict(size=1000), "multiple of 512"),
    (dict(block="1000"), "positive multiple of 512"),
    (dict(design="3.0"), "design must be one of 'none', '2.8', '4.0'"),
    (dict(era="9.0"), "era must be one of"),
    (dict(fill="random"), "fill must be 'index', 'zero' or a byte"),
    (dict(hidden_cluster="3K"), "power of two"),
    (dict(policy="lifo"), "policy must be 'fifo' or a policy object"),
])
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lk.build_secondary(**kwargs)


def test_tasks_have_stable_names_and_results():
    lab = lk.build_secondary(size="128K")
    assert lab.start().name == "start#1"
    w1, w2 = lab.primary_write(0, 4096, 0xB0), lab.primary_write(4096, 4096, 0xB1)
    r = lab.vm_read(0, 8192)
    v = lab.vm_write(64 * 1024, 512, 0xC0)
    assert [t.name for t in (w1, w2, r, v)] == ["nbd-write#1", "nbd-write#2", "vm-read#1",
                                                  "vm-write#1"]
    lab.run()
    assert r.result == b"\x10" * 4096 + b"\x11" * 4096
    assert lab.schedule[0] == "start#1"


def test_same_scenario_same_policy_same_trace_byte_for_byte():
    text = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb; vwrite 4b 8K 0xcc }"
    a = lk.run_scenario(text, size="128K", policy=lk.Random(3))
    b = lk.run_scenario(text, size="128K", policy=lk.Random(3))
    assert tr.dumps(a.trace, a.schedule) == tr.dumps(b.trace, b.schedule)


def test_expectations_in_scenarios():
    lab = lk.run_scenario("""
        start
        pwrite 5b 4K 0xbb
        vread 5b 4K orig
        vread 5b 4K 0x15
        expect hidden 0 64K orig
        expect hidden 64K 64K unalloc
        expect secondary 5b 4K 0xbb
        expect active 0 4K alloc
    """, size="128K")
    assert lab.expectation_failures == ["line 9: expect active 0 4K alloc: some sectors are "
                                        "not allocated"]


def test_oracle_accepts_either_value_of_a_concurrent_vm_write():
    for seed in range(30):
        lab = lk.run_scenario("start\npar { vread 0 8K; vwrite 4K 4K 0xcc }", size="128K",
                              policy=lk.Random(seed))
        assert lab.violations() == []


RACING_VM_WRITES = ("start\npar { vwrite 64K 512 0x80; vwrite 64K 8K 0x81; "
                    "vwrite 64K 512 0x80 }\nvread 0 128K")
#: vm-write#2 puts its first cluster down, vm-write#3 lands over it, vm-write#2 completes
#: last (its second cluster's L2 update): the disk holds #3's 0x80, not #2's 0x81
#: (era 2.8's qcow2 order: a partial-cluster write puts its data down before its COW)
RACING_SCHEDULE = (["start#1"] * 3 + ["vm-write#3", "vm-write#2", "vm-write#3", "vm-write#1"]
                   + ["vm-write#3"] * 3 + ["vm-write#2", "vm-write#1", "vm-write#2",
                                           "vm-write#1"]
                   + ["vm-write#2"] * 2 + ["vm-read#1"] * 4)


def test_oracle_overlapping_vm_writes_in_flight_together_may_land_in_either_order():
    """The fuzzer's false conflicting read (design 4.0, QEMU 7.2's): the view must not
    assume the write that completes last is the one whose bytes land last."""
    lab = lk.build_secondary(size="128K", design="4.0", era="2.8",
                             policy=lk.Scripted(RACING_SCHEDULE))
    lab.play(RACING_VM_WRITES)
    assert lab.kernel.tasks["vm-read#1"].result[64 * 1024] == 0x80  # #3's bytes landed last
    assert lab.violations() == []
    assert lk.explore(RACING_VM_WRITES, size="128K", design="4.0", era="2.8",
                      reduction="none").verdict == "safe"


def test_oracle_a_race_between_vm_writes_is_settled_by_a_later_write_or_a_checkpoint():
    from labkit.oracle import Oracle

    def race(o: Oracle) -> None:  # a and b overlap in time and in space; b completes last
        o.vm_write_started("a", 0, 4096, 0xAA)
        o.vm_write_started("b", 0, 8192, 0xBB)
        o.vm_write_done("a", True)
        o.vm_write_done("b", True)

    def read(o: Oracle, name: str, byte: int, offset: int = 0) -> object:
        o.vm_read_started(name, offset, 4096)
        return o.vm_read_done(name, bytes([byte]) * 4096)

    o = Oracle(bytes(16384), 4096)
    o.started()
    race(o)
    assert read(o, "r1", 0xAA) is None and read(o, "r2", 0xBB) is None  # either landed last
    assert read(o, "r3", 0xAA, offset=4096) is not None  # only b wrote there
    o.vm_write_started("c", 2048, 512, 0xCC)  # raced with nothing: its bytes are certain
    o.vm_write_done("c", True)
    o.vm_read_started("r4", 0, 4096)
    v = o.vm_read_done("r4", bytes([0xAA]) * 2048 + bytes([0xAA]) * 512 + bytes([0xAA]) * 1536)
    assert v is not None and v.offset == 2048 and v.expected == 0xCC
    race(o)
    o.checkpoint()  # the view is the primary's disk again: the VM's writes are gone
    assert read(o, "r5", 0xAA) is not None and read(o, "r6", 0x00) is None
    race(o)
    assert o.failover_done("failover#1", bytes([0xAA]) * 4096 + bytes([0xBB]) * 4096
                           + bytes(8192)) is None  # the disk kept a's bytes: accepted
    assert read(o, "r7", 0xAA) is None and read(o, "r8", 0xBB) is not None  # now settled


def test_oracle_flags_a_lost_failover():
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.play("pwrite 5b 4K 0xbb")
    lab.hidden.make_empty = None  # not used; the oracle must not read the engine's layers
    lab.oracle.view[5 * 4096] = 0x77  # pretend the VM expected something else
    lab.failover()
    lab.run()
    (v,) = lab.violations()
    assert v.kind == "failover" and v.offset == 5 * 4096 and v.expected == 0x77


def test_layer_json_round_trip_and_errors():
    lab = lk.run_scenario("start\npwrite 0 4K 0xbb\nvwrite 8K 512 0xcc", size="128K")
    for layer in lab.layers().values():
        assert Layer.from_json(json.loads(json.dumps(layer.to_json()))) == layer
    with pytest.raises(ValueError, match="malformed layer"):
        Layer.from_json({"size": 512})
    assert Layer(bytes(1024), np.ones(2, bool)) != Layer(bytes(1024), np.array([1, 0], bool))
    with pytest.raises(ValueError, match="512 bytes per sector"):
        Layer(bytes(100), np.ones(1, bool))


def test_cli_run_prints_tables_and_json(tmp_path, capsys):
    scn = tmp_path / "s.scn"
    scn.write_text("start\npwrite 5b 4K 0xbb\ndump after write\nvread 5b 4K 0x99\n")
    out_json = tmp_path / "out.json"
    assert main(["run", str(scn), "--size", "128K", "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "-- dump 1: after write" in out
    assert "secondary         10111213 14bb1617" in out
    assert "EXPECT FAILED: line 4" in out
    doc = json.loads(out_json.read_text())
    assert doc["dumps"][0]["title"] == "after write"
    layer = Layer.from_json(doc["dumps"][0]["layers"]["hidden"])
    assert layer.alloc[:128].all()


def test_cli_errors_and_version(tmp_path, capsys):
    scn = tmp_path / "bad.scn"
    scn.write_text("start\nfly 0 4K\n")
    assert main(["run", str(scn)]) == 2
    assert "scenario line 2" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.scn")]) == 2
    out = subprocess.run([sys.executable, "-m", "labkit", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"labkit {lk.__version__}"
    help_text = subprocess.run([sys.executable, "-m", "labkit", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "demo" in help_text and "run" in help_text


def test_demo_is_deterministic_and_tells_steps_1_to_3():
    text = demo_text()
    assert text == demo_text()
    for step in ("Step 1:", "Step 2:", "Step 3:"):
        assert step in text
    assert "it gets 0x15, the old data" in text
    assert "hidden            10111213 14151617 18191a1b 1c1d1e1f ........" in text
    assert "0x" not in text.split("Oracle:")[1] and "0 violation(s)" in text


def test_engine_imports_without_presentation():
    code = ("import labkit, sys; assert 'matplotlib' not in sys.modules and "
            "'ipywidgets' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_expect_on_an_unreadable_vm_view_says_why():
    lab = lk.run_scenario("expect vm-view 0 4K orig\nstart\nexpect vm-view 0 4K orig",
                          size="128K")
    assert lab.expectation_failures == [
        "line 1: expect vm-view 0 4K orig: layer vm-view cannot be read now (replication none)"]


def test_the_interpreter_records_one_outcome_per_command_as_compare_reads_them():
    text = ("start\npwrite 0 4K 0xbb\nvread 0 4K 0x11\nstart\nfailover\ncheckpoint\n"
            "vwrite 4K 4K 0xcc\nstop\n")
    lab = lk.run_scenario(text, size="128K", era="7.2")
    mine = [(o.task, o.error, o.errno) for o in lab.outcomes]
    # What compare reads is what each command's task ended with: QEMU's message for a
    # control command, the error and its errno for a failed request.
    ended = []
    for command, o in zip(parse(text).commands, lab.outcomes, strict=True):
        assert o.command == command
        exc = lab.kernel.tasks[o.task].exception
        if exc is None:
            ended.append((o.task, None, None))
        elif isinstance(exc, lk.ReplicationError):
            ended.append((o.task, exc.message, None))
        else:
            ended.append((o.task, str(exc), exc.errno if isinstance(exc, lk.BlockError) else None))
    assert mine == ended
    assert [o.task for o in lab.outcomes] == ["start#1", "nbd-write#1", "vm-read#1", "start#2",
                                              "failover#1", "checkpoint#1", "vm-write#1",
                                              "stop#1"]
    assert lab.outcomes[3].error is not None  # a second start while running is refused
    assert lab.outcomes[2].data == bytes([0x10]) * 4096  # the old block 0: hidden's copy
    assert lab.expectation_failures == [
        "line 3: vread 0 4K 0x11: vm-read#1 read other data than 0x11"]


def test_scenario_run_steps_through_the_same_interpreter():
    text = "start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\ndump d\nvread 5b 4K orig\n"
    played = lk.run_scenario(text, size="128K")
    lab = lk.build_secondary(size="128K")
    run = lk.lab.ScenarioRun(lab, text)
    starts = {}
    while not run.done:
        starts.setdefault(run.index, run.started_at)
        run.step()
    assert lab.schedule == played.schedule and lab.log == played.log
    assert [t for t, _ in lab.dumps] == [t for t, _ in played.dumps] == ["d"]
    assert list(starts) == [0, 1, 3]  # start, the par block, the last vread (dump: no decision)
    assert starts[0] == 0
    assert starts[1] == lab.schedule.count("start#1")
    assert starts[3] == len(lab.schedule) - lab.schedule.count("vm-read#2")


def test_a_part_of_a_parsed_scenario_plays_only_its_own_steps() -> None:
    """labkit.qemu's race orders play the steps before and after a par block as Scenarios
    of their own (sharing the whole text): re-checking one against the lab keeps its part."""
    from labkit.scenario import Scenario, parse

    whole = parse("start\npar { vread 5b 4K; pwrite 5b 4K 0xbb }\ndump after\nvread 5b 4K\n")
    after = Scenario(whole.steps[2:], whole.text)
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.play(after)
    assert [title for title, _ in lab.dumps] == ["after"]
    assert [c.op for c in lab.parsed(after).commands] == ["dump", "vread"]


def test_the_sim_result_has_the_qemu_runs_fields() -> None:
    """A lab's ScenarioResult and labkit.qemu's QemuRun hold what the interpreter records
    under the same names and types (no QEMU needed: nothing is launched)."""
    import dataclasses

    from labkit.interpret import Record
    from labkit.qemu._run import QemuRun, configured_scenario
    from labkit.run import ScenarioResult

    fields = [f.name for f in dataclasses.fields(ScenarioResult)]
    assert fields == list(Record.__annotations__)  # exactly the interpreter's record
    config, scenario = configured_scenario("start\nvread 0 4K\ndump\n", size="128K")
    qemu_run = QemuRun(scenario, config)
    for name in fields:
        assert type(getattr(qemu_run, name)) is type(getattr(ScenarioResult(), name)) is list
    lab = lk.run_scenario("start\nvread 0 4K 0xbb\ndump\n", size="128K")
    assert isinstance(lab.result, ScenarioResult)
    for name in fields:  # the lab's public names are its result's
        assert getattr(lab, name) is getattr(lab.result, name)
    assert len(lab.dumps) == 1 and len(lab.outcomes) == 2 and len(lab.expectation_failures) == 1


def test_the_replication_stage_is_an_enum_that_prints_as_before() -> None:
    lab = lk.build_secondary(size="128K")
    assert lab.state is ReplicationStage.NONE and lab.state == "none"
    lab.start()
    assert lab.state is ReplicationStage.RUNNING
    assert f"{lab.state}" == str(lab.state) == "running" and "replication running" in repr(lab)
