"""Hardware counters: measured beside modelled where the CPU exposes them, "not available"
(never zeros) where it does not."""
from __future__ import annotations

import numpy as np

import engine
from engine.perf_counters import NOT_AVAILABLE, PerfCounterHook


def test_counter_hook_records_measured_misses_or_says_not_available():
    model = engine.load(engine.zoo.mobilenet_v2(resolution=64, num_classes=10))
    hook = PerfCounterHook()
    recorder = engine.Recorder()
    model.run(np.zeros((1, 3, 64, 64), np.float32), hooks=[recorder, hook])
    assert len(hook.records) == len(recorder.records)
    if hook.available:
        assert all(isinstance(r["llc_misses"], int) and r["llc_misses"] >= 0 for r in hook.records)
        assert sum(r["llc_references"] for r in hook.records) > 0
    else:
        assert NOT_AVAILABLE in hook.reason
        assert all(r["measured"] == NOT_AVAILABLE for r in hook.records)
        assert not any("llc_misses" in r for r in hook.records)   # no zeros passed off as measurements
    hook.close()
