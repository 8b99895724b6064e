"""Issue 15's networks against ONNX Runtime: the zoo's MobileNetV3-Small/Large,
EfficientNet-B0, ResNet-18/50 (engine.zoo, both exporters' conventions) and small hand-built
graphs with the same patterns (tests/new_ops_graphs.py), at batch 1 and 3, threads 1 and 2,
the default configuration (fuse_blocks="auto") and every block fused. Small resolutions keep
the file fast; 224x224 for two cases.

Tolerance, as everywhere in the engine: max |engine - ORT| <= 1e-4 * max |ORT| over the whole
output (the infinity norm, relative; tests/conftest.assert_close_to_reference)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close_to_reference, ort_run
from new_ops_graphs import GraphBuilder, efficientnet_like, mobilenet_v3_like, resnet_like, single_op

import engine
from engine import zoo

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

ZOO_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50")
SMALL = 64                         # resolution of the zoo models here (a 2x2 map before the pool)
CONFIGS = {"default": {}, "fused": {"fuse_blocks": True}}

HAND_BUILT = {
    "mobilenet_v3_like": lambda: mobilenet_v3_like(),
    "mobilenet_v3_like_hardsigmoid_mul_opset13": lambda: mobilenet_v3_like(hardswish="hardswish_mul", opset=13),
    "efficientnet_like": lambda: efficientnet_like(),
    "efficientnet_like_opset18": lambda: efficientnet_like(opset=18),
    "resnet_like": lambda: resnet_like(),
    "resnet_like_bottleneck": lambda: resnet_like(bottleneck=True),
}


def _zoo_builder(name: str):
    assert name in zoo.MODELS, f"engine.zoo has no builder {name!r}"       # they all exist: a missing one fails
    return zoo.MODELS[name]


def _build(name: str):
    """(model proto, input (C, H, W)) of a case name: "<zoo name>[@exporter][:resolution]" or a HAND_BUILT key."""
    if name in HAND_BUILT:
        return HAND_BUILT[name](), (3, 32, 32)
    name, _, resolution = name.partition(":")
    name, _, exporter = name.partition("@")
    resolution = int(resolution or SMALL)
    build = _zoo_builder(name)
    return build(resolution=resolution, **({"exporter": exporter} if exporter else {})), (3, resolution, resolution)


_loaded: dict = {}


def _model(name: str) -> engine.Model:
    """The engine's model of a case, loaded once per session."""
    if name not in _loaded:
        proto, shape = _build(name)
        _loaded[name] = (proto, engine.load(proto), shape, {})
    return _loaded[name][1]


def _model_and_reference(name: str, batch: int):
    """(engine model, input batch, ORT's output) for a case, each made once per session."""
    model = _model(name)
    proto, _, shape, references = _loaded[name]
    if batch not in references:
        x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
        references[batch] = (x, ort_run(proto, x))
    x, reference = references[batch]
    return model, x, reference


CASES = [*ZOO_MODELS, *(f"{name}@legacy" for name in ZOO_MODELS), *HAND_BUILT]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", CASES)
def test_network_matches_onnxruntime(name, batch, threads, config):
    if threads > engine.available_cores():
        pytest.skip("one core")
    model, x, reference = _model_and_reference(name, batch)
    assert_close_to_reference(model.run(x, threads=threads, **CONFIGS[config]), reference)


def test_efficientnet_b0_at_batch_4_takes_the_per_image_squeeze_excitation_path_and_matches_onnxruntime():
    from engine.kernels.squeeze_excite import PER_IMAGE_BATCH

    batch = 4
    assert batch >= PER_IMAGE_BATCH
    model, x, reference = _model_and_reference("efficientnet_b0", batch)
    per_image = [step for step in model.plan(batch).steps if step.op == "se"
                 and 2 * step.layer.attrs["squeezed"] <= step.layer.input_shape[1] * step.layer.input_shape[2]]
    assert per_image, "no squeeze-excitation layer on the per-image path at this resolution"
    assert_close_to_reference(model.run(x, threads=min(2, engine.available_cores())), reference)

