"""Access trace of the 1x1 conv (engine.kernels.pointwise): the kernel's own work items,
pixel tiles, block pairs, micro-tiles and software prefetches, walked without arithmetic.

The loop structure is pointwise's, line for line: `_pointwise_kernel` -> `trace_items`,
`walk_micro_tiles` -> `trace_walk`, the micro-kernel -> `trace_micro_tile`. Tile starts,
which micro-tiles prefetch the next pair's weights and a later layer's (`ahead`), are
decided by the kernel module's own njit helpers (`_tile_start`, `weight_prefetch`,
`prefetches_weights`), so they cannot drift apart; the footprint tests
(tests/test_access_trace.py) catch a change of the loops themselves.

Per micro-tile the micro-kernel (pointwise's docstring) first loads what its sums start
from (the residual, or an earlier input-channel chunk's partial sums in the output), then
per input-channel block touches the inputs' prefetch PREFETCH_TILES micro-tiles ahead
(ROWS * CB floats), on a full tile with a weight-prefetch step W_PREFETCH_LINES lines of
the next group's (or a later layer's) weights, one CB x CB weight slab per output block,
then the ROWS x CB inputs; after the channel loop the biases (on the last chunk), then the
outputs.
"""
from __future__ import annotations

from numba import njit

from engine.kernels import pointwise as _pointwise
from engine.kernels.layout import CB
from engine.kernels.pointwise import (BLOCKS, PREFETCH_TILES, ROWS, W_PREFETCH_LINES, _tile_start,
                                      prefetches_weights, weight_prefetch)
from engine.trace.records import FLOAT32, load, prefetch, store

# Input-channel blocks per chunk of walk_micro_tiles (a group walks its pixels once per
# chunk where its weights outgrow L1); a kernel without chunks walks them all at once.
K_CHUNK = getattr(_pointwise, "K_CHUNK", 1 << 30)


@njit(cache=True)
def trace_micro_tile(trace, count, rows, blocks, x_address, x_offset, x_block_stride, x_prefetch,
                     w_address, w_offset, w_block_stride, cin_blocks, bias_address, bias_offset,
                     out_address, out_offset, out_block_stride, start_address, has_start, finish,
                     w_prefetch, w_prefetch_step):
    """The micro-kernel's accesses (its arguments as `micro_tile` takes them, arrays as byte
    addresses): the sums start from `start` (the residual, or the previous input-channel
    chunk's partial sums in `out`) where has_start; bias and clip only where `finish`."""
    if has_start:
        for r in range(rows):
            for b in range(blocks):
                at = (out_offset + b * out_block_stride + r * CB) * FLOAT32
                count = load(trace, count, start_address + at, CB * FLOAT32)
    prefetching_weights = rows == ROWS and blocks == BLOCKS and w_prefetch_step != 0
    for k in range(cin_blocks):
        x_block = x_address + (x_offset + k * x_block_stride) * FLOAT32
        count = prefetch(trace, count, x_block + x_prefetch * FLOAT32, ROWS * CB * FLOAT32)
        if prefetching_weights:
            ahead = w_address + (w_offset + w_prefetch + k * w_prefetch_step) * FLOAT32
            for line in range(W_PREFETCH_LINES):
                count = prefetch(trace, count, ahead + 64 * line, 1)
        for b in range(blocks):
            count = load(trace, count, w_address + (w_offset + b * w_block_stride + k * CB * CB) * FLOAT32,
                         CB * CB * FLOAT32)
        count = load(trace, count, x_block, rows * CB * FLOAT32)
    if finish:
        for b in range(blocks):
            count = load(trace, count, bias_address + (bias_offset + b * CB) * FLOAT32, CB * FLOAT32)
    for r in range(rows):
        for b in range(blocks):
            at = (out_offset + b * out_block_stride + r * CB) * FLOAT32
            count = store(trace, count, out_address + at, CB * FLOAT32)
    return count


