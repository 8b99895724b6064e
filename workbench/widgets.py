"""`Explorer`: an ipywidgets panel around a live roofline (a plotly FigureWidget) that
moves as you change the model, core count, batch size, block fusion (off / auto / all
blocks) and tile sizes, for every step at once or for one step, and that runs the tuner.

    import engine, workbench
    explorer = workbench.Explorer(engine.load("data/mobilenet_v2.onnx"))   # or Explorer("resnet50")
    explorer                                        # last expression of a cell: the panel
    explorer.controls["threads"].value = 1          # re-measures, redraws in place
    explorer.set(model="resnet50")                  # another zoo model: loaded, then profiled
    explorer.set(batch=8, pointwise_pixels=32)      # several controls, one measurement
    explorer.set(fuse_blocks="auto")                # False, "auto" or True
    explorer.set(bytes="simulated")                 # points by a cache simulation's bytes
    explorer.set(step=name, pointwise_pixels=128)   # that step's tiles only (per-layer mode)
    explorer.tune(budget_s=30)                      # the Tune button: engine.tune, then before/after
    frame = explorer.run()                          # measure now (synchronous): a profile

Built like plotly's FigureWidget app (doc/python/figurewidget-app.md): widgets first; one
callback observing every control's "value"; the figure changed only in place
(`update_roofline` inside `figure.batch_update()`, the Explorer's own overlay traces after
the roofline's), never rebuilt; layout last.

Per-layer mode. The Explorer holds an engine.TileSchedule (`schedule`): default tiles and
tiles per step. The step picker (`controls["step"]`: "every step", or one step of the last
profile, labelled with its short name and op) says what the tile sliders set: on "every
step" the default tiles (what every step without tiles of its own runs: today's behaviour
while no step has its own), on a step that step's tiles only; the sliders a step's kernel
does not read are disabled (a 1x1 conv reads the pointwise tiles, a depthwise conv
depthwise_rows, a fused block block_rows). Clicking a point of the roofline selects its
step in the picker. The selected step is ringed on the figure. Choosing a step measures
nothing; moving a slider then measures as ever.

Tune. The Tune button (or `tune()`) runs workbench.tune with the controls' batch, threads
and fusion, from the default tiles, within the budget box's seconds, with a progress bar;
then the Explorer holds the tuned schedule and draws the tuned profile, each step's
default point (hollow) and an arrow from it to its tuned point, as before_after_figure
does. The default points stay while the profile has the tuning's batch and threads. The
tuned schedule chooses each block's fusion; touching the fusion selector hands every
block back to it. Changing batch or threads keeps the tuned tiles, as a hand-made schedule.

Bytes. The bytes toggle (`controls["bytes"]`: "model" / "simulated") says what places the
points across: the bytes model (engine.traffic, the default) or a cache simulation of each
step's real access pattern (engine.trace; workbench.simulated_bytes). Turned to
"simulated", the Explorer simulates the configuration shown (a second or so at batch 1;
the progress bar and status line follow it step by step), then re-places every point by
the simulated bytes: x, colour by bound, the layer table, the summary and the detail panel
(the profile gains bytes_sim_<level> / ai_sim_<level> columns). Each configuration is
simulated once (cached by model, batch, threads, tiles and fusion), so toggling back and
forth is instant; while the toggle is on, a new configuration (a slider move) is simulated
after it is measured; while it is off nothing is simulated. A plan the simulation cannot
trace is refused in the message area and the toggle goes back to "model".

Model. The model dropdown (`controls["model"]`) lists the model the Explorer was made
with and every model of the zoo (workbench.models.model_names(): torchvision's topologies,
synthetic weights). Choosing another loads it (its data/<name>.onnx is written on first
use) and profiles it with the controls' batch, threads, fusion and default tiles; the
previous model's per-step tiles, tuning and selected step are dropped (they name its
steps). A model the engine cannot load (yet) is refused in the message area and the
dropdown goes back to the model shown.

- A measurement is `workbench.profile` with the controls' values: one warm-up run and
  `repeats` timed runs, synchronously, in the kernel's thread. While it runs the progress
  bar and status line say so and the Run button is disabled; the panel does not block the
  kernel silently.
- Changing only `level` redraws the last profile at the other level (no measurement).
- The controls never disagree with the figure. A tile slider steps through allowed values
  only (workbench.tile_controls); a value typed in its box that Tiles refuses
  (pointwise_channels 20) snaps back at once and the message area says why; a
  measurement the engine refuses puts every control back at what the figure shows. The
  figure's title names what it shows: level, batch, threads, fusion and tiles.
- The figure is as wide as the output area (workbench.width_probe); below it the summary,
  the layer table (workbench.layer_list: sortable, filterable, "memory bound only", which
  filters the figure too) and the detail panel of the selected step (a click on a point or
  a row; workbench.step_detail).
- One measurement (or tuning) at a time. While one is in progress (so only from another
  thread, or from code the measurement itself calls), a control change is queued: the
  message area says "busy", and when the running measurement ends it measures again,
  once, with the controls' values by then (a `level` or step change only redraws), so the
  figure always ends up showing what the controls say. An explicit `run()`, `tune()` or a
  Run or Tune click at that moment is refused with a "busy" message and returns None.
  Nothing waits on a lock, so a callback can never deadlock against a measurement.
"""
from __future__ import annotations

import contextlib
import html
import logging
import threading
import time

import ipywidgets as widgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

import engine
from engine import checks
from engine.checks import check_batch, check_int, check_repeats
from engine import schedules
from engine.tiles import as_schedule
from workbench import tuning
from workbench.before_after import match_steps, step_arrow
from workbench.bytes_check_figure import placed_by_simulated_bytes
from workbench.figure_parts import (OP_COLORS, format_ms, marker_sizes, op_kind, or_none, plotted_steps, short_name,
                                    step_members)
from workbench.layer_list import LayerList
from workbench.models import is_model_name, model_label, model_names
from workbench.profile import (as_model, bound_at, check_ceilings, check_level, default_ceilings, fusion_label,
                               parse_fuse_blocks, profile, run_machine)
from workbench.roofline import default_title, roofline_figure, update_roofline
from workbench.simulated_bytes import simulated_frame, with_simulated_columns
from workbench.step_detail import step_detail_html
from workbench.tile_controls import choice_label, ensure_choice, make_tile_slider, make_typed_box
from workbench.width_probe import WidthProbe

logger = logging.getLogger(__name__)

BATCH_CHOICES = (1, 2, 4, 8, 16, 32, 64)   # images; the batch dropdown's options
# The bytes toggle's options (label, value): what places the points across, and a tooltip for each.
BYTES_OPTIONS = (("model", "model"), ("simulated", "simulated"))
BYTES_TOOLTIPS = ("the bytes model (engine.traffic): bytes per level from shapes, tiles and cache sizes",
                  "a cache simulation of each step's own access trace (engine.trace, pycachesim): run once per "
                  "configuration, then cached")
