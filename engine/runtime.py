"""The runtime: turns a built Plan and an input batch into the output, one kernel call per
step. Everything it runs was decided when the plan was built (engine.plan); here are only
the run lock, numba's thread count, the pause of Python's collector, and the hooks.

    output = run(plan, x, threads=2, hooks=(recorder,), run_index=1)
"""
from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from typing import Callable

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

from engine.hooks import LayerRecord, RunInfo
from engine.plan import Plan

REENTRANT_RUN_MESSAGE = (
    "Model.run was called while a run is in progress on this same thread (from a hook or a "
    "callback of that run): the engine runs one batch at a time, so this call would wait for "
    "itself forever. Keep what the hook needs and run after the outer run has returned.")


class RunLock:
    """A process-wide lock around every run, that refuses re-entry from the thread holding it.

    Runs share plan buffers and numba's thread pool, so they go one at a time: callers on
    other threads wait their turn. A run started on the thread that holds the lock (from
    a hook of the running one) would wait for itself forever; `with` raises RuntimeError
    there instead. (threading.RLock would let it in, and the inner run would overwrite
    the outer one's buffers.)"""

    def __init__(self):
        self._lock = threading.Lock()
        self._holder = threading.local()

    def __enter__(self):
        if getattr(self._holder, "active", False):
            raise RuntimeError(REENTRANT_RUN_MESSAGE)
        self._lock.acquire()
        self._holder.active = True
        return self

    def __exit__(self, *exc_info):
        self._holder.active = False
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


# numba's default (workqueue) threading layer must not be entered from two Python
# threads at once: every run in this process takes this lock, so concurrent callers queue.
RUN_LOCK = RunLock()


class CollectorPaused:
    """`with CollectorPaused():` -- Python's cyclic garbage collector waits while the kernels
    run: a full collection of a process with numba loaded (every compiled function's
    objects) is long against a batch-1 run and would otherwise land inside one now and
    then. It runs at the next allocation after the run instead; the collector is left as
    found. A plain class: a generator-based context manager costs more when the
    interpreter's caches are cold after a run (bench/README.md, "cold Python around a run")."""

    __slots__ = ("collecting",)

    def __enter__(self):
        self.collecting = gc.isenabled()
        if self.collecting:
            gc.disable()

    def __exit__(self, *exc_info):
        if self.collecting:
            gc.enable()


def numba_threads() -> int:
    """numba.get_num_threads() for the calling thread. Once numba's threads are running,
    read straight from the threading layer (the ctypes getter numba.get_num_threads
    itself ends with): the public function first takes two initialisation locks, which
    is slow when the interpreter's caches are cold after a run. Falls
    back to the public function before the threads start or if numba's internals differ."""
    getter = getattr(_numba_parallel, "_get_num_threads", None)
    if getter is not None and getattr(_numba_parallel, "_is_initialized", False):
        threads = getter()
        if threads > 0:
            return threads
    return numba.get_num_threads()


def run(plan: Plan, x: np.ndarray, threads: int, hooks: tuple = (), run_index: int = 0) -> np.ndarray:
    """Run `plan` on `x` (float32 (N, C, H, W) of the plan's batch, already checked) with
    `threads` numba threads; returns the output, a new array. With hooks, each step is
    timed and every hook sees one LayerRecord per step (after the last step) and the
    run's start and end (RunInfo with `run_index`)."""
    with RUN_LOCK:
        previous_threads = numba_threads()
        if previous_threads != threads:
            numba.set_num_threads(threads)
        io = plan.io
        io["input"] = x if x.flags.c_contiguous and x.dtype.isnative else np.ascontiguousarray(x, np.float32)
        try:
            if hooks:
                run_hooked(plan, hooks, run_index)
            else:
                with CollectorPaused():
                    for step in plan.steps:
                        step.call()
            return io["output"]
        finally:
            io["input"] = io["output"] = None     # keep no reference to the caller's arrays
            if previous_threads != threads:
                numba.set_num_threads(previous_threads)


def run_hooked(plan: Plan, hooks, run_index: int) -> None:
    """Run with one timestamp between consecutive steps; records are built and handed to
    the hooks after the last step, so the hooks cost the timed steps nothing."""
    config = plan.config
    info = RunInfo(run_index=run_index, batch=plan.batch, threads=config.threads, tiles=config.tiles.default.as_dict(),
                   fused=config.fuse_blocks, steps=len(plan.steps))
    for hook in hooks:
        start = getattr(hook, "on_run_start", None)
        if start is not None:
            start(info)
    clock = time.perf_counter
    steps = plan.steps
    stamps = [0.0] * (len(steps) + 1)
    with CollectorPaused():
        stamps[0] = clock()
        for index, step in enumerate(steps):
            step.call()
            stamps[index + 1] = clock()
    batch, threads = plan.batch, config.threads
    make = LayerRecord._make
    callbacks = [hook.on_layer for hook in hooks]
    for index, step in enumerate(steps):
        name, op, input_shape, output_shape, tiles, fused, flops, other_flops, moved, members, tile_fields = \
            step.record_fields
        record = make((run_index, index, name, op, input_shape, output_shape, batch, threads, tiles, fused,
                       stamps[index + 1] - stamps[index], flops, other_flops, moved, members, tile_fields))
        for on_layer in callbacks:
            on_layer(record)
    end_info = RunInfo(**{**info.__dict__, "seconds": stamps[-1] - stamps[0]})
    for hook in hooks:
        end = getattr(hook, "on_run_end", None)
        if end is not None:
            end(end_info)


class PlanCache:
    """The last `size` plans of a model by (batch, RunConfig), least recently used evicted.
    Shared by threads: its lock is held while a plan is looked up or built, never while one
    runs. `on_evict(plan)` is told of each plan dropped."""

    def __init__(self, size: int, on_evict: Callable[[Plan], None] = lambda plan: None):
        self.size = size
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._lock = threading.Lock()
        self._on_evict = on_evict

    def get(self, key: tuple, build: Callable[[], Plan]) -> Plan:
        """The plan cached under `key`, or `build()`'s, cached."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plans[key] = build()
                while len(self._plans) > self.size:
                    _, evicted = self._plans.popitem(last=False)
                    self._on_evict(evicted)
            else:
                self._plans.move_to_end(key)
        return plan

    def values(self) -> list[Plan]:
        with self._lock:
            return list(self._plans.values())

    def resize(self, size: int) -> int:
        """Keep at most `size` (>= 1) plans from now on; returns the size before."""
        with self._lock:
            previous, self.size = self.size, max(1, int(size))
            while len(self._plans) > self.size:
                _, evicted = self._plans.popitem(last=False)
                self._on_evict(evicted)
        return previous
