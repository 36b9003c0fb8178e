"""Public test helpers: run a coroutine to completion, snapshot state, index fills.

Used by labkit's own tests and meant for trainers who write exercises.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import psutil

from .block import BlockNode
from .kernel import Kernel, Policy
from .lab import index_fill as index_pattern

__all__ = ["CI_EXAMPLES", "ProcessInfo", "child_processes", "examples", "index_pattern", "need",
           "process_state", "run", "snapshot"]

#: ``max_examples`` of the "ci" hypothesis profile (tests/conftest.py): a property's
#: size is written for it and scales with the profile loaded.
CI_EXAMPLES = 100


def run(coro: Coroutine[Any, Any, Any], name: str = "test#1",
        policy: Policy | None = None) -> Any:
    """Run one coroutine as a task of a fresh kernel; return its result or raise its error."""
    kernel = Kernel(policy)
    task = kernel.spawn(name, coro)
    kernel.run()
    if task.exception is not None:
        raise task.exception
    return task.result


def examples(at_ci: int) -> int:
    """A property's ``max_examples``: ``at_ci`` under the "ci" hypothesis profile, scaled
    by the loaded profile (``pytest --hypothesis-profile=thorough`` runs ~67× more)."""
    from hypothesis import settings  # a test dependency: imported only by tests

    loaded = settings()  # the loaded profile's values
    return max(1, at_ci * loaded.max_examples // CI_EXAMPLES)


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
    import pytest

    if available:
        return
    hint = f" (install: {install})" if install else ""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing and CI=true: .ci/run must install it{hint}")
    pytest.skip(f"{what} is missing{hint}")


@dataclass(frozen=True)
class ProcessInfo:
    """One process: its pid, name, state letter (as ``ps`` shows it) and command line."""

    pid: int
    name: str
    state: str  # "R", "S", ... "Z" for a zombie
    cmdline: bytes  # the arguments, NUL-separated (empty for a zombie)


# psutil's status names → the state letters of ps(1) / /proc/PID/stat
_STATE_LETTERS = {psutil.STATUS_RUNNING: "R", psutil.STATUS_SLEEPING: "S",
                  psutil.STATUS_DISK_SLEEP: "D", psutil.STATUS_STOPPED: "T",
                  psutil.STATUS_TRACING_STOP: "t", psutil.STATUS_ZOMBIE: "Z",
                  psutil.STATUS_DEAD: "X", psutil.STATUS_IDLE: "I"}


def process_state(pid: int) -> str | None:
    """The process's state letter (``"Z"``: a zombie), or None when it is gone."""
    try:
        return _STATE_LETTERS.get(psutil.Process(pid).status(), "?")
    except psutil.NoSuchProcess:
        return None


def child_processes(ppid: int, prefix: str = "qemu-system") -> list[ProcessInfo]:
    """The processes whose parent is ``ppid`` and whose name starts with ``prefix``.

    Zombies are included (``state == "Z"``); the callers decide.  The test suite
    uses it to check that no QEMU outlives labkit.
    """
    try:
        children = psutil.Process(ppid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            with child.oneshot():
                name, status = child.name(), child.status()
                if not name.startswith(prefix):
                    continue
                try:
                    cmdline = os.fsencode("\0".join(child.cmdline()))
                except psutil.ZombieProcess:
                    cmdline = b""
        except psutil.NoSuchProcess:
            continue  # gone meanwhile
        out.append(ProcessInfo(child.pid, name, _STATE_LETTERS.get(status, "?"), cmdline))
    return sorted(out, key=lambda p: p.pid)
