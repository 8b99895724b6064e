"""The Explorer's bytes toggle (model / simulated), driven as a user would: turned on, the
points move to the cache simulation's arithmetic intensities; turned off, back to the
model's; each configuration is simulated once (a toggle back is instant), and nothing is
simulated while the toggle is off. Failures are messages, not exceptions.

The model is the small MobileNetV2 (96x96) of the widget tests, the ceilings synthetic and
the caches those of the described machine the ceilings carry (conftest), so what is
simulated does not depend on the host's caches.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import engine
from test_widgets import synthetic_ceilings
from workbench import widgets as widgets_module
from workbench.widgets import Explorer

LEVEL = "L3"


@pytest.fixture(scope="module")
def ceilings():
    return synthetic_ceilings()


@pytest.fixture
def explorer(small_model, ceilings):
    return Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, level=LEVEL)


@pytest.fixture
def count_simulations(monkeypatch):
    """Calls of simulated_frame made by the widget (the only way it simulates)."""
    calls = []
    real = widgets_module.simulated_frame

    def counting(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)
    monkeypatch.setattr(widgets_module, "simulated_frame", counting)
    return calls


def plotted_x(explorer) -> dict[str, float]:
    """{step name: x} of the roofline's step markers."""
    out = {}
    for trace in explorer.figure.data:
        if trace.meta.startswith("ops:"):
            out.update(zip(trace.customdata or (), trace.x or ()))
    return out


def column_of(frame, column: str, names) -> dict[str, float]:
    indexed = frame.set_index("layer")[column]
    return {name: float(indexed[name]) for name in names}


def assert_x_is(explorer, column: str) -> dict[str, float]:
    shown = plotted_x(explorer)
    assert shown
    expected = column_of(explorer.profile, column, shown)
    for name, x in shown.items():
        assert x == pytest.approx(expected[name], rel=1e-9), (name, column)
    return shown


def test_the_toggle_moves_the_points_to_the_simulated_intensities_and_back(explorer, count_simulations):
    measured = explorer.measurements
    by_model = assert_x_is(explorer, f"ai_{LEVEL}")
    assert "modelled bytes" in explorer.figure.layout.xaxis.title.text

    explorer.controls["bytes"].value = "simulated"
    assert len(count_simulations) == 1 and explorer.simulations == 1
    by_simulation = assert_x_is(explorer, f"ai_sim_{LEVEL}")
    assert "simulated bytes" in explorer.figure.layout.xaxis.title.text
    assert "simulated bytes" in explorer.figure.layout.title.text and "simulated bytes" in explorer.summary.value
    # the simulation moves points: some step's L3 bytes differ from the model's by > 25 %
    moved = [n for n in by_model if not math.isclose(by_model[n], by_simulation[n], rel_tol=0.25)]
    assert moved, "no point moved: the test cannot tell the two placings apart"
    # the layer table and the selected step's panel use the simulated placing too
    assert explorer.drawn is not explorer.profile
    assert np.allclose(explorer.drawn[f"ai_{LEVEL}"], explorer.profile[f"ai_sim_{LEVEL}"], equal_nan=True)

    explorer.controls["bytes"].value = "model"
    assert plotted_x(explorer) == by_model
    assert "modelled bytes" in explorer.figure.layout.xaxis.title.text
    explorer.controls["bytes"].value = "simulated"                 # back again: from the cache
    assert plotted_x(explorer) == by_simulation
    assert len(count_simulations) == 1 and explorer.measurements == measured   # toggling measures nothing


def test_nothing_is_simulated_while_the_toggle_is_off_and_each_configuration_once_while_on(explorer,
                                                                                           count_simulations):
    explorer.controls["depthwise_rows"].value = 4
    explorer.set(batch=2)
    assert count_simulations == [] and explorer.simulations == 0
    explorer.set(bytes="simulated")                                # the configuration shown: batch 2, rows 4
    assert len(count_simulations) == 1 and count_simulations[0][0][1:3] == (2, 1)
    explorer.set(batch=1)                                          # a new configuration: measured, simulated
    assert len(count_simulations) == 2 and set(explorer.profile["batch"]) == {1}
    assert_x_is(explorer, f"ai_sim_{LEVEL}")
    explorer.set(batch=2)                                          # seen before: measured, not simulated
    assert len(count_simulations) == 2
    assert_x_is(explorer, f"ai_sim_{LEVEL}")
    explorer.set(level="L2")                                       # a level change: neither
    assert len(count_simulations) == 2
    assert_x_is(explorer, "ai_sim_L2")


def test_the_progress_bar_follows_the_simulation_step_by_step(explorer):
    values, statuses = [], []
    explorer.progress.observe(lambda change: values.append(change["new"]), names="value")
    explorer.status.observe(lambda change: statuses.append(change["new"]), names="value")
    explorer.set(bytes="simulated")
    steps = len(explorer.profile)
    assert len(set(values)) >= steps                               # one tick per step simulated (twice: warm run)
    assert any(s.startswith("simulating the caches: step") for s in statuses)
    assert explorer.status.value.startswith("caches simulated in") and explorer.progress.bar_style == "success"
    assert explorer.progress.value == explorer.progress.max == 2   # the measurement bar's scale again


def test_a_simulation_that_fails_is_a_message_and_the_toggle_goes_back_to_model(explorer, monkeypatch):
    by_model = plotted_x(explorer)

    def failing(*args, **kwargs):
        raise ValueError("the cache simulation has no access trace for 1 step(s) of this plan")
    monkeypatch.setattr(widgets_module, "simulated_frame", failing)
    explorer.controls["bytes"].value = "simulated"
    assert "could not simulate the caches" in explorer.message.value
    assert "no access trace" in explorer.message.value
    assert explorer.controls["bytes"].value == "model" and explorer.bytes == "model"
    assert plotted_x(explorer) == by_model and "modelled bytes" in explorer.figure.layout.xaxis.title.text
    assert explorer.progress.bar_style == "danger"
    monkeypatch.undo()
    explorer.controls["bytes"].value = "simulated"                # works again once it can
    assert explorer.bytes == "simulated"
    assert_x_is(explorer, f"ai_sim_{LEVEL}")


def test_a_bad_bytes_value_is_refused_naming_the_control(explorer, small_model, ceilings):
    with pytest.raises(ValueError, match="bytes must be one of"):
        explorer.set(bytes="counters")
    assert explorer.bytes == "model"
    with pytest.raises(ValueError, match="bytes must be one of"):
        Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, bytes="both")


def test_an_explorer_can_open_on_simulated_bytes(small_model, ceilings):
    explorer = Explorer(small_model, ceilings=ceilings, threads=1, repeats=1, level=LEVEL, bytes="simulated")
    assert explorer.simulations == 1
    assert_x_is(explorer, f"ai_sim_{LEVEL}")
    assert engine.Tiles() == explorer.schedule.default
