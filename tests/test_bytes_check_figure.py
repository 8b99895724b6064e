"""workbench.bytes_check_figure: the model-vs-simulated scatter and table, and a profile's
points placed by the simulated bytes."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.bytes_check_figure import bytes_check_figure, bytes_check_table, placed_by_simulated_bytes
from workbench.ceilings import Ceilings

LEVELS = ("L1", "L2", "L3", "DRAM")
MB = 1e6


def make_ceilings() -> Ceilings:
    """Peak 60 GFLOP/s; L1 200, L2 100, L3 50, DRAM 15 GB/s (one thread)."""
    rows = [(1, "fp32_fma", 60.0, "GFLOP/s")] + [(1, level, bw, "GB/s")
                                                  for level, bw in zip(LEVELS, (200.0, 100.0, 50.0, 15.0))]
    return Ceilings(pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"]), machine={},
                    measured_at="test", key={})


def frame(rows):
    """A profile-like frame from (op, flops, gflops, {level: (model, simulated)})."""
    out = []
    for index, (op, flops, gflops, levels) in enumerate(rows):
        row = {"step": index, "layer": f"/features/features.{index}/Conv", "op": op, "flops": flops,
               "gflops": gflops, "batch": 1, "threads": 1, "traced": True}
        for level in LEVELS:
            modelled, simulated = levels.get(level, (0.0, 0.0))
            row[f"bytes_{level}"], row[f"bytes_sim_{level}"] = modelled, simulated
        out.append(row)
    return pd.DataFrame(out)


SAMPLE = frame([("expand", 1e8, 10.0, {"L1": (8 * MB, 8 * MB), "L2": (2 * MB, 4 * MB), "DRAM": (0.0, 1 * MB)}),
                ("depthwise", 1e7, 5.0, {"L1": (6 * MB, 6 * MB), "L2": (3 * MB, 3 * MB)})])


def test_scatter_has_a_point_per_step_and_level_at_simulated_across_and_modelled_up():
    figure = bytes_check_figure(SAMPLE)
    by_key = {trace.meta: trace for trace in figure.data}
    assert set(by_key) == {"level:L1", "level:L2", "agreement", "over", "under"}
    l2 = by_key["level:L2"]
    assert list(l2.x) == [4 * MB, 3 * MB] and list(l2.y) == [2 * MB, 3 * MB]
    assert "×0.5" in l2.hovertext[0] and "features.0" in l2.hovertext[0]
    agreement = by_key["agreement"]
    assert agreement.x[0] == agreement.y[0] and agreement.x[1] == agreement.y[1]
    assert by_key["over"].y[1] == pytest.approx(1.25 * by_key["over"].x[1])
    # the DRAM point has 0 modelled bytes: off a log axis, and said so
    assert "1 with 0 bytes on one side not shown" in figure.layout.title.text
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"


def test_scatter_refuses_a_frame_without_simulated_bytes_or_without_points():
    with pytest.raises(ValueError, match="bytes_sim_L1"):
        bytes_check_figure(SAMPLE.drop(columns=["bytes_sim_L1"]))
    empty = frame([("expand", 1.0, 1.0, {})])
    with pytest.raises(ValueError, match="nothing to draw"):
        bytes_check_figure(empty)


def test_table_names_each_family_and_level_with_its_ratios():
    shown = bytes_check_table(SAMPLE)
    data = shown.data
    assert list(data.columns)[:4] == ["family", "level", "steps", "median model/simulated"]
    row = data[(data["family"] == "1x1") & (data["level"] == "L2")].iloc[0]
    assert row["median model/simulated"] == 0.5 and row["worst step"] == "features.0"
    html = shown.to_html()
    assert "×0.5" in html and "100%" in html


def test_roofline_points_placed_by_simulated_bytes():
    ceilings = make_ceilings()
    profile = SAMPLE.copy()
    profile.loc[1, "bytes_sim_L3"] = math.nan              # a step the simulation did not trace keeps the model's
    placed = placed_by_simulated_bytes(profile, ceilings)
    assert placed.loc[0, "ai_L2"] == pytest.approx(1e8 / (4 * MB))
    assert placed.loc[0, "bytes_model_L2"] == 2 * MB and placed.loc[0, "bytes_L2"] == 4 * MB
    # DRAM: 1 MB simulated (the model said 0) sets a roof of 1e8 / 1e6 x 15 GB/s = 1500 GFLOP/s, above the peak;
    # L2: 25 FLOP/byte x 100 GB/s = 2500; the peak (60) bounds it
    assert placed.loc[0, "bound"] == "compute"
    # the depthwise: 1e7 FLOP / 3 MB at L2 x 100 GB/s = 333 > 60, L1 1e7 / 6e6 x 200 = 333: compute
    assert placed.loc[1, "bytes_L3"] == profile.loc[1, "bytes_L3"]
    assert placed.attrs["bytes"] == "simulated"
    assert np.isfinite(placed["roof_fraction"]).all()
    with pytest.raises(ValueError, match="bytes='simulated'"):
        placed_by_simulated_bytes(profile.drop(columns=["bytes_sim_L2"]), ceilings)


def test_profile_with_simulated_bytes_and_its_roofline():
    import engine
    from engine.kernels.layout import CB
    from workbench.bytes_check_figure import roofline_by_bytes
    from workbench.simulated_bytes import profile_with_bytes

    model = engine.load(engine.zoo.mobilenet_v2(width_mult=0.35, resolution=32, num_classes=10))
    ceilings = make_ceilings()
    both = profile_with_bytes(model, "both", batch=1, threads=1, ceilings=ceilings, repeats=1, progress=False)
    for level in LEVELS:
        assert both[f"bytes_sim_{level}"].notna().all() and f"ai_sim_{level}" in both.columns
    simulated = profile_with_bytes(model, "simulated", batch=1, threads=1, ceilings=ceilings, repeats=1,
                                   progress=False)
    np.testing.assert_allclose(simulated["bytes_L2"], both["bytes_sim_L2"], rtol=0.01, atol=4096)
    np.testing.assert_array_equal(simulated["bytes_model_L2"], both["bytes_L2"])
    again = placed_by_simulated_bytes(simulated, ceilings)                  # placing twice changes nothing
    np.testing.assert_array_equal(again["bytes_model_L2"], both["bytes_L2"])
    model_only = profile_with_bytes(model, "model", batch=1, threads=1, ceilings=ceilings, repeats=1)
    assert not any(c.startswith("bytes_sim_") for c in model_only.columns)
    figure = roofline_by_bytes(both, ceilings, level="L2", bytes="simulated")
    assert "simulated bytes" in figure.layout.xaxis.title.text
    depthwise = next(t for t in figure.data if t.meta == "ops:depthwise")
    expected = both[both["op"] == "depthwise"]["ai_sim_L2"].to_numpy()
    np.testing.assert_allclose(np.array(depthwise.x, float), expected)        # placed by the simulated bytes
    modelled = roofline_by_bytes(both, ceilings, level="L2", bytes="model")
    assert "modelled bytes" in modelled.layout.xaxis.title.text
    np.testing.assert_allclose(np.array(next(t for t in modelled.data if t.meta == "ops:depthwise").x, float),
                               both[both["op"] == "depthwise"]["ai_L2"].to_numpy())
    with pytest.raises(ValueError, match="once"):
        roofline_by_bytes(both, ceilings, bytes="both")


def test_roofline_toggle_switches_points_between_modelled_and_simulated_bytes():
    from workbench.bytes_check_figure import roofline_bytes_toggle, roofline_by_bytes

    ceilings = make_ceilings()
    profile = SAMPLE.assign(seconds=[1e-3, 1e-3], share_of_time=[0.5, 0.5], other_flops=0,
                            gflops_p10=[10.0, 5.0], gflops_p90=[10.0, 5.0], input_shape=[(1,)] * 2,
                            output_shape=[(1,)] * 2, members=[("a",), ("b",)], fused=False)
    from workbench.profile import attainable_gflops
    moved = {lv: profile[f"bytes_{lv}"].to_numpy(float) for lv in LEVELS}
    attainable, bound_level, intensities = attainable_gflops(profile["flops"].to_numpy(), moved, ceilings, 1)
    for lv in LEVELS:
        profile[f"ai_{lv}"] = intensities[lv]
    profile["attainable_gflops"], profile["bound_level"] = attainable, bound_level
    profile["roof_fraction"] = profile["gflops"] / attainable
    profile["bound"] = np.where(bound_level == "compute", "compute", "memory")
    figure = roofline_bytes_toggle(profile, ceilings, level="L2")
    model_button, simulated_button = figure.layout.updatemenus[0].buttons
    keys = [trace.meta for trace in figure.data]
    expand = [i for i, index in enumerate(simulated_button.args[2]) if keys[index] == "ops:expand"][0]
    assert list(model_button.args[0]["x"][expand]) == [1e8 / (2 * MB)]
    assert list(simulated_button.args[0]["x"][expand]) == [1e8 / (4 * MB)]
    assert "simulated bytes" in simulated_button.args[1]["xaxis.title.text"]
    # the figure starts on the model's placing
    assert list(figure.data[keys.index("ops:expand")].x) == [1e8 / (2 * MB)]
    simulated = roofline_by_bytes(profile, ceilings, level="L2", bytes="simulated")
    assert "simulated bytes" in simulated.layout.xaxis.title.text
    # a profile placed by the simulated bytes already: the model's view has the model's
    # intensities, bound and roof fraction again, not the simulation's
    profile.loc[0, "bytes_sim_L2"] = 400 * MB        # simulated: L2-bound at 25 of the peak's 60 GFLOP/s
    placed = placed_by_simulated_bytes(profile, ceilings)
    again = roofline_bytes_toggle(placed, ceilings, level="L2")
    model_again, simulated_again = again.layout.updatemenus[0].buttons
    assert list(model_again.args[0]["x"][expand]) == [1e8 / (2 * MB)]
    assert list(simulated_again.args[0]["x"][expand]) == [1e8 / (400 * MB)]
    model_fraction = f"{profile['roof_fraction'].iloc[0]:.0%}"
    simulated_fraction = f"{placed['roof_fraction'].iloc[0]:.0%}"
    assert model_fraction != simulated_fraction
    assert f"tightest roof of all: compute ({model_fraction} of it)" in model_again.args[0]["hovertext"][expand][0]
    assert (f"tightest roof of all: L2 ({simulated_fraction} of it)"
            in simulated_again.args[0]["hovertext"][expand][0])


def test_profile_and_roofline_take_the_bytes_choice():
    import engine
    import workbench

    model = engine.load(engine.zoo.mobilenet_v2(width_mult=0.35, resolution=32, num_classes=10))
    ceilings = make_ceilings()
    both = workbench.profile(model, batch=1, threads=1, repeats=1, ceilings=ceilings, bytes="both")
    assert {f"bytes_sim_{level}" for level in LEVELS} <= set(both.columns)
    simulated = workbench.profile(model, batch=1, threads=1, repeats=1, ceilings=ceilings, bytes="simulated")
    np.testing.assert_allclose(simulated["bytes_L2"], both["bytes_sim_L2"], rtol=0.02, atol=64 * 1024)  # two simulations
    assert "bytes_sim_L1" not in workbench.profile(model, batch=1, threads=1, repeats=1, ceilings=ceilings).columns
    with pytest.raises(ValueError, match="bytes"):
        workbench.profile(model, ceilings=ceilings, bytes="measured")
    figure = workbench.roofline_figure(both, ceilings, level="L2", bytes="simulated")
    assert "simulated bytes" in figure.layout.xaxis.title.text
    with pytest.raises(ValueError, match="bytes"):
        workbench.roofline_figure(both, ceilings, bytes="both")
