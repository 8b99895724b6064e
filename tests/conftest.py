"""Shared fixtures: the default model (built in memory, deterministic), the engine's
loaded copy, and ONNX Runtime as the reference."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.models import mobilenet_v2


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


def hand_made_ceilings():
    """Fixed roofs (90 GFLOP/s per thread; 180/90/60/15 GB/s per thread at L1/L2/L3/DRAM)
    for 1 and 2 threads, so profile logic is tested independently of this machine's noise."""
    import pandas as pd

    from workbench.ceilings import Ceilings

    rows = []
    for threads in (1, 2):
        rows.append((threads, "fp32_fma", 90.0 * threads, "GFLOP/s"))
        for level, bandwidth in zip(("L1", "L2", "L3", "DRAM"), (180, 90, 60, 15)):
            rows.append((threads, level, float(bandwidth * threads), "GB/s"))
    table = pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])
    return Ceilings(table=table, machine={"cpu_model": "test", "cores": 2}, measured_at="2026-01-01T00:00:00+00:00",
                    key={"cpu_model": "test", "cores": 2, "package_version": "0", "mode": "quick"})


# ---------------------------------------------------------------- importer fuzz summary
# tests/test_fuzz_importer.py appends one line per run here; printed at the end of the session.
FUZZ_SUMMARY_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(FUZZ_SUMMARY_KEY, [])
    if lines:
        terminalreporter.section("importer fuzz")
        for line in lines:
            terminalreporter.write_line(line)
