"""workbench.networks: several networks' profiles side by side (a table, one roofline, FLOPs
against time, per-layer intensity against the ridge points), on hand-made ceilings so what
is memory bound does not depend on this machine."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from conftest import hand_made_ceilings
import workbench
from workbench.networks import (check_profiles, flops_time_figure, format_network_table, intensity_spread_figure,
                                network_table, networks_roofline_figure)
from workbench.profile import bound_at


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def profiles(ceilings):
    models = {"v1": engine.zoo.mobilenet_v1(resolution=64, num_classes=10),
              "v2": engine.zoo.mobilenet_v2(resolution=64, num_classes=10)}
    return {name: workbench.profile(model, batch=2, threads=1, repeats=1, warmup=0, ceilings=ceilings)
            for name, model in models.items()}


def test_network_table_sums_each_profile_per_image_and_uses_the_one_memory_bound_rule(profiles, ceilings):
    table = network_table(profiles, ceilings, "L2")
    assert list(table.index) == ["v1", "v2"]
    for name, frame in profiles.items():
        row = table.loc[name]
        assert row["batch"] == 2 and row["threads"] == 1
        assert row["gflop_per_image"] == pytest.approx(frame["flops"].sum() / 2 / 1e9)
        assert row["ms_per_image"] == pytest.approx(frame["seconds"].sum() / 2 * 1e3)
        assert row["peak_fraction"] == pytest.approx(frame["flops"].sum() / frame["seconds"].sum() / 1e9
                                                     / ceilings.peak_gflops(1))
        assert row["ai"] == pytest.approx(frame["flops"].sum() / frame["bytes_L2"].sum())
        memory = bound_at(frame, ceilings, "L2") == "memory"
        assert row["memory_bound_steps"] == memory.sum()
        assert row["memory_bound_time"] == pytest.approx(frame.loc[memory, "seconds"].sum() / frame["seconds"].sum())
        assert row["ridge"] == pytest.approx(ceilings.ridge_point("L2", 1))
    assert "%" in format_network_table(table).to_html()


def test_one_roofline_has_every_networks_steps_and_a_star_for_each_whole_run(profiles, ceilings):
    figure = networks_roofline_figure(profiles, ceilings, "L3")
    names = [trace.name for trace in figure.data]
    assert {"v1: its steps", "v1: whole run", "v2: its steps", "v2: whole run"} <= set(names)
    steps = next(t for t in figure.data if t.name == "v2: its steps")
    with_flops = profiles["v2"][profiles["v2"]["flops"] > 0]
    np.testing.assert_allclose(sorted(steps.x), sorted(with_flops["ai_L3"]))
    star = next(t for t in figure.data if t.name == "v2: whole run")
    assert star.marker.symbol == "star" and star.y[0] == pytest.approx(network_table(profiles, ceilings, "L3")
                                                                        .loc["v2", "gflops"])


def test_flops_time_and_intensity_spread_figures_draw_each_network_and_the_ridges(profiles, ceilings):
    table = network_table(profiles, ceilings, "L3")
    figure = flops_time_figure(table, ceilings)
    assert [t.name for t in figure.data][:2] == ["v1", "v2"] and "compute floor" in figure.data[2].name
    spread = intensity_spread_figure(profiles, ceilings, "L3")
    assert [t.name for t in spread.data] == ["v1", "v2"]
    assert len(spread.layout.shapes) == len(ceilings.levels)        # a ridge line per level


def test_profiles_of_different_thread_counts_or_none_are_refused(profiles, ceilings):
    with pytest.raises(ValueError, match="non-empty dict"):
        network_table({}, ceilings)
    other = profiles["v2"].assign(threads=2)
    with pytest.raises(ValueError, match="one thread count"):
        check_profiles({"v1": profiles["v1"], "v2 on 2": other}, ceilings, "L2")
    with pytest.raises(ValueError, match="level"):
        networks_roofline_figure(profiles, ceilings, "L4")
