"""Squeeze-and-excitation as one step, on NCHWc activations.

    pooled[n, c] = mean over H, W of x[n, c]                          (squeeze)
    hidden[n, s] = clip(act(sum_c W1[s, c] pooled[n, c] + b1[s]), low, high)
    scale[n, c]  = gate(sum_s W2[c, s] hidden[n, s] + b2[c])          (excite)
    out[n, c, h, w] = x[n, c, h, w] * scale[n, c]

MobileNetV3: act none with clip (0, inf) (ReLU), gate hardsigmoid (1/6, 1/2); EfficientNet-B0:
act silu, gate sigmoid. Four parallel passes in one numba function:
1. pool, items (image, channel block): x read once, CB-lane sums in four register accumulators;
2. W1, items = squeezed rows s: the row W1[s, :] (Cp floats) stays in L1 while every image's
   pooled vector streams past it; per image one CB-lane partial sum, then its lanes added
   in a fixed order (no 'reassoc': the sum does not depend on vectorisation);
3. W2, items = channel blocks: the block's W2 columns (S x CB floats) stay in L1 while every
   image's hidden vector streams past; one vector FMA per squeezed channel; the gate, then
   the channel mask (padded channels' scale exactly 0: gate(0) is 1/2 for a sigmoid);
4. scale, items (image, channel block) in the order of pass 1, so a thread reads back the
   planes it pooled from its own core's caches: x read once more, out written once.
Passes 2 and 3 walk the weights once per call, not once per image (MobileNetV3-Large's
largest SE holds 2 x 240 x 960 floats, 1.8 MB). But where the weights are no larger than
one image (EfficientNet's 672 x 14 x 14, squeezed 28: 150 KB against 527 KB) and the batch
is at least PER_IMAGE_BATCH, an item is a whole image, its four passes back to back: its
planes are still in the core's L2 when pass 4 reads them again, where the whole batch's
would have been evicted (batch 16, 2 threads: 826 -> 484 us). out may be x itself: pass 4
reads each vector before it writes it.

Napkin math (MobileNetV3-Large, 672 x 14 x 14, squeezed 168, per image): x 527 KB read
twice (the second time from L2), out 527 KB written, weights 903 KB once per call;
2 x 132 kFLOP + 2 x 226 kMAC: about 0.5 FLOP/byte, memory bound.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from engine.kernels._common import FASTMATH, _U, check_array, check_range, launch, register_scratch
from engine.kernels.activation import NO_ACTIVATION, activate, kernel_activation
from engine.kernels.layout import CB, channel_blocks

_scratch_lanes = register_scratch(CB)
_scratch_sums = register_scratch(4 * CB)

SERIAL_MACS = 64 * 1024   # below this many multiply-accumulates per 1x1 conv, passes 2 and 3 run serially
# From this batch on, and when the weights are no larger than one image, items are whole
# images (module docstring). A constant, not 2 x numba.get_num_threads(): reading the thread
# count inside a kernel makes numba refuse to cache it (a ctypes global). 4 gives each of
# this 2-core machine's threads two images; a machine with more cores than images would
# leave some idle in this pass.
PER_IMAGE_BATCH = 4


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _pool_plane(xf, pooled, item, pixels, inverse):
    """pooled[item * CB + lane] = mean of plane `item` (= n * Cb + b) of x, in four partial
    sums (pixels p..p+3) so four add chains run at once."""
    acc = _scratch_sums()
    for k in range(4 * CB):
        acc[k] = 0.0
    base = item * pixels * CB
    quads = pixels // 4
    for p in range(quads):
        ux = _U(base + p * 4 * CB)
        for k in range(4 * CB):
            acc[k] += xf[ux + _U(k)]
    for p in range(quads * 4, pixels):
        ux = _U(base + p * CB)
        for lane in range(CB):
            acc[lane] += xf[ux + _U(lane)]
    uo = _U(item * CB)
    for lane in range(CB):
        pooled[uo + _U(lane)] = ((acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane])) * inverse


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _scale_plane(xf, of, scale, item, pixels):
    """Plane `item` of out = the same plane of x times its CB scales, four pixels per pass:
    the four x vectors loaded into a stack scratch, multiplied, then stored (out may be x;
    with every load before every store LLVM vectorises each pass into 4 loads, 4 multiplies
    and 4 stores; a loop of one pixel per pass it vectorised across pixels instead, with
    shuffles, several times slower: bench/README "Batch 1")."""
    factor = _scratch_sums()
    acc = _scratch_sums()
    us = _U(item * CB)
    for k in range(4 * CB):
        factor[k] = scale[us + _U(k % CB)]
    base = item * pixels * CB
    quads = pixels // 4
    for p in range(quads):
        ux = _U(base + p * 4 * CB)
        for k in range(4 * CB):
            acc[k] = xf[ux + _U(k)] * factor[k]
        for k in range(4 * CB):
            of[ux + _U(k)] = acc[k]
    for p in range(quads * 4, pixels):
        ux = _U(base + p * CB)
        for lane in range(CB):
            acc[lane] = xf[ux + _U(lane)] * factor[lane]
        for lane in range(CB):
            of[ux + _U(lane)] = acc[lane]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _hidden_row(w1f, b1, pooled, hidden, s, n_images, n_blocks, squeezed, act, alpha, beta, low, high):
    """hidden[n, s] = clip(act(W1[s, :] . pooled[n, :] + b1[s])) for every image n. Four
    partial sums (blocks b, b+1, b+2, b+3 of the row) so four FMA chains run at once: one
    chain waits an FMA latency per block."""
    acc = _scratch_sums()
    padded = n_blocks * CB
    quads = n_blocks // 4
    w_row = s * padded
    for n in range(n_images):
        for k in range(4 * CB):
            acc[k] = 0.0
        p_row = n * padded
        for q in range(quads):
            uw = _U(w_row + q * 4 * CB)
            up = _U(p_row + q * 4 * CB)
            for k in range(4 * CB):
                acc[k] += w1f[uw + _U(k)] * pooled[up + _U(k)]
        for b in range(quads * 4, n_blocks):
            uw = _U(w_row + b * CB)
            up = _U(p_row + b * CB)
            for lane in range(CB):
                acc[lane] += w1f[uw + _U(lane)] * pooled[up + _U(lane)]
        total = b1[s]
        for lane in range(CB):
            total += (acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane])
        hidden[n * squeezed + s] = min(max(activate(total, act, alpha, beta), low), high)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _hidden_four_rows(w1f, b1, pooled, hidden, s, n_images, n_blocks, squeezed, act, alpha, beta, low, high):
    """hidden[n, s..s+3] for every image n: four rows of W1 at once, so each pooled vector
    (read from L2 at a large batch) serves four FMAs (the four rows' chains), the rows'
    4 x Cp floats staying in L1."""
    acc = _scratch_sums()
    padded = n_blocks * CB
    w0 = s * padded
    for n in range(n_images):
        for k in range(4 * CB):
            acc[k] = 0.0
        p_row = n * padded
        for b in range(n_blocks):
            up = _U(p_row + b * CB)
            uw = _U(w0 + b * CB)
            for lane in range(CB):
                v = pooled[up + _U(lane)]
                acc[lane] += w1f[uw + _U(lane)] * v
                acc[CB + lane] += w1f[uw + _U(padded + lane)] * v
                acc[2 * CB + lane] += w1f[uw + _U(2 * padded + lane)] * v
                acc[3 * CB + lane] += w1f[uw + _U(3 * padded + lane)] * v
        for r in range(4):
            total = b1[s + r]
            for lane in range(CB):
                total += acc[r * CB + lane]
            hidden[n * squeezed + s + r] = min(max(activate(total, act, alpha, beta), low), high)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _scale_block(w2f, b2f, maskf, hidden, scale, b, n_images, n_blocks, squeezed, act, alpha, beta):
    """scale[n, block b] = mask * gate(W2[block b, :] hidden[n, :] + b2) for every image n:
    one vector FMA per squeezed channel, in four partial sums (s, s+1, s+2, s+3)."""
    acc = _scratch_sums()
    padded = n_blocks * CB
    w_block = b * squeezed * CB
    ub = _U(b * CB)
    quads = squeezed // 4
    for n in range(n_images):
        for k in range(4 * CB):
            acc[k] = 0.0
        h_row = n * squeezed
        for q in range(quads):
            h0 = hidden[h_row + 4 * q]
            h1 = hidden[h_row + 4 * q + 1]
            h2 = hidden[h_row + 4 * q + 2]
            h3 = hidden[h_row + 4 * q + 3]
            uw = _U(w_block + q * 4 * CB)
            for lane in range(CB):
                acc[lane] += h0 * w2f[uw + _U(lane)]
                acc[CB + lane] += h1 * w2f[uw + _U(CB + lane)]
                acc[2 * CB + lane] += h2 * w2f[uw + _U(2 * CB + lane)]
                acc[3 * CB + lane] += h3 * w2f[uw + _U(3 * CB + lane)]
        for s in range(quads * 4, squeezed):
            h = hidden[h_row + s]
            uw = _U(w_block + s * CB)
            for lane in range(CB):
                acc[lane] += h * w2f[uw + _U(lane)]
        us = _U(n * padded + b * CB)
        for lane in range(CB):
            v = b2f[ub + _U(lane)] + ((acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane]))
            scale[us + _U(lane)] = activate(v, act, alpha, beta) * maskf[ub + _U(lane)]


@njit(cache=True)
def per_image_path(n_images, squeezed, padded, pixels):
    """True where `_squeeze_excite_kernel` runs whole-image work items (its four passes per
    image) instead of four batch-wide passes: batch >= PER_IMAGE_BATCH and the two weight
    matrices (2 * S * Cp floats) no larger than one image (Cp * H * W floats). Shared by the
    kernel, `squeeze_excite_bytes` and the access trace (engine.trace.calls)."""
    return n_images >= PER_IMAGE_BATCH and 2 * squeezed * padded <= padded * pixels


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")  # numpy: as in elementwise (the gate's divide)
def _squeeze_excite_kernel(x, w1, b1, w2, b2, mask, out, hidden_act, hidden_alpha, hidden_beta, low, high,
                           gate_act, gate_alpha, gate_beta):
    # x, out: (N, Cb, H, W, CB); w1 (S, Cp); b1 (S,); w2 (Cb, S, CB); b2, mask (Cb, CB)
    n_images, n_blocks, height, width, _ = x.shape
    squeezed = w1.shape[0]
    padded = n_blocks * CB
    pixels = height * width
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    w1f = w1.reshape(w1.size)
    w2f = w2.reshape(w2.size)
    b2f = b2.reshape(b2.size)
    maskf = mask.reshape(mask.size)
    pooled = np.empty(n_images * padded, np.float32)     # (N, Cp)
    hidden = np.empty(n_images * squeezed, np.float32)   # (N, S)
    scale = np.empty(n_images * padded, np.float32)      # (N, Cp)
    inverse = np.float32(1.0 / pixels)
    h_alpha, h_beta = np.float32(hidden_alpha), np.float32(hidden_beta)
    g_alpha, g_beta = np.float32(gate_alpha), np.float32(gate_beta)
    f_low, f_high = np.float32(low), np.float32(high)

    quads = squeezed // 4
    if per_image_path(n_images, squeezed, padded, pixels):
        # one image per item, its four passes back to back: the image's planes are still in
        # this core's L2 when the scale pass reads them again (the whole batch's are not), and
        # the weights (no larger than one image) are re-read from L2 per image
        for n in prange(n_images):
            for block in range(n_blocks):
                _pool_plane(xf, pooled, n * n_blocks + block, pixels, inverse)
            image_pooled = pooled[n * padded:(n + 1) * padded]
            image_hidden = hidden[n * squeezed:(n + 1) * squeezed]
            image_scale = scale[n * padded:(n + 1) * padded]
            for q in range(quads):
                _hidden_four_rows(w1f, b1, image_pooled, image_hidden, 4 * q, 1, n_blocks, squeezed, hidden_act,
                                  h_alpha, h_beta, f_low, f_high)
            for row in range(4 * quads, squeezed):
                _hidden_row(w1f, b1, image_pooled, image_hidden, row, 1, n_blocks, squeezed, hidden_act, h_alpha,
                            h_beta, f_low, f_high)
            for block in range(n_blocks):
                _scale_block(w2f, b2f, maskf, image_hidden, image_scale, block, 1, n_blocks, squeezed, gate_act,
                             g_alpha, g_beta)
            for block in range(n_blocks):
                _scale_plane(xf, of, scale, n * n_blocks + block, pixels)
        return

    # 1. pool: item = n * n_blocks + b, the order of pooled's blocks
    for item in prange(n_images * n_blocks):
        _pool_plane(xf, pooled, item, pixels, inverse)

    # 2 and 3, the two 1x1 convs: serial below SERIAL_MACS multiply-accumulates (a parallel
    # region costs about a microsecond to start, more than such a pass takes)
    if n_images * squeezed * padded < SERIAL_MACS:
        for row in range(squeezed):
            _hidden_row(w1f, b1, pooled, hidden, row, n_images, n_blocks, squeezed, hidden_act, h_alpha, h_beta,
                        f_low, f_high)
        for block in range(n_blocks):
            _scale_block(w2f, b2f, maskf, hidden, scale, block, n_images, n_blocks, squeezed, gate_act, g_alpha, g_beta)
    else:
        for item in prange(quads + squeezed - 4 * quads):   # four rows at a time, then the last rows one by one
            if item < quads:
                _hidden_four_rows(w1f, b1, pooled, hidden, 4 * item, n_images, n_blocks, squeezed, hidden_act,
                                  h_alpha, h_beta, f_low, f_high)
            else:
                _hidden_row(w1f, b1, pooled, hidden, 3 * quads + item, n_images, n_blocks, squeezed, hidden_act,
                            h_alpha, h_beta, f_low, f_high)
        for b in prange(n_blocks):
            _scale_block(w2f, b2f, maskf, hidden, scale, b, n_images, n_blocks, squeezed, gate_act, g_alpha, g_beta)

    # 4. out = x * scale: items in pass 1's order
    for item in prange(n_images * n_blocks):
        _scale_plane(xf, of, scale, item, pixels)


# ---------------------------------------------------------------------------- public API

def pack_squeeze_excite(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> tuple:
    """Pack the two 1x1 convs of a squeeze-and-excitation for `squeeze_excite`.

    w1: (S, C) (the squeezing conv's (S, C, 1, 1) weight, reshaped), b1: (S,), w2: (C, S),
    b2: (C,). Returns (w1 (S, Cp), b1 (S,), w2 (Cb, S, CB), b2 (Cb, CB), mask (Cb, CB))
    float32 C-contiguous, Cp = Cb * CB padded channels: padded channels' weights and biases
    0, mask 1.0 on the C real channels and 0.0 on the padded ones.
    """
    fn = "pack_squeeze_excite"
    w1 = np.asarray(w1)
    if w1.ndim != 2 or min(w1.shape) < 1:
        raise ValueError(f"{fn}: w1 must have shape (S, C) with S, C >= 1, got {w1.shape}")
    squeezed, channels = w1.shape
    for name, array, shape in (("b1", b1, (squeezed,)), ("w2", w2, (channels, squeezed)), ("b2", b2, (channels,))):
        if np.shape(array) != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape} (w1 is {w1.shape}), got {np.shape(array)}")
    for name, array in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        if not np.isfinite(np.asarray(array, np.float64)).all():
            raise ValueError(f"{fn}: {name} must be finite")
    n_blocks = channel_blocks(channels)
    padded = n_blocks * CB
    packed_w1 = np.zeros((squeezed, padded), np.float32)
    packed_w1[:, :channels] = w1
    packed_b1 = np.ascontiguousarray(b1, np.float32)
    columns = np.zeros((padded, squeezed), np.float32)
    columns[:channels] = w2
    packed_w2 = np.ascontiguousarray(columns.reshape(n_blocks, CB, squeezed).transpose(0, 2, 1))
    packed_b2 = np.zeros(padded, np.float32)
    packed_b2[:channels] = b2
    mask = np.zeros(padded, np.float32)
    mask[:channels] = 1.0
    return packed_w1, packed_b1, packed_w2, packed_b2.reshape(n_blocks, CB), mask.reshape(n_blocks, CB)


def squeeze_excite(x: np.ndarray, packed: tuple, out: np.ndarray, *, hidden_activation=NO_ACTIVATION,
                   hidden_clip=(-math.inf, math.inf), gate_activation=("sigmoid", 0.0, 0.0)) -> None:
    """out = x * gate(W2 clip(act(W1 mean_hw(x) + b1)) + b2), per image and channel, in place.

    x, out: (N, Cb, H, W, CB) float32 NCHWc, the same shape; out may be x itself. packed:
    from `pack_squeeze_excite` for C channels, ceil(C / CB) = Cb. hidden_activation and
    gate_activation: (name, alpha, beta), any of engine.kernels.activation's; hidden_clip
    (low, high) applied after the hidden activation ((0, inf) is ReLU). Padded lanes of out
    come out 0.
    """
    fn = "squeeze_excite"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, n_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "out", out, x.shape)
    if out is not x and np.may_share_memory(out, x):
        raise ValueError(f"{fn}: out must be x itself or not overlap x")
    if not isinstance(packed, tuple) or len(packed) != 5:
        raise ValueError(f"{fn}: packed must be the 5-tuple pack_squeeze_excite returns, got "
                         f"{type(packed).__name__}{'' if not isinstance(packed, tuple) else f' of {len(packed)}'}")
    w1, b1, w2, b2, mask = packed
    check_array(fn, "packed[0] (w1)", w1, (None, n_blocks * CB))
    squeezed = w1.shape[0]
    if squeezed < 1:
        raise ValueError(f"{fn}: packed[0] (w1) must have at least one row, got {w1.shape}")
    check_array(fn, "packed[1] (b1)", b1, (squeezed,))
    check_array(fn, "packed[2] (w2)", w2, (n_blocks, squeezed, CB))
    check_array(fn, "packed[3] (b2)", b2, (n_blocks, CB))
    check_array(fn, "packed[4] (mask)", mask, (n_blocks, CB))
    hidden = kernel_activation(f"{fn}: hidden_activation", hidden_activation, zero_preserving=False)
    gate = kernel_activation(f"{fn}: gate_activation", gate_activation, zero_preserving=False)
    low, high = check_range(fn, "hidden_clip", hidden_clip)
    launch(_squeeze_excite_kernel, x, w1, b1, w2, b2, mask, out, hidden[0], hidden[1], hidden[2], low, high,
           gate[0], gate[1], gate[2])


def squeeze_excite_flops(batch: int, channels: int, squeezed: int, h: int, w: int) -> int:
    """FLOPs of one squeeze-and-excitation: the pool's add and the scaling multiply per input
    element, 2 per multiply-accumulate of the two 1x1 convs (biases, activations and the
    pool's final 1 / (H W) not counted)."""
    return batch * (2 * channels * h * w + 4 * squeezed * channels)


def squeeze_excite_bytes(batch: int, channels: int, squeezed: int, h: int, w: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: x loaded twice (pool, scale), out stored once; W1's rows and the pooled
    vectors, W2's columns: about one load per multiply-accumulate. Across a boundary: out
    once; x once if what must stay resident between the pool and the scale pass fits half
    the level above (one image on the per-image path, the whole batch otherwise: counted as
    if one thread had it all), else twice; the weights once, or once per image on the
    per-image path where they do not fit. The per-image vectors (pooled, hidden, scale: a
    few KB) are counted at L1 only."""
    from engine.traffic import FLOAT32, by_level, fits     # here: as in pooling.global_average_pool_bytes

    padded = budget.padded(channels)
    x_bytes = batch * padded * h * w * FLOAT32
    weight_bytes = (2 * squeezed * padded + squeezed + 2 * padded) * FLOAT32
    per_image = per_image_path(batch, squeezed, padded, h * w)     # as the kernel decides
    registers = (3 * x_bytes + 3 * batch * squeezed * padded * FLOAT32       # x twice, out; W1 + pooled, W2
                 + batch * (3 * padded + 2 * squeezed) * FLOAT32)
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        reads = 1 if fits(x_bytes // batch if per_image else x_bytes, capacity) else 2
        weight_passes = batch if per_image and not fits(weight_bytes, capacity) else 1
        below[boundary] = reads * x_bytes + x_bytes + weight_passes * weight_bytes
    return by_level(registers, below)
