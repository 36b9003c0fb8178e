"""LabConfig: one parser for keywords, scenario headers and CLI options; bounded, typed errors.

Also the refused inputs of the API (issue 12, items 3 and 4): each raises a
labkit exception at the call and leaves the lab as it was.
"""

from __future__ import annotations

import pytest

import labkit as lk
from labkit import scenario as sc
from labkit import scenarios
from labkit.config import MAX_SIZE, LabConfig, resolve
from labkit.errors import ArgumentError, ConfigError, LimitError, ScenarioError, ScenarioLimitError
from labkit.interpret import task_names
from labkit.scenario import decode, parse
from labkit.testing import snapshot


def test_defaults_are_build_secondarys() -> None:
    cfg = LabConfig()
    lab = lk.build_secondary()
    assert lab.config == cfg and isinstance(lab.config, LabConfig)
    assert (lab.size, lab.block, lab.design, lab.era) == (cfg.size, cfg.block, cfg.design,
                                                          cfg.era)
    assert cfg.effective_backup_cluster == 65536 == lab.backup_cluster


def test_a_lab_is_built_from_a_labconfig_only() -> None:
    cfg = LabConfig(size="128K", design="none")
    lab = lk.Lab(cfg)
    assert lab.config is cfg and lab.size == 131072 and lab.design == "none"
    with pytest.raises(ArgumentError, match="a lab is built from a LabConfig"):
        lk.Lab({"size": "128K"})  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="a lab is built from a LabConfig"):
        lk.build_lab({"size": "128K"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy must be 'fifo' or a policy object"):
        lk.Lab(cfg, "lifo")
    fleecing = cfg.replace(graph="fleecing")
    with pytest.raises(ConfigError, match="Lab builds the 'colo' graph, this configuration "
                                          "the 'fleecing' one: build it with lk.build_lab"):
        lk.Lab(fleecing)
    assert lk.build_lab(fleecing).config is fleecing


def test_configured_applies_the_header_then_the_keywords() -> None:
    text = "# config: size=128K active_cluster=64K block=8K\nstart\nvwrite 2b 512 0xcc\n"
    cfg, scenario = sc.configured(text, size="256K", design="none", fill=None)
    assert (cfg.size, cfg.active_cluster, cfg.block, cfg.design, cfg.fill) == (
        262144, 65536, 8192, "none", "index")  # None: not given (the default applies)
    assert scenario.text == text and scenario.commands[1].offset == 2 * 8192  # ``b`` = block
    assert sc.configured(text)[0].size == 131072  # the header alone
    # A parsed part of a scenario stays that part (its text's header applies).
    part = sc.Scenario(scenario.steps[1:], text)
    assert sc.configured(part)[1].steps == scenario.steps[1:]


@pytest.mark.parametrize(("explicit", "error", "message"), [
    ({"size": "lots"}, ConfigError, "size must be a size like 4096"),
    ({"design": "2.9"}, ConfigError, "design must be one of 'none', '2.8', '4.0', got '2.9'"),
    ({"colour": "blue"}, ArgumentError, "unknown configuration key colour; allowed: size, "
                                        "block"),
    ({"policy": "fifo"}, ArgumentError, "unknown configuration key policy"),
    ({"size": 3 << 30}, LimitError, "size 3221225472 is 3221225472 bytes, past labkit's bound"),
])
def test_configured_names_the_key_and_what_is_allowed(explicit: dict, error: type,
                                                      message: str) -> None:
    with pytest.raises(error, match=message):
        sc.configured("start\n", **explicit)


def test_configured_errors_use_the_sources_wording_and_check_the_scenario() -> None:
    with pytest.raises(ConfigError, match="^--size must be"):
        sc.configured("start\n", source="cli", size="lots")
    with pytest.raises(ConfigError, match="'# config: size' must be"):
        sc.configured("# config: size=lots\nstart\n")
    # The scenario is checked against the configuration: 2M is past a 1M disk.
    with pytest.raises(ScenarioError, match="line 2"):
        sc.configured("# config: size=1M\nvread 2M 4K\n")
    with pytest.raises(ArgumentError, match="a scenario is its text"):
        sc.configured(42)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="source is 'keyword' or 'cli'"):
        sc.configured("start\n", source="header")


def test_configured_builds_nothing_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lab(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Lab was built to check a configuration")

    monkeypatch.setattr(lk.Lab, "__init__", no_lab)
    text = "# config: size=128K\nstart\n"
    explicit = {"design": "4.0", "block": "8K"}
    cfg, _ = sc.configured(text, **explicit)
    assert cfg.design == "4.0" and explicit == {"design": "4.0", "block": "8K"}
    with pytest.raises(ConfigError):
        sc.configured(text, design="nope")


def test_one_parser_for_keywords_headers_and_cli() -> None:
    words = dict(size="128K", block="4K", active_cluster="64K", fill="0x00", era="7.2",
                 backup_cluster="4K")
    a = LabConfig.parse(words, "keyword")
    b = LabConfig.parse(words, "cli")
    header = "# config: " + " ".join(f"{k}={v}" for k, v in words.items()) + "\nstart\n"
    c = resolve(header)
    assert a == b == c
    assert (a.size, a.active_cluster, a.fill, a.backup_cluster) == (131072, 65536, 0, 4096)


def test_explicit_values_win_over_the_header() -> None:
    text = "# config: size=128K active_cluster=64K\nstart\n"
    cfg = resolve(text, {"size": "256K", "design": "none", "block": None})
    assert (cfg.size, cfg.active_cluster, cfg.design, cfg.block) == (262144, 65536, "none", 4096)


@pytest.mark.parametrize(("source", "named"), [
    ("keyword", "size must be"), ("cli", "--size must be"), ("header", "'# config: size' must be"),
])
def test_errors_name_the_key_as_the_user_wrote_it(source: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        LabConfig.parse({"size": "lots"}, source)


def test_unknown_keys_list_the_allowed_ones() -> None:
    with pytest.raises(ArgumentError, match="unknown configuration key --colour; allowed: --size"):
        LabConfig.parse({"colour": "blue"}, "cli")


@pytest.mark.parametrize("value", [0, 1000, -4096, "3K", "1000", 3 << 20, "0x_1000"])
def test_backup_cluster_is_a_qemu_cluster_size(value: object) -> None:
    # QEMU's backup cluster is MAX(64K, target cluster): a qcow2 cluster size, a power of two.
    with pytest.raises(ConfigError, match="backup_cluster must be a (power of two|size like)"):
        lk.build_secondary(backup_cluster=value)  # type: ignore[arg-type]


def test_backup_cluster_sizes_parse_like_every_size() -> None:
    assert lk.build_secondary(backup_cluster="4K").backup_cluster == 4096
    assert lk.build_secondary(backup_cluster=8192).backup_cluster == 8192


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(size="16G"), LimitError, "past labkit's bound of 1073741824 bytes"),
    (dict(block="1G"), LimitError, "block '1G' is 1073741824 bytes, past"),
    (dict(size=True), ArgumentError, "size must be a size"),
    (dict(size=None), ArgumentError, "size must be a size"),
    (dict(size=4.0), ArgumentError, "size must be a size"),
    (dict(size="1_0K"), ConfigError, "size must be a size"),
    (dict(size="٤K"), ConfigError, "size must be a size"),
    (dict(design=2.8), ArgumentError, "design must be one of 'none', '2.8', '4.0' \\(a string\\)"),
    (dict(era="9"), ConfigError, "era must be one of '2.8', '7.2'"),
    (dict(fill=True), ArgumentError, "fill must be 'index', 'zero' or a byte"),
    (dict(fill=256), ConfigError, "fill must be"),
    (dict(hidden_cluster="4M"), ConfigError, "power of two from 512 bytes to 2M"),
    (dict(policy=5), ArgumentError, "policy must be 'fifo' or a policy object"),
    (dict(policy="lifo"), ConfigError, "policy must be 'fifo' or a policy object"),
])
def test_build_secondary_refuses_with_labkit_errors(kwargs: dict, error: type,
                                                    message: str) -> None:
    with pytest.raises(error, match=message):
        lk.build_secondary(**kwargs)


