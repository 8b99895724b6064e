"""Model.run's fast path: a repeat of the last plain run skips the argument checks, and
nothing else may change because of it -- every other call is checked as before, results
are the same, the thread count is the one asked for and restored after."""
from __future__ import annotations

import numba
import numpy as np
import pytest

import engine
from engine.zoo import mobilenet_v2

CORES = engine.available_cores()


@pytest.fixture(scope="module")
def model():
    return engine.load(mobilenet_v2(resolution=64, num_classes=10))


@pytest.fixture
def x(model):
    return np.random.default_rng(5).standard_normal((2, *model.input_shape), dtype=np.float32)


def test_repeated_runs_give_the_result_of_a_checked_run(model, x):
    first = model.run(x, threads=CORES)
    assert model._recent is not None                      # this call is now the fast path's
    for _ in range(3):
        np.testing.assert_array_equal(model.run(x, threads=CORES), first)
    # another array of the same shape goes the fast path too and gets its own result (the
    # images swapped; fp32 sums may round differently where a work item spans two images)
    other = x[::-1].copy()
    np.testing.assert_allclose(model.run(other, threads=CORES), first[::-1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(x="float64"), "float32"),
    (dict(threads=True), "threads"),
    (dict(threads=float(CORES)), "threads"),
    (dict(threads=CORES + 1), "threads"),
    (dict(tiles="default"), "tiles"),
    (dict(fuse_blocks="yes"), "fuse_blocks"),
    (dict(x="masked"), "masked"),
    (dict(x="shape"), "C = "),
])
def test_after_a_fast_path_run_every_changed_argument_is_checked_again(model, x, bad, message):
    model.run(x, threads=CORES)
    model.run(x, threads=CORES)                           # fast path
    arguments = dict(x=x, threads=CORES)
    arguments.update(bad)
    if bad.get("x") == "float64":
        arguments["x"] = x.astype(np.float64)
    elif bad.get("x") == "masked":
        arguments["x"] = np.ma.masked_array(x)
    elif bad.get("x") == "shape":
        arguments["x"] = np.zeros((2, 4, *model.input_shape[1:]), np.float32)
    with pytest.raises(ValueError, match=message):
        model.run(**arguments)


def test_other_layouts_tiles_fusion_and_hooks_after_a_fast_path_run_match_their_checked_runs(model, x):
    expected = model.run(x, threads=1, fuse_blocks=False)
    model.run(x, threads=1, fuse_blocks=False)            # fast path armed
    np.testing.assert_array_equal(model.run(np.asfortranarray(x), threads=1, fuse_blocks=False), expected)
    np.testing.assert_array_equal(model.run(x.astype(">f4"), threads=1, fuse_blocks=False), expected)
    recorder = engine.Recorder()
    np.testing.assert_array_equal(model.run(x, threads=1, fuse_blocks=False, hooks=recorder), expected)
    assert len(recorder.records) == len(model.plan(2, 1, fuse_blocks=False).steps)
    tiles = engine.Tiles(pointwise_pixels=16)
    np.testing.assert_allclose(model.run(x, threads=1, tiles=tiles, fuse_blocks=False), expected, rtol=1e-5,
                               atol=1e-5)
    fused = model.run(x, threads=1, tiles=tiles, fuse_blocks=True)
    np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-4)


def test_the_fast_path_runs_on_the_threads_asked_for_and_restores_numbas_setting(model, x, monkeypatch):
    model.run(x, threads=CORES)
    plan = model.plan(2, CORES)
    seen = []
    real = plan.steps[0].call

    def spying():
        seen.append(numba.get_num_threads())
        real()
    monkeypatch.setattr(plan.steps[0], "call", spying)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        model.run(x, threads=CORES)                       # fast path, numba set to 1 meanwhile
        assert seen == [CORES] and numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_the_fast_path_does_not_keep_an_evicted_plan_alive(model, x):
    model.run(x, threads=1)
    assert model._recent is not None
    recent_plan = model._recent.plan
    for batch in (3, 4, 5, 6, 7):                         # more plans than the cache holds
        model.run(np.zeros((batch, *model.input_shape), np.float32), threads=1, hooks=[engine.Recorder()])
    assert recent_plan not in model._plans.values()
    assert model._recent is None
