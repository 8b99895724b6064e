"""workbench.widgets.Explorer, tested without a browser: set control values as a user
would (the observe callback runs synchronously in Python), or call run(), and read the
FigureWidget's trace data to check the roofline moved the right way.

The model is a small MobileNetV2 (96x96 input) so each measurement takes milliseconds.
The ceilings are synthetic and fixed (peak and bandwidths proportional to the thread
count), so what the figure must show does not depend on how busy the machine is; the
profile's time is measured for real.
"""
from __future__ import annotations

import re
import threading
import time

import numpy as np
import pandas as pd
import pytest

import ipywidgets
from traitlets import TraitError

import engine
from conftest import blocks_auto_fuses, hand_made_machine_and_caches
from workbench import models as models_module
from workbench import widgets as widgets_module
from workbench.ceilings import Ceilings
from workbench.figure_parts import short_name
from workbench.models import model_names
from workbench.profile import bound_at, fusion_label, run_machine
from workbench.tables import significant
from workbench.tile_controls import choice_label, tile_choices
from workbench.widgets import TILE_FIELDS, Explorer

PEAK_PER_THREAD = 90.0                                                  # GFLOP/s
BANDWIDTH_PER_THREAD = {"L1": 180.0, "L2": 90.0, "L3": 60.0, "DRAM": 10.0}   # GB/s


def synthetic_ceilings() -> Ceilings:
    rows = []
    for threads in range(1, engine.available_cores() + 1):
        rows.append((threads, "fp32_fma", PEAK_PER_THREAD * threads, "GFLOP/s"))
        rows += [(threads, level, value * threads, "GB/s") for level, value in BANDWIDTH_PER_THREAD.items()]
    table = pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])
    machine, caches = hand_made_machine_and_caches()      # decisions as on every host
    return Ceilings(table, machine=machine, measured_at="synthetic", key={}, caches=caches)


@pytest.fixture(scope="module")
def ceilings():
    return synthetic_ceilings()


@pytest.fixture
def explorer(small_model, ceilings):
    return Explorer(small_model, ceilings=ceilings, threads=1, repeats=1)


@pytest.fixture
def count_measurements(monkeypatch):
    """Counts calls of workbench.profile made by the widget (the only way it measures)."""
    calls = []
    real = widgets_module.profile

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(widgets_module, "profile", counting)
    return calls


def trace(figure, key):
    (found,) = [t for t in figure.data if t.meta == key]
    return found


def points(figure, kind: str) -> dict[str, tuple[float, float]]:
    """{layer name: (x, y)} of the markers of op kind `kind`, names read from the hover."""
    marker_trace = trace(figure, f"ops:{kind}")
    names = [re.match(r"<b>(.*?)</b>", text).group(1) for text in marker_trace.hovertext or ()]
    return {name: (x, y) for name, x, y in zip(names, marker_trace.x or (), marker_trace.y or ())}


# ---------------------------------------------------------------------------- the controls

def test_controls_are_model_threads_batch_fusion_level_step_and_one_slider_per_tile_field(explorer, ceilings):
    tile_fields = list(engine.Tiles().as_dict())
    assert set(explorer.controls) == {"model", "threads", "batch", "fuse_blocks", "level", "bytes", "step",
                                      *tile_fields}
    threads = explorer.controls["threads"]
    assert (threads.min, threads.max) == (1, engine.available_cores())
    assert list(explorer.controls["level"].options) == list(ceilings.levels)
    for name in tile_fields:
        slider = explorer.controls[name]
        assert isinstance(slider, ipywidgets.SelectionSlider)
        values = [v for _, v in slider.options]
        assert values == tile_choices(name) and slider.value == getattr(engine.Tiles(), name)
        low, high, step = engine.Tiles.field_range(name)
        assert values[0] == low and values[-1] == high
        for value in values:                       # every notch is a value the engine takes
            engine.Tiles(**{name: value})
            assert value in (0, 3 * 16 * 2 ** 20) or value & (value - 1) == 0 or value % 16 == 0
        assert len(values) <= 25                   # a notch per allowed value, not 4096 of them
    for control in explorer.controls.values():
        if hasattr(control, "continuous_update"):
            assert control.continuous_update is False
    assert [v for _, v in explorer.controls["pointwise_channels"].options][:4] == [16, 32, 48, 64]
    assert explorer.controls["block_rows"].options[0] == ("auto", 0)


# ---------------------------------------------------------------------------- the model dropdown

@pytest.fixture
def zoo_folder(tmp_path, monkeypatch):
    """Zoo models are written to a temporary data/ folder, not the repository's."""
    monkeypatch.setattr(models_module, "DATA_FOLDER", tmp_path / "data")
    return tmp_path / "data"


def test_the_model_dropdown_lists_the_given_model_then_every_zoo_model(explorer):
    dropdown = explorer.controls["model"]
    assert [v for _, v in dropdown.options] == [widgets_module.GIVEN_MODEL, *model_names()]
    assert dropdown.value == widgets_module.GIVEN_MODEL and dropdown.options[0][0] == "given model (given)"


