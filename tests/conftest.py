"""Suite-wide set-up: markers by module, and no real QEMU or temp directory outliving the run.

Markers (registered in ``pyproject.toml``, ``--strict-markers``): every test
of a module is marked by the module's name, so test files need no edits —
``test_qemu_*`` → ``qemu``, ``test_browser`` → ``browser``, ``test_binder`` →
``slow`` and ``network``, ``test_notebooks`` and the nbval notebook cells →
``slow``.  ``make check`` runs ``-m "not qemu and not browser and not slow"``.

Processes: ``make test`` and ``make check`` run the tests in two processes
(pytest-xdist, ``-n 2 --dist loadgroup``).  A test that uses one of the
:data:`SHARED_FIXTURES` (the executed notebooks, the race comparisons) gets an
``xdist_group`` marker named after it, so that every test sharing what it
computes runs in the process that computed it — once.

Hypothesis: every property's settings come from one profile.  "ci" (loaded
here: derandomized, no example database, no deadline — the same examples on
every run) or "thorough" (``pytest --hypothesis-profile=thorough``: random,
~67× the examples, for a long run by hand).  A property sizes itself with
:func:`labkit.testing.examples` (its ``max_examples`` under "ci").

The real-QEMU backend (``labkit.qemu``) records every QEMU it launches and
its private directory (:func:`labkit.qemu.leftover_sessions`).  At the end of
the session, every one of them must be gone.  Only what *this* test process
started is checked — its own sessions, and ``qemu-system-*`` processes whose
parent is this process — so other users' (or other test runs') QEMUs on the
machine never make it fail.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from labkit.testing import CI_EXAMPLES, child_processes, need

settings.register_profile(
    "ci", max_examples=CI_EXAMPLES, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", settings.get_profile("ci"), max_examples=6_667,
                          derandomize=False)
settings.load_profile("ci")  # pytest --hypothesis-profile=thorough loads the other after

#: module name (prefix) → markers its tests get
MODULE_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("test_qemu_", ("qemu",)),
    ("test_browser", ("browser",)),
    ("test_binder", ("slow", "network")),
    ("test_notebooks", ("slow",)),
)


def markers_for(path: Path) -> tuple[str, ...]:
    """The markers a test file's tests get from its name (notebooks: ``slow``)."""
    if path.suffix == ".ipynb":
        return ("slow",)
    for prefix, marks in MODULE_MARKERS:
        if path.stem.startswith(prefix):
            return marks
    return ()


#: The module- and session-scoped fixtures whose value several tests read (a notebook
#: executed once, a race comparison made once, an exploration): under pytest-xdist the
#: tests using one of them run in one process, which computes it once.  A fixture left
#: out here is still correct, only computed again in each process that needs it.
SHARED_FIXTURES = ("executed", "compared", "canonical_none")


def shared_fixture(item: pytest.Item) -> str | None:
    """The first of :data:`SHARED_FIXTURES` that ``item`` uses (its xdist group)."""
    names = getattr(item, "fixturenames", ())  # a test function's, with their dependencies
    return next((name for name in SHARED_FIXTURES if name in names), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in markers_for(Path(str(item.path))):
            item.add_marker(getattr(pytest.mark, mark))
        # pytest-xdist (`make test`: -n 2 --dist loadgroup) runs a group in one process
        if (shared := shared_fixture(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(shared))


@pytest.fixture
def lab_builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The positional arguments of every :class:`labkit.Lab` built while the test runs
    (``Lab.__init__`` wrapped): how a test shows that checking a configuration builds none."""
    import labkit

    built: list[tuple] = []
    real = labkit.Lab.__init__

    def counting(self: labkit.Lab, *args: Any, **kwargs: Any) -> None:
        built.append(args)
        real(self, *args, **kwargs)

    monkeypatch.setattr(labkit.Lab, "__init__", counting)
    return built


@pytest.fixture
def qemu() -> None:
    """Skip a test without a QEMU 7.2 that has block replication (fail under CI=true)."""
    from labkit.qemu import qemu_available

    reason = qemu_available()
    need(reason is None, f"QEMU 7.2 with block replication ({reason})",
         "apt-get install qemu-system-x86 qemu-utils")


def _qemu_children() -> list[str]:
    """Running ``qemu-system-*`` processes whose parent is this process (Linux /proc)."""
    return [f"QEMU pid {p.pid} (a child of this test process) is still running"
            for p in child_processes(os.getpid()) if p.state != "Z"]


def _leftovers() -> list[str]:
    found: list[str] = []
    if "labkit.qemu" in sys.modules:
        found += sys.modules["labkit.qemu"].leftover_sessions()
    if Path("/proc/self").exists():
        found += _qemu_children()
    return found


DOCS = Path(__file__).resolve().parent.parent / "docs"


def _docs_state() -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(DOCS)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(DOCS.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def docs_untouched() -> Iterator[None]:
    """No test writes into the tracked ``docs/``: tests write into ``artifacts/`` (the
    browser test's screenshots reach ``docs/`` through ``make screenshots``)."""
    before = _docs_state() if DOCS.is_dir() else {}
    yield
    after = _docs_state() if DOCS.is_dir() else {}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the test run wrote into docs/: {', '.join(changed)}"


@pytest.fixture(scope="session", autouse=True)
def no_qemu_left_behind() -> Iterator[None]:
    """At the end of the run, assert that no QEMU or labkit temp directory survives."""
    yield
    gc.collect()  # sessions only referenced by garbage close in their finalizer
    left = _leftovers()
    deadline = time.monotonic() + 2.0
    while left and time.monotonic() < deadline:  # a just-killed QEMU may need a moment
        time.sleep(0.05)
        left = _leftovers()
    assert not left, "the test run left real-QEMU resources behind:\n" + "\n".join(left)