def test_old_except_clauses_still_catch_them() -> None:
    with pytest.raises(ValueError):
        lk.build_secondary(size="16G")
    with pytest.raises(TypeError):
        lk.build_secondary(size=True)


def test_a_bound_is_checked_before_anything_is_allocated() -> None:
    assert LabConfig(size=MAX_SIZE).size == MAX_SIZE  # the bound itself is allowed (and cheap)
    with pytest.raises(LimitError):
        LabConfig(size=MAX_SIZE + 512)


def test_run_scenario_applies_the_header_like_explore_and_replay() -> None:
    lab = lk.run_scenario("# config: size=64K\nstart\nvread 0 4K orig\n")
    assert lab.size == 65536 and not lab.expectation_failures
    assert lk.run_scenario("# config: size=64K\nstart\n", size="128K").size == 131072
    with pytest.raises(ScenarioError, match="past the end of the 65536-byte disk"):
        lk.run_scenario("# config: size=64K\nvread 20b 4K\n")


def test_scenarios_config_delegates_to_the_one_parser() -> None:
    assert scenarios.config("# config: fill=0x10 size=64K\n") == {"fill": 16, "size": "64K"}
    with pytest.raises(ConfigError, match="'# config: size' must be a size"):
        scenarios.config("# config: size=+5\n")
    with pytest.raises(lk.LabkitError, match="no shipped scenario named 'nope'"):
        scenarios.load("nope")


