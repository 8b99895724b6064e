"""The pieces every zoo builder shares: synthetic parameters (conv + BatchNorm, linear,
squeeze-and-excitation) and `_GraphWriter`, which writes them as ONNX nodes with the names and
in the forms torch's exporters use.

Weights are drawn from a `numpy.random.Generator` in an order that depends only on the
architecture, never on the export style, resolution or opset: the same seed gives the same
function in every style. The initialisation is He-style: a conv's weights are
N(0, gain^2 / fan_in) with gain^2 = 1 / E[act(z)^2] for z ~ N(0, 1) and the activation that
feeds it (2 after ReLU, 3 after HardSwish, 2.8 after SiLU, 1 after a linear layer), so
activations keep a standard deviation of order 1 through any depth; convs that feed a residual
Add are scaled down (gain^2 = 0.25). BatchNorm statistics are drawn so that the folded scale
gamma / sqrt(var + eps) is U(0.8, 1.2).

Names follow torch's TorchScript exporter: nodes "/features/features.1/conv/conv.0/conv.0.0/Conv",
their outputs "<node name>_output_0", initializers by module path ("features.0.0.weight",
"features.0.1.running_mean", "classifier.1.bias").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_OPSET = 9
MAX_OPSET = 18
BN_EPSILON = 1e-5       # torch.nn.BatchNorm2d's default eps
BN_MOMENTUM = 0.9       # ONNX momentum = 1 - torch momentum (torch's default 0.1)
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM_NAME = "N"  # symbolic batch dimension when dynamic_batch=True

# gain^2 of a conv fed by this activation: 1 / E[act(z)^2], z ~ N(0, 1) (measured over 1e7 samples)
GAIN_SQUARED = {None: 1.0, "relu": 2.0, "relu6": 2.0, "hardswish": 3.0, "silu": 2.8}
RESIDUAL_GAIN_SQUARED = 0.25  # a conv whose output is added to a residual stream

_FLATTEN_STYLES = ("flatten", "reshape_constant", "reshape_shape_chain")
_POOL_STYLES = ("global_average_pool", "reduce_mean", "reduce_mean_negative_axes")
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
    (out_channels,) float32. `activation` is "relu6", "relu", "hardswish", "silu" or None
    (linear); `act_path` is the activation module's path (None when linear)."""

    conv_path: str  # module path of the Conv2d, e.g. "features.1.conv.0.0"
    bn_path: str  # module path of the BatchNorm2d
    act_path: str | None
    activation: str | None
    stride: int
    groups: int
    weight: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float = BN_EPSILON
    momentum: float = BN_MOMENTUM  # ONNX's: 1 - torch's

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of the conv with the BatchNorm folded in, float32, computed in float64
        from the stored float32 parameters so the folded and separate models agree."""
        scale = self.gamma.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + self.epsilon)
        weight = self.weight.astype(np.float64) * scale[:, None, None, None]
        bias = self.beta.astype(np.float64) - self.mean.astype(np.float64) * scale
        return weight.astype(np.float32), bias.astype(np.float32)


def _draw_conv_bn(rng: np.random.Generator, conv_path: str, bn_path: str, act_path: str | None,
                  activation: str | None, in_channels: int, out_channels: int, kernel: int,
                  stride: int, groups: int, gain_squared: float, epsilon: float = BN_EPSILON,
                  momentum: float = BN_MOMENTUM) -> _ConvBN:
    """He-style conv weights N(0, gain^2 / fan_in) and BatchNorm statistics whose folded scale
    gamma / sqrt(var + eps) is U(0.8, 1.2) and whose folded bias is N(0, 0.05^2)."""
    fan_in = in_channels // groups * kernel * kernel
    weight = rng.standard_normal((out_channels, in_channels // groups, kernel, kernel))
    weight *= np.sqrt(gain_squared / fan_in)
    var = rng.uniform(0.5, 2.0, out_channels)
    mean = rng.normal(0.0, 0.1, out_channels)
    folded_scale = rng.uniform(0.8, 1.2, out_channels)
    gamma = folded_scale * np.sqrt(var + epsilon)
    beta = mean * folded_scale + rng.normal(0.0, 0.05, out_channels)
    f32 = np.float32
    return _ConvBN(conv_path, bn_path, act_path, activation, stride, groups, weight.astype(f32),
                   gamma.astype(f32), beta.astype(f32), mean.astype(f32), var.astype(f32), epsilon, momentum)


def _draw_linear(rng: np.random.Generator, in_features: int, out_features: int,
                 gain_squared: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(weight (out, in), bias (out,)) float32, weight N(0, gain^2/in), bias N(0, 0.01^2)."""
    weight = rng.standard_normal((out_features, in_features)) * np.sqrt(gain_squared / in_features)
    bias = rng.normal(0.0, 0.01, out_features)
    return weight.astype(np.float32), bias.astype(np.float32)


