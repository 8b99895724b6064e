"""Access trace of the depthwise conv (engine.kernels.depthwise): its work items (image,
band of output rows, channel block), the 3x3 row core (at 16 lanes row by row: its border
columns, then its interior columns; at 8 lanes the interior row by row, then the border
columns column by column), and the generic path for other kernel sizes.

`trace_3x3_rows` mirrors `depthwise_3x3_rows`, which the fused block runs too (on its ring
of expanded rows). Row slots come from the kernel's own `_ring_slot`. Per output row the
interior columns read three input rows (rows on the padding read a clamped row and
multiply it by 0: still a read); each row is one record over the columns the windows span,
whose register bytes are the 3 vectors per window the kernel loads.
"""
from __future__ import annotations

from numba import njit

from engine.kernels.depthwise import FOLDED_ROW_MASKS, _ring_slot
from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, LOAD, emit, load, store

VECTOR = CB * FLOAT32


@njit(cache=True)
def trace_3x3_rows(trace, count, src_address, plane, first_row, first_slot, ring_rows, height, width,
                   w_address, w_base, b_address, b_base, dst_address, dst_offset, out_w, row_start, row_end,
                   stride_h, stride_w, pad_top, pad_left):
    """`depthwise_3x3_rows`' accesses (its arguments, arrays as byte addresses)."""
    count = load(trace, count, w_address + w_base * FLOAT32, 9 * VECTOR)
    count = load(trace, count, b_address + b_base * FLOAT32, VECTOR)
    if not FOLDED_ROW_MASKS:   # the 8-lane core: interior row by row, border columns column by column
        col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
        col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
        row_floats = width * CB
        columns = col_hi - col_lo
        if columns > 0:
            start = max(col_lo * stride_w - pad_left, 0) * CB
            span = ((columns - 1) * stride_w + 3) * VECTOR      # bytes the windows of one input row cover
            for oh in range(row_start, row_end):
                ih0 = oh * stride_h - pad_top
                for i in range(3):
                    row = plane + _ring_slot(ih0 + i, first_row, first_slot, ring_rows, height) * row_floats
                    count = emit(trace, count, src_address + (row + start) * FLOAT32, span, LOAD, 3 * columns * VECTOR)
                q = dst_offset + ((oh - row_start) * out_w + col_lo) * CB
                count = store(trace, count, dst_address + q * FLOAT32, columns * VECTOR)
        for part in range(2):
            start_col = 0 if part == 0 else col_hi
            end_col = col_lo if part == 0 else out_w
            for ow in range(start_col, end_col):
                iw0 = ow * stride_w - pad_left
                for oh in range(row_start, row_end):
                    ih0 = oh * stride_h - pad_top
                    for i in range(3):
                        row = plane + _ring_slot(ih0 + i, first_row, first_slot, ring_rows, height) * row_floats
                        for j in range(3):
                            column = min(max(iw0 + j, 0), width - 1) * CB
                            count = load(trace, count, src_address + (row + column) * FLOAT32, VECTOR)
                    uo = dst_offset + ((oh - row_start) * out_w + ow) * CB
                    count = store(trace, count, dst_address + uo * FLOAT32, VECTOR)
        return count
    # the 16-lane core: row by row, the border columns then the interior
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
    row_floats = width * CB
    columns = col_hi - col_lo
    start = max(col_lo * stride_w - pad_left, 0) * CB
    span = ((columns - 1) * stride_w + 3) * VECTOR          # bytes the windows of one input row cover
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        q_row = dst_offset + (oh - row_start) * out_w * CB
        for part in range(2):                               # border columns, then the interior
            start_col = 0 if part == 0 else col_hi
            end_col = col_lo if part == 0 else out_w
            for ow in range(start_col, end_col):
                iw0 = ow * stride_w - pad_left
                for i in range(3):
                    row = plane + _ring_slot(ih0 + i, first_row, first_slot, ring_rows, height) * row_floats
                    for j in range(3):
                        column = min(max(iw0 + j, 0), width - 1) * CB
                        count = load(trace, count, src_address + (row + column) * FLOAT32, VECTOR)
                count = store(trace, count, dst_address + (q_row + ow * CB) * FLOAT32, VECTOR)
        if columns > 0:
            for i in range(3):
                row = plane + _ring_slot(ih0 + i, first_row, first_slot, ring_rows, height) * row_floats
                count = emit(trace, count, src_address + (row + start) * FLOAT32, span, LOAD, 3 * columns * VECTOR)
            count = store(trace, count, dst_address + (q_row + col_lo * CB) * FLOAT32, columns * VECTOR)
    return count


