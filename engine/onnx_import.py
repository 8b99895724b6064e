"""ONNX -> `Graph`: one handler per ONNX op type, registered in `HANDLERS`.

The importer walks the nodes in order, tracking for every tensor either a constant value
(initializers, Constant, and the Shape->Gather->Unsqueeze->Concat chains that older
exporters emit, folded here) or the batch-free shape of an activation. It emits primitive
layers; `engine.passes` then folds BatchNormalization, Pad, activations and residual Adds
into the convolutions. Anything it cannot run exactly raises a `ModelError` naming the node.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from engine.errors import ModelError, UnsupportedOperatorError
from engine.graph import Graph, Layer
from engine.kernels.activation import HARDSWISH_DEFAULT

# Opset 6 (ONNX's converted PyTorch Conv tests use it): Add and Gemm broadcast only with
# broadcast=1 and BatchNormalization / Dropout infer only with is_test=1 there; the handlers
# check those where the semantics differ from opset 7's.
MIN_OPSET, MAX_OPSET = 6, 22

# Stand-in for the (dynamic) batch size inside folded shape computations.
BATCH = np.int64(-(2 ** 60))


@dataclass
class _Context:
    """What the importer knows while walking the nodes."""

    opset: int
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)   # activations, batch-free
    aliases: dict[str, str] = field(default_factory=dict)              # Identity/Dropout outputs
    layers: list[Layer] = field(default_factory=list)
    declared_batch: int | None = None
    layer_names: set[str] = field(default_factory=set)                 # unique: weights are keyed by them

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def is_constant(self, name: str) -> bool:
        return self.resolve(name) in self.constants

    def constant(self, node: onnx.NodeProto, index: int, what: str, dtypes: tuple = ()) -> np.ndarray:
        """The constant value of input `index`; with `dtypes`, it must be one of them (the
        op's type constraint: ONNX Runtime refuses the model otherwise)."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            raise ModelError(f"node {node.name!r} ({node.op_type}): missing input {index} ({what})")
        name = self.resolve(name)
        if name not in self.constants:
            raise UnsupportedOperatorError(
                node.name, node.op_type, HANDLERS,
                f"input {index} ({what}) must be a constant initializer, got the computed tensor {name!r}")
        value = self.constants[name]
        if dtypes and value.dtype not in dtypes:
            expected = " or ".join(str(np.dtype(d)) for d in dtypes)
            raise ModelError(f"node {node.name!r} ({node.op_type}): input {index} ({what}) is {value.dtype}; "
                             f"expected {expected}")
        return value

    def optional_constant(self, node, index, what, dtypes: tuple = ()):
        if index < len(node.input) and node.input[index]:
            return self.constant(node, index, what, dtypes)
        return None

    def activation(self, node: onnx.NodeProto, index: int = 0) -> tuple[str, tuple[int, ...]]:
        if index >= len(node.input) or not node.input[index]:
            raise ModelError(f"node {node.name!r} ({node.op_type}): missing input {index}")
        name = self.resolve(node.input[index])
        if name not in self.shapes:
            if name in self.constants:
                raise UnsupportedOperatorError(
                    node.name, node.op_type, HANDLERS, f"input {name!r} is a constant; expected an activation")
            raise ModelError(f"node {node.name!r} ({node.op_type}): input {name!r} is not produced by any "
                             "earlier node or graph input (dangling edge, cycle, or nodes out of order)")
        return name, self.shapes[name]

    def add_layer(self, node, op, inputs, output_shape, **kwargs) -> Layer:
        if len(node.output) < 1 or not node.output[0]:
            raise ModelError(f"node {node.name!r} ({node.op_type}): has no output")
        output = node.output[0]
        if output in self.shapes or output in self.constants:
            raise ModelError(f"node {node.name!r} ({node.op_type}): output {output!r} is written twice")
        if any(d <= 0 for d in output_shape):
            raise ModelError(f"node {node.name!r} ({node.op_type}): output shape {output_shape} is empty")
        name = base = node.name or output      # an unnamed node's output may be another node's name
        while name in self.layer_names:
            name = f"{base}_{len(self.layer_names)}"
        self.layer_names.add(name)
        layer = Layer(name=name, op=op, inputs=inputs, output=output,
                      input_shape=self.shapes[inputs[0]], output_shape=tuple(int(d) for d in output_shape),
                      sources=[node.name or output], **kwargs)
        self.shapes[output] = layer.output_shape
        self.layers.append(layer)
        return layer


_FLOAT32 = (np.float32,)
_INT64 = (np.int64,)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _float32(node, array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype != np.float32:
        raise ModelError(f"node {node.name!r} ({node.op_type}): {what} is {array.dtype}; "
                         "only float32 tensors are supported")
    return array


def _pair(node, attrs, key, default, length=2):
    value = tuple(int(v) for v in attrs.get(key, default))
    if len(value) != length:
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS,
                                       f"{key}={list(value)}: only 2-d (H, W) {node.op_type} is supported")
    return value


# ---------------------------------------------------------------- compute ops

def _auto_pads(node, auto_pad: str, pads: tuple, size_hw: tuple, strides: tuple, effective: list) -> tuple:
    """The (top, left, bottom, right) pads ONNX's auto_pad gives ("NOTSET": `pads` as given)."""
    if auto_pad == "NOTSET":
        return pads
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ModelError(f"node {node.name!r} ({node.op_type}): unknown auto_pad {auto_pad!r}")
    padding = []
    for size, stride, eff in zip(size_hw, strides, effective):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + eff - size)
        small, large = total // 2, total - total // 2
        padding.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return (padding[0][0], padding[1][0], padding[0][1], padding[1][1])


