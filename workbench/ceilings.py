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

Each cache level's *effective* capacity is measured too, not taken from sysfs: a VM often
gets only part of its L3 (other tenants share it, or the hypervisor hands out a slice of
it). A single-thread triad sweeps working sets in geometric steps of sqrt(2), from an eighth
of L1 to 2x the nominal L3 (at most a quarter of physical memory), and the effective size
of a level is where its bandwidth falls to the geometric midpoint between its plateau and
the next level's (`find_effective_sizes`, capped at the nominal size). The sweep is kept in
`Ceilings.sweep`, the sizes in `Ceilings.caches` (`Ceilings.cache_table()` for a readable
table, `Ceilings.machine_info()` for the engine). The roofs' working sets are sized from
the effective sizes, so the L3 roof measures the part of L3 this machine really has.

Each value is the best (highest) of several timed samples, every sample at least 20 ms
(quick) or 50 ms (full) of repeated work inside one parallel region: on a shared machine
the best sample is the one least disturbed by other processes. Samples go round-robin over
all (resource, threads) pairs, so a burst of outside load costs one sample of each, not all
of one. The ridge point of a level is peak / bandwidth, in FLOP per byte.

Results are cached as JSON in data/ceilings/ (or $ROOFLINE_DATA_DIR/ceilings, or
`cache_dir`), one file per CPU model, core count, package version and mode. A missing,
unreadable, corrupted, wrongly shaped, other-schema (SCHEMA_VERSION) or stale (other CPU,
cores or version) file is re-measured, with a warning for all but the missing one.
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
from pathlib import Path
from typing import Callable

import numba
import numpy as np
import pandas as pd

from engine.version import package_version
from engine.machine import MachineInfo, machine_info
from engine.traffic import LEVELS
from workbench import _ceiling_kernels as kernels
from workbench.atomic import atomic_path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2     # of the JSON cache; a file of another schema is re-measured
RESOURCES = ("fp32_fma",) + LEVELS
UNITS = {"fp32_fma": "GFLOP/s", **{level: "GB/s" for level in LEVELS}}
TABLE_COLUMNS = ["threads", "resource", "value", "unit"]
DETAIL_COLUMNS = ["threads", "resource", "kernel", "working_set_bytes", "repeats", "samples",
                  "best", "median", "cpu_share", "unit"]
SWEEP_COLUMNS = ["working_set_bytes", "bandwidth_gbs", "median_gbs", "repeats", "samples", "cpu_share"]
CACHE_COLUMNS = ["level", "nominal_bytes", "effective_bytes", "plateau_gbs", "next_plateau_gbs", "note"]
CACHE_TABLE_COLUMNS = ["level", "nominal_bytes", "effective_bytes", "shared_by_cores", "nominal", "effective", "note"]
CACHE_LEVELS = LEVELS[:-1]      # every memory level but DRAM
BUSY_CPU_SHARE = 0.9   # below this share of its cores during its best sample, a roof is suspect

# Fraction of one cache instance's usable size (the measured effective size, else the
# nominal one; split between the threads that share it) a roof's measurement uses. L3 gets
# a quarter, not half: the effective size is where bandwidth is already half-way down, and
# on AMD L3 is a victim cache whose bandwidth falls off gradually before that point.
CACHE_FRACTION = {"L1": 0.5, "L2": 0.5, "L3": 0.25}
DRAM_MIN_BYTES = 512 * 1024**2     # DRAM working set: >= 8x all usable L3 and >= 512 MiB ...
DRAM_MAX_MEMORY_FRACTION = 0.25    # ... but at most a quarter of physical memory
ELEMENT_ALIGN = 64                 # per-thread slices are whole multiples of 64 floats (256 B)

SWEEP_STEP = 2 ** 0.5              # ratio of consecutive working sets in the sweep
SWEEP_START_FRACTION = 1 / 8       # the first working set: an eighth of L1, well inside it
SWEEP_L3_MULTIPLE = 2              # the last: 2x the nominal L3 (capped like DRAM's)
MIN_FALLOFF_RATIO = 1.25           # a level's plateau must be >= 1.25x the next one's to count as
                                   # a fall-off: best-of-samples noise is a few per cent


