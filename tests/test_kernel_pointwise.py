"""The pointwise (1x1) convolution kernel against the plain numpy reference.

Tolerance: |got - ref| <= 1e-5 * |ref| + 1e-5 * max(1, max |ref|) (float32 sums of at most a
few dozen products, compared with a float64 reference). Padded output lanes must be exactly 0
and every output element must be written (outputs start as NaN).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels.layout import CB, channel_blocks, from_blocked, to_blocked
from engine.kernels.pointwise import (MICRO_TILE, _pointwise_kernel, _tile_intrinsic, pack_pointwise,
                                      pointwise_conv, pointwise_flops)
from tests.naive.pointwise import pointwise_reference

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

RELU6 = (0.0, 6.0)
RELU = (0.0, np.inf)
NONE = (-np.inf, np.inf)

needs_jit = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled-code property (NUMBA_DISABLE_JIT=1)")


@pytest.fixture
def threads():
    """Set numba's thread count for one test and restore it afterwards."""
    before = numba.get_num_threads()
    yield lambda n: numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(before)


def make_case(batch, cin, cout, height, width, with_residual, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, cin, height, width), dtype=np.float32)
    weight = rng.standard_normal((cout, cin, 1, 1), dtype=np.float32)
    bias = rng.standard_normal(cout, dtype=np.float32)
    residual = rng.standard_normal((batch, cout, height, width), dtype=np.float32) if with_residual else None
    return x, weight, bias, residual


def run_blocked(x, weight, bias, residual, clip, pointwise_pixels, pointwise_channels, residual_in_out=False):
    packed_weight, packed_bias = pack_pointwise(weight, bias)
    batch, _, height, width = x.shape
    out = np.full((batch, packed_weight.shape[0], height, width, CB), np.nan, dtype=np.float32)
    blocked_residual = None if residual is None else to_blocked(residual)
    if residual_in_out:
        out[...] = blocked_residual
        blocked_residual = out
    pointwise_conv(to_blocked(x), packed_weight, packed_bias, out, clip[0], clip[1],
                   blocked_residual, pointwise_pixels, pointwise_channels)
    return out


def assert_matches_reference(out, x, weight, bias, residual, clip):
    cout = weight.shape[0]
    reference = pointwise_reference(x, weight, bias, clip[0], clip[1], residual)
    got = from_blocked(out, cout)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(reference).max()))
    # padded lanes of the last output block are exactly zero
    assert np.all(out[:, -1, :, :, cout - (channel_blocks(cout) - 1) * CB:] == 0.0)


# (batch, Cin, Cout, H, W, residual, clip, threads, pointwise_pixels, pointwise_channels)
CASES = [
    (1, 3, 1, 1, 1, False, RELU6, 1, 1, 16),
    (1, 5, 7, 3, 5, True, NONE, 2, 1, 16),
    (3, 17, 24, 7, 7, True, RELU6, 2, 7, 16),
    (3, 24, 33, 13, 13, False, RELU, 1, 64, 64),
    (1, 24, 33, 13, 13, True, RELU6, 2, 10_000, 4096),
    (3, 17, 7, 3, 5, False, NONE, 2, 5, 32),
    (1, 8, 16, 7, 7, True, RELU, 1, 6, 16),
    (3, 33, 40, 1, 1, True, RELU6, 2, 2, 48),
    (1, 16, 24, 13, 13, False, RELU6, 2, 13, 16),
    (3, 5, 33, 7, 7, False, NONE, 1, 48, 32),
    (1, 40, 48, 3, 5, True, NONE, 2, 4, 32),
    (3, 3, 17, 13, 13, True, RELU, 2, 200, 64),
    (2, 130, 72, 9, 9, True, NONE, 2, 30, 32),   # long input-channel loop, full 6x2 tiles
]


@pytest.mark.parametrize("batch,cin,cout,height,width,with_residual,clip,n_threads,pixels,channels", CASES)
def test_matches_numpy_reference_on_odd_shapes_tiles_and_threads(
        threads, batch, cin, cout, height, width, with_residual, clip, n_threads, pixels, channels):
    threads(n_threads)
    x, weight, bias, residual = make_case(batch, cin, cout, height, width, with_residual)
    out = run_blocked(x, weight, bias, residual, clip, pixels, channels)
    assert_matches_reference(out, x, weight, bias, residual, clip)


