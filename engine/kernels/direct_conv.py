"""Dense (group 1) convolution from a plain NCHW input to NCHWc: the stem of a MobileNet,
or any conv that is neither 1x1 nor depthwise. Any kernel size, strides, pads, dilations.

Layout. x (N, Cin, H, W) plain float32 -> out (N, Cob, Ho, Wo, CB). Weights are packed
(Cob, Cin, kh, kw, CB): for one output block, the CB output channels of one tap
(ci, i, j) are one contiguous vector, so a tap is "broadcast one input scalar, FMA with one
weight vector".

Work items. (image, group of four output blocks, output row), spread by prange (the stem
has 1 x 1 x 112 = 112 of them: each input pixel is read once for all 32 channels). In an
interior row, interior columns (the whole window inside the input) go three pixels at a
time for the four blocks: 12 register accumulators (`register_scratch`) = 12 independent
FMA chains (a group of at most two real blocks, as the stem at 16 lanes, six pixels at a
time for its two: `_pair_columns`; so does every group of a conv with few input channels and
large kernels, ResNet's 7x7 RGB stem, one pair of blocks after the other: PAIR_CHANNELS); per tap 4 weight-vector loads and 3 broadcast input scalars feed 12 FMAs (a
2-block x 4-pixel tile feeds 8 FMAs from 6 loads and reads the input twice, once per pair
of blocks; bench/README has both timed). The taps (ci, i, j) are one flat loop over a
table of input offsets built once per call. Border rows and columns go one
pixel and one block at a time with the kernel-row and -column ranges clamped to the input.
No per-tap checks anywhere. Blocks past the last of a group of four repeat the last block
(same values, same place).

Napkin math for the stem (3 -> 32, 3x3, stride 2, 224 -> 112): 27 taps x 4 blocks per
pixel = 108 vector FMAs, 21.7 MFLOP in all: 21.7 MFLOP / (the core's FMA peak), half that
on two cores. It reads 0.6 MB and writes 1.6 MB: ~10 FLOP/byte,
compute bound, unlike everything else in the network -- in isolation. At batch 1 inside the
network its output region is usually out of cache (the run streams 14 MB of weights through
a smaller share of L3), so writing it costs a DRAM read for ownership and a write back:
~3.8 MB of DRAM traffic, about as long as the arithmetic on two cores.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import (FASTMATH, _U, _check_output_size, check_array, check_clip, check_int,
                                      register_scratch, launch)
from engine.kernels.activation import NO_ACTIVATION, activate_lanes, kernel_activation
from engine.kernels.layout import CB, channel_blocks

PIXELS = 3  # output pixels per step of the interior loop (x0..x2 below are written out for 3)
BLOCKS = 4  # output blocks per work item (b0..b3 below): all 32 channels of a MobileNet stem
_scratch_tile = register_scratch(BLOCKS * PIXELS * CB)  # 4 output blocks x 3 pixels of accumulators
# A group with at most two real blocks (the 32-channel stem at 16 lanes is two blocks) takes
# 2 blocks x PAIR_PIXELS pixels instead: the same 12 accumulators, none spent on a repeated
# block (4 x 3 would compute the second block three times over).
PAIR_PIXELS = 6
_scratch_block = register_scratch(CB)  # each call is an accumulator of its own
# With at most PAIR_CHANNELS input channels (an RGB stem) and four blocks' weights above
# PAIR_WEIGHT_BYTES, every group takes the 2 x PAIR_PIXELS tile, one pair of blocks after the
# other: the 4 x 3 tile streams 4 blocks' weights per 3 pixels (4 x 9.4 KB for ResNet's 7x7
# RGB stem, beside input rows: more than L1 holds), the pairs half that per 6 pixels and
# read the (small) input twice; ~10 % faster on that stem (1 thread, bench/README)
PAIR_CHANNELS = 4
PAIR_WEIGHT_BYTES = 16 * 1024


@njit(cache=True)
def pairs_for_every_group(in_channels, n_taps):
    """True where every group of blocks runs as pairs (see PAIR_CHANNELS); n_taps = Cin*kh*kw."""
    return in_channels <= PAIR_CHANNELS and n_taps * BLOCKS * CB * 4 > PAIR_WEIGHT_BYTES


@njit(cache=True, fastmath=FASTMATH, inline="always")  # one call site; a real call costs refcounts
def _border_columns(xf, wf, bf, of, x_image, o_row, w_block, b_base, in_channels, height, width, kernel_h,
                    kernel_w, ih0, i_lo, i_hi, stride_w, pad_left, dilation_h, dilation_w, col_start, col_end,
                    low, high, act, alpha, beta):
    """Output pixels col_start..col_end-1 of one output row and block, one at a time; kernel
    rows i_lo..i_hi-1 are the ones inside the input, kernel columns are clamped per pixel.
    Four accumulators (kernel columns j, j+1, j+2, j+3 of each row; the last 1-3 columns of a
    row into the second to fourth), summed at the end: one accumulator made every FMA wait
    for the previous one (4 cycles), and ResNet's 7x7 stem spent ~20 % of its time on its 4
    border columns and 3 border rows (bench/README, "Per model and layer kind")."""
    acc = _scratch_block()
    acc1 = _scratch_block()
    acc2 = _scratch_block()
    acc3 = _scratch_block()
    plane = height * width
    ud = _U(dilation_w)
    for ow in range(col_start, col_end):
        iw0 = ow * stride_w - pad_left
        j_lo = 0 if iw0 >= 0 else (-iw0 + dilation_w - 1) // dilation_w
        j_hi = min(kernel_w, (width - 1 - iw0) // dilation_w + 1) if iw0 < width else 0
        for lane in range(CB):
            acc[lane] = bf[_U(b_base + lane)]
            acc1[lane] = 0.0
            acc2[lane] = 0.0
            acc3[lane] = 0.0
        for ci in range(in_channels):
            for i in range(i_lo, i_hi):
                x_row = x_image + ci * plane + (ih0 + i * dilation_h) * width + iw0
                w_row = w_block + ((ci * kernel_h + i) * kernel_w) * CB
                # the row's columns four at a time into four accumulators (four FMA chains:
                # one chain waits 4 cycles per FMA), the last 1-3 into the other three
                j = j_lo
                while j + 4 <= j_hi:
                    ux = _U(x_row + j * dilation_w)
                    x0 = xf[ux]
                    x1 = xf[ux + ud]
                    x2 = xf[ux + _U(2) * ud]
                    x3 = xf[ux + _U(3) * ud]
                    uw = _U(w_row + j * CB)
                    for lane in range(CB):
                        acc[lane] += x0 * wf[uw + _U(lane)]
                        acc1[lane] += x1 * wf[uw + _U(CB + lane)]
                        acc2[lane] += x2 * wf[uw + _U(2 * CB + lane)]
                        acc3[lane] += x3 * wf[uw + _U(3 * CB + lane)]
                    j += 4
                if j < j_hi:
                    xv = xf[_U(x_row + j * dilation_w)]
                    uw = _U(w_row + j * CB)
                    for lane in range(CB):
                        acc1[lane] += xv * wf[uw + _U(lane)]
                if j + 1 < j_hi:
                    xv = xf[_U(x_row + (j + 1) * dilation_w)]
                    uw = _U(w_row + (j + 1) * CB)
                    for lane in range(CB):
                        acc2[lane] += xv * wf[uw + _U(lane)]
                if j + 2 < j_hi:
                    xv = xf[_U(x_row + (j + 2) * dilation_w)]
                    uw = _U(w_row + (j + 2) * CB)
                    for lane in range(CB):
                        acc3[lane] += xv * wf[uw + _U(lane)]
        for lane in range(CB):
            acc[lane] = (acc[lane] + acc1[lane]) + (acc2[lane] + acc3[lane])
        activate_lanes(acc, CB, act, alpha, beta)
        uo = _U(o_row + ow * CB)
        for lane in range(CB):
            of[uo + _U(lane)] = min(max(acc[lane], low), high)


@njit(cache=True, fastmath=FASTMATH, inline="always")  # one call site
def _pair_columns(xf, wf, bf, of, acc, x_image, ih0, width, stride_w, pad_left, tap_offset, n_taps,
                  b0, b1, block_weights, o_row0, o_row1, col_lo, col_hi, low, high, act, alpha, beta):
    """Interior columns col_lo.. of one interior output row for blocks b0 and b1 (b1 may be
    b0 again), PAIR_PIXELS pixels at a time: acc[(blk * PAIR_PIXELS + p) * CB + lane], 12
    independent FMA chains fed by 2 weight vectors and 6 broadcast inputs per tap. Returns
    the first column not done."""
    ow = col_lo
    us = _U(stride_w)
    while ow + PAIR_PIXELS <= col_hi:
        for lane in range(CB):
            bias0 = bf[_U(b0 * CB + lane)]
            bias1 = bf[_U(b1 * CB + lane)]
            for p in range(PAIR_PIXELS):
                acc[p * CB + lane] = bias0
                acc[(PAIR_PIXELS + p) * CB + lane] = bias1
        x_window = x_image + ih0 * width + ow * stride_w - pad_left
        for t in range(n_taps):
            ux = _U(x_window + tap_offset[t])
            x0 = xf[ux]
            x1 = xf[ux + us]
            x2 = xf[ux + _U(2) * us]
            x3 = xf[ux + _U(3) * us]
            x4 = xf[ux + _U(4) * us]
            x5 = xf[ux + _U(5) * us]
            uw0 = _U(b0 * block_weights + t * CB)
            uw1 = _U(b1 * block_weights + t * CB)
            for lane in range(CB):
                w0 = wf[uw0 + _U(lane)]
                w1 = wf[uw1 + _U(lane)]
                acc[lane] += x0 * w0
                acc[CB + lane] += x1 * w0
                acc[2 * CB + lane] += x2 * w0
                acc[3 * CB + lane] += x3 * w0
                acc[4 * CB + lane] += x4 * w0
                acc[5 * CB + lane] += x5 * w0
                acc[6 * CB + lane] += x0 * w1
                acc[7 * CB + lane] += x1 * w1
                acc[8 * CB + lane] += x2 * w1
                acc[9 * CB + lane] += x3 * w1
                acc[10 * CB + lane] += x4 * w1
                acc[11 * CB + lane] += x5 * w1
        activate_lanes(acc, 2 * PAIR_PIXELS * CB, act, alpha, beta)
        uo0 = _U(o_row0 + ow * CB)
        uo1 = _U(o_row1 + ow * CB)
        for k in range(PAIR_PIXELS * CB):
            of[uo0 + _U(k)] = min(max(acc[k], low), high)
        for k in range(PAIR_PIXELS * CB):
            of[uo1 + _U(k)] = min(max(acc[PAIR_PIXELS * CB + k], low), high)
        ow += PAIR_PIXELS
    return ow


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _direct_kernel(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                   clip_min, clip_max, act, alpha, beta):
    n_images, in_channels, height, width = x.shape
    n_blocks, _, kernel_h, kernel_w, _ = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    low = np.float32(clip_min)
    high = np.float32(clip_max)
    span_w = (kernel_w - 1) * dilation_w  # input columns one window covers, minus one
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 1 - span_w + pad_left) // stride_w + 1))
    xf = x.reshape(x.size)
    wf = weight.reshape(weight.size)
    bf = bias.reshape(bias.size)
    of = out.reshape(out.size)
    plane = height * width
    n_taps = in_channels * kernel_h * kernel_w
    block_weights = n_taps * CB  # elements of one block's packed weights
    # offset of tap t = (ci, i, j) in x from the window's top-left input element: one flat
    # tap loop instead of three nested ones (fewer loop overheads and register spills)
    tap_offset = np.empty(n_taps, np.int64)
    for ci in range(in_channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                tap_offset[(ci * kernel_h + i) * kernel_w + j] = ci * plane + i * dilation_h * width + j * dilation_w
    n_groups = (n_blocks + BLOCKS - 1) // BLOCKS
    all_pairs = pairs_for_every_group(in_channels, n_taps)
    for item in prange(n_images * n_groups * out_h):
        acc = _scratch_tile()
        oh = item % out_h
        image_group = item // out_h
        group = image_group % n_groups
        n = image_group // n_groups
        # four output blocks per item; past the last block the last one is computed again
        # (same values written to the same place)
        b0 = BLOCKS * group
        b1 = min(b0 + 1, n_blocks - 1)
        b2 = min(b0 + 2, n_blocks - 1)
        b3 = min(b0 + 3, n_blocks - 1)
        x_image = n * in_channels * plane
        o_row0 = ((n * n_blocks + b0) * out_h + oh) * out_w * CB
        o_row1 = ((n * n_blocks + b1) * out_h + oh) * out_w * CB
        o_row2 = ((n * n_blocks + b2) * out_h + oh) * out_w * CB
        o_row3 = ((n * n_blocks + b3) * out_h + oh) * out_w * CB
        ih0 = oh * stride_h - pad_top
        i_lo = 0 if ih0 >= 0 else (-ih0 + dilation_h - 1) // dilation_h
        i_hi = min(kernel_h, (height - 1 - ih0) // dilation_h + 1) if ih0 < height else 0
        i_hi = max(i_hi, i_lo)
        interior_row = i_lo == 0 and i_hi == kernel_h
        ow = col_lo
        if interior_row and (n_blocks - b0 <= 2 or all_pairs):
            ow = _pair_columns(xf, wf, bf, of, acc, x_image, ih0, width, stride_w, pad_left, tap_offset, n_taps,
                               b0, b1, block_weights, o_row0, o_row1, col_lo, col_hi, low, high, act, alpha, beta)
            if n_blocks - b0 > 2:   # the group's other two blocks over the same columns
                _pair_columns(xf, wf, bf, of, acc, x_image, ih0, width, stride_w, pad_left, tap_offset, n_taps,
                              b2, b3, block_weights, o_row2, o_row3, col_lo, col_hi, low, high, act, alpha, beta)
            # the columns left (fewer than PAIR_PIXELS) by the 4 x 3 loop and the borders below
        while interior_row and ow + PIXELS <= col_hi:
            # acc[(blk * PIXELS + p) * CB + lane]: 4 blocks x 3 pixels = 12 independent FMA chains
            for lane in range(CB):
                bias0 = bf[_U(b0 * CB + lane)]
                bias1 = bf[_U(b1 * CB + lane)]
                bias2 = bf[_U(b2 * CB + lane)]
                bias3 = bf[_U(b3 * CB + lane)]
                for p in range(PIXELS):
                    acc[p * CB + lane] = bias0
                    acc[(PIXELS + p) * CB + lane] = bias1
                    acc[(2 * PIXELS + p) * CB + lane] = bias2
                    acc[(3 * PIXELS + p) * CB + lane] = bias3
            x_window = x_image + ih0 * width + ow * stride_w - pad_left
            us = _U(stride_w)
            for t in range(n_taps):
                ux = _U(x_window + tap_offset[t])
                x0 = xf[ux]
                x1 = xf[ux + us]
                x2 = xf[ux + _U(2) * us]
                uw0 = _U(b0 * block_weights + t * CB)
                uw1 = _U(b1 * block_weights + t * CB)
                uw2 = _U(b2 * block_weights + t * CB)
                uw3 = _U(b3 * block_weights + t * CB)
                for lane in range(CB):
                    w0 = wf[uw0 + _U(lane)]
                    w1 = wf[uw1 + _U(lane)]
                    w2 = wf[uw2 + _U(lane)]
                    w3 = wf[uw3 + _U(lane)]
                    acc[lane] += x0 * w0
                    acc[CB + lane] += x1 * w0
                    acc[2 * CB + lane] += x2 * w0
                    acc[3 * CB + lane] += x0 * w1
                    acc[4 * CB + lane] += x1 * w1
                    acc[5 * CB + lane] += x2 * w1
                    acc[6 * CB + lane] += x0 * w2
                    acc[7 * CB + lane] += x1 * w2
                    acc[8 * CB + lane] += x2 * w2
                    acc[9 * CB + lane] += x0 * w3
                    acc[10 * CB + lane] += x1 * w3
                    acc[11 * CB + lane] += x2 * w3
            activate_lanes(acc, BLOCKS * PIXELS * CB, act, alpha, beta)
            uo0 = _U(o_row0 + ow * CB)
            uo1 = _U(o_row1 + ow * CB)
            uo2 = _U(o_row2 + ow * CB)
            uo3 = _U(o_row3 + ow * CB)
            for k in range(PIXELS * CB):
                of[uo0 + _U(k)] = min(max(acc[k], low), high)
            for k in range(PIXELS * CB):
                of[uo1 + _U(k)] = min(max(acc[PIXELS * CB + k], low), high)
            for k in range(PIXELS * CB):
                of[uo2 + _U(k)] = min(max(acc[2 * PIXELS * CB + k], low), high)
            for k in range(PIXELS * CB):
                of[uo3 + _U(k)] = min(max(acc[3 * PIXELS * CB + k], low), high)
            ow += PIXELS
        # The rest one pixel and one block at a time: in an interior row the left border and
        # the right border plus the pixels left over from the groups of PIXELS; in a border
        # row (kernel rows clamped) all of it. One call site, so it is compiled once.
        left_end = col_lo if interior_row else 0
        right_start = ow if interior_row else 0
        for part in range(2 * BLOCKS):
            start = 0 if part % 2 == 0 else right_start
            end = left_end if part % 2 == 0 else out_w
            b = min(b0 + part // 2, n_blocks - 1)
            o_row = ((n * n_blocks + b) * out_h + oh) * out_w * CB
            _border_columns(xf, wf, bf, of, x_image, o_row, b * block_weights, b * CB, in_channels, height, width,
                            kernel_h, kernel_w, ih0, i_lo, i_hi, stride_w, pad_left, dilation_h, dilation_w, start,
                            end, low, high, act, alpha, beta)


def pack_direct(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pack ONNX conv weights for `direct_conv`.

    weight: (Cout, Cin, kh, kw); bias: (Cout,) or None.
    Returns (packed_weight (Cob, Cin, kh, kw, CB), packed_bias (Cob, CB)) float32
    C-contiguous, Cob = ceil(Cout / CB); output channels Cout..Cob*CB are zero.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4 or min(weight.shape) < 1:
        raise ValueError(f"pack_direct: weight must have shape (Cout, Cin, kh, kw), got {weight.shape}")
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (out_channels,):
            raise ValueError(f"pack_direct: bias must have shape ({out_channels},), got {bias.shape}")
    n_blocks = channel_blocks(out_channels)
    padded = np.zeros((n_blocks * CB, in_channels, kernel_h, kernel_w), np.float32)
    padded[:out_channels] = weight
    packed = np.ascontiguousarray(
        padded.reshape(n_blocks, CB, in_channels, kernel_h, kernel_w).transpose(0, 2, 3, 4, 1))
    packed_bias = np.zeros(n_blocks * CB, np.float32)
    if bias is not None:
        packed_bias[:out_channels] = bias
    return packed, packed_bias.reshape(n_blocks, CB)


def direct_conv(x: np.ndarray, packed_weight: np.ndarray, packed_bias: np.ndarray, out: np.ndarray,
                stride_h: int, stride_w: int, pad_top: int, pad_left: int, dilation_h: int, dilation_w: int,
                clip_min: float, clip_max: float, *, activation=NO_ACTIVATION) -> None:
    """out = clip(act(conv(x, w) + bias), clip_min, clip_max), written in place.

    x: (N, Cin, H, W) float32 plain NCHW; packed_weight (Cob, Cin, kh, kw, CB) and
    packed_bias (Cob, CB) from `pack_direct`; out: (N, Cob, Ho, Wo, CB) float32. Ho, Wo come
    from out (the caller derived them from all four pads); input outside H x W reads as 0.
    Strides and dilations >= 1, pads >= 0; clip_min <= 0 <= clip_max. activation: (name,
    alpha, beta) applied before the clip (engine.kernels.activation), one with f(0) = 0 (none,
    hardswish, silu) so padded lanes stay 0; default none.
    """
    fn = "direct_conv"
    stride_h = check_int(fn, "stride_h", stride_h, 1)
    stride_w = check_int(fn, "stride_w", stride_w, 1)
    pad_top = check_int(fn, "pad_top", pad_top, 0)
    pad_left = check_int(fn, "pad_left", pad_left, 0)
    dilation_h = check_int(fn, "dilation_h", dilation_h, 1)
    dilation_w = check_int(fn, "dilation_w", dilation_w, 1)
    low, high = check_clip(fn, clip_min, clip_max)
    act, alpha, beta = kernel_activation(fn, activation)
    check_array(fn, "x", x, (None, None, None, None))
    n_images, in_channels, height, width = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "packed_weight", packed_weight, (None, in_channels, None, None, CB))
    n_blocks, _, kernel_h, kernel_w, _ = packed_weight.shape
    if min(packed_weight.shape) < 1:
        raise ValueError(f"{fn}: packed_weight must have no empty dimension, got {packed_weight.shape}")
    check_array(fn, "packed_bias", packed_bias, (n_blocks, CB))
    check_array(fn, "out", out, (n_images, n_blocks, None, None, CB))
    out_h, out_w = out.shape[2:4]
    _check_output_size(fn, "height", out_h, height, kernel_h, stride_h, pad_top, dilation_h)
    _check_output_size(fn, "width", out_w, width, kernel_w, stride_w, pad_left, dilation_w)
    launch(_direct_kernel, x, packed_weight, packed_bias, out, stride_h, stride_w, pad_top, pad_left, dilation_h,
           dilation_w, low, high, act, alpha, beta)


def direct_conv_flops(batch: int, in_channels: int, out_channels: int, out_h: int, out_w: int,
                      kh: int, kw: int) -> int:
    """FLOPs of one dense conv: 2 per multiply-accumulate (every tap, padding included)."""
    return 2 * batch * out_channels * out_h * out_w * in_channels * kh * kw


def direct_conv_bytes(batch: int, in_channels: int, out_channels: int, height: int, width: int, out_h: int,
                      out_w: int, kh: int, kw: int, stride_h: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: per output pixel and group of BLOCKS output blocks, Cin*kh*kw input
    broadcasts (per pair of blocks where pairs run); weight vectors per tap once per step of
    the interior loop: 4 per PIXELS pixels for a group of 3-4 real blocks, 2 per PAIR_PIXELS
    pixels per pair for one of at most two or where pairs_for_every_group (border
    pixels, one at a time, are not counted apart). Across a boundary: the input once if the kh input
    rows a row of outputs needs stay resident (they are reused by the next output row), else
    once per kernel row (kh / stride times); weights and outputs once.
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, by_level, fits

    cout = budget.padded(out_channels)
    blocks = cout // budget.lanes
    groups = -(-blocks // BLOCKS)
    x_bytes = batch * in_channels * height * width * FLOAT32
    w_bytes = cout * (in_channels * kh * kw + 1) * FLOAT32
    y_bytes = batch * cout * out_h * out_w * FLOAT32
    taps = batch * out_h * out_w * in_channels * kh * kw
    # weight vectors per tap and output pixel, summed over the groups (the kernel's two tiles),
    # and input broadcasts (once per pair of blocks where pairs run, else once per group)
    all_pairs = pairs_for_every_group(in_channels, in_channels * kh * kw)
    pairs = [1 if blocks - g * BLOCKS <= 2 else 2 if all_pairs else 0 for g in range(groups)]
    vectors = sum(2 * p / PAIR_PIXELS if p else BLOCKS / PIXELS for p in pairs)
    broadcasts = sum(p or 1 for p in pairs)
    registers = taps * broadcasts * FLOAT32 + round(taps * vectors * budget.lanes * FLOAT32) + y_bytes
    rows = kh * width * in_channels * FLOAT32
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        x_traffic = x_bytes if fits(rows, capacity) else x_bytes * max(1.0, kh / stride_h)
        below[boundary] = x_traffic + w_bytes + y_bytes
    return by_level(registers, below)
