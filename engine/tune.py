"""The tuner: each step's tiles, and each block's fusion and band height, chosen by
measurement on the machine at hand.

    result = engine.tune(model, batch=1, threads=2, budget_s=60)
    model.run(x, threads=2, tiles=result.schedule)         # or tiles="tuned": it is cached
    result.trials                                          # every candidate measured

First the fusion of every block at once (as it starts, all fused, none fused: measured on
whole runs), then greedy, one step at a time, the steps that take longest first: for a step, each candidate
tile setting (`candidates`) is measured inside whole runs of the network with a Recorder
(caches warm as in a real run, not the step alone), the candidates of a round in turn and
`repeats` rounds, and the step's median seconds compared. A candidate replaces the step's
current setting only if its median is better by more than its spread (the half-range of
the middle of its samples), so noise does not pick. A step whose current median is within
`roof_margin` of `floor_seconds[step]` (its roofline bound, from the workbench's ceilings)
is not searched. The wall-clock `budget_s` is respected: the search stops once it is spent,
keeping what it found. For a block the choice is fused (with each band height) or unfused,
its time the fused step's or the sum of its three steps'.
"""
from __future__ import annotations

import dataclasses
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine import schedules
from engine.checks import check_batch, check_int, check_machine, check_threads
from engine.hooks import Recorder
from engine.kernels.conv_nchwc import DEFAULT_CHANNELS as DENSE_CHANNELS
from engine.kernels.layout import CB, channel_blocks
from engine.kernels.micro_tile import DEFAULT_POINTWISE_CHANNELS
from engine.passes import find_fusable_blocks
from engine.plan import build_plan
from engine.steps import dense_item_channels
from engine.tiles import Tiles, TileSchedule


POINTWISE_PIXELS = (16, 32, 64, 128, 256, 512)
POINTWISE_CHANNELS = tuple(k * DEFAULT_POINTWISE_CHANNELS for k in (1, 2, 4, 8))   # micro-tile widths: 16.. on AVX2, 48.. on AVX-512
DENSE_CHANNELS_TRIED = tuple(k * DENSE_CHANNELS for k in (1, 2, 4, 8))  # the dense conv's micro-tile widths
TILED_KINDS = ("pointwise", "depthwise", "dense")   # the steps searched outside fused blocks
DEPTHWISE_ROWS = (1, 2, 4, 7, 8, 14, 16, 28, 56)
BLOCK_ROWS = (0, 2, 4, 7, 14, 28)               # 0: the cost model's band height
PLAN_MEMORY_BYTES = 1 << 30                      # plans kept at once while tuning, at most this much arena


@dataclass
class TuneResult:
    """schedule: the tuned TileSchedule (marked with the key it was tuned for).
    trials: one dict per candidate measured: step, kind, candidate (its setting),
        median_s and spread_s (seconds), repeats, chosen (the step kept it).
    default_seconds / tuned_seconds: median whole-run seconds, measured side by side at
        the end; seconds: the tuner's wall time; stopped: why it stopped early, or None."""

    schedule: TileSchedule
    trials: list[dict] = field(default_factory=list)
    default_seconds: float = float("nan")
    tuned_seconds: float = float("nan")
    seconds: float = 0.0
    stopped: str | None = None


@dataclass(frozen=True)
class _Choice:
    """One candidate for one step: its tiles, and for a block whether it runs fused."""

    tiles: Tiles
    fused: bool | None = None

    def label(self, kind: str) -> dict:
        if kind == "block":
            return {"fused": self.fused, "block_rows": self.tiles.block_rows}
        name = {"pointwise": ("pointwise_pixels", "pointwise_channels"), "dense": ("pointwise_pixels", "pointwise_channels"),
                "depthwise": ("depthwise_rows",)}[kind]
        return {field_name: getattr(self.tiles, field_name) for field_name in name}