@pytest.mark.parametrize("pixels,channels", [(1, 16), (5, 16), (6, 32), (12, 48), (49, 64), (64, 64), (4096, 4096)])
def test_every_tile_setting_gives_the_same_result_as_the_reference(threads, pixels, channels):
    threads(2)
    x, weight, bias, residual = make_case(2, 19, 52, 7, 7, True, seed=1)
    out = run_blocked(x, weight, bias, residual, RELU6, pixels, channels)
    assert_matches_reference(out, x, weight, bias, residual, RELU6)


def test_residual_may_be_the_output_array_itself(threads):
    threads(2)
    x, weight, bias, residual = make_case(2, 24, 40, 5, 7, True, seed=2)
    out = run_blocked(x, weight, bias, residual, NONE, 7, 16, residual_in_out=True)
    assert_matches_reference(out, x, weight, bias, residual, NONE)


def test_bias_none_means_zero_bias_and_two_dimensional_weight_is_accepted():
    x, weight, _, _ = make_case(1, 9, 11, 3, 3, False, seed=3)
    out = run_blocked(x, weight[:, :, 0, 0], None, None, NONE, 64, 64)
    assert_matches_reference(out, x, weight, None, None, NONE)


@needs_jit
def test_changing_tiles_threads_or_residual_never_recompiles(threads):
    x, weight, bias, residual = make_case(1, 16, 16, 5, 5, True)
    for n_threads, pixels, channels, use_residual in [
            (1, 1, 16, True), (2, 64, 64, False), (2, 3, 32, True), (1, 999, 4096, False)]:
        threads(n_threads)
        run_blocked(x, weight, bias, residual if use_residual else None, RELU6, pixels, channels)
    assert len(_pointwise_kernel.signatures) == 1


@needs_jit
@pytest.mark.parametrize("lanes", sorted(MICRO_TILE))
def test_micro_kernel_is_right_for_every_tile_shape_at_8_and_16_lanes(lanes):
    """Both lane widths' micro-kernels (16 = AVX-512, run here as pairs of AVX2 vectors),
    every (pixels, blocks) shape the driver can ask for, with and without residual, with and
    without a weight prefetch (its own code path for full tiles; it must not change a value)."""
    max_rows, max_blocks = MICRO_TILE[lanes]
    tile = _tile_intrinsic(lanes, max_rows, max_blocks)

    @numba.njit
    def one_tile(rows, blocks, x, cin_blocks, w, bias, out, residual, has_residual, low, high, w_step):
        # x (cin_blocks, rows, lanes), w (blocks, cin_blocks*lanes, lanes), out (blocks, rows, lanes)
        tile(rows, blocks, x, 0, rows * lanes, 0, w, 0, cin_blocks * lanes * lanes, cin_blocks,
             bias, 0, out, 0, rows * lanes, residual, has_residual, low, high, 0, np.float32(0), np.float32(0),
             16, w_step)

    rng = np.random.default_rng(5)
    cin_blocks = 2
    for rows in range(1, max_rows + 1):
        for blocks in range(1, max_blocks + 1):
            x_rows = rng.standard_normal((cin_blocks * lanes, rows)).astype(np.float32)     # (Cin, pixels)
            weight = rng.standard_normal((blocks * lanes, cin_blocks * lanes)).astype(np.float32)
            bias = rng.standard_normal(blocks * lanes).astype(np.float32)
            residual = rng.standard_normal((blocks, rows, lanes)).astype(np.float32)
            x = np.ascontiguousarray(x_rows.reshape(cin_blocks, lanes, rows).transpose(0, 2, 1))
            w = np.ascontiguousarray(weight.reshape(blocks, lanes, -1).transpose(0, 2, 1))
            for has_residual, w_step in ((False, 0), (True, 0), (False, 32), (True, 32)):
                out = np.full((blocks, rows, lanes), np.nan, np.float32)
                one_tile(rows, blocks, x.ravel(), cin_blocks, w.ravel(), bias, out.reshape(-1),
                         residual.reshape(-1), has_residual, np.float32(-1.0), np.float32(2.0), w_step)
                reference = weight.astype(np.float64) @ x_rows + bias[:, None]
                if has_residual:
                    reference += residual.transpose(0, 2, 1).reshape(blocks * lanes, rows)
                reference = np.clip(reference, -1.0, 2.0)
                got = out.transpose(0, 2, 1).reshape(blocks * lanes, rows)
                np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * 2.0,
                                           err_msg=f"{rows} x {blocks} tile, residual {has_residual}, prefetch step {w_step}")


