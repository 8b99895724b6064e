"""Dense (group 1) KxK convolution on NCHWc activations: ResNet's 3x3 and strided 1x1 convs.

    out = clip(activate(conv(x, W) + b [+ residual]), clip_min, clip_max)

This is where the compute-bound networks earn (or lose) the FMA peak: a ResNet layer does
Cin*kh*kw multiply-adds per output value, hundreds of FLOPs per byte moved.

Layouts (CB = engine.kernels.layout.CB fp32 lanes: 8 on AVX2, 16 on AVX-512)
    x         (N, Cin_blocks, H, W, CB)       float32, C-contiguous, padded lanes 0
    out       (N, Cout_blocks, Ho, Wo, CB)    float32, C-contiguous (padded lanes come out 0)
    residual  like out, or None
    packed_weight (Cout_blocks, Cin_blocks, kh, kw, L, CB) float32, L = CB input lanes
        (or SHORT_LANES = 4 when Cin <= 4: an RGB stem sums 4 lanes, not 16):
        [ob, cb, i, j, ci, co] = W[ob*CB + co, cb*CB + ci, i, j]
        so the CB output channels of one output block for one input channel and tap are one
        vector load, and the reduction (input block, kernel row, kernel column, input lane)
        walks one output block's weights forwards in memory.
    packed_bias   (Cout_blocks, CB) float32. Padded channels have zero weights and bias.

Micro-kernel (an LLVM-IR `@intrinsic`, as engine.kernels.pointwise explains why)
    A micro-tile is R consecutive output pixels of the flattened N*Ho*Wo (so it may run over
    the end of a row, or of an image: a 7x7 layer fills whole tiles) times B output blocks,
    R*B vector accumulators in registers. It takes each pixel's window position as an
    offset (an int64 array), so a tap costs no index arithmetic per pixel: per input channel
    of each tap it loads B weight vectors, broadcasts R input scalars and issues R*B FMAs.
    Shapes (R for each B; the largest B is MAX_BLOCKS): AVX-512 (32 zmm) 8x1, 8x2, 7x3, 5x4
    (20 accumulators). 6x4 and 8x3 (24) left too few registers for LLVM's scheduler, which
    loads the next input channel's weights early: it spilled one accumulator to the stack,
    and that accumulator's store -> load -> FMA round trip per input channel then paced the
    loop; 5x4 and 7x3 compile without spills and run faster on ResNet's 3x3 layers
    (figures in bench/README, "Where the ResNet gap is"). 12x2 spilled its 12 pixel
    pointers. AVX2 (16 ymm) 8x1, 6x2. Tiles with fewer than 8 accumulators split the input
    channels over partial sums so the 4-cycle FMA latency stays hidden at 2 FMAs per cycle.

Padding. Where windows leave the input (any pad, or an end pad ONNX implies), a work item
first copies the input rows its pixels need (all input channel blocks) into a buffer with
zero rows and columns around them; the micro-kernel then reads every tap unconditionally.
The copy is ~(rows + kh - stride) / rows times the item's input, against Cin*kh*kw*B*CB
FMAs per pixel; measured, it is not negligible: the same 3x3 on an input padded beforehand
ran in 0.82x the time at 128 channels 28x28, 0.96x at 64 channels 56x56 (bench/README). The
buffer is allocated per work item (np.empty inside prange): one buffer per worker, allocated
once, measured no faster (1 thread), and sizing it by the thread count would need that count
passed in (numba.get_num_threads() inside the kernel stops numba caching it). Without
padding x is read in place.

Work split (run-time arguments: changing them never recompiles)
    `pixels`: output pixels (of the flattened N*Ho*Wo) per work item; the pixels are split
    into ceil(N*Ho*Wo / pixels) near-equal tiles, on micro-tile boundaries. Where the input
    is copied (Padding), at least Wo * floor((kh - 1) / stride_h) pixels (the output rows the
    window's halo amounts to: 2 rows for a 3x3, 3 for the 7x7 stride-2 stem), so the halo's
    copy stays a small part of the item.
    `channels`: output channels per work item (a positive multiple of 16), i.e.
    channels // CB output blocks, walked in groups of up to MAX_BLOCKS (the last group of a
    work item may be smaller: 64 channels at 16 lanes is one 5x4 group, 48 one 7x3).
    Work items = channel tiles x pixel tiles, pixel tile fastest, spread by prange (static:
    a thread gets a contiguous run, so it reuses one channel tile's weights, which stay in
    L2, over many pixel tiles; a pixel tile's input is re-read once per channel tile).
    Inside an item each block group sums over chunks of input channel blocks
    (L1_WEIGHT_BYTES), each chunk over all the item's micro-tiles, partial sums kept in
    `out` (MLAS's NCHWc convolution does the same): the chunk's weights are read from L1.
    The plan passes Tiles.pointwise_pixels / pointwise_channels.

Epilogue. The first chunk starts from the residual (if any), the last adds the bias and
clips, in registers. An activation (hardswish, silu: zero-preserving only) runs after the
micro-kernels stored acc + bias + residual unclipped, over the item's outputs, then the clip.

Napkin math, 64 -> 64 3x3 at 56x56 (ResNet's first stage), 5x4 tiles at 16 lanes: per input
channel and tap 20 FMAs (10 cycles at 2 per cycle) from 4 weight loads (256 B) and 5
broadcasts; one input block's weights for the group (4 x 9 x 1 KiB = 36 KiB) stay in L1 over
the item's micro-tiles. 231 MFLOP per image: ~1 ms per image on one core at 235 GFLOP/s.
In the compiled assembly (AVX-512) the 5x4 and 7x3 loop bodies touch no stack slot; the 6x4
and 8x3 ones loaded and stored a spilled accumulator for every input channel.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels._common import _check_output_size, check_array, check_clip, check_int, launch
from engine.kernels.activation import NO_ACTIVATION, NONE, activate, activation_code
from engine.kernels.layout import CB, channel_blocks

MIN_ACCUMULATORS = 8   # FMA latency (4 cycles) x FMA issue rate (2 per cycle)
# A block group sums over chunks of input channel blocks whose weights (MAX_BLOCKS blocks x
# chunk x kh x kw x CB x CB floats) fit in about this much of L1 (at least one block), all the
# item's micro-tiles per chunk, partial sums kept in `out`: the weights are then read from L1,
# not streamed from L2 for every micro-tile (MLAS's NCHWc convolution does the same).
L1_WEIGHT_BYTES = 32 * 1024
# micro-tile pixels R for each number of output blocks B (index B; 0 unused), per lane width
TILE_ROWS = {16: (0, 8, 8, 7, 5), 8: (0, 8, 6)}
ROWS_FOR_BLOCKS = TILE_ROWS[CB]
MAX_BLOCKS = len(ROWS_FOR_BLOCKS) - 1
# Cin <= SHORT_LANES (an RGB stem: 3 of 16 lanes real) sums only SHORT_LANES lanes of its one
# input block: a micro-kernel variant of its own, 4x fewer FMAs than all 16 lanes
SHORT_LANES = 4
MAX_ROWS = max(ROWS_FOR_BLOCKS)
DEFAULT_PIXELS = 64
DEFAULT_CHANNELS = MAX_BLOCKS * CB if MAX_BLOCKS * CB % 16 == 0 else 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)

_TILE_ARGUMENTS = (
    "rows", "blocks",                            # this tile's shape (<= the largest for `blocks`)
    "src", "src_offsets",                        # input: flat array; per pixel its window's first element
    "src_block_stride", "src_row_stride",        # elements between input channel blocks, input rows
    "cin_blocks", "kernel_h", "kernel_w",
    "in_lanes",                                  # input lanes summed per block: lanes, or SHORT_LANES
    "w", "w_offset", "w_block_stride",           # weights: the tile's first block, step between blocks
    "bias", "bias_offset",
    "out", "out_offsets", "out_block_stride",    # output (and residual): per pixel, in the first block
    "residual", "init", "finish", "clip_min", "clip_max",
)


def _tile_intrinsic(lanes: int, rows_for_blocks: tuple[int, ...]):
    """Build the micro-kernel intrinsic for `lanes`-wide vectors.

    tile(*_TILE_ARGUMENTS) computes, for r < rows pixels and b < blocks output blocks
    (1 <= blocks < len(rows_for_blocks), 1 <= rows <= rows_for_blocks[blocks]; else nothing),
        acc[r, b, :] = sum over cb < cin_blocks, i < kernel_h, j < kernel_w, c < lanes of
            src[src_offsets[r] + cb*src_block_stride + i*src_row_stride + j*lanes + c]
            * w[w_offset + b*w_block_stride + ((cb*kernel_h + i)*kernel_w + j)*lanes*lanes + c*lanes : +lanes]
        acc starts as 0 (init 0), residual[o] (init 1) or out[o] (init 2; a partial sum over
        earlier input channels), o = out_offsets[r] + b*out_block_stride : +lanes
        out[o] = min(max(acc + bias[bias_offset + b*lanes : +lanes], clip_min), clip_max) if finish
                 else acc (a partial sum)
    float32 arrays C-contiguous (indexed flat), offsets int64 arrays. No bounds checks: every
    tap must lie inside src (the driver pads the input where the window leaves it).
    """
    i32 = ir.IntType(32)
    i64 = ir.IntType(64)
    vector = ir.VectorType(ir.FloatType(), lanes)
    vector_ptr = ir.PointerType(vector)
    splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

    def constant(value):
        return ir.Constant(i64, value)

    def splat(builder, scalar):
        one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), splat_mask)

    def load_vector(builder, pointer, offset):
        return builder.load(builder.bitcast(builder.gep(pointer, [offset]), vector_ptr), align=4)

    def store_vector(builder, value, pointer, offset):
        builder.store(value, builder.bitcast(builder.gep(pointer, [offset]), vector_ptr), align=4)

    def emit_tile(builder, rows, blocks, a, in_lanes):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{lanes}f32")
        splits = max(1, min(lanes, -(-MIN_ACCUMULATORS // (rows * blocks))))
        pixels = [builder.gep(a["src"], [builder.load(builder.gep(a["src_offsets"], [constant(r)]))])
                  for r in range(rows)]
        outs = [builder.load(builder.gep(a["out_offsets"], [constant(r)])) for r in range(rows)]
        taps = builder.mul(a["kernel_h"], a["kernel_w"])
        w_offsets = [builder.mul(a["w_block_stride"], constant(b)) for b in range(blocks)]
        zero = ir.Constant(vector, None)
        acc_slots = [[[cgutils.alloca_once_value(builder, zero) for _ in range(splits)]
                      for _ in range(blocks)] for _ in range(rows)]
        o_blocks = [builder.mul(a["out_block_stride"], constant(b)) for b in range(blocks)]
        with builder.if_then(builder.icmp_signed("!=", a["init"], constant(0))):
            start = builder.select(builder.icmp_signed("==", a["init"], constant(1)), a["residual"], a["out"])
            for r in range(rows):
                for b in range(blocks):
                    builder.store(load_vector(builder, start, builder.add(outs[r], o_blocks[b])), acc_slots[r][b][0])
        # (mem2reg turns the slots into phi nodes: the accumulators live in registers)
        with cgutils.for_range(builder, a["cin_blocks"]) as block_loop:
            x_block = builder.mul(block_loop.index, a["src_block_stride"])
            w_block = builder.mul(block_loop.index, taps)
            with cgutils.for_range(builder, a["kernel_h"]) as row_loop:
                x_row = builder.add(x_block, builder.mul(row_loop.index, a["src_row_stride"]))
                w_row = builder.add(w_block, builder.mul(row_loop.index, a["kernel_w"]))
                with cgutils.for_range(builder, a["kernel_w"]) as col_loop:
                    x_tap = builder.add(x_row, builder.mul(col_loop.index, constant(lanes)))
                    w_tap = builder.gep(a["w"], [builder.mul(builder.add(w_row, col_loop.index),
                                                             constant(in_lanes * lanes))])
                    acc = [[[builder.load(slot) for slot in slots] for slots in row] for row in acc_slots]
                    for lane in range(in_lanes):  # one input channel per step, fully unrolled
                        split = lane % splits
                        weights = [load_vector(builder, w_tap, builder.add(w_offsets[b], constant(lane * lanes)))
                                   for b in range(blocks)]
                        for r in range(rows):
                            value = builder.load(builder.gep(pixels[r], [builder.add(x_tap, constant(lane))]), align=4)
                            x_splat = splat(builder, value)
                            for b in range(blocks):
                                acc[r][b][split] = builder.call(fma, [x_splat, weights[b], acc[r][b][split]])
                    for r in range(rows):
                        for b in range(blocks):
                            for split in range(splits):
                                builder.store(acc[r][b][split], acc_slots[r][b][split])
        sums = [[None] * blocks for _ in range(rows)]
        for r in range(rows):
            for b in range(blocks):
                partial = [builder.load(slot) for slot in acc_slots[r][b]]
                while len(partial) > 1:  # pairwise
                    partial = [builder.fadd(partial[k], partial[k + 1]) if k + 1 < len(partial) else partial[k]
                               for k in range(0, len(partial), 2)]
                sums[r][b] = partial[0]
        low = splat(builder, a["clip_min"])
        high = splat(builder, a["clip_max"])
        biases = [load_vector(builder, a["bias"], constant(b * lanes)) for b in range(blocks)]
        finish = builder.icmp_unsigned("!=", a["finish"], ir.Constant(a["finish"].type, 0))
        with builder.if_else(finish) as (final, partial_sum):
            with final:
                for b in range(blocks):
                    for r in range(rows):
                        value = builder.fadd(sums[r][b], biases[b])
                        value = builder.select(builder.fcmp_ordered("<", value, low), low, value)
                        value = builder.select(builder.fcmp_ordered(">", value, high), high, value)
                        store_vector(builder, value, a["out"], builder.add(outs[r], o_blocks[b]))
            with partial_sum:
                for b in range(blocks):
                    for r in range(rows):
                        store_vector(builder, sums[r][b], a["out"], builder.add(outs[r], o_blocks[b]))

    @intrinsic
    def tile(typingctx, rows, blocks, src, src_offsets, src_block_stride, src_row_stride, cin_blocks, kernel_h,
             kernel_w, in_lanes, w, w_offset, w_block_stride, bias, bias_offset, out, out_offsets, out_block_stride,
             residual, init, finish, clip_min, clip_max):
        arguments = (rows, blocks, src, src_offsets, src_block_stride, src_row_stride, cin_blocks, kernel_h,
                     kernel_w, in_lanes, w, w_offset, w_block_stride, bias, bias_offset, out, out_offsets,
                     out_block_stride,
                     residual, init, finish, clip_min, clip_max)
        kinds = dict(zip(_TILE_ARGUMENTS, arguments))
        for name in ("src", "w", "bias", "out", "residual"):
            t = kinds[name]
            if not (isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C"):
                return None
        for name in ("src_offsets", "out_offsets"):
            t = kinds[name]
            if not (isinstance(t, types.Array) and t.dtype == types.int64 and t.layout == "C"):
                return None
        for name in ("rows", "blocks", "src_block_stride", "src_row_stride", "cin_blocks", "kernel_h", "kernel_w",
                     "in_lanes",
                     "w_offset", "w_block_stride", "bias_offset", "out_block_stride", "init"):
            if kinds[name] != types.int64:
                return None
        if finish != types.boolean or clip_min != types.float32 or clip_max != types.float32:
            return None

        def codegen(context, builder, sig, args):
            a = dict(zip(_TILE_ARGUMENTS, args))
            for name, offset in (("w", "w_offset"), ("bias", "bias_offset"), ("src", None), ("out", None),
                                 ("residual", None), ("src_offsets", None), ("out_offsets", None)):
                array_type = sig.args[_TILE_ARGUMENTS.index(name)]
                data = context.make_array(array_type)(context, builder, a[name]).data
                a[name] = builder.gep(data, [a[offset]]) if offset else data
            # one code path per (rows, blocks, input lanes): switch on lanes * 4096 + rows * 64 + blocks
            key = builder.add(builder.add(builder.mul(a["rows"], constant(64)), a["blocks"]),
                              builder.mul(a["in_lanes"], constant(4096)))
            done = builder.append_basic_block("tile.done")
            switch = builder.switch(key, done)
            for in_lanes in sorted({lanes, min(lanes, SHORT_LANES)}):
                for tile_blocks in range(1, len(rows_for_blocks)):
                    for tile_rows in range(1, rows_for_blocks[tile_blocks] + 1):
                        case = builder.append_basic_block(f"tile.{tile_rows}x{tile_blocks}.{in_lanes}")
                        switch.add_case(constant(in_lanes * 4096 + tile_rows * 64 + tile_blocks), case)
                        builder.position_at_end(case)
                        emit_tile(builder, tile_rows, tile_blocks, a, in_lanes)
                        builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.void(*arguments), codegen

    return tile


def _tile_python(rows, blocks, src, src_offsets, src_block_stride, src_row_stride, cin_blocks, kernel_h, kernel_w,
                 in_lanes, w, w_offset, w_block_stride, bias, bias_offset, out, out_offsets, out_block_stride, residual,
                 init, finish, clip_min, clip_max):
    """The micro-kernel's semantics in numpy, used when NUMBA_DISABLE_JIT=1 (coverage runs)."""
    src, w, bias, out, residual = (a.reshape(-1) for a in (src, w, bias, out, residual))
    taps = [(cb, i, j) for cb in range(cin_blocks) for i in range(kernel_h) for j in range(kernel_w)]
    for b in range(blocks):
        weights = w[w_offset + b * w_block_stride:][:len(taps) * in_lanes * CB].reshape(len(taps) * in_lanes, CB)
        for r in range(rows):
            inputs = np.concatenate([
                src[src_offsets[r] + cb * src_block_stride + i * src_row_stride + j * CB:][:in_lanes]
                for cb, i, j in taps])
            at = out_offsets[r] + b * out_block_stride
            value = inputs @ weights
            if init:
                value = value + (residual if init == 1 else out)[at:at + CB]
            if finish:
                value = np.minimum(np.maximum(value + bias[bias_offset + b * CB:][:CB], clip_min), clip_max)
            out[at:at + CB] = value


