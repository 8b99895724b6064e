"""End to end in a real browser: JupyterLab, in headless Chromium, runs notebook 01 and
the Explorer's roofline moves when its core-count slider moves; a click on a point of
the Explorer's roofline selects that step (the step picker and the ring on the figure);
and each notebook, opened by a double-click in `make lab`'s own JupyterLab (lab/launch.py
on the repository's notebooks/, with the settings `make` installs), runs clean with Run
All, its figures are saved as screenshots (artifacts/notebook_<name>_figure<n>.png), and
a save leaves the tracked file and `git status --porcelain` as they were.

What headless tests of the widget cannot see: that the JupyterLab front end has the
ipywidgets, anywidget and plotly extensions and renders the panel (not "Error displaying
widget"), that the notebook runs top to bottom in the venv's kernel without a traceback,
and that a slider moved in the page reaches the kernel, re-measures and redraws the figure
in the page.

The test starts `jupyter lab` from the venv on 127.0.0.1 (free port, random token, every
Jupyter directory in a temporary folder, news and update checks off; tests/browser_support.py),
drives Debian's Chromium (/usr/bin/chromium, never a downloaded browser) with Playwright's
sync API, aborts and reports any request the page makes to anything but that server,
and saves screenshots of the panel before and after into artifacts/ (gitignored). Every
wait is bounded (at most STEP_SECONDS each, TEST_SECONDS for the whole); the server, its
kernels and the browser are stopped in `finally`/context managers even when it fails.

Requirements: Chromium at /usr/bin/chromium (`make test` installs Debian's `chromium` when
it is missing) and playwright (the test extra). In CI (CI set) a missing one fails the
test; elsewhere it skips with the reason.
"""
from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from browser_support import (CHROMIUM, CHROMIUM_FLAGS, ROOT, Deadline,  # noqa: F401
                             browser_available, click_loneliest_point, jupyter_lab, make_lab, prepare_root,
                             warm_engine)

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "artifacts"
NOTEBOOK = "01_quickstart"
STEP_SECONDS = 120        # the longest any single wait may take
TEST_SECONDS = 270        # every wait of the test together (pytest-timeout backstops at 300 s)
VIEWPORT = {"width": 1400, "height": 1300}

# In the page: the Explorer (the ipywidgets VBox that holds a plotly figure) and its figure.
PANEL = ".jp-OutputArea-output .widget-vbox:has(.js-plotly-plot)"
FIGURE = f"{PANEL} .js-plotly-plot"
PROBLEMS = ("Error displaying widget", "Failed to load model class", "Traceback")

# JavaScript run in the page ------------------------------------------------------------

# True once every code cell shows an execution count ([n]:, none [*]: or [ ]:), the
# notebook's execution indicator and the status bar's kernel say idle; or as soon as an
# output shows an error (so a failing run is reported at once, not after a timeout).
JS_RUN_FINISHED = """([problems]) => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
    .map(p => p.textContent.trim());
  const errors = [...document.querySelectorAll('.jp-OutputArea-output')].some(o =>
    o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
    || problems.some(text => (o.textContent || '').includes(text)));
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const kernelIdle = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(e => /\\| Idle$/.test(e.textContent.trim()));
  return errors || (prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p))
                    && indicator && indicator.dataset.status === 'idle' && kernelIdle);
}"""

# The notebook's static plotly figures (roofline, time bars: plotly's mime renderer) are
# drawn: each such output (the plot's div itself) holds its SVG.
JS_STATIC_FIGURES_DRAWN = """() => {
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output.jp-RenderedPlotly')];
  return outputs.length >= 2 && outputs.every(o => o.querySelector('.main-svg'));
}"""

# Every output that is an error or stderr stream, or whose text names a known failure.
JS_PROBLEMS = """([problems]) => {
  const found = [];
  for (const output of document.querySelectorAll('.jp-OutputArea-output')) {
    const text = output.innerText || output.textContent || '';
    if (output.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr')
      found.push('error or stderr output: ' + text.slice(0, 800));
    for (const problem of problems)
      if (text.includes(problem)) found.push(problem + ': ' + text.slice(0, 800));
  }
  return found;
}"""

