"""Activation functions of the kernel epilogues, shared by every kernel and the importer.

An activation is carried as (name, alpha, beta): the graph's `Layer.activation` and the
public kernel wrappers' `activation=` keyword. The numba kernels take it as three scalars
(code, alpha, beta) from `activation_code`, and apply it with `activate`:

    epilogue:  v = acc + bias [+ residual];  v = activate(v);  v = clip(v, low, high)

    name          code  f(v)                              f(0)
    none          0     v                                 0
    hardswish     1     v * clamp(alpha * v + beta, 0, 1)  0   (ONNX HardSwish: 1/6, 1/2)
    silu          2     v * sigmoid(v)                     0   (Sigmoid + Mul, "Swish")
    hardsigmoid   3     clamp(alpha * v + beta, 0, 1)      beta (ONNX default 0.2, 0.5)
    sigmoid       4     1 / (1 + exp(-v))                  1/2

A conv kernel's padded output lanes must stay exactly 0 (they see zero weights and bias),
so a conv epilogue only takes the activations with f(0) = 0 (`ZERO_PRESERVING`); the others
run where no lane is padded (a flat tensor, a squeeze-and-excitation gate) or in the
stand-alone activation step, which leaves padded lanes alone.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels._common import FASTMATH

NONE, HARDSWISH, SILU, HARDSIGMOID, SIGMOID = 0, 1, 2, 3, 4
CODES = {"none": NONE, "hardswish": HARDSWISH, "silu": SILU, "hardsigmoid": HARDSIGMOID, "sigmoid": SIGMOID}
ZERO_PRESERVING = ("none", "hardswish", "silu")
NO_ACTIVATION = ("none", 0.0, 0.0)
HARDSWISH_DEFAULT = ("hardswish", 1.0 / 6.0, 0.5)
# exp(-v) overflows float32 past v = -88.7; the kernels compile with 'ninf', so the argument
# is clamped to +-EXP_LIMIT first (sigmoid is 0 or 1 to float32 precision there anyway)
EXP_LIMIT = 80.0


def activation_code(function: str, activation, zero_preserving: bool = True) -> tuple[int, float, float]:
    """(code, alpha, beta) of `activation` = (name, alpha, beta) for a numba kernel, or a
    ValueError naming `function` and what is wrong. With `zero_preserving`, only the
    activations with f(0) = 0 (a conv epilogue: padded lanes must stay 0)."""
    try:
        name, alpha, beta = activation
        alpha, beta = float(alpha), float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{function}: activation must be (name, alpha, beta), got {activation!r}") from None
    if name not in CODES:
        raise ValueError(f"{function}: activation {name!r} is not one of {', '.join(CODES)}")
    if zero_preserving and name not in ZERO_PRESERVING:
        raise ValueError(f"{function}: activation {name!r} is not 0 at 0, so padded channels would not stay 0; "
                         f"a conv epilogue takes {', '.join(ZERO_PRESERVING)}")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"{function}: activation {name!r} needs finite alpha and beta, got {alpha}, {beta}")
    return CODES[name], alpha, beta


def activation_flops(activation) -> int:
    """FLOPs per element of `activation` (counted as other_flops): mul-add, clamp and the
    gating multiply for hardswish (4), exp + add + divide + multiply for silu (4), ..."""
    return {"none": 0, "hardswish": 4, "silu": 4, "hardsigmoid": 3, "sigmoid": 3}[activation[0]]


@njit(cache=True, inline="always", fastmath=FASTMATH)
def activate(v, code, alpha, beta):
    """f(v) of activation `code` (float32 v, alpha, beta); the table in the module docstring."""
    if code == HARDSWISH:
        return v * min(max(alpha * v + beta, np.float32(0.0)), np.float32(1.0))
    if code == SILU:
        return v / (np.float32(1.0) + np.exp(-min(max(v, np.float32(-EXP_LIMIT)), np.float32(EXP_LIMIT))))
    if code == HARDSIGMOID:
        return min(max(alpha * v + beta, np.float32(0.0)), np.float32(1.0))
    if code == SIGMOID:
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-min(max(v, np.float32(-EXP_LIMIT)),
                                                                 np.float32(EXP_LIMIT))))
    return v
