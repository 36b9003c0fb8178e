"""The notebooks and the widgets in a real JupyterLab, driven by Debian's Chromium.

At 1280×800 and 1920×1080, with the file browser open (a trainer's layout),
every notebook in ``notebooks/`` (copies, so autosave cannot touch the
repository) is run; then, on the page:

* every image in a widget or plot output is shown at ≥ 95 % of its natural
  width (figures scaled down had text of 5–7 px), and not wider than its
  output area (which would scroll or clip it);
* no button, label or dropdown is cut (``scrollWidth`` > ``clientWidth``);
* no "Error displaying widget", no traceback;
* no widget text below 11 CSS px.

A scratch notebook the test writes (so it does not depend on the notebooks'
contents) shows each widget; the test clicks through their states, checks
what they say and saves screenshots (``widget-stepper-step1.png`` … at 1280×800)
into ``artifacts/docs/``: a test writes into ``artifacts/`` only, never into the
tracked ``docs/`` (``make screenshots`` runs this test at 1280×800 and copies
``artifacts/docs/*.png`` into ``docs/``, where the README shows them).  After every
button click in every widget, no control of that widget (button, toggle, slider,
dropdown) may have moved or changed size: their boxes, relative to the widget, are
compared before and after (a click meant for one button must not land on another).
At 1280×800 the stepper's Step button and its graph must be on screen together.

One JupyterLab server and one Chromium serve every size: each notebook is run
once, at the first size, and its layout checked again after the window is
resized to the others (the layout depends on the window, not on how the
notebook got there); only the scratch widget notebook is run afresh per size,
for clicks from a known state.  The same browser run measures the
click-to-new-image latency of each widget's Step (``benchmarks.browser_latency``,
:data:`LATENCY_CLICKS` clicks each: the bench takes 40) into
``artifacts/browser-latency.json``, without asserting it (``make bench``
reports it).

``LABKIT_BROWSER_NOTEBOOKS=02,04`` and ``LABKIT_BROWSER_VIEWPORTS=1280x800``
bound a run while iterating.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import browser_latency as bl
from labkit.testing import need

ROOT = Path(__file__).resolve().parent.parent
#: what a labkit widget's stored output says (labkit.widgets' text/plain placeholder)
WIDGET_PLACEHOLDER = "an interactive widget; run this cell to use it"
ARTIFACTS = ROOT / "artifacts"
#: the screenshots meant for docs/ (``make screenshots`` copies them there)
DOCS_SHOTS = ARTIFACTS / "docs"
VIEWPORTS = [(1280, 800), (1920, 1080)]
MIN_FONT_PX = 11
LATENCY_CLICKS = 10  # recorded, not asserted here: enough to see a regression
MOVE_TOLERANCE_PX = 1


def _selected_viewports() -> list[tuple[int, int]]:
    want = os.environ.get("LABKIT_BROWSER_VIEWPORTS")
    if not want:
        return VIEWPORTS
    return [tuple(int(x) for x in v.split("x")) for v in want.split(",")]  # type: ignore[misc]


def _selected_notebooks() -> list[str]:
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    want = os.environ.get("LABKIT_BROWSER_NOTEBOOKS")
    if want:
        names = [n for n in names if any(n.startswith(w) for w in want.split(","))]
    return names


#: What the page must not show, measured in the page: images scaled below 95 % of their
#: natural width, cut controls, widget text below the minimum size.
_LAYOUT_JS = r"""(minFont) => {
    const out = {images: [], overflow: [], cut: [], small: [], widgets: 0};
    const outputs = document.querySelectorAll('.jp-OutputArea-output');
    for (const area of outputs) {
        for (const img of area.querySelectorAll('img')) {
            if (!img.naturalWidth) continue;
            if (!img.offsetParent) continue;  // not displayed (under a folded heading)
            if (img.clientWidth < 0.95 * img.naturalWidth)
                out.images.push(`${img.clientWidth}/${img.naturalWidth} px`);
            // shown whole: not wider than the output area (that would scroll or clip)
            const r = img.getBoundingClientRect(), a = area.getBoundingClientRect();
            if (r.right > a.right + 2)
                out.overflow.push(`${img.naturalWidth} px wide, ` +
                                  `${Math.round(r.right - a.right)} px past the output ` +
                                  `area (${Math.round(a.width)} px)`);
        }
    }
    const controls = document.querySelectorAll(
        '.jupyter-widgets button, .jupyter-widgets .widget-label, ' +
        '.jupyter-widgets.widget-label, .widget-dropdown select, .widget-readout');
    for (const el of controls) {
        if (!el.offsetParent) continue;  // not displayed
        if (el.scrollWidth > el.clientWidth + 1)
            out.cut.push(`${el.tagName} "${el.textContent.trim().slice(0, 60)}" ` +
                         `${el.scrollWidth}>${el.clientWidth}`);
    }
    const widgets = document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets');
    out.widgets = widgets.length;
    for (const root of widgets) {
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        while (walker.nextNode()) {
            const node = walker.currentNode;
            if (!node.textContent.trim()) continue;
            const el = node.parentElement;
            if (!el.offsetParent) continue;
            const size = parseFloat(getComputedStyle(el).fontSize);
            if (size < minFont)
                out.small.push(`${size}px "${node.textContent.trim().slice(0, 40)}"`);
        }
    }
    out.small = [...new Set(out.small)].slice(0, 20);
    return out;
}"""


def layout_problems(page) -> dict:
    return page.evaluate(_LAYOUT_JS, MIN_FONT_PX)


def errors_on_page(page) -> list[str]:
    found = []
    for sel in (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"):
        for el in page.query_selector_all(sel):
            text = el.inner_text()
            if "Traceback" in text or "Error" in text:
                found.append(text[:500])
    # in an output area only: notebook 00's prose tells trainees what that message means
    if page.locator(".jp-OutputArea-output", has_text="Error displaying widget").count():
        found.append("Error displaying widget")
    return found


def page_problems(page, what: str) -> list[str]:
    """Everything wrong on the page, one line each (empty: nothing)."""
    out = [f"{what}: error output: {e}" for e in errors_on_page(page)]
    found = layout_problems(page)
    out += [f"{what}: image shown at {x} (< 95% of natural)" for x in found["images"]]
    out += [f"{what}: image overflows: {x}" for x in found["overflow"]]
    out += [f"{what}: cut: {x}" for x in found["cut"]]
    out += [f"{what}: widget text below {MIN_FONT_PX} px: {x}" for x in found["small"]]
    return out


def check_page(page, what: str, later: list[str]) -> None:
    """Fail now on what the widgets decide (errors, scaling, cut controls, small text);
    keep in ``later`` what the figures' own widths decide (an image wider than the
    output area: labkit.plot sizes its figures), reported at the end."""
    problems = page_problems(page, what)
    now = [p for p in problems if ": image overflows: " not in p]
    assert now == [], "\n".join(now)
    later += [p for p in problems if p not in now]


# --- the scratch notebook: each widget, in the states the lesson is about ------------------

WIDGET_CELLS = [
    "from labkit import scenarios\n"
    "from labkit.widgets import RaceReplay, SchedulerPlayground, WorkflowStepper",
    "stepper = WorkflowStepper('start\\npwrite 5b 4K 0xbb\\nvread 5b 4K', size='128K')\n"
    "stepper.widget.add_class('probe-stepper')\nstepper.widget",
    "playground = SchedulerPlayground(scenarios.load('canonical'), design='none')\n"
    "playground.widget.add_class('probe-playground')\nplayground.widget",
    "blocked = SchedulerPlayground(scenarios.load('canonical'), design='2.8')\n"
    "blocked.widget.add_class('probe-blocked')\nblocked.widget",
    "replay = RaceReplay(scenarios.load('canonical'))\n"
    "replay.widget.add_class('probe-replay')\nreplay.widget",
    # notebook 07's: image fleecing, the guest as the writer, the backup client as a task
    "fleecer = WorkflowStepper('fleece\\nvwrite 5b 4K 0xbb\\ncread 5b 4K', graph='fleecing', "
    "design='2.12', size='128K')\nfleecer.widget.add_class('probe-fleecer')\nfleecer.widget",
    "from labkit.exercises import RACE07\n"
    "fleecing = SchedulerPlayground(RACE07, design='2.12')\n"
    "fleecing.widget.add_class('probe-fleecing')\nfleecing.widget",
    "fleece_replay = RaceReplay(RACE07)\n"
    "fleece_replay.widget.add_class('probe-fleece-replay')\nfleece_replay.widget",
]


#: Every control of a widget shown now: its box relative to the widget's own box, keyed by
#: an id the test gives the element (the same element before and after a click).
_BOXES_JS = r"""(sel) => {
    const root = document.querySelector(sel);
    const r0 = root.getBoundingClientRect();
    const out = {};
    const controls = root.querySelectorAll(
        'button, select, input, .slider-container');  // a slider's handle moves: its value
    for (const el of controls) {
        if (!el.offsetParent) continue;
        if (!el.dataset.probeId)
            el.dataset.probeId = 'c' + (window.__probeN = (window.__probeN || 0) + 1);
        const r = el.getBoundingClientRect();
        out[el.dataset.probeId] = {x: r.left - r0.left, y: r.top - r0.top, w: r.width,
                                   h: r.height, text: (el.textContent || el.value || '')
                                   .trim().slice(0, 40) || el.tagName};
    }
    return out;
}"""

#: Every shift seen, ``(widget, click, control, dx, dy, dw, dh)``: the test fails on any;
#: written to artifacts/widget-shifts.json for the report.
SHIFTS: list[tuple] = []


def control_boxes(page, probe: str) -> dict:
    return page.evaluate(_BOXES_JS, f".{probe}")


def moved_controls(before: dict, after: dict) -> list[tuple[str, float, float, float, float]]:
    """Controls present before and after whose box moved or changed size."""
    out = []
    for key, a in before.items():
        b = after.get(key)
        if b is None:
            continue
        d = (b["x"] - a["x"], b["y"] - a["y"], b["w"] - a["w"], b["h"] - a["h"])
        if any(abs(x) > MOVE_TOLERANCE_PX for x in d):
            out.append((a["text"], *(round(x, 1) for x in d)))
    return out


def click(page, probe: str, name: str) -> None:
    """Click the button ``name`` in widget ``probe``, wait for one of its images to
    change, and check that none of the widget's controls moved."""
    root = page.locator(f".{probe}")
    srcs = "(sel) => [...document.querySelectorAll(sel + ' img')].map(i => i.src).join(' ')"
    before = page.evaluate(srcs, f".{probe}")
    boxes = control_boxes(page, probe)
    button(root, name).click()
    page.wait_for_function(f"([sel, before]) => ({srcs})(sel) !== before",
                           arg=[f".{probe}", before], timeout=20_000)
    page.wait_for_timeout(200)
    moved = moved_controls(boxes, control_boxes(page, probe))
    SHIFTS.extend((f"{probe} at {page.viewport_size['width']}", name, *m) for m in moved)