# the exporters' other conventions the builders write (engine.zoo.styles.export_style): opsets
# 13..18, HardSwish as HardSigmoid + Mul, BatchNormalization unfolded, the pools as ReduceMean
# (negative axes too), flattening by Reshape, inference Dropout, a fixed batch of 1
STYLES = {
    "mobilenet_v3_small": [dict(opset=13), dict(separate_batchnorm=True, pool_style="reduce_mean_negative_axes",
                                                 flatten_style="reshape_shape_chain", dropout=True)],
    "mobilenet_v3_large": [dict(opset=18, hardswish_style="hardsigmoid_mul", pool_style="reduce_mean",
                                flatten_style="reshape_constant")],
    "efficientnet_b0": [dict(opset=13, separate_batchnorm=True, dropout=True),
                        dict(opset=18, pool_style="reduce_mean", dynamic_batch=False)],
    "resnet18": [dict(opset=13, separate_batchnorm=True, flatten_style="reshape_shape_chain")],
    "resnet50": [dict(opset=18, pool_style="reduce_mean")],
}
STYLE_CASES = [(name, style) for name, styles in STYLES.items() for style in styles]


@pytest.mark.parametrize("name, style", STYLE_CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in s.items())}"
                                                          for n, s in STYLE_CASES])
def test_every_exporter_style_of_the_zoo_networks_matches_onnxruntime(name, style):
    proto = _zoo_builder(name)(resolution=32, **style)
    model = engine.load(proto)
    for batch in (1,) if style.get("dynamic_batch") is False else (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        assert_close_to_reference(model.run(x, threads=min(2, engine.available_cores())), ort_run(proto, x))


@pytest.mark.parametrize("name", ["mobilenet_v3_large:224", "resnet50:224"])
def test_full_resolution_networks_match_onnxruntime(name):
    model, x, reference = _model_and_reference(name, 1)
    assert_close_to_reference(model.run(x, threads=min(2, engine.available_cores())), reference)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_the_zoo_networks_run_their_new_kernels(name):
    # what the passes made of each network: no layer left without a kernel of its own kind
    ops = {step.op for step in _model(name).plan(1).steps}
    expected = {"mobilenet_v3_small": {"se", "depthwise", "stem"}, "mobilenet_v3_large": {"se", "depthwise"},
                "efficientnet_b0": {"se", "depthwise"}, "resnet18": {"maxpool", "conv"},
                "resnet50": {"maxpool", "conv", "project"}}[name]
    assert expected <= ops, ops
    assert "activation" not in ops          # every activation of these networks is fused into a kernel


# ---------------------------------------------------------------- single ops and odd places

@pytest.mark.parametrize("op, attrs, opset", [
    ("HardSigmoid", {}, 17), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 13), ("HardSwish", {}, 14),
    ("Sigmoid", {}, 17), ("Relu", {}, 17),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 17),
    ("MaxPool", {"kernel_shape": [2, 3], "strides": [1, 2], "pads": [1, 0, 0, 2]}, 12),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, 17)])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_single_op_on_the_graph_input_matches_onnxruntime(op, attrs, opset, batch):
    proto = single_op(op, shape=(1, 19, 9, 10), opset=opset, **attrs)
    x = np.random.default_rng(0).standard_normal((batch, 19, 9, 10)).astype(np.float32) * 4
    assert_close_to_reference(engine.load(proto).run(x), ort_run(proto, x))


@pytest.mark.parametrize("activation", ["sigmoid", "hardsigmoid"])
def test_standalone_activations_on_blocked_and_flat_tensors_match_onnxruntime(activation):
    # after a conv (NCHWc: padded lanes must stay 0 for the 1x1 conv after it) and after the pool (flat)
    g = GraphBuilder(3, 12)
    x = g.act(g.conv("input", 19, 3, 2), activation)
    x = g.conv(x, 21, 1)
    pooled = g.act(g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1), activation)
    weight = np.random.default_rng(1).standard_normal((5, 21)).astype(np.float32)
    out = g.node("Gemm", [pooled, g.constant(weight)], 5, transB=1)
    proto = g.model(out)
    model = engine.load(proto)
    assert sum(layer.op == "Activation" for layer in model.graph.layers) == 2
    x = np.random.default_rng(0).standard_normal((3, 3, 12, 12)).astype(np.float32)
    for threads in (1, min(2, engine.available_cores())):
        assert_close_to_reference(model.run(x, threads=threads), ort_run(proto, x))


def test_a_standalone_activation_of_a_pooled_vector_leaves_its_padded_columns_zero():
    # the pool writes (N, C_padded); the activation gets the true channel count, so its
    # padded columns stay 0 rather than becoming sigmoid(0) = 1/2
    g = GraphBuilder(3, 12)
    pooled = g.node("GlobalAveragePool", [g.conv("input", 19, 3, 2)])
    proto = g.model(g.act(g.node("Flatten", [pooled], axis=1), "sigmoid"))
    plan = engine.load(proto).plan(2)
    (step,) = [step for step in plan.steps if step.op == "activation"]
    x, out, channels = step.call.args[:3]
    assert channels == 19 and x.shape[1] > 19 and out.shape == x.shape
    values = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    values[:, 19:] = 0.0                            # as the pool leaves them
    out[:] = np.nan
    x[:] = values                                   # (x may be out: in place)
    step.call()
    assert_close_to_reference(out[:, :19], 1 / (1 + np.exp(-values[:, :19].astype(np.float64))))
    assert (out[:, 19:] == 0).all()
    assert step.other_flops == 2 * 19 * 3

