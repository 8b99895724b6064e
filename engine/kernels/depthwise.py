"""Depthwise convolution (group == channels, depth multiplier 1) on NCHWc activations.

Layout. x (N, Cb, H, W, CB) -> out (N, Cb, Ho, Wo, CB), weights packed (Cb, kh, kw, CB),
bias (Cb, CB). One channel block is one SIMD register: every tap is one vector FMA over the
CB lanes, and a pixel's CB channels are contiguous (32 bytes on AVX2) in x, w and out.

Work items. (image, band of output rows, channel block), channel block fastest, spread by
prange: ceil(Ho / depthwise_rows) bands of near-equal height. The static schedule then
gives each thread a horizontal stripe of the image across all channels, the stripe the
1x1 conv before it wrote on that thread (its work items are pixel ranges first), so a
thread reads its input from its own core's caches instead of the other core's.
A 3x3 item is one call of `depthwise_3x3_rows`, the row core the fused block
(engine.kernels.fused_block) uses too. It first copies its block's 9 weight vectors and bias
to a stack scratch (so they live in registers for the whole band), then, at 16 lanes
(`_rows_3x3_folded`), row by row:
- the row masks (1.0 inside, 0.0 for a kernel row on the padding, which reads a clamped
  valid row) folded into a copy of the 9 taps, once per row;
- the border columns: clamped addresses, the column masks applied per pixel to the three
  column sums: no branches per tap and no out-of-range read;
- the interior columns (the kernel row inside the input): nine taps written out, no checks,
  flat unsigned indexing (numba then emits no negative-index fix-ups and LLVM sees constant
  offsets between taps), PIXELS_3X3 (4) pixels per pass, each a chain of 9 FMAs from the
  bias, and their activation in one call: at stride 1 each input vector is loaded once for
  the pixels of the pass that read it (4.5 loads and 11 FP ops, clip included, per pixel;
  llvm-mca figures in bench/README "The depthwise row cores in-core").
At 8 lanes (`_rows_3x3_masked`, the same job) the row masks multiply the three row sums per
pixel and the border columns are walked column by column: the folded form is mis-vectorised
by LLVM at 8 lanes (same section).
Other kernels (5x5, 7x7, 1x3, ...) take `_rows_kxk`: per output row the kernel rows inside
the input are found once; the interior columns go KXK_WIDE (8) pixels at a time, then at most
one pass of KXK_PIXELS (4), without checks, each tap vector loaded once (from L1: 25 taps and
accumulators do not fit the register file) feeding 8 (4) FMAs into accumulators kept in
registers (8 chains hide the FMA latency); the border columns and the < 4 interior pixels
left over take the generic per-pixel code (`_generic_columns`: tap ranges clamped to the
input once per pixel, zero padding = skipped taps).

Why a stack scratch for the accumulators: numba cannot prove that `out` does not alias
`x` or the weights, so LLVM will not vectorise a lane loop that loads x and stores out
(it stays scalar code, one lane at a time). Accumulating into a fixed-size `alloca`
(`register_scratch`) first, then storing, lets SROA keep the accumulators in registers and
the SLP vectoriser turn each lane loop into one ymm/zmm instruction.

Napkin math (3x3, per output pixel and channel block of 8 lanes): 9 vector FMAs = 144 FLOP;
it reads 9 input vectors (each input vector is read by its 9 neighbours, from L1 or
registers) and writes 1 vector. Compulsory traffic is 32 B in + 32 B out at stride 1 (2.25 FLOP/byte),
128 B in + 32 B out at stride 2 (0.9 FLOP/byte): memory bound on any machine.
MobileNetV2's 17 depthwise layers move 24.5 MB (input + output + weights) for 41.4 MFLOP.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import (_FLOAT32, _FLOAT32_MAX, FASTMATH, _U, _check_output_size,  # noqa: F401
                                    check_array, check_clip, check_int, launch, register_scratch)
from engine.kernels.activation import NO_ACTIVATION, NONE, activate_lanes, kernel_activation
from engine.kernels.layout import CB, channel_blocks

_scratch_block = register_scratch(CB)      # one channel block of accumulators
_scratch_taps = register_scratch(10 * CB)  # a 3x3 block's weights and bias
_scratch_mask = register_scratch(2)        # 0.0, 1.0
_scratch_col_taps = register_scratch(9 * CB)
# the other-kernel path: the accumulators of KXK_PIXELS output pixels (registers: each tap
# vector, loaded once from L1, feeds KXK_PIXELS FMAs)
KXK_PIXELS = 4
_scratch_kxk_acc = register_scratch(KXK_PIXELS * CB)
# `_rows_kxk`'s wide passes: KXK_WIDE accumulators hide the FMA latency (4 cycles on 2 ports
# needs 8 independent chains; KXK_PIXELS chains left the loop latency bound, at half the FMA rate)
KXK_WIDE = 8
_scratch_kxk_wide = register_scratch(KXK_WIDE * CB)
# the 3x3 path's interior: output pixels per pass, their accumulators in the same scratch
PIXELS_3X3 = KXK_PIXELS

# Default band height: the lowest summed time over MobileNetV2's 17 layers in the sweep of
# bench/kernel_depthwise.py (figures in bench/README); taller bands share the per-item
# set-up (taps to registers, border columns) over more rows.
DEFAULT_DEPTHWISE_ROWS = 16

# ---------------------------------------------------------------------------- kernels

@njit(cache=True, fastmath=FASTMATH, inline="always")  # one call site; a real call costs refcounts
def _generic_columns(xf, wf, bf, of, x_plane, o_row, w_base, b_base, height, width, kernel_h, kernel_w,
                     ih0, stride_w, pad_left, col_start, col_end, low, high, act, alpha, beta):
    """Output pixels col_start..col_end-1 of one output row (any kernel size), tap ranges
    clamped to the input per pixel. Offsets are flat element indices: x_plane is the start
    of this (image, block) input plane, o_row of this output row, w_base/b_base of the block's
    weights/bias; ih0 is the input row of the first kernel row (may be negative)."""
    acc = _scratch_block()
    i_lo = max(0, -ih0)
    i_hi = min(kernel_h, height - ih0)
    for ow in range(col_start, col_end):
        iw0 = ow * stride_w - pad_left
        j_lo = max(0, -iw0)
        j_hi = min(kernel_w, width - iw0)
        ub = _U(b_base)
        for lane in range(CB):
            acc[lane] = bf[ub + _U(lane)]
        for i in range(i_lo, i_hi):
            x_row = x_plane + ((ih0 + i) * width + iw0) * CB
            w_row = w_base + i * kernel_w * CB
            for j in range(j_lo, j_hi):
                ux = _U(x_row + j * CB)
                uw = _U(w_row + j * CB)
                for lane in range(CB):
                    acc[lane] += xf[ux + _U(lane)] * wf[uw + _U(lane)]
        activate_lanes(acc, CB, act, alpha, beta)
        uo = _U(o_row + ow * CB)
        for lane in range(CB):
            of[uo + _U(lane)] = min(max(acc[lane], low), high)


@njit(cache=True, inline="always")
def _ring_slot(iy, first_row, first_slot, ring_rows, height):
    # slot of input row iy, clamped to [first_row, height - 1], in a ring of ring_rows rows
    # whose slot first_slot holds row first_row (callers keep the rows they read within one
    # turn of the ring, so one subtraction wraps; no division)
    slot = first_slot + min(max(iy, first_row), height - 1) - first_row
    if slot >= ring_rows:
        slot -= ring_rows
    return slot


@njit(cache=True, fastmath=FASTMATH, inline="always")
def depthwise_3x3_rows(src, plane, first_row, first_slot, ring_rows, height, width, wf, w_base, bf, b_base,
                       dst, dst_offset, out_w, row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high,
                       act, alpha, beta):
    """`_rows_3x3` (the lane width's row core: `_rows_3x3_folded`'s docstring), in two copies:
    one for the common case, stride 1 and no activation but the clip (MobileNetV2's ReLU6),
    with both as compile-time constants, and one for every other stride and activation. With
    the stride a run-time value the interior loop's addresses take a register each (they
    spill), and with the activation one the loop tests it on every pass and its code keeps
    registers busy: the row core on a 14x14 plane ran 4.65 ns per pixel and channel block
    with both at run time, 3.05 with both constant (bench/README, "The fused blocks'
    stages"). The second copy costs 15-17 s of cold compile in each of the depthwise and
    fused-block kernels (same section)."""
    if act == NONE and stride_h == 1 and stride_w == 1:
        _rows_3x3(src, plane, first_row, first_slot, ring_rows, height, width, wf, w_base, bf, b_base,
                  dst, dst_offset, out_w, row_start, row_end, 1, 1, pad_top, pad_left, low, high,
                  NONE, alpha, beta)
    else:
        _rows_3x3(src, plane, first_row, first_slot, ring_rows, height, width, wf, w_base, bf, b_base,
                  dst, dst_offset, out_w, row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high,
                  act, alpha, beta)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _rows_3x3_folded(src, plane, first_row, first_slot, ring_rows, height, width, wf, w_base, bf, b_base,
                     dst, dst_offset, out_w, row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high,
                     act, alpha, beta):
    """Output rows [row_start, row_end) of one channel block of a 3x3 depthwise conv:
    out = clip(activate(conv + bias, act, alpha, beta), low, high), zero padding. Used by the
    depthwise kernel and the fused block. Offsets are flat element indices into src, wf, bf, dst:
    - input row iy of the (height x width) plane, clamped into the plane, is at
      src[plane + slot * width * CB], slot = _ring_slot(iy, first_row, first_slot, ring_rows,
      height): (0, 0, height) for a whole plane; the fused block keeps a ring of expanded rows;
    - the block's 9 weight vectors start at wf[w_base], its bias at bf[b_base];
    - output row oh, column ow is at dst[dst_offset + ((oh - row_start) * out_w + ow) * CB].

    The weights and bias are copied to a stack scratch first (LLVM then keeps them in
    registers: it cannot prove the stores to dst leave them unchanged). Every tap reads a
    valid address: rows and columns are clamped into the input, and a tap on the padding is
    multiplied by 0.0 (a mask read through a run-time index, so LLVM keeps a multiply
    instead of a mispredicted branch). Row by row:
    - the row masks are folded into a copy of the 9 taps once per output row (9 multiplies
      per row, none per pixel);
    - the border columns ([0, col_lo) and [col_hi, out_w)): clamped column addresses, the
      column masks applied per pixel to the three column sums;
    - the interior columns (the kernel row inside the input): nine taps, no checks, flat
      unsigned indexing, PIXELS_3X3 pixels per pass (four independent chains of 9 FMAs
      from the bias, so one pixel's chain does not wait on its own latency alone; at a
      constant stride 1 LLVM loads each input vector once for the up to 3 pixels that read
      it: 3 x (PIXELS_3X3 + 2) loads per pass), then the last ones one by one.
    """
    acc = _scratch_block()
    quad = _scratch_kxk_acc()       # PIXELS_3X3 output pixels' accumulators
    taps = _scratch_taps()          # 9 weight vectors, then the bias
    row_taps = _scratch_col_taps()  # the taps with the current output row's masks folded in
    mask = _scratch_mask()
    mask[0] = 0.0
    mask[1] = 1.0
    uw = _U(w_base)
    for k in range(9 * CB):
        taps[k] = wf[uw + _U(k)]
    for lane in range(CB):
        taps[9 * CB + lane] = bf[_U(b_base + lane)]
    # interior columns [col_lo, col_hi): the whole kernel row lies inside the input
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
    col_stride = _U(stride_w * CB)  # elements between the windows of two output columns
    row_floats = width * CB
    quads = (col_hi - col_lo) // PIXELS_3X3
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        r0 = _U(plane + _ring_slot(ih0, first_row, first_slot, ring_rows, height) * row_floats)
        r1 = _U(plane + _ring_slot(ih0 + 1, first_row, first_slot, ring_rows, height) * row_floats)
        r2 = _U(plane + _ring_slot(ih0 + 2, first_row, first_slot, ring_rows, height) * row_floats)
        m0 = mask[int(0 <= ih0 < height)]
        m1 = mask[int(0 <= ih0 + 1 < height)]
        m2 = mask[int(0 <= ih0 + 2 < height)]
        for lane in range(3 * CB):
            row_taps[lane] = taps[lane] * m0
            row_taps[3 * CB + lane] = taps[3 * CB + lane] * m1
            row_taps[6 * CB + lane] = taps[6 * CB + lane] * m2
        q_row = dst_offset + (oh - row_start) * out_w * CB
        for part in range(2):       # border columns [0, col_lo) and [col_hi, out_w)
            start_col = 0 if part == 0 else col_hi
            end_col = col_lo if part == 0 else out_w
            for ow in range(start_col, end_col):
                iw0 = ow * stride_w - pad_left
                c0 = _U(min(max(iw0, 0), width - 1) * CB)
                c1 = _U(min(max(iw0 + 1, 0), width - 1) * CB)
                c2 = _U(min(max(iw0 + 2, 0), width - 1) * CB)
                n0 = mask[int(0 <= iw0 < width)]
                n1 = mask[int(0 <= iw0 + 1 < width)]
                n2 = mask[int(0 <= iw0 + 2 < width)]
                for lane in range(CB):
                    u = _U(lane)
                    s0 = (src[r0 + c0 + u] * row_taps[0 * CB + lane] + src[r1 + c0 + u] * row_taps[3 * CB + lane]
                          + src[r2 + c0 + u] * row_taps[6 * CB + lane])
                    s1 = (src[r0 + c1 + u] * row_taps[1 * CB + lane] + src[r1 + c1 + u] * row_taps[4 * CB + lane]
                          + src[r2 + c1 + u] * row_taps[7 * CB + lane])
                    s2 = (src[r0 + c2 + u] * row_taps[2 * CB + lane] + src[r1 + c2 + u] * row_taps[5 * CB + lane]
                          + src[r2 + c2 + u] * row_taps[8 * CB + lane])
                    acc[lane] = taps[9 * CB + lane] + n0 * s0 + n1 * s1 + n2 * s2
                activate_lanes(acc, CB, act, alpha, beta)
                uo = _U(q_row + ow * CB)
                for lane in range(CB):
                    dst[uo + _U(lane)] = min(max(acc[lane], low), high)
        start = _U(max(col_lo * stride_w - pad_left, 0) * CB)  # (>= 0 whenever col_lo < col_hi)
        p0 = r0 + start
        p1 = r1 + start
        p2 = r2 + start
        q = _U(q_row + col_lo * CB)
        for _ in range(quads):      # PIXELS_3X3 pixels per pass: independent chains interleaved
            for k in range(PIXELS_3X3):
                for lane in range(CB):
                    u = _U(k) * col_stride + _U(lane)
                    quad[k * CB + lane] = (taps[9 * CB + lane]
                                           + src[p0 + u] * row_taps[0 * CB + lane]
                                           + src[p0 + _U(CB) + u] * row_taps[1 * CB + lane]
                                           + src[p0 + _U(2 * CB) + u] * row_taps[2 * CB + lane]
                                           + src[p1 + u] * row_taps[3 * CB + lane]
                                           + src[p1 + _U(CB) + u] * row_taps[4 * CB + lane]
                                           + src[p1 + _U(2 * CB) + u] * row_taps[5 * CB + lane]
                                           + src[p2 + u] * row_taps[6 * CB + lane]
                                           + src[p2 + _U(CB) + u] * row_taps[7 * CB + lane]
                                           + src[p2 + _U(2 * CB) + u] * row_taps[8 * CB + lane])
            activate_lanes(quad, PIXELS_3X3 * CB, act, alpha, beta)
            for k in range(PIXELS_3X3 * CB):
                dst[q + _U(k)] = min(max(quad[k], low), high)
            p0 += _U(PIXELS_3X3) * col_stride
            p1 += _U(PIXELS_3X3) * col_stride
            p2 += _U(PIXELS_3X3) * col_stride
            q += _U(PIXELS_3X3 * CB)
        for _ in range(col_lo + quads * PIXELS_3X3, col_hi):
            for lane in range(CB):
                u = _U(lane)
                acc[lane] = (taps[9 * CB + lane]
                             + src[p0 + u] * row_taps[0 * CB + lane]
                             + src[p0 + _U(CB) + u] * row_taps[1 * CB + lane]
                             + src[p0 + _U(2 * CB) + u] * row_taps[2 * CB + lane]
                             + src[p1 + u] * row_taps[3 * CB + lane]
                             + src[p1 + _U(CB) + u] * row_taps[4 * CB + lane]
                             + src[p1 + _U(2 * CB) + u] * row_taps[5 * CB + lane]
                             + src[p2 + u] * row_taps[6 * CB + lane]
                             + src[p2 + _U(CB) + u] * row_taps[7 * CB + lane]
                             + src[p2 + _U(2 * CB) + u] * row_taps[8 * CB + lane])
            activate_lanes(acc, CB, act, alpha, beta)
            for lane in range(CB):
                dst[q + _U(lane)] = min(max(acc[lane], low), high)
            p0 += col_stride
            p1 += col_stride
            p2 += col_stride
            q += _U(CB)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _rows_3x3_masked(src, plane, first_row, first_slot, ring_rows, height, width, wf, w_base, bf, b_base,
                     dst, dst_offset, out_w, row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high,
                     act, alpha, beta):
    """`_rows_3x3_folded`'s job, the row masks applied per pixel (three more FMAs per pixel) and
    the border columns column by column: the 8-lane (AVX2) core. Folding the masks into the
    taps per row makes LLVM's SLP vectoriser pack 4 pixels per xmm register instead of 8
    lanes per ymm at 8 lanes (bench/depthwise_incore.py analyse: 47-60 cycles per pixel
    predicted on haswell, 41 -> 76-112 spills). Output rows [row_start, row_end) of one
    channel block of a 3x3 depthwise conv:
    out = clip(activate(conv + bias, act, alpha, beta), low, high), zero padding. Used by the
    depthwise kernel and the fused block. Offsets are flat element indices into src, wf, bf, dst:
    - input row iy of the (height x width) plane, clamped into the plane, is at
      src[plane + slot * width * CB], slot = _ring_slot(iy, first_row, first_slot, ring_rows,
      height): (0, 0, height) for a whole plane; the fused block keeps a ring of expanded rows;
    - the block's 9 weight vectors start at wf[w_base], its bias at bf[b_base];
    - output row oh, column ow is at dst[dst_offset + ((oh - row_start) * out_w + ow) * CB].

    The weights and bias are copied to a stack scratch first (LLVM then keeps them in
    registers: it cannot prove the stores to dst leave them unchanged). Every tap reads a
    valid address: rows and columns are clamped into the input, and a tap on the padding is
    multiplied by 0.0 (a mask read through a run-time index, so LLVM keeps a multiply
    instead of a mispredicted branch):
    - interior columns (the kernel row inside the input), row by row: nine taps, no checks,
      the row masks applied per pixel to the three row sums (a multiply-add in place of an add),
      PIXELS_3X3 pixels per pass, then the last ones one by one;
    - border columns, column by column down the rows: the column masks folded into the taps
      once per column, the row masks as above.
    """
    acc = _scratch_block()
    quad = _scratch_kxk_acc()       # PIXELS_3X3 output pixels' accumulators
    taps = _scratch_taps()          # 9 weight vectors, then the bias
    col_taps = _scratch_col_taps()  # the taps with the current border column's masks folded in
    mask = _scratch_mask()
    mask[0] = 0.0
    mask[1] = 1.0
    uw = _U(w_base)
    for k in range(9 * CB):
        taps[k] = wf[uw + _U(k)]
    for lane in range(CB):
        taps[9 * CB + lane] = bf[_U(b_base + lane)]
    # interior columns [col_lo, col_hi): the whole kernel row lies inside the input
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - 3 + pad_left) // stride_w + 1))
    col_stride = _U(stride_w * CB)  # elements between the windows of two output columns
    row_floats = width * CB
    quads = (col_hi - col_lo) // PIXELS_3X3
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        r0 = _U(plane + _ring_slot(ih0, first_row, first_slot, ring_rows, height) * row_floats)
        r1 = _U(plane + _ring_slot(ih0 + 1, first_row, first_slot, ring_rows, height) * row_floats)
        r2 = _U(plane + _ring_slot(ih0 + 2, first_row, first_slot, ring_rows, height) * row_floats)
        m0 = mask[int(0 <= ih0 < height)]
        m1 = mask[int(0 <= ih0 + 1 < height)]
        m2 = mask[int(0 <= ih0 + 2 < height)]
        start = _U(max(col_lo * stride_w - pad_left, 0) * CB)  # (>= 0 whenever col_lo < col_hi)
        p0 = r0 + start
        p1 = r1 + start
        p2 = r2 + start
        q = _U(dst_offset + ((oh - row_start) * out_w + col_lo) * CB)
        for _ in range(quads):      # PIXELS_3X3 pixels per pass: independent chains interleaved
            for k in range(PIXELS_3X3):
                for lane in range(CB):
                    u = _U(k) * col_stride + _U(lane)
                    t0 = (src[p0 + u] * taps[0 * CB + lane] + src[p0 + _U(CB) + u] * taps[1 * CB + lane]
                          + src[p0 + _U(2 * CB) + u] * taps[2 * CB + lane])
                    t1 = (src[p1 + u] * taps[3 * CB + lane] + src[p1 + _U(CB) + u] * taps[4 * CB + lane]
                          + src[p1 + _U(2 * CB) + u] * taps[5 * CB + lane])
                    t2 = (src[p2 + u] * taps[6 * CB + lane] + src[p2 + _U(CB) + u] * taps[7 * CB + lane]
                          + src[p2 + _U(2 * CB) + u] * taps[8 * CB + lane])
                    quad[k * CB + lane] = taps[9 * CB + lane] + m0 * t0 + m1 * t1 + m2 * t2
            activate_lanes(quad, PIXELS_3X3 * CB, act, alpha, beta)
            for k in range(PIXELS_3X3 * CB):
                dst[q + _U(k)] = min(max(quad[k], low), high)
            p0 += _U(PIXELS_3X3) * col_stride
            p1 += _U(PIXELS_3X3) * col_stride
            p2 += _U(PIXELS_3X3) * col_stride
            q += _U(PIXELS_3X3 * CB)
        for _ in range(col_lo + quads * PIXELS_3X3, col_hi):
            for lane in range(CB):
                u = _U(lane)
                t0 = (src[p0 + u] * taps[0 * CB + lane] + src[p0 + _U(CB) + u] * taps[1 * CB + lane]
                      + src[p0 + _U(2 * CB) + u] * taps[2 * CB + lane])
                t1 = (src[p1 + u] * taps[3 * CB + lane] + src[p1 + _U(CB) + u] * taps[4 * CB + lane]
                      + src[p1 + _U(2 * CB) + u] * taps[5 * CB + lane])
                t2 = (src[p2 + u] * taps[6 * CB + lane] + src[p2 + _U(CB) + u] * taps[7 * CB + lane]
                      + src[p2 + _U(2 * CB) + u] * taps[8 * CB + lane])
                acc[lane] = taps[9 * CB + lane] + m0 * t0 + m1 * t1 + m2 * t2
            activate_lanes(acc, CB, act, alpha, beta)
            for lane in range(CB):
                dst[q + _U(lane)] = min(max(acc[lane], low), high)
            p0 += col_stride
            p1 += col_stride
            p2 += col_stride
            q += _U(CB)
    for part in range(2):           # border columns [0, col_lo) and [col_hi, out_w)
        start_col = 0 if part == 0 else col_hi
        end_col = col_lo if part == 0 else out_w
        for ow in range(start_col, end_col):
            iw0 = ow * stride_w - pad_left
            c0 = _U(min(max(iw0, 0), width - 1) * CB)
            c1 = _U(min(max(iw0 + 1, 0), width - 1) * CB)
            c2 = _U(min(max(iw0 + 2, 0), width - 1) * CB)
            n0 = mask[int(0 <= iw0 < width)]
            n1 = mask[int(0 <= iw0 + 1 < width)]
            n2 = mask[int(0 <= iw0 + 2 < width)]
            for i in range(3):
                for lane in range(CB):
                    col_taps[(3 * i) * CB + lane] = taps[(3 * i) * CB + lane] * n0
                    col_taps[(3 * i + 1) * CB + lane] = taps[(3 * i + 1) * CB + lane] * n1
                    col_taps[(3 * i + 2) * CB + lane] = taps[(3 * i + 2) * CB + lane] * n2
            for oh in range(row_start, row_end):
                ih0 = oh * stride_h - pad_top
                r0 = _U(plane + _ring_slot(ih0, first_row, first_slot, ring_rows, height) * row_floats)
                r1 = _U(plane + _ring_slot(ih0 + 1, first_row, first_slot, ring_rows, height) * row_floats)
                r2 = _U(plane + _ring_slot(ih0 + 2, first_row, first_slot, ring_rows, height) * row_floats)
                m0 = mask[int(0 <= ih0 < height)]
                m1 = mask[int(0 <= ih0 + 1 < height)]
                m2 = mask[int(0 <= ih0 + 2 < height)]
                for lane in range(CB):
                    u = _U(lane)
                    t0 = (src[r0 + c0 + u] * col_taps[0 * CB + lane] + src[r0 + c1 + u] * col_taps[1 * CB + lane]
                          + src[r0 + c2 + u] * col_taps[2 * CB + lane])
                    t1 = (src[r1 + c0 + u] * col_taps[3 * CB + lane] + src[r1 + c1 + u] * col_taps[4 * CB + lane]
                          + src[r1 + c2 + u] * col_taps[5 * CB + lane])
                    t2 = (src[r2 + c0 + u] * col_taps[6 * CB + lane] + src[r2 + c1 + u] * col_taps[7 * CB + lane]
                          + src[r2 + c2 + u] * col_taps[8 * CB + lane])
                    acc[lane] = taps[9 * CB + lane] + m0 * t0 + m1 * t1 + m2 * t2
                activate_lanes(acc, CB, act, alpha, beta)
                uo = _U(dst_offset + ((oh - row_start) * out_w + ow) * CB)
                for lane in range(CB):
                    dst[uo + _U(lane)] = min(max(acc[lane], low), high)


# the row core per lane width (a Python-level choice: one copy is compiled per build)
FOLDED_ROW_MASKS = CB == 16
_rows_3x3 = _rows_3x3_folded if FOLDED_ROW_MASKS else _rows_3x3_masked


@njit(cache=True, fastmath=FASTMATH, inline="always")  # one call site
def _rows_kxk(xf, wf, bf, of, x_plane, o_plane, w_base, b_base, height, width, kernel_h, kernel_w, out_w,
              row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high, act, alpha, beta):
    """Output rows [row_start, row_end) of one channel block, any kernel size:
    out = clip(activate(conv + bias)), zero padding. Offsets are flat element indices as in
    `_generic_columns` (o_plane: this (image, block) output plane). Per output row the kernel
    rows inside the input are found once; the interior columns (the whole kernel row inside
    the input) go KXK_WIDE pixels at a time, then at most one pass of KXK_PIXELS, with no
    per-pixel checks: each tap vector, read once from the packed weights (L1), feeds
    KXK_WIDE (KXK_PIXELS) FMAs into accumulators that stay in registers. The border columns
    (ceil(pad / stride) each side) and the < KXK_PIXELS interior pixels left over take
    `_generic_columns` (one inlined copy)."""
    acc = _scratch_kxk_acc()
    wide = _scratch_kxk_wide()
    ub = _U(b_base)
    col_lo = min(out_w, (pad_left + stride_w - 1) // stride_w)
    col_hi = max(col_lo, min(out_w, (width - kernel_w + pad_left) // stride_w + 1))
    pixel_step = _U(stride_w * CB)  # elements between the windows of two output columns
    for oh in range(row_start, row_end):
        ih0 = oh * stride_h - pad_top
        o_row = o_plane + oh * out_w * CB
        i_lo = max(0, -ih0)
        i_hi = min(kernel_h, height - ih0)
        ow = col_lo
        while ow + KXK_WIDE <= col_hi:        # KXK_WIDE pixels per pass
            for lane in range(CB):
                bias_lane = bf[ub + _U(lane)]
                for k in range(KXK_WIDE):
                    wide[k * CB + lane] = bias_lane
            for i in range(i_lo, i_hi):
                p = _U(x_plane + ((ih0 + i) * width + ow * stride_w - pad_left) * CB)
                t = _U(w_base + i * kernel_w * CB)
                for _ in range(kernel_w):
                    for lane in range(CB):
                        u = _U(lane)
                        tap = wf[t + u]
                        wide[lane] += xf[p + u] * tap
                        wide[CB + lane] += xf[p + pixel_step + u] * tap
                        wide[2 * CB + lane] += xf[p + _U(2) * pixel_step + u] * tap
                        wide[3 * CB + lane] += xf[p + _U(3) * pixel_step + u] * tap
                        wide[4 * CB + lane] += xf[p + _U(4) * pixel_step + u] * tap
                        wide[5 * CB + lane] += xf[p + _U(5) * pixel_step + u] * tap
                        wide[6 * CB + lane] += xf[p + _U(6) * pixel_step + u] * tap
                        wide[7 * CB + lane] += xf[p + _U(7) * pixel_step + u] * tap
                    p += _U(CB)
                    t += _U(CB)
            activate_lanes(wide, KXK_WIDE * CB, act, alpha, beta)
            q = _U(o_row + ow * CB)
            for k in range(KXK_WIDE * CB):
                of[q + _U(k)] = min(max(wide[k], low), high)
            ow += KXK_WIDE
        if ow + KXK_PIXELS <= col_hi:         # then one pass of KXK_PIXELS
            for lane in range(CB):
                bias_lane = bf[ub + _U(lane)]
                acc[lane] = bias_lane
                acc[CB + lane] = bias_lane
                acc[2 * CB + lane] = bias_lane
                acc[3 * CB + lane] = bias_lane
            for i in range(i_lo, i_hi):
                p = _U(x_plane + ((ih0 + i) * width + ow * stride_w - pad_left) * CB)
                t = _U(w_base + i * kernel_w * CB)
                for _ in range(kernel_w):
                    for lane in range(CB):
                        u = _U(lane)
                        tap = wf[t + u]
                        acc[lane] += xf[p + u] * tap
                        acc[CB + lane] += xf[p + pixel_step + u] * tap
                        acc[2 * CB + lane] += xf[p + _U(2) * pixel_step + u] * tap
                        acc[3 * CB + lane] += xf[p + _U(3) * pixel_step + u] * tap
                    p += _U(CB)
                    t += _U(CB)
            activate_lanes(acc, KXK_PIXELS * CB, act, alpha, beta)
            q = _U(o_row + ow * CB)
            for k in range(KXK_PIXELS * CB):
                of[q + _U(k)] = min(max(acc[k], low), high)
            ow += KXK_PIXELS
        for part in range(2):             # columns [0, col_lo), then [ow, out_w): borders and the last
            start_col = 0 if part == 0 else ow  # < KXK_PIXELS interior pixels (one inlined copy)
            end_col = col_lo if part == 0 else out_w
            _generic_columns(xf, wf, bf, of, x_plane, o_row, w_base, b_base, height, width, kernel_h, kernel_w,
                             ih0, stride_w, pad_left, start_col, end_col, low, high, act, alpha, beta)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _depthwise_kernel(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left, clip_min, clip_max,
                      act, alpha, beta, depthwise_rows):
    n_images, n_blocks, height, width, _ = x.shape
    kernel_h, kernel_w = weight.shape[1], weight.shape[2]
    out_h, out_w = out.shape[2], out.shape[3]
    low = np.float32(clip_min)
    high = np.float32(clip_max)
    bands = (out_h + depthwise_rows - 1) // depthwise_rows
    is_3x3 = kernel_h == 3 and kernel_w == 3
    # interior output columns (whole kernel row inside the input), as `_rows_kxk` counts them
    interior = (min(out_w, (width - kernel_w + pad_left) // stride_w + 1)
                - min(out_w, (pad_left + stride_w - 1) // stride_w))
    xf = x.reshape(x.size)          # flat views: same memory, no copy
    wf = weight.reshape(weight.size)
    bf = bias.reshape(bias.size)
    of = out.reshape(out.size)
    for item in prange(n_images * bands * n_blocks):
        b = item % n_blocks
        band = (item // n_blocks) % bands
        image_block = (item // (n_blocks * bands)) * n_blocks + b  # n * n_blocks + b
        x_plane = image_block * height * width * CB
        o_plane = image_block * out_h * out_w * CB
        w_base = b * kernel_h * kernel_w * CB
        b_base = b * CB
        row_start = band * out_h // bands
        row_end = (band + 1) * out_h // bands
        if not is_3x3 and interior >= KXK_PIXELS:
            _rows_kxk(xf, wf, bf, of, x_plane, o_plane, w_base, b_base, height, width, kernel_h, kernel_w, out_w,
                      row_start, row_end, stride_h, stride_w, pad_top, pad_left, low, high, act, alpha, beta)
            continue
        if not is_3x3:  # no KXK_PIXELS interior pixels in a row (7x7 images at pad 2): per pixel
            for oh in range(row_start, row_end):
                _generic_columns(xf, wf, bf, of, x_plane, o_plane + oh * out_w * CB, w_base, b_base, height,
                                 width, kernel_h, kernel_w, oh * stride_h - pad_top, stride_w, pad_left, 0, out_w,
                                 low, high, act, alpha, beta)
            continue
        depthwise_3x3_rows(xf, x_plane, 0, 0, height, height, width, wf, w_base, bf, b_base,
                           of, o_plane + row_start * out_w * CB, out_w, row_start, row_end,
                           stride_h, stride_w, pad_top, pad_left, low, high, act, alpha, beta)


# ---------------------------------------------------------------------------- public API

def pack_depthwise(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pack ONNX depthwise weights for `depthwise_conv`.

    weight: (C, 1, kh, kw) float; bias: (C,) or None.
    Returns (packed_weight (Cb, kh, kw, CB), packed_bias (Cb, CB)) float32 C-contiguous,
    Cb = ceil(C / CB), channels C..Cb*CB zero (so padded lanes stay 0).
    """
    weight = np.asarray(weight)
    if weight.ndim != 4 or weight.shape[1] != 1 or min(weight.shape) < 1:
        raise ValueError(f"pack_depthwise: weight must have shape (C, 1, kh, kw), got {weight.shape}")
    channels, _, kernel_h, kernel_w = weight.shape
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (channels,):
            raise ValueError(f"pack_depthwise: bias must have shape ({channels},), got {bias.shape}")
    n_blocks = channel_blocks(channels)
    packed = np.zeros((n_blocks * CB, kernel_h, kernel_w), np.float32)
    packed[:channels] = weight[:, 0]
    packed = np.ascontiguousarray(packed.reshape(n_blocks, CB, kernel_h, kernel_w).transpose(0, 2, 3, 1))
    packed_bias = np.zeros(n_blocks * CB, np.float32)
    if bias is not None:
        packed_bias[:channels] = bias
    return packed, packed_bias.reshape(n_blocks, CB)


def depthwise_conv(x: np.ndarray, packed_weight: np.ndarray, packed_bias: np.ndarray, out: np.ndarray,
                   stride_h: int, stride_w: int, pad_top: int, pad_left: int,
                   clip_min: float, clip_max: float, depthwise_rows: int = DEFAULT_DEPTHWISE_ROWS, *,
                   activation=NO_ACTIVATION) -> None:
    """out = clip(act(depthwise_conv(x, w) + bias), clip_min, clip_max), written in place.

    x: (N, Cb, H, W, CB) float32; packed_weight (Cb, kh, kw, CB) and packed_bias (Cb, CB)
    from `pack_depthwise`; out: (N, Cb, Ho, Wo, CB) float32. Ho and Wo are taken from out
    (the caller derived them from all four pads); input outside H x W reads as 0.
    Strides >= 1, pads >= 0, dilation 1. clip (0, 6) is ReLU6, (0, inf) ReLU,
    (-inf, inf) none; clip_min <= 0 <= clip_max so padded lanes stay 0.
    activation: (name, alpha, beta) applied before the clip (engine.kernels.activation), one
    with f(0) = 0 (none, hardswish, silu) so padded lanes stay 0; default none.
    depthwise_rows: output rows per work item (>= 1; the rows are shared out evenly over
    ceil(Ho / depthwise_rows) bands); the items are (image, band of rows, channel block) and
    run in parallel on numba's threads. Larger bands amortise the per-item set-up (weights
    to registers, border-column masks); smaller ones give each thread its own stripe of rows.
    """
    if not _looks_valid(x, packed_weight, packed_bias, out, stride_h, stride_w, pad_top, pad_left, depthwise_rows):
        _validate(x, packed_weight, packed_bias, out, stride_h, stride_w, pad_top, pad_left, depthwise_rows)
    low, high = float(clip_min), float(clip_max)
    if not low <= 0.0 <= high or low < -_FLOAT32_MAX or high > _FLOAT32_MAX:
        low, high = check_clip("depthwise_conv", clip_min, clip_max)
    act, alpha, beta = kernel_activation("depthwise_conv", activation)
    launch(_depthwise_kernel, x, packed_weight, packed_bias, out, int(stride_h), int(stride_w), int(pad_top),
           int(pad_left), low, high, act, alpha, beta, int(depthwise_rows))


def _looks_valid(x, weight, bias, out, stride_h, stride_w, pad_top, pad_left, depthwise_rows) -> bool:
    """The common case in one expression, a fraction of `_validate`'s cost (bench/README),
    run before it on every unbound call. False sends the call through `_validate`, which
    names what is wrong, or passes it when only this shortcut declined."""
    if not (type(x) is np.ndarray and type(weight) is np.ndarray and type(bias) is np.ndarray
            and type(out) is np.ndarray and x.dtype is _FLOAT32 and weight.dtype is _FLOAT32
            and bias.dtype is _FLOAT32 and out.dtype is _FLOAT32 and x.flags.c_contiguous
            and weight.flags.c_contiguous and bias.flags.c_contiguous and out.flags.c_contiguous
            and type(stride_h) is int and type(stride_w) is int and type(pad_top) is int
            and type(pad_left) is int and type(depthwise_rows) is int
            and stride_h >= 1 and stride_w >= 1 and pad_top >= 0 and pad_left >= 0 and depthwise_rows >= 1):
        return False
    xs, ws, bs, os_ = x.shape, weight.shape, bias.shape, out.shape
    return (len(xs) == 5 and len(ws) == 4 and len(bs) == 2 and len(os_) == 5
            and xs[4] == CB and ws[3] == CB and bs[1] == CB and os_[4] == CB
            and ws[0] == xs[1] and bs[0] == xs[1] and os_[0] == xs[0] and os_[1] == xs[1]
            and xs[0] >= 1 and xs[1] >= 1 and xs[2] >= 1 and xs[3] >= 1 and ws[1] >= 1 and ws[2] >= 1
            and os_[2] >= max(1, (xs[2] + pad_top - ws[1]) // stride_h + 1)
            and os_[3] >= max(1, (xs[3] + pad_left - ws[2]) // stride_w + 1))


def _validate(x, packed_weight, packed_bias, out, stride_h, stride_w, pad_top, pad_left, depthwise_rows) -> None:
    """Every check of `depthwise_conv`'s arguments; ValueError naming expected and got."""
    fn = "depthwise_conv"
    stride_h = check_int(fn, "stride_h", stride_h, 1)
    stride_w = check_int(fn, "stride_w", stride_w, 1)
    pad_top = check_int(fn, "pad_top", pad_top, 0)
    pad_left = check_int(fn, "pad_left", pad_left, 0)
    check_int(fn, "depthwise_rows", depthwise_rows, 1)
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, n_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "packed_weight", packed_weight, (n_blocks, None, None, CB))
    kernel_h, kernel_w = packed_weight.shape[1:3]
    if kernel_h < 1 or kernel_w < 1:
        raise ValueError(f"{fn}: packed_weight kernel must be at least 1x1, got {kernel_h}x{kernel_w}")
    check_array(fn, "packed_bias", packed_bias, (n_blocks, CB))
    check_array(fn, "out", out, (n_images, n_blocks, None, None, CB))
    out_h, out_w = out.shape[2:4]
    _check_output_size(fn, "height", out_h, height, kernel_h, stride_h, pad_top)
    _check_output_size(fn, "width", out_w, width, kernel_w, stride_w, pad_left)


def depthwise_flops(batch: int, channels: int, out_h: int, out_w: int, kh: int, kw: int) -> int:
    """FLOPs of one depthwise conv: 2 per multiply-accumulate, every tap counted (also the
    taps that fall on zero padding), bias and clip not included."""
    return 2 * batch * channels * out_h * out_w * kh * kw


def depthwise_bytes(batch: int, channels: int, height: int, width: int, out_h: int, out_w: int, kh: int, kw: int,
                    stride_h: int, depthwise_rows: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: every output vector reads kh*kw input vectors; the taps are loaded once
    per work item; outputs stored once. Across a boundary: an image's input once if it stays
    resident while its bands are walked (bands are consecutive work items); else, if the kh
    input rows of one output row stay resident while a band walks down, the rows each band
    reads ((rows-1)*stride + kh: the halo rows twice); else every input row once per output
    row that reads it (kh / stride times); weights and outputs once.
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, by_level, fits

    lanes = budget.lanes
    padded = budget.padded(channels)
    planes = batch * (padded // lanes)
    x_bytes = planes * height * width * lanes * FLOAT32
    y_bytes = planes * out_h * out_w * lanes * FLOAT32
    w_bytes = padded * (kh * kw + 1) * FLOAT32
    bands = -(-out_h // depthwise_rows)
    registers = planes * out_h * out_w * kh * kw * lanes * FLOAT32 + y_bytes + planes * bands * w_bytes // (padded // lanes)
    rows_read = 0
    for band in range(bands):
        start, end = band * out_h // bands, (band + 1) * out_h // bands
        pad = kh // 2                     # MobileNets pad (k - 1) / 2; other pads change this by a row at most
        rows_read += max(0, min(height, (end - 1) * stride_h - pad + kh) - max(0, start * stride_h - pad))
    window_rows = kh * width * lanes * FLOAT32   # the input rows one output row reads
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        if fits(x_bytes // batch, capacity):
            x_traffic = x_bytes
        elif fits(window_rows, capacity):
            x_traffic = x_bytes * max(1.0, rows_read / height)
        else:
            x_traffic = x_bytes * max(1.0, kh / stride_h)
        below[boundary] = x_traffic + w_bytes + y_bytes
    return by_level(registers, below)
