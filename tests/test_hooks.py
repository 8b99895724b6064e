"""Instrumentation hooks: what a Recorder sees, what a failing hook does, and that a run
without hooks takes no timestamps."""
from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.runtime as engine_runtime
from engine.traffic import LEVELS


@pytest.fixture(scope="module")
def small():
    return engine.load(engine.zoo.mobilenet_v2(resolution=64, num_classes=10))


def _x(batch=1):
    return np.random.default_rng(0).standard_normal((batch, 3, 64, 64), dtype=np.float32)


def test_recorder_gets_one_record_per_step_per_run_with_every_field(small):
    recorder = engine.Recorder()
    small.run(_x(2), threads=1, hooks=[recorder])
    small.run(_x(2), threads=1, hooks=[recorder])
    steps = len(small.plan(2).steps)
    assert len(recorder.records) == 2 * steps and len(recorder.runs) == 2
    record = recorder.records[0]
    for field in ("name", "op", "input_shape", "output_shape", "batch", "threads", "tiles", "fused", "seconds",
                  "flops", "bytes"):
        assert hasattr(record, field)
    assert record.batch == 2 and record.threads == 1 and record.tiles == engine.Tiles().as_dict()
    conv_records = [r for r in recorder.records if r.flops > 0]
    assert conv_records and all(set(r.bytes) == set(LEVELS) for r in conv_records)
    # outward levels move no more than inner ones, but for write-backs: L2 may exceed L1
    # (registers): a stored line is read in before it is written back, and the registers store
    # it once (engine.traffic, "Writes"); L3 may exceed L2 by the earlier steps' dirty lines
    # its fills evict (charged to the step that evicts them: engine.residency), at most one
    # per line it brings into L2
    assert all(2 * r.bytes["L2"] >= r.bytes["L3"] >= r.bytes["DRAM"] >= 0 for r in conv_records)
    assert all(r.bytes["L2"] <= r.bytes["L1"] + 2 * 4 * np.prod(r.output_shape) for r in conv_records)
    assert all(r.bytes["L1"] > 0 for r in conv_records)
    assert all(r.seconds > 0 for r in recorder.records)
    assert [r.run_index for r in recorder.records[:steps]] == [recorder.records[0].run_index] * steps


def test_a_plain_object_with_on_layer_is_a_hook(small):
    class Counter:
        calls = 0

        def on_layer(self, record):
            self.calls += 1

    counter = Counter()
    small.run(_x(), hooks=[counter])
    assert counter.calls == len(small.plan(1).steps)


def test_run_start_and_end_are_called_when_present(small):
    events = []

    class Hook:
        def on_run_start(self, info):
            events.append(("start", info.seconds))

        def on_layer(self, record):
            events.append("layer")

        def on_run_end(self, info):
            events.append(("end", info.seconds))

    small.run(_x(), hooks=[Hook()])
    assert events[0] == ("start", None) and events[-1][0] == "end" and events[-1][1] > 0


def test_a_hook_that_raises_reaches_the_caller_and_leaves_the_model_usable(small):
    x = _x()
    expected = small.run(x)

    class Broken:
        def on_layer(self, record):
            if record.step_index == 3:
                raise RuntimeError("hook failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        small.run(x, hooks=[Broken()])
    np.testing.assert_array_equal(small.run(x), expected)
    recorder = engine.Recorder()
    small.run(x, hooks=[recorder])
    assert len(recorder.records) == len(small.plan(1).steps)


def test_an_object_without_on_layer_is_rejected(small):
    with pytest.raises(ValueError, match="on_layer"):
        small.run(_x(), hooks=[object()])


def test_a_run_without_hooks_takes_no_timestamps(small, monkeypatch):
    class NoClock:
        @staticmethod
        def perf_counter():
            raise AssertionError("a run without hooks read the clock")

    monkeypatch.setattr(engine_runtime, "time", NoClock)
    small.run(_x())                           # would raise if the runtime read the clock
    with pytest.raises(AssertionError, match="read the clock"):
        small.run(_x(), hooks=[engine.Recorder()])


def test_flops_of_the_default_model_sum_to_601_5_mflop(mobilenet):
    recorder = engine.Recorder()
    mobilenet.run(np.zeros((1, 3, 224, 224), np.float32), hooks=[recorder])
    total = sum(r.flops for r in recorder.records)
    assert abs(total - 601.5e6) <= 0.005 * 601.5e6
    # bias, activation, residual and pooling arithmetic are counted apart
    assert sum(r.other_flops for r in recorder.records) > 0
    pool = [r for r in recorder.records if r.op == "pool"]
    assert pool and pool[0].flops == 0 and pool[0].other_flops == 1280 * 7 * 7


def test_a_registered_hook_sees_every_run_until_its_handle_removes_it(small):
    x = np.zeros((1, *small.input_shape), np.float32)
    recorder = engine.Recorder()
    handle = small.register_hook(recorder)
    small.run(x)
    small.run(x)                                   # the same arguments: not the hook-free fast path
    steps = len(small.plan(1).steps)
    assert len(recorder.runs) == 2 and len(recorder.records) == 2 * steps
    other = engine.Recorder()
    small.run(x, hooks=[other])                    # given hooks and registered ones both see the run
    assert len(other.runs) == 1 and len(recorder.runs) == 3
    handle.remove()
    handle.remove()                                # a second remove does nothing
    small.run(x)
    assert len(recorder.runs) == 3
    with small.register_hook(recorder):
        small.run(x)
    small.run(x)
    assert len(recorder.runs) == 4
    with pytest.raises(ValueError, match="on_layer"):
        small.register_hook(object())
