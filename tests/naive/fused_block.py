"""Plain numpy reference for a fused inverted-residual block: the unfused composition."""
from __future__ import annotations

import numpy as np

from tests.naive.depthwise import depthwise_conv
from tests.naive.pointwise import pointwise_reference


RELU6, NONE = (0.0, 6.0), (-np.inf, np.inf)
NO_ACTIVATION = ("none", 0.0, 0.0)


def inverted_residual_reference(x, expand, depthwise, project, stride, residual=None, clips=(RELU6, RELU6, NONE),
                                activations=(NO_ACTIVATION,) * 3):
    """x (N, Cin, H, W); expand (weight (Ch, Cin, 1, 1), bias) or None; depthwise (weight
    (Ch, 1, 3, 3), bias); project (weight (Cout, Ch, 1, 1), bias); clips (low, high) after
    expand, depthwise and project (MobileNetV2: ReLU6, ReLU6, none), the residual added before
    the last; activations (name, alpha, beta) of the three stages, each before its clip;
    residual (N, Cout, Ho, Wo) or None -> float64."""
    expand_clip, depthwise_clip, project_clip = clips
    expand_activation, depthwise_activation, project_activation = activations
    hidden = x if expand is None else pointwise_reference(x, expand[0], expand[1], *expand_clip,
                                                          activation=expand_activation)
    hidden = depthwise_conv(hidden, depthwise[0], depthwise[1], (stride, stride), (1, 1, 1, 1), depthwise_clip,
                            depthwise_activation)
    return pointwise_reference(hidden, project[0], project[1], *project_clip, residual, project_activation)
