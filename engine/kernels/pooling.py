"""Pooling on NCHWc activations: global average pooling (-> plain (N, C_padded) vectors)
and max pooling (-> NCHWc; its own section below).

Global average pool. Work items are (image, channel block), spread by prange; each sums its H x W pixels of CB
lanes in four register accumulators (`register_scratch`), then scales by 1 / (H * W). Padded
lanes are sums of zeros, so they stay exactly 0.

Napkin math (MobileNetV2: 1280 channels, 7 x 7): reads 251 KB, writes 5 KB, one add per
input element: 0.25 FLOP/byte, a streaming read.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import (FASTMATH, _U, _check_output_size, check_array, check_int, launch,
                                    register_scratch)
from engine.kernels.layout import CB

SUMS = 4  # independent partial sums per channel block (the 4-way sum below is written out)
_scratch_sums = register_scratch(SUMS * CB)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _global_average_pool_kernel(x, out):
    n_images, n_blocks, height, width, _ = x.shape
    pixels = height * width
    scale = np.float32(1.0 / pixels)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for item in prange(n_images * n_blocks):  # item = n * n_blocks + b, the order of out's blocks too
        # four partial sums (pixels p, p+1, p+2, p+3) so four add chains run at once: one chain
        # would wait an add latency (3-4 cycles) per pixel
        acc = _scratch_sums()
        for k in range(SUMS * CB):
            acc[k] = 0.0
        base = item * pixels * CB
        quads = pixels // SUMS
        for p in range(quads):
            ux = _U(base + p * SUMS * CB)
            for k in range(SUMS * CB):
                acc[k] += xf[ux + _U(k)]
        for p in range(quads * SUMS, pixels):
            ux = _U(base + p * CB)
            for lane in range(CB):
                acc[lane] += xf[ux + _U(lane)]
        uo = _U(item * CB)
        for lane in range(CB):
            of[uo + _U(lane)] = ((acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane])) * scale


def global_average_pool(x: np.ndarray, out: np.ndarray) -> None:
    """out[n, c] = mean of x over H and W, written in place.

    x: (N, Cb, H, W, CB) float32 NCHWc; out: (N, Cb * CB) float32 plain, channel c at
    column c (padded channels come out 0).
    """
    fn = "global_average_pool"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, n_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "out", out, (n_images, n_blocks * CB))
    launch(_global_average_pool_kernel, x, out)


def global_average_pool_flops(batch: int, channels: int, height: int, width: int) -> int:
    """One add per input element (the final scaling, one multiply per channel, not counted)."""
    return batch * channels * height * width


def global_average_pool_bytes(batch: int, channels: int, height: int, width: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level: the input once and the output once, everywhere."""
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, LEVELS

    padded = budget.padded(channels)
    moved = batch * padded * (height * width + 1) * FLOAT32
    return {level: moved for level in LEVELS}


# ---------------------------------------------------------------------------- max pooling
#
# ONNX MaxPool, 2-d, dilation 1, ceil_mode 0, NCHWc in and out. Padding never wins (it is
# -inf in ONNX), and the wrapper only accepts windows that overlap the input (start pads and
# the implied end pads smaller than the kernel), so a window's max is the max of the input
# elements it covers. That makes clamping free: a window row or column outside the input,
# clamped into it, lands on a row or column the window also covers, and max(a, a) = a. So
# every tap reads a valid address and no tap needs a mask or a sentinel (with 'ninf' in the
# fast-math flags an -inf constant would be undefined behaviour anyway).
#
# Work items are (image, band of output rows, channel block), channel block fastest, as in
# the depthwise conv. A 3x3 item (ResNet's 3x3 stride 2 pad 1) walks its rows with the three
# input rows clamped once per row and the interior columns written out (nine loads, eight
# maxes per output vector, constant offsets); the border columns clamp their columns. Other
# kernels clamp each pixel's tap ranges to the input once and loop over them.
#
# Napkin math (ResNet stem, 64 x 112 x 112 -> 56 x 56, per image): reads 3.2 MB, writes
# 0.8 MB, 9 compares per output element: 1.8 MFLOP, 0.45 compare per byte: a stream.

MAX_POOL_ROWS = 8  # output rows per work item (ResNet's 56 rows: 7 bands x channel blocks x images)

