"""The Explorer in a real browser at 1600x1000: JupyterLab in headless Chromium shows the
panel with its roofline filling the output area's width (>= 85 %), a typed tile value the
engine refuses snaps back with the reason and a later threads (or batch) change still
redraws, with the figure's title naming what the controls say, a click on a point
opens its detail panel, and the bytes toggle re-places the points by simulated bytes. Screenshots go to artifacts/explorer_wide_*.png.

Servers and kernels come from tests/browser_support.py (a throw-away JupyterLab on
127.0.0.1); the page may reach nothing but that server. Requirements as tests/test_browser.py:
Chromium at /usr/bin/chromium and playwright; skipped locally without them, failed in CI.
"""
from __future__ import annotations

import contextlib
import re
import time
from urllib.parse import urlsplit

import pytest

from browser_support import (CHROMIUM, CHROMIUM_FLAGS, ROOT, Deadline,  # noqa: F401
                             browser_available, click_loneliest_point, jupyter_lab, warm_engine)

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 1600, "height": 1000}
STEP_SECONDS = 120
TEST_SECONDS = 280
PANEL = ".jp-OutputArea-output .widget-vbox:has(.js-plotly-plot)"
FIGURE = f"{PANEL} .js-plotly-plot"
NOTEBOOK = "explorer_wide"
CELLS = [
    "import workbench\nfrom workbench.widgets import Explorer\n"
    "explorer = Explorer(workbench.DEFAULT_MODEL, ceilings=workbench.measure_ceilings(), threads=1, repeats=1)",
    "explorer",
]
PROBLEMS = ("Error displaying widget", "Failed to load model class", "Traceback")

# Widths (CSS px) of the output area that holds the panel, of the plotly figure in it and of
# the figure's plotting area (between the axes' ends).
JS_WIDTHS = """(selector) => {
  const plot = document.querySelector(selector);
  const output = plot.closest('.jp-OutputArea-output');
  const svg = plot.querySelector('.main-svg');
  return {output: output.getBoundingClientRect().width, figure: svg.getBoundingClientRect().width,
          layout: plot._fullLayout.width, axes: plot._fullLayout.xaxis._length};
}"""
JS_TITLE = """(selector) => { const plot = document.querySelector(selector);
  return plot && plot.layout && plot.layout.title ? (plot.layout.title.text || '') : ''; }"""