def button(root, name: str):
    """The button whose text is ``name`` (its icon's glyph is not part of its text)."""
    return root.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def shot(page, probe: str, name: str, save: bool) -> None:
    """A screenshot of the widget; the window is made taller (same width, so the same
    layout) while it is taken, so that the notebook panel shows the whole widget."""
    el = page.locator(f".{probe}")
    size = page.viewport_size
    height = el.bounding_box()["height"]
    page.set_viewport_size({"width": size["width"],
                            "height": max(size["height"], int(height) + 300)})
    try:
        page.wait_for_timeout(300)
        el.scroll_into_view_if_needed()
        el.screenshot(path=str((DOCS_SHOTS if save else ARTIFACTS) / name))
    finally:
        page.set_viewport_size(size)
        page.wait_for_timeout(200)


#: The part of the page where the notebook's cells show (its scrolling panel).
_VISIBLE_JS = r"""(sel) => {
    let el = document.querySelector(sel);
    while (el && !(el.scrollHeight > el.clientHeight + 1 &&
                   /(auto|scroll)/.test(getComputedStyle(el).overflowY)))
        el = el.parentElement;
    const r = (el || document.documentElement).getBoundingClientRect();
    return {top: Math.max(r.top, 0), bottom: Math.min(r.bottom, window.innerHeight)};
}"""


