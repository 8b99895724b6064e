"""The depthwise kernel's path for kernels other than 3x3 (5x5, 7x7, ...: interior columns
KXK_WIDE, then KXK_PIXELS pixels at a time, border and left-over columns per pixel) against the numpy
reference (tests/naive/depthwise.py).

Tolerance: max |got - ref| <= 2e-5 * max |ref| (float32 sums of <= 49 products, reference in
float64; the activation adds a few ulps). Outputs start as NaN, so an element the kernel
forgets to write fails; padded lanes must stay exactly 0. Cases run on 1 and 2 threads and
with depthwise_rows 1, 3 and larger than the output.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import depthwise
from engine.kernels.layout import CB, from_blocked, to_blocked
from tests.naive import depthwise as naive

pytestmark = pytest.mark.lanes     # the blocking depends on the lane width

RELATIVE = 2e-5

# (N, C, H, W, k, (sh, sw), (top, left, bottom, right))
CASES = [
    (1, 3, 1, 1, 5, (1, 1), (2, 2, 2, 2)),       # 1x1 input: every tap but the centre on padding
    (2, 5, 2, 3, 5, (1, 1), (2, 2, 2, 2)),       # kernel larger than the input: no interior column
    (1, 17, 5, 5, 5, (1, 1), (2, 2, 2, 2)),      # 17 channels: padded lanes; one interior column
    (1, 17, 5, 5, 5, (2, 2), (2, 2, 2, 2)),
    (3, 9, 9, 7, 5, (1, 1), (2, 2, 2, 2)),       # 9x7: interior of 3 (< KXK_PIXELS), W != H
    (1, 24, 7, 9, 5, (2, 2), (2, 2, 2, 2)),      # MobileNet stride-2 layout, odd size
    (1, 24, 9, 7, 5, (2, 1), (1, 2, 2, 1)),      # asymmetric pads, strides per axis differ
    (1, 33, 13, 17, 5, (1, 1), (2, 2, 2, 2)),    # interior of 13: KXK_WIDE + KXK_PIXELS + 1 left over
    (1, 5, 6, 24, 5, (1, 1), (2, 2, 2, 2)),      # interior of 20: two KXK_WIDE passes + KXK_PIXELS
    (1, 7, 13, 17, 5, (1, 2), (0, 0, 0, 0)),     # no pad: every column interior
    (1, 16, 9, 7, 7, (1, 1), (3, 3, 3, 3)),      # 7x7
    (1, 19, 11, 15, 7, (2, 2), (3, 3, 2, 2)),    # 7x7 stride 2, asymmetric end pads
    (1, 5, 5, 5, 7, (1, 1), (3, 3, 3, 3)),       # 7x7 on a 5x5 image: no interior
    (2, 11, 8, 12, 5, (2, 2), (1, 2, 2, 1)),     # even sizes, pads on one end only
]

ACTIVATIONS = [("none", 0.0, 0.0), ("hardswish", 0.0, 0.0), ("silu", 0.0, 0.0)]
CLIPS = {"relu6": (0.0, 6.0), "relu": (0.0, np.inf), "none": (-np.inf, np.inf)}


def case_id(case):
    n, c, h, w, k, (sh, sw), pads = case
    return f"N{n}C{c}_{h}x{w}_k{k}_s{sh}{sw}_p{''.join(map(str, pads))}"


def run_case(case, clip, activation, depthwise_rows, seed=0):
    n, c, h, w, k, strides, pads = case
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal((n, c, h, w))).astype(np.float32)
    weight = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    packed_w, packed_b = depthwise.pack_depthwise(weight, bias)
    x_blocked = to_blocked(x)
    ho = (h + pads[0] + pads[2] - k) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - k) // strides[1] + 1
    out = np.full((n, x_blocked.shape[1], ho, wo, CB), np.nan, np.float32)
    depthwise.depthwise_conv(x_blocked, packed_w, packed_b, out, strides[0], strides[1], pads[0], pads[1],
                             clip[0], clip[1], depthwise_rows, activation=activation)
    got = from_blocked(out, c)
    ref = naive.depthwise_conv(x, weight, bias, strides, pads, clip, activation)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = max(float(np.abs(ref).max()), 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= RELATIVE * scale, f"max abs error {error:.3g} > {RELATIVE} x max |ref| {scale:.3g}"
    padded_lanes = out.transpose(0, 1, 4, 2, 3).reshape(n, -1, ho, wo)[:, c:]
    assert (padded_lanes == 0).all(), "padded channels must stay exactly 0"


@pytest.mark.parametrize("depthwise_rows", [1, 3, 1000])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_kxk_matches_reference(case, depthwise_rows, threads):
    run_case(case, CLIPS["relu6"], ("none", 0.0, 0.0), depthwise_rows)


@pytest.mark.parametrize("clip", list(CLIPS), ids=list(CLIPS))
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("case", [CASES[4], CASES[7], CASES[10]], ids=case_id)
def test_kxk_activations_and_clips(case, activation, clip, threads):
    run_case(case, CLIPS[clip], activation, 4, seed=1)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="full-size shape, too slow without the JIT")
@pytest.mark.parametrize("stride", [1, 2])
def test_kxk_efficientnet_shape(stride, threads):
    """EfficientNet-B0's 5x5 layer at 28x28 (240 channels, 15 blocks at 16 lanes), SiLU."""
    run_case((1, 240, 28, 28, 5, (stride, stride), (2, 2, 2, 2)), CLIPS["none"], ("silu", 0.0, 0.0), 16, seed=2)