# A JSON summary of what the figure shows: its title and every trace's name, x and y.
JS_FIGURE_DATA = """(selector) => {
  const plot = document.querySelector(selector);
  if (!plot || !Array.isArray(plot.data) || plot.data.length === 0) return null;
  const values = v => (v == null ? null : (ArrayBuffer.isView(v) || Array.isArray(v)) ? Array.from(v) : v);
  const title = plot.layout && plot.layout.title ? (plot.layout.title.text || plot.layout.title) : null;
  return JSON.stringify({title: title,
                         traces: plot.data.map(t => ({name: t.name, x: values(t.x), y: values(t.y)}))});
}"""


def _figure_data(page) -> str | None:
    return page.evaluate(JS_FIGURE_DATA, FIGURE)


def _problems(page) -> list[str]:
    return page.evaluate(JS_PROBLEMS, [list(PROBLEMS)])


@contextlib.contextmanager
def _waiting_for(what: str):
    """Report a Playwright timeout as a failure that names what the test waited for."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        yield
    except PlaywrightTimeoutError as error:
        raise AssertionError(f"timed out waiting for {what}: {str(error).splitlines()[0]}") from error


def _wait_for_run(page, deadline: Deadline, what: str) -> None:
    """Wait until the kernel has run everything queued (or an output shows an error), then
    fail on any error output, stderr output or known widget failure in the page."""
    with _waiting_for(f"{what} to finish"):
        page.wait_for_function(JS_RUN_FINISHED, arg=[list(PROBLEMS)], timeout=deadline.ms(STEP_SECONDS),
                               polling=250)
    problems = _problems(page)
    assert not problems, f"{what}:\n" + "\n".join(problems)


def _kernel_command_lines(lab) -> list[list[str]]:
    return [p.cmdline() for p in lab.descendants() if any("ipykernel" in part for part in p.cmdline())]


def _is_this_venvs_python(executable: str) -> bool:
    """`executable` is a python of this venv (python or python3 in its bin folder)."""
    path, ours = Path(executable), Path(sys.executable)
    return path.parent == ours.parent and path.resolve() == ours.resolve()


def _slider_handle(page, label: str):
    """The focusable handle of the Explorer's IntSlider labelled `label`."""
    slider = page.locator(f"{PANEL} .widget-slider").filter(has=page.locator("label.widget-label", has_text=label))
    return slider.first.locator(".noUi-handle")


def _slider_value(handle, bound: str = "now") -> int:
    return int(float(handle.get_attribute(f"aria-value{bound}")))


@contextlib.contextmanager
def _lab_page(root: Path | None, tmp_path: Path, deadline: Deadline, phases: dict, started: float,
              viewport: dict = VIEWPORT, intercept: bool = True):
    """A JupyterLab serving `root` (ROOFLINE_FAST=1 in its kernels; root None: `make lab`'s
    own command on the repository's notebooks/) and a Chromium page on it that may reach
    nothing but that server. Yields (lab, page). On a failure inside, a screenshot and the
    server's log tail are added to the error; the page, browser and server are closed in
    any case.

    With `intercept`, every request passes through Playwright, which aborts any not for the
    server. Without it (for a test that saves a notebook: Playwright's interception loses
    the large body of a save after Run All, and the save never completes), Chromium cannot
    resolve any host name (--host-resolver-rules) and every request not for the server is
    recorded and fails the test all the same."""
    from playwright.sync_api import sync_playwright

    server = make_lab(tmp_path / "jupyter", env={"ROOFLINE_FAST": "1"}, start_seconds=deadline.left(STEP_SECONDS)) \
        if root is None else jupyter_lab(root, tmp_path / "jupyter", env={"ROOFLINE_FAST": "1"},
                                         start_seconds=deadline.left(STEP_SECONDS))
    with server as lab, sync_playwright() as playwright:
        phases["server up"] = time.monotonic() - started
        flags = CHROMIUM_FLAGS if intercept else \
            [*CHROMIUM_FLAGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]     # no host name resolves
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags,
                                             timeout=deadline.ms(STEP_SECONDS))
        try:
            context = browser.new_context(viewport=viewport)
            outside = []                    # requests the page tried to send past the server

            def only_the_server(route):
                if urlsplit(route.request.url).netloc == urlsplit(lab.url).netloc:
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            def note_outside(request):
                if urlsplit(request.url).scheme in ("http", "https", "ws", "wss") and \
                        urlsplit(request.url).netloc != urlsplit(lab.url).netloc:
                    outside.append(request.url)
            if intercept:
                context.route("**/*", only_the_server)
            else:
                context.on("request", note_outside)
            page = context.new_page()
            page.set_default_timeout(STEP_SECONDS * 1000)
            page_errors = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            try:
                yield lab, page
                assert not outside, f"the page tried to reach beyond the server: {outside}"
            except Exception as error:
                with contextlib.suppress(Exception):
                    page.screenshot(path=ARTIFACTS / "browser_failure.png")
                raise AssertionError(f"{error}\n\nscreenshot: {ARTIFACTS / 'browser_failure.png'}\n"
                                     f"page errors: {page_errors[-5:]}\nrequests blocked: {outside[:5]}\n\n"
                                     f"jupyter lab log (tail):\n"
                                     f"{lab.log_tail()}") from error
        finally:
            browser.close()


