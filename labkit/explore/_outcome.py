"""The outcome of one run: a digest of everything the run lets a user observe.

Two runs with the same digest look the same to anyone using labkit: every
task's end (its state, the bytes a read returned, the message of an error),
every ``dump`` of the layers (not only the final one) with its title, the
final layers with their allocation and zero-cluster maps, the expectation
failures, the lab's log, the replication stage, the oracle's violations in
the order they were found, and a deadlock.  The explorer compares the set of
digests of a reduced exploration with the naive one's: a reduction is sound
only if it reaches every outcome.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..layers import Layer


def _layer(h: Any, name: str, layer: Layer | None) -> None:
    h.update(name.encode() + b"\0")
    if layer is None:
        h.update(b"-")
        return
    h.update(layer.data)
    h.update(layer.alloc.tobytes())
    if layer.zero is not None:
        h.update(layer.zero.tobytes())


def _text(h: Any, *parts: object) -> None:
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\0")


def outcome_digest(lab: Any, deadlock: BaseException | None = None) -> str:
    """The SHA-256 of a run's observable outcome (see the module docstring)."""
    h = hashlib.sha256()
    for name, task in sorted(lab.kernel.tasks.items()):
        _text(h, "task", name, task.state)
        if task.exception is not None:
            _text(h, type(task.exception).__name__, task.exception)
        elif task.done:
            value = task.result
            h.update(value if isinstance(value, bytes) else repr(value).encode())
    for title, layers in lab.dumps:
        _text(h, "dump", title)
        for name, layer in layers.items():
            _layer(h, name, layer)
    _text(h, "final")
    for name, layer in lab.layers().items():
        _layer(h, name, layer)
    _text(h, "expect", *lab.expectation_failures)
    _text(h, "log", *lab.log)
    _text(h, "stage", lab.state)
    for v in lab.violations():
        _text(h, "violation", v.kind, v.task, v.offset, v.expected, v.got, v.message)
    if deadlock is not None:
        _text(h, "deadlock", deadlock)
    return h.hexdigest()
