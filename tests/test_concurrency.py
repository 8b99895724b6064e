"""Runs from several Python threads at once, hooks that call back into the engine, and an
Explorer whose controls change while it measures: the engine queues or refuses with a
message, and never crashes, deadlocks or mixes up results.

Every multi-threaded test runs its threads as daemons and joins them with a timeout, so a
deadlock fails the test (naming the threads still waiting) instead of hanging the suite.
Results are compared bit for bit with the same configuration run alone on one thread: the
kernels are deterministic for a given (batch, threads, tiles, fusion), so a race that
overwrote a shared buffer would show as a difference.
"""
from __future__ import annotations

import random
import threading
import time

import numba
import numpy as np
import pandas as pd
import pytest

import engine
from engine.zoo import mobilenet_v2
from workbench import widgets as widgets_module
from workbench.widgets import Explorer
from conftest import hand_made_ceilings

CORES = engine.available_cores()
DEADLOCK_SECONDS = 120.0        # far above the few seconds any of these tests needs

# (batch, threads, tiles, fuse_blocks): six configs, more than a model's plan cache holds
# (4), so plans are also evicted and rebuilt while other threads run.
CONFIGS = [
    (1, 1, engine.Tiles(), False),
    (3, CORES, engine.Tiles(pointwise_pixels=16, depthwise_rows=3), False),
    (2, 1, engine.Tiles(pointwise_channels=32), True),
    (4, CORES, engine.Tiles(block_rows=2), True),
    (1, CORES, engine.Tiles(pointwise_pixels=128, pointwise_channels=48, depthwise_rows=1), False),
    (2, CORES, engine.Tiles(), False),
]


@pytest.fixture(scope="module")
def model():
    return engine.load(mobilenet_v2(resolution=64, num_classes=10))


@pytest.fixture(scope="module")
def other_model():
    return engine.load(mobilenet_v2(width_mult=0.5, resolution=96, num_classes=7))


