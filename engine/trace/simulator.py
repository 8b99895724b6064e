"""A cache simulation of a plan's steps: their access traces (engine.trace.calls) run in
order through one LRU cache hierarchy (pycachesim), so what a step leaves in cache the next
one finds.

The hierarchy is the machine's (an engine.machine.MachineInfo): each level's usable size
(the effective one where the ceilings probe measured it, as the bytes model counts), line
size and associativity (sysfs; DEFAULT_WAYS where unknown). A level shared by fewer cores
than the run's threads (L1, L2) is one private cache per thread; the others (L3) are one
cache all threads' private levels load from and write back to. Write-back, write-allocate,
LRU, non-inclusive (each level keeps what passed through it). Each thread's share of a
step's work items (split as the kernel splits them) runs through its own private levels,
thread after thread.

Bytes per level, on the model's definitions (engine.traffic):
    L1    the traced loads and stores between registers and L1 (records' register bytes)
    L2    lines L2 delivered to the L1s (their misses, write-allocates and prefetches)
          plus dirty lines the L1s wrote back to it
    L3    the same between the L2s and L3
    DRAM  lines L3 missed (read from memory) plus dirty lines it wrote back
A write-back happens when the dirty line is evicted, so it is charged to the step that
evicts it, which may be a later one (as hardware counters would).

What the simulation does not see (and the model may): hardware prefetchers (only the
kernels' software prefetches are traced), non-temporal stores (the kernels have none),
replacement policies other than LRU, other processes sharing L3, the victim-cache L3 of
AMD CPUs. Addresses are the real buffers', so which sets they map to depends on where the allocator
put them: two simulations of one plan may differ by a few lines (so may two machines). A run
is simulated after `warm_runs` unrecorded runs, so a weight that stays in
L3 from run to run is found there, as in a benchmark's repeated runs.

Speed: the traces are generated in numba and fed record by record to pycachesim's C
functions from a numba loop (`_feed`), no Python object per access; pycachesim's own
Python API (CacheSimulator.load/store) takes one Python call per access or ints only
below 2**32.
"""
from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from cachesim import backend as _cachesim_backend
from cachesim.cache import Cache
from llvmlite import binding as _llvm
from numba import njit, types
from numba.core.typing import signature

from engine.machine import MachineInfo
from engine.trace.calls import kernel_and_arguments, trace_call, untraced_kernel
from engine.trace.layout import trace_copy
from engine.trace.records import LOAD, PREFETCH, STORE, address_of, collect, register_bytes
from engine.traffic import LEVELS

logger = logging.getLogger(__name__)

DEFAULT_WAYS = 16          # associativity where sysfs does not say (a level of unknown ways)
# The traffic StepTraffic.detail splits by direction: across L3 (fills into the L2s, their
# write-backs) and across DRAM (reads, write-backs).
SPLIT = ("L3 read", "L3 write", "DRAM read", "DRAM write")

# pycachesim's C entry points, called from numba: Cache__load(Cache*, addr_range) and
# Cache__store(Cache*, addr_range, int non_temporal). addr_range is {long addr; long
# length}: by value, a 16-byte struct of two integers travels in two integer registers on
# x86-64 and AArch64 (SysV / AAPCS64), the same as two int64 arguments.
_library = ctypes.CDLL(_cachesim_backend.__file__)
_llvm.add_symbol("Cache__load", ctypes.cast(_library.Cache__load, ctypes.c_void_p).value)
_llvm.add_symbol("Cache__store", ctypes.cast(_library.Cache__store, ctypes.c_void_p).value)
_cache_load = types.ExternalFunction("Cache__load", signature(types.int32, types.intp, types.int64, types.int64))
_cache_store = types.ExternalFunction("Cache__store", signature(types.void, types.intp, types.int64, types.int64,
                                                          types.int32))


