"""The access traces of the kernels issue 15 added (the dense NCHWc conv, max pooling,
squeeze-and-excitation, the stand-alone activation) touch exactly the elements their
kernels read and write, split over threads as the kernels split them; and a cache
simulation of the zoo networks that use them runs (workbench.profile(bytes="both")).

The footprint method is tests/test_access_trace.py's (NaN-filled outputs for writes, one
+inf input element at a time for reads), reused from there."""
from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import conv_nchwc, elementwise, pooling, squeeze_excite
from engine.kernels._common import bind
from engine.kernels.activation import HARDSWISH_DEFAULT, NO_ACTIVATION
from engine.kernels.layout import CB
from engine.trace.calls import kernel_and_arguments, trace_call
from engine.trace.records import LOAD, STORE, register_bytes, touched_elements
from engine.trace.scratch import REGION, SCRATCH_BASE
from test_access_trace import assert_footprint, assert_threads_partition, positive

pytestmark = pytest.mark.lanes     # tiles, micro-tiles and layouts depend on the lane width


def check_threads(wrapper, args, trace, threads=(2, 3), **kwargs) -> None:
    """Each thread's share traced in turn is the whole trace, in the same order; a thread's
    own scratch buffer (conv_nchwc's input rows) at its own address."""
    kernel, kernel_args = kernel_and_arguments(bind(wrapper, *args, **kwargs))
    for count in threads:
        parts = [trace_call(kernel, kernel_args, thread, count) for thread in range(count)]
        starts = [p[p[:, 0] >= SCRATCH_BASE, 0].min() for p in parts if (p[:, 0] >= SCRATCH_BASE).any()]
        assert len(set(starts)) == len(starts)
        assert np.array_equal(_scratch_masked(np.concatenate(parts)), _scratch_masked(trace))


def _scratch_masked(trace: np.ndarray) -> np.ndarray:
    """The trace with scratch addresses replaced by their offset in their own region."""
    out = trace.copy()
    scratch = out[:, 0] >= SCRATCH_BASE
    slot = (out[scratch, 0] - SCRATCH_BASE) // REGION
    out[scratch, 0] = (out[scratch, 0] - SCRATCH_BASE) % REGION - slot * (4096 + 64)
    return out


def scratch_records(trace: np.ndarray) -> np.ndarray:
    return trace[trace[:, 0] >= SCRATCH_BASE]


