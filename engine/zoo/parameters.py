"""Synthetic parameters for the zoo's builders: conv + BatchNorm, linear and
squeeze-and-excitation weights drawn from a `numpy.random.Generator`.

Weights are drawn in an order that depends only on the architecture, never on the export
style, resolution or opset: the same seed gives the same function in every style. The
initialisation is He-style: a conv's weights are N(0, gain^2 / fan_in) with
gain^2 = 1 / E[act(z)^2] for z ~ N(0, 1) and the activation that feeds it (2 after ReLU, 3
after HardSwish, 2.8 after SiLU, 1 after a linear layer), so activations keep a standard
deviation of order 1 through any depth; convs that feed a residual Add are scaled down
(gain^2 = 0.25). BatchNorm statistics are drawn so that the folded scale
gamma / sqrt(var + eps) is U(0.8, 1.2). (MobileNetV1/V2 keep their original rule: the gain of
the activation after the conv.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BN_EPSILON = 1e-5       # torch.nn.BatchNorm2d's default eps
BN_MOMENTUM = 0.9       # ONNX momentum = 1 - torch momentum (torch's default 0.1)

# gain^2 of a conv fed by this activation: 1 / E[act(z)^2], z ~ N(0, 1) (measured over 1e7 samples)
GAIN_SQUARED = {None: 1.0, "relu": 2.0, "relu6": 2.0, "hardswish": 3.0, "silu": 2.8}
RESIDUAL_GAIN_SQUARED = 0.25  # a conv whose output is added to a residual stream


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible`: round a channel count to the nearest multiple of
    `divisor` (at least `min_value`, default `divisor`), never going down by more than 10%."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


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


SYNTHETIC_NOTE = ("Synthetic weights (deterministic from seed={seed}), not trained: pretrained weights cannot be "
                  "downloaded here and a dense fp32 engine's speed does not depend on weight values.")