def Conv(ctx: _Context, node):
    name, shape = ctx.activation(node)
    if len(shape) != 3:
        raise ModelError(f"node {node.name!r} (Conv): input {name!r} has shape {shape}; expected (C, H, W)")
    weight = _float32(node, ctx.constant(node, 1, "weight"), "weight")
    bias = ctx.optional_constant(node, 2, "bias")
    attrs = _attrs(node)
    if weight.ndim != 4:
        raise UnsupportedOperatorError(node.name, "Conv", HANDLERS,
                                       f"weight of rank {weight.ndim}: only 2-d convolutions are supported")
    out_channels, in_per_group, kh, kw = (int(d) for d in weight.shape)
    kernel = _pair(node, attrs, "kernel_shape", (kh, kw))
    if kernel != (kh, kw):
        raise ModelError(f"node {node.name!r} (Conv): kernel_shape {list(kernel)} does not match "
                         f"weight shape {weight.shape}")
    strides = _pair(node, attrs, "strides", (1, 1))
    dilations = _pair(node, attrs, "dilations", (1, 1))
    pads = _pair(node, attrs, "pads", (0, 0, 0, 0), length=4)
    group = int(attrs.get("group", 1))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode(errors="replace") if isinstance(auto_pad, bytes) else auto_pad
    channels, height, width = shape
    if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0 or min(kernel) < 1 or group < 1:
        raise ModelError(f"node {node.name!r} (Conv): invalid strides {strides}, dilations {dilations}, "
                         f"pads {pads}, kernel {kernel} or group {group}")
    if channels % group or out_channels % group or in_per_group * group != channels:
        raise ModelError(f"node {node.name!r} (Conv): weight {tuple(weight.shape)} with group={group} "
                         f"does not fit an input of {channels} channels")
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad != "NOTSET" and "pads" in attrs:
        raise ModelError(f"node {node.name!r} (Conv): auto_pad={auto_pad} and pads are both given; "
                         "ONNX allows one or the other")
    pads = _auto_pads(node, auto_pad, pads, (height, width), strides, effective)
    out_h = (height + pads[0] + pads[2] - effective[0]) // strides[0] + 1
    out_w = (width + pads[1] + pads[3] - effective[1]) // strides[1] + 1
    if out_h < 1 or out_w < 1:
        raise ModelError(f"node {node.name!r} (Conv): kernel {kernel} does not fit the padded input "
                         f"{height}x{width} (pads {pads})")
    if bias is not None:
        bias = _float32(node, bias, "bias")
        if bias.shape != (out_channels,):
            raise ModelError(f"node {node.name!r} (Conv): bias shape {bias.shape}, expected ({out_channels},)")
    layer = ctx.add_layer(node, "Conv", [name], (out_channels, out_h, out_w),
                          attrs={"kernel_shape": kernel, "strides": strides, "pads": pads,
                                 "dilations": dilations, "group": group},
                          weight=np.ascontiguousarray(weight),
                          bias=None if bias is None else np.ascontiguousarray(bias))
    if layer.conv_kind is None:
        raise UnsupportedOperatorError(
            node.name, "Conv", HANDLERS,
            f"group={group} with {channels} input and {out_channels} output channels: only dense (group=1) "
            "and depthwise (group = input channels = output channels, dilation 1) convolutions are supported")


def BatchNormalization(ctx, node):
    name, shape = ctx.activation(node)
    attrs = _attrs(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS, "training_mode=1")
    if ctx.opset < 7 and not attrs.get("is_test", 0):
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS, "is_test=0 (training) before opset 7")
    if ctx.opset < 9 and not attrs.get("spatial", 1):
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS, "spatial=0 (per-activation statistics)")
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS, "running-statistics outputs")
    params = [_float32(node, ctx.constant(node, i, what), what)
              for i, what in enumerate(("scale", "B", "mean", "var"), start=1)]
    channels = shape[0]
    for array, what in zip(params, ("scale", "B", "mean", "var")):
        if array.shape != (channels,):
            raise ModelError(f"node {node.name!r} (BatchNormalization): {what} shape {array.shape}, "
                             f"expected ({channels},)")
    scale, shift, mean, var = params
    multiplier = scale / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5)))
    ctx.add_layer(node, "BatchNormalization", [name], shape,
                  attrs={"multiplier": multiplier.astype(np.float32),
                         "offset": (shift - mean * multiplier).astype(np.float32)})


