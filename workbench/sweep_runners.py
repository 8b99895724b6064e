"""The runners of a sweep: the configs one after another in this process (`run_here`), or
one task per config on a Dask cluster (`run_on_cluster`); both profile a config with
`profile_config` and hand its rows to the SweepTable.

A schedule's config (sweep_grid) runs its engine.TileSchedule; a "tuned" one runs the
schedule engine.tune cached on the machine that runs it (workbench.tuning.tuned_schedule),
so one sweep over a cluster compares each host's own tuned schedule; a machine without
one skips the config with the reason, as the engine's refusal of a schedule tuned for
another model, batch, thread count or machine is a skip with its reason.

On a Dask cluster: each worker loads the model itself from the bytes broadcast once to
every worker, and measures (or loads from its disk cache) its own machine's ceilings with
`measure_ceilings(quick=True)` unless `ceilings` is given. One benchmark at a time per
*machine*: a task times only while it holds the `distributed.Lock` named after its host
(`benchmark_lock_name`), so two workers on one host, or a worker with several threads, never
time at the same moment, with no special worker set-up (no resources to declare, nothing
that can leave a task waiting for a resource no worker has). Tasks waiting for the lock hold
a worker thread idle. A client given as an address is created and closed here; a Client
object is left open.
"""
from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pandas as pd

import engine
from engine.machine import machine_info
from workbench.profile import as_model, default_ceilings, profile
from workbench.sweep_grid import check_config, config_id, schedule_of
from workbench.tuning import TUNED, tuned_schedule
from workbench.sweep_table import SweepTable, config_rows

_WORKER_MODELS: dict[str, engine.Model] = {}
_WORKER_CEILINGS: list = []


def benchmark_lock_name(host: str) -> str:
    """Name of the distributed.Lock a worker on `host` holds while it times."""
    return f"roofline-workbench-benchmark:{host}"


def _host() -> tuple[str, str]:
    """(host name, CPU model) of the machine this runs on."""
    return socket.gethostname(), machine_info().cpu_model


def profile_config(model: engine.Model, config: dict, tiles, repeats: int, ceilings, host: str,
                   cpu_model: str) -> tuple[pd.DataFrame | None, str | None]:
    """Profile one (checked) config with `tiles` (its Tiles, or its schedule: a
    TileSchedule or TUNED, this machine's tuned one): (its sweep rows, None), or (None,
    the reason) when the engine refuses it (ValueError), there is no tuned schedule here,
    or memory runs out."""
    started_at = time.time()
    try:
        if isinstance(tiles, str) and tiles == TUNED:
            tiles = tuned_schedule(model, int(config["batch"]), int(config["threads"]), ceilings)
        frame = profile(model, batch=int(config["batch"]), threads=int(config["threads"]), tiles=tiles,
                        fuse_blocks=config["fuse_blocks"], repeats=repeats, ceilings=ceilings)
    except (ValueError, MemoryError) as error:
        return None, f"{type(error).__name__}: {error}"
    return config_rows(frame, config, host, cpu_model, started_at, time.time()), None


# ---------------------------------------------------------------------------- here

def _schedule_for(config: dict, schedules: dict | None):
    """The schedule (TileSchedule or TUNED) a schedule's config runs, else None."""
    label = schedule_of(config)
    return None if label is None else schedules[label]


def run_here(model, todo: list[dict], repeats: int, ceilings, table: SweepTable, skip, bar,
             schedules: dict | None = None) -> None:
    """Profile each config of `todo` in this process, in order; skip(config, host, reason)
    for one that cannot run here. The model is loaded, and the ceilings measured, when the
    first config that can run needs them. schedules: {label: schedule} of the schedules'
    configs (sweep_grid.check_schedules)."""
    host, cpu_model = _host()
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
            ceilings = default_ceilings()
        rows, reason = profile_config(loaded, config, tiles or _schedule_for(config, schedules), repeats, ceilings,
                                      host, cpu_model)
        if rows is None:
            skip(config, host, reason)
        else:
            table.add(rows)
        bar.update()


# ---------------------------------------------------------------------------- on a Dask cluster

def _worker_model(digest: str, model_bytes: bytes) -> engine.Model:
    model = _WORKER_MODELS.get(digest)
    if model is None:
        _WORKER_MODELS.clear()          # one model at a time: a plan cache is not small
        model = _WORKER_MODELS[digest] = engine.load(model_bytes)
    return model


def run_config_on_worker(model_bytes: bytes, digest: str, config: dict, repeats: int, ceilings=None,
                         schedule=None) -> dict:
    """Profile one config on a Dask worker (the task `run_on_cluster` submits); schedule:
    the TileSchedule or TUNED a schedule's config runs.

    Returns {"rows": DataFrame} or {"skipped": reason, "host": host}. Times, and measures
    ceilings, only while holding this host's benchmark lock."""
    from distributed import Lock     # lazy: Dask is an optional dependency (the "distributed" extra)

    host, cpu_model = _host()
    try:
        tiles = check_config(config, cores=engine.available_cores())
    except ValueError as error:
        return {"skipped": str(error), "host": host}
    model = _worker_model(digest, model_bytes)
    with Lock(benchmark_lock_name(host)):
        if ceilings is None:
            if not _WORKER_CEILINGS:
                _WORKER_CEILINGS.append(default_ceilings())
            ceilings = _WORKER_CEILINGS[0]
        rows, reason = profile_config(model, config, tiles or schedule, repeats, ceilings, host, cpu_model)
    return {"skipped": reason, "host": host} if rows is None else {"rows": rows}


def model_bytes(model) -> bytes:
    """The ONNX bytes to send to workers: from a path, bytes or an onnx.ModelProto."""
    if isinstance(model, (bytes, bytearray, memoryview)):
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


def _runnable(todo: list[dict], skip, bar) -> list[dict]:
    """The configs of `todo` that pass check_config (cores are checked on the worker that
    runs one); skip(config, None, reason) for the others."""
    runnable = []
    for config in todo:
        try:
            check_config(config)
        except ValueError as error:
            skip(config, None, str(error))
            bar.update()
        else:
            runnable.append(config)
    return runnable


def _collect(client, futures: dict, table: SweepTable, skip, bar) -> None:
    """Each task's rows into `table` (or its reason to skip) as the tasks finish; the
    tasks still running are cancelled when this ends, normally or not."""
    from distributed import as_completed     # lazy: Dask is an optional dependency

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


def run_on_cluster(model, todo: list[dict], repeats: int, ceilings, client, table: SweepTable, skip, bar,
                   schedules: dict | None = None) -> None:
    """Profile the configs of `todo` as one task each on the Dask cluster of `client` (a
    distributed.Client, or a scheduler address: then a client is made and closed here).
    schedules: {label: schedule} of the schedules' configs, sent with their tasks."""
    from distributed import Client     # lazy: Dask is an optional dependency

    sent = model_bytes(model)
    owned = isinstance(client, str)
    if owned:
        client = Client(client, set_as_default=False)
    try:
        runnable = _runnable(todo, skip, bar)
        if not runnable:
            return
        digest = hashlib.sha256(sent).hexdigest()
        [model_future] = client.scatter([sent], broadcast=True, hash=False)
        futures = {client.submit(run_config_on_worker, model_future, digest, config, repeats, ceilings,
                                 _schedule_for(config, schedules), pure=False): config
                   for config in runnable}
        _collect(client, futures, table, skip, bar)
    finally:
        if owned:
            client.close()