@dataclass(frozen=True)
class _Mode:
    samples: int                  # timed samples per (resource, threads); the best is reported
    sample_seconds: float         # target duration of one sample, seconds
    sweep_samples: int            # timed samples per working set of the sweep
    sweep_sample_seconds: float   # target duration of one sweep sample, seconds (the largest
                                  # working sets take longer: one repeat is the least)


MODES = {"quick": _Mode(samples=5, sample_seconds=0.02, sweep_samples=3, sweep_sample_seconds=0.005),
         "full": _Mode(samples=15, sample_seconds=0.05, sweep_samples=7, sweep_sample_seconds=0.02)}


@dataclass
class Ceilings:
    """Measured roofs of this machine, per thread count.

    table: DataFrame with columns threads (int), resource ("fp32_fma", "L1", "L2", "L3",
        "DRAM"), value (float), unit ("GFLOP/s" for fp32_fma, "GB/s" for memory levels);
        one row per (threads, resource).
    machine: the MachineInfo read from this machine (nominal cache sizes, from sysfs), as
        a dict; the roofs were sized from it with the effective sizes of `caches`.
    measured_at: ISO 8601 UTC time of the measurement.
    key: what the cache is keyed on: cpu_model, cores, package_version, mode.
    detail: per (threads, resource, kernel): working set per thread (bytes), repeats per
        sample, samples, best and median rate, and cpu_share: the process CPU time during
        the best sample / (wall time x threads), near 1 when the threads had their cores to
        themselves (a little above 1 when idle worker threads still spin after a parallel
        region), lower when other processes took turns on them. Includes the read-only
        bandwidth.
    sweep: the single-thread triad working-set sweep, one row per working set, ascending:
        working_set_bytes (a, b and c together, bytes), bandwidth_gbs (best sample, GB/s),
        median_gbs, repeats, samples, cpu_share. Empty when not measured.
    caches: what `find_effective_sizes` read from the sweep, one row per level L1, L2, L3:
        level, nominal_bytes and effective_bytes (one instance, bytes), plateau_gbs and
        next_plateau_gbs (GB/s, the bandwidths the fall-off lies between), note (why the
        effective size is the nominal one, if it is). Empty when not measured.
    """

    table: pd.DataFrame
    machine: dict
    measured_at: str
    key: dict
    detail: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DETAIL_COLUMNS))
    sweep: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SWEEP_COLUMNS))
    caches: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CACHE_COLUMNS))

    @property
    def levels(self) -> tuple[str, ...]:
        """Memory levels with a bandwidth roof, fastest first: ("L1", "L2", "L3", "DRAM")."""
        present = set(self.table["resource"])
        return tuple(level for level in LEVELS if level in present)

    @property
    def threads(self) -> list[int]:
        """Thread counts measured, ascending."""
        return sorted(int(t) for t in self.table["threads"].unique())

    def peak_gflops(self, threads: int) -> float:
        """Peak fp32 FMA throughput with `threads` threads, GFLOP/s."""
        return self._value("fp32_fma", threads)

    def bandwidth_gbs(self, level: str, threads: int) -> float:
        """Triad bandwidth of memory level `level` ("L1", "L2", "L3", "DRAM") with `threads` threads, GB/s."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        return self._value(level, threads)

    def ridge_point(self, level: str, threads: int) -> float:
        """Arithmetic intensity (FLOP/byte) where the `level` roof meets the FLOP roof.

        peak_gflops / bandwidth_gbs. A layer whose intensity at `level` is below it is
        memory bound there.
        """
        return self.peak_gflops(threads) / self.bandwidth_gbs(level, threads)

    def effective_bytes(self) -> dict[str, int]:
        """The measured effective capacity of one instance of each cache level, bytes:
        {"L1": ..., "L2": ..., "L3": ...}; empty if the sweep was not measured."""
        return {str(level): int(size) for level, size in zip(self.caches["level"], self.caches["effective_bytes"])}

    def machine_info(self) -> MachineInfo:
        """The engine's description of the machine measured, with the effective cache sizes
        set (`CacheLevel.effective_bytes`, one instance each, bytes; None where not
        measured), for the engine's bytes model and fusion policy. ValueError if `machine`
        is not a whole MachineInfo dict."""
        return MachineInfo.from_dict(self.machine).with_effective_caches(self.effective_bytes())

    def cache_table(self) -> pd.DataFrame:
        """Nominal (sysfs) against effective (measured) capacity, one row per cache level.

        Columns: level, nominal_bytes and effective_bytes (one instance, bytes; effective
        is NaN where not measured), shared_by_cores (logical CPUs sharing one instance),
        nominal and effective (the same in KiB or MiB, to read), note. Empty if `machine`
        holds no cache sizes.
        """
        effective = self.effective_bytes()
        notes = dict(zip(self.caches["level"], self.caches["note"]))
        rows = []
        for cache in self.machine.get("caches") or []:
            size = effective.get(cache["name"])
            rows.append((cache["name"], int(cache["size_bytes"]), size, int(cache["shared_by_cores"]),
                         format_bytes(cache["size_bytes"]), "not measured" if size is None else format_bytes(size),
                         notes.get(cache["name"], "")))
        table = pd.DataFrame(rows, columns=CACHE_TABLE_COLUMNS)
        table["effective_bytes"] = table["effective_bytes"].astype("Int64")
        return table

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
                        self.key, self.detail[keep_detail].reset_index(drop=True), self.sweep, self.caches)

    def to_json_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "key": self.key,
            "measured_at": self.measured_at,
            "machine": self.machine,
            "table": self.table[TABLE_COLUMNS].to_dict(orient="records"),
            "detail": self.detail[DETAIL_COLUMNS].to_dict(orient="records"),
            "sweep": self.sweep[SWEEP_COLUMNS].to_dict(orient="records"),
            "caches": _json_records(self.caches[CACHE_COLUMNS]),
        }

    @classmethod
    def from_json_dict(cls, data: dict) -> "Ceilings":
        """Rebuild from `to_json_dict` output; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"top level is a {type(data).__name__}, not an object")
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        for name, kind in (("key", dict), ("measured_at", str), ("machine", dict), ("table", list), ("detail", list),
                           ("sweep", list), ("caches", list)):
            if not isinstance(data.get(name), kind):
                raise ValueError(f"field {name!r} missing or not a {kind.__name__}")
        table = pd.DataFrame(data["table"])
        _check_table(table)
        detail = pd.DataFrame(data["detail"], columns=DETAIL_COLUMNS) if data["detail"] else \
            pd.DataFrame(columns=DETAIL_COLUMNS)
        table = table[TABLE_COLUMNS].astype({"threads": "int64", "value": "float64"})
        sweep = _sweep_frame(data["sweep"])
        caches = _caches_frame(data["caches"])
        return cls(table, data["machine"], data["measured_at"], data["key"], detail, sweep, caches)


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


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN as None (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _sweep_frame(records: list) -> pd.DataFrame:
    """The sweep DataFrame from its JSON records; ValueError unless every working set and
    bandwidth is a positive finite number."""
    try:
        sweep = pd.DataFrame(records, columns=SWEEP_COLUMNS).astype(
            {"working_set_bytes": "int64", "bandwidth_gbs": "float64", "median_gbs": "float64",
             "repeats": "int64", "samples": "int64", "cpu_share": "float64"})
    except (ValueError, TypeError) as error:
        raise ValueError(f"sweep: {error}") from None
    values = sweep[["working_set_bytes", "bandwidth_gbs"]].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError("sweep working sets and bandwidths must be positive finite numbers")
    return sweep


def _caches_frame(records: list) -> pd.DataFrame:
    """The effective-sizes DataFrame from its JSON records; ValueError unless it has L1, L2,
    L3 in that order with 0 < effective_bytes <= nominal_bytes."""
    if not records:
        return pd.DataFrame(columns=CACHE_COLUMNS)
    try:
        caches = pd.DataFrame(records, columns=CACHE_COLUMNS).astype(
            {"nominal_bytes": "int64", "effective_bytes": "int64", "plateau_gbs": "float64",
             "next_plateau_gbs": "float64"})
    except (ValueError, TypeError) as error:
        raise ValueError(f"caches: {error}") from None
    if list(caches["level"]) != list(CACHE_LEVELS):
        raise ValueError(f"caches: levels {list(caches['level'])}, expected {list(CACHE_LEVELS)}")
    if not ((caches["effective_bytes"] > 0) & (caches["effective_bytes"] <= caches["nominal_bytes"])).all():
        raise ValueError("caches: effective sizes must be > 0 and <= the nominal sizes")
    caches["note"] = caches["note"].fillna("").astype(str)
    return caches


# ---------------------------------------------------------------------------- public entry

def measure_ceilings(quick: bool = True, threads: list[int] | None = None, refresh: bool = False,
                     cache_dir: Path | None = None) -> Ceilings:
    """This machine's ceilings for each thread count, and the effective size of each cache
    level (from a single-thread working-set sweep), from the cache or measured now.

    quick: True: 5 samples of >= 20 ms per roof and kernel and 3 of >= 5 ms per working set
        of the sweep (the first call in a fresh checkout also compiles the probe kernels);
        False: 15 samples of >= 50 ms and 7 of >= 20 ms, longer and steadier. A quick
        call also accepts a cached full result.
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
    sweep = _measure_sweep(machine, quick)
    caches = find_effective_sizes(sweep["working_set_bytes"], sweep["bandwidth_gbs"],
                                  {level.name: level.size_bytes for level in machine.caches})
    for row in caches.itertuples():
        logger.info("%s: effective %s of nominal %s%s", row.level, format_bytes(row.effective_bytes),
                    format_bytes(row.nominal_bytes), f" ({row.note})" if row.note else "")
    sized = machine.with_effective_caches(dict(zip(caches["level"], (int(b) for b in caches["effective_bytes"]))))
    table, detail = _measure_all(sized, thread_counts, quick)
    logger.info("measured ceilings in %.1f s", time.perf_counter() - started)
    ceilings = Ceilings(table, machine.to_dict(), _now_iso(), key, detail, sweep, caches)
    _save_cache(_cache_path(directory, key), ceilings)
    return ceilings


def cache_key(machine: MachineInfo, mode: str) -> dict:
    """What a cached result must match to be reused. The lane width is part of it: the FMA
    roof is measured with vectors of the kernels' width (ROOFLINE_LANES may force 8 lanes
    on an AVX-512 host, whose roof is then half)."""
    return {"cpu_model": machine.cpu_model, "cores": machine.cores, "lanes": machine.simd_lanes_fp32,
            "package_version": package_version(), "mode": mode}



def working_set_bytes(level: str, threads: int, machine: MachineInfo) -> int:
    """Bytes each thread streams over when measuring `level` with `threads` threads.

    Caches: CACHE_FRACTION of one instance's usable size (effective where measured, else
    nominal), divided among the threads sharing it (threads fill one instance's cores
    first: min(threads, shared_by_cores) share it). L3 at least 2x the nominal L2, so it
    never measures L2. DRAM: a total of max(8 x all usable L3, 512 MiB), capped at a
    quarter of physical memory, divided among the threads.
    """
    if level == "DRAM":
        return _dram_total_bytes(machine) // threads
    cache = machine.cache(level)
    sharing = max(1, min(threads, cache.shared_by_cores))
    size = int(cache.usable_bytes * CACHE_FRACTION[level]) // sharing
    if level == "L3":
        size = max(size, 2 * machine.cache("L2").size_bytes)
    return size


def sweep_working_sets(machine: MachineInfo) -> list[int]:
    """The working sets of the sweep, bytes (a, b and c of the triad together), ascending.

    From SWEEP_START_FRACTION of the nominal L1 in steps of SWEEP_STEP up to
    SWEEP_L3_MULTIPLE x the nominal L3 (one instance), capped at a quarter of physical
    memory like DRAM's working set; the top is always the last point. Each is a whole
    number of 3 x ELEMENT_ALIGN floats.
    """
    quantum = 3 * 4 * ELEMENT_ALIGN
    top = SWEEP_L3_MULTIPLE * machine.cache("L3").size_bytes
    memory_cap = _memory_cap_bytes()
    if memory_cap is not None:
        top = min(top, memory_cap)
    start = machine.cache("L1").size_bytes * SWEEP_START_FRACTION
    steps = max(0, math.floor(math.log(top / start) / math.log(SWEEP_STEP) - 0.5))
    sizes = [start * SWEEP_STEP**k for k in range(steps + 1)] + [top]
    return sorted({max(quantum, int(size) // quantum * quantum) for size in sizes})


def find_effective_sizes(working_set_bytes, bandwidth_gbs, nominal_bytes: dict[str, int]) -> pd.DataFrame:
    """Each cache level's effective capacity from a working-set sweep; a pure function.

    working_set_bytes, bandwidth_gbs: the sweep, one bandwidth (GB/s, > 0) per working set
        (bytes, > 0), in any order.
    nominal_bytes: nominal capacity of one instance of each level, bytes, fastest first
        ({"L1": ..., "L2": ..., "L3": ...}); the level after the last is memory.

    The curve (log bandwidth against log working set) is first smoothed by a running
    median of three points, which removes a lone outlier but keeps a step where it is.
    A level's plateau is the highest smoothed bandwidth between 2x the previous level's
    nominal size (from the first sweep point for the first level) and its own nominal
    size. The next plateau is the next level's; after the last level it is memory's: the
    median of the three largest working sets. The effective size is where the curve
    falls, for the last time before the next plateau, to the geometric midpoint of the two
    plateaus: between the last point at or above it and the point after, interpolated
    linearly in log working set against log bandwidth; capped at the nominal size. On a
    shared machine a sample is disturbed downwards, hardly ever upwards: so plateaus are
    maxima and the crossing is the last one, and a dip inside a plateau moves neither.

    The nominal size is kept, and `note` says why, when no sweep point lies inside the
    level, when the plateau is less than MIN_FALLOFF_RATIO x the next one (no fall-off
    visible: a level too large for the sweep to leave, or one no faster than the next),
    or when the curve has not fallen to the midpoint by the end of the sweep.

    Returns a DataFrame, one row per level of `nominal_bytes`: level, nominal_bytes,
    effective_bytes (int, 0 < effective <= nominal), plateau_gbs and next_plateau_gbs
    (GB/s, NaN where not found), note: why the effective size is the nominal one ("" when
    the fall-off was found below nominal).
    """
    sizes, rates = _checked_sweep(working_set_bytes, bandwidth_gbs, nominal_bytes)
    order = np.argsort(sizes, kind="stable")
    sizes, raw = sizes[order], np.log(rates[order])       # ascending working sets; log bandwidth
    smooth = _running_median3(raw)
    levels = list(nominal_bytes.items())
    plateaus = _plateaus(sizes, smooth, [nominal for _, nominal in levels])
    rows = []
    for index, (name, nominal) in enumerate(levels):
        next_plateau = plateaus[index + 1] if index + 1 < len(levels) else None
        rows.append(_effective_size(name, int(nominal), plateaus[index], next_plateau, sizes, raw, smooth))
    return pd.DataFrame(rows, columns=CACHE_COLUMNS)


def _checked_sweep(working_set_bytes, bandwidth_gbs, nominal_bytes: dict) -> tuple[np.ndarray, np.ndarray]:
    """The sweep as two float arrays, unless it or a nominal size is malformed (ValueError)."""
    sizes = np.asarray(working_set_bytes, dtype=float)
    rates = np.asarray(bandwidth_gbs, dtype=float)
    if sizes.ndim != 1 or sizes.shape != rates.shape or sizes.size == 0:
        raise ValueError(f"working_set_bytes and bandwidth_gbs must be two 1-d sequences of one length >= 1, "
                         f"got shapes {sizes.shape} and {rates.shape}")
    if not (np.all(np.isfinite(sizes)) and np.all(sizes > 0) and np.all(np.isfinite(rates)) and np.all(rates > 0)):
        raise ValueError("working sets and bandwidths must be positive finite numbers")
    for name, size in nominal_bytes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"nominal size of {name} must be a positive int (bytes), got {size!r}")
    return sizes, rates


def _plateaus(sizes: np.ndarray, smooth: np.ndarray, nominals: list) -> list[int | None]:
    """Index of each level's plateau point: the highest smoothed bandwidth between 2x the
    previous level's nominal size and its own (None: no sweep point lies there)."""
    plateaus: list[int | None] = []
    previous = 0
    for nominal in nominals:
        inside = np.flatnonzero((sizes >= 2 * previous) & (sizes <= nominal))
        plateaus.append(int(inside[np.argmax(smooth[inside])]) if inside.size else None)
        previous = nominal
    return plateaus


