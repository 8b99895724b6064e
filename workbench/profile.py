"""`profile`: run the engine with a Recorder over one configuration -> a pandas DataFrame.

One row per executed step (a layer, or a fused block), the median over `repeats` runs,
with the FLOPs, the modelled bytes and arithmetic intensity at every memory level, the
attainable performance under the machine's measured roofs, and what bounds the step.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import engine
from engine.checks import (check_batch, check_fuse_blocks, check_int, check_repeats, check_seed, check_threads,
                           check_tiles)
from engine.machine import MachineInfo, machine_info
from engine.traffic import LEVELS
from engine.zoo import DEFAULT_MODEL_PATH, write_default_model
# the module, not its function: measure_ceilings is looked up when called, so a caller (or
# a test) that replaces workbench.ceilings.measure_ceilings is heard here too
from workbench import ceilings as ceilings_module
from workbench.atomic import atomic_path
from workbench import models
from workbench.models import is_model_name, model_names
from workbench.activations import with_activations
from workbench.shapes import logical_shapes
from workbench.simulated_bytes import check_bytes_choice
from workbench.spread import percentile_columns

# The default model: engine.zoo's MobileNetV2 (torchvision's topology, synthetic weights)
# in the repository's data/ folder, written when first asked for (`model_file`). Every
# function taking a model also takes a zoo model name (workbench.models.model_names()).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / DEFAULT_MODEL_PATH


def check_model(model):
    """`model` unless as_model could not load it: ValueError for a type other than an
    engine.Model, a zoo model name (workbench.models), a path, bytes or an onnx.ModelProto,
    and for a missing file (what is in the file is checked when it is loaded)."""
    if is_model_name(model):
        return model
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise ValueError(f"model must be an existing ONNX file or a zoo model name ({', '.join(model_names())}), "
                             f"got {str(model)!r} (not found)")
    elif not (isinstance(model, (engine.Model, bytes, bytearray, memoryview)) or hasattr(model, "SerializeToString")):
        raise ValueError(f"model must be an engine.Model, a zoo model name ({', '.join(model_names())}), an ONNX "
                         f"file path, bytes or an onnx.ModelProto, got {type(model).__name__}")
    return model


def as_model(model) -> engine.Model:
    """An engine.Model from a Model, a zoo model name (its data/<name>.onnx, written on first
    use), a path, bytes or an onnx.ModelProto. ValueError for another type or a missing file
    (check_model); engine.ModelError for a file that is not a model (or a zoo model the
    engine cannot run yet)."""
    check_model(model)
    if isinstance(model, engine.Model):
        return model
    return engine.load(model_file(model) if is_model_name(model) else model)


def model_file(model=DEFAULT_MODEL) -> Path:
    """The ONNX file of `model`: a zoo model name (workbench.models: "resnet50", ...) ->
    data/<name>.onnx, written first when missing; a path -> the path if it is a file.
    DEFAULT_MODEL is written first when it is missing; another missing file is a ValueError
    naming the zoo's models."""
    if is_model_name(model):
        return models.model_file(model)
    path = Path(model) if isinstance(model, (str, os.PathLike)) else model
    if path == DEFAULT_MODEL and not path.is_file():
        write_default_model(path)
    return models.model_file(path)


