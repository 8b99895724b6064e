"""Global average pooling and the linear (fully connected) kernel against plain numpy
references (tests/naive/pooling.py, tests/naive/linear.py).

Tolerance: max |got - ref| <= 1e-5 * max |ref| (float32 sums, references in float64);
outputs start as NaN so an element the kernel forgets to write fails the test.
"""
from __future__ import annotations

import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import linear, pooling
from engine.kernels.layout import CB, channel_blocks, to_blocked
from tests.naive import linear as naive_linear
from tests.naive import pooling as naive_pooling

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

RELATIVE = 1e-5


def assert_matches(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = max(float(np.abs(ref).max()), 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= RELATIVE * scale, f"max abs error {error:.3g} > {RELATIVE} x max |ref| {scale:.3g}"


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (3, 21, 5, 7), (1, 24, 2, 13), (2, 1280, 7, 7)],
                         ids=lambda s: "x".join(map(str, s)))
def test_global_average_pool_matches_reference_with_padded_lanes_zero(shape, threads):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) + 0.5
    blocked = to_blocked(x)
    out = np.full((shape[0], blocked.shape[1] * CB), np.nan, np.float32)
    pooling.global_average_pool(blocked, out)
    assert_matches(out[:, :shape[1]], naive_pooling.global_average_pool(x))
    assert (out[:, shape[1]:] == 0).all(), "padded channels must stay exactly 0"


def test_global_average_pool_flops_one_add_per_element():
    assert pooling.global_average_pool_flops(2, 1280, 7, 7) == 2 * 1280 * 49


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((1, 2, 3, 3, CB + 1), np.float32)), f"(*, *, *, *, {CB}), got (1, 2, 3, 3, {CB + 1})"),
    (dict(out=np.zeros((1, 2 * CB + 1), np.float32)), f"(1, {2 * CB}), got (1, {2 * CB + 1})"),
    (dict(out=np.zeros((1, 2 * CB), np.float64)), "float32, got float64"),
])
def test_global_average_pool_rejects_bad_arguments(change, message):
    args = dict(x=np.zeros((1, 2, 3, 3, CB), np.float32), out=np.zeros((1, 2 * CB), np.float32))
    args.update(change)
    with pytest.raises(ValueError, match="global_average_pool") as error:
        pooling.global_average_pool(**args)
    assert message in str(error.value)


# (N, K, K_padded, M): M across tile boundaries (one partial tile, exact tiles, many tiles)
LINEAR_CASES = [(1, 21, 24, 5), (3, 21, 24, 65), (1, 16, 16, 2 * linear.TILE), (2, 1280, 1280, 1000),
                (1, 1, 8, 1)]


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: f"N{c[0]}_K{c[1]}pad{c[2]}_M{c[3]}")
def test_linear_matches_reference(case, with_bias, threads):
    n, k, k_padded, m = case
    rng = np.random.default_rng(1)
    x = np.zeros((n, k_padded), np.float32)
    x[:, :k] = rng.standard_normal((n, k))
    weight = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32) if with_bias else None
    packed_w, packed_b = linear.pack_linear(weight, bias, k_padded)
    out = np.full((n, m), np.nan, np.float32)
    linear.linear(x, packed_w, packed_b, out)
    assert_matches(out, naive_linear.linear(x[:, :k], weight, bias))


def test_pack_linear_zero_rows_for_padded_inputs():
    weight = np.arange(1, 5 * 3 + 1, dtype=np.float32).reshape(5, 3)
    packed, packed_bias = linear.pack_linear(weight, None, 8)
    assert packed.shape == (1, 8, linear.TILE) and packed_bias.shape == (5,)
    assert packed[0, 2, 4] == weight[4, 2]
    assert (packed[0, 3:] == 0).all() and (packed[0, :, 5:] == 0).all() and (packed_bias == 0).all()
    # garbage in the padded inputs multiplies into nothing
    x = np.array([[1, 2, 3, 100, 100, 100, 100, 100]], np.float32)
    out = np.empty((1, 5), np.float32)
    linear.linear(x, packed, packed_bias, out)
    assert_matches(out, naive_linear.linear(x[:, :3], weight, None))


def test_linear_flops_two_per_multiply_accumulate():
    assert linear.linear_flops(1, 1280, 1000) == 2_560_000


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((1, 9), np.float32)), f"(*, 9, {linear.TILE}), got (1, 8, {linear.TILE})"),
    (dict(packed_weight=np.zeros((2, 8, linear.TILE), np.float32)), "must have 1 tiles for 5 outputs, got 2"),
    (dict(out=np.zeros((1, 6), np.float32)), "(1, 5), got (1, 6)"),
    (dict(x=np.zeros((1, 16), np.float32)[:, ::2]), "C-contiguous"),
])
def test_linear_rejects_bad_arguments(change, message):
    args = dict(x=np.zeros((1, 8), np.float32), packed_weight=np.zeros((1, 8, linear.TILE), np.float32),
                packed_bias=np.zeros(5, np.float32), out=np.zeros((1, 5), np.float32))
    args.update(change)
    with pytest.raises(ValueError, match="linear") as error:
        linear.linear(**args)
    assert message in str(error.value)


def test_pack_linear_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"in_features_padded must be an int >= K = 3, got 2"):
        linear.pack_linear(np.zeros((5, 3)), None, 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\), got \(3,\)"):
        linear.pack_linear(np.zeros((5, 3)), np.zeros(3), 8)
