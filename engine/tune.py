"""The tuner: each step's tiles, and each block's fusion and band height, chosen by
measurement on the machine at hand.

    result = engine.tune(model, batch=1, threads=2, budget_s=60)
    model.run(x, threads=2, tiles=result.schedule)         # or tiles="tuned": it is cached
    result.trials                                          # every candidate measured

Three stages, each a search over every unit it concerns at once:
  fusion    every block fused, none, or as fuse_blocks left them (the whole run's time);
  blocks    each block fused (with each band height) or not (its fused step's seconds, or
            its three steps' summed);
  steps     each 1x1 and dense conv's pixel tile or channel tile (one changed, the other as
            it is) and each depthwise conv's rows, for the steps outside fused blocks.
A whole run records every step's seconds (a Recorder), so one run measures a choice of
every unit of a stage: run k of a round sets each unit to the choice in its slot k (each
unit's choices in a shuffled order of its own, so neighbours' choices do not pair the same
way in every unit; its current setting fills the slots past its last choice), and each
unit's choices are compared on its own seconds. A round takes the slots in a new random
order, `repeats` rounds where the budget allows (the rounds left shared out so that every
stage gets as many), and a choice replaces the unit's current setting only if its median is
better by more than its spread (the half-range of the middle of its samples), so noise does
not pick. Timings are taken in whole runs (caches warm as in a real run, not the step alone).
A step or block whose current median is within `roof_margin` of `floor_seconds[name]` (its
roofline bound, from the workbench's ceilings) is not searched. The wall-clock `budget_s` is
respected: a stage starts only if its first round fits, a later round only if it fits.
Last, the start and the tuned schedule are run side by side; where the tuned one is slower
beyond the start's spread, the start is kept.
"""
from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine import runtime, schedules
from engine.checks import check_batch, check_int, check_machine, check_threads
from engine.config import RunConfig
from engine.hooks import Recorder
from engine.kernels.conv_nchwc import DEFAULT_CHANNELS as DENSE_CHANNELS
from engine.kernels.layout import CB, channel_blocks
from engine.kernels.micro_tile import DEFAULT_POINTWISE_CHANNELS
from engine.pages import aligned_empty
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
MAX_PLANS = 64                                   # the tuner's plans kept at once (they share one arena)


@dataclass
class TuneResult:
    """schedule: the tuned TileSchedule (marked with the key it was tuned for).
    trials: one dict per candidate measured: step, kind, stage, candidate (its setting),
        median_s and spread_s (seconds), repeats (its samples), chosen (the step kept it).
    default_seconds / tuned_seconds: median whole-run seconds, measured side by side at
        the end; seconds: the tuner's wall time; stopped: why it stopped early, or None;
    runs: whole runs measured."""

    schedule: TileSchedule
    trials: list[dict] = field(default_factory=list)
    default_seconds: float = float("nan")
    tuned_seconds: float = float("nan")
    seconds: float = 0.0
    stopped: str | None = None
    runs: int = 0


@dataclass(frozen=True)
class _Choice:
    """One candidate for one step: its tiles, and for a block whether it runs fused."""

    tiles: Tiles
    fused: bool | None = None

    def label(self, kind: str) -> dict:
        """The candidate as the trials table shows it."""
        if kind == "block":
            return {"fused": self.fused, "block_rows": self.tiles.block_rows}
        name = {"pointwise": ("pointwise_pixels", "pointwise_channels"), "dense": ("pointwise_pixels", "pointwise_channels"),
                "depthwise": ("depthwise_rows",)}[kind]
        return {field_name: getattr(self.tiles, field_name) for field_name in name}


@dataclass(frozen=True)
class _Fusion:
    """Every block's fusion at once: `fused` ((block, fused), ...), or None: as it is."""

    text: str
    fused: tuple | None

    def label(self, kind: str) -> dict:
        return {"fusion": self.text}


