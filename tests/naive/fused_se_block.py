"""Plain numpy reference for a fused squeeze-and-excitation block: the unfused composition."""
from __future__ import annotations

import numpy as np

from tests.naive.depthwise import depthwise_conv
from tests.naive.pointwise import pointwise_reference
from tests.naive.squeeze_excite import squeeze_excite

NONE = (-np.inf, np.inf)
NO_ACTIVATION = ("none", 0.0, 0.0)


def se_block_reference(x, expand, depthwise, se, project, stride, residual=None, clips=(NONE, NONE, NONE),
                       activations=(NO_ACTIVATION,) * 3, se_activations=(NO_ACTIVATION, NONE, ("sigmoid", 0.0, 0.0))):
    """x (N, Cin, H, W); expand (weight (Ch, Cin, 1, 1), bias) or None; depthwise (weight
    (Ch, 1, k, k), bias), pad k // 2; se (w1 (S, Ch), b1, w2 (Ch, S), b2); project (weight
    (Cout, Ch, 1, 1), bias); clips and activations of expand, depthwise, project;
    se_activations (hidden activation, hidden clip, gate); residual (N, Cout, Ho, Wo) or
    None -> float64."""
    hidden = x if expand is None else pointwise_reference(x, expand[0], expand[1], *clips[0],
                                                          activation=activations[0])
    pad = depthwise[0].shape[2] // 2
    hidden = depthwise_conv(hidden, depthwise[0], depthwise[1], (stride, stride), (pad,) * 4, clips[1],
                            activations[1])
    hidden = squeeze_excite(hidden, *se, hidden_activation=se_activations[0], hidden_clip=se_activations[1],
                            gate_activation=se_activations[2])
    return pointwise_reference(hidden, project[0], project[1], *clips[2], residual, activations[2])
