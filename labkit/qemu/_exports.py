"""A session's NBD connections: one client per export, reconnected after a drop.

QEMU's NBD server (nbd/server.c) answers a failed request with an error reply
when it can, and drops the client when the failure happens while it is already
sending a reply (a structured read, ``nbd_co_send_sparse_read``), logging
``Disconnect client, due to: ...``.  :class:`NbdExports` keeps one
:class:`~labkit.qemu._nbd.NbdClient` per export and turns a lost connection
into the right exception:

* :class:`~labkit.errors.NbdError` (``EIO`` when QEMU logged an I/O error,
  else ``ENOTCONN``) when QEMU dropped the client and still runs — an outcome
  of the request; the next I/O on that export reconnects;
* :class:`~labkit.errors.QemuError` without ``desc`` when QEMU died or did not
  answer within the timeout: the session closes itself on one.

:meth:`NbdExports.read_node` reads one node's own contents through a temporary
read-only export with ``allocation-depth`` (``qemu:allocation-depth`` and
``base:allocation`` meta contexts) into a :class:`~labkit.layers.Layer`.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import NoReturn, TypeVar

import numpy as np

from labkit.errors import NbdDisconnected, NbdError, QemuError
from labkit.layers import SECTOR, Layer
from labkit.qemu._nbd import ALLOCATION_DEPTH, BASE_ALLOCATION, STATE_ZERO, NbdClient

_T = TypeVar("_T")


class NbdExports:
    """NBD clients of one QEMU's server at ``socket_path`` (see the module docstring).

    ``timeout`` bounds every request; ``why_gone(wait)`` says how QEMU died (None
    while it runs); ``log_text()`` is QEMU's log, where its server says why it
    dropped a client.
    """

    def __init__(self, socket_path: str, timeout: float, why_gone: Callable[[float], str | None],
                 log_text: Callable[[], str]) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._why_gone = why_gone
        self._log_text = log_text
        self._clients: dict[str, NbdClient] = {}
        self._drops_seen = 0

    def io(self, export: str, what: str, fn: Callable[[NbdClient], _T]) -> _T:
        """``fn`` on ``export``'s client (connected first if needed); errors as documented."""
        client = self._clients.get(export)
        if client is None or client.closed:
            client = self._connect(export)
            self._clients[export] = client
        try:
            return fn(client)
        except NbdDisconnected as exc:
            self._clients.pop(export, None)
            self._failed(exc, what)

    def read_node(self, export: str, size: int, what: str) -> Layer:
        """The node behind the read-only ``export`` (made with ``allocation-depth``): the
        bytes allocated in that node itself, others zeroed (see :func:`layer_from`)."""
        try:
            with NbdClient(self.socket_path, export, timeout=self.timeout,
                           meta_contexts=(BASE_ALLOCATION, ALLOCATION_DEPTH)) as c:
                extents = c.block_status(0, size)
                data = bytearray(size)
                c.pread_into(data, 0)
        except NbdDisconnected as exc:
            self._failed(exc, what)
        return layer_from(size, data, extents)

    def drop(self, export: str) -> None:
        """Close ``export``'s client, if any (before QEMU deletes the export)."""
        client = self._clients.pop(export, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        """Close every client; never raises."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):  # a broken client is gone anyway
                client.close()
        self._clients.clear()

    def _connect(self, export: str) -> NbdClient:
        try:
            return NbdClient(self.socket_path, export, timeout=self.timeout)
        except NbdDisconnected as exc:
            self._failed(exc, f"connect to NBD export {export!r}")

    def _failed(self, exc: NbdDisconnected, what: str) -> NoReturn:
        """Turn a lost NBD connection into the right exception (module docstring)."""
        # QEMU's NBD server drops a client after a failed read and logs why.
        reason = ""
        drops = [line.strip() for line in self._log_text().splitlines()
                 if "Disconnect client" in line]
        if len(drops) > self._drops_seen:
            reason = drops[-1]
        self._drops_seen = len(drops)
        dead = self._why_gone(0.0 if reason else 0.5)
        if dead:
            raise QemuError(f"{what}: {dead}", command=what) from exc
        if exc.errno == errno.ETIMEDOUT:
            raise QemuError(f"{what}: QEMU did not answer within {self.timeout} s",
                            command=what) from exc
        if exc.errno != errno.ENOTCONN:
            raise QemuError(f"{what}: {exc.strerror}", command=what) from exc
        err = errno.EIO if "Input/output error" in reason else errno.ENOTCONN
        raise NbdError(
            err,
            f"{what} failed: {os.strerror(err)} ({exc.strerror}"
            + (f"; QEMU logged: {reason}" if reason else "")
            + "); the next I/O reconnects",
        ) from exc


def layer_from(size: int, data: bytearray, extents: dict[str, list[tuple[int, int, int]]]
               ) -> Layer:
    """A Layer from an ``allocation-depth`` export: depth 1 → allocated in this node
    (``base:allocation``'s zero bit there → a zero cluster); other bytes zeroed."""
    sectors = size // SECTOR
    depth = np.zeros(sectors, dtype=np.int64)
    for start, length, flags in extents[ALLOCATION_DEPTH]:
        depth[start // SECTOR: -(-(start + length) // SECTOR)] = flags
    zero = np.zeros(sectors, dtype=bool)
    for start, length, flags in extents[BASE_ALLOCATION]:
        if flags & STATE_ZERO:
            s, e = -(-start // SECTOR), (start + length) // SECTOR
            zero[s:e] = True
    alloc = depth == 1
    buf = np.frombuffer(data, dtype=np.uint8).reshape(sectors, SECTOR)  # writable view
    buf[~alloc] = 0
    return Layer(buf.tobytes(), alloc, zero & alloc)


__all__ = ["NbdExports", "layer_from"]
