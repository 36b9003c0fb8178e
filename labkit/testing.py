"""Public test helpers: run a coroutine to completion, snapshot state, index fills.

Used by labkit's own tests and meant for trainers who write exercises.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from .block import BlockNode
from .kernel import Kernel, Policy
from .lab import index_fill as index_pattern

__all__ = ["index_pattern", "need", "run", "snapshot"]


def run(coro: Coroutine[Any, Any, Any], name: str = "test#1",
        policy: Policy | None = None) -> Any:
    """Run one coroutine as a task of a fresh kernel; return its result or raise its error."""
    kernel = Kernel(policy)
    task = kernel.spawn(name, coro)
    kernel.run()
    if task.exception is not None:
        raise task.exception
    return task.result


def snapshot(*nodes: BlockNode) -> list[tuple[str, bytes, bytes, int, int]]:
    """Everything observable about nodes: contents, allocation, requests, children."""
    out = []
    for node in nodes:
        layer = node.layer()
        out.append((node.name, layer.data, layer.alloc.tobytes() + layer.zero.tobytes(),
                    len(node.tracked_requests),
                    hash(tuple((k, id(v)) for k, v in node.children.items()))))
    return out


def need(available: object, what: str, install: str = "") -> None:
    """Skip a test when ``what`` is missing — but fail under ``CI=true``.

    CI installs every tool the suite needs, so a missing one there is a broken
    CI script, not a reason to stop testing silently.
    """
    import os

    import pytest

    if available:
        return
    hint = f" (install: {install})" if install else ""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing and CI=true: .ci/run must install it{hint}")
    pytest.skip(f"{what} is missing{hint}")
