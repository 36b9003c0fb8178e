"""Can this QEMU run the secondary?  One probe per binary, its answer cached.

:func:`qemu_available` runs the binary once with ``-machine none -qmp stdio``
and asks QMP for ``query-commands`` (is ``xen-set-replication`` there: QEMU
built with ``CONFIG_REPLICATION``) and ``query-qmp-schema`` (does the
``BlockdevDriver`` enum list ``replication``), then checks the version rule of
:mod:`labkit.qemu._version`.  The probe's QEMU is within the session cleanup's
reach (:mod:`labkit.qemu._cleanup`) like a session's.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess

from labkit.qemu import _cleanup
from labkit.qemu._images import find_qemu_img
from labkit.qemu._process import QUIET_MACHINE
from labkit.qemu._version import qemu_version, version_reason

#: The binaries whose probe succeeded (a failure is not cached: QEMU may be installed later).
_USABLE: set[str] = set()


class _ProbeProcess:
    """The probe's QEMU as an open session of :mod:`labkit.qemu._cleanup`: SIGTERM,
    SIGHUP or SIGINT kill it first, and it is launched with the death signal."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def close(self, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)


def _probe(qemu: str, timeout: float = 30.0) -> str | None:
    """Why ``qemu`` cannot run the secondary (None: it can), asked within ``timeout`` s."""
    exe = shutil.which(qemu)
    if exe is None:
        return f"QEMU binary {qemu!r} not found"
    if find_qemu_img(qemu) is None:
        return "qemu-img not found"
    cmds = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-commands"},
        {"execute": "query-qmp-schema"},
        {"execute": "quit"},
    ]
    try:
        proc = _cleanup.launch([exe, *QUIET_MACHINE, "-qmp", "stdio"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"{exe} could not be run: {exc}"
    res = _ProbeProcess(proc)
    _cleanup.session_opened(res)  # within the cleanup's reach until it is reaped
    try:
        out, err = proc.communicate("".join(json.dumps(c) + "\n" for c in cmds).encode(),
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"{exe} did not answer the QMP probe within {timeout:g} s (--timeout)"
    finally:
        res.close(kill=True)
        _cleanup.session_closed(res)
    # QEMU's output as text whatever bytes it printed (a binary may print anything)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    has_cmd = has_driver = False
    for line in stdout.splitlines():
        try:
            ret = json.loads(line).get("return")
        except (ValueError, AttributeError):
            continue
        if not isinstance(ret, list):
            continue
        for item in ret:
            if not isinstance(item, dict):
                continue
            if item.get("name") == "xen-set-replication":
                has_cmd = True
            values = item.get("values") or []
            if item.get("meta-type") == "enum" and "qcow2" in values and "replication" in values:
                has_driver = True
    if not has_cmd:
        tail = stderr.strip().splitlines()[-3:]
        return f"{exe} has no QMP command xen-set-replication" + (
            f" ({' '.join(tail)})" if tail else ""
        )
    if not has_driver:
        return f"{exe} has no 'replication' block driver"
    return None


def qemu_available(qemu: str = "qemu-system-x86_64", timeout: float = 30.0) -> str | None:
    """None if ``qemu`` can run the replication secondary, else the reason.

    A QEMU whose version the model was not checked against (see
    :mod:`labkit.qemu._version`: 7.2, and 8.0-8.2 labelled) is not usable
    either, unless ``LABKIT_QEMU_ANY_VERSION=1``.

    Runs the binary once (``-machine none -qmp stdio``) to check for the QMP
    command ``xen-set-replication`` and the ``replication`` block driver
    (about 0.1 s), for at most ``timeout`` seconds; a positive answer is cached per
    binary.  The probe's QEMU is within the session cleanup's reach (signals, the
    death signal), like a session's.
    """
    exe = shutil.which(qemu)
    if exe is not None and exe in _USABLE:
        return version_reason(qemu_version(qemu))
    reason = _probe(qemu, timeout)
    if reason is not None and exe is not None and "has no" in reason:
        reason = _probe(qemu, timeout)  # once more: a loaded machine was seen to cut the answer
    if reason is None and exe is not None:
        _USABLE.add(exe)  # only success is cached: a missing QEMU may be installed later
        # a QEMU the model was not checked against: the recorded comparison (_version.py)
        reason = version_reason(qemu_version(qemu))
    return reason


__all__ = ["qemu_available"]