def _effective_size(name: str, nominal: int, peak: int | None, next_plateau: int | None, sizes: np.ndarray,
                    raw: np.ndarray, smooth: np.ndarray) -> tuple:
    """One row of find_effective_sizes: where the curve falls from the plateau at `peak` to
    the midpoint towards the next plateau (the next level's at `next_plateau`, else
    memory's); `raw` and `smooth`: log bandwidth, as measured and smoothed."""
    top = format_bytes(sizes[-1])
    if peak is None:
        return (name, nominal, nominal, math.nan, math.nan, f"no sweep point inside {name}")
    if next_plateau is not None:
        limit = next_plateau        # the search for the fall-off ends at the next plateau
        next_rate = smooth[limit]
    else:
        limit = sizes.size - 1
        next_rate = float(np.median(raw[max(peak + 1, sizes.size - 3):])) if peak < limit else math.nan
    plateau, after_plateau = math.exp(smooth[peak]), math.exp(next_rate)
    if math.isnan(next_rate):
        return (name, nominal, nominal, plateau, math.nan, f"the sweep ends inside {name}")
    if smooth[peak] - next_rate < math.log(MIN_FALLOFF_RATIO):
        return (name, nominal, nominal, plateau, after_plateau,
                f"no fall-off visible up to {top} ({plateau:.3g} GB/s in {name}, {after_plateau:.3g} GB/s after it)")
    midpoint = (smooth[peak] + next_rate) / 2
    last_above = peak + int(np.flatnonzero(smooth[peak:limit] >= midpoint)[-1])
    if smooth[last_above + 1] >= midpoint:        # only possible at the end of the sweep
        return (name, nominal, nominal, plateau, after_plateau, f"still above the midpoint at {top}")
    log_sizes = np.log(sizes[last_above:last_above + 2])
    fraction = (smooth[last_above] - midpoint) / (smooth[last_above] - smooth[last_above + 1])
    falloff = math.exp(log_sizes[0] + fraction * (log_sizes[1] - log_sizes[0]))
    if falloff >= nominal:
        return (name, nominal, nominal, plateau, after_plateau,
                f"falls off at {format_bytes(falloff)}: capped at nominal")
    return (name, nominal, max(1, int(falloff)), plateau, after_plateau, "")


