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


def cell_colour(p, layer: str, block: int) -> tuple[int, int, int]:
    """The colour the panel's image gives a block (its data array: one entry per cell)."""
    g = p.grids[layer]
    r, c = divmod(block, g.cols)
    return tuple(int(v) for v in g.pixels[r, c, :3])


def drawn_colour(p, layer: str, block: int) -> tuple[int, int, int]:
    """The colour of the block's cell in the PNG (a pixel near the cell's centre)."""
    img = decode(p.png())
    g = p.grids[layer]
    r, c = divmod(block, g.cols)
    x0, _, _, y1 = g.ax.bbox.extents
    x = int(x0 + (c + 0.3) * g.px)
    y = int(img.shape[0] - y1 + (r + 0.3) * g.px)
    return tuple(int(v) for v in img[y, x])


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def text_sizes_px(fig) -> list[tuple[float, str]]:
    """(size in pixels, text) of every visible, non-empty text in a figure."""
    from matplotlib.text import Text
    return [(t.get_fontsize() * fig.dpi / 72, t.get_text()) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


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
    assert p.grids["hidden"].stats["hatch"] == p.nblocks
    assert drawn_colour(p, "secondary", 5) == rgb(plot.byte_colour(0x15))
    assert "changed by the last step" not in p.legend_labels()
    lab.primary_write(5 * 4096, 4096, 0xBB)
    lab.vm_write(20 * 4096, 4096, 0xCC)
    lab.run()
    p.update(lab)
    assert cell_colour(p, "secondary", 5) == rgb(plot.byte_colour(0xBB))
    assert drawn_colour(p, "secondary", 5) == rgb(plot.byte_colour(0xBB))
    assert cell_colour(p, "hidden", 5) == rgb(plot.byte_colour(0x15))  # the old copy
    assert p.grids["hidden"].stats["hatch"] == p.nblocks - 16  # cluster 0 = blocks 0-15
    assert drawn_colour(p, "active", 20) == rgb(plot.byte_colour(0xCC))
    # the cells that changed are outlined, the others are not
    assert p.changed_cells["secondary"][5] and p.changed_cells["active"][20]
    assert not p.changed_cells["secondary"][6]
    assert p.grids["secondary"].stats["outline"] == 1
    labels = p.legend_labels()
    assert "0xbb nbd-write#1" in labels and "0xcc vm-write#1" in labels
    assert "original data (greys)" in labels
    assert "not allocated in this layer" in labels
    assert "changed by the last step" in labels
    assert "held by a CowRequest" not in labels, "no CowRequest is held now"


def test_legend_lists_only_the_bytes_and_marks_shown():
    lab = small_lab()
    lab.primary_write(0, 4096, 0xBB)
    lab.run()
    lab.checkpoint()  # hidden and active emptied: nothing of 0xbb is left but the disk's
    lab.vm_write(8 * 4096, 4096, 0xCC)
    lab.run()
    lab.vm_write(8 * 4096, 4096, 0xCD)  # overwrites 0xcc: 0xcc is written but not shown
    lab.run()
    p = plot.plot_layers(lab)
    labels = p.legend_labels()
    assert "0xcd vm-write#2" in labels
    assert not any(label.startswith("0xcc") for label in labels)
    p.update(lab)  # nothing changed since: no outline, so no outline entry
    assert "changed by the last step" not in p.legend_labels()


def test_vm_view_before_start_says_eio():
    lab = lk.build_secondary(size="128K")
    p = plot.plot_layers(lab)
    assert "EIO" in p.grids["vm-view"].message.get_text()
    decode(p.png())


def test_cluster_held_by_a_cowrequest_is_marked_mid_cow():
    lab = lk.build_secondary(size="128K", policy=lk.Scripted(RACE_SCHEDULE), design="none")
    run = ScenarioRun(lab, RACE)
    for _ in range(5):  # start (3), the read parks, the write begins its COW
        run.step()
    assert lab.top.backup_job.inflight_reqs, "the COW holds a CowRequest now"
    p = plot.plot_layers(lab)
    assert p.grids["secondary"].stats["held"] == 16  # cluster 0 = blocks 0-15
    assert len(p.grids["secondary"].held.get_paths()) == 1, "one box around the run"
    assert "held by a CowRequest" in p.legend_labels()
    assert "nbd-write#1 holds clusters 0-0 (blocks 0-15)" in p.status.get_text()


def test_figures_are_reused_across_steps_no_figure_leak():
    before = plt.get_fignums()
    lab = lk.build_secondary(size="128K", policy=lk.Scripted(RACE_SCHEDULE), design="none")
    run = ScenarioRun(lab, RACE)
    layers = plot.plot_layers(lab)
    timeline = plot.plot_timeline(lab, fit=False)
    graph = plot.plot_graph(lab)
    layers.png(), timeline.png(), graph.png()
    figs = (id(layers.fig), id(timeline.fig), id(graph.fig))
    images = [id(g.image) for g in layers.grids.values()]
    n_artists = [len(f.fig.findobj()) for f in (layers, graph)]
    while not run.done:
        run.step()
        layers.update(lab)
        timeline.update(lab)
        graph.update(lab, highlight=plot.parked_tasks(lab))
        layers.png(), timeline.png(), graph.png()
    assert plt.get_fignums() == before, "plots must not create pyplot figures"
    assert (id(layers.fig), id(timeline.fig), id(graph.fig)) == figs
    assert [id(g.image) for g in layers.grids.values()] == images
    assert len(layers.fig.findobj()) == n_artists[0]
    assert len(graph.fig.findobj()) <= n_artists[1] + 3 * len(lab.kernel.tasks)  # badges


def test_fast_render_equals_a_full_draw():
    lab = small_lab(design="none")
    p = plot.plot_layers(lab, title="fast and full")
    p.png()
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


def test_png_is_deterministic_and_not_encoded_again_when_nothing_changed():
    def once() -> bytes:
        lab = lk.run_scenario(RACE, size="128K", design="none")
        read = next(t for t in lab.kernel.tasks if t.startswith("vm-read"))
        return (plot.plot_layers(lab).png() + plot.plot_timeline(lab).png()
                + plot.plot_provenance(lab, read).png() + plot.plot_graph(lab).png())

    assert once() == once()
    lab = small_lab()
    p = plot.plot_layers(lab)
    first = p.png()
    p.update(lab)
    assert p.png() is first, "same picture: the cached bytes"
    assert b"Software" not in first and b"tEXt" not in first, "no metadata"


def test_big_disks_fill_the_figure_at_workshop_size():
    lab = lk.build_secondary(size="2M", block="512")
    p = plot.plot_layers(lab)
    assert p.nblocks == 4096 and p.cols == 128 and p.rows == 32
    img = decode(p.png())
    assert img.shape[1] <= 840
    # no big empty band: the four panels take most of the height
    panels = sum(g.ax.bbox.height for g in p.grids.values())
    assert panels > 0.7 * img.shape[0]


@pytest.mark.parametrize("size, block", [("128K", "4K"), ("1M", "4K"), ("2M", "512")])
def test_every_figure_is_readable_at_its_natural_size(size, block):
    lab = lk.build_secondary(size=size, block=block, design="2.8",
                             policy=lk.Scripted(["start#1"] * 3 + ["vm-read#1", "nbd-write#1"]))
    run = ScenarioRun(lab, RACE)
    for _ in range(5):
        run.step()
    # 840 px: a notebook's output area at 1280x800 with the file browser open is 848
    figures = [plot.plot_layers(lab, title="t"), plot.plot_layers(lab, header=False),
               # the widgets give the timeline the block map's width (its default, 860,
               # is timeline.py's)
               plot.plot_timeline(lab, title="t",
                                  width=max(816, int(plot.plot_layers(lab).fig.bbox.width))),
               plot.plot_provenance(lab, "vm-read#1"),
               plot.plot_graph(lab, highlight=plot.parked_tasks(lab))]
    for f in figures:
        img = decode(f.png())
        assert img.shape[1] <= 840, f"{f!r} is {img.shape[1]} px wide"
        small = [(round(px, 1), t) for px, t in text_sizes_px(f.fig) if px < 11 - 1e-6]
        assert not small, f"{f!r}: text under 11 px: {small}"


# --- provenance ----------------------------------------------------------------------------------


def test_provenance_shows_which_layer_served_each_block():
    lab = small_lab()
    lab.primary_write(5 * 4096, 4096, 0xBB)
    lab.run()
    read = lab.vm_read(4 * 4096, 2 * 4096)
    lab.run()
    assert lab.provenance(read)[4:6] == ["hidden", "hidden"]
    p = plot.plot_provenance(lab, read)
    assert p.first == 4 and p.n == 2, "the figure shows the read's blocks only"
    assert cell_colour(p, "served by", 0) == rgb(plot.LAYER_COLOURS["hidden"])
    assert drawn_colour(p, "served by", 1) == rgb(plot.LAYER_COLOURS["hidden"])
    assert "blocks 4-5" in p.title.get_text()
    assert "2 by hidden" in p.status.get_text()


def test_provenance_axis_is_sized_to_the_read_and_legend_to_what_it_shows():
    lab = small_lab()
    lab.primary_write(5 * 4096, 4096, 0xBB)
    lab.run()
    read = lab.vm_read(0, 8 * 4096)  # blocks 0-7, all served by hidden (the COW's copy)
    lab.run()
    p = plot.plot_provenance(lab, read)
    ax = p.grids["served by"].ax
    assert ax.get_xlim() == (0, 8)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(b) for b in range(8)]
    assert p.legend_labels() == ["hidden", "original data (greys)"]
    # the same figure follows another read, of blocks 20-23
    other = lab.vm_read(20 * 4096, 4 * 4096)
    lab.run()
    p.update(lab, other)
    labels = [t.get_text() for t in p.grids["bytes read"].ax.get_xticklabels()]
    assert labels[0] == "20" and labels[-1] == "23"


