"""Plain numpy fully connected layer: the reference for the engine's linear kernel."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate


def linear(x, weight, bias, activation=("none", 0.0, 0.0)):
    """x (N, K), weight (M, K) "out x in", bias (M,) or None, activation (name, alpha, beta)
    -> activation(x @ weight.T + bias), (N, M) float64."""
    out = np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T
    if bias is not None:
        out += np.asarray(bias, np.float64)
    return activate(out, activation)