def test_choosing_a_zoo_model_loads_it_and_profiles_it_once_dropping_the_old_models_step_tiles(
        explorer, zoo_folder, count_measurements):
    step = next(v for _, v in explorer.controls["step"].options if "conv.2" in v)
    explorer.set(step=step, pointwise_pixels=32)            # a tile of the MobileNetV2's own
    assert explorer.schedule.overrides
    count_measurements.clear()
    explorer.controls["model"].value = "mobilenet_v1"       # as a user picks it
    assert len(count_measurements) == 1 and (zoo_folder / "mobilenet_v1.onnx").is_file()
    assert explorer.model.input_shape == (3, 224, 224)
    assert not explorer.schedule.overrides and explorer.selected_step is None
    assert explorer.controls["step"].value == widgets_module.EVERY_STEP
    assert not any("conv.2" in layer for layer in explorer.profile["layer"])   # MobileNetV1's layers now
    assert explorer.summary.value.startswith("mobilenet_v1:")
    explorer.set(model=widgets_module.GIVEN_MODEL)           # and back to the model it was made with
    assert explorer.model.input_shape == (3, 96, 96) and len(count_measurements) == 2


def test_a_model_the_engine_refuses_is_shown_and_the_dropdown_goes_back(explorer, monkeypatch, count_measurements):
    def refuse(model):
        raise engine.UnsupportedOperatorError("/maxpool/MaxPool", "MaxPool", ["Conv", "Relu"])
    monkeypatch.setattr(widgets_module, "as_model", refuse)
    before, model = explorer.profile, explorer.model
    explorer.controls["model"].value = "mobilenet_v1"
    assert explorer.controls["model"].value == widgets_module.GIVEN_MODEL
    assert "could not load mobilenet_v1" in explorer.message.value and "MaxPool" in explorer.message.value
    assert explorer.profile is before and explorer.model is model and not count_measurements


def test_set_refuses_a_model_not_in_the_dropdown(explorer, count_measurements):
    with pytest.raises(ValueError, match="model must be one of"):
        explorer.set(model="resnet9000")
    assert not count_measurements


def test_an_explorer_made_from_a_zoo_name_starts_on_it(ceilings, zoo_folder):
    explorer = Explorer("mobilenet_v1", ceilings=ceilings, threads=1, repeats=1)
    assert explorer.controls["model"].value == "mobilenet_v1"
    assert [v for _, v in explorer.controls["model"].options] == list(model_names())


def test_fusion_is_a_three_way_selector_off_auto_all_starting_at_the_engines_default(explorer, small_model, ceilings):
    control = explorer.controls["fuse_blocks"]
    assert isinstance(control, ipywidgets.ToggleButtons) and control.description == "fuse blocks"
    assert [tuple(option) for option in control.options] == [("off", False), ("auto", "auto"), ("all blocks", True)]
    assert control.value == engine.DEFAULT_FUSE_BLOCKS and explorer.config()["fuse_blocks"] == engine.DEFAULT_FUSE_BLOCKS
    started_auto = Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, fuse_blocks="auto")
    assert started_auto.controls["fuse_blocks"].value == "auto" and set(started_auto.profile["fuse_blocks"]) == {"auto"}


@pytest.mark.parametrize("threads", sorted({1, min(2, engine.available_cores())}))
def test_choosing_auto_measures_once_and_draws_exactly_the_blocks_fusion_wins_picks(small_model, ceilings, threads,
                                                                                   count_measurements):
    # batch 2: the 96x96 model's 112 -> 56-style block then has a depthwise input larger than
    # two L2 caches, what "auto" fuses while the intermediates stay in L3
    explorer = Explorer(small_model, ceilings=ceilings, batch=2, threads=threads, repeats=1, fuse_blocks=False)
    figure, traces = explorer.figure, list(explorer.figure.data)
    statuses = []
    real = widgets_module.profile
    count_measurements.clear()

    def watching(*args, **kwargs):
        statuses.append(explorer.status.value)
        return real(*args, **kwargs)
    widgets_module.profile, restore = watching, widgets_module.profile
    try:
        explorer.controls["fuse_blocks"].value = "auto"
    finally:
        widgets_module.profile = restore
    expected = blocks_auto_fuses(small_model, threads, 2, ceilings)
    assert 0 < len(expected) < 17
    assert len(count_measurements) == 1 and count_measurements[0]["fuse_blocks"] == "auto"
    assert "auto fusion" in statuses[0] and "measuring" in statuses[0]
    frame = explorer.profile
    assert set(frame["fuse_blocks"]) == {"auto"}
    assert {tuple(m) for m in frame.loc[frame["op"] == "block", "members"]} == expected
    assert set(points(explorer.figure, "block")) == set(frame.loc[frame["op"] == "block", "layer"])
    assert f"auto fusion ({len(expected)} block{'s' if len(expected) != 1 else ''} fused)" in \
        explorer.figure.layout.title.text
    assert explorer.figure is figure and all(a is b for a, b in zip(explorer.figure.data, traces))
    explorer.controls["fuse_blocks"].value = True
    assert len(points(explorer.figure, "block")) == 17 and "all blocks fused" in explorer.figure.layout.title.text
    explorer.set(fuse_blocks=False)
    assert points(explorer.figure, "block") == {} and "blocks unfused" in explorer.figure.layout.title.text
    assert [call["fuse_blocks"] for call in count_measurements] == ["auto", True, False]


def test_set_refuses_a_fuse_blocks_other_than_false_auto_or_true_and_changes_nothing(explorer, count_measurements):
    before = explorer.controls["fuse_blocks"].value
    for bad in ("Auto", "yes", 1, None):
        with pytest.raises(ValueError, match="fuse_blocks"):
            explorer.set(fuse_blocks=bad, batch=2)
    assert explorer.controls["fuse_blocks"].value == before and explorer.controls["batch"].value == 1
    assert count_measurements == []
    explorer.set(fuse_blocks=np.bool_(True))
    assert explorer.controls["fuse_blocks"].value is True and count_measurements[-1]["fuse_blocks"] is True