def test_provenance_marks_a_conflicting_read():
    lab = lk.build_secondary(size="128K", design="none", policy=lk.Scripted(RACE_SCHEDULE))
    lab.play(RACE)
    assert lab.violations()
    p = plot.plot_provenance(lab, "vm-read#1")
    assert "conflicting read" in p.status.get_text()
    assert cell_colour(p, "served by", 0) == rgb(plot.LAYER_COLOURS["secondary"])
    assert p.grids["served by"].stats["outline"] == 1
    assert "conflicting read here" in p.legend_labels()
    assert "0xbb nbd-write#1" in p.legend_labels()
    with pytest.raises(lk.errors.ConfigError, match="no task named"):
        p.update(lab, "vm-read#9")


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
    assert "waiting (blocked)" not in t.legend_labels(), "no task waited in this run"
    assert "CowRequest held" in t.legend_labels()
    before = t.png()
    t.update(lab, cursor=4)
    assert list(t.cursor.get_xdata()) == [4, 4]
    assert t.png() != before


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
    assert "waiting (blocked)" in t.legend_labels()
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
    lab.step()  # the active commit runs: its arrow is drawn while it copies
    g.update(lab, highlight=plot.parked_tasks(lab))
    assert [j[0::2] for j in g.model.jobs] == [("active", "secondary-disk")]
    assert "commit#1" in plot.parked_tasks(lab)
    lab.run()
    g.update(lab)
    assert g.model.jobs == ()
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
    assert sorted(shown) == ["nbd-write#1: waits for CowRequest", "vm-read#1: reading"]
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


