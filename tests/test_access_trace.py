"""The access traces (engine.trace) touch exactly the elements their kernels read and write,
for every kernel family, on small shapes with odd sizes, edge tiles, stride 2 and padding.

How the kernel's footprint is found, without trusting the trace:
- writes: every output (and scratch) buffer starts as NaN; the elements that are no longer
  NaN after the kernel ran are the ones it wrote;
- reads: one input element at a time is set to +inf (all other data positive and finite);
  if the output changes, the kernel read that element. An inf read is never lost: times a
  positive weight it stays inf, times a zero (a padding mask, a padded lane) it becomes
  NaN, and both differ from the reference output.
Prefetches are not reads (they change no value) and are left out of the comparison.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import depthwise, direct_conv, fused_block, linear, pointwise, pooling
from engine.kernels._common import bind
from engine.kernels.layout import CB
from engine.trace.calls import kernel_and_arguments, trace_call
from engine.trace.records import LOAD, STORE, register_bytes, touched_elements

pytestmark = pytest.mark.lanes     # tiles, micro-tiles and layouts depend on the lane width


def positive(rng, *shape) -> np.ndarray:
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)


def written_mask(call, outputs: list[np.ndarray]) -> list[np.ndarray]:
    for out in outputs:
        out.fill(np.nan)
    call()
    return [~np.isnan(out.ravel()) for out in outputs]


def read_mask(call, array: np.ndarray, outputs: list[np.ndarray], every: int = 1) -> np.ndarray:
    """Elements of `array` whose value reaches an output (one kernel run per element; with
    `every` > 1 only every every-th element is tried, the others left False)."""
    def run():
        for out in outputs:
            out.fill(np.nan)
        call()
        return [out.copy() for out in outputs]
    reference = run()
    flat = array.reshape(-1)
    mask = np.zeros(flat.size, bool)
    for element in range(0, flat.size, every):
        saved = flat[element]
        flat[element] = np.inf
        mask[element] = any(not np.array_equal(got, want, equal_nan=True) for got, want in zip(run(), reference))
        flat[element] = saved
    return mask


def assert_footprint(wrapper, args, inputs: dict, outputs: dict, dead_reads: dict | None = None,
                     every: int = 1) -> np.ndarray:
    """The trace of `wrapper(*args)` loads exactly what the kernel reads from each of `inputs`
    and stores exactly what it writes to each of `outputs` (name -> array); `dead_reads`
    (name -> mask): loads whose values the kernel drops, so that no output shows them.
    every > 1: reads compared on every every-th element only (large inputs)."""
    call = bind(wrapper, *args)
    kernel, kernel_args = kernel_and_arguments(call)
    trace = trace_call(kernel, kernel_args)
    output_arrays = list(outputs.values())
    for (name, out), written in zip(outputs.items(), written_mask(call, output_arrays)):
        stored = touched_elements(trace, out, STORE)
        assert written.any(), f"{name}: the kernel wrote nothing"
        assert np.array_equal(stored, written), (
            f"{name}: traced stores differ from the kernel's writes at {np.flatnonzero(stored != written)[:10]}")
    for name, array in inputs.items():
        read = read_mask(call, array, output_arrays, every)
        loaded = touched_elements(trace, array, LOAD)
        if every > 1:
            loaded[np.arange(loaded.size) % every != 0] = False
        if dead_reads and name in dead_reads:
            assert (loaded & dead_reads[name]).sum() == dead_reads[name].sum(), f"{name}: dead reads not traced"
            read = read | dead_reads[name]
        assert read.any(), f"{name}: the kernel read nothing"
        assert np.array_equal(loaded, read), (
            f"{name}: traced loads differ from the kernel's reads at {np.flatnonzero(loaded != read)[:10]}")
    return trace


def assert_threads_partition(kernel_args, kernel, trace_all: np.ndarray, threads: int = 2) -> None:
    """Each thread's share traced in turn is the whole trace, in the same order."""
    parts = [trace_call(kernel, kernel_args, thread, threads) for thread in range(threads)]
    assert np.array_equal(np.concatenate(parts), trace_all)


# ------------------------------------------------------------------------- pointwise

