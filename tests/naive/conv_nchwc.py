"""Plain numpy dense conv with the conv epilogue (float64): the reference for
engine.kernels.conv_nchwc. out = clip(activate(conv(x) + bias [+ residual]))."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate
from tests.naive.direct_conv import conv2d


def conv_epilogue(x, weight, bias, strides, pads, residual=None, activation=("none", 0.0, 0.0),
                  clip=(-np.inf, np.inf)):
    """x (N, Cin, H, W), weight (Cout, Cin, kh, kw), bias (Cout,) or None, strides (sh, sw),
    pads (top, left, bottom, right), residual (N, Cout, Ho, Wo) or None, activation
    (name, alpha, beta) -> (N, Cout, Ho, Wo) float64."""
    out = conv2d(x, weight, bias, strides, pads)
    if residual is not None:
        out = out + np.asarray(residual, np.float64)
    return np.clip(activate(out, activation), clip[0], clip[1])
