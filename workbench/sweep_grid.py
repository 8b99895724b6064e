"""The grid of a sweep: every combination of the swept values as a config dict (keys
`CONFIG_COLUMNS`: batch, threads, fuse_blocks and one per engine.Tiles field), its
readable, stable id, and the check that says whether one config can run.

    grid(batch=[1, 8], tiles={"pointwise_pixels": [32, 64]})   # [{"batch": 1, ...}, ...]
    config_id(config)        # "batch=1,threads=1,fuse_blocks=0,pointwise_pixels=32,..."

Tile schedules (engine.TileSchedule: tiles per step, fusion per block) are swept instead of
tile values: `check_schedules` labels each one (the name it was given, "tuned" for each
machine's own tuned schedule, else "schedule-" and a digest of its contents), and a
schedule's config has the key "schedule" (its label) and None for every tile field, since
its steps run different tiles: config_id "batch=1,threads=2,fuse_blocks=auto,schedule=<label>".
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json

import numpy as np
import pandas as pd

import engine
from engine import checks
from engine.checks import check_batch
from workbench.profile import parse_fuse_blocks
from workbench.tuning import TUNED     # a schedule of the sweep: the one engine.tune cached on the machine that runs it

TILE_FIELDS = tuple(engine.Tiles().as_dict())
CONFIG_COLUMNS = ["batch", "threads", "fuse_blocks", *TILE_FIELDS]


def config_id(config: dict) -> str:
    """The stable, readable key of a config dict: "batch=1,threads=2,fuse_blocks=0,..."
    (a schedule's config: "...,fuse_blocks=0,schedule=<label>")."""
    label = schedule_of(config)
    parts = []
    for column in CONFIG_COLUMNS if label is None else CONFIG_COLUMNS[:3]:
        value = config[column]
        if column == "fuse_blocks":
            value = parse_fuse_blocks(value)
            value = value if value == "auto" else int(value)
        parts.append(f"{column}={value}")
    if label is not None:
        parts.append(f"schedule={label}")
    return ",".join(parts)


def schedule_of(config) -> str | None:
    """The schedule label of a config (or of a table row), None for a config of tile values
    (no "schedule" key, or an empty one: NaN or None in a table mixing both kinds)."""
    label = config.get("schedule") if hasattr(config, "get") else None
    if isinstance(label, str) and label:
        return label
    return None


def schedule_digest(schedule: engine.TileSchedule) -> str:
    """"schedule-" and 10 hex digits of sha256 over a schedule's tiles, fusion and the key it
    was tuned for: equal schedules get equal labels, in every process and on every host."""
    content = {"schedule": schedule.as_dict(),
               "key": dataclasses.asdict(schedule.tuned_for) if schedule.tuned_for is not None else None}
    return "schedule-" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def check_schedules(schedules) -> dict | None:
    """{label: engine.TileSchedule or TUNED} from what `sweep(schedules=...)` takes: None;
    one schedule; a list of them; or a dict {label: schedule}. A schedule is an
    engine.TileSchedule, an engine.Tiles (the same for every step) or "tuned" (each
    machine's own, engine.tune's cache). A label is a non-empty string without "," or "="
    (it goes into config_id). ValueError naming what is wrong."""
    if schedules is None:
        return None
    named = isinstance(schedules, dict)
    items = list(schedules.items()) if named else [(None, value) for value in _listed(schedules)]
    if not items:
        raise ValueError("schedules must hold at least one schedule, got an empty " + ("dict" if named else "list"))
    checked: dict = {}
    for label, value in items:
        if isinstance(value, engine.Tiles):
            value = engine.TileSchedule(value)
        if not (isinstance(value, engine.TileSchedule) or (isinstance(value, str) and value == TUNED)):
            raise ValueError(f"schedules must be engine.TileSchedule objects, engine.Tiles or \"tuned\" (a list, "
                             f"or a dict {{label: schedule}}), got {value!r:.80}")
        if label is None:
            label = TUNED if isinstance(value, str) else schedule_digest(value)
        elif not isinstance(label, str) or not label.strip() or "," in label or "=" in label:
            raise ValueError(f"schedules: a label must be a non-empty string without ',' or '=', got {label!r}")
        checked[label] = value
    return checked


def _listed(values) -> list:
    """A value or a sequence of values, as a list."""
    return list(values) if isinstance(values, (list, tuple, range, np.ndarray, pd.Index, pd.Series)) else [values]


def _as_list(name: str, values) -> list:
    """The values of one axis, duplicates dropped (ValueError when there are none)."""
    values = _listed(values)
    if not values:
        raise ValueError(f"{name} must hold at least one value, got an empty list")
    unique = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique


def grid(batch=(1,), threads=(1,), tiles: dict | None = None,
         fuse_blocks=(engine.DEFAULT_FUSE_BLOCKS,), schedules=None) -> list[dict]:
    """Every combination, as config dicts with the keys CONFIG_COLUMNS, in a fixed order
    (batch outermost, then threads, fuse_blocks and the tile fields in Tiles order, or
    the schedules in their order, each config with its "schedule" label).

    Values are not range-checked here (that is per config, see `check_config`); their types
    and the shape of the arguments are: batch, threads and each tile an int (numpy ints
    too) or a non-empty list of ints, `tiles` a dict {Tiles field: value or list},
    fuse_blocks a value or a list of values among False, True and "auto" (numpy bools
    too; default: engine.DEFAULT_FUSE_BLOCKS), schedules what `check_schedules` takes
    (not with tiles: a schedule carries its own). Raises ValueError naming what is wrong.
    """
    schedules = check_schedules(schedules)
    if schedules is not None:
        if tiles:
            raise ValueError("give tiles or schedules, not both: a schedule carries every step's tiles")
        fixed = {"batch": _int_list("batch", batch), "threads": _int_list("threads", threads),
                 "fuse_blocks": _fuse_list(fuse_blocks)}
        return [{**dict(zip(fixed, values)), **dict.fromkeys(TILE_FIELDS), "schedule": label}
                for *values, label in itertools.product(*fixed.values(), schedules)]
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
    checked = []
    for value in _listed(values):
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


def check_config(config: dict, cores: int | None = None) -> engine.Tiles | None:
    """Validate one config; returns its Tiles (None for a schedule's config: the runner
    looks the schedule up by its label). ValueError says why it cannot run.

    cores: the cores of the machine that will run it (None: not checked here)."""
    check_batch(config["batch"])
    threads = config["threads"]
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if cores is not None and threads > cores:
        raise ValueError(f"threads={threads} is more than the {cores} cores of this machine")
    if schedule_of(config) is not None:
        return None
    return engine.Tiles(**{name: config[name] for name in TILE_FIELDS})


def config_key(config) -> tuple:
    """Config columns as a hashable, type-normalised tuple (for matching rows of a file); a
    schedule's config: batch, threads, fuse_blocks and its label (its rows' tile columns
    are each step's own)."""
    label = schedule_of(config)
    if label is not None:
        return (int(config["batch"]), int(config["threads"]), parse_fuse_blocks(config["fuse_blocks"]),
                "schedule", label)
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
