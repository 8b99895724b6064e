"""numba's on-disk cache: it works when the package folder is read-only (the cache goes to a
user folder, and the next process loads it), and it is never reused after a kernel's source
changes, nor after a file the kernel imports from changes (numba alone misses the latter).

How read-only is made real: the engine package is copied into a temporary folder and
chmod-ed read-only, and small kernels run in fresh Python processes with that copy first on
sys.path. These tests often run as root, and root writes through chmod (CAP_DAC_OVERRIDE;
os.access also says "writable"), so as root the processes are started under
`setpriv --bounding-set -dac_override,-dac_read_search,-fowner`: still uid 0 (so the
interpreter under /root stays readable), but without the capabilities that bypass file
permissions, i.e. exactly a normal user's view of the mode bits. Without setpriv, as root,
those tests are skipped; the decision function itself is tested directly either way.

The processes print numba's NUMBA_DEBUG_CACHE lines ("[cache] data saved to ...", "data
loaded from ...") so the tests see what was compiled and what was loaded, and where. Only
the small pooling kernel and a two-line probe compile: a few seconds per process.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest

from engine import _numba_env

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="NUMBA_DISABLE_JIT=1: nothing is compiled or cached")

REPO = Path(__file__).resolve().parents[1]
DROP_FILE_CAPABILITIES = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]

POOLING = """
import json, os
import numpy as np
import engine
from engine.kernels.layout import CB
from engine.kernels.pooling import global_average_pool
x = np.arange(2 * 2 * CB, dtype=np.float32).reshape(1, 1, 2, 2, CB)
out = np.empty((1, CB), np.float32)
global_average_pool(x, out)
print(json.dumps({"engine": engine.__file__, "cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
                  "result": out.tolist()}))
"""

PROBE = """
import json
import engine
from engine.kernels._probe import probe
print(json.dumps({"engine": engine.__file__, "result": probe(10.0)}))
"""

PROBE_HELPER = """from numba import njit

SCALE = 2.0


@njit
def scale(x):
    return x * SCALE
"""

PROBE_KERNEL = """from numba import njit

from engine.kernels._probe_helper import scale


@njit(cache=True)
def probe(x):
    return scale(x) + 1.0
