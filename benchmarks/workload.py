"""Section 1's workload: the same seeded sequence of operations for the simulator and QEMU.

20,000 primary 4 KiB writes, 20,000 VM 4 KiB reads and 2,000 VM 4 KiB writes,
in an order shuffled by the seed, at 4 KiB-aligned offsets drawn uniformly
over the disk, issued one after another (each finishes before the next
starts), with a checkpoint after every 1,000 operations.  Replication is
started first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GiB = 1 << 30
IO = 4096


@dataclass(frozen=True)
class Workload:
    """The operations: ``ops[i] = (kind, offset, byte)``, kind ``pwrite``/``vread``/``vwrite``;
    a checkpoint follows every ``checkpoint_every`` operations."""

    size: int
    cluster: int
    ops: tuple[tuple[str, int, int], ...]
    checkpoint_every: int
    seed: int

    @property
    def checkpoints(self) -> int:
        return len(self.ops) // self.checkpoint_every

    @property
    def operations(self) -> int:
        """What ops/s counts: every I/O, every checkpoint, and the start."""
        return len(self.ops) + self.checkpoints + 1

    def touched_bytes(self) -> int:
        """Distinct bytes of the disk that the workload's requests address (read or write)."""
        return len({off for _, off, _ in self.ops}) * IO

    def written_bytes(self) -> int:
        """Distinct bytes the workload's writes (primary and VM) address."""
        return len({off for kind, off, _ in self.ops if kind != "vread"}) * IO


def make(seed: int = 2026, size: int = GiB, cluster: int = 64 << 10, pwrites: int = 20_000,
         vreads: int = 20_000, vwrites: int = 2_000, checkpoint_every: int = 1_000) -> Workload:
    rng = random.Random(seed)
    kinds = ["pwrite"] * pwrites + ["vread"] * vreads + ["vwrite"] * vwrites
    rng.shuffle(kinds)
    blocks = size // IO
    ops = []
    for i, kind in enumerate(kinds):
        # bytes >= 0x80 tell written data from the index fill (0x10-0x7f) at a glance
        byte = 0 if kind == "vread" else 0x80 + i % 0x7f
        ops.append((kind, rng.randrange(blocks) * IO, byte))
    return Workload(size, cluster, tuple(ops), checkpoint_every, seed)
