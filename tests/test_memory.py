"""Memory: the plan's arena stays near the two largest live activations (engine.memory), live
tensors never share memory, batch 256 runs and agrees with batch 1, and repeated runs do not
grow the process."""
from __future__ import annotations

import functools
import gc
import tracemalloc

import numpy as np
import pytest

import engine
import engine.plan
from engine.config import RunConfig
from engine.kernels.layout import CB
from engine.tiles import Tiles, as_schedule
from engine.memory import activation_lifetimes, memory_report, resident_memory, scratch_bytes
from engine.arena import Arena
from tests.conftest import assert_close_to_reference
from machines import ZEN3, with_lanes
from new_ops_graphs import efficientnet_like

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

MiB = 2 ** 20


@pytest.mark.parametrize("fuse_blocks", [False, True], ids=["unfused", "fused"])
def test_plan_memory_at_batch_64_is_within_1_5_of_two_largest_activations_plus_weights(mobilenet, fuse_blocks):
    report = memory_report(mobilenet, 64, threads=1, fuse_blocks=fuse_blocks)
    assert report.ratio <= 1.5, report.as_dict()


def test_two_largest_activations_at_batch_64_are_block_2s_expand_output_and_depthwise_output(mobilenet):
    # napkin math: (64, 96, 112, 112) expanded + (64, 96, 56, 56) after the stride-2 depthwise
    report = memory_report(mobilenet, 64)
    assert report.two_largest_bytes == 4 * 64 * (96 * 112 * 112 + 96 * 56 * 56)
    assert "features.2/" in report.two_largest_step
    # and it is at least every step's own input + output
    plan = mobilenet.plan(64)
    assert report.two_largest_bytes >= max(4 * (np.prod(s.input_shape) + np.prod(s.output_shape))
                                           for s in plan.steps)


@pytest.mark.parametrize("fuse_blocks", [False, True], ids=["unfused", "fused"])
def test_arena_is_no_smaller_than_the_live_peak_and_within_5_percent_of_it(mobilenet, fuse_blocks):
    # smaller than the live peak would mean two live tensors share memory
    report = memory_report(mobilenet, 64, fuse_blocks=fuse_blocks)
    assert report.live_peak_bytes <= report.arena_bytes <= 1.05 * report.live_peak_bytes, report.as_dict()


@pytest.mark.parametrize("fuse_blocks", [False, True], ids=["unfused", "fused"])
def test_every_step_read_resolves_to_a_tensor_live_at_that_step(mobilenet, fuse_blocks):
    plan = mobilenet.plan(3, fuse_blocks=fuse_blocks)
    tensors = activation_lifetimes(mobilenet, plan)
    by_name = {t.name: t for t in tensors}
    assert sum(not t.in_arena for t in tensors) == 1                # the input (buffer or caller's array)
    for index, step in enumerate(plan.steps):
        if not step.output:                                          # copying the batch in / result out
            continue
        assert by_name[step.output].first_step == index
        assert any(t.first_step <= index <= t.last_step and t.nbytes == 4 * np.prod(step.input_shape)
                   and t.name != step.output for t in tensors), step.name


def test_scratch_bytes_are_the_fused_plans_real_scratch_arrays(mobilenet):
    plan = mobilenet.plan(2, threads=2, fuse_blocks=True)
    blocks = [s for s in plan.steps if s.op == "block"]
    assert blocks
    arrays = [{id(a): a for a in s.call.args if isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[0] == 2}
              for s in blocks if isinstance(s.call, functools.partial)]
    shared = set.intersection(*(set(a) for a in arrays))          # the one pair every block uses
    assert len(shared) == 2
    assert scratch_bytes(plan) == sum(arrays[0][key].nbytes for key in shared)
    assert scratch_bytes(mobilenet.plan(2, threads=2, fuse_blocks=False)) == 0


def test_scratch_bytes_of_fused_se_blocks_are_their_ring_and_one_images_depthwise_output():
    """SE blocks (engine.kernels.fused_se_block) use a ring of expanded rows and one image's
    depthwise output per worker, not the SE-free block's band rows."""
    model = engine.load(efficientnet_like())     # 32x32: SE blocks at 16x16 and 8x8
    config = RunConfig(threads=2, tiles=as_schedule(Tiles()), fuse_blocks=True, machine=with_lanes(ZEN3, CB))
    plan = engine.plan.build_plan(model.graph, model.weights, 2, config)
    blocks = [s for s in plan.steps if s.op == "block"]
    assert [s.block_rows for s in blocks] == [16, 8, 8]           # one band per image in ZEN3's 512 KiB L2
    # by hand, fused_se_block.scratch_floats (ring hidden x ((rows - 1) x stride + k) x W, image
    # hidden x Ho x Wo; 16, 96, 144 channels are whole blocks of 8 and of 16 lanes):
    # dw3x3 16 ch 16x16, no expand: no ring, image 16 x 16 x 16 = 4096
    # expand 96, dw5x5 s2 16x16 -> 8x8: ring 96 x 19 x 16 = 29184, image 96 x 64 = 6144
    # expand 144, dw3x3 s1 8x8: ring 144 x 10 x 8 = 11520, image 144 x 64 = 9216
    # largest of each (multiples of a 16-float line), per thread, 4 bytes each
    assert scratch_bytes(plan) == 4 * 2 * (29184 + 9216) == 307200
    arrays = {id(a): a for s in blocks for a in s.call.args[-2:]}
    assert len(arrays) == 2 and sum(a.nbytes for a in arrays.values()) == 307200     # what is allocated


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


