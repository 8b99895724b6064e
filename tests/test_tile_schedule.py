"""Tiles per step (engine.TileSchedule), their persistence, and the tuner (engine.tune)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import engine
from engine import schedules
from engine.passes import find_inverted_residual_blocks
from engine.tiles import Tiles, TileSchedule

pytestmark = pytest.mark.lanes     # plans and their kernels' arguments depend on the lane width


@pytest.fixture(scope="module")
def model():
    return engine.load(engine.zoo.mobilenet_v2(resolution=64, num_classes=10))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).standard_normal((2, 3, 64, 64), dtype=np.float32)


def pointwise_names(model) -> list[str]:
    return [s.name for s in model.plan(2, fuse_blocks=False).steps if s.op in ("expand", "project", "pointwise")]


def block_names(model) -> list[str]:
    return [block[2].name for block in find_inverted_residual_blocks(model.graph)]


# ---------------------------------------------------------------------------- validation

@pytest.mark.parametrize("arguments, match", [
    (dict(default=5), "default"),
    (dict(overrides={"a": 64}), r"overrides\['a'\]"),
    (dict(overrides={"": Tiles()}), "step names"),
    (dict(fused={"a": "yes"}), r"fused\['a'\]"),
    (dict(fused={3: True}), "block names"),
])
def test_a_bad_schedule_is_refused_naming_the_field(arguments, match):
    with pytest.raises(ValueError, match=match):
        TileSchedule(**arguments)


def test_unknown_step_and_block_names_are_refused_when_the_plan_is_built(model, x):
    with pytest.raises(ValueError, match="no step 'conv9'"):
        model.run(x, tiles=TileSchedule(overrides={"conv9": Tiles()}))
    first_pointwise = pointwise_names(model)[0]
    with pytest.raises(ValueError, match="no inverted-residual block"):
        model.run(x, tiles=TileSchedule(fused={first_pointwise + "x": True}))


def test_a_schedule_is_hashable_and_equal_whatever_order_its_entries_came_in():
    one = TileSchedule(Tiles(), {"b": Tiles(block_rows=4), "a": Tiles()}, {"x": True})
    two = TileSchedule(Tiles(), {"a": Tiles(), "b": Tiles(block_rows=4)}, {"x": True})
    assert one == two and hash(one) == hash(two)
    assert one.tiles_for("b").block_rows == 4 and one.tiles_for("zzz") == Tiles()
    assert one.fused_for("x") is True and one.fused_for("y") is None


# ---------------------------------------------------------------------------- per-step tiles

def test_each_step_runs_and_records_its_own_tiles(model, x):
    target = pointwise_names(model)[3]
    schedule = TileSchedule(Tiles(), {target: Tiles(pointwise_pixels=32, pointwise_channels=32)})
    recorder = engine.Recorder()
    got = model.run(x, tiles=schedule, fuse_blocks=False, hooks=[recorder])
    tiles = {record.name: record.tiles for record in recorder.records}
    assert tiles[target]["pointwise_pixels"] == 32 and tiles[target]["pointwise_channels"] == 32
    assert all(t == Tiles().as_dict() for name, t in tiles.items() if name != target)
    plain = model.run(x, fuse_blocks=False)
    np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())


def test_the_schedule_chooses_each_blocks_fusion_over_fuse_blocks(model, x):
    blocks = block_names(model)
    only_one = TileSchedule(fused={blocks[1]: True})
    fused = [s.name for s in model.plan(2, fuse_blocks=False, tiles=only_one).steps if s.fused]
    assert fused == [blocks[1]]
    all_but_one = TileSchedule(fused={blocks[1]: False})
    fused = [s.name for s in model.plan(2, fuse_blocks=True, tiles=all_but_one).steps if s.fused]
    assert fused == [b for b in blocks if b != blocks[1]]
    banded = TileSchedule(overrides={blocks[1]: Tiles(block_rows=3)}, fused={blocks[1]: True})
    step = next(s for s in model.plan(2, fuse_blocks=False, tiles=banded).steps if s.fused)
    assert step.block_rows == 3
    np.testing.assert_allclose(model.run(x, tiles=banded, fuse_blocks=False), model.run(x, fuse_blocks=False),
                               rtol=1e-5, atol=1e-5)


def test_changing_a_steps_tiles_compiles_nothing_new(model, x):
    from engine.kernels import fused_block, pointwise

    model.run(x, fuse_blocks=False)
    before = (len(pointwise._pointwise_kernel.signatures), len(fused_block._fused_block_kernel.signatures))
    name = pointwise_names(model)[2]
    for pixels in (16, 128):
        model.run(x, tiles=TileSchedule(overrides={name: Tiles(pointwise_pixels=pixels)}), fuse_blocks=False)
    block = block_names(model)[2]
    model.run(x, tiles=TileSchedule(overrides={block: Tiles(block_rows=2)}, fused={block: True}), fuse_blocks=False)
    model.run(x, fuse_blocks=True)
    after = (len(pointwise._pointwise_kernel.signatures), len(fused_block._fused_block_kernel.signatures))
    assert after[0] == before[0] and after[1] <= max(before[1], 1)


# ---------------------------------------------------------------------------- persistence

def test_a_schedule_round_trips_through_json_with_its_key(model, tmp_path):
    key = model.schedule_key(2, 1)
    schedule = TileSchedule(Tiles(depthwise_rows=4), {pointwise_names(model)[0]: Tiles(pointwise_pixels=128)},
                            {block_names(model)[0]: True}, tuned_for=key)
    path = schedule.save(tmp_path / "s.json")
    loaded = TileSchedule.load(path)
    assert loaded == schedule and loaded.tuned_for == key
    assert json.loads(path.read_text())["key"]["batch"] == 2


def test_a_schedule_tuned_for_another_batch_threads_or_model_is_refused_by_name(model, x, tmp_path):
    schedule = TileSchedule(tuned_for=model.schedule_key(2, 1))
    model.run(x, threads=1, tiles=schedule)                                  # its own key: fine
    with pytest.raises(ValueError, match="batch 2 .here 1."):
        model.run(x[:1], threads=1, tiles=schedule)
    other = engine.load(engine.zoo.mobilenet_v2(resolution=64, num_classes=10, seed=5))
    with pytest.raises(ValueError, match="model"):
        other.run(x, threads=1, tiles=schedule)
    foreign = schedules.ScheduleKey(model.fingerprint, 2, 1, "Another CPU", 8, "0")
    path = schedules.save(tmp_path / "foreign.json", TileSchedule(), foreign)
    with pytest.raises(ValueError, match="cpu_model 'Another CPU'"):
        model.run(x, threads=1, tiles=TileSchedule.load(path))
    with pytest.raises(ValueError, match="not a readable tile schedule"):
        TileSchedule.load(tmp_path / "missing.json")


def test_tuned_without_a_cached_schedule_runs_the_defaults_and_warns_once(model, x, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(schedules, "_warned", set())
    with pytest.warns(UserWarning, match="no tuned schedule"):
        got = model.run(x, threads=1, tiles="tuned")
    np.testing.assert_array_equal(got, model.run(x, threads=1))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.run(x, threads=1, tiles="tuned")                         # once per key


# ---------------------------------------------------------------------------- the tuner

def test_the_tuner_measures_candidates_keeps_its_budget_and_caches_a_schedule_that_runs_right(model, x, tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    calls = []
    result = engine.tune(model, batch=2, threads=1, budget_s=6, repeats=3, progress=lambda *a: calls.append(a))
    assert result.seconds <= 6 * 1.1 + 0.5
    assert result.trials and {t["kind"] for t in result.trials} >= {"block"}
    for step, kind in {(t["step"], t["kind"]) for t in result.trials}:      # a block and its project share a name
        rows = [t for t in result.trials if (t["step"], t["kind"]) == (step, kind)]
        assert sum(t["chosen"] for t in rows) == 1
        assert all(t["median_s"] > 0 and t["repeats"] >= 1 for t in rows)
    assert calls and calls[-1][0] == calls[-1][1]                      # progress reached the end
    assert result.schedule.tuned_for == model.schedule_key(2, 1)
    assert schedules.cache_path(result.schedule.tuned_for).exists()
    tuned = model.run(x, threads=1, tiles="tuned")
    reference = model.run(x, threads=1)
    np.testing.assert_allclose(tuned, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
    assert result.default_seconds > 0 and result.tuned_seconds > 0


def test_a_tiny_budget_stops_early_and_says_so(model):
    result = engine.tune(model, batch=1, threads=1, budget_s=0.05, repeats=3, save=False)
    assert result.stopped is not None and "budget" in result.stopped


@pytest.mark.parametrize("arguments, match", [(dict(budget_s=0), "budget_s"), (dict(repeats=1), "repeats"),
                                               (dict(threads=0), "threads"), (dict(batch=0), "batch")])
def test_the_tuner_refuses_bad_arguments(model, arguments, match):
    with pytest.raises(ValueError, match=match):
        engine.tune(model, **{"budget_s": 1, **arguments})