@dataclass
class _SqueezeExcite:
    """torchvision.ops.SqueezeExcitation at module path `path`: avgpool -> fc1 (1x1 conv with
    bias, C -> S) -> activation -> fc2 (S -> C) -> scale_activation -> scale * input.

    fc1_weight (S, C, 1, 1), fc1_bias (S,), fc2_weight (C, S, 1, 1), fc2_bias (C,) float32."""

    path: str
    activation: str  # "relu" (MobileNetV3) or "silu" (EfficientNet)
    scale_activation: str  # "hardsigmoid" (MobileNetV3) or "sigmoid" (EfficientNet)
    fc1_weight: np.ndarray
    fc1_bias: np.ndarray
    fc2_weight: np.ndarray
    fc2_bias: np.ndarray


def _draw_squeeze_excite(rng: np.random.Generator, path: str, channels: int, squeezed: int, activation: str,
                         scale_activation: str) -> _SqueezeExcite:
    """fc1 N(0, 4/C) (the pooled means are of order 0.5), fc2 N(0, 4/S), fc1 bias N(0, 0.1^2),
    fc2 bias N(0, 1): the gate's argument is of order 1, so the gate (average 0.5) varies
    by about +-0.2 between channels and images."""
    fc1_weight = rng.standard_normal((squeezed, channels, 1, 1)) * np.sqrt(1.0 / channels)
    fc1_bias = rng.normal(0.0, 0.1, squeezed)
    fc2_weight = rng.standard_normal((channels, squeezed, 1, 1)) * np.sqrt(1.0 / squeezed)
    fc2_bias = rng.normal(0.0, 1.0, channels)
    f32 = np.float32
    return _SqueezeExcite(path, activation, scale_activation, fc1_weight.astype(f32), fc1_bias.astype(f32),
                          fc2_weight.astype(f32), fc2_bias.astype(f32))


# The gate of a squeeze-and-excitation averages about 0.5: the conv after it gets 4x the gain^2
SQUEEZE_EXCITE_GAIN_SQUARED = 3.0


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


@dataclass(frozen=True)
class ExportStyle:
    """How a builder writes a network (each field one exporter convention); see
    `export_style` for the choices and their defaults."""

    opset: int
    separate_batchnorm: bool = False
    clip_style: str = "inputs"              # ReLU6 as Clip with "inputs" (opset >= 11) or "attributes"
    hardswish_style: str = "op"             # "op" (HardSwish, opset >= 14) or "hardsigmoid_mul"
    hardsigmoid_beta: bool = False          # write HardSigmoid's beta=0.5 (the default) explicitly
    pool_style: str = "global_average_pool"
    flatten_style: str = "flatten"
    reshape_allowzero: bool = False         # Reshape's allowzero=1 (opset >= 14), as the dynamo exporter writes
    classifier_style: str = "gemm"
    dropout: bool = False                   # an inference-mode Dropout where the network has one
    dynamic_batch: bool = True