def _open_and_run_all(lab, page, deadline: Deadline, notebook: str, phases: dict, started: float):
    """Open `notebook` (it starts in the venv's default kernel, python3), check the kernel is
    this venv's python, Run All Cells and wait until every cell has run without a failure;
    then wait for the Explorer's panel and its figure. Returns the panel's locator."""
    page.goto(f"{lab.url}/lab/tree/{notebook}.ipynb?token={lab.token}", timeout=deadline.ms(STEP_SECONDS))
    with _waiting_for("the notebook to open and its kernel to be idle"):
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
        page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle").wait_for(
            timeout=deadline.ms(STEP_SECONDS))
    (session,) = lab.api("/api/sessions")
    assert session["path"] == f"{notebook}.ipynb"
    assert session["kernel"]["name"] == lab.api("/api/kernelspecs")["default"] == "python3"
    kernels = _kernel_command_lines(lab)
    assert len(kernels) == 1 and _is_this_venvs_python(kernels[0][0]), \
        f"the kernel is not this venv's python ({sys.executable}): {kernels}"
    phases["notebook open"] = time.monotonic() - started

    # ---- Run > Run All Cells; every code cell runs, none fails
    page.locator("li.lm-MenuBar-item", has_text="Run").click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    _wait_for_run(page, deadline, "running all cells")
    phases["all cells run"] = time.monotonic() - started

    panel = page.locator(PANEL)
    with _waiting_for("the Explorer panel (ipywidgets VBox with a plotly FigureWidget) to render; "
                      "is @jupyter-widgets/jupyterlab-manager enabled?"):
        panel.wait_for(timeout=deadline.ms(STEP_SECONDS))
        page.locator(f"{FIGURE} .main-svg").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
        page.wait_for_function(JS_FIGURE_DATA, arg=FIGURE, timeout=deadline.ms(STEP_SECONDS))
    assert panel.count() == 1, "expected one Explorer panel"
    assert not _problems(page), "\n".join(_problems(page))
    return panel