# The fusion selector's options: (label, fuse_blocks value), and a tooltip for each.
FUSE_BLOCKS_OPTIONS = (("off", False), ("auto", "auto"), ("all blocks", True))
FUSE_BLOCKS_TOOLTIPS = ("every layer on its own",
                        "fuse only the blocks the engine expects to run faster fused at these threads and batch "
                        "(engine.fusion.fusion_wins)",
                        "fuse every inverted-residual block: expand, depthwise and project band by band")
SLOWEST_SHOWN = 8                           # rows of the slowest-steps table
MESSAGE_COLORS = {"error": "#b00020", "warning": "#8a5a00", "info": "#333333"}
# What a measurement may raise because of a configuration (shown, not raised).
CONFIG_ERRORS = (ValueError, engine.ModelError)
# What a cache simulation may raise for a plan it cannot simulate (or without pycachesim).
SIMULATION_ERRORS = (ValueError, engine.ModelError, ImportError)
TILE_FIELDS = tuple(engine.Tiles().as_dict())
EVERY_STEP = ""                             # the step picker's value for "every step"
MIN_FIGURE_WIDTH = 400                      # px; below this the figure keeps its width (a hidden panel reports 0)
DETAIL_HINT = "<i>click a point of the roofline, or a row of the table, to see its step here</i>"
TUNE_BUDGET_SECONDS = 60.0                  # the Tune budget box's first value
BEFORE_TRACE, SELECTION_TRACE = "tuning:before", "selection"   # the Explorer's overlay traces
GIVEN_MODEL = "(given)"     # the model dropdown's value for a model given as other than a zoo name


def slowest_layers(frame: pd.DataFrame, ceilings, level: str = "L2", count: int = SLOWEST_SHOWN) -> pd.DataFrame:
    """The `count` slowest steps of a profile, for display: layer (short name), op, ms
    (median), % of time, GFLOP/s, AI at `level` (FLOP/byte), % of the attainable roof at
    `level` (min(peak, AI x bandwidth)) and whether the step is memory or compute bound
    there (AI below or above the level's ridge point)."""
    threads = int(frame["threads"].iloc[0])
    peak = ceilings.peak_gflops(threads)
    bandwidth = ceilings.bandwidth_gbs(level, threads)
    rows = frame.sort_values("seconds", ascending=False, kind="stable").head(count)
    ai = rows[f"ai_{level}"].to_numpy(dtype=float)
    flops = rows["flops"].to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        attainable = np.minimum(peak, ai * bandwidth)
        fraction = rows["gflops"].to_numpy(dtype=float) / attainable
    bound = np.where(flops <= 0, "no FLOPs", bound_at(rows, ceilings, level))
    return pd.DataFrame({
        "layer": [short_name(n) for n in rows["layer"]],
        "op": rows["op"].to_numpy(),
        "ms": rows["seconds"].to_numpy(dtype=float) * 1e3,
        "% time": rows["share_of_time"].to_numpy(dtype=float) * 100,
        "GFLOP/s": rows["gflops"].to_numpy(dtype=float),
        f"AI at {level}": ai,
        "% of roof": np.where(flops > 0, fraction * 100, np.nan),
        f"bound at {level}": bound,
    })