def on_screen_together(page, probe: str, *parts) -> list[str]:
    """Scroll widget ``probe``'s top to the top of the notebook panel; the parts (locators)
    not wholly inside the panel's visible area, in words (empty: all on screen)."""
    page.locator(f".{probe}").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    view = page.evaluate(_VISIBLE_JS, f".{probe}")
    out = []
    for what, loc in parts:
        box = loc.bounding_box()
        if box is None or box["y"] < view["top"] - 1 or \
                box["y"] + box["height"] > view["bottom"] + 1:
            out.append(f"{what}: {box and round(box['y'])}-"
                       f"{box and round(box['y'] + box['height'])} px, visible "
                       f"{round(view['top'])}-{round(view['bottom'])} px")
    return out


def drive_widgets(page, save: bool, later: list[str],
                  viewport: tuple[int, int] = (1280, 800)) -> list[str]:
    """Click each widget through the states the lesson depends on; check what it says.
    Returns what did not hold still (checked by the caller once every size has run, so
    that one run reports every shift: the clicks go by the buttons' names, not their
    positions, and still reach their states)."""
    stepper = page.locator(".probe-stepper")
    label = stepper.locator(".labkit-step-label")
    assert "Step 1 is next" in label.inner_text()
    shifts_before = len(SHIFTS)
    off: list[str] = []
    if viewport == (1280, 800):
        off = on_screen_together(page, "probe-stepper", ("Step", button(stepper, "Step")),
                                 ("graph", stepper.locator(".labkit-graph")))
    for n, want in ((1, "Step 1"), (2, "Step 2"), (3, "Step 3"), (4, "VM read")):
        click(page, "probe-stepper", "Step")
        assert label.inner_text().startswith(want), label.inner_text()
        name = f"widget-stepper-step{n}.png" if n <= 3 else "widget-stepper-vmread.png"
        shot(page, "probe-stepper", name, save)
        check_page(page, f"stepper {want}", later)
    assert "what the VM should see" in stepper.locator(".labkit-parked").inner_text()

    play = page.locator(".probe-playground")
    click(page, "probe-playground", "Step vm-read#1")
    header = play.locator(".labkit-header").inner_text()
    assert header.startswith("You stepped vm-read#1: passed active and hidden (unallocated), "
                             "its read of the secondary disk"), header
    shot(page, "probe-playground", "widget-playground-parked-read.png", save)
    for _ in range(5):
        click(page, "probe-playground", "Step nbd-write#1")
    click(page, "probe-playground", "Undo")  # back one click, and forward again
    click(page, "probe-playground", "Step nbd-write#1")
    click(page, "probe-playground", "Step vm-read#1")
    banner = play.locator(".labkit-banner").inner_text()
    assert "You won" in banner and ("returned 0xbb for block 5 (from the secondary disk) "
                                    "where the VM should see 0x15") in banner, banner
    # not into docs/: the schedule played so far is exercise 4.1's answer
    shot(page, "probe-playground", "widget-playground-won.png", False)
    check_page(page, "playground won", later)

    blocked = page.locator(".probe-blocked")
    click(page, "probe-blocked", "Step vm-read#1")
    click(page, "probe-blocked", "Step nbd-write#1")
    words = blocked.locator(".labkit-task-words").all_inner_texts()
    assert any("waits for CowRequest of vm-read#1 on clusters 0-0" in x for x in words), words
    shot(page, "probe-blocked", "widget-playground-blocked.png", save)
    check_page(page, "playground blocked", later)

    replay = page.locator(".probe-replay")
    for _ in range(12):
        if button(replay, "▶").is_disabled():
            break
        click(page, "probe-replay", "▶")
    banner = replay.locator(".labkit-banner").inner_text()
    assert "Conflicting read at decision 10: vm-read#1 read block 5 — expected 0x15" in banner
    shot(page, "probe-replay", "widget-racereplay-violation.png", save)
    check_page(page, "racereplay violation", later)
    drive_fleecing_widgets(page, later)
    return [f"moved after a click (widget, click, control, dx, dy, dwidth, dheight px): {m}"
            for m in SHIFTS[shifts_before:]] + [
        f"stepper at 1280x800, not on screen with the Step button: {x}" for x in off]


