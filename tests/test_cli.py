"""The command line: one error policy, shipped names and headers everywhere, make lab as root.

Every refused input is one line on stderr and exit status 2; Ctrl-C is one
line and 130; anything else is a bug (a traceback, exit 1).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import labkit as lk
from labkit import cli
from labkit.cli import main

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``labkit ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own exit (bad option, --help)
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def labkit(*args: str, stdin: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True,
                          input=stdin, env=ENV, timeout=timeout, cwd=ROOT)


def one_line_refusal(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


# --- shipped names and # config: headers, the same for every command --------------------

def test_run_accepts_a_shipped_name_and_applies_its_header(capsys, tmp_path) -> None:
    out_json = tmp_path / "run.json"
    rc, out, _ = run(["run", "canonical", "--json", str(out_json)], capsys)
    assert rc == 0 and "-- dump 1: after the race" in out
    assert json.loads(out_json.read_text())["config"]["size"] == 131072  # size=128K header


def test_run_honours_the_header_and_options_win(capsys, tmp_path) -> None:
    scn = tmp_path / "h.scn"
    scn.write_text("# config: size=64K\nstart\nvread 20b 4K\n")
    rc, _, err = run(["run", str(scn)], capsys)
    one_line_refusal(rc, err, "past the end of the 65536-byte disk")
    rc, out, _ = run(["run", str(scn), "--size", "128K"], capsys)
    assert rc == 0, out


def test_explore_and_replay_read_names_and_headers_alike(capsys) -> None:
    rc, out, _ = run(["explore", "canonical", "--design", "none", "--max-runs", "50",
                      "--stop-at-first", "--no-shrink"], capsys)
    assert "canonical.scn (shipped), design none: VIOLATION" in out
    ex = lk.explore(lk.scenarios.load("canonical"), design="none", stop_at_first=True)
    schedule = ex.violations[0].schedule_text
    # no --size: the header's size=128K is what the explorer used, so the schedule fits
    rc, out, _ = run(["replay", "canonical", "--design", "none", "--schedule", schedule,
                      "--no-trace"], capsys)
    assert rc == 1 and "VIOLATION" in out
    rc, _, err = run(["replay", "canonical", "--design", "none", "--schedule", "start#1*999"],
                     capsys)
    one_line_refusal(rc, err, "choice #")


def test_an_unknown_name_lists_the_shipped_ones(capsys) -> None:
    rc, _, err = run(["run", "no-such-scenario"], capsys)
    one_line_refusal(rc, err, "neither a file nor a shipped scenario", "canonical")


def test_run_reads_standard_input_with_a_bom() -> None:
    p = labkit("run", "-", "--size", "128K", stdin="\ufeffstart\ndump x\n".encode())
    assert p.returncode == 0, p.stderr
    assert b"-- dump 1: x" in p.stdout


# --- one line, exit 2, for each bad input -------------------------------------------------

@pytest.mark.parametrize(("argv", "needles"), [
    (["run", "canonical", "--backup-cluster", "1000"], ["--backup-cluster must be a power of two"]),
    (["run", "canonical", "--backup-cluster", "0"], ["--backup-cluster"]),
    (["run", "canonical", "--backup-cluster", "-4096"], ["--backup-cluster"]),
    (["run", "canonical", "--size", "16G"], ["--size '16G'", "past labkit's bound"]),
    (["run", "canonical", "--block", "1G"], ["--block '1G'", "past labkit's bound"]),
    (["run", "canonical", "--design", "3.0"], ["--design must be one of"]),
    (["run", "canonical", "--fill", "300"], ["--fill must be"]),
    (["compare", "canonical", "--timeout", "0.001"], ["--timeout", "0.1 to 3600"]),
    (["compare", "canonical", "--timeout", "inf"], ["--timeout", "0.1 to 3600"]),
    (["compare", "canonical", "--timeout", "nan"], ["--timeout", "0.1 to 3600"]),
    (["explore", "canonical", "--max-runs", "0"], ["--max-runs", "positive integer"]),
    (["explore", "canonical", "--max-runs", "١٠"], ["--max-runs"]),
    (["quiz", "--seed", "-3"], ["--seed"]),
    (["run", "canonical", "--backend", "qemu", "--backup-cluster", "4K"], ["not QEMU"]),
])
def test_bad_options_are_one_line_and_exit_2(argv, needles, capsys) -> None:
    rc, _, err = run(argv, capsys)
    one_line_refusal(rc, err, *needles)


@pytest.mark.parametrize(("text", "needles"), [
    (b"start\npwrite 1_0 512 1\n", ["scenario line 2", "'1_0' is not a size"]),
    (b"pwrite 0 512 0x_bb\n", ["'0x_bb' is not a byte"]),
    (b"pwrite +5 512 1\n", ["'+5' is not a size"]),
    ("vread \u0664K 4K\n".encode(), ["is not a size"]),
    ("vread \uff14K 4K\n".encode(), ["is not a size"]),
    (b"start\n\xff\xfe\n", ["bad.scn: scenario line 2", "not UTF-8"]),
    (b"# config: size=+5\nstart\n", ["'# config: size' must be a size"]),
    (b"# config: backup_cluster=3K\nstart\n", ["'# config: backup_cluster' must be a power"]),
    (b"\xef\xbb\xbfnonsense\n", ["unknown command 'nonsense'"]),
])
def test_bad_scenario_files_are_one_line_and_exit_2(text, needles, tmp_path, capsys) -> None:
    scn = tmp_path / "bad.scn"
    scn.write_bytes(text)
    rc, _, err = run(["run", str(scn)], capsys)
    one_line_refusal(rc, err, *needles)


def test_a_huge_run_length_is_one_line(capsys) -> None:
    rc, _, err = run(["replay", "canonical", "--schedule", "start#1*99999999999"], capsys)
    one_line_refusal(rc, err, "schedule item 1")


def test_a_deeply_nested_schedule_file_is_one_line(tmp_path, capsys) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    rc, _, err = run(["replay", "canonical", "--schedule", f"@{deep}"], capsys)
    one_line_refusal(rc, err, "labkit replay: ")


def test_a_missing_file_is_one_line(tmp_path, capsys) -> None:
    rc, _, err = run(["replay", str(tmp_path / "x.scn"), "--schedule", "start#1"], capsys)
    one_line_refusal(rc, err, "neither a file nor a shipped scenario")


def test_control_characters_in_titles_do_not_reach_the_terminal(tmp_path, capsys) -> None:
    scn = tmp_path / "t.scn"
    scn.write_bytes(b"dump \x1b[2J\x1b[31mred; {x}\n")
    rc, out, _ = run(["run", str(scn), "--size", "128K"], capsys)
    assert rc == 0 and "\x1b" not in out
    assert "-- dump 1: \\x1b[2J\\x1b[31mred; {x}" in out


def test_exit_status_in_a_real_process() -> None:
    p = labkit("run", "canonical", "--backup-cluster", "1000")
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.decode().count("\n") == 1
    p = labkit("compare", "canonical", "--timeout", "inf")
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1


# --- Ctrl-C and bugs ----------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    import labkit.cli._quiz as quiz_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(quiz_cli, "make_quiz", lambda seed: interrupted(None))
    rc, _, err = run(["quiz"], capsys)
    assert rc == 130 and err == "labkit quiz: interrupted (Ctrl-C)\n"


def test_sigint_during_a_long_exploration_exits_130() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "explore", "canonical4",
                             "--reduction", "none", "--max-runs", "1000000", "--design", "2.8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode() == "labkit explore: interrupted (Ctrl-C)\n"


def test_anything_else_is_a_bug_with_a_traceback(monkeypatch) -> None:
    import labkit.cli._quiz as quiz_cli

    def broken(seed):
        raise RuntimeError("a bug")

    monkeypatch.setattr(quiz_cli, "make_quiz", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["quiz"])


def test_cli_is_a_package_and_keeps_its_entry_points() -> None:
    assert Path(cli.__file__).name == "__init__.py"
    assert not list((ROOT / "labkit").glob("_cli_*.py")) and not (ROOT / "labkit/cli.py").exists()
    p = labkit("--version")
    assert p.stdout.decode().strip() == f"labkit {lk.__version__}"
    # the console script wraps labkit.cli.main: Ctrl-C during its imports is handled too
    assert 'labkit = "labkit_entry:main"' in (ROOT / "pyproject.toml").read_text()
    assert "from labkit.cli import main" in (ROOT / "labkit_entry/__init__.py").read_text()


# --- reset ----------------------------------------------------------------------------------

def test_reset_calls_labkit_editions(monkeypatch, capsys, tmp_path) -> None:
    import labkit.editions as editions

    seen = []
    done = editions.ResetResult(tmp_path / "n.ipynb", tmp_path / "backups" / "n.1.ipynb", "git")
    monkeypatch.setattr(editions, "reset",
                        lambda name, force=False: seen.append((name, force)) or done)
    rc, out, _ = run(["reset", "04-conflicting-reads"], capsys)
    assert rc == 0 and seen == [("04-conflicting-reads", False)] and done.text() in out
    assert str(tmp_path / "backups" / "n.1.ipynb") in out


# --- make lab as root ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_the_lab_even_as_root(tmp_path) -> None:
    """Start exactly the command line ``make lab`` runs (``make -n``), fetch ``/lab``, stop it."""
    venv = Path(sys.executable).parent.parent
    port, token = _free_port(), "labkit-test-token"
    plan = subprocess.run(["make", "-n", "-o", f"{venv}/.lab-installed", "lab", f"VENV={venv}",
                           f"PORT={port}", f"TOKEN={token}"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout.splitlines()
    assert any(f"http://localhost:{port}/lab?token={token}" in line for line in plan)
    made = subprocess.run(["make", "-n", "-o", f"{venv}/.lab-installed", "lab", f"VENV={venv}"],
                          capture_output=True, text=True, cwd=ROOT, check=True).stdout
    printed, served = re.findall(r"token[=]([0-9a-f]{32})", made)  # the URL's, the server's
    assert printed == served
    command = next(line for line in plan if "jupyter lab" in line)
    assert ("--allow-root" in command) == (os.getuid() == 0)
    env = dict(ENV, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), BROWSER="true",
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.Popen([*shlex.split(command), "--no-browser", "--ip=127.0.0.1"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}",
                                            timeout=5) as r:
                    status, body = r.status, r.read().decode("utf-8", "replace")
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, (proc.poll(), proc.stderr.read().decode() if proc.poll() else "")
        assert re.search(r"JupyterLab|jupyter-config-data", body)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
