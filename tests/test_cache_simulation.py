"""The cache simulation (engine.trace.simulator): the hierarchy set up from described
machines, traffic per level on hand-computed cases, the fast feed against pycachesim's own
API, and a whole (small) plan simulated step after step."""
from __future__ import annotations

import numpy as np
import pytest
from cachesim.cache import Cache

import engine
from engine.trace.records import LOAD, PREFETCH, RECORD_FIELDS, STORE
from engine.trace.simulator import DEFAULT_WAYS, Hierarchy, feed, simulate_plan
from machines import EMERALD_RAPIDS, KIB, ZEN3_VM_EFFECTIVE, described, with_lanes

LINE = 64
# A tiny machine whose levels a few KiB fill: L1 4 KiB, L2 32 KiB, L3 256 KiB (16 ways each).
TINY = described("tiny, described", 2, 4 * KIB, 32 * KIB, 256 * KIB, 8)


def reads(base: int, nbytes: int, passes: int = 1, chunk: int = 256) -> np.ndarray:
    """Records reading [base, base + nbytes) front to back `passes` times, `chunk` bytes a record."""
    starts = np.tile(np.arange(base, base + nbytes, chunk), passes)
    return np.stack([starts, np.full_like(starts, chunk), np.full_like(starts, LOAD), np.full_like(starts, chunk)],
                    axis=1)


def writes(base: int, nbytes: int, chunk: int = 256) -> np.ndarray:
    records = reads(base, nbytes, 1, chunk)
    records[:, 2] = STORE
    return records


BASE = 1 << 30    # addresses of the hand-made buffers: far apart, line aligned


def test_hierarchy_of_a_described_machine_has_private_l1_l2_per_thread_and_one_l3():
    two = Hierarchy.for_machine(EMERALD_RAPIDS, threads=2)
    assert [len(two.level_of[name]) for name in ("L1", "L2", "L3")] == [2, 2, 1]
    for name, size in (("L1", 48 * KIB), ("L2", 2048 * KIB), ("L3", 260 * 1024 * KIB)):
        cache = two.level_of[name][0].backend
        assert cache.sets * cache.ways * cache.cl_size == size and cache.ways == DEFAULT_WAYS
    # each thread's L1 loads from its own L2, both L2s from the one L3
    assert two.level_of["L1"][1].load_from is two.level_of["L2"][1]
    assert all(l2.load_from is two.level_of["L3"][0] for l2 in two.level_of["L2"])
    one = Hierarchy.for_machine(EMERALD_RAPIDS, threads=1)
    assert [len(one.level_of[name]) for name in ("L1", "L2", "L3")] == [1, 1, 1]


def test_hierarchy_uses_the_measured_l3_and_sysfs_associativity():
    l3 = Hierarchy.for_machine(ZEN3_VM_EFFECTIVE, threads=2).level_of["L3"][0].backend
    assert l3.sets * l3.ways * l3.cl_size == 10 * 1024 * KIB        # the effective 10 MiB, not the nominal 32
    from dataclasses import replace
    caches = tuple(replace(level, ways=12) if level.name == "L1" else level for level in EMERALD_RAPIDS.caches)
    l1 = Hierarchy.for_machine(replace(EMERALD_RAPIDS, caches=caches), threads=1).level_of["L1"][0].backend
    assert (l1.ways, l1.sets) == (12, 64)                           # 48 KiB = 64 sets x 12 ways x 64 B


def test_an_operand_that_fits_l1_is_read_from_l2_once_however_often_the_kernel_reads_it():
    hierarchy = Hierarchy.for_machine(TINY, threads=1)
    moved = hierarchy.run([reads(BASE, 2 * KIB, passes=5)])
    assert moved["L1"] == 5 * 2 * KIB               # every load the kernel issues
    assert moved["L2"] == moved["L3"] == moved["DRAM"] == 2 * KIB     # cold: once from memory, then L1 hits


def test_an_operand_that_does_not_fit_l2_is_re_read_per_pass_from_l3():
    hierarchy = Hierarchy.for_machine(TINY, threads=1)
    moved = hierarchy.run([reads(BASE, 64 * KIB, passes=3)])
    assert moved["L2"] == moved["L3"] == 3 * 64 * KIB     # LRU: a sweep larger than L1 and L2 misses every pass
    assert moved["DRAM"] == 64 * KIB                     # but it fits L3: memory once


def test_an_operand_that_does_not_fit_l3_is_re_read_per_pass_from_memory():
    hierarchy = Hierarchy.for_machine(TINY, threads=1)
    moved = hierarchy.run([reads(BASE, 512 * KIB, passes=3)])
    assert moved["DRAM"] == 3 * 512 * KIB


def test_a_written_output_costs_a_line_fill_and_a_write_back():
    """Write-allocate: storing 2 KiB reads its lines in first; evicting them writes them back.
    (The bytes model counts an output once: the simulation counts both directions.)"""
    hierarchy = Hierarchy.for_machine(TINY, threads=1)
    stored = hierarchy.run([writes(BASE, 2 * KIB)])
    assert stored["L2"] == 2 * KIB                  # the fill; the dirty lines still sit in L1
    evicting = hierarchy.run([reads(BASE + (1 << 20), 8 * KIB)])
    assert evicting["L2"] == 8 * KIB + 2 * KIB      # the sweep's fills plus the output's write-back


