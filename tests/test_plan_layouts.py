"""Graphs with few or no convs: every tensor reaches its kernel in the layout that kernel
reads (the plan knows which tensors are blocked NCHWc: Graph.layout_of), so they match ONNX
Runtime; a layer that would read a pooled vector as an image is refused at load. Before,
a Flatten of the graph input reached the NCHWc -> NCHW kernel with a 4-d array (a numba
typing error at run) and a pool of the graph input a pooling kernel that reads NCHWc."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import engine
from conftest import assert_close_to_reference, ort_run
from engine.kernels import layout

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

_RNG = np.random.default_rng(0)


def _weights(*shape) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _model(nodes, initializers: dict, input_dims=("N", 3, 5, 5)):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_dims))],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _node(op, inputs, output, **attributes):
    return helper.make_node(op, inputs, [output], name=output, **attributes)


RUNS = {
    "flatten of the input": lambda: _model([_node("Flatten", ["x"], "y", axis=1)], {}, (1, 2, 3, 4)),
    "flatten of the input, then gemm": lambda: _model(
        [_node("Flatten", ["x"], "f", axis=1), _node("Gemm", ["f", "w", "b"], "y", transB=1)],
        {"w": _weights(4, 75), "b": _weights(4)}),
    "pool of the input": lambda: _model([_node("GlobalAveragePool", ["x"], "y")], {}),
    "pool of the input, flatten, gemm": lambda: _model(
        [_node("GlobalAveragePool", ["x"], "p"), _node("Flatten", ["p"], "f"),
         _node("Gemm", ["f", "w", "b"], "y", transB=1)], {"w": _weights(4, 3), "b": _weights(4)}),
    "reduce mean without keepdims, gemm": lambda: _model(
        [_node("ReduceMean", ["x"], "p", axes=[2, 3], keepdims=0), _node("Gemm", ["p", "w", "b"], "y", transB=1)],
        {"w": _weights(4, 3), "b": _weights(4)}),
    "conv then pool as the output (N, C, 1, 1)": lambda: _model(
        [_node("Conv", ["x", "w"], "c"), _node("GlobalAveragePool", ["c"], "y")], {"w": _weights(19, 3, 3, 3)}),
    "flatten of a flatten of a pool": lambda: _model(
        [_node("Conv", ["x", "w1"], "c"), _node("GlobalAveragePool", ["c"], "p"), _node("Flatten", ["p"], "f"),
         _node("Flatten", ["f"], "f2"), _node("Gemm", ["f2", "w", "b"], "y", transB=1)],
        {"w1": _weights(5, 3, 1, 1), "w": _weights(4, 5), "b": _weights(4)}),
    "flatten of a gemm": lambda: _model(
        [_node("Flatten", ["x"], "f"), _node("Gemm", ["f", "w", "b"], "g", transB=1), _node("Flatten", ["g"], "y")],
        {"w": _weights(4, 75), "b": _weights(4)}),
    "flatten of a conv": lambda: _model(
        [_node("Conv", ["x", "w"], "c"), _node("Flatten", ["c"], "y")], {"w": _weights(5, 3, 3, 3)}),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_graph_with_few_or_no_convs_matches_onnxruntime(name, batch, threads):
    proto = RUNS[name]()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    fixed = dims[0].HasField("dim_value")
    x = np.random.default_rng(batch).standard_normal((dims[0].dim_value if fixed else batch,
                                                      *(d.dim_value for d in dims[1:])), dtype=np.float32)
    got = engine.load(proto).run(x, threads=min(threads, engine.available_cores()))
    assert_close_to_reference(got, ort_run(proto, x))


def test_the_output_is_a_new_array_not_a_view_of_the_plans_buffers():
    model = engine.load(RUNS["pool of the input"]())
    x = np.ones((2, 3, 5, 5), np.float32)
    first = model.run(x)
    model.run(2 * x)
    np.testing.assert_array_equal(first, np.ones((2, 3, 1, 1), np.float32))


REFUSED = {
    "1x1 conv of a pooled vector (squeeze-and-excitation)": lambda: _model(
        [_node("Conv", ["x", "w1"], "c"), _node("GlobalAveragePool", ["c"], "p"), _node("Conv", ["p", "w2"], "y")],
        {"w1": _weights(8, 3, 1, 1), "w2": _weights(4, 8, 1, 1)}),
    "3x3 conv of a pooled vector": lambda: _model(
        [_node("Conv", ["x", "w1"], "c"), _node("GlobalAveragePool", ["c"], "p"),
         _node("Conv", ["p", "w2"], "y", pads=[1, 1, 1, 1])], {"w1": _weights(8, 3, 1, 1), "w2": _weights(4, 8, 3, 3)}),
    "depthwise conv of a pooled vector": lambda: _model(
        [_node("Conv", ["x", "w1"], "c"), _node("GlobalAveragePool", ["c"], "p"),
         _node("Conv", ["p", "w2"], "y", group=8, pads=[1, 1, 1, 1])],
        {"w1": _weights(8, 3, 1, 1), "w2": _weights(8, 1, 3, 3)}),
    "pool of a pooled vector": lambda: _model(
        [_node("Conv", ["x", "w1"], "c"), _node("GlobalAveragePool", ["c"], "p"),
         _node("GlobalAveragePool", ["p"], "y")], {"w1": _weights(5, 3, 1, 1)}),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_layer_reading_a_pooled_vector_as_an_image_is_refused_at_load(name):
    with pytest.raises(engine.UnsupportedOperatorError, match=r"node 'y'.*reads 'p', the pooled vector of 'p'"):
        engine.load(REFUSED[name]())


@pytest.mark.parametrize("x_shape,out_shape,match", [
    ((1, 3, 4, 4), (1, 1, 4, 4, layout.CB), None),
    ((1, 3, 4, 4), (1, 2, 4, 4, layout.CB), "out must have shape"),
    ((1, 1, 3, 4, 4), (1, 1, 4, 4, layout.CB), "x must have shape"),
    ((1, 3, 4, 4), (1, 1, 4, 4, 3), "out must have shape"),
])
def test_nchw_to_nchwc_checks_shapes_before_the_kernel(x_shape, out_shape, match):
    x, out = np.ones(x_shape, np.float32), np.full(out_shape, 7.0, np.float32)
    if match is None:
        layout.nchw_to_nchwc(x, out)
        assert (out[..., :3] == 1).all() and (out[..., 3:] == 0).all()
    else:
        with pytest.raises(ValueError, match=match):
            layout.nchw_to_nchwc(x, out)


@pytest.mark.parametrize("x_shape,out_shape,match", [
    ((2, 1, 3, 4, layout.CB), (2, 5, 3, 4), None),
    ((2, 1, 3, 4), (2, 5, 3, 4), "x must have shape"),
    ((2, 1, 3, 4, layout.CB), (2, 5, 3, 4, 1), "out must have shape"),
    ((2, 1, 3, 4, layout.CB), (2, layout.CB + 1, 3, 4), "do not hold"),
    ((2, 1, 3, 4, layout.CB), (2, 5, 4, 4), "out must have shape"),
])
def test_nchwc_to_nchw_checks_shapes_before_the_kernel(x_shape, out_shape, match):
    x, out = np.arange(np.prod(x_shape), dtype=np.float32).reshape(x_shape), np.empty(out_shape, np.float32)
    if match is None:
        layout.nchwc_to_nchw(x, out)
        np.testing.assert_array_equal(out, np.moveaxis(x, 4, 2).reshape(2, layout.CB, 3, 4)[:, :5])
    else:
        with pytest.raises(ValueError, match=match):
            layout.nchwc_to_nchw(x, out)
