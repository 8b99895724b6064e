"""Access trace of squeeze-and-excitation (engine.kernels.squeeze_excite): its four passes,
each split over the threads as its own prange is (a thread's share of pass 1, then of
pass 2, 3 and 4; passes 2 and 3 run on the calling thread alone below SERIAL_MACS).

1. pool, items (image, channel block): the plane read front to back (one record, as the
   global average pool's trace), CB sums stored to `pooled`;
2. W1, items: groups of four squeezed rows, then the last rows one by one: per image the
   rows of W1 (Cp floats each) and the image's pooled vector, then per row b1 and the
   hidden value stored;
3. W2, items = channel blocks: per image the block's W2 columns (S x CB floats) and the
   image's hidden vector, then b2, the mask and the block's scale vector stored;
4. scale, items (image, channel block): the block's scale vector, then the plane read and
   written vector by vector, traced in pieces of PIECE bytes (a load then a store each: the
   kernel's alternation at a grain whose lines stay in L1 between the two).
pooled, hidden and scale are allocated by the kernel on each call: modelled addresses
(engine.trace.scratch).

On the per-image path (engine.kernels.squeeze_excite.per_image_path: batch >= PER_IMAGE_BATCH,
weights no larger than one image) an item is one image, its four passes back to back, each
as above for that image alone (`trace_squeeze_excite_per_image`)."""
from __future__ import annotations

from numba import njit

from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, load, store

VECTOR = CB * FLOAT32
PIECE = 1024        # bytes per load / store record pair of a streamed plane


@njit(cache=True)
def trace_stream(trace, count, x_address, out_address, start, nbytes):
    """x[start:start + nbytes] read and out[same] written, PIECE bytes at a time (byte offsets)."""
    at = 0
    while at < nbytes:
        piece = min(PIECE, nbytes - at)
        count = load(trace, count, x_address + start + at, piece)
        count = store(trace, count, out_address + start + at, piece)
        at += piece
    return count


@njit(cache=True)
def trace_squeeze_excite(trace, count, x_address, x_shape, w1_address, b1_address, w2_address, b2_address,
                         mask_address, out_address, squeezed, pooled, hidden, scale, pool_begin, pool_end,
                         row_item_begin, row_item_end, four_rows, block_begin, block_end, scale_begin, scale_end):
    """`_squeeze_excite_kernel`'s accesses: pass 1's items [pool_begin, pool_end), pass 2's
    [row_item_begin, row_item_end) (four_rows: the parallel path's items of four rows,
    else one row per item), pass 3's blocks [block_begin, block_end), pass 4's items
    [scale_begin, scale_end). pooled, hidden, scale: byte addresses of the kernel's vectors."""
    n_images, n_blocks, height, width = x_shape
    plane = height * width * VECTOR
    padded = n_blocks * CB
    row_bytes = padded * FLOAT32
    for item in range(pool_begin, pool_end):
        count = load(trace, count, x_address + item * plane, plane)
        count = store(trace, count, pooled + item * VECTOR, VECTOR)
    quads = squeezed // 4 if four_rows else 0
    for item in range(row_item_begin, row_item_end):
        first = 4 * item if item < quads else 3 * quads + item
        rows = 4 if item < quads else 1
        for n in range(n_images):
            for r in range(rows):
                count = load(trace, count, w1_address + (first + r) * row_bytes, row_bytes)
            count = load(trace, count, pooled + n * row_bytes, row_bytes)
            for r in range(rows):
                count = load(trace, count, b1_address + (first + r) * FLOAT32, FLOAT32)
                count = store(trace, count, hidden + (n * squeezed + first + r) * FLOAT32, FLOAT32)
    for b in range(block_begin, block_end):
        for n in range(n_images):
            count = load(trace, count, hidden + n * squeezed * FLOAT32, squeezed * FLOAT32)
            count = load(trace, count, w2_address + b * squeezed * VECTOR, squeezed * VECTOR)
            count = load(trace, count, b2_address + b * VECTOR, VECTOR)
            count = load(trace, count, mask_address + b * VECTOR, VECTOR)
            count = store(trace, count, scale + (n * padded + b * CB) * FLOAT32, VECTOR)
    for item in range(scale_begin, scale_end):
        count = load(trace, count, scale + item * VECTOR, VECTOR)
        count = trace_stream(trace, count, x_address, out_address, item * plane, plane)
    return count


@njit(cache=True)
def trace_squeeze_excite_per_image(trace, count, x_address, x_shape, w1_address, b1_address, w2_address, b2_address,
                                   mask_address, out_address, squeezed, pooled, hidden, scale, image_begin,
                                   image_end):
    """`_squeeze_excite_kernel`'s accesses on its per-image path, images [image_begin,
    image_end): per image its pool (block by block), W1 in four-row items then the last
    rows one by one, W2 block by block, then the scale pass block by block."""
    n_images, n_blocks, height, width = x_shape
    plane = height * width * VECTOR
    padded = n_blocks * CB
    row_bytes = padded * FLOAT32
    quads = squeezed // 4
    for n in range(image_begin, image_end):
        image_pooled = pooled + n * row_bytes
        image_hidden = hidden + n * squeezed * FLOAT32
        image_scale = scale + n * row_bytes
        for b in range(n_blocks):
            item = n * n_blocks + b
            count = load(trace, count, x_address + item * plane, plane)
            count = store(trace, count, pooled + item * VECTOR, VECTOR)
        for item in range(quads + squeezed - 4 * quads):
            first = 4 * item if item < quads else 3 * quads + item
            rows = 4 if item < quads else 1
            for r in range(rows):
                count = load(trace, count, w1_address + (first + r) * row_bytes, row_bytes)
            count = load(trace, count, image_pooled, row_bytes)
            for r in range(rows):
                count = load(trace, count, b1_address + (first + r) * FLOAT32, FLOAT32)
                count = store(trace, count, image_hidden + (first + r) * FLOAT32, FLOAT32)
        for b in range(n_blocks):
            count = load(trace, count, image_hidden, squeezed * FLOAT32)
            count = load(trace, count, w2_address + b * squeezed * VECTOR, squeezed * VECTOR)
            count = load(trace, count, b2_address + b * VECTOR, VECTOR)
            count = load(trace, count, mask_address + b * VECTOR, VECTOR)
            count = store(trace, count, image_scale + b * VECTOR, VECTOR)
        for b in range(n_blocks):
            item = n * n_blocks + b
            count = load(trace, count, scale + item * VECTOR, VECTOR)
            count = trace_stream(trace, count, x_address, out_address, item * plane, plane)
    return count
