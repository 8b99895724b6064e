"""Shared fixtures: the default model (built in memory, deterministic), the engine's
loaded copy, ONNX Runtime as the reference, and the kernel tests' thread counts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import engine
from engine import _numba_env
from engine.zoo import mobilenet_v2


@pytest.fixture(scope="session")
def mobilenet_proto():
    return mobilenet_v2()


@pytest.fixture(scope="session")
def mobilenet(mobilenet_proto):
    return engine.load(mobilenet_proto)


def ort_session(model_proto, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def ort_run(model_proto, x: np.ndarray) -> np.ndarray:
    session = ort_session(model_proto)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A 64x64 MobileNetV2 written to an ONNX file (workbench entries that take a path)."""
    path = tmp_path_factory.mktemp("model") / "mobilenet_v2_64.onnx"
    path.write_bytes(mobilenet_v2(resolution=64).SerializeToString())
    return path


@pytest.fixture(scope="session")
def small_model():
    """A 96x96 MobileNetV2, loaded: small enough to profile in a test, large enough to
    have every kind of block."""
    return engine.load(mobilenet_v2(resolution=96))


@pytest.fixture(scope="session")
def mobilenet_ort(mobilenet_proto):
    return ort_session(mobilenet_proto)


def assert_close_to_reference(got: np.ndarray, reference: np.ndarray, relative: float = 1e-4) -> None:
    """max |got - reference| <= relative * max |reference| (the engine's stated tolerance)."""
    assert got.shape == reference.shape, (got.shape, reference.shape)
    assert np.isfinite(got).all()
    scale = float(np.abs(reference).max())
    error = float(np.abs(got - reference).max())
    assert error <= relative * scale, f"max abs error {error:.3g} > {relative:g} x max |ref| {scale:.3g}"


# The cache sizes hand-made ceilings say they measured on this machine: a Zen 3's (32 KiB
# L1, 512 KiB L2, 32 MiB L3; a smaller nominal size where the host has one), so the
# workbench's runs (profile, sweep, the Explorer) make the same fusion and band decisions
# on hosts with caches at least that large (workbench.profile.run_machine).
HAND_MADE_EFFECTIVE = {"L1": 32 * 1024, "L2": 512 * 1024, "L3": 32 * 1024**2}


def hand_made_machine_and_caches():
    """(machine dict, caches DataFrame) for a Ceilings of this host whose measured effective
    cache sizes are HAND_MADE_EFFECTIVE."""
    import pandas as pd

    from engine.machine import machine_info
    from workbench.ceilings import CACHE_COLUMNS

    machine = machine_info().to_dict()
    caches = pd.DataFrame([(level["name"], level["size_bytes"], min(HAND_MADE_EFFECTIVE[level["name"]], level["size_bytes"]),
                            1.0, 1.0, "")
                           for level in machine["caches"]], columns=CACHE_COLUMNS)
    return machine, caches


def hand_made_ceilings(peak_per_thread: float = 90.0, key: dict | None = None, machine: dict | None = None):
    """Fixed roofs (`peak_per_thread` GFLOP/s per thread; 180/90/60/15 GB/s per thread at
    L1/L2/L3/DRAM) for 1 and 2 threads, so profile logic is tested independently of this
    machine's noise; measured on this host with HAND_MADE_EFFECTIVE caches unless `machine`
    (a dict) says otherwise."""
    import pandas as pd

    from workbench.ceilings import Ceilings

    rows = []
    for threads in (1, 2):
        rows.append((threads, "fp32_fma", peak_per_thread * threads, "GFLOP/s"))
        for level, bandwidth in zip(("L1", "L2", "L3", "DRAM"), (180, 90, 60, 15)):
            rows.append((threads, level, float(bandwidth * threads), "GB/s"))
    table = pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])
    host, caches = hand_made_machine_and_caches()
    if machine is not None:
        host, caches = machine, caches.iloc[0:0]
    return Ceilings(table=table, machine=host, measured_at="2026-01-01T00:00:00+00:00",
                    key=key or {"cpu_model": host.get("cpu_model", "test"), "cores": host.get("cores", 2), "lanes": 8,
                                "package_version": "0", "mode": "quick"}, caches=caches)



def blocks_auto_fuses(model, threads: int, batch: int, ceilings) -> set[tuple[str, ...]]:
    """The members of every block engine.fusion.fusion_wins picks for fuse_blocks="auto" on
    the machine the workbench's runs assume with these ceilings."""
    from engine.config import RunConfig
    from engine.fusion import fusion_wins
    from engine.passes import find_inverted_residual_blocks
    from workbench.profile import run_machine

    config = RunConfig(threads=threads, tiles=engine.Tiles(), fuse_blocks="auto", machine=run_machine(ceilings))
    return {tuple(layer.name for layer in block if layer is not None)
            for block in find_inverted_residual_blocks(model.graph) if fusion_wins(block, config, batch)}

# ---------------------------------------------------------------- importer fuzz summary
# tests/test_fuzz_importer.py appends one line per run here; printed at the end of the session.
FUZZ_SUMMARY_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(FUZZ_SUMMARY_KEY, [])
    if lines:
        terminalreporter.section("importer fuzz")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}thr")
def threads(request):
    """Runs a kernel test at 1 and 2 numba threads (at most the pool's size), then restores
    the count."""
    previous = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    numba.set_num_threads(previous)


# ---------------------------------------------------------------- numba's cache, warmed beside the tests
# A clean clone compiles every kernel, once per lane width: in the first test that calls
# it, one core busy compiling while the other idles. tests/warm_kernels.py compiles them
# into the on-disk cache in a process of its own at niceness 19 (it takes only idle CPU),
# started here, so later tests load them instead. It changes no test: a kernel it has not
# reached is compiled by its first test as before. It starts only for a session of at
# least WARM_FROM_TESTS tests (a targeted run does not get one), dies with the session
# (the kernel's parent-death signal, and it checks its parent), and is skipped, with a
# warning, when its log cannot be written. ROOFLINE_WARM_KERNELS=0 turns it off.
WARMER_KEY = pytest.StashKey[subprocess.Popen]()
WARM_FROM_TESTS = 500
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: niceness 19, and SIGKILL when the pytest process dies."""
    os.nice(19)
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):       # not Linux: warm_kernels also checks its parent
        pass


def pytest_collection_finish(session):
    if numba.config.DISABLE_JIT or os.environ.get("ROOFLINE_WARM_KERNELS", "1") == "0":
        return
    if session.config.getoption("collectonly", False) or len(session.items) < WARM_FROM_TESTS:
        return
    root = Path(__file__).resolve().parent.parent
    log = root / "artifacts" / f"warm_kernels_{_numba_env.LANES}lanes.log"
    try:
        log.parent.mkdir(exist_ok=True)
        with open(log, "wb") as out:
            session.config.stash[WARMER_KEY] = subprocess.Popen(
                [sys.executable, "-m", "tests.warm_kernels", str(os.getpid())], cwd=root,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    except OSError as error:
        import warnings

        warnings.warn(f"numba's cache is not warmed beside the tests: {error}")


def pytest_sessionfinish(session, exitstatus):
    warmer = session.config.stash.get(WARMER_KEY, None)
    if warmer is not None and warmer.poll() is None:       # a short run ends before it does
        warmer.kill()
        warmer.wait(timeout=30)
