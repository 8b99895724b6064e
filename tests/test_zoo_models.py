"""Tests of engine.zoo's MobileNetV3-Small/Large, EfficientNet-B0, ResNet-18/50 builders and
its registry: torchvision's topology (node by node against real torch exports, parameter
counts, MACs), every exporter convention a valid ONNX model computing the same function,
deterministic weights, activations of order 1, and model_path / the command line.

ONNX Runtime is the reference executor, with graph optimisations off, so what is compared is
the function the ONNX graph writes. The small-resolution runs (32x32) keep the file fast;
only the activation-scale test runs at 224 (ResNet-50 there: about 0.6 s).
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine import zoo
from onnx_topology import topology

ort = pytest.importorskip("onnxruntime")
from zoo_support import initializers as _initializers  # noqa: E402
from zoo_support import multiply_accumulates as _multiply_accumulates  # noqa: E402
from zoo_support import op_histogram as _op_histogram  # noqa: E402
from zoo_support import run as _run  # noqa: E402
from zoo_support import session as _session  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "data" / "torchvision_exports"
NEW_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet18", "resnet50")

# sum(p.numel() for p in torchvision.models.<name>().parameters()) (torchvision's docs list the same)
TORCHVISION_PARAMETERS = {"mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032,
                          "efficientnet_b0": 5_288_548, "resnet18": 11_689_512, "resnet50": 25_557_032}
# torchvision's documented GFLOPS (multiply-accumulates of Conv and Linear) at 224, 2 decimals
TORCHVISION_GMACS = {"mobilenet_v3_small": 0.06, "mobilenet_v3_large": 0.22, "efficientnet_b0": 0.39,
                     "resnet18": 1.81, "resnet50": 4.09}
# exactly, counted on the builders' graphs (Conv and Gemm, from inferred shapes)
MACS_AT_224 = {"mobilenet_v3_small": 56_510_400, "mobilenet_v3_large": 216_589_760, "efficientnet_b0": 385_814_752,
               "resnet18": 1_814_073_344, "resnet50": 4_089_184_256}

SMALL = dict(resolution=32, num_classes=10)


@functools.lru_cache(maxsize=32)
def _cached(name: str, **kwargs) -> onnx.ModelProto:
    """zoo.MODELS[name](**kwargs), built once per test session (callers must not modify it)."""
    return zoo.MODELS[name](**kwargs)


@pytest.fixture(scope="module", autouse=True)
def _free_cached_models():
    """The cached models (ResNet-50's are 100 MB each) are dropped when this file's tests end."""
    yield
    _cached.cache_clear()


def _input(batch: int = 2, resolution: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# ----------------------------------------------------------------------------- registry


def test_registry_names_every_model_and_each_builder_takes_resolution_num_classes_seed():
    assert list(zoo.MODELS) == ["mobilenet_v1", "mobilenet_v2", *NEW_MODELS]
    for name, build in zoo.MODELS.items():
        model = build(resolution=16, num_classes=3, seed=1)
        assert model.graph.name == name
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
        assert dims == [3, 16, 16] and model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3


# ----------------------------------------------------------------------------- torchvision's topology


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json") if ".logits." not in p.name))
def test_graph_equals_torch_export_of_torchvision_node_by_node(fixture):
    """The committed fixtures are torch.onnx.export's graphs of torchvision's models (legacy
    exporter at opsets 17 and 13, dynamo exporter at 18; written by export_torchvision.py):
    with the same exporter conventions the builder writes the same nodes, in the same order,
    with the same attributes, weight shapes, constants and connections."""
    expected = _fixture(fixture)
    name, exporter, opset = expected["model"], expected["exporter"], expected["opset"]
    if name == "mobilenet_v2" and exporter == "dynamo":
        # mobilenet_v2's styles come closest with these; its Reshape has no allowzero=1
        model = zoo.mobilenet_v2(opset=opset, pool_style="reduce_mean_negative_axes", flatten_style="reshape_constant")
        for op_type, attributes, _ in expected["nodes"]:
            if op_type == "Reshape":
                assert attributes.pop("allowzero") == 1
    elif name == "mobilenet_v2":
        model = zoo.mobilenet_v2(opset=opset)
    else:
        model = _cached(name, exporter=exporter, opset=opset)
    assert expected["written_opset"] == opset
    assert topology(model) == expected["nodes"]


def test_fixtures_cover_every_new_model_and_both_exporters():
    fixtures = {(f["model"], f["exporter"], f["opset"])
                for f in map(_fixture, (p.name for p in FIXTURES.glob("*.json") if ".logits." not in p.name))}
    for name in NEW_MODELS:
        assert {(name, "legacy", 17), (name, "legacy", 13), (name, "dynamo", 18)} <= fixtures


@pytest.mark.parametrize("name", ["mobilenet_v2", *NEW_MODELS])
@pytest.mark.parametrize("separate_batchnorm", [False, True])
def test_builder_computes_torchvisions_function_with_the_same_weights(name, separate_batchnorm):
    """<name>.logits.json: torchvision's own module (torch 2.14.1, torchvision 0.29.1) loaded
    with this builder's weights (seed 0, 32x32, 10 classes; the separate-BatchNorm model's
    initializers are torchvision's state_dict) and run on the same input. The builder's graph
    in ONNX Runtime gives the same logits: the same function, not only the same shapes (the
    fixture is to be rewritten with export_torchvision.py if the weight initialisation changes)."""
    expected = _fixture(f"{name}.logits.json")
    assert (expected["resolution"], expected["num_classes"], expected["seed"]) == (32, 10, 0)
    shape = (expected["batch"], 3, expected["resolution"], expected["resolution"])
    x = np.random.default_rng(expected["input_seed"]).standard_normal(shape).astype(np.float32)
    model = zoo.MODELS[name](resolution=32, num_classes=10, seed=0, separate_batchnorm=separate_batchnorm)
    reference = np.array(expected["logits"], np.float32)
    logits = _run(model, x)
    assert np.abs(logits - reference).max() <= 1e-5 * np.abs(reference).max()


@pytest.mark.parametrize("name", NEW_MODELS)
def test_parameter_count_equals_torchvision(name):
    # torchvision counts conv weights (+ SE conv biases), BatchNorm gamma and beta, Linear; the
    # separate-BatchNorm model holds exactly these plus the running statistics and small constants
    weights = _initializers(_cached(name, separate_batchnorm=True))
    learnable = sum(array.size for key, array in weights.items()
                    if not key.endswith(("running_mean", "running_var")) and array.dtype == np.float32 and array.ndim)
    assert learnable == TORCHVISION_PARAMETERS[name]
    assert _fixture(f"{name}.legacy17.json")["parameters"] == TORCHVISION_PARAMETERS[name]


@pytest.mark.parametrize("name,options,parameters", [
    # torchvision.models.mobilenet_v3_*(width_mult=...): sum(p.numel() for p in model.parameters())
    ("mobilenet_v3_large", dict(width_mult=0.75), 3_377_576), ("mobilenet_v3_large", dict(width_mult=1.25), 8_164_744),
    ("mobilenet_v3_small", dict(width_mult=0.5), 917_264),
    # torchvision's efficientnet_b1, b2, b3 are B0's blocks at these width / depth multipliers
    ("efficientnet_b0", dict(width_mult=1.0, depth_mult=1.1), 7_794_184),
    ("efficientnet_b0", dict(width_mult=1.1, depth_mult=1.2), 9_109_994),
    ("efficientnet_b0", dict(width_mult=1.2, depth_mult=1.4), 12_233_232)])
def test_width_and_depth_multipliers_give_torchvisions_parameter_counts(name, options, parameters):
    weights = _initializers(zoo.MODELS[name](separate_batchnorm=True, **options))
    learnable = sum(array.size for key, array in weights.items()
                    if not key.endswith(("running_mean", "running_var")) and array.dtype == np.float32 and array.ndim)
    assert learnable == parameters


@pytest.mark.parametrize("name", NEW_MODELS)
def test_multiply_accumulates_at_224_match_torchvision(name):
    macs = _multiply_accumulates(_cached(name))
    assert macs == MACS_AT_224[name]
    assert round(macs / 1e9, 2) == TORCHVISION_GMACS[name]


def test_mobilenet_v3_and_efficientnet_details_follow_torchvision():
    large = _initializers(zoo.mobilenet_v3_large(separate_batchnorm=True))
    # SE squeeze: _make_divisible(expanded // 4, 8): 72 -> 24 (features.4), 120 -> 32, 672 -> 168
    assert large["features.4.block.2.fc1.weight"].shape == (24, 72, 1, 1)
    assert large["features.5.block.2.fc1.weight"].shape == (32, 120, 1, 1)
    assert large["features.13.block.2.fc2.weight"].shape == (672, 168, 1, 1)
    assert large["features.13.block.1.0.weight"].shape == (672, 1, 5, 5)  # depthwise 5x5
    assert large["features.16.0.weight"].shape == (960, 160, 1, 1)
    assert large["classifier.0.weight"].shape == (1280, 960) and large["classifier.3.weight"].shape == (1000, 1280)
    separate = zoo.mobilenet_v3_small(separate_batchnorm=True)
    epsilons = {round(a.f, 9) for n in separate.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
                if a.name == "epsilon"}
    assert epsilons == {1e-3}
    effnet = zoo.efficientnet_b0(separate_batchnorm=True)
    weights = _initializers(effnet)
    # SE squeeze: max(1, block input channels // 4): 32 // 4 = 8 in features.1.0, 16 // 4 = 4 in features.2.0
    assert weights["features.1.0.block.1.fc1.weight"].shape == (8, 32, 1, 1)
    assert weights["features.2.0.block.2.fc1.weight"].shape == (4, 96, 1, 1)
    assert weights["features.8.0.weight"].shape == (1280, 320, 1, 1)
    epsilons = {round(a.f, 9) for n in effnet.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
                if a.name == "epsilon"}
    assert epsilons == {1e-5}  # B0 uses nn.BatchNorm2d's default
    assert _op_histogram(zoo.efficientnet_b0())["Add"] == 9  # residual blocks: 1 + 1 + 2 + 2 + 3


# ----------------------------------------------------------------------------- runs and conventions


@pytest.mark.parametrize("name", NEW_MODELS)
def test_small_model_is_valid_and_runs_in_onnxruntime(name):
    model = zoo.MODELS[name](**SMALL)
    onnx.checker.check_model(model, full_check=True)
    logits = _run(model, _input(batch=3))
    assert logits.shape == (3, 10) and np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])


@pytest.mark.parametrize("name", NEW_MODELS)
def test_any_resolution_down_to_one_pixel_runs(name):
    for resolution in (1, 33):
        model = zoo.MODELS[name](resolution=resolution, num_classes=4)
        assert _run(model, _input(batch=1, resolution=resolution)).shape == (1, 4)


@pytest.mark.parametrize("name", [name for name in NEW_MODELS if name != "resnet50"])  # resnet18: same code
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(name):
    build = zoo.MODELS[name]
    assert build(seed=3, **SMALL).SerializeToString() == build(seed=3, **SMALL).SerializeToString()
    assert build(seed=3, **SMALL).SerializeToString() != build(seed=4, **SMALL).SerializeToString()
    # weights do not depend on resolution or style
    a, b = _initializers(build(seed=3, **SMALL)), _initializers(build(seed=3, resolution=64, num_classes=10))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _variants(name: str) -> list[dict]:
    if name.startswith("resnet"):  # ~100 MB models: the conventions' code is shared, so a few of them
        return [dict(opset=13), dict(exporter="legacy"), dict(dynamic_batch=False),
                dict(exporter="legacy", opset=14, separate_batchnorm=True, pool_style="reduce_mean",
                     flatten_style="reshape_shape_chain")]
    variants = [dict(opset=opset) for opset in range(zoo.NEW_MIN_OPSET, zoo.MAX_OPSET + 1)]
    variants += [dict(exporter="legacy"), dict(exporter="legacy", opset=13), dict(separate_batchnorm=True),
                 dict(pool_style="global_average_pool"), dict(pool_style="reduce_mean"),
                 dict(pool_style="reduce_mean", opset=17), dict(flatten_style="flatten"),
                 dict(flatten_style="reshape_shape_chain"), dict(flatten_style="reshape_constant", opset=13),
                 dict(dynamic_batch=False),
                 dict(exporter="legacy", opset=14, separate_batchnorm=True, pool_style="reduce_mean",
                      flatten_style="reshape_shape_chain")]
    if name.startswith("mobilenet_v3"):
        variants += [dict(hardswish_style="hardsigmoid_mul"), dict(hardswish_style="op", opset=14),
                     dict(hardswish_style="hardsigmoid_mul", exporter="legacy", opset=16)]
    return variants + [dict(dropout=True), dict(dropout=True, opset=13)]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_every_export_convention_is_valid_onnx_and_computes_the_default_function(name):
    build = zoo.MODELS[name]
    x = _input(batch=2)
    reference = _run(build(**SMALL), x)
    for options in _variants(name):
        model = build(**SMALL, **options)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == options.get("opset", 17 if options.get("exporter") == "legacy" else 18)
        batch = 1 if options.get("dynamic_batch") is False else 2
        logits = _run(model, x[:batch])
        # same seed -> same function: max error within 1e-4 of the largest logit
        assert np.abs(logits - reference[:batch]).max() <= 1e-4 * np.abs(reference).max(), options


def test_conventions_write_the_requested_operators():
    # HardSwish: the opset-14 op, or Mul(x, HardSigmoid(x, alpha=1/6)) below 14 or on request
    default = _op_histogram(zoo.mobilenet_v3_small())
    assert default["HardSwish"] == 19 and default["HardSigmoid"] == 9  # 9 SE gates
    old = zoo.mobilenet_v3_small(opset=13)
    assert "HardSwish" not in _op_histogram(old) and _op_histogram(old)["HardSigmoid"] == 9 + 19
    for node in old.graph.node:
        if node.op_type == "HardSigmoid":
            attributes = {a.name: a.f for a in node.attribute}
            assert attributes["alpha"] == pytest.approx(1 / 6) and attributes.get("beta", 0.5) == 0.5
    assert _op_histogram(zoo.mobilenet_v3_small(hardswish_style="hardsigmoid_mul")) == _op_histogram(
        zoo.mobilenet_v3_small(opset=13))
    # SiLU: Mul(x, Sigmoid(x)); the SE gate Sigmoid
    effnet = _op_histogram(zoo.efficientnet_b0())
    assert effnet["Sigmoid"] == 49 + 16 and effnet["Mul"] == 49 + 16  # 49 SiLU (33 convs + 16 SE) + 16 SE gates
    # pooling: ReduceMean over [-1, -2] as an input (dynamo, 18), [2, 3] attribute before 18
    reduce_means = [n for n in zoo.mobilenet_v3_large().graph.node if n.op_type == "ReduceMean"]
    assert len(reduce_means) == 9 and all(len(n.input) == 2 for n in reduce_means)
    for opset, axes_as_input in ((17, False), (18, True)):
        (first, *_) = [n for n in zoo.resnet18(opset=opset, pool_style="reduce_mean").graph.node
                       if n.op_type == "ReduceMean"]
        assert (len(first.input) == 2) == axes_as_input and any(a.name == "axes" for a in first.attribute) != axes_as_input
    legacy = _op_histogram(zoo.mobilenet_v3_large(exporter="legacy"))
    assert legacy["GlobalAveragePool"] == 9 and legacy["Flatten"] == 1 and "ReduceMean" not in legacy
    # flatten: Reshape [-1, C] allowzero=1 (dynamo, opset >= 14)
    (reshape,) = [n for n in _cached("resnet50").graph.node if n.op_type == "Reshape"]
    assert {a.name: a.i for a in reshape.attribute} == {"allowzero": 1}
    assert _initializers(_cached("resnet50"))["flatten.shape"].tolist() == [-1, 2048]
    # BatchNorm separate; ResNet's MaxPool; Dropout where torchvision has one
    separate = _op_histogram(_cached("resnet50", separate_batchnorm=True))
    assert separate["BatchNormalization"] == separate["Conv"] == 53 and separate["MaxPool"] == 1
    assert all(len(n.input) == 2 for n in zoo.resnet18(separate_batchnorm=True).graph.node if n.op_type == "Conv")
    assert [n.name for n in zoo.mobilenet_v3_small(dropout=True).graph.node if n.op_type == "Dropout"] == [
        "/classifier/classifier.2/Dropout"]
    assert [n.name for n in zoo.efficientnet_b0(dropout=True).graph.node if n.op_type == "Dropout"] == [
        "/classifier/classifier.0/Dropout"]


def test_names_follow_torch_exporter():
    names = {n.name for n in _cached("resnet50").graph.node}
    assert {"/conv1/Conv", "/relu/Relu", "/maxpool/MaxPool", "/layer1/layer1.0/conv3/Conv",
            "/layer1/layer1.0/downsample/downsample.0/Conv", "/layer1/layer1.0/Add", "/layer1/layer1.0/relu_2/Relu",
            "/avgpool/ReduceMean", "/fc/Gemm"} <= names
    names = {n.name for n in zoo.mobilenet_v3_small().graph.node}
    assert {"/features/features.1/block/block.1/avgpool/ReduceMean", "/features/features.1/block/block.1/fc1/Conv",
            "/features/features.1/block/block.1/scale_activation/HardSigmoid", "/features/features.1/block/block.1/Mul",
            "/features/features.3/Add", "/classifier/classifier.1/HardSwish", "/classifier/classifier.3/Gemm"} <= names


@pytest.mark.parametrize("kwargs,message", [
    (dict(opset=12), "opset"), (dict(opset=19), "opset"), (dict(exporter="onnxscript"), "exporter"),
    (dict(hardswish_style="op", opset=13), "hardswish_style"), (dict(hardswish_style="relu"), "hardswish_style"),
    (dict(pool_style="max"), "pool_style"), (dict(flatten_style="squeeze"), "flatten_style"),
    (dict(resolution=0), "resolution"), (dict(num_classes=0), "num_classes"), (dict(width_mult=0), "width_mult"),
    (dict(dropout="yes"), "dropout")])
def test_invalid_arguments_raise_value_error_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.mobilenet_v3_small(**kwargs)
    if "hardswish_style" not in kwargs and "width_mult" not in kwargs and "dropout" not in kwargs:
        with pytest.raises(ValueError, match=message):
            zoo.resnet18(**kwargs)


# ----------------------------------------------------------------------------- activation scale


@pytest.mark.parametrize("name", NEW_MODELS)
def test_activations_stay_of_order_one_at_224(name):
    """Standard-normal input (1, 3, 224, 224): every Conv and Add output's standard deviation
    within [0.05, 10] (residual branches are scaled down by design), logits of order 1 and distinct."""
    model = _cached(name)
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    for node in probed.graph.node:
        if node.op_type in ("Conv", "Add"):
            probed.graph.output.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
    session = _session(probed)
    names = [output.name for output in session.get_outputs()]
    values = dict(zip(names, session.run(names, {"input": _input(batch=1, resolution=224)})))
    for key, value in values.items():
        assert 0.05 <= value.std() <= 10, (key, value.std())
    logits = values["output"]
    assert np.abs(logits).max() < 20 and len(np.unique(logits)) > 990


# ----------------------------------------------------------------------------- files


def test_model_path_writes_once_then_reuses_the_file(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(1)
        return zoo.resnet18(**SMALL)

    monkeypatch.setitem(zoo.MODELS, "resnet18", build)
    path = zoo.model_path("resnet18", tmp_path / "data")
    assert path == tmp_path / "data" / "resnet18.onnx" and calls == [1]
    assert path.read_bytes() == zoo.resnet18(**SMALL).SerializeToString()
    assert [p.name for p in path.parent.iterdir()] == ["resnet18.onnx"]  # no temporary file left
    stamp = path.stat().st_mtime_ns
    assert zoo.model_path("resnet18", tmp_path / "data") == path and calls == [1]
    assert path.stat().st_mtime_ns == stamp


def test_model_path_default_folder_is_the_repository_data_folder():
    assert zoo.DATA_FOLDER == REPO / "data"
    assert zoo.model_path.__defaults__ == (zoo.DATA_FOLDER,)


def test_unknown_model_name_is_a_value_error_listing_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="resnet34.*mobilenet_v1.*resnet50"):
        zoo.model_path("resnet34", tmp_path)
    assert not any(tmp_path.iterdir())


def test_module_command_writes_a_named_model_and_refuses_an_unknown_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    target = tmp_path / "r18.onnx"
    result = subprocess.run([sys.executable, "-m", "engine.zoo", "resnet18", str(target)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(target)
    assert onnx.load(str(target)).SerializeToString() == zoo.resnet18().SerializeToString()
    assert zoo.main(["resnet34", str(tmp_path / "x.onnx")]) == 2 and not (tmp_path / "x.onnx").exists()
    assert zoo.main(["a", "b", "c"]) == 2


def test_external_data_copy_runs_like_the_model(tmp_path):
    model = zoo.efficientnet_b0(**SMALL)
    path = zoo.save_model(model, tmp_path / "model.onnx", external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = _input()
    np.testing.assert_array_equal(session.run(["output"], {"input": x})[0], _run(model, x))