def _running_median3(values: np.ndarray) -> np.ndarray:
    """Median of each value and its two neighbours; the end points are kept."""
    smoothed = values.copy()
    if values.size >= 3:
        smoothed[1:-1] = np.median(np.stack([values[:-2], values[1:-1], values[2:]]), axis=0)
    return smoothed


def format_bytes(size: float) -> str:
    """A byte count to read: "48 KiB", "1.5 MiB", "480 MiB", "512 B"."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(size)} B"


# ---------------------------------------------------------------------------- measuring

def _measure_sweep(machine: MachineInfo, quick: bool) -> pd.DataFrame:
    """The triad bandwidth of one thread over each of `sweep_working_sets(machine)`.

    One thread: a capacity belongs to one cache instance, and one core streaming alone
    sees all of its private L1 and L2 and as much of the shared L3 instance as this
    machine lets one core have, which is what the engine's `CacheLevel.effective_bytes`
    means (the roofs divide it among the threads sharing the instance). More threads would
    add nothing to the sizes, only the noise of a busy sibling core and the cost.
    Returns the `Ceilings.sweep` DataFrame.
    """
    mode = MODES["quick" if quick else "full"]
    sizes = sweep_working_sets(machine)
    buffers = _Buffers(sizes[-1])
    probes = [_triad_probe(buffers, "sweep", 1, size) for size in sizes]
    _sample_round_robin(probes, mode.sweep_samples, mode.sweep_sample_seconds)
    rows = []
    for p in probes:
        best_rate, best_share = max(p.samples)
        rows.append((p.working_set_bytes, best_rate, statistics.median(rate for rate, _ in p.samples), p.repeats,
                     len(p.samples), round(best_share, 3)))
    sweep = _sweep_frame(rows)
    busy = sweep[sweep["cpu_share"] < BUSY_CPU_SHARE]
    if len(busy):
        logger.warning("other processes shared the core during %d of %d working sets of the cache sweep; the "
                       "effective cache sizes may be off, consider measure_ceilings(refresh=True) on a quieter "
                       "machine", len(busy), len(sweep))
    return sweep


def _measure_all(machine: MachineInfo, thread_counts: list[int], quick: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure every roof for every thread count; returns (table, detail) DataFrames."""
    mode = MODES["quick" if quick else "full"]
    buffers = _Buffers(max(working_set_bytes("DRAM", t, machine) * t for t in thread_counts))
    probes: list[_Probe] = []
    for threads in thread_counts:
        probes.append(_fma_probe(threads))
        for level in LEVELS:
            size = working_set_bytes(level, threads, machine)
            probes.append(_triad_probe(buffers, level, threads, size))
            probes.append(_read_probe(buffers, level, threads, size))
    _sample_round_robin(probes, mode.samples, mode.sample_seconds)

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