def test_task_names_are_made_in_one_place() -> None:
    s = parse("start\npar { vread 0 4K; pwrite 0 4K 1; vread 0 4K }\nfailover\ndump x\n")
    assert task_names(s) == ["start#1", "vm-read#1", "nbd-write#1", "vm-read#2", "failover#1",
                             "commit#1"]
    lab = lk.run_scenario(s.text, size="128K")
    assert [n for n in task_names(s) if n in lab.kernel.tasks] == task_names(s)


# --- refused API inputs: a labkit exception at the call, the lab unchanged ---------------

def _state(lab: lk.Lab) -> tuple:
    return (snapshot(lab.secondary, lab.hidden, lab.active), list(lab.kernel.tasks),
            len(lab.trace), list(lab.schedule), lab.state)


@pytest.mark.parametrize(("call", "error"), [
    (lambda lab: lab.primary_write(0, 4096, None), ArgumentError),
    (lambda lab: lab.vm_write(0, 4096, None), ArgumentError),
    (lambda lab: lab.primary_write(0, 4096, True), ArgumentError),
    (lambda lab: lab.vm_write(0, 4096, False), ArgumentError),
    (lambda lab: lab.primary_write(0, 4096, "0xbb"), ArgumentError),
    (lambda lab: lab.primary_write(0, 4096, 256), ConfigError),
    (lambda lab: lab.vm_write(0, 4096, -1), ConfigError),
    (lambda lab: lab.dump(5), ArgumentError),
])
def test_bad_bytes_are_refused_at_the_call(call, error) -> None:
    lab = lk.build_secondary(size="128K")
    lab.start()
    lab.primary_write(0, 4096, 0xAA)
    lab.run()
    before = _state(lab)
    with pytest.raises(error, match="byte must be an integer 0-255|dump title"):
        call(lab)
    assert _state(lab) == before
    lab.run()  # nothing half-made is left to run
    assert _state(lab) == before


# --- the scenario language: ASCII numbers, BOM, titles, bounds -----------------------------

@pytest.mark.parametrize("text", ["pwrite 1_0 512 1", "pwrite 0 512 0x_bb", "pwrite +5 512 1",
                                  "pwrite ٤K 512 1", "pwrite ４K 512 1", "vread 0 ４K",
                                  "pwrite 0 512 ٣", "expect hidden 0 4K 1_0"])
def test_only_ascii_digits_with_the_documented_suffixes(text: str) -> None:
    with pytest.raises(ScenarioError, match="is not a (size|byte)"):
        parse(text)


def test_a_byte_order_mark_is_tolerated() -> None:
    assert [s.op for s in parse("\ufeffstart\nvread 0 4K\n").steps] == ["start", "vread"]
    assert decode(b"\xef\xbb\xbfstart\n") == "start\n"
    lab = lk.run_scenario("\ufeff# config: size=64K\nstart\n")
    assert lab.size == 65536


def test_a_decode_error_names_the_file_and_the_line() -> None:
    with pytest.raises(ScenarioError, match=r"race\.scn: scenario line 3: .*not UTF-8") as exc:
        decode(b"start\npwrite 0 4K 1\nvread \xff\xfe 4K\n", "race.scn")
    assert exc.value.line == 3 and exc.value.source == "race.scn"


def test_a_dump_title_is_the_rest_of_the_line() -> None:
    s = parse("start\ndump after a; b { c } d # a comment\nvread 0 4K\n")
    assert [getattr(x, "op", "par") for x in s.steps] == ["start", "dump", "vread"]
    assert s.steps[1].title == "after a; b { c } d"  # type: ignore[union-attr]
    lab = lk.run_scenario("start\npwrite 0 4K 1; dump x;y\n", size="128K")
    assert [t for t, _ in lab.dumps] == ["x;y"]


def test_control_characters_in_titles_are_escaped() -> None:
    lab = lk.run_scenario("dump \x1b[31mred\x1b[0m\tand\x07bell\n", size="128K")
    title = lab.dumps[0][0]
    assert "\x1b" not in title and "\x07" not in title and "\t" not in title
    assert title == "\\x1b[31mred\\x1b[0m\\x09and\\x07bell"
    lab.dump("\x1b[2J")
    assert lab.dumps[-1][0] == "\\x1b[2J"


def test_scenario_bounds_are_checked_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    big_par = "par {\n" + "vread 0 512\n" * (sc.MAX_PAR + 1) + "}\n"
    with pytest.raises(ScenarioLimitError, match=f"at most {sc.MAX_PAR} commands"):
        parse(big_par)
    with pytest.raises(ScenarioLimitError, match="largest disk"):
        parse("vread 2G 4K")  # no size known: the largest disk bounds it
    monkeypatch.setattr(sc, "MAX_COMMANDS", 3)
    with pytest.raises(LimitError, match="at most 3 commands"):
        parse("start\nstart\nstart\nstart\n")
    monkeypatch.setattr(sc, "MAX_TEXT", 10)
    with pytest.raises(ScenarioLimitError, match="at most 10 characters"):
        parse("start\n" * 3)

