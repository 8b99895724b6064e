"""Access trace of the dense conv (engine.kernels.direct_conv, the stem): work items (image,
group of BLOCKS output blocks, output row); in an interior row the interior columns, for a
group of at most two real blocks, or any group where the kernel's pairs_for_every_group (the RGB stem),
first PAIR_PIXELS at a time for two blocks (two pairs one after the other), then PIXELS
at a time for BLOCKS (per tap that many input scalars and one weight vector per block),
then the border columns one pixel and one block at a time with clamped kernel ranges."""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels import direct_conv as _direct_conv
from engine.kernels.direct_conv import BLOCKS, PIXELS, pairs_for_every_group
from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, load, store

VECTOR = CB * FLOAT32
# A group of at most two real blocks runs 2 blocks x PAIR_PIXELS pixels first (where the
# kernel has that path; else 0: never).
PAIR_PIXELS = getattr(_direct_conv, "PAIR_PIXELS", 0)


@njit(cache=True)
def _trace_border_columns(trace, count, x_address, w_address, b_address, out_address, x_image, o_row, w_block,
                          b_base, in_channels, height, width, kernel_h, kernel_w, ih0, i_lo, i_hi, stride_w,
                          pad_left, dilation_h, dilation_w, col_start, col_end):
    plane = height * width
    for ow in range(col_start, col_end):
        iw0 = ow * stride_w - pad_left
        j_lo = 0 if iw0 >= 0 else (-iw0 + dilation_w - 1) // dilation_w
        j_hi = min(kernel_w, (width - 1 - iw0) // dilation_w + 1) if iw0 < width else 0
        count = load(trace, count, b_address + b_base * FLOAT32, VECTOR)
        for ci in range(in_channels):
            for i in range(i_lo, i_hi):
                x_row = x_image + ci * plane + (ih0 + i * dilation_h) * width + iw0
                w_row = w_block + ((ci * kernel_h + i) * kernel_w) * CB
                for j in range(j_lo, j_hi):
                    count = load(trace, count, x_address + (x_row + j * dilation_w) * FLOAT32, FLOAT32)
                if j_hi > j_lo:
                    count = load(trace, count, w_address + (w_row + j_lo * CB) * FLOAT32, (j_hi - j_lo) * VECTOR)
        count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, VECTOR)
    return count


@njit(cache=True)
def trace_direct(trace, count, x_address, x_shape, w_address, w_shape, b_address, out_address, out_h, out_w,
                 stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, item_begin, item_end):
    """`_direct_kernel`'s accesses for its work items [item_begin, item_end).
    x_shape: (N, Cin, H, W); w_shape: (Cob, Cin, kh, kw)."""
    n_images, in_channels, height, width = x_shape
    n_blocks, _, kernel_h, kernel_w = w_shape
    span_w = (kernel_w - 1) * dilation_w
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 1 - span_w + pad_left) // stride_w + 1))
    plane = height * width
    n_taps = in_channels * kernel_h * kernel_w
    block_weights = n_taps * CB
    tap_offset = np.empty(n_taps, np.int64)
    for ci in range(in_channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                tap_offset[(ci * kernel_h + i) * kernel_w + j] = ci * plane + i * dilation_h * width + j * dilation_w
    n_groups = (n_blocks + BLOCKS - 1) // BLOCKS
    all_pairs = pairs_for_every_group(in_channels, n_taps)
    blocks = np.empty(BLOCKS, np.int64)
    for item in range(item_begin, item_end):
        oh = item % out_h
        image_group = item // out_h
        group = image_group % n_groups
        n = image_group // n_groups
        for k in range(BLOCKS):
            blocks[k] = min(BLOCKS * group + k, n_blocks - 1)
        x_image = n * in_channels * plane
        ih0 = oh * stride_h - pad_top
        i_lo = 0 if ih0 >= 0 else (-ih0 + dilation_h - 1) // dilation_h
        i_hi = min(kernel_h, (height - 1 - ih0) // dilation_h + 1) if ih0 < height else 0
        i_hi = max(i_hi, i_lo)
        interior_row = i_lo == 0 and i_hi == kernel_h
        ow = col_lo
        if PAIR_PIXELS and interior_row and (n_blocks - BLOCKS * group <= 2 or all_pairs):
            # blocks 0 and 1 of the group, then (where the group has more) blocks 2 and 3
            # over the same columns
            pairs = 1 if n_blocks - BLOCKS * group <= 2 else 2
            start = ow
            for pair in range(pairs):
                ow = start
                while ow + PAIR_PIXELS <= col_hi:
                    for k in range(2 * pair, 2 * pair + 2):
                        count = load(trace, count, b_address + blocks[k] * VECTOR, VECTOR)
                    x_window = x_image + ih0 * width + ow * stride_w - pad_left
                    for t in range(n_taps):
                        for p in range(PAIR_PIXELS):
                            count = load(trace, count,
                                         x_address + (x_window + tap_offset[t] + p * stride_w) * FLOAT32, FLOAT32)
                        for k in range(2 * pair, 2 * pair + 2):
                            count = load(trace, count, w_address + (blocks[k] * block_weights + t * CB) * FLOAT32,
                                         VECTOR)
                    for k in range(2 * pair, 2 * pair + 2):
                        o_row = ((n * n_blocks + blocks[k]) * out_h + oh) * out_w * CB
                        count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, PAIR_PIXELS * VECTOR)
                    ow += PAIR_PIXELS
        while interior_row and ow + PIXELS <= col_hi:
            for k in range(BLOCKS):
                count = load(trace, count, b_address + blocks[k] * VECTOR, VECTOR)
            x_window = x_image + ih0 * width + ow * stride_w - pad_left
            for t in range(n_taps):
                for p in range(PIXELS):
                    count = load(trace, count, x_address + (x_window + tap_offset[t] + p * stride_w) * FLOAT32,
                                 FLOAT32)
                for k in range(BLOCKS):
                    count = load(trace, count, w_address + (blocks[k] * block_weights + t * CB) * FLOAT32, VECTOR)
            for k in range(BLOCKS):
                o_row = ((n * n_blocks + blocks[k]) * out_h + oh) * out_w * CB
                count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, PIXELS * VECTOR)
            ow += PIXELS
        left_end = col_lo if interior_row else 0
        right_start = ow if interior_row else 0
        for part in range(2 * BLOCKS):
            start = 0 if part % 2 == 0 else right_start
            end = left_end if part % 2 == 0 else out_w
            b = min(BLOCKS * group + part // 2, n_blocks - 1)
            o_row = ((n * n_blocks + b) * out_h + oh) * out_w * CB
            count = _trace_border_columns(trace, count, x_address, w_address, b_address, out_address, x_image, o_row,
                                          b * block_weights, b * CB, in_channels, height, width, kernel_h, kernel_w,
                                          ih0, i_lo, i_hi, stride_w, pad_left, dilation_h, dilation_w, start, end)
    return count


def direct_items(x_shape, n_blocks: int, out_h: int) -> int:
    """Work items of a dense conv, as `_direct_kernel` counts them."""
    return x_shape[0] * -(-n_blocks // BLOCKS) * out_h