def test_what_one_step_leaves_in_cache_the_next_step_finds():
    hierarchy = Hierarchy.for_machine(TINY, threads=1)
    hierarchy.run([writes(BASE, 16 * KIB)])         # a step writes a 16 KiB output (fits L2, not L1)
    consumer = hierarchy.run([reads(BASE, 16 * KIB)])
    assert consumer["L2"] >= 16 * KIB - 4 * KIB     # most of it is past L1 ...
    assert consumer["L3"] == consumer["DRAM"] == 0  # ... none of it past L2


def test_threads_have_private_l1_and_l2_and_share_l3():
    hierarchy = Hierarchy.for_machine(TINY, threads=2)
    moved = hierarchy.run([reads(BASE, 16 * KIB), reads(BASE, 16 * KIB)])
    assert moved["L3"] == 2 * 16 * KIB             # each thread's L2 fills from L3 ...
    assert moved["DRAM"] == 16 * KIB               # ... which brought it from memory once


def test_fast_feed_counts_what_pycachesims_own_api_counts():
    rng = np.random.default_rng(0)
    count = 20000
    records = np.zeros((count, RECORD_FIELDS), np.int64)
    records[:, 0] = rng.integers(0, 1 << 20, count) * 4 + (1 << 22)     # below 2**32: the API parses an unsigned int
    records[:, 1] = rng.choice([4, 64, 256, 1024], count)
    records[:, 2] = rng.choice([LOAD, STORE, PREFETCH], count)
    fast = Hierarchy.for_machine(TINY, threads=1)
    feed(records, fast.first_levels[0])
    slow = Hierarchy.for_machine(TINY, threads=1)
    first: Cache = slow.first_levels[0]
    for address, length, kind, _ in records.tolist():
        if kind == STORE:
            first.backend.store(address, length=length)
        else:
            first.backend.load(address, length=length)
    for name in ("L1", "L2", "L3"):
        assert fast.level_of[name][0].stats() == slow.level_of[name][0].stats()
    assert fast.level_of["L3"][0].backend.MISS_count > 0


@pytest.mark.lanes
def test_a_whole_plan_is_simulated_step_after_step_with_progress():
    from engine.kernels.layout import CB

    model = engine.load(engine.zoo.mobilenet_v2(width_mult=0.35, resolution=32, num_classes=10))
    machine = with_lanes(TINY, CB)
    plan = model.plan(1, threads=2, fuse_blocks="auto", machine=machine)
    seen = []
    results = simulate_plan(plan, warm_runs=1, progress=lambda done, total, name: seen.append((done, total)))
    assert [r.name for r in results] == [s.name for s in plan.steps]
    assert all(r.traced for r in results)
    assert seen[-1] == (2 * len(plan.steps), 2 * len(plan.steps))
    for result, step in zip(results, plan.steps):
        moved = result.bytes
        assert moved["L1"] > 0 and moved["L1"] >= moved["L2"] * 0.1
        if step.op in ("expand", "project", "pointwise", "depthwise"):
            assert moved["L1"] == step.bytes["L1"]           # the model's register count is the traced one
        elif step.op == "block":                             # the model walks a band's pixels as one run; the
            assert moved["L1"] == pytest.approx(step.bytes["L1"], rel=0.05)   # kernel in ring runs: more edge tiles
    # the network's weights (~0.2 MB at width 0.35) do not fit TINY's L3 and come from memory every run
    assert sum(r.bytes["DRAM"] for r in results) > model.weights.nbytes


@pytest.mark.lanes
def test_the_order_of_lines_inside_a_record_changes_no_level_by_more_than_a_few_lines():
    """engine/trace/records.py walks a record's lines in address order where the kernel
    interleaves them lane by lane: a 1x1 conv of MobileNetV2's size traced both ways (each
    record's lines reversed) moves the same bytes at every level, to within 1 %."""
    from engine.kernels import pointwise
    from engine.kernels._common import bind
    from engine.kernels.layout import CB
    from engine.trace.calls import kernel_and_arguments, trace_call

    rng = np.random.default_rng(0)
    x = rng.random((1, 96 // CB, 28, 28, CB), dtype=np.float32)
    w = rng.random((48 // CB, 96, CB), dtype=np.float32)
    b = rng.random((48 // CB, CB), dtype=np.float32)
    out = np.empty((1, 48 // CB, 28, 28, CB), np.float32)
    records = trace_call(*kernel_and_arguments(bind(pointwise.pointwise_conv, x, w, b, out, 0.0, 6.0)))
    reversed_lines = []
    for address, length, kind, register in records.tolist():
        first, last = address // LINE, (address + length - 1) // LINE
        lines = list(range(last, first - 1, -1))
        for i, line in enumerate(lines):
            reversed_lines.append((line * LINE, LINE, kind, register if i == 0 else 0))
    reversed_lines = np.array(reversed_lines, np.int64)
    machine = with_lanes(EMERALD_RAPIDS, CB)
    as_traced = Hierarchy.for_machine(machine, 1).run([records])
    reordered = Hierarchy.for_machine(machine, 1).run([reversed_lines])
    assert as_traced["L2"] > 100 * LINE
    for level in ("L1", "L2", "L3", "DRAM"):
        assert reordered[level] == pytest.approx(as_traced[level], rel=0.01), level
