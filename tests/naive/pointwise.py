"""Plain numpy reference for the pointwise (1x1) convolution, in NCHW."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate


def pointwise_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                        clip_min: float, clip_max: float,
                        residual: np.ndarray | None = None, activation=("none", 0.0, 0.0)) -> np.ndarray:
    """clip(activation(conv1x1(x) + bias [+ residual]), clip_min, clip_max) in float64.

    x (N, Cin, H, W), weight (Cout, Cin, 1, 1) or (Cout, Cin), bias (Cout,) or None,
    residual (N, Cout, H, W) or None, activation (name, alpha, beta) -> (N, Cout, H, W) float64.
    """
    weight = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], weight.shape[1])
    result = np.einsum("oc,nchw->nohw", weight, np.asarray(x, dtype=np.float64))
    if bias is not None:
        result = result + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    if residual is not None:
        result = result + residual
    return np.clip(activate(result, activation), clip_min, clip_max)
