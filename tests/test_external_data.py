"""Models written as torch's default exporter writes them today (`torch.onnx.export(...,
dynamo=True)`, opset 18+: model.onnx + model.onnx.data) load from their path wherever the
working directory is (the data is looked up beside the model file), and match ONNX Runtime
loading the same path. The refusals (a missing data file, bytes or a ModelProto whose data
is still external) are in tests/test_load_errors.py."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import engine
from conftest import assert_close_to_reference
from engine.zoo import mobilenet_v1, mobilenet_v2, save_model

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

RESOLUTION = 64
EXPORTS = {     # the ways exporters write the network, each saved with external data
    "dynamo opset 18": lambda: mobilenet_v2(resolution=RESOLUTION, opset=18, pool_style="reduce_mean"),
    "opset 18 separate batchnorm, matmul": lambda: mobilenet_v2(
        resolution=RESOLUTION, opset=18, separate_batchnorm=True, classifier_style="matmul_add", dropout=True),
    "opset 13 shape chain": lambda: mobilenet_v2(resolution=RESOLUTION, opset=13, flatten_style="reshape_shape_chain"),
    "mobilenet_v1": lambda: mobilenet_v1(width_mult=0.5, resolution=RESOLUTION),
}


def _images(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 3, RESOLUTION, RESOLUTION), dtype=np.float32)


def _ort_run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_a_model_with_external_data_loads_from_another_working_directory_and_matches_onnxruntime(
        name, tmp_path, monkeypatch):
    save_model(EXPORTS[name](), tmp_path / "models" / "model.onnx", external_data=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")          # no model.onnx.data here
    relative = "../models/model.onnx"
    model = engine.load(relative)
    for batch, threads in ((1, 1), (3, 2)):
        x = _images(batch)
        assert_close_to_reference(model.run(x, threads=min(threads, engine.available_cores())), _ort_run(relative, x))


def test_onnx_load_of_the_path_gives_the_same_model_as_the_path(tmp_path, monkeypatch):
    path = save_model(EXPORTS["dynamo opset 18"](), tmp_path / "model.onnx", external_data=True)
    monkeypatch.chdir(tmp_path.parent)
    x = _images(2)
    np.testing.assert_array_equal(engine.load(onnx.load(str(path))).run(x), engine.load(path).run(x))
    np.testing.assert_array_equal(engine.load(str(path)).run(x), engine.load(path).run(x))