@njit(cache=True)
def trace_walk(trace, count, x_address, x_offset, x_block_stride, w_address, cin_blocks, bias_address,
               out_address, out_offset, out_block_stride, residual_address, has_residual, pixels,
               block_begin, block_end, block_after, prefetch_weights, ahead, ahead_end, ahead_offset):
    """`walk_micro_tiles`' accesses; returns (count, the new `ahead`)."""
    w_block_stride = cin_blocks * CB * CB
    chunked = cin_blocks > K_CHUNK and pixels > ROWS and not prefetch_weights
    block = block_begin
    while block < block_end:
        blocks = min(block_end - block, BLOCKS)
        next_block = block + blocks
        if next_block >= block_end:
            next_block = block_after
        next_pair = (next_block - block) * w_block_stride if prefetch_weights and next_block >= 0 else 0
        k = 0
        while k < cin_blocks:
            chunk = min(K_CHUNK, cin_blocks - k) if chunked else cin_blocks
            first = k == 0
            start_address = residual_address if first else out_address
            q = 0
            while q < pixels:
                rows = min(pixels - q, ROWS)
                x_prefetch = min(PREFETCH_TILES * ROWS, pixels - q - rows) * CB
                w_prefetch, w_step = weight_prefetch(q // ROWS, cin_blocks, next_pair)
                if w_step == 0 and ahead < ahead_end and rows == ROWS and blocks == BLOCKS:
                    w_prefetch = ahead_offset + ahead - block * w_block_stride
                    w_step = 16 * W_PREFETCH_LINES
                    ahead += cin_blocks * 16 * W_PREFETCH_LINES
                count = trace_micro_tile(trace, count, rows, blocks, x_address, x_offset + k * x_block_stride + q * CB,
                                         x_block_stride, x_prefetch, w_address, block * w_block_stride + k * CB * CB,
                                         w_block_stride, chunk, bias_address, block * CB, out_address,
                                         out_offset + block * out_block_stride + q * CB, out_block_stride,
                                         start_address, has_residual or not first, k + chunk >= cin_blocks,
                                         w_prefetch, w_step)
                q += rows
            k += chunk
        block += blocks
    return count, ahead


@njit(cache=True)
def trace_pointwise(trace, count, x_address, x_shape, w_address, bias_address, out_address, cout_blocks,
                    residual_address, has_residual, pointwise_pixels, pointwise_channels, ahead_offset,
                    ahead_elements, item_begin, item_end):
    """`_pointwise_kernel`'s accesses for its work items [item_begin, item_end) (one
    thread's share). x_shape: (N, Cin_blocks, H, W); addresses in bytes."""
    n_images, cin_blocks, height, width = x_shape
    pixels_per_image = height * width
    total_pixels = n_images * pixels_per_image
    n_pixel_tiles = (total_pixels + pointwise_pixels - 1) // pointwise_pixels
    blocks_per_tile = max(1, pointwise_channels // CB)
    n_channel_tiles = (cout_blocks + blocks_per_tile - 1) // blocks_per_tile
    block_stride = pixels_per_image * CB
    prefetch_weights = prefetches_weights(total_pixels, pointwise_pixels)
    n_items = n_pixel_tiles * n_channel_tiles
    if not prefetch_weights:
        ahead_elements = 0
    for item in range(item_begin, item_end):
        ahead = item * ahead_elements // n_items
        ahead_end = (item + 1) * ahead_elements // n_items
        pixel_tile = item // n_channel_tiles
        channel_tile = item - pixel_tile * n_channel_tiles
        pixel = _tile_start(pixel_tile, n_pixel_tiles, total_pixels, pointwise_pixels)
        pixel_end = _tile_start(pixel_tile + 1, n_pixel_tiles, total_pixels, pointwise_pixels)
        block_begin = channel_tile * blocks_per_tile
        block_end = min(cout_blocks, block_begin + blocks_per_tile)
        block_after = block_end if block_end < cout_blocks else 0
        while pixel < pixel_end:
            image = pixel // pixels_per_image
            q_begin = pixel - image * pixels_per_image
            q_end = min(pixel_end - image * pixels_per_image, pixels_per_image)
            count, ahead = trace_walk(trace, count, x_address, (image * cin_blocks * pixels_per_image + q_begin) * CB,
                                      block_stride, w_address, cin_blocks, bias_address, out_address,
                                      (image * cout_blocks * pixels_per_image + q_begin) * CB, block_stride,
                                      residual_address, has_residual, q_end - q_begin, block_begin, block_end,
                                      block_after, prefetch_weights, ahead, ahead_end, ahead_offset)
            pixel = image * pixels_per_image + q_end
    return count


def pointwise_items(x_shape, cout_blocks: int, pointwise_pixels: int, pointwise_channels: int) -> int:
    """Work items of a 1x1 conv (pixel tiles x channel tiles), as `_pointwise_kernel` counts them."""
    n_images, _, height, width = x_shape[:4]
    pixel_tiles = -(-(n_images * height * width) // pointwise_pixels)
    blocks_per_tile = max(1, pointwise_channels // CB)
    return pixel_tiles * -(-cout_blocks // blocks_per_tile)
