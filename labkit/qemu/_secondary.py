"""One real QEMU 7.2 acting as the COLO block-replication secondary.

:class:`QemuSecondary` builds, in a private temporary directory, the graph of
QEMU's ``docs/block-replication.txt`` (its secondary, with ``blockdev-add``)::

    secondary.raw (node secondary-disk, NBD export "secondary": the primary's writes)
      ^ backing
    hidden.qcow2 (node hidden)
      ^ backing
    active.qcow2 (node active)
      ^ file
    replication, mode=secondary (node colo-top, NBD export "top": the secondary VM)

and drives it in QEMU's words: QMP (``xen-set-replication``,
``xen-colo-do-checkpoint``, ``query-xen-replication-status``,
``x-debug-query-block-graph``) and NBD (our own client, :mod:`labkit.qemu._nbd`).
QEMU runs with ``-machine none``: no guest, no KVM, no root.  The process, the
QMP channel, the images and the NBD clients are :class:`~labkit.qemu._session.QemuSession`'s.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

from labkit.config import LabConfig
from labkit.errors import ConfigError, NbdError, QemuError, QemuNotAvailable
from labkit.lab import check_byte
from labkit.layers import Layer
from labkit.qemu._images import create_overlay
from labkit.qemu._session import QemuSession

#: With ``blkdebug=True``: the blkdebug node under each image file, and the named
#: read-only BlockBackend (drive) through which its breakpoints are set.
BLKDEBUG_DRIVES = {"dbg-sec": "ctl-sec", "dbg-hid": "ctl-hid", "dbg-act": "ctl-act"}


class QemuSecondary(QemuSession):
    """A real QEMU 7.2 running the COLO secondary's block replication.

    ``config`` is a :class:`~labkit.config.LabConfig` (``graph="colo"``): ``size``
    bytes of disk; ``secondary.raw`` filled as its ``fill`` says — ``"index"``
    (block ``k`` of ``block`` bytes holds byte ``0x10 + k % 0x70``), ``"zero"``
    (a sparse file: one hole, so CBW copies whole chunks of it as qcow2 zero
    clusters) or a byte (every byte, written as data); ``hidden.qcow2`` and
    ``active.qcow2`` with its ``hidden_cluster`` and ``active_cluster``.  Its
    ``design`` and ``era`` are the simulator's; a ``backup_cluster`` other than
    QEMU's own is refused.  ``timeout`` bounds every QMP command, NBD request and
    wait.  QEMU is launched by the constructor; use the session as a context
    manager (or call :meth:`close`).

    ``blkdebug=True`` puts a ``blkdebug`` node (``dbg-sec``, ``dbg-hid``,
    ``dbg-act``) under each image file and a named read-only BlockBackend
    over each (``ctl-sec``...), so that requests can be held at breakpoints
    (:mod:`labkit.qemu._pause`).  Note that blkdebug changes QEMU's own path:
    the copy-before-write filter cannot offload its copy
    (``copy_file_range``) through it, and reads then writes instead.

    A ``size`` whose ``secondary.raw`` would not fit the temporary filesystem is
    refused with :class:`~labkit.errors.LimitError` before anything is written.
    QEMU dies with this process (see :mod:`labkit.qemu._cleanup`).
    """

    def _check_config(self, config: LabConfig) -> None:
        if config.graph != "colo":
            raise ConfigError(f"QemuSecondary runs the COLO secondary: its LabConfig needs "
                              f"graph='colo', got {config.graph!r} (image fleecing: "
                              f"labkit.qemu._fleecing.QemuFleecing)")
        check_backup_cluster(config, "hidden")

    def _create_images(self, workdir: Path, qemu_img: str) -> None:
        """``qemu-img create`` hidden.qcow2 over secondary.raw and active.qcow2 over it."""
        create_overlay(qemu_img, workdir, "hidden.qcow2", "secondary.raw", "raw",
                       self.hidden_cluster, self.timeout)
        create_overlay(qemu_img, workdir, "active.qcow2", "hidden.qcow2", "qcow2",
                       self.active_cluster, self.timeout)

    def _build_graph(self, exe: str, workdir: Path) -> None:
        """``blockdev-add`` the secondary's graph and export it over NBD (as
        QEMU's ``docs/block-replication.txt`` describes the secondary's)."""
        d = str(workdir)
        self.qmp("blockdev-add", {"driver": "raw", "node-name": "secondary-disk",
                                  "file": self._image_file("dbg-sec", f"{d}/secondary.raw")})
        self.qmp("blockdev-add", {"driver": "qcow2", "node-name": "hidden",
                                  "file": self._image_file("dbg-hid", f"{d}/hidden.qcow2"),
                                  "backing": "secondary-disk"})
        self.qmp("blockdev-add", {"driver": "qcow2", "node-name": "active",
                                  "file": self._image_file("dbg-act", f"{d}/active.qcow2"),
                                  "backing": "hidden"})
        try:
            self.qmp("blockdev-add", {"driver": "replication", "node-name": "colo-top",
                                      "mode": "secondary", "top-id": "colo-top",
                                      "file": "active"})
        except QemuError as exc:
            if "replication" in (exc.desc or "") and "driver" in (exc.desc or "").lower():
                raise QemuNotAvailable(
                    f"{exe} has no 'replication' block driver ({exc.desc})") from exc
            raise
        self.qmp("nbd-server-start", {"addr": {"type": "unix",
                                               "data": {"path": self.nbd_socket}}})
        self._export("secondary", "secondary-disk", writable=True)
        self._export("top", "colo-top", writable=True)
        if self.blkdebug:
            self._add_breakpoint_drives(BLKDEBUG_DRIVES)

    # -- I/O -------------------------------------------------------------------------

    def pwrite(self, off: int, length: int, byte: int, *, zeroes: bool | None = None) -> None:
        """The primary's write: ``length`` bytes of ``byte`` at ``off`` on export ``secondary``.

        With ``zeroes`` (default: ``byte == 0``) it is sent as
        ``NBD_CMD_WRITE_ZEROES`` instead: QEMU punches a hole in
        ``secondary.raw``, and a whole CBW chunk of hole is later copied into
        hidden as a qcow2 zero cluster.  (QEMU 7.2 decides by block status,
        not by looking at the bytes: zero *bytes* written as data are copied
        as data clusters.)
        """
        self._check_request("primary write", "export 'secondary'", off, length)
        byte = check_byte(byte, "primary write: byte")
        if zeroes is None:
            zeroes = byte == 0
        elif zeroes and byte != 0:
            raise ConfigError(f"zeroes=True writes zeros, but byte is {byte:#04x}")
        if zeroes:
            self._nbd_io("secondary", f"primary write-zeroes on export 'secondary' at {off}",
                         lambda c: c.write_zeroes(off, length))
        else:
            data = bytes([byte]) * length
            self._nbd_io("secondary", f"primary write on export 'secondary' at {off}",
                         lambda c: c.pwrite(data, off))

    def vwrite(self, off: int, length: int, byte: int) -> None:
        """The secondary VM's write: ``length`` bytes of ``byte`` at ``off`` on export ``top``."""
        self._check_request("VM write", "export 'top'", off, length)
        data = bytes([check_byte(byte, "VM write: byte")]) * length
        self._nbd_io("top", f"vm write on export 'top' at {off}", lambda c: c.pwrite(data, off))

    def vread(self, off: int, length: int, *, df: bool = True) -> bytes:
        """The secondary VM's read through export ``top`` (EIO before start).

        Sent with ``NBD_CMD_FLAG_DF`` so that QEMU's NBD server reads through
        the replication driver even where the chain below is a hole; without
        it the server answers holes from the block status alone and a read
        before start of an all-hole range (``fill="zero"``) would succeed
        where the VM gets EIO.  With it, a failed read gets an error reply and
        the connection stays up.  ``df=False`` sends a plain structured read
        (sparse: block status first): a failure then happens while QEMU's
        server is sending, it drops the client, and the next I/O reconnects.
        """
        self._check_request("VM read", "export 'top'", off, length)
        what = f"vm read on export 'top' at {off}" if df else \
            f"sparse vm read on export 'top' at {off}"
        return self._nbd_io("top", what, lambda c: c.pread(off, length, df=df))

    def pread(self, off: int, length: int) -> bytes:
        """Read the secondary disk through the primary's export ``secondary``."""
        self._check_request("read", "export 'secondary'", off, length)
        return self._nbd_io("secondary", f"read on export 'secondary' at {off}",
                            lambda c: c.pread(off, length))

    # -- replication -------------------------------------------------------------------

    def start(self) -> None:
        """``xen-set-replication enable=true primary=false``."""
        self.qmp("xen-set-replication", {"enable": True, "primary": False})

    def checkpoint(self) -> None:
        """``xen-colo-do-checkpoint``: empty active and hidden, re-arm the copy."""
        self.qmp("xen-colo-do-checkpoint")

    def stop(self) -> None:
        """``xen-set-replication enable=false`` without failover.

        QEMU 7.2 always answers ``Backup job was cancelled unexpectedly``
        here (raised as :class:`QemuError`); replication is stopped anyway.
        """
        self.qmp("xen-set-replication", {"enable": False, "primary": False})

    def status(self) -> dict[str, Any]:
        """``query-xen-replication-status``: ``{"error": bool[, "desc": str]}``."""
        return dict(self.qmp("query-xen-replication-status"))

    def failover(self) -> None:
        """``xen-set-replication enable=false failover=true``, then wait for the commit.

        QEMU discards failover errors and runs the active commit as an
        internal job without events, so completion is found by polling
        ``x-debug-query-block-graph`` until no ``block-job`` node is left and
        ``colo-top``'s ``file`` child is ``secondary-disk`` (while the commit
        runs it is the commit job's filter node, ``#blockNNN``).  If replication
        is not running (never started, stopped, or already failed over) QEMU
        ignores the command; so does this method.  If the commit cannot
        complete (``query-xen-replication-status`` reports an error), raise
        :class:`QemuError`.
        """
        before = self.status()
        self.qmp("xen-set-replication", {"enable": False, "primary": False, "failover": True})
        if before.get("error"):
            return  # not running or stopped: QEMU ignored the command
        deadline = time.monotonic() + self.timeout
        delay = 0.0005
        while True:
            graph = self.block_graph()
            job = any(n.get("type") == "block-job" for n in graph.get("nodes", []))
            children = _children(graph, "colo-top")
            if not job and children.get("file") == "secondary-disk":
                return
            if not job and children.get("file") == "active":
                # No commit job and still on active: the commit did not start
                # (or failed).  While it runs, the status says "I/O error
                # occurred" too, so only trust it here.
                st = self.status()
                if st.get("error"):
                    raise QemuError(
                        "failover did not complete: query-xen-replication-status says "
                        f"{st.get('desc')!r}; QEMU discards failover errors (a reader of "
                        f"node 'hidden' blocks the commit job); colo-top's children: "
                        f"{children}",
                        desc=st.get("desc"), command="xen-set-replication",
                        log_tail=self.log_tail())
            if time.monotonic() > deadline:
                self._fatal(f"failover did not complete within {self.timeout} s; "
                            f"colo-top's children: {children}", "xen-set-replication")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # -- the graph and the layers --------------------------------------------------------

    def block_graph(self) -> dict[str, Any]:
        """``x-debug-query-block-graph``."""
        return dict(self.qmp("x-debug-query-block-graph"))

    def node_edges(self) -> list[tuple[str, str, str]]:
        """Every child edge of ``x-debug-query-block-graph`` as ``(parent, edge, child)``,
        sorted.  A block node is named by its node-name, or by its driver when QEMU
        made the name up (``#blockNNN``: the copy-before-write filter, the image files;
        ``query-named-block-nodes``); a BlockBackend or a job by its type."""
        drivers = {n["node-name"]: n["drv"]
                   for n in self.qmp("query-named-block-nodes", {"flat": True})}
        graph = self.block_graph()
        names = {}
        for n in graph.get("nodes", []):
            name = n.get("name", "") if n["type"] == "block-driver" else n["type"]
            names[n["id"]] = drivers.get(name, name) if name.startswith("#") else name
        return sorted((names[e["parent"]], e["name"], names[e["child"]])
                      for e in graph.get("edges", []))

    def colo_top_children(self) -> dict[str, str]:
        """``colo-top``'s child edges: edge name → child node name."""
        return _children(self.block_graph(), "colo-top")

    def dump(self) -> dict[str, Layer | None]:
        """Each layer's own contents, read live (:meth:`dump_node`).

        ``secondary``, ``hidden`` and ``active`` are their nodes' own contents;
        ``"vm-view"`` is read through ``top`` (all allocated); it is None before
        start, when QEMU answers EIO.
        """
        layers: dict[str, Layer | None] = {
            "secondary": self.dump_node("secondary-disk"),
            "hidden": self.dump_node("hidden"),
            "active": self.dump_node("active"),
        }
        try:
            layers["vm-view"] = Layer.full(self.vread(0, self.size))
        except NbdError as exc:
            if exc.errno not in (errno.EIO, errno.ENOTCONN):
                raise
            layers["vm-view"] = None
        return layers


def check_backup_cluster(config: LabConfig, target: str) -> None:
    """Refuse a ``backup_cluster`` QEMU cannot run: it copies ``MAX(64 KiB, target
    cluster)`` (block/block-copy.c, ``block_copy_calculate_cluster_size``; ``target``
    names the image: COLO's hidden disk, fleecing's overlay)."""
    qemu_cluster = config.replace(backup_cluster=None).effective_backup_cluster
    if config.backup_cluster not in (None, qemu_cluster):
        raise ConfigError(f"backup_cluster is the simulator's override; QEMU copies MAX(64K, "
                          f"{target} cluster) = {qemu_cluster} bytes: leave it out")


def _children(graph: dict[str, Any], node: str) -> dict[str, str]:
    names = {n["id"]: n.get("name", "") for n in graph.get("nodes", [])}
    ids = [i for i, n in names.items() if n == node]
    return {
        e["name"]: names.get(e["child"], "") for e in graph.get("edges", []) if e["parent"] in ids
    }


__all__ = ["BLKDEBUG_DRIVES", "QemuSecondary", "check_backup_cluster"]
