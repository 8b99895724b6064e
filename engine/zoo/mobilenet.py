"""The MobileNet family: torchvision's MobileNetV2 and MobileNetV3 (small, large) and the
original MobileNetV1, with synthetic deterministic weights (see engine.zoo.parameters).

- `mobilenet_v2(...)`: the engine's default model, with switches for the ways real exporters
  write it (opset 9..18, BatchNormalization separate or folded, Clip with attribute or input
  bounds, Flatten / constant Reshape / Shape-Gather-Unsqueeze-Concat Reshape chain,
  GlobalAveragePool / ReduceMean, Gemm / MatMul+Add, an inference-mode Dropout). Every variant
  with the same seed computes the same function (up to float32 rounding): the BatchNorm
  parameters are drawn once and the folded variant is derived from them.
- `mobilenet_v1(...)`: the MobileNetV1 family (ReLU instead of ReLU6), to exercise the Relu
  path and a network without residual adds.
- `mobilenet_v3_small(...)`, `mobilenet_v3_large(...)`: torchvision's MobileNetV3
  (`torchvision/models/mobilenetv3.py`): HardSwish / ReLU, depthwise 3x3 and 5x5,
  squeeze-and-excitation with ReLU and HardSigmoid, BatchNorm eps 0.001, a two-layer
  classifier with HardSwish; written as torch's exporters write it (engine.zoo.styles.export_style).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from engine.zoo.parameters import (
    GAIN_SQUARED, RESIDUAL_GAIN_SQUARED, SQUEEZE_EXCITE_GAIN_SQUARED, SYNTHETIC_NOTE, _ConvBN, _draw_conv_bn,
    _draw_linear, _draw_squeeze_excite, make_divisible,
)
from engine.zoo.styles import _check_choice, _check_common, _check_sizes, export_style
from engine.zoo.writer import (
    _CLASSIFIER_STYLES, _CLIP_STYLES, _FLATTEN_STYLES, _POOL_STYLES, INPUT_NAME, _GraphWriter, _scope,
)

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

# torchvision's MobileNetV3 tables (`_mobilenet_v3_conf`): input channels, kernel, expanded
# channels, output channels, squeeze-and-excitation, activation ("RE" ReLU, "HS" HardSwish), stride
MOBILENET_V3_LARGE_SETTINGS: tuple[tuple[int, int, int, int, bool, str, int], ...] = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
MOBILENET_V3_SMALL_SETTINGS: tuple[tuple[int, int, int, int, bool, str, int], ...] = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
# the classifier's hidden width (`last_channel`, before width_mult)
MOBILENET_V3_LAST_CHANNEL = {"large": 1280, "small": 1024}
# MobileNetV3's norm_layer: partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
MOBILENET_V3_BN_EPSILON = 1e-3
MOBILENET_V3_BN_MOMENTUM = 1.0 - 0.01
MOBILENET_V3_DROPOUT = 0.2


# ----------------------------------------------------------------------------- parameters


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
    x = writer.global_pool(x, "", pool_style)
    x = writer.flatten(x, last_channels, flatten_style, dynamic_batch)
    if dropout:
        x = writer.dropout(x, _scope("classifier.0"))
    writer.linear(x, "classifier.1", fc_weight, fc_bias, classifier_style)
    doc = f"MobileNetV2 (torchvision topology), width_mult={width_mult}. " + SYNTHETIC_NOTE.format(seed=seed)
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
            x = writer.conv_bn_act(layer, x, separate_batchnorm=False)
    x = writer.global_pool(x, "", "global_average_pool")
    x = writer.flatten(x, last_channels, "flatten", dynamic_batch=True)
    writer.linear(x, "fc", fc_weight, fc_bias, "gemm")
    doc = f"MobileNetV1, width_mult={width_mult}. " + SYNTHETIC_NOTE.format(seed=seed)
    return writer.model("mobilenet_v1", resolution, num_classes, True, doc)


def _mobilenet_v3(arch: str, width_mult: float, resolution: int, num_classes: int, seed: int,
                  exporter: str, style_options: dict) -> onnx.ModelProto:
    """torchvision's MobileNetV3 `arch` ("large" or "small") as `exporter` writes it."""
    style = export_style(exporter, **style_options)
    _check_sizes(width_mult, resolution, num_classes)
    settings = MOBILENET_V3_LARGE_SETTINGS if arch == "large" else MOBILENET_V3_SMALL_SETTINGS
    adjust = lambda channels: make_divisible(channels * width_mult, 8)  # noqa: E731 (InvertedResidualConfig.adjust_channels)
    norm = dict(epsilon=MOBILENET_V3_BN_EPSILON, momentum=MOBILENET_V3_BN_MOMENTUM)
    rng = np.random.default_rng(seed)
    writer = _GraphWriter(style)

    # features.0: Conv2dNormActivation(3, 16, 3, stride 2, Hardswish)
    stem_channels = adjust(settings[0][0])
    x = writer.conv_bn_act(_draw_conv_bn(rng, "features.0.0", "features.0.1", "features.0.2", "hardswish",
                                         3, stem_channels, 3, 2, 1, GAIN_SQUARED[None], **norm), INPUT_NAME)
    fed_by = "hardswish"  # the activation whose output x is (sets the next conv's gain)
    stream_variance = 1.0  # of x, estimated: 1 after a block without residual, + 0.25 per residual Add
    for index, (cin, kernel, expanded, cout, use_se, act, stride) in enumerate(settings, start=1):
        cin, expanded, cout = adjust(cin), adjust(expanded), adjust(cout)
        activation = "hardswish" if act == "HS" else "relu"
        residual = stride == 1 and cin == cout
        block, sub, y = f"features.{index}.block", 0, x
        if expanded != cin:  # expand 1x1
            p = f"{block}.{sub}"
            y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", f"{p}.2", activation, cin, expanded, 1, 1, 1,
                                                 GAIN_SQUARED[fed_by] / stream_variance, **norm), y)
            fed_by, stream_variance, sub = activation, 1.0, sub + 1
        p = f"{block}.{sub}"  # depthwise kxk
        y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", f"{p}.2", activation, expanded, expanded, kernel,
                                             stride, expanded, GAIN_SQUARED[fed_by] / stream_variance, **norm), y)
        sub += 1
        project_gain = GAIN_SQUARED[activation] * (RESIDUAL_GAIN_SQUARED if residual else 1.0)
        if use_se:  # squeeze channels: _make_divisible(expanded // 4, 8)
            y = writer.squeeze_excite(_draw_squeeze_excite(rng, f"{block}.{sub}", expanded,
                                                           make_divisible(expanded // 4, 8), "relu", "hardsigmoid"), y)
            project_gain *= SQUEEZE_EXCITE_GAIN_SQUARED
            sub += 1
        p = f"{block}.{sub}"  # project 1x1, linear
        y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", None, None, expanded, cout, 1, 1, 1,
                                             project_gain, **norm), y)
        x = writer.node("Add", _scope(f"features.{index}"), [y, x]) if residual else y  # result += input
        stream_variance = stream_variance + RESIDUAL_GAIN_SQUARED if residual else 1.0
        fed_by = None
    # features.N: Conv2dNormActivation(last, 6 * last, 1, Hardswish)
    last_in = adjust(settings[-1][3])
    last_out = 6 * last_in
    last = f"features.{len(settings) + 1}"
    x = writer.conv_bn_act(_draw_conv_bn(rng, f"{last}.0", f"{last}.1", f"{last}.2", "hardswish", last_in, last_out,
                                         1, 1, 1, GAIN_SQUARED[fed_by] / stream_variance, **norm), x)
    x = writer.global_pool(x, "/avgpool")
    x = writer.flatten(x, last_out)
    # classifier: Linear(last_out, last_channel), Hardswish, Dropout(0.2), Linear(last_channel, num_classes)
    hidden = adjust(MOBILENET_V3_LAST_CHANNEL[arch])
    fc0_weight, fc0_bias = _draw_linear(rng, last_out, hidden, 4.0)  # pooled HardSwish outputs: means of ~0.5
    fc3_weight, fc3_bias = _draw_linear(rng, hidden, num_classes, GAIN_SQUARED["hardswish"])
    x = writer.linear(x, "classifier.0", fc0_weight, fc0_bias, output=None)
    x = writer.activation("hardswish", _scope("classifier.1"), x)
    if style.dropout:
        x = writer.dropout(x, _scope("classifier.2"), MOBILENET_V3_DROPOUT)
    writer.linear(x, "classifier.3", fc3_weight, fc3_bias)
    doc = (f"MobileNetV3-{arch.capitalize()} (torchvision topology), width_mult={width_mult}, {exporter} exporter "
           f"conventions. " + SYNTHETIC_NOTE.format(seed=seed))
    return writer.model(f"mobilenet_v3_{arch}", resolution, num_classes, None, doc)


_V3_DOC = """torchvision's MobileNetV3-{Arch} as an ONNX model with synthetic, deterministic weights.

    Input "input": float32 (N, 3, resolution, resolution) ("N" symbolic when dynamic_batch,
    else 1); output "output": float32 (N, num_classes) logits. Any resolution >= 1 gives a
    valid network (five stride-2 stages: 224 -> 7x7 before the pool; 32 -> 1x1).

    width_mult scales every channel count (make_divisible(c * width_mult, 8), as torchvision's
    InvertedResidualConfig.adjust_channels). `exporter` ("dynamo", torch's default, or
    "legacy") picks the conventions of that exporter; the other keywords override one each:
    see engine.zoo.styles.export_style (opset 13..18, separate_batchnorm, hardswish_style,
    pool_style, flatten_style, dropout, dynamic_batch). The same seed gives the same function
    in every style.
    """


def mobilenet_v3_large(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0, *,
                       exporter: str = "dynamo", opset: int | None = None, separate_batchnorm: bool = False,
                       hardswish_style: str = "auto", pool_style: str | None = None, flatten_style: str | None = None,
                       dropout: bool = False, dynamic_batch: bool = True) -> onnx.ModelProto:
    return _mobilenet_v3("large", width_mult, resolution, num_classes, seed, exporter, dict(
        opset=opset, separate_batchnorm=separate_batchnorm, hardswish_style=hardswish_style, pool_style=pool_style,
        flatten_style=flatten_style, dropout=dropout, dynamic_batch=dynamic_batch))


def mobilenet_v3_small(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0, *,
                       exporter: str = "dynamo", opset: int | None = None, separate_batchnorm: bool = False,
                       hardswish_style: str = "auto", pool_style: str | None = None, flatten_style: str | None = None,
                       dropout: bool = False, dynamic_batch: bool = True) -> onnx.ModelProto:
    return _mobilenet_v3("small", width_mult, resolution, num_classes, seed, exporter, dict(
        opset=opset, separate_batchnorm=separate_batchnorm, hardswish_style=hardswish_style, pool_style=pool_style,
        flatten_style=flatten_style, dropout=dropout, dynamic_batch=dynamic_batch))


mobilenet_v3_large.__doc__ = _V3_DOC.format(Arch="Large")
mobilenet_v3_small.__doc__ = _V3_DOC.format(Arch="Small")
