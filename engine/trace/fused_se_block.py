"""Access trace of the fused squeeze-and-excitation block (engine.kernels.fused_se_block),
walking the kernel's own loops: per image (whole images per worker, or an image's bands
split over the workers, then the excite on the calling thread and the project's pixels split
again), per band the expand's micro-tile walk over the rows not yet in the worker's ring,
per hidden block the depthwise rows (3x3: the depthwise tracer's row core; k x k: every
output pixel's in-input taps, as the generic path reads them, from the ring or the whole
image) into the image's depthwise output and the band's sums read back; then the excite
(band sums, W1, W2 and the pooled / hidden / scale vectors), the scale pass over the
depthwise output (read and written) and the project's micro-tile walk into the output.
The walks and the 3x3 core are the 1x1 and depthwise tracers' own. The vectors the kernel
allocates itself (band sums, pooled, hidden, scale) have modelled addresses in the SE
regions of engine.trace.scratch (the calling thread's: the kernel allocates them once)."""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels import fused_se_block
from engine.kernels.layout import CB
from engine.trace.depthwise import trace_3x3_rows
from engine.trace.pointwise import trace_walk
from engine.trace.records import FLOAT32, address_of, collect, load, store
from engine.trace.scratch import SE_HIDDEN, SE_POOLED, SE_SCALE, scratch_address
from engine.trace.squeeze_excite import trace_stream

VECTOR = CB * FLOAT32
BAND_SUMS_OFFSET = 1 << 32      # the band sums' modelled address: past the pooled vectors in their region


@njit(cache=True)
def _trace_kxk_rows(trace, count, src_address, plane, first_row, first_slot, ring_rows, height, width, kernel,
                    w_address, w_base, b_address, b_base, dst_address, dst_offset, out_w, row_start, row_end, stride,
                    pad):
    """The k x k depthwise rows' accesses (`_ring_rows_kxk`, or the depthwise kernel's
    `_rows_kxk` where the rows are in order: ring_rows >= height, slot = row), per output
    pixel: the bias, its in-input taps row by row (input and weights), its output."""
    row_floats = width * CB
    for oh in range(row_start, row_end):
        ih0 = oh * stride - pad
        i_lo = max(0, -ih0)
        i_hi = min(kernel, height - ih0)
        for ow in range(out_w):
            iw0 = ow * stride - pad
            j_lo = max(0, -iw0)
            j_hi = min(kernel, width - iw0)
            count = load(trace, count, b_address + b_base * FLOAT32, VECTOR)
            for i in range(i_lo, i_hi):
                slot = first_slot + ih0 + i - first_row
                if slot >= ring_rows:
                    slot -= ring_rows
                if j_hi > j_lo:
                    count = load(trace, count, src_address + (plane + slot * row_floats + (iw0 + j_lo) * CB) * FLOAT32,
                                 (j_hi - j_lo) * VECTOR)
                    count = load(trace, count, w_address + (w_base + (i * kernel + j_lo) * CB) * FLOAT32,
                                 (j_hi - j_lo) * VECTOR)
            count = store(trace, count, dst_address + (dst_offset + ((oh - row_start) * out_w + ow) * CB) * FLOAT32,
                          VECTOR)
    return count


@njit(cache=True)
def _trace_excite(trace, count, sums, first_band, bands, padded, pooled, hidden, scale, w1_address, b1_address,
                  w2_address, b2_address, mask_address, squeezed, hidden_blocks):
    """`_excite`'s accesses: the band sums rows, pooled; W1 four rows at a time, then the
    last rows one by one; W2 block by block, b2, the mask, the scale vector."""
    row_bytes = padded * FLOAT32
    for band in range(first_band, first_band + bands):
        count = load(trace, count, sums + band * row_bytes, row_bytes)
    count = store(trace, count, pooled, row_bytes)
    quads = squeezed // 4
    for item in range(quads + squeezed - 4 * quads):
        first = 4 * item if item < quads else 3 * quads + item
        rows = 4 if item < quads else 1
        for r in range(rows):
            count = load(trace, count, w1_address + (first + r) * row_bytes, row_bytes)
        count = load(trace, count, pooled, row_bytes)
        for r in range(rows):
            count = load(trace, count, b1_address + (first + r) * FLOAT32, FLOAT32)
            count = store(trace, count, hidden + (first + r) * FLOAT32, FLOAT32)
    for b in range(hidden_blocks):
        count = load(trace, count, hidden, squeezed * FLOAT32)
        count = load(trace, count, w2_address + b * squeezed * VECTOR, squeezed * VECTOR)
        count = load(trace, count, b2_address + b * VECTOR, VECTOR)
        count = load(trace, count, mask_address + b * VECTOR, VECTOR)
        count = store(trace, count, scale + b * VECTOR, VECTOR)
    return count