micro_tile = _tile_python if numba.config.DISABLE_JIT else _tile_intrinsic(CB, ROWS_FOR_BLOCKS)


@njit(cache=True, inline="always")
def _tile_start(tile_index, n_tiles, total, rows):
    # first pixel of pixel tile `tile_index` of `n_tiles`: near-equal shares, on multiples
    # of the micro-tile's `rows` so that only a tile's last micro-tile can be partial
    if tile_index >= n_tiles:
        return total
    start = tile_index * total // n_tiles
    return start - start % rows


@njit(cache=True)
def work_split(n_images, height, width, cout_blocks, out_h, out_w, kernel_h, kernel_w, in_lanes, stride_h, stride_w,
               pad_top, pad_left, pixels, channels):
    """`_conv_kernel`'s work split, shared with its access trace (engine.trace.conv_nchwc):
    (n_channel_tiles, n_pixel_tiles, cin_chunk, needs_copy, padded_w). Work items are
    n_channel_tiles * n_pixel_tiles, pixel tile fastest; cin_chunk: input channel blocks
    per reduction chunk (their weights for MAX_BLOCKS output blocks fit L1_WEIGHT_BYTES);
    needs_copy: the windows leave the input, so each work item copies its input rows into a
    zero-bordered buffer of padded_w columns, and a pixel tile then spans at least
    out_w * floor((kh - 1) / stride_h) output pixels (the rows its copied halo amounts to)."""
    blocks_per_item = max(1, channels // CB)
    n_channel_tiles = (cout_blocks + blocks_per_item - 1) // blocks_per_item
    tap_weights = kernel_h * kernel_w * in_lanes * CB
    cin_chunk = max(1, L1_WEIGHT_BYTES // (MAX_BLOCKS * tap_weights * 4))
    padded_w = max(width + pad_left, (out_w - 1) * stride_w + kernel_w)
    needs_copy = (pad_top > 0 or pad_left > 0 or padded_w > width
                  or (out_h - 1) * stride_h + kernel_h > height)
    if needs_copy:
        pixels = max(pixels, out_w * max(0, (kernel_h - 1) // stride_h))
    n_pixel_tiles = (n_images * out_h * out_w + pixels - 1) // pixels
    return n_channel_tiles, n_pixel_tiles, cin_chunk, needs_copy, padded_w


@njit(parallel=True, cache=True)
def _conv_kernel(x, w, bias, out, residual, has_residual, stride_h, stride_w, pad_top, pad_left, clip_min, clip_max,
                 act, alpha, beta, pixels, channels):
    n_images, cin_blocks, height, width, _ = x.shape
    cout_blocks, _, kernel_h, kernel_w, in_lanes, _ = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    howo = out_h * out_w
    total = n_images * howo
    blocks_per_item = max(1, channels // CB)
    full_rows = ROWS_FOR_BLOCKS[min(MAX_BLOCKS, blocks_per_item, cout_blocks)]
    w_block_stride = cin_blocks * kernel_h * kernel_w * in_lanes * CB
    tap_weights = kernel_h * kernel_w * in_lanes * CB  # elements of one (output block, input block) pair
    out_block_stride = howo * CB
    n_channel_tiles, n_pixel_tiles, cin_chunk, needs_copy, padded_w = work_split(
        n_images, height, width, cout_blocks, out_h, out_w, kernel_h, kernel_w, in_lanes, stride_h, stride_w,
        pad_top, pad_left, pixels, channels)
    # with an activation the micro-kernel stores v unclipped; activate + clip run after it
    low = np.float32(clip_min) if act == NONE else np.float32(-_FLOAT32_MAX)
    high = np.float32(clip_max) if act == NONE else np.float32(_FLOAT32_MAX)
    final_low = np.float32(clip_min)
    final_high = np.float32(clip_max)
    alpha32 = np.float32(alpha)
    beta32 = np.float32(beta)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for item in prange(n_channel_tiles * n_pixel_tiles):
        src_offsets = np.empty(MAX_ROWS, np.int64)
        out_offsets = np.empty(MAX_ROWS, np.int64)
        channel_tile = item // n_pixel_tiles          # pixel tile fastest: a thread's run of
        pixel_tile = item - channel_tile * n_pixel_tiles  # items reuses one channel tile's weights
        pixel_begin = _tile_start(pixel_tile, n_pixel_tiles, total, full_rows)
        pixel_end = _tile_start(pixel_tile + 1, n_pixel_tiles, total, full_rows)
        block_begin = channel_tile * blocks_per_item
        block_end = min(cout_blocks, block_begin + blocks_per_item)
        segment = pixel_begin
        while segment < pixel_end:  # one image's part of the pixel tile at a time
            image = segment // howo
            segment_end = min(pixel_end, (image + 1) * howo)
            first_row = (segment - image * howo) // out_w
            last_row = (segment_end - 1 - image * howo) // out_w
            row0 = first_row * stride_h - pad_top         # input row of the source's first row
            if needs_copy:
                src_rows = (last_row - first_row) * stride_h + kernel_h
                row_stride = padded_w * CB
                block_stride = src_rows * row_stride
                src = np.empty(cin_blocks * block_stride, np.float32)
                r_lo = max(0, -row0)
                r_hi = max(r_lo, min(src_rows, height - row0))
                right = (pad_left + width) * CB
                for cb in range(cin_blocks):
                    d = cb * block_stride
                    src[d:d + r_lo * row_stride] = 0.0                          # rows above the input
                    src[d + r_hi * row_stride:d + src_rows * row_stride] = 0.0  # rows below it
                    for r in range(r_lo, r_hi):
                        s = ((image * cin_blocks + cb) * height + row0 + r) * width * CB
                        e = d + r * row_stride
                        src[e:e + pad_left * CB] = 0.0                          # left padding
                        src[e + pad_left * CB:e + right] = xf[s:s + width * CB]
                        src[e + right:e + row_stride] = 0.0                     # right padding
                image_offset = 0
                first_input_row = row0
            else:
                src = xf
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
                        for r in range(rows):
                            # window's first element: input row oh*sh - pad_top, column ow*sw - pad_left
                            # (the buffer's column 0 is input column -pad_left)
                            column = ow * stride_w if needs_copy else ow * stride_w - pad_left
                            src_offsets[r] = (image_offset + cb0 * block_stride
                                              + (oh * stride_h - pad_top - first_input_row) * row_stride + column * CB)
                            out_offsets[r] = out_first + rem * CB
                            rem += 1
                            ow += 1
                            if ow == out_w:
                                ow = 0
                                oh += 1
                        micro_tile(rows, blocks, src, src_offsets, block_stride, row_stride, chunk, kernel_h,
                                   kernel_w, in_lanes, w, block * w_block_stride + cb0 * tap_weights,
                                   w_block_stride, bias, block * CB, out, out_offsets, out_block_stride, residual,
                                   init, finish, low, high)
                        q += rows
                    cb0 += chunk
                block += blocks
            if act != NONE:
                for q in range(segment, segment_end):
                    rem = q - image * howo
                    for b in range(block_begin, block_end):
                        base = ((image * cout_blocks + b) * howo + rem) * CB
                        for lane in range(CB):
                            v = activate(of[base + lane], act, alpha32, beta32)
                            of[base + lane] = min(max(v, final_low), final_high)
            segment = segment_end


def pack_conv_nchwc(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pack ONNX conv weights for `conv_nchwc`.

    weight: (Cout, Cin, kh, kw), any float dtype; bias: (Cout,) or None (zeros).
    Returns (packed_weight (Cout_blocks, Cin_blocks, kh, kw, L, CB) float32 with
    [ob, cb, i, j, ci, co] = weight[ob*CB + co, cb*CB + ci, i, j], packed_bias
    (Cout_blocks, CB) float32). L = CB, or SHORT_LANES when Cin <= SHORT_LANES (an RGB
    stem: one input block of which only the first L lanes are summed, not all CB). Packed
    weights are zero-padded in both channel dimensions, C-contiguous.
    """
    fn = "pack_conv_nchwc"
    weight = np.asarray(weight)
    if weight.ndim != 4 or min(weight.shape) < 1:
        raise ValueError(f"{fn}: weight must have shape (Cout, Cin, kh, kw), all >= 1, got {weight.shape}")
    if not np.issubdtype(weight.dtype, np.floating):
        raise ValueError(f"{fn}: weight must be floating point, got {weight.dtype}")
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (out_channels,):
            raise ValueError(f"{fn}: bias must have shape ({out_channels},), got {bias.shape}")
        if not np.issubdtype(bias.dtype, np.floating):
            raise ValueError(f"{fn}: bias must be floating point, got {bias.dtype}")
    cout_blocks = channel_blocks(out_channels)
    cin_blocks = channel_blocks(in_channels)
    in_lanes = SHORT_LANES if in_channels <= SHORT_LANES < CB else CB
    padded = np.zeros((cout_blocks * CB, cin_blocks * in_lanes, kernel_h, kernel_w), np.float32)
    padded[:out_channels, :in_channels] = weight
    # (ob, co, cb, ci, i, j) -> (ob, cb, i, j, ci, co)
    packed = np.ascontiguousarray(padded.reshape(cout_blocks, CB, cin_blocks, in_lanes, kernel_h, kernel_w)
                                  .transpose(0, 2, 4, 5, 3, 1))
    packed_bias = np.zeros(cout_blocks * CB, np.float32)
    if bias is not None:
        packed_bias[:out_channels] = bias
    return packed, packed_bias.reshape(cout_blocks, CB)


def conv_nchwc(x: np.ndarray, packed_weight: np.ndarray, packed_bias: np.ndarray, out: np.ndarray,
               stride_h: int, stride_w: int, pad_top: int, pad_left: int, clip_min: float, clip_max: float,
               residual: np.ndarray | None = None, pixels: int = DEFAULT_PIXELS, channels: int = DEFAULT_CHANNELS,
               *, activation=NO_ACTIVATION) -> None:
    """out = clip(activate(conv(x, W) + bias [+ residual]), clip_min, clip_max), written in place.

    x: (N, Cin_blocks, H, W, CB) float32 NCHWc; packed_weight (Cout_blocks, Cin_blocks, kh, kw,
    L, CB) and packed_bias (Cout_blocks, CB) from `pack_conv_nchwc`; out and residual:
    (N, Cout_blocks, Ho, Wo, CB) float32. Ho, Wo come from out (the caller derived them from
    all four pads, ONNX style); input outside H x W reads as 0. Dilation 1.
    Strides >= 1, pads >= 0, clip_min <= 0 <= clip_max. activation: (name, alpha, beta), one
    of the zero-preserving ones (none, hardswish, silu), applied after the residual add.
    residual may be `out` itself (in-place add) but must not otherwise overlap it; out must
    not overlap x.
    pixels: output pixels (of the flattened N*Ho*Wo) per work item, >= 1; channels: output
    channels per work item, a positive multiple of 16 (channels // CB blocks): the module
    docstring's work split. They never trigger a recompile.
    Raises ValueError naming the argument for anything inconsistent.
    """
    fn = "conv_nchwc"
    stride_h = check_int(fn, "stride_h", stride_h, 1)
    stride_w = check_int(fn, "stride_w", stride_w, 1)
    pad_top = check_int(fn, "pad_top", pad_top, 0)
    pad_left = check_int(fn, "pad_left", pad_left, 0)
    low, high = check_clip(fn, clip_min, clip_max)
    pixels = check_int(fn, "pixels", pixels, 1)
    channels = check_int(fn, "channels", channels, 1)
    if channels % 16:
        raise ValueError(f"{fn}: channels must be a positive multiple of 16, got {channels}")
    act, alpha, beta = activation_code(fn, activation, zero_preserving=True)
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, cin_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "packed_weight", packed_weight, (None, cin_blocks, None, None, None, CB))
    cout_blocks, _, kernel_h, kernel_w, in_lanes, _ = packed_weight.shape
    if min(packed_weight.shape) < 1:
        raise ValueError(f"{fn}: packed_weight must have no empty dimension, got {packed_weight.shape}")
    if in_lanes != CB and not (in_lanes == SHORT_LANES and cin_blocks == 1):
        raise ValueError(f"{fn}: packed_weight must have {CB} input lanes (or {SHORT_LANES} with one input block), "
                         f"got shape {packed_weight.shape}")
    check_array(fn, "packed_bias", packed_bias, (cout_blocks, CB))
    check_array(fn, "out", out, (n_images, cout_blocks, None, None, CB))
    out_h, out_w = out.shape[2:4]
    if min(out_h, out_w) < 1:
        raise ValueError(f"{fn}: out must have no empty dimension, got {out.shape}")
    _check_output_size(fn, "height", out_h, height, kernel_h, stride_h, pad_top)
    _check_output_size(fn, "width", out_w, width, kernel_w, stride_w, pad_left)
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out must be writeable")
    if np.may_share_memory(out, x):
        raise ValueError(f"{fn}: out must not overlap x")
    has_residual = residual is not None
    if has_residual:
        check_array(fn, "residual", residual, out.shape)
        if (residual is not out and np.may_share_memory(residual, out)
                and residual.__array_interface__["data"][0] != out.__array_interface__["data"][0]):
            raise ValueError(f"{fn}: residual must be out itself or not overlap out")
    else:
        residual = out  # never read
    launch(_conv_kernel, x, packed_weight, packed_bias, out, residual, has_residual, stride_h, stride_w, pad_top,
           pad_left, low, high, act, alpha, beta, pixels, channels)


# Least output channels per work item of a strided dense conv (item_channels): each work item
# reads its pixels' input at the stride, and every channel tile reads it again; 128 instead
# of 64 ran ResNet's 3x3 stride-2 and 1x1 stride-2 convs in 0.92-0.97x the time at batch 1
# and 16 in both ResNets (in-network A/B, bench/README "Where the ResNet gap is"); the
# stride-1 3x3s were 1.00-1.02x (not faster), so they keep the plain rounding.
STRIDED_MIN_CHANNELS = 128
# A strided 1x1 (ResNet's downsample) with at least STRIDED_1X1_PIXEL_TILES pixel tiles takes
# at least this many: its input was computed blocks earlier (cold, at batch 64 from DRAM), and
# read at stride 2 it brings in twice the lines it uses, once per channel tile; 512 ran
# ResNet-50's three in 0.75x the time at batch 64. With fewer pixel tiles it would leave too
# few work items for the threads (1.24x on ResNet-18's at batch 1).
STRIDED_1X1_CHANNELS = 512
STRIDED_1X1_PIXEL_TILES = 8


def item_channels(channels: int, out_channels: int, stride: int = 1, kernel_taps: int = 0,
                  pixel_tiles: int = 0) -> int:
    """Output channels per work item that `_dense` steps pass for a layer of `out_channels`:
    `channels` (a Tiles.pointwise_channels, a multiple of 16), raised where stride > 1 to at
    least STRIDED_MIN_CHANNELS (or the layer's width if less), and for a 1x1 (kernel_taps
    1) with at least STRIDED_1X1_PIXEL_TILES pixel tiles (pixel_tiles: the layer's output
    pixels over the pixel tile, whole batch) to STRIDED_1X1_CHANNELS; then rounded up to the
    nearest whole divisor of the layer's output blocks that is still a multiple of 16
    channels, so every work item gets the same blocks and none ends in a narrow group (48
    on a 64..512 channel layer at 16 lanes would split each 4 blocks into a 7x3 and an 8x1
    micro-tile group: 1.4-1.5x slower on ResNet's 64-channel 3x3 layers, bench/README).
    The channels asked for where no such divisor lies between them and the layer's width."""
    width = channel_blocks(out_channels) * CB
    if stride > 1:
        channels = max(channels, min(STRIDED_MIN_CHANNELS, width))
        if kernel_taps == 1 and pixel_tiles >= STRIDED_1X1_PIXEL_TILES:
            channels = max(channels, min(STRIDED_1X1_CHANNELS, width))
    blocks = max(1, channels // CB)
    cout_blocks = channel_blocks(out_channels)
    for candidate in range(blocks, cout_blocks + 1):
        if cout_blocks % candidate == 0 and candidate * CB % 16 == 0:
            return candidate * CB
    return channels


def conv_nchwc_flops(batch: int, cin: int, cout: int, out_h: int, out_w: int, kh: int, kw: int) -> int:
    """FLOPs of one dense conv: 2 per multiply-accumulate, true channels, every tap (padding
    included). Bias, residual, activation and clip are not counted."""
    return 2 * batch * cout * out_h * out_w * cin * kh * kw


def conv_nchwc_bytes(batch: int, cin: int, cout: int, h: int, w: int, out_h: int, out_w: int, kh: int, kw: int,
                     stride: int, budget, pixels: int = DEFAULT_PIXELS, channels: int = DEFAULT_CHANNELS,
                     has_residual: bool = False) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: per micro-tile (R pixels x B blocks) and tap, CB weight vectors per
    block and CB input broadcasts per pixel; outputs (and residual) once; plus the partial
    sums' round trips: the reduction runs in chunks of input channel blocks (work_split's
    cin_chunk), and each chunk after the first reads and writes out once more; where the
    windows leave the input, each work item's copy of its input rows (loaded, then the
    zero-bordered buffer stored), pixel tiles widened as work_split widens them.
    Across a boundary, work items ordered pixel tile fastest:
      weights  once if all of them stay resident (reused by every pixel tile); else once
               per pixel tile if one channel tile's slice stays resident; else once per
               micro-tile;
      inputs   once if the input rows a pixel tile needs stay resident while its channel
               tiles are walked (plus the kh - stride rows its neighbour shares); else once
               per block group;
      outputs and residual once.
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, by_level, ceil_div, fits

    lanes = budget.lanes
    rows_for_blocks = TILE_ROWS.get(lanes, TILE_ROWS[16 if lanes >= 16 else 8])
    max_blocks = len(rows_for_blocks) - 1
    cin_p = budget.padded(cin)
    cout_p = budget.padded(cout)
    cout_blocks = cout_p // lanes
    blocks_per_item = max(1, min(channels // lanes, cout_blocks))
    group = min(max_blocks, blocks_per_item)
    rows = rows_for_blocks[group]
    total = batch * out_h * out_w
    x_bytes = batch * cin_p * h * w * FLOAT32
    w_bytes = cout_p * (cin_p * kh * kw + 1) * FLOAT32
    y_bytes = total * cout_p * FLOAT32 * (2 if has_residual else 1)
    taps = cin_p * kh * kw
    micro_tiles = ceil_div(total, rows)
    groups = ceil_div(cout_blocks, group)
    in_lanes = min(lanes, SHORT_LANES) if cin <= SHORT_LANES else lanes
    cin_chunk = max(1, L1_WEIGHT_BYTES // (max_blocks * kh * kw * in_lanes * lanes * FLOAT32))
    chunks = ceil_div(cin_p // lanes, cin_chunk)
    partial_sums = (chunks - 1) * total * cout_p * FLOAT32 * 2  # out read and written per later chunk
    # where the windows leave the input (padding, inferred: ONNX-style symmetric pads, the top
    # one the larger), every work item copies its segments' input rows into a zero-bordered
    # buffer: the rows inside the input loaded, the whole buffer stored; pixel tiles widened
    pad_h = max(0, (out_h - 1) * stride + kh - h)
    pad_w = max(0, (out_w - 1) * stride + kw - w)
    copy = 0
    if pad_h or pad_w:
        pixels = max(pixels, out_w * max(0, (kh - 1) // stride))
        pad_top = (pad_h + 1) // 2
        padded_w = max(w + (pad_w + 1) // 2, (out_w - 1) * stride + kw)
        n_tiles = ceil_div(total, pixels)
        howo = out_h * out_w
        for tile in range(n_tiles):       # as the kernel's _tile_start and its segments
            begin = tile * total // n_tiles
            begin -= begin % rows
            end = total if tile + 1 >= n_tiles else (tile + 1) * total // n_tiles
            end = end if tile + 1 >= n_tiles else end - end % rows
            segment = begin
            while segment < end:
                image = segment // howo
                segment_end = min(end, (image + 1) * howo)
                first_row = (segment - image * howo) // out_w
                last_row = (segment_end - 1 - image * howo) // out_w
                src_rows = (last_row - first_row) * stride + kh
                row0 = first_row * stride - pad_top
                inside = max(0, min(src_rows, h - row0) - max(0, -row0))
                copy += src_rows * padded_w + inside * w
                segment = segment_end
        copy *= cin_p * FLOAT32 * ceil_div(cout_blocks, blocks_per_item)
    registers = (total * taps * groups * FLOAT32          # broadcasts: per pixel, tap and block group
                 + micro_tiles * taps * cout_p * FLOAT32  # weight vectors: per micro-tile and tap
                 + y_bytes + partial_sums + copy)
    pixel_tiles = ceil_div(total, pixels)
    tile_pixels = min(pixels, total)
    # input rows one pixel tile reads: its output rows (at least one) times stride, plus kh - stride
    tile_rows = ceil_div(tile_pixels, out_w) * stride + max(0, kh - stride)
    tile_input = min(tile_rows, h) * w * cin_p * FLOAT32
    channel_slice = min(blocks_per_item * lanes, cout_p) * taps * FLOAT32
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        if fits(w_bytes, capacity):
            w_traffic = w_bytes
        elif fits(channel_slice, capacity):
            w_traffic = w_bytes * pixel_tiles
        else:
            w_traffic = w_bytes * micro_tiles
        x_traffic = x_bytes if fits(tile_input, capacity) else x_bytes * groups
        below[boundary] = x_traffic + min(w_traffic, w_bytes * micro_tiles) + y_bytes
    return by_level(registers, below)
