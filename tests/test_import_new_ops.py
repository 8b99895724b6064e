"""The importer's handlers for issue 15's ops: HardSigmoid, HardSwish, Sigmoid, Mul and
MaxPool. What they accept becomes the layer the passes expect (checked here before the
passes); what they cannot run exactly is refused at load with a ModelError or
UnsupportedOperatorError naming the node. onnx's own node test cases for these ops (built in
memory from onnx.backend.test.case.node: the wheel ships no node/ folder) run through
tests/backend_worker.py in a subprocess, as the backend models do: each matches its
reference or is refused cleanly."""
from __future__ import annotations

import math

import numpy as np
import pytest
from new_ops_graphs import GraphBuilder, single_op
from test_onnx_backend_models import PASSING, run_all

from engine.errors import ModelError, UnsupportedOperatorError
from engine.kernels.activation import HARDSWISH_DEFAULT
from engine.onnx_import import import_graph


def layers_of(model):
    return import_graph(model).layers


def test_hardsigmoid_defaults_are_onnxs():
    (layer,) = layers_of(single_op("HardSigmoid"))
    assert layer.op == "Activation" and layer.activation == ("hardsigmoid", pytest.approx(0.2), 0.5)
    (layer,) = layers_of(single_op("HardSigmoid", alpha=0.25, beta=0.25))
    assert layer.activation == ("hardsigmoid", 0.25, 0.25)


def test_hardswish_and_sigmoid_become_activation_layers():
    (layer,) = layers_of(single_op("HardSwish", opset=14))
    assert layer.activation == HARDSWISH_DEFAULT
    (layer,) = layers_of(single_op("Sigmoid"))
    assert layer.activation == ("sigmoid", 0.0, 0.0) and layer.output_shape == (8, 9, 9)


def test_hardswish_before_opset_14_is_refused_naming_the_node():
    with pytest.raises(ModelError, match="hardswish"):
        layers_of(single_op("HardSwish", opset=13))


