"""Property-based tests (hypothesis) of the read designs against the oracle.

* Sequential scenarios (no ``par``) have one interleaving: no design may ever
  break the oracle there.
* ``par`` scenarios, explored completely: designs "2.8" and "4.0" never break
  the oracle unless the scenario contains the facts 9.3 (a) pattern — a VM
  write that covers only part of an active-disk cluster (so qcow2 reads the
  rest from the backing chain, outside any CowRequest) concurrent with a
  primary write.
* The partial-order reduction loses nothing: the reduced explorations reach
  exactly the set of final states (layers, read results, violations) that the
  naive one reaches.

Examples are whole scenario programs: when hypothesis finds a failure it
prints the (shrunk) program as scenario text, ready for ``labkit explore``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

import labkit as lk
from labkit.scenario import Command, Par, parse

SIZE = 64 * 1024  # 16 blocks of 4 KiB: one 64 KiB backup cluster, every request collides
SECTORS = SIZE // 512
ACTIVE_CLUSTER = 4096
CONFIG = {"size": "64K"}

PROPERTY_SETTINGS = settings(max_examples=20, deadline=None, database=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Program:
    """A generated scenario; hypothesis prints it as its scenario text."""

    text: str

    def __repr__(self) -> str:
        body = "".join(f"    {line}\n" for line in self.text.splitlines())
        return f"Program('''\n{body}''')"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))


@st.composite
def io_command(draw, ops: tuple[str, ...] = ("vread", "pwrite", "vwrite"), *,
               byte: int = 0x80) -> str:
    op = draw(st.sampled_from(ops))
    aligned = draw(st.booleans())
    if aligned:  # whole 4 KiB blocks: the common case
        start = draw(st.integers(0, 15))
        count = draw(st.integers(1, min(3, 16 - start)))
        rng = f"{start}b {count * 4}K"
    else:  # 512-byte sectors: partial blocks and partial active clusters
        start = draw(st.integers(0, SECTORS - 1))
        count = draw(st.integers(1, min(12, SECTORS - start)))
        rng = f"{start}s {count}s"
    return f"{op} {rng}" + ("" if op == "vread" else f" {byte:#04x}")


@st.composite
def sequential_program(draw) -> Program:
    lines = ["start"]
    for i in range(draw(st.integers(1, 7))):
        if draw(st.integers(0, 5)) == 0:
            lines.append("checkpoint")
        else:
            lines.append(draw(io_command(byte=0x80 + i)))
    if draw(st.booleans()):
        lines.append("failover")
        for i in range(draw(st.integers(0, 2))):
            lines.append(draw(io_command(byte=0xE0 + i)))
    lines.append("vread 0 64K")
    return Program("\n".join(lines) + "\n")


@st.composite
def par_program(draw) -> Program:
    lines = ["start"]
    for i in range(draw(st.integers(0, 2))):  # some history before the race
        if draw(st.integers(0, 3)) == 0:
            lines.append("checkpoint")
        else:
            lines.append(draw(io_command(("pwrite", "vwrite"), byte=0x80 + i)))
    n = draw(st.integers(2, 3))
    inner = [draw(io_command(byte=0xA0 + i)) for i in range(n)]
    lines.append("par { " + "; ".join(inner) + " }")
    lines.append("vread 0 64K")  # reads whatever active may have captured
    return Program("\n".join(lines) + "\n")


def has_9_3a_pattern(text: str) -> bool:
    """A par block with a VM write that is not active-cluster aligned and a primary write."""
    for step in parse(text, size=SIZE).steps:
        if not isinstance(step, Par):
            continue
        ops = [c.op for c in step.commands]
        partial = any(_partial_cluster(c) for c in step.commands if c.op == "vwrite")
        if partial and "pwrite" in ops:
            return True
    return False


def _partial_cluster(c: Command) -> bool:
    return c.offset % ACTIVE_CLUSTER != 0 or (c.offset + c.length) % ACTIVE_CLUSTER != 0


@PROPERTY_SETTINGS
@given(sequential_program())
def test_sequential_scenarios_never_violate_in_any_design(program: Program) -> None:
    for design in ("none", "2.8", "4.0"):
        lab = lk.run_scenario(program.text, design=design, **CONFIG)
        assert lab.violations() == [], (design, [v.message for v in lab.violations()])
        assert lab.schedule == lk.replay(program.text, lab.schedule, design=design,
                                         **CONFIG).schedule


@settings(PROPERTY_SETTINGS, max_examples=5)
@given(sequential_program())
def test_a_sequential_scenario_has_exactly_one_interleaving(program: Program) -> None:
    ex = lk.explore(program.text, design="none", **CONFIG)
    assert ex.complete and ex.runs == 1 and ex.verdict == "safe"


@PROPERTY_SETTINGS
@given(par_program())
def test_par_scenarios_are_safe_in_2_8_and_4_0_unless_9_3a(program: Program) -> None:
    pattern = has_9_3a_pattern(program.text)
    note(f"9.3 (a) pattern: {pattern}")
    for design in ("2.8", "4.0"):
        ex = lk.explore(program.text, design=design, max_runs=3000, shrink=False, **CONFIG)
        assume(ex.complete or ex.violations)
        if ex.violations:
            note(f"design {design}: {ex.violations[0].message}")
            note(f"schedule: {ex.violations[0].schedule_text}")
        assert ex.verdict == "safe" or pattern, (design, ex.summary())


@settings(PROPERTY_SETTINGS, max_examples=6)
@given(par_program(), st.sampled_from(["none", "2.8", "4.0"]))
@pytest.mark.parametrize("era", ["2.8", "7.2"])
def test_the_reduction_loses_no_outcome(era: str, program: Program, design: str) -> None:
    """DPOR and sleep sets reach exactly the final states the naive exploration reaches
    (era 7.2: the copy-before-write filter's block-copy declares its accesses too)."""
    naive = lk.explore(program.text, design=design, era=era, reduction="none", max_runs=1500,
                       shrink=False, outcomes=True, **CONFIG)
    assume(naive.complete)
    for reduction in ("dpor", "sleep"):
        ex = lk.explore(program.text, design=design, era=era, reduction=reduction,
                        shrink=False, outcomes=True, **CONFIG)
        assert ex.complete and ex.runs <= naive.runs
        assert ex.outcomes == naive.outcomes and ex.verdict == naive.verdict, reduction


def test_the_9_3a_example_is_recognised() -> None:
    assert has_9_3a_pattern("start\npar { vwrite 1s 1s 0x80; pwrite 0 4K 0x81 }\n")
    assert not has_9_3a_pattern("start\npar { vwrite 0 4K 0x80; pwrite 0 4K 0x81 }\n")
    assert not has_9_3a_pattern("start\npar { vwrite 1s 1s 0x80; vread 0 4K }\n")
    assert not has_9_3a_pattern("start\nvwrite 1s 1s 0x80\npar { pwrite 0 4K 0x81 }\n")


def test_a_failing_example_prints_as_scenario_text() -> None:
    shown = repr(Program("start\npar { vread 0b 4K; pwrite 0b 4K 0x80 }\n"))
    assert shown == "Program('''\n    start\n    par { vread 0b 4K; pwrite 0b 4K 0x80 }\n''')"


@st.composite
def observed_program(draw) -> Program:
    """A 2-3 task race with everything a user can observe around it: dumps, expectations."""
    base = draw(par_program()).text.splitlines()
    par_at = next(i for i, line in enumerate(base) if line.startswith("par"))
    lines = [*base[:par_at], "dump before", base[par_at], "dump after"]
    if draw(st.booleans()):
        lines.append(f"expect {draw(st.sampled_from(['secondary', 'hidden', 'active']))} "
                     f"0 4K {draw(st.sampled_from(['orig', 'alloc', 'unalloc', '0xa0']))}")
    lines += base[par_at + 1:]
    return Program("\n".join(lines) + "\n")


@settings(PROPERTY_SETTINGS, max_examples=8)
@given(observed_program(), st.sampled_from(["none", "2.8", "4.0"]))
@pytest.mark.parametrize("era", ["2.8", "7.2"])
def test_reduced_and_naive_exploration_agree_through_the_public_api(era: str, program: Program,
                                                                     design: str) -> None:
    """Same verdict, same set of outcome digests (each run's every observable), via keep_runs."""
    naive = lk.explore(program.text, design=design, era=era, reduction="none", max_runs=1500,
                       shrink=False, keep_runs=True, **CONFIG)
    assume(naive.complete)
    reduced = lk.explore(program.text, design=design, era=era, shrink=False, keep_runs=True,
                         **CONFIG)
    assert reduced.complete and reduced.verdict == naive.verdict
    assert naive.runs_detail is not None and reduced.runs_detail is not None
    naive_digests = {r.digest for r in naive.runs_detail}
    assert {r.digest for r in reduced.runs_detail} == naive_digests == naive.outcomes
    assert len(reduced.runs_detail) <= len(naive.runs_detail)
