"""Compiles the engine's kernels and access tracers into numba's on-disk cache, at the lane
width of its environment ($ROOFLINE_LANES), in a low-priority process of its own: started
by tests/conftest.py at the start of a session, so on a cold cache (a clean clone) the
compiling runs on the second core beside the first tests, and the tests that call a kernel
later load it from the cache instead of compiling it themselves. conftest starts it at
niceness 19 (every thread of it), so it takes only CPU time the tests leave idle.

It only fills the cache: no test relies on it (a kernel it has not reached yet is compiled
by the test that calls it, as without it), and it checks nothing. The biggest compiles come
first (the fused blocks, the networks' kernels), the access tracers last.

By hand:  .venv/bin/python -m tests.warm_kernels       (ROOFLINE_LANES=8 for the other width)
With a process id as its argument it stops, between networks, once that process is gone.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import engine  # (engine first: it sets numba's environment)
from engine import zoo

RESOLUTION = 32           # the smallest input every network takes with all its layers: compiles are per type, not shape


def _networks():
    """(name, model proto) of every kind of network the suite runs: each kernel kind and
    activation, fused and not."""
    yield "efficientnet_b0", zoo.efficientnet_b0(resolution=RESOLUTION, num_classes=10, width_mult=0.25)
    yield "mobilenet_v3_small", zoo.mobilenet_v3_small(resolution=RESOLUTION, num_classes=10, width_mult=0.5)
    yield "mobilenet_v2", zoo.mobilenet_v2(0.35, RESOLUTION, 10)
    yield "mobilenet_v3_large", zoo.mobilenet_v3_large(resolution=RESOLUTION, num_classes=10, width_mult=0.35)
    yield "resnet18", zoo.resnet18(resolution=RESOLUTION, num_classes=10)
    yield "resnet50", zoo.resnet50(resolution=RESOLUTION, num_classes=10)
    yield "mobilenet_v1", zoo.mobilenet_v1(0.25, RESOLUTION, 10)


def _parent_gone(parent: int | None) -> bool:
    """Whether the process `parent` (the pytest session that started this one) has ended."""
    if parent is None:
        return False
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return os.getppid() != parent


def main(argv: list[str]) -> int:
    parent = int(argv[0]) if argv else None
    started = time.monotonic()
    models = []
    for name, proto in _networks():
        if _parent_gone(parent):
            return 0
        model = engine.load(proto)
        x = np.zeros((2, *model.input_shape), np.float32)
        for fuse_blocks in (True, False):
            model.run(x, threads=min(2, engine.available_cores()), fuse_blocks=fuse_blocks)
        models.append((name, model))
        print(f"{name}: kernels ready at {time.monotonic() - started:.1f} s", flush=True)
    from engine.trace.simulator import simulate_plan

    for name, model in models:
        if _parent_gone(parent):
            return 0
        for fuse_blocks in (True, False):
            simulate_plan(model.plan(1, fuse_blocks=fuse_blocks), warm_runs=0)
        print(f"{name}: tracers ready at {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