def test_run_measures_the_controls_values_and_returns_the_profile(explorer):
    with explorer.hold():
        explorer.controls["batch"].value = 2
        explorer.controls["pointwise_pixels"].value = 32
        explorer.controls["depthwise_rows"].value = 4
    frame = explorer.run()
    assert frame is explorer.profile
    assert set(frame["batch"]) == {2} and set(frame["threads"]) == {1}
    assert set(frame["pointwise_pixels"]) == {32} and set(frame["depthwise_rows"]) == {4}
    assert set(frame["fuse_blocks"]) == {engine.DEFAULT_FUSE_BLOCKS}
    assert np.isfinite(frame["seconds"]).all() and (frame["seconds"] > 0).all()


def test_changing_a_control_measures_once_and_redraws(explorer, count_measurements):
    title_before = explorer.figure.layout.title.text
    explorer.controls["batch"].value = 4
    assert len(count_measurements) == 1 and count_measurements[0]["batch"] == 4
    assert set(explorer.profile["batch"]) == {4}
    assert explorer.figure.layout.title.text != title_before and "batch 4" in explorer.figure.layout.title.text


def test_set_changes_several_controls_with_one_measurement(explorer, count_measurements):
    explorer.set(batch=2, pointwise_pixels=16, pointwise_channels=32)
    assert len(count_measurements) == 1
    assert count_measurements[0]["tiles"] == engine.Tiles(pointwise_pixels=16, pointwise_channels=32)
    with pytest.raises(ValueError, match="unknown controls"):
        explorer.set(cores=2)


# ---------------------------------------------------------------------------- the figure moves

@pytest.mark.skipif(engine.available_cores() < 2, reason="needs 2 cores to compare 1 and 2 threads")
def test_more_threads_raise_the_peak_roof(explorer, ceilings):
    peak = trace(explorer.figure, "roof:peak")
    one_thread = max(peak.y)
    assert one_thread == pytest.approx(ceilings.peak_gflops(1))
    explorer.controls["threads"].value = 2
    assert trace(explorer.figure, "roof:peak") is peak
    assert max(peak.y) == pytest.approx(ceilings.peak_gflops(2))
    assert max(peak.y) > one_thread
    assert set(explorer.profile["threads"]) == {2}


def _intermediates_outweigh_weights_and_scratch(model, step) -> bool:
    """Whether the tensors a fused block keeps inside (its expanded tensor and depthwise
    output, one image) have more elements than its three weight tensors and the scratch
    it brings in from L3 once per run (engine.kernels.fused_block.fused_block_bytes): then
    fusion saves more bytes than the weight re-reads and the scratch's round trip cost."""
    from engine.kernels import fused_block

    layers = {layer.name: layer for layer in model.layers}
    block = [layers[name] for name in step.members]
    (depthwise,) = [layer for layer in block if layer.conv_kind == "depthwise"]
    kept_inside = int(np.prod(depthwise.input_shape)) + int(np.prod(depthwise.output_shape))
    weights = sum(layer.weight.size for layer in block)
    hidden, _, width = depthwise.input_shape
    scratch = sum(fused_block.scratch_floats(hidden, width, depthwise.output_shape[2], step.block_rows, step.stride))
    return kept_inside > weights + scratch


def test_fusing_blocks_draws_block_markers_right_of_their_unfused_members_at_L3(small_model, ceilings):
    """Fused, a block's expanded intermediate never crosses into L3, so where the tensors
    fusion keeps inside outweigh the weights and the scratch that crosses L3 once per run
    (the early, wide-image blocks: 1-4 of this model; the cache simulation agrees) the block's marker
    sits right of the combined point of its members (their FLOPs over their bytes, the
    point before_after_figure draws its arrow from) and right of its depthwise member's marker.
    Deep blocks (3x3 to 6x6 images, large weights) are not asserted: a fused block
    re-reads its weights once per band, which can cost more than the intermediate saved.
    (Not at DRAM: at batch 1 the bytes model keeps this small model's activations and
    weights in L3 between steps, so nothing crosses DRAM and no marker has a finite x.)"""
    level = "L3"
    explorer = Explorer(small_model, ceilings=ceilings, threads=1, level=level, repeats=1, fuse_blocks=False)
    unfused_profile = explorer.profile.set_index("layer")
    unfused_depthwise = points(explorer.figure, "depthwise")
    assert points(explorer.figure, "block") == {}
    explorer.controls["fuse_blocks"].value = True
    blocks = points(explorer.figure, "block")
    fused_steps = explorer.profile[explorer.profile["op"] == "block"]
    assert len(blocks) == len(fused_steps) > 0
    plan = small_model.plan(1, threads=1, fuse_blocks=True, machine=run_machine(ceilings))
    plan_steps = {step.name: step for step in plan.steps}
    checked = 0
    for _, step in fused_steps.iterrows():
        block_x = blocks[step["layer"]][0]
        assert block_x == pytest.approx(step[f"ai_{level}"])
        members = unfused_profile.loc[list(step["members"])]
        assert len(members) in (2, 3) and members["flops"].sum() == step["flops"]
        if not _intermediates_outweigh_weights_and_scratch(small_model, plan_steps[step["layer"]]):
            continue
        combined_x = members["flops"].sum() / members[f"bytes_{level}"].sum()
        (depthwise_member,) = [m for m in step["members"] if m in unfused_depthwise]
        assert block_x > combined_x, (step["layer"], block_x, combined_x)
        assert block_x > unfused_depthwise[depthwise_member][0], (step["layer"], block_x)
        checked += 1
    assert checked >= 4