def _clip_layer(ctx, node, low: float, high: float):
    name, shape = ctx.activation(node)
    if not low <= high:
        raise ModelError(f"node {node.name!r} ({node.op_type}): min {low} > max {high}")
    if not low <= 0.0 <= high:
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS,
                                       f"bounds [{low:g}, {high:g}] exclude 0: the conv kernels keep padded "
                                       "channels at exactly 0, so only clips with min <= 0 <= max are supported")
    ctx.add_layer(node, "Clip", [name], shape, clip=(low, high))


def Clip(ctx, node):
    if ctx.opset < 11:
        attrs = _attrs(node)
        low, high = float(attrs.get("min", -math.inf)), float(attrs.get("max", math.inf))
    else:
        low_array = ctx.optional_constant(node, 1, "min", _FLOAT32)
        high_array = ctx.optional_constant(node, 2, "max", _FLOAT32)
        for array, what in ((low_array, "min"), (high_array, "max")):
            if array is not None and array.size != 1:
                raise ModelError(f"node {node.name!r} (Clip): {what} must be a scalar, got shape {array.shape}")
        low = -math.inf if low_array is None else float(low_array.reshape(()))
        high = math.inf if high_array is None else float(high_array.reshape(()))
    _clip_layer(ctx, node, low, high)


def Relu(ctx, node):
    _clip_layer(ctx, node, 0.0, math.inf)


def _activation_layer(ctx, node, activation: tuple[str, float, float]):
    """A stand-alone activation (engine.kernels.activation's (name, alpha, beta)); the
    passes fuse it into the conv before it, or into a gated form (Sigmoid + Mul -> silu)."""
    name, shape = ctx.activation(node)
    if not all(math.isfinite(v) for v in activation[1:]):
        raise ModelError(f"node {node.name!r} ({node.op_type}): alpha {activation[1]} and beta {activation[2]} "
                         "must be finite")
    ctx.add_layer(node, "Activation", [name], shape, activation=activation)


def HardSigmoid(ctx, node):
    attrs = _attrs(node)
    _activation_layer(ctx, node, ("hardsigmoid", float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))))


def HardSwish(ctx, node):
    if ctx.opset < 14:      # the schema check refuses it first; HardSwish-14 is the first version
        raise UnsupportedOperatorError(node.name, "HardSwish", HANDLERS, f"HardSwish is an opset-14 op "
                                       f"(the model's opset is {ctx.opset})")
    _activation_layer(ctx, node, HARDSWISH_DEFAULT)


def Sigmoid(ctx, node):
    _activation_layer(ctx, node, ("sigmoid", 0.0, 0.0))


def Mul(ctx, node):
    """x * y of two activations of the same shape, or of an image (C, H, W) and a per-channel
    (C, 1, 1) scale (a squeeze-and-excitation's gate). The passes turn the patterns they know
    (x * sigmoid(x), x * hardsigmoid(x), squeeze-and-excitation) into runnable layers; any
    other Mul is refused there."""
    if len(node.input) != 2:
        raise ModelError(f"node {node.name!r} (Mul): expected 2 inputs, got {len(node.input)}")
    for index in (0, 1):
        if ctx.is_constant(node.input[index]):
            raise UnsupportedOperatorError(node.name, "Mul", HANDLERS, f"input {index} is a constant: only the "
                                           "product of two computed tensors (x * sigmoid(x), a squeeze-and-"
                                           "excitation gate)")
    if ctx.opset < 7 and _attrs(node).get("broadcast", 0):
        raise UnsupportedOperatorError(node.name, "Mul", HANDLERS, "broadcast=1 before opset 7")
    a, shape_a = ctx.activation(node, 0)
    b, shape_b = ctx.activation(node, 1)
    channel_scale = lambda image, scale: len(image) == 3 and scale == (image[0], 1, 1)
    if shape_a == shape_b:
        shape, scaled = shape_a, None
    elif channel_scale(shape_a, shape_b):
        shape, scaled = shape_a, 1
    elif channel_scale(shape_b, shape_a):
        shape, scaled = shape_b, 0
    else:
        raise UnsupportedOperatorError(node.name, "Mul", HANDLERS,
                                       f"broadcasting {shape_a} * {shape_b} (batch-free shapes): only the same "
                                       "shape, or (C, H, W) * (C, 1, 1)")
    layer = ctx.add_layer(node, "Mul", [a, b], shape, attrs={"scale_input": scaled})
    layer.input_shape = shape