@pytest.mark.parametrize("seed", range(5))
def test_arena_gives_overlapping_lifetimes_disjoint_aligned_memory(seed):
    rng = np.random.default_rng(seed)
    arena = Arena()
    lifetimes = {}
    for index in range(40):
        first = int(rng.integers(0, 30))
        last = first + int(rng.integers(0, 6))
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 300)))
        arena.assign(f"t{index}", shape, first=first, last=last)
        lifetimes[f"t{index}"] = (first, last, shape)
    buffers = arena.materialise()
    peak = max(sum(4 * np.prod(s) for f, l, s in lifetimes.values() if f <= step <= l) for step in range(36))
    assert arena.nbytes >= peak
    for name, (first, last, shape) in lifetimes.items():
        assert buffers[name].shape == shape and buffers[name].ctypes.data % 64 == 0
        for other, (first2, last2, _) in lifetimes.items():
            if other != name and _overlap((first, last), (first2, last2)):
                assert not np.shares_memory(buffers[name], buffers[other]), (name, other)


def test_arena_of_a_chain_is_its_largest_neighbouring_pair():
    # a chain a -> b -> c -> d: each tensor lives for the step writing it and the next one
    # (sizes multiples of 16 floats, the arena's 64-byte alignment)
    sizes = [96, 400, 48, 304]
    arena = Arena()
    for index, size in enumerate(sizes):
        arena.assign(f"t{index}", (size,), first=index, last=index + 1)
    arena.materialise()
    assert arena.nbytes == 4 * max(a + b for a, b in zip(sizes, sizes[1:]))


@pytest.mark.slow
def test_batch_256_runs_and_matches_batch_1_image_by_image(mobilenet_proto):
    model = engine.load(mobilenet_proto)            # its own plan cache: freed after the test
    threads = min(2, engine.available_cores())
    x = np.random.default_rng(7).standard_normal((256, *model.input_shape), dtype=np.float32)
    report = memory_report(model, 256, threads=threads)
    assert report.held_bytes < 2 * 2 ** 30              # ~1.6 GiB; the 24 GiB target has room
    out = model.run(x, threads=threads)
    assert out.shape == (256, *model.output_shape) and np.isfinite(out).all()
    for index in (0, 1, 130, 255):
        alone = model.run(x[index:index + 1], threads=threads)
        assert_close_to_reference(out[index:index + 1], alone, relative=1e-5)
    del model, out, x
    gc.collect()


def test_repeated_runs_with_dropped_recorders_do_not_grow_memory(mobilenet):
    # 150 batch-1 runs on one thread (about 2 s; bench/soak.py does 10,000)
    x = np.random.default_rng(3).standard_normal((1, *mobilenet.input_shape), dtype=np.float32)
    for _ in range(20):                              # warm-up: plan, kernels, allocator pools
        mobilenet.run(x, threads=1, hooks=[engine.Recorder()])
    gc.collect()
    rss_before = resident_memory()
    tracemalloc.start()
    try:
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(150):
            mobilenet.run(x, threads=1, hooks=[engine.Recorder()])
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    rss_after = resident_memory()
    # keeping one record per step per run (~70 records of ~150 B) would be ~10 kB per run;
    # keeping the returned logits (4 kB) would be 600 kB
    assert traced_growth < 64 * 1024, f"{traced_growth} bytes still allocated after 150 runs"
    if rss_before is not None:
        assert rss_after["rss"] - rss_before["rss"] < 8 * MiB


@pytest.fixture(scope="module")
def v3_small():
    return engine.load(engine.zoo.mobilenet_v3_small(resolution=64))


def test_a_squeeze_excitation_run_in_place_gives_its_output_no_buffer_of_its_own(v3_small):
    # the plan runs an SE over its input where nothing later reads that input: at that step
    # one buffer of the SE's size is live for input and output, not two
    plan = v3_small.plan(2, threads=1)
    tensors = {t.name: t for t in activation_lifetimes(v3_small, plan)}
    in_place = [(i, s) for i, s in enumerate(plan.steps) if s.in_place]
    assert in_place and all(s.op == "se" for _, s in in_place)
    index, step = in_place[0]
    assert step.output not in tensors                      # its output lives in its input's buffer
    holding = [t for t in tensors.values() if t.first_step < index <= t.last_step
               and t.nbytes == 4 * int(np.prod(step.output_shape))]
    assert holding and max(t.last_step for t in holding) > index      # read after the SE: as its output
    assert not any(s.in_place for s in plan.steps if s.op != "se")
    from engine.trace.calls import kernel_and_arguments     # and the kernel is bound so: one array as x and out
    arrays = [a for a in kernel_and_arguments(step.call)[1] if isinstance(a, np.ndarray)
              and a.shape == tuple(step.output_shape)]
    assert len(arrays) >= 2 and all(a is arrays[0] for a in arrays)


def test_a_step_run_in_place_pays_no_line_fill_for_its_output(v3_small):
    # write-allocate reads an output's line before the store (engine.traffic, "Writes"); an
    # SE written over its input stores to lines it has just read: its L2 bytes are the
    # kernel's own, where a step with an output buffer of its own adds the output's fill
    from engine.kernels import squeeze_excite
    plan = v3_small.plan(1, threads=1)
    step = next(s for s in plan.steps if s.in_place)
    channels, h, w = step.layer.input_shape
    kernel = squeeze_excite.squeeze_excite_bytes(1, channels, step.layer.attrs["squeezed"], h, w,
                                                 plan.config.budget)
    assert step.bytes["L2"] == kernel["L2"]