@njit(cache=True)
def _trace_scale_project(trace, count, sd, scale, hidden_blocks, pixels, p_begin, p_end, pw_address, pb_address,
                         out_address, out_offset, out_plane, residual_address, has_residual, cout_blocks, prefetch):
    """`_scale_project`'s accesses: per hidden block its scale vector and its pixels
    [p_begin, p_end) of the depthwise output read and written; then the project's walk."""
    for hb in range(hidden_blocks):
        count = load(trace, count, scale + hb * VECTOR, VECTOR)
        if p_end > p_begin:
            count = trace_stream(trace, count, sd, sd, (hb * pixels + p_begin) * VECTOR, (p_end - p_begin) * VECTOR)
    count, _ = trace_walk(trace, count, sd, p_begin * CB, pixels * CB, pw_address, hidden_blocks, pb_address,
                          out_address, out_offset + p_begin * CB, out_plane, residual_address, has_residual,
                          p_end - p_begin, 0, cout_blocks, -1, prefetch, 0, 0, 0)
    return count


@njit(cache=True)
def trace_fused_se(trace, count, x_address, x_shape, ew_address, eb_address, has_expand, dw_address, db_address,
                   hidden_blocks, kernel, pw_address, pb_address, out_address, out_shape, residual_address,
                   has_residual, stride, w1_address, b1_address, w2_address, b2_address, mask_address, squeezed,
                   block_rows, per_image, se_address, se_row_floats, si_address, si_row_floats, sums, pooled_address,
                   hidden_address, scale_address, workers, worker_begin, worker_end, serial):
    """`_fused_se_block_kernel`'s accesses for workers [worker_begin, worker_end) of
    `workers` (and the serial excite where `serial`: the calling thread's).
    x_shape (N, Cin_blocks, H, W); out_shape (Cout_blocks, Ho, Wo); scratch rows as (byte
    address of row 0, floats per row); sums .. scale_address: modelled addresses."""
    n_images, cin_blocks, height, width = x_shape
    cout_blocks, out_h, out_w = out_shape
    pad = kernel // 2
    padded = hidden_blocks * CB
    pixels = out_h * out_w
    bands = (out_h + block_rows - 1) // block_rows
    ring_rows = (block_rows - 1) * stride + kernel
    groups = 1 if per_image else n_images
    for group in range(groups):
        for worker in range(worker_begin, worker_end):
            s1 = se_address + worker * se_row_floats * FLOAT32
            image_begin, image_end, d_row = group, group + 1, 0
            if per_image:
                image_begin = worker * n_images // workers
                image_end = (worker + 1) * n_images // workers
                d_row = worker
            sd = si_address + d_row * si_row_floats * FLOAT32
            held_image, held_end = -1, 0
            for image in range(image_begin, image_end):
                band_begin, band_end, sums_row = 0, bands, worker * bands
                if not per_image:
                    band_begin = worker * bands // workers
                    band_end = (worker + 1) * bands // workers
                    sums_row = 0
                for band in range(band_begin, band_end):
                    row_start = band * block_rows
                    row_end = min(out_h, row_start + block_rows)
                    in_start = max(0, row_start * stride - pad)
                    in_end = min(height, (row_end - 1) * stride - pad + kernel)
                    if has_expand:
                        row = in_start
                        if image == held_image and held_end > in_start:
                            row = held_end
                        while row < in_end:
                            slot = row % ring_rows
                            rows = min(in_end - row, ring_rows - slot)
                            count, _ = trace_walk(trace, count, x_address,
                                                  (image * cin_blocks * height * width + row * width) * CB,
                                                  height * width * CB, ew_address, cin_blocks, eb_address, s1,
                                                  slot * width * CB, ring_rows * width * CB, s1, False, rows * width,
                                                  0, hidden_blocks, -1, band == band_begin, 0, 0, 0)
                            row += rows
                        held_image, held_end = image, in_end
                        src, plane, plane_stride = s1, 0, ring_rows * width * CB
                        first_row, first_slot, ring = in_start, in_start % ring_rows, ring_rows
                    else:
                        src, plane_stride = x_address, height * width * CB
                        plane = image * cin_blocks * plane_stride
                        first_row, first_slot, ring = 0, 0, height
                    band_pixels = (row_end - row_start) * out_w
                    for hb in range(hidden_blocks):
                        d_offset = (hb * pixels + row_start * out_w) * CB
                        if kernel == 3:
                            count = trace_3x3_rows(trace, count, src, plane + hb * plane_stride, first_row,
                                                   first_slot, ring, height, width, dw_address, hb * 9 * CB,
                                                   db_address, hb * CB, sd, d_offset, out_w, row_start, row_end,
                                                   stride, stride, pad, pad)
                        else:
                            count = _trace_kxk_rows(trace, count, src, plane + hb * plane_stride, first_row,
                                                    first_slot, ring, height, width, kernel, dw_address,
                                                    hb * kernel * kernel * CB, db_address, hb * CB, sd, d_offset,
                                                    out_w, row_start, row_end, stride, pad)
                        count = load(trace, count, sd + d_offset * FLOAT32, band_pixels * VECTOR)
                        count = store(trace, count, sums + ((sums_row + band) * padded + hb * CB) * FLOAT32, VECTOR)
                if per_image:
                    count = _trace_excite(trace, count, sums, sums_row, bands, padded,
                                          pooled_address + worker * padded * FLOAT32,
                                          hidden_address + worker * squeezed * FLOAT32,
                                          scale_address + worker * padded * FLOAT32, w1_address, b1_address,
                                          w2_address, b2_address, mask_address, squeezed, hidden_blocks)
                    count = _trace_scale_project(trace, count, sd, scale_address + worker * padded * FLOAT32,
                                                 hidden_blocks, pixels, 0, pixels, pw_address, pb_address,
                                                 out_address, image * cout_blocks * pixels * CB, pixels * CB,
                                                 residual_address, has_residual, cout_blocks, image == image_begin)
        if not per_image:
            if serial:
                count = _trace_excite(trace, count, sums, 0, bands, padded, pooled_address, hidden_address,
                                      scale_address, w1_address, b1_address, w2_address, b2_address, mask_address,
                                      squeezed, hidden_blocks)
            for worker in range(worker_begin, worker_end):
                count = _trace_scale_project(trace, count, si_address, scale_address, hidden_blocks, pixels,
                                             worker * pixels // workers, (worker + 1) * pixels // workers,
                                             pw_address, pb_address, out_address, group * cout_blocks * pixels * CB,
                                             pixels * CB, residual_address, has_residual, cout_blocks, True)
    return count