def test_pack_pointwise_layout_is_block_input_lane_with_zero_padding():
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((11, 5, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(11).astype(np.float32)
    packed_weight, packed_bias = pack_pointwise(weight, bias)
    cout_blocks = channel_blocks(11)
    assert packed_weight.shape == (cout_blocks, channel_blocks(5) * CB, CB)
    assert packed_bias.shape == (cout_blocks, CB)
    assert packed_weight.dtype == packed_bias.dtype == np.float32
    for o in range(cout_blocks * CB):
        for c in range(channel_blocks(5) * CB):
            expected = weight[o, c, 0, 0] if o < 11 and c < 5 else 0.0
            assert packed_weight[o // CB, c, o % CB] == expected
        assert packed_bias[o // CB, o % CB] == (bias[o] if o < 11 else 0.0)


def test_pointwise_flops_counts_two_per_multiply_accumulate_on_true_channels():
    assert pointwise_flops(1, 32, 16, 112, 112) == 2 * 112 * 112 * 32 * 16
    assert pointwise_flops(3, 17, 7, 3, 5) == 2 * 3 * 3 * 5 * 17 * 7


@pytest.mark.parametrize("threads_", [1, 2])
def test_prefetching_a_later_layers_weights_changes_no_value(threads, threads_):
    """`ahead` only prefetches: bit for bit the result without it, on layers that do
    prefetch (few pixel tiles: 7x7 and 14x14) and one that does not (56x56), with the
    later weights before or after this conv's in memory and larger than it can cover."""
    threads(threads_)
    rng = np.random.default_rng(11)
    later = rng.standard_normal(3_000_000).astype(np.float32)
    for batch, cin, cout, size in [(1, 160, 960, 7), (1, 96, 576, 14), (2, 24, 144, 56), (1, 320, 1280, 7)]:
        x, weight, bias, residual = make_case(batch, cin, cout, size, size, with_residual=cout < cin)
        packed_weight, packed_bias = pack_pointwise(weight, bias)
        blocked = to_blocked(x)
        blocked_residual = None if residual is None else to_blocked(residual)
        results = []
        for ahead in (None, later[:cin * cout], later, np.ascontiguousarray(later[::-1][:1000])):
            out = np.full((batch, packed_weight.shape[0], size, size, CB), np.nan, np.float32)
            pointwise_conv(blocked, packed_weight, packed_bias, out, 0.0, 6.0, blocked_residual, ahead=ahead)
            results.append(out)
        for out in results[1:]:
            np.testing.assert_array_equal(out, results[0])
        assert_matches_reference(results[0], x, weight, bias, residual, RELU6)


def test_empty_batch_is_a_no_op():
    packed_weight, packed_bias = pack_pointwise(np.ones((8, 8), np.float32), None)
    x = np.zeros((0, 1, 4, 4, CB), np.float32)
    out = np.zeros((0, 1, 4, 4, CB), np.float32)
    pointwise_conv(x, packed_weight, packed_bias, out, 0.0, 6.0)


def _valid_arguments():
    packed_weight, packed_bias = pack_pointwise(np.ones((20, 12), np.float32), np.zeros(20, np.float32))
    x = np.zeros((2, channel_blocks(12), 3, 4, CB), np.float32)
    out = np.zeros((2, channel_blocks(20), 3, 4, CB), np.float32)
    return dict(x=x, packed_weight=packed_weight, packed_bias=packed_bias, out=out,
                clip_min=0.0, clip_max=6.0, residual=None, pointwise_pixels=8, pointwise_channels=16)


def _bad_arguments():
    good = _valid_arguments()
    x, w, b, out = good["x"], good["packed_weight"], good["packed_bias"], good["out"]
    wide = np.zeros(out.shape[:-1] + (2 * CB,), np.float32)
    return [
        ("x", dict(x=x[0])),
        ("x", dict(x=x.astype(np.float64))),
        ("x", dict(x=np.zeros(x.shape[:-1] + (CB + 1,), np.float32))),
        ("x", dict(x=np.zeros(x.shape[:-1] + (2 * CB,), np.float32)[..., ::2])),
        ("packed_weight", dict(packed_weight=w[:, :-CB])),
        ("packed_weight", dict(packed_weight=w.astype(np.float16))),
        ("packed_weight", dict(packed_weight=np.asfortranarray(w))),
        ("packed_bias", dict(packed_bias=b[:-1])),
        ("out", dict(out=out[:1])),
        ("out", dict(out=out[:, :1])),
        ("out", dict(out=wide[..., ::2])),
        ("out", dict(out=out.astype(np.float64))),
        ("residual", dict(residual=out[:1])),
        ("residual", dict(residual=out.astype(np.float64))),
        ("clip", dict(clip_min=1.0)),
        ("clip", dict(clip_max=-1.0)),
        ("clip", dict(clip_min=np.nan)),
        ("pointwise_pixels", dict(pointwise_pixels=0)),
        ("pointwise_pixels", dict(pointwise_pixels=-3)),
        ("pointwise_pixels", dict(pointwise_pixels=2.5)),
        ("pointwise_pixels", dict(pointwise_pixels=True)),
        ("pointwise_channels", dict(pointwise_channels=24)),
        ("pointwise_channels", dict(pointwise_channels=0)),
        ("pointwise_channels", dict(pointwise_channels=8)),
        ("ahead", dict(ahead=np.zeros(64, np.float64))),
        ("ahead", dict(ahead=np.zeros((8, 8), np.float32).T)),
        ("ahead", dict(ahead=[0.0] * 16)),
    ]


@pytest.mark.parametrize("problem,changes", _bad_arguments(),
                         ids=[f"{name}-{i}" for i, (name, _) in enumerate(_bad_arguments())])
def test_wrapper_rejects_bad_arguments_with_a_message_naming_the_problem(problem, changes):
    arguments = _valid_arguments()
    arguments.update(changes)
    with pytest.raises(ValueError, match=problem):
        pointwise_conv(**arguments)


def test_out_overlapping_x_or_partly_overlapping_residual_is_rejected():
    channels = 2 * CB                          # two channel blocks in and out, at either lane width
    packed_weight, packed_bias = pack_pointwise(np.ones((channels, channels), np.float32), None)
    shape = (1, 2, 3, 3, CB)
    buffer = np.zeros(int(np.prod(shape)) + CB, np.float32)
    first, shifted = buffer[:-CB].reshape(shape), buffer[CB:].reshape(shape)
    with pytest.raises(ValueError, match="out must not overlap x"):
        pointwise_conv(shifted, packed_weight, packed_bias, first, 0.0, 6.0)
    with pytest.raises(ValueError, match="residual"):
        pointwise_conv(np.zeros(shape, np.float32), packed_weight, packed_bias, first, 0.0, 6.0, shifted)


def test_valid_arguments_are_accepted():
    pointwise_conv(**_valid_arguments())


def test_pack_pointwise_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="weight"):
        pack_pointwise(np.ones((4, 3, 3, 3), np.float32), None)
    with pytest.raises(ValueError, match="weight"):
        pack_pointwise(np.ones(4, np.float32), None)
    with pytest.raises(ValueError, match="weight"):
        pack_pointwise(np.ones((4, 3), np.int32), None)
    with pytest.raises(ValueError, match="bias"):
        pack_pointwise(np.ones((4, 3), np.float32), np.ones(5, np.float32))
