"""The graph passes on issue 15's patterns (tests/new_ops_graphs.py): gated activations
(x * sigmoid(x) -> silu, x * hardsigmoid(x) -> hardswish), squeeze-and-excitation as one
layer, activations fused into conv and linear epilogues or left stand-alone, residual Adds
fused into dense convs, the stem left on the direct kernel, the layouts of the new ops and
the inverted-residual block finder. Graph level only: no kernel runs here."""
from __future__ import annotations

import math

import numpy as np
import pytest
from new_ops_graphs import GraphBuilder, efficientnet_like, mobilenet_v3_like, resnet_like

from engine.errors import UnsupportedOperatorError
from engine.graph import NO_CLIP
from engine.kernels.activation import HARDSWISH_DEFAULT, NO_ACTIVATION
from engine.onnx_import import import_graph
from engine.passes import find_inverted_residual_blocks, run_passes


def passes(model):
    return run_passes(import_graph(model))


def summary(graph) -> list[tuple]:
    """(op or conv kind, activation name, residual?) per layer."""
    return [(layer.conv_kind or layer.op, layer.activation[0], layer.clip, layer.residual is not None)
            for layer in graph.layers]


@pytest.mark.parametrize("order", ["x_first", "gate_first"])
@pytest.mark.parametrize("gate, expected", [("Sigmoid", ("silu", 0.0, 0.0)),
                                            ("HardSigmoid", ("hardswish", 1 / 6, 0.5))])
def test_a_gated_activation_after_a_conv_becomes_the_convs_epilogue(order, gate, expected):
    g = GraphBuilder(8, 6)
    x = g.conv("input", 16, 3, 2)
    x = g.conv(x, 16, 3, 1)           # a dense conv on a conv's output: not the stem
    attrs = {"alpha": 1 / 6, "beta": 0.5} if gate == "HardSigmoid" else {}
    gated = g.node(gate, [x], **attrs)
    out = g.node("Mul", [x, gated] if order == "x_first" else [gated, x])
    graph = passes(g.model(out))
    assert [layer.op for layer in graph.layers] == ["Conv", "Conv"]
    conv = graph.layers[-1]
    assert conv.conv_kind == "dense" and conv.output == out
    assert conv.activation[0] == expected[0] and np.allclose(conv.activation[1:], expected[1:])
    assert len(conv.sources) == 3         # the conv, the gate and the Mul


def test_a_sigmoid_read_by_something_else_keeps_the_mul_and_is_refused():
    g = GraphBuilder(8, 6)
    x = g.conv("input", 16, 3, 2)
    gated = g.node("Sigmoid", [x])
    out = g.node("Mul", [g.node("Mul", [x, gated]), gated])
    with pytest.raises(UnsupportedOperatorError, match="'Mul'"):
        passes(g.model(out))


def test_a_mul_of_two_different_tensors_is_refused_naming_the_node():
    g = GraphBuilder(8, 6)
    a, b = g.conv("input", 16, 1), g.conv("input", 16, 3)
    out = g.node("Mul", [a, b])
    with pytest.raises(UnsupportedOperatorError, match=r"/mul_3.*x \* Sigmoid\(x\)"):
        passes(g.model(out))


def test_hardswish_after_a_conv_is_fused_and_a_following_relu6_becomes_its_clip():
    g = GraphBuilder(8, 6)
    x = g.act(g.act(g.conv("input", 16, 3, 2, batchnorm=True), "hardswish"), "relu6")
    graph = passes(g.model(x))
    (conv,) = graph.layers
    assert conv.activation == HARDSWISH_DEFAULT and conv.clip == (0.0, 6.0)
    assert conv.activation_name == "hardswish+relu6"


def test_a_sigmoid_after_a_conv_stays_a_standalone_activation_in_the_convs_layout():
    g = GraphBuilder(8, 6)
    x = g.act(g.act(g.conv("input", 16, 3, 2), "sigmoid"), "relu6")
    graph = passes(g.model(x))
    conv, activation = graph.layers
    assert conv.activation == NO_ACTIVATION and conv.clip == NO_CLIP
    assert activation.op == "Activation" and activation.activation[0] == "sigmoid"
    assert activation.clip == (0.0, 6.0)           # the Clip after it joined it
    assert graph.layout_of(activation.output) == "nchwc"


