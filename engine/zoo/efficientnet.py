"""torchvision's EfficientNet-B0 (`torchvision/models/efficientnet.py`) with synthetic
deterministic weights (see engine.zoo.parameters).

Stem 3x3 stride 2 to 32 channels + SiLU; 16 MBConv blocks in 7 stages (expand 1x1 + SiLU when
the expansion is not 1, depthwise 3x3 or 5x5 + SiLU, squeeze-and-excitation with
max(1, block input channels // 4) squeezed channels, SiLU and Sigmoid, project 1x1, residual
Add when stride 1 and in == out channels; stochastic depth is the identity at inference);
1x1 conv to 1280 + SiLU; pool; Dropout(0.2); Linear. BatchNorm: nn.BatchNorm2d's defaults
(eps 1e-5, momentum 0.1) — only the B5..B7 and V2 variants pass eps=1e-3. SiLU is written
Mul(x, Sigmoid(x)), as torch's exporters write it.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from engine.zoo.parameters import (
    GAIN_SQUARED, RESIDUAL_GAIN_SQUARED, SQUEEZE_EXCITE_GAIN_SQUARED, SYNTHETIC_NOTE, _draw_conv_bn, _draw_linear,
    _draw_squeeze_excite, make_divisible,
)
from engine.zoo.styles import _check_sizes, export_style
from engine.zoo.writer import INPUT_NAME, _GraphWriter, _scope

# torchvision's `_efficientnet_conf("efficientnet_b0")`: expand ratio, kernel, stride, input
# channels, output channels, layers (before width_mult / depth_mult)
EFFICIENTNET_B0_SETTINGS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
EFFICIENTNET_B0_DROPOUT = 0.2


def efficientnet_b0(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000, seed: int = 0, *,
                    depth_mult: float = 1.0, exporter: str = "dynamo", opset: int | None = None,
                    separate_batchnorm: bool = False, pool_style: str | None = None,
                    flatten_style: str | None = None, dropout: bool = False,
                    dynamic_batch: bool = True) -> onnx.ModelProto:
    """torchvision's EfficientNet-B0 as an ONNX model with synthetic, deterministic weights.

    Input "input": float32 (N, 3, resolution, resolution) ("N" symbolic when dynamic_batch,
    else 1); output "output": float32 (N, num_classes) logits. Any resolution >= 1 gives a
    valid network (five stride-2 stages: 224 -> 7x7 before the pool; 32 -> 1x1).

    width_mult / depth_mult scale channels (make_divisible(c * width_mult, 8)) and layers per
    stage (ceil(n * depth_mult)) as torchvision's MBConvConfig does (B0: 1.0 and 1.0; the other
    B variants also change resolution, dropout and BatchNorm eps and are not built here).
    `exporter` ("dynamo", torch's default, or "legacy") picks that exporter's conventions; the
    other keywords override one each (engine.zoo.styles.export_style: opset 13..18,
    separate_batchnorm, pool_style, flatten_style, dropout, dynamic_batch).
    """
    style = export_style(exporter, opset=opset, separate_batchnorm=separate_batchnorm, pool_style=pool_style,
                         flatten_style=flatten_style, dropout=dropout, dynamic_batch=dynamic_batch)
    _check_sizes(width_mult, resolution, num_classes)
    if not (isinstance(depth_mult, (int, float)) and depth_mult > 0):
        raise ValueError(f"depth_mult: expected a positive number, got {depth_mult!r}")
    adjust = lambda channels: make_divisible(channels * width_mult, 8)  # noqa: E731 (MBConvConfig.adjust_channels)
    rng = np.random.default_rng(seed)
    writer = _GraphWriter(style)

    stem_channels = adjust(EFFICIENTNET_B0_SETTINGS[0][3])
    x = writer.conv_bn_act(_draw_conv_bn(rng, "features.0.0", "features.0.1", "features.0.2", "silu", 3,
                                         stem_channels, 3, 2, 1, GAIN_SQUARED[None]), INPUT_NAME)
    fed_by = "silu"  # the activation whose output x is (sets the next conv's gain)
    stream_variance = 1.0  # of x, estimated: 1 after a block without residual, + 0.25 per residual Add
    for stage, (expand_ratio, kernel, first_stride, cin, cout, layers) in enumerate(EFFICIENTNET_B0_SETTINGS, start=1):
        cin, cout = adjust(cin), adjust(cout)
        for index in range(int(math.ceil(layers * depth_mult))):
            stride = first_stride if index == 0 else 1
            block_in = cin if index == 0 else cout
            expanded = make_divisible(block_in * expand_ratio, 8)  # cnf.adjust_channels(input_channels, expand_ratio)
            residual = stride == 1 and block_in == cout
            block, sub, y = f"features.{stage}.{index}.block", 0, x
            if expanded != block_in:  # expand 1x1
                p = f"{block}.{sub}"
                y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", f"{p}.2", "silu", block_in, expanded,
                                                     1, 1, 1, GAIN_SQUARED[fed_by] / stream_variance), y)
                fed_by, stream_variance, sub = "silu", 1.0, sub + 1
            p = f"{block}.{sub}"  # depthwise kxk
            y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", f"{p}.2", "silu", expanded, expanded, kernel,
                                                 stride, expanded, GAIN_SQUARED[fed_by] / stream_variance), y)
            # squeeze-and-excitation: max(1, block input channels // 4), SiLU, Sigmoid
            y = writer.squeeze_excite(_draw_squeeze_excite(rng, f"{block}.{sub + 1}", expanded,
                                                           max(1, block_in // 4), "silu", "sigmoid"), y)
            p = f"{block}.{sub + 2}"  # project 1x1, linear
            gain = GAIN_SQUARED["silu"] * SQUEEZE_EXCITE_GAIN_SQUARED * (RESIDUAL_GAIN_SQUARED if residual else 1.0)
            y = writer.conv_bn_act(_draw_conv_bn(rng, f"{p}.0", f"{p}.1", None, None, expanded, cout, 1, 1, 1, gain), y)
            x = writer.node("Add", _scope(f"features.{stage}.{index}"), [y, x]) if residual else y
            stream_variance = stream_variance + RESIDUAL_GAIN_SQUARED if residual else 1.0
            fed_by = None
    last_in = adjust(EFFICIENTNET_B0_SETTINGS[-1][4])
    last_out = 4 * last_in
    last = f"features.{len(EFFICIENTNET_B0_SETTINGS) + 1}"
    x = writer.conv_bn_act(_draw_conv_bn(rng, f"{last}.0", f"{last}.1", f"{last}.2", "silu", last_in, last_out,
                                         1, 1, 1, GAIN_SQUARED[fed_by] / stream_variance), x)
    x = writer.global_pool(x, "/avgpool")
    x = writer.flatten(x, last_out)
    # classifier: Dropout(0.2), Linear(last_out, num_classes)
    fc_weight, fc_bias = _draw_linear(rng, last_out, num_classes, 4.0)  # pooled SiLU outputs: means of ~0.5
    if style.dropout:
        x = writer.dropout(x, _scope("classifier.0"), EFFICIENTNET_B0_DROPOUT)
    writer.linear(x, "classifier.1", fc_weight, fc_bias)
    doc = (f"EfficientNet-B0 (torchvision topology), width_mult={width_mult}, depth_mult={depth_mult}, {exporter} "
           f"exporter conventions. " + SYNTHETIC_NOTE.format(seed=seed))
    return writer.model("efficientnet_b0", resolution, num_classes, None, doc)
