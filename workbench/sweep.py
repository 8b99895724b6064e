"""`sweep`: a grid of configurations profiled into one table, written as it goes.

    import workbench
    frame = workbench.sweep("data/mobilenet_v2.onnx", batch=[1, 8], threads=[1, 2],
                            tiles={"pointwise_pixels": [32, 64, 128]}, fuse_blocks=[False, "auto", True],
                            out="sweep.parquet")
    workbench.sweep_totals(frame)          # one row per (config, host): run time, images/s, GFLOP/s
    pd.DataFrame(frame.attrs["skipped"])   # configs that could not run, with the reason

The table. One row per (config, step): every column of `workbench.profile` (step, layer,
op, seconds, flops, bytes_<level>, ai_<level>, bound, ...) plus
- `config_id`: a readable, stable key of the config ("batch=1,threads=2,fuse_blocks=0,
  pointwise_pixels=64,..."; fuse_blocks=0, 1 or auto), the same in every run of every sweep;
- the config columns `CONFIG_COLUMNS`: batch, threads, fuse_blocks and one per Tiles field
  (a field not swept keeps its Tiles() default). fuse_blocks holds the value the config
  ran with: False, True or "auto" (the steps' own `fused` column says which blocks "auto"
  fused); a column with only bools is bool, one with "auto" in it holds Python objects;
- `host` (socket.gethostname()) and `cpu_model` of the machine that ran it, locally too;
- `started_at`, `finished_at`: when its timed runs began and ended (s since the epoch), so
  one can check that no two timings on one host overlapped;
- `run_seconds`: the median wall time of a whole hooked run (s), the same on every row of
  a config; it includes the per-step hook overhead that the step times leave out.
Tuple columns (input_shape, output_shape, members) are stored as their str(), as in the
CSV and Parquet files, so a fresh and a resumed table look the same. On disk fuse_blocks
is a bool column while it holds only bools (as in files written before "auto" existed)
and text ("False", "True", "auto") once it holds "auto" (Parquet cannot mix the two);
`read_table` gives back False, True and "auto" from either, so resume works across both.

Totals are *not* extra rows (a TOTAL row would double every sum over the table and would be
drawn on a roofline): they are `sweep_totals(frame)`, computed from the rows alone, so also
from the file of an earlier sweep. `frame.attrs["totals"]` and `frame.attrs["skipped"]` hold
the totals and the skipped configs as lists of row dicts of plain Python values
(`pd.DataFrame(frame.attrs["totals"])` is the table): pandas writes `attrs` into Parquet
metadata as JSON, so a DataFrame there would make `frame.to_parquet(...)` raise TypeError.

Writing. After each config finishes, the whole accumulated table is written to a temporary
file in `out`'s folder and renamed over `out` (os.replace, atomic on POSIX): an interrupted
sweep keeps every finished config and never leaves a half-written file. `resume=True` reads
`out` and skips every config whose config columns are already there; the returned frame is
the whole table in `out` (earlier configs included). An `out` that cannot be read (a
corrupted or foreign file) is moved aside to `<name>.unreadable-<time>` with a warning and
the sweep starts afresh. Without resume an existing `out` is
overwritten (with a warning) when the first config finishes.

Invalid combinations (a tile value outside its range, batch outside 1..4096, threads above
the cores of the machine that would run it) are logged with `logging.warning`, listed in
`frame.attrs["skipped"]` with the reason, and skipped; the sweep goes on. Values of the
wrong type (a string, None, a float, a bool where an int belongs) and every other bad
argument are refused with ValueError before anything runs.

On a Dask cluster (`client=` a `distributed.Client` or a scheduler address): one task per
config. Each worker loads the model itself from the bytes broadcast once to every worker,
and measures (or loads from its disk cache) its own machine's ceilings with
`measure_ceilings(quick=True)` unless `ceilings` is given. One benchmark at a time per
*machine*: a task times only while it holds the `distributed.Lock` named after its host
(`benchmark_lock_name`), so two workers on one host, or a worker with several threads, never
time at the same moment, with no special worker set-up (no resources to declare, nothing
that can leave a task waiting for a resource no worker has). Tasks waiting for the lock hold
a worker thread idle. A client given as an address is created and closed by `sweep`; a
Client object is left open.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import engine
from engine import checks
from engine.checks import check_batch, check_bool, check_repeats
from workbench.profile import check_ceilings, parse_fuse_blocks, profile, save_frame

logger = logging.getLogger(__name__)

TILE_FIELDS = tuple(engine.Tiles().as_dict())
CONFIG_COLUMNS = ["batch", "threads", "fuse_blocks", *TILE_FIELDS]
KEY_COLUMNS = ["config_id", *CONFIG_COLUMNS, "host", "cpu_model"]
SKIPPED_COLUMNS = ["config_id", *CONFIG_COLUMNS, "host", "reason"]
TUPLE_COLUMNS = ("input_shape", "output_shape", "members")
LEVELS = ("L1", "L2", "L3", "DRAM")


# ---------------------------------------------------------------------------- the grid

def config_id(config: dict) -> str:
    """The stable, readable key of a config dict: "batch=1,threads=2,fuse_blocks=0,..."."""
    parts = []
    for column in CONFIG_COLUMNS:
        value = config[column]
        if column == "fuse_blocks":
            value = parse_fuse_blocks(value)
            value = value if value == "auto" else int(value)
        parts.append(f"{column}={value}")
    return ",".join(parts)


def _as_list(name: str, values) -> list:
    if isinstance(values, (list, tuple, range, np.ndarray, pd.Index, pd.Series)):
        values = list(values)
    else:
        values = [values]
    if not values:
        raise ValueError(f"{name} must hold at least one value, got an empty list")
    unique = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique


def grid(batch=(1,), threads=(1,), tiles: dict | None = None,
         fuse_blocks=(engine.DEFAULT_FUSE_BLOCKS,)) -> list[dict]:
    """Every combination, as config dicts with the keys CONFIG_COLUMNS, in a fixed order
    (batch outermost, then threads, fuse_blocks and the tile fields in Tiles order).

    Values are not range-checked here (that is per config, see `check_config`); their types
    and the shape of the arguments are: batch, threads and each tile an int (numpy ints
    too) or a non-empty list of ints, `tiles` a dict {Tiles field: value or list},
    fuse_blocks a value or a list of values among False, True and "auto" (numpy bools
    too; default: engine.DEFAULT_FUSE_BLOCKS). Raises ValueError naming what is wrong.
    """
    tiles = {} if tiles is None else tiles
    if not isinstance(tiles, dict):
        raise ValueError(f"tiles must be a dict {{field: [values]}} with fields {list(TILE_FIELDS)}, "
                         f"got {type(tiles).__name__}")
    unknown = [name for name in tiles if name not in TILE_FIELDS]
    if unknown:
        raise ValueError(f"unknown tile field(s) {unknown}; Tiles fields: {list(TILE_FIELDS)}")
    fuse_values = _fuse_list(fuse_blocks)
    defaults = engine.Tiles().as_dict()
    axes = {"batch": _int_list("batch", batch), "threads": _int_list("threads", threads),
            "fuse_blocks": fuse_values}
    for name in TILE_FIELDS:
        axes[name] = _int_list(f"tiles[{name!r}]", tiles[name]) if name in tiles else [defaults[name]]
    return [dict(zip(CONFIG_COLUMNS, values)) for values in itertools.product(*axes.values())]


def _fuse_list(values) -> list:
    """fuse_blocks values: each checked as Model.run checks it (True, False, numpy bools or
    exactly "auto"; "Auto", "yes", 1 refused), before duplicates are dropped."""
    listed = list(values) if isinstance(values, (list, tuple, range, np.ndarray, pd.Index, pd.Series)) else [values]
    checked = []
    for value in listed:
        try:
            checked.append(checks.check_fuse_blocks(value))
        except ValueError:
            raise ValueError(f"fuse_blocks must be True, False or \"auto\" (or a list of them), "
                             f"got {value!r}") from None
    return _as_list("fuse_blocks", checked)


def _int_list(name: str, values) -> list[int]:
    """_as_list of ints: the range is checked per config, the type here (ValueError)."""
    values = _as_list(name, values)
    wrong = [value for value in values
             if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))]
    if wrong:
        raise ValueError(f"{name} must be ints (or a list of ints), got {wrong[0]!r}")
    return [int(value) for value in values]


def check_config(config: dict, cores: int | None = None) -> engine.Tiles:
    """Validate one config; returns its Tiles. ValueError says why it cannot run.

    cores: the cores of the machine that will run it (None: not checked here)."""
    check_batch(config["batch"])
    threads = config["threads"]
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if cores is not None and threads > cores:
        raise ValueError(f"threads={threads} is more than the {cores} cores of this machine")
    return engine.Tiles(**{name: config[name] for name in TILE_FIELDS})


def _key(config) -> tuple:
    """Config columns as a hashable, type-normalised tuple (for matching rows of a file)."""
    key = []
    for column in CONFIG_COLUMNS:
        value = config[column]
        if column == "fuse_blocks":
            key.append(parse_fuse_blocks(value))
        else:
            try:
                key.append(int(value))
            except (TypeError, ValueError):
                key.append(value)
    return tuple(key)


# ---------------------------------------------------------------------------- one config

def _machine() -> tuple[str, str]:
    from engine.machine import machine_info

    return socket.gethostname(), machine_info().cpu_model


def config_rows(frame: pd.DataFrame, config: dict, host: str, cpu_model: str, started_at: float = np.nan,
                finished_at: float = np.nan) -> pd.DataFrame:
    """A `profile` frame as sweep rows: config_id, config columns, host, cpu_model first;
    started_at, finished_at (s since the epoch) and run_seconds added; tuple columns as str."""
    rows = frame.copy()
    for column in CONFIG_COLUMNS:
        rows[column] = parse_fuse_blocks(config[column]) if column == "fuse_blocks" else int(config[column])
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
    return rows[KEY_COLUMNS + [c for c in rows.columns if c not in KEY_COLUMNS]]


def _skipped_row(config: dict, host: str | None, reason: str) -> dict:
    return {"config_id": config_id(config), **config, "host": host, "reason": reason}


# ---------------------------------------------------------------------------- on a worker

_WORKER_MODELS: dict[str, engine.Model] = {}
_WORKER_CEILINGS: list = []


def benchmark_lock_name(host: str) -> str:
    """Name of the distributed.Lock a worker on `host` holds while it times."""
    return f"roofline-workbench-benchmark:{host}"


def _worker_model(digest: str, model_bytes: bytes) -> engine.Model:
    model = _WORKER_MODELS.get(digest)
    if model is None:
        _WORKER_MODELS.clear()          # one model at a time: a plan cache is not small
        model = _WORKER_MODELS[digest] = engine.load(model_bytes)
    return model


def run_config_on_worker(model_bytes: bytes, digest: str, config: dict, repeats: int, ceilings=None) -> dict:
    """Profile one config on a Dask worker (the task `sweep` submits).

    Returns {"rows": DataFrame} or {"skipped": reason, "host": host}. Times, and measures
    ceilings, only while holding this host's benchmark lock."""
    from distributed import Lock

    host, cpu_model = _machine()
    try:
        tiles = check_config(config, cores=engine.available_cores())
    except ValueError as error:
        return {"skipped": str(error), "host": host}
    model = _worker_model(digest, model_bytes)
    with Lock(benchmark_lock_name(host)):
        if ceilings is None:
            if not _WORKER_CEILINGS:
                from workbench.ceilings import measure_ceilings
                _WORKER_CEILINGS.append(measure_ceilings(quick=True))
            ceilings = _WORKER_CEILINGS[0]
        started_at = time.time()
        try:
            frame = profile(model, batch=int(config["batch"]), threads=int(config["threads"]), tiles=tiles,
                            fuse_blocks=config["fuse_blocks"], repeats=repeats, ceilings=ceilings)
        except (ValueError, MemoryError) as error:
            return {"skipped": f"{type(error).__name__}: {error}", "host": host}
        finished_at = time.time()
    return {"rows": config_rows(frame, config, host, cpu_model, started_at, finished_at)}