def test_activations_of_the_graph_input_and_of_a_pooled_vector_keep_their_layouts():
    g = GraphBuilder(8, 6)
    x = g.act("input", "hardsigmoid")
    x = g.conv(x, 16, 3, 1)
    pooled = g.act(g.node("GlobalAveragePool", [x]), "sigmoid")
    graph = passes(g.model(pooled))
    first, conv, pool, last = graph.layers
    assert graph.layout_of(first.output) == "nchw" and conv.conv_kind == "direct"   # still the stem
    assert graph.layout_of(last.output) == "flat" and last.op == "Activation"


def test_a_relu_that_cannot_fuse_runs_standalone_instead_of_being_refused():
    g = GraphBuilder(8, 6)
    graph = passes(g.model(g.act("input", "relu")))
    (layer,) = graph.layers
    assert layer.op == "Activation" and layer.activation == NO_ACTIVATION and layer.clip == (0.0, math.inf)


def test_linear_takes_any_activation_but_a_clip_after_it_stays_standalone():
    g = GraphBuilder(8, 6)
    x = g.classifier(g.conv("input", 16, 3, 2), 10, hidden=12, activation="hardsigmoid")
    graph = passes(g.model(x))
    hidden = [layer for layer in graph.layers if layer.op == "Linear"][0]
    assert hidden.activation == ("hardsigmoid", float(np.float32(1 / 6)), 0.5)      # the attribute is a float32
    g = GraphBuilder(8, 6)
    x = g.act(g.classifier(g.conv("input", 16, 3, 2), 10), "relu6")
    graph = passes(g.model(x))
    assert [layer.op for layer in graph.layers][-2:] == ["Linear", "Activation"]


@pytest.mark.parametrize("hidden, gate, reduce_mean, gate_first, opset", [
    ("relu", "hardsigmoid", False, False, 17), ("relu", "hardsigmoid", True, True, 13),
    ("silu", "sigmoid", True, False, 18), ("relu6", "sigmoid", False, True, 17)])
def test_squeeze_and_excitation_becomes_one_layer(hidden, gate, reduce_mean, gate_first, opset):
    g = GraphBuilder(8, 6, opset=opset)
    x = g.act(g.conv("input", 24, 3, 2), "relu")
    x = g.squeeze_excite(x, 8, hidden=hidden, gate=gate, reduce_mean=reduce_mean, gate_first=gate_first)
    out = g.conv(x, 16)
    graph = passes(g.model(out))
    conv, se, project = graph.layers
    assert se.op == "SqueezeExcite" and se.inputs == [conv.output] and project.inputs == [se.output]
    assert se.attrs["w1"].shape == (8, 24) and se.attrs["w2"].shape == (24, 8)
    assert se.attrs["b1"].shape == (8,) and se.attrs["b2"].shape == (24,)
    assert se.attrs["gate_activation"][0] == gate
    assert se.attrs["hidden_activation"][0] == ("silu" if hidden == "silu" else "none")
    assert se.attrs["hidden_clip"] == {"relu": (0.0, math.inf), "relu6": (0.0, 6.0), "silu": NO_CLIP}[hidden]
    assert graph.layout_of(se.output) == "nchwc"
    assert len(se.sources) == 6 + (hidden == "silu")     # pool, conv, hidden (silu: 2 nodes), conv, gate, Mul


def test_squeeze_excitation_weights_are_the_1x1_convs():
    g = GraphBuilder(8, 6)
    x = g.conv("input", 24, 3, 2)
    model = g.model(g.squeeze_excite(x, 8))
    weights = {init.name: init for init in model.graph.initializer}
    graph = passes(model)
    se = graph.layers[1]
    reduce = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[0].startswith("/globalaveragepool"))
    w1 = np.frombuffer(weights[reduce.input[1]].raw_data, np.float32).reshape(8, 24)
    assert np.array_equal(se.attrs["w1"], w1)


def test_a_pooled_vector_read_by_anything_but_the_pattern_is_still_refused():
    g = GraphBuilder(8, 6)
    x = g.conv("input", 24, 3, 2)
    pooled = g.node("GlobalAveragePool", [x])
    scale = g.act(g.conv(g.act(g.conv(pooled, 8), "relu"), 24), "hardsigmoid")
    out = g.add(g.node("Mul", [x, scale]), g.conv(pooled, 24))        # the pool has a second reader
    with pytest.raises(UnsupportedOperatorError):
        passes(g.model(out))


def test_residual_add_and_relu_fuse_into_a_dense_conv():
    graph = passes(resnet_like())
    kinds = summary(graph)
    assert kinds[0][0] == "direct" and kinds[1][0] == "MaxPool"
    dense_with_residual = [k for k in kinds if k[0] == "dense" and k[3]]
    assert len(dense_with_residual) == 2 and all(k[2] == (0.0, math.inf) for k in dense_with_residual)
    assert graph.layout_of(graph.layers[1].output) == "nchwc"