def _fresh_artifacts(pattern: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob(pattern):
        old.unlink()


@pytest.mark.timeout(300)
def test_quickstart_runs_in_jupyterlab_and_the_roofline_moves_with_the_core_slider(browser_available, warm_engine,
                                                                                    tmp_path):
    from playwright.sync_api import expect

    started = time.monotonic()
    deadline = Deadline(TEST_SECONDS)
    _fresh_artifacts("browser_explorer_*.png")
    root = tmp_path / "root"
    root.mkdir()
    prepare_root(root, [NOTEBOOK])
    phases = {}                             # seconds since start at the end of each phase

    with _lab_page(root, tmp_path, deadline, phases, started) as (lab, page):
        panel = _open_and_run_all(lab, page, deadline, NOTEBOOK, phases, started)
        assert page.locator(".jp-Notebook .jp-CodeCell").count() >= 8
        # ---- the static figures are drawn too
        with _waiting_for("the notebook's static plotly figures to be drawn"):
            page.wait_for_function(JS_STATIC_FIGURES_DRAWN, timeout=deadline.ms(STEP_SECONDS), polling=250)
        assert panel.locator(".widget-slider").count() == 5       # threads and the four tiles
        before = _figure_data(page)

        # the threads slider starts at every core; on a 1-core machine it cannot
        # move, so a tile slider (depthwise rows, 16 by default) moves instead
        moved = "threads"
        handle = _slider_handle(page, moved)
        assert _slider_value(handle) == _slider_value(handle, "max")
        if _slider_value(handle) == _slider_value(handle, "min"):
            moved = "depthwise rows"
            handle = _slider_handle(page, moved)
        value = _slider_value(handle)
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=ARTIFACTS / "browser_explorer_before.png")

        # ---- one step down with the keyboard: the kernel measures again, the figure moves
        handle.focus()
        handle.press("ArrowLeft")
        expect(handle).to_have_attribute("aria-valuenow", re.compile(rf"^{value - 1}(\.0*)?$"),
                                         timeout=deadline.ms(10))
        with _waiting_for(f"the roofline's data to change after moving {moved} from {value} to {value - 1}"):
            page.wait_for_function(f"([selector, before]) => ({JS_FIGURE_DATA})(selector) !== before",
                                   arg=[FIGURE, before], timeout=deadline.ms(STEP_SECONDS), polling=250)
        _wait_for_run(page, deadline, f"measuring again with {moved} = {value - 1}")
        with _waiting_for("the Explorer's status line to report the new measurement"):
            panel.locator(".widget-label", has_text="measured in").wait_for(timeout=deadline.ms(STEP_SECONDS))
        after = _figure_data(page)
        assert after is not None and after != before
        message = panel.locator(".widget-html-content").first.inner_text()
        assert "error" not in message.lower(), f"the Explorer's message area: {message}"
        if moved == "threads":        # the figure's title names the thread count
            assert f"{value - 1} thread" in json.loads(after)["title"], json.loads(after)["title"]
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=ARTIFACTS / "browser_explorer_after.png")
        phases["slider moved, figure redrawn"] = time.monotonic() - started
    phases["server and browser stopped"] = time.monotonic() - started
    print("browser test phases (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
          + f"; killed by force at shutdown: {lab.forced or 'nothing'}")


# The label of the option the Explorer's step picker (the dropdown labelled "tiles of") shows.
JS_PICKED = """(selector) => {
  const picker = [...document.querySelectorAll(selector + ' .widget-dropdown')]
    .find(d => (d.querySelector('label') || {}).textContent === 'tiles of');
  const select = picker && picker.querySelector('select');
  // ipywidgets writes the labels' spaces as no-break spaces
  return select && select.selectedOptions.length ? select.selectedOptions[0].textContent.replace(/\u00a0/g, ' ') : '';
}"""

# The Explorer's selection ring (the "selection" trace): its x and y, or null when empty.
JS_RING = """(selector) => {
  const plot = document.querySelector(selector);
  const ring = plot && plot.data.find(t => t.meta === 'selection');
  if (!ring || !ring.x || ring.x.length === 0) return null;
  return JSON.stringify([Array.from(ring.x), Array.from(ring.y), ring.customdata ? Array.from(ring.customdata) : []]);
}"""

# A notebook of two cells: an Explorer of the default model (one thread, one timed run per
# measurement, this machine's cached ceilings), displayed.
CLICK_NOTEBOOK = "explorer_click"
CLICK_CELLS = [
    "import workbench\nfrom workbench.widgets import Explorer\n"
    "explorer = Explorer(workbench.DEFAULT_MODEL, ceilings=workbench.measure_ceilings(), threads=1, repeats=1)",
    "explorer",
]


