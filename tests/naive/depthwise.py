"""Plain numpy depthwise convolution (NCHW, float64 accumulation): the reference the
engine's depthwise kernel is tested against."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate


def depthwise_conv(x, weight, bias, strides, pads, clip=(-np.inf, np.inf), activation=("none", 0.0, 0.0)):
    """x (N, C, H, W), weight (C, 1, kh, kw), bias (C,) or None, strides (sh, sw),
    pads (top, left, bottom, right), activation (name, alpha, beta)
    -> clip(activation(conv + bias)) as (N, C, Ho, Wo) float64."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[2:]
    sh, sw = strides
    top, left, bottom, right = pads
    padded = np.zeros((n, c, h + top + bottom, w + left + right))
    padded[:, :, top:top + h, left:left + w] = x
    ho = (h + top + bottom - kh) // sh + 1
    wo = (w + left + right - kw) // sw + 1
    out = np.zeros((n, c, ho, wo))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            out += window * weight[None, :, 0, i, j, None, None].astype(np.float64)
    if bias is not None:
        out += np.asarray(bias, np.float64)[None, :, None, None]
    return np.clip(activate(out, activation), clip[0], clip[1])