# --- rendering by the libraries made for it ---------------------------------------------------


def test_plot_package_has_no_png_encoder_or_glyph_rasteriser_of_its_own():
    import pathlib
    import re

    root = pathlib.Path(plot.__file__).parent
    sources = {p.name: p.read_text() for p in root.glob("*.py")}
    assert {"layers.py", "provenance.py", "timeline.py", "graph.py"} <= set(sources)
    for name, text in sources.items():
        for banned in (r"\bimport zlib\b", r"\bimport struct\b", r"\bget_font\b",
                       r"\bzlib\.", r"\bstruct\.", r"draw_glyphs_to_bitmap", r"crc32"):
            assert not re.search(banned, text), f"{name} uses {banned}"
    assert not (root.parent / "plot.py").exists()


def test_bad_arguments_get_labkit_errors_naming_what_is_allowed():
    lab = small_lab()
    with pytest.raises(lk.errors.ArgumentError, match="integer 0-255"):
        plot.byte_colour(True)
    with pytest.raises(lk.errors.ConfigError, match="0-255"):
        plot.byte_colour(-1)
    with pytest.raises(lk.errors.ConfigError, match="cols must be a positive"):
        plot.plot_layers(lab, cols=0)
    p = plot.plot_layers(lab)
    with pytest.raises(lk.errors.ConfigError, match="another disk geometry"):
        p.update(lk.build_secondary(size="256K"))
    with pytest.raises(lk.errors.ArgumentError, match="width must be"):
        plot.plot_timeline(lab, width=100)
    with pytest.raises(lk.errors.ArgumentError, match="pass a lab or a trace"):
        plot.plot_timeline(lab).update()
    with pytest.raises(lk.errors.ArgumentError, match="vm-read Task or its name"):
        plot.plot_provenance(lab, 5)


