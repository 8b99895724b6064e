"""Support for tests/test_browser.py: a throw-away JupyterLab server and what it needs.

- `prepare_root` copies the jupytext notebooks into a temporary root as .ipynb files.
- `jupyter_lab` runs `jupyter lab` from this interpreter's environment (the project's venv)
  on 127.0.0.1, on a free port, with a random token, in its own process group, with every
  Jupyter directory (config, data, runtime, user settings, workspaces) inside a temporary
  folder, and with the news feed, the update check and the PyPI extension manager off, so
  nothing reaches the network. On exit it shuts the server and its kernels down and kills
  whatever is left of them (process group, then every descendant recorded while it ran).
- `make_lab` runs `make lab`'s own command (lab/launch.py: the repository's notebooks/,
  127.0.0.1, the project's JupyterLab settings installed in the venv) with the same
  isolation, and checks it printed the URL it serves.
- `Deadline` bounds a sequence of waits by one overall budget and a cap per wait.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
LAUNCHER = ROOT / "lab" / "launch.py"         # `make lab`'s command (Makefile: LAB_COMMAND)
# Flags for a test's JupyterLab: nothing reaches the network
OFFLINE_FLAGS = ["--LabApp.news_url=None",                                        # no announcements feed
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                 "--LabApp.extension_manager=readonly"]                           # no PyPI queries

# Front-end settings of the throw-away Lab (user-settings files, JSON): no news or update
# check (both would fetch from the internet), no notification toasts over the page, no
# autosave (nothing is written back while the test runs), and every cell attached to the
# DOM (windowingMode "none"), so the test can see every output without scrolling.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False,
                                                    "doNotDisturbMode": True},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


class Deadline:
    """An overall time budget (seconds) for a test's waits; `ms(cap)` is the time left for
    the next wait in milliseconds, at most `cap` seconds (Playwright takes milliseconds)."""

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        left = min(cap, self.ends - time.monotonic())
        if left <= 0:
            raise TimeoutError("the test's overall time budget is spent")
        return left

    def ms(self, cap: float) -> float:
        return self.left(cap) * 1000.0


def prepare_root(root: Path, names: list[str]) -> list[Path]:
    """Write notebooks/<name>.py as <root>/<name>.ipynb (no outputs) for each name; the
    jupytext metadata is dropped so the copy is a plain notebook, not one paired with a
    .py file. Returns the paths written."""
    import jupytext
    import nbformat

    written = []
    for name in names:
        notebook = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
        notebook.metadata.pop("jupytext", None)
        path = root / f"{name}.ipynb"
        nbformat.write(notebook, path)
        written.append(path)
    return written


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab: `url` (no trailing slash), `token`, the server `process`,
    its `log` file, every descendant process seen so far (`seen`, pid -> Process) and,
    once stopped, what had to be killed by force (`forced`; [] after a clean shutdown)."""

    url: str
    token: str
    process: subprocess.Popen
    log: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    forced: list[str] = field(default_factory=list)

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        """JSON from the server's REST API (path like "/api/sessions")."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def descendants(self) -> list[psutil.Process]:
        """The server's child processes now (kernels, language servers), remembered in
        `seen` so they can be killed even after the server is gone."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            self.seen.setdefault(child.pid, child)
        return children

    def log_tail(self, characters: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return ""


def _wait_until_serving(server: LabServer, seconds: float) -> None:
    ends = time.monotonic() + seconds
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode} before serving:\n"
                               f"{server.log_tail()}")
        try:
            server.api("/api/status", timeout=2.0)
            return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > ends:
            raise TimeoutError(f"jupyter lab did not answer on {server.url} within {seconds:.0f} s:\n"
                               f"{server.log_tail()}")
        time.sleep(0.25)


def _stop(server: LabServer) -> list[str]:
    """Stop the server and everything it started; returns what had to be killed by force
    (for the report: a clean shutdown returns [])."""
    forced = []
    server.descendants()
    with contextlib.suppress(Exception):
        server.api("/api/shutdown", method="POST", timeout=5.0)    # shuts the kernels down too
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        forced.append(f"jupyter lab (pid {server.process.pid})")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, sig)
            try:
                server.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
    # Kernels run in sessions of their own (jupyter_client starts them so), outside the
    # server's process group: kill any the shutdown left behind.
    leftovers = [p for p in server.seen.values() if p.is_running()]
    for process in leftovers:
        forced.append(f"{process.name()} (pid {process.pid})")
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(leftovers, timeout=10)
    return forced


