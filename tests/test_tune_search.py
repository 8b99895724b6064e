"""engine.tune's search: one run measures a choice of every unit of a stage (each on its own
step's or block's seconds), a choice wins only by more than its spread, the budget holds.

A small MobileNetV2 (64x64 input); where the test needs known timings, the session's run is
replaced by one that makes each unit's seconds a function of the schedule it is given."""
from __future__ import annotations

import importlib
import random
import time

import numpy as np
import pytest

import engine
from engine.tiles import TileSchedule
from engine.zoo import mobilenet_v2

tuner = importlib.import_module("engine.tune")     # (engine.tune is the function)

pytestmark = pytest.mark.lanes      # candidates depend on the lane width


@pytest.fixture(scope="module")
def model():
    return engine.load(mobilenet_v2(resolution=64, num_classes=10))


@pytest.fixture
def session(model):
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)
    session = tuner._Session(model, x, 1, False, None)
    yield session
    session.close()


def test_one_round_runs_each_slot_once_and_measures_every_choice_of_every_step(session):
    schedule = session.starting_schedule()
    units = session.units(schedule, "steps")
    assert len(units) > 10 and {unit.kind for unit in units} >= {"pointwise", "depthwise"}
    slots = max(len(unit.choices) for unit in units)
    before = session.runs
    samples, rounds = session.measure(schedule, units, 1, time.perf_counter() + 60, random.Random(0))
    assert rounds == 1 and session.runs - before == slots
    assert sum(len(unit.choices) for unit in units) > 3 * slots      # one run carries many steps' choices
    for unit in units:
        assert [len(s) >= 1 for s in samples[unit.key]] == [True] * len(unit.choices), unit.name
        assert sum(len(s) for s in samples[unit.key]) == slots      # the current setting fills the spare slots
        assert all(v > 0 for s in samples[unit.key] for v in s)


def test_each_unit_gets_the_choice_that_is_fastest_on_its_own_seconds(session, monkeypatch):
    """Fake seconds: a unit runs 1 ms under its last choice, 2 ms under any other, whatever
    the other units run: every unit, measured in the same runs, is set to its last choice."""
    schedule = session.starting_schedule()
    units = session.units(schedule, "steps") + session.units(schedule, "blocks")
    fast = {unit.key: tuner._apply(TileSchedule(), unit.name, unit.choices[-1]) for unit in units}

    def fake_run(candidate):
        session.runs += 1
        seconds = {"<run>": 0.01}
        for unit in units:
            mine = fast[unit.key]
            same = candidate.tiles_for(unit.name) == mine.tiles_for(unit.name)
            if unit.kind == "block":
                same = same and candidate.fused_for(unit.name) == mine.fused_for(unit.name)
            seconds[unit.key] = (1e-3 if same else 2e-3) * (1 + 0.01 * random.random())
        return seconds
    monkeypatch.setattr(session, "run", fake_run)
    for stage in ("steps", "blocks"):
        stage_units = session.units(schedule, stage)
        samples, _ = session.measure(schedule, stage_units, 3, time.perf_counter() + 60, random.Random(1))
        trials: list = []
        tuned = tuner._decide(session, schedule, stage_units, samples, trials, stage)
        for unit in stage_units:
            assert tuned.tiles_for(unit.name) == fast[unit.key].tiles_for(unit.name), unit.name
        assert sum(row["chosen"] for row in trials) == len(stage_units)
        assert {row["repeats"] for row in trials} >= {3}


def test_a_choice_wins_only_by_more_than_its_spread():
    current = [1.00, 1.01, 0.99, 1.00, 1.02]
    assert tuner._winner([current, [0.90, 0.91, 0.89, 0.90, 0.92]]) == 1          # clearly faster
    assert tuner._winner([current, [0.98, 0.99, 0.97, 0.98, 0.99]]) == 1          # 2 % faster, 1 % spread
    assert tuner._winner([current, [0.80, 1.20, 0.97, 0.60, 1.30]]) == 0          # faster median, wider spread
    assert tuner._winner([current, [1.10, 1.10, 1.10, 1.10, 1.10]]) == 0
    assert tuner._winner([current, [0.5], []]) == 1                                 # an unmeasured choice never wins


def test_the_tuner_keeps_its_budget_and_searches_every_stage_of_a_small_model(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    x = np.zeros((2, *model.input_shape), np.float32)
    for fused in (True, False):                      # the budget assumes compiled kernels
        model.run(x, fuse_blocks=fused)
    result = engine.tune(model, batch=2, threads=1, budget_s=3, repeats=3, save=False)
    assert result.seconds <= 3 * 1.1 + 0.3
    stages = {row["stage"] for row in result.trials}
    assert stages == {"fusion", "blocks", "steps"}, result.stopped
    assert result.runs < len(result.trials)          # fewer whole runs than choices measured
    assert not list(tmp_path.iterdir())              # save=False: nothing cached


def test_a_tiny_budget_stops_before_a_stage_it_cannot_afford_and_says_so(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    result = engine.tune(model, batch=1, threads=1, budget_s=0.05, repeats=3, save=False)
    assert result.seconds <= 0.05 + 1.0                 # the start and the final comparison only
    assert result.stopped and "budget of 0.05 s" in result.stopped


def test_the_sessions_plans_share_one_arena_and_compute_what_model_run_does(model, session, monkeypatch):
    """The tuner's plans (one arena for all, no bytes walk) give model.run's outputs, and a
    new plan allocates no arena of its own."""
    from engine import runtime

    start = session.starting_schedule()                 # (allocates the arena)
    allocated = []
    real = tuner.aligned_empty
    monkeypatch.setattr(tuner, "aligned_empty", lambda n: allocated.append(n) or real(n))
    other = start.with_step(session.units(start, "steps")[0].name, engine.Tiles(pointwise_pixels=16))
    x = session.x
    for schedule in (start, other, start):
        got = runtime.run(session.plan(schedule), x, 1).copy()
        np.testing.assert_allclose(got, model.run(x, threads=1, tiles=schedule, fuse_blocks=False),
                                   rtol=1e-5, atol=1e-6)
    assert session.plan(start) is not session.plan(other) and allocated == []
