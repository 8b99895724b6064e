"""`make lab` starts JupyterLab as root and as a normal user, on loopback only, and prints
the URL to open (issue 16, item 16).

`make lab` runs lab/launch.py (Makefile: LAB_COMMAND). The test runs that launcher as this
test's user and as the other one: root when the test is not root, a normal user when it is.
The other identity comes from a user namespace (`unshare --user`): inside it the process's
effective uid is 0 (`--map-root-user`) or 1000 (`--map-user=1000`), which is what both the
launcher's and JupyterLab's root checks read, while file access stays that of the test's
user (so a venv under /root stays readable). Where user namespaces are not allowed, that
case skips and says so; the launcher's choice of flags is still tested with its root check
faked.
"""
from __future__ import annotations

import importlib.util
import os
import re
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "lab" / "launch.py"
NOTEBOOKS = ROOT / "notebooks"
LAB_SETTINGS_SOURCE = ROOT / "lab" / "default_setting_overrides.json"
START_SECONDS = 150       # a cold JupyterLab start on a busy 2-core machine
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)")


def _launcher_module():
    spec = importlib.util.spec_from_file_location("lab_launch", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_lab_installs_the_lab_settings_and_runs_the_launcher():
    # as a user types it: not as a sub-make of `make test` (whose MAKEFLAGS print "make[1]: ...")
    environment = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    recipe = subprocess.run(["make", "--no-print-directory", "-n", "-B", "lab"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=environment)
    assert recipe.returncode == 0, recipe.stderr
    lines = recipe.stdout.strip().splitlines()
    assert lines[-1] == ".venv/bin/python lab/launch.py --notebook-dir notebooks", lines[-3:]
    assert ("cp lab/default_setting_overrides.json "
            ".venv/etc/jupyter/labconfig/default_setting_overrides.json") in lines


@pytest.mark.parametrize("euid, allow_root", [(0, True), (1000, False)])
def test_the_launcher_adds_allow_root_only_when_the_user_is_root(euid, allow_root, monkeypatch):
    launch = _launcher_module()
    monkeypatch.setattr(launch.os, "geteuid", lambda: euid)           # the root check, faked
    assert launch.running_as_root() is allow_root
    command = launch.lab_command("jupyter", NOTEBOOKS, 8888, launch.running_as_root())
    assert ("--allow-root" in command) is allow_root
    assert "--ServerApp.ip=127.0.0.1" in command and "--ServerApp.port_retries=0" in command
    assert not any("token" in part.lower() for part in command)       # the token travels in the environment


def _as(identity: str) -> list[str]:
    """The command prefix that runs a program as `identity` ("root" or "user")."""
    if (identity == "root") == (os.geteuid() == 0):
        return []
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing: cannot run the launcher as the other user")
    prefix = ["unshare", "--user", "--map-root-user"] if identity == "root" else \
        ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    probe = subprocess.run([*prefix, "id", "-u"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not allowed here ({probe.stderr.strip()}): cannot run as {identity}")
    assert (probe.stdout.strip() == "0") == (identity == "root"), probe.stdout
    return prefix


def _read_url(process: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """What the launcher printed up to and including the URL line, and the URL (its
    stdout read by a thread: a pipe read with a timeout)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    printed, ends = "", time.monotonic() + seconds
    while time.monotonic() < ends:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        printed += line
        match = URL.search(line)
        if match:
            return printed, match.group(0)
    raise AssertionError(f"the launcher printed no URL within {seconds:.0f} s (exit {process.poll()}):\n{printed}")


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; [] for one that has exited (a zombie the launcher's shell has
    not reaped yet, or gone) while we looked."""
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def _jupyter_lab_process(launcher: subprocess.Popen) -> psutil.Process:
    children = [p for p in psutil.Process(launcher.pid).children(recursive=True)
                if any("jupyter-lab" in part or part == "lab" for part in _cmdline(p)[:3])]
    assert len(children) == 1, [_cmdline(p) for p in psutil.Process(launcher.pid).children(recursive=True)]
    return children[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("identity", ["root", "user"])
def test_make_labs_command_starts_jupyterlab_on_loopback_as_root_and_as_a_user(identity, tmp_path):
    prefix = _as(identity)
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "JUPYTER_TOKEN" and not key.startswith("JUPYTER")}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    first_port = _launcher_module().free_port(18000 + os.getpid() % 20000)
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as log_file:
        launcher = subprocess.Popen([*prefix, sys.executable, str(LAUNCHER), "--notebook-dir", str(NOTEBOOKS),
                                     "--port", str(first_port)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True)
    try:
        try:
            printed, url = _read_url(launcher, START_SECONDS)
        except AssertionError as error:
            raise AssertionError(f"{error}\njupyter log:\n{log.read_text(errors='replace')[-3000:]}") from None
        port, token = URL.search(url).groups()
        assert int(port) == first_port and len(token) >= 32
        assert ("as root (--allow-root)" in printed) is (identity == "root"), printed

        # JupyterLab answers on loopback, with the token and only with it
        assert _get(f"http://127.0.0.1:{port}/api/status", token) == 200
        assert _get(f"http://127.0.0.1:{port}/api/contents", None) == 403
        assert _get(url) == 200
        lab = _jupyter_lab_process(launcher)
        assert ("--allow-root" in lab.cmdline()) is (identity == "root"), lab.cmdline()
        listening = [c.laddr for c in lab.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(address.ip == "127.0.0.1" for address in listening), listening

        # stopped as a user stops it (SIGTERM to the launcher): JupyterLab goes too
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) is not None
        psutil.wait_procs([lab], timeout=30)
        assert not lab.is_running(), "JupyterLab outlived its launcher"
    finally:
        # the whole process group, even if the launcher is gone: JupyterLab may have outlived it
        try:
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if launcher.poll() is None:
            launcher.wait(timeout=30)
