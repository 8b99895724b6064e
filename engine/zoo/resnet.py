"""torchvision's ResNet-18 and ResNet-50 (`torchvision/models/resnet.py`, "ResNet V1.5":
the stride of a bottleneck is in its 3x3 conv) with synthetic deterministic weights (see
engine.zoo.parameters): the compute-bound contrast to the MobileNets.

conv1 7x7 stride 2 pad 3 to 64 channels, BatchNorm, ReLU, MaxPool 3x3 stride 2 pad 1; four
stages of BasicBlocks (ResNet-18: [2, 2, 2, 2], conv3x3 - ReLU - conv3x3) or Bottlenecks
(ResNet-50: [3, 4, 6, 3], conv1x1 - ReLU - conv3x3 (stride) - ReLU - conv1x1 to 4x the width)
at 64, 128, 256, 512 channels, strides 1, 2, 2, 2; a 1x1 conv + BatchNorm "downsample" on the
identity where the stride or the channel count changes; out += identity, then ReLU (the
Add before the ReLU: ResNet's order); pool; flatten; fc. BatchNorm eps 1e-5.

torch names the block's one ReLU module per call: "relu", "relu_1", "relu_2"; the exporter
writes the downsample conv after the main branch (forward's order).
"""
from __future__ import annotations

import numpy as np
import onnx

from engine.zoo.parameters import GAIN_SQUARED, SYNTHETIC_NOTE, _draw_conv_bn, _draw_linear
from engine.zoo.styles import _check_sizes, export_style
from engine.zoo.writer import INPUT_NAME, _GraphWriter, _scope

RESNET_STAGE_WIDTHS = (64, 128, 256, 512)
RESNET_STAGE_STRIDES = (1, 2, 2, 2)
# blocks per stage and the block kind
RESNET_LAYERS = {"resnet18": ((2, 2, 2, 2), "basic"), "resnet50": ((3, 4, 6, 3), "bottleneck")}
EXPANSION = {"basic": 1, "bottleneck": 4}
# The residual branch's last conv: gain^2 scaled by this (torchvision's zero_init_residual
# option would make it 0), so the stream's variance grows slowly through 8 or 16 blocks
RESNET_RESIDUAL_GAIN_SQUARED = 0.1


def _resnet(arch: str, resolution: int, num_classes: int, seed: int, exporter: str, style_options: dict) -> onnx.ModelProto:
    style = export_style(exporter, **style_options)
    _check_sizes(1.0, resolution, num_classes)
    layers, kind = RESNET_LAYERS[arch]
    expansion = EXPANSION[kind]
    rng = np.random.default_rng(seed)
    writer = _GraphWriter(style)
    relu = GAIN_SQUARED["relu"]

    x = writer.conv_bn_act(_draw_conv_bn(rng, "conv1", "bn1", "relu", "relu", 3, 64, 7, 2, 1, GAIN_SQUARED[None]),
                           INPUT_NAME)
    x = writer.max_pool(_scope("maxpool"), x, 3, 2, 1)
    inplanes = 64
    for stage, (blocks, planes, first_stride) in enumerate(zip(layers, RESNET_STAGE_WIDTHS, RESNET_STAGE_STRIDES),
                                                           start=1):
        for index in range(blocks):
            stride = first_stride if index == 0 else 1
            p = f"layer{stage}.{index}"
            out_channels = planes * expansion
            if kind == "basic":
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.conv1", f"{p}.bn1", f"{p}.relu", "relu", inplanes,
                                                     planes, 3, stride, 1, relu), x)
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.conv2", f"{p}.bn2", None, None, planes, planes, 3, 1, 1,
                                                     relu * RESNET_RESIDUAL_GAIN_SQUARED), y)
                final_relu = f"{p}.relu_1"
            else:
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.conv1", f"{p}.bn1", f"{p}.relu", "relu", inplanes,
                                                     planes, 1, 1, 1, relu), x)
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.conv2", f"{p}.bn2", f"{p}.relu_1", "relu", planes,
                                                     planes, 3, stride, 1, relu), y)
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.conv3", f"{p}.bn3", None, None, planes, out_channels,
                                                     1, 1, 1, relu * RESNET_RESIDUAL_GAIN_SQUARED), y)
                final_relu = f"{p}.relu_2"
            identity = x
            if stride != 1 or inplanes != out_channels:
                identity = writer.conv_bn(_draw_conv_bn(rng, f"{p}.downsample.0", f"{p}.downsample.1", None, None,
                                                        inplanes, out_channels, 1, stride, 1, relu / 2), x)
            y = writer.node("Add", _scope(p), [y, identity])  # out += identity
            x = writer.activation("relu", _scope(final_relu), y)
            inplanes = out_channels
    x = writer.global_pool(x, "/avgpool")
    x = writer.flatten(x, inplanes)
    fc_weight, fc_bias = _draw_linear(rng, inplanes, num_classes)
    writer.linear(x, "fc", fc_weight, fc_bias)
    doc = (f"{arch.replace('resnet', 'ResNet-')} (torchvision topology), {exporter} exporter conventions. "
           + SYNTHETIC_NOTE.format(seed=seed))
    return writer.model(arch, resolution, num_classes, None, doc)


_DOC = """torchvision's {Name} as an ONNX model with synthetic, deterministic weights.

    Input "input": float32 (N, 3, resolution, resolution) ("N" symbolic when dynamic_batch,
    else 1); output "output": float32 (N, num_classes) logits. Any resolution >= 1 gives a
    valid network (stride 32 in all: 224 -> 7x7 before the pool; 32 -> 1x1).

    `exporter` ("dynamo", torch's default, or "legacy") picks that exporter's conventions; the
    other keywords override one each (engine.zoo.styles.export_style: opset 13..18,
    separate_batchnorm, pool_style, flatten_style, dynamic_batch). ResNet has no Dropout.
    """


def resnet18(resolution: int = 224, num_classes: int = 1000, seed: int = 0, *, exporter: str = "dynamo",
             opset: int | None = None, separate_batchnorm: bool = False, pool_style: str | None = None,
             flatten_style: str | None = None, dynamic_batch: bool = True) -> onnx.ModelProto:
    return _resnet("resnet18", resolution, num_classes, seed, exporter, dict(
        opset=opset, separate_batchnorm=separate_batchnorm, pool_style=pool_style, flatten_style=flatten_style,
        dynamic_batch=dynamic_batch))


def resnet50(resolution: int = 224, num_classes: int = 1000, seed: int = 0, *, exporter: str = "dynamo",
             opset: int | None = None, separate_batchnorm: bool = False, pool_style: str | None = None,
             flatten_style: str | None = None, dynamic_batch: bool = True) -> onnx.ModelProto:
    return _resnet("resnet50", resolution, num_classes, seed, exporter, dict(
        opset=opset, separate_batchnorm=separate_batchnorm, pool_style=pool_style, flatten_style=flatten_style,
        dynamic_batch=dynamic_batch))


resnet18.__doc__ = _DOC.format(Name="ResNet-18")
resnet50.__doc__ = _DOC.format(Name="ResNet-50")