"""


# ---------------------------------------------------------------------------- the decision, directly

def test_a_writable_kernels_folder_keeps_numbas_default_cache(tmp_path):
    (tmp_path / "kernels" / "__pycache__").mkdir(parents=True)
    assert _numba_env.numba_cache_dir(tmp_path, environ={}, writable=lambda path: True) is None


@pytest.mark.parametrize("pycache_exists", [True, False])
def test_a_read_only_kernels_folder_sends_the_cache_to_the_user_folder(tmp_path, pycache_exists):
    kernels = tmp_path / "kernels"
    (kernels / "__pycache__").mkdir(parents=True) if pycache_exists else kernels.mkdir()
    asked = []

    def read_only(path):
        asked.append(path)
        return False

    home = Path.home()
    assert _numba_env.numba_cache_dir(tmp_path, environ={}, writable=read_only) == \
        str(home / ".cache" / "roofline-workbench" / "numba")
    assert asked == [kernels / "__pycache__" if pycache_exists else kernels]   # where numba would write
    assert _numba_env.numba_cache_dir(tmp_path, environ={"XDG_CACHE_HOME": "/xdg"}, writable=read_only) == \
        "/xdg/roofline-workbench/numba"


def test_a_read_only_pycache_in_a_writable_folder_counts_as_read_only(tmp_path):
    (tmp_path / "kernels" / "__pycache__").mkdir(parents=True)

    def writable(path):
        return path.name != "__pycache__"

    assert _numba_env.numba_cache_dir(tmp_path, environ={}, writable=writable) is not None


def test_a_cache_dir_the_user_set_is_never_overridden(tmp_path):
    (tmp_path / "kernels").mkdir()
    assert _numba_env.numba_cache_dir(tmp_path, environ={"NUMBA_CACHE_DIR": "/mine"},
                                      writable=lambda path: False) is None


# ---------------------------------------------------------------------------- dependency stamps

def _names(path: Path) -> list[str]:
    return [str(p.relative_to(_numba_env.PACKAGE_DIR)) for p in _numba_env.dependency_files(path)]


def test_a_kernel_file_depends_on_the_engine_modules_it_imports_transitively():
    kernels = _numba_env.PACKAGE_DIR / "kernels"
    assert {"kernels/_common.py", "kernels/layout.py", "_numba_env.py"} <= set(_names(kernels / "pooling.py"))
    assert "kernels/pointwise.py" in _names(kernels / "fused_block.py")      # fused_block calls pointwise.micro_tile
    assert "kernels/pointwise.py" not in _names(kernels / "pooling.py")
    assert "traffic.py" not in _names(kernels / "pooling.py")    # imported inside a plain function: not seen by jit
    assert _names(kernels / "layout.py") == ["_numba_env.py"]


def test_the_engines_kernels_are_cached_with_dependency_stamps():
    """If a numba upgrade moved the internals this relies on, this fails (rather than the
    protection silently going away)."""
    from engine.kernels import pooling

    cache = pooling._global_average_pool_kernel._cache
    locator = cache._impl.locator
    assert getattr(type(locator), "_dependency_stamps", False), type(locator)
    own, digest = locator.get_source_stamp()
    assert digest == _numba_env.dependency_digest(pooling.__file__)
    assert Path(cache.cache_path).is_dir()


# ---------------------------------------------------------------------------- real processes

def _can_drop_file_capabilities(tmp: Path) -> bool:
    if shutil.which("setpriv") is None:
        return False
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = subprocess.run([*DROP_FILE_CAPABILITIES, "touch", str(locked / "x")], capture_output=True, timeout=30)
        return done.returncode != 0 and not (locked / "x").exists()
    finally:
        locked.chmod(0o755)


@pytest.fixture(scope="module")
def as_a_user(tmp_path_factory) -> list[str]:
    """The command prefix under which chmod-ed files are read-only (see the module docstring)."""
    if os.geteuid() != 0:
        return []
    if _can_drop_file_capabilities(tmp_path_factory.mktemp("caps")):
        return DROP_FILE_CAPABILITIES
    pytest.skip("running as root without a working setpriv: chmod cannot make a folder read-only for root")


def _set_writable(root: Path, writable: bool) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder) / name, 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


@pytest.fixture
def package(tmp_path):
    """A fresh copy of the engine package (no caches) under tmp/pkg; read-only on request."""
    root = tmp_path / "pkg"
    shutil.copytree(_numba_env.PACKAGE_DIR, root / "engine", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    yield root
    _set_writable(root, True)          # so that pytest can clean up as a non-root user


def _run(command_prefix, package: Path, home: Path, code: str) -> tuple[dict, list[str]]:
    """Run `code` in a new interpreter with `package` first on sys.path and HOME=`home`;
    returns (its last stdout line as JSON, numba's "[cache] ..." lines)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONPATH=str(package), NUMBA_DEBUG_CACHE="1", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([*command_prefix, sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=home, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert Path(report["engine"]).resolve() == (package / "engine" / "__init__.py").resolve()
    return report, [line for line in lines if line.startswith("[cache]")]


def _events(lines: list[str], kernel: str) -> set[str]:
    """{"saved", "loaded"} events of `kernel`'s data files (.nbc)."""
    events = set()
    for line in lines:
        match = re.match(r"\[cache\] data (saved|loaded) (?:to|from) '([^']+)'", line)
        if match and Path(match.group(2)).name.startswith(kernel):
            events.add(match.group(1))
    return events


def _cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _edit(path: Path, old: str, new: str) -> None:
    path.chmod(0o644)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    path.chmod(0o444)


KERNEL = "pooling._global_average_pool_kernel"


def test_a_read_only_package_caches_in_the_user_folder_and_the_next_process_loads_it(as_a_user, package, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _set_writable(package, False)
    user_folder = home / ".cache" / "roofline-workbench" / "numba"

    first, lines = _run(as_a_user, package, home, POOLING)
    assert first["cache_dir"] == str(user_folder)
    assert _events(lines, KERNEL) == {"saved"}
    assert _cache_files(user_folder) and all(user_folder in p.parents for p in _cache_files(user_folder))
    assert _cache_files(package) == []                              # nothing written into the package
    assert not list(package.rglob("__pycache__"))

    second, lines = _run(as_a_user, package, home, POOLING)
    assert _events(lines, KERNEL) == {"loaded"}                     # loaded, not compiled again
    assert all(str(user_folder) in line for line in lines)
    assert second["result"] == first["result"]


def test_an_edited_kernel_is_recompiled_and_returns_the_new_result_not_the_cached_one(as_a_user, package, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _set_writable(package, False)
    pooling = package / "engine" / "kernels" / "pooling.py"
    before, _ = _run(as_a_user, package, home, POOLING)

    _edit(pooling, "scale = np.float32(1.0 / pixels)", "scale = np.float32(2.0 / pixels)")
    doubled, lines = _run(as_a_user, package, home, POOLING)
    assert _events(lines, KERNEL) == {"saved"}
    assert doubled["result"] == [[2 * value for value in row] for row in before["result"]]

    _edit(pooling, "scale = np.float32(2.0 / pixels)", "scale = np.float32(1.0 / pixels)")
    restored, lines = _run(as_a_user, package, home, POOLING)
    assert _events(lines, KERNEL) == {"saved"}                      # the doubled code is not reused either
    assert restored["result"] == before["result"]


def test_an_edit_to_a_file_the_kernel_imports_from_recompiles_it(as_a_user, package, tmp_path):
    """numba keys a cached function on its own file only; the engine adds the files it
    imports. A helper's constant changes: the kernel calling it must see the new value
    (stock numba returns the stale 21.0 here). And a comment added to _common.py, which
    every kernel imports, recompiles the pooling kernel rather than loading it."""
    home = tmp_path / "home"
    home.mkdir()
    kernels = package / "engine" / "kernels"
    (kernels / "_probe_helper.py").write_text(PROBE_HELPER)
    (kernels / "_probe.py").write_text(PROBE_KERNEL)
    _set_writable(package, False)

    assert _run(as_a_user, package, home, PROBE)[0]["result"] == 21.0
    result, lines = _run(as_a_user, package, home, PROBE)
    assert result["result"] == 21.0 and _events(lines, "_probe.probe") == {"loaded"}
    _edit(kernels / "_probe_helper.py", "SCALE = 2.0", "SCALE = 3.0")
    result, lines = _run(as_a_user, package, home, PROBE)
    assert result["result"] == 31.0 and _events(lines, "_probe.probe") == {"saved"}

    _run(as_a_user, package, home, POOLING)
    _edit(kernels / "_common.py", "_U = np.uint64", "_U = np.uint64  # edited")
    _, lines = _run(as_a_user, package, home, POOLING)
    assert _events(lines, KERNEL) == {"saved"}


def test_a_writable_package_keeps_its_cache_next_to_the_kernels(package, tmp_path):
    """The default, for comparison: numba's __pycache__ beside the kernel files."""
    home = tmp_path / "home"
    home.mkdir()
    report, lines = _run([], package, home, POOLING)
    assert report["cache_dir"] is None
    assert _cache_files(package / "engine" / "kernels" / "__pycache__")
    assert not (home / ".cache").exists()
    assert _events(_run([], package, home, POOLING)[1], KERNEL) == {"loaded"}


def test_cache_files_of_engine_and_ceiling_kernels_are_named_by_lane_width():
    """CB is folded into the kernels: code built for 8 lanes must never be loaded for 16,
    whatever numba's CPU features say, so the lane width is in the cache files' names."""
    from numba.core import caching

    from engine._numba_env import LANES
    from engine.kernels import layout
    from workbench import _ceiling_kernels

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    for function in (layout._nchw_to_nchwc, _ceiling_kernels._fma_kernel):
        locator = next(filter(None, (cls.from_function(function.py_func, function.py_func.__code__.co_filename)
                                     for cls in impl._locator_classes)))
        assert locator.get_disambiguator().endswith(f"-{LANES}lanes")