@pytest.mark.parametrize("n_images, cin_blocks, cout_blocks, height, width, pixels, channels, residual, ahead", [
    (2, 2, 4, 3, 5, 7, 16, False, False),        # many pixel tiles, edge micro-tiles, two images in a tile
    (1, 1, 5, 3, 4, 64, 32, True, True),         # few pixel tiles: next-pair and ahead weight prefetches
    (1, 3, 3, 2, 11, 9, 48, True, False),        # a residual, odd channel tiles
])
def test_pointwise_trace_touches_what_the_kernel_reads_and_writes(n_images, cin_blocks, cout_blocks, height, width,
                                                                 pixels, channels, residual, ahead):
    rng = np.random.default_rng(0)
    x = positive(rng, n_images, cin_blocks, height, width, CB)
    w = positive(rng, cout_blocks, cin_blocks * CB, CB)
    b = positive(rng, cout_blocks, CB)
    out = np.empty((n_images, cout_blocks, height, width, CB), np.float32)
    res = positive(rng, *out.shape) if residual else None
    later = positive(rng, 4, 64) if ahead else None
    inputs = {"x": x, "weight": w, "bias": b, **({"residual": res} if residual else {})}
    trace = assert_footprint(pointwise.pointwise_conv, (x, w, b, out, -np.inf, np.inf, res, pixels, channels, later),
                             inputs, {"out": out})
    kernel, args = kernel_and_arguments(bind(pointwise.pointwise_conv, x, w, b, out, -np.inf, np.inf, res, pixels,
                                             channels, later))
    assert_threads_partition(args, kernel, trace)
    # registers: every weight vector once per micro-tile, every input once per block pair, outputs once
    rows, blocks = pointwise.ROWS, pointwise.BLOCKS
    assert register_bytes(trace) >= 4 * (x.size + b.size + out.size * (2 if residual else 1))


# ------------------------------------------------------------------------- depthwise

@pytest.mark.parametrize("height, width, kernel, stride, pad, rows", [
    (6, 7, 3, 1, 1, 2),
    (7, 9, 3, 2, 1, 3),
    (5, 6, 5, 1, 2, 2),      # the generic path (5x5, as MobileNetV3 has)
    (4, 3, 3, 1, 1, 16),     # narrower than a window pair: border columns only
])
def test_depthwise_trace_touches_what_the_kernel_reads_and_writes(height, width, kernel, stride, pad, rows):
    rng = np.random.default_rng(1)
    blocks = 2
    x = positive(rng, 1, blocks, height, width, CB)
    w = positive(rng, blocks, kernel, kernel, CB)
    b = positive(rng, blocks, CB)
    out_h, out_w = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    out = np.empty((1, blocks, out_h, out_w, CB), np.float32)
    args = (x, w, b, out, stride, stride, pad, pad, -np.inf, np.inf, rows)
    trace = assert_footprint(depthwise.depthwise_conv, args, {"x": x, "weight": w, "bias": b}, {"out": out})
    kernel_fn, kernel_args = kernel_and_arguments(bind(depthwise.depthwise_conv, *args))
    assert_threads_partition(kernel_args, kernel_fn, trace)


# ------------------------------------------------------------------------- direct conv (stem)