def _inputs(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {batch: rng.standard_normal((batch, *model.input_shape), dtype=np.float32)
            for batch in sorted({config[0] for config in CONFIGS})}


def _serial_results(model, inputs):
    """What each config gives run alone, twice (the second must equal the first)."""
    results = []
    for batch, threads, tiles, fuse in CONFIGS:
        first = model.run(inputs[batch], threads=threads, tiles=tiles, fuse_blocks=fuse)
        np.testing.assert_array_equal(model.run(inputs[batch], threads=threads, tiles=tiles, fuse_blocks=fuse), first)
        results.append(first)
    return results


def run_threads(targets, timeout: float = DEADLOCK_SECONDS) -> None:
    """Start one daemon thread per callable, all at once; fail if any is still running
    after `timeout` s (a deadlock) and re-raise the first exception one of them raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target):
        def body():
            try:
                start.wait(timeout)
                target()
            except BaseException as error:        # noqa: BLE001 - handed to the test thread
                errors.append(error)
        return body

    threads = [threading.Thread(target=wrap(t), daemon=True, name=f"worker-{i}") for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"deadlock: {stuck} still running after {timeout:.0f} s"
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------- Model.run from many threads

def test_threads_running_one_model_at_once_each_get_the_single_threaded_result_bit_for_bit(model):
    inputs = _inputs(model)
    expected = _serial_results(model, inputs)
    threads_before = numba.get_num_threads()
    workers, runs_each = 4, 4
    outcomes: list[tuple[int, np.ndarray, engine.Recorder | None]] = []
    lock = threading.Lock()

    def worker(offset: int):
        def body():
            for run in range(runs_each):
                index = (offset + run) % len(CONFIGS)
                batch, threads, tiles, fuse = CONFIGS[index]
                recorder = engine.Recorder() if run % 2 else None
                got = model.run(inputs[batch], threads=threads, tiles=tiles, fuse_blocks=fuse,
                                hooks=[recorder] if recorder is not None else ())
                with lock:
                    outcomes.append((index, got, recorder))
        return body

    run_threads([worker(offset) for offset in range(workers)])
    assert len(outcomes) == workers * runs_each
    for index, got, recorder in outcomes:
        np.testing.assert_array_equal(got, expected[index], err_msg=f"config {CONFIGS[index]}")
        if recorder is not None:          # a hook sees its own run only
            batch, threads, tiles, fuse = CONFIGS[index]
            assert len(recorder.runs) == 1 and recorder.runs[0].steps == len(recorder.records)
            assert {(r.batch, r.threads, r.run_index) for r in recorder.records} == {
                (batch, threads, recorder.runs[0].run_index)}
            assert all(r.tiles == tiles.as_dict() for r in recorder.records)
    assert len({id(got) for _, got, _ in outcomes}) == len(outcomes)      # every caller its own array
    assert numba.get_num_threads() == threads_before


def test_two_models_used_from_two_threads_each_match_their_single_threaded_results(model, other_model):
    inputs = {m: _inputs(m, seed) for seed, m in enumerate((model, other_model))}
    expected = {m: _serial_results(m, inputs[m]) for m in (model, other_model)}
    mismatches = []

    def worker(m):
        def body():
            for run in range(5):
                index = run % len(CONFIGS)
                batch, threads, tiles, fuse = CONFIGS[index]
                got = m.run(inputs[m][batch], threads=threads, tiles=tiles, fuse_blocks=fuse)
                if not np.array_equal(got, expected[m][index]):
                    mismatches.append((m, index))
        return body

    run_threads([worker(model), worker(other_model), worker(model), worker(other_model)])
    assert mismatches == []


def test_plans_requested_from_many_threads_while_others_run_stay_consistent(model):
    """Model.plan (public, also used by analysis code outside a run) shares the plan cache
    with running threads: lookups, builds and evictions from several threads at once."""
    inputs = _inputs(model)
    expected = _serial_results(model, inputs)
    mismatches = []

    def planner():
        for run in range(20):
            batch, threads, tiles, fuse = CONFIGS[run % len(CONFIGS)]
            plan = model.plan(batch, threads, tiles, fuse)
            assert plan.batch == batch and plan.config.threads == threads and plan.config.tiles.default == tiles

    def runner():
        for run in range(5):
            index = (run * 5) % len(CONFIGS)
            batch, threads, tiles, fuse = CONFIGS[index]
            if not np.array_equal(model.run(inputs[batch], threads=threads, tiles=tiles, fuse_blocks=fuse),
                                  expected[index]):
                mismatches.append(index)

    run_threads([planner, planner, runner, runner])
    assert mismatches == []


# ---------------------------------------------------------------------------- hooks

class _CallsRunFromOnLayer:
    """A hook that runs a model from inside a run: once, or every layer."""

    def __init__(self, target, x, catch: bool = False):
        self.target, self.x, self.catch = target, x, catch
        self.errors: list[BaseException] = []

    def on_layer(self, record):
        try:
            self.target.run(self.x)
        except RuntimeError as error:
            if not self.catch:
                raise
            self.errors.append(error)


def _in_a_thread(function, timeout: float = DEADLOCK_SECONDS):
    """function() on a daemon thread; its result or exception, or a deadlock failure."""
    box: dict = {}

    def body():
        try:
            box["result"] = function()
        except BaseException as error:            # noqa: BLE001
            box["error"] = error

    run_threads([body], timeout)
    return box


@pytest.mark.parametrize("same_model", [True, False])
def test_a_hook_that_runs_the_engine_again_gets_a_clear_error_not_a_deadlock(model, other_model, same_model):
    x = _inputs(model)[1]
    target = model if same_model else other_model
    inner_x = x if same_model else _inputs(other_model)[1]
    box = _in_a_thread(lambda: model.run(x, hooks=[_CallsRunFromOnLayer(target, inner_x)]))
    assert isinstance(box.get("error"), RuntimeError), box
    assert "while a run is in progress on this same thread" in str(box["error"])
    # nothing was left locked or half-written: both models run normally afterwards
    np.testing.assert_array_equal(model.run(x), model.run(x.copy()))
    assert other_model.run(_inputs(other_model)[1]).shape == (1, 7)


def test_a_hook_that_catches_the_refusal_leaves_its_run_intact(model):
    x = _inputs(model)[2]
    expected = model.run(x, threads=1)
    hook = _CallsRunFromOnLayer(model, x[:1], catch=True)
    box = _in_a_thread(lambda: model.run(x, threads=1, hooks=hook))
    np.testing.assert_array_equal(box["result"], expected)
    assert hook.errors and all(isinstance(e, RuntimeError) for e in hook.errors)


def test_a_hook_that_runs_the_engine_at_run_start_is_refused_too(model):
    x = _inputs(model)[1]

    class StartHook:
        def on_run_start(self, info):
            model.run(x)

        def on_layer(self, record):
            pass

    box = _in_a_thread(lambda: model.run(x, hooks=[StartHook()]))
    assert isinstance(box.get("error"), RuntimeError)
    assert model.run(x).shape == (1, 10)


def test_a_run_from_another_thread_waits_for_a_slow_hook_then_gets_its_own_result(model):
    """Queueing: while a hook of thread A's run blocks, thread B's run waits (it does not
    enter the engine and clobber A's buffers); once A ends, B runs and both are right."""
    inputs = _inputs(model)
    expected_a = model.run(inputs[2], threads=1)
    expected_b = model.run(inputs[3], threads=CORES, tiles=engine.Tiles(pointwise_pixels=16))
    in_hook, release = threading.Event(), threading.Event()
    b_done = threading.Event()
    results = {}

    class SlowHook:
        def on_layer(self, record):
            if record.step_index == 3:
                in_hook.set()
                assert release.wait(DEADLOCK_SECONDS)

    def thread_a():
        results["a"] = model.run(inputs[2], threads=1, hooks=[SlowHook()])

    def thread_b():
        assert in_hook.wait(DEADLOCK_SECONDS)
        results["b"] = model.run(inputs[3], threads=CORES, tiles=engine.Tiles(pointwise_pixels=16))
        b_done.set()

    def referee():
        assert in_hook.wait(DEADLOCK_SECONDS)
        time.sleep(0.3)
        results["b_finished_while_a_held_the_engine"] = b_done.is_set()
        release.set()

    run_threads([thread_a, thread_b, referee])
    assert results["b_finished_while_a_held_the_engine"] is False
    np.testing.assert_array_equal(results["a"], expected_a)
    np.testing.assert_array_equal(results["b"], expected_b)


# ---------------------------------------------------------------------------- the Explorer

@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture
def explorer(model, ceilings):
    return Explorer(model, ceilings=ceilings, threads=1, repeats=1)


@pytest.fixture
def gated_profile(monkeypatch):
    """workbench.profile as the Explorer calls it, but the first call waits at a gate:
    `entered` is set once it is inside, and it goes on when `release` is set."""
    real = widgets_module.profile
    state = {"calls": [], "entered": threading.Event(), "release": threading.Event()}

    def gated(*args, **kwargs):
        state["calls"].append(kwargs)
        if len(state["calls"]) == 1:
            state["entered"].set()
            assert state["release"].wait(DEADLOCK_SECONDS)
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets_module, "profile", gated)
    return state


def _frame_config(frame: pd.DataFrame) -> dict:
    tiles = {name: int(frame[name].iloc[0]) for name in engine.Tiles().as_dict()}
    return {"batch": int(frame["batch"].iloc[0]), "threads": int(frame["threads"].iloc[0]), **tiles}


def _control_config(explorer) -> dict:
    config = explorer.config()
    return {"batch": config["batch"], "threads": config["threads"], **config["tiles"].as_dict()}


def test_control_changes_during_a_measurement_are_queued_with_a_message_and_measured_once_after(
        explorer, gated_profile):
    results = {}

    def measure():
        results["run"] = explorer.run()

    def change_controls():
        assert gated_profile["entered"].wait(DEADLOCK_SECONDS)
        explorer.controls["pointwise_pixels"].value = 32            # the callback fires on this thread
        results["message"] = explorer.message.value
        results["calls_while_busy"] = len(gated_profile["calls"])
        explorer.controls["depthwise_rows"].value = 8               # a second change: still one re-measure
        explorer.set(batch=2)                                       # set() queues as well
        gated_profile["release"].set()

    run_threads([measure, change_controls])
    assert "busy" in results["message"] and "will be measured when it ends" in results["message"]
    assert results["calls_while_busy"] == 1                        # nothing entered the engine meanwhile
    assert len(gated_profile["calls"]) == 2                        # the first run plus one coalesced re-measure
    assert _frame_config(explorer.profile) == _control_config(explorer)
    assert _control_config(explorer)["pointwise_pixels"] == 32 and _control_config(explorer)["batch"] == 2
    assert results["run"] is explorer.profile                      # run() returns the last measurement
    assert explorer.message.value == "" and not explorer.run_button.disabled
    assert explorer.progress.bar_style == "success"


def test_a_level_change_during_a_measurement_is_drawn_when_it_ends(explorer, gated_profile):
    def measure():
        explorer.run()

    def change_level():
        assert gated_profile["entered"].wait(DEADLOCK_SECONDS)
        explorer.controls["level"].value = "L3"
        gated_profile["release"].set()

    run_threads([measure, change_level])
    assert len(gated_profile["calls"]) == 1                        # a level change never measures
    assert "L3" in explorer.figure.layout.xaxis.title.text and "bound at L3" in explorer.layers.header.value


def test_a_control_changed_from_inside_the_measurement_itself_is_queued_not_deadlocked(explorer, monkeypatch):
    """Like a slow hook that touches the panel: the change happens on the measuring thread,
    while it holds the Explorer's lock; a blocking lock would deadlock here."""
    real = widgets_module.profile
    calls = []

    def touching(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            explorer.controls["pointwise_channels"].value = 32
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets_module, "profile", touching)
    box = _in_a_thread(explorer.run)
    assert "error" not in box, box
    assert len(calls) == 2
    assert _frame_config(explorer.profile) == _control_config(explorer)
    assert set(explorer.profile["pointwise_channels"]) == {32}


def test_an_explicit_run_or_click_during_a_measurement_is_refused_as_busy(explorer, gated_profile):
    results = {}

    def measure():
        results["first"] = explorer.run()

    def second():
        assert gated_profile["entered"].wait(DEADLOCK_SECONDS)
        results["second"] = explorer.run()
        results["message"] = explorer.message.value
        explorer.run_button.click()
        gated_profile["release"].set()

    run_threads([measure, second])
    assert results["second"] is None and "busy" in results["message"] and "not started" in results["message"]
    assert len(gated_profile["calls"]) == 1
    assert isinstance(results["first"], pd.DataFrame) and explorer.profile is results["first"]


def test_controls_changed_from_two_threads_while_measuring_end_consistent(explorer):
    """Many changes from two threads, each measuring or queueing: no error, and at the end
    the figure's profile was measured with exactly the values the controls show."""
    choices = {"pointwise_pixels": [16, 32, 64, 128], "depthwise_rows": [1, 4, 16],
               "pointwise_channels": [16, 32, 48], "threads": list(range(1, CORES + 1))}

    def changer(seed: int):
        def body():
            rng = random.Random(seed)
            for _ in range(10):
                name = rng.choice(sorted(choices))
                explorer.controls[name].value = rng.choice(choices[name])
                if "unexpected error" in explorer.message.value:
                    raise AssertionError(explorer.message.value)
        return body

    run_threads([changer(1), changer(2)])
    assert "error" not in explorer.message.value, explorer.message.value
    assert _frame_config(explorer.profile) == _control_config(explorer)
    assert not explorer.run_button.disabled and explorer.progress.bar_style == "success"


@pytest.mark.parametrize("with_hooks", [False, True])
def test_the_garbage_collector_waits_while_kernels_run_and_is_restored_after(model, monkeypatch, with_hooks):
    """Model.run pauses Python's cyclic collector across the kernel steps (a full
    collection takes tens of ms) and leaves it as it found it: enabled, disabled, or after
    a step that raised."""
    import gc

    x = _inputs(model)[1]
    step = model.plan(1).steps[0]
    seen = []
    real_call = step.call

    def spying_call():
        seen.append(gc.isenabled())
        real_call()
    monkeypatch.setattr(step, "call", spying_call)
    hooks = [engine.Recorder()] if with_hooks else []
    was_enabled = gc.isenabled()
    try:
        gc.enable()
        model.run(x, hooks=hooks)
        assert seen == [False] and gc.isenabled()
        gc.disable()
        model.run(x, hooks=hooks)
        assert seen == [False, False] and not gc.isenabled()
        gc.enable()

        def failing_call():
            raise RuntimeError("kernel failed")
        monkeypatch.setattr(step, "call", failing_call)
        with pytest.raises(RuntimeError, match="kernel failed"):
            model.run(x, hooks=hooks)
        assert gc.isenabled()
    finally:
        (gc.enable if was_enabled else gc.disable)()
