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
            # plain Python values: int or str (the kernel's StrEnums are str), never numpy
            assert type(value) is int or isinstance(value, str), event
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


# --- the CLI's inputs: one policy, one line, exit 2 -------------------------------------


def _cli(argv, capsys):
    from labkit.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(rc, out, err, *words):
    assert rc == 2 and out == "" and err.count("\n") == 1, (rc, out, err)
    for word in words:
        assert word in err, err


def test_devices_and_huge_files_are_refused_before_they_are_read(capsys, tmp_path):
    _refused(*_cli(["run", "/dev/zero"], capsys), "/dev/zero", "NUL")
    _refused(*_cli(["replay", "canonical", "--schedule", "@/dev/zero"], capsys), "NUL")
    big = tmp_path / "big.scn"
    with open(big, "wb") as f:  # sparse: refused by its size, never read
        f.truncate((64 << 20) + 100)
    _refused(*_cli(["run", str(big)], capsys), "larger than")
    sched = tmp_path / "big.json"
    with open(sched, "wb") as f:
        f.truncate((512 << 20) + 1)
    _refused(*_cli(["replay", "canonical", "--schedule", f"@{sched}"], capsys), "larger")


class _EndlessStdin:
    """Standard input that never ends: counts what labkit reads of it."""

    def __init__(self) -> None:
        self.read_bytes = 0
        self.buffer = self

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "stdin must be read in bounded pieces"
        self.read_bytes += n
        return b"a" * n


def test_stdin_is_read_in_bounded_pieces(capsys, monkeypatch):
    from labkit.cli._common import READ_PIECE
    from labkit.scenario import MAX_TEXT

    stdin = _EndlessStdin()
    monkeypatch.setattr("sys.stdin", stdin)
    _refused(*_cli(["run", "-"], capsys), "<stdin>", "larger than")
    assert stdin.read_bytes <= MAX_TEXT + 3 + READ_PIECE


def test_schedule_files_that_are_not_utf8_or_hold_huge_numbers_are_refused(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"format": "labkit-trace",\n "x": "\xff"}')
    _refused(*_cli(["replay", "canonical", "--schedule", f"@{bad}"], capsys),
             str(bad), "line 2", "UTF-8")
    digits = tmp_path / "digits.json"
    digits.write_text('{"format": "labkit-trace", "version": ' + "9" * 5000 + "}")
    _refused(*_cli(["replay", "canonical", "--schedule", f"@{digits}"], capsys), "digits")
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": "\\\\", "b": ' + "[" * 70 + "]" * 70 + "}")
    _refused(*_cli(["replay", "canonical", "--schedule", f"@{deep}"], capsys), "levels")


def test_the_depth_check_reads_strings_and_escapes_as_json_does():
    from labkit.errors import TraceFormatError

    inside = '{"s": "' + "[" * 100 + '\\" ' + "{" * 100 + '"}'  # brackets in one string
    with pytest.raises(TraceFormatError, match="labkit trace"):
        trace.loads(inside)  # parsed (not too deep), then not a labkit trace
    with pytest.raises(TraceFormatError, match="levels"):
        trace.loads('{"s": "\\\\"' + ", " + '"t": ' + "[" * 65 + "]" * 65 + "}")
    adversarial = '{"' + '\\"' * 40000 + "[" * 65
    with pytest.raises(TraceFormatError, match="not valid JSON"):
        trace.loads(adversarial)


def test_replay_of_a_trace_file_applies_what_it_stores(capsys, tmp_path):
    cx = tmp_path / "cx"
    _cli(["explore", "canonical", "--design", "none", "--stop-at-first", "--json", str(cx)],
         capsys)
    path = tmp_path / "cx-none.json"
    assert path.exists()
    rc, out, err = _cli(["replay", "canonical", "--schedule", f"@{path}", "--no-trace"], capsys)
    assert rc == 1 and "VIOLATION" in out, (out, err)  # design none, from the file
    doc = json.loads(path.read_text())
    doc["events"][3]["detail"] = "edited"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    _refused(*_cli(["replay", "canonical", "--schedule", f"@{edited}"], capsys), "event")
    _refused(*_cli(["replay", "canonical", "--design", "2.8", "--schedule", f"@{path}"],
                   capsys), "contradicts")
    other = next(n for n in scenarios.names() if n != "canonical")
    _refused(*_cli(["replay", other, "--schedule", f"@{path}"], capsys), "another scenario")


def test_json_dash_writes_only_json_to_stdout(capsys):
    rc, out, err = _cli(["run", "canonical", "--json", "-"], capsys)
    assert rc in (0, 1) and "dumps" in json.loads(out)
    assert "legend" in err
    schedule = trace.format_schedule(lk.run_scenario(scenarios.load("canonical")).schedule)
    rc, out, err = _cli(["replay", "canonical", "--schedule", schedule, "--json", "-"], capsys)
    assert rc in (0, 1) and json.loads(out)["format"] == "labkit-trace" and "-- trace of" in err


# --- Ctrl-C from the first instruction ------------------------------------------------------

_INTERRUPT_AT_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt  # what Ctrl-C raises while the module loads
        return None
sys.meta_path.insert(0, Interrupt())
import labkit_entry
sys.argv = ["labkit", "run", "canonical"]
raise SystemExit(labkit_entry.main())
"""


@pytest.mark.parametrize("module", ["numpy", "labkit.cli._explore", "labkit.kernel"])
def test_ctrl_c_during_the_imports_is_one_line_and_exit_130(module):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_AT_IMPORT.format(module=module)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=root)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "labkit: interrupted (Ctrl-C)\n" and proc.stdout == ""


_SIGINT_AT_IMPORT = """
import os, signal, sys, time
sys.orig_argv[1:] = ["-m", "labkit", "run", "canonical"]  # as ``python -m labkit`` sets it
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while labkit imports numpy
            time.sleep(5)
        return None