@pytest.mark.parametrize("attrs, shape", [
    ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (8, 5, 5)),
    ({"kernel_shape": [2, 3]}, (8, 8, 7)),
    ({"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, (8, 5, 5)),
    ({"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "VALID"}, (8, 4, 4))])
def test_max_pool_shapes_and_pads(attrs, shape):
    (layer,) = layers_of(single_op("MaxPool", **attrs))
    assert layer.op == "MaxPool" and layer.output_shape == shape
    assert layer.attrs["kernel_shape"] == tuple(attrs["kernel_shape"])


@pytest.mark.parametrize("attrs, match", [
    ({"kernel_shape": [3, 3], "dilations": [2, 2]}, "dilations"),
    ({"kernel_shape": [3, 3], "ceil_mode": 1}, "ceil_mode"),
    ({"kernel_shape": [3, 3], "storage_order": 1}, "storage_order"),
    ({"kernel_shape": [3, 3], "pads": [3, 3, 3, 3]}, "smaller than the kernel"),
    ({"kernel_shape": [3]}, "2-d"),
    ({"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "auto_pad": "SAME_UPPER"}, "auto_pad"),
    ({"kernel_shape": [12, 12]}, "does not fit")])
def test_max_pool_refusals_name_the_node_and_reason(attrs, match):
    with pytest.raises(ModelError, match=match) as error:
        layers_of(single_op("MaxPool", **attrs))
    assert "maxpool" in str(error.value)


def test_max_pool_with_an_indices_output_is_refused():
    model = single_op("MaxPool", kernel_shape=[2, 2])
    model.graph.node[0].output.append("indices")
    with pytest.raises(UnsupportedOperatorError, match="Indices"):
        layers_of(model)


def test_mul_of_an_image_and_a_per_channel_scale_is_accepted_either_order():
    for gate_first in (False, True):
        g = GraphBuilder(8, 6)
        x = g.conv("input", 16, 3, 1)
        layers = layers_of(g.model(g.squeeze_excite(x, 4, gate_first=gate_first)))
        mul = layers[-1]
        assert mul.op == "Mul" and mul.input_shape == mul.output_shape == (16, 6, 6)
        assert mul.attrs["scale_input"] == (0 if gate_first else 1)


@pytest.mark.parametrize("other", ["strided", "other_channels_pooled"])
def test_mul_broadcasts_other_than_per_channel_are_refused(other):
    g = GraphBuilder(8, 6)
    x = g.conv("input", 16, 3, 1)
    y = g.conv("input", 16, 3, 2) if other == "strided" else g.node("GlobalAveragePool", [g.conv("input", 8, 1)])
    with pytest.raises(UnsupportedOperatorError, match=r"broadcasting"):
        layers_of(g.model(g.node("Mul", [x, y])))


def test_mul_by_a_constant_is_refused_naming_the_input():
    g = GraphBuilder(8, 6)
    x = g.conv("input", 16, 3, 1)
    out = g.node("Mul", [x, g.constant(np.full((16, 1, 1), 2.0, np.float32))])
    with pytest.raises(UnsupportedOperatorError, match="input 1 is a constant"):
        layers_of(g.model(out))


def test_a_non_finite_hardsigmoid_alpha_is_refused():
    with pytest.raises(ModelError, match="finite"):
        layers_of(single_op("HardSigmoid", alpha=math.inf))


# onnx's node test cases of the new ops (onnx.backend.test.case.node, onnx 1.17+): names as
# collect_testcases gives them. Most have 3-d or integer inputs, or two inputs, and are
# refused at load; the 4-d float MaxPool ones the kernel covers must match.
NODE_CASES = [f"node/{name}" for name in (
    "test_hardsigmoid_example", "test_hardsigmoid", "test_hardsigmoid_default", "test_hardsigmoid_expanded_ver18",
    "test_hardswish", "test_hardswish_expanded", "test_sigmoid_example", "test_sigmoid",
    "test_mul_example", "test_mul", "test_mul_bcast", "test_mul_uint8",
    "test_maxpool_2d_uint8", "test_maxpool_2d_precomputed_pads", "test_maxpool_with_argmax_2d_precomputed_pads",
    "test_maxpool_2d_precomputed_strides", "test_maxpool_2d_precomputed_same_upper", "test_maxpool_1d_default",
    "test_maxpool_2d_default", "test_maxpool_3d_default", "test_maxpool_2d_same_upper", "test_maxpool_2d_same_lower",
    "test_maxpool_2d_pads", "test_maxpool_2d_strides", "test_maxpool_2d_ceil",
    "test_maxpool_2d_ceil_output_size_reduce_by_one", "test_maxpool_2d_dilations")]
NODE_MUST_MATCH = {f"node/{name}" for name in (
    "test_maxpool_2d_precomputed_pads", "test_maxpool_2d_precomputed_strides",
    "test_maxpool_2d_precomputed_same_upper", "test_maxpool_2d_default", "test_maxpool_2d_same_upper",
    "test_maxpool_2d_same_lower", "test_maxpool_2d_pads", "test_maxpool_2d_strides")}


@pytest.fixture(scope="module")
def node_verdicts() -> dict[str, dict]:
    return run_all(NODE_CASES, batches=1)


@pytest.mark.lanes
@pytest.mark.parametrize("case", NODE_CASES)
def test_onnx_node_case_matches_or_is_refused_cleanly(node_verdicts, case):
    verdict = node_verdicts[case]
    assert verdict["verdict"] in PASSING, f"{case}: {verdict['verdict']}: {verdict['detail']}"
    if case in NODE_MUST_MATCH:
        assert verdict["verdict"] == "matched", f"{case} should run and match, but: {verdict['detail']}"
    if verdict["verdict"] == "refused_at_load":
        assert verdict["detail"].startswith(("ModelError: ", "UnsupportedOperatorError: ")), verdict["detail"]
