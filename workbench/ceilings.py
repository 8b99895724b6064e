"""Measured machine ceilings: peak fp32 FLOP/s and the bandwidth of each memory level.

    >>> from workbench import measure_ceilings
    >>> ceilings = measure_ceilings()              # cached after the first call
    >>> ceilings.table                             # threads, resource, value, unit
    >>> ceilings.ridge_point("DRAM", threads=2)    # FLOP/byte

The roofs of the roofline figure, measured on this machine with numba kernels
(workbench/_ceiling_kernels.py), for every thread count 1..cores:

- `fp32_fma` (GFLOP/s = 1e9 FLOP/s): FMA_CHAINS independent vector FMA chains per thread,
  held in registers; 2 FLOP per lane per FMA, summed over the threads.
- `L1`, `L2`, `L3`, `DRAM` (GB/s = 1e9 bytes/s): the *triad* a[i] = b[i] + s * c[i],
  each thread streaming its own slice, with a per-thread working set sized for the level
  (see `working_set_bytes`). Bytes counted: 3 streams x 4 bytes per element (two loads
  and a store; the write-allocate read of `a` is not counted, the STREAM convention and
  the convention of the engine's bytes-moved model). Triad is reported rather than a pure
  read because a layer, like a triad, reads inputs and weights and writes outputs; the
  read-only bandwidth is kept beside it in `Ceilings.detail`.

Each value is the best (highest) of several timed samples, every sample at least 20 ms
(quick) or 50 ms (full) of repeated work inside one parallel region: on a shared machine
the best sample is the one least disturbed by other processes. Samples go round-robin over
all (resource, threads) pairs, so a burst of outside load costs one sample of each, not all
of one. The ridge point of a level is peak / bandwidth, in FLOP per byte.

Results are cached as JSON in data/ceilings/ (or $ROOFLINE_DATA_DIR/ceilings, or
`cache_dir`), one file per CPU model, core count, package version and mode. A missing,
unreadable, corrupted, wrongly shaped or stale (other CPU, cores or version) file is
re-measured, with a warning for all but the missing one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import numba
import numpy as np
import pandas as pd

from engine.machine import MachineInfo, machine_info
from workbench import _ceiling_kernels as kernels
from workbench.atomic import atomic_path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PACKAGE_NAME = "roofline-workbench"
MEMORY_LEVELS = ("L1", "L2", "L3", "DRAM")
RESOURCES = ("fp32_fma",) + MEMORY_LEVELS
UNITS = {"fp32_fma": "GFLOP/s", "L1": "GB/s", "L2": "GB/s", "L3": "GB/s", "DRAM": "GB/s"}
TABLE_COLUMNS = ["threads", "resource", "value", "unit"]
DETAIL_COLUMNS = ["threads", "resource", "kernel", "working_set_bytes", "repeats", "samples",
                  "best", "median", "cpu_share", "unit"]
BUSY_CPU_SHARE = 0.9   # below this share of its cores during its best sample, a roof is suspect

# Fraction of one cache instance (split between the threads that share it) a measurement
# uses. L3 gets a quarter, not half: it is shared with other cores (in a VM, with other
# tenants), and on AMD it is a victim cache, so a triad over half of it already spills to
# DRAM (measured on this Zen 3 VM: ~60 GB/s up to 12 MiB, ~15-20 GB/s from 16 MiB).
CACHE_FRACTION = {"L1": 0.5, "L2": 0.5, "L3": 0.25}
DRAM_MIN_BYTES = 512 * 1024**2     # DRAM working set: >= 8x all L3 and >= 512 MiB ...
DRAM_MAX_MEMORY_FRACTION = 0.25    # ... but at most a quarter of physical memory
ELEMENT_ALIGN = 64                 # per-thread slices are whole multiples of 64 floats (256 B)


@dataclass(frozen=True)
class _Mode:
    samples: int            # timed samples per (resource, threads); the best is reported
    sample_seconds: float   # target duration of one sample, seconds


MODES = {"quick": _Mode(samples=5, sample_seconds=0.02), "full": _Mode(samples=15, sample_seconds=0.05)}


@dataclass
class Ceilings:
    """Measured roofs of this machine, per thread count.

    table: DataFrame with columns threads (int), resource ("fp32_fma", "L1", "L2", "L3",
        "DRAM"), value (float), unit ("GFLOP/s" for fp32_fma, "GB/s" for memory levels);
        one row per (threads, resource).
    machine: the MachineInfo the measurement was sized from, as a dict.
    measured_at: ISO 8601 UTC time of the measurement.
    key: what the cache is keyed on: cpu_model, cores, package_version, mode.
    detail: per (threads, resource, kernel): working set per thread (bytes), repeats per
        sample, samples, best and median rate, and cpu_share: the process CPU time during
        the best sample / (wall time x threads), near 1 when the threads had their cores to
        themselves (a little above 1 when idle worker threads still spin after a parallel
        region), lower when other processes took turns on them. Includes the read-only
        bandwidth.
    """

    table: pd.DataFrame
    machine: dict
    measured_at: str
    key: dict
    detail: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DETAIL_COLUMNS))

    @property
    def levels(self) -> tuple[str, ...]:
        """Memory levels with a bandwidth roof, fastest first: ("L1", "L2", "L3", "DRAM")."""
        present = set(self.table["resource"])
        return tuple(level for level in MEMORY_LEVELS if level in present)

    @property
    def threads(self) -> list[int]:
        """Thread counts measured, ascending."""
        return sorted(int(t) for t in self.table["threads"].unique())

    def peak_gflops(self, threads: int) -> float:
        """Peak fp32 FMA throughput with `threads` threads, GFLOP/s."""
        return self._value("fp32_fma", threads)

    def bandwidth_gbs(self, level: str, threads: int) -> float:
        """Triad bandwidth of memory level `level` ("L1", "L2", "L3", "DRAM") with `threads` threads, GB/s."""
        if level not in MEMORY_LEVELS:
            raise ValueError(f"level must be one of {MEMORY_LEVELS}, got {level!r}")
        return self._value(level, threads)

    def ridge_point(self, level: str, threads: int) -> float:
        """Arithmetic intensity (FLOP/byte) where the `level` roof meets the FLOP roof.

        peak_gflops / bandwidth_gbs. A layer whose intensity at `level` is below it is
        memory bound there.
        """
        return self.peak_gflops(threads) / self.bandwidth_gbs(level, threads)

    def _value(self, resource: str, threads: int) -> float:
        rows = self.table[(self.table["resource"] == resource) & (self.table["threads"] == threads)]
        if len(rows) != 1:
            raise ValueError(f"no {resource} ceiling for threads={threads!r}; measured thread counts: {self.threads}")
        return float(rows["value"].iloc[0])

    def restricted_to(self, threads: list[int]) -> "Ceilings":
        """The same ceilings, only for the given thread counts."""
        keep = self.table["threads"].isin(threads)
        keep_detail = self.detail["threads"].isin(threads)
        return Ceilings(self.table[keep].reset_index(drop=True), self.machine, self.measured_at,
                        self.key, self.detail[keep_detail].reset_index(drop=True))

    def to_json_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "key": self.key,
            "measured_at": self.measured_at,
            "machine": self.machine,
            "table": self.table[TABLE_COLUMNS].to_dict(orient="records"),
            "detail": self.detail[DETAIL_COLUMNS].to_dict(orient="records"),
        }

    @classmethod
    def from_json_dict(cls, data: dict) -> "Ceilings":
        """Rebuild from `to_json_dict` output; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"top level is a {type(data).__name__}, not an object")
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        for name, kind in (("key", dict), ("measured_at", str), ("machine", dict), ("table", list), ("detail", list)):
            if not isinstance(data.get(name), kind):
                raise ValueError(f"field {name!r} missing or not a {kind.__name__}")
        table = pd.DataFrame(data["table"])
        _check_table(table)
        detail = pd.DataFrame(data["detail"], columns=DETAIL_COLUMNS) if data["detail"] else \
            pd.DataFrame(columns=DETAIL_COLUMNS)
        table = table[TABLE_COLUMNS].astype({"threads": "int64", "value": "float64"})
        return cls(table, data["machine"], data["measured_at"], data["key"], detail)


