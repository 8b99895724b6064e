"""Activations fused into the kernel epilogues (engine.kernels.activation): every conv kernel
with hardswish and silu (the zero-preserving ones), the linear kernel with all four, with and
without residual where the kernel has one, against the numpy references (tests/naive) with
the activation applied after bias and residual and before the clip.

Tolerance, per element: |got - ref| <= 1e-5 * |ref| + 1e-6 * (K * max|x| * max|w| + max|b|
+ max|residual|), K the reduction length (taps x input channels): float32 sums of K products
(rounding ~ K * 6e-8 of the largest product; 1e-6 leaves a margin of more than 10) and an
activation good to ~2 ulp (its derivative is at most 1.5). The fused block compounds three
stages: max |got - ref| <= 2e-5 * max |ref| (as test_fused_block, twice the margin).
Padded output lanes must be exactly 0 and outputs start as NaN (an element not written fails).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import engine
from conftest import assert_close_to_reference
from engine.kernels import depthwise, direct_conv, fused_block, linear, pointwise
from engine.kernels.activation import HARDSWISH_DEFAULT, NO_ACTIVATION
from engine.kernels.layout import CB, from_blocked, to_blocked
from tests.naive import depthwise as naive_depthwise
from tests.naive import direct_conv as naive_direct
from tests.naive import linear as naive_linear
from tests.naive.activation import activate as activate_reference
from tests.naive.fused_block import NONE, inverted_residual_reference
from tests.naive.pointwise import pointwise_reference

pytestmark = pytest.mark.lanes     # layouts and the micro-tiles depend on the lane width

SILU = ("silu", 0.0, 0.0)
HARDSWISH_OTHER = ("hardswish", 0.25, 0.375)        # not ONNX's constants: alpha and beta reach the kernel
CONV_ACTIVATIONS = [HARDSWISH_DEFAULT, SILU, HARDSWISH_OTHER]
LINEAR_ACTIVATIONS = CONV_ACTIVATIONS + [("hardsigmoid", 0.2, 0.5), ("sigmoid", 0.0, 0.0)]
# no clip, and a clip that cuts the activation's output (hardswish's minimum is -0.375):
# the clip comes after the activation
CLIPS = [(-math.inf, math.inf), (-0.25, 3.0)]
THREADS = [t for t in (1, 2) if t <= engine.available_cores()]


def activation_id(activation):
    return "{}({:g},{:g})".format(*activation)


def clip_id(clip):
    return "noclip" if clip[0] == -math.inf else f"clip{clip[0]:g}..{clip[1]:g}"


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}thr")
def threads(request):
    previous = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(previous)


def assert_matches(got, ref, reduction, x, w, b=None, residual=None):
    """The per-element tolerance of the module docstring."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    largest = lambda a: 0.0 if a is None else float(np.abs(a).max())  # noqa: E731
    atol = 1e-6 * (reduction * largest(x) * largest(w) + largest(b) + largest(residual))
    error = np.abs(got.astype(np.float64) - ref)
    bound = 1e-5 * np.abs(ref) + atol
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert (error <= bound).all(), \
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} at {worst} (ref {ref[worst]:.6g})"


def padded_lanes(blocked, channels):
    """The padded channels (channels..Cb*CB) of an NCHWc array, as (N, padded, H, W)."""
    n, _, h, w, _ = blocked.shape
    return blocked.transpose(0, 1, 4, 2, 3).reshape(n, -1, h, w)[:, channels:]


# ---------------------------------------------------------------------------- pointwise

# (N, Cin, Cout, H, W, pointwise_pixels, pointwise_channels)
POINTWISE_CASES = [
    (1, 5, 7, 1, 1, 64, 16),           # a 1x1 image, channels not a multiple of CB: one 1x1 micro-tile
    (2, 24, 40, 5, 7, 7, 16),          # 35 pixels: edge micro-tiles in rows and blocks, small tiles
    (1, 32, 100, 8, 8, 64, 48),        # one pixel tile: full tiles prefetch the next pair's weights
    (3, 17, 33, 3, 3, 64, 3 * 16),     # batch 3, 9-pixel images
]


