"""`RunConfig`: what a run may vary without reloading the model, and the machine it assumes."""
from __future__ import annotations

from dataclasses import dataclass

from engine.machine import MachineInfo
from engine.tiles import TileSchedule, as_schedule
from engine.traffic import CacheBudget


@dataclass(frozen=True)
class RunConfig:
    """What a run may vary without reloading the model."""

    threads: int              # numba threads, 1..cores
    tiles: TileSchedule       # tile sizes per step (runtime arguments; never recompile); a Tiles
                              # given here becomes TileSchedule(that Tiles)
    fuse_blocks: bool | str   # False, True (every block) or "auto" (where engine.fusion.fusion_wins)
    machine: MachineInfo      # the caches and lanes every decision and the bytes model assume

    def __post_init__(self):
        object.__setattr__(self, "tiles", as_schedule(self.tiles))     # a Tiles: the same for every step

    @property
    def budget(self) -> CacheBudget:
        """Cache bytes per thread and lanes, as the bytes model and fusion policy see them."""
        return CacheBudget.for_machine(self.machine, self.threads)