def test_changing_only_the_level_redraws_without_measuring(explorer, count_measurements):
    before = dict(points(explorer.figure, "project"))
    frame = explorer.profile
    explorer.controls["level"].value = "L3"
    assert count_measurements == [] and explorer.profile is frame
    after = points(explorer.figure, "project")
    expected = frame[frame["op"] == "project"].set_index("layer")["ai_L3"]
    assert {name: xy[0] for name, xy in after.items()} == pytest.approx(expected.to_dict())
    assert [xy[0] for xy in after.values()] != [xy[0] for xy in before.values()]
    assert "L3" in explorer.figure.layout.xaxis.title.text
    assert "At L3" in explorer.summary.value
    assert "bound at L3" in explorer.layers.header.value and explorer.layers.rows.options   # the table refilled


def test_figure_is_updated_in_place(explorer):
    figure, traces = explorer.figure, list(explorer.figure.data)
    explorer.controls["pointwise_pixels"].value = 16
    explorer.controls["level"].value = "L3"
    explorer.run()
    assert explorer.figure is figure
    assert all(a is b for a, b in zip(explorer.figure.data, traces)) and len(explorer.figure.data) == len(traces)


# ---------------------------------------------------------------------------- errors and busy

def test_a_slider_cannot_hold_a_tile_the_engine_refuses(explorer):
    frame = explorer.profile
    with pytest.raises(TraitError):
        explorer.controls["pointwise_channels"].value = 24      # not a multiple of 16: not a notch
    assert explorer.controls["pointwise_channels"].value == engine.Tiles().pointwise_channels
    assert explorer.profile is frame


def test_a_typed_tile_the_engine_refuses_snaps_back_and_says_why(explorer, count_measurements):
    frame = explorer.profile
    box, default = explorer.typed["pointwise_channels"], engine.Tiles().pointwise_channels
    box.value = 20
    assert box.value == default and explorer.controls["pointwise_channels"].value == default     # snapped back
    assert "pointwise channels 20 refused" in explorer.message.value and "multiple of 16" in explorer.message.value
    assert count_measurements == [] and explorer.profile is frame
    allowed = 64 if default != 64 else 32
    box.value = allowed                                       # allowed: the slider goes there and measures
    assert explorer.controls["pointwise_channels"].value == allowed and len(count_measurements) == 1
    assert set(explorer.profile["pointwise_channels"]) == {allowed}
    explorer.typed["pointwise_pixels"].value = 20             # allowed, not a notch: becomes one
    assert 20 in [v for _, v in explorer.controls["pointwise_pixels"].options]
    assert set(explorer.profile["pointwise_pixels"]) == {20} and len(count_measurements) == 2


def _expected_in_title(explorer) -> list[str]:
    """What the figure's title must say for the controls' values."""
    controls = explorer.controls
    threads = controls["threads"].value
    parts = [f"Roofline at {controls['level'].value}", f"batch {controls['batch'].value}",
             f"{threads} thread{'s' if threads != 1 else ''}", fusion_label(controls["fuse_blocks"].value)]
    parts += [f"{field.replace('_', ' ')} {choice_label(field, controls[field].value)}" for field in TILE_FIELDS]
    return parts


def test_after_a_refused_entry_every_control_still_redraws_and_the_title_matches_the_controls(small_model, ceilings):
    explorer = Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, fuse_blocks=False)
    explorer.typed["pointwise_channels"].value = 20          # refused
    assert "refused" in explorer.message.value
    moves = [("threads", min(2, engine.available_cores())), ("batch", 2), ("fuse_blocks", "auto"), ("level", "L3"),
             ("pointwise_pixels", 32), ("pointwise_channels", 64), ("depthwise_rows", 8), ("block_rows", 4),
             ("fuse_blocks", True), ("batch", 1), ("level", "L2")]
    for name, value in moves:
        explorer.controls[name].value = value
        title = explorer.figure.layout.title.text
        for part in _expected_in_title(explorer):
            assert part in title, (name, value, part, title)
        assert explorer.controls[name].value == value
        frame = explorer.profile
        assert int(frame["batch"].iloc[0]) == explorer.controls["batch"].value
        assert int(frame["threads"].iloc[0]) == explorer.controls["threads"].value
        assert "error" not in explorer.message.value


def test_an_engine_error_during_measurement_is_shown_not_raised(explorer, monkeypatch):
    frame = explorer.profile

    def failing(*args, **kwargs):
        raise ValueError("the engine refused this configuration")
    monkeypatch.setattr(widgets_module, "profile", failing)
    explorer.controls["depthwise_rows"].value = 8
    assert "the engine refused this configuration" in explorer.message.value
    assert explorer.profile is frame
    assert explorer.progress.bar_style == "danger" and not explorer.run_button.disabled
    # refused: the control is back at what the figure shows, never accepted and then ignored
    default = engine.Tiles().depthwise_rows
    assert explorer.controls["depthwise_rows"].value == default and explorer.typed["depthwise_rows"].value == default
    monkeypatch.undo()
    explorer.controls["batch"].value = 2                     # and the next change measures and draws
    assert set(explorer.profile["batch"]) == {2} and "batch 2" in explorer.figure.layout.title.text


