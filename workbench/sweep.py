"""`sweep`: a grid of configurations profiled into one table, written as it goes.

    import workbench
    frame = workbench.sweep("data/mobilenet_v2.onnx", batch=[1, 8], threads=[1, 2],
                            tiles={"pointwise_pixels": [32, 64, 128]}, fuse_blocks=[False, "auto", True],
                            out="sweep.parquet")
    workbench.sweep_totals(frame)          # one row per (config, host): run time, images/s, GFLOP/s
    pd.DataFrame(frame.attrs["skipped"])   # configs that could not run, with the reason
    workbench.sweep(path, threads=2, schedules={"by hand": schedule, "tuned": "tuned"}, client=client)
                                           # tile schedules: each host's own tuned one next to another

Where the parts live: the grid, config ids and the per-config check in
`workbench.sweep_grid`; the table (its columns, totals, reading, writing as it goes,
resuming) in `workbench.sweep_table`, whose docstring describes it; running the configs
here or on a Dask cluster in `workbench.sweep_runners`. This module checks the arguments,
picks the configs still to run and drives a runner with a progress bar.

`frame.attrs["totals"]` and `frame.attrs["skipped"]` hold the totals and the skipped
configs as lists of row dicts of plain Python values (`pd.DataFrame(frame.attrs["totals"])`
is the table): pandas writes `attrs` into Parquet metadata as JSON, so a DataFrame there
would make `frame.to_parquet(...)` raise TypeError.

`resume=True` reads `out` and skips every config whose config columns are already there;
the returned frame is the whole table in `out` (earlier configs included). Without resume
an existing `out` is overwritten (with a warning) when the first config finishes.

Invalid combinations (a tile value outside its range, batch outside 1..4096, threads above
the cores of the machine that would run it, a schedule the engine refuses there: tuned for
another model, batch, thread count or machine, or naming steps the model does not have;
"tuned" where that machine has no tuned schedule) are logged with `logging.warning`, listed
in `frame.attrs["skipped"]` with the reason, and skipped; the sweep goes on. Values of the
wrong type (a string, None, a float, a bool where an int belongs) and every other bad
argument are refused with ValueError before anything runs.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

import engine
from engine.checks import check_bool, check_repeats
from workbench.models import is_model_name
from workbench.profile import check_ceilings, check_model, model_file
from workbench.sweep_grid import (CONFIG_COLUMNS, check_config, check_schedules, config_id, config_key, grid,
                                  schedule_digest)
from workbench.sweep_runners import run_here, run_on_cluster
from workbench.sweep_table import (SKIPPED_COLUMNS, SweepTable, check_out, plain_records, read_previous, read_table,
                                   skipped_row, sweep_totals)

__all__ = ["sweep", "sweep_totals", "read_table", "grid", "config_id", "check_config", "CONFIG_COLUMNS",
           "schedule_digest"]

logger = logging.getLogger(__name__)


def sweep(model, batch=(1,), threads=(1,), tiles: dict | None = None, fuse_blocks=(engine.DEFAULT_FUSE_BLOCKS,),
          repeats: int = 3, out=None, resume: bool = False, client=None, ceilings=None,
          progress: bool = True, schedules=None) -> pd.DataFrame:
    """Profile every combination of the given values; one row per (config, step).

    model: a zoo model name ("resnet50": workbench.models; its data/<name>.onnx, written on
        first use), a path, bytes or onnx.ModelProto (an engine.Model too, but not with a
        client).
    batch, threads: a value or a list of values. tiles: {Tiles field: list of values}; a
        field not given keeps its Tiles() default. fuse_blocks: a value or a list of values
        among False, True and "auto" (fuse only where engine.fusion.fusion_wins expects a
        win at that config's threads and batch); default [engine.DEFAULT_FUSE_BLOCKS].
    repeats: timed runs per config (the median is kept), after one warm-up run.
    out: a .parquet or .csv path written after every finished config (atomically).
    resume: skip configs whose config columns are already in `out`.
    client: None (run here), a dask.distributed.Client or a scheduler address string.
    ceilings: a workbench.Ceilings for the roofs; None: measure_ceilings(quick=True) here,
        or on each worker when run on a cluster.
    progress: show a tqdm.auto progress bar (a widget in notebooks, text in a terminal).
    schedules: tile schedules to sweep instead of tile values (not with `tiles`): an
        engine.TileSchedule, engine.Tiles or "tuned" (on each machine, the schedule
        engine.tune cached there for the model, batch and threads), a list of them, or a
        dict {label: schedule}; config_id then ends "schedule=<label>" (the label given,
        "tuned", or "schedule-" and a digest of the schedule: sweep_grid.schedule_digest).
    Returns the table described in workbench.sweep_table, with attrs "totals"
    (`sweep_totals` as a list of row dicts) and "skipped" (row dicts: config_id, the config
    columns, host, reason).
    """
    repeats = check_repeats(repeats)
    schedules = check_schedules(schedules)
    configs = grid(batch, threads, tiles, fuse_blocks, schedules)
    out = check_out(out)
    resume = check_bool("resume", resume)
    progress = check_bool("progress", progress)
    ceilings = check_ceilings(ceilings)
    _check_model_source(model, client)
    if is_model_name(model):          # its file: workers are sent the file's bytes
        model = model_file(model)
    previous = _previous(out, resume)
    todo = _not_yet_run(configs, previous, out)
    table = SweepTable(out, previous)
    skipped: list[dict] = []

    def skip(config, host, reason):
        logger.warning("sweep: skipped %s: %s", config_id(config), reason)
        skipped.append(skipped_row(config, host, reason))

    bar = tqdm(total=len(todo), desc="sweep", unit="config", disable=not progress)
    try:
        if client is None:
            run_here(model, todo, repeats, ceilings, table, skip, bar, schedules)
        else:
            run_on_cluster(model, todo, repeats, ceilings, client, table, skip, bar, schedules)
    finally:
        bar.close()

    frame = table.frame()
    frame.attrs["totals"] = plain_records(sweep_totals(frame))
    skipped_columns = SKIPPED_COLUMNS + (["schedule"] if schedules else [])
    frame.attrs["skipped"] = plain_records(pd.DataFrame(skipped, columns=skipped_columns))
    return frame


def _previous(out: Path | None, resume: bool) -> pd.DataFrame | None:
    """The table already in `out` when resuming (None otherwise; a warning when it will be overwritten)."""
    if out is None or not out.exists():
        return None
    if resume:
        return read_previous(out)
    logger.warning("sweep: %s exists and resume=False: it will be overwritten", out)
    return None


def _not_yet_run(configs: list[dict], previous: pd.DataFrame | None, out: Path | None) -> list[dict]:
    """The configs whose config columns are not in `previous` (the table resumed from)."""
    columns = CONFIG_COLUMNS + (["schedule"] if previous is not None and "schedule" in previous.columns else [])
    done = set() if previous is None else {config_key(row) for row in previous[columns].to_dict("records")}
    todo = [config for config in configs if config_key(config) not in done]
    if len(todo) < len(configs):
        logger.info("sweep: %d of %d configs already in %s, skipped", len(configs) - len(todo), len(configs), out)
    return todo


def _check_model_source(model, client) -> None:
    """Refuse a model argument `sweep` could not load, and a client that is not one, before
    anything runs (the model itself is loaded when the first config runs)."""
    if client is not None and not isinstance(client, str) and not callable(getattr(client, "submit", None)):
        raise ValueError(f"client must be None, a dask.distributed.Client or a scheduler address, "
                         f"got {type(client).__name__}")
    if isinstance(model, engine.Model) and client is not None:
        raise ValueError("with a client, model must be a path, bytes or an onnx.ModelProto (workers load "
                         "it themselves), got an engine.Model")
    check_model(model)
