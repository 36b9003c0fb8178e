"""The block graph: nodes, drivers (raw, qcow2) and the NBD server.

Re-exports the public names of the private modules; see each for what it
models in QEMU.
"""

from ._drain import bdrv_drain_poll, bdrv_drained_begin, bdrv_drained_end, blk_wait_while_drained
from ._graph import BlockGraph
from ._node import (
    REQ_MAY_UNMAP,
    REQ_NO_SERIALISING,
    REQ_SERIALISING,
    BlockNode,
    InjectedError,
    TrackedRequest,
)
from .nbd import NBDExport, NBDServer
from .qcow2 import Qcow2Node
from .raw import RawNode

__all__ = [
    "REQ_MAY_UNMAP",
    "REQ_NO_SERIALISING",
    "REQ_SERIALISING",
    "BlockGraph",
    "BlockNode",
    "InjectedError",
    "NBDExport",
    "NBDServer",
    "Qcow2Node",
    "RawNode",
    "TrackedRequest",
    "bdrv_drain_poll",
    "bdrv_drained_begin",
    "bdrv_drained_end",
    "blk_wait_while_drained",
]