@pytest.mark.timeout(300)
def test_a_click_on_a_point_of_the_explorers_roofline_selects_its_step(browser_available, warm_engine, tmp_path):
    import nbformat

    from workbench.figure_parts import short_name

    started = time.monotonic()
    deadline = Deadline(TEST_SECONDS)
    _fresh_artifacts("browser_click_*.png")
    root = tmp_path / "root"
    root.mkdir()
    kernel = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CLICK_CELLS], metadata=kernel),
                   root / f"{CLICK_NOTEBOOK}.ipynb")
    phases = {}

    with _lab_page(root, tmp_path, deadline, phases, started) as (lab, page):
        panel = _open_and_run_all(lab, page, deadline, CLICK_NOTEBOOK, phases, started)
        picker = panel.locator(".widget-dropdown").filter(has=page.locator("label", has_text="tiles of"))
        select = picker.locator("select")
        assert select.count() == 1, "expected one step picker"
        assert page.evaluate(JS_PICKED, PANEL) == "every step"
        assert page.evaluate(JS_RING, FIGURE) is None
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=ARTIFACTS / "browser_click_before.png")

        # ---- hover (plotly picks the point under the mouse), then click it: returns once
        # plotly has reported the click on that step; then the kernel's answer, the picker
        target = click_loneliest_point(page, FIGURE, deadline)
        assert target["gap"] > 8, f"no point clear of its neighbours to click: {target}"
        with _waiting_for(f"the step picker to show {target['layer']} after the click"):
            page.wait_for_function(f"([selector, label]) => ({JS_PICKED})(selector).startsWith(label + ' · ')",
                                   arg=[PANEL, short_name(target["layer"])], timeout=deadline.ms(STEP_SECONDS),
                                   polling=250)
        with _waiting_for("the ring to be drawn on the clicked point"):
            page.wait_for_function(f"(selector) => ({JS_RING})(selector) !== null", arg=FIGURE,
                                   timeout=deadline.ms(STEP_SECONDS), polling=250)
        ring_x, ring_y, ring_names = json.loads(page.evaluate(JS_RING, FIGURE))
        assert ring_names == [target["layer"]]
        # the ring sits on the clicked marker: both placed on the screen as the page is laid out
        # now (the picker's note may have grown a line since the click, moving the figure down)
        ring_at = page.evaluate(JS_SCREEN_AT, [FIGURE, ring_x[0], ring_y[0]])
        marker = [p for p in page.evaluate(JS_MARKERS, FIGURE) if p["layer"] == target["layer"]]
        assert len(marker) == 1, marker
        assert abs(ring_at[0] - marker[0]["x"]) < 1 and abs(ring_at[1] - marker[0]["y"]) < 1, (ring_at, marker)
        assert "tiles of" in picker.inner_text()
        assert not _problems(page), "\n".join(_problems(page))
        panel.screenshot(path=ARTIFACTS / "browser_click_after.png")
        phases["point clicked, step selected"] = time.monotonic() - started
    print("browser click test phases (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))


# Where the data point (x, y) of the figure is on the screen (CSS pixels), and every step
# marker's step and screen position.
JS_SCREEN_AT = """([selector, x, y]) => { const plot = document.querySelector(selector);
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  return [box.left + layout.xaxis._offset + layout.xaxis.c2p(x), box.top + layout.yaxis._offset + layout.yaxis.c2p(y)]; }"""
JS_MARKERS = """(selector) => { const plot = document.querySelector(selector);
  const layout = plot._fullLayout, box = plot.getBoundingClientRect(), points = [];
  for (const trace of plot.data) {
    if (typeof trace.meta !== 'string' || !trace.meta.startsWith('ops:') || !trace.x) continue;
    Array.from(trace.x).forEach((x, i) => {
      if (x == null || trace.y[i] == null) return;
      points.push({layer: trace.customdata[i], x: box.left + layout.xaxis._offset + layout.xaxis.c2p(x),
                   y: box.top + layout.yaxis._offset + layout.yaxis.c2p(trace.y[i])});
    });
  }
  return points; }"""


# ---------------------------------------------------------------------------- every notebook, as a user runs it

NOTEBOOK_FILES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
USER_VIEWPORT = {"width": 1600, "height": 1000}     # the screen
NOTEBOOK_SECONDS = 560                               # every wait of one notebook's test together
PLOTS = ".jp-OutputArea-output.js-plotly-plot, .jp-OutputArea-output .js-plotly-plot"   # static figures, the Explorer


def _git_status() -> list[str]:
    result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def _double_click_open(lab, page, deadline: Deadline, name: str) -> None:
    """Open `name` as a user does in `make lab`'s JupyterLab: a double-click in the file
    browser. It must open as a notebook (the project's default viewer for .py files), in
    this venv's python3 kernel."""
    page.goto(f"{lab.url}/lab?token={lab.token}", timeout=deadline.ms(STEP_SECONDS))
    item = page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$")))
    with _waiting_for(f"{name} in the file browser"):
        item.wait_for(timeout=deadline.ms(STEP_SECONDS))
    item.dblclick()
    with _waiting_for(f"{name} to open as a notebook on double-click (jupytext's default viewer for .py "
                      f"files, installed by make into .venv/etc/jupyter/labconfig/)"):
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
    assert page.locator(".jp-FileEditor").count() == 0, f"{name} also opened in the text editor"
    with _waiting_for("the kernel to be idle"):
        page.locator(".jp-StatusBar-TextItem", has_text="Python 3 (ipykernel) | Idle").wait_for(
            timeout=deadline.ms(STEP_SECONDS))
    (session,) = lab.api("/api/sessions")
    assert session["path"] == name, session          # (its "type" is "file": jupytext serves the .py)
    kernels = _kernel_command_lines(lab)
    assert len(kernels) == 1 and _is_this_venvs_python(kernels[0][0]), \
        f"the kernel is not this venv's python ({sys.executable}): {kernels}"


def _save(page, deadline: Deadline, path: Path, modified_before: int) -> None:
    """File > Save (labelled after the document's file type: "Save Notebook", or "Save
    Python File" for a jupytext .py); wait until the file on disk was written and the tab
    is clean."""
    page.locator("li.lm-MenuBar-item", has_text="File").click()
    page.get_by_role("menuitem", name=re.compile(r"^Save(?! As| All| and)")).first.click(
        timeout=deadline.ms(30))
    ends = time.monotonic() + deadline.left(60)
    while path.stat().st_mtime_ns == modified_before and time.monotonic() < ends:
        time.sleep(0.25)
    assert path.stat().st_mtime_ns != modified_before, f"saving did not write {path.name}"
    with _waiting_for("the notebook's tab to show it saved (not dirty)"):
        page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')",
                               timeout=deadline.ms(30), polling=250)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", NOTEBOOK_FILES, ids=[p.stem for p in NOTEBOOK_FILES])
