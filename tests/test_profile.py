"""workbench.profile: one row per step with FLOPs, bytes, intensities and bounds."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import engine
from conftest import blocks_auto_fuses, hand_made_ceilings
import workbench
from workbench import models as models_module
from workbench.models import load_model, model_names
from workbench.profile import run_machine

LEVELS = ["L1", "L2", "L3", "DRAM"]


@pytest.fixture(scope="module")
def ceilings():
    # A hand-made table: profile logic must not depend on this machine's noise.
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def small():
    return engine.load(engine.zoo.mobilenet_v2(resolution=96))


def test_profile_has_the_documented_columns_and_sums(small, ceilings):
    frame = workbench.profile(small, batch=1, threads=1, repeats=3, ceilings=ceilings)
    for column in ["layer", "op", "seconds", "flops", "gflops", "bound", "batch", "threads", "fuse_blocks",
                   *(f"bytes_{lv}" for lv in LEVELS), *(f"ai_{lv}" for lv in LEVELS), *engine.Tiles().as_dict()]:
        assert column in frame.columns, column
    assert len(frame) == len(small.plan(1, machine=run_machine(ceilings)).steps)
    assert frame["share_of_time"].sum() == pytest.approx(1.0)
    conv = frame[frame.flops > 0]
    np.testing.assert_allclose(conv["ai_L2"], conv["flops"] / conv["bytes_L2"])
    assert set(frame["bound"]) <= {"memory", "compute", "n/a"}
    # memory bound means: the attainable roof is some level's AI x bandwidth, below the peak
    memory = conv[conv.bound == "memory"]
    assert (memory["attainable_gflops"] < 90.0).all()


def test_depthwise_layers_are_memory_bound_and_have_low_intensity(small, ceilings):
    frame = workbench.profile(small, batch=1, threads=1, repeats=2, ceilings=ceilings)
    depthwise = frame[frame.op == "depthwise"]
    pointwise = frame[frame.op.isin(["expand", "project"])]
    assert (depthwise["bound"] == "memory").all()
    assert depthwise["ai_L2"].median() < pointwise["ai_L2"].median()


def test_a_tile_the_model_says_rereads_more_shows_more_bytes(small, ceilings):
    big = workbench.profile(small, batch=8, threads=1, repeats=1, ceilings=ceilings,
                            tiles=engine.Tiles(pointwise_pixels=4096, pointwise_channels=4096))
    small_tiles = workbench.profile(small, batch=8, threads=1, repeats=1, ceilings=ceilings,
                                    tiles=engine.Tiles(pointwise_pixels=64, pointwise_channels=64))
    assert big["bytes_L2"].sum() > small_tiles["bytes_L2"].sum()


def test_fusion_moves_fewer_outer_level_bytes(small, ceilings):
    plain = workbench.profile(small, batch=1, threads=1, repeats=1, ceilings=ceilings)
    fused = workbench.profile(small, batch=1, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=True)
    assert fused["op"].eq("block").sum() == 17
    assert fused["flops"].sum() == plain["flops"].sum()
    assert fused["bytes_L3"].sum() < plain["bytes_L3"].sum()
    # at this size the activations stay in L3 between steps, so DRAM sees only weights: equal at most
    assert fused["bytes_DRAM"].sum() <= plain["bytes_DRAM"].sum()
    assert fused[fused.op == "block"]["ai_L3"].median() > plain[plain.op == "expand"]["ai_L3"].median()


@pytest.mark.parametrize("kwargs,match", [(dict(batch=0), "batch"), (dict(repeats=0), "repeats"),
                                          (dict(threads=99), "threads"), (dict(batch=2.5), "batch")])
def test_bad_arguments_are_rejected(small, ceilings, kwargs, match):
    with pytest.raises(ValueError, match=match):
        workbench.profile(small, ceilings=ceilings, **kwargs)


@pytest.mark.parametrize("threads", sorted({1, min(2, engine.available_cores())}))
def test_the_fuse_blocks_column_is_the_setting_and_auto_fuses_the_blocks_fusion_wins_picks(small, ceilings, threads):
    frames = {value: workbench.profile(small, batch=2, threads=threads, repeats=1, warmup=0, ceilings=ceilings,
                                       fuse_blocks=value)
              for value in (False, "auto", True)}
    for value, frame in frames.items():
        assert frame["fuse_blocks"].map(lambda v: (type(v), v)).tolist() == [(type(value), value)] * len(frame)
    blocks = {value: {tuple(m) for m in frame.loc[frame["op"] == "block", "members"]}
              for value, frame in frames.items()}
    expected = blocks_auto_fuses(small, threads, 2, ceilings)
    assert blocks[False] == set() and len(blocks[True]) == 17
    assert blocks["auto"] == expected and 0 < len(expected) < 17
    auto = frames["auto"]
    assert (auto["fused"] == (auto["op"] == "block")).all()
    assert auto["flops"].sum() == frames[False]["flops"].sum() == frames[True]["flops"].sum()
    title = workbench.roofline_figure(auto, ceilings).layout.title.text
    assert f"auto fusion ({len(expected)} block{'s' if len(expected) != 1 else ''} fused)" in title, title
    assert "blocks unfused" in workbench.roofline_figure(frames[False], ceilings).layout.title.text
    assert "all blocks fused" in workbench.roofline_figure(frames[True], ceilings).layout.title.text


def test_every_workbench_default_follows_engine_default_fuse_blocks():
    """With engine.DEFAULT_FUSE_BLOCKS switched to "auto" before the workbench is imported,
    profile, sweep, grid, compare, Explorer and the CLI (profile, report and sweep) default
    to "auto": nothing hard-codes False."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent('''
        import importlib, inspect
        import engine, engine.model
        engine.model.DEFAULT_FUSE_BLOCKS = engine.DEFAULT_FUSE_BLOCKS = "auto"
        import pandas as pd
        import workbench
        from workbench import cli
        sweep_module = importlib.import_module("workbench.sweep")   # workbench.sweep is the function

        def default(function):
            return inspect.signature(function).parameters["fuse_blocks"].default

        assert default(workbench.profile) == "auto", default(workbench.profile)
        assert default(workbench.compare) == "auto"
        assert default(workbench.Explorer.__init__) == "auto"
        assert default(sweep_module.sweep) == ("auto",)
        assert sweep_module.grid()[0]["fuse_blocks"] == "auto"
        parser = cli.build_parser()
        assert parser.parse_args(["profile"]).fuse_blocks == "auto"
        assert parser.parse_args(["report", "--out", "x"]).fuse_blocks == "auto"
        assert parser.parse_args(["profile", "--fuse-blocks"]).fuse_blocks is True
        asked = []

        def fake_sweep(model, **kwargs):
            asked.append(kwargs["fuse_blocks"])
            frame = pd.DataFrame()
            frame.attrs["skipped"] = []
            return frame
        cli.sweep = fake_sweep                 # the sweep the CLI calls
        assert cli.main(["sweep", "--no-progress", "--out", "unused.csv"]) == 1
        assert asked == [["auto"]], asked
        print("ok")
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_model_file_writes_the_default_model_when_missing_and_refuses_another_missing_file(tmp_path, monkeypatch):
    profile_module = importlib.import_module("workbench.profile")   # workbench.profile is the function
    default = tmp_path / "data" / "mobilenet_v2.onnx"
    monkeypatch.setattr(profile_module, "DEFAULT_MODEL", default)
    assert profile_module.model_file(default) == default and default.is_file()
    assert engine.load(default).input_shape == (3, 224, 224)
    with pytest.raises(ValueError, match="not found"):
        profile_module.model_file(tmp_path / "another.onnx")


