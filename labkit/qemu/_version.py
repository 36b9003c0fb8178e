"""Which QEMU is on this machine, and whether labkit may compare its model with it live.

labkit's model of the block layer was checked against QEMU 7.2 (Debian 12's
``qemu-system-x86``).  Another QEMU may behave differently in exactly the places
a comparison looks at, so the version decides what a comparison shows:

* **7.2.x** — checked: live.
* **8.0 – 8.2** (Ubuntu 24.04 and so Binder ship 8.2) — live, every comparison
  labelled "QEMU 8.2.x; the model was checked against 7.2".  What changed from
  7.2 in the files the model follows was read, not run:
  ``block/copy-before-write.c`` (``cbw_do_copy_before_write`` → ``block_copy``,
  then ``reqlist_wait_all`` on the frozen snapshot reads) and
  ``block/block-copy.c`` (``block_copy_dirty_clusters``, ``block_copy_common``'s
  ``reqlist_wait_one``, ``BDRV_REQ_SERIALISING`` on the target when the source
  is in its backing chain — ``block_copy_state_new``'s ``is_fleecing``) have
  the same statements in the same order; what 8.x adds is the graph lock
  (``GRAPH_RDLOCK`` annotations, ``WITH_GRAPH_RDLOCK_GUARD`` around
  ``block_copy_do_copy``).  ``block/replication.c``'s request path is still a
  plain ``bdrv_co_preadv``/``bdrv_co_pwritev`` to ``bs->file``; 8.2 takes
  ``bdrv_graph_wrlock`` around ``replication_start``'s ``bdrv_attach_child``
  and ``replication_done``'s ``bdrv_unref_child`` — graph changes at start
  and failover, before and after any request of a scenario, so no request
  waits on that lock.  ``block/io.c``'s serialising requests
  (``bdrv_make_request_serialising``, ``bdrv_wait_serialising_requests``) were
  not available here at 8.2 to read: the label says the run is unchecked.
* **anything else** (older than 7.2, 9.0 and later, or a version that cannot be
  read) — the recorded 7.2 comparison, unless ``LABKIT_QEMU_ANY_VERSION=1``
  asks for a live run (labelled the same way).  9.0 removed the AioContext
  lock that 8.2's ``replication_start``/``replication_stop`` still take, and
  moved block-copy's copy bitmap to the filter node (``block_copy_state_new``
  gained ``copy_bitmap_bs``): not read against the model.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

#: the QEMU (major, minor) the model was checked against
CHECKED: tuple[int, int] = (7, 2)
_CHECKED = f"{CHECKED[0]}.{CHECKED[1]}"
#: versions run live with a label: (major, minor) from .. to, inclusive
LABELLED: tuple[tuple[int, int], tuple[int, int]] = ((8, 0), (8, 2))
#: set to 1 to run any other QEMU live too (labelled)
ANY_VERSION_ENV = "LABKIT_QEMU_ANY_VERSION"

_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?")
_CACHE: dict[tuple[str, int], tuple[int, int, int] | None] = {}


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, micro) from ``qemu-system-x86_64 --version``'s first line, else None."""
    m = _VERSION.search(text)
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def qemu_version(qemu: str = "qemu-system-x86_64") -> tuple[int, int, int] | None:
    """The version of ``qemu`` as ``(major, minor, micro)``; None if missing or unreadable.

    Runs ``qemu --version`` once per binary (cached by path and modification time).
    """
    exe = shutil.which(qemu)
    if exe is None:
        return None
    try:
        key = (exe, os.stat(exe).st_mtime_ns)
    except OSError:
        return None
    if key not in _CACHE:
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        _CACHE[key] = parse_version(out)
    return _CACHE[key]


def format_version(version: tuple[int, int, int] | None) -> str:
    """``"QEMU 8.2.2"``, or ``"QEMU of an unknown version"``."""
    if version is None:
        return "QEMU of an unknown version"
    return "QEMU " + ".".join(map(str, version))


def version_reason(version: tuple[int, int, int] | None) -> str | None:
    """None if a comparison may run live on this version, else why the recorded one is shown.

    7.2.x and 8.0–8.2 run live (8.x labelled, see :func:`version_label`);
    another version runs live only with ``LABKIT_QEMU_ANY_VERSION=1``.
    """
    if version is not None and (version[:2] == CHECKED
                                or LABELLED[0] <= version[:2] <= LABELLED[1]):
        return None
    if os.environ.get(ANY_VERSION_ENV) == "1":
        return None
    return (f"{format_version(version)} is not one the model was checked against "
            f"({_CHECKED}; 8.0-8.2 run labelled): the recorded {_CHECKED} comparison is shown "
            f"(set {ANY_VERSION_ENV}=1 to run it live, labelled)")


def version_label(version: tuple[int, int, int] | None) -> str:
    """What a live comparison says about its QEMU: the version, and whether it was checked."""
    name = format_version(version)
    if version is not None and version[:2] == CHECKED:
        return name
    return f"{name}; the model was checked against QEMU {_CHECKED}"


def label_of(version: str) -> str:
    """:func:`version_label` of a version string as QMP's greeting gives it (``"8.2.2"``),
    for a comparison's text: ``"QEMU 8.2.2; the model was checked against QEMU 7.2"``."""
    return version_label(parse_version(f"QEMU emulator version {version}"))


def qemu_label(qemu: str = "qemu-system-x86_64") -> str:
    """:func:`version_label` for the ``qemu`` on this machine."""
    return version_label(qemu_version(qemu))


__all__ = ["ANY_VERSION_ENV", "CHECKED", "LABELLED", "format_version", "label_of",
           "parse_version", "qemu_label", "qemu_version", "version_label", "version_reason"]