JS_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
  .some(e => /\\| Idle$/.test(e.textContent.trim()))"""


@contextlib.contextmanager
def _page(root, tmp_path, deadline: Deadline):
    """A JupyterLab on `root` and a 1600x1000 Chromium page that may reach only it."""
    from playwright.sync_api import sync_playwright

    with jupyter_lab(root, tmp_path / "jupyter", start_seconds=deadline.left(STEP_SECONDS)) as lab, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                                             timeout=deadline.ms(STEP_SECONDS))
        try:
            context = browser.new_context(viewport=VIEWPORT)
            outside = []

            def only_the_server(route):
                if urlsplit(route.request.url).netloc == urlsplit(lab.url).netloc:
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()
            context.route("**/*", only_the_server)
            page = context.new_page()
            page.set_default_timeout(STEP_SECONDS * 1000)
            try:
                yield lab, page
                assert not outside, f"the page tried to reach beyond the server: {outside}"
            except Exception as error:
                with contextlib.suppress(Exception):
                    page.screenshot(path=ARTIFACTS / "explorer_wide_failure.png")
                raise AssertionError(f"{error}\n\njupyter lab log (tail):\n{lab.log_tail()}") from error
        finally:
            browser.close()


def _problems(page) -> list[str]:
    texts = page.locator(".jp-OutputArea-output").all_inner_texts()
    return [t[:400] for t in texts if any(p in t for p in PROBLEMS)]


def _wait_title(page, deadline: Deadline, pattern: str, what: str) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_function(f"([selector, pattern]) => new RegExp(pattern).test(({JS_TITLE})(selector))",
                               arg=[FIGURE, pattern], timeout=deadline.ms(STEP_SECONDS), polling=250)
    except PlaywrightTimeoutError as error:
        raise AssertionError(f"timed out waiting for {what}: the title is {page.evaluate(JS_TITLE, FIGURE)!r}") \
            from error
    return page.evaluate(JS_TITLE, FIGURE)


def _slider_handle(panel, page, label: str):
    slider = panel.locator(".widget-slider").filter(has=page.locator("label.widget-label", has_text=label))
    return slider.first.locator(".noUi-handle")


@pytest.mark.timeout(300)
def test_the_explorer_fills_the_width_snaps_back_a_refused_tile_redraws_after_and_opens_a_clicked_point(
        browser_available, warm_engine, tmp_path):
    import nbformat

    from workbench.figure_parts import short_name

    deadline = Deadline(TEST_SECONDS)
    ARTIFACTS.mkdir(exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    kernel = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS], metadata=kernel),
                   root / f"{NOTEBOOK}.ipynb")
    with _page(root, tmp_path, deadline) as (lab, page):
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}.ipynb?token={lab.token}", timeout=deadline.ms(STEP_SECONDS))
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
        page.wait_for_function(JS_IDLE, timeout=deadline.ms(STEP_SECONDS), polling=250)
        page.locator("li.lm-MenuBar-item", has_text="Run").click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        panel = page.locator(PANEL)
        panel.wait_for(timeout=deadline.ms(STEP_SECONDS))
        page.locator(f"{FIGURE} .main-svg").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
        _wait_title(page, deadline, "1 thread", "the first roofline")
        assert not _problems(page), _problems(page)
        time.sleep(1.0)                                  # let the figure settle at its final size
        panel.scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "explorer_wide_start.png")

        # ---- the figure fills the output area's width
        widths = page.evaluate(JS_WIDTHS, FIGURE)
        assert widths["figure"] >= 0.85 * widths["output"], widths
        assert widths["axes"] >= 0.85 * widths["output"], widths        # the plotting area itself, too
        assert widths["output"] > 1000, widths           # at 1600 px the output area is wide

        # ---- a refused typed tile snaps back and says why
        box = panel.locator(".tile-typed-pointwise_channels input")
        box.fill("20")
        box.press("Enter")
        import engine
        default = engine.Tiles().pointwise_channels
        page.wait_for_function(f"(selector) => document.querySelector(selector).value === '{default}'",
                               arg=f"{PANEL} .tile-typed-pointwise_channels input",
                               timeout=deadline.ms(30), polling=200)
        message = panel.locator(".widget-html-content", has_text="refused").first
        message.wait_for(timeout=deadline.ms(30))
        assert "multiple of 16" in message.inner_text()
        page.screenshot(path=ARTIFACTS / "explorer_wide_refused.png")

        # ---- a later change still redraws: threads (when there are two cores), then batch
        if engine.available_cores() >= 2:
            handle = _slider_handle(panel, page, "threads")
            handle.focus()
            handle.press("ArrowRight")
            title = _wait_title(page, deadline, "2 threads", "the roofline at 2 threads after the refused value")
            assert f"pointwise channels {default}" in title
        select = panel.locator(".widget-dropdown").filter(has=page.locator("label", has_text="batch")).locator("select")
        select.select_option(label="2")
        title = _wait_title(page, deadline, "batch 2", "the roofline at batch 2")
        assert f"pointwise channels {default}" in title

        # ---- a click on a point opens its detail panel
        page.wait_for_function(JS_IDLE, timeout=deadline.ms(STEP_SECONDS), polling=250)
        target = click_loneliest_point(page, FIGURE, deadline)      # returns once plotly reported the click
        detail = panel.locator(".step-detail")
        detail.wait_for(timeout=deadline.ms(STEP_SECONDS))          # the kernel's answer
        text = detail.inner_text()
        assert target["layer"] in text and "at every level" in text and "bytes moved" in text
        assert re.search(r"DRAM", text)
        row = panel.locator(".roofline-layer-rows select")
        picked = row.evaluate("s => s.selectedOptions.length ? s.selectedOptions[0].text : ''")
        assert short_name(target["layer"]) in picked
        page.screenshot(path=ARTIFACTS / "explorer_wide_clicked.png")
        detail.scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "explorer_wide_detail.png")
        assert not _problems(page), _problems(page)

        # ---- the bytes toggle re-places the points by a cache simulation of the configuration shown
        panel.locator(".widget-toggle-buttons button", has_text="simulated").click()
        title = _wait_title(page, deadline, "points by simulated bytes", "the roofline placed by simulated bytes")
        assert "batch 2" in title
        assert not _problems(page), _problems(page)


@pytest.mark.timeout(120)
def test_in_the_report_the_level_buttons_recolour_the_bars_as_the_header_counts_and_the_table_sorts_and_filters(
        browser_available, tmp_path):
    from playwright.sync_api import sync_playwright

    from test_roofline import LEVELS, make_ceilings, make_profile
    from workbench.report import memory_bound_counts, write_report

    ceilings = make_ceilings()
    profile = make_profile(ceilings=ceilings)
    write_report(profile, tmp_path, ceilings=ceilings, level="L2", images=False)
    counts = memory_bound_counts(profile, ceilings)
    assert len(set(counts.values())) > 1
    memory_bars = """() => { const bars = document.getElementById('time-bars');
      const trace = bars.data.find(t => t.meta === 'bound:memory'); return trace.y ? trace.y.length : 0; }"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto((tmp_path / "report.html").as_uri())
            page.wait_for_function("() => document.getElementById('time-bars') && "
                                   "document.getElementById('time-bars').data", timeout=30_000)
            assert page.evaluate(memory_bars) == counts["L2"]
            for level in LEVELS:
                page.locator("#roofline .updatemenu-button", has_text=f"AI at {level}").click()
                page.wait_for_function(f"() => ({memory_bars})() === {counts[level]}", timeout=10_000)
                title = page.evaluate("() => document.getElementById('time-bars').layout.title.text")
                assert f"{counts[level]} of " in title and f"at {level}" in title
            page.screenshot(path=ARTIFACTS / "report_bars_at_DRAM.png", full_page=True)
            # the layers table: the filter box keeps matching rows, a header click sorts by its numbers
            page.fill("#layers-filter", "depthwise")
            shown_ops = page.evaluate("""() => [...document.querySelectorAll('#layers tbody tr')]
                .filter(r => r.style.display !== 'none').map(r => r.cells[1].textContent)""")
            assert shown_ops and set(shown_ops) == {"depthwise"}
            page.fill("#layers-filter", "")
            page.locator("#layers th", has_text="ms").first.click()
            ms = page.evaluate("""() => [...document.querySelectorAll('#layers tbody tr')]
                .map(r => parseFloat(r.cells[4].getAttribute('data-value')))""")
            assert ms == sorted(ms, reverse=True) and len(ms) == len(profile)
        finally:
            browser.close()
