"""The fused inverted-residual block: expand 1x1 -> depthwise 3x3 -> project 1x1 (+ residual),
computed band by band of output rows so the expanded (6x wider) intermediate never leaves a
small per-thread scratch buffer.

Unfused, a MobileNetV2 block writes its expanded tensor (e.g. 144 x 56 x 56 floats = 1.8 MB)
to memory, reads it back for the depthwise, writes the depthwise output (same size) and reads
it back for the projection: four trips through L2/L3 of the largest tensors in the network.
Fused, each work item (image, band of `block_rows` output rows) does:

1. expand the input rows the band needs ((block_rows - 1) * stride + 3, fewer at the image
   edges) and the previous band did not into scratch_expand (hidden_blocks, ring rows, W,
   CB), activation and clip applied: the 1x1 conv's micro-tile walk (engine.kernels.pointwise.walk_micro_tiles);
2. depthwise 3x3 (pad 1) from scratch_expand (or from x when there is no expand conv) into
   scratch_depthwise (hidden_blocks, band_h, Wo, CB), activation and clip applied: the depthwise kernel's
   row core (engine.kernels.depthwise.depthwise_3x3_rows), so the stage gives the unfused
   depthwise conv's result bit for bit;
3. project scratch_depthwise into the output rows, bias, residual add, activation, clip: the micro-tile
   walk again.

Adjacent bands share input rows (2 at stride 1, 1 at stride 2). The expanded rows live in
a ring of `rows_needed(block_rows, stride)` rows per hidden block: a worker walking down its
bands of an image expands each input row once and the next band finds its top halo rows
still in the ring, so only where a worker starts (its first band, a new image) are halo
rows expanded a second time (`expand_recompute_factor`: 1.07x for a 56-row image on two
workers, where expanding every band's rows afresh would be (band + 2) / band, 1.5x at band 4).
Large bands need more scratch and leave fewer work items for the threads.
`block_rows` is the knob (engine.Tiles.block_rows; 0 = chosen per block by `auto_block_rows`).

Layouts as everywhere: x, out, residual NCHWc (N, Cb, H, W, CB) float32 C-contiguous;
weights as packed by pack_pointwise / pack_depthwise. Work is split into one contiguous run
of items per worker (prange over workers), each worker owning row `worker` of the scratch
arrays, so no two threads ever share a scratch buffer.

Napkin math (block 3 of MobileNetV2, 24 -> 144 -> 24 at 56x56, stride 1, block_rows 4,
CB 8): per band the scratch holds 144 x 6 x 56 x 4 B = 194 KB expanded and 144 x 4 x 56 x 4 B
= 129 KB depthwise, together inside the 512 KB L2; the traffic that reaches L3 is the
input rows (6 x 56 x 24 x 4 B), the weights (28 KB) and the output rows (4 x 56 x 24 x 4 B),
instead of the 2 x 1.8 MB written and read back unfused.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import FASTMATH, check_array, check_clip, check_int, launch
from engine.kernels.activation import NO_ACTIVATION, kernel_activation
from engine.kernels.depthwise import depthwise_3x3_rows, depthwise_bytes
from engine.kernels.layout import CB, padded_channels
from engine.kernels.pointwise import pointwise_bytes, walk_micro_tiles
from engine.pages import CACHE_LINE, aligned_empty

LINE_FLOATS = CACHE_LINE // 4     # float32 per cache line


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fused_block_kernel(x, ew, eb, has_expand, dw, db, pw, pb, out, residual, has_residual, stride, pad,
                        expand_low, expand_high, dw_low, dw_high, project_low, project_high,
                        expand_act, expand_alpha, expand_beta, dw_act, dw_alpha, dw_beta,
                        project_act, project_alpha, project_beta, block_rows, scratch_expand, scratch_depthwise):
    n_images, cin_blocks, height, width, _ = x.shape
    hidden_blocks = dw.shape[0]
    cout_blocks, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    workers = scratch_expand.shape[0]
    bands = (out_h + block_rows - 1) // block_rows
    items = n_images * bands
    ring_rows = (block_rows - 1) * stride + 3      # rows_needed(block_rows, stride): one band's input rows
    xf = x.reshape(x.size)
    ewf = ew.reshape(ew.size)
    ebf = eb.reshape(eb.size)
    dwf = dw.reshape(dw.size)
    dbf = db.reshape(db.size)
    pwf = pw.reshape(pw.size)
    pbf = pb.reshape(pb.size)
    of = out.reshape(out.size)
    rf = residual.reshape(residual.size)
    e_lo = np.float32(expand_low)
    e_hi = np.float32(expand_high)
    d_lo = np.float32(dw_low)
    d_hi = np.float32(dw_high)
    p_lo = np.float32(project_low)
    p_hi = np.float32(project_high)
    no_residual = n_images < 0      # a run-time False: the micro-kernel takes a boolean, not a literal
    for worker in prange(workers):
        s1 = scratch_expand[worker]
        s2 = scratch_depthwise[worker]
        first = worker * items // workers
        last = (worker + 1) * items // workers
        held_image = -1           # s1 holds expanded rows [.., held_end) of image held_image
        held_end = 0
        for item in range(first, last):
            image = item // bands
            band = item - image * bands
            row_start = band * block_rows
            row_end = min(out_h, row_start + block_rows)
            in_start = max(0, row_start * stride - 1)
            in_end = min(height, (row_end - 1) * stride + 2)
            # 1. expand (or read the block input directly when there is no expand conv)
            if has_expand:
                # Input row r is expanded into ring slot r % ring_rows. The rows this band
                # shares with the previous band of the same image (its halo) are still there:
                # only rows from held_end on are expanded, in at most two runs of slots.
                row = in_start
                if image == held_image and held_end > in_start:
                    row = held_end
                while row < in_end:
                    slot = row % ring_rows
                    count = min(in_end - row, ring_rows - slot)
                    # `count` rows of this image into consecutive slots; a worker's first band
                    # brings the weights in: each block pair prefetches the next pair's
                    walk_micro_tiles(xf, (image * cin_blocks * height * width + row * width) * CB, height * width * CB,
                                     ewf, cin_blocks, ebf, s1, slot * width * CB, ring_rows * width * CB,
                                     s1, no_residual, e_lo, e_hi, expand_act, expand_alpha, expand_beta,
                                     count * width, 0, hidden_blocks, -1, item == first, 0, 0, 0)
                    row += count
                held_image = image
                held_end = in_end
                # the depthwise reads the ring: input row in_start is in slot in_start % ring_rows
                src = s1
                plane = 0
                plane_stride = ring_rows * width * CB
                first_row = in_start
                first_slot = in_start % ring_rows
                ring = ring_rows
            else:                   # the depthwise reads the block input's planes
                src = xf
                plane = image * cin_blocks * height * width * CB
                plane_stride = height * width * CB
                first_row = 0
                first_slot = 0
                ring = height
            # 2. depthwise 3x3, pad 1, into s2 (hidden_blocks, band rows, Wo, CB)
            band_h = row_end - row_start
            for hb in range(hidden_blocks):
                depthwise_3x3_rows(src, plane + hb * plane_stride, first_row, first_slot, ring, height, width,
                                   dwf, hb * 9 * CB, dbf, hb * CB, s2, hb * band_h * out_w * CB, out_w,
                                   row_start, row_end, stride, stride, pad, pad, d_lo, d_hi,
                                   dw_act, dw_alpha, dw_beta)
            # 3. project the band's depthwise output into the output rows
            #    (s2 holds the band's pixels contiguously per hidden block; weights prefetched as above)
            pixels = (row_end - row_start) * out_w
            walk_micro_tiles(s2, 0, pixels * CB, pwf, hidden_blocks, pbf,
                             of, (image * cout_blocks * out_h * out_w + row_start * out_w) * CB, out_h * out_w * CB,
                             rf, has_residual, p_lo, p_hi, project_act, project_alpha, project_beta,
                             pixels, 0, cout_blocks, -1, item == first, 0, 0, 0)


# ---------------------------------------------------------------------------- sizes and costs

def rows_needed(block_rows: int, stride: int) -> int:
    """Input rows one band of `block_rows` output rows reads (3x3 kernel, pad 1)."""
    return (block_rows - 1) * stride + 3


def scratch_floats(hidden_channels: int, width: int, out_width: int, block_rows: int, stride: int,
                   lanes: int = CB) -> tuple[int, int]:
    """float32 elements of (scratch_expand, scratch_depthwise) per worker, with channels
    padded to blocks of `lanes` (default: the width the kernels are built for)."""
    hidden = padded_channels(hidden_channels, lanes)
    return hidden * rows_needed(block_rows, stride) * width, hidden * block_rows * out_width


def expand_recompute_factor(height: int, out_height: int, block_rows: int, stride: int, workers: int = 1,
                            batch: int = 1) -> float:
    """Expanded rows computed / input rows: 1.0 means no halo recompute.

    A worker keeps the rows it expanded for one band in its scratch ring and expands only
    the new rows for its next band of the same image, so halo rows are recomputed only
    where a worker starts: at the first band of its run of work items (the items (image,
    band) are split into `workers` contiguous runs) and at each new image in it."""
    bands = -(-out_height // block_rows)
    items = batch * bands
    computed = 0
    for worker in range(workers):
        held_image, held_end = -1, 0
        for item in range(worker * items // workers, (worker + 1) * items // workers):
            image, band = divmod(item, bands)
            start, end = band * block_rows, min(out_height, (band + 1) * block_rows)
            in_start, in_end = max(0, start * stride - 1), min(height, (end - 1) * stride + 2)
            first = held_end if image == held_image and held_end > in_start else in_start
            computed += max(0, in_end - first)
            held_image, held_end = image, in_end
    return computed / (batch * height)


# The share of a cache level a worker's scratch may take and still count as staying there:
# the rest is for the weights and the block's input and output rows streaming through.
SCRATCH_SHARE = 0.75


def scratch_stays_in(scratch_bytes: int, capacity: int) -> bool:
    """Whether a worker's scratch of `scratch_bytes` stays in a level of `capacity` bytes."""
    return scratch_bytes <= SCRATCH_SHARE * capacity