def parse_fuse_blocks(value):
    """A fuse_blocks value as read back from a table: False, True or "auto".

    Accepts what the API takes (bools, numpy bools, "auto") and what a CSV or a table
    edited by hand may hold ("True"/"False", "true"/"false", "1"/"0", "yes"/"no", 0/1, any
    case for the strings). ValueError for anything else (a table this package did not write)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
    raise ValueError(f"fuse_blocks must be True, False or \"auto\", got {value!r}")


def fusion_label(fuse_blocks, fused_blocks: int | None = None) -> str:
    """Words for a fuse_blocks setting, for titles and status lines: "blocks unfused",
    "all blocks fused" or "auto fusion" (with fused_blocks: "auto fusion (3 blocks fused)")."""
    fuse_blocks = parse_fuse_blocks(fuse_blocks)
    if fuse_blocks == "auto":
        if fused_blocks is None:
            return "auto fusion"
        return f"auto fusion ({fused_blocks} block{'' if fused_blocks == 1 else 's'} fused)"
    return "all blocks fused" if fuse_blocks else "blocks unfused"


def describe_fusion(frame: pd.DataFrame) -> str | None:
    """fusion_label of a profile: its fuse_blocks setting and, for "auto", how many of its
    steps are fused blocks (op "block"). None when the frame has no readable fuse_blocks."""
    if "fuse_blocks" not in frame.columns or frame.empty:
        return None
    fused_blocks = int((frame["op"] == "block").sum()) if "op" in frame.columns else None
    try:
        return fusion_label(frame["fuse_blocks"].iloc[0], fused_blocks)
    except ValueError:          # not a value profile writes
        return None


def check_ceilings(ceilings, threads: int | None = None):
    """`ceilings` (None passes: the caller measures them) unless it is not a Ceilings-like
    object (levels, peak_gflops, bandwidth_gbs, ridge_point) or has no roof for `threads`."""
    if ceilings is None:
        return None
    if not all(hasattr(ceilings, name) for name in ("levels", "peak_gflops", "bandwidth_gbs", "ridge_point")):
        raise ValueError(f"ceilings must be a workbench.Ceilings (from workbench.measure_ceilings()), "
                         f"got {type(ceilings).__name__}")
    if threads is not None:
        ceilings.peak_gflops(threads)       # ValueError naming the measured thread counts
        for level in ceilings.levels:
            ceilings.bandwidth_gbs(level, threads)
    return ceilings


def default_ceilings(threads: int | None = None):
    """The ceilings the workbench uses when none are given: this machine's quick
    measurement (measure_ceilings(quick=True), cached on disk), checked to have roofs for
    `threads` (ValueError naming the measured thread counts)."""
    return check_ceilings(ceilings_module.measure_ceilings(quick=True), threads)


def check_level(ceilings, level) -> str:
    """`level` unless it is not one of the ceilings' memory levels (ValueError)."""
    levels = tuple(ceilings.levels)
    if not isinstance(level, str) or level not in levels:
        raise ValueError(f"level must be a memory level of the ceilings, got {level!r}; "
                         f"they have roofs for {', '.join(levels)}")
    return level


def check_profile(frame, columns: Sequence[str], what: str = "profile") -> pd.DataFrame:
    """`frame` unless it is not a non-empty DataFrame with `columns` (workbench.profile's
    output): ValueError naming `what`."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame (workbench.profile's output), "
                         f"got {type(frame).__name__}")
    if frame.empty:
        raise ValueError(f"{what} must be a non-empty profile (one row per step), got {len(frame)} rows")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks required columns {missing}; is it workbench.profile's output? "
                         f"(got columns {list(frame.columns)[:12]})")
    return frame


def profile_threads(frame: pd.DataFrame, what: str = "profile") -> int:
    """The one thread count a profile ran with (ValueError naming `what` if it mixes several)."""
    threads = pd.unique(frame["threads"])
    if len(threads) != 1:
        raise ValueError(f"{what} mixes thread counts {sorted(threads.tolist())}: plot one configuration at a time")
    return int(threads[0])


def default_threads() -> int:
    """The thread count the workbench runs with unless told: this machine's cores, at most 2
    (a 1-core machine gets 1)."""
    return min(2, engine.available_cores())


def run_machine(ceilings) -> MachineInfo:
    """The machine description the engine's runs assume (its "auto" fusion policy, band
    heights and bytes model): this machine (engine.machine.machine_info()) with the
    effective cache sizes `ceilings` measured, when they were measured on this CPU with
    this core count; else this machine's nominal sizes."""
    host = machine_info()
    measured = getattr(ceilings, "machine_info", None)
    if not callable(measured):
        return host
    try:
        info = measured()
    except (ValueError, KeyError, TypeError):       # ceilings without a machine description
        return host
    if not isinstance(info, MachineInfo) or (info.cpu_model, info.cores) != (host.cpu_model, host.cores):
        return host
    try:
        return host.with_effective_caches({level.name: level.effective_bytes for level in info.caches})
    except ValueError:                              # a measured size that is no size: the nominal ones
        return host


