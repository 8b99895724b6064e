"""Instrumentation hooks: how analysis sees inside a run.

A hook is any object with `on_layer(record)`; `on_run_start(info)` and `on_run_end(info)`
are optional. With no hooks the runtime takes no timestamps at all. `Recorder` is the
standard hook: it keeps every `LayerRecord` it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class LayerRecord(NamedTuple):
    """What one executed step did in one run (an immutable named tuple: cheap to build, so
    instrumentation stays out of the timings). `tiles` and `bytes` are shared between the
    records of a step or run: treat them as read-only.

    seconds: wall time of the step, from the timestamp before its kernel call to the one
        after (perf_counter); the runtime hands the records to the hooks after the run.
    flops: 2 per multiply-accumulate of the conv or linear part, whole batch.
    other_flops: bias, activation, residual-add and pooling arithmetic, whole batch.
    bytes: modelled bytes moved across each memory level boundary ("L1", "L2", "L3",
        "DRAM"), whole batch; see engine.traffic for the model.
    members: for a fused block, the layers it computes; else just the layer itself.
    tile_fields: the fields of `tiles` the step's kernel reads (engine.tiles; () for a kernel
        without tiles: the others are the schedule's, unused).
    """

    run_index: int
    step_index: int
    name: str
    op: str
    input_shape: tuple
    output_shape: tuple
    batch: int
    threads: int
    tiles: dict
    fused: bool
    seconds: float
    flops: int
    other_flops: int
    bytes: dict
    members: tuple
    tile_fields: tuple = ()

    def as_dict(self) -> dict:
        out = self._asdict()
        out["tiles"], out["bytes"] = dict(self.tiles), dict(self.bytes)
        return out


@dataclass(frozen=True)
class RunInfo:
    """Passed to on_run_start / on_run_end. seconds is the wall time of the whole run
    (None at the start)."""

    run_index: int
    batch: int
    threads: int
    tiles: dict
    fused: bool
    steps: int
    seconds: float | None = None


class Recorder:
    """A hook that keeps every record: `rec.records` (one per step per run) and
    `rec.runs` (one RunInfo per finished run)."""

    def __init__(self):
        self.records: list[LayerRecord] = []
        self.runs: list[RunInfo] = []

    def on_layer(self, record: LayerRecord) -> None:
        self.records.append(record)

    def on_run_end(self, info: RunInfo) -> None:
        self.runs.append(info)

    def clear(self) -> None:
        self.records.clear()
        self.runs.clear()

    def __len__(self) -> int:
        return len(self.records)


class HookHandle:
    """What Model.register_hook returns: `handle.remove()` unregisters the hook (once; again
    does nothing); `with model.register_hook(hook): ...` registers it for the block."""

    def __init__(self, model, hook):
        self._model, self.hook = model, hook

    def remove(self) -> None:
        self._model._remove_hook(self)

    def __enter__(self) -> "HookHandle":
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()
