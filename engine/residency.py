"""Which of a plan's buffers are still in the L2s when a step uses them: an LRU at the
grain of buffers, walked over the plan's steps in order.

The rule, in the reader's terms. Every thread has its own L2 (the machine's usable size),
which keeps what the thread touched most recently and drops the oldest first (LRU). A step
touches its operands in the order a kernel does: its weights first, then its inputs, its
residual and its output together, slice by slice, its weights again before the last slice
(a kernel re-reads them while it runs: its last pixel tile's rows come with them, so they
outlive the older rows). The L2 is set-associative with the machine's ways (`walk_ways`:
sysfs, else DEFAULT_WAYS as the cache simulation assumes): a block goes to the set of its
lines, an LRU within each set (`set_groups`). Each thread touches its share of an activation: a stripe of its rows
when the kernel splits its work items by pixels (`thread_split`: a 1x1 conv with a pixel
tile per thread, a depthwise conv with a band of rows per thread, the other kernels), so a
thread reads the rows it wrote; or a run of its channel blocks when the kernel splits
channels (then half of what a thread reads another thread wrote, and that is not in its
L2); a global average pool's threads read runs of whole (image, channel block) planes, its
work items. It reads all of the weights (its channels' share when split by channels, and a
linear layer's). A block of the walk that several stripes of a thread's share fall in
(a 7x7 plane is 3136 B at 16 lanes) is touched once, for all of their bytes. Addresses are the real ones (the arena's offsets), so a buffer that
reuses the region of one whose lifetime ended, or a step writing over its input, lands on
the same lines: whatever of them is still in L2 is found there. Per step this gives, at
the L3 boundary (between L2 and L3):

- read: bytes of its inputs, residual and weights its threads did not find in their L2s,
  read from L3 (`loaded`: those operands counted once, as the kernels' `*_bytes` do);
- filled: bytes of its output whose lines were not in L2, which a store first reads in
  from L3 (write-allocate); an output landing on lines still in L2 fills nothing;
- written back: dirty lines (outputs of this step or earlier ones) the step's touches
  evict from L2, written to L3 now, as hardware and the cache simulation charge them. A
  dirty line that is written again before it is evicted is written back once, not twice.

A fused block's scratch is followed too, each worker's used part of it (the allocation
is sized for the largest block: following all of it evicted more than the cache
simulation does): the thread that runs the worker writes and reads it in every band, so
the walk touches it before each slice of the activations, one slice per band (its
weights stream past with the slices), and the
block pays the fill of what its threads did not find (scratch_filled, in place of the
first touch `fused_block_bytes` / `fused_se_block_bytes` charge per run: scratch_charged) while its dirty lines
are written back by whichever step evicts them. A block right after a block finds their
shared scratch still in L2. A scratch over `fused_block.scratch_stays_in` of L2 is not
followed (the kernel's *_bytes charge its spill). An SE block's scratch (fused_se_block)
is its ring of expanded rows and one image's depthwise output. The walk is
cut into blocks of `grain` bytes (a few KiB: 1/512 of an L2), not lines, so a plan of ~100
steps takes milliseconds. One unrecorded run goes first, so the first steps find what the
last ones left (as in repeated runs and in the simulation). Below the L2s, optionally, the
shared L3 as one LRU of the same blocks, set-associative too (`l3_bytes`): an L2 miss reads from it, a dirty block
an L2 evicts is written into it (taken without a read from memory), and per step it gives
what it read from memory (dram_read) and the dirty blocks it evicted there
(dram_written_back). What it leaves out: re-reads inside a step (the kernels' `*_bytes` count
them), software prefetches of the next step's weights, and the sets' uneven fill below the
block's grain (a level's lines, not its blocks).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from engine.trace.calls import kernel_and_arguments

LOAD, STORE, WEIGHTS, SCRATCH = "load", "store", "weights", "scratch"
ROWS, CHANNELS, WHOLE, ITEMS = "rows", "channels", "whole", "items"
SLICES = 8              # an activation's share is touched in this many slices, interleaved with the others'
MAX_SLICES = 256        # a fused block's: one per band of a worker, up to this many
BLOCKS_PER_L2 = 512     # default grain: the L2 in this many blocks
DEFAULT_WAYS = 16       # a level's associativity where the machine does not say (as engine.trace.simulator)


@dataclass(frozen=True)
class Region:
    """`nbytes` bytes at `start` (an address, or any number in a space of its own) that a
    step touches as `kind`: LOAD (an input or residual), STORE (its output), WEIGHTS (its
    own weights and biases), SCRATCH (the part of a fused block's per-worker scratch one
    worker uses: written and read by thread `thread` alone, all through the step)."""

    start: int
    nbytes: int
    kind: str
    split: str = ROWS                   # how the threads share it (ROWS, CHANNELS, WHOLE, ITEMS; _share)
    shape: tuple[int, ...] = ()         # an NCHWc buffer's (N, Cb, H, W, CB); () for anything else
    thread: int = -1                    # SCRATCH: the thread that runs its worker
    passes: int = 1                     # SCRATCH: its worker's work items (bands), each using all of it


@dataclass(frozen=True)
class StepResidency:
    """One step's traffic at the L3 boundary by the walk (module docstring), bytes."""

    loaded: int             # its inputs, residual and weights, each counted once
    read: int               # what of them the threads did not find in their L2s (read from L3)
    filled: int             # output bytes whose lines were read in from L3 before the store
    written_back: int       # dirty lines the step's touches evicted to L3
    scratch_filled: int = 0  # a fused block: bytes of its workers' scratch not in their L2s (read in first)
    scratch_charged: int = 0  # a fused block: the scratch first touch its *_bytes charge at L3, which
                              # the walk replaces (scratch_filled here, its write-backs in written_back)
    dram_read: int = 0      # with the L3 walked: bytes of its L2s' misses the L3 did not hold (read from memory)
    dram_written_back: int = 0  # and dirty blocks the L3 evicted to memory meanwhile
    l3_walked: bool = False


