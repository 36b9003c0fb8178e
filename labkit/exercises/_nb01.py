"""Notebook 01's exercises."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from labkit.exercises._core import (
    Exercise,
    Mistake,
    Option,
    choice,
    equal,
    is_int,
    list_form,
    one_line,
    same_set,
)
from labkit.lab import run_scenario
from labkit.sources import NODE_LAYER

CHAIN = "start\npwrite 1b 4K 0xb1\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\n"
# the layers a read can be served by, as Lab.provenance names them
LAYERS = tuple(NODE_LAYER.values())
# the names as the tables, block maps and the trace print them (the node names too)
_LAYER_SPELLINGS = {**NODE_LAYER, **{f"{layer} disk": layer for layer in LAYERS}}


def _layer_names(answer: Any) -> Any:
    if isinstance(answer, (list, tuple)):
        return [(_LAYER_SPELLINGS.get(a.strip().lower(), a.strip().lower())
                 if isinstance(a, str) else a) for a in answer]
    return answer


def _block_numbers(answer: Any) -> Any:
    """range(16), a set or a tuple of block numbers, as a sorted list."""
    if isinstance(answer, (range, set, frozenset)):
        return sorted(answer)
    return answer


def _served() -> list[str]:
    lab = run_scenario(CHAIN, size="128K", hidden_cluster="4K", active_cluster="4K")
    read = lab.vm_read(0, 8 * 4096)
    lab.run()
    return lab.provenance(read)[:8]


def _only_written_block_copied(answer: Any, want: list[str]) -> bool:
    # hidden where the primary wrote (block 1), the secondary disk for the rest of cluster 0
    return any(a == "secondary" and w == "hidden" for a, w in zip(answer, want, strict=False))


def _vm_write_not_on_top(answer: Any, want: list[str]) -> bool:
    return any(w == "active" and a != "active" for a, w in zip(answer, want, strict=False))


def _active_partial_blocks() -> list[int]:
    lab = run_scenario("start\nvwrite 5b 512 0xcc", size="128K", active_cluster="64K")
    active = lab.layers()["active"]
    assert active is not None
    return [b for b in range(32) if active.alloc[b * 8:(b + 1) * 8].all()]


ex01 = SimpleNamespace(
    served=Exercise(
        name="01.served",
        question=f"After `{one_line(CHAIN)}` (4 KiB blocks; hidden and active "
                 "with 4 KiB clusters), a VM read of blocks 0-7: which layer serves each of blocks "
                 "0-7? Answer a list of 8 names, each 'active', 'hidden' or 'secondary'.",
        solve=_served,
        form=list_form("layer names", lambda a: a in LAYERS, "['active', 'secondary', ...]",
                       length=8),
        right=equal,
        mistakes=[Mistake("only the written block is copied", _only_written_block_copied,
                          lambda want: [("secondary" if w == "hidden" and i != 1 else w)
                                        for i, w in enumerate(want)],
                          "Some blocks you sent to the secondary disk were saved in hidden. The "
                          "backup job does not copy just the block being written: it copies the "
                          "whole backup cluster (64 KiB, blocks 0-15) the first time the primary "
                          "writes into it, and the read takes each block from the topmost layer "
                          "that has it."),
                  Mistake("the VM's own write is not on top", _vm_write_not_on_top,
                          lambda want: [("hidden" if w == "active" else w) for w in want],
                          "Look at block 2: the VM wrote it itself. The VM's writes go to active, "
                          "the top of the chain, and a read takes each block from the topmost "
                          "layer that holds it — whatever the primary wrote later lives below.")],
        hints=["A read takes each block from the topmost layer that has it: active, then hidden, "
               "then the secondary disk.",
               "The primary's first write to a 64 KiB backup cluster copies all 16 of its blocks "
               "into hidden."],
        explanation="Block 2 comes from active (the VM's own write); the other blocks of backup "
                    "cluster 0 come from hidden, which received the whole cluster when the "
                    "primary first wrote to it.", placeholder=[], normalise=_layer_names),
    partial=Exercise(
        name="01.partial",
        question="With 64 KiB active clusters, the VM writes 512 bytes into block 5 (4 KiB blocks, "
                 "32 of them). Which blocks are then allocated in active? Answer a list of block "
                 "numbers.",
        solve=_active_partial_blocks,
        form=list_form("block numbers 0-31", lambda b: is_int(b) and 0 <= b < 32, "[3, 4]"),
        right=same_set,
        mistakes=[Mistake("allocation is per written block", lambda a, w: set(a) == {5},
                          lambda want: [5],
                          "qcow2 does not allocate 4 KiB blocks: it allocates whole clusters, and "
                          "active's clusters are 64 KiB here. A write that touches any part of an "
                          "unallocated cluster allocates all of it."),
                  Mistake("more than one cluster", lambda a, w: bool(set(a) - set(w)),
                          lambda want: list(range(32)),
                          "Only one cluster is touched by a 512-byte write; the other clusters of "
                          "active stay unallocated (reads fall through them to hidden and the "
                          "secondary disk). Which 64 KiB cluster holds block 5?"),
                  Mistake("part of the cluster", lambda a, w: set(a) < set(w) and set(a) != {5},
                          lambda want: [4, 5, 6, 7],
                          "A cluster is allocated as a whole or not at all. How many 4 KiB blocks "
                          "does one 64 KiB cluster hold?")],
        hints=["qcow2 allocates whole clusters.",
               "An allocating write that covers part of a cluster fills the rest from the backing "
               "chain (qcow2's own copy-on-write)."],
        explanation="The whole 64 KiB cluster (blocks 0-15) is allocated; the rest of it was "
                    "filled from hidden/secondary: qcow2's own copy-on-write, not the backup "
                    "job's.", placeholder=[],
        normalise=_block_numbers,
        forms=lambda want: [f"('active', {want[0]}, {len(want)})", f"range({len(want)})"]),
)


# 1.3: a prediction, made before the cell that runs it
AFTER_CHECKPOINT = "start\nvwrite 2b 4K 0xc2\npwrite 2b 4K 0xb2\ncheckpoint\n"


def _after_checkpoint_read() -> str:
    lab = run_scenario(AFTER_CHECKPOINT, size="128K", hidden_cluster="4K", active_cluster="4K")
    read = lab.vm_read(2 * 4096, 4096)
    lab.run()
    layer, byte = lab.provenance(read)[2], read.result[0]
    found = {("active", 0xC2): "a", ("hidden", 0x12): "b", ("secondary", 0xB2): "c",
             ("secondary", 0x12): "d"}
    return found.get((layer, byte), "?")


ex01.checkpoint = choice(
    name="01.checkpoint",
    question=f"`{one_line(AFTER_CHECKPOINT)}` (4 KiB qcow2 clusters), then "
             "the VM reads block 2. Which layer serves the read, and what does it return?",
    options=[Option("a", "active, 0xc2", "a checkpoint keeps the VM's own writes",
                    "A checkpoint makes the secondary VM a copy of the primary: bdrv_make_empty "
                    "drops every cluster of active, so the VM's own 0xc2 is gone."),
             Option("b", "hidden, 0x12", "the checkpoint brings the saved old data into view",
                    "hidden is emptied by the same checkpoint (bdrv_make_empty on hidden too): the "
                    "old data it kept belonged to the epoch that just ended."),
             Option("c", "the secondary disk, 0xb2"),
             Option("d", "the secondary disk, 0x12", "the primary's write stays hidden after a "
                    "checkpoint",
                    "The read does fall through to the secondary disk — but that disk holds the "
                    "primary's 0xb2 since its write landed, and after a checkpoint nothing hides "
                    "it any more: the checkpoint made the primary's data the VM's view.")],
    solve=_after_checkpoint_read,
    explanation="The checkpoint emptied active and hidden (bdrv_make_empty), so the read falls "
                "through to the secondary disk, which holds the primary's 0xb2: at a checkpoint "
                "the secondary becomes a copy of the primary.",
    hints=["After make_empty a qcow2 layer has no allocated cluster: reads fall through.",
           "Which layers does a checkpoint empty?"])


