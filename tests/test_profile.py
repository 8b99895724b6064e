"""workbench.profile: one row per step with FLOPs, bytes, intensities and bounds."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from conftest import hand_made_ceilings
import workbench

LEVELS = ["L1", "L2", "L3", "DRAM"]


@pytest.fixture(scope="module")
def ceilings():
    # A hand-made table: profile logic must not depend on this machine's noise.
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def small():
    return engine.load(engine.models.mobilenet_v2(resolution=96))


def test_profile_has_the_documented_columns_and_sums(small, ceilings):
    frame = workbench.profile(small, batch=1, threads=1, repeats=3, ceilings=ceilings)
    for column in ["layer", "op", "seconds", "flops", "gflops", "bound", "batch", "threads", "fuse_blocks",
                   *(f"bytes_{lv}" for lv in LEVELS), *(f"ai_{lv}" for lv in LEVELS), *engine.Tiles().as_dict()]:
        assert column in frame.columns, column
    assert len(frame) == len(small.plan(1).steps)
    assert frame["share_of_time"].sum() == pytest.approx(1.0)
    conv = frame[frame.flops > 0]
    np.testing.assert_allclose(conv["ai_L2"], conv["flops"] / conv["bytes_L2"])
    assert set(frame["bound"]) <= {"memory", "compute", "n/a"}
    # memory bound means: the attainable roof is some level's AI x bandwidth, below the peak
    memory = conv[conv.bound == "memory"]
    assert (memory["attainable_gflops"] < 90.0).all()


def test_depthwise_layers_are_memory_bound_and_have_low_intensity(small, ceilings):
    frame = workbench.profile(small, batch=1, threads=1, repeats=2, ceilings=ceilings)
    depthwise = frame[frame.op == "depthwise"]
    pointwise = frame[frame.op.isin(["expand", "project"])]
    assert (depthwise["bound"] == "memory").all()
    assert depthwise["ai_L2"].median() < pointwise["ai_L2"].median()


def test_a_tile_the_model_says_rereads_more_shows_more_bytes(small, ceilings):
    big = workbench.profile(small, batch=8, threads=1, repeats=1, ceilings=ceilings,
                            tiles=engine.Tiles(pointwise_pixels=4096, pointwise_channels=4096))
    small_tiles = workbench.profile(small, batch=8, threads=1, repeats=1, ceilings=ceilings,
                                    tiles=engine.Tiles(pointwise_pixels=64, pointwise_channels=64))
    assert big["bytes_L2"].sum() > small_tiles["bytes_L2"].sum()


def test_fusion_moves_fewer_outer_level_bytes(small, ceilings):
    plain = workbench.profile(small, batch=1, threads=1, repeats=1, ceilings=ceilings)
    fused = workbench.profile(small, batch=1, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=True)
    assert fused["op"].eq("block").sum() == 17
    assert fused["flops"].sum() == plain["flops"].sum()
    assert fused["bytes_L3"].sum() < plain["bytes_L3"].sum()
    # at this size the activations stay in L3 between steps, so DRAM sees only weights: equal at most
    assert fused["bytes_DRAM"].sum() <= plain["bytes_DRAM"].sum()
    assert fused[fused.op == "block"]["ai_L3"].median() > plain[plain.op == "expand"]["ai_L3"].median()


@pytest.mark.parametrize("kwargs,match", [(dict(batch=0), "batch"), (dict(repeats=0), "repeats"),
                                          (dict(threads=99), "threads"), (dict(batch=2.5), "batch")])
def test_bad_arguments_are_rejected(small, ceilings, kwargs, match):
    with pytest.raises(ValueError, match=match):
        workbench.profile(small, ceilings=ceilings, **kwargs)
