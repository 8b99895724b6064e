"""The depthwise kernel against the plain numpy reference (tests/naive/depthwise.py).

Tolerance: max |got - ref| <= 1e-5 * max |ref| (float32 sums of <= 25 products, reference
in float64). Every case runs on 1 and 2 threads and with depthwise_rows 1, 4, 16 and larger than
the output; outputs start as NaN so an element the kernel forgets to write fails the test.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import depthwise
from engine.kernels.layout import CB, channel_blocks, from_blocked, to_blocked
from tests.naive import depthwise as naive

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

RELATIVE = 1e-5
# full-size shapes take minutes as plain Python (NUMBA_DISABLE_JIT=1, the coverage run)
needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="full-size shape, too slow without the JIT")

# (N, C, H, W, (kh, kw), (sh, sw), (top, left, bottom, right))
CASES = [
    (1, 3, 1, 1, (3, 3), (1, 1), (1, 1, 1, 1)),      # 1x1 input: only border taps
    (3, 5, 2, 2, (3, 3), (2, 2), (1, 1, 1, 1)),      # batch 3, stride 2
    (1, 17, 5, 5, (3, 3), (1, 1), (1, 1, 1, 1)),     # 17 channels: 3 blocks, 7 padded lanes
    (3, 24, 7, 9, (3, 3), (2, 2), (0, 1, 1, 0)),     # asymmetric pads, W != H
    (1, 33, 13, 13, (3, 3), (2, 2), (1, 1, 1, 1)),   # MobileNet stride-2 layout, odd size
    (1, 17, 13, 13, (3, 3), (1, 1), (0, 0, 0, 0)),   # no pad: output shrinks to 11x11
    (1, 8, 13, 13, (3, 3), (2, 2), (0, 0, 0, 0)),    # stride 2, no pad: 6x6
    (1, 16, 1, 13, (3, 3), (1, 2), (1, 0, 1, 2)),    # one input row, different strides per axis
    (3, 5, 7, 9, (5, 5), (1, 1), (2, 2, 2, 2)),      # 5x5 (generic path)
    (1, 24, 13, 13, (5, 5), (2, 2), (2, 1, 0, 2)),   # 5x5 stride 2, asymmetric
    (1, 17, 2, 2, (5, 5), (1, 1), (2, 2, 2, 2)),     # kernel larger than the input
    (1, 33, 7, 9, (1, 3), (1, 1), (0, 1, 0, 1)),     # 1x3
    (1, 3, 5, 5, (1, 3), (2, 1), (2, 0, 1, 2)),      # pads wider than the kernel: rows of bias only
]


def run_engine(x, weight, bias, strides, pads, clip, depthwise_rows):
    """Engine depthwise conv on NCHW input; returns (plain NCHW result, blocked output)."""
    packed_w, packed_b = depthwise.pack_depthwise(weight, bias)
    x_blocked = to_blocked(x)
    h, w = x.shape[2:]
    kh, kw = weight.shape[2:]
    ho = (h + pads[0] + pads[2] - kh) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - kw) // strides[1] + 1
    out = np.full((x.shape[0], x_blocked.shape[1], ho, wo, CB), np.nan, np.float32)
    depthwise.depthwise_conv(x_blocked, packed_w, packed_b, out, strides[0], strides[1], pads[0], pads[1],
                             clip[0], clip[1], depthwise_rows)
    return from_blocked(out, x.shape[1]), out


def assert_matches(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = max(float(np.abs(ref).max()), 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= RELATIVE * scale, f"max abs error {error:.3g} > {RELATIVE} x max |ref| {scale:.3g}"


def make_case(n, c, h, w, kernel, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    return x, weight, bias


def case_id(case):
    n, c, h, w, (kh, kw), (sh, sw), pads = case
    return f"N{n}C{c}_{h}x{w}_k{kh}x{kw}_s{sh}{sw}_p{''.join(map(str, pads))}"


@pytest.mark.parametrize("depthwise_rows", [1, 4, 16, 1000])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_depthwise_matches_reference_with_padded_lanes_zero(case, depthwise_rows, threads):
    n, c, h, w, kernel, strides, pads = case
    x, weight, bias = make_case(n, c, h, w, kernel)
    got, blocked = run_engine(x, weight, bias, strides, pads, (0.0, 6.0), depthwise_rows)
    assert_matches(got, naive.depthwise_conv(x, weight, bias, strides, pads, (0.0, 6.0)))
    padded_lanes = blocked.transpose(0, 1, 4, 2, 3).reshape(n, -1, *blocked.shape[2:4])[:, c:]
    assert (padded_lanes == 0).all(), "padded channels must stay exactly 0"


@pytest.mark.parametrize("clip", [(0.0, 6.0), (0.0, np.inf), (-np.inf, np.inf)], ids=["relu6", "relu", "none"])
def test_depthwise_clip_variants_and_no_bias(clip, threads):
    x, weight, _ = make_case(2, 21, 9, 8, (3, 3), seed=1)
    x *= 4  # so ReLU6 clips at 6 too
    for bias in (None, np.linspace(-1, 1, 21).astype(np.float32)):
        got, _ = run_engine(x, weight, bias, (1, 1), (1, 1, 1, 1), clip, 4)
        assert_matches(got, naive.depthwise_conv(x, weight, bias, (1, 1), (1, 1, 1, 1), clip))


@needs_jit
def test_depthwise_mobilenet_first_layer_shape(threads):
    """32 channels at 112 x 112, stride 1, ReLU6: the fast path at full size."""
    x, weight, bias = make_case(1, 32, 112, 112, (3, 3), seed=2)
    got, _ = run_engine(x, weight, bias, (1, 1), (1, 1, 1, 1), (0.0, 6.0), 4)
    assert_matches(got, naive.depthwise_conv(x, weight, bias, (1, 1), (1, 1, 1, 1), (0.0, 6.0)))


def test_pack_depthwise_layout_and_zero_padding():
    weight = np.arange(5 * 9, dtype=np.float32).reshape(5, 1, 3, 3)
    packed, packed_bias = depthwise.pack_depthwise(weight, np.arange(5, dtype=np.float32))
    assert packed.shape == (1, 3, 3, CB) and packed_bias.shape == (1, CB)
    assert packed.flags.c_contiguous and packed.dtype == np.float32
    assert packed[0, 1, 2, 4] == weight[4, 0, 1, 2]
    assert (packed[..., 5:] == 0).all() and (packed_bias[0, 5:] == 0).all()
    assert (depthwise.pack_depthwise(weight, None)[1] == 0).all()


def test_depthwise_flops_counts_two_per_tap():
    # MobileNetV2's first depthwise layer: 32 x 112 x 112 outputs x 9 taps
    assert depthwise.depthwise_flops(1, 32, 112, 112, 3, 3) == 2 * 32 * 112 * 112 * 9
    assert depthwise.depthwise_flops(3, 5, 2, 7, 1, 3) == 3 * depthwise.depthwise_flops(1, 5, 2, 7, 1, 3)


def _valid_args():
    x = np.zeros((2, 3, 5, 5, CB), np.float32)
    weight = np.zeros((3, 3, 3, CB), np.float32)
    bias = np.zeros((3, CB), np.float32)
    out = np.zeros((2, 3, 5, 5, CB), np.float32)
    return dict(x=x, packed_weight=weight, packed_bias=bias, out=out, stride_h=1, stride_w=1, pad_top=1,
                pad_left=1, clip_min=0.0, clip_max=6.0, depthwise_rows=4)


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((2, 3, 5, 5, CB), np.float64)), "float32, got float64"),
    (dict(x=np.zeros((2, 3, 5, 5, CB + 1), np.float32)), f"(*, *, *, *, {CB}), got (2, 3, 5, 5, {CB + 1})"),
    (dict(x=np.zeros((2, 3, 5, 10, CB), np.float32)[:, :, :, ::2]), "C-contiguous"),
    (dict(x=[[1.0]]), "numpy array"),
    (dict(packed_weight=np.zeros((4, 3, 3, CB), np.float32)), f"(3, *, *, {CB}), got (4, 3, 3, {CB})"),
    (dict(packed_bias=np.zeros((3, CB + 1), np.float32)), f"(3, {CB}), got (3, {CB + 1})"),
    (dict(out=np.zeros((1, 3, 5, 5, CB), np.float32)), f"(2, 3, *, *, {CB}), got (1, 3, 5, 5, {CB})"),
    (dict(out=np.zeros((2, 3, 2, 5, CB), np.float32)), "out height must be >= 4"),
    (dict(stride_h=0), "stride_h must be an int >= 1, got 0"),
    (dict(pad_left=-1), "pad_left must be an int >= 0, got -1"),
    (dict(depthwise_rows=0), "depthwise_rows must be an int >= 1, got 0"),
    (dict(depthwise_rows=2.0), "depthwise_rows must be an int >= 1, got 2.0"),
    (dict(clip_min=1.0), "clip_min <= 0 <= clip_max"),
    (dict(clip_max=float("nan")), "clip_min <= 0 <= clip_max"),
])
def test_depthwise_wrapper_rejects_bad_arguments_naming_expected_and_got(change, message):
    args = _valid_args()
    args.update(change)
    with pytest.raises(ValueError, match="depthwise_conv") as error:
        depthwise.depthwise_conv(**args)
    assert message in str(error.value)


def test_pack_depthwise_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(C, 1, kh, kw\), got \(4, 2, 3, 3\)"):
        depthwise.pack_depthwise(np.zeros((4, 2, 3, 3)), None)
    with pytest.raises(ValueError, match=r"\(4,\), got \(5,\)"):
        depthwise.pack_depthwise(np.zeros((4, 1, 3, 3)), np.zeros(5))


def test_depthwise_accepts_numpy_integer_arguments(threads):
    """np.int64 strides/pads (as read from an ONNX attribute array) take the slow checks and
    still give the reference result."""
    x, weight, bias = make_case(1, 9, 6, 7, (3, 3), seed=3)
    packed_w, packed_b = depthwise.pack_depthwise(weight, bias)
    out = np.full((1, channel_blocks(9), 3, 4, CB), np.nan, np.float32)
    two, one = np.int64(2), np.int64(1)
    depthwise.depthwise_conv(to_blocked(x), packed_w, packed_b, out, two, two, one, one, 0.0, 6.0, np.int64(2))
    assert_matches(from_blocked(out, 9), naive.depthwise_conv(x, weight, bias, (2, 2), (1, 1, 1, 1), (0.0, 6.0)))


def test_depthwise_pads_wider_than_the_input_leave_no_interior(threads):
    """W = 1 with pad 2 on the left: no pixel has its whole window inside the input."""
    x, weight, bias = make_case(1, 5, 3, 1, (3, 3), seed=4)
    got, _ = run_engine(x, weight, bias, (1, 1), (2, 2, 0, 0), (-np.inf, np.inf), 16)
    assert_matches(got, naive.depthwise_conv(x, weight, bias, (1, 1), (2, 2, 0, 0)))