def test_each_notebook_opens_by_double_click_in_make_lab_runs_clean_and_saving_changes_no_tracked_file(
        notebook, browser_available, warm_engine, tmp_path):
    """`make lab`'s JupyterLab on the repository's notebooks/: double-click the notebook,
    Run All (no error, no stderr, no widget failure; its figures and the Explorer drawn),
    screenshot each figure into artifacts/, save, stop the server; then the file is byte
    for byte what it was (and was written: the save happened) and `git status --porcelain`
    shows nothing new (empty, on a tree that was clean; on a tree with work in progress,
    the same entries as before)."""
    started = time.monotonic()
    deadline = Deadline(NOTEBOOK_SECONDS)
    _fresh_artifacts(f"notebook_{notebook.stem}_*.png")
    status_before, text_before = _git_status(), notebook.read_bytes()
    modified_before = notebook.stat().st_mtime_ns
    phases = {}

    try:
        with _lab_page(None, tmp_path, deadline, phases, started, viewport=USER_VIEWPORT,
                       intercept=False) as (lab, page):
            _double_click_open(lab, page, deadline, notebook.name)
            phases["opened by double-click"] = time.monotonic() - started
            page.locator("li.lm-MenuBar-item", has_text="Run").click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            _wait_for_run(page, deadline, f"running all cells of {notebook.name}")
            phases["all cells run"] = time.monotonic() - started
            with _waiting_for("the notebook's static plotly figures to be drawn"):
                page.wait_for_function(JS_STATIC_FIGURES_DRAWN, timeout=deadline.ms(STEP_SECONDS), polling=250)
            with _waiting_for("the Explorer's panel and figure"):
                page.locator(f"{FIGURE} .main-svg").first.wait_for(timeout=deadline.ms(STEP_SECONDS))
            assert not _problems(page), "\n".join(_problems(page))
            plots = page.locator(PLOTS)
            assert plots.count() >= 3, f"expected at least two figures and the Explorer, saw {plots.count()}"
            for index in range(plots.count()):
                plot = plots.nth(index)
                plot.scroll_into_view_if_needed()
                plot.screenshot(path=ARTIFACTS / f"notebook_{notebook.stem}_figure{index + 1}.png")
            phases["figures saved"] = time.monotonic() - started
            _save(page, deadline, notebook, modified_before)
            phases["saved"] = time.monotonic() - started

        assert notebook.read_bytes() == text_before, f"saving in JupyterLab changed {notebook.name}"
        status_after = _git_status()
        if not status_before:
            assert status_after == [], f"git status after a run and a save:\n" + "\n".join(status_after)
        else:
            assert sorted(set(status_after) - set(status_before)) == [], "new in git status after a run and a save"
    finally:
        if notebook.read_bytes() != text_before:      # a failed check never leaves the tracked file changed
            notebook.write_bytes(text_before)
    print(f"{notebook.name} phases (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
