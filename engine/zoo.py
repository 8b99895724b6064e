"""MobileNet ONNX models built from scratch: the engine's default model and the variants the
importer is tested against.

The default weights are SYNTHETIC. Pretrained weights cannot be downloaded on this machine,
and the speed of a dense fp32 engine does not depend on the weight values — only on the
shapes, which are exactly torchvision's MobileNetV2. Any real MobileNetV2 ONNX file (for
example torchvision's `mobilenet_v2(weights=...)` exported with `torch.onnx.export`) can be
loaded instead of `data/mobilenet_v2.onnx`.

What is here:

- `mobilenet_v2(...)`: torchvision's MobileNetV2 topology, with switches for the ways real
  exporters write the same network (opset 9..18, BatchNormalization separate or folded, Clip
  with attribute or input bounds, Flatten / constant Reshape / Shape-Gather-Unsqueeze-Concat
  Reshape chain, GlobalAveragePool / ReduceMean, Gemm / MatMul+Add, an inference-mode
  Dropout). Every variant with the same seed computes the same function (up to float32
  rounding): the BatchNorm parameters are drawn once and the folded variant is derived from
  them.
- `mobilenet_v1(...)`: the MobileNetV1 family (ReLU instead of ReLU6), to exercise the Relu
  path and a network without residual adds.
- `save_model(model, path, external_data=...)`: writes a model as one file, or as torch's
  default exporter today writes it (`torch.onnx.export(..., dynamo=True)`, opset 18+): the
  graph in `model.onnx`, the initializers' bytes in `model.onnx.data` beside it.
- `write_default_model(path)`: writes `mobilenet_v2()` atomically if the file is missing;
  `python -m engine.zoo [path]` does the same (the Makefile calls it).

Weights are drawn from `numpy.random.default_rng(seed)` in an order that depends only on the
architecture (width_mult, num_classes), never on the export style, resolution or opset, so
the same seed gives byte-identical models and identical functions across variants. The
initialisation is He-style (gain^2 = 2 before a ReLU/ReLU6, 1 before a linear layer) with
BatchNorm statistics whose folded scale is ~U(0.8, 1.2); projection convs that feed a
residual Add are scaled down (gain^2 = 0.25, "zero-init-ish gamma") so the residual stream's
variance stays bounded. With a standard-normal (1, 3, 224, 224) input, every layer's output
standard deviation stays within [0.1, 10] and the logits are of order 1.

Names follow torch's exporter: nodes "/features/features.1/conv/conv.0/conv.0.0/Conv",
their outputs "<node name>_output_0", initializers by module path ("features.0.0.weight",
"features.0.1.running_mean", "classifier.1.bias").
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

MIN_OPSET = 9
MAX_OPSET = 18
BN_EPSILON = 1e-5
DEFAULT_MODEL_PATH = "data/mobilenet_v2.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM_NAME = "N"  # symbolic batch dimension when dynamic_batch=True
# save_model(external_data=True): initializers of this many bytes or more go to the data file
# (onnx_ir.save's default size_threshold_bytes, which torch's dynamo exporter saves through)
EXTERNAL_DATA_THRESHOLD = 256

# torchvision's inverted-residual table: expansion t, output channels c, repeats n, stride s
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# MobileNetV1's depthwise-separable blocks: (pointwise output channels, depthwise stride)
MOBILENET_V1_SETTINGS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)

_FLATTEN_STYLES = ("flatten", "reshape_constant", "reshape_shape_chain")
_POOL_STYLES = ("global_average_pool", "reduce_mean")
_CLASSIFIER_STYLES = ("gemm", "matmul_add")
_CLIP_STYLES = ("auto", "inputs", "attributes")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible`: round a channel count to the nearest multiple of
    `divisor` (at least `min_value`, default `divisor`), never going down by more than 10%."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


# ----------------------------------------------------------------------------- parameters


@dataclass
class _ConvBN:
    """One Conv2d (no bias) followed by BatchNorm2d, with the unfolded parameters.

    weight: (out_channels, in_channels // groups, k, k) float32; gamma/beta/mean/var:
    (out_channels,) float32. `activation` is "relu6", "relu" or None (linear)."""

    conv_path: str  # module path of the Conv2d, e.g. "features.1.conv.0.0"
    bn_path: str  # module path of the BatchNorm2d
    act_path: str | None  # module path of the activation, None when linear
    activation: str | None
    stride: int
    groups: int
    weight: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of the conv with the BatchNorm folded in, float32, computed in float64
        from the stored float32 parameters so the folded and separate models agree."""
        scale = self.gamma.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + BN_EPSILON)
        weight = self.weight.astype(np.float64) * scale[:, None, None, None]
        bias = self.beta.astype(np.float64) - self.mean.astype(np.float64) * scale
        return weight.astype(np.float32), bias.astype(np.float32)


