"""The real-QEMU backend against the observations in qemu-7.2-observed.md.

These tests run Debian's QEMU 7.2 (``qemu-system-x86``, ``qemu-utils``).  They
are skipped when QEMU is not usable, except under ``CI=true``, where a missing
QEMU is a failure.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from labkit.config import LabConfig
from labkit.layers import SECTOR, Layer
from labkit.qemu import (
    BackendError,
    NbdClient,
    NbdError,
    QemuError,
    QemuNotAvailable,
    QemuSecondary,
    qemu_available,
)

K = 1024
M = K * K
B = 4096  # the table's block size


def cfg(size: int, **values: object) -> LabConfig:
    """A session's configuration; the clusters default to 64 KiB (qcow2's own default)."""
    return LabConfig.parse({"size": size, "hidden_cluster": 64 * K, "active_cluster": 64 * K,
                            **values})


def row(layer: Layer | None, block: int = B) -> str:
    """One dump row as in qemu-7.2-observed.md: ``xx``, ``..``, ``zz``, ``**``, ``~~``."""
    if layer is None:
        return "(not read)"
    n = layer.size // block
    per = block // SECTOR
    alloc = layer.alloc.reshape(n, per)
    zero = layer.zero.reshape(n, per)
    data = np.frombuffer(layer.data, dtype=np.uint8).reshape(n, block)
    cells = []
    for k in range(n):
        if not alloc[k].any():
            cells.append("..")
        elif not alloc[k].all():
            cells.append("**")
        elif zero[k].all():
            cells.append("zz")
        else:
            values = np.unique(data[k])
            cells.append(f"{values[0]:02x}" if values.size == 1 else "~~")
    text = "".join(cells)
    return " ".join(text[i : i + 8] for i in range(0, len(text), 8))


def extents(mask: np.ndarray, unit: int = K) -> list[tuple[float, float]]:
    """Runs of True sectors as [start, end) in units of ``unit`` bytes."""
    out = []
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    for s, e in zip(edges[::2], edges[1::2], strict=True):
        out.append((s * SECTOR / unit, e * SECTOR / unit))
    return out


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- the reference run --------------------------------------------------------


def test_reference_run(qemu: None) -> None:
    """qemu-7.2-observed.md's reference run, dump by dump."""
    orig = "10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f"
    empty = " ".join(["........"] * 8)
    with QemuSecondary(cfg(128 * K, block=B, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        assert q.version.startswith("7.2")
        d = q.dump()
        assert set(d) == {"secondary", "hidden", "active", "vm-view"}
        assert row(d["secondary"]) == orig
        assert row(d["hidden"]) == empty
        assert row(d["active"]) == empty
        assert d["vm-view"] is None  # colo-top gives EIO until replication starts

        q.start()
        q.pwrite(5 * B, B, 0xBB)
        d = q.dump()
        assert row(d["secondary"]) == orig.replace("14151617", "14bb1617")
        assert row(d["hidden"]) == orig[:35] + " ........" * 4  # blocks 0-15 = one 64K chunk
        assert row(d["active"]) == empty
        assert row(d["vm-view"]) == orig

        q.pwrite(6 * B, B, 0xBC)  # same chunk: nothing more is copied
        q.vwrite(20 * B, B, 0xCC)
        q.vwrite(5 * B, B, 0xCD)
        d = q.dump()
        assert row(d["secondary"]) == orig.replace("14151617", "14bbbc17")
        assert row(d["hidden"]) == orig[:35] + " ........" * 4
        assert row(d["active"]) == (
            "........ ..cd.... ........ ........ ........ cc...... ........ ........"
        )
        assert int(d["active"].alloc.sum()) == 2 * B // SECTOR
        assert row(d["vm-view"]) == (
            "10111213 14cd1617 18191a1b 1c1d1e1f 20212223 cc252627 28292a2b 2c2d2e2f"
        )
        assert q.vread(5 * B, 4) == b"\xcd" * 4

        q.checkpoint()
        d = q.dump()
        after_ckpt = orig.replace("14151617", "14bbbc17")
        assert row(d["hidden"]) == empty
        assert row(d["active"]) == empty
        assert row(d["vm-view"]) == after_ckpt

        q.pwrite(7 * B, B, 0xBE)
        q.pwrite(24 * B, B, 0xBD)
        q.vwrite(2 * B, B, 0xCF)
        q.vwrite(25 * B, B, 0xCE)
        d = q.dump()
        assert row(d["secondary"]) == (
            "10111213 14bbbcbe 18191a1b 1c1d1e1f 20212223 24252627 bd292a2b 2c2d2e2f"
        )
        assert row(d["hidden"]) == after_ckpt  # both chunks copied, with bb/bc
        assert row(d["active"]) == (
            "....cf.. ........ ........ ........ ........ ........ ..ce.... ........"
        )
        vm_view = "1011cf13 14bbbc17 18191a1b 1c1d1e1f 20212223 24252627 28ce2a2b 2c2d2e2f"
        assert row(d["vm-view"]) == vm_view

        q.failover()
        assert q.colo_top_children() == {"file": "secondary-disk"}
        assert q.status() == {"error": False}
        d = q.dump()
        # The primary's un-checkpointed writes (blocks 7 and 24) are reverted.
        assert row(d["secondary"]) == vm_view
        assert d["secondary"] == d["vm-view"]
        # hidden and active are detached, their contents untouched.
        assert row(d["hidden"]) == after_ckpt
        assert row(d["active"]) == (
            "....cf.. ........ ........ ........ ........ ........ ..ce.... ........"
        )

        # After failover, start/checkpoint/stop/failover are silently ignored.
        q.start()
        q.checkpoint()
        q.stop()
        q.failover()
        assert q.status() == {"error": False}
        # The primary's export still writes into the disk the VM now uses.
        q.pwrite(30 * B, B, 0xB9)
        assert q.vread(30 * B, B) == b"\xb9" * B
        wd = q.workdir
    assert q.closed and q.exit_code == 0
    assert not wd.exists()


# -- copy-before-write granularity --------------------------------------------


@pytest.mark.parametrize(
    ("hidden_cluster", "active_cluster", "hidden_expected", "active_expected"),
    [
        (512, 512, [(64, 256), (960, 1024)], [(600.5, 601)]),
        (4 * K, 4 * K, [(64, 256), (960, 1024)], [(600, 604)]),
        (64 * K, 64 * K, [(64, 256), (960, 1024)], [(576, 640)]),
        (128 * K, 4 * K, [(0, 256), (896, 1024)], [(600, 604)]),
        (256 * K, 256 * K, [(0, 256), (768, 1024)], [(512, 768)]),
    ],
)
def test_granularity_table(
    qemu: None,
    hidden_cluster: int,
    active_cluster: int,
    hidden_expected: list[tuple[float, float]],
    active_expected: list[tuple[float, float]],
) -> None:
    """CBW chunk = max(64 KiB, hidden's cluster); VM writes allocate active clusters."""
    config = cfg(1 * M, hidden_cluster=hidden_cluster, active_cluster=active_cluster)
    with QemuSecondary(config) as q:
        q.start()
        q.pwrite(70 * K, 512, 0xB1)
        q.pwrite(190 * K, 4 * K, 0xB2)  # straddles 192K: both chunks are copied
        q.pwrite(1 * M - 512, 512, 0xB3)
        q.vwrite(600 * K + 512, 512, 0xC1)
        d = q.dump()
        assert extents(d["hidden"].alloc) == hidden_expected
        assert extents(d["active"].alloc) == active_expected
        hidden = np.frombuffer(d["hidden"].data, dtype=np.uint8)
        # The copy holds the secondary disk's old contents (block k = 0x10 + k).
        for start, end in hidden_expected:
            for k in range(int(start) // 4, int(end) // 4):
                assert hidden[k * B : (k + 1) * B].tolist() == [0x10 + k % 0x70] * B
        # A partial-cluster VM write COW-fills the rest of its cluster from the chain.
        active = np.frombuffer(d["active"].data, dtype=np.uint8)
        s, e = (int(x * K) for x in active_expected[0])
        expected = (0x10 + (np.arange(s, e) // B) % 0x70).astype(np.uint8)
        expected[600 * K + 512 - s : 600 * K + 1024 - s] = 0xC1
        assert np.array_equal(active[s:e], expected)


def test_short_last_chunk(qemu: None) -> None:
    """A 100 KiB disk has a short last chunk: a write at 99K copies [64K, 100K)."""
    with QemuSecondary(cfg(100 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        q.start()
        q.pwrite(99 * K, 512, 0xB1)
        d = q.dump()
        assert extents(d["hidden"].alloc) == [(64, 100)]
        assert d["secondary"].data[99 * K : 99 * K + 512] == b"\xb1" * 512
        assert d["vm-view"].data[99 * K : 99 * K + 512] == bytes([0x10 + 24]) * 512


def test_zero_regions_become_zero_clusters(qemu: None) -> None:
    """Holes of the secondary file are copied into hidden as qcow2 zero clusters.

    pwrite with byte 0 is an NBD_CMD_WRITE_ZEROES: QEMU punches a hole in
    secondary.raw.  A whole 64 KiB chunk of hole becomes zero clusters in
    hidden; zeros that share a chunk with data are copied as data.
    """
    with QemuSecondary(cfg(256 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        q.pwrite(64 * K, 64 * K, 0)  # a whole chunk
        q.pwrite(136 * K, 8 * K, 0)  # part of chunk [128K, 192K)
        q.pwrite(192 * K, 64 * K, 0xAA, zeroes=False)  # data, for contrast below
        q.pwrite(192 * K, 64 * K, 0, zeroes=False)  # zero *bytes* written as data
        d = q.dump()
        assert extents(d["secondary"].zero) == [(64, 128), (136, 144)]
        assert d["secondary"].alloc.all()
        # The hole comes back as an NBD_REPLY_TYPE_OFFSET_HOLE chunk.
        with NbdClient(q.nbd_socket, "secondary") as c:
            buf = bytearray(b"\xff" * (128 * K))
            c.pread_into(buf, 0)
            assert buf[:B] == b"\x10" * B and buf[64 * K :] == bytes(64 * K)

        q.start()
        q.pwrite(68 * K, 4 * K, 0xBB)
        q.pwrite(128 * K, 4 * K, 0xBC)
        q.pwrite(192 * K, 4 * K, 0xBD)
        d = q.dump()
        hidden = d["hidden"]
        assert extents(hidden.alloc) == [(64, 256)]
        assert extents(hidden.zero) == [(64, 128)]  # only the whole-chunk hole
        cells = (
            [".."] * 16
            + ["zz"] * 16
            + [f"{0x10 + k:02x}" if k not in (34, 35) else "00" for k in range(32, 48)]
            + ["00"] * 16
        )
        text = "".join(cells)
        assert row(hidden) == " ".join(text[i : i + 8] for i in range(0, len(text), 8))
        assert hidden.data[64 * K : 128 * K] == bytes(64 * K)
        assert hidden.data[192 * K : 256 * K] == bytes(64 * K)  # zero bytes, data cluster
        assert d["vm-view"].data[64 * K : 128 * K] == bytes(64 * K)
        # Layer equality ignores the zero bit.
        assert hidden == Layer(hidden.data, hidden.alloc)
        with pytest.raises(ValueError, match="zeroes=True"):
            q.pwrite(0, 512, 0x11, zeroes=True)


# -- error messages -------------------------------------------------------------


def test_error_messages(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        assert q.status() == {"error": True, "desc": "Block replication is not running"}
        with pytest.raises(QemuError) as e:
            q.stop()
        assert e.value.desc == "Block replication is not running"
        assert e.value.command == "xen-set-replication"
        assert "Block replication is not running" in str(e.value)
        with pytest.raises(QemuError) as e:
            q.checkpoint()
        assert e.value.desc == "Backup job was cancelled unexpectedly"

        q.start()
        with pytest.raises(QemuError) as e:
            q.start()
        assert e.value.desc == "Block replication is running or done"
        with pytest.raises(QemuError) as e:
            q.qmp("xen-set-replication", {"enable": True, "primary": False, "failover": True})
        assert e.value.desc == "Parameter 'failover' is only for stopping replication"

        # A new writable user of secondary-disk is refused once replication runs.
        with pytest.raises(QemuError, match="Permission conflict on node 'secondary-disk'"):
            q.qmp(
                "block-export-add",
                {
                    "type": "nbd",
                    "id": "w",
                    "node-name": "secondary-disk",
                    "name": "w",
                    "writable": True,
                },
            )

        q.pwrite(0, B, 0xBB)
        q.vwrite(8 * B, B, 0xCC)
        # Stop without failover is broken in 7.2, but stops replication anyway.
        with pytest.raises(QemuError) as e:
            q.stop()
        assert e.value.desc == "Backup job was cancelled unexpectedly"
        assert q.status() == {"error": True, "desc": "I/O error occurred"}
        d = q.dump()  # active and hidden are not emptied
        assert extents(d["hidden"].alloc) == [(0, 64)]
        assert extents(d["active"].alloc) == [(32, 36)]
        q.vwrite(9 * B, B, 0xCD)  # VM I/O still goes to active
        assert q.dump_node("active").alloc.sum() == 2 * B // SECTOR
        assert q.dump_node("secondary-disk").data[9 * B : 10 * B] == bytes([0x19]) * B
        q.failover()  # ignored after stop
        assert q.colo_top_children()["file"] == "active"
        assert not q.closed  # QMP errors leave the session usable


def test_vm_io_before_start_is_eio(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        # vread sends NBD_CMD_FLAG_DF: QEMU reads through replication, gets
        # EIO, answers with an error reply and keeps the connection.
        with pytest.raises(NbdError) as e:
            q.vread(0, B)
        assert e.value.errno == errno.EIO
        assert isinstance(e.value, OSError) and isinstance(e.value, BackendError)
        assert "export 'top'" in str(e.value)
        assert "NBD_CMD_READ" in str(e.value)
        assert "reading from file failed" in str(e.value)
        assert "Disconnect client" not in q.log_tail()
        # A write gets an EIO reply and keeps the connection.
        with pytest.raises(NbdError) as e:
            q.vwrite(0, B, 0xCC)
        assert e.value.errno == errno.EIO
        assert "NBD export 'top': NBD_CMD_WRITE offset 0 length 4096 failed" in str(e.value)
        # A plain structured read (sparse: block status first) fails while
        # sending and QEMU's server drops the client; the session reconnects.
        with pytest.raises(NbdError) as e:
            q.vread(0, B, df=False)
        assert e.value.errno == errno.EIO and "the next I/O reconnects" in str(e.value)
        assert q.log_tail().count("Disconnect client") == 1
        assert q.dump()["vm-view"] is None
        q.start()
        assert q.vread(0, B) == b"\x10" * B  # a fresh connection
        assert q.dump()["vm-view"] is not None


def test_vm_read_before_start_of_a_hole_is_eio(qemu: None) -> None:
    """Without NBD_CMD_FLAG_DF, QEMU's NBD server would answer a hole from block status."""
    with QemuSecondary(cfg(128 * K, fill="zero")) as q:
        with NbdClient(q.nbd_socket, "top") as c:
            assert c.pread(0, B) == bytes(B)  # never reaches replication: no EIO
        with pytest.raises(NbdError) as e:
            q.vread(0, B)
        assert e.value.errno == errno.EIO
        assert q.dump()["vm-view"] is None
        assert q.dump()["secondary"].zero.all()
        q.start()
        assert q.vread(0, B) == bytes(B)


def test_failover_before_start_is_ignored(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K)) as q:
        q.failover()  # QEMU drops the error; so does the session
        assert q.status() == {"error": True, "desc": "Block replication is not running"}
        q.start()
        q.failover()
        assert q.colo_top_children() == {"file": "secondary-disk"}


def test_failover_blocked_by_a_reader_of_hidden(qemu: None) -> None:
    """A reader left on hidden makes the commit fail; QEMU 7.2 then crashes on quit."""
    with QemuSecondary(cfg(128 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
        q.start()
        q.pwrite(0, B, 0xBB)
        q.qmp(
            "block-export-add",
            {"type": "nbd", "id": "r", "node-name": "hidden", "name": "r", "writable": False},
        )
        with pytest.raises(QemuError) as e:
            q.failover()
        assert e.value.desc == "I/O error occurred"
        assert q.colo_top_children()["file"] == "active"
    assert q.exit_code == -signal.SIGSEGV  # replication_close cancels a NULL job


def test_dump_leaves_no_export_behind(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K)) as q:
        q.start()
        q.pwrite(0, B, 0xBB)
        for _ in range(3):
            q.dump()
        exports = q.qmp("query-block-exports")
        assert sorted(x["id"] for x in exports) == ["exp-secondary", "exp-top"]
        q.failover()  # would fail with a dump export left on hidden
        assert q.status() == {"error": False}


# -- the NBD client ---------------------------------------------------------------


def test_nbd_client_errors(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K)) as q:
        q.qmp(
            "block-export-add",
            {
                "type": "nbd",
                "id": "ro",
                "node-name": "secondary-disk",
                "name": "ro",
                "writable": False,
                "allocation-depth": True,
            },
        )
        with NbdClient(
            q.nbd_socket, "ro", meta_contexts=("base:allocation", "qemu:allocation-depth")
        ) as c:
            assert c.size == 128 * K and c.read_only
            assert c.pread(B, 8) == b"\x11" * 8
            status = c.block_status(0, c.size)
            assert status["qemu:allocation-depth"] == [(0, 128 * K, 1)]
            with pytest.raises(NbdError) as e:
                c.pwrite(b"\xff" * 512, 0)
            # QEMU answers EINVAL with the message "Export is read-only".
            assert e.value.errno == errno.EINVAL
            assert str(e.value) == (
                "[Errno 22] NBD export 'ro': NBD_CMD_WRITE offset 0 length 512 failed: "
                "Invalid argument: Export is read-only"
            )
            assert c.pread(0, 4) == b"\x10" * 4  # still in sync after the error
            with pytest.raises(NbdError) as e:
                c.pread(c.size, 512)  # beyond the end
            assert e.value.errno == errno.EINVAL and "NBD_CMD_READ" in str(e.value)
            # I/O larger than the server's maximum block size is split.
            c.max_block = 4096
            expected = b"".join(bytes([0x10 + k]) * B for k in range(16))
            assert c.pread(0, 64 * K) == expected
        with pytest.raises(NbdError) as e:
            NbdClient(q.nbd_socket, "no-such-export")
        assert "no-such-export" in str(e.value) and "NBD_OPT_GO" in str(e.value)
        q.pwrite(0, 128 * K, 0xAB)
        assert q.pread(0, 128 * K) == b"\xab" * (128 * K)


# -- availability ------------------------------------------------------------------


def test_missing_binary_names_the_packages(tmp_path: Path) -> None:
    missing = str(tmp_path / "qemu-system-x86_64")
    with pytest.raises(QemuNotAvailable) as e:
        QemuSecondary(cfg(128 * K), qemu=missing)
    assert "qemu-system-x86" in str(e.value) and "qemu-utils" in str(e.value)
    assert isinstance(e.value, BackendError)
    reason = qemu_available(missing)
    assert reason is not None and "not found" in reason
    assert list(tmp_path.iterdir()) == []


def test_binary_without_replication(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-fake"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho '{\"return\": []}'\n")
    fake.chmod(0o755)
    reason = qemu_available(str(fake))
    assert reason is not None
    assert "xen-set-replication" in reason or "qemu-img not found" in reason


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of 512"):
        QemuSecondary(cfg(1000))
    with pytest.raises(ValueError, match="power of two"):
        QemuSecondary(cfg(128 * K, hidden_cluster=3000))
    with pytest.raises(ValueError, match="fill must be"):
        QemuSecondary(cfg(128 * K, fill="random"))
    with pytest.raises(ValueError, match="fill must be"):
        QemuSecondary(cfg(128 * K, fill=256))


# -- robustness -------------------------------------------------------------------


def test_socket_paths_are_short(qemu: None) -> None:
    with QemuSecondary(cfg(128 * K)) as q:
        for path in (q.qmp_socket, q.nbd_socket):
            assert len(os.fsencode(path)) < 108
            assert Path(path).exists()


def test_long_tmpdir_falls_back_to_tmp(
    qemu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR too long for sun_path (108 bytes) is not used for the sockets."""
    import tempfile

    long_dir = tmp_path / ("d" * 100)
    long_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_dir))
    with QemuSecondary(cfg(128 * K)) as q:
        assert str(q.workdir).startswith("/tmp/lk-")
        assert all(len(os.fsencode(p)) < 108 for p in (q.qmp_socket, q.nbd_socket))
        q.start()
        q.pwrite(0, B, 0xBB)
    assert list(long_dir.iterdir()) == []


def test_killed_qemu(qemu: None) -> None:
    q = QemuSecondary(cfg(128 * K, hidden_cluster=4 * K, active_cluster=4 * K))
    wd, pid = q.workdir, q.pid
    assert pid is not None
    with pytest.raises(NbdError):  # puts a "Disconnect client" line into qemu.log
        q.vread(0, B, df=False)
    q.start()
    q.pwrite(0, B, 0xBB)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(QemuError) as e:
        q.pwrite(4 * B, B, 0xBC)
    msg = str(e.value)
    assert "SIGKILL" in msg
    assert "last lines of qemu.log" in msg and "Disconnect client" in msg
    assert "Disconnect client" in e.value.log_tail
    assert q.closed and q.exit_code == -signal.SIGKILL
    assert not wd.exists()
    assert pid_gone(pid)
    with pytest.raises(QemuError, match="closed"):
        q.status()
    q.close()  # idempotent


def test_killed_qemu_during_qmp(qemu: None) -> None:
    q = QemuSecondary(cfg(128 * K))
    wd, pid = q.workdir, q.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(QemuError, match="SIGKILL"):
        q.start()
    assert not wd.exists() and pid_gone(pid)


def test_hung_qemu_times_out(qemu: None) -> None:
    q = QemuSecondary(cfg(128 * K), timeout=1.0)
    wd, pid = q.workdir, q.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(QemuError, match=r"did not answer within 1\.0 s"):
        q.status()
    assert time.monotonic() - t0 < 5
    assert not wd.exists() and pid_gone(pid)


def test_close_and_garbage_collection(qemu: None) -> None:
    q = QemuSecondary(cfg(128 * K))
    wd, pid = q.workdir, q.pid
    assert pid is not None
    del q
    gc.collect()
    assert not wd.exists() and pid_gone(pid)


def test_interpreter_exit_cleans_up(qemu: None) -> None:
    code = textwrap.dedent("""
        from labkit.config import LabConfig
        from labkit.qemu import QemuSecondary
        q = QemuSecondary(LabConfig(size=128 * 1024))
        q.start()
        print(q.pid, q.workdir, flush=True)
    """)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    pid_text, wd_text = out.stdout.split()
    assert not Path(wd_text).exists()
    deadline = time.monotonic() + 5
    while not pid_gone(int(pid_text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_gone(int(pid_text))


def test_works_inside_a_running_event_loop(qemu: None) -> None:
    """A Jupyter kernel runs an asyncio loop in the main thread; so does this test."""

    async def notebook_cell() -> str:
        with QemuSecondary(cfg(128 * K, hidden_cluster=4 * K, active_cluster=4 * K)) as q:
            q.start()
            q.pwrite(5 * B, B, 0xBB)
            q.checkpoint()
            return row(q.dump()["vm-view"])

    assert asyncio.run(notebook_cell()).startswith("10111213 14bb1617")
