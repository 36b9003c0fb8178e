"""labkit.plot: block maps, provenance and timeline render headless (Agg) and update in place."""

from __future__ import annotations

import io
import subprocess
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import labkit as lk
from labkit import plot
from labkit.lab import ScenarioRun

matplotlib.use("Agg")  # labkit's figures draw on their own Agg canvas in any case

RACE = """start
par { vread 5b 4K; pwrite 5b 4K 0xbb }
"""
# design "none": the read is parked at the secondary disk while the write runs to its end
RACE_SCHEDULE = ["start#1"] * 3 + ["vm-read#1"] + ["nbd-write#1"] * 5 + ["vm-read#1"]


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def small_lab(**kw) -> lk.Lab:
    lab = lk.build_secondary(size="128K", **kw)
    lab.start()
    return lab


def cell_pixels(p: plot.LayerPlot, layer: str, block: int) -> np.ndarray:
    """The pixels of one cell as drawn (inner part, without the white border)."""
    g = p.grids[layer]
    r, c = divmod(block, g.cols)
    return g.pixels[r * g.px:(r + 1) * g.px - 1, c * g.px:(c + 1) * g.px - 1]


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def has(pixels: np.ndarray, colour: str) -> bool:
    return bool((pixels == rgb(colour)).all(axis=-1).any())


# --- the colour mapping ---------------------------------------------------------------------


def test_byte_colours_are_fixed_and_tell_common_example_bytes_apart():
    assert plot.byte_colour(0) == "#FFFFFF"
    assert plot.byte_colour(0xBB) == plot.WRITE_PALETTE[0xBB % len(plot.WRITE_PALETTE)]
    assert plot.byte_colour(0x15) in plot.ORIGINAL_GREYS
    common = [0xAA, 0xBB, 0xBC, 0xBD, 0xCC, 0xCD, 0xCE, 0xCF]
    assert len({plot.byte_colour(b) for b in common}) == len(common)
    # neighbours in the palette differ (consecutive bytes never share a colour)
    assert all(plot.byte_colour(b) != plot.byte_colour(b + 1) for b in range(0x80, 0xFF))
    with pytest.raises(ValueError):
        plot.byte_colour(256)


# --- the block map ------------------------------------------------------------------------------


def test_layers_plot_renders_png_and_marks_hatch_changes_and_writers():
    lab = small_lab()
    p = plot.plot_layers(lab)
    img = decode(p.png())
    assert img.shape[:2] == (int(p.fig.bbox.height), int(p.fig.bbox.width))
    # before any write: hidden is unallocated (hatched), secondary holds original greys
    assert has(cell_pixels(p, "hidden", 5), plot.HATCH_COLOUR)
    assert has(cell_pixels(p, "secondary", 5), plot.byte_colour(0x15))
    lab.primary_write(5 * 4096, 4096, 0xBB)
    lab.vm_write(20 * 4096, 4096, 0xCC)
    lab.run()
    p.update(lab)
    assert has(cell_pixels(p, "secondary", 5), plot.byte_colour(0xBB))
    assert not has(cell_pixels(p, "hidden", 5), plot.HATCH_COLOUR)  # the old copy is there
    assert has(cell_pixels(p, "hidden", 5), plot.byte_colour(0x15))
    assert has(cell_pixels(p, "active", 20), plot.byte_colour(0xCC))
    # the cells that changed are outlined (black ring), the others are not
    assert p.changed["secondary"][5] and p.changed["active"][20]
    assert not p.changed["secondary"][6]
    assert has(cell_pixels(p, "secondary", 5), plot.MARK_COLOUR)
    assert not has(cell_pixels(p, "secondary", 6), plot.MARK_COLOUR)
    labels = p.legend_labels()
    assert "0xbb nbd-write#1" in labels and "0xcc vm-write#1" in labels
    assert "original data (greys)" in labels
    assert "not allocated in this layer" in labels


def test_vm_view_before_start_says_eio():
    lab = lk.build_secondary(size="128K")
    p = plot.plot_layers(lab)
    assert "EIO" in p.eio_texts["vm-view"].get_text()
    decode(p.png())


