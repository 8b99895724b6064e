"""The walk of the L2s over a plan's buffers (engine/residency.py) on hand-computed cases."""
from __future__ import annotations

import numpy as np

import engine
import engine.plan
from engine.config import RunConfig
from engine.tiles import Tiles, as_schedule
import engine.residency
from engine.kernels import fused_block
from engine.kernels.layout import CB
from engine.residency import CHANNELS, ITEMS, LOAD, SCRATCH, STORE, WEIGHTS, WHOLE, Region, follow_buffers
from machines import ZEN3, with_lanes
from new_ops_graphs import efficientnet_like

KIB = 1024
L2 = 64 * KIB           # one thread's L2 in these cases; grain 1 KiB
GRAIN = 1 * KIB


def walk(steps, threads=1, warm_runs=0):
    return follow_buffers(steps, L2, threads, warm_runs=warm_runs, grain=GRAIN)


def test_three_steps_that_fit_l2_find_their_input_and_output_region_resident():
    a, b, c = 0, 16 * KIB, 32 * KIB                  # three 16 KiB buffers: 48 KiB, fit 64 KiB
    steps = [[Region(a, 16 * KIB, LOAD), Region(b, 16 * KIB, STORE)],
             [Region(b, 16 * KIB, LOAD), Region(c, 16 * KIB, STORE)],
             [Region(c, 16 * KIB, LOAD), Region(a, 16 * KIB, STORE)]]   # writes over a's region
    first, second, third = walk(steps)
    assert (first.read, first.filled, first.written_back) == (16 * KIB, 16 * KIB, 0)     # cold
    assert (second.read, second.filled) == (0, 16 * KIB)        # b found; c is new lines
    assert (third.read, third.filled, third.written_back) == (0, 0, 0)   # c found, a's lines still in L2
    assert third.loaded == 16 * KIB


def test_a_buffer_larger_than_l2_evicts_and_dirty_lines_are_written_back():
    steps = [[Region(0, 32 * KIB, STORE)],                        # 32 KiB dirty
             [Region(1 << 20, 128 * KIB, LOAD)],                  # 128 KiB streamed: evicts them
             [Region(0, 32 * KIB, LOAD)]]
    first, second, third = walk(steps)
    assert second.read == 128 * KIB and second.written_back == 32 * KIB
    assert third.read == 32 * KIB                                 # evicted: read again from L3


def test_a_step_writing_over_its_input_reads_it_once_and_fills_nothing():
    steps = [[Region(0, 8 * KIB, STORE)],
             [Region(0, 8 * KIB, LOAD), Region(0, 8 * KIB, STORE)]]     # in place
    _, in_place = walk(steps)
    assert (in_place.read, in_place.filled, in_place.written_back) == (0, 0, 0)
    cold = walk([[Region(0, 8 * KIB, LOAD), Region(0, 8 * KIB, STORE)]])[0]
    assert (cold.read, cold.filled) == (8 * KIB, 0)               # the load brought the lines in


def test_a_dirty_line_written_again_before_eviction_is_written_back_once():
    steps = [[Region(0, 32 * KIB, STORE)], [Region(0, 32 * KIB, STORE)], [Region(1 << 20, 128 * KIB, LOAD)]]
    results = walk(steps)
    assert [r.written_back for r in results] == [0, 0, 32 * KIB]


def test_every_thread_reads_whole_weights_and_its_own_share_of_activations():
    # 2 threads, each its own 64 KiB L2: 16 KiB weights read by both, a 64 KiB input split
    steps = [[Region(1 << 20, 16 * KIB, WEIGHTS, WHOLE), Region(0, 64 * KIB, LOAD)]]
    (step,) = walk(steps, threads=2)
    assert step.loaded == 80 * KIB and step.read == 2 * 16 * KIB + 64 * KIB
    again = walk(steps * 2, threads=2)[1]
    assert again.read == 0                                        # 16 + 32 KiB per thread fit 64 KiB