def test_a_run_while_another_is_in_progress_is_refused_as_busy(explorer, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = widgets_module.profile
    inside = []

    def slow(*args, **kwargs):
        inside.append(1)
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)
    monkeypatch.setattr(widgets_module, "profile", slow)
    results = []
    worker = threading.Thread(target=lambda: results.append(explorer.run()))
    worker.start()
    try:
        assert entered.wait(30)
        assert explorer.run_button.disabled and "measuring" in explorer.status.value
        assert explorer.run() is None
        assert "busy" in explorer.message.value
        explorer.run_button.click()                        # the button goes through the same refusal
        assert len(inside) == 1
    finally:
        release.set()
        worker.join(60)
    assert isinstance(results[0], pd.DataFrame) and explorer.profile is results[0]
    assert not explorer.run_button.disabled


def test_invalid_constructor_arguments_raise(small_model, ceilings):
    with pytest.raises(ValueError, match="level"):
        Explorer(small_model, ceilings=ceilings, level="L4")
    with pytest.raises(ValueError, match="threads"):
        Explorer(small_model, ceilings=ceilings, threads=engine.available_cores() + 1)
    with pytest.raises(ValueError, match="tiles"):
        Explorer(small_model, ceilings=ceilings, tiles={"pointwise_pixels": 8})


# ---------------------------------------------------------------------------- display

