"""The NBD server on the secondary: how the primary's writes reach the secondary disk.

``nbd-server-add`` (or ``block-export-add``) puts a *BlockBackend* on the
secondary disk; that backend is what ``replication_start`` checks for ("The
secondary disk doesn't have block backend").  Each NBD write from the primary
is served by a coroutine of the NBD server — labkit names those tasks
``nbd-write#N`` — that calls ``blk_co_pwritev`` on the export's node, which
runs the node's before-write notifiers (the backup COW) before the data lands.
While a drained section is open (``block/_drain.py``) a new NBD request waits
before it starts: 2.8's ``aio_disable_external`` stops the server reading it.
"""

from __future__ import annotations

from ..errors import BlockError, GraphError
from ._drain import blk_wait_while_drained
from ._node import BlockNode


class NBDExport:
    """One export: a name, a node, writable or not (``nbd-server-add``)."""

    def __init__(self, name: str, node: BlockNode, writable: bool) -> None:
        self.name = name
        self.node = node  # the BlockBackend's root: moves to a filter inserted above it
        self.writable = writable

    @property
    def backend_name(self) -> str:
        return f"nbd:{self.name}"

    def __repr__(self) -> str:
        return f"<NBDExport {self.name} -> {self.node.name}{' rw' if self.writable else ''}>"

    async def co_read(self, offset: int, nbytes: int) -> bytes:
        """``NBD_CMD_READ`` served as ``blk_co_preadv`` on the export's node."""
        await blk_wait_while_drained(self.node)  # aio_disable_external: not read yet
        return await self.node.co_preadv(offset, nbytes)

    async def co_write(self, offset: int, data: bytes) -> None:
        """``NBD_CMD_WRITE`` served as ``blk_co_pwritev`` on the export's node."""
        if not self.writable:
            raise BlockError(1, f"NBD export {self.name} is read-only")  # EPERM
        await blk_wait_while_drained(self.node)  # aio_disable_external: not read yet
        await self.node.co_pwritev(offset, data)

    async def co_write_zeroes(self, offset: int, nbytes: int) -> None:
        """``NBD_CMD_WRITE_ZEROES`` served as ``blk_co_pwrite_zeroes``."""
        if not self.writable:
            raise BlockError(1, f"NBD export {self.name} is read-only")
        await blk_wait_while_drained(self.node)
        await self.node.co_pwrite_zeroes(offset, nbytes)


class NBDServer:
    """``nbd-server-start`` + ``nbd-server-add``: a set of named exports."""

    def __init__(self) -> None:
        self.exports: dict[str, NBDExport] = {}

    def add(self, node: BlockNode, name: str | None = None, writable: bool = False) -> NBDExport:
        name = name or node.name
        if name in self.exports:
            raise GraphError(f"NBD export {name!r} already exists; export names are unique")
        export = NBDExport(name, node, writable)
        self.exports[name] = export
        node.backends.append(export.backend_name)
        node.blk_parents.append(export)
        return export

    def remove(self, name: str) -> None:
        if name not in self.exports:
            raise GraphError(f"no NBD export named {name!r}; exports: {sorted(self.exports)}")
        export = self.exports.pop(name)
        export.node.backends.remove(export.backend_name)
        export.node.blk_parents.remove(export)
