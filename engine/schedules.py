"""Tuned tile schedules on disk: what a schedule is keyed by, saving, loading and the cache.

A schedule is only good for what it was tuned on: the same model (its fingerprint), batch,
thread count, CPU model, lane width and engine version. `ScheduleKey` says so; a schedule
saved with one is refused (ValueError naming what differs) when loaded for another, never
silently used.

Files: JSON, {"schema": 1, "key": {...}, "schedule": TileSchedule.as_dict(), "trials": [...]}.
The cache is a folder beside the ceilings cache: $ROOFLINE_DATA_DIR/schedules, else the
repository's data/schedules; one file per key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.graph import Graph
from engine.kernels.layout import CB
from engine.machine import MachineInfo
from engine.tiles import TileSchedule
from engine.version import engine_version

SCHEMA_VERSION = 1


def fingerprint(graph: Graph) -> str:
    """sha256 (hex, 16 digits) of a graph's layers: names, ops, shapes, attributes, clips,
    activations, residuals and the bytes of every weight and bias (and of the arrays in
    attributes: a squeeze-and-excitation's). Two loads of one file agree."""
    hasher = hashlib.sha256()
    for layer in graph.layers:
        attrs = {k: v for k, v in layer.attrs.items() if not isinstance(v, np.ndarray)}
        hasher.update(repr((layer.name, layer.op, layer.inputs, layer.output, layer.input_shape, layer.output_shape,
                            sorted(attrs.items()), layer.clip, layer.activation, layer.residual)).encode())
        arrays = [layer.weight, layer.bias] + [v for _, v in sorted(layer.attrs.items()) if isinstance(v, np.ndarray)]
        for array in arrays:
            if array is not None:
                hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:16]


@dataclass(frozen=True)
class ScheduleKey:
    """What a tuned schedule is good for."""

    model: str              # fingerprint(graph)
    batch: int              # images per run
    threads: int
    cpu_model: str
    lanes: int              # fp32 lanes per channel block the kernels were built for
    engine_version: str     # package version + digest of the kernels' sources (engine.version)

    @classmethod
    def of(cls, graph_fingerprint: str, batch: int, threads: int, machine: MachineInfo) -> "ScheduleKey":
        return cls(graph_fingerprint, batch, threads, machine.cpu_model, CB, engine_version())

    def differences(self, other: "ScheduleKey") -> list[str]:
        """Words for each field in which `other` differs from this key."""
        return [f"{field.name} {getattr(other, field.name)!r} (here {getattr(self, field.name)!r})"
                for field in dataclasses.fields(self) if getattr(self, field.name) != getattr(other, field.name)]


def save(path, schedule: TileSchedule, key: ScheduleKey | None, trials: list[dict] = ()) -> Path:
    """Write `schedule` with its key (None: hand-made, good anywhere its names exist) and
    the tuner's trials to `path` as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema": SCHEMA_VERSION, "key": dataclasses.asdict(key) if key else None, "schedule": schedule.as_dict(),
            "trials": list(trials)}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(path, expected: ScheduleKey | None = None) -> tuple[TileSchedule, ScheduleKey | None]:
    """The schedule and key saved at `path` (key None: a hand-made schedule). ValueError if
    the file is not a schedule, or if `expected` is given and the saved key differs from it
    (the message names each field)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable tile schedule ({error})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a tile schedule of schema {SCHEMA_VERSION}")
    try:
        key = None if data["key"] is None else ScheduleKey(**data["key"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: the schedule's key is unreadable ({error})") from None
    schedule = TileSchedule.from_dict(data.get("schedule"))
    if expected is not None and key is not None and key != expected:
        raise ValueError(refusal(str(path), expected, key))
    return schedule, key


def check_key(schedule: TileSchedule, expected: ScheduleKey, what: str = "this tile schedule") -> TileSchedule:
    """`schedule` unless it was tuned for another key than `expected` (ValueError naming each
    field that differs); a hand-made schedule (no key) passes."""
    if schedule.tuned_for is not None and schedule.tuned_for != expected:
        raise ValueError(refusal(what, expected, schedule.tuned_for))
    return schedule


def refusal(what: str, expected: ScheduleKey, key: ScheduleKey) -> str:
    """The error message for a schedule tuned for `key` asked to run as `expected`."""
    return (f"{what} was tuned for another model or machine: " + "; ".join(expected.differences(key))
            + ". Tune again here (engine.tune) rather than use it.")


def cache_dir() -> Path:
    """$ROOFLINE_DATA_DIR/schedules if that variable is set, else the repository's data/schedules."""
    data_dir = os.environ.get("ROOFLINE_DATA_DIR")
    return (Path(data_dir) if data_dir else Path(__file__).resolve().parents[1] / "data") / "schedules"


def cache_path(key: ScheduleKey, directory: Path | None = None) -> Path:
    """The cache file of a key: readable parts and a digest of the whole key."""
    digest = hashlib.sha256(repr(dataclasses.astuple(key)).encode()).hexdigest()[:12]
    cpu = re.sub(r"[^A-Za-z0-9]+", "-", key.cpu_model).strip("-").lower()[:40] or "cpu"
    name = f"schedule_{key.model}_b{key.batch}_t{key.threads}_{key.lanes}lanes_{cpu}_{digest}.json"
    return (directory or cache_dir()) / name


_warned: set = set()


def cached(key: ScheduleKey) -> TileSchedule | None:
    """The cached tuned schedule for `key`, or None with a one-time warning per key (the
    defaults are used then). An unreadable or foreign cache file is also warned about."""
    path = cache_path(key)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return _warn_once(key, f"no tuned schedule for this model, batch {key.batch} and {key.threads} threads "
                               f"here ({path}); running the default tiles. engine.tune(...) makes one.")
    remembered = _loaded.get(path)
    if remembered is not None and remembered[0] == stamp:     # read once per version of the file
        return remembered[1]
    try:
        schedule = dataclasses.replace(load(path, key)[0], tuned_for=key)
    except ValueError as error:
        return _warn_once(key, f"{error}; running the default tiles")
    _loaded[path] = (stamp, schedule)
    return schedule


_loaded: dict[Path, tuple[int, TileSchedule]] = {}


def _warn_once(key: ScheduleKey, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)
    return None