class Explorer:
    """An interactive roofline of `model` on this machine.

    model: a zoo model name ("resnet50": workbench.models), engine.Model, a path to an ONNX
    file, bytes or an onnx.ModelProto; the model dropdown starts on it.
    ceilings: workbench.Ceilings (default: measure_ceilings(quick=True), cached on disk).
    batch (images), threads (default: every core), tiles (engine.Tiles, the same for every
    step, default Tiles(); or an engine.TileSchedule: tiles per step and fusion per block),
    fuse_blocks (False, "auto" or True; default engine.DEFAULT_FUSE_BLOCKS), level (memory
    level of the x axis, one of ceilings.levels): the controls' initial values.
    repeats: timed runs per measurement (the median is plotted).
    bytes: "model" or "simulated", the bytes toggle's first value (what places the points).

    The constructor measures once (so the panel opens on a real roofline); a bad initial
    argument raises ValueError there (a schedule tuned for another model, batch, thread
    count or machine too). Afterwards nothing the controls do raises: errors go to the
    message area.

    Attributes: controls (dict name -> widget: model (a zoo name, or GIVEN_MODEL for a
    model given otherwise), threads, batch, fuse_blocks (ToggleButtons
    "off" / "auto" / "all blocks", values False / "auto" / True), level, bytes ("model" /
    "simulated"), step (the step
    picker: EVERY_STEP or a step's name) and one SelectionSlider per engine.Tiles field,
    named as the field), typed (field -> the box to type a tile value), run_button,
    progress, status, tune_button, tune_budget (seconds), tune_progress, message, summary,
    layers (the layer table: workbench.layer_list.LayerList), detail (the selected step's
    panel, HTML), width_probe, figure (the plotly FigureWidget), panel (the
    top-level ipywidgets container), profile (the last measured DataFrame; with the bytes
    toggle on, with bytes_sim_<level> and ai_sim_<level> columns), drawn (the profile as
    placed on the figure: by the toggle's bytes), schedule (the
    TileSchedule of the last measurement), tuning (the last workbench.tuning.TuningResult,
    or None), measurements (how many measurements have completed), last_seconds
    ({"measure": s, "draw": s} of the last run), simulations (how many cache simulations
    have run: a toggle back to a configuration simulated before runs none).
    """

    def __init__(self, model, ceilings=None, batch: int = 1, threads: int | None = None,
                 tiles: engine.Tiles | engine.TileSchedule | None = None,
                 fuse_blocks: bool | str = engine.DEFAULT_FUSE_BLOCKS, level: str = "L2", repeats: int = 3,
                 bytes: str = "model"):
        self.repeats = check_repeats(repeats)
        bytes = _check_bytes(bytes)
        batch = check_batch(batch)
        threads = engine.available_cores() if threads is None else checks.check_threads(threads)
        tiles = checks.check_tiles(tiles)
        fuse_blocks = checks.check_fuse_blocks(fuse_blocks)
        check_ceilings(ceilings, threads)
        self.model = as_model(model)
        # the dropdown's value for the model shown, and the given model (kept to go back to)
        self._model_choice = model if is_model_name(model) else GIVEN_MODEL
        self._given = (model_label(model) if isinstance(model, str) or hasattr(model, "__fspath__") else "given model",
                       self.model) if self._model_choice == GIVEN_MODEL else None
        self.ceilings = default_ceilings(threads) if ceilings is None else ceilings
        check_level(self.ceilings, level)

        self.profile: pd.DataFrame | None = None
        self.schedule: engine.TileSchedule = as_schedule(tiles)
        self.tuning: tuning.TuningResult | None = None
        self._tuned_now: tuning.TuningResult | None = None   # what the running tune() returns
        self.measurements = 0
        self.last_seconds: dict[str, float] = {}
        self._target: str | None = None   # the step the tile sliders set (None: every step)
        self._busy = threading.Lock()     # held for the whole of a measurement and its redraw
        self._pending_measure = False     # a control changed while busy: measure again after
        self._pending_draw = False        # the level changed while busy: redraw after
        self._pending_lock = threading.Lock()   # guards the two flags only (held for no call)
        self._held = 0                    # > 0: control changes do not trigger the callback
        self._memory_only = False         # the figure shows only the steps memory bound at the level
        self._profiled: tuple | None = None   # (batch, threads, tiles, fuse_blocks) the profile ran with
        self._simulated: dict = {}        # that tuple -> simulated_frame of its plan (this model's)
        self.simulations = 0
        self.drawn: pd.DataFrame | None = None
        self._simulation_note = ""        # what the last simulation did, for the status line

        # ---- widgets first
        self.controls = self._make_controls(batch, threads, self.schedule.default, fuse_blocks, level, bytes)
        self._make_buttons_and_outputs()

        frame = self._measure(self.config())          # the initial config is valid: errors raise here
        self._accept(frame, self.config()["tiles"])
        self._place_points()
        self.figure = go.FigureWidget(roofline_figure(self.drawn, self.ceilings, level=level, level_buttons=False))
        self.figure.add_trace(go.Scatter(**_overlay_spec(BEFORE_TRACE)))
        self.figure.add_trace(go.Scatter(**_overlay_spec(SELECTION_TRACE)))
        self._draw()

        # ---- one callback
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.run_button.on_click(self._on_click)
        self.tune_button.on_click(self._on_tune_click)
        self.width_probe.observe(self._fit_width, names="width")
        for trace in self.figure.data:
            if trace.meta.startswith("ops:") or trace.meta == BEFORE_TRACE:
                trace.on_click(self._on_point_click)

        # ---- layout last
        self.panel = self._layout()

    def _make_buttons_and_outputs(self) -> None:
        """Run and Tune with their progress bars and budget, and the panel's text outputs."""
        self.run_button = widgets.Button(description="Run", icon="play", button_style="primary",
                                         tooltip="measure again with the current values",
                                         layout=widgets.Layout(width="110px"))
        self.progress = widgets.IntProgress(value=0, min=0, max=2, description="",
                                            layout=widgets.Layout(width="160px"))
        self.status = widgets.Label(value="")
        self.tune_button = widgets.Button(description="Tune", icon="sliders", button_style="warning",
                                          tooltip="choose every step's tiles and every block's fusion by "
                                                  "measurement (engine.tune), then show default → tuned",
                                          layout=widgets.Layout(width="110px"))
        self.tune_budget = widgets.BoundedFloatText(value=TUNE_BUDGET_SECONDS, min=1.0, max=3600.0, step=5.0,
                                                    description="budget (s)", style={"description_width": "initial"},
                                                    layout=widgets.Layout(width="150px"))
        self.tune_progress = widgets.IntProgress(value=0, min=0, max=1, description="",
                                                 layout=widgets.Layout(width="220px"))
        self.step_note = widgets.HTML(value="")
        self.message = widgets.HTML(value="")
        self.summary = widgets.HTML(value="")
        self.layers = LayerList(on_pick=self._on_table_pick, on_memory_only=self._on_memory_only)
        self.detail = widgets.HTML(value=DETAIL_HINT)
        self.typed = {field: make_typed_box(field, self.controls[field], self._refused, self.hold)
                      for field in TILE_FIELDS}
        self.width_probe = WidthProbe()       # the output area's width, for the figure (width_probe.py)

    # ------------------------------------------------------------------ building

    def _make_controls(self, batch, threads, tiles, fuse_blocks, level, bytes) -> dict[str, widgets.Widget]:
        wide = {"description_width": "initial"}
        batches = sorted(set(BATCH_CHOICES) | {batch})
        given = [(f"{self._given[0]} (given)", GIVEN_MODEL)] if self._given is not None else []
        controls: dict[str, widgets.Widget] = {
            "model": widgets.Dropdown(options=given + [(name, name) for name in model_names()],
                                      value=self._model_choice, description="model", style=wide,
                                      layout=widgets.Layout(width="260px")),
            "threads": widgets.IntSlider(value=threads, min=1, max=engine.available_cores(), step=1,
                                         description="threads", continuous_update=False, style=wide),
            "batch": widgets.Dropdown(options=batches, value=batch, description="batch", style=wide,
                                      layout=widgets.Layout(width="140px")),
            "fuse_blocks": widgets.ToggleButtons(options=list(FUSE_BLOCKS_OPTIONS), value=fuse_blocks,
                                                 description="fuse blocks", tooltips=list(FUSE_BLOCKS_TOOLTIPS),
                                                 style={"description_width": "initial", "button_width": "84px"},
                                                 # a row: label then buttons (ToggleButtons stacks them by default)
                                                 layout=widgets.Layout(display="flex", align_items="center",
                                                                       width="auto")),
            "level": widgets.Dropdown(options=list(self.ceilings.levels), value=level, description="AI at",
                                      style=wide, layout=widgets.Layout(width="130px")),
            "bytes": widgets.ToggleButtons(options=list(BYTES_OPTIONS), value=bytes, description="bytes",
                                           tooltips=list(BYTES_TOOLTIPS),
                                           style={"description_width": "initial", "button_width": "84px"},
                                           layout=widgets.Layout(display="flex", align_items="center",
                                                                 width="auto")),
            "step": widgets.Dropdown(options=[("every step", EVERY_STEP)], value=EVERY_STEP,
                                     description="tiles of", style=wide, layout=widgets.Layout(width="420px")),
        }
        for name, value in tiles.as_dict().items():
            controls[name] = make_tile_slider(name, value, name.replace("_", " "))
        return controls

    def _layout(self) -> widgets.VBox:
        config_row = widgets.HBox([self.controls[n] for n in ("model", "threads", "batch", "fuse_blocks", "level")])
        step_row = widgets.HBox([self.controls["step"], self.step_note, self.controls["bytes"]])
        tile_rows = [widgets.HBox([item for n in TILE_FIELDS[i:i + 2] for item in (self.controls[n], self.typed[n])])
                     for i in range(0, len(TILE_FIELDS), 2)]
        action_row = widgets.HBox([self.run_button, self.progress, self.status])
        tune_row = widgets.HBox([self.tune_button, self.tune_budget, self.tune_progress])
        detail_box = widgets.VBox([widgets.HTML("<b>Selected step</b> (click a point or a row)"), self.detail],
                                  layout=widgets.Layout(width="38%", padding="0 0 0 12px"))
        # the figure straight in the panel, as wide as the output area (its width follows the
        # container: autosize); the table and the detail panel share the row under it
        return widgets.VBox([config_row, step_row, *tile_rows, action_row, tune_row, self.message, self.width_probe,
                             self.figure,
                             self.summary, widgets.HBox([self.layers.box, detail_box])],
                            layout=widgets.Layout(width="100%"))

    # ------------------------------------------------------------------ the configuration

    def config(self) -> dict:
        """The controls' current values as workbench.profile arguments: batch, threads,
        tiles, fuse_blocks (False, "auto" or True). tiles: `schedule` with the tile sliders'
        values set for the selected step (or as the default tiles, on "every step"); an
        engine.Tiles while every step runs the same tiles and no block has a fusion of its
        own, else the engine.TileSchedule (a tuned one keeps its mark only at the batch and
        threads it was tuned for). ValueError if the tile sliders hold a value Tiles rejects."""
        tiles = engine.Tiles(**{name: int(self.controls[name].value) for name in TILE_FIELDS})
        batch, threads = int(self.controls["batch"].value), int(self.controls["threads"].value)
        schedule = self._schedule_with(tiles)
        key = schedule.tuned_for
        if key is not None and (key.batch, key.threads) != (batch, threads):
            schedule = schedule.untuned()
        plain = not schedule.overrides and not schedule.fused and schedule.tuned_for is None
        return {"batch": batch, "threads": threads, "tiles": schedule.default if plain else schedule,
                "fuse_blocks": checks.check_fuse_blocks(self.controls["fuse_blocks"].value)}

    def _schedule_with(self, tiles: engine.Tiles) -> engine.TileSchedule:
        """`schedule` with `tiles` for the selected step (the default tiles on every step);
        the same object when nothing changes."""
        schedule, step = self.schedule, self._target
        if tiles == (schedule.default if step is None else schedule.tiles_for(step)):
            return schedule
        if step is None:
            return engine.TileSchedule(tiles, dict(schedule.overrides), dict(schedule.fused))
        return schedule.with_step(step, tiles)

    @property
    def level(self) -> str:
        return self.controls["level"].value

    @property
    def bytes(self) -> str:
        """What places the points across: "model" or "simulated" (the bytes toggle)."""
        return self.controls["bytes"].value

    @property
    def selected_step(self) -> str | None:
        """The step the tile sliders set, or None on "every step"."""
        return self._target

    def set(self, **values):
        """Set several controls at once (names as in `controls`) and measure once, not once
        per control; if only `level`, `bytes` and `step` change, just redraw (bytes="simulated"
        simulates the configuration shown first, unless it was simulated before). `step` is set first,
        so `set(step=name, pointwise_pixels=32)` sets that step's tiles. Returns what `run()`
        returns (or the current profile after a redraw); None when a measurement is in
        progress, which then measures these values when it ends.

        Every value is checked before any control changes: ValueError for an unknown
        control, and for a value the control or the engine would refuse or silently clamp
        (threads outside 1..cores, a tile outside its range or step, batch < 1, a
        fuse_blocks other than False, True or "auto", a level without a roof, bytes other
        than "model" or "simulated", a step that
        is not one of the last profile's (None: every step)). A batch not in the dropdown
        is added."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown controls {unknown}; the controls are {list(self.controls)}")
        values = {name: self._check_value(name, value) for name, value in values.items()}
        if "step" in values:
            self._select(values.pop("step"), draw=False)      # drawn below, with the rest
        with self.hold():
            for name, value in values.items():
                control = self.controls[name]
                if name == "batch" and value not in control.options:
                    control.options = sorted(set(control.options) | {value})
                if name in TILE_FIELDS:
                    ensure_choice(control, name, value)
                control.value = value
        if "fuse_blocks" in values:
            self._fusion_selector_used()
        if set(values) <= {"level", "bytes"}:
            self._serve(measure=False, queue=True)
            return self.profile
        return self._serve(measure=True, queue=True)

    def set_schedule(self, tiles: engine.Tiles | engine.TileSchedule):
        """Hold `tiles` (an engine.Tiles for every step, or a TileSchedule, say a
        TuningResult's) and measure with it once; the sliders show it. Returns what `run()`
        returns. ValueError for anything else (checked before anything changes)."""
        schedule = as_schedule(checks.check_tiles(tiles))
        config = {**self.config(), "tiles": schedule}
        key = schedule.tuned_for
        if key is not None:          # tuned elsewhere: refused; here but at another batch: kept as hand-made
            schedules.check_key(schedule, self.model.schedule_key(key.batch, key.threads, run_machine(self.ceilings)))
            if (key.batch, key.threads) != (config["batch"], config["threads"]):
                config["tiles"] = schedule.untuned()
        # names the model does not have are refused here, as the engine would at every measurement
        self.model.plan(config["batch"], config["threads"], config["tiles"], config["fuse_blocks"],
                        run_machine(self.ceilings))
        with self.hold():
            self.schedule = schedule
            self._show_target_tiles()
        return self._serve(measure=True, queue=True)

    def _check_value(self, name: str, value):
        """`value` for control `name`, or ValueError naming the control, expected and got."""
        if name == "level":
            return check_level(self.ceilings, value)
        if name == "model":
            names = [v for _, v in self.controls["model"].options]
            if not isinstance(value, str) or value not in names:
                raise ValueError(f"model must be one of the model dropdown's values {names}, got {value!r}")
            return value
        if name == "fuse_blocks":
            return checks.check_fuse_blocks(value)
        if name == "bytes":
            return _check_bytes(value)
        if name == "batch":
            return check_batch(value)
        if name == "threads":
            return checks.check_threads(value)
        if name == "step":
            names = [v for _, v in self.controls["step"].options]
            value = EVERY_STEP if value is None else value
            if not isinstance(value, str) or value not in names:
                raise ValueError(f"step must be None (every step) or the name of a step of the last profile, "
                                 f"got {value!r}; e.g. {names[1:4]}")
            return value
        low, high, _ = engine.Tiles.field_range(name)
        value = check_int(name, value, low, high)
        engine.Tiles(**{name: value})            # the step (a multiple of 16, say)
        return value

    @contextlib.contextmanager
    def hold(self):
        """Within this block, changing controls does not measure or redraw."""
        self._held += 1
        try:
            yield self
        finally:
            self._held -= 1

    # ------------------------------------------------------------------ the callback

    def _on_change(self, change) -> None:
        if self._held:
            return
        try:
            owner = change["owner"]
            if owner is self.controls["level"] or owner is self.controls["bytes"]:
                self._serve(measure=False, queue=True)
            elif owner is self.controls["step"]:
                self._select(change["new"])
            elif owner is self.run_button:
                self.run()
            else:
                if owner is self.controls["fuse_blocks"]:
                    self._fusion_selector_used()
                self._serve(measure=True, queue=True)
        except Exception as error:     # a callback must never raise into the widget machinery
            logger.debug("explorer callback failed", exc_info=True)
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error")

    def _on_click(self, _button) -> None:
        self._on_change({"owner": self.run_button})

    def _on_tune_click(self, _button) -> None:
        try:
            self.tune()
        except Exception as error:     # a callback must never raise into the widget machinery
            logger.debug("explorer tune failed", exc_info=True)
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error")

    def _on_point_click(self, trace, points, _state) -> None:
        """A click on the roofline (plotly calls this for every trace with the points of the
        click on it, usually none): select the clicked step in the picker."""
        try:
            if not points.point_inds or not trace.customdata:
                return
            name = trace.customdata[points.point_inds[0]]
            if name in [v for _, v in self.controls["step"].options]:
                self.controls["step"].value = name      # the observer selects it
        except Exception as error:     # a callback must never raise into the widget machinery
            logger.debug("explorer click failed", exc_info=True)
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error")

    # ------------------------------------------------------------------ selecting a step

    def _select(self, name: str, draw: bool = True) -> None:
        """Make `name` (EVERY_STEP: none) the step the tile sliders set: the sliders' values
        for the step selected until now are kept in `schedule` (when Tiles accepts them),
        then the sliders show the new step's tiles. Measures nothing; with `draw`, redraws
        (the ring moves), or queues the redraw while a measurement runs."""
        step = None if name in (EVERY_STEP, None) else name
        try:
            self.schedule = self._schedule_with(
                engine.Tiles(**{field: int(self.controls[field].value) for field in TILE_FIELDS}))
        except ValueError:             # a slider holds a value Tiles refuses: it is dropped
            pass
        self._target = step
        with self.hold():
            if self.controls["step"].value != (name or EVERY_STEP):
                self.controls["step"].value = name or EVERY_STEP
            self._show_target_tiles()
        if draw:
            self._serve(measure=False, queue=True)

    def _show_target_tiles(self) -> None:
        """Set the tile sliders to the selected step's tiles (the default tiles on every
        step), enable those its kernel reads, and say what they set (the caller holds)."""
        step = self._target
        tiles = self.schedule.default if step is None else self.schedule.tiles_for(step)
        for field, value in tiles.as_dict().items():
            ensure_choice(self.controls[field], field, value)
            self.controls[field].value = value
        own = len(self.schedule.overrides)
        if step is None:
            read = TILE_FIELDS
            note = ("the sliders set every step's tiles" if not own else
                    f"the sliders set the default tiles; {own} step{'s have' if own != 1 else ' has'} tiles of "
                    f"{'their' if own != 1 else 'its'} own")
        else:
            op, read = self._op_of(step), self._fields_of(step)
            note = (f"the sliders set the tiles of <b>{html.escape(short_name(step))}</b> ({html.escape(op)}) only"
                    if read else f"{html.escape(short_name(step))} ({html.escape(op)}): its kernel takes no tiles")
        for field in TILE_FIELDS:
            self.controls[field].disabled = self.typed[field].disabled = field not in read
        self.step_note.value = f'<span style="font-size:12px">{note}</span>'

    def _op_of(self, step: str) -> str:
        rows = self.profile[self.profile["layer"] == step] if self.profile is not None else ()
        return str(rows["op"].iloc[0]) if len(rows) else "?"

    def _fields_of(self, step: str) -> tuple:
        """The tile fields `step`'s kernel reads (the profile's tile_fields)."""
        rows = self.profile[self.profile["layer"] == step] if self.profile is not None else ()
        return tuple(rows["tile_fields"].iloc[0]) if len(rows) else ()

    def _fusion_selector_used(self) -> None:
        """The fusion selector speaks for every block: forget the blocks' own choices (a
        tuned schedule's)."""
        if self.schedule.fused:
            self.schedule = engine.TileSchedule(self.schedule.default, dict(self.schedule.overrides), {})

    def _update_step_picker(self) -> None:
        """The picker lists the steps of the profile (those with FLOPs). A selected step the
        new profile no longer has stays selected as the step that computes it (a fused
        block), else the picker falls back to every step."""
        rows = plotted_steps(self.profile)
        options = [("every step", EVERY_STEP)] + [(f"{short_name(layer)} · {op}", layer)
                                                  for layer, op in zip(rows["layer"], rows["op"])]
        picker = self.controls["step"]
        if [tuple(o) for o in picker.options] == options:
            if self._target is not None:
                with self.hold():
                    self._show_target_tiles()       # its op may have changed
            return
        target = self._target
        if target is not None and target not in set(rows["layer"]):
            holders = [r["layer"] for r in rows.to_dict("records") if target in step_members(r)]
            target = holders[0] if holders else None
        with self.hold():
            picker.options = options
            picker.value = EVERY_STEP if target is None else target
            self._target = target
            self._show_target_tiles()

    # ------------------------------------------------------------------ measuring and drawing

    def _measure(self, config: dict, model: engine.Model | None = None) -> pd.DataFrame:
        return profile(self.model if model is None else model, repeats=self.repeats, ceilings=self.ceilings, **config)

    def _load_choice(self, choice: str) -> engine.Model:
        """The model of a dropdown value: the given one, or a zoo model loaded (written first
        when its file is missing). engine.ModelError when the engine cannot load it."""
        if choice == GIVEN_MODEL:
            return self._given[1]
        self.status.value = f"loading {choice}…"
        return as_model(choice)

    def run(self) -> pd.DataFrame | None:
        """Measure with the controls' current values and redraw the figure in place.

        Synchronous. Returns the new profile (also `self.profile`), or None when nothing was
        measured: the values are invalid, the engine raised ValueError/ModelError, or
        another measurement is in progress (refused, not queued); the message area says
        which, and the previous figure, table and profile stay. Control changes queued
        during this measurement are measured before it returns (the last profile is
        returned)."""
        return self._serve(measure=True, queue=False)

    def tune(self, budget_s: float | None = None, repeats: int = 5, save: bool = True):
        """Run the tuner (workbench.tune) for the controls' batch, threads and fusion, from
        the default tiles, within `budget_s` seconds (default: the budget box's), with
        `repeats` runs per candidate; save: cache the schedule (engine.tune's save). The
        tune progress bar follows each phase (blocks, then steps) and the status line names
        the step being tuned; the kernel is busy meanwhile, and says so. Then the Explorer
        holds the tuned schedule and draws its profile with the default points and arrows.

        Synchronous. Returns the workbench.tuning.TuningResult (also `self.tuning`), or
        None when it did not run (a slider value Tiles refuses, a bad argument, the engine
        refused, another measurement in progress): the message area says which."""
        budget_s = float(self.tune_budget.value) if budget_s is None else budget_s
        self._tuned_now = None
        self._serve(measure=False, queue=False, tune=dict(budget_s=budget_s, repeats=repeats, save=save))
        return self._tuned_now

    def redraw(self) -> None:
        """Redraw the last profile at the level control's level (no measurement). While a
        measurement is in progress it is queued: that measurement redraws when it ends."""
        self._serve(measure=False, queue=True)

    def _serve(self, measure: bool, queue: bool, tune: dict | None = None) -> pd.DataFrame | None:
        """Measure (or only redraw, or tune first), then whatever was queued meanwhile,
        holding `_busy`.

        Busy: with queue, leave a pending flag that the running measurement reads when it
        ends (and say so); without, refuse with a message. Never waits for `_busy`."""
        if not self._busy.acquire(blocking=False):
            if not queue:
                what = "tuning" if tune is not None else "this one"
                self._say(f"busy: a measurement is already running; {what} was not started "
                          "(the engine runs one model at a time). Try again when it has finished.", "warning")
                return None
            if measure:   # the message before the flag: whichever measurement serves the flag clears it
                self._say("busy: a measurement is running; the new values will be measured when it ends.",
                          "warning")
            self._queue(measure)
            # the holder looks at the flags again after releasing, so a flag left here is
            # never lost; if it has released meanwhile, serve the flags here
            if not self._busy.acquire(blocking=False):
                return None
            measure, draw = self._take_pending()
        else:
            draw = not measure and tune is None
        result = None
        while True:
            try:
                if tune is not None:
                    self._tune_and_draw(**tune)
                    tune = None
                    measure, draw = self._take_pending()
                while measure or draw:
                    if measure:
                        result = self._measure_and_draw()      # draws at the current level
                    else:
                        self._draw()
                    measure, draw = self._take_pending()
            finally:
                self._busy.release()
            # a flag left between the last look and the release: serve it, unless someone else does
            if not (self._pending_measure or self._pending_draw) or not self._busy.acquire(blocking=False):
                return result
            measure, draw = self._take_pending()

    def _queue(self, measure: bool) -> None:
        with self._pending_lock:
            if measure:
                self._pending_measure = True
            else:
                self._pending_draw = True

    def _take_pending(self) -> tuple[bool, bool]:
        """(measure, draw) queued since the last look, and clear them (one atomic step)."""
        with self._pending_lock:
            pending = self._pending_measure, self._pending_draw
            self._pending_measure = self._pending_draw = False
        return pending

    def _measure_and_draw(self) -> pd.DataFrame | None:
        """One measurement with the controls' values and its redraw (the caller holds _busy)."""
        basis = self.schedule
        try:
            config = self.config()
        except ValueError as error:
            self._snap_back()
            self._say(f"invalid value: {error}; the controls are back at what the figure shows", "error")
            return None
        choice = self.controls["model"].value
        model = None
        if choice != self._model_choice:          # another model: its steps have no tiles of their own yet
            try:
                model = self._load_choice(choice)
            except CONFIG_ERRORS as error:
                self._snap_back()
                self._say(f"could not load {choice}: {error}; the model dropdown is back at the model shown", "error")
                self._finish(False, "refused; the figure and the controls show the previous result")
                return None
            tiles = config["tiles"]
            config = {**config, "tiles": tiles.default if isinstance(tiles, engine.TileSchedule) else tiles}
        self._say("")
        self._start(config)
        started = time.perf_counter()
        try:
            frame = self._measure(config, model)
        except CONFIG_ERRORS as error:
            self._snap_back()
            self._say(f"could not measure batch {config['batch']}, {config['threads']} thread(s), "
                      f"{_describe_tiles(config['tiles'])}: {error}; refused: the controls are back at "
                      f"what the figure shows", "error")
            self._finish(False, "refused; the figure and the controls show the previous result")
            return None
        except BaseException:
            self._finish(False, "failed")
            raise
        measured = time.perf_counter() - started
        started = time.perf_counter()
        if model is not None:                     # the new model is the one shown from now on
            self.model, self._model_choice = model, choice
            self.tuning, self._target = None, None
            self._simulated.clear()               # keyed by configuration: they were the old model's
            basis = self.schedule
        # the measured tiles become the schedule, unless a step was selected meanwhile (from
        # another thread): that kept the sliders' values in the schedule already
        self._accept(frame, config["tiles"] if self.schedule is basis else self.schedule)
        self._draw()
        drawn = time.perf_counter() - started
        self.last_seconds = {"measure": measured, "draw": drawn}
        self._finish(True, f"measured in {measured:.2f} s ({self.repeats} timed runs + 1 warm-up), "
                           f"drawn in {drawn:.2f} s{self._simulation_note}")
        return frame

    def _tune_and_draw(self, budget_s: float, repeats: int, save: bool) -> None:
        """Run workbench.tune with the controls' values, then hold and draw its result (the
        caller holds _busy). Errors go to the message area."""
        try:
            config = self.config()
        except ValueError as error:
            self._say(f"invalid value: {error}", "error")
            return
        self._say("")
        self.run_button.disabled = self.tune_button.disabled = True
        self.tune_button.description = "Tuning…"
        self.tune_progress.value, self.tune_progress.max, self.tune_progress.bar_style = 0, 1, "info"
        self.tune_progress.description = ""
        self.status.value = (f"tuning batch {config['batch']}, {config['threads']} thread(s) for up to "
                             f"{budget_s:g} s; the kernel is busy until it ends")
        try:
            result = tuning.tune(self.model, batch=config["batch"], threads=config["threads"], budget_s=budget_s,
                                 ceilings=self.ceilings, progress=self._tune_progress, repeats=repeats,
                                 fuse_blocks=config["fuse_blocks"], profile_repeats=self.repeats, save=save)
        except CONFIG_ERRORS as error:
            self._say(f"could not tune: {error}", "error")
            self.tune_progress.bar_style = "danger"
            self.status.value = "tuning failed; the figure shows the previous result"
            return
        finally:
            self.run_button.disabled = self.tune_button.disabled = False
            self.tune_button.description = "Tune"
        self.tuning = self._tuned_now = result
        self.schedule = result.schedule
        self._accept(result.after, result.schedule)
        with self.hold():
            self._show_target_tiles()
        self._draw()
        self.tune_progress.value = self.tune_progress.max
        self.tune_progress.bar_style = "success"
        tuned = result.result
        changed = len(result.changed_steps())
        self.status.value = (f"tuned in {tuned.seconds:.1f} s ({tuned.stopped or 'search complete'}): "
                             f"{tuned.default_seconds * 1e3:.2f} → {tuned.tuned_seconds * 1e3:.2f} ms "
                             f"per run (median, side by side); {changed} step{'s' if changed != 1 else ''} changed")

    def _tune_progress(self, done: int, total: int, label: str) -> None:
        """engine.tune's progress: the bar follows the phase, the status names the step."""
        phase, _, step = label.partition(": ")
        bar = self.tune_progress
        if bar.description != phase:          # a new phase starts from an empty bar
            bar.description, bar.value = phase, 0
        bar.max = max(total, 1)
        bar.value = min(done, bar.max)
        if step:
            self.status.value = f"tuning {phase}: {short_name(step)} ({done + 1} of {total}); the kernel is busy"

    def _accept(self, frame: pd.DataFrame, tiles) -> None:
        """`frame`, measured with `tiles`, is now the profile (and `tiles` the schedule)."""
        self.profile = frame
        self.schedule = as_schedule(tiles)
        self._profiled = (int(frame["batch"].iloc[0]), int(frame["threads"].iloc[0]), tiles,
                          parse_fuse_blocks(frame["fuse_blocks"].iloc[0]))
        self.measurements += 1
        self._update_step_picker()

    def _draw(self) -> None:
        self._place_points()
        with self.figure.batch_update():
            update_roofline(self.figure, self._shown_profile(), self.ceilings, level=self.level,
                            title=self.title(), fit_also=self._baseline_shown())
            if self.bytes == "simulated":
                self.figure.layout.xaxis.title.text = \
                    self.figure.layout.xaxis.title.text.replace("modelled bytes", "simulated bytes")
            self._draw_overlays()
        self._show_table()
        self.layers.refresh(self.drawn, self.ceilings, self.level)
        self.layers.show(self._target)
        self._show_detail()

    def _place_points(self) -> None:
        """`drawn`: the profile placed by the toggle's bytes. With "simulated", the profile's
        configuration is simulated first unless it was before (a cache per configuration);
        a simulation that fails puts the toggle back at "model" and says why."""
        self._simulation_note = ""
        if self.bytes == "simulated":
            try:
                simulated = self._simulation_of_profile()
                self.profile = with_simulated_columns(self.profile, simulated)
                self.drawn = placed_by_simulated_bytes(self.profile, self.ceilings)
                return
            except SIMULATION_ERRORS as error:
                with self.hold():
                    self.controls["bytes"].value = "model"
                self._say(f"could not simulate the caches for this configuration: {error}; the points stay "
                          "placed by the modelled bytes", "error")
        self.drawn = self.profile

    def _simulation_of_profile(self) -> pd.DataFrame:
        """The simulated_frame of the profile's configuration: from the cache, or simulated
        now with the progress bar and status line following it (the caller holds _busy)."""
        key = self._profiled
        try:
            hash(key)
        except TypeError:                  # a tiles object that cannot be a key: its text is
            key = repr(key)
        if key in self._simulated:
            return self._simulated[key]
        batch, threads, tiles, fuse_blocks = self._profiled
        bar, started = self.progress, time.perf_counter()
        kept = bar.max, self.status.value

        def advance(done: int, total: int, step: str) -> None:
            bar.max, bar.value = max(total, 1), min(done, max(total, 1))
            self.status.value = (f"simulating the caches: step {done} of {total} ({short_name(step)}; "
                                 "a warm run, then the recorded one); the kernel is busy")
        bar.value, bar.bar_style = 0, "info"
        try:
            simulated = simulated_frame(self.model, batch, threads, tiles, fuse_blocks, run_machine(self.ceilings),
                                        progress=advance)
        except BaseException:
            bar.max, bar.value, bar.bar_style = kept[0], 0, "danger"
            self.status.value = "cache simulation failed"
            raise
        bar.max, bar.value, bar.bar_style = kept[0], kept[0], "success"
        seconds = time.perf_counter() - started
        self.simulations += 1
        self._simulated[key] = simulated
        self._simulation_note = f", caches simulated in {seconds:.1f} s"
        self.status.value = (f"caches simulated in {seconds:.1f} s ({len(simulated)} steps, batch {batch}, "
                             f"{threads} thread(s)); kept for this configuration")
        return simulated

    def _bytes_note(self) -> str:
        """The summary's word on the bytes: what places the points, steps not traced."""
        if self.bytes != "simulated" or "bytes_sim_L1" not in self.drawn.columns:
            return ""
        untraced = int(self.drawn["bytes_sim_L1"].isna().sum())
        return (" Points placed by <b>simulated bytes</b> (a cache simulation of each step's access trace)"
                + (f"; {untraced} step{'s' if untraced != 1 else ''} without a trace by the model's." if untraced
                   else ".") + (" The tuning's default-tile points are drawn with the modelled bytes only."
                                if self.tuning is not None and self.tuning.before is not None else ""))

    def title(self) -> str:
        """The figure's title: what the last profile ran with (batch, threads, fusion, the
        level) and the tiles it ran with, as the controls name them."""
        schedule = self.schedule
        tiles = ", ".join(f"{field.replace('_', ' ')} {choice_label(field, value)}"
                          for field, value in schedule.default.as_dict().items())
        own = len(schedule.overrides)
        extra = (f"; {own} step{'s' if own != 1 else ''} with tiles of {'their' if own != 1 else 'its'} own"
                 if own else "")
        heading, _, warning = default_title(self.drawn, self.level).partition("<br>")
        shown = " (memory bound only)" if self._memory_only else ""
        shown += ", points by simulated bytes" if self.bytes == "simulated" else ""
        return f"{heading}{shown}<br><span style='font-size:12px'>tiles: {tiles}{extra}</span>" + \
            (f"<br>{warning}" if warning else "")

    def _baseline_shown(self) -> list[pd.DataFrame]:
        """[the last tuning's default-tiles profile] while its points and arrows are drawn
        (the profile has the tuning's batch and threads), else []."""
        baseline = self._baseline()
        return [baseline] if baseline is not None else []

    def _baseline(self) -> pd.DataFrame | None:
        """The last tuning's default-tiles profile while its points and arrows are drawn: the
        profile has the tuning's batch and threads, and the points are placed by the modelled
        bytes (the default tiles' plan is not simulated)."""
        baseline = self.tuning.before if self.tuning is not None else None
        if baseline is None or self.bytes == "simulated" or not _same_run_shape(baseline, self.profile):
            return None
        return baseline

    def _shown_profile(self) -> pd.DataFrame:
        """The profile as drawn: with "memory bound only", its steps memory bound at the
        level (all of them when none is)."""
        if not self._memory_only:
            return self.drawn
        memory = self.drawn[bound_at(self.drawn, self.ceilings, self.level) == "memory"]
        return memory if len(memory) else self.drawn

    def _show_detail(self) -> None:
        """The detail panel: the selected step's facts (a hint when none is selected)."""
        if self._target is None:
            self.detail.value = DETAIL_HINT
            return
        fields = self._fields_of(self._target)
        self.detail.value = step_detail_html(self.drawn, self._target, self.ceilings, self.level, fields) \
            or DETAIL_HINT

    def _snap_back(self) -> None:
        """Put the controls back at what the last profile ran with (threads, batch, fusion,
        tiles of the held schedule): a refused value never stays on a control."""
        frame = self.profile
        with self.hold():
            self.controls["model"].value = self._model_choice
            self.controls["threads"].value = int(frame["threads"].iloc[0])
            self.controls["batch"].value = int(frame["batch"].iloc[0])
            self.controls["fuse_blocks"].value = parse_fuse_blocks(frame["fuse_blocks"].iloc[0])
            self._show_target_tiles()

    def _refused(self, field: str, value, kept, reason: str) -> None:
        """A typed tile value Tiles refuses: the box snapped back; say why."""
        self._say(f"{field.replace('_', ' ')} {value} refused: {reason}. It stays at {choice_label(field, kept)}.",
                  "error")

    def _on_table_pick(self, name: str) -> None:
        """A row of the layer table picked: select its step (the ring and the detail panel)."""
        try:
            if name in [v for _, v in self.controls["step"].options]:
                self.controls["step"].value = name      # the observer selects it
            else:                                        # a step without FLOPs: details only
                self._target_detail(name)
        except Exception as error:     # a callback must never raise into the widget machinery
            logger.debug("explorer table pick failed", exc_info=True)
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error")

    def _target_detail(self, name: str) -> None:
        self.detail.value = step_detail_html(self.drawn, name, self.ceilings, self.level) or DETAIL_HINT

    def _fit_width(self, change) -> None:
        """The panel's width changed (WidthProbe, CSS px): the figure takes all of it."""
        width = int(change["new"])
        if width >= MIN_FIGURE_WIDTH and width != self.figure.layout.width:
            self.figure.layout.width = width

    def _on_memory_only(self, value: bool) -> None:
        self._memory_only = bool(value)
        self.redraw()

    def _draw_overlays(self) -> None:
        """The Explorer's own traces and arrows, at the current level: the selected step's
        ring, and, while the profile has the last tuning's batch and threads, each step's
        default point and an arrow from it to the step's point now."""
        level, frame = self.level, self.drawn
        with self.figure.batch_update():
            before = _overlay_spec(BEFORE_TRACE)
            arrows = []
            baseline = self._baseline()
            if baseline is not None:
                matched, _, _ = match_steps(baseline, frame, level)
                now = set(frame["layer"])
                units = [(name if name in now else new.layers[-1], old) for name, old, new in matched]
                colors = [OP_COLORS[op_kind(old.op)] for _, old in units]
                before.update(x=or_none([old.ai for _, old in units]), y=or_none([old.gflops for _, old in units]),
                              customdata=[name for name, _ in units], showlegend=True,
                              hovertext=[f"<b>{html.escape(name)}</b>, default tiles<br>"
                                         f"time {format_ms(old.seconds)}<br>{old.gflops:.3g} GFLOP/s"
                                         for name, old in units],
                              marker=dict(color="white", size=marker_sizes([old.share for _, old in units]),
                                          line=dict(color=colors, width=2.0), opacity=0.9))
                arrows = [arrow for arrow in (step_arrow(name, old, new) for name, old, new in matched)
                          if arrow is not None]
            self._trace(BEFORE_TRACE).update(before)
            self.figure.layout.annotations = arrows
            self._trace(SELECTION_TRACE).update(self._selection_spec(level))

    def _selection_spec(self, level: str) -> dict:
        spec = _overlay_spec(SELECTION_TRACE)
        if self._target is None:
            return spec
        rows = self.drawn[self.drawn["layer"] == self._target]
        if not len(rows):
            return spec
        row = rows.iloc[0]
        size = marker_sizes([row["share_of_time"]])[0] + 12
        spec.update(x=or_none([row[f"ai_{level}"]]), y=or_none([row["gflops"]]),
                    text=[short_name(self._target)], customdata=[self._target],
                    marker=dict(symbol="circle-open", size=[size], color="#111111", line=dict(width=3.0),
                                opacity=1.0))
        return spec

    def _trace(self, key: str):
        return next(trace for trace in self.figure.data if trace.meta == key)

    def _show_table(self) -> None:
        """The summary line over the layer table: time, GFLOP/s, steps memory bound at the level."""
        frame, level = self.drawn, self.level
        threads = int(frame["threads"].iloc[0])
        total = float(frame["seconds"].sum())
        flops = float(frame["flops"].sum())
        with_flops = frame[frame["flops"] > 0]
        ridge = self.ceilings.ridge_point(level, threads)
        memory = frame[bound_at(frame, self.ceilings, level) == "memory"]
        own = len(self.schedule.overrides)
        tiles_note = ""
        if self.schedule.tuned_for is not None:
            tiles_note = " Tiles and fusion: the tuned schedule."
        elif own or self.schedule.fused:
            tiles_note = (f" {own} step{'s have' if own != 1 else ' has'} tiles of "
                          f"{'their' if own != 1 else 'its'} own" + (", blocks their own fusion" if self.schedule.fused
                                                                       else "") + ".")
        shown = self._model_choice if self._model_choice != GIVEN_MODEL else self._given[0]
        self.summary.value = (
            f"{html.escape(shown)}: <b>{total * 1e3:.3g} ms</b> per run (sum of the steps' medians), {flops / total / 1e9:.3g} GFLOP/s "
            f"overall. At {html.escape(level)} (ridge point {ridge:.3g} FLOP/byte), {len(memory)} of "
            f"{len(with_flops)} steps with FLOPs are memory bound: "
            f"{float(memory['seconds'].sum()) / total:.0%} of the time.{tiles_note}{self._bytes_note()}")

    def _start(self, config: dict) -> None:
        self.run_button.disabled, self.run_button.description = True, "Measuring…"
        self.tune_button.disabled = True
        self.progress.value, self.progress.bar_style = 1, "info"
        self.status.value = (f"measuring… batch {config['batch']}, {config['threads']} thread(s), "
                             f"{fusion_label(config['fuse_blocks'])}")

    def _finish(self, ok: bool, note: str) -> None:
        self.run_button.disabled, self.run_button.description = False, "Run"
        self.tune_button.disabled = False
        self.progress.value = self.progress.max if ok else 0
        self.progress.bar_style = "success" if ok else "danger"
        self.status.value = note

    def _say(self, text: str, kind: str = "info") -> None:
        """Show `text` in the message area (empty text clears it)."""
        if not text:
            self.message.value = ""
            return
        color = MESSAGE_COLORS.get(kind, MESSAGE_COLORS["info"])
        self.message.value = f'<div style="color:{color}"><b>{html.escape(kind)}:</b> {html.escape(str(text))}</div>'

    # ------------------------------------------------------------------ display

    def show(self) -> None:
        """Display the panel (in a notebook)."""
        display(self.panel)

    def _ipython_display_(self) -> None:
        self.show()

    def _repr_mimebundle_(self, **kwargs):
        return self.panel._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        values = {name: control.value for name, control in self.controls.items()}
        return f"<workbench.Explorer of {self.model!r}: {values}>"


