"""The "auto" fusion policy, band heights and the L3 credit of the bytes model, decided from
machine facts: run for every described machine (tests/machines.py), whatever the host."""
from __future__ import annotations

import pytest

import engine
from engine.kernels import fused_block as fb
from engine.kernels.layout import CB
from engine.passes import find_inverted_residual_blocks
from engine.config import RunConfig
from engine.fusion import block_rows_for, fusion_wins, intermediates_level
from engine.traffic import FIT_FRACTION
from machines import DESCRIBED, EMERALD_RAPIDS, ONE_CORE, ZEN3, ZEN5, described, with_lanes

pytestmark = pytest.mark.lanes

MACHINE_THREADS = [(name, threads) for name, machine in DESCRIBED.items() for threads in range(1, machine.cores + 1)]


@pytest.fixture(scope="module")
def blocks(mobilenet):
    return find_inverted_residual_blocks(mobilenet.graph)


def config_for(machine, threads: int) -> RunConfig:
    return RunConfig(threads=threads, tiles=engine.Tiles(), fuse_blocks="auto", machine=machine)


def intermediate_bytes(block, batch: int, lanes: int) -> int:
    expand, depthwise, _ = block
    hidden, out_h, out_w = depthwise.output_shape
    _, height, width = depthwise.input_shape
    padded = -(-hidden // lanes) * lanes
    return 4 * batch * padded * (out_h * out_w + (height * width if expand is not None else 0))


@pytest.mark.parametrize("name,threads", MACHINE_THREADS)
@pytest.mark.parametrize("batch", [1, 64])
def test_auto_fuses_by_where_the_unfused_intermediates_would_live(blocks, name, threads, batch):
    machine = DESCRIBED[name]
    config = config_for(machine, threads)
    l2_together = threads * machine.cache("L2").usable_bytes
    l3 = machine.cache("L3").usable_bytes
    for block in blocks:
        size = intermediate_bytes(block, batch, machine.simd_lanes_fp32)
        level = "L2" if size <= FIT_FRACTION * l2_together else "L3" if size <= FIT_FRACTION * l3 else "DRAM"
        assert intermediates_level(block, config, batch) == level, block[2].name
        expand, depthwise, _ = block
        stride = depthwise.attrs["strides"][0]
        if level == "L2":
            expected = False
        elif level == "L3":
            expected = stride == 2 or expand is None
        else:
            band = block_rows_for(block, config, batch)
            recompute = fb.expand_recompute_factor(depthwise.input_shape[1], depthwise.output_shape[1], band,
                                                   stride, threads, batch) if expand is not None else 1.0
            expected = recompute <= 1.5
        assert fusion_wins(block, config, batch) == expected, (block[2].name, level)


@pytest.mark.parametrize("machine", [ZEN3, ZEN5, EMERALD_RAPIDS, ONE_CORE], ids=lambda m: m.cpu_model.split(",")[0])
def test_at_batch_1_every_described_machine_fuses_the_112_to_56_block_and_no_stride_1_block_with_an_expand(
        blocks, machine):
    """The 112x112 -> 56x56 block's intermediates (6 MB) exceed two L2s of up to 2 MiB and
    fit every L3 we know: its depthwise reads four times what it writes, so it fuses on
    every machine, Zen 5's 1 MiB L2 included."""
    for threads in range(1, machine.cores + 1):
        fused = [block for block in blocks if fusion_wins(block, config_for(machine, threads), 1)]
        assert any(dw.input_shape[1:] == (112, 112) and dw.attrs["strides"][0] == 2 for _, dw, _ in fused)
        assert all(expand is None or dw.attrs["strides"][0] == 2 for expand, dw, _ in fused)


def test_a_large_l2_keeps_small_blocks_unfused_where_a_small_l2_fuses_them(blocks):
    """The 112x112 block without an expand (32 channels: 1.6 + 1.6 MB) stays in two 2 MiB
    L2s but not in two 512 KiB ones: fused on Zen 3, not on Emerald Rapids."""
    first = blocks[0]
    assert first[0] is None and first[1].input_shape[1:] == (112, 112)
    assert intermediates_level(first, config_for(ZEN3, 2), 1) == "L3" and fusion_wins(first, config_for(ZEN3, 2), 1)
    assert intermediates_level(first, config_for(EMERALD_RAPIDS, 2), 1) == "L2"
    assert not fusion_wins(first, config_for(EMERALD_RAPIDS, 2), 1)


def test_at_batch_2_a_small_effective_l3_sends_more_blocks_to_dram_than_its_nominal_size(blocks):
    nominal = ZEN3
    effective = nominal.with_effective_caches({"L3": 8 * 1024**2})
    nominal_dram, effective_dram = ([b for b in blocks if intermediates_level(b, config_for(m, 2), 2) == "DRAM"]
                                    for m in (nominal, effective))
    assert len(effective_dram) > len(nominal_dram)


@pytest.mark.parametrize("name,threads", MACHINE_THREADS)
def test_auto_band_height_keeps_each_blocks_scratch_in_one_cores_l2_and_every_thread_busy(blocks, name, threads):
    machine = DESCRIBED[name]
    config = config_for(machine, threads)
    l2 = machine.cache("L2").usable_bytes
    for batch in (1, 64):
        for block in blocks:
            _, depthwise, _ = block
            hidden, out_h, out_w = depthwise.output_shape
            _, height, width = depthwise.input_shape
            stride = depthwise.attrs["strides"][0]
            band = block_rows_for(block, config, batch)
            assert 1 <= band <= out_h
            expand, dw = fb.scratch_floats(hidden, width, out_w, band, stride, machine.simd_lanes_fp32)
            if band > 1:       # the fallback of one row may exceed a tiny L2; a taller band never does
                assert fb.scratch_stays_in(4 * (expand + dw), l2), (block[2].name, band)
            assert batch * -(-out_h // band) >= threads or band == 1, (block[2].name, band)


def test_a_tile_setting_overrides_the_band_height_on_every_machine(blocks):
    for machine in DESCRIBED.values():
        config = RunConfig(threads=1, tiles=engine.Tiles(block_rows=3), fuse_blocks=True, machine=machine)
        assert {block_rows_for(block, config, 1) for block in blocks} == {3}


def test_a_plan_follows_the_machine_it_is_given_not_the_host(mobilenet, blocks):
    """The same model, two described machines with this process's lane width: the plan's
    fused blocks are the ones fusion_wins picks for each."""
    for machine in (ZEN3, EMERALD_RAPIDS):
        machine = with_lanes(machine, CB)
        config = config_for(machine, 2)
        expected = [block[2].name for block in blocks if fusion_wins(block, config, 1)]
        plan = mobilenet.plan(1, threads=min(2, engine.available_cores()), fuse_blocks="auto", machine=machine)
        if plan.config.threads == 2:
            assert [step.name for step in plan.steps if step.fused] == expected
        assert plan.config.machine is machine


def test_a_machine_with_another_lane_width_is_refused_naming_the_variable(mobilenet):
    other = with_lanes(ZEN3, 16 if CB == 8 else 8)
    with pytest.raises(ValueError, match="ROOFLINE_LANES"):
        mobilenet.plan(1, machine=other)
    with pytest.raises(ValueError, match="MachineInfo"):
        mobilenet.plan(1, machine={"L2": 1})


def test_weights_that_do_not_fit_a_small_effective_l3_cross_dram_each_run(mobilenet):
    """Emerald Rapids' 260 MiB L3 holds MobileNetV2's 14 MB of weights from run to run; a VM
    that behaves as 8 MiB of it does not, so every weighted step moves its weights from DRAM."""
    roomy = with_lanes(EMERALD_RAPIDS, CB)
    small = with_lanes(described("Emerald Rapids VM, 8 MiB effective L3", 2, 48 * 1024, 2 * 1024**2, 260 * 1024**2,
                                 16, l3_effective=8 * 1024**2), CB)
    roomy_dram, small_dram = (sum(step.bytes["DRAM"] for step in mobilenet.plan(1, 1, fuse_blocks=False, machine=m).steps
                                  if step.layer is not None and step.layer.weight is not None)
                              for m in (roomy, small))
    assert small_dram - roomy_dram >= 0.9 * mobilenet.weights.nbytes
