"""The table a sweep writes, reads back and resumes from.

One row per (config, step): every column of `workbench.profile` (step, layer, op, seconds,
flops, bytes_<level>, ai_<level>, bound, ...) plus
- `config_id`: a readable, stable key of the config ("batch=1,threads=2,fuse_blocks=0,
  pointwise_pixels=64,..."; fuse_blocks=0, 1 or auto), the same in every run of every sweep;
- the config columns `CONFIG_COLUMNS`: batch, threads, fuse_blocks and one per Tiles field
  (a field not swept keeps its Tiles() default). fuse_blocks holds the value the config
  ran with: False, True or "auto" (the steps' own `fused` column says which blocks "auto"
  fused); a column with only bools is bool, one with "auto" in it holds Python objects;
- `schedule`, only in a table with tile schedules: the schedule's label (sweep_grid) on
  its configs' rows (empty on the others); there the tile columns hold the tiles each
  step ran with, and config_id names the schedule instead of tile values;
- `host` (socket.gethostname()) and `cpu_model` of the machine that ran it, locally too;
- `started_at`, `finished_at`: when its timed runs began and ended (s since the epoch), so
  one can check that no two timings on one host overlapped;
- `run_seconds`: the median wall time of a whole hooked run (s), the same on every row of
  a config; it includes the per-step hook overhead that the step times leave out.
Tuple columns (input_shape, output_shape, members, tile_fields) are stored as their str(), as in the
CSV and Parquet files, so a fresh and a resumed table look the same. On disk fuse_blocks
is a bool column while it holds only bools and text ("False", "True", "auto") once it
holds "auto" (Parquet cannot mix the two; profile.fuse_blocks_for_disk); `read_table`
gives back False, True and "auto" from either, so resume works across both.

Totals are *not* extra rows (a TOTAL row would double every sum over the table and would be
drawn on a roofline): they are `sweep_totals(frame)`, computed from the rows alone, so also
from the file of an earlier sweep.

Writing (`SweepTable`). After each config finishes, the whole accumulated table is written
to a temporary file in `out`'s folder and renamed over `out` (os.replace, atomic on POSIX):
an interrupted sweep keeps every finished config and never leaves a half-written file. To
resume, `read_previous` reads `out`; one that cannot be read (a corrupted or foreign file)
is moved aside to `<name>.unreadable-<time>` with a warning and the sweep starts afresh.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from engine.traffic import LEVELS
from workbench.profile import parse_fuse_blocks, save_frame
from workbench.sweep_grid import CONFIG_COLUMNS, TILE_FIELDS, config_id, schedule_of

logger = logging.getLogger(__name__)

KEY_COLUMNS = ["config_id", *CONFIG_COLUMNS, "host", "cpu_model"]
SKIPPED_COLUMNS = ["config_id", *CONFIG_COLUMNS, "host", "reason"]
TUPLE_COLUMNS = ("input_shape", "output_shape", "members", "tile_fields")


def config_rows(frame: pd.DataFrame, config: dict, host: str, cpu_model: str, started_at: float = np.nan,
                finished_at: float = np.nan) -> pd.DataFrame:
    """A `profile` frame as sweep rows: config_id, config columns, host, cpu_model (and a
    schedule's label) first; started_at, finished_at (s since the epoch) and run_seconds
    added; tuple columns as str. A schedule's rows keep the tiles each step ran with."""
    rows = frame.copy()
    label = schedule_of(config)
    for column in CONFIG_COLUMNS if label is None else CONFIG_COLUMNS[:3]:
        rows[column] = parse_fuse_blocks(config[column]) if column == "fuse_blocks" else int(config[column])
    if label is not None:
        rows["schedule"] = label
    rows["config_id"] = config_id(config)
    rows["host"] = host
    rows["cpu_model"] = cpu_model
    rows["started_at"] = float(started_at)
    rows["finished_at"] = float(finished_at)
    rows["run_seconds"] = float(frame.attrs.get("run_seconds_median", np.nan))
    for column in TUPLE_COLUMNS:
        if column in rows.columns:
            rows[column] = rows[column].map(str)
    rows.attrs = {}
    first = KEY_COLUMNS + (["schedule"] if label is not None else [])
    return rows[first + [c for c in rows.columns if c not in first]]


def skipped_row(config: dict, host: str | None, reason: str) -> dict:
    """A skipped config, for frame.attrs["skipped"]: config_id, its config values (and
    schedule label), host, reason."""
    return {"config_id": config_id(config), **config, "host": host, "reason": reason}


def sweep_totals(frame: pd.DataFrame, ops=None) -> pd.DataFrame:
    """One row per (config_id, host) of a sweep table.

    Columns: config_id, the config columns, host, cpu_model (schedule, in a table with
    schedules: there a schedule's config has no single tile value, so its tile columns are
    <NA>), steps, seconds (sum of the step medians, s), run_seconds (median whole run, s),
    flops, gflops (flops / seconds / 1e9, GFLOP/s), images_per_second (batch /
    run_seconds), bytes_<level> (summed) and ai_<level> (FLOP/byte over the whole run) for
    L1, L2, L3, DRAM.
    ops: only the steps whose op is one of these (say ["expand", "project", "pointwise"])
    count in steps, seconds, flops, gflops, bytes and ai; run_seconds and
    images_per_second stay the whole run's; a config without such steps has no row.
    """
    key_columns = KEY_COLUMNS + (["schedule"] if "schedule" in frame.columns else [])
    columns = [*key_columns, "steps", "seconds", "run_seconds", "flops", "gflops", "images_per_second",
               *(f"bytes_{level}" for level in LEVELS), *(f"ai_{level}" for level in LEVELS)]
    if ops is not None and "op" in frame.columns:
        frame = frame[frame["op"].isin([ops] if isinstance(ops, str) else list(ops))]
    if frame.empty or "config_id" not in frame.columns:
        return pd.DataFrame(columns=columns)
    sums = {"seconds": "sum", "flops": "sum", "run_seconds": "first", "step": "count",
            **{f"bytes_{level}": "sum" for level in LEVELS if f"bytes_{level}" in frame.columns}}
    first = {column: "first" for column in key_columns if column not in ("config_id", "host")}
    totals = frame.groupby(["config_id", "host"], sort=False, dropna=False).agg({**first, **sums}).reset_index()
    if "schedule" in totals.columns:
        scheduled = totals.apply(schedule_of, axis=1).notna()
        for field in TILE_FIELDS:
            totals[field] = totals[field].astype("Int64").mask(scheduled)
    totals = totals.rename(columns={"step": "steps"})
    totals["flops"] = totals["flops"].astype(np.int64)
    totals["gflops"] = totals["flops"] / totals["seconds"] / 1e9
    totals["images_per_second"] = totals["batch"] / totals["run_seconds"]
    for level in LEVELS:
        if f"bytes_{level}" in totals.columns:
            moved = totals[f"bytes_{level}"].to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                totals[f"ai_{level}"] = np.where(moved > 0, totals["flops"].to_numpy() / moved, np.inf)
    return totals[[c for c in columns if c in totals.columns]]


def read_table(path: Path) -> pd.DataFrame:
    """A sweep table written by `sweep` (Parquet or CSV, by suffix), with fuse_blocks as
    False, True or "auto" whichever way the file stores it (see the module docstring)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:   # only empty fields are missing: "n/a" is a value of `bound`, not NaN
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path} is not a sweep table: it lacks the columns {missing}")
    if table["fuse_blocks"].dtype != bool:
        try:
            table["fuse_blocks"] = table["fuse_blocks"].map(parse_fuse_blocks)
        except ValueError as error:
            raise ValueError(f"{path} is not a sweep table: its fuse_blocks column holds a value that is "
                             f"not False, True or \"auto\" ({error})") from None
    return table


def read_previous(out: Path) -> pd.DataFrame | None:
    """The table in `out` to resume from, or None if it cannot be read: then the file is
    kept beside it as `<name>.unreadable-<time>` (nothing the user saved is lost), a
    warning says so, and the sweep starts afresh."""
    try:
        return read_table(out)
    except Exception as error:  # noqa: BLE001 - pyarrow, CSV and schema errors alike
        kept = out.with_name(f"{out.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(out, kept)
        message = (f"sweep: cannot resume from {out} ({type(error).__name__}: {error}); "
                   f"it was moved to {kept.name} and the sweep starts afresh")
        logger.warning(message)
        warnings.warn(message, stacklevel=3)
        return None


def check_out(out) -> Path | None:
    """`out` as a Path (None passes) unless it is not a .parquet or .csv file path (ValueError)."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"out must be a .parquet or .csv path, got {type(out).__name__}")
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"out must end in .parquet or .csv, got {str(out)!r}")
    if out.is_dir():
        raise ValueError(f"out is a folder, expected a file path: {out}")
    return out


class SweepTable:
    """The accumulated rows, saved atomically after each config."""

    def __init__(self, out: Path | None, previous: pd.DataFrame | None):
        self.out = out
        self.parts = [previous] if previous is not None and len(previous) else []

    def add(self, rows: pd.DataFrame) -> None:
        self.parts.append(rows)
        if self.out is not None:
            save_frame(self.frame(), self.out)

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=KEY_COLUMNS)
        return pd.concat(self.parts, ignore_index=True) if len(self.parts) > 1 else self.parts[0].reset_index(drop=True)


def plain_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (JSON-safe, so they may live in DataFrame.attrs)."""
    return [{key: value.item() if isinstance(value, np.generic) else value for key, value in row.items()}
            for row in frame.to_dict("records")]