def MaxPool(ctx, node):
    """2-d max pooling: kernel_shape, strides, pads or auto_pad; dilations 1, ceil_mode 0,
    storage_order 0 and no Indices output (what ResNet's 3x3 stride-2 pool uses)."""
    name, shape = ctx.activation(node)
    attrs = _attrs(node)
    refuse = lambda detail: UnsupportedOperatorError(node.name, "MaxPool", HANDLERS, detail)
    if len(shape) != 3:
        raise refuse(f"input of shape {shape} (batch-free): only 2-d pooling of (N, C, H, W)")
    if len(node.output) > 1 and node.output[1]:
        raise refuse("the Indices output")
    if "kernel_shape" not in attrs:
        raise ModelError(f"node {node.name!r} (MaxPool): kernel_shape is required")
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    if len(kernel) != 2:
        raise refuse(f"kernel_shape={list(kernel)}: only 2-d pooling")
    strides = _pair(node, attrs, "strides", (1, 1))
    dilations = _pair(node, attrs, "dilations", (1, 1))
    pads = _pair(node, attrs, "pads", (0, 0, 0, 0), length=4)
    if min(kernel) < 1 or min(strides) < 1 or min(dilations) < 1 or min(pads) < 0:
        raise ModelError(f"node {node.name!r} (MaxPool): invalid kernel {kernel}, strides {strides}, "
                         f"dilations {dilations} or pads {pads}")
    if dilations != (1, 1):
        raise refuse(f"dilations={list(dilations)}: only 1")
    if int(attrs.get("ceil_mode", 0)):
        raise refuse("ceil_mode=1: only 0 (floor)")
    if int(attrs.get("storage_order", 0)):
        raise refuse("storage_order=1")
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode(errors="replace") if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad != "NOTSET" and "pads" in attrs:
        raise ModelError(f"node {node.name!r} (MaxPool): auto_pad={auto_pad} and pads are both given; "
                         "ONNX allows one or the other")
    channels, height, width = shape
    pads = _auto_pads(node, auto_pad, pads, (height, width), strides, list(kernel))
    if any(pad >= k for pad, k in zip(pads, kernel + kernel)):
        raise refuse(f"pads {list(pads)} for kernel {list(kernel)}: a pad must be smaller than the kernel "
                     "(a window wholly in the padding has no maximum)")
    out_h = (height + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    out_w = (width + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    if out_h < 1 or out_w < 1:
        raise ModelError(f"node {node.name!r} (MaxPool): kernel {kernel} does not fit the padded input "
                         f"{height}x{width} (pads {pads})")
    ctx.add_layer(node, "MaxPool", [name], (channels, out_h, out_w),
                  attrs={"kernel_shape": kernel, "strides": strides, "pads": pads})


def Add(ctx, node):
    if len(node.input) != 2:
        raise ModelError(f"node {node.name!r} (Add): expected 2 inputs, got {len(node.input)}")
    if ctx.is_constant(node.input[1]) and _try_linear_bias(ctx, node):
        return
    a, shape_a = ctx.activation(node, 0)
    b, shape_b = ctx.activation(node, 1)
    if shape_a != shape_b:
        raise UnsupportedOperatorError(node.name, "Add", HANDLERS,
                                       f"broadcasting {shape_a} + {shape_b}: only same-shape residual adds")
    ctx.add_layer(node, "Add", [a, b], shape_a)


def _try_linear_bias(ctx, node) -> bool:
    """MatMul + Add(constant): fold the constant into the Linear layer as its bias."""
    name = ctx.resolve(node.input[0])
    producer = ctx.layers[-1] if ctx.layers and ctx.layers[-1].output == name else None
    if producer is None or producer.op != "Linear" or producer.bias is not None:
        raise UnsupportedOperatorError(node.name, "Add", HANDLERS,
                                       "adding a constant is only supported as the bias after MatMul")
    bias = _float32(node, ctx.constant(node, 1, "bias"), "bias")
    attrs = _attrs(node)
    if ctx.opset < 7 and (not attrs.get("broadcast", 0) or attrs.get("axis", 1) != 1):
        raise UnsupportedOperatorError(node.name, "Add", HANDLERS, "before opset 7, a bias needs broadcast=1 "
                                       "(and axis 1, if given)")
    out_features = producer.output_shape[0]
    if bias.size != out_features or bias.shape[-1] != out_features:
        raise ModelError(f"node {node.name!r} (Add): bias shape {bias.shape} does not fit "
                         f"{out_features} output features")
    producer.bias = np.ascontiguousarray(bias.reshape(out_features))
    producer.sources.append(node.name or node.output[0])
    ctx.shapes[node.output[0]] = ctx.shapes.pop(producer.output)
    producer.output = node.output[0]
    return True


def GlobalAveragePool(ctx, node):
    name, shape = ctx.activation(node)
    if len(shape) != 3:
        raise ModelError(f"node {node.name!r} (GlobalAveragePool): input shape {shape}, expected (C, H, W)")
    ctx.add_layer(node, "GlobalAveragePool", [name], (shape[0], 1, 1))


def ReduceMean(ctx, node):
    name, shape = ctx.activation(node)
    attrs = _attrs(node)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _axes_input(ctx, node, scalar_ok=False)
    if any(not -4 <= int(a) < 4 for a in (axes or [])):
        raise ModelError(f"node {node.name!r} (ReduceMean): axes {list(axes)} out of range for a rank-4 input")
    axes = sorted(int(a) % 4 for a in (axes or []))
    if len(shape) != 3 or axes != [2, 3]:
        raise UnsupportedOperatorError(node.name, "ReduceMean", HANDLERS,
                                       f"axes {axes} on shape {shape}: only the mean over H and W")
    keepdims = int(attrs.get("keepdims", 1))
    layer = ctx.add_layer(node, "GlobalAveragePool", [name], (shape[0], 1, 1) if keepdims else (shape[0],))
    layer.attrs["keepdims"] = keepdims


def _axes_input(ctx, node, scalar_ok: bool) -> list[int]:
    """The constant axes input (index 1): int64, 1-d (or 0-d where ONNX Runtime takes it)."""
    axes = ctx.constant(node, 1, "axes", _INT64)
    if axes.ndim > 1 or (axes.ndim == 0 and not scalar_ok):
        raise ModelError(f"node {node.name!r} ({node.op_type}): axes has shape {axes.shape}; expected a 1-d tensor")
    return axes.reshape(-1).tolist()


def Flatten(ctx, node):
    name, shape = ctx.activation(node)
    axis = int(_attrs(node).get("axis", 1))
    if axis != 1:
        raise UnsupportedOperatorError(node.name, "Flatten", HANDLERS, f"axis={axis}: only axis=1")
    ctx.add_layer(node, "Flatten", [name], (int(np.prod(shape)),))


def Reshape(ctx, node):
    name, shape = ctx.activation(node)
    target = ctx.constant(node, 1, "shape", _INT64)
    if target.ndim != 1:
        raise ModelError(f"node {node.name!r} (Reshape): shape has shape {target.shape}; expected a 1-d tensor")
    target = target.tolist()
    features = int(np.prod(shape))
    batch_ok = len(target) == 2 and (target[0] in (int(BATCH), 0, -1) or
                                     (ctx.declared_batch is not None and target[0] == ctx.declared_batch))
    if batch_ok and target[0] == -1 and target[1] != features:
        batch_ok = False
    if not batch_ok or target[1] not in (-1, features):
        shown = ["N" if t == int(BATCH) else t for t in target]
        raise UnsupportedOperatorError(node.name, "Reshape", HANDLERS,
                                       f"target {shown} for input {shape}: only flattening to (N, {features})")
    ctx.add_layer(node, "Flatten", [name], (features,))


def Gemm(ctx, node):
    name, shape = ctx.activation(node)
    attrs = _attrs(node)
    if int(attrs.get("transA", 0)):
        raise UnsupportedOperatorError(node.name, "Gemm", HANDLERS, "transA=1")
    weight = _float32(node, ctx.constant(node, 1, "B"), "B")
    if weight.ndim != 2:
        raise ModelError(f"node {node.name!r} (Gemm): B has rank {weight.ndim}, expected 2")
    if not int(attrs.get("transB", 0)):
        weight = weight.T
    weight = weight * np.float32(attrs.get("alpha", 1.0))
    bias = ctx.optional_constant(node, 2, "C")
    if bias is not None and ctx.opset < 7 and not attrs.get("broadcast", 0):
        raise UnsupportedOperatorError(node.name, "Gemm", HANDLERS, "before opset 7, a C that is not (M, N) needs "
                                       "broadcast=1")
    _linear_layer(ctx, node, name, shape, weight, bias, float(attrs.get("beta", 1.0)))


def MatMul(ctx, node):
    name, shape = ctx.activation(node)
    weight = _float32(node, ctx.constant(node, 1, "B"), "B")
    if weight.ndim != 2:
        raise UnsupportedOperatorError(node.name, "MatMul", HANDLERS, f"B of rank {weight.ndim}: only 2-d")
    _linear_layer(ctx, node, name, shape, weight.T, None, 1.0)


def _linear_layer(ctx, node, name, shape, weight_out_in, bias, beta):
    if len(shape) != 1:
        raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS,
                                       f"input of shape {shape}: only (N, features) inputs (flatten first)")
    out_features, in_features = weight_out_in.shape
    if in_features != shape[0]:
        raise ModelError(f"node {node.name!r} ({node.op_type}): weight expects {in_features} input features, "
                         f"the input has {shape[0]}")
    if bias is not None:
        bias = _float32(node, bias, "bias")
        if bias.size == 1:
            bias = np.full(out_features, bias.reshape(()), np.float32)
        if bias.size != out_features:
            raise ModelError(f"node {node.name!r} ({node.op_type}): bias shape {bias.shape} does not fit "
                             f"{out_features} outputs")
        bias = (bias.reshape(out_features) * np.float32(beta)).astype(np.float32)
    ctx.add_layer(node, "Linear", [name], (out_features,),
                  weight=np.ascontiguousarray(weight_out_in, dtype=np.float32),
                  bias=None if bias is None else np.ascontiguousarray(bias))


def Pad(ctx, node):
    name, shape = ctx.activation(node)
    if len(shape) != 3:
        raise UnsupportedOperatorError(node.name, "Pad", HANDLERS, f"input of shape {shape}: only (C, H, W)")
    attrs = _attrs(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode(errors="replace") if isinstance(mode, bytes) else mode
    if ctx.opset < 11:
        pads = [int(p) for p in attrs.get("pads", [])]
        value = float(attrs.get("value", 0.0))
    else:
        pads = ctx.constant(node, 1, "pads", _INT64)
        if pads.ndim != 1:
            raise ModelError(f"node {node.name!r} (Pad): pads has shape {pads.shape}; expected a 1-d tensor")
        pads = pads.tolist()
        value_array = ctx.optional_constant(node, 2, "constant_value", _FLOAT32)
        value = 0.0 if value_array is None else float(value_array.reshape(-1)[0])
        if len(node.input) > 3 and node.input[3]:
            raise UnsupportedOperatorError(node.name, "Pad", HANDLERS, "the axes input")
    if mode != "constant" or value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) \
            or min(pads) < 0:
        raise UnsupportedOperatorError(node.name, "Pad", HANDLERS,
                                       f"mode={mode}, value={value}, pads={pads}: only zero padding of H and W "
                                       "feeding a Conv")
    channels, height, width = shape
    pads_hw = (pads[2], pads[3], pads[6], pads[7])       # top, left, bottom, right
    ctx.add_layer(node, "Pad", [name], (channels, height + pads_hw[0] + pads_hw[2],
                                        width + pads_hw[1] + pads_hw[3]), attrs={"pads": pads_hw})


# ---------------------------------------------------------------- aliases and constants

def Identity(ctx, node):
    source = ctx.resolve(node.input[0])
    if source in ctx.constants:
        ctx.constants[node.output[0]] = ctx.constants[source]
    else:
        ctx.activation(node)
        ctx.aliases[node.output[0]] = source


def Dropout(ctx, node):
    # Inference: Dropout is the identity. A mask output, if any, is not supported.
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedOperatorError(node.name, "Dropout", HANDLERS, "the mask output")
    if ctx.opset < 7 and not _attrs(node).get("is_test", 0):
        raise UnsupportedOperatorError(node.name, "Dropout", HANDLERS, "is_test=0 (training) before opset 7")
    if ctx.opset >= 12 and len(node.input) > 2 and node.input[2]:
        training = ctx.constant(node, 2, "training_mode", (np.bool_,))
        if bool(training.reshape(-1)[0]):
            raise UnsupportedOperatorError(node.name, "Dropout", HANDLERS, "training_mode=True")
    Identity(ctx, node)


def Constant(ctx, node):
    attrs = _attrs(node)
    if "value" in attrs:
        value = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        value = np.array(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        value = np.array(attrs["value_ints"], np.int64)
    else:
        raise UnsupportedOperatorError(node.name, "Constant", HANDLERS, f"attributes {sorted(attrs)}")
    ctx.constants[node.output[0]] = value


def Shape(ctx, node):
    name, shape = ctx.activation(node)
    full = np.array([BATCH, *shape], dtype=np.int64)
    attrs = _attrs(node)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    ctx.constants[node.output[0]] = full[start:None if end is None else int(end)]


def Gather(ctx, node):
    data = ctx.constant(node, 0, "data")
    indices = ctx.constant(node, 1, "indices", (np.int32, np.int64))
    axis = int(_attrs(node).get("axis", 0))
    try:
        ctx.constants[node.output[0]] = np.take(data, indices.astype(np.int64), axis=axis)
    except (IndexError, ValueError) as exc:
        raise ModelError(f"node {node.name!r} (Gather): {exc}") from None


def Unsqueeze(ctx, node):
    data = ctx.constant(node, 0, "data")
    axes = _attrs(node).get("axes")
    if axes is None:
        axes = _axes_input(ctx, node, scalar_ok=True)
    rank = data.ndim + len(axes)
    normalized = [int(a) + rank if int(a) < 0 else int(a) for a in axes]
    if any(not 0 <= a < rank for a in normalized) or len(set(normalized)) != len(normalized):
        raise ModelError(f"node {node.name!r} (Unsqueeze): axes {list(axes)} out of range or repeated "
                         f"for an output of rank {rank}")
    out = data
    for axis in sorted(normalized):
        out = np.expand_dims(out, axis)
    ctx.constants[node.output[0]] = out


def Squeeze(ctx, node):
    data = ctx.constant(node, 0, "data")
    axes = _attrs(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = _axes_input(ctx, node, scalar_ok=True)
    try:
        ctx.constants[node.output[0]] = np.squeeze(data, axis=None if axes is None else tuple(axes))
    except ValueError as exc:          # numpy's AxisError is a ValueError
        raise ModelError(f"node {node.name!r} (Squeeze): {exc}") from None


def Concat(ctx, node):
    parts = [ctx.constant(node, i, f"input {i}") for i in range(len(node.input))]
    if len({part.dtype for part in parts}) > 1:
        raise ModelError(f"node {node.name!r} (Concat): inputs of different types {[str(p.dtype) for p in parts]}")
    axis = int(_attrs(node).get("axis", 0))
    try:
        ctx.constants[node.output[0]] = np.concatenate(parts, axis=axis)
    except ValueError as exc:
        raise ModelError(f"node {node.name!r} (Concat): {exc}") from None


def Cast(ctx, node):
    data = ctx.constant(node, 0, "input")
    to = int(_attrs(node).get("to", onnx.TensorProto.FLOAT))
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    except (KeyError, ValueError, TypeError):
        raise ModelError(f"node {node.name!r} (Cast): unknown target type to={to}") from None
    ctx.constants[node.output[0]] = data.astype(dtype)


HANDLERS = {
    "Conv": Conv, "BatchNormalization": BatchNormalization, "Clip": Clip, "Relu": Relu, "Add": Add,
    "HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "Sigmoid": Sigmoid, "Mul": Mul, "MaxPool": MaxPool,
    "GlobalAveragePool": GlobalAveragePool, "ReduceMean": ReduceMean, "Flatten": Flatten,
    "Reshape": Reshape, "Gemm": Gemm, "MatMul": MatMul, "Pad": Pad, "Identity": Identity,
    "Dropout": Dropout, "Constant": Constant, "Shape": Shape, "Gather": Gather,
    "Unsqueeze": Unsqueeze, "Squeeze": Squeeze, "Concat": Concat, "Cast": Cast,
}


# ---------------------------------------------------------------- entry point

def read_model(source) -> onnx.ModelProto:
    """A path, bytes or ModelProto -> ModelProto holding every tensor's data, with ModelError
    for anything unreadable.

    External data (model.onnx beside model.onnx.data, as torch's dynamo exporter writes it)
    is read from the model file's folder, wherever the working directory is. Bytes and a
    ModelProto have no folder of their own: their external data is looked up in the working
    directory, as ONNX Runtime does, and a file not found there is a ModelError naming it
    (load the path instead, or onnx.load(path), which reads the data). A given ModelProto is
    not modified (one with external data is copied first)."""
    if isinstance(source, onnx.ModelProto):
        if not any(external_data_helper.uses_external_data(tensor) for _, tensor in _tensors(source)):
            return source
        model = onnx.ModelProto()
        model.CopyFrom(source)
        _read_external_data(model, Path.cwd(), "the given onnx.ModelProto")
        return model
    folder = Path.cwd()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "the given bytes"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ModelError(f"model file not found: {str(path)!r}")
        data = path.read_bytes()
        where = repr(str(path))
        folder = Path(os.path.abspath(path)).parent     # as onnx.load and ONNX Runtime: symlinks not followed
    else:
        raise ModelError(f"expected a path, bytes or onnx.ModelProto, got {type(source).__name__}")
    if not data:
        raise ModelError(f"{where} is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError or RuntimeWarning subclasses
        raise ModelError(f"{where} is not an ONNX model (protobuf parse failed: {exc})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError(f"{where} is not an ONNX model (no graph or no nodes)")
    _read_external_data(model, folder, None if isinstance(source, (str, os.PathLike)) else where)
    return model


def _tensors(model: onnx.ModelProto):
    """(what, tensor) for every tensor of the main graph the importer reads: initializers and
    the tensors of node attributes (a Constant's value)."""
    for tensor in model.graph.initializer:
        yield "initializer", tensor
    for node in model.graph.node:
        for attribute in node.attribute:
            for tensor in (attribute.t, *attribute.tensors) if attribute.HasField("t") else attribute.tensors:
                yield f"tensor of node {node.name!r} ({node.op_type})", tensor


def _read_external_data(model: onnx.ModelProto, folder: Path, without_folder: str | None) -> None:
    """Read every external tensor's data into `model` (ours to change) from `folder`; onnx
    refuses a location outside it, absolute, or past the end of its file. `without_folder`:
    what was given instead of a file ("the given bytes"), whose folder is the working one."""
    for what, tensor in _tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(folder))   # ValueError: a bad offset
        except (onnx.checker.ValidationError, OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if without_folder is None:
                of, where, hint = "", "the model's folder", ""
            else:
                of, where = f" of {without_folder}", ("the working directory (bytes and a ModelProto have no folder "
                                                      "of their own; ONNX Runtime looks there too)")
                hint = ("; load the model from its path (engine.load('folder/model.onnx')), or pass "
                        "onnx.load('folder/model.onnx'), which reads the data")
            raise ModelError(f"{what} {tensor.name!r}{of} keeps its data in the external file {location!r}, which "
                             f"cannot be read from {where}: {str(folder / location)!r} ({reason}){hint}") from None


def _default_opset(model: onnx.ModelProto) -> int:
    versions = [int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise ModelError("the model imports no version of the default ONNX operator set")
    if len(versions) > 1:
        raise ModelError(f"the model imports the default ONNX operator set {len(versions)} times "
                         f"(versions {versions}); expected once")
    return versions[0]


def import_graph(model: onnx.ModelProto) -> Graph:
    """Translate `model` into primitive layers (before the fusion passes)."""
    if not 1 <= model.ir_version <= onnx.IR_VERSION:
        raise ModelError(f"the model's IR version {model.ir_version} is not valid (this onnx package reads "
                         f"1..{onnx.IR_VERSION})")
    opset = _default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(f"opset {opset} is not supported (supported: {MIN_OPSET}..{MAX_OPSET})")
    graph = model.graph
    ctx = _Context(opset=opset)
    for value_info in (*graph.input, *graph.output):
        _check_text("graph input or output", value_info.name)
    graph_inputs = {value_info.name for value_info in graph.input}
    for init in graph.initializer:
        _check_text("initializer", init.name)
        if model.ir_version < 4 and init.name not in graph_inputs:
            raise ModelError(f"initializer {init.name!r} is not a graph input, which IR version "
                             f"{model.ir_version} (< 4) requires")
        try:
            ctx.constants[init.name] = numpy_helper.to_array(init)
        except Exception as exc:
            raise ModelError(f"initializer {init.name!r} cannot be read: {exc}") from None
    inputs = [i for i in graph.input if i.name not in ctx.constants]
    if len(inputs) != 1:
        raise ModelError(f"expected exactly one graph input (the image batch), got {len(inputs)}: "
                         f"{[i.name for i in inputs]}")
    graph_input = inputs[0]
    input_shape = _input_shape(graph_input, ctx)
    ctx.shapes[graph_input.name] = input_shape
    checker_context = _checker_context(model, opset)
    node_names: set[str] = set()
    for node in graph.node:
        for what, text in (("node", node.name), ("op type", node.op_type), ("domain", node.domain)):
            _check_text(what, text)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperatorError(node.name, f"{node.domain}::{node.op_type}", HANDLERS,
                                           f"custom domain {node.domain!r}")
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedOperatorError(node.name, node.op_type, HANDLERS)
        _check_node(ctx, node, checker_context)
        if node.name:
            if node.name in node_names:
                raise ModelError(f"two nodes are named {node.name!r}; ONNX requires unique node names")
            node_names.add(node.name)
        handler(ctx, node)
    if len(graph.output) != 1:
        raise ModelError(f"expected exactly one graph output, got {len(graph.output)}")
    output = ctx.resolve(graph.output[0].name)
    if output not in ctx.shapes:
        raise ModelError(f"graph output {graph.output[0].name!r} is not computed from the input")
    return Graph(layers=ctx.layers, input_name=graph_input.name, input_shape=input_shape,
                 output_name=output, output_shape=ctx.shapes[output], opset=opset,
                 producer=f"{model.producer_name} {model.producer_version}".strip())


def _check_text(what: str, name) -> None:
    """A name must be text. protobuf hands a string field that is not UTF-8 to Python as
    bytes: such a tensor could not be fed or named from Python (ONNX Runtime cannot either)."""
    if isinstance(name, bytes):
        raise ModelError(f"{what} name {name!r} is not valid UTF-8")


def _checker_context(model: onnx.ModelProto, opset: int):
    context = onnx.checker.C.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {"": opset}
    return context


def _check_node(ctx: _Context, node: onnx.NodeProto, checker_context) -> None:
    """The node against its ONNX schema at the model's opset (attribute names and types,
    required attributes, input and output counts: what ONNX Runtime checks too); every input
    it names must already exist and no output it names may (one writer per tensor).
    Handlers read only the inputs and attributes they need, so without this an invalid node
    (Clip-11 with min/max attributes, an input nothing produces) would load with the
    offending part silently ignored."""
    try:
        onnx.checker.check_node(node, checker_context)
    except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: UnicodeDecodeError of a bad name
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"node {node.name!r} ({node.op_type}): not a valid ONNX node at opset {ctx.opset}: "
                         f"{reason}") from None
    for name in node.input:
        _check_text("tensor", name)
        if name and ctx.resolve(name) not in ctx.shapes and ctx.resolve(name) not in ctx.constants:
            raise ModelError(f"node {node.name!r} ({node.op_type}): input {name!r} is not produced by any "
                             "earlier node, initializer or graph input (dangling edge, cycle, or nodes out of order)")
    for name in node.output:
        _check_text("tensor", name)
        if name and (name in ctx.shapes or name in ctx.constants or name in ctx.aliases):
            raise ModelError(f"node {node.name!r} ({node.op_type}): output {name!r} is written twice")


def _dtype_name(elem_type: int) -> str:
    """numpy's name of an ONNX element type, or what ONNX calls it, or "unknown type N"."""
    if elem_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
        return "undefined" if elem_type == onnx.TensorProto.UNDEFINED else "string"
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        pass
    if elem_type in onnx.TensorProto.DataType.values():
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    return f"of unknown type {elem_type}"


def _input_shape(value_info: onnx.ValueInfoProto, ctx: _Context) -> tuple[int, int, int]:
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        dtype = _dtype_name(tensor_type.elem_type)
        raise ModelError(f"graph input {value_info.name!r} is {dtype}; only float32 is supported")
    dims = list(tensor_type.shape.dim)
    if len(dims) != 4:
        raise ModelError(f"graph input {value_info.name!r} has rank {len(dims)}; expected 4 (N, C, H, W)")
    if dims[0].HasField("dim_value"):
        if dims[0].dim_value < 1:
            raise ModelError(f"graph input {value_info.name!r}: batch dimension {dims[0].dim_value}")
        ctx.declared_batch = int(dims[0].dim_value)
    sizes = []
    for axis, dim in zip("CHW", dims[1:]):
        if not dim.HasField("dim_value"):
            raise ModelError(f"graph input {value_info.name!r}: dimension {axis} is dynamic "
                             f"({dim.dim_param or '?'}); only the batch dimension may be dynamic")
        if not 1 <= dim.dim_value <= 1 << 16:
            raise ModelError(f"graph input {value_info.name!r}: dimension {axis} = {dim.dim_value} "
                             "is out of range (1..65536)")
        sizes.append(int(dim.dim_value))
    return tuple(sizes)
