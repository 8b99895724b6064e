"""The bytes-moved model on hand-computed cases (engine/traffic.py states the model)."""
from __future__ import annotations

import numpy as np
import pytest

import engine.residency
from engine.kernels import depthwise, fused_block, linear, pointwise
from engine.kernels.layout import CB
from engine.traffic import CacheBudget, charge_write_allocate, credit_l2_residency, fits, kept_share, streamed
from machines import ZEN3, ZEN3_VM_EFFECTIVE, with_lanes

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

KIB, MIB = 1024, 1024 * 1024
# Fixed budgets so the numbers below do not depend on the machine: 32 KiB L1, 512 KiB L2,
# 32 MiB L3, with the channel blocks of AVX2 (8 lanes) or AVX-512 (16 lanes).
BUDGETS = {lanes: CacheBudget(L1=32 * KIB, L2=512 * KIB, L3=32 * MIB, lanes=lanes) for lanes in (8, 16)}
BUDGET = BUDGETS[8]


def test_fits_means_half_the_capacity():
    assert fits(16 * KIB, 32 * KIB) and not fits(16 * KIB + 4, 32 * KIB)
    assert streamed(100, passes=7, reuse_set_bytes=10, capacity_bytes=20) == 100
    assert streamed(100, passes=7, reuse_set_bytes=11, capacity_bytes=20) == 700


@pytest.mark.parametrize("lanes", [8, 16])
def test_pointwise_whose_weights_fit_l2_moves_compulsory_bytes_at_l3_and_dram(lanes):
    # 96 -> 24 channels at 56x56, batch 1 (MobileNetV2 block 2's projection); 24 channels
    # are 3 blocks of 8 lanes, or 2 blocks of 16 (32 channels, 8 of them padding)
    cout = 24 if lanes == 8 else 32
    x = 56 * 56 * 96 * 4                       # 1,204,224 B input
    w = cout * (96 + 1) * 4                    # weights + bias: fit anywhere
    y = 56 * 56 * cout * 4                     # output
    moved = pointwise.pointwise_bytes(1, 96, 24, 56, 56, pointwise_pixels=64, pointwise_channels=64,
                                      has_residual=False, budget=BUDGETS[lanes])
    assert moved["L3"] == moved["DRAM"] == x + w + y
    # across L1 (16 KiB usable): a 64-pixel tile of inputs (24 KiB) does not stay, so the
    # inputs are re-read once per pair of output blocks (8 lanes: 3 blocks, 2 pairs; 16: 1 pair)
    pairs = 2 if lanes == 8 else 1
    assert moved["L2"] == x * pairs + w + y
    assert moved["L1"] >= moved["L2"]