def profile(model, batch: int = 1, threads: int | None = None, tiles: engine.Tiles | engine.TileSchedule | None = None,
            fuse_blocks: bool | str = engine.DEFAULT_FUSE_BLOCKS, repeats: int = 5, warmup: int = 1, ceilings=None,
            seed: int = 0, bytes: str = "model") -> pd.DataFrame:
    """Per-step profile of `model` at one configuration.

    model: engine.Model, a zoo model name ("resnet50": workbench.models), a path, bytes or an
    onnx.ModelProto.
    batch: images, 1..4096. threads: 1..this machine's cores; default `default_threads()`
    (the cores, at most 2). tiles: engine.Tiles (every step's), or an engine.TileSchedule
    (tiles per step and fusion per block; one tuned for another model, batch, threads or
    machine is refused with ValueError when it runs).
    fuse_blocks: False (no block fused), True (every inverted-residual block fused) or "auto"
    (only the blocks engine.fusion.fusion_wins expects to run faster at these threads and
    batch); default engine.DEFAULT_FUSE_BLOCKS. repeats: timed runs, 1..10000 (the median is kept),
    after `warmup` (0..10000) untimed ones. seed: of the random input (int >= 0 or None).
    ceilings: a workbench.Ceilings (default: measure_ceilings(quick=True), cached on disk)
    with roofs for `threads`; its effective cache sizes are what the engine's decisions
    and bytes model assume (`run_machine`).
    Every argument is checked (ValueError naming expected and got) before the model is
    loaded, the ceilings measured or anything run.
    Columns: step, layer, op, input_shape, output_shape (NCHW, the model's channels, not
    the engine's blocked buffers: workbench.shapes), members, fused, seconds (median, s), seconds_p10, seconds_p90 (percentiles over the
    repeats), flops, other_flops, gflops (GFLOP/s; gflops_p10, gflops_p90 from the slow and
    fast percentiles: workbench.spread), share_of_time, bytes_<level> and ai_<level>
    (FLOP/byte) for L1, L2, L3, DRAM, attainable_gflops, roof_fraction, bound, bound_level,
    plus the config: batch, threads, fuse_blocks (the value the run was made with: False,
    True or "auto"; `fused` says which steps ended up fused) and one column per Tiles field
    (the tiles each step ran with: its own under a TileSchedule), with tile_fields the
    fields its kernel reads (a tuple; () for a kernel without tiles).
    bytes: what the points stand on. "model" (default): the bytes model (engine.traffic);
    "both": also bytes_sim_<level> and ai_sim_<level> from a cache simulation of the same
    plan (engine.trace: the kernels' own access traces through this machine's caches;
    workbench.simulated_bytes, a progress bar while it runs); "simulated": as "both", with
    bytes_<level>, ai_<level>, the roofs and bounds taken from the simulation and the model's
    bytes kept as bytes_model_<level>.
    """
    bytes = check_bytes_choice(bytes)
    batch = check_batch(batch)
    repeats = check_repeats(repeats)
    warmup = check_int("warmup", warmup, 0, 10_000)
    seed = check_seed(seed)
    threads = check_threads(default_threads() if threads is None else threads)
    tiles = check_tiles(tiles)
    fuse_blocks = check_fuse_blocks(fuse_blocks)
    ceilings = check_ceilings(ceilings, threads)
    model = as_model(model)
    if ceilings is None:
        ceilings = default_ceilings(threads)
    machine = run_machine(ceilings)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape), dtype=np.float32)
    for _ in range(warmup):
        model.run(x, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, machine=machine)
    recorder = engine.Recorder()
    for _ in range(repeats):
        model.run(x, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, hooks=[recorder], machine=machine)
    frame = records_frame(recorder.records)
    summary = summarise(frame, ceilings, run_seconds=[r.seconds for r in recorder.runs], fuse_blocks=fuse_blocks)
    shaped = with_activations(logical_shapes(summary, model), model)   # hover, detail panel, tables show it
    if bytes == "model":
        return shaped
    # here, not at the top: the bytes-check modules import this one's helpers
    from workbench.bytes_check_figure import placed_by_simulated_bytes
    from workbench.simulated_bytes import add_simulated_columns

    checked = add_simulated_columns(shaped, model, machine, tiles, fuse_blocks)
    checked.attrs["bytes"] = bytes
    return placed_by_simulated_bytes(checked, ceilings) if bytes == "simulated" else checked


