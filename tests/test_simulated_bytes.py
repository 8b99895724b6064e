"""workbench.simulated_bytes: simulated bytes beside the model's as profile columns and as
tables (per step and level; per family and level), and the bench script that prints them."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import engine
from engine.kernels.layout import CB
from machines import KIB, described, with_lanes
from workbench.simulated_bytes import (add_simulated_columns, agreement_table, check_bytes_choice, model_vs_simulated,
                                       simulated_frame)

pytestmark = pytest.mark.lanes

TINY = described("tiny, described", 2, 4 * KIB, 32 * KIB, 256 * KIB, 8)
MIB = 1024 * KIB


@pytest.fixture(scope="module")
def small_model():
    return engine.load(engine.zoo.mobilenet_v2(width_mult=0.35, resolution=32, num_classes=10))


def frame_of(rows):
    """A simulated frame from (op, {level: (model, simulated)}) rows."""
    out = []
    for index, (op, levels) in enumerate(rows):
        row = {"step": index, "layer": f"step{index}", "op": op, "flops": 1000, "traced": True}
        for level in ("L1", "L2", "L3", "DRAM"):
            modelled, simulated = levels.get(level, (0.0, 0.0))
            row[f"bytes_{level}"], row[f"bytes_sim_{level}"] = modelled, simulated
        out.append(row)
    return pd.DataFrame(out)


def test_agreement_table_gives_median_and_worst_ratio_per_family_and_level():
    frame = frame_of([("expand", {"L2": (2 * MIB, 1 * MIB)}), ("project", {"L2": (1 * MIB, 1 * MIB)}),
                      ("pointwise", {"L2": (1 * MIB, 4 * MIB)}), ("depthwise", {"L2": (3 * MIB, 3 * MIB)})])
    table = agreement_table(frame).set_index(["family", "level"])
    one_by_one = table.loc[("1x1", "L2")]
    assert one_by_one["steps"] == 3
    assert one_by_one["median_ratio"] == pytest.approx(1.0)             # ratios 2, 1, 0.25
    assert one_by_one["worst_ratio"] == pytest.approx(0.25)             # furthest from 1 in log terms
    assert one_by_one["worst_step"] == "step2"
    assert one_by_one["off_by_25pct"] == pytest.approx(2 / 3)
    assert table.loc[("depthwise", "L2")]["median_ratio"] == pytest.approx(1.0)
    # levels where both sides move under 64 KiB are left out
    assert ("1x1", "L1") not in table.index


def test_model_vs_simulated_has_one_row_per_traced_step_and_level_with_nan_where_nothing_was_seen():
    frame = frame_of([("expand", {"L2": (2 * MIB, 1 * MIB), "DRAM": (5.0, 0.0)})])
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "layer": "untraced", "traced": False}
    pairs = model_vs_simulated(frame)
    assert len(pairs) == 4 and set(pairs["layer"]) == {"step0"}
    assert pairs.set_index("level").loc["L2", "ratio"] == 2.0
    assert math.isnan(pairs.set_index("level").loc["DRAM", "ratio"])


def test_bytes_choice_is_checked():
    assert check_bytes_choice("both") == "both"
    with pytest.raises(ValueError, match="model"):
        check_bytes_choice("measured")


def test_simulated_columns_join_a_profile_step_by_step(small_model):
    machine = with_lanes(TINY, CB)
    frame = simulated_frame(small_model, batch=1, threads=2, machine=machine, progress=False)
    assert frame["traced"].all() and len(frame) > 10
    assert (frame["bytes_sim_L1"] > 0).all()
    profile_like = frame[["step", "layer", "op", "flops"]].assign(batch=1, threads=2)
    out = add_simulated_columns(profile_like, small_model, machine, progress=False)
    # the same plan simulated again: equal up to a few lines (fresh arrays for the caller's input
    # and the classifier's output land elsewhere, in other sets)
    np.testing.assert_allclose(out["bytes_sim_L2"].to_numpy(), frame["bytes_sim_L2"].to_numpy(), rtol=0.01, atol=4096)
    with_flops = out[out["flops"] > 0]
    np.testing.assert_allclose(with_flops["ai_sim_L1"], with_flops["flops"] / with_flops["bytes_sim_L1"])
    with pytest.raises(ValueError, match="steps"):
        add_simulated_columns(profile_like.iloc[:-1], small_model, machine, progress=False)
    swapped = profile_like.copy()                       # as many steps, not the same ones
    swapped.loc[[0, 1], "layer"] = swapped.loc[[1, 0], "layer"].to_numpy()
    with pytest.raises(ValueError, match="same configuration"):
        add_simulated_columns(swapped, small_model, machine, progress=False)


def test_bench_script_prints_a_table_per_batch(small_model, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = tmp_path / "small.onnx"
    engine.zoo.save_model(engine.zoo.mobilenet_v2(width_mult=0.35, resolution=32, num_classes=10), path)
    script = Path(__file__).resolve().parents[1] / "bench" / "bytes_model_vs_sim.py"
    spec = importlib.util.spec_from_file_location("bytes_model_vs_sim", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--batches", "1", "--model", str(path), "--described", "zen3-vm",
                       "--csv", str(tmp_path / "out.csv")]) == 0
    printed = capsys.readouterr().out
    assert "## batch 1" in printed and "| 1x1 | L2 |" in printed
    assert len(pd.read_csv(tmp_path / "out.csv")) > 10
