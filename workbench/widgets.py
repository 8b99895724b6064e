"""`Explorer`: an ipywidgets panel around a live roofline (a plotly FigureWidget) that
moves as you change core count, batch size, block fusion (off / auto / all blocks) and
tile sizes.

    import engine, workbench
    explorer = workbench.Explorer(engine.load("data/mobilenet_v2.onnx"))
    explorer                                        # last expression of a cell: the panel
    explorer.controls["threads"].value = 1          # re-measures, redraws in place
    explorer.set(batch=8, pointwise_pixels=32)      # several controls, one measurement
    explorer.set(fuse_blocks="auto")                # False, "auto" or True
    frame = explorer.run()                          # measure now (synchronous): a profile

Built like plotly's FigureWidget app (doc/python/figurewidget-app.md): widgets first; one
callback observing every control's "value"; the figure changed only in place
(`update_roofline` inside `figure.batch_update()`), never rebuilt; layout last.

- A measurement is `workbench.profile` with the controls' values: one warm-up run and
  `repeats` timed runs, synchronously, in the kernel's thread. While it runs the progress
  bar and status line say so and the Run button is disabled; the panel does not block the
  kernel silently.
- Changing only `level` redraws the last profile at the other level (no measurement).
- A value the engine rejects (pointwise_channels not a multiple of 16, say) or any error
  from a measurement is shown in the message area; the previous figure and table stay.
- One measurement at a time. While one is in progress (so only from another thread, or
  from code the measurement itself calls), a control change is queued: the message area
  says "busy", and when the running measurement ends it measures again, once, with the
  controls' values by then (a `level` change only redraws), so the figure always ends up
  showing what the controls say. An explicit `run()` or a Run click at that moment is
  refused with a "busy" message and returns None. Nothing waits on a lock, so a callback
  can never deadlock against a measurement.
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
from workbench.figure_parts import short_name
from workbench.profile import (as_model, bound_at, check_ceilings, check_level, default_ceilings, fusion_label,
                               profile)
from workbench.roofline import roofline_figure, update_roofline

logger = logging.getLogger(__name__)

BATCH_CHOICES = (1, 2, 4, 8, 16, 32, 64)   # images; the batch dropdown's options
# The fusion selector's options: (label, fuse_blocks value), and a tooltip for each.
FUSE_BLOCKS_OPTIONS = (("off", False), ("auto", "auto"), ("all blocks", True))
FUSE_BLOCKS_TOOLTIPS = ("every layer on its own",
                        "fuse only the blocks the engine expects to run faster fused at these threads and batch "
                        "(engine.plan.fusion_wins)",
                        "fuse every inverted-residual block: expand, depthwise and project band by band")
SLOWEST_SHOWN = 8                           # rows of the slowest-steps table
MESSAGE_COLORS = {"error": "#b00020", "warning": "#8a5a00", "info": "#333333"}
# What a measurement may raise because of a configuration (shown, not raised).
CONFIG_ERRORS = (ValueError, engine.ModelError)


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


def _table_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.3g}",
                         classes="roofline-slowest")


class Explorer:
    """An interactive roofline of `model` on this machine.

    model: engine.Model, a path to an ONNX file, bytes or an onnx.ModelProto.
    ceilings: workbench.Ceilings (default: measure_ceilings(quick=True), cached on disk).
    batch (images), threads (default: every core), tiles (engine.Tiles, default Tiles()),
    fuse_blocks (False, "auto" or True; default engine.DEFAULT_FUSE_BLOCKS), level (memory
    level of the x axis, one of ceilings.levels): the controls' initial values.
    repeats: timed runs per measurement (the median is plotted).

    The constructor measures once (so the panel opens on a real roofline); a bad initial
    argument raises ValueError there. Afterwards nothing the controls do raises: errors go
    to the message area.

    Attributes: controls (dict name -> widget: threads, batch, fuse_blocks (ToggleButtons
    "off" / "auto" / "all blocks", values False / "auto" / True), level and one IntSlider
    per engine.Tiles field, named as the field), run_button, progress, status,
    message, summary, table, figure (the plotly FigureWidget), panel (the top-level
    ipywidgets container), profile (the last measured DataFrame), measurements (how many
    measurements have completed), last_seconds ({"measure": s, "draw": s} of the last run).
    """

    def __init__(self, model, ceilings=None, batch: int = 1, threads: int | None = None,
                 tiles: engine.Tiles | None = None, fuse_blocks: bool | str = engine.DEFAULT_FUSE_BLOCKS,
                 level: str = "L2",
                 repeats: int = 3):
        self.repeats = check_repeats(repeats)
        batch = check_batch(batch)
        threads = engine.available_cores() if threads is None else checks.check_threads(threads)
        tiles = checks.check_tiles(tiles)
        fuse_blocks = checks.check_fuse_blocks(fuse_blocks)
        check_ceilings(ceilings, threads)
        self.model = as_model(model)
        self.ceilings = default_ceilings(threads) if ceilings is None else ceilings
        check_level(self.ceilings, level)

        self.profile: pd.DataFrame | None = None
        self.measurements = 0
        self.last_seconds: dict[str, float] = {}
        self._busy = threading.Lock()     # held for the whole of a measurement and its redraw
        self._pending_measure = False     # a control changed while busy: measure again after
        self._pending_draw = False        # the level changed while busy: redraw after
        self._pending_lock = threading.Lock()   # guards the two flags only (held for no call)
        self._held = 0                    # > 0: control changes do not trigger the callback

        # ---- widgets first
        self.controls = self._make_controls(batch, threads, tiles, fuse_blocks, level)
        self.run_button = widgets.Button(description="Run", icon="play", button_style="primary",
                                         tooltip="measure again with the current values",
                                         layout=widgets.Layout(width="110px"))
        self.progress = widgets.IntProgress(value=0, min=0, max=2, description="",
                                            layout=widgets.Layout(width="160px"))
        self.status = widgets.Label(value="")
        self.message = widgets.HTML(value="")
        self.summary = widgets.HTML(value="")
        self.table = widgets.HTML(value="")

        frame = self._measure(self.config())          # the initial config is valid: errors raise here
        self.figure = go.FigureWidget(roofline_figure(frame, self.ceilings, level=level, level_buttons=False))
        self._accept(frame)
        self._show_table()

        # ---- one callback
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.run_button.on_click(self._on_click)

        # ---- layout last
        self.panel = self._layout()

    # ------------------------------------------------------------------ building

    def _make_controls(self, batch, threads, tiles, fuse_blocks, level) -> dict[str, widgets.Widget]:
        wide = {"description_width": "initial"}
        batches = sorted(set(BATCH_CHOICES) | {batch})
        controls: dict[str, widgets.Widget] = {
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
        }
        for name, value in tiles.as_dict().items():
            low, high, step = engine.Tiles.field_range(name)
            label = name.replace("_", " ") + (" (0 = auto)" if name == "block_rows" else "")
            controls[name] = widgets.IntSlider(value=value, min=low, max=high, step=step, description=label,
                                               continuous_update=False, style=wide,
                                               layout=widgets.Layout(width="420px"))
        return controls

    def _layout(self) -> widgets.VBox:
        tile_names = list(engine.Tiles().as_dict())
        config_row = widgets.HBox([self.controls[n] for n in ("threads", "batch", "fuse_blocks", "level")])
        tile_rows = [widgets.HBox([self.controls[n] for n in tile_names[i:i + 2]])
                     for i in range(0, len(tile_names), 2)]
        action_row = widgets.HBox([self.run_button, self.progress, self.status])
        return widgets.VBox([config_row, *tile_rows, action_row, self.message, self.figure, self.summary,
                             self.table])

    # ------------------------------------------------------------------ the configuration

    def config(self) -> dict:
        """The controls' current values as workbench.profile arguments: batch, threads,
        tiles (an engine.Tiles: ValueError if the tile sliders hold a value it rejects),
        fuse_blocks (False, "auto" or True)."""
        values = {name: int(self.controls[name].value) for name in engine.Tiles().as_dict()}
        return {"batch": int(self.controls["batch"].value), "threads": int(self.controls["threads"].value),
                "tiles": engine.Tiles(**values),
                "fuse_blocks": checks.check_fuse_blocks(self.controls["fuse_blocks"].value)}

    @property
    def level(self) -> str:
        return self.controls["level"].value

    def set(self, **values):
        """Set several controls at once (names as in `controls`) and measure once, not once
        per control; if only `level` changes, just redraw. Returns what `run()` returns (or
        the current profile after a redraw); None when a measurement is in progress, which
        then measures these values when it ends.

        Every value is checked before any control changes: ValueError for an unknown
        control, and for a value the control or the engine would refuse or silently clamp
        (threads outside 1..cores, a tile outside its range or step, batch < 1, a
        fuse_blocks other than False, True or "auto", a level without a roof). A batch not in the dropdown is added."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown controls {unknown}; the controls are {list(self.controls)}")
        values = {name: self._check_value(name, value) for name, value in values.items()}
        with self.hold():
            for name, value in values.items():
                control = self.controls[name]
                if name == "batch" and value not in control.options:
                    control.options = sorted(set(control.options) | {value})
                control.value = value
        if set(values) <= {"level"}:
            self._serve(measure=False, queue=True)
            return self.profile
        return self._serve(measure=True, queue=True)

    def _check_value(self, name: str, value):
        """`value` for control `name`, or ValueError naming the control, expected and got."""
        if name == "level":
            return check_level(self.ceilings, value)
        if name == "fuse_blocks":
            return checks.check_fuse_blocks(value)
        if name == "batch":
            return check_batch(value)
        if name == "threads":
            return checks.check_threads(value)
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
            if change["owner"] is self.controls["level"]:
                self._serve(measure=False, queue=True)
            elif change["owner"] is self.run_button:
                self.run()
            else:
                self._serve(measure=True, queue=True)
        except Exception as error:     # a callback must never raise into the widget machinery
            logger.debug("explorer callback failed", exc_info=True)
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error")

    def _on_click(self, _button) -> None:
        self._on_change({"owner": self.run_button})

    # ------------------------------------------------------------------ measuring and drawing

    def _measure(self, config: dict) -> pd.DataFrame:
        return profile(self.model, repeats=self.repeats, ceilings=self.ceilings, **config)

    def run(self) -> pd.DataFrame | None:
        """Measure with the controls' current values and redraw the figure in place.

        Synchronous. Returns the new profile (also `self.profile`), or None when nothing was
        measured: the values are invalid, the engine raised ValueError/ModelError, or
        another measurement is in progress (refused, not queued); the message area says
        which, and the previous figure, table and profile stay. Control changes queued
        during this measurement are measured before it returns (the last profile is
        returned)."""
        return self._serve(measure=True, queue=False)

    def redraw(self) -> None:
        """Redraw the last profile at the level control's level (no measurement). While a
        measurement is in progress it is queued: that measurement redraws when it ends."""
        self._serve(measure=False, queue=True)

    def _serve(self, measure: bool, queue: bool) -> pd.DataFrame | None:
        """Measure (or only redraw), then whatever was queued meanwhile, holding `_busy`.

        Busy: with queue, leave a pending flag that the running measurement reads when it
        ends (and say so); without, refuse with a message. Never waits for `_busy`."""
        if not self._busy.acquire(blocking=False):
            if not queue:
                self._say("busy: a measurement is already running; this one was not started "
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
            draw = not measure
        result = None
        while True:
            try:
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
        try:
            config = self.config()
        except ValueError as error:
            self._say(f"invalid value: {error}", "error")
            return None
        self._say("")
        self._start(config)
        started = time.perf_counter()
        try:
            frame = self._measure(config)
        except CONFIG_ERRORS as error:
            self._say(f"could not measure batch {config['batch']}, {config['threads']} thread(s), "
                      f"{config['tiles']}: {error}", "error")
            self._finish(False, "failed; the figure shows the previous result")
            return None
        except BaseException:
            self._finish(False, "failed")
            raise
        measured = time.perf_counter() - started
        started = time.perf_counter()
        self._accept(frame)
        self._draw()
        drawn = time.perf_counter() - started
        self.last_seconds = {"measure": measured, "draw": drawn}
        self._finish(True, f"measured in {measured:.2f} s ({self.repeats} timed runs + 1 warm-up), "
                           f"drawn in {drawn:.2f} s")
        return frame

    def _accept(self, frame: pd.DataFrame) -> None:
        self.profile = frame
        self.measurements += 1

    def _draw(self) -> None:
        with self.figure.batch_update():
            update_roofline(self.figure, self.profile, self.ceilings, level=self.level)
        self._show_table()

    def _show_table(self) -> None:
        frame, level = self.profile, self.level
        threads = int(frame["threads"].iloc[0])
        total = float(frame["seconds"].sum())
        flops = float(frame["flops"].sum())
        with_flops = frame[frame["flops"] > 0]
        ridge = self.ceilings.ridge_point(level, threads)
        memory = frame[bound_at(frame, self.ceilings, level) == "memory"]
        self.summary.value = (
            f"<b>{total * 1e3:.2f} ms</b> per run (sum of the steps' medians), {flops / total / 1e9:.3g} GFLOP/s "
            f"overall. At {html.escape(level)} (ridge point {ridge:.3g} FLOP/byte), {len(memory)} of "
            f"{len(with_flops)} steps with FLOPs are memory bound: "
            f"{float(memory['seconds'].sum()) / total:.0%} of the time. Slowest steps:")
        self.table.value = _table_html(slowest_layers(frame, self.ceilings, level))

    def _start(self, config: dict) -> None:
        self.run_button.disabled, self.run_button.description = True, "Measuring…"
        self.progress.value, self.progress.bar_style = 1, "info"
        self.status.value = (f"measuring… batch {config['batch']}, {config['threads']} thread(s), "
                             f"{fusion_label(config['fuse_blocks'])}")

    def _finish(self, ok: bool, note: str) -> None:
        self.run_button.disabled, self.run_button.description = False, "Run"
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
