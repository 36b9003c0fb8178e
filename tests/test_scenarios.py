"""The shipped scenarios: their header convention, their documented verdicts, determinism."""

from __future__ import annotations

import pytest

import labkit as lk
from labkit import scenarios
from labkit.explore import explore, replay

DESIGNS = ("none", "2.8", "4.0")
# COLO's scenarios; image fleecing's (graph=fleecing) are checked in test_fleecing.py
NAMES = [n for n in scenarios.names()
         if scenarios.config(scenarios.load(n)).get("graph") != "fleecing"]
REQUIRED = ("canonical", "canonical3", "canonical4", "partial-overlap", "straddle", "checkpoint",
            "partial-cluster-vm-write")

#: Verdicts kept out of a scenario's file because they answer an exercise a trainee may
#: open the file for (5.2: the partial-cluster hazard); checked here like the others.
KEPT_OUT = {"partial-cluster-vm-write": {"none": "violation", "2.8": "violation", "4.0": "safe"}}

_cache: dict[tuple[str, str], lk.Exploration] = {}


def documented(name: str) -> dict[str, str]:
    """A shipped scenario's documented verdicts: its ``# verdict:`` lines, or KEPT_OUT's."""
    return KEPT_OUT.get(name) or scenarios.verdicts(scenarios.load(name))


def explored(name: str, design: str) -> lk.Exploration:
    """Each (scenario, design) is explored once per test session."""
    key = (name, design)
    if key not in _cache:
        _cache[key] = explore(scenarios.load(name), design=design)
    return _cache[key]


# --- the package helper ----------------------------------------------------------------------


def test_the_required_scenarios_are_shipped() -> None:
    for name in REQUIRED:
        assert name in NAMES
    assert NAMES == sorted(NAMES)


def test_load_accepts_the_name_with_or_without_suffix() -> None:
    assert scenarios.load("canonical") == scenarios.load("canonical.scn")
    assert "par {" in scenarios.load("canonical")


def test_load_rejects_an_unknown_name_listing_the_available_ones() -> None:
    with pytest.raises(KeyError, match="no shipped scenario named 'nope'.*canonical"):
        scenarios.load("nope")
    with pytest.raises(TypeError, match="a scenario name is a string"):
        scenarios.load(3)  # type: ignore[arg-type]


def test_header_config_and_verdicts() -> None:
    text = scenarios.load("partial-cluster-vm-write")
    assert scenarios.config(text) == {"size": "128K", "active_cluster": "64K"}
    assert scenarios.verdicts(text) == {}  # kept out: exercise 5.2's answer (KEPT_OUT)
    text = scenarios.load("canonical")
    assert scenarios.verdicts(text) == {"none": "violation", "2.8": "safe", "4.0": "safe"}
    assert scenarios.config("start\n") == {} and scenarios.verdicts("start\n") == {}


def test_header_lines_only_count_before_the_first_command() -> None:
    text = "# config: size=128K\n# verdict: none=safe\nstart\n# config: block=8K\n"
    assert scenarios.config(text) == {"size": "128K"}
    text = "# a title\n\n# config: size=64K\n#   config:   block=8K  \nstart\n"
    assert scenarios.config(text) == {"size": "64K", "block": "8K"}


def test_header_fill_becomes_an_int() -> None:
    assert scenarios.config("# config: fill=0x00\n")["fill"] == 0
    assert scenarios.config("# config: fill=zero\n")["fill"] == "zero"
    with pytest.raises(lk.ConfigError, match="'# config: fill' must be 'index', 'zero' or a byte"):
        scenarios.config("# config: fill=x\n")


@pytest.mark.parametrize(("header", "message"), [
    ("# config: colour=blue", "unknown config key 'colour'; allowed: size, block"),
    ("# config: design=none", "unknown config key 'design'.*the design is chosen per run"),
    ("# config: size", "'size' in '# config:' is not KEY=VALUE"),
    ("# config: size=1M\n# config: size=2M", "'size' is given twice"),
    ("# verdict: 5.0=safe", "unknown design '5.0'"),
    ("# verdict: none=broken", "verdict 'broken' for design none is not one of safe, "
                               "violation, unknown"),
])
def test_header_errors_say_what_is_allowed(header: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenarios.config(header + "\nstart\n")
        scenarios.verdicts(header + "\nstart\n")


@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_documents_a_verdict_for_every_design(name: str) -> None:
    text = scenarios.load(name)
    assert set(documented(name)) == set(DESIGNS), name
    assert not (name in KEPT_OUT and scenarios.verdicts(text)), name
    lk.run_scenario(text, **scenarios.config(text))  # parses and runs (FIFO)


# --- the documented verdicts -------------------------------------------------------------


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("name", NAMES)
def test_exploration_gives_the_documented_verdict(name: str, design: str) -> None:
    ex = explored(name, design)
    want = documented(name)[design]
    assert ex.verdict == want, ex.summary()
    if want == "safe":
        assert ex.complete and not ex.violations
    else:
        assert ex.violations


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("name", NAMES)
def test_every_counterexample_replays_to_the_same_violation(name: str, design: str) -> None:
    text = scenarios.load(name)
    for cx in explored(name, design).violations:
        lab = replay(text, cx.schedule, design=design)
        assert cx.message in [v.message for v in lab.violations()]
        assert tuple(lab.trace) == cx.trace
        assert cx.preemptions <= cx.original_preemptions


def test_the_9_3a_hazard_needs_the_header_config() -> None:
    """With 4 KiB active clusters the VM write covers whole clusters: no backing read."""
    text = scenarios.load("partial-cluster-vm-write")
    assert explore(text, design="2.8", active_cluster="4K").verdict == "safe"
    assert explored("partial-cluster-vm-write", "2.8").verdict == "violation"


def test_the_9_3a_violation_is_the_vm_reading_primary_data_captured_in_active() -> None:
    cx = explored("partial-cluster-vm-write", "2.8").violations[0]
    assert cx.kind == "conflicting-read" and "block 7" in cx.message
    assert "primary data from nbd-write#1" in cx.message
    lab = cx.replay()
    active = lab.layers()["active"]
    block7 = active.data[7 * 4096:8 * 4096]
    assert block7 == bytes([0xBB]) * 4096  # the primary's byte, inside the VM's own cluster


# --- determinism -------------------------------------------------------------------------


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("name", NAMES)
def test_every_scenario_is_deterministic(name: str, design: str) -> None:
    text = scenarios.load(name)
    digest = lk.check_determinism(text, design=design)
    assert digest == lk.check_determinism(text, design=design)
    for cx in explored(name, design).violations:
        assert len(lk.check_determinism(text, cx.schedule, design=design)) == 64
