"""Access trace of the fused inverted-residual block (engine.kernels.fused_block): per
worker its contiguous run of (image, band) items; per band the expand's micro-tile walk
over the input rows not yet in the worker's ring (into scratch_expand), the depthwise row
core per hidden block (into scratch_depthwise), the project's micro-tile walk into the
output. The walks and the row core are the 1x1 and depthwise tracers' own, called with the
fused kernel's arguments, so the scratch buffers' real addresses are in the trace: whether
they stay in L1/L2 is the simulator's to find."""
from __future__ import annotations

from numba import njit

from engine.kernels.layout import CB
from engine.trace.depthwise import trace_3x3_rows
from engine.trace.pointwise import trace_walk


@njit(cache=True)
def trace_fused(trace, count, x_address, x_shape, ew_address, eb_address, has_expand, dw_address, db_address,
                hidden_blocks, pw_address, pb_address, out_address, out_shape, residual_address, has_residual, stride,
                pad, block_rows, se_address, se_row_floats, sd_address, sd_row_floats, workers, worker_begin,
                worker_end):
    """`_fused_block_kernel`'s accesses for workers [worker_begin, worker_end) of `workers`.
    x_shape: (N, Cin_blocks, H, W); out_shape: (Cout_blocks, Ho, Wo); scratch rows as
    (byte address of row 0, floats per row)."""
    n_images, cin_blocks, height, width = x_shape
    cout_blocks, out_h, out_w = out_shape
    bands = (out_h + block_rows - 1) // block_rows
    items = n_images * bands
    ring_rows = (block_rows - 1) * stride + 3
    for worker in range(worker_begin, worker_end):
        s1 = se_address + worker * se_row_floats * 4
        s2 = sd_address + worker * sd_row_floats * 4
        first = worker * items // workers
        last = (worker + 1) * items // workers
        held_image = -1
        held_end = 0
        for item in range(first, last):
            image = item // bands
            band = item - image * bands
            row_start = band * block_rows
            row_end = min(out_h, row_start + block_rows)
            in_start = max(0, row_start * stride - 1)
            in_end = min(height, (row_end - 1) * stride + 2)
            if has_expand:
                row = in_start
                if image == held_image and held_end > in_start:
                    row = held_end
                while row < in_end:
                    slot = row % ring_rows
                    rows = min(in_end - row, ring_rows - slot)
                    count, _ = trace_walk(trace, count, x_address, (image * cin_blocks * height * width + row * width) * CB,
                                          height * width * CB, ew_address, cin_blocks, eb_address, s1,
                                          slot * width * CB, ring_rows * width * CB, s1, False, rows * width, 0,
                                          hidden_blocks, -1, item == first, 0, 0, 0)
                    row += rows
                held_image = image
                held_end = in_end
                src = s1
                plane = 0
                plane_stride = ring_rows * width * CB
                first_row = in_start
                first_slot = in_start % ring_rows
                ring = ring_rows
            else:
                src = x_address
                plane = image * cin_blocks * height * width * CB
                plane_stride = height * width * CB
                first_row = 0
                first_slot = 0
                ring = height
            band_h = row_end - row_start
            for hb in range(hidden_blocks):
                count = trace_3x3_rows(trace, count, src, plane + hb * plane_stride, first_row, first_slot, ring,
                                       height, width, dw_address, hb * 9 * CB, db_address, hb * CB, s2,
                                       hb * band_h * out_w * CB, out_w, row_start, row_end, stride, stride, pad, pad)
            pixels = (row_end - row_start) * out_w
            count, _ = trace_walk(trace, count, s2, 0, pixels * CB, pw_address, hidden_blocks, pb_address, out_address,
                                  (image * cout_blocks * out_h * out_w + row_start * out_w) * CB, out_h * out_w * CB,
                                  residual_address, has_residual, pixels, 0, cout_blocks, -1, item == first, 0, 0, 0)
    return count