@njit
def _feed(records, first_level):
    # records (n, 4): address, length, kind, register bytes; first_level: a Cache* (pycachesim)
    for i in range(records.shape[0]):
        kind = records[i, 2]
        if kind == STORE:
            _cache_store(first_level, records[i, 0], records[i, 1], 0)
        elif kind == LOAD or kind == PREFETCH:
            _cache_load(first_level, records[i, 0], records[i, 1])


def feed(records: np.ndarray, first_level: Cache) -> None:
    """Run trace records through a pycachesim hierarchy, starting at `first_level`."""
    if len(records):
        _feed(np.ascontiguousarray(records, np.int64), id(first_level.backend))


@dataclass
class Hierarchy:
    """The simulated caches: per thread its private levels (first level first), and the
    shared ones. `level_of[name]` lists the Cache objects of that level."""

    threads: int
    line_bytes: int
    first_levels: list[Cache]
    level_of: dict[str, list[Cache]]

    @classmethod
    def for_machine(cls, machine: MachineInfo, threads: int) -> "Hierarchy":
        """The hierarchy `threads` threads see on `machine` (see the module docstring)."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        line = max(level.line_bytes for level in machine.caches)
        level_of: dict[str, list[Cache]] = {}
        below: list[Cache | None] = [None] * threads
        for level in reversed(machine.caches):           # last level first: pycachesim links upwards
            ways = level.ways or DEFAULT_WAYS
            sets = max(1, level.usable_bytes // (ways * line))
            private = level.shared_by_cores < threads
            caches = []
            for thread in range(threads if private else 1):
                parent = below[thread]
                caches.append(Cache(f"{level.name}" + (f"/{thread}" if private else ""), sets, ways, line, "LRU",
                                    load_from=parent, store_to=parent))
            level_of[level.name] = caches
            below = caches if private else caches * threads
        return cls(threads, line, below, level_of)

    def run(self, records_by_thread: list[np.ndarray]) -> dict[str, int]:
        """Feed each thread's records in turn (thread t's into its private levels); returns
        the bytes per level (LEVELS) they moved, plus "DRAM read" and "DRAM write"."""
        if len(records_by_thread) != self.threads:
            raise ValueError(f"records for {len(records_by_thread)} threads, hierarchy has {self.threads}")
        before = self.counters()
        registers = 0
        for thread, records in enumerate(records_by_thread):
            registers += register_bytes(records)
            feed(records, self.first_levels[thread])
        after = self.counters()
        return {"L1": registers, **{name: after[name] - before[name] for name in after}}

    def counters(self) -> dict[str, int]:
        """Cumulative traffic per boundary so far, bytes (module docstring): "L2", "L3", "DRAM"."""
        out = {}
        for boundary in ("L2", "L3"):
            out[boundary] = sum(c.backend.LOAD_byte + c.backend.STORE_byte for c in self.level_of[boundary])
        last = self.level_of["L3"]
        out["DRAM"] = sum(c.backend.MISS_count * self.line_bytes + c.backend.EVICT_byte for c in last)
        out["DRAM read"] = sum(c.backend.MISS_count * self.line_bytes for c in last)
        out["DRAM write"] = sum(c.backend.EVICT_byte for c in last)
        out["L3 read"] = sum(c.backend.LOAD_byte for c in last)        # line fills into the L2s
        out["L3 write"] = sum(c.backend.STORE_byte for c in last)      # the L2s' write-backs
        return out


@dataclass
class StepTraffic:
    """One step's simulated traffic: bytes per level (LEVELS), whether it was traced, and
    the seconds its trace and simulation took."""

    name: str
    op: str
    bytes: dict[str, int]
    traced: bool
    seconds: float
    detail: dict = field(default_factory=dict)      # SPLIT: L3 and DRAM bytes by direction


def step_records(step, thread: int, threads: int, input_array: np.ndarray) -> np.ndarray | None:
    """The records of thread `thread`'s share of a plan step, or None for a step that runs
    no traced kernel. `input_array` stands for the caller's input (its address is stable
    from run to run, as a caller reusing one array)."""
    call = step.call
    found = kernel_and_arguments(call)
    if found is not None:
        kernel, args = found
        args = tuple(input_array if a is None else a for a in args)
        return trace_call(kernel, args, thread, threads)
    closure = dict(zip(call.__code__.co_freevars, (cell.cell_contents for cell in call.__closure__ or ())))
    defaults = dict(zip(call.__code__.co_varnames, call.__defaults__ or ()))
    if {"to_planar", "planar", "out"} <= defaults.keys():          # a Flatten of a blocked tensor
        kernel, args = kernel_and_arguments(defaults["to_planar"])
        planar, out = defaults["planar"], defaults["out"]
        copy = collect(trace_copy, address_of(planar), address_of(out), planar.nbytes) if thread == 0 else None
        records = trace_call(kernel, args, thread, threads)
        return records if copy is None else np.concatenate([records, copy])
    if "input_buffer" in closure:                                  # the caller's batch copied in
        buffer = closure["input_buffer"]
        if thread:
            return np.empty((0, 4), np.int64)
        return collect(trace_copy, address_of(input_array), address_of(buffer), buffer.nbytes)
    return None


def simulate_plan(plan, machine: MachineInfo | None = None, threads: int | None = None, warm_runs: int = 1,
                  progress: Callable[[int, int, str], None] | None = None) -> list[StepTraffic]:
    """Simulated bytes per level of each of `plan`'s steps (an engine.plan.Plan), in order.

    machine: the caches to simulate (default: the plan's config.machine); threads: how many
    threads share the work (default: the plan's config.threads); warm_runs: unrecorded runs
    first. progress(done, total, step name) is called after each step simulated, the warm
    runs' included (total = (warm_runs + 1) * steps)."""
    untraced = [(step.name, step.op, kernel) for step in plan.steps
                if (kernel := untraced_kernel(step.call)) is not None]
    if untraced:
        shown = ", ".join(f"{name!r} ({op}: {kernel})" for name, op, kernel in untraced[:4])
        raise ValueError(f"the cache simulation has no access trace for {len(untraced)} step(s) of this plan: {shown}"
                         f"{' ...' if len(untraced) > 4 else ''}; simulated bytes cover the kernels of "
                         "engine.trace.calls.TRACERS (use the modelled bytes for this model)")
    machine = machine or plan.config.machine
    threads = threads or plan.config.threads
    hierarchy = Hierarchy.for_machine(machine, threads)
    input_shape = next((s.input_shape for s in plan.steps if s.op in ("stem", "conv", "layout")), None)
    input_array = np.empty(input_shape if plan.input_buffer is None else plan.input_buffer.shape, np.float32)
    started = time.perf_counter()
    total = (warm_runs + 1) * len(plan.steps)
    for run in range(warm_runs):
        for index, step in enumerate(plan.steps):
            for thread in range(threads):
                records = step_records(step, thread, threads, input_array)
                if records is not None:
                    feed(records, hierarchy.first_levels[thread])
            if progress is not None:
                progress(run * len(plan.steps) + index + 1, total, step.name)
    results = []
    for index, step in enumerate(plan.steps):
        step_started = time.perf_counter()
        records = [step_records(step, thread, threads, input_array) for thread in range(threads)]
        traced = all(r is not None for r in records)
        moved = hierarchy.run(records) if traced else {name: 0 for name in (*LEVELS, *SPLIT)}
        results.append(StepTraffic(step.name, step.op, {level: int(moved[level]) for level in LEVELS}, traced,
                                   time.perf_counter() - step_started, {name: int(moved[name]) for name in SPLIT}))
        if progress is not None:
            progress(warm_runs * len(plan.steps) + index + 1, total, step.name)
    logger.info("simulated %d steps on %d thread(s) in %.1f s", len(plan.steps), threads,
                time.perf_counter() - started)
    return results
