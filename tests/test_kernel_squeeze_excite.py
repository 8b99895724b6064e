"""Squeeze-and-excitation (engine.kernels.squeeze_excite) against the plain numpy reference
(tests/naive/squeeze_excite.py) in float64.

Tolerance: max |got - ref| <= 1e-5 * max |ref| (float32 sums over H x W and over the
channels, references in float64); outputs start as NaN so an element the kernel forgets
to write fails the test; padded lanes must be exactly 0.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import engine  # noqa: F401  (numba environment first)
from engine.kernels import squeeze_excite as se
from engine.kernels.layout import CB, channel_blocks, from_blocked, to_blocked
from engine.traffic import CacheBudget
from tests.naive import squeeze_excite as naive_se

pytestmark = pytest.mark.lanes     # layouts, packing and bytes depend on the lane width

RELATIVE = 1e-5
MOBILENET_V3 = dict(hidden_activation=("none", 0.0, 0.0), hidden_clip=(0.0, math.inf),
                    gate_activation=("hardsigmoid", 1.0 / 6.0, 0.5))
EFFICIENTNET = dict(hidden_activation=("silu", 0.0, 0.0), gate_activation=("sigmoid", 0.0, 0.0))


def make_case(batch, channels, squeezed, h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, channels, h, w)) + 0.3).astype(np.float32)
    w1 = (rng.standard_normal((squeezed, channels)) * 2 / np.sqrt(channels)).astype(np.float32)
    b1 = rng.standard_normal(squeezed).astype(np.float32)
    w2 = (rng.standard_normal((channels, squeezed)) * 2 / np.sqrt(squeezed)).astype(np.float32)
    b2 = rng.standard_normal(channels).astype(np.float32)
    return x, (w1, b1, w2, b2)


def padded_lanes(blocked, channels):
    n, blocks, h, w, _ = blocked.shape
    return blocked.transpose(0, 1, 4, 2, 3).reshape(n, blocks * CB, h, w)[:, channels:]


def assert_matches(got, ref):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(got).all(), "some output element was not written"
    scale = max(float(np.abs(ref).max()), 1e-30)
    error = float(np.abs(got - ref).max())
    assert error <= RELATIVE * scale, f"max abs error {error:.3g} > {RELATIVE} x max |ref| {scale:.3g}"


# (N, C, S, H, W): odd channel counts, 1x1 and odd-sized images, batch > 1, the networks' sizes;
# (4, 300, 75, 3, 3) is large enough (se.SERIAL_MACS) for the parallel 1x1 passes, 75 rows = 18 x 4 + 3;
# (5, 37, 9, 6, 6) and (4, 64, 16, 14, 14) take the per-image path (se.PER_IMAGE_BATCH, weights <= one image)
SHAPES = [(1, 96, 24, 14, 14), (2, 21, 5, 7, 5), (3, 13, 4, 1, 1), (1, 672, 28, 14, 14), (2, 40, 10, 3, 17),
          (1, 1, 1, 2, 2), (4, 300, 75, 3, 3), (5, 37, 9, 6, 6), (4, 64, 16, 14, 14)]


def per_image(n, c, s, h, w):
    return n >= se.PER_IMAGE_BATCH and 2 * s * channel_blocks(c) * CB <= channel_blocks(c) * CB * h * w


def test_the_shapes_cover_the_serial_the_parallel_and_the_per_image_paths():
    whole_batch = [(n, c, s) for n, c, s, h, w in SHAPES if not per_image(n, c, s, h, w)]
    macs = [n * s * channel_blocks(c) * CB for n, c, s in whole_batch]
    assert min(macs) < se.SERIAL_MACS <= max(macs)
    assert sum(per_image(*shape) for shape in SHAPES) == 2
ACTIVATIONS = [("none", 0.0, 0.0), ("hardswish", 1.0 / 6.0, 0.5), ("silu", 0.0, 0.0), ("hardsigmoid", 0.2, 0.5),
               ("sigmoid", 0.0, 0.0)]


@pytest.mark.parametrize("style", [MOBILENET_V3, EFFICIENTNET], ids=["mobilenet_v3", "efficientnet"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}_C{}_S{}_{}x{}".format(*s))
def test_squeeze_excite_matches_reference_with_padded_lanes_zero(shape, style, threads):
    x, weights = make_case(*shape)
    blocked = to_blocked(x)
    out = np.full_like(blocked, np.nan)
    se.squeeze_excite(blocked, se.pack_squeeze_excite(*weights), out, **style)
    assert_matches(from_blocked(out, shape[1]), naive_se.squeeze_excite(x, *weights, **style))
    assert (padded_lanes(out, shape[1]) == 0).all(), "padded channels must stay exactly 0"


@pytest.mark.parametrize("hidden", ACTIVATIONS, ids=lambda a: f"hidden_{a[0]}")
@pytest.mark.parametrize("gate", ACTIVATIONS, ids=lambda a: f"gate_{a[0]}")
def test_squeeze_excite_every_activation_pair_and_a_clip(hidden, gate):
    x, weights = make_case(2, 21, 6, 3, 5, seed=1)
    style = dict(hidden_activation=hidden, hidden_clip=(-0.5, 1.5), gate_activation=gate)
    blocked = to_blocked(x)
    out = np.full_like(blocked, np.nan)
    se.squeeze_excite(blocked, se.pack_squeeze_excite(*weights), out, **style)
    assert_matches(from_blocked(out, 21), naive_se.squeeze_excite(x, *weights, **style))
    assert (padded_lanes(out, 21) == 0).all()


@pytest.mark.parametrize("shape", [(2, 21, 5, 7, 5), (1, 672, 28, 14, 14)], ids=["small", "efficientnet"])
def test_squeeze_excite_in_place_equals_out_of_place(shape, threads):
    x, weights = make_case(*shape, seed=2)
    packed = se.pack_squeeze_excite(*weights)
    blocked = to_blocked(x)
    out = np.full_like(blocked, np.nan)
    se.squeeze_excite(blocked, packed, out, **EFFICIENTNET)
    se.squeeze_excite(blocked, packed, blocked, **EFFICIENTNET)
    assert np.array_equal(blocked, out)
    assert_matches(from_blocked(blocked, shape[1]), naive_se.squeeze_excite(x, *weights, **EFFICIENTNET))


def test_squeeze_excite_scale_of_padded_lanes_is_zero_even_with_garbage_there():
    # a sigmoid gate is 1/2 at 0: the mask, not the zero input, keeps padded lanes 0
    x, weights = make_case(1, 3, 2, 2, 2)
    blocked = to_blocked(x)
    blocked[..., 3:] = 7.0
    out = np.full_like(blocked, np.nan)
    se.squeeze_excite(blocked, se.pack_squeeze_excite(*weights), out)
    assert (out[..., 3:] == 0).all()
    assert_matches(from_blocked(out, 3), naive_se.squeeze_excite(x, *weights))


def test_pack_squeeze_excite_layout_and_zero_padding():
    channels, squeezed = CB + 3, 2
    w1 = np.arange(squeezed * channels, dtype=np.float32).reshape(squeezed, channels) + 1
    w2 = -np.arange(channels * squeezed, dtype=np.float32).reshape(channels, squeezed) - 1
    b1, b2 = np.ones(squeezed, np.float32), np.arange(channels, dtype=np.float32) + 1
    pw1, pb1, pw2, pb2, mask = se.pack_squeeze_excite(w1, b1, w2, b2)
    blocks = channel_blocks(channels)
    assert pw1.shape == (squeezed, blocks * CB) and pw2.shape == (blocks, squeezed, CB)
    assert pb1.shape == (squeezed,) and pb2.shape == mask.shape == (blocks, CB)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in (pw1, pb1, pw2, pb2, mask))
    assert np.array_equal(pw1[:, :channels], w1) and (pw1[:, channels:] == 0).all()
    assert pw2[1, 1, 2] == w2[CB + 2, 1] and (pw2[1, :, 3:] == 0).all()
    assert pb2.reshape(-1)[channels - 1] == channels and (pb2.reshape(-1)[channels:] == 0).all()
    assert mask.sum() == channels and (mask.reshape(-1)[channels:] == 0).all()


def test_squeeze_excite_flops_and_bytes():
    assert se.squeeze_excite_flops(2, 96, 24, 14, 14) == 2 * (2 * 96 * 196 + 4 * 24 * 96)
    budget = CacheBudget(L1=48 * 1024, L2=2 * 1024 * 1024, L3=32 * 1024 * 1024, lanes=16)
    moved = se.squeeze_excite_bytes(1, 96, 24, 14, 14, budget)
    x_bytes = 96 * 196 * 4
    weights = (2 * 24 * 96 + 24 + 2 * 96) * 4
    assert moved["L3"] == moved["DRAM"] == 2 * x_bytes + weights    # x read once (fits L2), out written once
    assert moved["L2"] == 3 * x_bytes + weights                     # x does not fit half of L1: read twice
    # per image (batch >= PER_IMAGE_BATCH, weights <= one image): one image must stay, not the batch
    batch = se.PER_IMAGE_BATCH * 8
    moved = se.squeeze_excite_bytes(batch, 96, 24, 14, 14, budget)
    assert moved["L3"] == 2 * batch * x_bytes + weights
    assert moved["L2"] == 3 * batch * x_bytes + weights           # an image (75 KB) does not fit half of L1; the weights (19 KB) do
    whole_batch = se.squeeze_excite_bytes(batch, 960, 240, 7, 7, budget)   # weights 1.8 MB > one image (188 KB)
    assert whole_batch["L3"] == 3 * batch * 960 * 49 * 4 + (2 * 240 * 960 + 240 + 2 * 960) * 4


def good_args(**change):
    x, weights = make_case(1, 21, 5, 3, 3)
    blocked = to_blocked(x)
    args = dict(x=blocked, packed=se.pack_squeeze_excite(*weights), out=np.zeros_like(blocked))
    args.update(change)
    return args


BLOCKS = channel_blocks(21)


@pytest.mark.parametrize("change, message", [
    (dict(x=np.zeros((1, BLOCKS, 3, 3, CB + 1), np.float32)), "x must have shape (*, *, *, *,"),
    (dict(x=np.zeros((1, BLOCKS, 3, 3, CB), np.float64)), "x must be float32"),
    (dict(x=np.zeros((1, BLOCKS, 3, 6, CB), np.float32)[:, :, :, ::2]), "x must be C-contiguous"),
    (dict(x=np.zeros((1, BLOCKS, 0, 3, CB), np.float32)), "x must have no empty dimension"),
    (dict(out=np.zeros((1, BLOCKS, 3, 4, CB), np.float32)), f"out must have shape (1, {BLOCKS}, 3, 3, {CB})"),
    (dict(out=np.zeros((1, BLOCKS, 3, 3, CB), np.float64)), "out must be float32"),
    (dict(x=np.zeros((1, BLOCKS + 1, 3, 3, CB), np.float32), out=np.zeros((1, BLOCKS + 1, 3, 3, CB), np.float32)),
     "packed[0] (w1) must have shape"),
    (dict(packed=[np.zeros(1)] * 5), "packed must be the 5-tuple"),
    (dict(packed=(np.zeros((5, BLOCKS * CB), np.float32),) * 4), "packed must be the 5-tuple"),
])
def test_squeeze_excite_rejects_bad_arrays(change, message):
    with pytest.raises(ValueError, match="squeeze_excite") as error:
        se.squeeze_excite(**good_args(**change))
    assert message in str(error.value)


def test_squeeze_excite_rejects_bad_packed_members():
    args = good_args()
    w1, b1, w2, b2, mask = args["packed"]
    for index, bad in [(0, w1.astype(np.float64)), (1, b1[:-1]), (2, w2[:, :-1]), (3, b2[:, ::2]),
                       (4, np.zeros((BLOCKS, CB + 1), np.float32))]:
        packed = [w1, b1, w2, b2, mask]
        packed[index] = bad
        with pytest.raises(ValueError, match=rf"squeeze_excite: packed\[{index}\]"):
            se.squeeze_excite(args["x"], tuple(packed), args["out"])


@pytest.mark.parametrize("keyword, value, message", [
    ("hidden_activation", ("relu", 0.0, 0.0), "hidden_activation: activation 'relu' is not one of"),
    ("gate_activation", ("tanh", 0.0, 0.0), "gate_activation: activation 'tanh' is not one of"),
    ("gate_activation", "sigmoid", "gate_activation: activation must be (name, alpha, beta)"),
    ("hidden_activation", ("hardsigmoid", math.nan, 0.5), "needs finite alpha and beta"),
    ("hidden_clip", (1.0, 0.0), "hidden_clip must have low <= high"),
    ("hidden_clip", (math.nan, 1.0), "hidden_clip must have low <= high"),
    ("hidden_clip", 6.0, "hidden_clip must be (low, high)"),
])
def test_squeeze_excite_rejects_bad_activations(keyword, value, message):
    with pytest.raises(ValueError, match="squeeze_excite") as error:
        se.squeeze_excite(**good_args(**{keyword: value}))
    assert message in str(error.value)


@pytest.mark.parametrize("args, message", [
    ((np.zeros((2, 3, 1)), np.zeros(2), np.zeros((3, 2)), np.zeros(3)), "w1 must have shape (S, C)"),
    ((np.zeros((2, 3)), np.zeros(3), np.zeros((3, 2)), np.zeros(3)), "b1 must have shape (2,)"),
    ((np.zeros((2, 3)), np.zeros(2), np.zeros((2, 3)), np.zeros(3)), "w2 must have shape (3, 2)"),
    ((np.zeros((2, 3)), np.zeros(2), np.zeros((3, 2)), np.zeros(2)), "b2 must have shape (3,)"),
    ((np.full((2, 3), np.inf), np.zeros(2), np.zeros((3, 2)), np.zeros(3)), "w1 must be finite"),
])
def test_pack_squeeze_excite_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match="pack_squeeze_excite") as error:
        se.pack_squeeze_excite(*args)
    assert message in str(error.value)


def test_squeeze_excite_bound_call_equals_the_direct_call():
    from engine.kernels._common import bind

    x, weights = make_case(2, 21, 5, 3, 3, seed=4)
    blocked = to_blocked(x)
    packed = se.pack_squeeze_excite(*weights)
    direct, bound = np.full_like(blocked, np.nan), np.full_like(blocked, np.nan)
    se.squeeze_excite(blocked, packed, direct, **MOBILENET_V3)
    bind(se.squeeze_excite, blocked, packed, bound, **MOBILENET_V3)()
    assert np.array_equal(direct, bound)