def _draw_conv_bn(rng: np.random.Generator, conv_path: str, bn_path: str, act_path: str | None,
                  activation: str | None, in_channels: int, out_channels: int, kernel: int,
                  stride: int, groups: int, gain_squared: float) -> _ConvBN:
    """He-style conv weights N(0, gain^2 / fan_in) and BatchNorm statistics whose folded scale
    gamma / sqrt(var + eps) is U(0.8, 1.2) and whose folded bias is N(0, 0.05^2)."""
    fan_in = in_channels // groups * kernel * kernel
    weight = rng.standard_normal((out_channels, in_channels // groups, kernel, kernel))
    weight *= np.sqrt(gain_squared / fan_in)
    var = rng.uniform(0.5, 2.0, out_channels)
    mean = rng.normal(0.0, 0.1, out_channels)
    folded_scale = rng.uniform(0.8, 1.2, out_channels)
    gamma = folded_scale * np.sqrt(var + BN_EPSILON)
    beta = mean * folded_scale + rng.normal(0.0, 0.05, out_channels)
    f32 = np.float32
    return _ConvBN(conv_path, bn_path, act_path, activation, stride, groups, weight.astype(f32),
                   gamma.astype(f32), beta.astype(f32), mean.astype(f32), var.astype(f32))


def _draw_linear(rng: np.random.Generator, in_features: int, out_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight (out, in), bias (out,)) float32, weight N(0, 1/in), bias N(0, 0.01^2)."""
    weight = rng.standard_normal((out_features, in_features)) * np.sqrt(1.0 / in_features)
    bias = rng.normal(0.0, 0.01, out_features)
    return weight.astype(np.float32), bias.astype(np.float32)


@dataclass
class _Block:
    """A run of conv layers; `residual` adds the block's input to its output (an Add node
    named after `path`)."""

    path: str
    layers: list[_ConvBN]
    residual: bool


def _mobilenet_v2_parameters(width_mult: float, num_classes: int, seed: int):
    """The blocks, the last feature-channel count and the classifier of MobileNetV2."""
    rng = np.random.default_rng(seed)
    input_channels = make_divisible(32 * width_mult, 8)
    last_channels = make_divisible(1280 * max(1.0, width_mult), 8)
    blocks = [_Block("features.0", [_draw_conv_bn(
        rng, "features.0.0", "features.0.1", "features.0.2", "relu6", 3, input_channels, 3, 2, 1, 2.0)], False)]
    index = 1
    for expand_ratio, channels, repeats, first_stride in MOBILENET_V2_SETTINGS:
        output_channels = make_divisible(channels * width_mult, 8)
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            hidden = int(round(input_channels * expand_ratio))
            residual = stride == 1 and input_channels == output_channels
            prefix = f"features.{index}.conv"
            layers = []
            sub = 0
            if expand_ratio != 1:
                layers.append(_draw_conv_bn(rng, f"{prefix}.{sub}.0", f"{prefix}.{sub}.1", f"{prefix}.{sub}.2",
                                            "relu6", input_channels, hidden, 1, 1, 1, 2.0))
                sub += 1
            layers.append(_draw_conv_bn(rng, f"{prefix}.{sub}.0", f"{prefix}.{sub}.1", f"{prefix}.{sub}.2",
                                        "relu6", hidden, hidden, 3, stride, hidden, 2.0))
            sub += 1
            # project: linear; scaled down when it feeds a residual add so the stream stays bounded
            layers.append(_draw_conv_bn(rng, f"{prefix}.{sub}", f"{prefix}.{sub + 1}", None, None,
                                        hidden, output_channels, 1, 1, 1, 0.25 if residual else 1.0))
            blocks.append(_Block(f"features.{index}", layers, residual))
            input_channels = output_channels
            index += 1
    blocks.append(_Block(f"features.{index}", [_draw_conv_bn(
        rng, f"features.{index}.0", f"features.{index}.1", f"features.{index}.2", "relu6",
        input_channels, last_channels, 1, 1, 1, 2.0)], False))
    classifier = _draw_linear(rng, last_channels, num_classes)
    return blocks, last_channels, classifier


def _mobilenet_v1_parameters(width_mult: float, num_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    input_channels = make_divisible(32 * width_mult, 8)
    blocks = [_Block("features.0", [_draw_conv_bn(
        rng, "features.0.0", "features.0.1", "features.0.2", "relu", 3, input_channels, 3, 2, 1, 2.0)], False)]
    for index, (channels, stride) in enumerate(MOBILENET_V1_SETTINGS, start=1):
        output_channels = make_divisible(channels * width_mult, 8)
        p = f"features.{index}"
        blocks.append(_Block(p, [
            _draw_conv_bn(rng, f"{p}.0", f"{p}.1", f"{p}.2", "relu", input_channels, input_channels, 3, stride,
                          input_channels, 2.0),
            _draw_conv_bn(rng, f"{p}.3", f"{p}.4", f"{p}.5", "relu", input_channels, output_channels, 1, 1, 1, 2.0),
        ], False))
        input_channels = output_channels
    classifier = _draw_linear(rng, input_channels, num_classes)
    return blocks, input_channels, classifier


# ----------------------------------------------------------------------------- graph writing


def _scope(module_path: str) -> str:
    """torch exporter scope of a module path: "features.1.conv.0.0" ->
    "/features/features.1/conv/conv.0/conv.0.0" (a numeric child extends its parent's name)."""
    if not module_path:
        return ""
    names: list[str] = []
    current = ""
    for part in module_path.split("."):
        current = f"{current}.{part}" if part.isdigit() and current else part
        names.append(current)
    return "/" + "/".join(names)


class _GraphWriter:
    """Accumulates nodes and initializers with torch-exporter names."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._initializer_names: set[str] = set()
        self._node_names: set[str] = set()

    def initializer(self, name: str, array: np.ndarray) -> str:
        if name not in self._initializer_names:
            self._initializer_names.add(name)
            # np.array, not np.ascontiguousarray, which turns a 0-d scalar into shape (1,)
            self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op_type: str, scope: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        """Append a node named "<scope>/<op_type>" (suffixed _1, _2... if taken); returns its
        output name ("<node name>_output_0" unless `output` is given)."""
        base = f"{scope}/{op_type}"
        name, count = base, 0
        while name in self._node_names:
            count += 1
            name = f"{base}_{count}"
        self._node_names.add(name)
        output = output or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))
        return output

    def constant(self, scope: str, array: np.ndarray) -> str:
        """A Constant node (what torch writes for the small tensors of a shape chain)."""
        return self.node("Constant", scope, [], value=numpy_helper.from_array(np.asarray(array), ""))

    def clip6(self, scope: str, x: str, clip_style: str) -> str:
        if clip_style == "attributes":
            return self.node("Clip", scope, [x], min=0.0, max=6.0)
        low = self.initializer("relu6.min", np.array(0.0, np.float32))
        high = self.initializer("relu6.max", np.array(6.0, np.float32))
        return self.node("Clip", scope, [x, low, high])

    def conv_bn_act(self, layer: _ConvBN, x: str, separate_batchnorm: bool, clip_style: str) -> str:
        k = layer.kernel
        attributes = dict(dilations=[1, 1], group=layer.groups, kernel_shape=[k, k],
                          pads=[k // 2] * 4, strides=[layer.stride, layer.stride])
        scope = _scope(layer.conv_path)
        if separate_batchnorm:
            w = self.initializer(f"{layer.conv_path}.weight", layer.weight)
            y = self.node("Conv", scope, [x, w], **attributes)
            bn = layer.bn_path
            inputs = [y] + [self.initializer(f"{bn}.{field}", array) for field, array in (
                ("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.mean), ("running_var", layer.var))]
            y = self.node("BatchNormalization", _scope(bn), inputs, epsilon=BN_EPSILON, momentum=0.9)
        else:
            weight, bias = layer.folded()
            w = self.initializer(f"{layer.conv_path}.weight", weight)
            b = self.initializer(f"{layer.conv_path}.bias", bias)
            y = self.node("Conv", scope, [x, w, b], **attributes)
        if layer.activation == "relu6":
            y = self.clip6(_scope(layer.act_path), y, clip_style)
        elif layer.activation == "relu":
            y = self.node("Relu", _scope(layer.act_path), [y])
        return y

    def global_pool(self, x: str, pool_style: str) -> str:
        if pool_style == "global_average_pool":
            return self.node("GlobalAveragePool", "", [x])
        if self.opset >= 18:
            axes = self.initializer("reduce_mean.axes", np.array([2, 3], np.int64))
            return self.node("ReduceMean", "", [x, axes], keepdims=1)
        return self.node("ReduceMean", "", [x], axes=[2, 3], keepdims=1)

    def flatten(self, x: str, channels: int, flatten_style: str, dynamic_batch: bool) -> str:
        """(N, C, 1, 1) -> (N, C)."""
        if flatten_style == "flatten":
            return self.node("Flatten", "", [x], axis=1)
        if flatten_style == "reshape_constant":
            shape = [-1 if dynamic_batch else 1, channels]
            return self.node("Reshape", "", [x, self.initializer("flatten.shape", np.array(shape, np.int64))])
        # x.view(x.size(0), -1) as torch < 1.13 writes it: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        shape = self.node("Shape", "", [x])
        batch = self.node("Gather", "", [shape, self.constant("", np.array(0, np.int64))], axis=0)
        if self.opset >= 13:
            batch = self.node("Unsqueeze", "", [batch, self.constant("", np.array([0], np.int64))])
        else:
            batch = self.node("Unsqueeze", "", [batch], axes=[0])
        target = self.node("Concat", "", [batch, self.constant("", np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", "", [x, target])

    def dropout(self, x: str, scope: str, ratio: float = 0.2) -> str:
        """An inference-mode Dropout (identity): ratio as attribute before opset 12, as input
        from 12 (training_mode omitted = False)."""
        if self.opset >= 12:
            r = self.initializer(f"{scope.strip('/').split('/')[-1]}.ratio", np.array(ratio, np.float32))
            return self.node("Dropout", scope, [x, r])
        return self.node("Dropout", scope, [x], ratio=ratio)

    def linear(self, x: str, module_path: str, weight: np.ndarray, bias: np.ndarray, classifier_style: str) -> str:
        """y = x @ weight.T + bias, weight (out, in), written as the graph's output."""
        scope = _scope(module_path)
        b = self.initializer(f"{module_path}.bias", bias)
        if classifier_style == "gemm":
            w = self.initializer(f"{module_path}.weight", weight)
            return self.node("Gemm", scope, [x, w, b], output=OUTPUT_NAME, alpha=1.0, beta=1.0, transB=1)
        w = self.initializer(f"{module_path}.weight_transposed", weight.T)
        y = self.node("MatMul", scope, [x, w])
        return self.node("Add", scope, [y, b], output=OUTPUT_NAME)

    def model(self, graph_name: str, resolution: int, num_classes: int, dynamic_batch: bool, doc: str) -> onnx.ModelProto:
        batch = BATCH_DIM_NAME if dynamic_batch else 1
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, 3, resolution, resolution])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, num_classes])],
            self.initializers)
        opset_import = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opset_import, producer_name="roofline-workbench engine.zoo",
                                  doc_string=doc)
        # the oldest IR version that knows this opset, so older runtimes also load it
        model.ir_version = helper.find_min_ir_version_for(opset_import)
        return model


