"""Access trace of max pooling (engine.kernels.pooling.max_pool): work items (image, band of
rows_per_band output rows, channel block), as the depthwise conv's. The 3x3 path per output
row: its three (clamped) input rows over the interior columns' windows, one record per row
whose register bytes are the 3 vectors per window the kernel loads, the interior outputs,
then the border columns one window at a time (clamped columns: still reads). Other kernel
sizes (`_max_pool_generic_row`): per output pixel the first tap (the max starts from it),
then each window row's clamped taps, then the output."""
from __future__ import annotations

from numba import njit

from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, LOAD, emit, load, store

VECTOR = CB * FLOAT32


@njit(cache=True)
def trace_max_pool_3x3_rows(trace, count, x_address, x_plane, out_address, o_plane, height, width, out_w, row_start,
                            row_end, stride_h, stride_w, pad_top, pad_left):
    """`_max_pool_3x3_rows`' accesses (element offsets x_plane, o_plane)."""
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
    columns = col_hi - col_lo
    row_floats = width * CB
    start = max(col_lo * stride_w - pad_left, 0) * CB
    span = ((columns - 1) * stride_w + 3) * VECTOR
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        o_row = o_plane + oh * out_w * CB
        if columns > 0:
            for i in range(3):
                row = x_plane + min(max(ih0 + i, 0), height - 1) * row_floats
                count = emit(trace, count, x_address + (row + start) * FLOAT32, span, LOAD, 3 * columns * VECTOR)
            count = store(trace, count, out_address + (o_row + col_lo * CB) * FLOAT32, columns * VECTOR)
        for part in range(2):
            start_col = 0 if part == 0 else col_hi
            end_col = col_lo if part == 0 else out_w
            for ow in range(start_col, end_col):
                iw0 = ow * stride_w - pad_left
                for i in range(3):
                    row = x_plane + min(max(ih0 + i, 0), height - 1) * row_floats
                    for j in range(3):
                        column = min(max(iw0 + j, 0), width - 1) * CB
                        count = load(trace, count, x_address + (row + column) * FLOAT32, VECTOR)
                count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, VECTOR)
    return count


@njit(cache=True)
def trace_max_pool_generic_row(trace, count, x_address, x_plane, out_address, o_row, height, width, kernel_h,
                               kernel_w, ih0, stride_w, pad_left, out_w):
    """`_max_pool_generic_row`'s accesses for one output row."""
    i_lo = max(0, -ih0)
    i_hi = min(kernel_h, height - ih0)
    for ow in range(out_w):
        iw0 = ow * stride_w - pad_left
        j_lo = max(0, -iw0)
        j_hi = min(kernel_w, width - iw0)
        count = load(trace, count, x_address + (x_plane + ((ih0 + i_lo) * width + iw0 + j_lo) * CB) * FLOAT32, VECTOR)
        for i in range(i_lo, i_hi):
            if j_hi > j_lo:
                x_row = x_plane + ((ih0 + i) * width + iw0 + j_lo) * CB
                count = load(trace, count, x_address + x_row * FLOAT32, (j_hi - j_lo) * VECTOR)
        count = store(trace, count, out_address + (o_row + ow * CB) * FLOAT32, VECTOR)
    return count


@njit(cache=True)
def trace_max_pool(trace, count, x_address, x_shape, out_address, out_h, out_w, kernel_h, kernel_w, stride_h,
                   stride_w, pad_top, pad_left, rows_per_band, item_begin, item_end):
    """`_max_pool_kernel`'s accesses for its work items [item_begin, item_end). x_shape: (N, Cb, H, W)."""
    n_images, n_blocks, height, width = x_shape
    bands = (out_h + rows_per_band - 1) // rows_per_band
    is_3x3 = kernel_h == 3 and kernel_w == 3
    for item in range(item_begin, item_end):
        b = item % n_blocks
        band = (item // n_blocks) % bands
        image_block = (item // (n_blocks * bands)) * n_blocks + b
        x_plane = image_block * height * width * CB
        o_plane = image_block * out_h * out_w * CB
        row_start = band * out_h // bands
        row_end = (band + 1) * out_h // bands
        if is_3x3:
            count = trace_max_pool_3x3_rows(trace, count, x_address, x_plane, out_address, o_plane, height, width,
                                            out_w, row_start, row_end, stride_h, stride_w, pad_top, pad_left)
        else:
            for oh in range(row_start, row_end):
                count = trace_max_pool_generic_row(trace, count, x_address, x_plane, out_address,
                                                   o_plane + oh * out_w * CB, height, width, kernel_h, kernel_w,
                                                   oh * stride_h - pad_top, stride_w, pad_left, out_w)
    return count


def max_pool_items(x_shape, out_h: int, rows_per_band: int) -> int:
    """Work items of a max pool, as `_max_pool_kernel` counts them."""
    return x_shape[0] * -(-out_h // rows_per_band) * x_shape[1]