def test_a_dilated_dense_conv_stays_on_the_direct_kernel():
    g = GraphBuilder(8, 12)
    x = g.conv("input", 16, 3, 1)
    out = g.node("Conv", [x, g.constant(np.ones((16, 16, 3, 3), np.float32))], 16, kernel_shape=[3, 3],
                 dilations=[2, 2], pads=[2, 2, 2, 2])
    graph = passes(g.model(out))
    assert [layer.conv_kind for layer in graph.layers] == ["direct", "direct"]


def test_the_block_finder_skips_blocks_with_squeeze_excitation_and_carries_activations():
    graph = passes(mobilenet_v3_like())
    blocks = find_inverted_residual_blocks(graph)
    assert len(blocks) == 1               # only the expand -> dw3x3 -> project without SE
    expand, depthwise, project = blocks[0]
    assert expand.activation == depthwise.activation == HARDSWISH_DEFAULT
    assert project.activation == NO_ACTIVATION
    for layer in graph.layers:
        if layer.op == "SqueezeExcite":
            assert not any(layer in block for block in blocks)


@pytest.mark.parametrize("build", [mobilenet_v3_like, efficientnet_like, resnet_like])
def test_every_layer_of_the_small_networks_is_executable(build):
    graph = passes(build())
    assert {layer.op for layer in graph.layers} <= {"Conv", "GlobalAveragePool", "MaxPool", "SqueezeExcite",
                                                    "Activation", "Flatten", "Linear"}
    assert not any(layer.op == "Activation" for layer in graph.layers)    # every activation fused somewhere


@pytest.mark.parametrize("gate_first", [False, True])
def test_squeeze_and_excitation_of_a_1x1_image_is_recognised_though_x_and_the_gate_have_one_shape(gate_first):
    # a small input's last stages: x is (C, 1, 1) like the gate, so the Mul is no broadcast
    g = GraphBuilder(8, 2)
    x = g.act(g.conv("input", 24, 3, 2), "hardswish")
    x = g.squeeze_excite(x, 8, gate_first=gate_first)
    graph = passes(g.model(g.conv(x, 16)))
    conv, se, project = graph.layers
    assert conv.output_shape == (24, 1, 1) and se.op == "SqueezeExcite" and se.inputs == [conv.output]


def test_the_squeeze_excitation_steps_flops_split_adds_up_to_the_kernels_count():
    from engine.kernels.activation import activation_flops
    from engine.kernels.squeeze_excite import squeeze_excite_flops
    from engine.steps import _squeeze_excite_flops

    hidden, gate = ("silu", 0.0, 0.0), ("hardsigmoid", 1 / 6, 0.5)
    convs, other = _squeeze_excite_flops(2, 96, 24, 14, 14, hidden, gate)
    assert convs == 2 * 2 * 2 * 24 * 96
    assert convs + other == (squeeze_excite_flops(2, 96, 24, 14, 14) + 2 * 24 * activation_flops(hidden)
                             + 2 * 96 * activation_flops(gate))


@pytest.mark.parametrize("gate_first", [False, True])
def test_a_squeeze_excitation_near_miss_pooling_another_tensor_is_not_fused_wrongly(gate_first):
    # the pool reads x, the Mul scales y (same shape): not a squeeze-and-excitation; the
    # engine must refuse it cleanly or run it unfused and still match ONNX Runtime
    import engine
    from conftest import assert_close_to_reference, ort_run

    g = GraphBuilder(8, 6)
    x = g.act(g.conv("input", 24, 3, 2), "relu")
    y = g.conv(x, 24, 1)
    pooled = g.node("GlobalAveragePool", [x])
    scale = g.act(g.conv(g.act(g.conv(pooled, 8), "relu"), 24), "hardsigmoid")
    out = g.conv(g.node("Mul", [scale, y] if gate_first else [y, scale]), 16)
    proto = g.model(out)
    try:
        model = engine.load(proto)
    except UnsupportedOperatorError as error:     # what the passes do today: the Mul, named
        assert "'/mul_9'" in str(error) and "squeeze-and-excitation" in str(error), str(error)
        return
    assert not any(layer.op == "SqueezeExcite" for layer in model.graph.layers)
    data = np.random.default_rng(0).standard_normal((2, 8, 6, 6)).astype(np.float32)
    assert_close_to_reference(model.run(data), ort_run(proto, data))