_scratch_max = register_scratch(CB)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _max_pool_generic_row(xf, of, x_plane, o_row, height, width, kernel_h, kernel_w, ih0, stride_w, pad_left,
                          out_w):
    """One output row, any kernel: per pixel the tap ranges clamped to the input once.
    x_plane: flat start of the (image, block) input plane; o_row: of this output row."""
    acc = _scratch_max()
    i_lo = max(0, -ih0)
    i_hi = min(kernel_h, height - ih0)
    for ow in range(out_w):
        iw0 = ow * stride_w - pad_left
        j_lo = max(0, -iw0)
        j_hi = min(kernel_w, width - iw0)
        first = _U(x_plane + ((ih0 + i_lo) * width + iw0 + j_lo) * CB)
        for lane in range(CB):
            acc[lane] = xf[first + _U(lane)]
        for i in range(i_lo, i_hi):
            x_row = x_plane + ((ih0 + i) * width + iw0) * CB
            for j in range(j_lo, j_hi):
                ux = _U(x_row + j * CB)
                for lane in range(CB):
                    acc[lane] = max(acc[lane], xf[ux + _U(lane)])
        uo = _U(o_row + ow * CB)
        for lane in range(CB):
            of[uo + _U(lane)] = acc[lane]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _max_pool_3x3_rows(xf, of, x_plane, o_plane, height, width, out_w, row_start, row_end, stride_h, stride_w,
                       pad_top, pad_left):
    """Output rows [row_start, row_end) of one (image, block) plane of a 3x3 max pool; rows
    and columns clamped into the input (see the section comment: clamping never changes a max)."""
    acc = _scratch_max()
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)          # first column whose window is inside
    col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
    col_stride = _U(stride_w * CB)
    row_floats = width * CB
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        r0 = _U(x_plane + min(max(ih0, 0), height - 1) * row_floats)
        r1 = _U(x_plane + min(max(ih0 + 1, 0), height - 1) * row_floats)
        r2 = _U(x_plane + min(max(ih0 + 2, 0), height - 1) * row_floats)
        o_row = o_plane + oh * out_w * CB
        start = _U(max(col_lo * stride_w - pad_left, 0) * CB)
        p0 = r0 + start
        p1 = r1 + start
        p2 = r2 + start
        q = _U(o_row + col_lo * CB)
        for _ in range(col_lo, col_hi):
            for lane in range(CB):
                u = _U(lane)
                m0 = max(max(xf[p0 + u], xf[p0 + _U(CB) + u]), xf[p0 + _U(2 * CB) + u])
                m1 = max(max(xf[p1 + u], xf[p1 + _U(CB) + u]), xf[p1 + _U(2 * CB) + u])
                m2 = max(max(xf[p2 + u], xf[p2 + _U(CB) + u]), xf[p2 + _U(2 * CB) + u])
                acc[lane] = max(max(m0, m1), m2)
            for lane in range(CB):
                of[q + _U(lane)] = acc[lane]
            p0 += col_stride
            p1 += col_stride
            p2 += col_stride
            q += _U(CB)
        for part in range(2):       # border columns [0, col_lo) and [col_hi, out_w)
            start_col = 0 if part == 0 else col_hi
            end_col = col_lo if part == 0 else out_w
            for ow in range(start_col, end_col):
                iw0 = ow * stride_w - pad_left
                c0 = _U(min(max(iw0, 0), width - 1) * CB)
                c1 = _U(min(max(iw0 + 1, 0), width - 1) * CB)
                c2 = _U(min(max(iw0 + 2, 0), width - 1) * CB)
                for lane in range(CB):
                    u = _U(lane)
                    m0 = max(max(xf[r0 + c0 + u], xf[r0 + c1 + u]), xf[r0 + c2 + u])
                    m1 = max(max(xf[r1 + c0 + u], xf[r1 + c1 + u]), xf[r1 + c2 + u])
                    m2 = max(max(xf[r2 + c0 + u], xf[r2 + c1 + u]), xf[r2 + c2 + u])
                    acc[lane] = max(max(m0, m1), m2)
                uo = _U(o_row + ow * CB)
                for lane in range(CB):
                    of[uo + _U(lane)] = acc[lane]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _max_pool_kernel(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, rows_per_band):
    n_images, n_blocks, height, width, _ = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    bands = (out_h + rows_per_band - 1) // rows_per_band
    is_3x3 = kernel_h == 3 and kernel_w == 3
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for item in prange(n_images * bands * n_blocks):
        b = item % n_blocks
        band = (item // n_blocks) % bands
        image_block = (item // (n_blocks * bands)) * n_blocks + b  # n * n_blocks + b
        x_plane = image_block * height * width * CB
        o_plane = image_block * out_h * out_w * CB
        row_start = band * out_h // bands
        row_end = (band + 1) * out_h // bands
        if is_3x3:
            _max_pool_3x3_rows(xf, of, x_plane, o_plane, height, width, out_w, row_start, row_end, stride_h,
                               stride_w, pad_top, pad_left)
        else:
            for oh in range(row_start, row_end):
                _max_pool_generic_row(xf, of, x_plane, o_plane + oh * out_w * CB, height, width, kernel_h,
                                      kernel_w, oh * stride_h - pad_top, stride_w, pad_left, out_w)


def max_pool(x: np.ndarray, out: np.ndarray, kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
             pad_top: int, pad_left: int) -> None:
    """out = ONNX MaxPool(x) (2-d, dilation 1, ceil_mode 0), written in place.

    x: (N, Cb, H, W, CB) float32 NCHWc; out: (N, Cb, Ho, Wo, CB) float32. Ho and Wo are
    taken from out: they imply the end pads (bottom, right); out must not overlap x. Padding never wins (ONNX pads
    with -inf). Every window must overlap the input: pad_top < kernel_h, pad_left < kernel_w,
    and the last row's and column's windows must start inside the input (the implied end
    pads < kernel); anything else is a ValueError (ONNX would give -inf there). Padded
    lanes of x (0) give padded lanes of out 0. Work items (image, band of MAX_POOL_ROWS
    output rows, channel block) run in parallel on numba's threads.
    """
    fn = "max_pool"
    kernel_h = check_int(fn, "kernel_h", kernel_h, 1)
    kernel_w = check_int(fn, "kernel_w", kernel_w, 1)
    stride_h = check_int(fn, "stride_h", stride_h, 1)
    stride_w = check_int(fn, "stride_w", stride_w, 1)
    pad_top = check_int(fn, "pad_top", pad_top, 0)
    pad_left = check_int(fn, "pad_left", pad_left, 0)
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, n_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "out", out, (n_images, n_blocks, None, None, CB))
    if np.may_share_memory(x, out):
        raise ValueError(f"{fn}: out must not overlap x (a window would read maxima already written), "
                         f"got out sharing memory with x")
    out_h, out_w = out.shape[2:4]
    for axis, size, got, kernel, stride, pad, kernel_name, pad_name in (
            ("height", height, out_h, kernel_h, stride_h, pad_top, "kernel_h", "pad_top"),
            ("width", width, out_w, kernel_w, stride_w, pad_left, "kernel_w", "pad_left")):
        if pad >= kernel:
            raise ValueError(f"{fn}: {pad_name} must be < {kernel_name} (a window wholly on the padding has no "
                             f"input to take the max of), got {pad_name}={pad}, {kernel_name}={kernel}")
        _check_output_size(fn, axis, got, size, kernel, stride, pad)
        end_pad = max(0, (got - 1) * stride + kernel - size - pad)   # the smallest end pad giving `got`
        if end_pad >= kernel:
            raise ValueError(f"{fn}: out {axis} {got} implies an end pad of {end_pad} >= {kernel_name} {kernel}: "
                             f"the last window would lie wholly on the padding (out {axis} must be <= "
                             f"{(size + pad - 1) // stride + 1} for input {axis} {size}, {pad_name} {pad}, "
                             f"stride {stride})")
    launch(_max_pool_kernel, x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, MAX_POOL_ROWS)


def max_pool_flops(batch: int, channels: int, out_h: int, out_w: int, kh: int, kw: int) -> int:
    """One compare per window element per output element (taps on the padding counted too)."""
    return batch * channels * out_h * out_w * kh * kw


def max_pool_bytes(batch: int, channels: int, h: int, w: int, out_h: int, out_w: int, kh: int, kw: int,
                   stride_h: int, stride_w: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: every output vector loads kh * kw input vectors and stores itself once.
    Across a boundary: the output once; the input once if the kh input rows one output row
    reads stay resident while the next output row is computed (its rows overlap them when
    the stride is below the kernel), else each input row once per output row reading it
    (kh / stride_h times). stride_w does not enter: a row's columns are re-read from L1."""
    from engine.traffic import FLOAT32, by_level, fits     # here: as in global_average_pool_bytes

    lanes = budget.lanes
    planes = batch * (budget.padded(channels) // lanes)
    x_bytes = planes * h * w * lanes * FLOAT32
    y_bytes = planes * out_h * out_w * lanes * FLOAT32
    registers = y_bytes * (kh * kw + 1)
    window_rows = kh * w * lanes * FLOAT32
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        x_traffic = x_bytes if fits(window_rows, budget.capacity_above(boundary)) else x_bytes * max(1.0, kh / stride_h)
        below[boundary] = x_traffic + y_bytes
    return by_level(registers, below)
