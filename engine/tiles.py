"""`Tiles`: the tile sizes the kernels take at run time. Changing one never recompiles."""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Tiles:
    """Tile sizes, validated on construction (ValueError names the field, range and value;
    ints or numpy integers, stored as int).

    pointwise_pixels: output pixels per work item of a 1x1 conv. The weights of one
        output-channel tile are re-read once per pixel tile, so small values re-read
        weights more often; large ones leave fewer work items for the threads.
    pointwise_channels: output channels per work item of a 1x1 conv (a multiple of 16,
        so it is a whole number of channel blocks on AVX2 and AVX-512 hosts). The input
        pixels of a tile are re-read once per output-channel tile.
    depthwise_rows: output rows per work item of a depthwise conv.
    block_rows: band height (output rows) of a fused inverted-residual block; 0 picks
        it per block from the cost model. Only used with fuse_blocks=True.
    """

    pointwise_pixels: int = 64        # pixels, 1..4096
    pointwise_channels: int = 16      # output channels, 16..4096, multiple of 16
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