def tune(model, batch: int = 1, threads: int = 1, budget_s: float = 60.0, repeats: int = 5,
         fuse_blocks="auto", roof_margin: float = 0.05, floor_seconds: dict | None = None, machine=None,
         progress: Callable[[int, int, str], None] | bool | None = None, save: bool = True,
         seed: int = 0) -> TuneResult:
    """Tune `model`'s tiles for `batch` images on `threads` threads within `budget_s` seconds.

    repeats: rounds of runs per stage (3..100; fewer where the budget does not allow them).
    fuse_blocks: the starting fusion of the blocks (False, True or "auto"). floor_seconds:
    {step name: its roofline bound, s}; a step within roof_margin of it is left as it is.
    progress: True for a console bar, or a callable(done, total, "phase: the units under
    way") counting runs. save: cache the schedule (engine.schedules), so model.run(..., tiles="tuned")
    finds it. Returns a TuneResult.
    """
    batch, threads = check_batch(batch), check_threads(threads)
    repeats = check_int("repeats", repeats, 3, 100)
    machine = check_machine(machine)
    if not (isinstance(budget_s, (int, float)) and not isinstance(budget_s, bool) and budget_s > 0):
        raise ValueError(f"budget_s must be a number of seconds > 0, got {budget_s!r}")
    started = time.perf_counter()
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape), dtype=np.float32)
    session = _Session(model, x, threads, fuse_blocks, machine)
    try:
        return _search(model, session, batch, threads, budget_s, started, repeats, roof_margin,
                       floor_seconds, machine, progress, save, seed)
    finally:
        session.close()


# the stages: (progress phase, stage); "fusion" is every block's fusion at once
STAGES = (("blocks", "fusion"), ("blocks", "blocks"), ("steps", "steps"))