@njit(cache=True)
def trace_generic_row(trace, count, x_address, w_address, b_address, out_address, x_plane, o_row, w_base, b_base,
                      height, width, kernel_h, kernel_w, ih0, stride_w, pad_left, out_w):
    """`_generic_columns`' accesses for one whole output row (any kernel size), pixel by
    pixel. The k x k row core (`_rows_kxk`) walks its interior 8 (then 4) pixels a pass and
    loads each tap's weights once per pass: the same lines, so every level below L1 agrees,
    but the register <- L1 weight loads of a 5x5 or 7x7 interior are counted up to 8x."""
    i_lo = max(0, -ih0)
    i_hi = min(kernel_h, height - ih0)
    for ow in range(out_w):
        iw0 = ow * stride_w - pad_left
        j_lo = max(0, -iw0)
        j_hi = min(kernel_w, width - iw0)
        count = load(trace, count, b_address + b_base * FLOAT32, VECTOR)
        for i in range(i_lo, i_hi):
            if j_hi > j_lo:
                x_row = x_plane + ((ih0 + i) * width + iw0 + j_lo) * CB
                w_row = w_base + (i * kernel_w + j_lo) * CB
                count = load(trace, count, x_address + x_row * FLOAT32, (j_hi - j_lo) * VECTOR)
                count = load(trace, count, w_address + w_row * FLOAT32, (j_hi - j_lo) * VECTOR)
        count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, VECTOR)
    return count


@njit(cache=True)
def trace_depthwise(trace, count, x_address, x_shape, w_address, kernel_h, kernel_w, b_address, out_address,
                    out_h, out_w, stride_h, stride_w, pad_top, pad_left, depthwise_rows, item_begin, item_end):
    """`_depthwise_kernel`'s accesses for its work items [item_begin, item_end).
    x_shape: (N, Cb, H, W)."""
    n_images, n_blocks, height, width = x_shape
    bands = (out_h + depthwise_rows - 1) // depthwise_rows
    is_3x3 = kernel_h == 3 and kernel_w == 3
    for item in range(item_begin, item_end):
        b = item % n_blocks
        band = (item // n_blocks) % bands
        image_block = (item // (n_blocks * bands)) * n_blocks + b
        x_plane = image_block * height * width * CB
        o_plane = image_block * out_h * out_w * CB
        w_base = b * kernel_h * kernel_w * CB
        b_base = b * CB
        row_start = band * out_h // bands
        row_end = (band + 1) * out_h // bands
        if not is_3x3:
            for oh in range(row_start, row_end):
                count = trace_generic_row(trace, count, x_address, w_address, b_address, out_address, x_plane,
                                          o_plane + oh * out_w * CB, w_base, b_base, height, width, kernel_h,
                                          kernel_w, oh * stride_h - pad_top, stride_w, pad_left, out_w)
            continue
        count = trace_3x3_rows(trace, count, x_address, x_plane, 0, 0, height, height, width, w_address, w_base,
                               b_address, b_base, out_address, o_plane + row_start * out_w * CB, out_w, row_start,
                               row_end, stride_h, stride_w, pad_top, pad_left)
    return count


def depthwise_items(x_shape, out_h: int, depthwise_rows: int) -> int:
    """Work items of a depthwise conv, as `_depthwise_kernel` counts them."""
    n_images, n_blocks = x_shape[:2]
    return n_images * -(-out_h // depthwise_rows) * n_blocks
