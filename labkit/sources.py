"""Where a disk's bytes came from, read from the trace: who wrote them, which layer served a read.

Trace analysis for the figures (:mod:`labkit.plot`), the widgets and the
lessons, beside :mod:`labkit.steps`: nothing here changes a lab or models a
QEMU function; it answers two questions a trainee asks of a run.

* :func:`writers`: which write wrote each byte value.  labkit's writes fill
  their range with one byte and ``fill="index"`` gives each block its own, so
  a byte value names its writer; a copy (the backup's COW into hidden, the
  failover commit) moves bytes without changing who wrote them.
* :func:`provenance`: which layer (active, hidden, secondary) served each
  block of a secondary-VM read — what ``bdrv_co_preadv`` going down the
  backing chain did, read from the ``io-read`` points and ``read-zero``
  events the block layer traced on each node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import ArgumentError, ConfigError
from .kernel import Task
from .layers import SECTOR

if TYPE_CHECKING:
    from .lab import Lab

#: The COLO secondary's nodes and the layer each is (``lab.layers()``'s names).
NODE_LAYER = {"secondary-disk": "secondary", "hidden": "hidden", "active": "active"}


def writers(lab: Lab) -> dict[int, list[str]]:
    """Who wrote each byte value: ``{0xbb: ["nbd-write#1"], 0x15: ["original"], ...}``.

    ``"original"`` for every byte of the initial fill
    (:attr:`labkit.config.LabConfig.fill_values`), then the write tasks (the
    primary's and the VM's, in the order they were issued) that write that
    byte (:attr:`labkit.Lab.write_bytes`), so the plots can name the writer of
    any block's content from its byte value alone.
    """
    out: dict[int, list[str]] = {b: ["original"] for b in lab.config.fill_values}
    for name, byte in lab.write_bytes.items():
        out.setdefault(byte, []).append(name)
    return out


def provenance(lab: Lab, task: Task | str) -> list[str]:
    """Which layer served each block of a read task, from the trace.

    One entry per block: ``"active"``, ``"hidden"`` or ``"secondary"`` (the
    layer whose data or zero cluster the read used), ``"mixed"`` when
    sectors of the block came from different layers, ``""`` outside the read.
    Read from the events' typed fields: a ``point`` whose ``op`` is
    ``io-read`` and the ``read-zero`` events, on the layers' nodes.  An
    unknown task, or a lab of another graph than COLO's, raises
    :class:`~labkit.errors.ConfigError`, a value that is not a task
    :class:`~labkit.errors.ArgumentError`.
    """
    if isinstance(task, Task):
        name = task.name
    elif isinstance(task, str):
        name = task
    else:
        raise ArgumentError(f"provenance needs a task or a task name, got "
                            f"{type(task).__name__}")
    if lab.config.graph != "colo":
        raise ConfigError("provenance is the COLO lab's (secondary, hidden, active); a "
                          "fleecing lab's reads are shown by its trace")
    if name not in lab.kernel.tasks:
        raise ConfigError(f"no task named {name!r}; tasks: "
                          f"{', '.join(lab.kernel.tasks) or '(none yet)'}")
    size, block = lab.size, lab.block
    served = np.full(size // SECTOR, "", dtype=object)
    for e in lab.kernel.trace:
        if e.task != name or e.node not in NODE_LAYER:
            continue
        if (e.kind == "point" and e.op == "io-read") or e.kind == "read-zero":
            served[e.offset // SECTOR:(e.offset + e.length) // SECTOR] = NODE_LAYER[e.node]
    per = block // SECTOR
    out = []
    for b in range(-(-size // block)):
        values = set(served[b * per:(b + 1) * per]) - {""}
        out.append(values.pop() if len(values) == 1 else ("mixed" if values else ""))
    return out


__all__ = ["NODE_LAYER", "provenance", "writers"]
