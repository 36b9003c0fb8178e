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

import numpy as np
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
def expectation(draw: st.DrawFn) -> str:
    layer = draw(st.sampled_from(["secondary", "hidden", "active", "vm-view"]))
    offset = draw(offsets)
    length = min(draw(lengths), SIZE - offset)
    what = draw(st.one_of(st.sampled_from(["alloc", "unalloc", "zero", "orig"]),
                          byte_values.map(lambda b: f"{b:#04x}")))
    return f"expect {layer} {offset} {length} {what}"


@st.composite
def scenario(draw: st.DrawFn) -> str:
    lines = ["start"] if draw(st.booleans()) or draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["one", "par", "par", "dump", "expect"]))
        if kind == "one":
            lines.append(draw(command))
        elif kind == "dump":
            lines.append("dump")
        elif kind == "expect":
            lines.append(draw(expectation()))
        else:
            lines.append("par { " + "; ".join(draw(st.lists(command, min_size=2, max_size=4)))
                         + " }")
    lines.append(f"vread 0 {SIZE}")
    lines.append("dump")  # checked against layers computed from scratch at the end
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
    _check_dumps(lab)


def _check_dumps(lab: lk.Lab) -> None:
    """Every dump reads alike whole and by range, and the last one (copy-on-write
    snapshots shared with the disks) equals the layers computed from scratch now."""
    for _, layers in lab.dumps:
        for layer in layers.values():
            if layer is not None:
                data = layer.data
                assert layer.read(4096, 8192) == data[4096:12288]
                assert layer == lk.Layer(data, layer.alloc, layer.zero)
    lab.drop_layer_caches()
    fresh = lab.layers()
    for name, layer in lab.dumps[-1][1].items():
        now = fresh[name]
        assert (layer is None) == (now is None), name
        if layer is not None and now is not None:
            assert layer == now and layer.data == now.data, name
            assert np.array_equal(layer.zero, now.zero), name


@settings(max_examples=examples(60))
@given(calls=st.lists(st.tuples(
    st.sampled_from(["vm_read", "vm_write", "primary_write"]),
    st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                     np.uint64, int]),
    st.integers(-(1 << 33), 1 << 33) | st.sampled_from([0, 4096, SIZE - 4096, 0xFFFFFE00]),
    st.integers(-512, 1 << 33) | st.sampled_from([512, 4096, 0x400]),
    st.integers(-1, 300)), min_size=1, max_size=6))
def test_numpy_typed_api_calls_are_checked_as_python_integers(calls):
    """Numpy integers of every width (wrapping included) reach the checks as the Python
    integers they hold: refused with a labkit error and nothing changed, or run with
    plain integers in the trace."""
    lab = lk.build_secondary(size=SIZE)
    lab.start()
    for op, dtype, offset, length, byte in calls:
        try:
            args = [dtype(offset), dtype(length)] + ([] if op == "vm_read" else [dtype(byte)])
        except OverflowError:  # numpy refuses to build a value its type cannot hold
            continue
        note(f"{op}{tuple(args)!r}")
        before = (len(lab.kernel.tasks), len(lab.trace))
        held = [int(a) for a in args]
        ok = (0 <= held[0] and 0 < held[1] and held[0] + held[1] <= SIZE
              and held[0] % 512 == 0 and held[1] % 512 == 0
              and (op == "vm_read" or 0 <= held[2] <= 255))
        try:
            getattr(lab, op)(*args)
        except LabkitError:
            assert not ok and (len(lab.kernel.tasks), len(lab.trace)) == before
            continue
        assert ok, f"accepted {op}{tuple(held)}"
        lab.run()
    for event in lab.trace:
        # plain Python values: int or str (the kernel's StrEnums are str), never numpy
        assert all(type(v) is int or isinstance(v, str) for v in event.as_dict().values()), event


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