def _check_table(table: pd.DataFrame) -> None:
    """ValueError unless `table` has the ceilings schema with positive finite values."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    if table.empty:
        raise ValueError("table is empty")
    values = pd.to_numeric(table["value"], errors="coerce")
    if not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError("table values must be positive finite numbers")
    for threads, rows in table.groupby("threads"):
        if not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"bad thread count {threads!r}")
        if sorted(rows["resource"]) != sorted(RESOURCES):
            raise ValueError(f"threads={threads}: resources {sorted(rows['resource'])}, expected {sorted(RESOURCES)}")
        for resource, unit in zip(rows["resource"], rows["unit"]):
            if UNITS[resource] != unit:
                raise ValueError(f"{resource} in {unit!r}, expected {UNITS[resource]!r}")


# ---------------------------------------------------------------------------- public entry

def measure_ceilings(quick: bool = True, threads: list[int] | None = None, refresh: bool = False,
                     cache_dir: Path | None = None) -> Ceilings:
    """This machine's ceilings for each thread count, from the cache or measured now.

    quick: True: 5 samples of >= 20 ms per roof and kernel (~6 s on a 2-core machine, plus
        ~7 s of numba compilation the very first time); False: 15 samples of >= 50 ms
        (~30 s), steadier. A quick call also accepts a cached full result.
    threads: thread counts to measure, each in 1..cores; default every count 1..cores.
    refresh: measure even if a valid cached result exists.
    cache_dir: folder of the JSON cache; default $ROOFLINE_DATA_DIR/ceilings if that
        variable is set, else the repository's data/ceilings.

    A cached result is used only if it parses, has the right schema, and its key (CPU
    model, cores, package version, mode) matches this machine and package; otherwise it is
    re-measured (with a UserWarning if the file was there but unusable) and rewritten
    atomically. A cache that cannot be written is a warning, not an error.
    """
    machine = machine_info()
    thread_counts = _thread_counts(threads, machine)
    directory = _resolve_cache_dir(cache_dir)
    mode = "quick" if quick else "full"
    if not refresh:
        for candidate in (("full", "quick") if quick else ("full",)):
            key = cache_key(machine, candidate)
            cached = _load_cache(_cache_path(directory, key), key)
            if cached is not None and set(thread_counts) <= set(cached.threads):
                logger.info("ceilings from cache %s", _cache_path(directory, key))
                return cached.restricted_to(thread_counts)
    key = cache_key(machine, mode)
    started = time.perf_counter()
    logger.info("measuring ceilings (%s mode, threads %s)", mode, thread_counts)
    table, detail = _measure_all(machine, thread_counts, quick)
    logger.info("measured ceilings in %.1f s", time.perf_counter() - started)
    ceilings = Ceilings(table, machine.to_dict(), _now_iso(), key, detail)
    _save_cache(_cache_path(directory, key), ceilings)
    return ceilings


def cache_key(machine: MachineInfo, mode: str) -> dict:
    """What a cached result must match to be reused."""
    return {"cpu_model": machine.cpu_model, "cores": machine.cores,
            "package_version": package_version(), "mode": mode}


def package_version() -> str:
    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def working_set_bytes(level: str, threads: int, machine: MachineInfo) -> int:
    """Bytes each thread streams over when measuring `level` with `threads` threads.

    Caches: CACHE_FRACTION of one instance, divided among the threads sharing it (threads
    fill one instance's cores first: min(threads, shared_by_cores) share it). L3 at least
    2x L2, so it never measures L2. DRAM: a total of max(8 x all L3, 512 MiB), capped at a
    quarter of physical memory, divided among the threads.
    """
    if level == "DRAM":
        return _dram_total_bytes(machine) // threads
    cache = machine.cache(level)
    sharing = max(1, min(threads, cache.shared_by_cores))
    size = int(cache.size_bytes * CACHE_FRACTION[level]) // sharing
    if level == "L3":
        size = max(size, 2 * machine.cache("L2").size_bytes)
    return size


# ---------------------------------------------------------------------------- measuring

def _measure_all(machine: MachineInfo, thread_counts: list[int], quick: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure every roof for every thread count; returns (table, detail) DataFrames."""
    mode = MODES["quick" if quick else "full"]
    buffers = _Buffers(max(working_set_bytes("DRAM", t, machine) * t for t in thread_counts))
    probes: list[_Probe] = []
    for threads in thread_counts:
        probes.append(_fma_probe(threads))
        for level in MEMORY_LEVELS:
            size = working_set_bytes(level, threads, machine)
            probes.append(_triad_probe(buffers, level, threads, size))
            probes.append(_read_probe(buffers, level, threads, size))
    previous_threads = numba.get_num_threads()
    try:
        for probe in probes:
            numba.set_num_threads(probe.threads)
            probe.repeats = _calibrate(probe.run, mode.sample_seconds)
        for _ in range(mode.samples):           # round-robin: a disturbance costs one sample of each
            for probe in probes:
                numba.set_num_threads(probe.threads)
                cpu_started = time.process_time()
                seconds = _time(probe.run, probe.repeats)
                cpu_share = (time.process_time() - cpu_started) / (seconds * probe.threads)
                probe.samples.append((probe.work(probe.repeats) / seconds / 1e9, cpu_share))
    finally:
        numba.set_num_threads(previous_threads)

    rows = []
    for p in probes:
        best_rate, best_share = max(p.samples)
        rows.append((p.threads, p.resource, p.kernel, p.working_set_bytes, p.repeats, len(p.samples), best_rate,
                     statistics.median(rate for rate, _ in p.samples), round(best_share, 3), UNITS[p.resource]))
    detail = pd.DataFrame(rows, columns=DETAIL_COLUMNS)
    reported = detail[detail["kernel"].isin(["fma", "triad"])]
    table = pd.DataFrame({"threads": reported["threads"].astype("int64"), "resource": reported["resource"],
                          "value": reported["best"].astype("float64"), "unit": reported["unit"]})
    table = table.reset_index(drop=True)
    _check_table(table)
    _warn_if_busy(detail)
    return table, detail


@dataclass
class _Probe:
    threads: int
    resource: str
    kernel: str                      # "fma", "triad" or "read"
    working_set_bytes: int           # per thread; 0 for fma
    run: Callable[[int], object]     # run(repeats): one sample's work
    work: Callable[[int], int]       # FLOPs or bytes done by run(repeats)
    repeats: int = 1
    samples: list = field(default_factory=list)   # (GFLOP/s or GB/s, cpu_share) per sample


class _Buffers:
    """One page-aligned float32 pool; triad's a, b, c are disjoint views of it, staggered
    by 1 KiB so that a[i], b[i], c[i] never share their low 12 address bits (4K aliasing
    makes loads wait on unrelated stores). The read kernel streams over the whole pool."""

    STAGGER = 256   # floats (1 KiB)

    def __init__(self, total_bytes: int):
        stream = _round_up(total_bytes // 12, 1024)                  # floats per triad array
        length = 3 * stream + 3 * self.STAGGER
        raw = np.empty(length + 1024, np.float32)
        start = (-raw.ctypes.data % 4096) // 4
        self.pool = raw[start:start + length]
        self.pool.fill(1.0)                                          # touch every page now
        self.a = self.pool[0:stream]
        self.b = self.pool[stream + self.STAGGER:2 * stream + self.STAGGER]
        self.c = self.pool[2 * stream + 2 * self.STAGGER:3 * stream + 2 * self.STAGGER]


def _fma_probe(threads: int) -> _Probe:
    seeds = np.random.default_rng(threads).uniform(0.5, 1.5, (threads, kernels.FMA_WIDTH)).astype(np.float32)
    return _Probe(threads, "fp32_fma", "fma", 0,
                  run=lambda repeats: kernels.fma_chains(seeds, repeats),
                  work=lambda repeats: kernels.fma_flops(threads, repeats))


def _triad_probe(buffers: _Buffers, level: str, threads: int, size: int) -> _Probe:
    n = min(max(ELEMENT_ALIGN, size // 12 // ELEMENT_ALIGN * ELEMENT_ALIGN), buffers.a.shape[0] // threads)
    return _Probe(threads, level, "triad", 12 * n,
                  run=lambda repeats: kernels.triad(buffers.a, buffers.b, buffers.c, 0.5, n, repeats, threads),
                  work=lambda repeats: kernels.triad_bytes(n, threads, repeats))


def _read_probe(buffers: _Buffers, level: str, threads: int, size: int) -> _Probe:
    n = min(max(ELEMENT_ALIGN, size // 4 // ELEMENT_ALIGN * ELEMENT_ALIGN), buffers.pool.shape[0] // threads)
    return _Probe(threads, level, "read", 4 * n,
                  run=lambda repeats: kernels.read_sum(buffers.pool, n, repeats, threads),
                  work=lambda repeats: kernels.read_bytes(n, threads, repeats))


def _calibrate(run: Callable[[int], object], target_seconds: float) -> int:
    """The first power of two of repeats for which run(repeats) lasts >= target_seconds.

    Doubling until a call is long enough, rather than extrapolating from a short call: on
    a busy machine a parallel call can wait milliseconds for a sleeping thread to get a
    core, and extrapolating from that fixed delay would give samples of almost no work.
    """
    run(1)   # warm: caches loaded, pages touched, thread pool awake
    repeats = 1
    while _time(run, repeats) < target_seconds and repeats < 2**40:
        repeats *= 2
    return repeats


def _time(run: Callable[[int], object], repeats: int) -> float:
    started = time.perf_counter()
    run(repeats)
    return max(time.perf_counter() - started, 1e-9)


def _warn_if_busy(detail: pd.DataFrame) -> None:
    """Log a warning when other processes visibly shared the cores or the roofs are out of order."""
    reported = detail[detail["kernel"].isin(["fma", "triad"])]
    busy = reported[reported["cpu_share"] < BUSY_CPU_SHARE]
    if len(busy):
        logger.warning("other processes shared the cores during %d of %d roofs (lowest CPU share %.0f %%); "
                       "those roofs are low, consider measure_ceilings(refresh=True) on a quieter machine",
                       len(busy), len(reported), 100 * busy["cpu_share"].min())
    for threads, rows in reported.groupby("threads"):
        value = dict(zip(rows["resource"], rows["best"]))
        if not value["L1"] > value["DRAM"]:
            logger.warning("threads=%d: L1 bandwidth %.1f GB/s not above DRAM %.1f GB/s; the machine was "
                           "probably busy, consider refresh=True", threads, value["L1"], value["DRAM"])


def _dram_total_bytes(machine: MachineInfo) -> int:
    l3 = machine.cache("L3")
    instances = max(1, math.ceil(machine.cores / max(1, l3.shared_by_cores)))
    total = max(8 * l3.size_bytes * instances, DRAM_MIN_BYTES)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        total = min(total, int(physical * DRAM_MAX_MEMORY_FRACTION))
    except (ValueError, OSError, AttributeError):
        pass
    return total


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _thread_counts(threads: list[int] | None, machine: MachineInfo) -> list[int]:
    limit = min(machine.cores, numba.config.NUMBA_NUM_THREADS)
    if threads is None:
        if limit < machine.cores:
            logger.warning("numba is limited to %d threads (NUMBA_NUM_THREADS) of %d cores", limit, machine.cores)
        return list(range(1, limit + 1))
    counts = sorted(set(threads)) if isinstance(threads, (list, tuple, range)) else None
    if not counts or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t <= limit
                         for t in counts):
        raise ValueError(f"threads must be a non-empty list of ints in 1..{limit}, got {threads!r}")
    return [int(t) for t in counts]


# ---------------------------------------------------------------------------- the cache

def _resolve_cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    data_dir = os.environ.get("ROOFLINE_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "ceilings"
    return Path(__file__).resolve().parents[1] / "data" / "ceilings"


def _cache_path(directory: Path, key: dict) -> Path:
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "unknown"
    return directory / (f"ceilings_{slug(key['cpu_model'])}_{key['cores']}cores_"
                        f"v{slug(key['package_version'])}_{key['mode']}.json")


def _load_cache(path: Path, expected_key: dict) -> Ceilings | None:
    """The cached Ceilings at `path` if usable; None (and a warning unless missing) if not."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        logger.info("no ceilings cache at %s", path)
        return None
    except OSError as error:
        warnings.warn(f"ceilings cache {path} is unreadable ({error}); re-measuring", UserWarning, stacklevel=3)
        return None
    try:
        ceilings = Ceilings.from_json_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:   # json.JSONDecodeError is a ValueError
        warnings.warn(f"ceilings cache {path} is corrupted ({error}); re-measuring", UserWarning, stacklevel=3)
        return None
    if ceilings.key != expected_key:
        warnings.warn(f"ceilings cache {path} is stale (key {ceilings.key}, this machine and package "
                      f"{expected_key}); re-measuring", UserWarning, stacklevel=3)
        return None
    return ceilings


def _save_cache(path: Path, ceilings: Ceilings) -> None:
    """Write atomically: a temp file in the same folder, then os.replace over `path`."""
    try:
        with atomic_path(path) as temporary, open(temporary, "w") as handle:
            json.dump(ceilings.to_json_dict(), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("ceilings cached in %s", path)
    except OSError as error:
        warnings.warn(f"could not write the ceilings cache {path} ({error}); results are not cached",
                      UserWarning, stacklevel=3)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