def test_threads_that_split_differently_find_the_other_threads_rows_in_l3():
    shape = (1, 2, 4, 4, 16)                                      # NCHWc: 2 channel blocks of 1 KiB
    nbytes = 2 * 4 * 4 * 16 * 4
    rows = [Region(0, nbytes, STORE, shape=shape)]                # each thread writes half of every block
    by_channels = [Region(0, nbytes, LOAD, CHANNELS, shape)]      # each thread reads one whole block
    _, step = follow_buffers([rows, by_channels], L2, 2, warm_runs=0, grain=64)
    assert step.read == nbytes // 2                               # half of what each reads the other wrote


def test_a_block_two_stripes_share_is_charged_all_the_bytes_the_thread_touches_there():
    # 1 image, 4 channel blocks of 3 x 3 pixels (576 B a plane, 16 lanes), 2 threads by rows:
    # thread 0's stripes (pixels 0-3, 256 B of each plane) lie 576 B apart, two or three to a
    # 1 KiB block; cold, every byte of its share is filled, not the first stripe's of a block
    shape = (1, 4, 3, 3, 16)
    nbytes = 4 * 3 * 3 * 16 * 4
    (step,) = follow_buffers([[Region(0, nbytes, STORE, shape=shape)]], L2, 2, warm_runs=0, grain=GRAIN)
    assert step.filled == nbytes


def test_the_global_average_pools_threads_read_runs_of_whole_planes():
    # its work items are (image, channel block) planes: at batch 1 a thread reads the channel
    # blocks a channel-split producer's same thread wrote, so nothing crosses from L3
    shape = (1, 2, 4, 4, 16)
    nbytes = 2 * 4 * 4 * 16 * 4
    written = [Region(0, nbytes, STORE, CHANNELS, shape)]
    _, pooled = follow_buffers([written, [Region(0, nbytes, LOAD, ITEMS, shape)]], L2, 2, warm_runs=0, grain=64)
    _, by_rows = follow_buffers([written, [Region(0, nbytes, LOAD, shape=shape)]], L2, 2, warm_runs=0, grain=64)
    assert pooled.read == 0 and by_rows.read == nbytes // 2


def test_weights_in_use_to_the_end_come_before_the_last_slice_of_the_output():
    # a step whose 48 KiB of weights and 32 KiB of output overflow a 64 KiB L2: the output's
    # last slice (the kernel's last pixel tile, stored while the weights are re-read) stays
    # with them, so the next step reading the output finds that slice (8 KiB of 32 with
    # SLICES = 8: 4 KiB), not nothing (the output's oldest lines evicted as it reads them)
    out = Region(0, 32 * KIB, STORE)
    steps = [[Region(1 << 20, 48 * KIB, WEIGHTS, WHOLE), out], [Region(0, 32 * KIB, LOAD)]]
    _, reader = walk(steps)
    assert reader.read == 32 * KIB - 32 * KIB // engine.residency.SLICES


def test_with_ways_blocks_one_way_span_apart_share_a_set_and_evict_each_other():
    # a 64 KiB L2 of 4 ways: a way spans 16 KiB, so blocks 16 KiB apart fall in one set of
    # 4; five of them (5 KiB in all) do not stay, where a fully associative walk keeps them
    assert engine.residency.set_groups(64, 4) == 16 and engine.residency.set_groups(64, 0) == 1
    same_set = [[Region(k * 16 * KIB, KIB, STORE) for k in range(5)], [Region(0, KIB, LOAD)]]
    _, again = follow_buffers(same_set, L2, 1, warm_runs=0, grain=GRAIN, l2_ways=4)
    _, fully = follow_buffers(same_set, L2, 1, warm_runs=0, grain=GRAIN)
    assert again.read == KIB and fully.read == 0
    spread = [[Region(k * 17 * KIB, KIB, STORE) for k in range(5)], [Region(0, KIB, LOAD)]]
    assert follow_buffers(spread, L2, 1, warm_runs=0, grain=GRAIN, l2_ways=4)[1].read == 0


