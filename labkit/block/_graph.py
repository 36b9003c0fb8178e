"""The set of named nodes (QEMU's ``graph_bdrv_states``) and graph surgery.

The graph also says which QEMU it is: its ``era`` (``"2.8"`` or ``"7.2"``) is
read by every layer that behaves differently in the two — the CoMutex of a
qcow2 node (hand-over since 2.9), qcow2's partial-cluster copy-on-write order,
the backup job (2.8's before-write notifier or 7.2's copy-before-write filter
node with block-copy) and the replication driver's control commands.  It is
set once, when the graph is made, never passed along with a request.
"""

from __future__ import annotations

from ..config import ERAS
from ..errors import GraphError
from ._node import BlockNode


class BlockGraph:
    """Named nodes, as ``blockdev-add`` creates them; lookups as ``bdrv_lookup_bs`` does."""

    def __init__(self, era: str = "2.8") -> None:
        if era not in ERAS:
            raise GraphError(f"era {era!r} is not one of {', '.join(map(repr, ERAS))}")
        self.era = era
        self.nodes: dict[str, BlockNode] = {}

    def add(self, node: BlockNode) -> BlockNode:
        if node.name in self.nodes:
            raise GraphError(f"Duplicate nodes with node-name='{node.name}'")
        if node.graph is not None and node.graph is not self:
            raise GraphError(f"node {node.name} belongs to another block graph already")
        self.nodes[node.name] = node
        node.graph = self
        node.attached(self)
        return node

    def remove(self, node: BlockNode) -> None:
        """``bdrv_unref`` of a node nobody uses any more (a dropped filter)."""
        if self.nodes.get(node.name) is not node:
            raise GraphError(f"node {node.name} is not in this block graph")
        if self.parents(node) or node.blk_parents:
            raise GraphError(f"node {node.name} is still in use and cannot be removed")
        del self.nodes[node.name]

    def lookup(self, name: str) -> BlockNode | None:
        """``bdrv_lookup_bs(name, name)``: a node by node name or by attached backend name."""
        if name in self.nodes:
            return self.nodes[name]
        for node in self.nodes.values():
            if name in node.backends:
                return node
        return None

    def parents(self, node: BlockNode) -> list[tuple[BlockNode, str]]:
        """Every (parent, role) whose child ``role`` is ``node``."""
        return [(p, role) for p in self.nodes.values() for role, child in p.children.items()
                if child is node]

    def is_root(self, node: BlockNode) -> bool:
        """``bdrv_is_root_node``: no other node has it as a child."""
        return not self.parents(node)

    def replace(self, old: BlockNode, new: BlockNode) -> None:
        """``bdrv_replace_in_backing_chain``: every parent of ``old`` now points at ``new``."""
        for parent, role in self.parents(old):
            if parent is new:
                continue
            parent.children[role] = new