def _check_common(width_mult: float, resolution: int, num_classes: int, opset: int) -> None:
    if not (isinstance(width_mult, (int, float)) and width_mult > 0):
        raise ValueError(f"width_mult: expected a positive number, got {width_mult!r}")
    if not (isinstance(resolution, int) and resolution >= 1):
        raise ValueError(f"resolution: expected a positive int (pixels), got {resolution!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if not (isinstance(opset, int) and MIN_OPSET <= opset <= MAX_OPSET):
        raise ValueError(f"opset: expected an int in {MIN_OPSET}..{MAX_OPSET}, got {opset!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


_SYNTHETIC_NOTE = ("Synthetic weights (deterministic from seed={seed}), not trained: pretrained weights cannot be "
                   "downloaded here and a dense fp32 engine's speed does not depend on weight values.")


def mobilenet_v2(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0, *,
                 opset: int = 13, separate_batchnorm: bool = False, clip_style: str = "auto",
                 flatten_style: str = "flatten", pool_style: str = "global_average_pool",
                 classifier_style: str = "gemm", dropout: bool = False, dynamic_batch: bool = True) -> onnx.ModelProto:
    """torchvision's MobileNetV2 as an ONNX model with synthetic, deterministic weights.

    Input "input": float32 (N, 3, resolution, resolution) ("N" symbolic when dynamic_batch,
    else 1); output "output": float32 (N, num_classes) logits.

    width_mult scales every channel count (rounded by `make_divisible(c * width_mult, 8)`; the
    last conv has make_divisible(1280 * max(1, width_mult), 8) channels). The keyword-only
    arguments choose how the same function is written, as different exporters write it:

    - opset: 9..18.
    - separate_batchnorm: Conv (no bias) + BatchNormalization (epsilon 1e-5) instead of a
      Conv with the BatchNorm folded into weight and bias.
    - clip_style: ReLU6 is Clip(0, 6) with bounds as attributes ("attributes", opset < 11) or
      as scalar initializer inputs ("inputs", opset >= 11); "auto" picks by opset.
    - flatten_style: "flatten" (Flatten axis=1), "reshape_constant" (Reshape to an initializer
      shape), "reshape_shape_chain" (Shape -> Gather -> Unsqueeze -> Concat -> Reshape with
      Constant nodes, as torch < 1.13 writes `x.view(x.size(0), -1)`).
    - pool_style: "global_average_pool" or "reduce_mean" (axes [2, 3], keepdims=1; axes an
      attribute before opset 18, an input from 18).
    - classifier_style: "gemm" (transB=1) or "matmul_add" (MatMul by the transposed weight, Add).
    - dropout: an inference-mode Dropout (an identity) before the classifier.
    """
    _check_common(width_mult, resolution, num_classes, opset)
    _check_choice("clip_style", clip_style, _CLIP_STYLES)
    _check_choice("flatten_style", flatten_style, _FLATTEN_STYLES)
    _check_choice("pool_style", pool_style, _POOL_STYLES)
    _check_choice("classifier_style", classifier_style, _CLASSIFIER_STYLES)
    if clip_style == "auto":
        clip_style = "inputs" if opset >= 11 else "attributes"
    elif clip_style == "inputs" and opset < 11:
        raise ValueError(f"clip_style='inputs' needs opset >= 11 (Clip-11 takes min/max as inputs), got opset {opset}")
    elif clip_style == "attributes" and opset >= 11:
        raise ValueError(f"clip_style='attributes' needs opset < 11 (Clip-11 has no min/max attributes), got opset {opset}")

    blocks, last_channels, (fc_weight, fc_bias) = _mobilenet_v2_parameters(width_mult, num_classes, seed)
    writer = _GraphWriter(opset)
    x = INPUT_NAME
    for block in blocks:
        y = x
        for layer in block.layers:
            y = writer.conv_bn_act(layer, y, separate_batchnorm, clip_style)
        if block.residual:
            y = writer.node("Add", _scope(block.path), [x, y])
        x = y
    x = writer.global_pool(x, pool_style)
    x = writer.flatten(x, last_channels, flatten_style, dynamic_batch)
    if dropout:
        x = writer.dropout(x, _scope("classifier.0"))
    writer.linear(x, "classifier.1", fc_weight, fc_bias, classifier_style)
    doc = f"MobileNetV2 (torchvision topology), width_mult={width_mult}. " + _SYNTHETIC_NOTE.format(seed=seed)
    return writer.model("mobilenet_v2", resolution, num_classes, dynamic_batch, doc)


def mobilenet_v1(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0, *,
                 opset: int = 13) -> onnx.ModelProto:
    """MobileNetV1 with synthetic, deterministic weights (BatchNorm folded, ReLU activations).

    Stem Conv 3x3 stride 2 to 32 channels + ReLU, then 13 depthwise-separable blocks
    (depthwise 3x3 + ReLU, pointwise 1x1 + ReLU) with output channels / strides
    `MOBILENET_V1_SETTINGS`, GlobalAveragePool, Flatten, Gemm. Channels are
    make_divisible(c * width_mult, 8). Input "input" (N, 3, resolution, resolution),
    output "output" (N, num_classes); N symbolic.
    """
    _check_common(width_mult, resolution, num_classes, opset)
    blocks, last_channels, (fc_weight, fc_bias) = _mobilenet_v1_parameters(width_mult, num_classes, seed)
    writer = _GraphWriter(opset)
    x = INPUT_NAME
    for block in blocks:
        for layer in block.layers:
            x = writer.conv_bn_act(layer, x, separate_batchnorm=False, clip_style="unused")
    x = writer.global_pool(x, "global_average_pool")
    x = writer.flatten(x, last_channels, "flatten", dynamic_batch=True)
    writer.linear(x, "fc", fc_weight, fc_bias, "gemm")
    doc = f"MobileNetV1, width_mult={width_mult}. " + _SYNTHETIC_NOTE.format(seed=seed)
    return writer.model("mobilenet_v1", resolution, num_classes, True, doc)


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool = False) -> pathlib.Path:
    """Write `model` to `path` (its folder made if missing); return the path.

    external_data=True writes it as torch's dynamo exporter does (opset 18+, through
    onnx_ir.save): every initializer of EXTERNAL_DATA_THRESHOLD bytes or more moves to one
    file named `<path's name>.data` in the same folder (`model.onnx` + `model.onnx.data`),
    which the graph names by that relative name with each tensor's offset and length; smaller
    initializers (Clip bounds, axes, shapes) and Constant nodes stay in the graph. A data file
    already there is replaced, not appended to. `model` itself is not modified."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not external_data:
        path.write_bytes(model.SerializeToString())
        return path
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    data_path = path.with_name(path.name + ".data")
    data_path.unlink(missing_ok=True)          # onnx appends to an existing data file
    external_data_helper.convert_model_to_external_data(copy, all_tensors_to_one_file=True, location=data_path.name,
                                                        size_threshold=EXTERNAL_DATA_THRESHOLD, convert_attribute=False)
    onnx.save_model(copy, str(path))
    return path


def write_default_model(path: str | os.PathLike = DEFAULT_MODEL_PATH) -> pathlib.Path:
    """Write `mobilenet_v2()` to `path` if no file is there (an existing file is left as it is);
    return the path. Written to a temporary file in the same folder then renamed, so a reader
    never sees a half-written model."""
    path = pathlib.Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = mobilenet_v2().SerializeToString()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.zoo [path]`: write the default model if missing."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        sys.stderr.write("usage: python -m engine.zoo [path]\n")
        return 2
    path = write_default_model(argv[0] if argv else DEFAULT_MODEL_PATH)
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