def assert_scratch_read_after_written(trace: np.ndarray) -> None:
    """Every scratch line the trace loads, it stored before (the kernel's own buffers)."""
    written: set[int] = set()
    for address, length, kind, _ in scratch_records(trace):
        lines = set(range(address // 4, (address + length + 3) // 4))
        if kind == STORE:
            written |= lines
        elif kind == LOAD:
            assert lines <= written, "a scratch element is read before the trace wrote it"


# ------------------------------------------------------------------------- dense NCHWc conv

@pytest.mark.parametrize("n_images, cin_blocks, cout_blocks, height, width, kernel, stride, pad, pixels, channels, "
                         "residual, activation", [
    (1, 2, 3, 5, 6, 3, 1, 1, 7, 32, False, "none"),     # padded copy, edge micro-tiles, odd channel tiles
    (2, 1, 5, 6, 6, 3, 2, 1, 9, 80, True, "none"),      # stride 2, two images in a pixel tile, a residual
    (1, 2, 2, 4, 5, 1, 2, 0, 5, 16, False, "none"),     # strided 1x1 (ResNet's downsample): no copy
    (1, 1, 2, 5, 4, 3, 1, 0, 64, 32, True, "hardswish"),  # no padding, rows run past the row end; activation
])
def test_conv_nchwc_trace_touches_what_the_kernel_reads_and_writes(n_images, cin_blocks, cout_blocks, height, width,
                                                                   kernel, stride, pad, pixels, channels, residual,
                                                                   activation):
    rng = np.random.default_rng(10)
    x = positive(rng, n_images, cin_blocks, height, width, CB)
    w = positive(rng, cout_blocks, cin_blocks, kernel, kernel, CB, CB)
    b = positive(rng, cout_blocks, CB)
    out_h, out_w = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    out = np.empty((n_images, cout_blocks, out_h, out_w, CB), np.float32)
    res = positive(rng, *out.shape) if residual else None
    args = (x, w, b, out, stride, stride, pad, pad, -np.inf, np.inf, res, pixels, channels)
    act = {"activation": HARDSWISH_DEFAULT if activation == "hardswish" else NO_ACTIVATION}
    inputs = {"x": x, "weight": w, "bias": b, **({"residual": res} if residual else {})}
    call = bind(conv_nchwc.conv_nchwc, *args, **act)
    kernel_fn, kernel_args = kernel_and_arguments(call)
    trace = trace_call(kernel_fn, kernel_args)
    # assert_footprint binds without keywords; with an activation check through this call
    if activation == "none":
        assert np.array_equal(trace, assert_footprint(conv_nchwc.conv_nchwc, args, inputs, {"out": out}))
    else:
        _footprint_of_call(call, trace, inputs, {"out": out})
    assert_scratch_read_after_written(trace)
    assert bool(len(scratch_records(trace))) == (pad > 0)
    check_threads(conv_nchwc.conv_nchwc, args, trace, **act)


def _footprint_of_call(call, trace, inputs, outputs, every: int = 1):
    """assert_footprint's checks for a bound call (one with keyword arguments)."""
    from test_access_trace import read_mask, written_mask
    arrays = list(outputs.values())
    for (name, out), written in zip(outputs.items(), written_mask(call, arrays)):
        assert np.array_equal(touched_elements(trace, out, STORE), written), name
    for name, array in inputs.items():
        step = every if array.size > 1024 else 1
        read = read_mask(call, array, arrays, step)
        loaded = touched_elements(trace, array, LOAD)
        loaded[np.arange(loaded.size) % step != 0] = False
        assert read.any(), f"{name}: the kernel read nothing"
        assert np.array_equal(loaded, read), f"{name}: traced loads differ at {np.flatnonzero(loaded != read)[:10]}"


def test_conv_nchwc_trace_register_bytes_follow_the_micro_tiles():
    """One image row of whole micro-tiles, no padding, 1x1: per micro-tile (R pixels x B
    blocks) each input scalar once per block group, each weight vector once, the biases,
    the outputs once."""
    rng = np.random.default_rng(11)
    blocks = conv_nchwc.MAX_BLOCKS
    rows = conv_nchwc.ROWS_FOR_BLOCKS[blocks]
    cin_blocks, width = 2, 2 * rows
    x = positive(rng, 1, cin_blocks, 1, width, CB)
    w = positive(rng, blocks, cin_blocks, 1, 1, CB, CB)
    b = positive(rng, blocks, CB)
    out = np.empty((1, blocks, 1, width, CB), np.float32)
    channels = 16 * -(-blocks * CB // 16)
    call = bind(conv_nchwc.conv_nchwc, x, w, b, out, 1, 1, 0, 0, -np.inf, np.inf, None, width, channels)
    trace = trace_call(*kernel_and_arguments(call))
    tiles = width // rows
    assert register_bytes(trace) == tiles * (x.nbytes // tiles + w.nbytes + b.nbytes) + out.nbytes


# ------------------------------------------------------------------------- max pool

@pytest.mark.parametrize("n_images, height, width, kernel, stride, pad, out_h, out_w", [
    (1, 9, 10, 3, 2, 1, 5, 5),      # ResNet's: 3x3 stride 2 pad 1, border rows and columns clamped
    (2, 6, 7, 3, 1, 1, 6, 7),       # stride 1, two images
    (1, 3, 2, 3, 1, 1, 3, 2),       # narrower than a window: border columns only
    (1, 7, 8, 2, 2, 0, 3, 4),       # the generic path (2x2), the last row and column unread
    (1, 6, 6, 5, 2, 2, 3, 3),       # the generic path (5x5), windows clamped on both sides
])
def test_max_pool_trace_touches_what_the_kernel_reads_and_writes(n_images, height, width, kernel, stride, pad,
                                                                 out_h, out_w):
    rng = np.random.default_rng(12)
    blocks = 2
    x = positive(rng, n_images, blocks, height, width, CB)
    out = np.empty((n_images, blocks, out_h, out_w, CB), np.float32)
    args = (x, out, kernel, kernel, stride, stride, pad, pad)
    trace = assert_footprint(pooling.max_pool, args, {"x": x}, {"out": out})
    check_threads(pooling.max_pool, args, trace)


def test_max_pool_trace_register_bytes_are_the_models_l1_count():
    """A 3x3 window per output vector, every one loaded, and the output stored: kh*kw + 1
    vectors per output, the model's register count."""
    from engine.traffic import CacheBudget

    rng = np.random.default_rng(13)
    x = positive(rng, 1, 2, 12, 12, CB)
    out = np.empty((1, 2, 6, 6, CB), np.float32)
    trace = trace_call(*kernel_and_arguments(bind(pooling.max_pool, x, out, 3, 3, 2, 2, 1, 1)))
    budget = CacheBudget(L1=1 << 15, L2=1 << 20, L3=1 << 24, lanes=CB)
    assert register_bytes(trace) == pooling.max_pool_bytes(1, 2 * CB, 12, 12, 6, 6, 3, 3, 2, 2, budget)["L1"]


# ------------------------------------------------------------------------- squeeze-and-excitation

@pytest.mark.parametrize("n_images, blocks, squeezed, height, width, parallel", [
    (2, 2, 5, 3, 3, False),     # few MACs: passes 2 and 3 serial, on the calling thread
    (4, 8, 258, 2, 2, True),    # >= SERIAL_MACS at either width: four rows per item, then the last two one by one
])
def test_squeeze_excite_trace_touches_what_the_kernel_reads_and_writes(n_images, blocks, squeezed, height, width,
                                                                       parallel):
    rng = np.random.default_rng(14)
    padded = blocks * CB
    assert (n_images * squeezed * padded >= squeeze_excite.SERIAL_MACS) == parallel
    x = positive(rng, n_images, blocks, height, width, CB) * np.float32(0.01)
    # small weights, linear hidden and gate activations: no value saturates, so an +inf read shows
    packed = (positive(rng, squeezed, padded) * np.float32(0.01), positive(rng, squeezed),
              positive(rng, blocks, squeezed, CB) * np.float32(0.01), positive(rng, blocks, CB),
              positive(rng, blocks, CB))
    out = np.empty_like(x)
    linear = ("none", 0.0, 0.0)
    call = bind(squeeze_excite.squeeze_excite, x, packed, out, hidden_activation=linear, gate_activation=linear)
    kernel_fn, kernel_args = kernel_and_arguments(call)
    trace = trace_call(kernel_fn, kernel_args)
    inputs = {"x": x, "w1": packed[0], "b1": packed[1], "w2": packed[2], "b2": packed[3], "mask": packed[4]}
    _footprint_of_call(call, trace, inputs, {"out": out}, every=1 if not parallel else 11)
    assert_scratch_read_after_written(trace)
    for count in (2, 3):
        parts = [trace_call(kernel_fn, kernel_args, t, count) for t in range(count)]
        # each pass split over the threads: together they issue one thread's records, each once
        assert sorted(map(tuple, np.concatenate(parts))) == sorted(map(tuple, trace))
        hidden_stores = [len(p[(p[:, 0] >= SCRATCH_BASE) & (p[:, 1] == 4) & (p[:, 2] == STORE)]) for p in parts]
        assert sum(hidden_stores) == n_images * squeezed
        assert (min(hidden_stores) > 0) == parallel        # serial: thread 0 only


# ------------------------------------------------------------------------- stand-alone activation

@pytest.mark.parametrize("shape, channels", [
    ((2, 2, 3, 5, CB), 2 * CB - 3),                      # NCHWc, padded lanes written 0
    ((3, elementwise.CHUNK // 2 + 5), elementwise.CHUNK // 2 + 5),   # flat: several chunks and a tail
])
def test_activation_step_trace_touches_what_the_kernel_reads_and_writes(shape, channels):
    rng = np.random.default_rng(15)
    x = positive(rng, *shape)
    out = np.empty_like(x)
    kwargs = {"activation": ("none", 0.0, 0.0), "clip": (0.0, np.inf)}
    call = bind(elementwise.activation_step, x, out, channels, **kwargs)
    kernel_fn, kernel_args = kernel_and_arguments(call)
    trace = trace_call(kernel_fn, kernel_args)
    every = 1 if x.size < 4096 else 97
    from test_access_trace import read_mask, written_mask
    (written,) = written_mask(call, [out])
    assert np.array_equal(touched_elements(trace, out, STORE), written)
    read = read_mask(call, x, [out], every)
    loaded = touched_elements(trace, x, LOAD)
    loaded[np.arange(loaded.size) % every != 0] = False
    if x.ndim == 5:     # padded lanes: read, then multiplied by a 0 mask after the clip to FLT_MAX: dead reads
        dead = np.zeros(x.shape, bool)
        dead[..., channels % CB:][:, -1] = True
        dead = dead.ravel()
        assert (loaded & dead).sum() == dead.sum()
        read = read | dead
    assert read.any() and np.array_equal(loaded, read)
    assert register_bytes(trace) == 2 * x.nbytes
    for count in (2, 3):
        assert_threads_partition(kernel_args, kernel_fn, trace, count)


def test_activation_step_in_place_traces_each_piece_read_then_written():
    x = np.ones((1, 1, 8, 8, CB), np.float32)
    trace = trace_call(*kernel_and_arguments(bind(elementwise.activation_step, x, x, CB,
                                                  activation=("silu", 0.0, 0.0))))
    assert (trace[0::2, 2] == LOAD).all() and (trace[1::2, 2] == STORE).all()
    assert np.array_equal(trace[0::2, :2], trace[1::2, :2])