def tune(model, batch: int = 1, threads: int = 1, budget_s: float = 60.0, repeats: int = 5,
         fuse_blocks="auto", roof_margin: float = 0.05, floor_seconds: dict | None = None, machine=None,
         progress: Callable[[int, int, str], None] | bool | None = None, save: bool = True,
         seed: int = 0) -> TuneResult:
    """Tune `model`'s tiles for `batch` images on `threads` threads within `budget_s` seconds.

    repeats: measured runs per candidate (3..100). fuse_blocks: the starting fusion of the
    blocks (False, True or "auto"). floor_seconds: {step name: its roofline bound, s}; a
    step within roof_margin of it is left as it is. progress: True for a console bar, or
    a callable(done, total, step name). save: cache the schedule (engine.schedules), so
    model.run(..., tiles="tuned") finds it. Returns a TuneResult.
    """
    batch, threads = check_batch(batch), check_threads(threads)
    repeats = check_int("repeats", repeats, 3, 100)
    machine = check_machine(machine)
    if not (isinstance(budget_s, (int, float)) and not isinstance(budget_s, bool) and budget_s > 0):
        raise ValueError(f"budget_s must be a number of seconds > 0, got {budget_s!r}")
    started = time.perf_counter()
    deadline = started + budget_s
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape), dtype=np.float32)
    session = _Session(model, x, threads, fuse_blocks, machine)
    try:
        return _search(model, session, batch, threads, budget_s, started, deadline, repeats, roof_margin,
                       floor_seconds, machine, progress, save, seed)
    finally:
        session.close()


def _search(model, session, batch, threads, budget_s, started, deadline, repeats, roof_margin, floor_seconds,
            machine, progress, save, seed) -> TuneResult:
    """The two greedy phases, the final comparison and the saving (tune's docstring)."""
    schedule = session.starting_schedule()
    # keep back the time of the final side-by-side comparison (2 x repeats runs, two plans)
    run_seconds = statistics.median(session.run(schedule)["<run>"] for _ in range(3))
    deadline -= 2 * max(repeats, 5) * run_seconds + 2 * session.plan_seconds
    trials: list[dict] = []
    stopped = None
    rng = random.Random(seed)
    def at_floor(unit, seconds: float) -> bool:
        floor = (floor_seconds or {}).get(_name(unit))
        return bool(floor) and seconds <= floor * (1 + roof_margin)

    # the fusion of every block at once first (the start, all fused, none): the largest
    # single choice, settled within the first seconds of any budget (unless every block
    # already runs at its floor)
    blocks = session.unit_seconds(schedule, 3, "blocks")
    if not all(at_floor(unit, seconds) for unit, seconds in blocks.items()):
        schedule = session.tune_fusion(schedule, repeats, trials, rng)
    # then blocks (fused or not, band height), then the 1x1, depthwise and dense conv steps
    # that are not inside a fused block; each phase longest first
    for phase in ("blocks", "steps"):
        baseline = session.unit_seconds(schedule, 3, phase)
        order = sorted(baseline, key=baseline.get, reverse=True)
        report = _progress(progress, len(order), phase)
        for done, unit in enumerate(order):
            # a unit, once started, measures every candidate at least once: start it only
            # if that first round fits in what is left
            if time.perf_counter() + session.first_round_seconds(schedule, unit, run_seconds) > deadline:
                stopped = stopped or f"budget of {budget_s:g} s spent in the {phase} phase ({done} of {len(order)} done)"
                break
            report(done, _name(unit))
            if at_floor(unit, baseline[unit]):
                continue
            schedule = session.tune_unit(schedule, unit, repeats, deadline, trials, rng, run_seconds)
        report(len(order), "")
    default_seconds, tuned_seconds = session.compare(session.starting_schedule(), schedule, repeats)
    key = model.schedule_key(batch, threads, machine)
    result = TuneResult(dataclasses.replace(schedule, tuned_for=key), trials,
                        default_seconds, tuned_seconds, time.perf_counter() - started, stopped)
    if save:
        schedules.save(schedules.cache_path(key), result.schedule, key, trials)
    return result