def follow_buffers(steps: list[list[Region] | None], l2_bytes: int, threads: int, warm_runs: int = 1,
                   grain: int | None = None, l3_bytes: int = 0, l2_ways: int = 0,
                   l3_ways: int = 0) -> list[StepResidency | None]:
    """Walk `steps` (each a list of the Regions it touches, or None: a step the walk does
    not know, left out) through `threads` private LRU L2s of `l2_bytes` each (module
    docstring) and, with `l3_bytes`, one shared LRU L3 of that size below them; `warm_runs`
    unrecorded runs first. l2_ways, l3_ways: the levels' associativity (0: fully
    associative; _LRU). Returns per step its StepResidency (None for a None step)."""
    if threads < 1 or l2_bytes < 1:
        raise ValueError(f"threads and l2_bytes must be >= 1, got {threads} and {l2_bytes}")
    grain = grain or walk_grain(l2_bytes, l2_ways)
    l3 = _LRU(max(1, l3_bytes // grain), grain, ways=l3_ways) if l3_bytes else None
    caches = [_LRU(max(1, l2_bytes // grain), grain, l3, ways=l2_ways) for _ in range(threads)]
    results: list[StepResidency | None] = []
    for run in range(warm_runs + 1):
        for regions in steps:
            moved = None if regions is None else _touch_step(regions, caches, threads, grain)
            if run == warm_runs:
                results.append(moved)
    return results


def walk_grain(l2_bytes: int, l2_ways: int = 0) -> int:
    """The walk's block, bytes: about l2_bytes / BLOCKS_PER_L2, a multiple of the 64-byte
    line that divides L2's way span (l2_bytes / l2_ways) where the ways are known, so that
    set_groups can map blocks to sets (a 1.25 MiB 20-way L2: 2560 would not divide its
    64 KiB span, 2048 does)."""
    grain = max(64, l2_bytes // BLOCKS_PER_L2 // 64 * 64)
    span = l2_bytes // l2_ways if l2_ways > 0 and l2_bytes % l2_ways == 0 else 0
    while span and grain > 64 and span % grain:
        grain -= 64
    return grain


def set_groups(capacity_blocks: int, ways: int) -> int:
    """How many sets an LRU of `capacity_blocks` blocks has at `ways` ways: the level's own
    sets grouped by block (a block of `grain` bytes holds consecutive lines, whose sets are
    consecutive: block b's lines all fall in group b mod groups, as the level's way span,
    capacity / ways, is a whole number of blocks). 1 (fully associative) for ways 0 or
    when a way span is not a whole number of blocks."""
    if ways <= 0 or capacity_blocks % ways:
        return 1
    return capacity_blocks // ways


class _LRU:
    """One LRU cache of blocks by number, oldest first, each with its dirty flag: a
    thread's L2 (its misses read from `below`, the shared L3, and its dirty evictions are
    written there) or the L3 (its misses read from memory). With `ways`, set-associative:
    block b goes to set b mod set_groups, LRU within the set."""

    def __init__(self, capacity_blocks: int, grain: int, below: "_LRU | None" = None, ways: int = 0):
        self.capacity, self.grain, self.below = capacity_blocks, grain, below
        self.groups = set_groups(capacity_blocks, ways)
        self.set_capacity = capacity_blocks // self.groups
        self.sets: list[OrderedDict[int, bool]] = [OrderedDict() for _ in range(self.groups)]
        self.written_back = 0       # bytes of dirty blocks evicted (to the level below)
        self.missed = 0             # bytes touched that were not resident (read from the level below)

    def __contains__(self, block: int) -> bool:
        return block in self.sets[block % self.groups]

    def touch(self, block: int, store: bool, nbytes: int | None = None, allocate_only: bool = False) -> bool:
        """Touch a block (a store marks it dirty); whether it was resident. nbytes: the
        bytes of it touched (a region's part of its first or last block), counted in
        `missed` and passed on to the level below on a miss. allocate_only: a dirty block
        written back into this level, which takes it without reading it from below."""
        blocks = self.sets[block % self.groups]
        resident = block in blocks
        if resident:
            blocks.move_to_end(block)
            if store:
                blocks[block] = True
            return True
        if not allocate_only:
            nbytes = self.grain if nbytes is None else nbytes
            self.missed += nbytes
            if self.below is not None:
                self.below.touch(block, False, nbytes)
        blocks[block] = store
        if len(blocks) > self.set_capacity:
            evicted, dirty = blocks.popitem(last=False)
            if dirty:
                self.written_back += self.grain
                if self.below is not None:
                    self.below.touch(evicted, True, allocate_only=True)
        return False


def _share(region: Region, thread: int, threads: int) -> list[tuple[int, int]]:
    """[start, end) ranges of `thread`'s share of a region. WHOLE: all of it (every thread
    reads it); SCRATCH: all of it (only its own thread touches it: _touch_step). ROWS: the
    t-th of `threads` stripes of its pixels (N*H*W flattened) in every channel block (the
    kernels' work items are pixel ranges first). CHANNELS: the t-th run of its channel
    blocks. ITEMS: the t-th run of its (image, channel block) planes, in memory order (the
    global average pool's work items). A region without an NCHWc shape: the t-th
    contiguous part."""
    start, end = region.start, region.start + region.nbytes
    if region.split == WHOLE or region.kind == SCRATCH:
        return [(start, end)]
    if region.split == ITEMS and len(region.shape) == 5:
        images, blocks, height, width, lanes = region.shape
        plane = height * width * lanes * 4
        first, last = thread * images * blocks // threads, (thread + 1) * images * blocks // threads
        return [(start + first * plane, start + last * plane)] if last > first else []
    if len(region.shape) != 5:
        part = region.nbytes // threads
        return [(start + thread * part, end if thread == threads - 1 else start + (thread + 1) * part)]
    images, blocks, height, width, lanes = region.shape
    plane = height * width * lanes * 4                      # one image's channel block, bytes
    if region.split == CHANNELS:
        first, last = thread * blocks // threads, (thread + 1) * blocks // threads
        return [(start + (n * blocks + first) * plane, start + (n * blocks + last) * plane)
                for n in range(images) if last > first]
    pixels = images * height * width
    first, last = thread * pixels // threads, (thread + 1) * pixels // threads
    ranges = []
    for n in range(images):
        a, b = max(first, n * height * width), min(last, (n + 1) * height * width)
        if a < b:
            for block in range(blocks):
                base = start + (n * blocks + block) * plane - n * height * width * lanes * 4
                ranges.append((base + a * lanes * 4, base + b * lanes * 4))
    return ranges


def _slices(ranges: list[tuple[int, int]], grain: int, count: int = SLICES) -> list[list[tuple[int, int]]]:
    """The blocks of `ranges` as (block, bytes of the ranges in it), in `count` runs, each
    block once, where its first range puts it: a block two ranges share (a thread's stripes
    of consecutive channel blocks, 3136 B apart at 7x7, 16 lanes) carries both ranges' bytes,
    so a miss on it charges all that the thread touches there, not the first range's part."""
    found: dict[int, int] = {}
    for start, end in ranges:
        for b in range(start // grain, -(-end // grain)):
            if end > start:
                found[b] = found.get(b, 0) + min(end, (b + 1) * grain) - max(start, b * grain)
    blocks = list(found.items())
    cut = [len(blocks) * i // count for i in range(count + 1)]
    return [blocks[cut[i]:cut[i + 1]] for i in range(count)]


def _touch_step(regions: list[Region], caches: list[_LRU], threads: int, grain: int) -> StepResidency:
    """One step through the threads' L2s (module docstring): a plain step's weights first
    (in use from the start), its activations slice by slice, its weights again (in use to
    the end). A fused block (one with SCRATCH regions) runs band after band, each using all
    of its worker's scratch: one slice per band (so a slice of the activations streams past
    the scratch as a band's rows do), the whole scratch before each slice and once more at
    the end (a band's project stage reads it last); its weights stream past with the
    slices (a block's three convs read theirs one after the other)."""
    read = filled = written_back = scratch_filled = 0
    fused = any(r.kind == SCRATCH for r in regions)
    count = min(MAX_SLICES, max([SLICES] + [r.passes for r in regions if r.kind == SCRATCH]))
    streamed = (LOAD, STORE, WEIGHTS) if fused else (LOAD, STORE)
    l3 = caches[0].below
    l3_before = (l3.missed, l3.written_back) if l3 is not None else (0, 0)
    for thread, cache in enumerate(caches):
        before = cache.written_back
        shares = [(r, _slices(_share(r, thread, threads), grain, count)) for r in regions
                  if r.kind != SCRATCH or r.thread == thread]
        scratch = [b for r, slices in shares if r.kind == SCRATCH for s in slices for b in s]
        held = [b for r, slices in shares if r.kind == WEIGHTS and not fused for s in slices for b in s]
        read += sum(n for b, n in held if not cache.touch(b, False, n))
        for i in range(count):
            if i == count - 1:
                for block, n in held:       # in use to the end: the last slice's rows come with them
                    cache.touch(block, False, n)
            scratch_filled += sum(n for b, n in scratch if not cache.touch(b, True, n))
            for region, slices in shares:
                if region.kind not in streamed:
                    continue
                for block, n in slices[i]:
                    resident = cache.touch(block, region.kind == STORE, n)
                    if region.kind in (LOAD, WEIGHTS) and not resident:
                        read += n
                    elif region.kind == STORE and not resident:
                        filled += n
        scratch_filled += sum(n for b, n in scratch if not cache.touch(b, True, n))
        written_back += cache.written_back - before
    loaded = sum(r.nbytes for r in regions if r.kind in (LOAD, WEIGHTS))
    if l3 is None:
        return StepResidency(loaded=loaded, read=read, filled=filled, written_back=written_back,
                             scratch_filled=scratch_filled)
    return StepResidency(loaded=loaded, read=read, filled=filled, written_back=written_back,
                         scratch_filled=scratch_filled, dram_read=l3.missed - l3_before[0],
                         dram_written_back=l3.written_back - l3_before[1], l3_walked=True)


# ---------------------------------------------------------------- a plan's steps as regions

POINTWISE_OPS = ("expand", "project", "pointwise")


def thread_split(step, threads: int) -> str:
    """How a step's kernel shares its pixels among `threads` (its work items, split in
    contiguous runs): ROWS when it has at least one pixel range per thread (a 1x1 conv's
    pixel tiles, a depthwise conv's bands of rows, every other kernel), else CHANNELS (a
    1x1 conv then splits its output channel tiles and every thread reads the whole input;
    a depthwise conv its channel blocks); ITEMS for the global average pool (its work items
    are (image, channel block) planes: at batch 1 a run of channel blocks per thread)."""
    if step.op == "pool" and len(step.input_shape) == 5:
        return ITEMS
    tiles = step.tiles
    if tiles is None or len(step.input_shape) != 5:
        return ROWS
    if step.op in POINTWISE_OPS:
        images, _, height, width, _ = step.input_shape
        return ROWS if -(-images * height * width // tiles.pointwise_pixels) >= threads else CHANNELS
    if step.op == "depthwise":
        images, _, height, _, _ = step.output_shape
        return ROWS if images * -(-height // tiles.depthwise_rows) >= threads else CHANNELS
    return ROWS


def step_regions(step, buffers: dict[str, np.ndarray], weights, arena: tuple[int, int],
                 weight_memory: list[tuple[int, int]], caller_input: int, threads: int,
                 l2_bytes: int = 0) -> list[Region] | None:
    """The Regions a plan step (engine.steps.Step) touches, from the arrays its kernel is
    bound to (engine.trace.calls.kernel_and_arguments) or, for a step run by numpy, its
    input and output buffers by name. buffers: the plan's by tensor; weights: its
    PackedWeights; arena: [start, end) of the arena's memory; weight_memory: [start, end)
    of every packed weight array (another step's weights a 1x1 conv prefetches are left
    out); caller_input: a start for the caller's input array (a space of its own). None for
    a step with neither (the copy-in and copy-out steps)."""
    output = buffers.get(step.output) if step.output else None
    found = kernel_and_arguments(step.call)
    if found is not None:
        arrays = list(found[1])
    else:
        arrays = [buffers[name] for name in step.inputs if name in buffers]
    if output is None and not arrays:
        return None
    split = thread_split(step, threads)
    pointwise_by_channels = split == CHANNELS and step.op in POINTWISE_OPS
    # split by pixels, every thread reads all the weights; by channels (and a linear layer,
    # whose threads split its outputs, and a squeeze-and-excitation, whose threads split
    # the rows of its two small matrices) its own channels' weights
    weight_split = WHOLE if split == ROWS and step.op not in ("linear", "se") else CHANNELS
    input_split = WHOLE if pointwise_by_channels else split
    regions: list[Region] = []
    own = {_span(a) for name in step.members for a in weights.by_layer.get(name, ())}
    for span in sorted(own):
        regions.append(Region(span[0], span[1] - span[0], WEIGHTS, weight_split))
    output_span = _span(output) if output is not None else None
    seen = set(own) | ({output_span} if output_span else set())
    for array in arrays:
        if array is None:                                 # the caller's input, read in place
            regions.append(Region(caller_input, 4 * int(np.prod(step.input_shape)), LOAD, ROWS))
            continue
        if not isinstance(array, np.ndarray) or array.nbytes == 0:
            continue
        span = _span(array)
        if output_span and _overlaps(span, output_span):
            continue
        if span in seen:
            # a residual that is the input itself (a fused block's): the kernel's *_bytes
            # count it twice, so `loaded` does; the walk finds it the second time
            if not (step.layer is not None and step.layer.residual and array.shape == output.shape
                    and any(r.kind == LOAD and r.start == span[0] for r in regions)):
                continue
        seen.add(span)
        if any(_inside(span, memory) for memory in weight_memory):
            continue                                      # another step's weights (a 1x1 conv's `ahead`)
        if _inside(span, arena):                          # (not a fused block's scratch: module docstring)
            residual = output is not None and array.shape == output.shape
            regions.append(Region(span[0], span[1] - span[0], LOAD, split if residual else input_split,
                                  array.shape if array.ndim == 5 else ()))
    if output_span:
        shape = output.shape if output.ndim == 5 else ()
        if any(name in buffers and _overlaps(_span(buffers[name]), output_span) for name in step.inputs):
            regions.append(Region(output_span[0], output_span[1] - output_span[0], LOAD, split, shape))  # in place
        regions.append(Region(output_span[0], output_span[1] - output_span[0], STORE, split, shape))
    if found is not None and step.fused and l2_bytes:
        regions += scratch_regions(step, found[1], weights, threads, l2_bytes)
    return regions


def block_scratch_bytes(step) -> tuple[int, int, int]:
    """(bytes of scratch_expand, bytes of the depthwise scratch) one worker of a fused block
    step uses (Step.scratch: the expanded rows, 0 without an expand conv; a band's depthwise
    rows, or an SE block's one image's depthwise output), and the block's work items
    (images x bands)."""
    images, out_h = step.output_shape[0], step.output_shape[2]
    return 4 * step.scratch.expand, 4 * step.scratch.depthwise, images * -(-out_h // min(step.block_rows, out_h))


def _scratch_stays(step, l2_bytes: int) -> bool:
    """Whether a fused block's scratch stays in an L2 of `l2_bytes`, as its kernel's *_bytes
    decide (else they charge its spill, and the walk does not follow it): fused_block_bytes
    the expanded and depthwise rows together, fused_se_block_bytes the ring and the image's
    depthwise output each."""
    from engine.kernels.fused_block import scratch_stays_in   # here: only fused blocks need it

    expand, depthwise, _ = block_scratch_bytes(step)
    if step.scratch.squeeze_excite:
        return scratch_stays_in(expand, l2_bytes) and scratch_stays_in(depthwise, l2_bytes)
    return scratch_stays_in(expand + depthwise, l2_bytes)


def _scratch_workers(step, workers: int) -> list[tuple[int, int, int, int, int]]:
    """Per worker with work in a fused block: (worker, its work items (bands), the depthwise
    scratch row it uses, the offset and the bytes of its part of that row, bytes); that row is
    the worker's own, except for an SE block whose images are split into bands over the
    workers (fused_se_block's per_image_items false): then every worker uses row 0, taken
    here as a contiguous share of it per worker (its bands' rows are a share of each channel
    block's plane)."""
    from engine.kernels.fused_se_block import per_image_items   # here: only SE blocks need it

    _, depthwise, items = block_scratch_bytes(step)
    images = step.output_shape[0]
    bands = items // images
    found = []
    for worker in range(workers):
        if not step.scratch.squeeze_excite:
            passes = (worker + 1) * items // workers - worker * items // workers
            found.append((worker, passes, worker, 0, depthwise))
        elif per_image_items(images, workers):
            passes = ((worker + 1) * images // workers - worker * images // workers) * bands
            found.append((worker, passes, worker, 0, depthwise))
        else:
            passes = images * ((worker + 1) * bands // workers - worker * bands // workers)
            begin, end = worker * depthwise // workers, (worker + 1) * depthwise // workers
            found.append((worker, passes, 0, begin, end - begin))
    return [entry for entry in found if entry[1]]


def scratch_regions(step, arguments: tuple, weights, threads: int, l2_bytes: int) -> list[Region]:
    """The SCRATCH regions of a fused block step (its kernel's `arguments` end with
    scratch_expand and the depthwise scratch: (workers, floats) rows, sized for the plan's
    largest block): per worker that has work, the start of its rows this block uses
    (_scratch_workers), touched by the thread that runs that worker (engine.trace.calls:
    contiguous runs of workers per thread, contiguous runs of items per worker). [] when the
    scratch does not stay in L2 (_scratch_stays: then the kernel's *_bytes charge its spill)."""
    scratch_expand, scratch_depthwise = arguments[-2], arguments[-1]
    expand, _, _ = block_scratch_bytes(step)
    if not _scratch_stays(step, l2_bytes):
        return []
    workers = scratch_expand.shape[0]
    regions = []
    for worker, passes, row, offset, used in _scratch_workers(step, workers):
        thread = next(t for t in range(threads) if (t + 1) * workers // threads > worker)
        if expand:
            regions.append(Region(_span(scratch_expand[worker])[0], expand, SCRATCH, WHOLE, thread=thread,
                                  passes=passes))
        regions.append(Region(_span(scratch_depthwise[row])[0] + offset, used, SCRATCH, WHOLE, thread=thread,
                              passes=passes))
    return regions


def scratch_charged(step, threads: int) -> int:
    """The scratch first touch a fused block step's *_bytes charge at the L3 boundary (a fill
    and a write-back per worker: fused_block_bytes per worker with a band, min(threads,
    images x bands); fused_se_block_bytes min(threads, images)), bytes."""
    expand, depthwise, items = block_scratch_bytes(step)
    workers = min(threads, step.output_shape[0] if step.scratch.squeeze_excite else items)
    return 2 * workers * (expand + depthwise)


def plan_residency(steps, buffers: dict[str, np.ndarray], weights, l2_bytes: int,
                   threads: int, l3_bytes: int = 0, l2_ways: int = 0, l3_ways: int = 0) -> list[StepResidency | None]:
    """follow_buffers over a plan's steps (engine.plan: after its io is wired), each thread
    with an L2 of `l2_bytes`, with a shared L3 of `l3_bytes` below them (0: none); a fused block's result also says what of its scratch first
    touch (scratch_charged: a fill and a write-back per worker) the walk
    replaces, when it follows the scratch."""
    spans = [_span(a) for a in buffers.values() if a.nbytes]
    arena = (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)
    weight_memory = [_span(a) for pair in weights.by_layer.values() for a in pair if a.nbytes]
    caller_input = -(1 << 62)                             # below every real address
    regions = [step_regions(step, buffers, weights, arena, weight_memory, caller_input, threads, l2_bytes)
               for step in steps]
    walked = follow_buffers(regions, l2_bytes, threads, l3_bytes=l3_bytes, l2_ways=l2_ways, l3_ways=l3_ways)
    results = []
    for step, step_regions_, result in zip(steps, regions, walked):
        if result is not None and any(r.kind == SCRATCH for r in step_regions_ or ()):
            result = replace(result, scratch_charged=scratch_charged(step, threads))   # (workers = threads)
        results.append(result)
    return results


def _span(array: np.ndarray) -> tuple[int, int]:
    start = array.__array_interface__["data"][0]
    return start, start + array.nbytes


def _inside(span: tuple[int, int], memory: tuple[int, int]) -> bool:
    return memory[0] <= span[0] and span[1] <= memory[1]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def walk_ways(level) -> int:
    """The associativity the walk gives a cache level (an engine.machine.CacheLevel): its
    ways where sysfs says, else DEFAULT_WAYS, as the cache simulation assumes."""
    return level.ways or DEFAULT_WAYS