def records_frame(records) -> pd.DataFrame:
    """Raw LayerRecords -> one row per (run, step), bytes split into bytes_<level> columns."""
    rows = []
    for record in records:
        row = record.as_dict()
        for level in LEVELS:
            row[f"bytes_{level}"] = row["bytes"].get(level, np.nan)
        row.update({f"tile_{k}": v for k, v in row.pop("tiles").items()})
        del row["bytes"]
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, ceilings, run_seconds=(), fuse_blocks=None) -> pd.DataFrame:
    """Median per step over runs, with intensities, roofs and bounds.

    fuse_blocks: the run's setting (False, True or "auto") for the fuse_blocks column; None
    (records of unknown config, e.g. another runtime's) records whether any step was fused."""
    if frame.empty:
        raise ValueError("no records to summarise: was the model run with a Recorder?")
    tile_columns = [c for c in frame.columns if c.startswith("tile_") and c != "tile_fields"]
    first = frame.groupby("step_index", sort=True).first()
    out = pd.DataFrame({
        "step": first.index.to_numpy(),
        "layer": first["name"].to_numpy(),
        "op": first["op"].to_numpy(),
        "input_shape": first["input_shape"].to_numpy(),
        "output_shape": first["output_shape"].to_numpy(),
        "members": first["members"].to_numpy(),
        "tile_fields": first["tile_fields"].to_numpy() if "tile_fields" in first else _no_tile_fields(len(first)),
        "fused": first["fused"].to_numpy(),
        "batch": first["batch"].to_numpy(),
        "threads": first["threads"].to_numpy(),
    })
    out["fuse_blocks"] = bool(frame["fused"].any()) if fuse_blocks is None else parse_fuse_blocks(fuse_blocks)
    for column in tile_columns:
        out[column.removeprefix("tile_")] = first[column].to_numpy()
    seconds_by_step = frame.groupby("step_index", sort=True)["seconds"]
    out["seconds"] = seconds_by_step.median().to_numpy()
    out["flops"] = first["flops"].to_numpy().astype(np.int64)
    out["other_flops"] = first["other_flops"].to_numpy().astype(np.int64)
    out["gflops"] = out["flops"] / out["seconds"] / 1e9
    for column, values in percentile_columns(seconds_by_step, out["flops"].to_numpy()).items():
        out[column] = values
    out["share_of_time"] = out["seconds"] / out["seconds"].sum()
    threads = int(out["threads"].iloc[0])
    place_by_bytes(out, {level: first[f"bytes_{level}"].to_numpy(dtype=float) for level in LEVELS}, ceilings)
    if len(run_seconds):
        out.attrs["run_seconds_median"] = float(np.median(run_seconds))
    out.attrs["peak_gflops"] = ceilings.peak_gflops(threads)
    return out


def _no_tile_fields(rows: int) -> np.ndarray:
    """A tile_fields column of () for records that carry none (another runtime's)."""
    column = np.empty(rows, dtype=object)
    column[:] = [()] * rows
    return column


def place_by_bytes(frame: pd.DataFrame, moved: dict, ceilings) -> pd.DataFrame:
    """Set, in place, a profile's bytes_<level> to `moved` ({level: bytes per step}) and
    everything that follows from them under `ceilings` at the profile's thread count:
    ai_<level>, attainable_gflops, roof_fraction (gflops / attainable), bound_level, bound.
    The one place a profile is placed by a set of bytes (modelled or simulated)."""
    threads = int(frame["threads"].iloc[0])
    attainable, bound_level, intensities = attainable_gflops(frame["flops"].to_numpy(), moved, ceilings, threads)
    for level in LEVELS:
        frame[f"bytes_{level}"] = moved[level]
        frame[f"ai_{level}"] = intensities[level]
    frame["attainable_gflops"] = attainable
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["roof_fraction"] = np.where(attainable > 0, frame["gflops"] / attainable, np.nan)
    frame["bound_level"] = bound_level
    frame["bound"] = np.where(frame["flops"] == 0, "n/a", np.where(bound_level == "compute", "compute", "memory"))
    return frame


