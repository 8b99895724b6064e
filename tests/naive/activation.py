"""Plain numpy activations (float64): the reference for every kernel epilogue and the
stand-alone activation step. `activation` is (name, alpha, beta) as in engine.kernels.activation."""
from __future__ import annotations

import numpy as np


def activate(x, activation):
    """f(x) in float64 for activation (name, alpha, beta)."""
    name, alpha, beta = activation
    x = np.asarray(x, np.float64)
    if name == "none":
        return x
    if name == "hardswish":
        return x * np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "hardsigmoid":
        return np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    raise ValueError(f"unknown activation {name!r}")