def test_pointwise_whose_weights_do_not_fit_l2_rereads_them_per_pixel_tile():
    # 960 -> 320 channels at 7x7, batch 8 (MobileNetV2 block 17's projection)
    pixels = 8 * 7 * 7                          # 392
    x = pixels * 960 * 4
    w = 320 * (960 + 1) * 4                     # 1,230,080 B: more than half of L2
    y = pixels * 320 * 4
    moved = pointwise.pointwise_bytes(8, 960, 320, 7, 7, pointwise_pixels=64, pointwise_channels=64,
                                      has_residual=False, budget=BUDGET)
    # across L2 (512 KiB): a channel tile's weights (64 x 960 x 4 = 245,760 B) and a micro-tile's 6 pixels
    # of inputs and outputs (6 x (3,840 + 64) B) are 269,184 B, under 60 % of L2: once per pixel tile;
    # a pixel tile's inputs and outputs (64 x 3,904 B) and a pair's weights are 311,296 B, just
    # under 60 % (314,572.8 B), so the inputs cross once
    pixel_tiles = -(-pixels // 64)              # 7
    assert 64 * (960 * 4 + 16 * 4) + 16 * 960 * 4 == 311_296 < 0.6 * 512 * KIB
    assert moved["L3"] == x + w * pixel_tiles + y
    assert moved["DRAM"] == x + w + y            # everything fits half of L3
    # a wide channel tile: its slice (320 x 960 x 4 = 1,228,800 B) and a micro-tile's 6 x 3,904 B
    # are more than L2, so its weights are re-read by every micro-tile of 6 pixels
    wide = pointwise.pointwise_bytes(8, 960, 320, 7, 7, pointwise_pixels=64, pointwise_channels=320,
                                     has_residual=False, budget=BUDGET)
    # micro-tiles as the kernel walks them, each image's part of a tile apart: tiles start at
    # 0, 54, 108, 168, 222, 276, 336 (56 t on multiples of 6), images at multiples of 49: parts
    # of 49, 5, 44, 10, 39, 21, 28, 26, 23, 31, 18, 42, 7, 49 pixels, 72 micro-tiles of 6 (66
    # if the tiles ignored the images)
    assert wide["L3"] == x + w * 72 + y
    assert wide["L3"] > moved["L3"]


def test_kept_share_falls_from_60_percent_of_the_level_to_all_of_it():
    assert kept_share(0.6 * 48 * KIB, 48 * KIB) == 1.0
    assert kept_share(48 * KIB, 48 * KIB) == 0.0 == kept_share(64 * KIB, 48 * KIB)
    assert kept_share(0.8 * 48 * KIB, 48 * KIB) == pytest.approx(0.5)
    assert kept_share(37_376, 49_152) == pytest.approx(11_776 / 19_660.8)      # 115 / 192


def test_pointwise_keeps_a_share_of_its_weight_rereads_when_their_reuse_distance_nears_l1():
    # 160 -> 960 channels at 7x7, batch 1 (MobileNetV2 block 15's expand), 16 lanes, a 48 KiB L1:
    # micro-tiles of 8 pixels x 3 blocks (48 channels), 20 block triples, 7 micro-tiles, 1 pixel tile
    budget = CacheBudget(L1=48 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16)
    x = 49 * 160 * 4                            # 31,360 B
    w = 960 * 161 * 4                           # 618,240 B
    y = 49 * 960 * 4                            # 188,160 B
    moved = pointwise.pointwise_bytes(1, 160, 960, 7, 7, 64, 48, False, budget)
    # weights' reuse distance: the channel tile's (one triple's) weights (48 x 160 x 4 = 30,720 B)
    # + 8 pixels x (640 B of inputs + 192 B of outputs) = 37,376 B, 76 % of L1: 115/192 of the 6 re-reads kept, 77/192 lost
    weights = w * (1 + 6 * 77 / 192)            # 2,105,880 B
    # inputs' reuse distance: 49 x 832 B + 30,720 B = 71,488 B > L1: re-read by every triple
    inputs = x * 20
    assert moved["L2"] == round(weights + inputs + y) == 2_921_240
    # with the half-of-L1 rule these weights were re-read by every micro-tile (7 x 618,240 B)
    assert moved["L2"] < w * 7 + inputs + y


@pytest.mark.parametrize("lanes", [8, 16])
def test_residual_is_read_once_more(lanes):
    plain = pointwise.pointwise_bytes(1, 24, 24, 8, 8, 64, 64, False, BUDGETS[lanes])
    with_residual = pointwise.pointwise_bytes(1, 24, 24, 8, 8, 64, 64, True, BUDGETS[lanes])
    padded = -(-24 // lanes) * lanes           # the residual is read with its padded channels
    assert with_residual["DRAM"] - plain["DRAM"] == 8 * 8 * padded * 4


def test_depthwise_rereads_halo_rows_when_the_plane_does_not_fit():
    # 144 channels at 56x56 stride 1: bands walk all channel blocks before the next band, so
    # the input is read once only where the whole image (1.8 MB) fits; above L1 and L2
    # only a band's rows fit and each band of 4 rows reads 6 input rows (the halo twice)
    tiny = CacheBudget(L1=2 * 56 * 3 * 8 * 4 + 64, L2=512 * KIB, L3=32 * MIB, lanes=8)   # 3 rows fit, the image not
    moved = depthwise.depthwise_bytes(1, 144, 56, 56, 56, 56, 3, 3, 1, depthwise_rows=4, budget=tiny)
    x = 144 * 56 * 56 * 4
    y = x
    w = 144 * 10 * 4
    rows_read = 5 + 6 * 12 + 5                  # first and last band touch the image edge
    assert moved["L2"] == round(x * rows_read / 56) + w + y
    assert moved["L3"] == round(x * rows_read / 56) + w + y     # not even in L2
    assert moved["DRAM"] == x + w + y                           # the image fits L3


def test_linear_at_batch_one_reads_each_weight_once():
    moved = linear.linear_bytes(1, 1280, 1000, BUDGET)
    tile = linear.TILE // CB * 8                # output features per work item at 8 lanes
    assert moved["DRAM"] == -(-1000 // tile) * tile * 1281 * 4 + 1280 * 4 + 1000 * 4


def test_fusion_keeps_the_expanded_tensor_off_the_outer_levels():
    # MobileNetV2 block 3: 24 -> 144 -> 24 at 56x56, stride 1, residual; bands of 2 rows,
    # whose scratch (194 KB) fits the half of L2 the model counts as resident
    band = 2
    fused = fused_block.fused_block_bytes(1, 24, 144, 24, 56, 56, 1, block_rows=band, has_expand=True,
                                          has_residual=True, workers=2, budget=BUDGET)
    unfused = {level: pointwise.pointwise_bytes(1, 24, 144, 56, 56, 64, 64, False, BUDGET)[level]
               + depthwise.depthwise_bytes(1, 144, 56, 56, 56, 56, 3, 3, 1, 16, BUDGET)[level]
               + pointwise.pointwise_bytes(1, 144, 24, 56, 56, 64, 64, True, BUDGET)[level]
               for level in ("L3", "DRAM")}
    hidden = 144 * 56 * 56 * 4
    for level in ("L3", "DRAM"):
        assert fused[level] < unfused[level] - 3 * hidden   # the expanded and depthwise tensors stay inside


@pytest.mark.parametrize("threads", [1, 2])
def test_cache_budget_divides_shared_levels_among_threads(threads):
    budget = CacheBudget.for_machine(ZEN3, threads)
    assert budget.L1 == 32 * KIB and budget.L2 == 512 * KIB and budget.L3 == 32 * MIB // threads
    assert budget.lanes == 8 and budget.padded(9) == 16


def test_cache_budget_counts_on_the_effective_size_where_it_was_measured():
    vm = ZEN3.with_effective_caches({"L3": 10 * MIB})
    assert CacheBudget.for_machine(vm, 2).L3 == 5 * MIB
    assert CacheBudget.for_machine(vm, 2).L2 == 512 * KIB             # not measured: nominal


def test_a_band_whose_scratch_does_not_fit_l2_spills_its_intermediates():
    fits_band = fused_block.fused_block_bytes(1, 24, 144, 24, 56, 56, 1, 2, True, True, 2, BUDGET)
    spilling = fused_block.fused_block_bytes(1, 24, 144, 24, 56, 56, 1, 56, True, True, 2, BUDGET)
    assert spilling["L3"] > fits_band["L3"] + 2 * 144 * 56 * 56 * 4


def test_l3_residency_credits_activations_and_resident_weights_at_dram_only():
    from engine.traffic import credit_l3_residency

    moved = {"L1": 900, "L2": 700, "L3": 500, "DRAM": 500}
    both = credit_l3_residency(moved, activation_bytes=300, weight_bytes=200, weights_resident=True, l3_bytes=1000)
    assert both == {"L1": 900, "L2": 700, "L3": 500, "DRAM": 0}
    cold_weights = credit_l3_residency(moved, 300, 200, weights_resident=False, l3_bytes=1000)
    assert cold_weights["DRAM"] == 200
    too_big = credit_l3_residency(moved, 600, 200, weights_resident=False, l3_bytes=1000)
    assert too_big["DRAM"] == 500


def test_batch_64_moves_activations_through_dram_and_batch_1_does_not(mobilenet):
    zen3 = with_lanes(ZEN3, CB)                       # a 32 MiB L3, this process's channel blocks
    dram = {batch: sum(s.bytes["DRAM"] for s in mobilenet.plan(batch, fuse_blocks=False, machine=zen3).steps)
            for batch in (1, 64)}
    weights = mobilenet.weights.nbytes
    assert dram[1] <= weights * 1.05                 # at most the weights at batch 1
    assert dram[64] > 64 * 10 * 2 ** 20               # activations of 64 images do not fit L3
    fused = sum(s.bytes["DRAM"] for s in mobilenet.plan(64, fuse_blocks=True, machine=zen3).steps)
    assert fused < 0.85 * dram[64]                    # fused blocks keep their expanded tensors in cache


def test_weights_a_1x1_conv_prefetches_cross_dram_in_that_conv_not_in_the_step_using_them(mobilenet):
    """On a machine whose L3 does not hold the weights (the Zen 3 VM: 14 MB of weights
    stream through its 10 MiB effective L3 every run), the last 1x1 conv prefetches part of the
    classifier's 5 MB of weights (`ahead`): the lines its access trace prefetches cross DRAM
    in the conv, the rest in the classifier, and the network's DRAM total is unchanged by
    where they are charged."""
    from engine.plan import _prefetched_bytes

    plan = mobilenet.plan(1, threads=1, fuse_blocks=False, machine=with_lanes(ZEN3_VM_EFFECTIVE, CB))
    classifier, before = plan.steps[-1], plan.steps[-3]
    assert classifier.op == "linear" and before.op == "expand" and before.ahead is not None
    classifier_weights = mobilenet.weights.of([classifier.name])
    prefetched = _prefetched_bytes(before)
    assert 0 <= prefetched <= mobilenet.weights.by_layer[classifier.name][0].nbytes
    if CB == 8:
        assert prefetched > 0.2 * classifier_weights          # traced: 31 % at 8 lanes
    # (and the dirty lines L3 evicts while it streams them: engine.residency's L3)
    assert classifier.bytes["DRAM"] >= 0.99 * (classifier_weights - prefetched)
    assert before.bytes["DRAM"] >= prefetched
    weighted = sum(a.nbytes for pair in mobilenet.weights.by_layer.values() for a in pair)
    assert sum(step.bytes["DRAM"] for step in plan.steps) >= weighted


def test_a_1x1_conv_with_many_pixel_tiles_prefetches_nothing_so_nothing_is_charged_to_it(mobilenet):
    """At batch 8 the last 1x1 conv has 392 pixels, 7 tiles of 64: more than the kernel
    prefetches with (pointwise.prefetches_weights), so the classifier's weights stay its own."""
    from engine.kernels import pointwise

    plan = mobilenet.plan(8, threads=1, fuse_blocks=False, machine=with_lanes(ZEN3, CB))
    classifier, before = plan.steps[-1], plan.steps[-3]
    assert not pointwise.prefetches_weights(8 * 7 * 7, before.tiles.pointwise_pixels)
    classifier_weights = sum(a.nbytes for a in mobilenet.weights.by_layer[classifier.name])
    assert classifier.bytes["DRAM"] >= classifier_weights


def test_an_output_crosses_each_boundary_twice_a_line_fill_and_a_write_back():
    from engine.traffic import charge_write_allocate

    moved = {"L1": 900, "L2": 700, "L3": 500, "DRAM": 500}
    assert charge_write_allocate(moved, output_bytes=100) == {"L1": 900, "L2": 800, "L3": 600, "DRAM": 600}


def test_the_walk_of_the_l2s_replaces_the_compulsory_l3_traffic():
    from engine.traffic import credit_l2_residency

    # kernel: 300 loaded + 100 written back; write-allocate: +100 fill -> 500 at L3
    moved = {"L1": 900, "L2": 700, "L3": 500, "DRAM": 100}
    cold = credit_l2_residency(moved, output_bytes=100, loaded_bytes=300, read_bytes=300, filled_bytes=100,
                               written_back_bytes=100)
    assert cold["L3"] == 500                                                  # nothing found: as charged
    warm = credit_l2_residency(moved, 100, loaded_bytes=300, read_bytes=50, filled_bytes=0, written_back_bytes=0)
    assert warm["L3"] == 100 and warm["L2"] == 700                           # never below DRAM; L2 untouched


def test_plan_takes_the_l3_traffic_of_a_step_whose_input_is_in_the_l2s_from_the_walk(mobilenet, monkeypatch):
    """At batch 1 on Zen 3 (two 512 KiB L2s) a 14x14 depthwise reads its 576-channel input
    (452 KB) partly from the L2s its expand conv just wrote (the threads split it by
    channels, the expand by pixels: half of each thread's share is in the other's L2): at
    the L3 boundary the plan
    charges the kernel's model with the compulsory traffic (input, weights, the output's
    fill and write-back) replaced by what the walk of the L2s (engine.residency) read,
    filled and wrote back."""
    import engine.plan

    walked = {}

    def spy(steps, *arguments, **options):
        walked.update(zip(map(id, steps), engine.residency.plan_residency(steps, *arguments, **options)))
        return [walked[id(step)] for step in steps]

    monkeypatch.setattr(engine.plan, "plan_residency", spy)
    machine = with_lanes(ZEN3, CB)
    plan = mobilenet.plan(1, threads=2, fuse_blocks=False, machine=machine)
    index, dw = next((i, s) for i, s in enumerate(plan.steps)
                     if s.op == "depthwise" and s.input_shape[2] == 14 and s.input_shape[1] * CB >= 576)
    assert plan.steps[index - 1].output in dw.inputs
    (_, h, w), (channels, ho, wo) = dw.layer.input_shape, dw.layer.output_shape
    kernel = depthwise.depthwise_bytes(1, channels, h, w, ho, wo, 3, 3, 1, dw.tiles.depthwise_rows,
                                       plan.config.budget)
    input_bytes, output_bytes = 4 * int(np.prod(dw.input_shape)), 4 * int(np.prod(dw.output_shape))
    walk = walked[id(dw)]
    assert walk.loaded >= input_bytes and walk.read < walk.loaded        # found part of it in the L2s
    assert dw.bytes["L2"] == kernel["L2"] + output_bytes
    # the kernel's L3: input, weights (walk.loaded) and the output's write-back
    assert dw.bytes["L3"] == max(dw.bytes["DRAM"], kernel["L3"] - walk.loaded - output_bytes + walk.read
                                 + walk.filled + walk.written_back)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fused_blocks_scratch_that_stays_in_l2_still_arrives_once_per_run_and_is_written_back(workers):
    # a 96 -> 576 -> 96 block at 7x7, stride 1, residual, one band of 7 rows: one work
    # item, so one worker brings its scratch in from L3 (a line fill on the first write)
    # and writes it back, whatever the worker count
    lanes = 8
    moved = fused_block.fused_block_bytes(1, 96, 576, 96, 7, 7, 1, 7, True, True, workers, BUDGET)
    expand, depthwise_rows = fused_block.scratch_floats(576, 7, 7, 7, 1, lanes)
    scratch = 4 * (expand + depthwise_rows)
    assert 32 * KIB < scratch <= fused_block.SCRATCH_SHARE * 512 * KIB       # not in L1, in L2
    x, y = 96 * 49 * 4, 2 * 96 * 49 * 4                   # input; output and residual
    weights = (576 * 97 + 576 * 10 + 96 * 577) * 4
    assert moved["L3"] == x + y + weights + 2 * scratch
    assert moved["DRAM"] == x + y + weights                # the scratch stays in L3 between runs


def test_a_fused_block_across_l2_charges_its_1x1_stages_as_1x1_convs_over_one_band():
    # the same block: the project reads the band's depthwise output (49 pixels x 960
    # channels, 188 KB: not in L1) once per pair of its 20 output blocks at 8 lanes
    moved = fused_block.fused_block_bytes(1, 160, 960, 160, 7, 7, 1, 7, True, True, 1, BUDGET)
    rows, blocks = pointwise.MICRO_TILE[8]
    depthwise_output = 49 * 960 * 4
    project = pointwise.pointwise_bytes(1, 960, 160, 1, 49, 49, blocks * 8, True, BUDGET)["L2"]
    pairs = -(-160 // 8 // blocks)
    assert project >= depthwise_output * pairs
    expand = pointwise.pointwise_bytes(1, 160, 960, 1, 49, 49, blocks * 8, False, BUDGET)["L2"]
    expand_rows = fused_block.scratch_floats(960, 7, 7, 7, 1, 8)[0] * 4
    assert moved["L2"] == expand + 2 * expand_rows + 2 * depthwise_output + 960 * 10 * 4 + project


def test_a_1x1_whose_streams_outnumber_l1s_ways_in_the_same_sets_reads_its_inputs_twice_across_l1():
    # 144 -> 24 channels at 56x56 with a residual, batch 1 (MobileNetV2 block 3's projection),
    # 16 lanes, a 48 KiB 12-way L1 (4 KiB per way): the channel blocks are 56 x 56 x 64 B =
    # 200,704 B = 49 x 4 KiB apart, so a micro-tile's 9 input, 2 output and 2 residual streams
    # share L1's sets, 13 lines for 12 ways
    assert 56 * 56 * 16 * 4 == 49 * 4096
    plain = CacheBudget(L1=48 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16)
    ways = CacheBudget(L1=48 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16, l1_ways=12)
    x = 56 * 56 * 144 * 4                       # 1,806,336 B
    before = pointwise.pointwise_bytes(1, 144, 24, 56, 56, 64, 48, True, plain)
    after = pointwise.pointwise_bytes(1, 144, 24, 56, 56, 64, 48, True, ways)
    assert after["L2"] == before["L2"] + x
    assert {level: after[level] for level in ("L1", "L3", "DRAM")} == {level: before[level] for level in ("L1", "L3", "DRAM")}
    # 16 ways hold the 13 streams; at 28x28 (50,176 B apart, not a multiple of 4 KiB) they spread over the sets
    assert pointwise.pointwise_bytes(1, 144, 24, 56, 56, 64, 48, True,
                                     CacheBudget(L1=64 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16, l1_ways=16)) == \
        pointwise.pointwise_bytes(1, 144, 24, 56, 56, 64, 48, True, CacheBudget(L1=64 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16))
    assert pointwise.pointwise_bytes(1, 144, 24, 28, 28, 64, 48, True, ways) == \
        pointwise.pointwise_bytes(1, 144, 24, 28, 28, 64, 48, True, plain)


def test_pointwise_weights_over_half_of_l2_keep_a_share_across_pixel_tiles():
    # 960 -> 320 channels at 7x7, batch 8 (MobileNetV2 block 17's projection), 16 lanes, 2 MiB L2:
    # 392 pixels in 7 tiles of 64, micro-tiles of 8 pixels x 3 blocks
    budget = CacheBudget(L1=48 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16)
    x = 392 * 960 * 4                           # 1,505,280 B
    w = 320 * 961 * 4                           # 1,230,080 B: more than half of L2
    y = 392 * 320 * 4                           # 501,760 B
    moved = pointwise.pointwise_bytes(8, 960, 320, 7, 7, 64, 48, False, budget)
    # between two pixel tiles: all the weights and a tile's inputs and outputs, 1,230,080 +
    # 64 x (960 + 320) x 4 = 1,557,760 B, 74 % of L2: (1,557,760 - 0.6 x 2 MiB) / (0.4 x 2 MiB)
    # = 5849/16384 of the 6 re-reads lost; inside a tile a triple's slice (184,320 B + 8 x 4,032 B)
    # and a tile's inputs (64 x 4,032 B + 184,320 B) stay
    assert moved["L3"] == round(x + w * (1 + 6 * 5849 / 16384) + y) == 5_871_912


def test_pointwise_registers_reread_weights_once_per_micro_tile_of_each_images_part():
    # 960 -> 160 with a residual at 7x7, batch 8 (MobileNetV2 block 16's projection), 16 lanes:
    # tiles of 56 pixels start at 0, 56, ..., 336 and images at multiples of 49, so the kernel walks
    # parts of 49, 7, 42, 14, 35, 21, 28, 28, 21, 35, 14, 42, 7, 49 pixels: 56 micro-tiles of 8, not 49
    budget = CacheBudget(L1=48 * KIB, L2=2 * MIB, L3=32 * MIB, lanes=16)
    moved = pointwise.pointwise_bytes(8, 960, 160, 7, 7, 64, 48, True, budget)
    x = 392 * 960 * 4                           # read once per block triple: 10 blocks, 4 triples
    w = 160 * 961 * 4
    y = 392 * 160 * 4 * 2                       # output and residual
    assert moved["L1"] == x * 4 + w * 56 + y == 40_965_120
    # across L1 <- L2 a triple's weights (184,320 B) are more than L1: re-read by each of the 56
    # micro-tiles; the inputs by each triple (a tile's inputs and a triple's weights are more too)
    assert moved["L2"] == x * 4 + w * 56 + y



def test_pointwise_over_two_threads_rereads_its_weights_per_further_pixel_tile_of_each_thread():
    # 960 -> 320 channels at 7x7, batch 8 (MobileNetV2 block 17's projection), 8 lanes, a 512 KiB
    # L2 a thread: 392 pixels in 7 tiles of 64, 4 and 3 a thread; between two tiles all the weights
    # (1,230,080 B, more than L2) are touched: none of the re-reads stays
    x = 392 * 960 * 4
    w = 320 * 961 * 4
    y = 392 * 320 * 4
    one = pointwise.pointwise_bytes(8, 960, 320, 7, 7, 64, 64, False, BUDGET)
    two = pointwise.pointwise_bytes(8, 960, 320, 7, 7, 64, 64, False, BUDGET, threads=2)
    # each thread reads all the weights once, then once per further tile of its own: 2 + (7 - 2)
    # reads across L3. pointwise_bytes counts the weights once and the 5 re-reads; the walk of the
    # L2s puts each thread's first read in place of that once (credit_l2_residency)
    assert one["L3"] == x + w * 7 + y
    assert two["L3"] == x + w * (1 + 5) + y
    walked = credit_l2_residency(charge_write_allocate(two, y), y, loaded_bytes=x + w, read_bytes=x + 2 * w,
                                 filled_bytes=y, written_back_bytes=y)
    assert walked["L3"] == x + w * (2 + 5) + 2 * y          # 7 weight reads, not 8
    # across L2 and DRAM no walk charges per-thread reads: the model's once stands
    assert two["L2"] == one["L2"] and two["DRAM"] == one["DRAM"] and two["L1"] == one["L1"]
    # fewer pixel tiles than threads: the threads split channels and read their share once
    assert pointwise.pointwise_bytes(1, 960, 320, 7, 7, 64, 64, False, BUDGET, threads=2) == \
        pointwise.pointwise_bytes(1, 960, 320, 7, 7, 64, 64, False, BUDGET)
