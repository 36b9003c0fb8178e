"""The block graph: nodes, drivers (raw, qcow2, the copy-before-write filter with
block-copy) and the NBD server.

Re-exports the public names of the private modules; see each for what it
models in QEMU.
"""

from ._drain import bdrv_drain_poll, bdrv_drained_begin, bdrv_drained_end, blk_wait_while_drained
from ._graph import BlockGraph
from ._node import (
    LAYER_CACHE_MAX,
    REQ_MAY_UNMAP,
    REQ_NO_SERIALISING,
    REQ_SERIALISING,
    BlockNode,
    FilterNode,
    InjectedError,
    TrackedRequest,
    check_byte_request,
)
from ._store import (
    CHUNK,
    Base,
    BufferBase,
    ChunkStore,
    ConstantFill,
    IndexFill,
    fill_base,
    zeros_base,
)
from .block_copy import BlockCopyState, BlockReq, BlockReqList
from .copy_before_write import CopyBeforeWriteNode, bdrv_cbw_append, bdrv_cbw_drop
from .nbd import NBDExport, NBDServer
from .qcow2 import Qcow2Node
from .raw import RawNode

__all__ = [
    "CHUNK",
    "LAYER_CACHE_MAX",
    "REQ_MAY_UNMAP",
    "REQ_NO_SERIALISING",
    "REQ_SERIALISING",
    "Base",
    "BlockCopyState",
    "BlockGraph",
    "BlockNode",
    "BlockReq",
    "BlockReqList",
    "BufferBase",
    "ChunkStore",
    "ConstantFill",
    "CopyBeforeWriteNode",
    "FilterNode",
    "IndexFill",
    "InjectedError",
    "NBDExport",
    "NBDServer",
    "Qcow2Node",
    "RawNode",
    "TrackedRequest",
    "bdrv_cbw_append",
    "bdrv_cbw_drop",
    "bdrv_drain_poll",
    "bdrv_drained_begin",
    "bdrv_drained_end",
    "blk_wait_while_drained",
    "check_byte_request",
    "fill_base",
    "zeros_base",
]
