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
from engine.kernels.layout import CB, channel_blocks
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
    (1, 3, 2, 4, 4, 3, 1, 1, 5, 32, True, "none"),      # 3 input blocks: several input channel chunks
    (1, "rgb", 2, 9, 9, 7, 2, 3, 3, 32, False, "none"),  # Cin = 3: the 4-lane packing, pixel tiles widened
])
def test_conv_nchwc_trace_touches_what_the_kernel_reads_and_writes(n_images, cin_blocks, cout_blocks, height, width,
                                                                   kernel, stride, pad, pixels, channels, residual,
                                                                   activation):
    rng = np.random.default_rng(10)
    lanes = CB
    if cin_blocks == "rgb":
        cin_blocks, lanes = 1, conv_nchwc.SHORT_LANES
    x = positive(rng, n_images, cin_blocks, height, width, CB)
    w = positive(rng, cout_blocks, cin_blocks, kernel, kernel, lanes, CB)
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
    # the 4-lane packing: the input copy loads every lane, the micro-kernel sums the first 4
    dead = {"x": np.broadcast_to(np.arange(CB) >= lanes, x.shape).reshape(-1)} if lanes < CB else None
    if activation == "none":
        assert np.array_equal(trace, assert_footprint(conv_nchwc.conv_nchwc, args, inputs, {"out": out}, dead))
    else:
        _footprint_of_call(call, trace, inputs, {"out": out})
    assert_scratch_read_after_written(trace)
    assert bool(len(scratch_records(trace))) == (pad > 0)
    check_threads(conv_nchwc.conv_nchwc, args, trace, **act)


