"""Tests of engine.zoo: the synthetic MobileNets are torchvision's topology (op counts,
FLOPs, parameters), valid ONNX for opsets 9..18 in every export style, all styles compute the
same function, activations stay of order 1, and building is deterministic.

ONNX Runtime is the reference executor; every session runs with graph optimisations off, so
what is compared is the function the ONNX graph writes, not ORT's own fusions.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine import zoo

ort = pytest.importorskip("onnxruntime")
from zoo_support import initializers as _initializers  # noqa: E402
from zoo_support import multiply_accumulates as _multiply_accumulates  # noqa: E402
from zoo_support import op_histogram as _op_histogram  # noqa: E402
from zoo_support import run as _run  # noqa: E402
from zoo_support import session as _session  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# torchvision.zoo.mobilenet_v2(): sum(p.numel() for p in model.parameters())
TORCHVISION_MOBILENET_V2_PARAMETERS = 3_504_872
# torchvision's documented cost of MobileNetV2 at 224: 0.30 GFLOPS (multiply-accumulates);
# counted over Conv and Linear it is 300.77 M MACs = 601.5 MFLOP at 2 FLOP per MAC
MOBILENET_V2_FLOP_AT_224 = 601.5e6
# Howard et al. 2017, Table 1/8: MobileNetV1 1.0-224 has 569 M mult-adds and 4.2 M parameters
MOBILENET_V1_MACS_AT_224 = 569e6

ALL_STYLES = dict(separate_batchnorm=True, flatten_style="reshape_shape_chain", pool_style="reduce_mean",
                  classifier_style="matmul_add", dropout=True)
VARIANTS = (
    [(opset, {}) for opset in range(zoo.MIN_OPSET, zoo.MAX_OPSET + 1)]
    + [(opset, ALL_STYLES) for opset in range(zoo.MIN_OPSET, zoo.MAX_OPSET + 1)]
    + [(13, dict(separate_batchnorm=True)), (13, dict(flatten_style="reshape_constant")),
       (9, dict(flatten_style="reshape_constant", dynamic_batch=False)),
       (13, dict(flatten_style="reshape_shape_chain")), (13, dict(pool_style="reduce_mean")),
       (13, dict(classifier_style="matmul_add")), (13, dict(dropout=True)), (13, dict(dynamic_batch=False)),
       (10, dict(clip_style="attributes")), (11, dict(clip_style="inputs"))]
)


def _input(batch: int = 1, resolution: int = 224, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)


@pytest.fixture(scope="module")
def default_model() -> onnx.ModelProto:
    return zoo.mobilenet_v2()


@pytest.fixture(scope="module")
def default_logits(default_model) -> np.ndarray:
    return _run(default_model, _input(batch=2))


def test_make_divisible_rounds_like_torchvision():
    # (value, expected): nearest multiple of 8, at least 8, bumped up by 8 when rounding lost > 10%
    # (35.9 -> 32 is 10.9% low -> 40; 35 -> 32 is 8.6% low -> stays 32)
    cases = [(32, 32), (16, 16), (32 * 0.5, 16), (16 * 0.5, 8), (16 * 0.75, 16), (24 * 0.75, 24),
             (32 * 0.75, 24), (32 * 1.4, 48), (1280 * 1.4, 1792), (160 * 0.75, 120), (3, 8), (36, 40), (35, 32), (35.9, 40), (11.9, 16)]
    assert [zoo.make_divisible(value) for value, _ in cases] == [expected for _, expected in cases]


def test_default_model_has_torchvision_mobilenet_v2_op_counts(default_model):
    # stem conv; block 1 (t=1): dw + project; 16 blocks with t=6: expand + dw + project; last 1x1 conv
    # -> Conv 1 + 2 + 16*3 + 1 = 52, Clip (ReLU6) 1 + 1 + 16*2 + 1 = 35; residual adds where stride 1
    # and in == out channels: 1 (24) + 2 (32) + 3 (64) + 2 (96) + 2 (160) = 10
    assert _op_histogram(default_model) == {"Conv": 52, "Clip": 35, "Add": 10, "GlobalAveragePool": 1,
                                            "Flatten": 1, "Gemm": 1}


def test_default_model_io_and_names_follow_torch_exporter(default_model):
    graph = default_model.graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
    input_dims = graph.input[0].type.tensor_type.shape.dim
    assert input_dims[0].dim_param == "N" and [d.dim_value for d in input_dims[1:]] == [3, 224, 224]
    output_dims = graph.output[0].type.tensor_type.shape.dim
    assert output_dims[0].dim_param == "N" and output_dims[1].dim_value == 1000
    node_names = {node.name for node in graph.node}
    assert {"/features/features.0/features.0.0/Conv", "/features/features.0/features.0.2/Clip",
            "/features/features.1/conv/conv.0/conv.0.0/Conv", "/features/features.1/conv/conv.1/Conv",
            "/features/features.2/conv/conv.2/Conv", "/features/features.3/Add",
            "/features/features.18/features.18.0/Conv", "/GlobalAveragePool", "/Flatten",
            "/classifier/classifier.1/Gemm"} <= node_names
    assert len(node_names) == len(graph.node)
    weights = _initializers(default_model)
    assert weights["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert weights["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)  # depthwise, group 96
    assert weights["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert weights["classifier.1.weight"].shape == (1000, 1280)


def test_default_model_flops_at_224_match_torchvision(default_model):
    flop = 2 * _multiply_accumulates(default_model)
    assert flop == 601_548_544  # 300,774,272 MACs: exact for this topology
    assert abs(flop - MOBILENET_V2_FLOP_AT_224) <= 0.005 * MOBILENET_V2_FLOP_AT_224


def test_parameter_count_matches_torchvision_up_to_batchnorm_folding(default_model):
    # torchvision counts conv weights + BatchNorm gamma and beta (2 per channel) + Linear.
    # Folding turns each BatchNorm's gamma and beta into one conv bias per channel, so the
    # folded model has exactly one parameter per BatchNorm channel fewer.
    separate = zoo.mobilenet_v2(separate_batchnorm=True)
    separate_weights = _initializers(separate)
    running_statistics = [name for name in separate_weights if name.endswith(("running_mean", "running_var"))]
    learnable = sum(array.size for name, array in separate_weights.items()
                    if name not in running_statistics and not name.startswith("relu6."))
    assert learnable == TORCHVISION_MOBILENET_V2_PARAMETERS
    batchnorm_channels = sum(separate_weights[name].size for name in running_statistics if name.endswith("mean"))
    assert batchnorm_channels == 17_056
    folded = sum(array.size for name, array in _initializers(default_model).items() if not name.startswith("relu6."))
    assert folded == TORCHVISION_MOBILENET_V2_PARAMETERS - batchnorm_channels == 3_487_816


@pytest.mark.parametrize("opset,styles", VARIANTS, ids=lambda v: str(v) if isinstance(v, int) else
                         ",".join(f"{k}={val}" for k, val in v.items()) or "default")
def test_variant_is_valid_onnx_and_computes_the_default_function(opset, styles, default_logits):
    model = zoo.mobilenet_v2(opset=opset, **styles)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    batch = 1 if styles.get("dynamic_batch", True) is False else 2
    logits = _run(model, _input(batch=2)[:batch])
    assert logits.shape == (batch, 1000)
    # same seed -> same function: max error within 1e-4 of the largest logit
    assert np.abs(logits - default_logits[:batch]).max() <= 1e-4 * np.abs(default_logits).max()


def test_variants_write_the_requested_operators():
    separate = zoo.mobilenet_v2(separate_batchnorm=True)
    assert _op_histogram(separate)["BatchNormalization"] == 52
    assert all(len(node.input) == 2 for node in separate.graph.node if node.op_type == "Conv")  # no bias
    folded = zoo.mobilenet_v2()
    assert all(len(node.input) == 3 for node in folded.graph.node if node.op_type == "Conv")

    clips_10 = [n for n in zoo.mobilenet_v2(opset=10).graph.node if n.op_type == "Clip"]
    assert all(len(n.input) == 1 and {a.name for a in n.attribute} == {"min", "max"} for n in clips_10)
    clips_11 = [n for n in zoo.mobilenet_v2(opset=11).graph.node if n.op_type == "Clip"]
    assert all(len(n.input) == 3 and not n.attribute for n in clips_11)

    chain = zoo.mobilenet_v2(flatten_style="reshape_shape_chain", opset=11)
    assert [n.op_type for n in chain.graph.node[-8:]] == ["Shape", "Constant", "Gather", "Unsqueeze", "Constant",
                                                          "Concat", "Reshape", "Gemm"]
    assert "Flatten" not in _op_histogram(chain)
    unsqueeze_13 = [n for n in zoo.mobilenet_v2(flatten_style="reshape_shape_chain").graph.node
                    if n.op_type == "Unsqueeze"]
    assert len(unsqueeze_13[0].input) == 2  # axes became an input in opset 13

    for opset, axes_as_input in ((17, False), (18, True)):
        (reduce,) = [n for n in zoo.mobilenet_v2(opset=opset, pool_style="reduce_mean").graph.node
                     if n.op_type == "ReduceMean"]
        assert (len(reduce.input) == 2) == axes_as_input
        assert any(a.name == "axes" for a in reduce.attribute) != axes_as_input

    matmul = _op_histogram(zoo.mobilenet_v2(classifier_style="matmul_add"))
    assert matmul["MatMul"] == 1 and matmul["Add"] == 11 and "Gemm" not in matmul

    for opset, ratio_as_input in ((11, False), (12, True)):
        (dropout,) = [n for n in zoo.mobilenet_v2(opset=opset, dropout=True).graph.node if n.op_type == "Dropout"]
        assert (len(dropout.input) == 2) == ratio_as_input

    static = zoo.mobilenet_v2(dynamic_batch=False).graph.input[0].type.tensor_type.shape.dim
    assert static[0].dim_value == 1


def test_activations_stay_of_order_one_through_the_network(default_model):
    """Standard-normal input (1, 3, 224, 224): every node's output std within [0.1, 10], ReLU6
    neither saturated nor dead, logits of order 1 and distinct."""
    probed = onnx.ModelProto()
    probed.CopyFrom(default_model)
    for node in probed.graph.node:
        if node.output[0] != "output":
            probed.graph.output.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    session = _session(probed)
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(names, {"input": _input()})))
    assert len(values) == len(default_model.graph.node)
    for name, value in values.items():
        assert 0.1 <= value.std() <= 10, (name, value.std())
        if name.endswith("Clip_output_0"):
            assert (value >= 6).mean() < 0.05, name  # not saturated
            assert (value <= 0).mean() < 0.9, name  # not dead
    logits = values["output"]
    assert 0.3 <= logits.std() <= 3 and np.abs(logits).max() < 20
    assert len(np.unique(logits)) > 990


def test_same_seed_gives_identical_bytes_and_another_seed_does_not():
    assert zoo.mobilenet_v2(seed=3).SerializeToString() == zoo.mobilenet_v2(seed=3).SerializeToString()
    assert zoo.mobilenet_v2(seed=3).SerializeToString() != zoo.mobilenet_v2(seed=4).SerializeToString()
    styled = dict(opset=9, **ALL_STYLES)
    assert zoo.mobilenet_v2(**styled).SerializeToString() == zoo.mobilenet_v2(**styled).SerializeToString()
    assert zoo.mobilenet_v1(seed=3).SerializeToString() == zoo.mobilenet_v1(seed=3).SerializeToString()


@pytest.mark.parametrize("width_mult,resolution,last_channels", [
    (0.5, 224, 1280), (0.75, 224, 1280), (1.4, 224, 1792), (1.0, 96, 1280), (1.0, 160, 1280), (0.35, 96, 1280)])
def test_width_and_resolution_variants_build_and_run(width_mult, resolution, last_channels):
    model = zoo.mobilenet_v2(width_mult, resolution, num_classes=10)
    onnx.checker.check_model(model, full_check=True)
    assert _initializers(model)["features.18.0.weight"].shape[0] == last_channels
    assert _initializers(model)["features.0.0.weight"].shape[0] == zoo.make_divisible(32 * width_mult)
    logits = _run(model, _input(batch=2, resolution=resolution))
    assert logits.shape == (2, 10) and np.isfinite(logits).all() and 0.1 <= logits.std() <= 10


def test_mobilenet_v1_matches_the_paper_and_runs():
    model = zoo.mobilenet_v1()
    onnx.checker.check_model(model, full_check=True)
    # stem + 13 x (depthwise, pointwise): 27 convs, each followed by ReLU
    assert _op_histogram(model) == {"Conv": 27, "Relu": 27, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    macs = _multiply_accumulates(zoo.mobilenet_v1())
    assert abs(macs - MOBILENET_V1_MACS_AT_224) <= 0.005 * MOBILENET_V1_MACS_AT_224
    assert sum(array.size for array in _initializers(model).values()) == 4_221_032  # paper: 4.2 M
    logits = _run(model, _input(batch=2))
    assert logits.shape == (2, 1000) and 0.1 <= logits.std() <= 10
    small = zoo.mobilenet_v1(0.5, 128, num_classes=10, opset=9)
    onnx.checker.check_model(small, full_check=True)
    assert _run(small, _input(batch=1, resolution=128)).shape == (1, 10)


@pytest.mark.parametrize("kwargs,message", [
    (dict(opset=8), "opset"), (dict(opset=19), "opset"), (dict(width_mult=0), "width_mult"),
    (dict(resolution=0), "resolution"), (dict(clip_style="inputs", opset=10), "clip_style"),
    (dict(clip_style="attributes", opset=11), "clip_style"), (dict(clip_style="relu"), "clip_style"),
    (dict(flatten_style="squeeze"), "flatten_style"), (dict(pool_style="max"), "pool_style"),
    (dict(classifier_style="conv"), "classifier_style")])
def test_invalid_arguments_raise_value_error_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.mobilenet_v2(**kwargs)


def test_write_default_model_writes_once_and_leaves_an_existing_file(tmp_path):
    path = zoo.write_default_model(tmp_path / "sub" / "model.onnx")
    assert path.read_bytes() == zoo.mobilenet_v2().SerializeToString()
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no temporary file left behind
    path.write_bytes(b"kept")
    assert zoo.write_default_model(path).read_bytes() == b"kept"


def test_module_command_writes_the_default_model(tmp_path):
    target = tmp_path / "mobilenet_v2.onnx"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "engine.zoo", str(target)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    assert _op_histogram(onnx.load(str(target)))["Conv"] == 52


# ----------------------------------------------------------------------------- external data
# torch.onnx.export(..., dynamo=True) (opset 18+) writes model.onnx + model.onnx.data

def test_save_model_with_external_data_writes_the_graph_and_one_data_file_as_torch_does(tmp_path):
    model = zoo.mobilenet_v2(resolution=32, num_classes=10, opset=18, flatten_style="reshape_shape_chain")
    path = zoo.save_model(model, tmp_path / "sub" / "model.onnx", external_data=True)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    large = {tensor.name for tensor in model.graph.initializer if len(tensor.raw_data) >= zoo.EXTERNAL_DATA_THRESHOLD}
    weight_bytes = sum(len(tensor.raw_data) for tensor in model.graph.initializer if tensor.name in large)
    assert (path.parent / "model.onnx.data").stat().st_size == weight_bytes
    assert path.stat().st_size < weight_bytes / 20        # the graph file holds no weights
    written = onnx.load(str(path), load_external_data=False)
    assert {"relu6.min", "relu6.max"} <= {t.name for t in written.graph.initializer} - large   # scalars stay
    for tensor in written.graph.initializer:              # 256 bytes or more: external, as onnx_ir.save does
        if tensor.name in large:
            assert tensor.data_location == TensorProto.EXTERNAL and not tensor.raw_data
            assert {entry.key: entry.value for entry in tensor.external_data}["location"] == "model.onnx.data"
        else:
            assert tensor.data_location == TensorProto.DEFAULT and tensor.raw_data
    constants = [node for node in written.graph.node if node.op_type == "Constant"]
    assert constants and all(node.attribute[0].t.data_location == TensorProto.DEFAULT for node in constants)
    # the given model is unchanged, and the files hold the same model
    assert all(tensor.data_location == TensorProto.DEFAULT for tensor in model.graph.initializer)
    loaded = _initializers(onnx.load(str(path)))
    assert loaded.keys() == _initializers(model).keys()
    for name, array in _initializers(model).items():
        np.testing.assert_array_equal(loaded[name], array)


def test_save_model_again_replaces_the_data_file_instead_of_appending(tmp_path):
    model = zoo.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    path = zoo.save_model(model, tmp_path / "m.onnx", external_data=True)
    size = (tmp_path / "m.onnx.data").stat().st_size
    zoo.save_model(model, path, external_data=True)
    assert (tmp_path / "m.onnx.data").stat().st_size == size
    np.testing.assert_array_equal(_run(onnx.load(str(path)), _input(resolution=32)), _run(model, _input(resolution=32)))


def test_save_model_without_external_data_writes_one_self_contained_file(tmp_path):
    model = zoo.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10)
    path = zoo.save_model(model, tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert path.read_bytes() == model.SerializeToString()


def test_names_imported_from_engine_zoo_before_it_became_a_package_still_are():
    # engine/zoo.py became the package engine/zoo/ (issue 15): every name the repository,
    # the notebooks and the Makefile import from engine.zoo stays there
    from engine.zoo import (DEFAULT_MODEL_PATH, EXTERNAL_DATA_THRESHOLD, MAX_OPSET, MIN_OPSET,  # noqa: F401
                            make_divisible, mobilenet_v1, mobilenet_v2, save_model, write_default_model)
    assert DEFAULT_MODEL_PATH == "data/mobilenet_v2.onnx" and (MIN_OPSET, MAX_OPSET) == (9, 18)
    assert zoo.MODELS["mobilenet_v2"] is mobilenet_v2 and zoo.MODELS["mobilenet_v1"] is mobilenet_v1