def _isolated(workdir: Path, env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    """Jupyter directories under `workdir` (the test's user settings written there): the
    jupyter lab flags and the environment that use them."""
    config_dir, data_dir, runtime_dir = workdir / "config", workdir / "data", workdir / "runtime"
    settings_dir, workspaces_dir = workdir / "user-settings", workdir / "workspaces"
    for folder in (config_dir, data_dir, runtime_dir, settings_dir, workspaces_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    flags = [*OFFLINE_FLAGS, f"--LabApp.user_settings_dir={settings_dir}",
             f"--LabApp.workspaces_dir={workspaces_dir}"]
    full_env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_DATA_DIR": str(data_dir),
                "JUPYTER_RUNTIME_DIR": str(runtime_dir), "JUPYTER_PLATFORM_DIRS": "0",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return flags, full_env


@contextlib.contextmanager
def _serving(server: LabServer, start_seconds: float):
    try:
        _wait_until_serving(server, start_seconds)
        yield server
    finally:
        server.forced = _stop(server)


@contextlib.contextmanager
def jupyter_lab(root: Path, workdir: Path, env: dict[str, str] | None = None, start_seconds: float = 120.0):
    """Run `jupyter lab` (this interpreter's) serving `root`, with its Jupyter directories
    under `workdir`; yields a LabServer once /api/status answers (at most `start_seconds`).
    `env` adds to (and overrides) the environment the server and its kernels get."""
    flags, full_env = _isolated(workdir, env)
    port, token = free_port(), secrets.token_hex(24)
    command = [
        str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *flags,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")                                  # CI runs as root
    log = workdir / "jupyter-lab.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=root, env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, process=process, log=log)
    with _serving(server, start_seconds) as served:
        yield served


@contextlib.contextmanager
def make_lab(workdir: Path, env: dict[str, str] | None = None, start_seconds: float = 120.0,
             notebook_dir: Path = NOTEBOOK_DIR):
    """Run `make lab`'s command (lab/launch.py, from the repository root, serving
    `notebook_dir`: the repository's notebooks/ unless told otherwise) with its Jupyter
    directories under `workdir`; yields a LabServer once /api/status answers and the
    launcher has printed the URL it serves. The project's JupyterLab settings come from the
    venv (`make` installs them), not from the test."""
    flags, full_env = _isolated(workdir, env)
    token = secrets.token_hex(24)
    full_env["JUPYTER_TOKEN"] = token                    # the launcher serves with this token
    command = [sys.executable, str(LAUNCHER), "--notebook-dir", str(notebook_dir), "--port", str(free_port()),
               "--", *flags]
    log = workdir / "make-lab.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    # the launcher prints the URL once the server answers; the port is the one it chose
    server = LabServer(url="", token=token, process=process, log=log)
    url = re.compile(rf"http://127\.0\.0\.1:(\d+)/lab\?token={token}")
    ends = time.monotonic() + start_seconds
    while not url.search(server.log_tail(200_000)) and process.poll() is None and time.monotonic() < ends:
        time.sleep(0.25)
    found = url.search(server.log_tail(200_000))
    if found is None:
        server.forced = _stop(server)
        raise RuntimeError(f"make lab's command printed no URL within {start_seconds:.0f} s "
                           f"(exit {process.poll()}):\n{server.log_tail()}")
    server.url = f"http://127.0.0.1:{found.group(1)}"
    with _serving(server, 30.0) as served:
        yield served


# ---------------------------------------------------------------------------- what both browser tests share

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-quic", "--disable-sync"]


@pytest.fixture(scope="module")
def browser_available():
    """Skip (locally) or fail (in CI: CI set and not "0"/"false") when Chromium or
    Playwright is missing."""
    reasons = []
    if not os.access(CHROMIUM, os.X_OK):
        reasons.append(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium, as root)")
    if importlib.util.find_spec("playwright") is None:
        reasons.append("playwright is not installed: pip install -e '.[test]'")
    if reasons:
        message = "browser test cannot run: " + "; ".join(reasons)
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def warm_engine():
    """Compile (or load from numba's cache) the engine's kernels and measure (or load) the
    ceilings here, before the server starts, so the notebook's kernel neither compiles for
    a minute nor measures ceilings (which warns on stderr on a busy machine)."""
    import engine
    import workbench

    ceilings = workbench.measure_ceilings()
    path = ROOT / "data" / "mobilenet_v2.onnx"
    engine.zoo.write_default_model(path)
    model = engine.load(path)
    x = np.zeros((1, *model.input_shape), dtype=np.float32)
    for threads in sorted({1, engine.available_cores()}):
        model.run(x, threads=threads)
    return ceilings


# In the page: where on the screen (CSS pixels) the Explorer's step markers are, and the
# one farthest from any other (so the click cannot land on a neighbour): its step's name
# (the marker's customdata) and position.
JS_LONELIEST_POINT = """(selector) => {
  const plot = document.querySelector(selector);
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  const points = [];
  for (const trace of plot.data) {
    if (typeof trace.meta !== 'string' || !trace.meta.startsWith('ops:') || !trace.x) continue;
    Array.from(trace.x).forEach((x, i) => {
      if (x == null || trace.y[i] == null) return;
      points.push({layer: trace.customdata[i],
                   x: box.left + layout.xaxis._offset + layout.xaxis.c2p(x),
                   y: box.top + layout.yaxis._offset + layout.yaxis.c2p(trace.y[i])});
    });
  }
  let best = null, bestGap = -1;
  for (const p of points) {
    const inside = p.x > box.left + layout.xaxis._offset + 20 && p.x < box.left + layout.xaxis._offset
                   + layout.xaxis._length - 20 && p.y > box.top + layout.yaxis._offset + 20
                   && p.y < box.top + layout.yaxis._offset + layout.yaxis._length - 20;
    if (!inside) continue;
    const gap = Math.min(...points.filter(q => q !== p).map(q => Math.hypot(q.x - p.x, q.y - p.y)));
    if (gap > bestGap) { best = p; bestGap = gap; }
  }
  return best && {...best, gap: bestGap};
}"""


# The hover plotly holds (gd._hoverdata: what a click reports) is on the step `layer`.
JS_HOVERING = """([selector, layer]) => { const plot = document.querySelector(selector);
  return !!(plot && plot._hoverdata && plot._hoverdata.some(p => p.customdata === layer)); }"""
# The plotly_click events the figure has emitted so far (the steps of each event's points):
# proof that a click reached plotly, before any kernel round trip. The listener is added on
# first use and again whenever plotly replaced the figure's event emitter (a redraw with
# Plotly.newPlot/purge drops its listeners; gd._ev is the emitter).
JS_CLICKS = """(selector) => { const plot = document.querySelector(selector);
  if (!plot || typeof plot.on !== 'function') return null;
  if (!plot.__testClicks) plot.__testClicks = [];
  if (!plot.__testClicksEmitter || plot.__testClicksEmitter !== plot._ev) {
    plot.on('plotly_click', d => plot.__testClicks.push(d.points.map(p => p.customdata)));
    plot.__testClicksEmitter = plot._ev;
  }
  return plot.__testClicks; }"""


def click_loneliest_point(page, figure: str, deadline: Deadline, seconds: float = 90.0,
                          attempt_seconds: float = 10.0) -> dict:
    """Click the step marker of the plotly figure `figure` farthest from any other, as a
    user does (hover, then click), and return it ({layer, x, y, gap}) once plotly has
    emitted a plotly_click for exactly that step. Each wait is on a state: the markers at
    rest (two reads 0.3 s apart agree), plotly hovering that step (a click reports the
    hovered points; under load the throttled hover can trail the mouse), then the click
    event. An attempt that reaches none of those states within `attempt_seconds` (a redraw
    moved the markers, the hover lagged) is made again, all within `seconds` (and the
    test's deadline). What the kernel does with the click is the caller's to wait for."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    ends = time.monotonic() + deadline.left(seconds)
    attempts, why = 0, "no attempt"
    while time.monotonic() < ends:
        attempts += 1
        target = page.evaluate(JS_LONELIEST_POINT, figure)
        time.sleep(0.3)
        again = page.evaluate(JS_LONELIEST_POINT, figure)
        if target is None or target != again:
            why = f"the markers were still moving ({target} then {again})"
            continue
        before = page.evaluate(JS_CLICKS, figure)
        if before is None:
            why = "the figure has no plotly graph yet"
            time.sleep(0.3)
            continue
        wait_ms = 1000 * max(0.1, min(attempt_seconds, ends - time.monotonic()))
        try:
            page.mouse.move(target["x"] - 3, target["y"] - 3)
            page.mouse.move(target["x"], target["y"])
            page.wait_for_function(JS_HOVERING, arg=[figure, target["layer"]], timeout=wait_ms, polling=100)
            page.mouse.click(target["x"], target["y"])
            page.wait_for_function(f"([selector, seen]) => {{ const clicks = ({JS_CLICKS})(selector);"
                                   " return clicks !== null && clicks.length > seen; }",
                                   arg=[figure, len(before)], timeout=wait_ms, polling=100)
        except PlaywrightTimeoutError as error:
            why = f"no hover or click on {target['layer']} within {wait_ms / 1000:.1f} s: {str(error).splitlines()[0]}"
            page.mouse.move(1, 1)                          # away, so the next attempt hovers afresh
            continue
        clicked = page.evaluate(JS_CLICKS, figure)[-1]
        assert clicked == [target["layer"]], f"the click on {target['layer']} reached plotly as {clicked}"
        return target
    raise AssertionError(f"could not click a step marker in {seconds:.0f} s ({attempts} attempt(s)): {why}")
