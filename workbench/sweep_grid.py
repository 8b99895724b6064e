"""The grid of a sweep: every combination of the swept values as a config dict (keys
`CONFIG_COLUMNS`: batch, threads, fuse_blocks and one per engine.Tiles field), its
readable, stable id, and the check that says whether one config can run.

    grid(batch=[1, 8], tiles={"pointwise_pixels": [32, 64]})   # [{"batch": 1, ...}, ...]
    config_id(config)        # "batch=1,threads=1,fuse_blocks=0,pointwise_pixels=32,..."
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

import engine
from engine import checks
from engine.checks import check_batch
from workbench.profile import parse_fuse_blocks

TILE_FIELDS = tuple(engine.Tiles().as_dict())
CONFIG_COLUMNS = ["batch", "threads", "fuse_blocks", *TILE_FIELDS]


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


def config_key(config) -> tuple:
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