class _GraphWriter:
    """Accumulates nodes and initializers with torch-exporter names."""

    def __init__(self, opset: int | ExportStyle):
        self.style = opset if isinstance(opset, ExportStyle) else ExportStyle(opset)
        self.opset = self.style.opset
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

    def activation(self, kind: str | None, scope: str, x: str) -> str:
        """The activation `kind` of x, as torch's exporters write it:
        relu -> Relu; relu6 -> Clip(0, 6); sigmoid -> Sigmoid;
        hardsigmoid -> HardSigmoid(alpha=1/6[, beta=0.5]);
        hardswish -> HardSwish (opset 14) or Mul(x, HardSigmoid(x)) (the opset < 14 form);
        silu -> Mul(x, Sigmoid(x))."""
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", scope, [x])
        if kind == "relu6":
            return self.clip6(scope, x, self.style.clip_style)
        if kind == "sigmoid":
            return self.node("Sigmoid", scope, [x])
        if kind == "hardsigmoid":
            return self._hardsigmoid(scope, x)
        if kind == "hardswish":
            if self.style.hardswish_style == "op":
                return self.node("HardSwish", scope, [x])
            return self.node("Mul", scope, [x, self._hardsigmoid(scope, x)])
        if kind == "silu":
            return self.node("Mul", scope, [x, self.node("Sigmoid", scope, [x])])
        raise ValueError(f"activation: unknown kind {kind!r}")

    def _hardsigmoid(self, scope: str, x: str) -> str:
        if self.style.hardsigmoid_beta:
            return self.node("HardSigmoid", scope, [x], alpha=1.0 / 6.0, beta=0.5)
        return self.node("HardSigmoid", scope, [x], alpha=1.0 / 6.0)

    def conv(self, scope: str, x: str, weight: str, bias: str | None, kernel: int, stride: int, groups: int) -> str:
        """Conv with torch's attributes: padding (k - 1) // 2 on every side, dilation 1."""
        inputs = [x, weight] if bias is None else [x, weight, bias]
        return self.node("Conv", scope, inputs, dilations=[1, 1], group=groups, kernel_shape=[kernel, kernel],
                         pads=[(kernel - 1) // 2] * 4, strides=[stride, stride])

    def conv_bn(self, layer: _ConvBN, x: str, separate_batchnorm: bool | None = None) -> str:
        """The conv and its BatchNorm (folded into the conv's weight and bias, or a separate
        BatchNormalization node), without the activation."""
        separate = self.style.separate_batchnorm if separate_batchnorm is None else separate_batchnorm
        scope = _scope(layer.conv_path)
        if separate:
            w = self.initializer(f"{layer.conv_path}.weight", layer.weight)
            y = self.conv(scope, x, w, None, layer.kernel, layer.stride, layer.groups)
            bn = layer.bn_path
            inputs = [y] + [self.initializer(f"{bn}.{field}", array) for field, array in (
                ("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.mean), ("running_var", layer.var))]
            return self.node("BatchNormalization", _scope(bn), inputs, epsilon=layer.epsilon, momentum=layer.momentum)
        weight, bias = layer.folded()
        w = self.initializer(f"{layer.conv_path}.weight", weight)
        b = self.initializer(f"{layer.conv_path}.bias", bias)
        return self.conv(scope, x, w, b, layer.kernel, layer.stride, layer.groups)

    def conv_bn_act(self, layer: _ConvBN, x: str, separate_batchnorm: bool | None = None,
                    clip_style: str | None = None) -> str:
        y = self.conv_bn(layer, x, separate_batchnorm)
        if layer.activation == "relu6" and clip_style is not None:
            return self.clip6(_scope(layer.act_path), y, clip_style)
        return self.activation(layer.activation, _scope(layer.act_path) if layer.act_path else "", y)

    def squeeze_excite(self, se: _SqueezeExcite, x: str) -> str:
        """scale * x with scale = scale_activation(fc2(activation(fc1(avgpool(x))))): the Mul's
        inputs in that order, as torchvision's `scale * input` is exported."""
        pooled = self.global_pool(x, _scope(f"{se.path}.avgpool"))
        fc1 = self.initializer(f"{se.path}.fc1.weight", se.fc1_weight)
        fc1_bias = self.initializer(f"{se.path}.fc1.bias", se.fc1_bias)
        hidden = self.conv(_scope(f"{se.path}.fc1"), pooled, fc1, fc1_bias, 1, 1, 1)
        hidden = self.activation(se.activation, _scope(f"{se.path}.activation"), hidden)
        fc2 = self.initializer(f"{se.path}.fc2.weight", se.fc2_weight)
        fc2_bias = self.initializer(f"{se.path}.fc2.bias", se.fc2_bias)
        scale = self.conv(_scope(f"{se.path}.fc2"), hidden, fc2, fc2_bias, 1, 1, 1)
        scale = self.activation(se.scale_activation, _scope(f"{se.path}.scale_activation"), scale)
        return self.node("Mul", _scope(se.path), [scale, x])

    def max_pool(self, scope: str, x: str, kernel: int, stride: int, padding: int) -> str:
        return self.node("MaxPool", scope, [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[kernel, kernel],
                         pads=[padding] * 4, strides=[stride, stride])

    def global_pool(self, x: str, scope: str = "", pool_style: str | None = None) -> str:
        """(N, C, H, W) -> (N, C, 1, 1): GlobalAveragePool, or ReduceMean keepdims=1 over axes
        [2, 3] ("reduce_mean") or [-1, -2] ("reduce_mean_negative_axes", as the dynamo exporter
        writes it); axes an attribute before opset 18, an input from 18."""
        pool_style = pool_style or self.style.pool_style
        if pool_style == "global_average_pool":
            return self.node("GlobalAveragePool", scope, [x])
        negative = pool_style == "reduce_mean_negative_axes"
        axes = [-1, -2] if negative else [2, 3]
        if self.opset >= 18:
            name = "reduce_mean.negative_axes" if negative else "reduce_mean.axes"
            return self.node("ReduceMean", scope, [x, self.initializer(name, np.array(axes, np.int64))], keepdims=1)
        return self.node("ReduceMean", scope, [x], axes=axes, keepdims=1)

    def flatten(self, x: str, channels: int, flatten_style: str | None = None,
                dynamic_batch: bool | None = None) -> str:
        """(N, C, 1, 1) -> (N, C)."""
        flatten_style = flatten_style or self.style.flatten_style
        dynamic_batch = self.style.dynamic_batch if dynamic_batch is None else dynamic_batch
        if flatten_style == "flatten":
            return self.node("Flatten", "", [x], axis=1)
        if flatten_style == "reshape_constant":
            shape = self.initializer("flatten.shape", np.array([-1 if dynamic_batch else 1, channels], np.int64))
            if self.style.reshape_allowzero and self.opset >= 14:
                return self.node("Reshape", "", [x, shape], allowzero=1)
            return self.node("Reshape", "", [x, shape])
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

    def linear(self, x: str, module_path: str, weight: np.ndarray, bias: np.ndarray,
               classifier_style: str | None = None, output: str | None = OUTPUT_NAME) -> str:
        """y = x @ weight.T + bias, weight (out, in); named `output` (the graph's output by
        default; None: the node's own output name)."""
        classifier_style = classifier_style or self.style.classifier_style
        scope = _scope(module_path)
        b = self.initializer(f"{module_path}.bias", bias)
        if classifier_style == "gemm":
            w = self.initializer(f"{module_path}.weight", weight)
            return self.node("Gemm", scope, [x, w, b], output=output, alpha=1.0, beta=1.0, transB=1)
        w = self.initializer(f"{module_path}.weight_transposed", weight.T)
        y = self.node("MatMul", scope, [x, w])
        return self.node("Add", scope, [y, b], output=output)

    def model(self, graph_name: str, resolution: int, num_classes: int, dynamic_batch: bool | None,
              doc: str) -> onnx.ModelProto:
        dynamic_batch = self.style.dynamic_batch if dynamic_batch is None else dynamic_batch
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


# ----------------------------------------------------------------------------- argument checks


def _check_common(width_mult: float, resolution: int, num_classes: int, opset: int,
                  min_opset: int = MIN_OPSET) -> None:
    if not (isinstance(width_mult, (int, float)) and width_mult > 0):
        raise ValueError(f"width_mult: expected a positive number, got {width_mult!r}")
    if not (isinstance(resolution, int) and resolution >= 1):
        raise ValueError(f"resolution: expected a positive int (pixels), got {resolution!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if not (isinstance(opset, int) and min_opset <= opset <= MAX_OPSET):
        raise ValueError(f"opset: expected an int in {min_opset}..{MAX_OPSET}, got {opset!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


SYNTHETIC_NOTE = ("Synthetic weights (deterministic from seed={seed}), not trained: pretrained weights cannot be "
                  "downloaded here and a dense fp32 engine's speed does not depend on weight values.")


# ----------------------------------------------------------------------------- export styles

# The builders added for issue 15 (MobileNetV3, EfficientNet, ResNet) cover the opsets torch's
# exporters write for them (HardSwish is opset 14; below it the HardSigmoid + Mul form)
NEW_MIN_OPSET = 13
# torch.onnx.export(model, x): "dynamo" is the default exporter of torch >= 2.9 (dynamo=True),
# "legacy" the TorchScript one (dynamo=False), the default before; what each writes, as seen in
# torch 2.14's exports of torchvision 0.29's models (tests/data/torchvision_exports/):
EXPORTERS = {
    # opset 18, BatchNorm folded by the onnxscript optimizer, AdaptiveAvgPool2d(1) as
    # ReduceMean over axes [-1, -2] (an input), torch.flatten as Reshape to [-1, C] with
    # allowzero=1, HardSigmoid with beta=0.5 written out
    "dynamo": dict(opset=18, pool_style="reduce_mean_negative_axes", flatten_style="reshape_constant",
                   reshape_allowzero=True, hardsigmoid_beta=True),
    # opset 17 (its default since torch 2.1), BatchNorm folded (eval-mode export),
    # GlobalAveragePool, Flatten(axis=1), HardSigmoid with alpha only
    "legacy": dict(opset=17, pool_style="global_average_pool", flatten_style="flatten",
                   reshape_allowzero=False, hardsigmoid_beta=False),
}
_HARDSWISH_STYLES = ("auto", "op", "hardsigmoid_mul")


def export_style(exporter: str = "dynamo", *, opset: int | None = None, separate_batchnorm: bool = False,
                 hardswish_style: str = "auto", pool_style: str | None = None, flatten_style: str | None = None,
                 dropout: bool = False, dynamic_batch: bool = True) -> ExportStyle:
    """The ExportStyle of the MobileNetV3 / EfficientNet / ResNet builders: `exporter`'s
    conventions (see EXPORTERS), each overridden by the keyword given.

    - opset: NEW_MIN_OPSET..MAX_OPSET (13..18).
    - separate_batchnorm: Conv (no bias) + BatchNormalization instead of the folded Conv.
    - hardswish_style: "op" (HardSwish, opset >= 14), "hardsigmoid_mul" (Mul(x,
      HardSigmoid(x, alpha=1/6)), as torch writes it below opset 14), "auto": by opset.
    - pool_style: "global_average_pool", "reduce_mean" (axes [2, 3]) or
      "reduce_mean_negative_axes" (axes [-1, -2]), for the head's and every SE's pooling.
    - flatten_style: "flatten", "reshape_constant", "reshape_shape_chain".
    - dropout: an inference-mode Dropout node where torchvision has nn.Dropout (no exporter
      writes it for an eval-mode model; an importer must take it as the identity).
    - dynamic_batch: input and output batch dimension symbolic ("N") or 1.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: expected one of {tuple(EXPORTERS)}, got {exporter!r}")
    preset = EXPORTERS[exporter]
    opset = preset["opset"] if opset is None else opset
    if not (isinstance(opset, int) and NEW_MIN_OPSET <= opset <= MAX_OPSET):
        raise ValueError(f"opset: expected an int in {NEW_MIN_OPSET}..{MAX_OPSET}, got {opset!r}")
    pool_style = preset["pool_style"] if pool_style is None else pool_style
    flatten_style = preset["flatten_style"] if flatten_style is None else flatten_style
    _check_choice("hardswish_style", hardswish_style, _HARDSWISH_STYLES)
    _check_choice("pool_style", pool_style, _POOL_STYLES)
    _check_choice("flatten_style", flatten_style, _FLATTEN_STYLES)
    if hardswish_style == "auto":
        hardswish_style = "op" if opset >= 14 else "hardsigmoid_mul"
    elif hardswish_style == "op" and opset < 14:
        raise ValueError(f"hardswish_style='op' needs opset >= 14 (HardSwish is an opset-14 operator), got opset {opset}")
    for name, value in (("separate_batchnorm", separate_batchnorm), ("dropout", dropout),
                        ("dynamic_batch", dynamic_batch)):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected a bool, got {value!r}")
    return ExportStyle(opset=opset, separate_batchnorm=separate_batchnorm, clip_style="inputs",
                       hardswish_style=hardswish_style, hardsigmoid_beta=preset["hardsigmoid_beta"],
                       pool_style=pool_style, flatten_style=flatten_style,
                       reshape_allowzero=preset["reshape_allowzero"], classifier_style="gemm", dropout=dropout,
                       dynamic_batch=dynamic_batch)
