"""The fusion policy: which inverted-residual blocks "auto" fuses, and the band height a
fused block runs with (engine.kernels.fused_block is the kernel). Pure functions of the
block's shapes and the machine facts in a RunConfig (caches, lanes, threads), so every
described machine can be tested on any host (tests/test_fusion_policy.py) and shown
(bench/fusion_policy.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.config import RunConfig
from engine.kernels import fused_block, fused_se_block
from engine.kernels.layout import CB
from engine.traffic import fits

# Once a block's intermediates would go to DRAM unfused (batch 64), fusion keeps them in
# cache; the ring of expanded rows (engine.kernels.fused_block) keeps the expand recompute
# near 1.0x, and blocks whose bands would recompute more than this are left unfused anyway.
FUSE_MAX_RECOMPUTE_FROM_DRAM = 1.5


def block_layers(block) -> tuple:
    """A fused block's (expand or None, depthwise, project, squeeze-excite or None), its
    layers found by op, whatever their order in `block` (engine.passes' tuples, a step's
    members in execution order): the depthwise conv, the SqueezeExcite, the 1x1 conv whose
    output the depthwise reads (the expand) and the other 1x1 conv (the project)."""
    layers = [layer for layer in block if layer is not None]
    depthwise = next(layer for layer in layers if layer.conv_kind == "depthwise")
    se = next((layer for layer in layers if layer.op == "SqueezeExcite"), None)
    expand = next((layer for layer in layers if layer.conv_kind == "pointwise"
                   and layer.output == depthwise.inputs[0]), None)
    project = next(layer for layer in layers if layer.conv_kind == "pointwise" and layer is not expand)
    return expand, depthwise, project, se


@dataclass(frozen=True)
class BlockScratch:
    """The per-worker scratch one fused block's kernel uses, float32 elements per worker
    (channels padded to blocks of the kernels' lanes)."""

    expand: int                  # expanded rows: a band's (fused_block), the ring (fused_se_block); 0 without
                                 # an expand conv
    depthwise: int               # depthwise output: a band's rows (fused_block), one image's (fused_se_block)
    squeeze_excite: bool         # run by engine.kernels.fused_se_block (else engine.kernels.fused_block)


def block_scratch_use(block, block_rows: int, lanes: int = CB) -> BlockScratch:
    """What of the per-worker scratch `block` (its layers in any order: block_layers) uses
    at a band of `block_rows` output rows: its kernel's scratch_floats, the expanded rows
    only where it has an expand conv (the kernels then read the block input instead)."""
    expand, depthwise, _, se = block_layers(block)
    hidden, out_h, out_w = depthwise.output_shape
    width, stride = depthwise.input_shape[2], depthwise.attrs["strides"][0]
    rows = min(block_rows, out_h)
    if se is not None:
        ring, image = fused_se_block.scratch_floats(hidden, width, out_h, out_w, rows, stride,
                                                    depthwise.attrs["kernel_shape"][0], lanes)
        return BlockScratch(ring if expand is not None else 0, image, True)
    expanded, depthwise_rows = fused_block.scratch_floats(hidden, width, out_w, rows, stride, lanes)
    return BlockScratch(expanded if expand is not None else 0, depthwise_rows, False)


def intermediates_level(block, config: RunConfig, batch: int) -> str:
    """Where an unfused block's intermediates (its expanded tensor, unless it has no expand,
    and its depthwise output; whole batch, channels padded) live between its steps: "L2"
    when they stay in the L2 caches of the run's threads together, "L3" when they stay in
    L3, else "DRAM" (engine.traffic.fits; usable sizes of `config.machine`)."""
    expand, depthwise, _, _ = block_layers(block)
    hidden, out_h, out_w = depthwise.output_shape
    _, height, width = depthwise.input_shape
    budget = config.budget
    padded = budget.padded(hidden)
    intermediates = 4 * batch * padded * (out_h * out_w + (height * width if expand is not None else 0))
    if fits(intermediates, budget.L2 * config.threads):
        return "L2"
    if fits(intermediates, config.machine.cache("L3").usable_bytes):
        return "L3"
    return "DRAM"


def fusion_wins(block, config: RunConfig, batch: int) -> bool:
    """The "auto" fusion policy: whether `block` is expected to run faster fused, from the
    machine facts in `config` (caches, lanes, threads) and the block's shapes.

    Fusing keeps the block's intermediates in a per-thread scratch that stays in L2; what
    it saves is their round trips through the level they would live in unfused
    (`intermediates_level`), what it costs is the band overheads and recomputed halo rows.
    - DRAM: the round trips are the slowest traffic of the block, so fuse (unless the bands
      recompute more than FUSE_MAX_RECOMPUTE_FROM_DRAM).
    - L2: nothing to save, so never fuse.
    - L3: fuse only the blocks whose unfused steps are bound by that traffic rather than by
      the 1x1 convs' FLOPs: a stride-2 block (its depthwise reads four times what it
      writes) or one without an expand conv (the depthwise reads the block input itself).
      A stride-1 block with an expand does 2 x hidden x (Cin + Cout) FLOPs per pixel
      against ~4 x 4 bytes of intermediates at L3: compute bound either way, and the
      fused block's smaller parallel regions may cost more than the L3 trips
      (bench/fusion.py; bench/README.md has the measurements per machine).
    """
    expand, depthwise, _, se = block_layers(block)
    if se is not None:
        return se_fusion_wins(block, config, batch)
    level = intermediates_level(block, config, batch)
    if level == "L2":
        return False
    stride = depthwise.attrs["strides"][0]
    if level == "DRAM":
        if expand is None:
            return True
        _, height, _ = depthwise.input_shape
        out_h = depthwise.output_shape[1]
        band = block_rows_for(block, config, batch)
        recompute = fused_block.expand_recompute_factor(height, out_h, band, stride, config.threads, batch)
        return recompute <= FUSE_MAX_RECOMPUTE_FROM_DRAM
    return stride == 2 or expand is None


def block_rows_for(block, config: RunConfig, batch: int) -> int:
    """The band height a fused block runs with: its Tiles.block_rows (the tiles of the block's
    name, its project layer's, in config.tiles), or 0 -> the cost model's
    (fused_block.auto_block_rows for one core's usable L2 on `config.machine`)."""
    _, depthwise, project, se = block_layers(block)
    out_h = depthwise.output_shape[1]
    block_rows = config.tiles.tiles_for(project.name).block_rows
    if block_rows:
        return min(block_rows, out_h)
    budget = config.budget
    if se is not None:
        return fused_se_block.auto_block_rows(depthwise.output_shape[0], depthwise.input_shape[2], out_h,
                                              depthwise.output_shape[2], depthwise.attrs["strides"][0],
                                              depthwise.attrs["kernel_shape"][0], config.threads, budget.L2, batch,
                                              budget.lanes)
    return fused_block.auto_block_rows(depthwise.output_shape[0], depthwise.input_shape[1], depthwise.input_shape[2],
                                      out_h, depthwise.output_shape[2], depthwise.attrs["strides"][0], config.threads,
                                      budget.L2, batch, budget.lanes)


def block_scratch(blocks, config: RunConfig, batch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """One (scratch_expand, scratch_depthwise) pair of per-thread buffers (threads, floats),
    big enough for every block in `blocks` at its band height (block_scratch_use: for an SE
    block the ring and one image's depthwise output); None without blocks."""
    if not blocks:
        return None
    uses = [block_scratch_use(block, block_rows_for(block, config, batch)) for block in blocks]
    return (fused_block.per_worker_zeros(config.threads, max([1] + [use.expand for use in uses])),
            fused_block.per_worker_zeros(config.threads, max([1] + [use.depthwise for use in uses])))


# The "auto" policy for squeeze-and-excitation blocks, from A/B measurements of every SE block
# of MobileNetV3-Large and EfficientNet-B0 at batch 1, 16 and 64 on 2 threads (bench/README.md,
# "Fused squeeze-and-excitation blocks"). The fused block works image by image (its depthwise
# output stays in the core's L2), so each image streams the block's weights once more: it wins
# where an image's intermediates outweigh the weights by far (the 56x56 and 112x112 blocks,
# 1.1-1.5x at batch 64), not on the 14x14 and 7x7 ones with 0.5-1 M weights (0.82-1.0x). At
# batch 1 (an image's bands split over the threads) it lost on every SE block (0.72-0.89x).
SE_FUSE_MIN_IMAGES_PER_THREAD = 4      # measured: 1 loses, 8 per thread wins; 4 interpolated
SE_FUSE_MIN_RATIO = {1: 50.0, 2: 4.0}  # per stride: intermediates per image / weights, both in floats


def se_intermediates_per_weight(block) -> float:
    """An SE block's (expand, depthwise, project, se) intermediates per image (its expanded
    tensor, unless it has no expand, and its depthwise output; floats) over its weights
    (expand, depthwise, the SE's two 1x1s, project; floats)."""
    expand, depthwise, project, se = block_layers(block)
    hidden, out_h, out_w = depthwise.output_shape
    _, height, width = depthwise.input_shape
    kernel = depthwise.attrs["kernel_shape"][0]
    intermediates = hidden * (out_h * out_w + (height * width if expand is not None else 0))
    weights = (hidden * expand.input_shape[0] if expand is not None else 0) + hidden * kernel * kernel \
        + 2 * se.attrs["squeezed"] * hidden + project.output_shape[0] * hidden
    return intermediates / weights


def se_fusion_wins(block, config: RunConfig, batch: int) -> bool:
    """The "auto" policy for a squeeze-and-excitation block (expand, depthwise, project, se):
    fuse when every thread has at least SE_FUSE_MIN_IMAGES_PER_THREAD images, the block's
    unfused intermediates would not stay in L2 (`intermediates_level`), and its intermediates
    per image outweigh its weights by SE_FUSE_MIN_RATIO for its stride (constants above)."""
    if batch < SE_FUSE_MIN_IMAGES_PER_THREAD * config.threads or intermediates_level(block, config, batch) == "L2":
        return False
    stride = block_layers(block)[1].attrs["strides"][0]
    return se_intermediates_per_weight(block) >= SE_FUSE_MIN_RATIO[stride]
