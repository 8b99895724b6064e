"""`profile`: run the engine with a Recorder over one configuration -> a pandas DataFrame.

One row per executed step (a layer, or a fused block), the median over `repeats` runs,
with the FLOPs, the modelled bytes and arithmetic intensity at every memory level, the
attainable performance under the machine's measured roofs, and what bounds the step.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

import engine
from engine.traffic import LEVELS

CONFIG_COLUMNS = ["batch", "threads", "fuse_blocks"]


def as_model(model) -> engine.Model:
    """An engine.Model from a Model, a path, bytes or an onnx.ModelProto."""
    if isinstance(model, engine.Model):
        return model
    return engine.load(model)


def check_repeats(repeats) -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or not 1 <= repeats <= 10_000:
        raise ValueError(f"repeats must be an int in 1..10000, got {repeats!r}")
    return int(repeats)


def check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 1 <= batch <= 4096:
        raise ValueError(f"batch must be an int in 1..4096, got {batch!r}")
    return int(batch)


def profile(model, batch: int = 1, threads: int = 2, tiles: engine.Tiles | None = None,
            fuse_blocks: bool = False, repeats: int = 5, warmup: int = 1, ceilings=None,
            seed: int = 0) -> pd.DataFrame:
    """Per-step profile of `model` at one configuration.

    model: engine.Model, a path, bytes or an onnx.ModelProto.
    threads: capped at this machine's cores. repeats: timed runs (the median is kept).
    ceilings: a workbench.Ceilings (default: measure_ceilings(quick=True), cached on disk).
    Columns: step, layer, op, input_shape, output_shape, members, fused, seconds (median,
    s), flops, other_flops, gflops (GFLOP/s), share_of_time, bytes_<level> and ai_<level>
    (FLOP/byte) for L1, L2, L3, DRAM, attainable_gflops, roof_fraction, bound, bound_level,
    plus the config: batch, threads, fuse_blocks and one column per Tiles field.
    """
    model = as_model(model)
    batch = check_batch(batch)
    repeats = check_repeats(repeats)
    threads = model.check_threads(threads)
    tiles = engine.Tiles() if tiles is None else tiles
    if ceilings is None:
        from workbench.ceilings import measure_ceilings
        ceilings = measure_ceilings(quick=True)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape), dtype=np.float32)
    for _ in range(max(0, warmup)):
        model.run(x, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks)
    recorder = engine.Recorder()
    for _ in range(repeats):
        model.run(x, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, hooks=[recorder])
    frame = records_frame(recorder.records)
    return summarise(frame, ceilings, run_seconds=[r.seconds for r in recorder.runs])


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


def summarise(frame: pd.DataFrame, ceilings, run_seconds=()) -> pd.DataFrame:
    """Median per step over runs, with intensities, roofs and bounds."""
    if frame.empty:
        raise ValueError("no records to summarise: was the model run with a Recorder?")
    tile_columns = [c for c in frame.columns if c.startswith("tile_")]
    first = frame.groupby("step_index", sort=True).first()
    out = pd.DataFrame({
        "step": first.index.to_numpy(),
        "layer": first["name"].to_numpy(),
        "op": first["op"].to_numpy(),
        "input_shape": first["input_shape"].to_numpy(),
        "output_shape": first["output_shape"].to_numpy(),
        "members": first["members"].to_numpy(),
        "fused": first["fused"].to_numpy(),
        "batch": first["batch"].to_numpy(),
        "threads": first["threads"].to_numpy(),
    })
    out["fuse_blocks"] = bool(frame["fused"].any())
    for column in tile_columns:
        out[column.removeprefix("tile_")] = first[column].to_numpy()
    out["seconds"] = frame.groupby("step_index", sort=True)["seconds"].median().to_numpy()
    out["flops"] = first["flops"].to_numpy().astype(np.int64)
    out["other_flops"] = first["other_flops"].to_numpy().astype(np.int64)
    out["gflops"] = out["flops"] / out["seconds"] / 1e9
    out["share_of_time"] = out["seconds"] / out["seconds"].sum()
    threads = int(out["threads"].iloc[0])
    peak = ceilings.peak_gflops(threads)
    attainable = np.full(len(out), peak)
    bound_level = np.array(["compute"] * len(out), dtype=object)
    for level in LEVELS:
        moved = first[f"bytes_{level}"].to_numpy(dtype=float)
        out[f"bytes_{level}"] = moved
        with np.errstate(divide="ignore", invalid="ignore"):
            intensity = np.where(moved > 0, out["flops"].to_numpy() / moved, np.inf)
        out[f"ai_{level}"] = intensity
        roof = intensity * ceilings.bandwidth_gbs(level, threads)
        lower = roof < attainable
        attainable = np.where(lower, roof, attainable)
        bound_level = np.where(lower, level, bound_level)
    out["attainable_gflops"] = attainable
    with np.errstate(divide="ignore", invalid="ignore"):
        out["roof_fraction"] = np.where(attainable > 0, out["gflops"] / attainable, np.nan)
    out["bound_level"] = bound_level
    out["bound"] = np.where(out["flops"] == 0, "n/a", np.where(bound_level == "compute", "compute", "memory"))
    if len(run_seconds):
        out.attrs["run_seconds_median"] = float(np.median(run_seconds))
    out.attrs["peak_gflops"] = peak
    return out


def is_memory_bound(ai: float, level: str, threads: int, ceilings) -> bool:
    """A step is memory bound at `level` when its AI there is below the ridge point."""
    return ai < ceilings.ridge_point(level, threads) if math.isfinite(ai) else False


def save_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write CSV or Parquet (by suffix) atomically."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        flat = frame.copy()
        for column in flat.columns:
            if flat[column].map(lambda v: isinstance(v, (tuple, list, dict))).any():
                flat[column] = flat[column].map(str)
        if path.suffix == ".parquet":
            flat.to_parquet(temporary, index=False)
        else:
            flat.to_csv(temporary, index=False)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
