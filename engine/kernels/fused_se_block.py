"""The fused squeeze-and-excitation block (MobileNetV3, EfficientNet): expand 1x1 ->
depthwise k x k -> squeeze-and-excitation -> project 1x1 (+ residual), on NCHWc activations.

The SE's per-channel scale depends on the whole depthwise output of an image, so the block
cannot be one band pass as the SE-free block is (engine.kernels.fused_block). Per image:

1. band by band of output rows: expand the input rows the band needs into a ring of
   expanded rows in per-thread scratch (the fused block's ring: each input row expanded
   once per run of bands, the halo rows again only where a worker starts), depthwise
   (3x3: the depthwise kernel's row core; other odd sizes: a ring-reading copy of its k x k
   core here) into the image's depthwise output D (Hb, Ho, Wo, CB) in per-thread scratch,
   and each channel block's band sums while the band is still in L1;
2. excite: the band sums added in band order -> pooled mean -> the SE's two tiny 1x1s and
   the gate (engine.kernels.squeeze_excite's row helpers) -> scale (Hp);
3. D scaled in place by the scale (it is still in this core's L2), then the project's
   micro-tile walk (engine.kernels.pointwise.walk_micro_tiles) over the image's pixels into
   the output, bias, residual, activation and clip.

The expanded tensor (the widest) never leaves the ring; D is written once, read back twice
(scale, project) from L2 instead of the unfused steps' expand write, depthwise read and
write, the SE's two reads and a write and the project's read through L3 or DRAM.

Work split (`per_image_items`): at a batch of at least the workers (and a multiple of them,
or four per worker), each worker takes whole images, all three phases back to back per image
(D in its own scratch row); below that, image by image, the bands split over the workers
(D in scratch row 0, each worker its bands' rows), the excite serial, then the project's
pixels split over the workers. The band sums are added in band order either way, so the
excite does not depend on the split or the thread count (the project's micro-tiles may fall
differently on a split image's pixels: results agree to ~1e-7 relative, not bit for bit).

Where an image's bands take all its rows into the ring (one band per image, or no expand
conv), a k x k depthwise runs the depthwise kernel's own k x k core on the rows in order;
otherwise a copy of that core here that finds each kernel row's ring slot.

Layouts: x, out, residual (N, Cb, H, W, CB) float32 C-contiguous; weights as packed by
pack_pointwise / pack_depthwise / pack_squeeze_excite.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from engine.kernels._common import (FASTMATH, _U, check_array, check_clip, check_int, check_range, launch,
                                    register_scratch)
from engine.kernels.activation import NO_ACTIVATION, activate_lanes, kernel_activation
from engine.kernels.depthwise import KXK_PIXELS, depthwise_3x3_rows, depthwise_bytes, _rows_kxk
from engine.kernels.fused_block import per_worker_zeros, scratch_stays_in
from engine.kernels.layout import CB, padded_channels
from engine.kernels.pointwise import pointwise_bytes, walk_micro_tiles
from engine.kernels.squeeze_excite import _hidden_four_rows, _hidden_row, _scale_block

_scratch_block = register_scratch(CB)
_scratch_sums = register_scratch(4 * CB)
_scratch_kxk = register_scratch(KXK_PIXELS * CB)


@njit(cache=True, inline="always")
def _slot(iy, first_row, first_slot, ring_rows):
    # ring slot of input row iy (callers read only rows within one turn of the ring)
    slot = first_slot + iy - first_row
    if slot >= ring_rows:
        slot -= ring_rows
    return slot


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _ring_rows_kxk(src, plane, first_row, first_slot, ring_rows, height, width, kernel, wf, w_base, bf, b_base,
                   dst, dst_offset, out_w, row_start, row_end, stride, pad, low, high, act, alpha, beta):
    """Output rows [row_start, row_end) of one channel block of a k x k depthwise conv (pad
    `pad` each side), reading input row iy at src[plane + slot(iy) * width * CB] (a ring of
    expanded rows, or a whole plane with (0, 0, height)); output row oh, column ow at
    dst[dst_offset + ((oh - row_start) * out_w + ow) * CB]. Only the taps inside the input
    are read (zero padding = skipped taps): interior columns KXK_PIXELS pixels per pass, each
    tap vector feeding KXK_PIXELS FMAs (as engine.kernels.depthwise._rows_kxk), the border
    columns and the last interior pixels one by one with their column range clamped."""
    acc = _scratch_kxk()
    ub = _U(b_base)
    row_floats = width * CB
    col_lo = min(out_w, (pad + stride - 1) // stride)
    col_hi = max(col_lo, min(out_w, (width - kernel + pad) // stride + 1))
    pixel_step = _U(stride * CB)
    for oh in range(row_start, row_end):
        ih0 = oh * stride - pad
        i_lo = max(0, -ih0)
        i_hi = min(kernel, height - ih0)
        o_row = dst_offset + (oh - row_start) * out_w * CB
        ow = col_lo
        while ow + KXK_PIXELS <= col_hi:
            for lane in range(CB):
                bias_lane = bf[ub + _U(lane)]
                for k in range(KXK_PIXELS):
                    acc[k * CB + lane] = bias_lane
            for i in range(i_lo, i_hi):
                p = _U(plane + _slot(ih0 + i, first_row, first_slot, ring_rows) * row_floats
                       + (ow * stride - pad) * CB)
                t = _U(w_base + i * kernel * CB)
                for _ in range(kernel):
                    for lane in range(CB):
                        u = _U(lane)
                        tap = wf[t + u]
                        acc[lane] += src[p + u] * tap
                        acc[CB + lane] += src[p + pixel_step + u] * tap
                        acc[2 * CB + lane] += src[p + _U(2) * pixel_step + u] * tap
                        acc[3 * CB + lane] += src[p + _U(3) * pixel_step + u] * tap
                    p += _U(CB)
                    t += _U(CB)
            activate_lanes(acc, KXK_PIXELS * CB, act, alpha, beta)
            q = _U(o_row + ow * CB)
            for k in range(KXK_PIXELS * CB):
                dst[q + _U(k)] = min(max(acc[k], low), high)
            ow += KXK_PIXELS
        for part in range(2):               # columns [0, col_lo), then [ow, out_w)
            start_col = 0 if part == 0 else ow
            end_col = col_lo if part == 0 else out_w
            for c in range(start_col, end_col):
                iw0 = c * stride - pad
                j_lo = max(0, -iw0)
                j_hi = min(kernel, width - iw0)
                for lane in range(CB):
                    acc[lane] = bf[ub + _U(lane)]
                for i in range(i_lo, i_hi):
                    row = plane + _slot(ih0 + i, first_row, first_slot, ring_rows) * row_floats
                    for j in range(j_lo, j_hi):
                        ux = _U(row + (iw0 + j) * CB)
                        uw = _U(w_base + (i * kernel + j) * CB)
                        for lane in range(CB):
                            acc[lane] += src[ux + _U(lane)] * wf[uw + _U(lane)]
                activate_lanes(acc, CB, act, alpha, beta)
                q = _U(o_row + c * CB)
                for lane in range(CB):
                    dst[q + _U(lane)] = min(max(acc[lane], low), high)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _band_sums(src, offset, pixels, sums, sums_offset):
    """sums[sums_offset + lane] = sum of `pixels` consecutive CB-lane vectors from
    src[offset], in four partial sums (pixels p..p+3) added in a fixed order."""
    acc = _scratch_sums()
    for k in range(4 * CB):
        acc[k] = 0.0
    quads = pixels // 4
    for p in range(quads):
        u = _U(offset + p * 4 * CB)
        for k in range(4 * CB):
            acc[k] += src[u + _U(k)]
    for p in range(quads * 4, pixels):
        u = _U(offset + p * CB)
        for lane in range(CB):
            acc[lane] += src[u + _U(lane)]
    for lane in range(CB):
        sums[sums_offset + lane] = (acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane])


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _excite(band_sums, first_band, bands, pooled, hidden, scale, inverse, w1f, b1, w2f, b2f, maskf, hidden_blocks,
            squeezed, h_act, h_alpha, h_beta, h_lo, h_hi, g_act, g_alpha, g_beta):
    """scale (Hp) of one image from its band sums (rows first_band .. + bands of band_sums
    (., Hp)), added in band order: pooled = sums / pixels, then the SE's two 1x1s and gate
    (engine.kernels.squeeze_excite's helpers, one image)."""
    padded = hidden_blocks * CB
    for c in range(padded):
        pooled[c] = band_sums[first_band, c]
    for band in range(first_band + 1, first_band + bands):
        for c in range(padded):
            pooled[c] += band_sums[band, c]
    for c in range(padded):
        pooled[c] *= inverse
    quads = squeezed // 4
    for q in range(quads):
        _hidden_four_rows(w1f, b1, pooled, hidden, 4 * q, 1, hidden_blocks, squeezed, h_act, h_alpha, h_beta,
                          h_lo, h_hi)
    for row in range(4 * quads, squeezed):
        _hidden_row(w1f, b1, pooled, hidden, row, 1, hidden_blocks, squeezed, h_act, h_alpha, h_beta, h_lo, h_hi)
    for block in range(hidden_blocks):
        _scale_block(w2f, b2f, maskf, hidden, scale, block, 1, hidden_blocks, squeezed, g_act, g_alpha, g_beta)


@njit(cache=True, fastmath=FASTMATH)
def _scale_project(sd, scale, hidden_blocks, pixels, p_begin, p_end, pwf, pbf, of, out_offset, out_plane, rf,
                   has_residual, cout_blocks, lo, hi, act, alpha, beta, prefetch):
    """Pixels [p_begin, p_end) of one image's depthwise output sd (Hb, pixels, CB) scaled in
    place by scale (Hp), then projected into of[out_offset + p * CB] (output block b at
    + b * out_plane; the residual likewise in rf)."""
    factor = _scratch_block()
    for hb in range(hidden_blocks):
        for lane in range(CB):
            factor[lane] = scale[hb * CB + lane]
        base = (hb * pixels + p_begin) * CB
        for p in range(p_end - p_begin):
            u = _U(base + p * CB)
            for lane in range(CB):
                sd[u + _U(lane)] *= factor[lane]
    walk_micro_tiles(sd, p_begin * CB, pixels * CB, pwf, hidden_blocks, pbf, of, out_offset + p_begin * CB,
                     out_plane, rf, has_residual, lo, hi, act, alpha, beta, p_end - p_begin, 0, cout_blocks, -1,
                     prefetch, 0, 0, 0)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _fused_se_block_kernel(x, ew, eb, has_expand, dw, db, pw, pb, out, residual, has_residual, stride, pad,
                           w1, b1, w2, b2, mask, expand_low, expand_high, dw_low, dw_high, project_low, project_high,
                           expand_act, expand_alpha, expand_beta, dw_act, dw_alpha, dw_beta,
                           project_act, project_alpha, project_beta, hidden_act, hidden_alpha, hidden_beta,
                           hidden_low, hidden_high, gate_act, gate_alpha, gate_beta, block_rows, per_image,
                           scratch_expand, scratch_image):
    n_images, cin_blocks, height, width, _ = x.shape
    hidden_blocks, kernel = dw.shape[0], dw.shape[1]
    cout_blocks, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    squeezed = w1.shape[0]
    padded = hidden_blocks * CB
    pixels = out_h * out_w
    workers = scratch_expand.shape[0]
    bands = (out_h + block_rows - 1) // block_rows
    ring_rows = (block_rows - 1) * stride + kernel     # one band's input rows
    xf = x.reshape(x.size)
    ewf = ew.reshape(ew.size)
    ebf = eb.reshape(eb.size)
    dwf = dw.reshape(dw.size)
    dbf = db.reshape(db.size)
    pwf = pw.reshape(pw.size)
    pbf = pb.reshape(pb.size)
    w1f = w1.reshape(w1.size)
    w2f = w2.reshape(w2.size)
    b2f = b2.reshape(b2.size)
    maskf = mask.reshape(mask.size)
    of = out.reshape(out.size)
    rf = residual.reshape(residual.size)
    e_lo, e_hi = np.float32(expand_low), np.float32(expand_high)
    d_lo, d_hi = np.float32(dw_low), np.float32(dw_high)
    p_lo, p_hi = np.float32(project_low), np.float32(project_high)
    h_lo, h_hi = np.float32(hidden_low), np.float32(hidden_high)
    h_alpha, h_beta = np.float32(hidden_alpha), np.float32(hidden_beta)
    g_alpha, g_beta = np.float32(gate_alpha), np.float32(gate_beta)
    inverse = np.float32(1.0 / pixels)
    no_residual = n_images < 0          # a run-time False for the expand's walk
    band_sums = np.empty((workers * bands, padded), np.float32)
    pooled = np.empty((workers, padded), np.float32)
    hidden = np.empty((workers, squeezed), np.float32)
    scale = np.empty((workers, padded), np.float32)
    groups = 1 if per_image else n_images
    for group in range(groups):         # per image: one group of every image; else one image per group
        for thread in prange(workers):
            worker = np.int64(thread)   # (the prange index may be unsigned: mixed with int64 it would be a float)
            s1 = scratch_expand[worker]
            image_begin = group
            image_end = group + 1
            d_row = 0
            if per_image:
                image_begin = worker * n_images // workers
                image_end = (worker + 1) * n_images // workers
                d_row = worker
            sd = scratch_image[d_row]
            held_image = -1             # s1 holds expanded rows [.., held_end) of image held_image
            held_end = 0
            for image in range(image_begin, image_end):
                band_begin = 0
                band_end = bands
                sums_row = worker * bands
                if not per_image:
                    band_begin = worker * bands // workers
                    band_end = (worker + 1) * bands // workers
                    sums_row = 0
                for band in range(band_begin, band_end):
                    row_start = band * block_rows
                    row_end = min(out_h, row_start + block_rows)
                    in_start = max(0, row_start * stride - pad)
                    in_end = min(height, (row_end - 1) * stride - pad + kernel)
                    if has_expand:      # the rows not yet in the ring, in at most two runs of slots
                        row = in_start
                        if image == held_image and held_end > in_start:
                            row = held_end
                        while row < in_end:
                            slot = row % ring_rows
                            count = min(in_end - row, ring_rows - slot)
                            walk_micro_tiles(xf, (image * cin_blocks * height * width + row * width) * CB,
                                             height * width * CB, ewf, cin_blocks, ebf, s1, slot * width * CB,
                                             ring_rows * width * CB, s1, no_residual, e_lo, e_hi, expand_act,
                                             expand_alpha, expand_beta, count * width, 0, hidden_blocks, -1,
                                             band == band_begin, 0, 0, 0)
                            row += count
                        held_image = image
                        held_end = in_end
                        src = s1
                        plane = 0
                        plane_stride = ring_rows * width * CB
                        first_row = in_start
                        first_slot = in_start % ring_rows
                        ring = ring_rows
                    else:               # the depthwise reads the block input's planes
                        src = xf
                        plane = image * cin_blocks * height * width * CB
                        plane_stride = height * width * CB
                        first_row = 0
                        first_slot = 0
                        ring = height
                    band_pixels = (row_end - row_start) * out_w
                    for hb in range(hidden_blocks):
                        d_offset = (hb * pixels + row_start * out_w) * CB
                        if kernel == 3:
                            depthwise_3x3_rows(src, plane + hb * plane_stride, first_row, first_slot, ring, height,
                                               width, dwf, hb * 9 * CB, dbf, hb * CB, sd, d_offset, out_w,
                                               row_start, row_end, stride, stride, pad, pad, d_lo, d_hi,
                                               dw_act, dw_alpha, dw_beta)
                        elif ring >= height:    # the rows in order (a whole image): the depthwise kernel's k x k core
                            _rows_kxk(src, dwf, dbf, sd, plane + hb * plane_stride, hb * pixels * CB,
                                      hb * kernel * kernel * CB, hb * CB, height, width, kernel, kernel, out_w,
                                      row_start, row_end, stride, stride, pad, pad, d_lo, d_hi, dw_act, dw_alpha,
                                      dw_beta)
                        else:
                            _ring_rows_kxk(src, plane + hb * plane_stride, first_row, first_slot, ring, height,
                                           width, kernel, dwf, hb * kernel * kernel * CB, dbf, hb * CB, sd,
                                           d_offset, out_w, row_start, row_end, stride, pad, d_lo, d_hi,
                                           dw_act, dw_alpha, dw_beta)
                        _band_sums(sd, d_offset, band_pixels, band_sums[sums_row + band], hb * CB)
                if per_image:           # this image's excite and project, D still in this core's L2
                    _excite(band_sums, sums_row, bands, pooled[worker], hidden[worker], scale[worker], inverse,
                            w1f, b1, w2f, b2f, maskf, hidden_blocks, squeezed, hidden_act, h_alpha, h_beta,
                            h_lo, h_hi, gate_act, g_alpha, g_beta)
                    _scale_project(sd, scale[worker], hidden_blocks, pixels, 0, pixels, pwf, pbf, of,
                                   image * cout_blocks * pixels * CB, pixels * CB, rf, has_residual, cout_blocks,
                                   p_lo, p_hi, project_act, project_alpha, project_beta, image == image_begin)
        if not per_image:               # the image's excite (serial: two tiny 1x1s), then its pixels split
            _excite(band_sums, 0, bands, pooled[0], hidden[0], scale[0], inverse, w1f, b1, w2f, b2f, maskf,
                    hidden_blocks, squeezed, hidden_act, h_alpha, h_beta, h_lo, h_hi, gate_act, g_alpha, g_beta)
            for thread in prange(workers):
                part = np.int64(thread)
                _scale_project(scratch_image[0], scale[0], hidden_blocks, pixels, part * pixels // workers,
                               (part + 1) * pixels // workers, pwf, pbf, of, group * cout_blocks * pixels * CB,
                               pixels * CB, rf, has_residual, cout_blocks, p_lo, p_hi, project_act, project_alpha,
                               project_beta, True)


# ---------------------------------------------------------------------------- sizes and costs

def per_image_items(n_images: int, workers: int) -> bool:
    """Whether each worker takes whole images (all three phases per image) rather than the
    bands of one image at a time: at least one image per worker, and the images share out
    evenly (a multiple of the workers) or at least four per worker."""
    return n_images >= workers and (n_images % workers == 0 or n_images >= 4 * workers)


def rows_needed(block_rows: int, stride: int, kernel: int) -> int:
    """Input rows one band of `block_rows` output rows reads (k x k kernel)."""
    return (block_rows - 1) * stride + kernel


def scratch_floats(hidden_channels: int, width: int, out_height: int, out_width: int, block_rows: int, stride: int,
                   kernel: int, lanes: int = CB) -> tuple[int, int]:
    """float32 elements of (scratch_expand: the ring of expanded rows, scratch_image: one
    image's depthwise output) per worker, channels padded to blocks of `lanes`."""
    hidden = padded_channels(hidden_channels, lanes)
    return hidden * rows_needed(block_rows, stride, kernel) * width, hidden * out_height * out_width


def expand_recompute_factor(height: int, out_height: int, block_rows: int, stride: int, kernel: int, workers: int,
                            batch: int) -> float:
    """Expanded rows computed / input rows (1.0: no halo recompute), for the kernel's split:
    a worker keeps its ring across the bands of an image it walks, so halo rows are
    recomputed only where a worker starts an image's run of bands."""
    bands = -(-out_height // block_rows)
    pad = kernel // 2
    per_image = per_image_items(batch, workers)
    runs = [(0, bands)] if per_image else [(w * bands // workers, (w + 1) * bands // workers) for w in range(workers)]
    computed = 0
    for begin, end in runs:
        held_end = -1
        for band in range(begin, end):
            start, stop = band * block_rows, min(out_height, (band + 1) * block_rows)
            in_start, in_end = max(0, start * stride - pad), min(height, (stop - 1) * stride - pad + kernel)
            first = held_end if held_end > in_start else in_start
            computed += max(0, in_end - first)
            held_end = in_end
    return computed / height


def auto_block_rows(hidden_channels: int, width: int, out_height: int, out_width: int, stride: int, kernel: int,
                    threads: int, l2_bytes: int, batch: int, lanes: int) -> int:
    """Band height from the cost model: the tallest band (fewest bands, each with its
    per-band overheads) whose ring of expanded rows stays in one core's L2 beside the image's
    depthwise output (`scratch_stays_in` for the L2 that output leaves; a quarter of the L2
    when the output itself does not stay), among those that give every worker bands where an
    image's bands are split over the workers (below per_image_items' batch). At least 1."""
    per_image = per_image_items(batch, threads)
    for bands in range(1, out_height + 1):
        band = -(-out_height // bands)
        if -(-out_height // band) != bands:
            continue                     # that height gives another band count: seen already
        if not per_image and bands < min(threads, out_height):
            continue
        ring, image = scratch_floats(hidden_channels, width, out_height, out_width, band, stride, kernel, lanes)
        room = l2_bytes - 4 * image if scratch_stays_in(4 * image, l2_bytes) else l2_bytes // 4
        if scratch_stays_in(4 * ring, room):
            return band
    return 1


# ---------------------------------------------------------------------------- public API

def make_scratch(workers: int, hidden_channels: int, width: int, out_height: int, out_width: int, block_rows: int,
                 stride: int, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-worker scratch arrays (workers, floats), line-aligned rows, for `fused_se_block`."""
    ring, image = scratch_floats(hidden_channels, width, out_height, out_width, block_rows, stride, kernel)
    return per_worker_zeros(workers, ring), per_worker_zeros(workers, image)


def fused_se_block(x, expand, depthwise, se, project, out, residual, stride: int, expand_clip, depthwise_clip,
                   project_clip, block_rows: int, scratch_expand: np.ndarray, scratch_image: np.ndarray, *,
                   expand_activation=NO_ACTIVATION, depthwise_activation=NO_ACTIVATION,
                   project_activation=NO_ACTIVATION, hidden_activation=NO_ACTIVATION,
                   hidden_clip=(-math.inf, math.inf), gate_activation=("sigmoid", 0.0, 0.0)) -> None:
    """One squeeze-and-excitation block, fused, written into `out`:
    out = project(se(depthwise(expand(x)))) (+ residual), each stage's activation and clip.

    x (N, Cin_b, H, W, CB); expand (packed_weight (Hb, Cin_b*CB, CB), packed_bias (Hb, CB)) or
    None (then Hb == Cin_b); depthwise (packed (Hb, k, k, CB), bias (Hb, CB)), k odd, pad
    k // 2; se: pack_squeeze_excite's 5-tuple for the Hb*CB hidden channels; project (packed
    (Cout_b, Hb*CB, CB), bias (Cout_b, CB)); out, residual (or None) (N, Cout_b, Ho, Wo, CB),
    Ho = (H - 1) // stride + 1, stride 1 or 2. *_clip (low, high) containing 0; *_activation
    zero-preserving (none, hardswish, silu) for the three convs, any for the SE's hidden
    activation (then hidden_clip) and gate. block_rows >= 1 output rows per band; scratch
    from make_scratch(workers, ...) (the kernel runs one worker per scratch row).
    """
    fn = "fused_se_block"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, cin_blocks, height, width, _ = x.shape
    if min(n_images, cin_blocks, height, width) < 1:
        raise ValueError(f"{fn}: x must hold at least one image of at least one pixel, got shape {x.shape}")
    if not isinstance(depthwise, tuple) or len(depthwise) != 2:
        raise ValueError(f"{fn}: depthwise must be (packed weight, packed bias)")
    dw_weight, dw_bias = depthwise
    check_array(fn, "depthwise weight", dw_weight, (None, None, None, CB))
    hidden_blocks, kernel, kernel_w = dw_weight.shape[:3]
    if kernel != kernel_w or kernel % 2 == 0 or hidden_blocks < 1:
        raise ValueError(f"{fn}: depthwise weight must be (Hb, k, k, CB) with k odd, got {dw_weight.shape}")
    check_array(fn, "depthwise bias", dw_bias, (hidden_blocks, CB))
    if expand is None:
        if hidden_blocks != cin_blocks:
            raise ValueError(f"{fn}: without an expand conv the depthwise must have {cin_blocks} channel blocks, "
                             f"got {hidden_blocks}")
        ew, eb = dw_bias.reshape(hidden_blocks, 1, CB), dw_bias     # unused placeholders of the right types
    else:
        ew, eb = expand
        check_array(fn, "expand weight", ew, (hidden_blocks, cin_blocks * CB, CB))
        check_array(fn, "expand bias", eb, (hidden_blocks, CB))
    if not isinstance(se, tuple) or len(se) != 5:
        raise ValueError(f"{fn}: se must be the 5-tuple pack_squeeze_excite returns")
    w1, b1, w2, b2, mask = se
    check_array(fn, "se w1", w1, (None, hidden_blocks * CB))
    squeezed = w1.shape[0]
    if squeezed < 1:
        raise ValueError(f"{fn}: se w1 must have at least one row, got {w1.shape}")
    check_array(fn, "se b1", b1, (squeezed,))
    check_array(fn, "se w2", w2, (hidden_blocks, squeezed, CB))
    check_array(fn, "se b2", b2, (hidden_blocks, CB))
    check_array(fn, "se mask", mask, (hidden_blocks, CB))
    pw, pb = project
    check_array(fn, "project weight", pw, (None, hidden_blocks * CB, CB))
    cout_blocks = pw.shape[0]
    check_array(fn, "project bias", pb, (cout_blocks, CB))
    if stride not in (1, 2):
        raise ValueError(f"{fn}: stride must be 1 or 2, got {stride}")
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    check_array(fn, "out", out, (n_images, cout_blocks, out_h, out_w, CB))
    if residual is not None:
        check_array(fn, "residual", residual, out.shape)
    block_rows = min(check_int(fn, "block_rows", block_rows, 1), out_h)
    need = scratch_floats(hidden_blocks * CB, width, out_h, out_w, block_rows, stride, kernel)
    for name, scratch, floats in (("scratch_expand", scratch_expand, need[0] if expand is not None else 0),
                                  ("scratch_image", scratch_image, need[1])):
        if not isinstance(scratch, np.ndarray) or scratch.ndim != 2 or scratch.dtype != np.float32 \
                or not scratch.flags.c_contiguous or scratch.shape[0] < 1 or scratch.shape[1] < max(floats, 1):
            raise ValueError(f"{fn}: {name} must be a C-contiguous float32 (workers, >= {floats}) array, got "
                             f"{getattr(scratch, 'shape', type(scratch).__name__)}")
    if scratch_image.shape[0] < scratch_expand.shape[0]:
        raise ValueError(f"{fn}: scratch_image needs a row per worker ({scratch_expand.shape[0]}), got "
                         f"{scratch_image.shape[0]}")
    clips = [check_clip(f"{fn} {name}", *clip) for name, clip in
             (("expand_clip", expand_clip), ("depthwise_clip", depthwise_clip), ("project_clip", project_clip))]
    activations = [kernel_activation(f"{fn} {name}", activation) for name, activation in
                   (("expand_activation", expand_activation), ("depthwise_activation", depthwise_activation),
                    ("project_activation", project_activation))]
    hidden = kernel_activation(f"{fn}: hidden_activation", hidden_activation, zero_preserving=False)
    gate = kernel_activation(f"{fn}: gate_activation", gate_activation, zero_preserving=False)
    low, high = check_range(fn, "hidden_clip", hidden_clip)
    per_image = per_image_items(n_images, scratch_expand.shape[0])
    launch(_fused_se_block_kernel, x, ew, eb, expand is not None, dw_weight, dw_bias, pw, pb, out,
           out if residual is None else residual, residual is not None, stride, kernel // 2, w1, b1, w2, b2, mask,
           clips[0][0], clips[0][1], clips[1][0], clips[1][1], clips[2][0], clips[2][1],
           *activations[0], *activations[1], *activations[2], *hidden, low, high, *gate, block_rows, per_image,
           scratch_expand, scratch_image)


def fused_se_block_flops(batch: int, in_channels: int, hidden_channels: int, squeezed: int, out_channels: int,
                         height: int, width: int, out_h: int, out_w: int, kernel: int, has_expand: bool) -> int:
    """FLOPs of the block's convs (2 per multiply-accumulate): expand, depthwise (every tap),
    the SE's two 1x1s, project. The pool's adds and the scaling are other_flops."""
    expand = 2 * in_channels * hidden_channels * height * width if has_expand else 0
    depthwise = 2 * hidden_channels * out_h * out_w * kernel * kernel
    excite = 2 * 2 * squeezed * hidden_channels
    project = 2 * hidden_channels * out_channels * out_h * out_w
    return batch * (expand + depthwise + excite + project)


def fused_se_block_bytes(batch: int, in_channels: int, hidden_channels: int, squeezed: int, out_channels: int,
                         height: int, width: int, stride: int, kernel: int, block_rows: int, has_expand: bool,
                         has_residual: bool, workers: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Across a boundary: the block input once (the halo rows again where a worker starts an
    image's bands: expand_recompute_factor, unless an image's input stays in the level
    above), the output (and residual) once, the weights once per call if they stay, else
    once per image; the scratch (the ring and one image's depthwise output) per worker
    crosses only where it does not stay in the level above: then the depthwise output is
    written, read back by the scale (read and written) and by the project: 4 x its size per
    image, the ring 2 x per band. Registers: each stage as its unfused kernel on these
    shapes, plus the pool's and the scale's passes over the depthwise output."""
    from engine.traffic import FLOAT32, LEVELS, fits       # here: as in fused_block_bytes

    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    block_rows = min(block_rows, out_h)
    cin, hidden, cout = budget.padded(in_channels), budget.padded(hidden_channels), budget.padded(out_channels)
    recompute = expand_recompute_factor(height, out_h, block_rows, stride, kernel, workers, batch)
    x_image = cin * height * width * FLOAT32
    y_bytes = batch * cout * out_h * out_w * FLOAT32 * (2 if has_residual else 1)
    w_bytes = ((hidden * (cin + 1) if has_expand else 0) + hidden * (kernel * kernel + 1)
               + (2 * squeezed * hidden + squeezed + 2 * hidden) + cout * (hidden + 1)) * FLOAT32
    ring_floats, image_floats = scratch_floats(hidden_channels, width, out_h, out_w, block_rows, stride, kernel,
                                               budget.lanes)
    ring_bytes, image_bytes = ring_floats * has_expand * FLOAT32, image_floats * FLOAT32
    bands = batch * -(-out_h // block_rows)
    registers = 0.0
    if has_expand:
        registers += pointwise_bytes(batch, in_channels, hidden_channels, 1, int(round(recompute * height * width)),
                                     10 ** 9, 10 ** 9, False, budget)["L1"]
    registers += depthwise_bytes(batch, hidden_channels, height, width, out_h, out_w, kernel, kernel, stride,
                                 block_rows, budget)["L1"]
    registers += pointwise_bytes(batch, hidden_channels, out_channels, out_h, out_w, 10 ** 9, 10 ** 9, has_residual,
                                 budget)["L1"]
    registers += 3 * batch * image_bytes            # the pool's read, the scale's read and write
    out = {"L1": registers}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        weights = w_bytes if fits(w_bytes, capacity) else w_bytes * batch
        x_traffic = batch * x_image * (1 if fits(x_image, capacity) else recompute)
        spill = 0.0
        if not scratch_stays_in(image_bytes, capacity):
            spill += 4 * batch * image_bytes
        if not scratch_stays_in(ring_bytes, capacity):
            spill += 3 * bands * ring_bytes
        if spill == 0.0 and boundary != "DRAM":     # filled once per run, written back once
            spill = 2 * min(workers, batch) * (ring_bytes + image_bytes)
        out[boundary] = x_traffic + y_bytes + weights + spill
    return {level: int(round(out[level])) for level in LEVELS}