@pytest.mark.parametrize("clip", CLIPS, ids=clip_id)
@pytest.mark.parametrize("with_residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("activation", CONV_ACTIVATIONS, ids=activation_id)
@pytest.mark.parametrize("case", POINTWISE_CASES, ids=lambda c: "N{}_{}to{}_{}x{}_t{}x{}".format(*c))
def test_pointwise_activation_epilogue_matches_reference(case, activation, with_residual, clip, threads):
    n, cin, cout, h, w, pixels, channels = case
    rng = np.random.default_rng(cin * cout)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, cin, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    residual = rng.standard_normal((n, cout, h, w)).astype(np.float32) * 3 if with_residual else None
    packed_w, packed_b = pointwise.pack_pointwise(weight, bias)
    out = np.full((n, packed_w.shape[0], h, w, CB), np.nan, np.float32)
    pointwise.pointwise_conv(to_blocked(x), packed_w, packed_b, out, *clip,
                             None if residual is None else to_blocked(residual), pixels, channels,
                             activation=activation)
    reference = pointwise_reference(x, weight, bias, *clip, residual, activation)
    assert_matches(from_blocked(out, cout), reference, cin, x, weight, bias, residual)
    assert (padded_lanes(out, cout) == 0).all(), "padded channels must stay exactly 0"


needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the LLVM-IR micro-kernel itself (NUMBA_DISABLE_JIT=1)")


@needs_jit
@pytest.mark.parametrize("lanes", sorted(pointwise.MICRO_TILE))
def test_micro_kernel_activation_epilogue_for_every_tile_shape_at_8_and_16_lanes(lanes):
    """The 1x1 micro-kernel's IR epilogue (one loop shared by all tile shapes) at both vector
    widths: every (pixels, blocks) shape, hardswish and silu, with and without residual and
    weight prefetch (the full tile's own code path), the clip after the activation."""
    from engine.kernels.activation import CODES

    max_rows, max_blocks = pointwise.MICRO_TILE[lanes]
    tile = pointwise._tile_intrinsic(lanes, max_rows, max_blocks)

    @numba.njit
    def one_tile(rows, blocks, x, cin_blocks, w, bias, out, residual, has_residual, act, alpha, beta, w_step):
        # x (cin_blocks, rows, lanes), w (blocks, cin_blocks*lanes, lanes), out (blocks, rows, lanes)
        tile(rows, blocks, x, 0, rows * lanes, 0, w, 0, cin_blocks * lanes * lanes, cin_blocks,
             bias, 0, out, 0, rows * lanes, residual, has_residual, np.float32(-0.25), np.float32(3.0),
             act, alpha, beta, 16, w_step)

    rng = np.random.default_rng(6)
    cin_blocks = 2
    for rows in range(1, max_rows + 1):
        for blocks in range(1, max_blocks + 1):
            x_rows = rng.standard_normal((cin_blocks * lanes, rows)).astype(np.float32)
            weight = (rng.standard_normal((blocks * lanes, cin_blocks * lanes)) / 3).astype(np.float32)
            bias = rng.standard_normal(blocks * lanes).astype(np.float32)
            residual = rng.standard_normal((blocks, rows, lanes)).astype(np.float32)
            x = np.ascontiguousarray(x_rows.reshape(cin_blocks, lanes, rows).transpose(0, 2, 1))
            w = np.ascontiguousarray(weight.reshape(blocks, lanes, -1).transpose(0, 2, 1))
            for activation in (HARDSWISH_OTHER, SILU):
                for has_residual, w_step in ((False, 0), (True, 0), (False, 32), (True, 32)):
                    out = np.full((blocks, rows, lanes), np.nan, np.float32)
                    one_tile(rows, blocks, x.ravel(), cin_blocks, w.ravel(), bias, out.reshape(-1),
                             residual.reshape(-1), has_residual, CODES[activation[0]], np.float32(activation[1]),
                             np.float32(activation[2]), w_step)
                    reference = weight.astype(np.float64) @ x_rows + bias[:, None]
                    if has_residual:
                        reference += residual.transpose(0, 2, 1).reshape(blocks * lanes, rows)
                    reference = np.clip(activate_reference(reference, activation), -0.25, 3.0)
                    got = out.transpose(0, 2, 1).reshape(blocks * lanes, rows)
                    assert_matches(got, reference, cin_blocks * lanes, x_rows, weight, bias, residual)


def test_pointwise_activation_with_the_residual_in_out():
    """residual may be `out` itself (the in-place add): the activation applies to the sum."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 4, 5)).astype(np.float32)
    weight = rng.standard_normal((20, 16)).astype(np.float32)
    residual = rng.standard_normal((1, 20, 4, 5)).astype(np.float32)
    packed_w, packed_b = pointwise.pack_pointwise(weight, None)
    out = to_blocked(residual)
    pointwise.pointwise_conv(to_blocked(x), packed_w, packed_b, out, -math.inf, math.inf, out, activation=SILU)
    reference = pointwise_reference(x, weight, None, -math.inf, math.inf, residual, SILU)
    assert_matches(from_blocked(out, 20), reference, 16, x, weight, None, residual)


# ---------------------------------------------------------------------------- depthwise

# (N, C, H, W, (kh, kw), (sh, sw), (top, left, bottom, right), depthwise_rows)
DEPTHWISE_CASES = [
    (1, 3, 1, 1, (3, 3), (1, 1), (1, 1, 1, 1), 16),     # 1x1 image: border columns only
    (2, 17, 6, 7, (3, 3), (1, 1), (1, 1, 1, 1), 4),     # 3x3 fast path, interior and border, odd channels
    (1, 33, 9, 9, (3, 3), (2, 2), (1, 1, 1, 1), 1),     # stride 2
    (3, 5, 7, 9, (5, 5), (1, 1), (2, 2, 2, 2), 16),     # 5x5: the generic path
    (1, 24, 9, 9, (5, 5), (2, 2), (2, 2, 2, 2), 3),     # 5x5 stride 2
]


@pytest.mark.parametrize("clip", CLIPS, ids=clip_id)
@pytest.mark.parametrize("activation", CONV_ACTIVATIONS, ids=activation_id)
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: "N{}_C{}_{}x{}_k{}_s{}".format(c[0], c[1], c[2], c[3],
                                                                                               c[4][0], c[5][0]))
def test_depthwise_activation_epilogue_matches_reference(case, activation, clip, threads):
    n, c, h, w, kernel, strides, pads, rows = case
    rng = np.random.default_rng(c * h)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32) * 2
    weight = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    packed_w, packed_b = depthwise.pack_depthwise(weight, bias)
    ho = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    out = np.full((n, packed_w.shape[0], ho, wo, CB), np.nan, np.float32)
    depthwise.depthwise_conv(to_blocked(x), packed_w, packed_b, out, *strides, pads[0], pads[1], *clip, rows,
                             activation=activation)
    reference = naive_depthwise.depthwise_conv(x, weight, bias, strides, pads, clip, activation)
    assert_matches(from_blocked(out, c), reference, kernel[0] * kernel[1], x, weight, bias)
    assert (padded_lanes(out, c) == 0).all(), "padded channels must stay exactly 0"


# ---------------------------------------------------------------------------- direct (dense) conv

# (N, Cin, Cout, H, W, (kh, kw), (sh, sw), (top, left, bottom, right))
DIRECT_CASES = [
    (1, 3, 32, 17, 19, (3, 3), (2, 2), (1, 1, 1, 1)),   # the MobileNet stem (pairs of blocks at 16 lanes)
    (2, 3, 72, 9, 11, (3, 3), (1, 1), (1, 1, 1, 1)),    # groups of four blocks and a partial group
    (1, 2, 20, 1, 1, (3, 3), (1, 1), (1, 1, 1, 1)),     # a 1x1 image: border pixels only, odd channels
    (1, 4, 16, 10, 13, (5, 5), (2, 1), (2, 2, 1, 2)),   # 5x5, different strides per axis
]


@pytest.mark.parametrize("clip", CLIPS, ids=clip_id)
@pytest.mark.parametrize("activation", CONV_ACTIVATIONS, ids=activation_id)
@pytest.mark.parametrize("case", DIRECT_CASES,
                         ids=lambda c: "N{}_{}to{}_{}x{}_k{}_s{}".format(*c[:5], c[5][0], c[6][0]))
def test_direct_conv_activation_epilogue_matches_reference(case, activation, clip, threads):
    n, cin, cout, h, w, kernel, strides, pads = case
    rng = np.random.default_rng(cout + h)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, cin, *kernel)).astype(np.float32) * 0.5
    bias = rng.standard_normal(cout).astype(np.float32)
    packed_w, packed_b = direct_conv.pack_direct(weight, bias)
    ho = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    out = np.full((n, packed_w.shape[0], ho, wo, CB), np.nan, np.float32)
    direct_conv.direct_conv(x, packed_w, packed_b, out, *strides, pads[0], pads[1], 1, 1, *clip,
                            activation=activation)
    reference = naive_direct.conv2d(x, weight, bias, strides, pads, (1, 1), clip, activation)
    assert_matches(from_blocked(out, cout), reference, cin * kernel[0] * kernel[1], x, weight, bias)
    assert (padded_lanes(out, cout) == 0).all(), "padded channels must stay exactly 0"


# ---------------------------------------------------------------------------- fused block

# (cin, hidden, cout, H, W, stride, has_expand, has_residual)
BLOCK_SHAPES = [
    (24, 144, 24, 8, 7, 1, True, True),      # a residual block
    (16, 96, 24, 11, 9, 2, True, False),     # stride 2, odd sizes
    (32, 32, 16, 7, 5, 1, False, False),     # no expand conv
    (5, 30, 7, 6, 6, 1, True, True),         # channels not a multiple of CB
    (8, 48, 8, 1, 1, 1, True, True),         # a 1x1 image
]
# (expand, depthwise, project) activations: every stage's, and mixes
BLOCK_ACTIVATIONS = [(HARDSWISH_DEFAULT,) * 3, (SILU,) * 3, (SILU, HARDSWISH_OTHER, NO_ACTIVATION),
                     (NO_ACTIVATION, NO_ACTIVATION, SILU)]


@pytest.mark.parametrize("activations", BLOCK_ACTIVATIONS, ids=lambda a: "-".join(x[0] for x in a))
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=lambda s: "x".join(map(str, s[:6])) + f"-e{int(s[6])}r{int(s[7])}")
def test_fused_block_activation_epilogues_match_the_unfused_reference(shape, activations, threads):
    cin, hidden, cout, h, w, stride, has_expand, has_residual = shape
    rng = np.random.default_rng(sum(shape))
    scale = lambda fan_in: 2.0 / math.sqrt(fan_in)  # noqa: E731
    expand = ((rng.standard_normal((hidden, cin, 1, 1)) * scale(cin)).astype(np.float32),
              rng.standard_normal(hidden).astype(np.float32)) if has_expand else None
    dw = ((rng.standard_normal((hidden, 1, 3, 3)) / 2).astype(np.float32),
          rng.standard_normal(hidden).astype(np.float32))
    project = ((rng.standard_normal((cout, hidden, 1, 1)) * scale(hidden)).astype(np.float32),
               rng.standard_normal(cout).astype(np.float32))
    x = (rng.standard_normal((2, cin, h, w)) * 2).astype(np.float32)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    residual = rng.standard_normal((2, cout, ho, wo)).astype(np.float32) if has_residual else None
    clips = ((-math.inf, math.inf), (-math.inf, math.inf), (-0.25, 3.0))
    reference = inverted_residual_reference(x, expand, dw, project, stride, residual, clips, activations)
    for block_rows in sorted({1, 3, ho}):
        out = np.full((2, -(-cout // CB), ho, wo, CB), np.nan, np.float32)
        scratch = fused_block.make_scratch(numba.get_num_threads(), hidden, w, wo, min(block_rows, ho), stride)
        fused_block.fused_block(to_blocked(x), None if expand is None else pointwise.pack_pointwise(*expand),
                                depthwise.pack_depthwise(*dw), pointwise.pack_pointwise(*project), out,
                                None if residual is None else to_blocked(residual), stride, *clips, block_rows,
                                *scratch, expand_activation=activations[0], depthwise_activation=activations[1],
                                project_activation=activations[2])
        assert_close_to_reference(from_blocked(out, cout), reference.astype(np.float32), relative=2e-5)
        assert (padded_lanes(out, cout) == 0).all(), "padded channels must stay exactly 0"


def test_fused_block_stages_give_the_unfused_kernels_results():
    """With activations, the fused block's stages are the unfused kernels' epilogues: a block
    with one band and one thread equals pointwise -> depthwise -> pointwise bit for bit."""
    rng = np.random.default_rng(7)
    cin, hidden, cout, h, w = 8, 24, 8, 5, 6
    expand = (rng.standard_normal((hidden, cin)).astype(np.float32), rng.standard_normal(hidden).astype(np.float32))
    dw = (rng.standard_normal((hidden, 1, 3, 3)).astype(np.float32), rng.standard_normal(hidden).astype(np.float32))
    project = (rng.standard_normal((cout, hidden)).astype(np.float32), rng.standard_normal(cout).astype(np.float32))
    x = to_blocked(rng.standard_normal((1, cin, h, w)).astype(np.float32))
    residual = to_blocked(rng.standard_normal((1, cout, h, w)).astype(np.float32))
    acts = dict(expand_activation=SILU, depthwise_activation=HARDSWISH_DEFAULT, project_activation=SILU)
    packed = [pointwise.pack_pointwise(*expand), depthwise.pack_depthwise(*dw), pointwise.pack_pointwise(*project)]
    none = (-math.inf, math.inf)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fused = np.full((1, 1, h, w, CB), np.nan, np.float32)
        fused_block.fused_block(x, *packed, fused, residual, 1, none, none, none, h,
                                *fused_block.make_scratch(1, hidden, w, w, h, 1), **acts)
        hidden_out = np.full((1, packed[1][0].shape[0], h, w, CB), np.nan, np.float32)
        pointwise.pointwise_conv(x, *packed[0], hidden_out, *none, activation=SILU)
        dw_out = np.full_like(hidden_out, np.nan)
        depthwise.depthwise_conv(hidden_out, *packed[1], dw_out, 1, 1, 1, 1, *none, activation=HARDSWISH_DEFAULT)
        unfused = np.full_like(fused, np.nan)
        pointwise.pointwise_conv(dw_out, *packed[2], unfused, *none, residual, activation=SILU)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(fused, unfused)


# ---------------------------------------------------------------------------- linear

# (N, K, K_padded, M)
LINEAR_CASES = [(1, 21, 24, 5), (3, 40, 48, linear.TILE + 2), (2, 1, 8, 1)]


@pytest.mark.parametrize("activation", LINEAR_ACTIVATIONS, ids=activation_id)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: "N{}_K{}pad{}_M{}".format(*c))
def test_linear_activation_epilogue_matches_reference(case, activation, threads):
    n, k, k_padded, m = case
    rng = np.random.default_rng(k + m)
    x = np.zeros((n, k_padded), np.float32)
    x[:, :k] = rng.standard_normal((n, k))
    weight = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    packed_w, packed_b = linear.pack_linear(weight, bias, k_padded)
    out = np.full((n, m), np.nan, np.float32)
    linear.linear(x, packed_w, packed_b, out, activation=activation)
    assert_matches(out, naive_linear.linear(x[:, :k], weight, bias, activation), k, x, weight, bias)


# ---------------------------------------------------------------------------- no activation, bad activations

def test_no_activation_keyword_gives_the_call_without_it_bit_for_bit():
    """activation=NO_ACTIVATION (or ("none", 0, 0)) is exactly the call without the keyword."""
    rng = np.random.default_rng(11)
    x = to_blocked(rng.standard_normal((1, 20, 6, 5)).astype(np.float32))
    packed = pointwise.pack_pointwise(rng.standard_normal((24, 20)).astype(np.float32),
                                      rng.standard_normal(24).astype(np.float32))
    outs = []
    for keyword in ({}, {"activation": NO_ACTIVATION}, {"activation": ("none", 0, 0)}):
        out = np.full((1, packed[0].shape[0], 6, 5, CB), np.nan, np.float32)
        pointwise.pointwise_conv(x, *packed, out, 0.0, 6.0, **keyword)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def _conv_calls():
    """(function name, call(activation)) for every conv wrapper, on valid small arrays."""
    x = np.zeros((1, 1, 3, 3, CB), np.float32)
    pw = pointwise.pack_pointwise(np.ones((4, 3), np.float32), None)
    dw = depthwise.pack_depthwise(np.ones((3, 1, 3, 3), np.float32), None)
    dc = direct_conv.pack_direct(np.ones((4, 2, 3, 3), np.float32), None)
    out = np.zeros((1, 1, 3, 3, CB), np.float32)
    scratch = fused_block.make_scratch(1, 3, 3, 3, 3, 1)
    return [
        ("pointwise_conv", lambda a: pointwise.pointwise_conv(x, *pw, out, 0.0, 6.0, activation=a)),
        ("depthwise_conv", lambda a: depthwise.depthwise_conv(x, *dw, out, 1, 1, 1, 1, 0.0, 6.0, activation=a)),
        ("direct_conv", lambda a: direct_conv.direct_conv(np.zeros((1, 2, 3, 3), np.float32), *dc, out, 1, 1, 1, 1,
                                                          1, 1, 0.0, 6.0, activation=a)),
        ("fused_block expand_activation", lambda a: fused_block.fused_block(
            x, pw, dw, pointwise.pack_pointwise(np.ones((4, 3), np.float32), None), out, None, 1, NONE, NONE, NONE,
            3, *scratch, expand_activation=a)),
        ("fused_block depthwise_activation", lambda a: fused_block.fused_block(
            x, pw, dw, pointwise.pack_pointwise(np.ones((4, 3), np.float32), None), out, None, 1, NONE, NONE, NONE,
            3, *scratch, depthwise_activation=a)),
        ("fused_block project_activation", lambda a: fused_block.fused_block(
            x, pw, dw, pointwise.pack_pointwise(np.ones((4, 3), np.float32), None), out, None, 1, NONE, NONE, NONE,
            3, *scratch, project_activation=a)),
    ]


BAD_CONV_ACTIVATIONS = [
    (("hardsigmoid", 0.2, 0.5), "'hardsigmoid' is not 0 at 0"),
    (("sigmoid", 0.0, 0.0), "'sigmoid' is not 0 at 0"),
    (("relu", 0.0, 0.0), "activation 'relu' is not one of"),
    (("hardswish", math.nan, 0.5), "'hardswish' needs finite alpha and beta"),
    (("hardswish", 1 / 6, math.inf), "'hardswish' needs finite alpha and beta"),
    (("hardswish", 1e39, 0.5), "within float32's range"),
    ("silu", "must be (name, alpha, beta)"),
    (None, "must be (name, alpha, beta)"),
]


@pytest.mark.parametrize("bad, message", BAD_CONV_ACTIVATIONS, ids=lambda v: repr(v)[:24])
def test_conv_epilogues_refuse_activations_naming_function_and_activation(bad, message):
    for function, call in _conv_calls():
        with pytest.raises(ValueError) as error:
            call(bad)
        assert str(error.value).startswith(f"{function}: "), (function, str(error.value))
        assert message in str(error.value), (function, str(error.value))


@pytest.mark.parametrize("bad, message", BAD_CONV_ACTIVATIONS[2:], ids=lambda v: repr(v)[:24])
def test_linear_refuses_bad_activations_naming_it(bad, message):
    x = np.zeros((1, 8), np.float32)
    packed_w, packed_b = linear.pack_linear(np.ones((5, 8), np.float32), None, 8)
    with pytest.raises(ValueError) as error:
        linear.linear(x, packed_w, packed_b, np.zeros((1, 5), np.float32), activation=bad)
    assert str(error.value).startswith("linear: ") and message in str(error.value), str(error.value)
