"""The set of named nodes (QEMU's ``graph_bdrv_states``) and graph surgery."""

from __future__ import annotations

from ..errors import GraphError
from ._node import BlockNode


class BlockGraph:
    """Named nodes, as ``blockdev-add`` creates them; lookups as ``bdrv_lookup_bs`` does."""

    def __init__(self) -> None:
        self.nodes: dict[str, BlockNode] = {}

    def add(self, node: BlockNode) -> BlockNode:
        if node.name in self.nodes:
            raise GraphError(f"Duplicate nodes with node-name='{node.name}'")
        self.nodes[node.name] = node
        return node

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