@pytest.mark.parametrize("cin, cout_blocks, height, width, kernel, stride, pad", [
    (3, 2, 7, 8, 3, 2, 1),      # a stem: stride 2, pad 1
    (2, 5, 6, 9, 3, 1, 1),      # more blocks than a group of four: the last block repeated
    (1, 1, 5, 5, 1, 1, 0),
])
def test_direct_conv_trace_touches_what_the_kernel_reads_and_writes(cin, cout_blocks, height, width, kernel, stride,
                                                                    pad):
    rng = np.random.default_rng(2)
    x = positive(rng, 1, cin, height, width)
    w = positive(rng, cout_blocks, cin, kernel, kernel, CB)
    b = positive(rng, cout_blocks, CB)
    out_h, out_w = (height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1
    out = np.empty((1, cout_blocks, out_h, out_w, CB), np.float32)
    args = (x, w, b, out, stride, stride, pad, pad, 1, 1, -np.inf, np.inf)
    trace = assert_footprint(direct_conv.direct_conv, args, {"x": x, "weight": w, "bias": b}, {"out": out})
    kernel_fn, kernel_args = kernel_and_arguments(bind(direct_conv.direct_conv, *args))
    assert_threads_partition(kernel_args, kernel_fn, trace)


# ------------------------------------------------------------------------- fused block

@pytest.mark.parametrize("cin_blocks, hidden_blocks, cout_blocks, height, width, stride, has_expand, residual, rows, "
                         "workers", [
    (1, 2, 1, 6, 5, 1, True, True, 2, 2),      # halo rows kept in the ring between bands
    (1, 2, 2, 7, 6, 2, True, False, 2, 1),     # stride 2
    (2, 2, 1, 5, 4, 1, False, False, 3, 2),    # no expand: the depthwise reads x
])
def test_fused_block_trace_touches_what_the_kernel_reads_and_writes(cin_blocks, hidden_blocks, cout_blocks, height,
                                                                    width, stride, has_expand, residual, rows, workers):
    rng = np.random.default_rng(3)
    x = positive(rng, 1, cin_blocks, height, width, CB)
    expand = (positive(rng, hidden_blocks, cin_blocks * CB, CB), positive(rng, hidden_blocks, CB)) if has_expand else None
    dw = (positive(rng, hidden_blocks, 3, 3, CB), positive(rng, hidden_blocks, CB))
    pw = (positive(rng, cout_blocks, hidden_blocks * CB, CB), positive(rng, cout_blocks, CB))
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    out = np.empty((1, cout_blocks, out_h, out_w, CB), np.float32)
    res = positive(rng, *out.shape) if residual else None
    scratch = fused_block.make_scratch(workers, hidden_blocks * CB, width, out_w, rows, stride)
    clip = (-np.inf, np.inf)
    args = (x, expand, dw, pw, out, res, stride, clip, clip, clip, rows, *scratch)
    inputs = {"x": x, "dw weight": dw[0], "dw bias": dw[1], "pw weight": pw[0], "pw bias": pw[1]}
    if has_expand:
        inputs.update({"expand weight": expand[0], "expand bias": expand[1]})
    if residual:
        inputs["residual"] = res
    outputs = {"out": out, "scratch_depthwise": scratch[1]}
    if has_expand:
        outputs["scratch_expand"] = scratch[0]
    trace = assert_footprint(fused_block.fused_block, args, inputs, outputs)
    # the scratch is read only where this band wrote it (or an earlier band of the worker)
    for name in ("scratch_depthwise", "scratch_expand") if has_expand else ("scratch_depthwise",):
        array = outputs[name]
        loaded, stored = touched_elements(trace, array, LOAD), touched_elements(trace, array, STORE)
        assert loaded.any() and not (loaded & ~stored).any()
    kernel_fn, kernel_args = kernel_and_arguments(bind(fused_block.fused_block, *args))
    assert_threads_partition(kernel_args, kernel_fn, trace)


# ------------------------------------------------------------------------- pooling and linear

def test_pool_trace_touches_what_the_kernel_reads_and_writes():
    rng = np.random.default_rng(4)
    x = positive(rng, 2, 2, 3, 3, CB)
    out = np.empty((2, 2 * CB), np.float32)
    trace = assert_footprint(pooling.global_average_pool, (x, out), {"x": x}, {"out": out})
    kernel_fn, kernel_args = kernel_and_arguments(bind(pooling.global_average_pool, x, out))
    assert_threads_partition(kernel_args, kernel_fn, trace)


@pytest.mark.parametrize("out_features", [2 * linear.TILE, 2 * linear.TILE - 3])
def test_linear_trace_touches_what_the_kernel_reads_and_writes(out_features):
    rng = np.random.default_rng(5)
    in_features = 5
    x = positive(rng, 2, in_features)
    w = positive(rng, -(-out_features // linear.TILE), in_features, linear.TILE)
    b = positive(rng, out_features)
    out = np.empty((2, out_features), np.float32)
    # the last tile's features past out_features are summed but never stored: loads no output shows
    dead = np.zeros(w.shape, bool)
    dead[-1, :, out_features - (w.shape[0] - 1) * linear.TILE:] = True
    trace = assert_footprint(linear.linear, (x, w, b, out), {"x": x, "weight": w, "bias": b}, {"out": out},
                             dead_reads={"weight": dead.ravel()})
    kernel_fn, kernel_args = kernel_and_arguments(bind(linear.linear, x, w, b, out))
    assert_threads_partition(kernel_args, kernel_fn, trace)


@pytest.mark.parametrize("n_images, height, width, residual", [(1, 3, 4, False), (2, 5, 7, True)])
def test_pointwise_trace_register_bytes_are_the_models_l1_count(n_images, height, width, residual):
    """With one micro-tile's channels per work item and one pixel tile per image row run,
    the kernel loads each input once per block group, each weight vector and bias once per
    micro-tile, and each output (and residual) once: the model's register-level formula."""
    from engine.traffic import CacheBudget

    rng = np.random.default_rng(6)
    cin_blocks, cout_blocks = 2, 2 * pointwise.BLOCKS + 1
    x = positive(rng, n_images, cin_blocks, height, width, CB)
    w = positive(rng, cout_blocks, cin_blocks * CB, CB)
    b = positive(rng, cout_blocks, CB)
    out = np.empty((n_images, cout_blocks, height, width, CB), np.float32)
    res = positive(rng, *out.shape) if residual else None
    pixels = n_images * height * width
    call = bind(pointwise.pointwise_conv, x, w, b, out, 0.0, 6.0, res, pixels, pointwise.BLOCKS * CB)
    trace = trace_call(*kernel_and_arguments(call))
    budget = CacheBudget(L1=1 << 15, L2=1 << 20, L3=1 << 24, lanes=CB)
    model = pointwise.pointwise_bytes(n_images, cin_blocks * CB, cout_blocks * CB, height, width, pixels,
                                      pointwise.BLOCKS * CB, residual, budget)
    # the model counts the micro-tiles as the kernel walks them, restarting at each image
    assert register_bytes(trace) == model["L1"]


def test_pointwise_trace_follows_the_input_channel_chunks_of_wide_layers():
    """A 1x1 conv with more input-channel blocks than the kernel's chunk (engine.kernels.
    pointwise.K_CHUNK, where the kernel has chunks) walks its pixels once per chunk, the
    partial sums waiting in the output: the trace reads them back as the kernel does."""
    from engine.trace.pointwise import K_CHUNK

    rng = np.random.default_rng(7)
    cin_blocks = K_CHUNK + 1 if K_CHUNK < 1 << 20 else 3
    height, width, pixels = 5, 9, pointwise.ROWS + 1         # 5+ pixel tiles of > ROWS pixels: no weight prefetch
    x = positive(rng, 1, cin_blocks, height, width, CB)
    w = positive(rng, 1, cin_blocks * CB, CB)
    b = positive(rng, 1, CB)
    out = np.empty((1, 1, height, width, CB), np.float32)
    res = positive(rng, *out.shape)
    args = (x, w, b, out, -np.inf, np.inf, res, pixels, 16)
    trace = assert_footprint(pointwise.pointwise_conv, args, {"x": x, "weight": w, "bias": b, "residual": res},
                             {"out": out}, every=7)          # 7: coprime to the channel blocks' sizes
    stores = trace[trace[:, 2] == STORE][:, 1].sum()
    if K_CHUNK < cin_blocks:
        assert stores > out.nbytes          # partial sums stored, then read back and stored again
    else:
        assert stores == out.nbytes


def test_layout_change_traces_touch_what_the_conversions_read_and_write():
    from engine.kernels.layout import nchw_to_nchwc, nchwc_to_nchw

    rng = np.random.default_rng(8)
    x = positive(rng, 2, 2 * CB, 3, 2)                        # whole channel blocks: the traced lines are exact
    blocked = np.empty((2, 2, 3, 2, CB), np.float32)
    assert_footprint(nchw_to_nchwc, (x, blocked), {"x": x}, {"out": blocked})
    planar = np.empty(x.shape, np.float32)
    source = positive(rng, *blocked.shape)
    assert_footprint(nchwc_to_nchw, (source, planar), {"x": source}, {"out": planar})


@pytest.mark.parametrize("cout_blocks", [1, 2, 4])
def test_direct_conv_trace_register_bytes_follow_the_kernels_interior_paths(cout_blocks):
    """A 1x1 dense conv over a 1 x 12 row (every column interior), one input channel: a group
    of at most two real blocks runs 2 blocks x PAIR_PIXELS (where the kernel has that path),
    else BLOCKS x PIXELS; per step of the loop the bias vectors, per tap one input scalar per
    pixel and one weight vector per block, then the outputs (repeated blocks included)."""
    pair = getattr(direct_conv, "PAIR_PIXELS", 0)
    rng = np.random.default_rng(9)
    x = positive(rng, 1, 1, 1, 12)
    w = positive(rng, cout_blocks, 1, 1, 1, CB)
    b = positive(rng, cout_blocks, CB)
    out = np.empty((1, cout_blocks, 1, 12, CB), np.float32)
    trace = trace_call(*kernel_and_arguments(bind(direct_conv.direct_conv, x, w, b, out, 1, 1, 0, 0, 1, 1,
                                                  -np.inf, np.inf)))
    vector = 4 * CB
    blocks, pixels = (2, pair) if pair and cout_blocks <= 2 else (direct_conv.BLOCKS, direct_conv.PIXELS)
    steps = 12 // pixels
    expected = steps * (blocks * vector + pixels * 4 + blocks * vector + blocks * pixels * vector)
    assert register_bytes(trace) == expected
