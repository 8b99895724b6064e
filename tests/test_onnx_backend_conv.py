"""The Conv cases of ONNX's own backend test data run through the engine: the ones our
kernels cover must match the expected outputs; the rest must raise a clear ModelError —
never a wrong answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import engine

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
CASES = sorted(p.name for p in DATA.glob("test_Conv*"))

# What the engine runs: dense 2-d convs of any kernel/stride/pad/dilation, depthwise 3x3.
COVERED = {
    "test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_depthwise_padded", "test_Conv2d_depthwise_strided",
    "test_Conv2d_dilated", "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv2d_strided",
}


def _load_case(name: str):
    folder = DATA / name
    inputs = sorted((folder / "test_data_set_0").glob("input_*.pb"))
    outputs = sorted((folder / "test_data_set_0").glob("output_*.pb"))
    read = lambda p: numpy_helper.to_array(onnx.load_tensor(str(p)))  # noqa: E731
    return folder / "model.onnx", [read(p) for p in inputs], [read(p) for p in outputs]


def test_the_backend_data_is_there():
    assert len(CASES) >= 20 and COVERED <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_backend_conv_case_matches_or_is_rejected_clearly(name):
    path, inputs, outputs = _load_case(name)
    try:
        model = engine.load(path)
    except engine.ModelError as error:
        assert name not in COVERED, f"{name} should be supported but raised {error}"
        assert str(error)
        return
    assert name in COVERED, f"{name} loaded although it was expected to be rejected"
    got = model.run(inputs[0], threads=min(2, engine.available_cores()))
    np.testing.assert_allclose(got, outputs[0], rtol=1e-4, atol=1e-4 * np.abs(outputs[0]).max())
