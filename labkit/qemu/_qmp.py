"""The QMP channel to one QEMU: commands and events, each within a timeout.

QMP goes through ``qemu.qmp``'s asyncio ``QMPClient``, run by an anyio blocking
portal (:func:`anyio.from_thread.start_blocking_portal`): an event loop in a
thread of its own, named ``labkit-qmp``.  The caller's thread never touches
asyncio, so a session works inside a Jupyter kernel, whose main thread already
runs a loop.

Everything is synchronous.  :meth:`QmpChannel.execute` returns QMP's
``return`` or raises :class:`~labkit.errors.QemuError`:

* with ``desc`` — QEMU answered with an error (QMP's ``error.desc``, e.g.
  ``Block replication is not running``); the channel stays usable;
* without ``desc`` — no answer within the timeout (:class:`~labkit.errors.QemuTimeout`),
  or the connection broke; the message says why, naming QEMU's death when it
  died.  The session closes itself on one (:class:`labkit.qemu._session.QemuSession`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, NoReturn, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from labkit.errors import QemuError, QemuTimeout

_T = TypeVar("_T")
#: How long closing waits for ``quit`` and for the disconnection (seconds).
CLOSE_WAIT = 2.0


def read_greeting(sock: socket.socket, timeout: float) -> dict[str, Any] | None:
    """QMP's greeting from ``sock`` (None if the socket closed first), skipping events.

    QEMU 7.2 can send an event (``RESUME``) *before* the greeting to a client
    that connects while it is still starting up (monitor/qmp.c,
    ``monitor_qmp_event`` sends the greeting on ``CHR_EVENT_OPENED``, queued
    behind what is already in the output buffer); ``qemu.qmp`` takes that for a
    bad greeting.  So the greeting is read here, byte by byte so that nothing
    after it is consumed.  A socket error or timeout raises ``OSError``.
    """
    sock.settimeout(timeout)
    line = bytearray()
    while True:
        c = sock.recv(1)
        if not c:
            return None
        if c != b"\n":
            line += c
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        line.clear()
        if isinstance(msg, dict) and "QMP" in msg:
            return msg


class QmpChannel:
    """QMP to one QEMU over a connected unix socket (see the module docstring).

    ``timeout`` bounds every command; ``why_gone(wait)`` says how QEMU died
    (None while it runs, after waiting up to ``wait`` s); ``log_tail()`` is the
    tail of QEMU's log, carried by error replies.
    """

    def __init__(self, timeout: float, why_gone: Callable[[float], str | None],
                 log_tail: Callable[[], str]) -> None:
        self.timeout = timeout
        self._why_gone = why_gone
        self._log_tail = log_tail
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._client: Any = None  # qemu.qmp.QMPClient
        self.greeting: dict[str, Any] = {}

    @property
    def connected(self) -> bool:
        """Connected and negotiated, and not closed since."""
        return self._client is not None

    # -- connecting ------------------------------------------------------------------

    def connect(self, sock: socket.socket) -> dict[str, Any]:
        """Read the greeting, hand ``sock`` to a ``QMPClient`` (which owns it from then
        on) and negotiate (``qmp_capabilities``); return the greeting."""
        try:
            try:
                greeting = read_greeting(sock, self.timeout)
            except OSError as exc:
                _lost(f"reading QMP's greeting failed: {self._why_gone(0.2) or exc}",
                      "connect")
            if greeting is None:
                dead = self._why_gone(0.2)
                _lost("QEMU closed QMP before its greeting" + (f": {dead}" if dead else ""),
                      "connect")
            self.greeting = greeting
            cm = start_blocking_portal("asyncio", name="labkit-qmp")
            self._portal = cm.__enter__()
            self._portal_cm = cm
            self._client = self._call(self._connect_client, (sock,), "connect")
        except BaseException:
            sock.close()
            raise
        self.execute("qmp_capabilities")
        return greeting

    @staticmethod
    async def _connect_client(sock: socket.socket) -> Any:
        from qemu.qmp import QMPClient

        client = QMPClient("labkit-secondary")
        # The greeting was read by read_greeting; negotiation is a command of ours.
        client.await_greeting = False
        client.negotiate = False
        await client.connect(sock)
        return client

    # -- commands and events ---------------------------------------------------------

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run one QMP command; return its ``return`` (see the module docstring)."""
        return self._call(self._open(command).execute, (command, arguments), command)

    def execute_until(self, command: str, arguments: Mapping[str, object], event: str,
                      data: Mapping[str, object]) -> None:
        """Run ``command``, then wait for the event ``event`` whose ``data`` holds ``data``
        (e.g. ``block-export-del`` then ``BLOCK_EXPORT_DELETED`` with its ``id``), all
        within the timeout.  Events are dropped once seen: none piles up."""
        client = self._open(command)

        async def run() -> None:
            from qemu.qmp import EventListener

            listener = EventListener(event)
            with client.listen(listener):
                await client.execute(command, arguments)
                async for ev in listener:
                    got = ev.get("data")  # a Message maps str to object
                    if isinstance(got, dict) and all(got.get(k) == v for k, v in data.items()):
                        break
            client.events.clear()  # the default listener keeps every event

        self._call(run, (), command)

    def _open(self, what: str) -> Any:
        """The connected client (a closed channel: a QemuError without ``desc``)."""
        if self._client is None or self._portal is None:
            _lost(f"{what}: the QMP channel is closed", what)
        return self._client

    def _call(self, fn: Callable[..., Awaitable[_T]], args: tuple[Any, ...], what: str) -> _T:
        """``fn(*args)`` in the portal's loop, within the timeout; errors as documented."""
        from qemu.qmp import ExecuteError

        if self._portal is None:
            _lost(f"{what}: the QMP channel is closed", what)
        try:
            fut = self._portal.start_task_soon(fn, *args)
        except RuntimeError as exc:  # the portal has stopped: the channel is closed
            _lost(f"{what}: QMP connection failed: {exc!r}", what)
        try:
            return fut.result(self.timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            dead = self._why_gone(0.2)
            raise QemuTimeout(f"{what}: {dead or f'QEMU did not answer within {self.timeout} s'}",
                              command=what) from None
        except ExecuteError as exc:
            desc = exc.error.error.desc
            raise QemuError(f"{what}: {desc}", desc=desc, command=what,
                            log_tail=self._log_tail()) from None
        except Exception as exc:
            dead = self._why_gone(0.2)
            _lost(f"{what}: {dead or f'QMP connection failed: {exc!r}'}", what)

    # -- closing ---------------------------------------------------------------------

    def close(self, quit: bool) -> None:
        """``quit`` QEMU first if asked, disconnect, and stop the portal's loop.  Never
        raises; each step waits at most :data:`CLOSE_WAIT` seconds."""
        portal, client = self._portal, self._client
        self._client = None
        if portal is not None and client is not None:
            if quit:
                with contextlib.suppress(Exception):
                    portal.start_task_soon(client.execute, "quit").result(CLOSE_WAIT)
            with contextlib.suppress(Exception):
                portal.start_task_soon(client.disconnect).result(CLOSE_WAIT)
        self._stop_portal()

    def _stop_portal(self) -> None:
        portal, cm = self._portal, self._portal_cm
        self._portal = self._portal_cm = None
        if portal is None or cm is None:
            return
        try:
            portal.start_task_soon(portal.stop, True).result(CLOSE_WAIT)
        except Exception:  # a loop that does not stop: leave its daemon thread be
            return
        with contextlib.suppress(Exception):
            cm.__exit__(None, None, None)  # joins the loop's thread


def _lost(message: str, command: str) -> NoReturn:
    """The connection is unusable: a QemuError without ``desc`` (see the module docstring)."""
    raise QemuError(message, command=command)


__all__ = ["CLOSE_WAIT", "QmpChannel", "read_greeting"]