@pytest.fixture
def zoo_folder(tmp_path, monkeypatch):
    """Zoo models are written to a temporary data/ folder, not the repository's."""
    monkeypatch.setattr(models_module, "DATA_FOLDER", tmp_path / "data")
    return tmp_path / "data"


def test_model_file_takes_a_zoo_name_and_writes_its_file_once(zoo_folder):
    profile_module = importlib.import_module("workbench.profile")
    path = profile_module.model_file("mobilenet_v1")
    assert path == zoo_folder / "mobilenet_v1.onnx" and path.is_file()
    written = path.stat().st_mtime_ns
    assert profile_module.model_file("mobilenet_v1") == path and path.stat().st_mtime_ns == written
    assert engine.load(path).input_shape == (3, 224, 224)


def test_profile_takes_a_zoo_model_name(zoo_folder, ceilings):
    frame = workbench.profile("mobilenet_v1", threads=1, repeats=1, warmup=0, ceilings=ceilings)
    assert len(frame) == len(engine.load(zoo_folder / "mobilenet_v1.onnx").plan(1, machine=run_machine(ceilings)).steps)
    assert frame["flops"].sum() == engine.model.total_flops(engine.load(zoo_folder / "mobilenet_v1.onnx"))


@pytest.mark.parametrize("model", ["mobilenet_v9", "resnet50.onnx", "MobileNet_V2"])
def test_a_name_not_in_the_zoo_is_a_missing_file_naming_the_zoo_models(model, zoo_folder):
    with pytest.raises(ValueError, match="not found") as refused:
        workbench.profile(model)
    assert all(name in str(refused.value) for name in model_names()) and not zoo_folder.exists()


