"""`tune`: the engine's tuner (engine.tune) run under this machine's roofline, and its
result shown on it: every step's default point and its tuned point.

    import workbench
    tuning = workbench.tune(model, batch=1, threads=2, budget_s=60)    # a progress bar
    tuning.figure(level="L2")           # default -> tuned, an arrow per step, one roofline
    tuning.schedule.save("schedule.json")
    tuning.trials                       # every candidate the tuner measured (a DataFrame)

What the workbench adds to engine.tune:
- floor_seconds, each step's roofline bound: its FLOPs over its attainable FLOP/s
  (profile.attainable_gflops: the lowest of the peak and every level's AI x bandwidth)
  under the measured ceilings, with the bytes the engine models for the default tiles. The
  tuner leaves a step alone once it runs within roof_margin of that bound. A fused block
  shares its name with its project layer and the tuner looks both up by that name, so
  the name gets the smaller of the two bounds (the project layer's alone): a block is
  then always searched, and a project layer is never skipped for a bound it cannot reach.
- the machine the runs assume: the effective cache sizes the ceilings measured
  (profile.run_machine), as every other run of the workbench;
- a tqdm.auto progress bar (a widget in a notebook, text in a terminal), or a callable;
- the default and the tuned schedule profiled side by side after the search (`before`,
  `after`), for the before/after roofline.

`tuned_schedule` finds the schedule the tuner cached for a model, batch and thread count on
this machine (for the CLI's `--tiles tuned` and the sweep's "tuned"), or says why there is none.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import engine
from engine import schedules
from engine.checks import check_batch, check_bool, check_fuse_blocks, check_int, check_threads
from engine.traffic import LEVELS
from workbench.before_after import before_after_figure, match_steps
from workbench.figure_parts import short_name
from workbench.profile import (as_model, attainable_gflops, check_ceilings, default_ceilings, default_threads,
                               profile, run_machine)

DEFAULT_LABELS = ("default tiles", "tuned")     # the before/after figure's labels
TUNED = "tuned"            # where a schedule is asked for: the one engine.tune cached for this model and machine


@dataclass
class TuningResult:
    """What `tune` returns.

    result: the engine's engine.TuneResult (schedule, trials, default_seconds,
        tuned_seconds: median whole-run seconds measured side by side by the tuner,
        seconds: its wall time, stopped: why it stopped early, or None).
    before, after: workbench.profile DataFrames of the default schedule and of the tuned
        one, measured one after the other once the search was over.
    ceilings: the roofs both were measured against.
    floor_seconds: {step name: seconds} the tuner was given (see the module docstring).
    """

    result: engine.TuneResult
    before: pd.DataFrame
    after: pd.DataFrame
    ceilings: object
    floor_seconds: dict

    @property
    def schedule(self) -> engine.TileSchedule:
        """The tuned engine.TileSchedule, keyed to this model, batch, threads and machine."""
        return self.result.schedule

    @property
    def trials(self) -> pd.DataFrame:
        """One row per candidate measured: step, kind, candidate, median_s, spread_s (s),
        repeats, chosen."""
        return pd.DataFrame(self.result.trials, columns=["step", "kind", "candidate", "median_s", "spread_s",
                                                         "repeats", "chosen"])

    def changed_steps(self) -> pd.DataFrame:
        """The steps the tuner changed: `changed_steps(before, after, schedule)`."""
        return changed_steps(self.before, self.after, self.schedule)

    def figure(self, level: str = "L2", labels: tuple[str, str] = DEFAULT_LABELS, title: str | None = None):
        """The default and tuned profiles on one roofline at `level`, an arrow from each
        step's default point to its tuned point (workbench.before_after_figure)."""
        if title is None:
            title = (f"Tuned tiles at {level}: {self.before['seconds'].sum() * 1e3:.2f} ms → "
                     f"{self.after['seconds'].sum() * 1e3:.2f} ms of steps")
        return before_after_figure(self.before, self.after, self.ceilings, level=level, labels=labels, title=title)


def floor_seconds(model: engine.Model, batch: int, threads: int, ceilings, machine) -> dict[str, float]:
    """{step name: its roofline bound in seconds} for engine.tune: each step's FLOPs over its
    attainable FLOP/s under `ceilings` at `threads`, with the bytes the engine models for
    the default tiles on `machine`; every layer as a step of its own and every block fused,
    the smaller of the two under a name they share (see the module docstring). Steps
    without FLOPs have no bound."""
    floors: dict[str, float] = {}
    for fuse_blocks in (False, True):
        steps = [step for step in model.plan(batch, threads, engine.Tiles(), fuse_blocks, machine).steps
                 if step.flops > 0]
        moved = {level: [step.bytes.get(level, np.nan) for step in steps] for level in LEVELS}
        attainable, _, _ = attainable_gflops([step.flops for step in steps], moved, ceilings, threads)
        for step, gflops in zip(steps, attainable):
            if gflops > 0 and math.isfinite(gflops):
                floors[step.name] = float(min(floors.get(step.name, math.inf), step.flops / (gflops * 1e9)))
    return floors


