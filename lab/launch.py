"""`make lab`: JupyterLab on the notebooks, bound to 127.0.0.1, for root too, and the URL
to open printed once the server answers.

    python lab/launch.py [--notebook-dir notebooks] [--port 8888] [-- extra jupyter lab flags]

- Loopback only (`--ServerApp.ip=127.0.0.1`): the server is reachable from this machine
  (or through `ssh -L 8888:127.0.0.1:8888 host`), never from the network.
- `--allow-root` only when the effective user is root (a Docker container, these
  machines): JupyterLab refuses to start as root without it, and a normal user never
  needs it.
- The port is the first free one from --port up, chosen here (`port_retries=0`), so the
  URL printed is the one the server listens on. The token is JUPYTER_TOKEN when set, else
  a random one; it is passed in the environment, not on the command line (where `ps`
  would show it to every user of the machine).
- No browser is opened (a root shell or a container rarely has one): open the URL printed.

Standard library only, so it runs before anything but the venv exists. Exits with
JupyterLab's status; Ctrl-C reaches JupyterLab (it asks to confirm), SIGTERM is passed on.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_PORT = 8888
PORTS_TRIED = 100          # --port, --port + 1, ... until one is free
START_SECONDS = 180.0      # how long to wait for the server's first answer (a cold start imports a lot)


def running_as_root() -> bool:
    """True when the effective user is root (JupyterLab then needs --allow-root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def free_port(first: int, tries: int = PORTS_TRIED) -> int:
    """The first port from `first` on that nothing listens on at HOST."""
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise SystemExit(f"lab: no free port in {first}..{first + tries - 1} on {HOST}")


def lab_command(jupyter: str, notebook_dir: Path, port: int, as_root: bool, extra: list[str] = ()) -> list[str]:
    """The `jupyter lab` command line (no token: that goes in the environment)."""
    command = [jupyter, "lab", f"--ServerApp.root_dir={notebook_dir}", f"--ServerApp.ip={HOST}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False"]
    if as_root:
        command.append("--allow-root")
    return command + list(extra)


def lab_url(port: int, token: str) -> str:
    return f"http://{HOST}:{port}/lab?token={token}"


def _answers(port: int, token: str) -> bool:
    request = urllib.request.Request(f"http://{HOST}:{port}/api/status", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="lab/launch.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook-dir", type=Path, default=Path("notebooks"),
                        help="the folder JupyterLab serves (default: notebooks)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the first port tried (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)

    jupyter = str(Path(sys.executable).parent / "jupyter")      # this venv's, never another on PATH
    port = free_port(args.port)
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    as_root = running_as_root()
    command = lab_command(jupyter, args.notebook_dir.resolve(), port, as_root, extra)
    env = {**os.environ, "JUPYTER_TOKEN": token}
    process = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signal.SIGTERM))

    ends = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < ends and not _answers(port, token):
        time.sleep(0.25)
    if process.poll() is None and _answers(port, token):
        print(f"\nJupyterLab is running{' as root (--allow-root)' if as_root else ''}, on this machine only. "
              f"Open:\n\n    {lab_url(port, token)}\n\n(from another machine: ssh -L {port}:{HOST}:{port} "
              f"<this host>, then the same URL). Ctrl-C twice stops it.\n", flush=True)
    elif process.poll() is None:
        print(f"lab: JupyterLab has not answered on {HOST}:{port} within {START_SECONDS:.0f} s; "
              f"its log above says why", file=sys.stderr, flush=True)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:       # Ctrl-C reached JupyterLab too (same process group): let it decide
            continue


if __name__ == "__main__":
    raise SystemExit(main())
