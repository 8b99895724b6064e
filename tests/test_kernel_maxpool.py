"""MaxPool (engine.kernels.pooling.max_pool) against the plain numpy reference
(tests/naive/pooling.py), ONNX semantics: padding is -inf and never wins.

Tolerance: exact (a max picks one of its float32 inputs; the float64 reference holds the
same values). Inputs are mostly negative so a padding that wrongly read as 0 would win and
show; outputs start as NaN so an element the kernel forgets to write fails the test.
"""
from __future__ import annotations

import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import pooling
from engine.kernels.layout import CB, from_blocked, to_blocked
from engine.traffic import CacheBudget
from tests.naive import pooling as naive_pooling

pytestmark = pytest.mark.lanes     # layouts and bytes depend on the lane width


def run_max_pool(x, kernel, stride, pads):
    """(engine result (N, C, Ho, Wo), reference, blocked out) for pads (top, left, bottom, right)."""
    kh, kw = kernel
    ref = naive_pooling.max_pool(x, kh, kw, *stride, *pads)
    blocked = to_blocked(x)
    out = np.full((x.shape[0], blocked.shape[1], ref.shape[2], ref.shape[3], CB), np.nan, np.float32)
    pooling.max_pool(blocked, out, kh, kw, stride[0], stride[1], pads[0], pads[1])
    return from_blocked(out, x.shape[1]), ref, out


# (N, C, H, W), (kh, kw), (sh, sw), (top, left, bottom, right)
CASES = [
    ((1, 64, 112, 112), (3, 3), (2, 2), (1, 1, 1, 1)),   # ResNet's stem pool
    ((2, 21, 9, 11), (3, 3), (2, 2), (1, 1, 1, 1)),      # odd channels and sizes
    ((3, 5, 7, 8), (3, 3), (2, 2), (1, 0, 0, 2)),        # asymmetric end pads
    ((1, 17, 1, 1), (3, 3), (1, 1), (1, 1, 1, 1)),       # 1x1 image: the window is all padding but one
    ((2, 3, 6, 6), (3, 3), (1, 1), (0, 0, 0, 0)),        # 3x3 stride 1, no padding
    ((1, 9, 10, 7), (3, 3), (3, 2), (2, 1, 2, 0)),       # 3x3, strides differ
    ((2, 19, 8, 6), (2, 2), (2, 2), (0, 0, 0, 0)),       # the classic 2x2 stride 2
    ((1, 33, 9, 9), (5, 5), (3, 3), (2, 1, 3, 4)),       # 5x5, large end pads
    ((2, 7, 5, 9), (1, 3), (1, 2), (0, 1, 0, 1)),        # non-square kernel
    ((1, 4, 3, 2), (5, 4), (1, 1), (2, 2, 2, 2)),        # kernel larger than the input
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"_k{c[1][0]}x{c[1][1]}"
                         f"_s{c[2][0]}{c[2][1]}_p{''.join(map(str, c[3]))}")
def test_max_pool_matches_reference_with_padded_lanes_zero(case, threads):
    shape, kernel, stride, pads = case
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) - 3.0
    got, ref, out = run_max_pool(x, kernel, stride, pads)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref), f"max abs error {np.nanmax(np.abs(got - ref)):.3g}"
    padded_lanes = out.transpose(0, 1, 4, 2, 3).reshape(out.shape[0], -1, *out.shape[2:4])[:, shape[1]:]
    assert (padded_lanes == 0).all(), "padded channels must stay exactly 0"


def test_max_pool_padding_never_wins_over_negative_inputs():
    x = np.full((1, 1, 2, 2), -5.0, np.float32)
    got, ref, _ = run_max_pool(x, (3, 3), (1, 1), (1, 1, 1, 1))
    assert (got == -5.0).all() and (ref == -5.0).all()


def test_max_pool_flops_one_compare_per_window_element():
    assert pooling.max_pool_flops(2, 64, 56, 56, 3, 3) == 2 * 64 * 56 * 56 * 9


def test_max_pool_bytes_input_and_output_once_when_rows_fit():
    budget = CacheBudget(L1=48 * 1024, L2=2 * 1024 * 1024, L3=32 * 1024 * 1024, lanes=16)
    moved = pooling.max_pool_bytes(1, 64, 112, 112, 56, 56, 3, 3, 2, 2, budget)
    x_bytes, y_bytes = 64 * 112 * 112 * 4, 64 * 56 * 56 * 4
    assert moved["DRAM"] == moved["L3"] == moved["L2"] == x_bytes + y_bytes
    assert moved["L1"] == y_bytes * 10      # nine loads and one store per output vector
    tiny = CacheBudget(L1=1024, L2=2 * 1024 * 1024, L3=32 * 1024 * 1024, lanes=16)
    assert pooling.max_pool_bytes(1, 64, 112, 112, 56, 56, 3, 3, 2, 2, tiny)["L2"] == int(x_bytes * 1.5) + y_bytes



