"""The widgets and figures on an image-fleecing lab (notebook 07): what they show is read
from the engine — the graph per scheme, the block map's three rows, the stepper's steps
for a guest write, the playground with the backup client as a task, the race replay."""

from __future__ import annotations

import pytest

import labkit as lk
from labkit.config import FLEECING_SCHEMES
from labkit.errors import ConfigError
from labkit.exercises import RACE07
from labkit.plot import (
    CLIENT,
    GUEST,
    NBD_SERVER,
    graph_model,
    plot_graph,
    plot_layers,
    plot_timeline,
)
from labkit.widgets import RaceReplay, SchedulerPlayground, WorkflowStepper, whereabouts


def fleeced(design: str) -> lk.Lab:
    return lk.run_scenario("fleece", graph="fleecing", design=design, size="128K")


@pytest.mark.parametrize("design", ["2.12", "3.0"])
def test_the_backup_job_schemes_graph_exports_the_overlay_and_copies_into_it(design):
    m = graph_model(fleeced(design))
    assert {name for name, _ in m.nodes} == {GUEST, CLIENT, NBD_SERVER, "live-disk", "fleece"}
    assert (GUEST, "attached", "live-disk") in m.links
    assert (CLIENT, "NBD_CMD_READ", NBD_SERVER) in m.links
    assert (NBD_SERVER, "export 'fleece'", "fleece") in m.links
    assert ("fleece", "backing", "live-disk") in m.links
    assert [(j[0], j[2]) for j in m.jobs] == [("live-disk", "fleece")]


def test_the_72_graph_has_the_filter_under_the_guest_and_snapshot_access_under_the_export():
    m = graph_model(fleeced("7.2"))
    assert (GUEST, "attached", "fl-cbw") in m.links
    assert (NBD_SERVER, "export 'fleece'", "fl-access") in m.links
    assert ("fl-access", "file", "fl-cbw") in m.links and ("fl-cbw", "file", "live-disk") \
        in m.links
    assert [(j[0], j[2]) for j in m.jobs] == [("fl-cbw", "fleece")]


def test_before_fleece_there_is_no_export_and_no_copy():
    lab = lk.build_secondary(graph="fleecing", design="7.2", size="128K")
    m = graph_model(lab)
    assert NBD_SERVER not in m.names and m.jobs == ()
    assert plot_layers(lab).legend_labels()  # the snapshot row says there is nothing yet


@pytest.mark.parametrize("design", FLEECING_SCHEMES)
def test_the_figures_fit_the_output_area(design):
    lab = fleeced(design)
    for fig in (plot_graph(lab).fig, plot_layers(lab).fig):
        assert fig.bbox.width <= 840


def test_the_block_map_shows_live_overlay_and_snapshot():
    lab = lk.run_scenario("fleece\nvwrite 5b 4K 0xbb", graph="fleecing", design="2.12",
                          size="128K")
    plot = plot_layers(lab)
    assert plot.NAMES == ("live", "fleece", "snapshot")
    assert "0xbb vm-write#1" in plot.legend_labels()


def test_a_highlight_at_the_backup_client_is_refused_in_a_colo_lab():
    with pytest.raises(ConfigError, match="backup-client"):
        plot_graph(lk.build_secondary(size="128K"), highlight={"vm-read#1": (CLIENT, "x")})


def test_the_stepper_names_steps_1_to_3_of_a_guest_write_then_the_client_read():
    stepper = WorkflowStepper("fleece\nvwrite 5b 4K 0xbb\ncread 5b 4K", graph="fleecing",
                              design="2.12", size="128K")
    assert stepper.stage.name == "Ready" and "the backup has started" in stepper.stage.title
    seen, said = [], []
    while not stepper.session.done:
        stepper.step()
        seen.append(stepper.stage.name)
        said += stepper.narration_lines()
    assert seen[:3] == ["Step 1", "Step 2", "Step 3"] and seen[-1] == "Client read"
    assert "the disk as it was when the backup started ✓" in stepper.parked.value
    assert any("the old contents from the live disk, wrote them to the fleece overlay" in x
               for x in said), said


def test_the_playground_is_won_by_the_client_reading_new_data_under_212():
    play = SchedulerPlayground(RACE07, design="2.12")
    assert play.design_buttons.options == FLEECING_SCHEMES
    play.choose("client-read#1")
    assert "passed fleece (unallocated), its read of the live disk (block 5) is next" in \
        play.header_text()
    while "vm-write#1" in [t.name for t in play.session.runnable()]:
        play.choose("vm-write#1")
    play.choose("client-read#1")
    assert play.won
    assert play.banner_text().startswith("You won — the backup client read data written "
                                         "after the backup started! client-read#1 returned "
                                         "0xbb for block 5 where the disk held 0x15")


def test_under_72_the_guest_write_waits_after_its_copy_for_the_frozen_read():
    play = SchedulerPlayground(RACE07, design="7.2")
    play.choose("client-read#1")
    assert "holding a frozen snapshot read on clusters 0-0" in whereabouts(play.lab)[
        "client-read#1"]
    while "vm-write#1" in [t.name for t in play.session.runnable()]:
        play.choose("vm-write#1")
    words = whereabouts(play.lab)["vm-write#1"]
    assert words.startswith("step 2 done (the old contents are in the fleece overlay)")
    assert "frozen snapshot read of client-read#1" in words
    assert "copies and frozen reads: frozen snapshot read of client-read#1" in play.text()


def test_a_design_switch_replays_the_winning_choices_as_far_as_the_scheme_allows():
    play = SchedulerPlayground(RACE07, design="2.12")
    play.choose("client-read#1")
    while "vm-write#1" in [t.name for t in play.session.runnable()]:
        play.choose("vm-write#1")
    play.switch_design("3.0")
    assert "vm-write#1 cannot run next" in play.note and "client-read#1" in play.note


def test_a_colo_design_is_refused_for_a_fleecing_scenario_naming_the_schemes():
    with pytest.raises(ConfigError, match="'2.12', '3.0', '7.2'"):
        SchedulerPlayground(RACE07, design="none")


def test_the_race_replay_explores_the_three_schemes_and_loads_the_212_counterexample():
    replay = RaceReplay(RACE07)
    assert replay.designs == list(FLEECING_SCHEMES)
    assert [replay.results[d].verdict for d in replay.designs] == ["violation", "safe", "safe"]
    replay.seek(len(replay.schedule))
    assert replay.banner_text().startswith("Point-in-time view broken at decision")


def test_the_timeline_names_the_fleecing_nodes():
    lab = lk.replay(RACE07, "fleece#1 client-read#1 vm-write#1*5 client-read#1",
                    design="2.12")
    labels = plot_timeline(lab).legend.entries
    words = [label for label, _ in labels]
    assert "on live disk" in words and "copy in flight" in words