def test_the_walk_assumes_the_ways_the_simulation_assumes_where_the_machine_does_not_say():
    from engine.machine import CacheLevel
    from engine.trace.simulator import DEFAULT_WAYS

    unknown = CacheLevel("L2", 512 * KIB, 1, 64)
    assert engine.residency.walk_ways(unknown) == DEFAULT_WAYS == engine.residency.DEFAULT_WAYS
    assert engine.residency.walk_ways(CacheLevel("L2", 512 * KIB, 1, 64, ways=8)) == 8


def test_the_warm_run_leaves_the_last_steps_buffers_for_the_first():
    steps = [[Region(0, 8 * KIB, LOAD), Region(8 * KIB, 8 * KIB, STORE)],
             [Region(8 * KIB, 8 * KIB, LOAD), Region(0, 8 * KIB, STORE)]]
    cold, warm = walk(steps, warm_runs=0)[0], walk(steps, warm_runs=1)[0]
    assert cold.read == 8 * KIB and warm.read == 0


def test_a_fused_blocks_scratch_is_filled_once_and_written_back_by_the_step_that_evicts_it():
    # a block: 16 KiB of scratch used in each of 4 bands, 32 KiB of input, 8 KiB of output
    # (56 KiB: fit 64 KiB); then a step streams 64 KiB past them
    block = [Region(1 << 20, 16 * KIB, SCRATCH, WHOLE, thread=0, passes=4),
             Region(0, 32 * KIB, LOAD), Region(32 * KIB, 8 * KIB, STORE)]
    stream = [Region(1 << 22, 64 * KIB, LOAD)]
    first, second = walk([block, stream])
    assert (first.scratch_filled, first.read, first.filled, first.written_back) == (16 * KIB, 32 * KIB, 8 * KIB, 0)
    assert second.written_back == 16 * KIB + 8 * KIB          # the scratch's dirty lines and the output's
    again = walk([block, block])[1]
    assert again.scratch_filled == 0 and again.written_back == 0   # a block after a block finds its scratch


def test_a_scratch_near_l2s_size_stays_while_the_bands_rows_stream_past_it():
    # 52 KiB of scratch and 128 KiB of input in 16 bands: a band's 8 KiB of rows fit beside
    # the scratch in 64 KiB, so LRU keeps it (in 8 slices of 16 KiB it would be evicted)
    def block(passes):
        return [[Region(1 << 20, 52 * KIB, SCRATCH, WHOLE, thread=0, passes=passes), Region(0, 128 * KIB, LOAD)]]
    (by_band,) = walk(block(16))
    assert by_band.scratch_filled == 52 * KIB and by_band.read == 128 * KIB and by_band.written_back == 0
    (coarse,) = walk(block(1))
    assert coarse.scratch_filled > 52 * KIB                 # refilled after each slice: why bands are slices


