"""`Tiles`: the tile sizes the kernels take at run time. Changing one never recompiles."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from engine.kernels.micro_tile import DEFAULT_POINTWISE_CHANNELS, DEFAULT_POINTWISE_PIXELS


# The Tiles fields each kernel family reads (a step of any other kind reads none): what a
# step's records carry as `tile_fields`, what the tuner searches, what the Explorer's
# per-step controls enable.
POINTWISE_FIELDS = ("pointwise_pixels", "pointwise_channels")      # the 1x1 and the dense conv
DEPTHWISE_FIELDS = ("depthwise_rows",)
BLOCK_FIELDS = ("block_rows",)


@dataclass(frozen=True)
class Tiles:
    """Tile sizes, validated on construction (ValueError names the field, range and value;
    ints or numpy integers, stored as int).

    pointwise_pixels: output pixels per work item of a 1x1 conv. The weights of one
        output-channel tile are re-read once per pixel tile, so small values re-read
        weights more often; large ones leave fewer work items for the threads.
    pointwise_channels: output channels per work item of a 1x1 conv (a multiple of 16,
        so it is a whole number of channel blocks on AVX2 and AVX-512 hosts). The input
        pixels of a tile are re-read once per output-channel tile. Default: one micro-tile's
        width for the lane width the kernels are built for (16 on AVX2, 48 on AVX-512).
    depthwise_rows: output rows per work item of a depthwise conv.
    block_rows: band height (output rows) of a fused inverted-residual block; 0 picks
        it per block from the cost model. Used by the blocks that run fused (fuse_blocks
        True, "auto" where it fuses, or a TileSchedule's fused choice).
    """

    pointwise_pixels: int = DEFAULT_POINTWISE_PIXELS        # pixels, 1..4096
    pointwise_channels: int = DEFAULT_POINTWISE_CHANNELS    # output channels, 16..4096, multiple of 16
    depthwise_rows: int = 16          # rows, 1..1024
    block_rows: int = 0               # rows, 0 (auto) or 1..1024

    _RANGES = {
        "pointwise_pixels": (1, 4096, 1),
        "pointwise_channels": (16, 4096, 16),
        "depthwise_rows": (1, 1024, 1),
        "block_rows": (0, 1024, 1),
    }

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            low, high, multiple = self._RANGES[field.name]
            # numpy integers are accepted (and stored as int); bools, floats, strings are not
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"Tiles.{field.name} must be an int in {low}..{high}, got {value!r}")
            if type(value) is not int:
                value = int(value)
                object.__setattr__(self, field.name, value)     # frozen: set once, here
            if not low <= value <= high or value % multiple:
                extra = f" and a multiple of {multiple}" if multiple > 1 else ""
                raise ValueError(f"Tiles.{field.name} must be in {low}..{high}{extra}, got {value}")

    @classmethod
    def field_range(cls, name: str) -> tuple[int, int, int]:
        """(low, high, step) allowed for field `name`."""
        return cls._RANGES[name]

    def as_dict(self) -> dict[str, int]:
        """{field: value}; a new dict each call (cheap: built once per Tiles)."""
        return dict(self._as_dict)

    @functools.cached_property
    def _as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TileSchedule:
    """Tiles per step: a default `Tiles`, overrides by step name (a layer's name, or a fused
    block's: its project layer's name), and the fusion choice per inverted-residual block
    (by block name, the project layer's name; True fused, False not), which wins over the
    run's fuse_blocks for that block. Hashable and immutable, like Tiles: changing a value
    never recompiles. Unknown step or block names are refused when a plan is built
    (ValueError naming the step), since only the model knows its names.

        schedule = TileSchedule(Tiles(), overrides={"/features/features.2/conv/conv.2/Conv":
                                                    Tiles(block_rows=4)}, fused={...: True})
    """

    default: Tiles = Tiles()
    overrides: tuple = ()          # ((step name, Tiles), ...) sorted by name; pass a dict
    fused: tuple = ()              # ((block name, bool), ...) sorted by name; pass a dict
    tuned_for: object = None       # engine.schedules.ScheduleKey of a tuned schedule: a run
                                   # for another model, batch, threads or machine refuses it

    def __post_init__(self):
        if not isinstance(self.default, Tiles):
            raise ValueError(f"TileSchedule.default must be an engine.Tiles, got {type(self.default).__name__}")
        overrides = dict(self.overrides)
        for name, tiles in overrides.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"TileSchedule.overrides: step names must be non-empty strings, got {name!r}")
            if not isinstance(tiles, Tiles):
                raise ValueError(f"TileSchedule.overrides[{name!r}] must be an engine.Tiles, got "
                                 f"{type(tiles).__name__}")
        fused = dict(self.fused)
        for name, value in fused.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"TileSchedule.fused: block names must be non-empty strings, got {name!r}")
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"TileSchedule.fused[{name!r}] must be True or False, got {value!r}")
        object.__setattr__(self, "overrides", tuple(sorted(overrides.items())))
        object.__setattr__(self, "fused", tuple(sorted((name, bool(value)) for name, value in fused.items())))

    def tiles_for(self, step: str) -> Tiles:
        """The tiles step `step` runs with: its override, else the default."""
        return self._overrides.get(step, self.default)

    def fused_for(self, block: str) -> bool | None:
        """The fusion choice for block `block`, or None: the run's fuse_blocks decides."""
        return self._fused.get(block)

    @functools.cached_property
    def _overrides(self) -> dict[str, Tiles]:
        return dict(self.overrides)

    @functools.cached_property
    def _fused(self) -> dict[str, bool]:
        return dict(self.fused)

    def names(self) -> set[str]:
        """Every step and block name the schedule mentions."""
        return set(self._overrides) | set(self._fused)

    def with_step(self, step: str, tiles: Tiles) -> "TileSchedule":
        """This schedule with `step`'s tiles set (and no longer marked as tuned)."""
        return TileSchedule(self.default, {**self._overrides, step: tiles}, self._fused)

    def with_fused(self, block: str, fused: bool) -> "TileSchedule":
        """This schedule with `block`'s fusion choice set (and no longer marked as tuned)."""
        return TileSchedule(self.default, self._overrides, {**self._fused, block: fused})

    def untuned(self) -> "TileSchedule":
        """This schedule without the mark of what it was tuned for: a hand-made one with the
        same tiles and fusion, which runs at any batch, thread count and machine."""
        return dataclasses.replace(self, tuned_for=None)

    def save(self, path) -> "Path":
        """Write this schedule (with the key it was tuned for, if any) to `path` as JSON."""
        from engine import schedules      # here: engine.schedules imports this module

        return schedules.save(path, self, self.tuned_for)

    @classmethod
    def load(cls, path) -> "TileSchedule":
        """The schedule saved at `path`, marked with the key it was tuned for: a run on
        another model, batch, thread count, CPU or lane width refuses it."""
        from engine import schedules      # here: engine.schedules imports this module

        schedule, key = schedules.load(path)
        return dataclasses.replace(schedule, tuned_for=key)

    def as_dict(self) -> dict:
        """JSON-ready: {"default": {...}, "overrides": {step: {...}}, "fused": {block: bool}}."""
        return {"default": self.default.as_dict(),
                "overrides": {name: tiles.as_dict() for name, tiles in self.overrides},
                "fused": dict(self.fused)}

    @classmethod
    def from_dict(cls, data: dict) -> "TileSchedule":
        """The schedule `as_dict` wrote; ValueError names what is wrong."""
        if not isinstance(data, dict) or not {"default", "overrides", "fused"} <= set(data):
            raise ValueError("a tile schedule needs 'default', 'overrides' and 'fused'")
        try:
            return cls(Tiles(**data["default"]), {name: Tiles(**tiles) for name, tiles in data["overrides"].items()},
                       dict(data["fused"]))
        except (TypeError, AttributeError) as error:
            raise ValueError(f"not a tile schedule: {error}") from None


def as_schedule(tiles) -> TileSchedule:
    """A TileSchedule from None (defaults), a Tiles (the same for every step) or a
    TileSchedule; ValueError for anything else."""
    if tiles is None:
        return TileSchedule()
    if isinstance(tiles, TileSchedule):
        return tiles
    if isinstance(tiles, Tiles):
        return TileSchedule(tiles)
    raise ValueError(f"tiles must be an engine.Tiles or an engine.TileSchedule, got {type(tiles).__name__}")
