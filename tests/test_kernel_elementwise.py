"""The stand-alone activation step (engine.kernels.elementwise.activation_step) against the
plain numpy activations (tests/naive/activation.py) in float64.

Tolerance: max |got - ref| <= 1e-6 * max(1, max |ref|) (one float32 rounding of each step;
the exp of silu and sigmoid within a few ulp); outputs start as NaN so an element the
kernel forgets to write fails the test; padded lanes must be exactly 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import elementwise
from engine.kernels.layout import CB, channel_blocks, from_blocked, to_blocked
from engine.traffic import CacheBudget
from tests.naive.activation import activate

pytestmark = pytest.mark.lanes     # layouts and bytes depend on the lane width

TOLERANCE = 1e-6
ACTIVATIONS = [("none", 0.0, 0.0), ("hardswish", 1.0 / 6.0, 0.5), ("silu", 0.0, 0.0), ("hardsigmoid", 0.2, 0.5),
               ("sigmoid", 0.0, 0.0)]
CLIPS = [(-math.inf, math.inf), (0.0, 6.0), (-0.25, 0.75)]


def assert_matches(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    error = float(np.abs(got - ref).max())
    assert error <= TOLERANCE * max(1.0, float(np.abs(ref).max())), f"max abs error {error:.3g}"


def reference(x, activation, clip):
    return np.clip(activate(x, activation), *clip)


def inputs(shape, seed=0):
    # wide range: both saturations of the hard activations and of the exp clamp (|v| > 80)
    x = np.random.default_rng(seed).standard_normal(shape) * 5
    specials = [-100.0, 100.0, 0.0, -3.0][:x.size]
    x.reshape(-1)[:len(specials)] = specials
    return x.astype(np.float32)


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: f"clip{c[0]}_{c[1]}")
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a[0])
@pytest.mark.parametrize("shape", [(2, 21, 5, 7), (1, 3, 1, 1), (3, 2 * CB, 4, 3), (1, 40, 28, 28)],
                         ids=lambda s: "x".join(map(str, s)))
def test_activation_step_nchwc_matches_reference_with_padded_lanes_zero(shape, activation, clip, threads):
    x = inputs(shape)
    blocked = to_blocked(x)
    out = np.full_like(blocked, np.nan)
    elementwise.activation_step(blocked, out, shape[1], activation=activation, clip=clip)
    assert_matches(from_blocked(out, shape[1]), reference(x, activation, clip))
    lanes = out.transpose(0, 1, 4, 2, 3).reshape(shape[0], -1, *shape[2:])[:, shape[1]:]
    assert (lanes == 0).all(), "padded channels must be written exactly 0"


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a[0])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1000), (3, 40001), (1, elementwise.CHUNK + CB + 3)],
                         ids=lambda s: "x".join(map(str, s)))
def test_activation_step_flat_matches_reference(shape, activation, threads):
    x = inputs(shape, seed=1)
    out = np.full_like(x, np.nan)
    elementwise.activation_step(x, out, shape[1], activation=activation, clip=(-1.0, 50.0))
    assert_matches(out, reference(x, activation, (-1.0, 50.0)))


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a[0])
def test_activation_step_in_place(activation, threads):
    x = inputs((2, 21, 5, 7), seed=2)
    blocked = to_blocked(x)
    blocked[..., 21 % CB:][:, -1] = 3.0          # garbage in the padded lanes: written 0 all the same
    out = np.full_like(blocked, np.nan)
    elementwise.activation_step(blocked, out, 21, activation=activation)
    elementwise.activation_step(blocked, blocked, 21, activation=activation)
    assert np.array_equal(blocked, out)
    assert (blocked[:, -1, ..., 21 % CB:] == 0).all()
    flat = inputs((3, 777), seed=3)
    expected = reference(flat, activation, (-math.inf, math.inf))
    elementwise.activation_step(flat, flat, 777, activation=activation)
    assert_matches(flat, expected)


@pytest.mark.parametrize("shape, channels", [((3, 32), 21), ((2, 9000), 8990), ((5, 1), 1)])
def test_activation_step_flat_padded_columns_come_out_zero(shape, channels, threads):
    # a pooled vector (N, C_padded): sigmoid(0) = 0.5 must not land in the padded columns
    x = inputs(shape, seed=6)
    x[:, channels:] = 3.0
    out = np.full_like(x, np.nan)
    elementwise.activation_step(x, out, channels, activation=("sigmoid", 0.0, 0.0), clip=(-1.0, 0.75))
    assert_matches(out[:, :channels], reference(x[:, :channels], ("sigmoid", 0.0, 0.0), (-1.0, 0.75)))
    assert (out[:, channels:] == 0).all()
    elementwise.activation_step(x, x, channels, activation=("sigmoid", 0.0, 0.0), clip=(-1.0, 0.75))
    assert np.array_equal(x, out)

def test_activation_step_rejects_out_partly_overlapping_x():
    memory = np.zeros(3 * CB * 4, np.float32)
    x = memory[:2 * CB * 4].reshape(1, 2, 1, 4, CB)
    shifted = memory[CB:CB + 2 * CB * 4].reshape(1, 2, 1, 4, CB)
    with pytest.raises(ValueError, match="activation_step: out must be x itself or not overlap x"):
        elementwise.activation_step(x, shifted, 2 * CB, activation=("sigmoid", 0.0, 0.0))
    flat = np.zeros(2 * 777 + 1, np.float32)
    with pytest.raises(ValueError, match="activation_step: out must be x itself or not overlap x"):
        elementwise.activation_step(flat[:2 * 777].reshape(2, 777), flat[1:].reshape(2, 777), 777,
                                    activation=("silu", 0.0, 0.0))
    # another view of exactly x's memory is x itself
    elementwise.activation_step(x, memory[:2 * CB * 4].reshape(1, 2, 1, 4, CB), 2 * CB,
                                activation=("sigmoid", 0.0, 0.0))


def test_activation_step_flops_and_bytes():
    assert elementwise.activation_step_flops(2, 21, 5, 7, ("hardswish", 1 / 6, 0.5)) == 2 * 21 * 35 * 4
    assert elementwise.activation_step_flops(2, 21, 5, 7, ("none", 0.0, 0.0)) == 0
    assert elementwise.activation_step_flops(2, 21, 5, 7, ("none", 0.0, 0.0), (0.0, math.inf)) == 2 * 21 * 35
    assert elementwise.activation_step_flops(2, 21, 1, 1, ("sigmoid", 0.0, 0.0), (-1.0, 6.0)) == 2 * 21 * 4
    assert elementwise.activation_step_flops(2, 21, 1, 1, ("sigmoid", 0.0, 0.0), (-math.inf, math.inf)) == 2 * 21 * 3
    budget = CacheBudget(L1=48 * 1024, L2=2 * 1024 * 1024, L3=32 * 1024 * 1024, lanes=16)
    assert elementwise.activation_step_bytes(2, 21, 5, 7, budget)["DRAM"] == 2 * 2 * 32 * 35 * 4
    assert elementwise.activation_step_bytes(2, 1000, 1, 1, budget, blocked=False)["L1"] == 2 * 2 * 1000 * 4


BLOCKS = channel_blocks(21)


def good_args(**change):
    args = dict(x=np.zeros((1, BLOCKS, 3, 3, CB), np.float32), out=np.zeros((1, BLOCKS, 3, 3, CB), np.float32),
                channels=21, activation=("sigmoid", 0.0, 0.0), clip=(-math.inf, math.inf))
    args.update(change)
    return args


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((1, BLOCKS, 3, 3, CB), np.float64)), "x must be float32"),
    (dict(x=np.zeros((1, BLOCKS, 3, 6, CB), np.float32)[:, :, :, ::2]), "x must be C-contiguous"),
    (dict(x=np.zeros((1, BLOCKS, 3, 3, CB + 1), np.float32)), f"x must have shape (*, {BLOCKS}, *, *, {CB})"),
    (dict(x=np.zeros((1, BLOCKS + 1, 3, 3, CB), np.float32)), f"x must have shape (*, {BLOCKS}, *, *, {CB})"),
    (dict(x=np.zeros((1, 21, 3), np.float32)), "x must have shape"),
    (dict(x=np.zeros((1, BLOCKS, 0, 3, CB), np.float32)), "x must have no empty dimension"),
    (dict(out=np.zeros((1, BLOCKS, 3, 4, CB), np.float32)), f"out must have shape (1, {BLOCKS}, 3, 3, {CB})"),
    (dict(out=np.zeros((1, BLOCKS, 3, 3, CB), np.float64)), "out must be float32"),
    (dict(x=np.zeros((2, 20), np.float32), out=np.zeros((2, 20), np.float32)),
     "x must have at least channels = 21 columns, got shape (2, 20)"),
    (dict(x=np.zeros((2, 21), np.float32), out=np.zeros((2, 22), np.float32)), "out must have shape (2, 21)"),
    (dict(x=np.zeros((2, 21), np.float32), out=np.zeros((2, 21, 1), np.float32)), "out must have shape (2, 21)"),
    (dict(x=np.zeros((2, 42), np.float32)[:, ::2], out=np.zeros((2, 21), np.float32)), "x must be C-contiguous"),
    (dict(channels=0), "channels must be an int >= 1, got 0"),
    (dict(channels=21.0), "channels must be an int >= 1"),
    (dict(activation=("relu", 0.0, 0.0)), "activation 'relu' is not one of"),
    (dict(activation="silu"), "activation must be (name, alpha, beta)"),
    (dict(activation=("hardswish", math.inf, 0.5)), "needs finite alpha and beta"),
    (dict(activation=("hardsigmoid", 0.2, 1e39)), "needs alpha and beta within float32's range"),
    (dict(clip=(1.0, -1.0)), "clip must have low <= high"),
    (dict(clip=None), "clip must be (low, high)"),
])
def test_activation_step_rejects_bad_arguments(change, message):
    with pytest.raises(ValueError, match="activation_step") as error:
        elementwise.activation_step(**good_args(**change))
    assert message in str(error.value)


def test_activation_step_bound_call_equals_the_direct_call():
    from engine.kernels._common import bind

    blocked = to_blocked(inputs((2, 21, 3, 3), seed=4))
    direct, bound = np.full_like(blocked, np.nan), np.full_like(blocked, np.nan)
    elementwise.activation_step(blocked, direct, 21, activation=("hardswish", 1 / 6, 0.5), clip=(0.0, 6.0))
    bind(elementwise.activation_step, blocked, bound, 21, activation=("hardswish", 1 / 6, 0.5), clip=(0.0, 6.0))()
    assert np.array_equal(direct, bound)
