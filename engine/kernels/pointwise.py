"""Pointwise (1x1) convolution on NCHWc activations: out = clip(act(W x + b [+ residual])).

About two thirds of MobileNetV2's FLOPs are 1x1 convolutions, so this is the kernel that
decides whether the engine is fast. Per output pixel and output channel it is a dot product
over the input channels; over a tile it is a small matrix multiply
    out[pixels, Cout] = x[pixels, Cin] @ W.T[Cin, Cout]
with the epilogue (bias, residual add, activation, clip) applied while the sums are still in
registers.

Layouts (CB = engine.kernels.layout.CB fp32 lanes: 8 on AVX2, 16 on AVX-512)
    x         (N, Cin_blocks, H, W, CB)        float32, C-contiguous, padded lanes 0
    out       (N, Cout_blocks, H, W, CB)       float32, C-contiguous (padded lanes come out 0)
    residual  (N, Cout_blocks, H, W, CB)       like out, or None
    packed_weight (Cout_blocks, Cin_blocks*CB, CB) float32: [ob, ci, lane] = W[ob*CB + lane, ci]
        so one output block's weights for one input channel are CB consecutive floats
        (one vector load), and walking the input channels walks memory forwards.
    packed_bias   (Cout_blocks, CB) float32: [ob, lane] = b[ob*CB + lane]
    Padded input channels have zero weights and padded output channels zero weights and
    zero bias, so padded output lanes are exactly 0 after any clip containing 0.

Work split (all runtime arguments, so changing a tile never recompiles)
    work item = (pixel tile of about `pointwise_pixels` consecutive pixels of the flattened
                 N*H*W: the pixels are split into ceil(N*H*W / pointwise_pixels) tiles of
                 near-equal size, on micro-tile boundaries, so threads get equal work;
                 channel tile of `pointwise_channels` output channels), distributed by prange
                 (static schedule: thread t gets the t-th contiguous run of work items).
    Inside a work item, for the part of the pixel tile in each image, every pair of output
    blocks (`BLOCKS`) walks those pixels in micro-tiles of `ROWS`, one micro-kernel call
    each (`walk_micro_tiles`, which the fused block's expand and project use too). Edge
    micro-tiles (fewer pixels or blocks) have their own code paths.

Micro-kernel (why it is written in LLVM IR)
    A ROWS x BLOCKS micro-tile keeps ROWS*BLOCKS vector accumulators in registers for the
    whole input-channel loop: per input channel it loads BLOCKS weight vectors, broadcasts
    ROWS input scalars and issues ROWS*BLOCKS FMAs. With 16 ymm registers on AVX2 that is
    6 x 2 = 12 accumulators + 2 weight vectors + 1 broadcast = 15 registers.
    numba has no SIMD vector type, and the plain-Python alternatives fall short of that: an
    accumulator array lives in L1, not in registers (every FMA a load and a store); scalar
    accumulators left to LLVM's SLP vectoriser (96 of them) make numba's front end compile
    thousands of statements, need every index uint64 (a negative-index wrap-around select on
    a load stops the vectoriser) and still spill. So the micro-kernel is a numba `@intrinsic`
    that emits the vector loop directly (`<CB x float>` loads, `llvm.fma`, broadcasts,
    `llvm.prefetch`), which keeps the accumulators in registers, compiles in seconds, and
    numba's cache stores like any other code (figures: bench/README). Edge tiles with
    fewer than 8 accumulators split the input channels over several partial sums so the FMA
    latency stays hidden.

Napkin math per 6-pixel x 16-channel micro-tile (CB = 8), per input channel:
    12 FMA (24 FLOP x 8 lanes = 192 FLOP), 2 weight vector loads (64 B), 6 broadcasts (24 B).
    A block pair's weights (Cin * 64 B) are re-read for every micro-tile: from L1 up to
    Cin ~ 400, else from L2 (61 KiB at Cin = 960), 64 B per 6 cycles at peak, well within
    L2's 32 B/cycle. The inputs of a pixel tile (pointwise_pixels * Cin * 4 B) are re-read
    once per block pair from L2; their first read comes from L3/DRAM in Cin_blocks
    interleaved streams, which the micro-kernel prefetches two micro-tiles ahead.
    Compulsory traffic of the layer: x once (N*HW*Cin*4 B), weights once per pixel tile,
    out (+ residual) once.
"""
from __future__ import annotations

import operator

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.kernels._common import check_clip, launch
from engine.kernels.activation import (HARDSWISH, NO_ACTIVATION, NONE, SILU, activate_array, emit_activation,
                                       kernel_activation)
from engine.kernels.layout import CB, channel_blocks
from engine.kernels.micro_tile import (BLOCKS, DEFAULT_POINTWISE_CHANNELS, DEFAULT_POINTWISE_PIXELS,  # noqa: F401
                                       MICRO_TILE, ROWS)

