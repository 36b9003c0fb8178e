"""A session's disk images: the secondary disk's bytes, the qcow2 overlays, the room for them.

QEMU's ``docs/block-replication.txt`` prepares its secondary with
``qemu-img create -f qcow2`` (the hidden and active disks, each backed by the one
below); image fleecing (``tests/qemu-iotests/tests/image-fleecing``) creates its
overlay the same way.  This module makes those files before QEMU starts:

* :func:`fill_secondary` writes ``secondary.raw`` as the simulator's ``fill``
  says (:class:`labkit.config.LabConfig`), in bounded chunks;
* :func:`check_space` refuses, before anything is written, images that would not
  fit the temporary filesystem (:class:`~labkit.errors.LimitError`);
* :func:`create_overlay` runs ``qemu-img create -f qcow2 -o cluster_size=N -b
  BACKING -F FMT`` (qemu-img.c, ``img_create``): the overlay is sparse, its
  backing file named relative to the session directory.

What a trainee should notice: the cluster size chosen here is the qcow2
``cluster_size`` QEMU's copy-before-write reads (``block_copy_calculate_cluster_size``
in block/block-copy.c: ``MAX(64 KiB, target cluster)``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

from labkit.config import Fill
from labkit.errors import LimitError, QemuError
from labkit.qemu import _cleanup

#: Room left on the temporary filesystem beyond secondary.raw's data: two fresh
#: qcow2 images and QEMU's log, with a margin for hidden and active to grow.
SPACE_MARGIN = 16 << 20
_CHUNK = 1 << 20


def find_qemu_img(qemu: str) -> str | None:
    """qemu-img next to the given QEMU binary, else on PATH."""
    exe = shutil.which(qemu)
    if exe:
        sibling = Path(exe).with_name("qemu-img")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("qemu-img")


def image_bytes(size: int, fill: Fill) -> int:
    """Bytes ``secondary.raw`` takes on disk: none for ``fill="zero"`` (one hole)."""
    return 0 if fill == "zero" else size


def check_space(base: Path, size: int, fill: Fill) -> None:
    """Refuse, before anything is written, images that would not fit ``base``'s filesystem."""
    data = image_bytes(size, fill)
    free = _cleanup.free_bytes(base)
    if data + SPACE_MARGIN > free:
        raise LimitError(
            f"size {size} bytes: secondary.raw needs {data} bytes "
            f"(plus {SPACE_MARGIN >> 20} MiB for hidden, active and the log) but the "
            f"temporary filesystem of {base} has {free} bytes free; choose a smaller size, "
            f"fill='zero' (a sparse file), or point TMPDIR at a larger filesystem")


def _write_repeated(f: BinaryIO, period: bytes, size: int) -> None:
    left = size
    while left:
        chunk = period[: min(left, len(period))]
        f.write(chunk)
        left -= len(chunk)


def fill_secondary(path: Path, size: int, block: int, fill: Fill) -> None:
    """Create ``secondary.raw``: ``"index"`` (block k of ``block`` bytes holds byte
    ``0x10 + k % 0x70``), ``"zero"`` (one sparse hole: QEMU reads it as zeros and
    copy-before-write copies whole chunks of it as qcow2 zero clusters) or a byte
    (every byte, written as data)."""
    with open(path, "wb") as f:
        if fill == "zero":
            f.truncate(size)
        elif fill == "index":
            _write_repeated(f, b"".join(bytes([0x10 + k]) * block for k in range(0x70)), size)
        else:
            _write_repeated(f, bytes([fill]) * min(size, _CHUNK), size)


def create_overlay(qemu_img: str, workdir: Path, name: str, backing: str, backing_fmt: str,
                   cluster: int, timeout: float) -> None:
    """``qemu-img create -f qcow2 -o cluster_size=CLUSTER -b BACKING -F FMT NAME`` in
    ``workdir``; a failure raises :class:`QemuError` with qemu-img's message."""
    argv = [qemu_img, "create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}",
            "-b", backing, "-F", backing_fmt, str(workdir / name)]
    res = subprocess.run(argv, capture_output=True, text=True, cwd=workdir, check=False,
                         timeout=timeout)
    if res.returncode:
        raise QemuError(f"qemu-img create {name} failed (exit {res.returncode}): "
                        f"{(res.stderr or res.stdout).strip()}", command="qemu-img create")


__all__ = ["SPACE_MARGIN", "check_space", "create_overlay", "fill_secondary", "find_qemu_img",
           "image_bytes"]