def _search(model, session, batch, threads, budget_s, started, repeats, roof_margin, floor_seconds,
            machine, progress, save, seed) -> TuneResult:
    """The stages in turn, the final comparison and the saving (module docstring)."""
    deadline = started + budget_s
    start = schedule = session.starting_schedule()
    session.run(schedule)                                # builds the plan (and runs it once untimed)
    session.discard_new_plan_samples()                   # (that build may have compiled or loaded kernels)
    run_seconds = statistics.median(session.run(schedule)["<run>"] for _ in range(3))
    session.run_seconds = run_seconds
    compare_runs = max(repeats, 5)
    # kept back for the final side-by-side comparison (and the tuned schedule's new plan)
    deadline -= 2 * compare_runs * run_seconds + session.new_plan_seconds
    trials: list[dict] = []
    stopped = None
    rng = random.Random(seed)
    phase_totals = {phase: 0 for phase, _ in STAGES}
    for phase, stage in STAGES:
        phase_totals[phase] += repeats * session.slots(schedule, stage)
    phase_totals = {phase: max(1, total) for phase, total in phase_totals.items()}
    bars = {phase: _Lazy(lambda phase=phase: _progress(progress, phase_totals[phase], phase))
            for phase in phase_totals}
    done = {phase: 0 for phase in phase_totals}

    def at_floor(name: str, seconds: float) -> bool:
        floor = (floor_seconds or {}).get(name)
        return bool(floor) and seconds <= floor * (1 + roof_margin)

    for index, (phase, stage) in enumerate(STAGES):
        units = session.units(schedule, stage)
        if floor_seconds and units:
            now = session.median_seconds(schedule, 3)
            if stage == "fusion":       # worth it unless every block already runs at its floor
                units = [] if all(at_floor(name, now[("block", name)]) for name in session.blocks) else units
            else:
                units = [unit for unit in units if not at_floor(unit.name, now.get(unit.key, float("inf")))]
        if units:
            # the rounds every stage still to come can have within what is left
            later = [session.slots(schedule, s) for _, s in STAGES[index:]]
            later[0] = max(len(unit.choices) for unit in units)
            left = deadline - time.perf_counter()
            first = later[0] * (session.run_seconds + session.new_plan_seconds)
            if left < first:
                stopped = stopped or f"budget of {budget_s:g} s spent before the {stage} stage"
                break
            per_round = session.run_seconds * sum(later)
            rounds = int(min(repeats, max(1, (left - session.new_plan_seconds * sum(later)) // max(per_round, 1e-9))))

            label = units[0].name + (f" and {len(units) - 1} more" if len(units) > 1 else "")

            def tick(phase=phase, label=label):
                done[phase] += 1
                bars[phase](min(done[phase], phase_totals[phase] - 1), label)
            samples, measured = session.measure(schedule, units, rounds, deadline, rng, tick)
            if measured < repeats:
                stopped = stopped or (f"budget of {budget_s:g} s: the {stage} stage measured {measured} of "
                                      f"{repeats} rounds")
            schedule = _decide(session, schedule, units, samples, trials, stage)
        if index + 1 == len(STAGES) or STAGES[index + 1][0] != phase:
            bars[phase](phase_totals[phase], "")
            done[phase] = phase_totals[phase]
    for phase in phase_totals:                           # a bar cut short by the budget still closes
        if done[phase] < phase_totals[phase]:
            bars[phase](phase_totals[phase], "")
    (default_seconds, default_spread), (tuned_seconds, _) = session.compare(start, schedule, compare_runs)
    if schedule != start and tuned_seconds > default_seconds + default_spread:
        # the whole run slower than the start beyond its spread: the per-step wins did not add up
        stopped = (stopped + "; " if stopped else "") + "the tuned schedule ran slower than the start: kept the start"
        schedule, tuned_seconds = start, default_seconds
    key = model.schedule_key(batch, threads, machine)
    result = TuneResult(dataclasses.replace(schedule, tuned_for=key), trials, default_seconds, tuned_seconds,
                        time.perf_counter() - started, stopped, session.runs)
    if save:
        schedules.save(schedules.cache_path(key), result.schedule, key, trials)
    return result


def _decide(session, schedule: TileSchedule, units: list, samples: dict, trials: list, stage: str) -> TileSchedule:
    """`schedule` with each unit set to its best choice where that wins by more than its
    spread (else as it was); every choice measured goes to `trials`."""
    for unit in units:
        stats = [(statistics.median(s), _spread(s)) if s else (float("nan"), float("nan")) for s in samples[unit.key]]
        chosen = _winner(samples[unit.key])
        for index, choice in enumerate(unit.choices):
            trials.append({"step": unit.name, "kind": unit.kind, "stage": stage, "candidate": choice.label(unit.kind),
                           "median_s": stats[index][0], "spread_s": stats[index][1],
                           "repeats": len(samples[unit.key][index]), "chosen": index == chosen})
        schedule = _apply(schedule, unit.name, unit.choices[chosen])
    return schedule


def _winner(samples: list[list[float]]) -> int:
    """The index of the choice kept: the fastest by median if it beats the first (the
    current setting) by more than its own spread, else 0."""
    medians = [statistics.median(s) if s else float("inf") for s in samples]
    best = min(range(len(samples)), key=medians.__getitem__)
    if best == 0 or not samples[0] or medians[best] >= medians[0] - _spread(samples[best]):
        return 0
    return best


def _progress(progress, total: int, phase: str) -> Callable[[int, str], None]:
    if progress is True:
        from tqdm import tqdm            # here: a console bar only when asked for

        bar = tqdm(total=total, desc=f"tuning {phase}", unit="run")

        def report(done, name):
            if bar.disable is True and bar.n == total:
                return
            bar.n = done
            bar.set_postfix_str(name[-40:])
            if done == total:
                bar.close()
        return report
    if callable(progress):
        return lambda done, name: progress(done, total, f"{phase}: {name}" if name else phase)
    return lambda done, name: None


class _Lazy:
    """A progress report made on its first call (a console bar appears when its phase starts)."""

    def __init__(self, make):
        self._make, self._report = make, None

    def __call__(self, done: int, name: str) -> None:
        if self._report is None:
            self._report = self._make()
        self._report(done, name)


@dataclass(frozen=True)
class _Unit:
    """What one stage searches for one step or block: `key` its seconds in a run's
    seconds (_Session.run), `choices` the settings tried, its current one first."""

    name: str
    kind: str
    key: object
    choices: tuple


class _Session:
    """Runs of one model, input and thread count under changing schedules, on plans of the
    tuner's own: built without the bytes model (the tuner reads only seconds) and all on
    one activation arena (runs never overlap), so a new candidate's plan costs
    milliseconds and no fresh memory (a new arena's first run pays its page faults: on a
    VM, seconds at batch 64)."""

    def __init__(self, model, x: np.ndarray, threads: int, fuse_blocks, machine):
        self.model, self.x, self.threads, self.fuse_blocks = model, x, threads, fuse_blocks
        self.machine = check_machine(machine)
        self.batch = x.shape[0]
        self._memory = None
        self._plans: OrderedDict = OrderedDict()
        self.runs = 0                                     # runs measured (warm-ups of new plans not counted)
        self.run_seconds = 0.0                            # a whole run, seconds (set by the search)
        self._new_plan_samples: list[float] = []          # seconds of each new plan's build and untimed run
        self.blocks = {block[2].name: block for block in find_fusable_blocks(model.graph)}
        self.block_of = {layer.name: name for name, block in self.blocks.items() for layer in block if layer is not None}
        self.order = {}                                   # step or block name -> position in a run
        plan = self._build(RunConfig(threads=threads, tiles=TileSchedule(), fuse_blocks=False,
                                     machine=self.machine))           # every layer as a step
        layers = {layer.name: layer for layer in model.graph.layers}
        self.layers = layers
        self.kinds = {step.name: _kind(step, layers.get(step.name)) for step in plan.steps}
        self.output_shapes = {step.name: step.output_shape for step in plan.steps}   # (not the steps: they
                                                                                     # hold views of the arena)
        for index, step in enumerate(plan.steps):
            self.order.setdefault(self.block_of.get(step.name, step.name), index)
            self.order[step.name] = index

    def close(self) -> None:
        """Drop the tuner's plans and their arena."""
        self._plans.clear()
        self._memory = None

    def _allocate(self, elements: int) -> np.ndarray:
        """The one arena every plan of the session runs on (grown where a plan needs more)."""
        if self._memory is None or self._memory.size < elements:
            self._memory = aligned_empty(elements)
            self._memory[::1024] = 0.0      # every page touched now, not in a timed (or costed) run
        return self._memory[:elements]

    def _build(self, config: RunConfig):
        return build_plan(self.model.graph, self.model.weights, self.batch, config, allocate=self._allocate,
                          bytes_model=False)

    def plan(self, schedule: TileSchedule):
        """The session's plan of `schedule`, built (and run once untimed) if new."""
        plan = self._plans.get(schedule)
        if plan is not None:
            self._plans.move_to_end(schedule)
            return plan
        started, memory = time.perf_counter(), self._memory
        plan = self._build(RunConfig(threads=self.threads, tiles=schedule, fuse_blocks=False, machine=self.machine))
        runtime.run(plan, self.x, self.threads)            # untimed: its scratch is new
        if self._memory is memory:          # (a grown arena is not what the next plan costs)
            self._new_plan_samples.append(time.perf_counter() - started)
        self._plans[schedule] = plan
        while len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return plan

    def discard_new_plan_samples(self) -> None:
        """Forget the new plans' costs so far: the first ones include compiling or loading
        the kernels from numba's cache, which no later plan pays."""
        self._new_plan_samples.clear()

    @property
    def new_plan_seconds(self) -> float:
        """What a new plan costs, seconds (its build and untimed run): the median so far, at
        least a run's time."""
        samples = self._new_plan_samples
        return max(self.run_seconds, statistics.median(samples) if samples else 0.0)

    def starting_schedule(self) -> TileSchedule:
        """The defaults, with each block's fusion made explicit (what fuse_blocks decided)."""
        plan = build_plan(self.model.graph, self.model.weights, self.batch,
                          RunConfig(threads=self.threads, tiles=TileSchedule(), fuse_blocks=self.fuse_blocks,
                                    machine=self.machine), allocate=self._allocate, bytes_model=False)
        fused = {step.name for step in plan.steps if step.fused}
        return TileSchedule(Tiles(), {}, {name: name in fused for name in self.blocks})

    def run(self, schedule: TileSchedule) -> dict:
        """Seconds in one run: of each step by its name, of each block as ("block", name)
        (its fused step, or its three steps summed), and of the whole run as "<run>"."""
        plan = self.plan(schedule)
        recorder = Recorder()
        runtime.run(plan, self.x, self.threads, (recorder,))
        self.runs += 1
        seconds: dict = {"<run>": recorder.runs[-1].seconds}
        for record in recorder.records:
            seconds[record.name] = record.seconds
            block = self.block_of.get(record.name)
            if block is not None:
                seconds[("block", block)] = seconds.get(("block", block), 0.0) + record.seconds
        return seconds

    def median_seconds(self, schedule: TileSchedule, runs: int) -> dict:
        """Median over `runs` runs of each entry of run()'s seconds."""
        samples = [self.run(schedule) for _ in range(runs)]
        return {key: statistics.median(s.get(key, float("nan")) for s in samples) for key in samples[0]}

    def unit_seconds(self, schedule: TileSchedule, runs: int, phase: str) -> dict:
        """Median seconds over `runs` runs of each unit to tune in `phase`: ("block", name)
        for every block, or the name of each 1x1, depthwise or dense conv step outside fused
        blocks."""
        now = self.median_seconds(schedule, runs)
        if phase == "blocks":
            units = [("block", name) for name in self.blocks]
        else:
            units = [name for name in self.tiled_steps(schedule) if name in now]
        return {unit: now[unit] for unit in units}

    def tiled_steps(self, schedule: TileSchedule) -> list[str]:
        """The 1x1, depthwise and dense conv steps outside fused blocks, in run order."""
        fused = {name for name in self.blocks if schedule.fused_for(name)}
        return [name for name, kind in self.kinds.items() if kind in TILED_KINDS and self.block_of.get(name) not in fused]

    def units(self, schedule: TileSchedule, stage: str) -> list[_Unit]:
        """What `stage` searches under `schedule`, in run order (units with one choice left out)."""
        if stage == "fusion":
            if not self.blocks:
                return []
            choices = (_Fusion("start", None), _Fusion("every block fused", tuple((n, True) for n in self.blocks)),
                       _Fusion("no block fused", tuple((n, False) for n in self.blocks)))
            return [_Unit("<every block>", "fusion", "<run>", choices)]
        if stage == "blocks":
            found = [_Unit(name, "block", ("block", name), tuple(self.candidates(schedule, ("block", name))))
                     for name in self.blocks]
        else:
            found = [_Unit(name, self.kinds[name], name, tuple(self.candidates(schedule, name)))
                     for name in self.tiled_steps(schedule)]
        return sorted((unit for unit in found if len(unit.choices) > 1), key=lambda unit: self.order[unit.name])

    def slots(self, schedule: TileSchedule, stage: str) -> int:
        """Runs per round of `stage` under `schedule` (its units' most choices)."""
        return max((len(unit.choices) for unit in self.units(schedule, stage)), default=0)

    def candidates(self, schedule: TileSchedule, unit) -> list[_Choice]:
        """The settings tried for a unit, the current one first (distinct): a block fused
        with each band height or not; a 1x1 or dense conv step's pixel tiles and channel
        tiles (one changed, the other as it is); a depthwise step's rows."""
        name = _name(unit)
        current = schedule.tiles_for(name)
        if isinstance(unit, tuple):
            depthwise = self.blocks[name][1]
            rows = [r for r in BLOCK_ROWS if r <= depthwise.output_shape[1]]
            return list(dict.fromkeys([_Choice(current, schedule.fused_for(name))] + [_Choice(current, False)]
                                      + [_Choice(_replace(current, block_rows=r), True) for r in rows]))
        shape = self.output_shapes[name]
        if self.kinds[name] == "depthwise":
            return list(dict.fromkeys([_Choice(current)] + [_Choice(_replace(current, depthwise_rows=r))
                                                            for r in DEPTHWISE_ROWS if r <= shape[2]]))
        channels = shape[1] * shape[-1]
        # the micro-tile multiples below the layer's width, and all its channels in one tile
        # (work items split by pixels only: even shares where the blocks split unevenly)
        tried = DENSE_CHANNELS_TRIED if self.kinds[name] == "dense" else POINTWISE_CHANNELS
        widths = [c for c in tried if c < channels] + [-(-channels // 16) * 16]
        choices = list(dict.fromkeys([_Choice(current)] + [_Choice(_replace(current, pointwise_pixels=p))
                                                           for p in POINTWISE_PIXELS]
                                     + [_Choice(_replace(current, pointwise_channels=c)) for c in widths]))
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

    def measure(self, schedule: TileSchedule, units: list[_Unit], rounds: int, deadline: float,
                rng: random.Random, tick: Callable[[], None] = lambda: None) -> tuple[dict, int]:
        """Every unit's choices measured in shared runs: run k of a round sets each unit to
        its choice in slot k (a unit's choices in an order of its own, its current setting
        filling the slots past its last choice), so one run measures a choice of every unit,
        each on its own seconds. Rounds take the slots in a new random order; a round after
        the first starts only if it fits before `deadline`. Returns ({unit key: [seconds of
        each choice]}, rounds measured)."""
        slots = max(len(unit.choices) for unit in units)
        assignment = {}
        for unit in units:
            order = list(range(len(unit.choices))) + [0] * (slots - len(unit.choices))
            rng.shuffle(order)
            assignment[unit.key] = order
        schedules = []
        for slot in range(slots):
            slot_schedule = schedule
            for unit in units:
                slot_schedule = _apply(slot_schedule, unit.name, unit.choices[assignment[unit.key][slot]])
            schedules.append(slot_schedule)
        samples = {unit.key: [[] for _ in unit.choices] for unit in units}
        measured = 0
        for round_index in range(rounds):
            new = sum(1 for s in schedules if s not in self._plans)
            cost = slots * self.run_seconds + new * self.new_plan_seconds
            if round_index and time.perf_counter() + cost > deadline:
                break
            order = list(range(slots))
            rng.shuffle(order)
            for slot in order:
                seconds = self.run(schedules[slot])
                self.run_seconds = 0.8 * self.run_seconds + 0.2 * seconds["<run>"] if self.run_seconds else \
                    seconds["<run>"]
                for unit in units:
                    samples[unit.key][assignment[unit.key][slot]].append(seconds[unit.key])
                tick()
            measured += 1
        return samples, measured

    def tune_unit(self, schedule: TileSchedule, unit, repeats: int, deadline: float, trials: list,
                  rng: random.Random, run_seconds: float = 0.0) -> TileSchedule:
        """`schedule` with one `unit` (a step name, or ("block", name)) set to its best
        candidate, measured alone (the other units as they are) over `repeats` rounds."""
        name = _name(unit)
        kind = "block" if isinstance(unit, tuple) else self.kinds[name]
        self.run_seconds = self.run_seconds or run_seconds
        single = _Unit(name, kind, unit, tuple(self.candidates(schedule, unit)))
        if len(single.choices) < 2:
            return schedule
        samples, _ = self.measure(schedule, [single], repeats, deadline, rng)
        return _decide(self, schedule, [single], samples, trials, kind)

    def compare(self, before: TileSchedule, after: TileSchedule, repeats: int) -> tuple[tuple, tuple]:
        """(median, spread) of whole-run seconds of two schedules, runs interleaved."""
        pairs = [(self.run(before)["<run>"], self.run(after)["<run>"]) for _ in range(max(repeats, 5))]
        return tuple((statistics.median(s), _spread(s)) for s in ([a for a, _ in pairs], [b for _, b in pairs]))


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


def _apply(schedule: TileSchedule, name: str, choice) -> TileSchedule:
    if isinstance(choice, _Fusion):
        return schedule if choice.fused is None else TileSchedule(schedule.default, dict(schedule.overrides),
                                                                  dict(choice.fused))
    schedule = schedule.with_step(name, choice.tiles)
    return schedule.with_fused(name, choice.fused) if choice.fused is not None else schedule


def _spread(samples: list[float]) -> float:
    """Half the range of the middle half of the samples, seconds."""
    if len(samples) < 4:
        return (max(samples) - min(samples)) / 2
    quartiles = statistics.quantiles(samples, n=4)
    return (quartiles[2] - quartiles[0]) / 2
