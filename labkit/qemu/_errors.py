"""Exceptions of the real-QEMU backend.

:class:`BackendError` is the base of everything this package raises.  It is a
:class:`labkit.errors.LabkitError`, so ``except LabkitError`` catches the
real-QEMU backend's errors too; it adds no attributes of its own.
"""

from __future__ import annotations

from labkit.errors import LabkitError

DEBIAN_PACKAGES = "qemu-system-x86 and qemu-utils"


class BackendError(LabkitError):
    """Base class of the real-QEMU backend's errors."""


class QemuNotAvailable(BackendError):
    """No usable QEMU: the binary is missing or lacks block replication."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"{reason}. The real-QEMU backend needs qemu-system-x86_64 with the "
            f"'replication' block driver and the QMP command xen-set-replication, "
            f"plus qemu-img: install the Debian packages {DEBIAN_PACKAGES} "
            f"(apt-get install qemu-system-x86 qemu-utils; on Binder, list them "
            f"in binder/apt.txt)."
        )


class QemuError(BackendError):
    """QEMU refused a command, died, or did not answer in time.

    ``desc`` is QMP's error description when QEMU answered with an error,
    else None; ``command`` is the QMP command (or operation) that failed;
    ``log_tail`` holds the last lines of QEMU's log (stdout and stderr); the
    message ends with them.
    """

    def __init__(
        self,
        message: str,
        *,
        desc: str | None = None,
        command: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        self.desc = desc
        self.command = command
        self.log_tail = log_tail or ""
        text = message
        if log_tail is not None:
            if log_tail.strip():
                text += "\n--- last lines of qemu.log ---\n" + log_tail.rstrip("\n")
            elif desc is None:
                text += "\n--- qemu.log is empty ---"
        super().__init__(text)