def tune(model, batch: int = 1, threads: int | None = None, budget_s: float = 60.0, ceilings=None,
         progress: bool | Callable[[int, int, str], None] = True, repeats: int = 5,
         fuse_blocks=engine.DEFAULT_FUSE_BLOCKS, roof_margin: float = 0.05, profile_repeats: int = 5,
         save: bool = True) -> TuningResult:
    """Tune `model`'s tiles per step (engine.tune) on this machine, under its roofline.

    model: engine.Model, a path, bytes or an onnx.ModelProto. batch: images; threads:
    1..cores (default: the cores, at most 2). budget_s: seconds the search may take
    (engine.tune keeps to it, its final side-by-side runs included; the two profiles
    afterwards are extra). ceilings: a workbench.Ceilings (default measure_ceilings(quick=
    True), cached): the roofs of the floors and the profiles, and the effective caches the
    runs assume. progress: True for a tqdm.auto bar, False for none, or a callable(done,
    total, label) called as each step is started and when each phase ends (label "blocks:
    <step>" or "steps: <step>", just the phase at its end, when done == total).
    repeats: runs per candidate (3..100). fuse_blocks: the blocks' fusion the search starts
    from (and the default profile runs with). roof_margin: a step within this fraction of
    its roofline bound is left alone. profile_repeats: timed runs of each of the two
    profiles. save: cache the schedule, so model.run(x, tiles="tuned") and `tuned_schedule`
    find it. Every argument is checked (ValueError) before anything runs. Returns a
    TuningResult.
    """
    batch = check_batch(batch)
    threads = check_threads(default_threads() if threads is None else threads)
    fuse_blocks = check_fuse_blocks(fuse_blocks)
    repeats = check_int("repeats", repeats, 3, 100)
    profile_repeats = check_int("profile_repeats", profile_repeats, 1, 10_000)
    save = check_bool("save", save)
    if not (isinstance(progress, bool) or callable(progress)):
        raise ValueError(f"progress must be True, False or a callable(done, total, label), got {progress!r}")
    if not (isinstance(budget_s, (int, float)) and not isinstance(budget_s, bool) and 0 < budget_s < math.inf):
        raise ValueError(f"budget_s must be a number of seconds > 0, got {budget_s!r}")
    if not (isinstance(roof_margin, (int, float)) and not isinstance(roof_margin, bool) and 0 <= roof_margin < 1):
        raise ValueError(f"roof_margin must be a fraction in 0..1, got {roof_margin!r}")
    ceilings = check_ceilings(ceilings, threads)
    model = as_model(model)
    if ceilings is None:
        ceilings = default_ceilings(threads)
    machine = run_machine(ceilings)
    floors = floor_seconds(model, batch, threads, ceilings, machine)
    bar = _ProgressBar() if progress is True else None
    try:
        result = engine.tune(model, batch=batch, threads=threads, budget_s=budget_s, repeats=repeats,
                             fuse_blocks=fuse_blocks, roof_margin=roof_margin, floor_seconds=floors, machine=machine,
                             progress=bar.update if bar else (progress or None), save=save)
    finally:
        if bar:
            bar.close()
    arguments = dict(batch=batch, threads=threads, fuse_blocks=fuse_blocks, repeats=profile_repeats, ceilings=ceilings)
    before = profile(model, tiles=engine.Tiles(), **arguments)
    after = profile(model, tiles=result.schedule, **arguments)
    return TuningResult(result, before, after, ceilings, floors)


class _ProgressBar:
    """One tqdm.auto bar for the tuner's two phases (blocks, then steps): its total is the
    phase's number of steps."""

    def __init__(self):
        self.bar = tqdm(total=1, desc="tuning", unit="step")

    def update(self, done: int, total: int, label: str) -> None:
        phase, _, step = label.partition(": ")
        self.bar.total = total
        self.bar.n = done
        self.bar.set_description(f"tuning {phase}", refresh=False)
        self.bar.set_postfix_str(short_name(step) if step else "", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def changed_steps(before: pd.DataFrame, after: pd.DataFrame, schedule: engine.TileSchedule) -> pd.DataFrame:
    """The steps `schedule` runs otherwise than `before` did (tiles other than the default,
    or fused where they were not, or the reverse), matched as before_after_figure matches
    them (a fused block with its members): step, op (after), fused ("no → yes", ...),
    default ms and tuned ms (the profiles' medians, a group's summed), tiles (the fields
    that differ from the default, per layer)."""
    matched, _, _ = match_steps(before, after, "L2")      # the level only sets the units' AI, unused here
    rows = []
    for name, old, new in matched:
        tiles = {layer: {field: value for field, value in schedule.tiles_for(layer).as_dict().items()
                         if value != getattr(schedule.default, field)} for layer in new.layers}
        tiles = {layer: fields for layer, fields in tiles.items() if fields}
        fused = (old.op == "block", new.op == "block")
        if not tiles and fused[0] == fused[1]:
            continue
        rows.append({"step": name, "op": new.op, "fused": " → ".join("yes" if f else "no" for f in fused),
                     "default ms": old.seconds * 1e3, "tuned ms": new.seconds * 1e3,
                     "tiles": "; ".join(", ".join(f"{field}={value}" for field, value in fields.items())
                                        + ("" if len(new.layers) == 1 else f" ({short_name(layer)})")
                                        for layer, fields in tiles.items())})
    return pd.DataFrame(rows, columns=["step", "op", "fused", "default ms", "tuned ms", "tiles"])


def tuned_schedule(model: engine.Model, batch: int, threads: int, ceilings) -> engine.TileSchedule:
    """The schedule engine.tune cached for `model` at `batch` and `threads` on this machine
    (keyed as the workbench's runs are: run_machine(ceilings)). ValueError saying so when
    there is none, or when the cached file is unreadable or keyed to something else."""
    key = model.schedule_key(batch, threads, run_machine(ceilings))
    path = schedules.cache_path(key)
    if not path.exists():
        raise ValueError(f"no tuned schedule for this model at batch {batch} on {threads} thread(s) on this "
                         f"machine ({path.name} is not in {path.parent}); workbench.tune or "
                         f"`roofline-workbench tune` makes one")
    schedule, _ = schedules.load(path, key)
    return dataclasses.replace(schedule, tuned_for=key)