def drive_fleecing_widgets(page, later: list[str]) -> None:
    """Notebook 07's widgets on a fleecing lab: the stepper through a guest write's steps
    and the client's read; the playground won by the client reading new data (2.12), then
    switched to 7.2, where the guest write waits for the client's frozen read; the race
    replay scrubbed to the 2.12 counterexample's violation.  Their
    screenshots go to artifacts/ (the won playground shows exercise 7.2's answer)."""
    size = page.viewport_size["width"]
    fleecer = page.locator(".probe-fleecer")
    label = fleecer.locator(".labkit-step-label")
    assert "the backup has started" in label.inner_text(), label.inner_text()
    for n, want in ((1, "Step 1"), (2, "Step 2"), (3, "Step 3"), (4, "Client read")):
        click(page, "probe-fleecer", "Step")
        assert label.inner_text().startswith(want), label.inner_text()
        shot(page, "probe-fleecer", f"widget-fleecing-stepper-{n}-{size}.png", False)
        check_page(page, f"fleecing stepper {want}", later)
    assert "when the backup started ✓" in fleecer.locator(".labkit-parked").inner_text()

    play = page.locator(".probe-fleecing")
    click(page, "probe-fleecing", "Step client-read#1")
    header = play.locator(".labkit-header").inner_text()
    assert header.startswith("You stepped client-read#1: passed fleece (unallocated), its "
                             "read of the live disk"), header
    shot(page, "probe-fleecing", f"widget-fleecing-parked-read-{size}.png", False)
    for _ in range(5):
        click(page, "probe-fleecing", "Step vm-write#1")
    click(page, "probe-fleecing", "Step client-read#1")
    banner = play.locator(".labkit-banner").inner_text()
    assert "You won — the backup client read data written after the backup started" in \
        banner, banner
    shot(page, "probe-fleecing", f"widget-fleecing-won-{size}.png", False)
    check_page(page, "fleecing playground won", later)
    click(page, "probe-fleecing", "7.2")  # the design switch: the same choices under 7.2
    words = play.locator(".labkit-task-words").all_inner_texts()
    assert any("frozen snapshot read of client-read#1" in x for x in words), words
    shot(page, "probe-fleecing", f"widget-fleecing-frozen-{size}.png", False)
    check_page(page, "fleecing playground 7.2", later)

    replay = page.locator(".probe-fleece-replay")
    for _ in range(12):
        if button(replay, "▶").is_disabled():
            break
        click(page, "probe-fleece-replay", "▶")
    banner = replay.locator(".labkit-banner").inner_text()
    assert "Point-in-time view broken at decision" in banner, banner
    shot(page, "probe-fleece-replay", f"widget-fleecing-replay-{size}.png", False)
    check_page(page, "fleecing racereplay violation", later)