def test_cluster_held_by_a_cowrequest_is_marked_mid_cow():
    lab = lk.build_secondary(size="128K", policy=lk.Scripted(RACE_SCHEDULE), design="none")
    run = ScenarioRun(lab, RACE)
    for _ in range(5):  # start (3), the read parks, the write begins its COW
        run.step()
    assert lab.top.backup_job.inflight_reqs, "the COW holds a CowRequest now"
    p = plot.plot_layers(lab)
    held = cell_pixels(p, "secondary", 3)  # cluster 0 = blocks 0-15 (64 KiB backup cluster)
    assert has(held, plot.MARK_COLOUR)
    assert not has(cell_pixels(p, "secondary", 20), plot.MARK_COLOUR)
    assert "nbd-write#1 holds clusters 0-0 (blocks 0-15)" in p.status.get_text()


def test_figures_are_reused_across_steps_no_figure_leak():
    before = plt.get_fignums()
    lab = lk.build_secondary(size="128K", policy=lk.Scripted(RACE_SCHEDULE), design="none")
    run = ScenarioRun(lab, RACE)
    layers = plot.plot_layers(lab)
    timeline = plot.plot_timeline(lab, fit=False)
    figs = (id(layers.fig), id(timeline.fig))
    images = [id(g.image) for g in layers.grids.values()]
    n_artists = len(layers.fig.get_children())
    while not run.done:
        run.step()
        layers.update(lab)
        timeline.update(lab)
        layers.png()
        timeline.png()
    assert plt.get_fignums() == before, "plots must not create pyplot figures"
    assert (id(layers.fig), id(timeline.fig)) == figs
    assert [id(g.image) for g in layers.grids.values()] == images
    assert len(layers.fig.get_children()) == n_artists


def test_fast_render_equals_a_full_draw():
    lab = small_lab(design="none")
    p = plot.plot_layers(lab, title="fast and full")
    lab.primary_write(0, 4096, 0xBB)
    lab.vm_write(0x3000, 0x2000, 0xCC)
    lab.run()
    p.update(lab)
    fast = decode(p.png())
    buf = io.BytesIO()
    p.fig.savefig(buf, format="png", dpi=p.fig.dpi)
    full = np.asarray(Image.open(buf).convert("RGB"))
    assert fast.shape == full.shape
    assert (fast == full).all()


def test_png_is_deterministic():
    def once() -> bytes:
        lab = lk.run_scenario(RACE, size="128K", design="none")
        return plot.plot_layers(lab).png() + plot.plot_timeline(lab).png()

    assert once() == once()


def test_big_disks_lay_layers_side_by_side():
    lab = lk.build_secondary(size="2M", block="512")
    p = plot.plot_layers(lab)
    assert p.nblocks == 4096 and p.side_by_side and p.cols == 64
    img = decode(p.png())
    assert img.shape[1] > img.shape[0]


# --- provenance ----------------------------------------------------------------------------------


def test_provenance_shows_which_layer_served_each_block():
    lab = small_lab()
    lab.primary_write(5 * 4096, 4096, 0xBB)
    lab.run()
    read = lab.vm_read(4 * 4096, 2 * 4096)
    lab.run()
    assert lab.provenance(read)[4:6] == ["hidden", "hidden"]
    p = plot.plot_provenance(lab, read)
    served = p.grids["served by"]
    inner = served.pixels[2:served.px - 3, 4 * served.px + 2:5 * served.px - 3]
    assert has(inner, plot.LAYER_COLOURS["hidden"])
    assert "2 block(s) from hidden" in p.title.get_text()
    decode(p.png())


def test_provenance_marks_a_conflicting_read():
    lab = lk.build_secondary(size="128K", design="none", policy=lk.Scripted(RACE_SCHEDULE))
    lab.play(RACE)
    assert lab.violations()
    p = plot.plot_provenance(lab, "vm-read#1")
    assert "conflicting read" in p.status.get_text()
    g = p.grids["served by"]
    cell = g.pixels[0:g.px - 1, 5 * g.px:6 * g.px - 1]
    assert has(cell, plot.LAYER_COLOURS["secondary"]) and has(cell, plot.MARK_COLOUR)


# --- timeline ----------------------------------------------------------------------------


def test_timeline_lanes_spans_waits_and_steps():
    lab = lk.build_secondary(size="128K", design="none", policy=lk.Scripted(RACE_SCHEDULE))
    lab.play(RACE)
    t = plot.plot_timeline(lab, title="race")
    m = t.model
    labels = [ln.label for ln in m.lanes]
    assert labels == ["start#1", "vm-read#1", "nbd-write#1", "nbd-write#1 COW"]
    assert sorted({s[2] for s in m.steps}) == [1, 2, 3]
    assert len(m.cow_spans) == 1 and m.cow_spans[0][0] == labels.index("nbd-write#1 COW")
    assert "violation" in {e[2] for e in m.ends}, "the conflicting read is marked"
    assert m.decisions == len(lab.schedule)
    decode(t.png())
    t.update(lab, cursor=4)
    assert list(t.cursor.get_xdata()) == [4, 4]