def test_graph_redraws_only_changed_nodes_and_matches_a_full_draw():
    """Badges are redrawn per node (and overlapping neighbours): after any sequence of
    updates the picture equals a fresh figure of the same state; a state seen before
    reuses its PNG."""
    lab = small_lab()
    states = [{"vm-read#1": ("secondary-disk", "reading")},
              {"vm-read#1": ("secondary-disk", "reading"),
               "nbd-write#1": ("nbd-server", "waits for the read's CowRequest")},
              {"vm-read#1": ("hidden", "reading"), "vm-read#2": ("colo-top", "parked"),
               "nbd-write#1": ("secondary-disk", "copying")},
              {"vm-read#1": ("secondary-disk", "a"), "vm-read#2": ("secondary-disk", "b"),
               "vm-read#3": ("secondary-disk", "c"), "vm-write#1": ("guest", "not started")},
              # colo-top's badge reaches into the NBD server's rectangle: redrawing the
              # NBD server's badge alone would erase part of it
              {"vm-read#2": ("colo-top", "parked at the filter node"),
               "nbd-write#1": ("nbd-server", "x")},
              {"vm-read#2": ("colo-top", "parked at the filter node"),
               "nbd-write#1": ("nbd-server", "a longer label")},
              {}]
    g = plot.plot_graph(lab)
    g.png()
    for hl in states + states[::-1]:
        g.update(lab, highlight=hl)
        fresh = plot.plot_graph(lab, highlight=hl)
        assert np.array_equal(decode(g.png()), decode(fresh.png())), hl
    shown = [b.get_text() for b in g.badges if b.get_visible()]
    assert shown == ["vm-read#1: reading"]
    g.update(lab, highlight=states[3])
    texts = sorted(b.get_text() for b in g.badges if b.get_visible())
    assert texts == ["+ 2 more tasks", "vm-read#1: a", "vm-write#1: not started"]
    first = g.png()
    g.update(lab, highlight=states[0])
    g.png()
    g.update(lab, highlight=states[3])
    assert g.png() is first, "a state shown before: its cached PNG"
    assert decode(first).shape[1] <= 840
