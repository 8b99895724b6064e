"""workbench.tune: engine.tune under the roofline. The floors it gives the tuner are each
step's roofline bound, and the tuner heeds them; progress reaches the end of each phase;
the default and tuned profiles make one before/after roofline; the cached schedule is
found again (`tuned_schedule`), a missing one is said so.

Hand-made ceilings (conftest) fix the roofs, so what the floors must be does not depend on
this machine; times are measured for real on a small MobileNetV2."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import engine
import workbench
from conftest import hand_made_ceilings
from engine.zoo import mobilenet_v2
from workbench import tuning
from workbench.profile import run_machine

pytestmark = pytest.mark.lanes      # plans and schedule keys depend on the lane width


@pytest.fixture(scope="module")
def model():
    return engine.load(mobilenet_v2(resolution=64, num_classes=10))


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Tuned schedules are cached under tmp_path, not in the repository's data/."""
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    return tmp_path / "schedules"


@pytest.fixture(scope="module")
def tuned(model, ceilings, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROOFLINE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        calls = []
        result = workbench.tune(model, batch=1, threads=1, budget_s=4, ceilings=ceilings, repeats=3,
                                profile_repeats=1, progress=lambda *a: calls.append(a))
        found = tuning.tuned_schedule(model, 1, 1, ceilings)
    return result, calls, found


def _roof_seconds(frame: pd.DataFrame) -> dict[str, float]:
    rows = frame[frame["flops"] > 0]
    return dict(zip(rows["layer"], rows["flops"] / (rows["attainable_gflops"] * 1e9)))


def test_each_floor_is_the_steps_flops_over_its_attainable_roof_the_smaller_where_a_block_shares_a_name(model,
                                                                                                        ceilings):
    floors = tuning.floor_seconds(model, 2, 1, ceilings, run_machine(ceilings))
    # the profile's attainable_gflops is the same rule over the same modelled bytes (no timing involved)
    unfused = _roof_seconds(workbench.profile(model, batch=2, threads=1, fuse_blocks=False, repeats=1, warmup=0,
                                              ceilings=ceilings))
    fused_ops = workbench.profile(model, batch=2, threads=1, fuse_blocks=True, repeats=1, warmup=0, ceilings=ceilings)
    fused = _roof_seconds(fused_ops)
    assert set(floors) == set(unfused)
    blocks = [name for name, op in zip(fused_ops["layer"], fused_ops["op"]) if op == "block"]
    assert len(blocks) == 17 and all(fused[name] > unfused[name] for name in blocks)   # a block: 3 layers' FLOPs
    for name, seconds in floors.items():
        assert seconds == pytest.approx(min(unfused[name], fused.get(name, math.inf)), rel=1e-9), name
        assert type(seconds) is float


def test_the_tuner_leaves_alone_every_step_already_at_its_floor(model, cache):
    """Roofs 10^6 times lower than any machine's: every step's floor is far above its time,
    so no step is searched (no trial), and the schedule is the starting one."""
    slow_machine = hand_made_ceilings(peak_per_thread=1e-4)
    slow_machine.table["value"] = slow_machine.table["value"] * np.where(slow_machine.table["unit"] == "GB/s",
                                                                          1e-6, 1.0)
    result = workbench.tune(model, batch=1, threads=1, budget_s=5, ceilings=slow_machine, repeats=3,
                            profile_repeats=1, progress=False, save=False)
    assert result.result.trials == [] and result.result.stopped is None
    assert result.schedule.overrides == ()
    assert result.changed_steps().empty


def test_tune_measures_candidates_within_its_budget_and_progress_reaches_the_end_of_each_phase(tuned):
    result, calls, _ = tuned
    assert result.result.seconds <= 4 * 1.1 + 0.5
    assert len(result.trials) > 0 and set(result.trials.columns) >= {"step", "candidate", "median_s", "chosen"}
    phases = {}
    for done, total, label in calls:
        phases.setdefault(label.partition(": ")[0], []).append((done, total))
    assert list(phases) == ["blocks", "steps"]
    for steps in phases.values():
        assert steps[-1][0] == steps[-1][1] > 0
        assert [done for done, _ in steps] == sorted(done for done, _ in steps)


def test_the_before_and_after_profiles_run_the_default_and_the_tuned_tiles_on_one_roofline(tuned, model):
    result, _, _ = tuned
    before, after = result.before, result.after
    assert (before[list(engine.Tiles().as_dict())] == pd.Series(engine.Tiles().as_dict())).all().all()
    for row in after.itertuples():
        tiles = result.schedule.tiles_for(row.layer)
        assert (row.pointwise_pixels, row.depthwise_rows, row.block_rows) == \
            (tiles.pointwise_pixels, tiles.depthwise_rows, tiles.block_rows), row.layer
    assert set(after.loc[after["op"] == "block", "layer"]) == {n for n, fused in result.schedule.fused if fused}
    figure = result.figure(level="L2")
    names = [trace.name for trace in figure.data]
    assert "default tiles" in names and "tuned" in names
    assert len(figure.layout.annotations) >= len(after[after["flops"] > 0]) - 2
    changed = result.changed_steps()
    overridden = {name for name, tiles in result.schedule.overrides if tiles != result.schedule.default}
    fusion_changed = {name for name, fused in result.schedule.fused
               if fused != (name in set(before.loc[before["op"] == "block", "layer"]))}
    # (under load the tuner may keep every default: then nothing is listed, and the reverse)
    assert (len(changed) > 0) == bool(overridden or fusion_changed)
    assert set(changed["step"]) <= set(after["layer"]) | overridden


def test_the_tuned_schedule_is_cached_and_found_again_and_a_missing_one_is_said_so(tuned, model, ceilings, cache):
    result, _, found = tuned
    assert found == result.schedule and found.tuned_for == model.schedule_key(1, 1, run_machine(ceilings))
    with pytest.raises(ValueError, match="no tuned schedule for this model at batch 2"):
        tuning.tuned_schedule(model, 2, 1, ceilings)


def test_a_progress_bar_by_default(model, ceilings, cache, monkeypatch):
    bars = []
    real = tuning._ProgressBar

    class Watched(real):
        def __init__(self):
            super().__init__()
            bars.append(self)
    monkeypatch.setattr(tuning, "_ProgressBar", Watched)
    workbench.tune(model, batch=1, threads=1, budget_s=1, ceilings=ceilings, repeats=3, profile_repeats=1, save=False)
    (bar,) = bars
    assert bar.bar.n == bar.bar.total > 0


def test_untuned_keeps_tiles_and_fusion_and_drops_the_mark(tuned):
    result, _, _ = tuned
    plain = result.schedule.untuned()
    assert plain.tuned_for is None
    assert (plain.default, plain.overrides, plain.fused) == (result.schedule.default, result.schedule.overrides,
                                                             result.schedule.fused)



def test_a_dense_conv_is_tried_once_per_work_split_it_really_runs():
    # a strided dense conv widens narrow channel tiles (conv_nchwc.item_channels), so two
    # channel settings can run the same split: the tuner measures each split once
    from engine.tune import _Session
    from new_ops_graphs import resnet_like

    model = engine.load(resnet_like())
    x = np.zeros((1, 3, 32, 32), np.float32)
    session = _Session(model, x, 1, "auto", None)
    try:
        schedule = session.starting_schedule()
        dense = [name for name, kind in session.kinds.items() if kind == "dense"]
        strided = [name for name in dense if max(session.layers[name].attrs["strides"]) > 1]
        assert strided, dense
        for name in dense:
            splits = [session._dense_split(name, choice.tiles) for choice in session.candidates(schedule, name)]
            assert len(splits) == len(set(splits)), (name, splits)
        # the stride-2 3x3 (32 channels): every channel setting runs all 32 channels
        conv = next(name for name in strided if session.layers[name].attrs["kernel_shape"] == (3, 3))
        channels = {split[1] for split in (session._dense_split(conv, c.tiles)
                                           for c in session.candidates(schedule, conv))}
        assert channels == {32}
    finally:
        session.close()
