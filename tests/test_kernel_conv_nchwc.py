"""The dense NCHWc conv kernel (engine.kernels.conv_nchwc) against the plain numpy reference
(tests/naive/conv_nchwc.py, float64).

Tolerance, scaled with the reduction length K = Cin * kh * kw (float32 sums of K products):
max |got - ref| <= 1e-6 * (1 + K / 100) * max |ref| (K = 576, a ResNet 3x3 at 64 channels:
6.8e-6; the kernel's observed errors are ~1e-6). Outputs start as NaN so an element the
kernel forgets to write fails; padded output lanes must be exactly 0. Every
correctness case runs on 1 and 2 threads.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import conv_nchwc as kernel
from engine.kernels.layout import CB, from_blocked, to_blocked
from tests.naive.conv_nchwc import conv_epilogue

pytestmark = pytest.mark.lanes     # layouts, packing and tiles depend on the lane width

needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="full-size shape, too slow without the JIT")

# (N, Cin, Cout, H, W, k, stride, (top, left, bottom, right))
CASES = [
    pytest.param((2, 64, 64, 56, 56, 3, 1, (1, 1, 1, 1)), marks=needs_jit, id="resnet_64to64_56x56_3x3s1"),
    pytest.param((1, 64, 128, 56, 56, 3, 2, (1, 1, 1, 1)), marks=needs_jit, id="resnet_64to128_3x3s2"),
    (2, 64, 128, 15, 15, 1, 2, (0, 0, 0, 0)),          # ResNet downsample 1x1 stride 2, odd size
    (1, 3, 64, 32, 30, 7, 2, (3, 3, 3, 3)),            # ResNet stem shape: 7x7 stride 2 pad 3
    (1, 20, 33, 9, 11, 3, 1, (1, 1, 1, 1)),            # odd channels: padded lanes in and out
    (3, 24, 40, 7, 7, 3, 1, (1, 1, 1, 1)),             # batch 3 at 7x7: micro-tiles across rows and images
    (1, 40, 36, 10, 10, 1, 1, (0, 0, 0, 0)),           # 1x1 stride 1 (no copy of the input)
    (2, 1, 8, 5, 6, 3, 1, (1, 1, 1, 1)),               # Cin 1: the short-lanes (stem) variant
    (1, 4, 20, 9, 8, 3, 2, (1, 1, 1, 1)),              # Cin 4: short lanes, all of them real
    (1, 5, 20, 9, 8, 3, 2, (1, 1, 1, 1)),              # Cin 5: all CB lanes again
    (1, 17, 18, 1, 1, 3, 1, (1, 1, 1, 1)),             # 1x1 image
    (2, 5, 9, 2, 3, 3, 1, (1, 1, 1, 1)),               # 2x3 image
    (1, 8, 24, 7, 9, 3, 2, (0, 1, 2, 2)),              # asymmetric pads, bottom/right bigger
    (1, 16, 16, 6, 5, 5, 1, (2, 2, 2, 2)),             # 5x5
    (1, 4, 16, 3, 3, 3, 1, (3, 3, 3, 3)),              # pads wider than the window: rows of bias only
    (1, 12, 20, 8, 10, 3, 2, (1, 0, 0, 1)),            # stride 2 with pad on one side only
]


def output_size(size, kernel_size, stride, pad_start, pad_end):
    return (size + pad_start + pad_end - kernel_size) // stride + 1


def run_engine(x, weight, bias, stride, pads, residual=None, clip=(-np.inf, np.inf), activation=None, **tiles):
    packed_w, packed_b = kernel.pack_conv_nchwc(weight, bias)
    k, (h, w) = weight.shape[2], x.shape[2:]
    ho = output_size(h, k, stride, pads[0], pads[2])
    wo = output_size(w, weight.shape[3], stride, pads[1], pads[3])
    out = np.full((x.shape[0], packed_w.shape[0], ho, wo, CB), np.nan, np.float32)
    extra = {} if activation is None else {"activation": activation}
    blocked_residual = None if residual is None else to_blocked(residual.astype(np.float32))
    kernel.conv_nchwc(to_blocked(x), packed_w, packed_b, out, stride, stride, pads[0], pads[1], clip[0], clip[1],
                      blocked_residual, **tiles, **extra)
    return from_blocked(out, weight.shape[0]), out


def assert_matches(got, ref, reduction, scale=None):
    """scale: max |value| before the clip (default max |ref|): the rounding is the sum's."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = float(np.abs(ref).max()) if scale is None else scale
    tolerance = 1e-6 * (1 + reduction / 100) * max(scale, 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= tolerance, f"max abs error {error:.3g} > tolerance {tolerance:.3g}"


def assert_padded_lanes_zero(blocked, channels):
    n, _, ho, wo, _ = blocked.shape
    lanes = blocked.transpose(0, 1, 4, 2, 3).reshape(n, -1, ho, wo)[:, channels:]
    assert (lanes == 0).all(), "padded channels must stay exactly 0"


def make(case, seed=0):
    n, cin, cout, h, w, k, stride, pads = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    return x, weight, bias


@pytest.mark.parametrize("case", CASES)
def test_conv_nchwc_matches_reference_with_padded_lanes_zero(case, threads):
    x, weight, bias = make(case)
    _, cin, cout, _, _, k, stride, pads = case
    got, blocked = run_engine(x, weight, bias, stride, pads, clip=(0.0, 6.0))
    unclipped = conv_epilogue(x, weight, bias, (stride, stride), pads)
    assert_matches(got, np.clip(unclipped, 0.0, 6.0), cin * k * k, scale=float(np.abs(unclipped).max()))
    assert_padded_lanes_zero(blocked, cout)


@pytest.mark.parametrize("in_place", [False, True], ids=["residual", "residual_is_out"])
def test_conv_nchwc_residual_then_relu(in_place, threads):
    case = (2, 32, 40, 9, 9, 3, 1, (1, 1, 1, 1))
    x, weight, bias = make(case, seed=1)
    residual = np.random.default_rng(2).standard_normal((2, 40, 9, 9)).astype(np.float32)
    ref = conv_epilogue(x, weight, bias, (1, 1), case[7], residual=residual, clip=(0.0, np.inf))
    scale = float(np.abs(conv_epilogue(x, weight, bias, (1, 1), case[7], residual=residual)).max())
    if in_place:
        packed_w, packed_b = kernel.pack_conv_nchwc(weight, bias)
        out = to_blocked(residual)
        kernel.conv_nchwc(to_blocked(x), packed_w, packed_b, out, 1, 1, 1, 1, 0.0, np.inf, out)
        got, blocked = from_blocked(out, 40), out
    else:
        got, blocked = run_engine(x, weight, bias, 1, case[7], residual=residual, clip=(0.0, np.inf))
    assert_matches(got, ref, 32 * 9, scale)
    assert_padded_lanes_zero(blocked, 40)


@pytest.mark.parametrize("activation, clip", [
    (("hardswish", 1.0 / 6.0, 0.5), (-np.inf, np.inf)),
    (("silu", 0.0, 0.0), (-np.inf, np.inf)),
    (("silu", 0.0, 0.0), (0.0, 6.0)),
    (("none", 0.0, 0.0), (-1.0, 1.0)),
], ids=["hardswish", "silu", "silu_relu6", "none_clip"])
def test_conv_nchwc_activation_epilogue_with_residual(activation, clip, threads):
    case = (2, 20, 24, 6, 7, 3, 2, (1, 1, 1, 1))
    x, weight, bias = make(case, seed=3)
    ho, wo = output_size(6, 3, 2, 1, 1), output_size(7, 3, 2, 1, 1)
    residual = np.random.default_rng(4).standard_normal((2, 24, ho, wo)).astype(np.float32)
    got, blocked = run_engine(x, weight, bias, 2, case[7], residual=residual, clip=clip, activation=activation)
    ref = conv_epilogue(x, weight, bias, (2, 2), case[7], residual=residual, activation=activation, clip=clip)
    assert_matches(got, ref, 20 * 9, float(np.abs(conv_epilogue(x, weight, bias, (2, 2), case[7], residual)).max()))
    assert_padded_lanes_zero(blocked, 24)


def test_conv_nchwc_work_splits_agree(threads):
    # the split only decides which work item computes which outputs (and so the micro-tile
    # shape: edge tiles with few accumulators sum the input channels in another order), so
    # results agree to rounding, not bit for bit
    case = (2, 48, 3 * CB + 5, 7, 9, 3, 1, (1, 1, 1, 1))
    x, weight, bias = make(case, seed=5)
    ref = conv_epilogue(x, weight, bias, (1, 1), case[7])
    results = []
    for pixels, channels in [(1, 16), (7, 32), (64, 48), (64, 64), (1000, 16 * CB), (13, 128)]:
        got, blocked = run_engine(x, weight, bias, 1, case[7], pixels=pixels, channels=channels)
        assert_matches(got, ref, 48 * 9)
        assert_padded_lanes_zero(blocked, case[2])
        results.append(got)
    for got in results[1:]:
        np.testing.assert_allclose(got, results[0], rtol=0, atol=1e-5 * float(np.abs(ref).max()))


def test_item_channels_divide_the_layer_into_equal_whole_items():
    for out_channels in (16, 64, 128, 256, 512, 3 * CB + 5, 112, 2048):
        cout_blocks = -(-out_channels // CB)
        for channels in range(16, 16 * 40, 16):
            got = kernel.item_channels(channels, out_channels)
            assert got % 16 == 0 and got >= channels
            if got != channels:     # rounded: to a divisor of the layer's blocks
                assert cout_blocks % (got // CB) == 0
            assert got == channels or all(  # the smallest such
                cout_blocks % b or b * CB % 16 for b in range(channels // CB, got // CB))
    # 48 channels (three blocks: a 7x3 micro-tile's width) on ResNet's 64..512-channel layers at 16 lanes
    if CB == 16:
        assert [kernel.item_channels(48, c) for c in (64, 128, 256, 512)] == [64] * 4
        assert kernel.item_channels(32, 128) == 32 and kernel.item_channels(48, 96) == 48
    else:
        assert [kernel.item_channels(16, c) for c in (64, 128, 256, 512)] == [16] * 4


def test_item_channels_of_a_strided_conv_are_at_least_the_strided_minimum_or_the_layer():
    least = kernel.STRIDED_MIN_CHANNELS
    for out_channels in (16, 64, 128, 256, 512, 3 * CB + 5, 2048):
        width = -(-out_channels // CB) * CB
        for channels in (16, 48, 64, 256):
            got = kernel.item_channels(channels, out_channels, 2)
            assert got >= min(max(channels, least), width)
            assert got == kernel.item_channels(max(channels, min(least, width)), out_channels)
    assert kernel.item_channels(48, 512, 2) == 128 and kernel.item_channels(48, 64, 2) == 64
    # a strided 1x1 with enough pixel tiles: STRIDED_1X1_CHANNELS, or the layer's width
    enough = kernel.STRIDED_1X1_PIXEL_TILES
    assert kernel.item_channels(48, 2048, 2, 1, enough) == kernel.STRIDED_1X1_CHANNELS
    assert kernel.item_channels(48, 128, 2, 1, enough) == 128
    assert kernel.item_channels(48, 2048, 2, 1, enough - 1) == least      # too few pixel tiles
    assert kernel.item_channels(48, 2048, 2, 9, enough) == least          # a 3x3
    assert kernel.item_channels(48, 2048, 1, 1, enough) == kernel.item_channels(48, 2048)  # stride 1


def test_pack_conv_nchwc_layout_and_zero_padding():
    cout, cin = CB + 2, CB + 3
    weight = np.arange(cout * cin * 3 * 2, dtype=np.float32).reshape(cout, cin, 3, 2)
    packed, packed_bias = kernel.pack_conv_nchwc(weight, np.ones(cout, np.float32))
    assert packed.shape == (2, 2, 3, 2, CB, CB) and packed.dtype == np.float32 and packed.flags.c_contiguous
    assert packed_bias.shape == (2, CB)
    assert packed[1, 1, 2, 1, 2, 1] == weight[CB + 1, CB + 2, 2, 1]
    assert packed[0, 0, 1, 0, CB - 1, 3] == weight[3, CB - 1, 1, 0]
    assert (packed[1, ..., 2:] == 0).all() and (packed[:, 1, :, :, 3:, :] == 0).all()
    assert (packed_bias[1, 2:] == 0).all() and (packed_bias[1, :2] == 1).all()
    assert (kernel.pack_conv_nchwc(weight, None)[1] == 0).all()
    rgb = np.arange(CB * 3 * 7 * 7, dtype=np.float32).reshape(CB, 3, 7, 7)   # Cin <= 4: 4 lanes packed
    packed = kernel.pack_conv_nchwc(rgb, None)[0]
    assert packed.shape == (1, 1, 7, 7, kernel.SHORT_LANES, CB)
    assert packed[0, 0, 6, 5, 2, CB - 1] == rgb[CB - 1, 2, 6, 5] and (packed[..., 3, :] == 0).all()
    with pytest.raises(ValueError, match="pack_conv_nchwc: weight"):
        kernel.pack_conv_nchwc(weight[0], None)
    with pytest.raises(ValueError, match="pack_conv_nchwc: bias"):
        kernel.pack_conv_nchwc(weight, np.ones(3, np.float32))


def test_conv_nchwc_flops_and_bytes():
    # ResNet-18's first 3x3: 64 -> 64 at 56x56: 231 MFLOP per image
    assert kernel.conv_nchwc_flops(1, 64, 64, 56, 56, 3, 3) == 2 * 64 * 64 * 56 * 56 * 9 == 231_211_008
    from engine.traffic import LEVELS, CacheBudget
    budget = CacheBudget(L1=48 * 1024, L2=2 * 1024 * 1024, L3=100 * 1024 * 1024, lanes=CB)
    moved = kernel.conv_nchwc_bytes(1, 64, 64, 56, 56, 56, 56, 3, 3, 1, budget)
    assert set(moved) == set(LEVELS)
    compulsory = (64 * 56 * 56 * 2 + 64 * (64 * 9 + 1)) * 4
    assert moved["DRAM"] == compulsory          # all fits the L3: everything once
    assert moved["L1"] > moved["L2"] >= moved["L3"] >= moved["DRAM"]


def _valid_args():
    return dict(x=np.zeros((2, 2, 8, 8, CB), np.float32), packed_weight=np.zeros((3, 2, 3, 3, CB, CB), np.float32),
                packed_bias=np.zeros((3, CB), np.float32), out=np.zeros((2, 3, 4, 4, CB), np.float32),
                stride_h=2, stride_w=2, pad_top=1, pad_left=1, clip_min=0.0, clip_max=6.0)


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((2, 2, 8, 8), np.float32)), "x must have shape"),
    (dict(x=np.zeros((2, 2, 8, 8, CB), np.float64)), "x must be float32, got float64"),
    (dict(packed_weight=np.zeros((3, 1, 3, 3, CB, CB), np.float32)), "packed_weight must have shape"),
    (dict(packed_weight=np.zeros((3, 2, 3, 3, 4, CB), np.float32)), "packed_weight must have 16 input lanes"
     if CB == 16 else "packed_weight must have 8 input lanes"),
    (dict(packed_bias=np.zeros((2, CB), np.float32)), "packed_bias must have shape"),
    (dict(out=np.zeros((2, 2, 4, 4, CB), np.float32)), "out must have shape"),
    (dict(out=np.zeros((2, 3, 3, 4, CB), np.float32)), "out height must be >= 4"),
    (dict(residual=np.zeros((2, 3, 4, 5, CB), np.float32)), "residual must have shape"),
    (dict(stride_h=0), "stride_h must be an int >= 1, got 0"),
    (dict(stride_w=1.0), "stride_w must be an int >= 1, got 1.0"),
    (dict(pad_top=-1), "pad_top must be an int >= 0, got -1"),
    (dict(pad_left=True), "pad_left must be an int >= 0, got True"),
    (dict(clip_min=1.0), "clip_min <= 0 <= clip_max"),
    (dict(pixels=0), "pixels must be an int >= 1, got 0"),
    (dict(channels=24), "channels must be a positive multiple of 16, got 24"),
    (dict(channels=None), "channels must be an int >= 1"),
    (dict(activation=("sigmoid", 0.0, 0.0)), "activation 'sigmoid' is not 0 at 0"),
    (dict(activation=("gelu", 0.0, 0.0)), "activation 'gelu' is not one of"),
    (dict(activation="relu"), "activation must be (name, alpha, beta)"),
])
def test_conv_nchwc_rejects_bad_arguments_naming_them(change, message):
    args = _valid_args()
    args.update(change)
    with pytest.raises(ValueError, match="conv_nchwc") as error:
        kernel.conv_nchwc(**args)
    assert message in str(error.value)


def test_conv_nchwc_rejects_overlapping_operands():
    args = _valid_args()
    x, out = args["x"], args["out"]
    shared = np.zeros(x.size + out.size, np.float32)
    overlapping_out = shared[x.size // 2:x.size // 2 + out.size].reshape(out.shape)
    with pytest.raises(ValueError, match="out must not overlap x"):
        kernel.conv_nchwc(**{**args, "x": shared[:x.size].reshape(x.shape), "out": overlapping_out})
    big = np.zeros((4, 3, 4, 4, CB), np.float32)
    with pytest.raises(ValueError, match="residual must be out itself or not overlap out"):
        kernel.conv_nchwc(**{**args, "out": big[:2], "residual": big[1:3]})