def test_an_activation_of_the_input_beside_a_stem_reading_it_sees_each_runs_input():
    # the stem reads the caller's batch in place; the activation reads the input as flat rows,
    # so the plan copies the input in for both (a stale copy would match the first run only)
    g = GraphBuilder(3, 10)
    a = g.conv("input", 16, 3, 1)
    c = g.conv(g.act("input", "sigmoid"), 16, 3, 1)
    out = g.add(g.conv(c, 16, 3, 1), a)
    proto = g.model(out)
    model = engine.load(proto)
    for seed in (0, 1):
        x = np.random.default_rng(seed).standard_normal((2, 3, 10, 10)).astype(np.float32)
        assert_close_to_reference(model.run(x), ort_run(proto, x))


# ---------------------------------------------------------------- plans

def test_plans_of_the_new_patterns_convert_no_layout_and_read_the_callers_input():
    # the stem reads the NCHW batch in place; every other kernel reads and writes NCHWc, so
    # no layout step is needed anywhere; the classifier writes the result itself
    plan = engine.load(resnet_like()).plan(2)
    assert [step.op for step in plan.steps] == ["stem", "maxpool", "conv", "conv", "conv", "conv", "conv", "pool",
                                                "linear"]
    assert plan.input_buffer is None
    # fuse_blocks=True fuses every block: the SE-free one and both squeeze-and-excitation ones
    model = engine.load(mobilenet_v3_like())
    plan = model.plan(2, fuse_blocks=True)
    ops = [step.op for step in plan.steps]
    assert ops == ["stem", "block", "block", "block", "expand", "pool", "linear", "linear"]
    # a schedule leaving the SE blocks unfused: the SE-free block still fuses, the SEs are steps
    from engine.passes import find_squeeze_excite_blocks
    from engine.tiles import TileSchedule

    se_blocks = {block[2].name: False for block in find_squeeze_excite_blocks(model.graph)}
    assert len(se_blocks) == 2
    plan = model.plan(2, tiles=TileSchedule(engine.Tiles(), fused=se_blocks), fuse_blocks=True)
    ops = [step.op for step in plan.steps]
    assert "layout" not in ops and ops.count("se") == 2 and ops.count("block") == 1
    se = plan.steps[ops.index("se")]
    assert se.flops == 2 * 2 * 2 * 8 * 16         # batch 2: its two 1x1 convs (16 -> 8 -> 16 channels)


def test_the_cache_simulation_traces_the_new_kernels_and_refuses_a_kernel_it_cannot_trace(monkeypatch):
    from engine.kernels import pooling
    from engine.trace import calls
    from engine.trace.simulator import simulate_plan

    plan = engine.load(resnet_like()).plan(1)
    assert all(step.traced for step in simulate_plan(plan))
    monkeypatch.delitem(calls.TRACERS, pooling._max_pool_kernel)      # as a kernel added without a tracer
    with pytest.raises(ValueError, match=r"no access trace for 1 step\(s\).*maxpool"):
        simulate_plan(plan)


@pytest.mark.parametrize("build", [mobilenet_v3_like, resnet_like])
def test_the_tuner_and_a_tuned_schedule_take_the_new_step_kinds(build):
    # it tunes the 1x1, depthwise and dense conv steps and leaves the others (maxpool, se,
    # activation) at their defaults; the schedule it returns runs and still matches
    proto = build()
    model = engine.load(proto)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    model.run(x, threads=1)             # kernels compiled before the budget starts
    result = engine.tune(model, batch=1, threads=1, budget_s=3.0, repeats=3)
    assert_close_to_reference(model.run(x, tiles=result.schedule), ort_run(proto, x))
    kinds = {trial["kind"] for trial in result.trials}
    assert kinds <= {"fusion", "pointwise", "depthwise", "block", "dense"}
    if build is resnet_like:      # its convs after the stem are dense: searched by pixels and channels
        dense = [trial for trial in result.trials if trial["kind"] == "dense"]
        assert dense, result.stopped
        assert {tuple(trial["candidate"]) for trial in dense} == {("pointwise_pixels", "pointwise_channels")}
        assert len({trial["candidate"]["pointwise_pixels"] for trial in dense}) > 1