def test_max_pool_bytes_uses_the_given_stride_on_a_small_map():
    # 5x5, 3x3 stride 1, no padding -> 3x3: round(5 / 3) would guess stride 2
    tiny = CacheBudget(L1=1024, L2=2 * 1024 * 1024, L3=32 * 1024 * 1024, lanes=16)
    x_bytes, y_bytes = 16 * 5 * 5 * 4, 16 * 3 * 3 * 4
    moved = pooling.max_pool_bytes(1, 16, 5, 5, 3, 3, 3, 3, 1, 1, tiny)
    assert moved["L2"] == x_bytes * 3 + y_bytes        # each input row read once per output row: kh / 1
    assert pooling.max_pool_bytes(1, 16, 5, 5, 2, 2, 3, 3, 2, 2, tiny)["L2"] == int(x_bytes * 1.5) + 16 * 4 * 4

def good_args(**change):
    args = dict(x=np.zeros((1, 2, 5, 5, CB), np.float32), out=np.zeros((1, 2, 3, 3, CB), np.float32),
                kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_top=1, pad_left=1)
    args.update(change)
    return args


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((1, 2, 5, 5, CB + 1), np.float32)), f"x must have shape (*, *, *, *, {CB})"),
    (dict(x=np.zeros((1, 2, 5, 5), np.float32)), "x must have shape"),
    (dict(x=np.zeros((1, 2, 5, 5, CB), np.float64)), "x must be float32, got float64"),
    (dict(x=np.zeros((1, 2, 5, 10, CB), np.float32)[:, :, :, ::2]), "x must be C-contiguous"),
    (dict(x=np.zeros((1, 2, 0, 5, CB), np.float32)), "x must have no empty dimension"),
    (dict(x=[[0.0]]), "x must be a numpy array"),
    (dict(out=np.zeros((1, 3, 3, 3, CB), np.float32)), f"out must have shape (1, 2, *, *, {CB})"),
    (dict(out=np.zeros((1, 2, 3, 3, CB), np.float16)), "out must be float32"),
    (dict(out=np.zeros((1, 2, 3, 6, CB), np.float32)[:, :, :, ::2]), "out must be C-contiguous"),
    (dict(out=np.zeros((1, 2, 1, 3, CB), np.float32)), "out height must be >= 2"),
    (dict(out=np.zeros((1, 2, 3, 4, CB), np.float32)), "out width 4 implies an end pad of 3 >= kernel_w 3"),
    (dict(kernel_h=0), "kernel_h must be an int >= 1, got 0"),
    (dict(kernel_w=2.0), "kernel_w must be an int >= 1, got 2.0"),
    (dict(stride_h=0), "stride_h must be an int >= 1"),
    (dict(stride_w=True), "stride_w must be an int >= 1"),
    (dict(pad_top=-1), "pad_top must be an int >= 0, got -1"),
    (dict(pad_left=-2), "pad_left must be an int >= 0"),
    (dict(pad_top=3), "pad_top must be < kernel_h"),
    (dict(kernel_w=2, pad_left=2), "pad_left must be < kernel_w"),
])
def test_max_pool_rejects_bad_arguments(change, message):
    with pytest.raises(ValueError, match="max_pool") as error:
        pooling.max_pool(**good_args(**change))
    assert message in str(error.value)


def test_max_pool_accepts_a_kernel_larger_than_the_input_when_the_pads_cover_it():
    # ONNX MaxPool with kernel 5 on a 3-row input and pads (2, 2) is valid: one output row
    x = np.zeros((1, 1, 3, 3, CB), np.float32)
    pooling.max_pool(x, np.zeros((1, 1, 1, 1, CB), np.float32), 5, 5, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="kernel_h"):     # but not one that needs start pads >= the kernel
        pooling.max_pool(x, np.zeros((1, 1, 1, 1, CB), np.float32), 5, 5, 1, 1, 5, 2)


def test_max_pool_bound_call_equals_the_direct_call():
    from engine.kernels._common import bind

    x = to_blocked(np.random.default_rng(3).standard_normal((2, 21, 9, 9)).astype(np.float32))
    direct, bound = (np.full((2, x.shape[1], 5, 5, CB), np.nan, np.float32) for _ in range(2))
    pooling.max_pool(x, direct, 3, 3, 2, 2, 1, 1)
    bind(pooling.max_pool, x, bound, 3, 3, 2, 2, 1, 1)()
    assert np.array_equal(direct, bound)


def test_max_pool_rejects_out_overlapping_x():
    # a pool written over (part of) its own input would read maxima already written
    memory = np.zeros(7 * 6 * CB, np.float32)
    x = memory[:6 * 6 * CB].reshape(1, 1, 6, 6, CB)
    out = memory[3 * 6 * CB:3 * 6 * CB + 4 * 4 * CB].reshape(1, 1, 4, 4, CB)    # from x's row 3 on
    with pytest.raises(ValueError, match="max_pool: out must not overlap x"):
        pooling.max_pool(x, out, 3, 3, 1, 1, 0, 0)
    same = np.zeros((1, 1, 3, 3, CB), np.float32)
    with pytest.raises(ValueError, match="max_pool: out must not overlap x"):
        pooling.max_pool(same, same, 1, 1, 1, 1, 0, 0)
    pooling.max_pool(x, np.zeros((1, 1, 4, 4, CB), np.float32), 3, 3, 1, 1, 0, 0)   # apart: accepted