def _progress(progress, total: int, phase: str) -> Callable[[int, str], None]:
    if progress is True:
        from tqdm import tqdm            # here: a console bar only when asked for

        bar = tqdm(total=total, desc=f"tuning {phase}", unit="step")

        def report(done, name):
            bar.n = done
            bar.set_postfix_str(name[-40:])
            if done == total:
                bar.close()
        return report
    if callable(progress):
        return lambda done, name: progress(done, total, f"{phase}: {name}" if name else phase)
    return lambda done, name: None


class _Session:
    """Runs of one model, input and thread count under changing schedules."""

    def __init__(self, model, x: np.ndarray, threads: int, fuse_blocks, machine):
        self.model, self.x, self.threads, self.fuse_blocks, self.machine = model, x, threads, fuse_blocks, machine
        self.blocks = {block[2].name: block for block in find_fusable_blocks(model.graph)}
        self.block_of = {layer.name: name for name, block in self.blocks.items() for layer in block if layer is not None}
        plan = model.plan(x.shape[0], threads, Tiles(), False, machine)        # every layer as a step
        # a candidate's first run builds its plan (arena, packing views, the bytes model's walk),
        # which on a small model takes longer than the run: the budget counts it (the faster
        # of two builds: a collector pause must not make the tuner think it has no time)
        self.plan_seconds = min(_seconds_to_build(model, x.shape[0], plan.config) for _ in range(2))
        layers = {layer.name: layer for layer in model.graph.layers}
        self.layers = layers
        self.kinds = {step.name: _kind(step, layers.get(step.name)) for step in plan.steps}
        self.steps = {step.name: step for step in plan.steps}
        # keep every candidate's plan while a step is tuned, if their arenas fit in memory;
        # where they do not, each candidate's plan is built afresh and run once untimed
        self._cache_size = model._plans.resize(max(model._plans.size,
                                                   min(16, PLAN_MEMORY_BYTES // max(1, plan.arena_bytes))))
        self.cached_plans = model._plans.size

    def close(self) -> None:
        """Give the model's plan cache its size back."""
        self.model._plans.resize(self._cache_size)

    def starting_schedule(self) -> TileSchedule:
        """The defaults, with each block's fusion made explicit (what fuse_blocks decided)."""
        plan = self.model.plan(self.x.shape[0], self.threads, Tiles(), self.fuse_blocks, self.machine)
        fused = {step.name for step in plan.steps if step.fused}
        return TileSchedule(Tiles(), {}, {name: name in fused for name in self.blocks})

    def run(self, schedule: TileSchedule) -> dict:
        """Seconds in one run: of each step by its name, of each block as ("block", name)
        (its fused step, or its three steps summed), and of the whole run as "<run>"."""
        recorder = Recorder()
        self.model.run(self.x, threads=self.threads, tiles=schedule, fuse_blocks=False, hooks=[recorder],
                       machine=self.machine)
        seconds: dict = {"<run>": recorder.runs[-1].seconds}
        for record in recorder.records:
            seconds[record.name] = record.seconds
            block = self.block_of.get(record.name)
            if block is not None:
                seconds[("block", block)] = seconds.get(("block", block), 0.0) + record.seconds
        return seconds

    def unit_seconds(self, schedule: TileSchedule, runs: int, phase: str) -> dict:
        """Median seconds over `runs` runs of each unit to tune in `phase`: ("block", name)
        for every block, or the name of each 1x1, depthwise or dense conv step outside fused
        blocks."""
        samples = [self.run(schedule) for _ in range(runs)]
        if phase == "blocks":
            units = [("block", name) for name in self.blocks]
        else:
            fused = {name for name, _ in self.blocks.items() if schedule.fused_for(name)}
            units = [name for name, kind in self.kinds.items() if kind in TILED_KINDS
                     and self.block_of.get(name) not in fused and name in samples[0]]
        return {unit: statistics.median(s[unit] for s in samples) for unit in units}

    def candidates(self, schedule: TileSchedule, unit) -> list[_Choice]:
        """The settings tried for a unit, the current one first."""
        name = _name(unit)
        current = schedule.tiles_for(name)
        if isinstance(unit, tuple):
            depthwise = self.blocks[name][1]
            rows = [r for r in BLOCK_ROWS if r <= depthwise.output_shape[1]]
            return ([_Choice(current, schedule.fused_for(name))]
                    + [_Choice(current, False)] + [_Choice(_replace(current, block_rows=r), True) for r in rows])
        step = self.steps[name]
        if self.kinds[name] == "depthwise":
            return [_Choice(current)] + [_Choice(_replace(current, depthwise_rows=r)) for r in DEPTHWISE_ROWS
                                         if r <= step.output_shape[2]]
        channels = step.output_shape[1] * step.output_shape[-1]
        # the micro-tile multiples below the layer's width, and all its channels in one tile
        # (work items split by pixels only: even shares where the blocks split unevenly)
        tried = DENSE_CHANNELS_TRIED if self.kinds[name] == "dense" else POINTWISE_CHANNELS
        widths = [c for c in tried if c < channels] + [-(-channels // 16) * 16]
        choices = ([_Choice(current)] + [_Choice(_replace(current, pointwise_pixels=p)) for p in POINTWISE_PIXELS]
                   + [_Choice(_replace(current, pointwise_channels=c)) for c in widths])
        if self.kinds[name] != "dense":
            return choices
        # a dense conv widens some channel tiles (conv_nchwc.item_channels): measure each
        # work split it would really run once
        seen, distinct = set(), []
        for choice in choices:
            split = self._dense_split(name, choice.tiles)
            if split not in seen:
                seen.add(split)
                distinct.append(choice)
        return distinct

    def _dense_split(self, name: str, tiles: Tiles) -> tuple[int, int]:
        """(pixels, output channels) per work item of dense conv step `name` under `tiles`
        (channels past the layer's padded width run the whole width)."""
        layer = self.layers[name]
        width = channel_blocks(layer.output_shape[0]) * CB
        return tiles.pointwise_pixels, min(width, dense_item_channels(layer, tiles, self.x.shape[0]))

    def tune_fusion(self, schedule: TileSchedule, repeats: int, trials: list, rng: random.Random) -> TileSchedule:
        """`schedule`, or every block fused, or none, whichever runs fastest whole (kept only
        if it wins by more than its spread)."""
        choices = {"start": schedule,
                   "every block fused": TileSchedule(schedule.default, dict(schedule.overrides),
                                                     {name: True for name in self.blocks}),
                   "no block fused": TileSchedule(schedule.default, dict(schedule.overrides),
                                                  {name: False for name in self.blocks})}
        samples = {label: [] for label in choices}
        for _ in range(repeats):
            order = list(choices)
            rng.shuffle(order)
            for label in order:
                self.run(choices[label])                         # untimed: its plan may be new
                samples[label].append(self.run(choices[label])["<run>"])
        stats = {label: (statistics.median(s), _spread(s)) for label, s in samples.items()}
        best = min(stats, key=lambda label: stats[label][0])
        chosen = "start" if stats[best][0] >= stats["start"][0] - stats[best][1] else best
        for label in choices:
            trials.append({"step": "<every block>", "kind": "fusion", "candidate": {"fusion": label},
                           "median_s": stats[label][0], "spread_s": stats[label][1], "repeats": len(samples[label]),
                           "chosen": label == chosen})
        return choices[chosen]

    def first_round_seconds(self, schedule: TileSchedule, unit, run_seconds: float) -> float:
        """Seconds of one round over `unit`'s candidates (whole runs of `run_seconds`, twice
        that where plans are built untimed first, and each candidate's plan built), which
        tune_unit spends even past the deadline."""
        choices = len(dict.fromkeys(self.candidates(schedule, unit)))
        return choices * (run_seconds * (2 if choices + 1 > self.cached_plans else 1) + self.plan_seconds)

    def tune_unit(self, schedule: TileSchedule, unit, repeats: int, deadline: float, trials: list,
                  rng: random.Random, run_seconds: float = 0.0) -> TileSchedule:
        """`schedule` with `unit` set to its best candidate (or as it was). After the first
        round over the candidates, a round starts only if it fits before `deadline`
        (`first_round_seconds` with whole runs of `run_seconds`)."""
        round_seconds = self.first_round_seconds(schedule, unit, run_seconds)
        name = _name(unit)
        choices = list(dict.fromkeys(self.candidates(schedule, unit)))
        trial_schedules = [_apply(schedule, name, choice) for choice in choices]
        samples: list[list[float]] = [[] for _ in choices]
        for _ in range(repeats):
            if all(samples) and time.perf_counter() + round_seconds > deadline:
                break                   # out of time: decide on the rounds measured
            order = list(range(len(choices)))
            rng.shuffle(order)
            warm_up = len(choices) + 1 > self.cached_plans      # plans evicted between turns: build untimed
            for index in order:
                if warm_up:
                    self.run(trial_schedules[index])
                samples[index].append(self.run(trial_schedules[index])[unit])
        stats = [(statistics.median(s), _spread(s)) for s in samples]
        best = min(range(len(choices)), key=lambda i: stats[i][0])
        chosen = 0 if best == 0 or stats[best][0] >= stats[0][0] - stats[best][1] else best
        kind = "block" if isinstance(unit, tuple) else self.kinds[name]
        for index, choice in enumerate(choices):
            trials.append({"step": name, "kind": kind, "candidate": choice.label(kind), "median_s": stats[index][0],
                           "spread_s": stats[index][1], "repeats": len(samples[index]), "chosen": index == chosen})
        return trial_schedules[chosen]

    def compare(self, before: TileSchedule, after: TileSchedule, repeats: int) -> tuple[float, float]:
        """Median whole-run seconds of two schedules, runs interleaved."""
        pairs = [(self.run(before)["<run>"], self.run(after)["<run>"]) for _ in range(max(repeats, 5))]
        return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def _seconds_to_build(model, batch: int, config) -> float:
    """Wall seconds to build one plan of `model` for `batch` under `config` (not cached)."""
    started = time.perf_counter()
    build_plan(model.graph, model.weights, batch, config)
    return time.perf_counter() - started


def _name(unit) -> str:
    """The step or block name of a unit (a block is ("block", name))."""
    return unit[1] if isinstance(unit, tuple) else unit


def _kind(step, layer) -> str:
    """"pointwise", "depthwise", "dense" (a conv on engine.kernels.conv_nchwc, tiled by the
    pointwise tiles), "block" or the step's op (no tiles to search)."""
    if step.op in ("expand", "project", "pointwise"):
        return "pointwise"
    if layer is not None and layer.op == "Conv" and layer.conv_kind == "dense":
        return "dense"
    return step.op


def _replace(tiles: Tiles, **changes) -> Tiles:
    return Tiles(**{**tiles.as_dict(), **changes})


def _apply(schedule: TileSchedule, name: str, choice: _Choice) -> TileSchedule:
    schedule = schedule.with_step(name, choice.tiles)
    return schedule.with_fused(name, choice.fused) if choice.fused is not None else schedule


def _spread(samples: list[float]) -> float:
    """Half the range of the middle half of the samples, seconds."""
    if len(samples) < 4:
        return (max(samples) - min(samples)) / 2
    quartiles = statistics.quantiles(samples, n=4)
    return (quartiles[2] - quartiles[0]) / 2
