"""Plain numpy squeeze-and-excitation (float64): the reference for engine.kernels.squeeze_excite."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate


def squeeze_excite(x, w1, b1, w2, b2, hidden_activation=("none", 0.0, 0.0), hidden_clip=(-np.inf, np.inf),
                   gate_activation=("sigmoid", 0.0, 0.0)):
    """x (N, C, H, W); w1 (S, C), b1 (S,), w2 (C, S), b2 (C,) -> (N, C, H, W) float64:
    x * gate(w2 @ clip(act(w1 @ mean_hw(x) + b1)) + b2), the scale broadcast over H, W."""
    x = np.asarray(x, np.float64)
    pooled = x.mean(axis=(2, 3))                                            # (N, C)
    hidden = activate(pooled @ np.asarray(w1, np.float64).T + np.asarray(b1, np.float64), hidden_activation)
    hidden = np.clip(hidden, *hidden_clip)                                  # (N, S)
    scale = activate(hidden @ np.asarray(w2, np.float64).T + np.asarray(b2, np.float64), gate_activation)
    return x * scale[:, :, None, None]