MIN_ACCUMULATORS = 8  # FMA latency (4 cycles) x FMA issue rate (2 per cycle) on Zen 3
PREFETCH_TILES = 2    # software-prefetch the inputs of the micro-tile this many tiles ahead
# Weight prefetch: while a pair of output blocks walks its micro-tiles, the first
# WEIGHT_PREFETCH_TILES of them also prefetch the next pair's weights, W_PREFETCH_LINES
# 64-byte lines per input-channel block, so that pair's weights (Cin * BLOCKS * CB * 4 B)
# arrive spread over the current pair's compute instead of all at the start of the next.
# AHEAD: micro-tiles past those (a layer with few pixel tiles has 9 or more per pair at
# 7x7) prefetch, 2 lines per input-channel block, their work item's share of a later
# layer's weights (pointwise_conv's `ahead`): the classifier's 5 MB stream from DRAM
# otherwise starts only when the classifier does.
# Only where a pair's weights are read by few pixel tiles (at most
# WEIGHT_PREFETCH_MAX_PIXEL_TILES): the late, small layers whose weights come from DRAM at
# batch 1; where many pixel tiles reuse them they are in cache and the prefetches only cost.
W_PREFETCH_LINES = max(1, CB // 4)
WEIGHT_PREFETCH_TILES = BLOCKS * CB * CB // (16 * W_PREFETCH_LINES)
WEIGHT_PREFETCH_MAX_PIXEL_TILES = 4


# The micro-kernel's arguments, in order (offsets and strides in float32 elements).
_TILE_ARGUMENTS = (
    "rows", "blocks",                           # this tile's shape (<= the maximum shape)
    "x", "x_offset", "x_block_stride",          # input: tile start, step between channel blocks
    "x_prefetch",                               # prefetch target, from the tile start
    "w", "w_offset", "w_block_stride",          # weights: tile start, step between output blocks
    "cin_blocks",                               # input channel blocks to sum over
    "bias", "bias_offset",
    "out", "out_offset", "out_block_stride",    # output (and residual): tile start, block step
    "residual", "has_residual",
    "clip_min", "clip_max",
    "act", "alpha", "beta",                     # activation (engine.kernels.activation), before the clip
    "w_prefetch", "w_prefetch_step",            # weight lines to prefetch: from the tile's
)                                               # weights, step per input-channel block


def _tile_intrinsic(lanes: int, max_rows: int, max_blocks: int):
    """Build the micro-kernel intrinsic for `lanes`-wide vectors.

    tile(*_TILE_ARGUMENTS) computes, for r < rows pixels and b < blocks output blocks
    (1 <= rows <= max_rows, 1 <= blocks <= max_blocks; other values do nothing),
        acc[r, b, :] = sum over ci < cin_blocks*lanes of
                       x[x_offset + (ci // lanes) * x_block_stride + r*lanes + ci % lanes]
                       * w[w_offset + b * w_block_stride + ci*lanes : ... + lanes]
        v = acc + bias[bias_offset + b*lanes : ... + lanes]
            (+ residual[out_offset + b*out_block_stride + r*lanes : ... + lanes])
        out[same offsets] = min(max(activate(v, act, alpha, beta), clip_min), clip_max)
    (act NONE, HARDSWISH or SILU: the conv epilogues' zero-preserving activations; any other
    code applies none) with the float32 C-contiguous arrays of any shape indexed as flat arrays, and prefetches
    x[x_offset + ci_block * x_block_stride + x_prefetch : ... + max_rows*lanes] into cache
    and W_PREFETCH_LINES 64-byte lines from w[w_offset + w_prefetch + ci_block * w_prefetch_step]
    (full tiles only, and only if w_prefetch_step != 0; harmless if they are already there
    or lie outside the array: a prefetch never faults).
    No bounds checks.
    """
    PREFETCH_KEY = 1 << 16
    i8_ptr = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    i64 = ir.IntType(64)
    vector = ir.VectorType(ir.FloatType(), lanes)
    vector_ptr = ir.PointerType(vector)
    splat_mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    # byte offsets covering max_rows*lanes floats, whatever their alignment to 64 B lines
    tile_bytes = max_rows * lanes * 4
    prefetch_offsets = sorted(set(list(range(0, tile_bytes, 64)) + [tile_bytes - 4]))

    def constant(value):
        return ir.Constant(i64, value)

    def splat(builder, scalar):
        one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), splat_mask)

    def load_vector(builder, pointer, offset):
        return builder.load(builder.bitcast(builder.gep(pointer, [offset]), vector_ptr), align=4)

    def store_vector(builder, value, pointer, offset):
        builder.store(value, builder.bitcast(builder.gep(pointer, [offset]), vector_ptr), align=4)

    def emit_tile(builder, rows, blocks, a, sums_buffer, activated, prefetch_weights=False):
        """One rows x blocks micro-tile; `a` maps argument names to LLVM values. Only the
        prefetch_weights variant (full tiles) prefetches weights: no per-iteration branch.
        Where `activated` (an i1), the sums are left in `sums_buffer` for
        `emit_activation_epilogue` instead of stored."""
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.v{lanes}f32")
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8_ptr, i32, i32, i32]), "llvm.prefetch.p0")
        # An FMA takes 4 cycles and a core starts 2 per cycle, so a tile needs >= 8
        # independent accumulators to keep both FMA pipes busy. Small edge tiles get that
        # by splitting the input channels over `splits` partial sums (added at the end).
        splits = max(1, min(lanes, -(-MIN_ACCUMULATORS // (rows * blocks))))
        zero = ir.Constant(vector, None)
        acc_slots = [[[cgutils.alloca_once_value(builder, zero) for _ in range(splits)]
                      for _ in range(blocks)] for _ in range(rows)]
        # (mem2reg turns the slots into phi nodes: the accumulators live in registers)
        w_block_offsets = [builder.mul(a["w_block_stride"], constant(b)) for b in range(blocks)]
        with cgutils.for_range(builder, a["cin_blocks"]) as loop:
            x_block = builder.gep(a["x"], [builder.mul(loop.index, a["x_block_stride"])])
            w_block = builder.gep(a["w"], [builder.mul(loop.index, constant(lanes * lanes))])
            # The next tiles' inputs sit in Cin_blocks separate streams, one per channel
            # block, too many for the hardware prefetchers when they come from L3 or DRAM.
            ahead = builder.bitcast(builder.gep(x_block, [a["x_prefetch"]]), i8_ptr)
            for byte in prefetch_offsets:  # (read, keep in all cache levels, data cache)
                builder.call(prefetch, [builder.gep(ahead, [constant(byte)]), ir.Constant(i32, 0),
                                        ir.Constant(i32, 3), ir.Constant(i32, 1)])
            if prefetch_weights:  # the next block pair's weights (see W_PREFETCH_LINES)
                w_ahead = builder.bitcast(builder.gep(a["w"], [builder.add(a["w_prefetch"], builder.mul(
                    loop.index, a["w_prefetch_step"]))]), i8_ptr)
                for line in range(W_PREFETCH_LINES):
                    builder.call(prefetch, [builder.gep(w_ahead, [constant(64 * line)]), ir.Constant(i32, 0),
                                            ir.Constant(i32, 3), ir.Constant(i32, 1)])
            acc = [[[builder.load(slot) for slot in slots] for slots in row] for row in acc_slots]
            for lane in range(lanes):  # one input channel per step, fully unrolled
                split = lane % splits
                weights = [load_vector(builder, w_block, builder.add(w_block_offsets[b], constant(lane * lanes)))
                           for b in range(blocks)]
                for r in range(rows):
                    x_value = builder.load(builder.gep(x_block, [constant(r * lanes + lane)]), align=4)
                    x_splat = splat(builder, x_value)
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
                    partial = [builder.fadd(partial[i], partial[i + 1]) if i + 1 < len(partial) else partial[i]
                               for i in range(0, len(partial), 2)]
                sums[r][b] = partial[0]
        low = splat(builder, a["clip_min"])
        high = splat(builder, a["clip_max"])
        biases = [load_vector(builder, a["bias"], constant(b * lanes)) for b in range(blocks)]
        has_residual = builder.icmp_unsigned("!=", a["has_residual"], ir.Constant(a["has_residual"].type, 0))

        def epilogue(add_residual):
            for r in range(rows):
                for b in range(blocks):
                    offset = builder.add(builder.mul(a["out_block_stride"], constant(b)), constant(r * lanes))
                    value = builder.fadd(sums[r][b], biases[b])
                    if add_residual:
                        value = builder.fadd(value, load_vector(builder, a["residual"], offset))
                    value = builder.select(builder.fcmp_ordered("<", value, low), low, value)
                    value = builder.select(builder.fcmp_ordered(">", value, high), high, value)
                    store_vector(builder, value, a["out"], offset)

        with builder.if_else(activated) as (with_activation, without_activation):
            with with_activation:
                # the sums go to a stack buffer and on to the one epilogue loop all tile
                # shapes share (emit_activation_epilogue): SiLU's exp and divide are emitted
                # once, not for every register of every shape (compile time)
                for r in range(rows):
                    for b in range(blocks):
                        builder.store(sums[r][b], builder.gep(sums_buffer, [
                            ir.Constant(i32, 0), ir.Constant(i32, r * max_blocks + b)]))
            with without_activation:   # the epilogue without activation, as it always was
                with builder.if_else(has_residual) as (with_residual, without_residual):
                    with with_residual:
                        epilogue(True)
                    with without_residual:
                        epilogue(False)

    def emit_activation_epilogue(builder, a, sums_buffer):
        """The epilogue of a tile with an activation (act HARDSWISH or SILU), any shape: for
        r < rows, b < blocks, the sums from sums_buffer[r * max_blocks + b], plus
        bias (plus residual), activation, clip, stored. One loop nest per (activation,
        residual): the branches are taken once per tile, not per register."""
        low = splat(builder, a["clip_min"])
        high = splat(builder, a["clip_max"])
        alpha = splat(builder, a["alpha"])
        beta = splat(builder, a["beta"])
        has_residual = builder.icmp_unsigned("!=", a["has_residual"], ir.Constant(a["has_residual"].type, 0))
        is_hardswish = builder.icmp_signed("==", a["act"], constant(HARDSWISH))

        def loops(act, add_residual):
            with cgutils.for_range(builder, a["rows"]) as row_loop:
                with cgutils.for_range(builder, a["blocks"]) as block_loop:
                    r, b = row_loop.index, block_loop.index
                    value = builder.load(builder.gep(sums_buffer, [
                        ir.Constant(i32, 0), builder.add(builder.mul(r, constant(max_blocks)), b)]))
                    value = builder.fadd(value, load_vector(builder, a["bias"], builder.mul(b, constant(lanes))))
                    offset = builder.add(builder.mul(a["out_block_stride"], b), builder.mul(r, constant(lanes)))
                    if add_residual:
                        value = builder.fadd(value, load_vector(builder, a["residual"], offset))
                    value = emit_activation(builder, act, value, alpha, beta)
                    value = builder.select(builder.fcmp_ordered("<", value, low), low, value)
                    value = builder.select(builder.fcmp_ordered(">", value, high), high, value)
                    store_vector(builder, value, a["out"], offset)

        with builder.if_else(has_residual) as (with_residual, without_residual):
            for add_residual, branch in ((True, with_residual), (False, without_residual)):
                with branch:
                    with builder.if_else(is_hardswish) as (hardswish, silu):
                        with hardswish:
                            loops(HARDSWISH, add_residual)
                        with silu:
                            loops(SILU, add_residual)

    @intrinsic
    def tile(typingctx, rows, blocks, x, x_offset, x_block_stride, x_prefetch, w, w_offset,
             w_block_stride, cin_blocks, bias, bias_offset, out, out_offset, out_block_stride,
             residual, has_residual, clip_min, clip_max, act, alpha, beta, w_prefetch, w_prefetch_step):
        arguments = (rows, blocks, x, x_offset, x_block_stride, x_prefetch, w, w_offset,
                     w_block_stride, cin_blocks, bias, bias_offset, out, out_offset,
                     out_block_stride, residual, has_residual, clip_min, clip_max, act, alpha, beta,
                     w_prefetch, w_prefetch_step)
        kinds = dict(zip(_TILE_ARGUMENTS, arguments))
        for name in ("x", "w", "bias", "out", "residual"):
            t = kinds[name]
            if not (isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C"):
                return None
        for name in ("rows", "blocks", "x_offset", "x_block_stride", "x_prefetch", "w_offset",
                     "w_block_stride", "cin_blocks", "bias_offset", "out_offset", "out_block_stride",
                     "act", "w_prefetch", "w_prefetch_step"):
            if kinds[name] != types.int64:
                return None
        if has_residual != types.boolean or any(kinds[name] != types.float32
                                                for name in ("clip_min", "clip_max", "alpha", "beta")):
            return None

        def codegen(context, builder, sig, args):
            a = dict(zip(_TILE_ARGUMENTS, args))
            for name, offset in (("x", "x_offset"), ("w", "w_offset"), ("bias", "bias_offset"),
                                 ("out", "out_offset"), ("residual", "out_offset")):
                array_type = sig.args[_TILE_ARGUMENTS.index(name)]
                data = context.make_array(array_type)(context, builder, a[name]).data
                a[name] = builder.gep(data, [a[offset]])  # pointer to this tile's first element
            # one code path per (rows, blocks): switch on rows * 64 + blocks; a full tile
            # with a weight prefetch step has a path of its own (key PREFETCH_KEY)
            key = builder.add(builder.mul(a["rows"], constant(64)), a["blocks"])
            full = constant(max_rows * 64 + max_blocks)
            prefetching = builder.and_(builder.icmp_signed("==", key, full),
                                       builder.icmp_signed("!=", a["w_prefetch_step"], constant(0)))
            key = builder.select(prefetching, constant(PREFETCH_KEY), key)
            # the activation is uniform: a tile with one (HARDSWISH or SILU) hands its sums to
            # the shared epilogue, a tile without runs its own, the code it always had
            sums_buffer = cgutils.alloca_once(builder, ir.ArrayType(vector, max_rows * max_blocks))
            activated = builder.or_(builder.icmp_signed("==", a["act"], constant(HARDSWISH)),
                                    builder.icmp_signed("==", a["act"], constant(SILU)))
            done = builder.append_basic_block("tile.done")
            activation_epilogue = builder.append_basic_block("tile.activation")
            switch = builder.switch(key, done)

            cases = [("tile.full.prefetch", PREFETCH_KEY, max_rows, max_blocks, True)]
            cases += [(f"tile.{tile_rows}x{tile_blocks}", tile_rows * 64 + tile_blocks, tile_rows, tile_blocks, False)
                      for tile_rows in range(1, max_rows + 1) for tile_blocks in range(1, max_blocks + 1)]
            for name, value, tile_rows, tile_blocks, prefetch_weights in cases:
                block = builder.append_basic_block(name)
                switch.add_case(constant(value), block)
                builder.position_at_end(block)
                emit_tile(builder, tile_rows, tile_blocks, a, sums_buffer, activated, prefetch_weights)
                builder.cbranch(activated, activation_epilogue, done)
            builder.position_at_end(activation_epilogue)
            emit_activation_epilogue(builder, a, sums_buffer)
            builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.void(*arguments), codegen

    return tile


def _tile_python(rows, blocks, x, x_offset, x_block_stride, x_prefetch, w, w_offset,
                 w_block_stride, cin_blocks, bias, bias_offset, out, out_offset,
                 out_block_stride, residual, has_residual, clip_min, clip_max, act, alpha, beta,
                 w_prefetch=0, w_prefetch_step=0):
    """The micro-kernel's semantics in numpy, used when NUMBA_DISABLE_JIT=1 (coverage runs)."""
    x, w, bias, out, residual = (a.reshape(-1) for a in (x, w, bias, out, residual))
    cin = cin_blocks * CB
    for b in range(blocks):
        weights = w[w_offset + b * w_block_stride:][:cin * CB].reshape(cin, CB)
        for r in range(rows):
            inputs = np.concatenate([x[x_offset + k * x_block_stride + r * CB:][:CB] for k in range(cin_blocks)])
            at = out_offset + b * out_block_stride + r * CB
            value = inputs @ weights + bias[bias_offset + b * CB:][:CB]
            if has_residual:
                value = value + residual[at:at + CB]
            if act in (HARDSWISH, SILU):
                value = activate_array(value, act, alpha, beta)
            out[at:at + CB] = np.minimum(np.maximum(value, clip_min), clip_max)


# the micro-kernel, also called by the fused block (through walk_micro_tiles)
micro_tile = _tile_python if numba.config.DISABLE_JIT else _tile_intrinsic(CB, ROWS, BLOCKS)


@njit(cache=True, inline="always")
def _tile_start(tile_index, n_tiles, total, pointwise_pixels):
    # First pixel of pixel tile `tile_index` of `n_tiles` = ceil(total / pointwise_pixels) tiles:
    # the pixels are shared out evenly (a last tile of 4 pixels after three of 64 would
    # leave one thread of two with twice the work), on multiples of ROWS where tiles are
    # at least ROWS long so that only a tile's last micro-tile can be partial.
    if tile_index >= n_tiles:
        return total
    start = tile_index * total // n_tiles
    if pointwise_pixels >= ROWS:
        start -= start % ROWS
    return start


@njit(cache=True, inline="always")
def weight_prefetch(tile_index, cin_blocks, next_pair):
    # (w_prefetch, w_prefetch_step) for micro-tile `tile_index` of a block pair whose next
    # pair's weights start `next_pair` elements after its own: the first
    # WEIGHT_PREFETCH_TILES micro-tiles fetch successive slices of them, the rest nothing
    # new (they re-touch their own first line, which is in L1).
    if tile_index < WEIGHT_PREFETCH_TILES and next_pair != 0:
        return next_pair + tile_index * cin_blocks * 16 * W_PREFETCH_LINES, 16 * W_PREFETCH_LINES
    return 0, 0


@njit(cache=True, inline="always")
def walk_micro_tiles(x, x_offset, x_block_stride, w, cin_blocks, bias, out, out_offset, out_block_stride,
                     residual, has_residual, low, high, act, alpha, beta, pixels, block_begin, block_end,
                     block_after, prefetch_weights, ahead, ahead_end, ahead_offset):
    """Output blocks [block_begin, block_end) of `pixels` consecutive pixels: pairs of BLOCKS
    output blocks, each walking the pixels in micro-tiles of ROWS, one `micro_tile` call each
    (flat element offsets, as `micro_tile` takes them).

    x_offset: the first pixel's input in channel block 0 (block k at + k * x_block_stride);
    out_offset: its output (and residual) in output block 0 (block b at + b * out_block_stride);
    w, bias: packed as by pack_pointwise, cin_blocks input channel blocks.
    low, high: the clip; act, alpha, beta: the activation before it (engine.kernels.activation).
    prefetch_weights: a pair's first micro-tiles prefetch the next pair's weights, and the
    last pair block `block_after`'s (-1: nothing). ahead..ahead_end: elements (from
    ahead_offset past w[0]) of a later layer's weights still to prefetch, by the full
    micro-tiles that have nothing else to fetch. Returns the new `ahead`.
    """
    w_block_stride = cin_blocks * CB * CB           # elements between output blocks' weights
    block = block_begin
    while block < block_end:                        # BLOCKS output blocks ...
        blocks = min(block_end - block, BLOCKS)
        next_block = block + blocks
        if next_block >= block_end:
            next_block = block_after
        next_pair = (next_block - block) * w_block_stride if prefetch_weights and next_block >= 0 else 0
        q = 0
        while q < pixels:                           # ... times micro-tiles of ROWS pixels
            rows = min(pixels - q, ROWS)
            # prefetch PREFETCH_TILES tiles ahead, but not past these pixels
            x_prefetch = min(PREFETCH_TILES * ROWS, pixels - q - rows) * CB
            w_prefetch, w_step = weight_prefetch(q // ROWS, cin_blocks, next_pair)
            if w_step == 0 and ahead < ahead_end and rows == ROWS and blocks == BLOCKS:
                w_prefetch = ahead_offset + ahead - block * w_block_stride
                w_step = 16 * W_PREFETCH_LINES
                ahead += cin_blocks * 16 * W_PREFETCH_LINES
            micro_tile(rows, blocks, x, x_offset + q * CB, x_block_stride, x_prefetch,
                       w, block * w_block_stride, w_block_stride, cin_blocks,
                       bias, block * CB, out, out_offset + block * out_block_stride + q * CB, out_block_stride,
                       residual, has_residual, low, high, act, alpha, beta, w_prefetch, w_step)
            q += rows
        block += blocks
    return ahead


@njit(cache=True, inline="always")
def prefetches_weights(total_pixels, pointwise_pixels):
    """Whether a 1x1 conv over `total_pixels` (batch x H x W) in tiles of `pointwise_pixels`
    prefetches weights: its next block pair's and a later layer's (`ahead`). Only layers with
    at most WEIGHT_PREFETCH_MAX_PIXEL_TILES pixel tiles do (the small late layers, whose
    weights are the traffic); the bytes model asks the same question."""
    return (total_pixels + pointwise_pixels - 1) // pointwise_pixels <= WEIGHT_PREFETCH_MAX_PIXEL_TILES


@njit(parallel=True, cache=True)
def _pointwise_kernel(x, w, bias, out, residual, has_residual, clip_min, clip_max, act, alpha, beta,
                      pointwise_pixels, pointwise_channels, ahead_offset, ahead_elements):
    # x (N, Cin_blocks, H, W, CB); w (Cout_blocks, Cin_blocks*CB, CB); bias (Cout_blocks, CB);
    # out, residual (N, Cout_blocks, H, W, CB); all C-contiguous, indexed flat by the tile
    low = np.float32(clip_min)
    high = np.float32(clip_max)
    n_images, cin_blocks, height, width, _ = x.shape
    cout_blocks = out.shape[1]
    pixels_per_image = height * width
    total_pixels = n_images * pixels_per_image
    n_pixel_tiles = (total_pixels + pointwise_pixels - 1) // pointwise_pixels
    blocks_per_tile = max(1, pointwise_channels // CB)  # output channel blocks per work item
    n_channel_tiles = (cout_blocks + blocks_per_tile - 1) // blocks_per_tile
    block_stride = pixels_per_image * CB            # elements between channel blocks of x and of out
    prefetch_weights = prefetches_weights(total_pixels, pointwise_pixels)
    n_items = n_pixel_tiles * n_channel_tiles
    if not prefetch_weights:
        ahead_elements = 0
    for item in prange(n_items):
        # this item's share of the `ahead` weights (a later layer's), prefetched by the
        # micro-tiles that have no next pair to fetch (see AHEAD in the docstring)
        ahead = item * ahead_elements // n_items
        ahead_end = (item + 1) * ahead_elements // n_items
        pixel_tile = item // n_channel_tiles
        channel_tile = item - pixel_tile * n_channel_tiles
        pixel = _tile_start(pixel_tile, n_pixel_tiles, total_pixels, pointwise_pixels)
        pixel_end = _tile_start(pixel_tile + 1, n_pixel_tiles, total_pixels, pointwise_pixels)
        block_begin = channel_tile * blocks_per_tile
        block_end = min(cout_blocks, block_begin + blocks_per_tile)
        # after this item's last pair, the next item's first: the next channel tile's, or the
        # first of the next pixel tile
        block_after = block_end if block_end < cout_blocks else 0
        while pixel < pixel_end:  # one image's part of the pixel tile at a time
            image = pixel // pixels_per_image
            q_begin = pixel - image * pixels_per_image
            q_end = min(pixel_end - image * pixels_per_image, pixels_per_image)
            ahead = walk_micro_tiles(x, (image * cin_blocks * pixels_per_image + q_begin) * CB, block_stride,
                                     w, cin_blocks, bias, out, (image * cout_blocks * pixels_per_image + q_begin) * CB,
                                     block_stride, residual, has_residual, low, high, act, alpha, beta,
                                     q_end - q_begin,
                                     block_begin, block_end, block_after, prefetch_weights,
                                     ahead, ahead_end, ahead_offset)
            pixel = image * pixels_per_image + q_end


def pointwise_flops(batch: int, in_channels: int, out_channels: int, height: int, width: int) -> int:
    """FLOPs of a 1x1 convolution: 2 per multiply-accumulate, true (unpadded) channels.

    Bias, residual add and clip (3 per output at most) are not counted.
    """
    return 2 * batch * height * width * in_channels * out_channels


def pack_pointwise(weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pack ONNX 1x1 conv weights for `pointwise_conv`.

    weight: (Cout, Cin, 1, 1) or (Cout, Cin), any float dtype (converted to float32).
    bias: (Cout,) or None (zeros).
    Returns (packed_weight (Cout_blocks, Cin_blocks*CB, CB) float32 with
    packed_weight[ob, ci, lane] = weight[ob*CB + lane, ci], and packed_bias (Cout_blocks, CB)
    float32), zero-padded in both channel dimensions, C-contiguous.
    """
    weight = np.asarray(weight)
    if weight.ndim == 4:
        if weight.shape[2:] != (1, 1):
            raise ValueError(f"pointwise weight must be (Cout, Cin, 1, 1), got {weight.shape}")
        weight = weight[:, :, 0, 0]
    if weight.ndim != 2:
        raise ValueError(f"pointwise weight must be (Cout, Cin, 1, 1) or (Cout, Cin), got {weight.shape}")
    if not np.issubdtype(weight.dtype, np.floating):
        raise ValueError(f"pointwise weight must be floating point, got {weight.dtype}")
    out_channels, in_channels = weight.shape
    if out_channels == 0 or in_channels == 0:
        raise ValueError(f"pointwise weight must have Cout, Cin >= 1, got {weight.shape}")
    if bias is None:
        bias = np.zeros(out_channels, dtype=np.float32)
    bias = np.asarray(bias)
    if bias.shape != (out_channels,):
        raise ValueError(f"pointwise bias must be ({out_channels},) to match weight {weight.shape}, got {bias.shape}")
    if not np.issubdtype(bias.dtype, np.floating):
        raise ValueError(f"pointwise bias must be floating point, got {bias.dtype}")
    cout_blocks = channel_blocks(out_channels)
    cin_blocks = channel_blocks(in_channels)
    padded = np.zeros((cout_blocks * CB, cin_blocks * CB), dtype=np.float32)
    padded[:out_channels, :in_channels] = weight
    # (Cout_blocks, CB_lane, Cin_padded) -> (Cout_blocks, Cin_padded, CB_lane)
    packed_weight = np.ascontiguousarray(padded.reshape(cout_blocks, CB, cin_blocks * CB).transpose(0, 2, 1))
    packed_bias = np.zeros(cout_blocks * CB, dtype=np.float32)
    packed_bias[:out_channels] = bias
    return packed_weight, packed_bias.reshape(cout_blocks, CB)


def _check_array(name: str, array, shape: tuple[int, ...] | None = None, ndim: int | None = None) -> None:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-d, got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if array.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive int, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def pointwise_conv(x: np.ndarray, packed_weight: np.ndarray, packed_bias: np.ndarray,
                   out: np.ndarray, clip_min: float, clip_max: float,
                   residual: np.ndarray | None = None,
                   pointwise_pixels: int = DEFAULT_POINTWISE_PIXELS,
                   pointwise_channels: int = DEFAULT_POINTWISE_CHANNELS,
                   ahead: np.ndarray | None = None, *, activation=NO_ACTIVATION) -> None:
    """out = clip(act(conv1x1(x) + bias [+ residual]), clip_min, clip_max), written into `out`.

    x: (N, Cin_blocks, H, W, CB) float32; out and residual: (N, Cout_blocks, H, W, CB)
    float32; all C-contiguous NCHWc (see engine.kernels.layout). packed_weight, packed_bias:
    from `pack_pointwise`. residual may be `out` itself (in-place add) but must not otherwise
    overlap it; x must not overlap out (both checked); out must not overlap the packed
    weights either (not checked: they are only ever made by pack_pointwise).
    clip (0, 6) is ReLU6, (0, inf) ReLU, (-inf, inf) none; the range must contain 0 so that
    padded output lanes stay exactly 0. Order: bias, then residual add, then the activation,
    then clip. activation: (name, alpha, beta) of engine.kernels.activation, one with f(0) = 0
    (none, hardswish, silu), so padded lanes stay 0; default none.
    pointwise_pixels: output pixels (of the flattened N*H*W) per work item, >= 1 (the pixels are
        split into ceil(N*H*W / pointwise_pixels) near-equal tiles).
    pointwise_channels: output channels per work item, a positive multiple of 16 (whole CB
    blocks on AVX2 and AVX-512). Work items = pixel tiles x channel tiles, split over
    numba's threads (numba.set_num_threads). Tile values never trigger a recompile.
    ahead: the packed weights of a later layer (any C-contiguous float32 array) to prefetch
    while this conv runs, or None. Only a conv whose pairs' weights are read by few pixel
    tiles prefetches (the same condition as its own next-pair prefetch): each work item
    takes an equal share of `ahead`, in order, so the thread that runs the first items
    brings in the first part (a later 1x1 conv or linear layer reads its weights in the
    same order, thread by thread). It never changes a value.
    Raises ValueError naming the problem for any inconsistent argument.
    """
    residual, has_residual = _check_operands(x, packed_weight, packed_bias, out, residual)
    clip_min, clip_max = check_clip("pointwise_conv", clip_min, clip_max)
    act, alpha, beta = kernel_activation("pointwise_conv", activation)
    pointwise_pixels = _positive_int("pointwise_pixels", pointwise_pixels)
    pointwise_channels = _positive_int("pointwise_channels", pointwise_channels)
    if pointwise_channels % 16:
        raise ValueError(f"pointwise_channels must be a positive multiple of 16, got {pointwise_channels}")
    ahead_offset, ahead_elements = _ahead_span(ahead, packed_weight)
    n_images, _, height, width, _ = x.shape
    if n_images * height * width == 0:
        return
    launch(_pointwise_kernel, x, packed_weight, packed_bias, out, residual, has_residual,
           clip_min, clip_max, act, alpha, beta, pointwise_pixels, pointwise_channels, ahead_offset, ahead_elements)


def _check_operands(x, packed_weight, packed_bias, out, residual) -> tuple[np.ndarray, bool]:
    """ValueError unless the arrays are consistent (pointwise_conv's docstring); returns the
    residual to pass the kernel (`out` itself when there is none) and whether there is one."""
    _check_array("x", x, ndim=5)
    if x.shape[4] != CB:
        raise ValueError(f"x must be NCHWc with CB={CB} lanes, got shape {x.shape}")
    n_images, cin_blocks, height, width, _ = x.shape
    if cin_blocks < 1:
        raise ValueError(f"x must have at least one channel block, got shape {x.shape}")
    _check_array("packed_weight", packed_weight, ndim=3)
    cout_blocks = packed_weight.shape[0]
    if cout_blocks < 1 or packed_weight.shape[1:] != (cin_blocks * CB, CB):
        raise ValueError(f"packed_weight must be (Cout_blocks >= 1, {cin_blocks * CB}, {CB}) to match "
                         f"x {x.shape}, got {packed_weight.shape}")
    _check_array("packed_bias", packed_bias, shape=(cout_blocks, CB))
    out_shape = (n_images, cout_blocks, height, width, CB)
    _check_array("out", out, shape=out_shape)
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    if np.may_share_memory(out, x):
        raise ValueError("out must not overlap x")
    has_residual = residual is not None
    if has_residual:
        _check_array("residual", residual, shape=out_shape)
        if (residual is not out and np.may_share_memory(residual, out)
                and residual.__array_interface__["data"][0] != out.__array_interface__["data"][0]):
            raise ValueError("residual must be out itself or not overlap out")
    else:
        residual = out  # never read when has_residual is False
    return residual, has_residual


def _ahead_span(ahead, packed_weight: np.ndarray) -> tuple[int, int]:
    """(elements from packed_weight's first to ahead's first, ahead's elements), (0, 0) for
    None: prefetch addresses are formed from the weights' pointer (a prefetch never
    faults, wherever it points)."""
    if ahead is None:
        return 0, 0
    if not isinstance(ahead, np.ndarray) or ahead.dtype != np.float32 or not ahead.flags.c_contiguous:
        raise ValueError(f"ahead must be a C-contiguous float32 array or None, got "
                         f"{getattr(ahead, 'dtype', type(ahead).__name__)}")
    return (ahead.ctypes.data - packed_weight.ctypes.data) // 4, ahead.size


def pointwise_bytes(batch: int, in_channels: int, out_channels: int, height: int, width: int,
                    pointwise_pixels: int, pointwise_channels: int, has_residual: bool, budget,
                    threads: int = 1) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Registers <- L1: each input element is broadcast once per pair of output blocks
    (BLOCKS * CB channels) and each weight vector loaded once per micro-tile of ROWS pixels;
    outputs (and residuals) once. Across a boundary, with work items ordered channel tile
    fastest:
      weights  once if all of them stay resident (they are reused by every pixel tile); else
               once, plus once per further pixel tile for the share lost at the reuse
               distance of all the weights (they and a pixel tile's inputs and outputs),
               plus once per further micro-tile of ROWS pixels for the
               share of those re-reads the level loses (engine.traffic.kept_share) at the
               reuse distance of a channel tile's weights (its slice, a micro-tile's inputs
               and outputs; the kernel walks a pair at a time, but the simulation finds
               wider channel tiles moving more: 96x96 MobileNetV2 at batch 8, 4096 x 4096
               tiles 374.9 MB at L2 against 367.6 MB at 64 x 64, which a pair's slice alone
               gets the wrong way round);
      inputs   once, plus once per further pair of output blocks for the share lost at the
               reuse distance of a pixel tile's inputs (the tile's inputs, a pair's weights,
               the tile's outputs and residual for one pair);
      outputs and residual once.
    Across L1 <- L2 the inputs twice where a micro-tile's streams (input blocks, the pair's
    output blocks and residual, H x W x CB x 4 B apart) conflict in L1's sets
    (CacheBudget.l1_streams_conflict): the lines prefetched two micro-tiles ahead are evicted
    before their use.
    Micro-tiles are counted as the kernel walks them: each image's part of a pixel tile in
    micro-tiles of ROWS (a 64-pixel tile over 7x7 images is two parts, 8 micro-tiles, not 7).
    threads: the kernel's threads. With at least one pixel tile each, every thread reads all
    the weights once into its own L2, which the plan's walk of the L2s charges at L3
    (engine.residency: `threads` first reads in place of the "once" here), so across L3 the
    further pixel tiles are pixel_tiles - threads, not pixel_tiles - 1; across L2 and DRAM the
    "once" here stands (no walk of the L1s; the shared L3 is read once).
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, by_level, ceil_div, fits, kept_share

    rows, blocks = MICRO_TILE[budget.lanes]        # the micro-tile of that lane width
    cin = budget.padded(in_channels)
    cout = budget.padded(out_channels)
    cout_blocks = cout // budget.lanes
    pixels = batch * height * width
    x_bytes = pixels * cin * FLOAT32
    w_bytes = cout * (cin + 1) * FLOAT32
    y_bytes = pixels * cout * FLOAT32 * (2 if has_residual else 1)
    pixel_tiles = ceil_div(pixels, pointwise_pixels)
    block_pairs = ceil_div(cout_blocks, blocks)
    micro_rows = _micro_tile_count(batch, height * width, pixel_tiles, rows, pointwise_pixels)
    registers = x_bytes * block_pairs + w_bytes * micro_rows + y_bytes
    pair_channels = min(blocks, cout_blocks) * budget.lanes
    tile_pixels = min(pointwise_pixels, pixels)
    outputs_per_pixel = pair_channels * FLOAT32 * (2 if has_residual else 1)
    pair_weights = pair_channels * cin * FLOAT32
    # reuse distances: a channel tile's weights between two micro-tiles, a tile's inputs between two pairs
    weights_distance = max(min(pointwise_channels, cout), pair_channels) * cin * FLOAT32 \
        + rows * (cin * FLOAT32 + outputs_per_pixel)
    inputs_distance = tile_pixels * (cin * FLOAT32 + outputs_per_pixel) + pair_weights
    tile_distance = tile_pixels * (cin + cout * (2 if has_residual else 1)) * FLOAT32     # a pixel tile's activations
    streams = cin // budget.lanes + pair_channels // budget.lanes * (2 if has_residual else 1)
    # threads splitting the pixel tiles each read all the weights once (the walk charges those at L3)
    first_reads = threads if 1 < threads <= pixel_tiles else 1
    below = {}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        if fits(w_bytes, capacity):
            w_traffic = w_bytes
        else:
            further_tiles = pixel_tiles - (first_reads if boundary == "L3" else 1)
            across_tiles = 1 + further_tiles * (1 - kept_share(w_bytes + tile_distance, capacity))
            w_traffic = w_bytes * (across_tiles + max(0, micro_rows - pixel_tiles) * (1 - kept_share(weights_distance, capacity)))
        x_traffic = x_bytes * (1 + (block_pairs - 1) * (1 - kept_share(inputs_distance, capacity)))
        if boundary == "L2" and budget.l1_streams_conflict(height * width * budget.lanes * FLOAT32, streams):
            x_traffic *= 2          # prefetched two micro-tiles ahead, evicted, read again
        below[boundary] = x_traffic + w_traffic + y_bytes
    return by_level(registers, below)


def _micro_tile_count(images: int, image_pixels: int, pixel_tiles: int, rows: int, pointwise_pixels: int) -> int:
    """Micro-tiles of `rows` pixels the 1x1 kernel walks over `images` x `image_pixels`
    pixels in `pixel_tiles` tiles (`_tile_start`'s split): each image's part of a tile is
    walked on its own, its last micro-tile partial."""
    total = images * image_pixels
    tiles = np.arange(pixel_tiles + 1, dtype=np.int64)
    starts = tiles * total // pixel_tiles
    if pointwise_pixels >= rows:
        starts -= starts % rows
    starts[-1] = total
    bounds = np.union1d(starts, np.arange(images + 1, dtype=np.int64) * image_pixels)
    return int((-(-np.diff(bounds) // rows)).sum())