def test_notebooks_and_widgets_in_jupyterlab(tmp_path):
    need(shutil.which("chromium") or Path(bl.CHROMIUM).exists(), "Debian's chromium",
         "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    need(sync_playwright, "the playwright Python package", "pip install -e '.[test]'")
    notebooks = _selected_notebooks()
    root = tmp_path / "lab"
    root.mkdir()
    for name in notebooks:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    # what the notebooks read beside them (06's recorded comparison), as a trainee has it
    shutil.copytree(ROOT / "notebooks" / "data", root / "data")
    bl.write_notebook(root / "zz-widgets.ipynb", WIDGET_CELLS)
    bl.write_notebook(root / "zz-latency.ipynb", bl.latency_cells(LATENCY_CLICKS))
    shutil.rmtree(DOCS_SHOTS, ignore_errors=True)  # only this run's shots are copied
    DOCS_SHOTS.mkdir(parents=True)
    latency: list[dict] = []
    problems: list[str] = []  # every notebook's, reported together at the end
    viewports = _selected_viewports()
    unsteady: list[str] = []  # controls that moved on a click; the stepper not fitting
    with bl.jupyterlab(root, tmp_path) as (url, token), sync_playwright() as pw:
        browser = bl.launch(pw)
        try:
            for name in notebooks:  # run once, checked at every size
                page = bl.open_notebook(browser, url, token, name, viewports[0])
                try:
                    bl.run_all_and_wait(page)
                    stem = name.removesuffix(".ipynb")
                    text = (root / name).read_text()
                    for i, viewport in enumerate(viewports):
                        size = f"{viewport[0]}x{viewport[1]}"
                        if i:
                            page.set_viewport_size({"width": viewport[0],
                                                    "height": viewport[1]})
                            page.wait_for_timeout(500)
                        page.screenshot(path=str(ARTIFACTS / f"{stem}-{size}.png"))
                        problems += page_problems(page, f"{name} at {size}")
                        # a widget the trainee edition shows after Run All (its stored
                        # output is the widget's picture and placeholder; a widget behind
                        # an unanswered exercise, as 05's RaceReplay, is not shown yet)
                        if WIDGET_PLACEHOLDER in text:
                            assert layout_problems(page)["widgets"] > 0, \
                                f"{name}: no widget rendered"
                        if stem.startswith("02") and viewport == (1280, 800):
                            step_notebook_02(page, stem)
                finally:
                    bl.shut_down_kernels(page, url, token)
                    page.close()
            for viewport in viewports:  # the widgets clicked from a fresh kernel per size
                size = f"{viewport[0]}x{viewport[1]}"
                page = bl.open_notebook(browser, url, token, "zz-widgets.ipynb", viewport)
                try:
                    bl.run_all_and_wait(page)
                    page.screenshot(path=str(ARTIFACTS / f"zz-widgets-{size}.png"))
                    problems += page_problems(page, f"zz-widgets.ipynb at {size}")
                    unsteady += drive_widgets(page, save=viewport == (1280, 800),
                                              later=problems, viewport=viewport)
                finally:
                    bl.shut_down_kernels(page, url, token)
                    page.close()
            page = bl.open_notebook(browser, url, token, "zz-latency.ipynb", (1280, 800))
            try:
                bl.run_all_and_wait(page)
                latency = bl.measure_all(page, LATENCY_CLICKS)
            finally:
                bl.shut_down_kernels(page, url, token)
                page.close()
        finally:
            browser.close()
            (ARTIFACTS / "widget-shifts.json").write_text(json.dumps(SHIFTS, indent=1) + "\n")
    assert unsteady == [], "widgets that do not hold still:\n" + "\n".join(unsteady)
    # recorded, not asserted: make bench reports it against its targets
    (ARTIFACTS / "browser-latency.json").write_text(json.dumps(latency, indent=1) + "\n")
    assert len(latency) == len(bl.SIZES) * len(bl.WIDGETS)
    problems = list(dict.fromkeys(problems))
    others = [p for p in problems if ": image overflows: " not in p]
    assert others == [], "\n".join(others)
    if problems:
        # Only figures wider than the output area are left: at 1280x800 with the file
        # browser open it is 848 px wide.  Their widths are labkit.plot's (issue 14,
        # item 6); reported as an expected failure until the figures fit, and this
        # test passes by itself once they do.
        pytest.xfail("figures wider than the output area (labkit.plot sizes them):\n"
                     + "\n".join(problems))


def step_notebook_02(page, stem: str) -> None:
    """Notebook 02's WorkflowStepper answers a click: its step label and plot change."""
    stepper = page.locator(".labkit-stepper").first
    stepper.scroll_into_view_if_needed()
    label = stepper.locator(".labkit-step-label")
    img = stepper.locator("img").first
    before_text, before_img = label.inner_text(), img.get_attribute("src")
    stepper.locator("button", has_text=re.compile(r"^\s*Step\s*$")).click()
    page.wait_for_function(
        "(src) => document.querySelector('.labkit-stepper img').src !== src",
        arg=before_img, timeout=20_000)
    assert label.inner_text() != before_text, "the step label did not change after Step"
    stepper.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{stem}-after-step.png"))
    shutil.copy(ARTIFACTS / f"{stem}-after-step.png", DOCS_SHOTS / "notebook-02.png")


@pytest.fixture(autouse=True)
def _no_stale_latency():
    (ARTIFACTS / "browser-latency.json").unlink(missing_ok=True)
    yield
