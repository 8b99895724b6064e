"""Plain numpy dense convolution (group 1, strides, pads, dilations; float64 accumulation):
the reference the engine's direct (stem) conv kernel is tested against."""
from __future__ import annotations

import numpy as np

from tests.naive.activation import activate


def conv2d(x, weight, bias, strides, pads, dilations=(1, 1), clip=(-np.inf, np.inf), activation=("none", 0.0, 0.0)):
    """x (N, Cin, H, W), weight (Cout, Cin, kh, kw), bias (Cout,) or None, strides (sh, sw),
    pads (top, left, bottom, right), dilations (dh, dw), activation (name, alpha, beta)
    -> clip(activation(conv + bias)) as (N, Cout, Ho, Wo) float64."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    sh, sw = strides
    dh, dw = dilations
    top, left, bottom, right = pads
    padded = np.zeros((n, cin, h + top + bottom, w + left + right))
    padded[:, :, top:top + h, left:left + w] = x
    ho = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    wo = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, cout, ho, wo))
    for i in range(kh):
        for j in range(kw):
            r, s = i * dh, j * dw
            window = padded[:, :, r:r + sh * (ho - 1) + 1:sh, s:s + sw * (wo - 1) + 1:sw]  # (N, Cin, Ho, Wo)
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, i, j].astype(np.float64))
    if bias is not None:
        out += np.asarray(bias, np.float64)[None, :, None, None]
    return np.clip(activate(out, activation), clip[0], clip[1])