# ---------------------------------------------------------------------------- totals

def sweep_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (config_id, host) of a sweep table.

    Columns: config_id, the config columns, host, cpu_model, steps, seconds (sum of the
    step medians, s), run_seconds (median whole run, s), flops, gflops (flops / seconds /
    1e9, GFLOP/s), images_per_second (batch / run_seconds), bytes_<level> (summed) and
    ai_<level> (FLOP/byte over the whole run) for L1, L2, L3, DRAM.
    """
    columns = [*KEY_COLUMNS, "steps", "seconds", "run_seconds", "flops", "gflops", "images_per_second",
               *(f"bytes_{level}" for level in LEVELS), *(f"ai_{level}" for level in LEVELS)]
    if frame.empty or "config_id" not in frame.columns:
        return pd.DataFrame(columns=columns)
    sums = {"seconds": "sum", "flops": "sum", "run_seconds": "first", "step": "count",
            **{f"bytes_{level}": "sum" for level in LEVELS if f"bytes_{level}" in frame.columns}}
    first = {column: "first" for column in KEY_COLUMNS if column not in ("config_id", "host")}
    totals = frame.groupby(["config_id", "host"], sort=False).agg({**first, **sums}).reset_index()
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


# ---------------------------------------------------------------------------- the sweep

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


def _read_previous(out: Path) -> pd.DataFrame | None:
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


def _check_out(out) -> Path | None:
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


def _check_model_source(model, client) -> None:
    """Refuse a model argument `sweep` could not load, and a client that is not one, before
    anything runs (the model itself is loaded when the first config runs)."""
    if client is not None and not isinstance(client, str) and not callable(getattr(client, "submit", None)):
        raise ValueError(f"client must be None, a dask.distributed.Client or a scheduler address, "
                         f"got {type(client).__name__}")
    if isinstance(model, engine.Model):
        if client is not None:
            raise ValueError("with a client, model must be a path, bytes or an onnx.ModelProto (workers load "
                             "it themselves), got an engine.Model")
        return
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise ValueError(f"model must be an existing ONNX file, got {str(model)!r} (not found)")
        return
    if not isinstance(model, (bytes, bytearray)) and not hasattr(model, "SerializeToString"):
        raise ValueError(f"model must be an engine.Model, an ONNX file path, bytes or an onnx.ModelProto, "
                         f"got {type(model).__name__}")


def _model_bytes(model) -> bytes:
    """The ONNX bytes to send to workers: from a path, bytes or an onnx.ModelProto."""
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        return path.read_bytes()
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString()
    raise ValueError(f"with a client, model must be a path, bytes or an onnx.ModelProto (workers load it "
                     f"themselves), got {type(model).__name__}")


class _Table:
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


def sweep(model, batch=(1,), threads=(1,), tiles: dict | None = None, fuse_blocks=(engine.DEFAULT_FUSE_BLOCKS,),
          repeats: int = 3, out=None, resume: bool = False, client=None, ceilings=None, progress: bool = True) -> pd.DataFrame:
    """Profile every combination of the given values; one row per (config, step).

    model: a path, bytes or onnx.ModelProto (an engine.Model too, but not with a client).
    batch, threads: a value or a list of values. tiles: {Tiles field: list of values}; a
        field not given keeps its Tiles() default. fuse_blocks: a value or a list of values
        among False, True and "auto" (fuse only where engine.plan.fusion_wins expects a
        win at that config's threads and batch); default [engine.DEFAULT_FUSE_BLOCKS].
    repeats: timed runs per config (the median is kept), after one warm-up run.
    out: a .parquet or .csv path written after every finished config (atomically).
    resume: skip configs whose config columns are already in `out`.
    client: None (run here), a dask.distributed.Client or a scheduler address string.
    ceilings: a workbench.Ceilings for the roofs; None: measure_ceilings(quick=True) here,
        or on each worker when run on a cluster.
    progress: show a tqdm.auto progress bar (a widget in notebooks, text in a terminal).
    Returns the table described in the module docstring, with attrs "totals"
    (`sweep_totals` as a list of row dicts) and "skipped" (row dicts: config_id, the config
    columns, host, reason).
    """
    from tqdm.auto import tqdm

    repeats = check_repeats(repeats)
    configs = grid(batch, threads, tiles, fuse_blocks)
    out = _check_out(out)
    resume = check_bool("resume", resume)
    progress = check_bool("progress", progress)
    ceilings = check_ceilings(ceilings)
    _check_model_source(model, client)
    previous = None
    if out is not None and out.exists():
        if resume:
            previous = _read_previous(out)
        else:
            logger.warning("sweep: %s exists and resume=False: it will be overwritten", out)
    done = set() if previous is None else {_key(row) for row in previous[CONFIG_COLUMNS].to_dict("records")}
    todo = [config for config in configs if _key(config) not in done]
    if len(todo) < len(configs):
        logger.info("sweep: %d of %d configs already in %s, skipped", len(configs) - len(todo), len(configs), out)

    table = _Table(out, previous)
    skipped: list[dict] = []

    def skip(config, host, reason):
        logger.warning("sweep: skipped %s: %s", config_id(config), reason)
        skipped.append(_skipped_row(config, host, reason))

    bar = tqdm(total=len(todo), desc="sweep", unit="config", disable=not progress)
    try:
        if client is None:
            _sweep_here(model, todo, repeats, ceilings, table, skip, bar)
        else:
            _sweep_on_cluster(model, todo, repeats, ceilings, client, table, skip, bar)
    finally:
        bar.close()

    frame = table.frame()
    frame.attrs["totals"] = _records(sweep_totals(frame))
    frame.attrs["skipped"] = _records(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))
    return frame


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (JSON-safe, so they may live in DataFrame.attrs)."""
    return [{key: value.item() if isinstance(value, np.generic) else value for key, value in row.items()}
            for row in frame.to_dict("records")]


def _sweep_here(model, todo, repeats, ceilings, table: _Table, skip, bar) -> None:
    from workbench.profile import as_model

    host, cpu_model = _machine()
    cores = engine.available_cores()
    loaded = None
    for config in todo:
        bar.set_postfix_str(config_id(config), refresh=False)
        try:
            tiles = check_config(config, cores=cores)
        except ValueError as error:
            skip(config, host, str(error))
            bar.update()
            continue
        if loaded is None:
            loaded = as_model(model)
        if ceilings is None:
            from workbench.ceilings import measure_ceilings
            ceilings = measure_ceilings(quick=True)
        started_at = time.time()
        try:
            frame = profile(loaded, batch=int(config["batch"]), threads=int(config["threads"]), tiles=tiles,
                            fuse_blocks=config["fuse_blocks"], repeats=repeats, ceilings=ceilings)
        except (ValueError, MemoryError) as error:
            skip(config, host, f"{type(error).__name__}: {error}")
        else:
            table.add(config_rows(frame, config, host, cpu_model, started_at, time.time()))
        bar.update()


def _sweep_on_cluster(model, todo, repeats, ceilings, client, table: _Table, skip, bar) -> None:
    from distributed import Client, as_completed

    model_bytes = _model_bytes(model)
    owned = isinstance(client, str)
    if owned:
        client = Client(client, set_as_default=False)
    try:
        runnable = []
        for config in todo:
            try:
                check_config(config)          # cores are checked on the worker that runs it
            except ValueError as error:
                skip(config, None, str(error))
                bar.update()
            else:
                runnable.append(config)
        if not runnable:
            return
        digest = hashlib.sha256(model_bytes).hexdigest()
        [model_future] = client.scatter([model_bytes], broadcast=True, hash=False)
        futures = {client.submit(run_config_on_worker, model_future, digest, config, repeats, ceilings,
                                 pure=False): config
                   for config in runnable}
        try:
            for future in as_completed(futures, loop=client.loop):
                config = futures[future]
                result = future.result()
                if "rows" in result:
                    table.add(result["rows"])
                else:
                    skip(config, result["host"], result["skipped"])
                bar.set_postfix_str(config_id(config), refresh=False)
                bar.update()
        finally:
            client.cancel(list(futures))
    finally:
        if owned:
            client.close()
