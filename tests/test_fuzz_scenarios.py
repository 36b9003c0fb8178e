"""A grammar-based fuzzer: random scenarios, control commands inside and outside ``par``.

Every generated scenario — any mix of ``start``, ``checkpoint``, ``failover``,
``stop`` and I/O, sequential or in ``par`` blocks, under every read design and
every era, with a random interleaving — must end as QEMU would: a clean run or
a labkit error (a :class:`~labkit.errors.LabkitError`), never an internal
exception, never a deadlock.  And the oracle must never blame a checkpoint or
a failover that overlapped I/O: COLO never lets them overlap (facts §2.7,
§2.9), labkit runs them as drained sections, so the only violations left are
the races QEMU really has — the conflicting read of design ``"none"`` and the
partial-cluster VM write of design ``"2.8"`` (facts §9.3 (a)).

CI runs a few hundred examples, derandomized (the same ones every time: the
"ci" hypothesis profile of ``tests/conftest.py``); ``pytest
--hypothesis-profile=thorough tests/test_fuzz_scenarios.py`` runs ~20,000, by hand.
Whether the partial-order reduction loses an outcome (also with the forced
steps of the wake rule) is one property, in ``tests/test_properties.py``.
"""

from __future__ import annotations

from hypothesis import given, note, settings
from hypothesis import strategies as st

import labkit as lk
from labkit.errors import Deadlock, LabkitError
from labkit.testing import examples

SIZE = 128 * 1024
BLOCK = 4096
CONTROL = ("start", "checkpoint", "failover", "stop")

offsets = st.sampled_from([0, 512, 4096, 5 * BLOCK, 6 * BLOCK, 16 * BLOCK, 17 * BLOCK,
                           SIZE - BLOCK])
lengths = st.sampled_from([512, 2048, BLOCK, 2 * BLOCK])
byte_values = st.integers(0x80, 0xff)


@st.composite
def io_command(draw: st.DrawFn) -> str:
    op = draw(st.sampled_from(["pwrite", "vwrite", "vread"]))
    offset = draw(offsets)
    length = min(draw(lengths), SIZE - offset)
    if op == "vread":
        return f"vread {offset} {length}"
    return f"{op} {offset} {length} {draw(byte_values):#04x}"


command = st.one_of(io_command(), io_command(), st.sampled_from(CONTROL))


@st.composite
def scenario(draw: st.DrawFn) -> str:
    lines = ["start"] if draw(st.booleans()) or draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["one", "par", "par", "dump"]))
        if kind == "one":
            lines.append(draw(command))
        elif kind == "dump":
            lines.append("dump")
        else:
            lines.append("par { " + "; ".join(draw(st.lists(command, min_size=2, max_size=4)))
                         + " }")
    lines.append(f"vread 0 {SIZE}")
    return "\n".join(lines)


def _real_races(text: str, design: str) -> bool:
    """Could a violation be one of QEMU's real races (not an overlap with control)?"""
    if design == "none":
        return True  # the unprotected read: the conflicting read is reachable
    if design == "2.8":
        return "vwrite" in text  # facts §9.3 (a): qcow2's COW read in a VM write
    return False


@settings(max_examples=examples(300))
@given(text=scenario(), design=st.sampled_from(["none", "2.8", "4.0"]),
       era=st.sampled_from(["2.8", "7.2"]), active_cluster=st.sampled_from(["4K", "64K"]),
       seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_random_scenarios_end_as_qemu_would(text, design, era, active_cluster, seed):
    note(f"design={design} era={era} active_cluster={active_cluster} seed={seed}\n{text}")
    policy = "fifo" if seed is None else lk.Random(seed)
    try:
        lab = lk.run_scenario(text, size=SIZE, design=design, era=era,
                              active_cluster=active_cluster, policy=policy)
    except Deadlock as exc:  # a labkit error, but a drained section must never cause one
        raise AssertionError(f"deadlock: {exc}") from exc
    except LabkitError:
        return  # refused or failed as QEMU would (a labkit error names why)
    for task in lab.kernel.tasks.values():
        assert task.done, f"{task.name} did not finish: {task!r}"
        if task.exception is not None:
            assert isinstance(task.exception, LabkitError), repr(task.exception)
    if not _real_races(text, design):
        assert not lab.violations(), "\n".join(map(str, lab.violations()))
    stuck = [n for n in lab.graph.nodes.values() if n.quiesce_counter or n.tracked_requests]
    assert not stuck, f"drained or busy after the run: {stuck}"
    assert not lab.monitor.locked


@settings(max_examples=examples(20))
@given(commands=st.lists(st.one_of(io_command(), st.sampled_from(CONTROL)), min_size=2,
                         max_size=3),
       design=st.sampled_from(["none", "2.8", "4.0"]), era=st.sampled_from(["2.8", "7.2"]))
def test_every_interleaving_of_control_and_io_in_par(commands, design, era):
    """Small ``par`` blocks, every interleaving (naive exploration): no internal error."""
    text = "start\npar { " + "; ".join(commands) + " }\n" + f"vread 0 {SIZE}"
    note(f"design={design} era={era}\n{text}")
    result = lk.explore(text, size=SIZE, design=design, era=era, reduction="none",
                        max_runs=400, shrink=False)
    if not _real_races(text, design):
        assert result.verdict != "violation", result.summary()