def _expected_items(n_images, cin, cout, size, kernel, stride, pad, pixels, channels):
    """The work items the kernel runs, from its documented split (module docstring), not
    from work_split: pixel tiles of at least Wo * floor((kh - 1) / stride) pixels where the
    input is copied (padding), times channel tiles."""
    out_size = (size + 2 * pad - kernel) // stride + 1
    if pad > 0 or (out_size - 1) * stride + kernel > size:
        pixels = max(pixels, out_size * ((kernel - 1) // stride))
    return -(-channel_blocks(cout) // max(1, channels // CB)) * -(-(n_images * out_size ** 2) // pixels)


@pytest.mark.parametrize("n_images, cin, cout, size, kernel, stride, pad", [
    (1, 64, 64, 56, 3, 1, 1),       # ResNet's 64x56x56 3x3: 28 items at 16 lanes (not 49)
    (1, 512, 512, 7, 3, 1, 1),      # 512-channel 3x3: input channel chunks
    (1, 3, 64, 224, 7, 2, 3),       # the RGB stem, 7x7 stride 2: 4-lane packing
    (2, 128, 256, 28, 3, 2, 1),     # stride 2, two images
    (1, 64, 128, 56, 1, 2, 0),      # strided 1x1: no copy, no widening
])
def test_conv_nchwc_trace_runs_the_kernels_work_items(n_images, cin, cout, size, kernel, stride, pad):
    from engine.trace.conv_nchwc import conv_nchwc_items
    weight, _bias = conv_nchwc.pack_conv_nchwc(np.zeros((cout, cin, kernel, kernel), np.float32), None)
    out_size = (size + 2 * pad - kernel) // stride + 1
    x_shape = (n_images, channel_blocks(cin), size, size, CB)
    out_shape = (n_images, channel_blocks(cout), out_size, out_size, CB)
    pixels, channels = conv_nchwc.DEFAULT_PIXELS, conv_nchwc.DEFAULT_CHANNELS
    items = conv_nchwc_items(x_shape, weight.shape, out_shape, stride, stride, pad, pad, pixels, channels)
    assert items == _expected_items(n_images, cin, cout, size, kernel, stride, pad, pixels, channels)
    if (cin, size, kernel, CB) == (64, 56, 3, 16) and channels == 64:
        assert items == 28
    # the kernel itself runs the same split: its own function, the kernel's prange bound
    n_channel_tiles, n_pixel_tiles, cin_chunk, _, _ = conv_nchwc.work_split(
        n_images, size, size, channel_blocks(cout), out_size, out_size, kernel, kernel, weight.shape[4], stride,
        stride, pad, pad, pixels, channels)
    assert n_channel_tiles * n_pixel_tiles == items
    tap_bytes = kernel * kernel * weight.shape[4] * CB * 4
    assert cin_chunk == max(1, conv_nchwc.L1_WEIGHT_BYTES // (conv_nchwc.MAX_BLOCKS * tap_bytes))


def touched_bytes(trace: np.ndarray, array: np.ndarray, kind: int) -> int:
    """Bytes of `kind` records inside `array` (records lie inside one array or outside it)."""
    start = array.__array_interface__["data"][0]
    inside = (trace[:, 0] >= start) & (trace[:, 0] < start + array.nbytes) & (trace[:, 2] == kind)
    return int(trace[inside, 1].sum())


def test_conv_nchwc_trace_reads_and_writes_the_partial_sums_per_chunk():
    """Three input blocks of 3x3 weights, more than one chunk: out is written once per
    chunk and read back by every chunk after the first."""
    rng = np.random.default_rng(12)
    cin_blocks = 3
    chunk = conv_nchwc.work_split(1, 4, 4, 1, 4, 4, 3, 3, CB, 1, 1, 1, 1, 64, 16)[2]
    chunks = -(-cin_blocks // chunk)
    x = positive(rng, 1, cin_blocks, 4, 4, CB)
    w = positive(rng, 1, cin_blocks, 3, 3, CB, CB)
    b = positive(rng, 1, CB)
    out = np.empty((1, 1, 4, 4, CB), np.float32)
    call = bind(conv_nchwc.conv_nchwc, x, w, b, out, 1, 1, 1, 1, -np.inf, np.inf, None, 64, 16)
    trace = trace_call(*kernel_and_arguments(call))
    stored = touched_bytes(trace, out, STORE)
    loaded = touched_bytes(trace, out, LOAD)
    assert stored == chunks * out.nbytes and loaded == (chunks - 1) * out.nbytes


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

@pytest.mark.parametrize("n_images, blocks, squeezed, height, width, path", [
    (2, 2, 5, 3, 3, "serial"),      # few MACs: passes 2 and 3 serial, on the calling thread
    (4, 8, 258, 2, 2, "parallel"),  # >= SERIAL_MACS at either width: four rows per item, then the last two one by one
    (4, 2, 6, 4, 4, "per_image"),   # batch 4, weights no larger than an image: whole-image items
    (5, 3, 9, 5, 5, "per_image"),   # 5 images over 2 and 3 threads; a last row after the quads
])
def test_squeeze_excite_trace_touches_what_the_kernel_reads_and_writes(n_images, blocks, squeezed, height, width,
                                                                       path):
    rng = np.random.default_rng(14)
    padded = blocks * CB
    per_image = squeeze_excite.per_image_path(n_images, squeezed, padded, height * width)
    assert per_image == (path == "per_image")
    parallel = per_image or n_images * squeezed * padded >= squeeze_excite.SERIAL_MACS
    assert parallel == (path != "serial")
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
    _footprint_of_call(call, trace, inputs, {"out": out}, every=11 if path == "parallel" else 1)
    assert_scratch_read_after_written(trace)
    for count in (2, 3):
        parts = [trace_call(kernel_fn, kernel_args, t, count) for t in range(count)]
        # each pass split over the threads: together they issue one thread's records, each once
        assert sorted(map(tuple, np.concatenate(parts))) == sorted(map(tuple, trace))
        hidden_stores = [len(p[(p[:, 0] >= SCRATCH_BASE) & (p[:, 1] == 4) & (p[:, 2] == STORE)]) for p in parts]
        assert sum(hidden_stores) == n_images * squeezed
        assert (min(hidden_stores) > 0) == parallel        # serial: thread 0 only


def test_squeeze_excite_trace_per_image_path_on_an_efficientnet_shape():
    """672 x 14 x 14 squeezed to 28, batch 4 (EfficientNet-B0's stage 5): the kernel runs
    whole-image items, and so does the trace: each image's planes read by the pool, then
    read again and written by the scale pass, before the next image's are touched; two
    threads split the images. The traced L1 bytes are the model's count (within 5 %)."""
    from engine.traffic import CacheBudget
    n_images, channels, squeezed, size = 4, 672, 28, 14
    blocks = channel_blocks(channels)
    rng = np.random.default_rng(15)
    x = positive(rng, n_images, blocks, size, size, CB)
    packed = squeeze_excite.pack_squeeze_excite(rng.standard_normal((squeezed, channels)), np.zeros(squeezed),
                                                rng.standard_normal((channels, squeezed)), np.zeros(channels))
    out = np.empty_like(x)
    assert squeeze_excite.per_image_path(n_images, squeezed, blocks * CB, size * size)
    kernel_fn, kernel_args = kernel_and_arguments(bind(squeeze_excite.squeeze_excite, x, packed, out))
    trace = trace_call(kernel_fn, kernel_args)
    image_bytes = x.nbytes // n_images
    start = x.__array_interface__["data"][0]
    in_x = (trace[:, 0] >= start) & (trace[:, 0] < start + x.nbytes)
    images = (trace[in_x, 0] - start) // image_bytes
    assert (np.diff(images) >= 0).all()           # image by image: never back to an earlier one
    for n in range(n_images):
        assert trace[in_x][images == n, 1].sum() == 2 * image_bytes     # pooled, then scaled
    parts = [trace_call(kernel_fn, kernel_args, t, 2) for t in range(2)]
    assert np.array_equal(np.concatenate(parts), trace)
    budget = CacheBudget(L1=1 << 15, L2=1 << 20, L3=1 << 24, lanes=CB)
    model = squeeze_excite.squeeze_excite_bytes(n_images, channels, squeezed, size, size, budget)["L1"]
    assert abs(register_bytes(trace) / model - 1) < 0.05, (register_bytes(trace), model)
    squeeze_excite.squeeze_excite(x, packed, out)      # the path the kernel takes runs


def test_squeeze_excite_rejects_an_out_that_partly_overlaps_x():
    x = np.zeros((1, 1, 3, 3, CB), np.float32)
    packed = squeeze_excite.pack_squeeze_excite(np.ones((2, CB)), np.zeros(2), np.ones((CB, 2)), np.zeros(CB))
    both = np.zeros(2 * x.size, np.float32)
    with pytest.raises(ValueError, match="out"):     # out starts one vector after x
        squeeze_excite.squeeze_excite(both[:x.size].reshape(x.shape), packed, both[CB:CB + x.size].reshape(x.shape))
    squeeze_excite.squeeze_excite(x, packed, x)        # out is x: in place, allowed


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