def trace_args(args, thread: int, threads: int) -> np.ndarray:
    """The tracer of engine.trace.calls' registry: the kernel's arguments -> the records of
    thread `thread` of `threads` (the workers split as numba's static schedule splits them;
    the serial excite on thread 0)."""
    (x, ew, eb, has_expand, dw, db, pw, pb, out, residual, has_residual, stride, _pad, w1, b1, w2, b2, mask,
     *_clips_and_activations, block_rows, per_image, scratch_expand, scratch_image) = args
    workers = scratch_expand.shape[0]
    begin, end = thread * workers // threads, (thread + 1) * workers // threads
    return collect(trace_fused_se, address_of(x), x.shape[:4], address_of(ew), address_of(eb), bool(has_expand),
                   address_of(dw), address_of(db), dw.shape[0], dw.shape[1], address_of(pw), address_of(pb),
                   address_of(out), out.shape[1:4], address_of(residual), bool(has_residual), stride, address_of(w1),
                   address_of(b1), address_of(w2), address_of(b2), address_of(mask), w1.shape[0], block_rows,
                   bool(per_image), address_of(scratch_expand), scratch_expand.shape[1], address_of(scratch_image),
                   scratch_image.shape[1], scratch_address(SE_POOLED) + BAND_SUMS_OFFSET, scratch_address(SE_POOLED),
                   scratch_address(SE_HIDDEN), scratch_address(SE_SCALE), workers, begin, end, thread == 0)


TRACED_KERNEL = fused_se_block._fused_se_block_kernel