def test_load_model_builds_a_zoo_model_at_another_resolution_in_memory(zoo_folder):
    assert load_model("mobilenet_v2", resolution=64).input_shape == (3, 64, 64) and not zoo_folder.exists()
    with pytest.raises(ValueError, match="resolution"):
        load_model("mobilenet_v2", resolution=8)
    with pytest.raises(ValueError, match="zoo model name"):
        load_model("some/file.onnx", resolution=64)


@pytest.mark.parametrize("fast", ["1", ""])
def test_setup_notebook_loads_the_model_with_this_machines_ceilings_and_fewer_repeats_when_fast(
        model_path, monkeypatch, fast):
    ceilings_module = importlib.import_module("workbench.ceilings")
    monkeypatch.setattr(ceilings_module, "measure_ceilings", lambda **kwargs: hand_made_ceilings())
    monkeypatch.setenv("ROOFLINE_FAST", fast)
    setup = workbench.setup_notebook(model_path, repeats=7)
    assert setup.model_path == model_path and setup.model.input_shape == (3, 64, 64)
    assert setup.ceilings.peak_gflops(1) == 90.0                   # the hand-made roofs, not measured here
    assert setup.threads == engine.available_cores()
    assert (setup.repeats, setup.fast) == ((3, True) if fast else (7, False))
    with pytest.raises(ValueError, match="not found"):
        workbench.setup_notebook(model_path.parent / "missing.onnx")


@pytest.mark.parametrize("fuse_blocks", [False, True])
def test_shapes_are_nchw_with_the_models_channels_never_the_blocked_layout(small, ceilings, fuse_blocks):
    frame = workbench.profile(small, batch=2, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=fuse_blocks)
    layers = {layer.name: layer for layer in small.layers}
    checked = 0
    for row in frame.to_dict("records"):
        assert len(row["input_shape"]) <= 4 and len(row["output_shape"]) <= 4, row["layer"]
        members = row["members"]
        if members[0] in layers:
            assert row["input_shape"] == (2, *layers[members[0]].input_shape)
            assert row["output_shape"] == (2, *layers[members[-1]].output_shape)
            checked += 1
    assert checked >= len(frame) - 2
    channels = {row["output_shape"][1] for row in frame.to_dict("records") if len(row["output_shape"]) == 4}
    assert 24 in channels            # not a multiple of 16: logical, not padded to a channel block


def test_each_step_has_its_p10_and_p90_over_the_repeats_around_the_median(small, ceilings):
    frame = workbench.profile(small, batch=1, threads=1, repeats=5, ceilings=ceilings)
    assert (frame["seconds_p10"] <= frame["seconds"]).all() and (frame["seconds"] <= frame["seconds_p90"]).all()
    timed = frame[frame["flops"] > 0]
    np.testing.assert_allclose(timed["gflops_p90"], timed["flops"] / timed["seconds_p10"] / 1e9)
    np.testing.assert_allclose(timed["gflops_p10"], timed["flops"] / timed["seconds_p90"] / 1e9)