def _sample_round_robin(probes: list["_Probe"], samples: int, sample_seconds: float) -> None:
    """Calibrate each probe's repeats to >= sample_seconds, then time `samples` samples of
    each into probe.samples, round-robin: a disturbance costs one sample of each, not all
    of one. Restores numba's thread count."""
    previous_threads = numba.get_num_threads()
    try:
        for probe in probes:
            numba.set_num_threads(probe.threads)
            probe.repeats = _calibrate(probe.run, sample_seconds)
        for _ in range(samples):
            for probe in probes:
                numba.set_num_threads(probe.threads)
                cpu_started = time.process_time()
                seconds = _time(probe.run, probe.repeats)
                cpu_share = (time.process_time() - cpu_started) / (seconds * probe.threads)
                probe.samples.append((probe.work(probe.repeats) / seconds / 1e9, cpu_share))
    finally:
        numba.set_num_threads(previous_threads)


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
    total = max(8 * l3.usable_bytes * instances, DRAM_MIN_BYTES)
    memory_cap = _memory_cap_bytes()
    return total if memory_cap is None else min(total, memory_cap)


def _memory_cap_bytes() -> int | None:
    """DRAM_MAX_MEMORY_FRACTION of physical memory, bytes; None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * DRAM_MAX_MEMORY_FRACTION)
    except (ValueError, OSError, AttributeError):
        return None


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
    return directory / (f"ceilings_{slug(key['cpu_model'])}_{key['cores']}cores_{key['lanes']}lanes_"
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