def test_plan_charges_a_fused_block_its_walked_scratch_instead_of_a_first_touch_per_run(mobilenet, monkeypatch):
    """A fused block's L3 bytes: fused_block_bytes' scratch first touch (a fill and a
    write-back per worker with a band) replaced by the walk's scratch fills, and its
    output's fill and write-back by the walk's too (engine.traffic, credit_l2_residency)."""
    walked = {}

    def spy(steps, *arguments, **options):
        walked.update(zip(map(id, steps), engine.residency.plan_residency(steps, *arguments, **options)))
        return [walked[id(step)] for step in steps]

    monkeypatch.setattr(engine.plan, "plan_residency", spy)
    machine = with_lanes(ZEN3, CB)
    config = RunConfig(threads=2, tiles=as_schedule(Tiles()), fuse_blocks=True, machine=machine)
    plan = engine.plan.build_plan(mobilenet.graph, mobilenet.weights, 1, config)     # not the model's cached one
    blocks = [s for s in plan.steps if s.fused and walked[id(s)].scratch_charged]
    assert blocks                                        # scratches that stay in the 512 KiB L2s
    step = blocks[0]
    layers = {layer.name: layer for layer in mobilenet.graph.layers}
    # by hand, fused_block.scratch_floats: expanded rows hidden x ((rows - 1) x stride + 3) x W
    # (an expand conv only), depthwise rows hidden x rows x Wo, float32; items images x bands
    depthwise_layer = next(layers[name] for name in step.members if layers[name].conv_kind == "depthwise")
    hidden, out_h, out_w = depthwise_layer.output_shape
    hidden, rows = -(-hidden // CB) * CB, step.block_rows
    has_expand = layers[step.members[0]] is not depthwise_layer
    expand = 4 * hidden * ((rows - 1) * step.stride + 3) * depthwise_layer.input_shape[2] * has_expand
    depthwise = 4 * hidden * rows * out_w
    items = 1 * -(-out_h // rows)
    assert engine.residency.block_scratch_bytes(step) == (expand, depthwise, items)
    walk_ = walked[id(step)]
    assert walk_.scratch_charged == 2 * min(2, items) * (expand + depthwise)
    assert walk_.scratch_filled <= min(2, items) * (expand + depthwise)     # each worker's used part at most once
    first, project = layers[step.members[0]], layers[step.members[-1]]
    (cin, h, w), (hidden, _, _), cout = first.input_shape, layers[step.members[-2]].output_shape, project.output_shape[0]
    kernel = fused_block.fused_block_bytes(1, cin, hidden, cout, h, w, step.stride, step.block_rows,
                                           len(step.members) == 3, project.residual is not None, 2,
                                           plan.config.budget)
    assert kernel["L3"] > walk_.scratch_charged                           # the first touch is in the kernel's L3
    output = 4 * int(np.prod(step.output_shape))
    assert step.bytes["L3"] == max(step.bytes["DRAM"], kernel["L3"] - output - walk_.loaded + walk_.read
                                   + walk_.scratch_filled + walk_.filled + walk_.written_back
                                   - walk_.scratch_charged)


def test_a_fused_se_block_follows_its_ring_and_one_images_depthwise_output_as_fused_se_block_bytes_charge(
        monkeypatch):
    """A fused squeeze-and-excitation block's scratch (engine.kernels.fused_se_block): the
    ring of expanded rows (an expand conv only) and one image's depthwise output per worker,
    charged a fill and a write-back per worker with images, as fused_se_block_bytes does."""
    walked = {}

    def spy(steps, *arguments, **options):
        walked.update(zip(map(id, steps), engine.residency.plan_residency(steps, *arguments, **options)))
        return [walked[id(step)] for step in steps]

    monkeypatch.setattr(engine.plan, "plan_residency", spy)
    model = engine.load(efficientnet_like())     # 32x32: blocks at 16x16 and 8x8
    config = RunConfig(threads=2, tiles=as_schedule(Tiles()), fuse_blocks=True, machine=with_lanes(ZEN3, CB))
    plan = engine.plan.build_plan(model.graph, model.weights, 8, config)
    blocks = [step for step in plan.steps if step.op == "block"]
    assert [step.block_rows for step in blocks] == [16, 8, 8]      # one band per image: fits the 512 KiB L2
    no_expand, strided = blocks[0], blocks[1]
    # by hand, fused_se_block.scratch_floats, float32: the ring hidden x ((rows - 1) x stride + k) x W,
    # the image's depthwise output hidden x Ho x Wo (hidden 16 and 96: whole blocks of 8 and 16 lanes)
    # dw 3x3 s1 on 16 channels of 16x16, no expand: no ring; 16 x 16 x 16 floats
    assert engine.residency.block_scratch_bytes(no_expand) == (0, 4 * 16 * 16 * 16, 8 * 1)
    # expand to 96, dw 5x5 s2 16x16 -> 8x8, one band of 8 rows: ring 96 x (7 x 2 + 5) x 16, image 96 x 8 x 8
    ring, image = 4 * 96 * 19 * 16, 4 * 96 * 8 * 8
    assert (ring, image) == (116736, 24576)
    assert engine.residency.block_scratch_bytes(strided) == (ring, image, 8 * 1)
    assert walked[id(no_expand)].scratch_charged == 2 * 2 * 16384           # 8 images: both workers
    walk_ = walked[id(strided)]
    assert walk_.scratch_charged == 2 * 2 * (ring + image) == 565248
    assert walk_.scratch_filled <= 2 * (ring + image)                     # each worker's part at most once
    regions = engine.residency.scratch_regions(strided, strided.call.args, model.weights, 2, config.budget.L2)
    assert sorted((r.nbytes, r.thread, r.passes) for r in regions) == [(image, 0, 4), (image, 1, 4),
                                                                       (ring, 0, 4), (ring, 1, 4)]
    # batch 1: the image's bands split over the two workers (2 bands of 4 rows), each its own ring
    # 96 x (3 x 2 + 5) x 16 and half of the one depthwise output row 0; one worker with an image charged
    plan = engine.plan.build_plan(model.graph, model.weights, 1, config)
    strided = [step for step in plan.steps if step.op == "block"][1]
    assert strided.block_rows == 4
    ring = 4 * 96 * 11 * 16
    regions = engine.residency.scratch_regions(strided, strided.call.args, model.weights, 2, config.budget.L2)
    row = strided.call.args[-1][0].__array_interface__["data"][0]
    assert sorted((r.nbytes, r.thread, r.passes) for r in regions) == [(image // 2, 0, 1), (image // 2, 1, 1),
                                                                       (ring, 0, 1), (ring, 1, 1)]
    assert sorted(r.start - row for r in regions if r.nbytes == image // 2) == [0, image // 2]
    assert walked[id(strided)].scratch_charged == 2 * 1 * (ring + image)


def test_with_a_shared_l3_what_it_lost_is_read_from_memory_and_its_dirty_lines_written_there():
    # one thread, 64 KiB of L2 over 128 KiB of L3: 32 KiB written, then 256 KiB streamed
    # past (the L2 writes the dirty 32 KiB into L3, which the stream then evicts to memory),
    # then the 32 KiB read again: from memory
    steps = [[Region(0, 32 * KIB, STORE)], [Region(1 << 20, 256 * KIB, LOAD)], [Region(0, 32 * KIB, LOAD)]]
    first, second, third = follow_buffers(steps, L2, 1, warm_runs=0, grain=GRAIN, l3_bytes=128 * KIB)
    assert (first.dram_read, first.dram_written_back) == (32 * KIB, 0)      # the store's fill, from memory
    assert (second.dram_read, second.written_back, second.dram_written_back) == (256 * KIB, 32 * KIB, 32 * KIB)
    assert (third.dram_read, third.dram_written_back) == (32 * KIB, 0)
    small_stream = [[Region(0, 32 * KIB, STORE)], [Region(1 << 20, 64 * KIB, LOAD)], [Region(0, 32 * KIB, LOAD)]]
    kept = follow_buffers(small_stream, L2, 1, warm_runs=0, grain=GRAIN, l3_bytes=128 * KIB)
    assert kept[1].written_back == 32 * KIB and kept[1].dram_written_back == 0   # written back into L3, kept
    assert kept[2].read == 32 * KIB and kept[2].dram_read == 0                   # read from L3, not memory


def test_the_walks_block_divides_a_way_span_that_is_not_a_power_of_two():
    # an Ice Lake-SP L2: 1.25 MiB, 20 ways, a 64 KiB way span; 1.25 MiB / 512 = 2560 B does
    # not divide it, so its blocks could not be mapped to sets (fully associative instead)
    from engine.residency import set_groups, walk_grain
    l2 = 1280 * 1024
    grain = walk_grain(l2, 20)
    assert grain % 64 == 0 and (l2 // 20) % grain == 0 and grain == 2048
    assert set_groups(l2 // grain, 20) == 32
    assert walk_grain(2 << 20, 16) == 4096 and walk_grain(512 << 10, 8) == 1024   # powers of two as before