def auto_block_rows(hidden_channels: int, height: int, width: int, out_height: int, out_width: int, stride: int,
                   threads: int, l2_bytes: int, batch: int, lanes: int) -> int:
    """Band height chosen from the cost model: the tallest band (the fewest bands, each with
    its per-band overheads) whose scratch (expanded rows + depthwise rows, one worker)
    stays in one core's L2 (`scratch_stays_in`), among those whose work items (batch x bands) give every thread
    work: at least `threads` items, and a multiple of `threads` while there are fewer than
    four per thread, so no thread waits on another's extra band. Bands share the rows out
    evenly: with n bands the height is ceil(out_height / n)."""
    fallback = 1
    for bands in range(1, out_height + 1):
        band = -(-out_height // bands)
        if -(-out_height // band) != bands:
            continue                     # that height gives another band count: seen already
        expand, depthwise = scratch_floats(hidden_channels, width, out_width, band, stride, lanes)
        if not scratch_stays_in(4 * (expand + depthwise), l2_bytes):
            continue
        items = batch * bands
        if items >= 4 * threads or (items >= threads and items % threads == 0):
            return band
        fallback = max(fallback, band) if items >= threads else fallback
    return fallback


# ---------------------------------------------------------------------------- public API

def make_scratch(workers: int, hidden_channels: int, width: int, out_width: int, block_rows: int,
                 stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-worker scratch arrays (workers, floats) for `fused_block` (per_worker_zeros)."""
    expand, depthwise = scratch_floats(hidden_channels, width, out_width, block_rows, stride)
    return per_worker_zeros(workers, expand), per_worker_zeros(workers, depthwise)


def scratch_row_floats(floats: int) -> int:
    """A worker's scratch row for `floats` floats: rounded up to whole 64-byte lines."""
    return -(-floats // LINE_FLOATS) * LINE_FLOATS


def per_worker_zeros(workers: int, floats: int) -> np.ndarray:
    """(workers, at least `floats`) zeros, C-contiguous, each row starting on a 64-byte line
    (numpy's own allocations start 16-32 bytes past one, which splits every vector load of
    the scratch over two lines)."""
    row = scratch_row_floats(floats)
    scratch = aligned_empty(workers * row).reshape(workers, row)
    scratch.fill(0.0)
    return scratch


def fused_block(x, expand, depthwise, project, out, residual, stride: int, expand_clip, depthwise_clip,
                project_clip, block_rows: int, scratch_expand: np.ndarray, scratch_depthwise: np.ndarray, *,
                expand_activation=NO_ACTIVATION, depthwise_activation=NO_ACTIVATION,
                project_activation=NO_ACTIVATION) -> None:
    """One inverted-residual block, fused, written into `out`.

    x (N, Cin_b, H, W, CB); expand (packed_weight (Hb, Cin_b*CB, CB), packed_bias (Hb, CB))
    or None when the block has no expand conv (then Hb == Cin_b); depthwise (packed (Hb, 3, 3, CB),
    bias (Hb, CB)), 3x3 pad 1; project (packed (Cout_b, Hb*CB, CB), bias (Cout_b, CB));
    out and residual (or None) (N, Cout_b, Ho, Wo, CB) with Ho = (H - 1) // stride + 1.
    *_clip: (low, high) of each stage, containing 0 (padded lanes stay 0); (-inf, inf) for a
    stage without activation. *_activation: (name, alpha, beta) of each stage, applied before
    its clip (after the residual add in the project stage), one with f(0) = 0 (none,
    hardswish, silu: engine.kernels.activation); default none. block_rows >= 1 output rows per work item; scratch
    arrays from make_scratch(workers, ...) with at least this band's size.
    """
    fn = "fused_block"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, cin_blocks, height, width, _ = x.shape
    if min(n_images, height, width) < 1:
        raise ValueError(f"{fn}: x must hold at least one image of at least one pixel, got shape {x.shape}")
    dw_weight, dw_bias = depthwise
    check_array(fn, "depthwise weight", dw_weight, (None, 3, 3, CB))
    hidden_blocks = dw_weight.shape[0]
    check_array(fn, "depthwise bias", dw_bias, (hidden_blocks, CB))
    if expand is None:
        if hidden_blocks != cin_blocks:
            raise ValueError(f"{fn}: without an expand conv the depthwise must have {cin_blocks} channel blocks, "
                             f"got {hidden_blocks}")
        # unused placeholders with the expand weights' types (3-d, 2-d): another type would
        # compile a second specialisation of the whole kernel, which takes long
        ew, eb = dw_weight.reshape(hidden_blocks, 9, CB), dw_bias
    else:
        ew, eb = expand
        check_array(fn, "expand weight", ew, (hidden_blocks, cin_blocks * CB, CB))
        check_array(fn, "expand bias", eb, (hidden_blocks, CB))
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
    _check_scratch(fn, scratch_expand, scratch_depthwise, expand is not None,
                   scratch_floats(hidden_blocks * CB, width, out_w, block_rows, stride))
    # finite bounds for every stage, also one without activation (-inf, inf): the kernel is
    # built with the 'ninf' fast-math flag
    clips = [check_clip(f"{fn} {name}", *clip) for name, clip in
             (("expand_clip", expand_clip), ("depthwise_clip", depthwise_clip), ("project_clip", project_clip))]
    activations = [kernel_activation(f"{fn} {name}", activation) for name, activation in
                   (("expand_activation", expand_activation), ("depthwise_activation", depthwise_activation),
                    ("project_activation", project_activation))]
    # pad 1 goes in as an argument: were it a constant in the kernel, LLVM would know the
    # left border column's masks and drop its zero taps, leaving sums of two products whose
    # FMA contraction differs between numba's in-process build and its cached one (results
    # would then change by an ulp once the kernel is loaded from the cache)
    launch(_fused_block_kernel, x, ew, eb, expand is not None, dw_weight, dw_bias, pw, pb, out,
           out if residual is None else residual, residual is not None, stride, 1,
           clips[0][0], clips[0][1], clips[1][0], clips[1][1], clips[2][0], clips[2][1],
           *activations[0], *activations[1], *activations[2], block_rows, scratch_expand, scratch_depthwise)



def _check_scratch(fn: str, scratch_expand, scratch_depthwise, has_expand: bool, need: tuple[int, int]) -> None:
    """ValueError unless both scratch arrays are C-contiguous float32 (workers, >= floats
    needed) with a depthwise row for every worker (the kernel runs one worker per row of
    scratch_expand)."""
    need_expand, need_depthwise = need
    for name, scratch, need in (("scratch_expand", scratch_expand, need_expand if has_expand else 0),
                                ("scratch_depthwise", scratch_depthwise, need_depthwise)):
        if not isinstance(scratch, np.ndarray) or scratch.ndim != 2 or scratch.dtype != np.float32 \
                or not scratch.flags.c_contiguous or scratch.shape[0] < 1 or scratch.shape[1] < max(need, 1):
            raise ValueError(f"{fn}: {name} must be a C-contiguous float32 (workers, >= {need}) array, got "
                             f"{getattr(scratch, 'shape', type(scratch).__name__)}")
    if scratch_depthwise.shape[0] < scratch_expand.shape[0]:     # the kernel runs one worker per row of expand's
        raise ValueError(f"{fn}: scratch_depthwise needs a row per worker (scratch_expand has "
                         f"{scratch_expand.shape[0]}), got {scratch_depthwise.shape[0]}")


def fused_block_bytes(batch: int, in_channels: int, hidden_channels: int, out_channels: int, height: int,
                      width: int, stride: int, block_rows: int, has_expand: bool, has_residual: bool, workers: int,
                      budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    What a fused block changes is where its intermediates live: the expanded rows and the
    depthwise output of a band (scratch_floats) are written and read inside the per-worker
    scratch, so they cross a boundary only if that scratch does not fit the level above it.
    The block input is read once per band for the rows the band needs (the halo rows twice:
    expand_recompute_factor), the weights of all three convs once per band unless they
    stay resident, the output (and residual) once. Registers see every stage's loads and
    stores as the unfused kernels would, on the band's shapes.

    A scratch that stays in a level still arrives there once per run: the steps between
    two blocks stream other data through the private caches, so each worker's first band
    fills its scratch lines from L3 (where it stays between runs, like the activations)
    and its dirty lines are written back when they are evicted. So at each boundary
    below L3 that the per-band spill does not already charge, the block pays 2 x scratch
    per worker that has a band (as the cache simulation finds: bench/README "Bytes model
    against a cache simulation").

    Across L1 <- L2, when the scratch does not stay in L1, each 1x1 stage is charged as
    pointwise_bytes charges a 1x1 conv over the band's pixels in one tile (its input read
    once per pair of output blocks unless the band's input stays in L1, a pair's weight
    slice once per band or once per micro-tile): the project stage re-reads the band's
    depthwise output once per pair of its output blocks, the expand stage the band's
    input rows once per pair of hidden blocks.
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, LEVELS, fits

    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    block_rows = min(block_rows, out_h)
    bands = batch * -(-out_h // block_rows)
    recompute = expand_recompute_factor(height, out_h, block_rows, stride, workers, batch)
    cin, hidden, cout = budget.padded(in_channels), budget.padded(hidden_channels), budget.padded(out_channels)
    x_bytes = batch * cin * height * width * FLOAT32          # read once, plus the halo rows below
    y_bytes = batch * cout * out_h * out_w * FLOAT32 * (2 if has_residual else 1)
    w_bytes = ((hidden * (cin + 1) if has_expand else 0) + hidden * 10 + cout * (hidden + 1)) * FLOAT32
    expand_floats, depthwise_floats = scratch_floats(hidden_channels, width, out_w, block_rows, stride, budget.lanes)
    scratch_bytes = (expand_floats * has_expand + depthwise_floats) * FLOAT32
    # intermediates, per band: written (a line fill, then the write-back: write-allocate,
    # engine.traffic) and read once (the depthwise reads its 3x3 window from L1)
    intermediate = bands * 3 * scratch_bytes
    # registers: each stage's register-level traffic on the band's shapes, summed over bands
    rows_in = height * recompute / (bands / batch)
    registers = 0.0
    if has_expand:
        registers += pointwise_bytes(batch, in_channels, hidden_channels, 1, int(round(rows_in * width * bands / batch)),
                                     10 ** 9, 10 ** 9, False, budget)["L1"]
    registers += depthwise_bytes(batch, hidden_channels, height, width, out_h, out_w, 3, 3, stride, block_rows,
                                 budget)["L1"]
    registers += pointwise_bytes(batch, hidden_channels, out_channels, out_h, out_w, 10 ** 9, 10 ** 9, has_residual,
                                 budget)["L1"]
    # each worker with a band brings its scratch in once per run and writes it back (above)
    first_touch = 2 * min(workers, bands) * scratch_bytes
    out = {"L1": registers}
    for boundary in ("L2", "L3", "DRAM"):
        capacity = budget.capacity_above(boundary)
        weights = w_bytes if fits(w_bytes, capacity) else w_bytes * bands
        if not scratch_stays_in(scratch_bytes, capacity):
            spill = intermediate
        else:
            spill = first_touch if boundary != "DRAM" else 0.0
        # the halo rows are read twice unless the image's input stays resident between bands
        x_traffic = x_bytes if fits(cin * height * width * FLOAT32, capacity) else x_bytes * recompute
        out[boundary] = x_traffic + y_bytes + weights + spill
    if not scratch_stays_in(scratch_bytes, budget.L1):
        out["L2"] = _stages_across_l2(batch, in_channels, hidden_channels, out_channels, width, out_h, out_w, bands,
                                      rows_in, x_bytes * recompute, expand_floats * FLOAT32,
                                      depthwise_floats * FLOAT32, has_expand, has_residual, budget)
    return {level: int(round(out[level])) for level in LEVELS}


def _stages_across_l2(batch, in_channels, hidden_channels, out_channels, width, out_h, out_w, bands, rows_in,
                      x_traffic, expand_bytes, depthwise_bytes_, has_expand, has_residual, budget) -> float:
    """fused_block_bytes across L1 <- L2 for a scratch that does not stay in L1, stage by
    stage per band (bytes): the expand as a 1x1 conv over the band's input rows (its input,
    weights and expanded rows), the expanded rows' line fill and read by the depthwise, the
    depthwise's weights, its output's fill and write-back, the project as a 1x1 conv over
    the band's pixels (its input re-reads, weights and the block's output and residual)."""
    from engine.kernels.pointwise import MICRO_TILE      # here: only the bytes model needs it

    from engine.traffic import FLOAT32

    _, blocks = MICRO_TILE[budget.lanes]
    pair = blocks * budget.lanes                          # one pair of output blocks: a weight slice
    hidden = budget.padded(hidden_channels)
    band_pixels = max(1, int(round(batch * out_h * out_w / bands)))    # a band's pixels, on average
    input_pixels = max(1, int(round(rows_in * width)))
    per_band = 2 * depthwise_bytes_ + hidden * 10 * FLOAT32
    per_band += pointwise_bytes(1, hidden_channels, out_channels, 1, band_pixels, band_pixels, pair, has_residual,
                                budget)["L2"]
    moved = bands * per_band
    if has_expand:
        expand = pointwise_bytes(1, in_channels, hidden_channels, 1, input_pixels, input_pixels, pair, False,
                                 budget)["L2"]
        moved += bands * (expand + 2 * expand_bytes)
    else:                                                 # the depthwise reads the block's input rows itself
        moved += x_traffic
    return moved
