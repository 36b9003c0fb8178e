"""The real-QEMU session's parts, without QEMU: the QMP channel against a fake monitor,
the process's command line, the images, and the refusals made before anything starts."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.block import check_byte_request
from labkit.config import LabConfig
from labkit.errors import (
    AlignmentError,
    ArgumentError,
    ConfigError,
    LimitError,
    QemuError,
    QemuTimeout,
    RangeError,
)
from labkit.qemu import QemuSecondary, _cleanup
from labkit.qemu._fleecing import QemuFleecing
from labkit.qemu._images import check_space, create_overlay, fill_secondary
from labkit.qemu._process import qemu_argv
from labkit.qemu._qmp import QmpChannel, read_greeting

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22},
                                "package": ""}, "capabilities": []}}


class FakeMonitor:
    """A QMP monitor on one end of a socket pair: the greeting (after an event, as QEMU
    7.2 may send one first), then per command: ``hang`` never answers, ``fail`` answers
    an error, ``hangup`` closes the connection, anything else returns ``{}``."""

    def __init__(self) -> None:
        self.client, self.server = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _send(self, msg: dict[str, object]) -> None:
        self.server.sendall(json.dumps(msg).encode() + b"\n")

    def _serve(self) -> None:
        self._send({"event": "RESUME", "data": {}, "timestamp": {"seconds": 0,
                                                                 "microseconds": 0}})
        self._send(GREETING)
        buf = ""
        decoder = json.JSONDecoder()
        try:
            while True:
                data = self.server.recv(4096)
                if not data:
                    return
                buf += data.decode()
                while buf.strip():  # qemu.qmp sends no newline: one JSON value after another
                    msg, end = decoder.raw_decode(buf.lstrip())
                    buf = buf.lstrip()[end:]
                    cmd = msg["execute"]
                    self.seen.append(cmd)
                    if cmd == "hang":
                        continue
                    if cmd == "hangup":
                        self.server.close()
                        return
                    if cmd == "fail":
                        self._send({"error": {"class": "GenericError",
                                              "desc": "Block replication is not running"},
                                    "id": msg.get("id")})
                    else:
                        self._send({"return": {}, "id": msg.get("id")})
        except OSError:
            return


@pytest.fixture
def channel() -> Iterator[tuple[QmpChannel, FakeMonitor]]:
    mon = FakeMonitor()
    gone: list[float] = []
    ch = QmpChannel(0.3, lambda wait: gone.append(wait) and None, lambda: "the log's tail")
    try:
        yield ch, mon
    finally:
        ch.close(quit=False)
        mon.server.close()


def test_channel_reads_the_greeting_after_an_event_and_negotiates(channel):
    ch, mon = channel
    greeting = ch.connect(mon.client)
    assert greeting["QMP"]["version"]["qemu"]["minor"] == 2
    assert ch.connected
    assert ch.execute("query-status") == {}
    assert mon.seen == ["qmp_capabilities", "query-status"]


def test_channel_error_reply_has_qmps_desc_and_stays_usable(channel):
    ch, mon = channel
    ch.connect(mon.client)
    with pytest.raises(QemuError) as e:
        ch.execute("fail")
    assert e.value.desc == "Block replication is not running"
    assert e.value.command == "fail" and "the log's tail" in str(e.value)
    assert ch.execute("query-status") == {}


def test_channel_times_out_without_an_answer(channel):
    ch, mon = channel
    ch.connect(mon.client)
    with pytest.raises(QemuTimeout) as e:
        ch.execute("hang")
    assert e.value.desc is None and e.value.command == "hang"
    assert str(e.value) == "hang: QEMU did not answer within 0.3 s"
    assert ch.execute("query-status") == {}  # a late answer never comes: still in step


def test_channel_lost_connection_has_no_desc(channel):
    ch, mon = channel
    ch.connect(mon.client)
    with pytest.raises(QemuError) as e:
        ch.execute("hangup")
    assert e.value.desc is None and not isinstance(e.value, QemuTimeout)
    assert e.value.command == "hangup"


def test_channel_close_stops_its_thread(channel):
    ch, mon = channel
    ch.connect(mon.client)
    assert any(t.name == "labkit-qmp" for t in threading.enumerate())
    ch.close(quit=True)
    assert not ch.connected
    assert "quit" in mon.seen
    assert not any(t.name == "labkit-qmp" for t in threading.enumerate())
    with pytest.raises(QemuError):
        ch.execute("query-status")


def test_greeting_missing_when_the_socket_closes():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.sendall(b'{"event": "RESUME"}\n')
    b.close()
    assert read_greeting(a, 1.0) is None
    a.close()


def test_qemu_argv_is_a_quiet_machine_with_a_qmp_socket():
    assert qemu_argv("/usr/bin/qemu-system-x86_64", "/tmp/lk-0/1-x/qmp.sock") == [
        "/usr/bin/qemu-system-x86_64", "-machine", "none", "-nodefaults", "-nographic",
        "-display", "none", "-qmp", "unix:/tmp/lk-0/1-x/qmp.sock,server=on,wait=off"]


@pytest.mark.parametrize(("fill", "expected"), [
    ("index", bytes([0x10]) * 1024 + bytes([0x11]) * 1024),
    ("zero", bytes(2048)),
    (0x42, bytes([0x42]) * 2048),
])
def test_fill_secondary(tmp_path: Path, fill: str | int, expected: bytes) -> None:
    path = tmp_path / "secondary.raw"
    fill_secondary(path, 2048 + 0x70 * 1024, 1024, fill)  # past one period of the index
    data = path.read_bytes()
    assert data[:2048] == expected
    assert len(data) == 2048 + 0x70 * 1024
    if fill == "index":
        assert data[0x70 * 1024:0x70 * 1024 + 1024] == bytes([0x10]) * 1024  # wraps
    if fill == "zero":
        assert path.stat().st_blocks == 0  # one hole


def test_check_space_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_cleanup, "free_bytes", lambda path: 20 << 20)
    check_space(tmp_path, 1 << 20, "index")
    with pytest.raises(LimitError, match="temporary filesystem"):
        check_space(tmp_path, 8 << 20, "index")
    check_space(tmp_path, 1 << 30, "zero")  # sparse: only the margin


def test_create_overlay_failure_names_qemu_imgs_message(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-img"
    fake.write_text("#!/bin/sh\necho 'qemu-img: invalid cluster size' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(QemuError, match="qemu-img create hidden.qcow2 failed \\(exit 1\\): "
                                        "qemu-img: invalid cluster size"):
        create_overlay(str(fake), tmp_path, "hidden.qcow2", "secondary.raw", "raw", 4096, 5.0)


@pytest.mark.parametrize(("make", "error", "words"), [
    (lambda: QemuSecondary(131072), ArgumentError, "takes a labkit.config.LabConfig"),
    (lambda: QemuSecondary(LabConfig.parse({"graph": "fleecing"})), ConfigError, "graph='colo'"),
    (lambda: QemuSecondary(LabConfig(backup_cluster="4K")), ConfigError, "leave it out"),
    (lambda: QemuSecondary(LabConfig(), timeout=0), ConfigError, "timeout must be"),
    (lambda: QemuSecondary(LabConfig(), timeout="1"), ArgumentError, "timeout must be"),
    (lambda: QemuFleecing(LabConfig()), ConfigError, "graph='fleecing'"),
    (lambda: QemuFleecing(LabConfig.parse({"graph": "fleecing"}), fail_copy_write=True),
     ConfigError, "needs blkdebug=True"),
])
def test_refused_before_anything_starts(make, error, words):
    before = _cleanup.runs_dir()
    entries = set(before.iterdir())
    with pytest.raises(error, match=words):
        make()
    assert set(before.iterdir()) == entries


def test_the_range_check_is_the_engines():
    assert check_byte_request("VM read", "export 'top'", 8192, 4096, 4, 1) == (4096, 4)
    with pytest.raises(RangeError, match=r"reaches past the end of the node \(8192 bytes\)"):
        check_byte_request("VM read", "export 'top'", 8192, 4096, 8192, 1)
    with pytest.raises(RangeError, match="must not be negative"):
        check_byte_request("VM write", "export 'top'", 8192, -512, 512, 1)
    with pytest.raises(AlignmentError):
        check_byte_request("VM write", "active", 8192, 0, 4)  # the engine's nodes: 512