def attainable_gflops(flops, bytes_by_level: dict, ceilings, threads: int):
    """The roofline of steps: (attainable GFLOP/s, bound level, {level: arithmetic intensity
    in FLOP/byte}), one entry per step. `flops`: FLOPs per step; `bytes_by_level`: {level:
    modelled bytes per step} for the levels of engine.traffic.LEVELS. A step's attainable
    performance is the lowest of the peak and every level's AI x bandwidth at `threads`;
    its bound level is the level giving it ("compute" for the peak). A level without bytes
    (0 or NaN) sets no roof (AI inf)."""
    flops = np.asarray(flops, dtype=float)
    attainable = np.full(len(flops), ceilings.peak_gflops(threads))
    bound_level = np.array(["compute"] * len(flops), dtype=object)
    intensities = {}
    for level in LEVELS:
        moved = np.asarray(bytes_by_level[level], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            intensity = np.where(moved > 0, flops / moved, np.inf)
        intensities[level] = intensity
        roof = intensity * ceilings.bandwidth_gbs(level, threads)
        lower = roof < attainable
        attainable = np.where(lower, roof, attainable)
        bound_level = np.where(lower, level, bound_level)
    return attainable, bound_level, intensities


def is_memory_bound(ai, level: str, threads: int, ceilings):
    """The memory-bound rule, the one definition the figures, tables and widgets use: a
    step is memory bound at `level` when its arithmetic intensity there (FLOP/byte) is
    below the level's ridge point (peak FLOP/s / the level's bandwidth, at `threads`):
    even a perfect kernel would wait for that level. A non-finite AI (no bytes modelled
    at the level) is not memory bound. `ai`: a number (-> bool) or an array (-> bool array).

    (summarise's `bound` column says the same over all levels at once: a step is memory
    bound when some level's roof, AI x bandwidth, is below the peak.)"""
    intensity = np.asarray(ai, dtype=float)
    with np.errstate(invalid="ignore"):
        memory = np.isfinite(intensity) & (intensity < ceilings.ridge_point(level, threads))
    return bool(memory) if memory.ndim == 0 else memory


def bound_at(frame: pd.DataFrame, ceilings, level: str) -> np.ndarray:
    """What bounds each step of a profile at `level`: "memory" (is_memory_bound),
    "compute", or "n/a" for a step without FLOPs; one string per row."""
    threads = int(frame["threads"].iloc[0])
    memory = is_memory_bound(frame[f"ai_{level}"].to_numpy(dtype=float), level, threads, ceilings)
    flops = pd.to_numeric(frame["flops"], errors="coerce").fillna(0).to_numpy()
    return np.where(flops <= 0, "n/a", np.where(memory, "memory", "compute"))


def fuse_blocks_for_disk(column: pd.Series) -> pd.Series:
    """The fuse_blocks column as written to CSV/Parquet: a bool column when it holds only
    bools, else every value as text ("False", "True", "auto"), because Parquet cannot
    store a column mixing bools and strings. parse_fuse_blocks reads both back."""
    try:
        values = column.map(parse_fuse_blocks)
    except ValueError:          # not values this package writes (NaN from a concat, say): as text
        return column.map(str)
    if all(isinstance(value, bool) for value in values):
        return values.astype(bool)
    return values.map(str)


def save_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write CSV or Parquet (by suffix) atomically. Tuple/list/dict columns are written as
    their str(); fuse_blocks as fuse_blocks_for_disk says."""
    path = Path(path)
    flat = frame.copy()
    if "fuse_blocks" in flat.columns:
        flat["fuse_blocks"] = fuse_blocks_for_disk(flat["fuse_blocks"])
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, (tuple, list, dict))).any():
            flat[column] = flat[column].map(str)
    with atomic_path(path) as temporary:
        if path.suffix == ".parquet":
            flat.to_parquet(temporary, index=False)
        else:
            flat.to_csv(temporary, index=False)
    return path
