"""Plain numpy reference for a fused inverted-residual block: the unfused composition."""
from __future__ import annotations

import numpy as np

from tests.naive.depthwise import depthwise_conv
from tests.naive.pointwise import pointwise_reference


def inverted_residual_reference(x, expand, depthwise, project, stride, residual=None):
    """x (N, Cin, H, W); expand (weight (Ch, Cin, 1, 1), bias) or None; depthwise (weight
    (Ch, 1, 3, 3), bias); project (weight (Cout, Ch, 1, 1), bias); ReLU6 after expand and
    depthwise, none after project; residual (N, Cout, Ho, Wo) or None -> float64."""
    hidden = x if expand is None else pointwise_reference(x, expand[0], expand[1], 0.0, 6.0)
    hidden = depthwise_conv(hidden, depthwise[0], depthwise[1], (stride, stride), (1, 1, 1, 1), (0.0, 6.0))
    return pointwise_reference(hidden, project[0], project[1], -np.inf, np.inf, residual)