def test_the_panel_is_what_a_notebook_displays(explorer):
    bundle = explorer._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.panel.model_id

    def descendants(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from descendants(child)
    shown = list(descendants(explorer.panel))
    for part in (explorer.figure, explorer.run_button, explorer.progress, explorer.message, explorer.layers.rows,
                 explorer.detail, explorer.width_probe, *explorer.controls.values(), *explorer.typed.values()):
        assert any(part is w for w in shown)
    assert len(explorer.layers.rows.options) == len(explorer.profile)


def test_slowest_layers_lists_the_slowest_steps_first(explorer, ceilings):
    table = widgets_module.slowest_layers(explorer.profile, ceilings, "L2", count=5)
    assert len(table) == 5
    assert list(table["ms"]) == sorted(table["ms"], reverse=True)
    assert table["ms"].iloc[0] == pytest.approx(explorer.profile["seconds"].max() * 1e3)


# ---------------------------------------------------------------------------- per-layer mode

def steps_of(explorer, *ops) -> list[str]:
    frame = explorer.profile
    return list(frame.loc[frame["op"].isin(ops) & (frame["flops"] > 0), "layer"])


def click(explorer, name: str) -> tuple[float, float]:
    """Click the point of step `name` as plotly's front end reports it: a plotly_click
    message in the FigureWidget's _js2py_pointsCallback (trace and point indexes, x, y and
    the mouse state), which the widget dispatches to every trace's on_click callbacks.
    Returns the point's (x, y)."""
    for index, trace in enumerate(explorer.figure.data):
        if trace.meta.startswith("ops:") and trace.customdata and name in trace.customdata:
            point = list(trace.customdata).index(name)
            x, y = trace.x[point], trace.y[point]
            explorer.figure._js2py_pointsCallback = {
                "event_type": "plotly_click",
                "points": {"trace_indexes": [index], "point_indexes": [point], "xs": [x], "ys": [y]},
                "device_state": {"alt": False, "ctrl": False, "meta": False, "shift": False, "button": 0,
                                 "buttons": 1},
                "selector": None}
            return x, y
    raise AssertionError(f"no point for {name}")


def ring(explorer) -> tuple:
    selection = trace(explorer.figure, "selection")
    return tuple(zip(selection.x or (), selection.y or ()))


def test_the_step_picker_lists_the_steps_with_flops_by_short_name_every_step_first(explorer):
    options = [tuple(option) for option in explorer.controls["step"].options]
    assert options[0] == ("every step", "")
    frame = explorer.profile[explorer.profile["flops"] > 0]
    assert [value for _, value in options[1:]] == list(frame["layer"])
    for (label, value), op in zip(options[1:], frame["op"]):
        assert label == f"{short_name(value)} · {op}"
    assert explorer.selected_step is None and ring(explorer) == ()


def test_picking_a_step_measures_nothing_and_then_the_sliders_set_that_steps_tiles_only(explorer,
                                                                                        count_measurements):
    project = steps_of(explorer, "project")[2]
    explorer.controls["step"].value = project
    assert count_measurements == [] and explorer.selected_step == project
    assert [explorer.controls[f].disabled for f in engine.Tiles().as_dict()] == [False, False, True, True]
    assert [explorer.typed[f].disabled for f in engine.Tiles().as_dict()] == [False, False, True, True]
    point = points(explorer.figure, "project")[project]
    assert ring(explorer) == (pytest.approx(point),)
    explorer.controls["pointwise_pixels"].value = 128
    (call,) = count_measurements
    assert call["tiles"] == engine.TileSchedule(engine.Tiles(), {project: engine.Tiles(pointwise_pixels=128)})
    frame = explorer.profile.set_index("layer")
    assert frame.loc[project, "pointwise_pixels"] == 128
    assert (frame.drop(index=project)["pointwise_pixels"] == 64).all()
    # back on every step, the sliders show and set the default tiles; the step keeps its own
    explorer.controls["step"].value = ""
    assert explorer.controls["pointwise_pixels"].value == 64 and not explorer.controls["block_rows"].disabled
    explorer.controls["pointwise_pixels"].value = 32
    frame = explorer.profile.set_index("layer")
    assert frame.loc[project, "pointwise_pixels"] == 128
    assert set(frame.drop(index=project)["pointwise_pixels"]) == {32}
    assert explorer.schedule.default == engine.Tiles(pointwise_pixels=32)
    assert "1 step has tiles of its own" in explorer.step_note.value and ring(explorer) == ()


def test_clicking_a_point_selects_its_step_and_the_ring_moves_to_it(explorer, count_measurements):
    depthwise, project = steps_of(explorer, "depthwise")[3], steps_of(explorer, "project")[5]
    x, y = click(explorer, depthwise)
    assert explorer.controls["step"].value == depthwise == explorer.selected_step
    assert ring(explorer) == ((x, y),)
    assert [explorer.controls[f].disabled for f in engine.Tiles().as_dict()] == [True, True, False, True]
    x2, y2 = click(explorer, project)
    assert explorer.selected_step == project and ring(explorer) == ((x2, y2),) != ((x, y),)
    assert count_measurements == []
    explorer.controls["pointwise_channels"].value = 64             # that step's tiles only
    assert count_measurements[-1]["tiles"].overrides == ((project, engine.Tiles(pointwise_channels=64)),)
    assert explorer.profile.set_index("layer").loc[project, "pointwise_channels"] == 64
    assert ring(explorer) == ((points(explorer.figure, "project")[project]),)      # the ring follows the point
    # a click plotly reports on no point (on a roof line, say) changes nothing
    explorer.figure._js2py_pointsCallback = {"event_type": "plotly_click", "points": {
        "trace_indexes": [1], "point_indexes": [0], "xs": [1.0], "ys": [1.0]}, "device_state": None, "selector": None}
    assert explorer.selected_step == project


def hold_measurements(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the Explorer's measurements wait: (entered: one has started, release: let it go)."""
    entered, release = threading.Event(), threading.Event()
    real = widgets_module.profile

    def slow(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)
    monkeypatch.setattr(widgets_module, "profile", slow)
    return entered, release


def test_a_step_picked_while_a_measurement_runs_is_drawn_when_it_ends(explorer, monkeypatch):
    entered, release = hold_measurements(monkeypatch)
    draws = []
    real_draw = explorer._draw_overlays
    monkeypatch.setattr(explorer, "_draw_overlays", lambda: (draws.append(entered.is_set() and not release.is_set()),
                                                             real_draw())[1])
    project = steps_of(explorer, "project")[2]
    worker = threading.Thread(target=explorer.run)
    worker.start()
    try:
        assert entered.wait(30)
        explorer.controls["step"].value = project           # the picker answers at once, the figure waits
        assert explorer.selected_step == project and explorer.controls["pointwise_pixels"].value == 64
        assert draws == [] and ring(explorer) == ()
    finally:
        release.set()
        worker.join(60)
    assert ring(explorer) == (pytest.approx(points(explorer.figure, "project")[project]),)
    assert True not in draws                                 # nothing drew while the measurement ran


def test_a_level_change_moves_the_ring_with_its_point(explorer):
    project = steps_of(explorer, "project")[1]
    explorer.set(step=project)
    explorer.set(level="L3")
    assert ring(explorer) == (pytest.approx(points(explorer.figure, "project")[project]),)
    assert ring(explorer)[0][0] == pytest.approx(explorer.profile.set_index("layer").loc[project, "ai_L3"])


def test_set_selects_the_step_first_and_a_step_fusion_takes_away_follows_into_its_block(small_model, ceilings,
                                                                                       count_measurements):
    explorer = Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, fuse_blocks=False)
    count_measurements.clear()
    expand = steps_of(explorer, "expand")[4]
    explorer.set(step=expand, pointwise_pixels=16)
    assert len(count_measurements) == 1 and explorer.schedule.tiles_for(expand).pointwise_pixels == 16
    explorer.set(fuse_blocks=True)
    (block,) = [row.layer for row in explorer.profile.itertuples() if row.op == "block" and expand in row.members]
    assert explorer.selected_step == block == explorer.controls["step"].value
    assert [explorer.controls[f].disabled for f in engine.Tiles().as_dict()] == [True, True, True, False]
    assert ring(explorer) == (pytest.approx(points(explorer.figure, "block")[block]),)
    explorer.set(block_rows=2)
    assert explorer.profile.set_index("layer").loc[block, "block_rows"] == 2
    assert explorer.schedule.tiles_for(expand).pointwise_pixels == 16           # kept, for when it is unfused
    with pytest.raises(ValueError, match="step"):
        explorer.set(step=expand)                                                  # not a step now


def test_a_tile_one_step_refuses_is_shown_and_nothing_jams(explorer):
    project = steps_of(explorer, "project")[0]
    explorer.set(step=project)
    frame = explorer.profile
    explorer.typed["pointwise_channels"].value = 24
    assert "pointwise channels 24 refused" in explorer.message.value and explorer.profile is frame
    other = 64 if explorer.controls["pointwise_channels"].value != 64 else 32
    explorer.controls["pointwise_channels"].value = other
    assert explorer.message.value == ""
    assert explorer.profile.set_index("layer").loc[project, "pointwise_channels"] == other


def test_set_schedule_runs_a_schedule_and_refuses_one_tuned_elsewhere_or_naming_other_steps(explorer,
                                                                                            count_measurements):
    from engine import schedules

    project = steps_of(explorer, "project")[1]
    schedule = engine.TileSchedule(engine.Tiles(depthwise_rows=2), {project: engine.Tiles(pointwise_pixels=16)})
    explorer.set_schedule(schedule)
    assert explorer.schedule == schedule and explorer.controls["depthwise_rows"].value == 2
    assert explorer.profile.set_index("layer").loc[project, "pointwise_pixels"] == 16
    key = explorer.model.schedule_key(1, 1)
    elsewhere = engine.TileSchedule(tuned_for=schedules.ScheduleKey(key.model, 1, 1, "Another CPU", key.lanes,
                                                                    key.engine_version))
    count_measurements.clear()
    with pytest.raises(ValueError, match="cpu_model 'Another CPU'"):
        explorer.set_schedule(elsewhere)
    with pytest.raises(ValueError, match="no step 'conv99'"):
        explorer.set_schedule(engine.TileSchedule(overrides={"conv99": engine.Tiles()}))
    assert count_measurements == [] and explorer.schedule == schedule


# ---------------------------------------------------------------------------- the Tune button

@pytest.fixture
def schedule_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    return tmp_path / "schedules"


def test_the_tune_button_tunes_with_a_progress_bar_then_draws_default_to_tuned_arrows(small_model, ceilings,
                                                                                     schedule_cache):
    explorer = Explorer(small_model, ceilings=ceilings, threads=1, repeats=1)
    explorer.tune_budget.value = 3
    progress, statuses = [], []
    explorer.tune_progress.observe(lambda change: progress.append((change["new"], explorer.tune_progress.max,
                                                                   explorer.tune_progress.description)),
                                   names="value")
    explorer.status.observe(lambda change: statuses.append(change["new"]), names="value")
    explorer.tune_button.click()
    tuning = explorer.tuning
    assert tuning is not None and explorer.message.value == ""
    assert tuning.result.seconds <= 3 * 1.1 + 0.5
    # the bar followed both phases to their end, the status named the steps as they were tuned
    assert {description for *_, description in progress} == {"blocks", "steps"}
    for phase in ("blocks", "steps"):
        values = [(value, top) for value, top, description in progress if description == phase]
        assert values[-1][0] == values[-1][1] >= 1       # every block fused leaves few steps
    assert explorer.tune_progress.value == explorer.tune_progress.max and explorer.tune_progress.bar_style == "success"
    assert any(status.startswith("tuning blocks: features.") for status in statuses)
    assert "tuned in" in explorer.status.value and not explorer.tune_button.disabled
    # the Explorer now runs the tuned schedule, and draws its default points and arrows
    assert explorer.schedule == tuning.schedule and explorer.profile is tuning.after
    assert list(schedule_cache.glob("*.json"))                      # cached, as engine.tune does
    before = trace(explorer.figure, "tuning:before")
    arrows = explorer.figure.layout.annotations
    assert len(before.x) > 10 and len(arrows) > 10           # a point and an arrow per step (fewer when fused)
    after_points = {name: xy for kind in ("block", "project", "expand", "depthwise", "stem", "conv", "linear")
                    for name, xy in points(explorer.figure, kind).items()}
    default_points = dict(zip(before.customdata, zip(before.x, before.y)))
    checked = 0
    # a block the tuner fused or unfused is one step on one side and three on the other: its
    # arrow ends at the three steps' combined point, no single step's (before_after.match_steps)
    op_before = dict(zip(tuning.before["layer"], tuning.before["op"]))
    op_after = dict(zip(tuning.after["layer"], tuning.after["op"]))
    for arrow in arrows:
        if (arrow.name in after_points and arrow.name in default_points
                and op_before.get(arrow.name) == op_after.get(arrow.name)):
            assert (arrow.x, arrow.y) == pytest.approx(tuple(np.log10(after_points[arrow.name])))
            assert (arrow.ax, arrow.ay) == pytest.approx(tuple(np.log10(default_points[arrow.name])))
            checked += 1
    assert checked >= 3         # the stem, the last 1x1 and the classifier at least: never fused
    assert_inside_the_axes(explorer.figure)         # the axes fit the default points and the arrows too
    # clicking a default point selects its step too
    index = next(i for i, t in enumerate(explorer.figure.data) if t.meta == "tuning:before")
    name = before.customdata[3]
    explorer.figure._js2py_pointsCallback = {"event_type": "plotly_click", "points": {
        "trace_indexes": [index], "point_indexes": [3], "xs": [before.x[3]], "ys": [before.y[3]]},
        "device_state": None, "selector": None}
    assert explorer.selected_step == name
    # the arrows follow a level change; another batch drops them and keeps the tiles, as hand-made
    explorer.set(level="L3")
    assert len(explorer.figure.layout.annotations) == len(arrows)
    assert [a.ax for a in explorer.figure.layout.annotations] != [a.ax for a in arrows]
    assert_inside_the_axes(explorer.figure)
    explorer.set(batch=2)
    assert explorer.message.value == "" and set(explorer.profile["batch"]) == {2}
    assert explorer.figure.layout.annotations == () and not trace(explorer.figure, "tuning:before").x
    assert explorer.schedule.tuned_for is None and explorer.schedule.overrides == tuning.schedule.overrides
    explorer.set(batch=1)
    assert len(explorer.figure.layout.annotations) == len(arrows)      # the tuning's batch again
    # the fusion selector speaks for every block again once touched
    explorer.set(fuse_blocks=False)
    assert explorer.schedule.fused == () and (explorer.profile["op"] != "block").all()


def assert_inside_the_axes(figure) -> None:
    """Every arrow's ends and every point with a finite position lie within the axis ranges."""
    (x_lo, x_hi), (y_lo, y_hi) = figure.layout.xaxis.range, figure.layout.yaxis.range
    for arrow in figure.layout.annotations:
        for x, y in ((arrow.x, arrow.y), (arrow.ax, arrow.ay)):
            assert x_lo <= x <= x_hi and y_lo <= y <= y_hi, arrow.name
    for shown in figure.data:
        if shown.meta.startswith("ops:") or shown.meta == "tuning:before":
            for x, y in zip(shown.x or (), shown.y or ()):
                if x is not None and y is not None:
                    assert x_lo < np.log10(x) < x_hi and y_lo < np.log10(y) < y_hi, shown.meta


def test_tune_while_a_measurement_runs_is_refused_as_busy(explorer, monkeypatch):
    entered, release = hold_measurements(monkeypatch)
    called = []
    monkeypatch.setattr(widgets_module.tuning, "tune", lambda *a, **k: called.append(1))
    worker = threading.Thread(target=explorer.run)
    worker.start()
    try:
        assert entered.wait(30)
        assert explorer.tune_button.disabled
        assert explorer.tune(budget_s=1) is None and "busy" in explorer.message.value
    finally:
        release.set()
        worker.join(60)
    assert called == [] and not explorer.tune_button.disabled


def test_a_tuning_the_engine_refuses_is_shown_not_raised(explorer, monkeypatch):
    def refusing(*args, **kwargs):
        raise ValueError("the tuner refused")
    monkeypatch.setattr(widgets_module.tuning, "tune", refusing)
    frame = explorer.profile
    assert explorer.tune(budget_s=1) is None
    assert "the tuner refused" in explorer.message.value and explorer.profile is frame
    assert explorer.tune_progress.bar_style == "danger" and not explorer.run_button.disabled


# ---------------------------------------------------------------------------- speed

@pytest.mark.slow
def test_a_tile_change_at_batch_1_redraws_within_3_seconds(mobilenet, ceilings):
    """The issue's target on the full 224x224 model, after the first compile: a slider
    change measures (1 warm-up + 3 timed runs) and redraws in under 3 s. Best of 3."""
    explorer = Explorer(mobilenet, ceilings=ceilings, batch=1, repeats=3)
    durations = []
    for pixels in (32, 48, 96):
        started = time.perf_counter()
        explorer.controls["pointwise_pixels"].value = pixels
        durations.append(time.perf_counter() - started)
        assert explorer.message.value == "" and set(explorer.profile["pointwise_pixels"]) == {pixels}
    assert min(durations) < 3.0, durations


# ---------------------------------------------------------------------------- table and detail panel

def test_a_click_on_a_point_opens_its_detail_panel_and_marks_its_table_row(explorer, count_measurements):
    project = steps_of(explorer, "project")[1]
    assert "click a point" in explorer.detail.value
    click(explorer, project)
    detail = explorer.detail.value
    row = explorer.profile.set_index("layer").loc[project]
    assert project in detail and "at every level" in detail and "bytes moved" in detail
    for level in ("L1", "L2", "L3", "DRAM"):
        assert f"<td>{level}</td>" in detail                    # a bytes bar and a row per level
    assert f"pointwise pixels {int(row['pointwise_pixels'])}" in detail
    assert f"{significant(row['bytes_L2'] / 1e6)} MB" in detail
    assert explorer.layers.rows.value == project and count_measurements == []


def test_picking_a_table_row_selects_its_step_and_rings_its_point(explorer):
    depthwise = steps_of(explorer, "depthwise")[3]
    explorer.layers.rows.value = depthwise
    assert explorer.selected_step == depthwise
    assert ring(explorer) == (pytest.approx(points(explorer.figure, "depthwise")[depthwise]),)
    assert depthwise in explorer.detail.value


def test_the_table_sorts_filters_and_shows_memory_bound_only(explorer, ceilings):
    layers = explorer.layers
    layers.sort.value = "time"
    ms = explorer.profile.set_index("layer")["seconds"]
    shown = layers.shown()
    assert [ms[n] for n in shown] == sorted((ms[n] for n in shown), reverse=True) and len(shown) == len(ms)
    layers.filter_box.value = "depthwise"
    assert layers.shown() and all(explorer.profile.set_index("layer").loc[n, "op"] == "depthwise"
                                  for n in layers.shown())
    layers.filter_box.value = ""
    layers.sort.value = "execution order"
    assert layers.shown() == list(explorer.profile.sort_values("step")["layer"])
    assert re.search(r"\d\.\d+%", layers.rows.options[0][0])      # shares as %, not 0.3725
    # memory bound only: the table and the figure keep only the steps memory bound at the level
    memory = set(explorer.profile.loc[bound_at(explorer.profile, ceilings, explorer.level) == "memory", "layer"])
    assert memory and len(memory) < (explorer.profile["flops"] > 0).sum()
    layers.memory_only.value = True
    assert set(layers.shown()) == memory
    drawn = {name for t in explorer.figure.data if t.meta.startswith("ops:") for name in (t.customdata or ())}
    assert drawn == memory and "memory bound only" in explorer.figure.layout.title.text
    layers.memory_only.value = False
    drawn = {name for t in explorer.figure.data if t.meta.startswith("ops:") for name in (t.customdata or ())}
    assert drawn > memory


def test_the_figure_takes_the_width_the_page_reports(explorer):
    assert explorer.figure.layout.width is None and explorer.figure.layout.autosize
    explorer.width_probe.width = 1168                # what the front end sends from its ResizeObserver
    assert explorer.figure.layout.width == 1168
    explorer.width_probe.width = 0                   # a hidden panel: the figure keeps its width
    assert explorer.figure.layout.width == 1168
