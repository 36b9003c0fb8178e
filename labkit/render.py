"""Text block maps: the CLI's tables and every widget's plain-text twin.

One column per block (``block`` bytes), two characters a cell:

* ``xx`` — every byte of the block is ``0xXX`` and the block is allocated here;
* ``..`` — not allocated in this layer (reads fall through to the backing node);
* ``**`` — partly allocated; ``zz`` — a qcow2 zero cluster; ``~~`` — mixed bytes.

The format is the one :mod:`labkit.qemu` prints for a real QEMU 7.2's layers,
so that a trainee can put the simulator's table beside QEMU's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .layers import SECTOR, Layer

LEGEND = ("legend: xx = every byte of the block is 0xXX; .. = not allocated in this layer; "
          "** = partly allocated; zz = zero cluster; ~~ = mixed bytes")


_HEX = [f"{b:02x}" for b in range(256)]


def block_cells(layer: Layer, block: int) -> list[str]:
    """The two-character cell of each block of ``layer``."""
    nblocks = -(-layer.size // block)
    # Whole blocks a window at a time: a 1 GiB layer is never joined in memory.
    step = max(1, (1 << 24) // block) * block
    uniform_parts, first_parts = [], []
    for window in layer.blocks(step):
        pad = -window.size % block
        if pad:
            window = np.concatenate([window, np.repeat(window[-1:], pad)])
        rows = window.reshape(-1, block)
        uniform_parts.append((rows == rows[:, :1]).all(axis=1))
        first_parts.append(rows[:, 0].copy())
    uniform = np.concatenate(uniform_parts) if uniform_parts else np.zeros(0, dtype=bool)
    firsts = np.concatenate(first_parts) if first_parts else np.zeros(0, dtype=np.uint8)
    per = block // SECTOR
    alloc = layer.alloc
    zero = layer.zero
    pad = nblocks * block - layer.size
    if pad:
        extra = pad // SECTOR
        alloc = np.concatenate([alloc, np.repeat(alloc[-1:], extra)])
        zero = np.concatenate([zero, np.repeat(zero[-1:], extra)])
    a = alloc.reshape(nblocks, per)
    z = zero.reshape(nblocks, per)
    # Per block, decided with numpy over all blocks at once (a 1 GiB layer has
    # 262,144 blocks of 4 KiB: one numpy call per block took minutes).
    any_alloc = list(np.asarray(a.any(axis=1)).tolist())
    all_alloc = list(np.asarray(a.all(axis=1)).tolist())
    all_zero = list(np.asarray(z.all(axis=1)).tolist())
    same = list(uniform.tolist())
    first = list(firsts.tolist())
    cells = []
    for i in range(nblocks):
        if not any_alloc[i]:
            cells.append("..")
        elif not all_alloc[i]:
            cells.append("**")
        elif all_zero[i]:
            cells.append("zz")
        elif same[i]:
            cells.append(_HEX[first[i]])
        else:
            cells.append("~~")
    return cells


def _fmt_block(block: int) -> str:
    if block % 1024 == 0:
        return f"{block // 1024} KiB"
    return f"{block} B"


def block_map(layers: Mapping[str, Layer | None], block: int, *, per_line: int = 32,
              group: int = 4, note: Mapping[str, str] | None = None) -> str:
    """A table of the layers, ``per_line`` blocks per line, in groups of ``group``."""
    names = list(layers)
    width = max(18, *(len(n) + 2 for n in names))
    size = next((lay.size for lay in layers.values() if lay is not None), 0)
    nblocks = -(-size // block)
    cells = {n: block_cells(lay, block) for n, lay in layers.items() if lay is not None}
    lines: list[str] = []
    for start in range(0, nblocks, per_line):
        stop = min(nblocks, start + per_line)
        header = f"block({_fmt_block(block)})".ljust(width)
        header += " ".join(str(b).ljust(2 * group) for b in range(start, stop, group))
        lines.append(header.rstrip())
        for name in names:
            label = name + (f" {note[name]}" if note and name in note else "")
            row = label.ljust(width)
            if name not in cells:
                # fleecing's snapshot exists once the backup started (fleece)
                row += ("(nothing to read yet: the backup has not started)"
                        if name == "snapshot" else
                        "(not readable: the VM gets EIO until replication starts)") \
                    if start == 0 else ""
                lines.append(row.rstrip())
                continue
            c = cells[name][start:stop]
            row += " ".join("".join(c[i:i + group]) for i in range(0, len(c), group))
            if name not in ("secondary", "vm-view") and stop == nblocks:
                lay = layers[name]
                assert lay is not None
                n_alloc = sum(1 for x in cells[name] if x != "..")
                row += f"  alloc {n_alloc}/{nblocks}"
            lines.append(row)
    return "\n".join(lines)


def dumps_text(dumps: Iterable[tuple[str, Mapping[str, Layer | None]]], block: int) -> str:
    """Every dump of a run as a titled table (what ``labkit run`` prints)."""
    out = []
    for i, (title, layers) in enumerate(dumps, start=1):
        out.append(f"-- dump {i}: {title}")
        out.append(block_map(layers, block))
    return "\n".join(out)