def test_timeline_shows_a_wait_on_a_cowrequest_in_design_28():
    # the read holds a CowRequest; the write's COW has to wait for it
    sched = ["start#1"] * 3 + ["vm-read#1"] + ["nbd-write#1"]
    lab = lk.build_secondary(size="128K", design="2.8", policy=lk.Scripted(sched))
    run = ScenarioRun(lab, RACE)
    for _ in range(len(sched)):
        run.step()
    assert any("CowRequest of vm-read#1" in t.why_blocked for t in lab.kernel.blocked())
    t = plot.plot_timeline(lab)
    assert t.model.waits and t.model.lanes[t.model.waits[0][0]].label == "nbd-write#1"
    # a window from decision 3 on: only the par block's tasks
    t.update(lab, start=3)
    assert [ln.task for ln in t.model.lanes][:2] == ["vm-read#1", "nbd-write#1"]


def test_import_labkit_does_not_import_matplotlib_or_ipywidgets():
    code = ("import sys, labkit; bad = [m for m in ('matplotlib', 'ipywidgets') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the block graph ----------------------------------------------------------------------


def test_graph_after_start_has_the_secondary_nodes_links_and_backup_job():
    lab = small_lab()
    g = plot.plot_graph(lab)
    m = g.model
    assert m.names == ["guest", "nbd-server", "colo-top", "active", "hidden", "secondary-disk"]
    assert ("colo-top", "file", "active") in m.links
    assert ("active", "backing", "hidden") in m.links
    assert ("hidden", "backing", "secondary-disk") in m.links
    assert ("nbd-server", "export 'secondary'", "secondary-disk") in m.links
    assert m.jobs == (("secondary-disk", "backup job (sync=none):\ncopy old contents",
                       "hidden"),)
    decode(g.png())


def test_graph_before_start_has_no_backup_job_and_after_failover_drops_active_hidden():
    lab = lk.build_secondary(size="128K")
    g = plot.plot_graph(lab)
    assert g.model.jobs == ()
    lab.start()
    lab.primary_write(0, 4096, 0xBB)
    lab.run()
    lab.failover()
    lab.run()
    g.update(lab)
    assert g.model.names == ["guest", "nbd-server", "colo-top", "secondary-disk"]
    assert ("colo-top", "file", "secondary-disk") in g.model.links
    assert not any("active" in link or "hidden" in link for link in g.model.links)
    assert "no longer in the graph" in g.gone.get_text()


def test_graph_highlight_changes_the_image_and_rejects_unknown_nodes():
    lab = small_lab()
    g = plot.plot_graph(lab)
    plain = g.png()
    g.update(lab, highlight={"vm-read#1": ("secondary-disk", "reading"),
                             "nbd-write#1": ("hidden", "waits for CowRequest")})
    marked = g.png()
    assert marked != plain
    shown = [b.get_text() for b in g.badges if b.get_visible()]
    assert shown == ["vm-read#1: reading", "nbd-write#1: waits for CowRequest"]
    assert g.rings["hidden"].get_visible() and not g.rings["active"].get_visible()
    g.update(lab)
    assert g.png() == plain, "the same state draws the same bytes"
    with pytest.raises(lk.errors.ConfigError, match="hidden-disk"):
        g.update(lab, highlight={"vm-read#1": ("hidden-disk", "reading")})
    with pytest.raises(lk.errors.ArgumentError):
        g.update(lab, highlight={"vm-read#1": "hidden"})


def test_parked_tasks_reads_task_suspended():
    sched = ["start#1"] * 3 + ["vm-read#1"] + ["nbd-write#1"]
    lab = lk.build_secondary(size="128K", design="2.8", policy=lk.Scripted(sched))
    run = ScenarioRun(lab, RACE)
    for _ in range(len(sched)):
        run.step()
    parked = plot.parked_tasks(lab)
    assert set(parked) == {"vm-read#1", "nbd-write#1"}
    assert parked["nbd-write#1"] == ("secondary-disk",
                                     "waits: CowRequest of vm-read#1 on clusters 0-0")
    assert parked["vm-read#1"] == ("secondary-disk", "parked [0x5000+0x1000]")
    g = plot.plot_graph(lab, highlight=parked)
    assert sum(b.get_visible() for b in g.badges) == 2
