"""The bytes-moved model: how much data each step sends across each memory boundary.

Time is measured and FLOPs are counted exactly, but bytes are *modelled*. This is the
model, said out loud:

- Levels. `bytes["L1"]` is the traffic between the core's registers and L1 (the loads and
  stores the kernel issues), `bytes["L2"]` the traffic between L1 and L2 (what misses L1),
  `bytes["L3"]` between L2 and L3, `bytes["DRAM"]` between L3 and memory. The arithmetic
  intensity at a level is FLOPs / bytes at that level, set against that level's measured
  bandwidth.
- Per step, cold, except between steps. Every step is charged as if its operands start in
  the level below the one considered: compulsory traffic (inputs, weights, outputs) at L1,
  L2 and L3. Reuse *inside* a fused block is credited (its intermediate never leaves the
  per-thread scratch). Between steps the L2s and the shared L3 are followed through the
  arena (engine.residency; "Between steps, L2 too" below): at DRAM a step is charged what
  of its inputs, weights and output lines its L2s' misses did not find in L3, and the dirty
  lines L3 evicted meanwhile, instead of its compulsory traffic. So at batch 1 on a 32 MiB
  L3 MobileNetV2 moves almost nothing from DRAM (weights and activations stay there from
  run to run), on a 10 MiB one its 14 MB of weights stream through it every run and push
  out the arena's first buffers (the stem, blocks 1-2 read and fill from memory), and at
  batch 64 its activations cross too. A step the walk does not know (a copy in numpy) gets
  the older rule: its activations do not cross DRAM when together they fit half of L3, its
  weights when the whole model's weights plus its activations fit half of L3
  (`credit_l3_residency`). A 1x1 conv prefetches the next weighted step's weights while it
  runs (`pointwise_conv(ahead=)`): the DRAM traffic of the lines its trace prefetches is
  charged to the prefetching step, not to the step that then finds them in cache.
- Writes. A store to a line not in cache first reads the line in (write-allocate), and the
  dirty line is written back when it is evicted: an output that crosses a boundary crosses
  it twice, once in each direction (`charge_write_allocate`). The kernels have no
  non-temporal stores that would skip the read. A step that writes over its input (a
  squeeze-and-excitation the plan runs in place) loads each line just before it stores
  to it: no fill across L1 <- L2 (below, the walk finds the lines it read).
- Between steps, L2 too: the arena followed through the L2s (engine.residency). Which of a
  step's inputs are still in L2, and whether its output lands on lines still there, depends
  on the steps' order and the arena's offsets, so a pass over the plan decides it: each
  thread's L2 (its usable size) is an LRU of blocks of a few KiB, set-associative with the
  level's ways (sysfs; 16 where not known, as the simulation assumes); each step touches, at
  their real addresses, its weights, then its inputs, residual and output slice by slice;
  a thread touches its share of an activation (a stripe of rows when the kernel has a pixel
  range per thread, its channel blocks when it splits channels: then what another thread
  wrote is not in its L2) and all the weights (a linear layer's threads split them). At L3
  the step is then charged what its threads did not find (instead of its inputs and
  weights once), the lines of its output that were not in L2 (the fill, instead of one per
  output) and the dirty lines its touches evicted (write-backs, when they happen, as the
  simulation and hardware counters charge them; a line written again before its eviction
  is written back once). One unrecorded run goes first. A fused block's scratch is walked too
  (each worker's used part, in every band): the block pays what of it its threads did not
  find instead of the once-per-run fill and write-back `fused_block_bytes` charges, and
  its dirty lines are written back by the step that evicts them.
  With this, at batch 1 on the development machine (2 x 2 MiB of L2, MobileNetV2's
  tensors of 0.1-0.6 MB from block 6 on), a buffer that reuses the region of one whose
  lifetime just ended is written without a fill and without a second write-back.
- Where this model is knowingly wrong: every step of MobileNetV2 still more than 25 % off
  the cache simulation at L2, L3 or DRAM (bench/README, "Bytes model against a cache
  simulation": 92-95 % / 94 % of step-levels within 25 % at batch 1 / 8 on this host's 2 MiB
  L2s, 97 % / 91-95 % on the Zen 3 VM's 512 KiB L2s and 10 MiB L3, over four runs: steps
  moving ~0.1 MB pass or not with where the arrays land), by cause. Ratios are
  model / simulated; "probed": the simulated L2 of each thread, misses by operand.
  (1) Line-level set imbalance the walk's 4 KiB blocks do not see. This host, batch 1, L3:
  features.1's projection (0 vs 0.14 MB: the simulated L2s lose 0.06 MB a thread of the
  1.6 MB input they hold, 78 % of each L2), features.6's 0.74x (0.06 vs 0.08 MB). Small in
  bytes; the walk would need the lines, i.e. the simulation.
  (2) Write-backs at 14x14, batch 1 here: the simulated L2s, full of dead buffers' dirty
  lines, write back about a line per line brought in; the walk fewer: depthwise features.8
  and 12 at 0.74-0.77x (probed, features.12: 0.14 MB written back against the walk's 0.08),
  features.14's projection 0.70x (its threads split channels: the simulated L2s miss
  0.42 MB of its weights, the walk 0.37, and write back 0.06 MB, the walk none). On the
  Zen 3 VM the same kind of gap is which step writes back: features.14's block leaves its
  scratch (70 % of a 512 KiB L2) dirty; the simulation writes most of it back during the
  block (whose L2 refills part of the scratch each band: (5)), the walk during the next
  steps: features.15's expand 1.35x (probed: reads 0.68 vs 0.68 MB and fills 0.19 vs
  0.19 MB agree, write-backs 0.56 vs 0.19 MB) and depthwise 1.32x; features.9's expand
  1.26x (write-backs 0.33 vs 0.23 MB, fills 0.30 vs 0.24 MB). The steps together agree.
  (3) The 1x1 expands' weight re-reads across L1 <- L2 at 7x7, batch 8 here (features.15-17,
  1.57x: 24.5 vs 15.6 MB). Their reuse distance (a block triple's 30 KiB of weights and a
  micro-tile's 6.5 KiB of inputs and outputs, 76 % of the 48 KiB L1) is the one
  `kept_share` was set on at batch 1, where the simulated L1 keeps 76 % of the re-reads
  (the model 60 %); at batch 8 it keeps 93 % (thread 0's L1 alone, misses by operand:
  weights 6.1 MB against the model's 14.7). What differs is per set, not per level: at
  batch 1 every micro-tile also prefetches 4 lines per input block of the next triple's
  weights (`prefetches_weights`), and the 16-way simulated 32 KiB L1 of the Zen 3 VM keeps
  fewer re-reads than the model at the same 75 %. Starting the fall at 75 % of the level
  (KEPT_FROM) put these three inside but four Zen 3 steps out at batch 1 (0.62-0.78x): a
  capacity share cannot tell the two apart; the sets' fill would (`pointwise_bytes`).
  (4) The 1x1 convs' weights re-read per pixel tile at L3, batch 8 here: features.17's
  projection 1.35x (9.7 vs 7.2 MB) and features.18 1.51x (15.3 vs 10.2 MB).
  `pointwise_bytes` charges the share of the re-reads `kept_share` loses at a reuse
  distance of all the weights and a pixel tile's activations (72 % and 95 % of the 2 MiB
  L2), from 60 % of the level on; the simulated 16-way L2 keeps all of features.17's
  (probed: each thread misses its 1.23 MB of weights once over its 3-4 pixel tiles) and
  70 % of features.18's (2.86 MB a thread for 1.64 MB of weights): whole contiguous weights
  fill an L2's sets evenly, so an L2 keeps re-reads nearly up to its size, where L1's
  interleaved strided streams do not (KEPT_FROM was set on L1). (These two were 1.41x and
  1.66x while `pointwise_bytes` counted pixel_tiles - 1 re-reads where the walk charges
  each thread's first read: it counts pixel_tiles - threads at L3 now, its `threads`.)
  Starting `kept_share` at 0.9 of an L2 (a what-if, before that) brought features.17's in
  but put the Zen 3 VM's 7x7 projections out at batch 8 (0.69-0.78x: 0.6-1.2 MB of weights
  re-read per pixel tile on a 512 KiB L2): one start per level does not fit both. These two were 0.69x and 1.51x while the walk undercounted the fills of a
  block two stripes share (engine.residency._slices), which hid the first.
  (5) A fused block's scratch near `fused_block.SCRATCH_SHARE` of L2 (Zen 3 VM, batch 8:
  0.39 MB a worker in 512 KiB, blocks features.3, 12, 13, 14 at 0.39-0.62x, 10-14 vs 20-29
  MB). Probed, features.3's block: each thread's simulated L2 misses 2.9 MB of its
  0.23 MB of expanded rows (12.7 times), 0.52 MB of its 0.16 MB of depthwise rows, and
  the block's 0.04 MB of weights 20-24 times (each band runs all three convs); the walk
  finds them. A band touches 0.39 MB of scratch, 0.04 MB of weights and ~0.11 MB of rows,
  over the 0.52 MB L2; the walk streams the weights past the bands (1/45 a band) and keeps
  the rest just inside. Re-touching all the weights each band sends LRU into its cyclic
  worst case (every line missed), set-associative or not (the scratch is contiguous and
  fills the sets evenly): features.14's block at batch 1 9.2x, features.12-14 at batch 8
  1.47-1.57x, features.3 only 0.40 -> 0.46x. The simulation refills part, not all: its L2
  sees only the L1s' misses, so lines L1 keeps age in L2, an order the walk does not
  follow. The band height, not the model, is the question (bench/README).
  (6) Small DRAM figures on the Zen 3 VM near the 64 KiB filter (0.04-0.15 MB: blocks
  features.4-7, features.8's expand, depthwise features.15-17 at batch 8, 0.35-1.5x); which
  pass the filter moves from run to run with where fresh arrays land.
  What is the simulation's, checked: pycachesim's L2 and L3 read a line from below when
  they take a dirty write-back of a line they lost (write-allocate on the write-back
  path; hardware takes the whole line as is). Taking write-backs without that read moved
  the fused blocks' L3 bytes by under 3 % (features.3's block on the Zen 3 VM at batch 8:
  25.8 -> 25.1 MB) and no step in or out of 25 % but the small DRAM ones of (6): none of
  the gaps above is that.
- Re-reads. An operand that the kernel walks several times (weights once per pixel tile,
  inputs once per output-channel tile, input rows once per band) is charged once if the set
  that must stay resident between two passes fits in half the capacity of the level above
  the boundary (the other half is for everything else), and once per pass if it does not.
  The 1x1 conv's re-reads (its weights once per pixel tile when they are over half the
  level, a channel tile's weights once per micro-tile, a pixel tile's inputs once per block
  pair) are charged by their reuse distance instead (the bytes
  touched between two reads of a line: the reused set and what streams past it meanwhile,
  `kept_share`): all kept up to 60 % of the level, none from all of it on, linear between.
  A set-associative LRU level fills unevenly, so some sets overflow before the whole does;
  the 60 % is where the simulated L1s of this host (48 KiB) and the Zen 3 VM (32 KiB) start
  losing such re-reads (MobileNetV2's 7x7 expands at 48 KiB: a block triple's 30 KiB of
  weights plus a micro-tile's 6.5 KiB of input and output, 78 % of L1, keep two thirds of
  their re-reads; the half-L1 rule charged none and put them at 1.9-2.5x the simulation).
- Set conflicts. The levels are otherwise fully associative, but where a 1x1 conv's
  channel blocks lie a multiple of L1's way span apart (H x W a multiple of 64 pixels at
  16 lanes on a 48 KiB 12-way L1: 56x56, 112x112) all its streams of a micro-tile (input
  blocks, the pair's output blocks and residual) share the same sets; when they outnumber
  the ways, the input lines the kernel prefetched two micro-tiles ahead are gone before
  their use and the inputs cross L1 <- L2 twice (MobileNetV2's features.3 projection: 9 +
  2 + 2 streams in 12 ways, 0.53x the simulation before this rule, 0.85x after; how many
  more lines conflict depends on the buffers' offsets in the arena, which it does not see).
- Capacity. Private levels (L1, L2 here) count whole per thread; a shared level (L3) is
  divided among the threads sharing it. Sizes come from the machine description the plan
  is built for (`engine.machine.MachineInfo`): the effective capacity the ceilings probe
  measured where known (a VM may get only part of its L3), else the nominal one (sysfs).

The formulas for each kernel family live beside the kernel (`*_bytes` functions in
`engine/kernels/`); this module holds what they share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.kernels.layout import padded_channels

LEVELS = ("L1", "L2", "L3", "DRAM")
FLOAT32 = 4           # bytes per element
FIT_FRACTION = 0.5    # share of a level's capacity one reused operand may count on
KEPT_FROM = 0.6       # reuse distance (share of a level) up to which an LRU level keeps all of a re-read


@dataclass(frozen=True)
class CacheBudget:
    """What the model knows of the machine, for one thread: bytes of each cache level it can
    count on (the boundary below level X, counted in bytes[next level], is decided by X's
    capacity) and the lanes of a channel block (channels are padded to a multiple of it)."""

    L1: int
    L2: int
    L3: int
    lanes: int            # fp32 lanes per channel block (engine.kernels.layout.CB of that machine)
    l1_ways: int = 0      # L1's associativity (0: not known, no set conflicts modelled)

    @classmethod
    def for_machine(cls, machine, threads: int) -> "CacheBudget":
        """Budget per thread of `threads` on `machine` (an engine.machine.MachineInfo): each
        level's usable size (effective where measured, else nominal), split among the
        threads sharing one instance."""
        sizes = {}
        for name in ("L1", "L2", "L3"):
            level = machine.cache(name)
            sharing_threads = max(1, min(threads, level.shared_by_cores))
            sizes[name] = level.usable_bytes // sharing_threads
        return cls(**sizes, lanes=machine.simd_lanes_fp32, l1_ways=machine.cache("L1").ways or 0)

    def padded(self, channels: int) -> int:
        """`channels` rounded up to whole channel blocks of `lanes`."""
        return padded_channels(channels, self.lanes)

    def l1_streams_conflict(self, stride_bytes: int, streams: int) -> bool:
        """Whether `streams` address streams `stride_bytes` apart, walked together, all land
        in the same L1 sets (the stride a multiple of one way's span, L1 / ways) and outnumber
        its ways: then each of their lines is evicted before its next use (module docstring,
        "Set conflicts")."""
        if self.l1_ways <= 0 or streams <= self.l1_ways:
            return False
        return stride_bytes % (self.L1 // self.l1_ways) == 0

    def capacity_above(self, boundary: str) -> float:
        """Capacity deciding re-reads across `boundary` ("L2": L1's, "L3": L2's, "DRAM": L3's)."""
        return {"L2": self.L1, "L3": self.L2, "DRAM": self.L3}[boundary]


def fits(working_set_bytes: float, capacity_bytes: float) -> bool:
    """Whether a reused working set stays resident: at most FIT_FRACTION of the capacity."""
    return working_set_bytes <= FIT_FRACTION * capacity_bytes


def streamed(total_bytes: float, passes: float, reuse_set_bytes: float, capacity_bytes: float) -> float:
    """Traffic of an operand of `total_bytes` that the kernel walks `passes` times: once if
    the set that must stay resident between passes fits, else `passes` times."""
    return total_bytes if fits(reuse_set_bytes, capacity_bytes) else total_bytes * passes


def kept_share(reuse_distance_bytes: float, capacity_bytes: float) -> float:
    """Share of an operand's re-reads an LRU level still holds, given the reuse distance: the
    bytes touched between two reads of one line (the operand's reused set and what streams past
    it meanwhile). All up to KEPT_FROM of the capacity, none from the whole capacity on, linear
    between (a set-associative level fills unevenly: some sets overflow before the whole does).
    Module docstring, "Re-reads"."""
    low = KEPT_FROM * capacity_bytes
    if reuse_distance_bytes <= low:
        return 1.0
    if reuse_distance_bytes >= capacity_bytes:
        return 0.0
    return (capacity_bytes - reuse_distance_bytes) / (capacity_bytes - low)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def by_level(register_level: float, below: dict[str, float]) -> dict[str, int]:
    """Assemble {level: bytes} from the register-level traffic and the three boundaries."""
    out = {"L1": register_level, **below}
    return {level: int(round(out[level])) for level in LEVELS}


def credit_l3_residency(moved: dict[str, int], activation_bytes: int, weight_bytes: int,
                        weights_resident: bool, l3_bytes: int, fill_bytes: int = 0) -> dict[str, int]:
    """Apply the between-steps L3 credit (see the module docstring) to a step's DRAM bytes.

    activation_bytes: the step's compulsory activation traffic (inputs + outputs + residual),
    weight_bytes: its weights and biases; l3_bytes: the whole shared L3; fill_bytes: its
    output's line fills (charge_write_allocate), credited with the activations."""
    credit = 0
    if fits(activation_bytes, l3_bytes):
        credit += activation_bytes + fill_bytes
    if weights_resident:
        credit += weight_bytes
    out = dict(moved)
    out["DRAM"] = max(0, int(moved["DRAM"]) - credit)
    return out


def charge_write_allocate(moved: dict[str, int], output_bytes: int) -> dict[str, int]:
    """A step's bytes with its output's line fills added at every boundary it crosses (L2,
    L3, DRAM): the kernels' `*_bytes` count an output once, the write-back; a store miss
    reads the line first (module docstring, "Writes"). output_bytes: the buffer it writes."""
    out = dict(moved)
    for boundary in ("L2", "L3", "DRAM"):
        out[boundary] = int(moved[boundary]) + output_bytes
    return out


def credit_l2_residency(moved: dict[str, int], output_bytes: int, loaded_bytes: int, read_bytes: int,
                        filled_bytes: int, written_back_bytes: int, scratch_found_bytes: int = 0) -> dict[str, int]:
    """A step's bytes with its L3 traffic taken from the walk of the L2s (engine.residency;
    module docstring, "Between steps, L2 too"): the kernels' `*_bytes` charge its inputs and
    weights once (loaded_bytes) and its output's write-back, `charge_write_allocate` the
    output's fill (output_bytes each); the walk replaces them by what the threads read from
    L3 (read_bytes), the output's lines they filled (filled_bytes) and the dirty lines the
    step evicted (written_back_bytes); a fused block's scratch that the walk follows drops
    the first touch `fused_block_bytes` charges (scratch_found_bytes: StepResidency's
    scratch_charged; its fills come in read_bytes, its write-backs in later steps'). Re-reads
    inside the step stay charged. Never below the DRAM bytes."""
    out = dict(moved)
    l3 = (int(moved["L3"]) - loaded_bytes - 2 * output_bytes + read_bytes + filled_bytes + written_back_bytes
          - scratch_found_bytes)
    out["L3"] = max(int(moved["DRAM"]), l3)
    return out


def credit_l3_walk(moved: dict[str, int], output_bytes: int, loaded_bytes: int, read_bytes: int,
                   written_back_bytes: int) -> dict[str, int]:
    """A step's bytes with its DRAM traffic taken from the walk's shared L3
    (engine.residency; module docstring, "Between steps, L3"): the kernels' `*_bytes` charge
    its inputs and weights once (loaded_bytes) and its output's write-back,
    `charge_write_allocate` the output's fill (output_bytes each); the walk replaces them by
    what its L2s' misses did not find in L3 (read_bytes: inputs, weights, output fills and
    scratch) and the dirty lines L3 evicted meanwhile (written_back_bytes). Re-reads inside
    the step stay charged."""
    out = dict(moved)
    out["DRAM"] = max(0, int(moved["DRAM"]) - loaded_bytes - 2 * output_bytes + read_bytes + written_back_bytes)
    return out


def arithmetic_intensity(flops: float, bytes_moved: float) -> float:
    """FLOP per byte; inf when nothing moves."""
    return flops / bytes_moved if bytes_moved > 0 else math.inf