def _overlay_spec(key: str) -> dict:
    """An empty overlay trace of the Explorer: the default points of the last tuning
    (hollow, clickable) or the selected step's ring (not hoverable, so a click goes to the
    point under it)."""
    if key == BEFORE_TRACE:
        return dict(meta=key, name="default tiles (before tuning)", mode="markers", x=[], y=[], customdata=[],
                    hoverinfo="text", hovertext=[], showlegend=False,
                    marker=dict(color="white", symbol="circle", size=[], line=dict(color=[], width=2.0)))
    return dict(meta=key, name="selected step", mode="markers+text", x=[], y=[], text=[], customdata=[],
                textposition="bottom center", textfont=dict(size=11, color="#111111"), hoverinfo="skip",
                showlegend=False, marker=dict(symbol="circle-open", size=[], color="#111111", line=dict(width=3.0)))


def _check_bytes(value) -> str:
    """`value` if it is one of the bytes toggle's values, else ValueError naming them."""
    choices = [v for _, v in BYTES_OPTIONS]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"bytes must be one of {choices} (what places the points), got {value!r}")
    return value


def _same_run_shape(before: pd.DataFrame, after: pd.DataFrame) -> bool:
    """Both profiles ran the same batch and thread count."""
    return all(int(before[c].iloc[0]) == int(after[c].iloc[0]) for c in ("batch", "threads"))


def _describe_tiles(tiles) -> str:
    if isinstance(tiles, engine.TileSchedule):
        return f"a tile schedule ({len(tiles.overrides)} steps with tiles of their own, default {tiles.default})"
    return str(tiles)
