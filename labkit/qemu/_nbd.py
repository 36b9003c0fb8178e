"""A small synchronous NBD client over a unix socket, in pure Python.

Why not libnbd or ``qemu-io``?  libnbd's Python binding is only packaged for
Debian's own ``python3`` (``python3-libnbd``), not for a venv or a Binder
image's conda Python, and it is one more Debian package to install.  A
``qemu-io`` subprocess per I/O costs ~20 ms, far too slow for a benchmark of
tens of thousands of I/Os.  The protocol subset the real-QEMU backend needs is
small, so it is implemented here against the NBD protocol specification
(``doc/proto.md`` in the NBD project):

* fixed newstyle handshake, ``NBD_OPT_STRUCTURED_REPLY``,
  ``NBD_OPT_SET_META_CONTEXT`` (``base:allocation``, ``qemu:allocation-depth``)
  and ``NBD_OPT_GO``;
* ``NBD_CMD_READ`` (simple and structured replies: ``OFFSET_DATA``,
  ``OFFSET_HOLE``, ``ERROR``, ``ERROR_OFFSET``), ``NBD_CMD_WRITE``,
  ``NBD_CMD_WRITE_ZEROES``, ``NBD_CMD_BLOCK_STATUS`` and ``NBD_CMD_DISC``.

One request is in flight at a time; every call blocks until its reply.  An
error reply from the server raises :class:`NbdError` (an :class:`OSError`) with
the server's errno and a message naming the export and the command; the
connection stays usable.  A connection that the server closed, or a protocol
violation, raises :class:`NbdDisconnected`; the client is then unusable and the
caller reconnects (QEMU's NBD server drops a client after a failed read).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterable

from labkit.errors import NbdDisconnected, NbdError

# Handshake.
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC_OPT = 0x0003E889045565A9
NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1

NBD_OPT_ABORT = 2
NBD_OPT_GO = 7
NBD_OPT_STRUCTURED_REPLY = 8
NBD_OPT_SET_META_CONTEXT = 10

NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_REP_META_CONTEXT = 4
NBD_REP_FLAG_ERROR = 1 << 31
_REP_ERRORS = {
    NBD_REP_FLAG_ERROR | 1: "NBD_REP_ERR_UNSUP",
    NBD_REP_FLAG_ERROR | 2: "NBD_REP_ERR_POLICY",
    NBD_REP_FLAG_ERROR | 3: "NBD_REP_ERR_INVALID",
    NBD_REP_FLAG_ERROR | 4: "NBD_REP_ERR_PLATFORM",
    NBD_REP_FLAG_ERROR | 5: "NBD_REP_ERR_TLS_REQD",
    NBD_REP_FLAG_ERROR | 6: "NBD_REP_ERR_UNKNOWN",
    NBD_REP_FLAG_ERROR | 7: "NBD_REP_ERR_SHUTDOWN",
    NBD_REP_FLAG_ERROR | 8: "NBD_REP_ERR_BLOCK_SIZE_REQD",
    NBD_REP_FLAG_ERROR | 9: "NBD_REP_ERR_TOO_BIG",
}
_REP_ERRNO = {
    "NBD_REP_ERR_UNKNOWN": errno.ENOENT,
    "NBD_REP_ERR_POLICY": errno.EPERM,
    "NBD_REP_ERR_UNSUP": errno.ENOTSUP,
    "NBD_REP_ERR_SHUTDOWN": errno.ESHUTDOWN,
    "NBD_REP_ERR_TOO_BIG": errno.E2BIG,
}

NBD_INFO_EXPORT = 0
NBD_INFO_BLOCK_SIZE = 3

# Transmission flags.
NBD_FLAG_HAS_FLAGS = 1 << 0
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6

# Transmission.
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

NBD_CMD_READ = 0
NBD_CMD_WRITE = 1
NBD_CMD_DISC = 2
NBD_CMD_WRITE_ZEROES = 6
NBD_CMD_BLOCK_STATUS = 7
_CMD_NAMES = {
    NBD_CMD_READ: "NBD_CMD_READ",
    NBD_CMD_WRITE: "NBD_CMD_WRITE",
    NBD_CMD_DISC: "NBD_CMD_DISC",
    NBD_CMD_WRITE_ZEROES: "NBD_CMD_WRITE_ZEROES",
    NBD_CMD_BLOCK_STATUS: "NBD_CMD_BLOCK_STATUS",
}
NBD_CMD_FLAG_NO_HOLE = 1 << 1
NBD_CMD_FLAG_DF = 1 << 2
NBD_FLAG_SEND_DF = 1 << 7

NBD_REPLY_FLAG_DONE = 1 << 0
NBD_REPLY_TYPE_NONE = 0
NBD_REPLY_TYPE_OFFSET_DATA = 1
NBD_REPLY_TYPE_OFFSET_HOLE = 2
NBD_REPLY_TYPE_BLOCK_STATUS = 5
NBD_REPLY_TYPE_ERROR = (1 << 15) + 1
NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

# NBD wire errno values (the spec fixes them; they match Linux).
_NBD_ERRNO = {
    1: errno.EPERM,
    5: errno.EIO,
    12: errno.ENOMEM,
    22: errno.EINVAL,
    28: errno.ENOSPC,
    75: errno.EOVERFLOW,
    95: errno.ENOTSUP,
    108: errno.ESHUTDOWN,
}

#: ``base:allocation`` flags.
STATE_HOLE = 1
STATE_ZERO = 2

BASE_ALLOCATION = "base:allocation"
ALLOCATION_DEPTH = "qemu:allocation-depth"

#: Largest payload QEMU's NBD server accepts (NBD_MAX_BUFFER_SIZE).
_MAX_PAYLOAD = 32 * 1024 * 1024
_MAX_STATUS_LEN = 0xFFFFFE00  # largest 32-bit length, 512-aligned

_REQ = struct.Struct(">IHHQQI")


class NbdClient:
    """A connection to one export of an NBD server on a unix socket.

    ``meta_contexts`` are requested with ``NBD_OPT_SET_META_CONTEXT``; the ones
    the server grants are in :attr:`contexts` (name → id).
    """

    def __init__(
        self,
        path: str,
        export: str,
        *,
        meta_contexts: Iterable[str] = (),
        timeout: float | None = 10.0,
    ) -> None:
        self.path = path
        self.export = export
        self.size = 0
        self.flags = 0
        self.max_block = _MAX_PAYLOAD
        self.contexts: dict[str, int] = {}
        self.structured = False
        self._handle = 0
        self._closed = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
            self._handshake(list(meta_contexts))
        except NbdError:
            self._sock.close()
            self._closed = True
            raise
        except OSError as exc:
            self._sock.close()
            self._closed = True
            raise NbdDisconnected(
                exc.errno or errno.ECONNREFUSED,
                f"cannot connect to NBD export {export!r} at {path}: {exc}",
            ) from exc

    # -- context manager -------------------------------------------------

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def read_only(self) -> bool:
        return bool(self.flags & NBD_FLAG_READ_ONLY)

    # -- low level I/O ----------------------------------------------------

    def _recv(self, n: int, what: str) -> bytearray:
        buf = bytearray(n)
        self._recv_into(memoryview(buf), what)
        return buf

    def _recv_into(self, view: memoryview, what: str) -> None:
        n = len(view)
        got = 0
        while got < n:
            try:
                k = self._sock.recv_into(view[got:], n - got)
            except TimeoutError as exc:
                self._fail()
                raise NbdDisconnected(
                    errno.ETIMEDOUT,
                    f"NBD export {self.export!r}: {what}: no answer from the server",
                ) from exc
            except OSError as exc:
                self._fail()
                raise NbdDisconnected(
                    exc.errno or errno.ECONNRESET, f"NBD export {self.export!r}: {what}: {exc}"
                ) from exc
            if k == 0:
                self._fail()
                raise NbdDisconnected(
                    errno.ENOTCONN,
                    f"NBD export {self.export!r}: {what}: the server closed the connection",
                )
            got += k

    def _send(self, data: bytes | memoryview, what: str) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            self._fail()
            code = errno.ETIMEDOUT if isinstance(exc, TimeoutError) else exc.errno
            raise NbdDisconnected(
                code or errno.EPIPE, f"NBD export {self.export!r}: {what}: {exc}"
            ) from exc

    def _fail(self) -> None:
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    # -- handshake -----------------------------------------------------------

    def _handshake(self, meta_contexts: list[str]) -> None:
        self._newstyle()
        # Structured replies: required for OFFSET_HOLE reads and block status.
        self._send_opt(NBD_OPT_STRUCTURED_REPLY, b"")
        rtype, _ = self._opt_reply(NBD_OPT_STRUCTURED_REPLY, "NBD_OPT_STRUCTURED_REPLY")
        if rtype == NBD_REP_ACK:
            self.structured = True
        elif meta_contexts:
            raise NbdError(
                errno.ENOTSUP,
                f"NBD export {self.export!r}: server refused structured replies, "
                "which block status needs",
            )
        name = self.export.encode()
        if meta_contexts:
            self._set_meta_contexts(name, meta_contexts)
        self._go(name)

    def _newstyle(self) -> None:
        """The fixed-newstyle greeting and the client's flags."""
        hdr = self._recv(18, "handshake")
        magic, opt_magic, hflags = struct.unpack(">QQH", hdr)
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise NbdDisconnected(errno.EPROTO, f"{self.path}: not a newstyle NBD server")
        if not hflags & NBD_FLAG_FIXED_NEWSTYLE:
            raise NbdDisconnected(errno.EPROTO, f"{self.path}: server is not fixed newstyle")
        cflags = NBD_FLAG_C_FIXED_NEWSTYLE
        if hflags & NBD_FLAG_NO_ZEROES:
            cflags |= NBD_FLAG_C_NO_ZEROES
        self._send(struct.pack(">I", cflags), "handshake")

    def _set_meta_contexts(self, name: bytes, meta_contexts: list[str]) -> None:
        """``NBD_OPT_SET_META_CONTEXT``: every context asked for must be granted."""
        payload = struct.pack(">I", len(name)) + name + struct.pack(">I", len(meta_contexts))
        for q in meta_contexts:
            qb = q.encode()
            payload += struct.pack(">I", len(qb)) + qb
        self._send_opt(NBD_OPT_SET_META_CONTEXT, payload)
        while True:
            rtype, data = self._opt_reply(NBD_OPT_SET_META_CONTEXT, "NBD_OPT_SET_META_CONTEXT")
            if rtype == NBD_REP_ACK:
                break
            if rtype == NBD_REP_META_CONTEXT:
                (cid,) = struct.unpack_from(">I", data)
                self.contexts[data[4:].decode()] = cid
        missing = [q for q in meta_contexts if q not in self.contexts]
        if missing:
            raise NbdError(
                errno.ENOTSUP,
                f"NBD export {self.export!r}: server did not grant meta context(s) "
                f"{', '.join(missing)}",
            )

    def _go(self, name: bytes) -> None:
        """``NBD_OPT_GO``: the export's size, flags and block size limits."""
        payload = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, NBD_INFO_BLOCK_SIZE)
        self._send_opt(NBD_OPT_GO, payload)
        have_export = False
        while True:
            rtype, data = self._opt_reply(NBD_OPT_GO, "NBD_OPT_GO")
            if rtype == NBD_REP_ACK:
                break
            if rtype == NBD_REP_INFO and len(data) >= 2:
                (info,) = struct.unpack_from(">H", data)
                if info == NBD_INFO_EXPORT:
                    self.size, self.flags = struct.unpack_from(">QH", data, 2)
                    have_export = True
                elif info == NBD_INFO_BLOCK_SIZE:
                    _minimum, _preferred, maximum = struct.unpack_from(">III", data, 2)
                    self.max_block = max(512, min(maximum, _MAX_PAYLOAD))
        if not have_export:
            raise NbdDisconnected(
                errno.EPROTO, f"NBD export {self.export!r}: NBD_OPT_GO gave no export info"
            )

    def _send_opt(self, opt: int, payload: bytes) -> None:
        self._send(struct.pack(">QII", IHAVEOPT, opt, len(payload)) + payload, "handshake")

    def _opt_reply(self, opt: int, what: str) -> tuple[int, bytes | bytearray]:
        magic, ropt, rtype, length = struct.unpack(">QIII", self._recv(20, what))
        if magic != REPLY_MAGIC_OPT or ropt != opt:
            self._fail()
            raise NbdDisconnected(errno.EPROTO, f"NBD export {self.export!r}: bad reply to {what}")
        data = self._recv(length, what) if length else b""
        if rtype & NBD_REP_FLAG_ERROR:
            name = _REP_ERRORS.get(rtype, f"error {rtype:#x}")
            text = data.decode(errors="replace")
            if opt == NBD_OPT_STRUCTURED_REPLY:
                return rtype, data  # the caller decides whether it matters
            raise NbdError(
                _REP_ERRNO.get(name, errno.EINVAL),
                f"NBD export {self.export!r}: {what} failed: {name}"
                + (f": {text}" if text else ""),
            )
        return rtype, data

    # -- transmission ----------------------------------------------------------

    def _request(
        self,
        cmd: int,
        offset: int,
        length: int,
        flags: int = 0,
        payload: bytes | memoryview | None = None,
    ) -> int:
        if self._closed:
            raise NbdDisconnected(
                errno.ENOTCONN,
                f"NBD export {self.export!r}: {_CMD_NAMES[cmd]}: the connection is closed",
            )
        self._handle += 1
        hdr = _REQ.pack(REQUEST_MAGIC, flags, cmd, self._handle, offset, length)
        if payload is None:
            self._send(hdr, _CMD_NAMES[cmd])
        elif len(payload) < 65536:
            self._send(hdr + bytes(payload), _CMD_NAMES[cmd])
        else:
            self._send(hdr, _CMD_NAMES[cmd])
            self._send(payload, _CMD_NAMES[cmd])
        return self._handle

    def _error(self, cmd: int, offset: int, length: int, code: int, msg: str = "") -> NbdError:
        err = _NBD_ERRNO.get(code, code or errno.EIO)
        text = f": {msg}" if msg else ""
        return NbdError(
            err,
            f"NBD export {self.export!r}: {_CMD_NAMES[cmd]} offset {offset} length {length} "
            f"failed: {os.strerror(err)}{text}",
        )

    def _replies(
        self,
        cmd: int,
        handle: int,
        offset: int,
        length: int,
        on_chunk: Callable[[int, bytes], None] | None = None,
        dest: memoryview | None = None,
    ) -> None:
        """Read all reply chunks of one request.

        Data of a read (simple reply or ``OFFSET_DATA``) goes straight into
        ``dest``, which stands for ``[offset, offset + length)``; holes are
        zeroed there.  Other chunks go to ``on_chunk(type, payload)``.
        Raises :class:`NbdError` for an error reply, after consuming the
        whole reply so that the connection stays in sync.
        """
        what = _CMD_NAMES[cmd]
        error: NbdError | None = None
        while True:
            # A simple reply is 16 bytes, a structured reply header 20.
            head = self._recv(16, what)
            magic, code, rhandle = struct.unpack(">IIQ", head)
            if magic == SIMPLE_REPLY_MAGIC:
                self._check_handle(rhandle, handle, what)
                if code:
                    raise self._error(cmd, offset, length, code)
                if cmd == NBD_CMD_READ:
                    assert dest is not None
                    self._recv_into(dest, what)
                return
            if magic != STRUCTURED_REPLY_MAGIC or not self.structured:
                self._fail()
                raise NbdDisconnected(
                    errno.EPROTO, f"NBD export {self.export!r}: {what}: bad reply magic {magic:#x}"
                )
            head += self._recv(4, what)
            flags, rtype, rhandle, rlen = struct.unpack_from(">HHQI", head, 4)
            self._check_handle(rhandle, handle, what)
            if rtype == NBD_REPLY_TYPE_OFFSET_DATA and dest is not None and rlen >= 8:
                (off,) = struct.unpack(">Q", self._recv(8, what))
                self._check_range(off, rlen - 8, offset, length)
                self._recv_into(dest[off - offset : off - offset + rlen - 8], what)
            else:
                payload = bytes(self._recv(rlen, what)) if rlen else b""
                if rtype in (NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET):
                    code, mlen = struct.unpack_from(">IH", payload)
                    msg = payload[6 : 6 + mlen].decode(errors="replace")
                    if error is None:
                        error = self._error(cmd, offset, length, code, msg)
                elif rtype == NBD_REPLY_TYPE_OFFSET_HOLE and dest is not None:
                    off, size = struct.unpack_from(">QI", payload)
                    self._check_range(off, size, offset, length)
                    dest[off - offset : off - offset + size] = bytes(size)
                elif rtype != NBD_REPLY_TYPE_NONE:
                    if on_chunk is None:
                        self._fail()
                        raise NbdDisconnected(
                            errno.EPROTO,
                            f"NBD export {self.export!r}: {what}: unexpected reply chunk "
                            f"of type {rtype}",
                        )
                    on_chunk(rtype, payload)
            if flags & NBD_REPLY_FLAG_DONE:
                if error is not None:
                    raise error
                return

    def _check_handle(self, got: int, want: int, what: str) -> None:
        if got != want:
            self._fail()
            raise NbdDisconnected(
                errno.EPROTO,
                f"NBD export {self.export!r}: {what}: reply for handle {got}, expected {want}",
            )

    # -- commands ------------------------------------------------------------------

    def pread(self, offset: int, length: int, *, df: bool = False) -> bytes:
        """Read ``length`` bytes at ``offset``; holes read as zeros.

        ``df`` sets ``NBD_CMD_FLAG_DF`` (when the server offers it): QEMU's
        server then reads the data (``blk_pread``) instead of first asking the
        block status and sending known holes without reading them — so the
        read really goes through the export's driver, as a guest's would.
        """
        buf = bytearray(length)
        self.pread_into(buf, offset, df=df)
        return bytes(buf)

    def pread_into(self, buf: bytearray | memoryview, offset: int, *, df: bool = False) -> None:
        """Read ``len(buf)`` bytes at ``offset`` into ``buf`` (``df``: see :meth:`pread`)."""
        view = memoryview(buf).cast("B")
        length = len(view)
        flags = NBD_CMD_FLAG_DF if df and self.structured and self.flags & NBD_FLAG_SEND_DF else 0
        pos = 0
        while pos < length:
            n = min(self.max_block, length - pos)
            handle = self._request(NBD_CMD_READ, offset + pos, n, flags)
            self._replies(NBD_CMD_READ, handle, offset + pos, n, dest=view[pos : pos + n])
            pos += n

    def _check_range(self, off: int, size: int, offset: int, length: int) -> None:
        if off < offset or off + size > offset + length:
            self._fail()
            raise NbdDisconnected(
                errno.EPROTO,
                f"NBD export {self.export!r}: NBD_CMD_READ: chunk [{off}, {off + size}) "
                f"outside the request [{offset}, {offset + length})",
            )

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset``."""
        mv = memoryview(data)
        pos = 0
        while pos < len(data):
            n = min(self.max_block, len(data) - pos)
            handle = self._request(NBD_CMD_WRITE, offset + pos, n, payload=mv[pos : pos + n])
            self._replies(NBD_CMD_WRITE, handle, offset + pos, n)
            pos += n

    def write_zeroes(self, offset: int, length: int, *, may_trim: bool = True) -> None:
        """``NBD_CMD_WRITE_ZEROES``; with ``may_trim`` the server may punch a hole."""
        if not self.flags & NBD_FLAG_SEND_WRITE_ZEROES:
            raise NbdError(
                errno.ENOTSUP,
                f"NBD export {self.export!r}: the server does not support NBD_CMD_WRITE_ZEROES",
            )
        flags = 0 if may_trim else NBD_CMD_FLAG_NO_HOLE
        pos = 0
        while pos < length:
            n = min(_MAX_STATUS_LEN, length - pos)
            handle = self._request(NBD_CMD_WRITE_ZEROES, offset + pos, n, flags)
            self._replies(NBD_CMD_WRITE_ZEROES, handle, offset + pos, n)
            pos += n

    def block_status(self, offset: int, length: int) -> dict[str, list[tuple[int, int, int]]]:
        """Extents of every negotiated meta context over ``[offset, offset+length)``.

        Returns ``{context: [(start, length, flags), ...]}``; the extents of each
        context are contiguous from ``offset`` and cover the whole range.
        """
        if not self.contexts:
            raise NbdError(
                errno.EINVAL,
                f"NBD export {self.export!r}: NBD_CMD_BLOCK_STATUS needs a meta context",
            )
        names = {cid: name for name, cid in self.contexts.items()}
        out: dict[str, list[tuple[int, int, int]]] = {name: [] for name in self.contexts}
        end = offset + length
        covered = {name: offset for name in self.contexts}
        while True:
            pos = min(covered.values())
            if pos >= end:
                break
            n = min(_MAX_STATUS_LEN, end - pos)
            got: dict[str, list[tuple[int, int]]] = {}

            def chunk(rtype: int, payload: bytes, got: dict = got) -> None:
                if rtype != NBD_REPLY_TYPE_BLOCK_STATUS:
                    self._fail()
                    raise NbdDisconnected(
                        errno.EPROTO,
                        f"NBD export {self.export!r}: NBD_CMD_BLOCK_STATUS: "
                        f"unexpected reply type {rtype}",
                    )
                (cid,) = struct.unpack_from(">I", payload)
                desc = [
                    struct.unpack_from(">II", payload, 4 + 8 * i)
                    for i in range((len(payload) - 4) // 8)
                ]
                got[names.get(cid, str(cid))] = desc

            handle = self._request(NBD_CMD_BLOCK_STATUS, pos, n)
            self._replies(NBD_CMD_BLOCK_STATUS, handle, pos, n, chunk)
            progressed = False
            for name in self.contexts:
                start = pos
                # Skip what this context already covered beyond ``pos``.
                for elen, eflags in got.get(name, []):
                    if elen == 0:
                        continue
                    s, e = start, min(start + elen, end)
                    start += elen
                    if e <= covered[name]:
                        continue
                    s = max(s, covered[name])
                    out[name].append((s, e - s, eflags))
                    covered[name] = e
                    progressed = True
                    if e >= end:
                        break
            if not progressed:
                self._fail()
                raise NbdDisconnected(
                    errno.EPROTO,
                    f"NBD export {self.export!r}: NBD_CMD_BLOCK_STATUS made no progress "
                    f"at offset {pos}",
                )
        return out

    def close(self) -> None:
        """Send ``NBD_CMD_DISC`` and close the socket (no error if already closed)."""
        if self._closed:
            return
        try:
            self._request(NBD_CMD_DISC, 0, 0)
        except NbdError:
            pass
        self._fail()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._sock.close()
        except Exception:
            pass
