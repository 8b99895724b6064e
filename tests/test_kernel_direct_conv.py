"""The direct (dense, stem) conv kernel against the plain numpy reference
(tests/naive/direct_conv.py).

Tolerance: max |got - ref| <= 1e-5 * max |ref| (float32 sums of <= 100 products, reference in
float64). Every case runs on 1 and 2 threads; outputs start as NaN so an element the kernel
forgets to write fails the test.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import direct_conv
from engine.kernels.layout import CB, from_blocked
from tests.naive import direct_conv as naive

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

RELATIVE = 1e-5
# full-size shapes take minutes as plain Python (NUMBA_DISABLE_JIT=1, the coverage run)
needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="full-size shape, too slow without the JIT")

# (N, Cin, Cout, H, W, (kh, kw), (sh, sw), (top, left, bottom, right), (dh, dw))
CASES = [
    (1, 3, 32, 17, 15, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),   # the stem, odd sizes
    (2, 3, 32, 20, 21, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),   # at 16 lanes: 6-pixel pairs, then 4 x 3, then borders
    (3, 3, 20, 9, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),    # batch 3, 3 blocks (odd block count)
    (1, 1, 9, 6, 7, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),      # 1x1, Cin 1
    (1, 4, 5, 8, 9, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),      # 1x1 stride 2: output shrinks
    (3, 4, 20, 11, 13, (5, 5), (1, 1), (2, 1, 3, 0), (2, 2)),   # 5x5 dilation 2, asymmetric pads
    (1, 4, 5, 13, 13, (5, 5), (2, 1), (4, 4, 4, 4), (2, 2)),    # dilated, pads as wide as the window
    (1, 3, 16, 2, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),     # tiny input
    (1, 3, 8, 1, 1, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),      # 1x1 input
    (1, 3, 17, 7, 12, (1, 3), (1, 2), (0, 2, 0, 1), (1, 1)),    # 1x3
    (2, 3, 64, 30, 33, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),   # ResNet's 7x7 stem: every group as pairs, then borders
    (1, 3, 72, 23, 25, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),   # ... with a last group of one real block
    (1, 3, 48, 23, 25, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),   # ... a group of 3 blocks (16 lanes): pair 2 is (b2, b2)
    pytest.param((1, 3, 32, 224, 224, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)), marks=needs_jit,
                 id="N1_3to32_224x224_k3x3_s22_p1111_d1"),  # MobileNetV2's stem at full size
]


def output_size(size, kernel, stride, pad_start, pad_end, dilation):
    return (size + pad_start + pad_end - (kernel - 1) * dilation - 1) // stride + 1


def run_engine(x, weight, bias, strides, pads, dilations, clip):
    packed_w, packed_b = direct_conv.pack_direct(weight, bias)
    (kh, kw), (h, w) = weight.shape[2:], x.shape[2:]
    ho = output_size(h, kh, strides[0], pads[0], pads[2], dilations[0])
    wo = output_size(w, kw, strides[1], pads[1], pads[3], dilations[1])
    out = np.full((x.shape[0], packed_w.shape[0], ho, wo, CB), np.nan, np.float32)
    direct_conv.direct_conv(x, packed_w, packed_b, out, strides[0], strides[1], pads[0], pads[1],
                            dilations[0], dilations[1], clip[0], clip[1])
    return from_blocked(out, weight.shape[0]), out


def assert_matches(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = max(float(np.abs(ref).max()), 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= RELATIVE * scale, f"max abs error {error:.3g} > {RELATIVE} x max |ref| {scale:.3g}"


def case_id(case):
    n, cin, cout, h, w, (kh, kw), (sh, sw), pads, (dh, _) = case
    return f"N{n}_{cin}to{cout}_{h}x{w}_k{kh}x{kw}_s{sh}{sw}_p{''.join(map(str, pads))}_d{dh}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_direct_conv_matches_reference_with_padded_lanes_zero(case, threads):
    n, cin, cout, h, w, kernel, strides, pads, dilations = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, cin, *kernel)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    got, blocked = run_engine(x, weight, bias, strides, pads, dilations, (0.0, 6.0))
    assert_matches(got, naive.conv2d(x, weight, bias, strides, pads, dilations, (0.0, 6.0)))
    padded_lanes = blocked.transpose(0, 1, 4, 2, 3).reshape(n, -1, *blocked.shape[2:4])[:, cout:]
    assert (padded_lanes == 0).all(), "padded channels must stay exactly 0"


@pytest.mark.parametrize("clip", [(0.0, np.inf), (-np.inf, np.inf)], ids=["relu", "none"])
def test_direct_conv_clip_variants_and_no_bias(clip, threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 11, 10)).astype(np.float32)
    weight = rng.standard_normal((12, 3, 3, 3)).astype(np.float32)
    got, _ = run_engine(x, weight, None, (2, 2), (1, 1, 1, 1), (1, 1), clip)
    assert_matches(got, naive.conv2d(x, weight, None, (2, 2), (1, 1, 1, 1), (1, 1), clip))


def test_pack_direct_layout_and_zero_padding():
    # CB + 2 output channels: one whole block and a second one with 2 channels and CB - 2 padded lanes
    channels = CB + 2
    weight = np.arange(channels * 3 * 2 * 2, dtype=np.float32).reshape(channels, 3, 2, 2)
    packed, packed_bias = direct_conv.pack_direct(weight, np.ones(channels, np.float32))
    assert packed.shape == (2, 3, 2, 2, CB) and packed_bias.shape == (2, CB)
    assert packed[1, 2, 0, 1, 1] == weight[CB + 1, 2, 0, 1]
    assert packed[0, 1, 1, 0, CB - 1] == weight[CB - 1, 1, 1, 0]
    assert (packed[1, ..., 2:] == 0).all() and (packed_bias[1, 2:] == 0).all()
    assert (packed_bias[1, :2] == 1).all()
    assert (direct_conv.pack_direct(weight, None)[1] == 0).all()


def test_direct_conv_flops_counts_two_per_multiply_accumulate():
    # MobileNetV2's stem: 32 x 112 x 112 outputs, 27 taps each: 21.7 MFLOP
    assert direct_conv.direct_conv_flops(1, 3, 32, 112, 112, 3, 3) == 2 * 32 * 112 * 112 * 27 == 21_676_032


def _valid_args():
    return dict(x=np.zeros((2, 3, 8, 8), np.float32), packed_weight=np.zeros((4, 3, 3, 3, CB), np.float32),
                packed_bias=np.zeros((4, CB), np.float32), out=np.zeros((2, 4, 4, 4, CB), np.float32),
                stride_h=2, stride_w=2, pad_top=1, pad_left=1, dilation_h=1, dilation_w=1, clip_min=0.0,
                clip_max=6.0)


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((2, 3, 8), np.float32)), "(*, *, *, *), got (2, 3, 8)"),
    (dict(x=np.zeros((2, 3, 8, 8), np.float16)), "float32, got float16"),
    (dict(packed_weight=np.zeros((4, 2, 3, 3, CB), np.float32)), f"(*, 3, *, *, {CB}), got (4, 2, 3, 3, {CB})"),
    (dict(packed_bias=np.zeros((3, CB), np.float32)), f"({4}, {CB}), got (3, {CB})"),
    (dict(out=np.zeros((2, 3, 4, 4, CB), np.float32)), f"(2, 4, *, *, {CB}), got (2, 3, 4, 4, {CB})"),
    (dict(out=np.zeros((2, 4, 4, 3, CB), np.float32)), "out width must be >= 4"),
    (dict(dilation_w=0), "dilation_w must be an int >= 1, got 0"),
    (dict(stride_h=True), "stride_h must be an int >= 1, got True"),
    (dict(pad_top=-2), "pad_top must be an int >= 0, got -2"),
    (dict(clip_max=-1.0), "clip_min <= 0 <= clip_max"),
])
def test_direct_conv_wrapper_rejects_bad_arguments_naming_expected_and_got(change, message):
    args = _valid_args()
    args.update(change)
    with pytest.raises(ValueError, match="direct_conv") as error:
        direct_conv.direct_conv(**args)
    assert message in str(error.value)