sys.meta_path.insert(0, Interrupt())
import labkit
print("not interrupted")
"""


def test_ctrl_c_while_python_m_labkit_imports_is_one_line_and_exit_130():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", _SIGINT_AT_IMPORT], capture_output=True,
                          text=True, env=env, timeout=120, cwd=root)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "",
                                                           "labkit: interrupted (Ctrl-C)\n")


# --- the QEMU probe and the session directory -----------------------------------------------

def _fake_qemu(tmp_path, body: str):
    """A stand-in QEMU binary, with a qemu-img beside it (the probe looks there first,
    then on PATH: a machine without QEMU's packages has none)."""
    exe = tmp_path / "fake-qemu"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    img = tmp_path / "qemu-img"
    img.write_text("#!/bin/sh\nexit 0\n")
    img.chmod(0o755)
    return exe


def _gone(pid: int) -> bool:
    import os
    import time

    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_probe_honours_its_timeout_and_leaves_no_process(tmp_path):
    from labkit.qemu._probe import qemu_available

    pidfile = tmp_path / "pid"
    exe = _fake_qemu(tmp_path, f"echo $$ > {pidfile}\nexec sleep 600\n")
    reason = qemu_available(str(exe), timeout=0.5)
    assert reason is not None and "within 0.5 s" in reason
    assert _gone(int(pidfile.read_text()))


def test_the_probe_reads_output_that_is_not_utf8(tmp_path):
    from labkit.qemu._probe import qemu_available

    exe = _fake_qemu(tmp_path, "printf '\\377\\376{\"return\": [\\377]}\\n'\n"
                               "printf '\\377 bad\\n' >&2\n")
    reason = qemu_available(str(exe), timeout=5)
    assert reason is not None and "has no QMP command xen-set-replication" in reason


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_signal_during_the_probe_kills_its_qemu(tmp_path, signame):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pidfile = tmp_path / "pid"
    exe = _fake_qemu(tmp_path, f"echo $$ > {pidfile}\nexec sleep 600\n")
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from labkit.qemu._probe import qemu_available; "
                               f"qemu_available({str(exe)!r}, timeout=300)"],
        env=dict(os.environ, PYTHONPATH=str(root)), cwd=root)
    try:
        for _ in range(600):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        qemu_pid = int(pidfile.read_text())
        child.send_signal(getattr(signal, signame))
        assert child.wait(60) == -getattr(signal, signame)
        assert _gone(qemu_pid)
    finally:
        child.kill()
        child.wait()


def test_a_session_directory_whose_owner_file_fails_is_removed(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from labkit.qemu import _cleanup

    monkeypatch.setattr(_cleanup, "runs_dir", lambda: tmp_path)
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "owner":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space"):
        _cleanup.make_session_dir()
    assert list(tmp_path.iterdir()) == []


# --- quiet surprises: lines, run-lengths, JSON schedule items ------------------------------

@pytest.mark.parametrize("sep", ["\x85", "\u2028", "\x0b", "\x0c", "\x1c", "\u2029"])
def test_only_newlines_split_scenario_lines(sep):
    with pytest.raises(ScenarioError) as info:
        parse(f"start {sep} # a comment\nvread 0 4K\nbogus\n")
    assert info.value.line == 3  # the editor's line, not one more per separator
    assert len(parse(f"start\r\nvread 0 4K{sep}\r\n").steps) == 2


def test_run_lengths_count_their_value_not_their_digits():
    assert trace.parse_schedule("a#1*0000000001 b#2*000003") == ["a#1", "b#2", "b#2", "b#2"]
    with pytest.raises(LabkitError, match="run-length must be"):
        trace.parse_schedule("a#1*0000")


def test_a_json_schedule_item_is_one_task_name():
    from labkit.errors import TraceFormatError
    from labkit.explore import parse_schedule

    assert parse_schedule('["start#1", "start#1"]') == ["start#1", "start#1"]
    with pytest.raises(TraceFormatError, match="item 1 'start#1\\*3'"):
        parse_schedule('["start#1*3"]')
    with pytest.raises(TraceFormatError, match="item 2"):
        parse_schedule(["start#1", "a#1 b#2"])


def test_the_cost_of_par_blocks_is_bounded_before_anything_runs():
    from labkit import scenario as sc
    from labkit.errors import ScenarioLimitError

    block = "par {\n" + "vread 0 512\n" * 1000 + "}\n"
    parse("start\n" + block * (sc.MAX_PAR_WORK // 1000 ** 2))  # exactly the bound
    with pytest.raises(ScenarioLimitError, match="cost") as info:
        parse("start\n" + block * (sc.MAX_PAR_WORK // 1000 ** 2 + 1))
    assert info.value.line == 2 + 1002 * (sc.MAX_PAR_WORK // 1000 ** 2)
    lab = lk.build_secondary(size="128K")
    with pytest.raises(ScenarioLimitError):
        lab.play("start\n" + block * 5)
    assert lab.state == "none" and not lab.schedule


def test_an_expect_reads_only_its_range(monkeypatch):
    from labkit.layers import Pieces

    lab = lk.build_secondary(size="1G")
    lab.play("start\npwrite 0 4K 0x22\nvwrite 8K 4K 0x33\n")

    def whole(self):
        raise AssertionError("an expect joined a whole layer")

    monkeypatch.setattr(Pieces, "tobytes", whole)
    lab.play("expect secondary 0 4K 0x22\nexpect vm-view 8K 4K 0x33\nexpect active 8K 4K 0x33\n"
             "expect hidden 512M 4K unalloc\n")
    assert lab.expectation_failures == []
