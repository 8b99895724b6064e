"""Access trace of the dense KxK conv on NCHWc (engine.kernels.conv_nchwc, ResNet's convs).

`_conv_kernel`'s loops, walked without arithmetic: work items (channel tile, pixel tile),
pixel tile fastest (the split from the kernel module's `work_split`: pixel tiles widened where
the input is copied, input channel chunks); per item its pixels one image's segment at a time; where the windows
leave the input, the segment's input rows copied into a zero-bordered buffer first (the
kernel's per-segment np.empty, at a modelled address: engine.trace.scratch); then per
group of up to MAX_BLOCKS output blocks the segment's pixels in micro-tiles of
ROWS_FOR_BLOCKS[blocks], once per input channel chunk; after all groups the activation pass (where there is one) over
the segment's outputs, pixel by pixel and block by block. Tile starts come from the
kernel module's own `_tile_start`, tile shapes from its ROWS_FOR_BLOCKS.

A micro-tile's records (one chunk), per input-channel block and kernel row (the unit the micro-kernel's
loops walk: per tap and lane B weight vectors, then R input scalars): one record per block
of the row's kw weight slabs (kw * L * CB floats, contiguous; L = CB input lanes, or 4 for
Cin <= 4), then one per pixel of its kw * CB inputs; after the chunk the biases (B vectors,
last chunk only), then per block the residual (first chunk, where there is one) or the
partial sums (later chunks), and the outputs of its R pixels (contiguous: a micro-tile's pixels are
consecutive in one image).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.conv_nchwc import MAX_BLOCKS, MAX_ROWS, ROWS_FOR_BLOCKS, _tile_start, work_split
from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, load, store

VECTOR = CB * FLOAT32


@njit(cache=True)
def trace_micro_tile(trace, count, rows, blocks, src_address, src_offsets, src_block_stride, src_row_stride,
                     cin_blocks, kernel_h, kernel_w, in_lanes, w_address, w_offset, w_block_stride, b_address,
                     bias_offset, out_address, out_first, out_block_stride, residual_address, init, finish):
    """The micro-kernel's accesses (its arguments, arrays as byte addresses; out_first: the
    element offset of the tile's first output in its first block; cin_blocks: this chunk's
    input blocks; init: 1 adds the residual, 2 the partial sums in out; finish: adds the bias)."""
    slab = kernel_w * in_lanes * CB
    for cb in range(cin_blocks):
        for i in range(kernel_h):
            w_row = w_offset + (cb * kernel_h + i) * slab
            for b in range(blocks):
                count = load(trace, count, w_address + (w_row + b * w_block_stride) * FLOAT32, slab * FLOAT32)
            x_row = cb * src_block_stride + i * src_row_stride
            for r in range(rows):
                count = load(trace, count, src_address + (src_offsets[r] + x_row) * FLOAT32, kernel_w * VECTOR)
    if finish:
        count = load(trace, count, b_address + bias_offset * FLOAT32, blocks * VECTOR)
    for b in range(blocks):
        at = (out_first + b * out_block_stride) * FLOAT32
        if init == 1:
            count = load(trace, count, residual_address + at, rows * VECTOR)
        elif init == 2:
            count = load(trace, count, out_address + at, rows * VECTOR)
        count = store(trace, count, out_address + at, rows * VECTOR)
    return count


@njit(cache=True)
def trace_conv_nchwc(trace, count, x_address, x_shape, w_address, w_shape, b_address, out_address, out_h, out_w,
                     residual_address, has_residual, stride_h, stride_w, pad_top, pad_left, activated, pixels,
                     channels, scratch, item_begin, item_end):
    """`_conv_kernel`'s accesses for its work items [item_begin, item_end).
    x_shape: (N, Cin_blocks, H, W); w_shape: (Cout_blocks, kh, kw, L input lanes); scratch: the byte
    address of this thread's zero-bordered input buffer; activated: an activation pass runs."""
    n_images, cin_blocks, height, width = x_shape
    cout_blocks, kernel_h, kernel_w, in_lanes = w_shape
    howo = out_h * out_w
    total = n_images * howo
    blocks_per_item = max(1, channels // CB)
    full_rows = ROWS_FOR_BLOCKS[min(MAX_BLOCKS, blocks_per_item, cout_blocks)]
    n_channel_tiles, n_pixel_tiles, cin_chunk, needs_copy, padded_w = work_split(
        n_images, height, width, cout_blocks, out_h, out_w, kernel_h, kernel_w, in_lanes, stride_h, stride_w,
        pad_top, pad_left, pixels, channels)
    tap_weights = kernel_h * kernel_w * in_lanes * CB
    w_block_stride = cin_blocks * tap_weights
    out_block_stride = howo * CB
    src_offsets = np.empty(MAX_ROWS, np.int64)
    for item in range(item_begin, item_end):
        channel_tile = item // n_pixel_tiles
        pixel_tile = item - channel_tile * n_pixel_tiles
        pixel_begin = _tile_start(pixel_tile, n_pixel_tiles, total, full_rows)
        pixel_end = _tile_start(pixel_tile + 1, n_pixel_tiles, total, full_rows)
        block_begin = channel_tile * blocks_per_item
        block_end = min(cout_blocks, block_begin + blocks_per_item)
        segment = pixel_begin
        while segment < pixel_end:
            image = segment // howo
            segment_end = min(pixel_end, (image + 1) * howo)
            first_row = (segment - image * howo) // out_w
            last_row = (segment_end - 1 - image * howo) // out_w
            row0 = first_row * stride_h - pad_top
            if needs_copy:
                src_rows = (last_row - first_row) * stride_h + kernel_h
                row_stride = padded_w * CB
                block_stride = src_rows * row_stride
                src_address = scratch
                r_lo = max(0, -row0)
                r_hi = max(r_lo, min(src_rows, height - row0))
                for cb in range(cin_blocks):
                    d = cb * block_stride
                    if r_lo > 0:
                        count = store(trace, count, src_address + d * FLOAT32, r_lo * row_stride * FLOAT32)
                    if src_rows > r_hi:
                        count = store(trace, count, src_address + (d + r_hi * row_stride) * FLOAT32,
                                      (src_rows - r_hi) * row_stride * FLOAT32)
                    for r in range(r_lo, r_hi):
                        s = ((image * cin_blocks + cb) * height + row0 + r) * width * CB
                        count = load(trace, count, x_address + s * FLOAT32, width * VECTOR)
                        count = store(trace, count, src_address + (d + r * row_stride) * FLOAT32,
                                      row_stride * FLOAT32)
                image_offset = 0
                first_input_row = row0
            else:
                src_address = x_address
                row_stride = width * CB
                block_stride = height * width * CB
                image_offset = image * cin_blocks * block_stride
                first_input_row = 0
            block = block_begin
            while block < block_end:
                blocks = min(block_end - block, MAX_BLOCKS)
                rows_max = ROWS_FOR_BLOCKS[blocks]
                out_first = (image * cout_blocks + block) * howo * CB
                cb0 = 0
                while cb0 < cin_blocks:  # input channel chunks: partial sums kept in out
                    chunk = min(cin_chunk, cin_blocks - cb0)
                    init = (1 if has_residual else 0) if cb0 == 0 else 2
                    finish = cb0 + chunk >= cin_blocks
                    q = segment
                    rem = segment - image * howo
                    oh = rem // out_w
                    ow = rem - oh * out_w
                    while q < segment_end:
                        rows = min(segment_end - q, rows_max)
                        tile_first = out_first + rem * CB
                        for r in range(rows):
                            column = ow * stride_w if needs_copy else ow * stride_w - pad_left
                            src_offsets[r] = (image_offset + cb0 * block_stride
                                              + (oh * stride_h - pad_top - first_input_row) * row_stride
                                              + column * CB)
                            rem += 1
                            ow += 1
                            if ow == out_w:
                                ow = 0
                                oh += 1
                        count = trace_micro_tile(trace, count, rows, blocks, src_address, src_offsets, block_stride,
                                                 row_stride, chunk, kernel_h, kernel_w, in_lanes, w_address,
                                                 block * w_block_stride + cb0 * tap_weights, w_block_stride,
                                                 b_address, block * CB, out_address, tile_first, out_block_stride,
                                                 residual_address, init, finish)
                        q += rows
                    cb0 += chunk
                block += blocks
            if activated:
                for q in range(segment, segment_end):
                    rem = q - image * howo
                    for b in range(block_begin, block_end):
                        at = out_address + ((image * cout_blocks + b) * howo + rem) * VECTOR
                        count = load(trace, count, at, VECTOR)
                        count = store(trace, count, at, VECTOR)
            segment = segment_end
    return count


def conv_nchwc_items(x_shape, w_shape, out_shape, stride_h: int, stride_w: int, pad_top: int, pad_left: int,
                     pixels: int, channels: int) -> int:
    """Work items of a dense NCHWc conv (channel tiles x pixel tiles), from `_conv_kernel`'s
    own work split (engine.kernels.conv_nchwc.work_split). x_shape (N, Cin_blocks, H, W, ..),
    w_shape: the packed weight's (Cout_blocks, Cin_blocks, kh, kw, L, CB), out_shape (N,
    Cout_blocks, Ho, Wo, ..)."""
    n_images, _, height, width = x_shape[:4]
    cout_blocks, _, kernel_h, kernel_w, in_lanes = w_shape[:5]
    out_h, out_w = out_shape[2:4]
    n_channel_tiles, n_pixel_tiles, _, _, _ = work_split(
        n_images, height, width, cout_blocks, out_h, out_w, kernel_h, kernel_w, in_lanes, stride_h, stride_w,
        pad_top, pad_left, pixels, channels)
    return int(n_channel_tiles * n_pixel_tiles)
