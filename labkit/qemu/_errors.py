"""Exceptions of the real-QEMU backend (defined in :mod:`labkit.errors`).

:class:`BackendError` is the base of everything this package raises.  It is a
:class:`labkit.errors.LabkitError`, so ``except LabkitError`` catches the
real-QEMU backend's errors too; it adds no attributes of its own.
"""

from __future__ import annotations

from labkit.errors import (
    DEBIAN_PACKAGES,
    BackendError,
    NbdDisconnected,
    NbdError,
    QemuError,
    QemuNotAvailable,
    QemuTimeout,
    ScratchDirError,
)

__all__ = ["DEBIAN_PACKAGES", "BackendError", "NbdDisconnected", "NbdError", "QemuError",
           "QemuNotAvailable", "QemuTimeout", "ScratchDirError"]
