"""workbench.sweep: one row per (config, step), totals that add up, every finished config on
disk before the next starts, resume that re-runs nothing, invalid combinations skipped
with a reason, and the same sweep on a loopback Dask LocalCluster with the worker's host,
CPU, own ceilings and one timing at a time per host."""
from __future__ import annotations

import ast
import json
import logging
import socket
from pathlib import Path
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

import conftest
import engine
from engine.machine import machine_info
from engine.passes import find_inverted_residual_blocks
from workbench.profile import run_machine
from workbench.ceilings import Ceilings, _cache_path, cache_key
from workbench import sweep_runners
from workbench.sweep import CONFIG_COLUMNS, config_id, grid, read_table, schedule_digest, sweep, sweep_totals

LEVELS = ["L1", "L2", "L3", "DRAM"]
PEAK_PER_THREAD = 123.0   # GFLOP/s: a number no real measurement gives, to recognise these roofs


def hand_made_ceilings(key=None, machine=None) -> Ceilings:
    return conftest.hand_made_ceilings(PEAK_PER_THREAD, key=key, machine=machine)


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def steps(model_path):
    """Steps of the default (auto-fused) plan per batch: "auto" may fuse more blocks at batch 2."""
    model = engine.load(model_path)
    machine = run_machine(hand_made_ceilings())            # what the sweep's runs assume
    return {batch: len(model.plan(batch, machine=machine).steps) for batch in (1, 2)}


def test_one_row_per_config_and_step_with_config_columns_and_totals(model_path, ceilings, steps, tmp_path):
    frame = sweep(model_path, batch=[1, 2], threads=[1], tiles={"pointwise_pixels": [32, 64]}, repeats=1,
                  out=tmp_path / "sweep.parquet", ceilings=ceilings, progress=False)
    assert len(frame) == 2 * (steps[1] + steps[2])
    assert frame["config_id"].nunique() == 4
    for column in ["config_id", *CONFIG_COLUMNS, "host", "cpu_model", "run_seconds", "layer", "seconds", "flops",
                   "gflops", "bound", *(f"bytes_{lv}" for lv in LEVELS), *(f"ai_{lv}" for lv in LEVELS)]:
        assert column in frame.columns, column
    assert set(zip(frame["batch"], frame["pointwise_pixels"])) == {(1, 32), (1, 64), (2, 32), (2, 64)}
    assert (frame["pointwise_channels"] == engine.Tiles().pointwise_channels).all()   # not swept: the default
    assert (frame["host"] == socket.gethostname()).all()
    assert (frame["cpu_model"] == machine_info().cpu_model).all()
    # FLOPs are counted, not measured: twice the batch, twice the FLOPs, whatever the tiles
    flops = frame.groupby(["batch", "pointwise_pixels"])["flops"].sum()
    assert flops[(2, 32)] == flops[(2, 64)] == 2 * flops[(1, 32)] == 2 * flops[(1, 64)]

    totals = pd.DataFrame(frame.attrs["totals"])
    assert len(totals) == 4
    for row in totals.itertuples():
        rows = frame[frame["config_id"] == row.config_id]
        assert row.steps == len(rows) == steps[int(rows["batch"].iloc[0])]
        assert row.seconds == pytest.approx(rows["seconds"].sum())
        assert row.flops == rows["flops"].sum()
        assert row.gflops == pytest.approx(row.flops / row.seconds / 1e9)
        assert row.images_per_second == pytest.approx(row.batch / row.run_seconds)
        assert row.ai_L2 == pytest.approx(row.flops / rows["bytes_L2"].sum())
    pd.testing.assert_frame_equal(sweep_totals(frame), totals, check_dtype=False)


def test_totals_over_some_ops_count_only_their_steps_and_keep_the_whole_run_time(model_path, ceilings):
    frame = sweep(model_path, batch=[1], threads=[1], fuse_blocks=[False, True], repeats=1, ceilings=ceilings,
                  progress=False)
    whole = sweep_totals(frame).set_index("config_id")
    pointwise_ops = ["expand", "project", "pointwise"]
    pointwise = sweep_totals(frame, ops=pointwise_ops).set_index("config_id")
    assert len(pointwise) == 2
    for config, rows in frame[frame["op"].isin(pointwise_ops)].groupby("config_id"):
        assert pointwise.loc[config, "steps"] == len(rows) < whole.loc[config, "steps"]
        assert pointwise.loc[config, "seconds"] == pytest.approx(rows["seconds"].sum())
        assert pointwise.loc[config, "bytes_L2"] == pytest.approx(rows["bytes_L2"].sum())
        assert pointwise.loc[config, "run_seconds"] == whole.loc[config, "run_seconds"]
    blocks = sweep_totals(frame, ops="block")                       # one op by name; unfused: no block steps
    assert list(blocks["fuse_blocks"]) == [True] and blocks["steps"].iloc[0] == (frame["op"] == "block").sum()


def test_the_table_on_disk_equals_the_returned_one_and_attrs_do_not_break_parquet(model_path, ceilings, tmp_path):
    out = tmp_path / "sweep.parquet"
    frame = sweep(model_path, batch=[1], threads=[1], fuse_blocks=[False, True], repeats=1, out=out,
                  ceilings=ceilings, progress=False)
    on_disk = read_table(out)
    pd.testing.assert_frame_equal(on_disk, frame, check_dtype=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.parquet"]   # no temporary file left behind
    frame.to_parquet(tmp_path / "copy.parquet")   # attrs are JSON-safe row dicts, not DataFrames
    assert set(frame["fuse_blocks"]) == {False, True}
    assert (frame[frame["fuse_blocks"]]["op"] == "block").sum() == 17


def fused_members(rows: pd.DataFrame) -> set[tuple[str, ...]]:
    """Members of the fused-block rows of a sweep table (stored as the str() of a tuple)."""
    return {tuple(ast.literal_eval(members)) for members in rows.loc[rows["op"] == "block", "members"]}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_sweep_over_off_auto_and_all_gives_three_configs_and_auto_fuses_what_fusion_wins_picks(
        model_path, ceilings, tmp_path, suffix):
    threads = min(2, engine.available_cores())
    out = tmp_path / f"sweep{suffix}"
    # batch 8: some of the 64x64 model's early blocks then have depthwise inputs larger than
    # the L2 caches (what "auto" fuses while the intermediates stay in L3), the rest not
    frame = sweep(model_path, batch=[8], threads=[threads], fuse_blocks=[False, "auto", True], repeats=1, out=out,
                  ceilings=ceilings, progress=False)
    totals = pd.DataFrame(frame.attrs["totals"])
    assert list(totals["fuse_blocks"]) == [False, "auto", True]
    assert [c.split(",")[2] for c in totals["config_id"]] == ["fuse_blocks=0", "fuse_blocks=auto", "fuse_blocks=1"]
    model = engine.load(model_path)
    every_block = {tuple(layer.name for layer in block if layer is not None)
                   for block in find_inverted_residual_blocks(model.graph)}
    expected = conftest.blocks_auto_fuses(model, threads, 8, ceilings)
    assert 0 < len(expected) < len(every_block)          # "auto" differs from both False and True here
    by_value = {value: frame[frame["config_id"] == totals["config_id"][i]] for i, value in
                enumerate(totals["fuse_blocks"])}
    assert fused_members(by_value[False]) == set()
    assert fused_members(by_value["auto"]) == expected
    assert fused_members(by_value[True]) == every_block
    assert by_value["auto"]["fused"].sum() == len(expected)
    assert (by_value["auto"]["fuse_blocks"] == "auto").all() and (by_value[True]["fuse_blocks"] == True).all()  # noqa: E712
    # the file gives back the same table, "auto" and the bools included
    on_disk = read_table(out)
    pd.testing.assert_frame_equal(on_disk, frame, check_dtype=False)
    assert list(on_disk.groupby("config_id", sort=False)["fuse_blocks"].first()) == [False, "auto", True]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_resume_reads_a_table_of_booleans_from_before_auto_and_adds_auto_configs(model_path, ceilings, tmp_path,
                                                                                suffix, monkeypatch):
    """A table with only False/True in fuse_blocks is stored as before "auto" existed (a bool
    column in Parquet, True/False in CSV); resuming it with "auto" added runs only the "auto"
    config, and the mixed table (text on disk) reads back as False, True and "auto"."""
    out = tmp_path / f"sweep{suffix}"
    sweep(model_path, batch=[1], threads=[1], fuse_blocks=[False, True], repeats=1, out=out, ceilings=ceilings,
          progress=False)
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        assert str(pq.read_schema(out).field("fuse_blocks").type) == "bool"
    else:
        assert set(pd.read_csv(out)["fuse_blocks"].map(str)) == {"False", "True"}
    old = read_table(out)
    assert old["fuse_blocks"].dtype == bool

    calls = []
    real_profile = sweep_runners.profile
    monkeypatch.setattr(sweep_runners, "profile",
                        lambda *a, **k: (calls.append(k["fuse_blocks"]), real_profile(*a, **k))[1])
    frame = sweep(model_path, batch=[1], threads=[1], fuse_blocks=[False, "auto", True], repeats=1, out=out,
                  resume=True, ceilings=ceilings, progress=False)
    assert calls == ["auto"]
    assert list(frame.groupby("config_id", sort=False)["fuse_blocks"].first()) == [False, True, "auto"]
    kept = frame[frame["config_id"].isin(old["config_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old, check_dtype=False)            # the old rows, not re-measured
    if suffix == ".parquet":
        assert str(pq.read_schema(out).field("fuse_blocks").type) in ("string", "large_string")
    pd.testing.assert_frame_equal(read_table(out), frame, check_dtype=False)
    calls.clear()
    sweep(model_path, batch=[1], threads=[1], fuse_blocks=["auto", False], repeats=1, out=out, resume=True,
          ceilings=ceilings, progress=False)
    assert calls == []                                                       # everything is in the file


def test_an_interrupted_sweep_keeps_every_finished_config_and_resume_runs_only_the_rest(
        model_path, ceilings, tmp_path, monkeypatch):
    out = tmp_path / "sweep.csv"
    calls = []
    real_profile = sweep_runners.profile

    def interrupted_on_the_third(*args, **kwargs):
        calls.append(kwargs["batch"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_profile(*args, **kwargs)

    monkeypatch.setattr(sweep_runners, "profile", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        sweep(model_path, batch=[1, 2, 3, 4], threads=[1], repeats=1, out=out, ceilings=ceilings, progress=False)
    kept = read_table(out)
    assert sorted(kept["batch"].unique()) == [1, 2]

    calls.clear()
    monkeypatch.setattr(sweep_runners, "profile", lambda *a, **k: (calls.append(k["batch"]), real_profile(*a, **k))[1])
    frame = sweep(model_path, batch=[1, 2, 3, 4], threads=[1], repeats=1, out=out, resume=True, ceilings=ceilings,
                  progress=False)
    assert calls == [3, 4]
    assert sorted(frame["batch"].unique()) == [1, 2, 3, 4]
    assert frame.groupby("config_id")["step"].apply(lambda s: s.is_unique).all()   # no config twice
    # the configs from before the interruption are the very same rows, not re-measured
    before = kept.set_index(["config_id", "step"])["seconds"]
    after = frame.set_index(["config_id", "step"])["seconds"].loc[before.index]
    np.testing.assert_array_equal(after.to_numpy(), before.to_numpy())
    pd.testing.assert_frame_equal(read_table(out), frame, check_dtype=False)


@pytest.mark.parametrize("suffix, damage", [(".parquet", b"PAR1 not really parquet"), (".csv", b"\x00\xff garbage"),
                                           (".csv", b"a,b\n1,2\n")])
def test_resume_from_an_unreadable_table_keeps_it_aside_and_starts_afresh(model_path, ceilings, tmp_path, suffix,
                                                                          damage):
    out = tmp_path / f"sweep{suffix}"
    out.write_bytes(damage)
    with pytest.warns(UserWarning, match="cannot resume"):
        frame = sweep(model_path, batch=[1], threads=[1], repeats=1, out=out, resume=True, ceilings=ceilings,
                      progress=False)
    kept = list(tmp_path.glob(f"sweep{suffix}.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damage          # the user's file is not lost
    assert sorted(frame["batch"].unique()) == [1]
    pd.testing.assert_frame_equal(read_table(out), frame, check_dtype=False)


def test_without_resume_an_existing_table_is_replaced(model_path, ceilings, tmp_path):
    out = tmp_path / "sweep.parquet"
    sweep(model_path, batch=[2], threads=[1], repeats=1, out=out, ceilings=ceilings, progress=False)
    frame = sweep(model_path, batch=[1], threads=[1], repeats=1, out=out, ceilings=ceilings, progress=False)
    assert set(read_table(out)["batch"]) == set(frame["batch"]) == {1}


def test_invalid_combinations_are_skipped_with_their_reason_and_the_rest_runs(model_path, ceilings, steps, caplog):
    cores = engine.available_cores()
    with caplog.at_level(logging.WARNING, logger="workbench.sweep"):
        frame = sweep(model_path, batch=[1, 0], threads=[1, cores + 1], tiles={"pointwise_channels": [16, 20]},
                      repeats=1, ceilings=ceilings, progress=False)
    assert frame["config_id"].nunique() == 1 and len(frame) == steps[1]
    skipped = pd.DataFrame(frame.attrs["skipped"])
    assert len(skipped) == 7
    by_config = {(r.batch, r.threads, r.pointwise_channels): r.reason for r in skipped.itertuples()}
    assert "batch" in by_config[(0, 1, 16)]
    assert f"threads={cores + 1}" in by_config[(1, cores + 1, 16)]
    assert "pointwise_channels" in by_config[(1, 1, 20)]
    assert sum("skipped" in r.message for r in caplog.records) == 7


# ---------------------------------------------------------------------------- tile schedules

def _project_layers(model_path) -> list[str]:
    model = engine.load(model_path)
    return [step.name for step in model.plan(1, fuse_blocks=False).steps if step.op == "project"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_sweep_over_schedules_runs_each_steps_own_tiles_under_its_label_and_resume_runs_only_new_ones(
        model_path, ceilings, tmp_path, suffix, monkeypatch):
    out = tmp_path / f"sweep{suffix}"
    project = _project_layers(model_path)[3]
    by_hand = engine.TileSchedule(engine.Tiles(depthwise_rows=4), {project: engine.Tiles(pointwise_pixels=128)},
                                  {project: True})
    frame = sweep(model_path, threads=1, fuse_blocks=False, repeats=1, ceilings=ceilings, progress=False, out=out,
                  tiles={"pointwise_pixels": [32]})                            # a table of tile values first
    frame = sweep(model_path, threads=1, fuse_blocks=False, repeats=1, ceilings=ceilings, progress=False, out=out,
                  resume=True, schedules={"by hand": by_hand, "defaults": engine.Tiles()})
    ids = list(frame.groupby("config_id", sort=False).size().index)
    assert ids[1:] == ["batch=1,threads=1,fuse_blocks=0,schedule=by hand", "batch=1,threads=1,fuse_blocks=0,"
                                                                           "schedule=defaults"]
    hand = frame[frame["schedule"] == "by hand"].set_index("layer")
    assert hand.loc[project, "op"] == "block" and hand.loc[project, "block_rows"] == 0       # fused by the schedule
    assert hand.loc[project, "pointwise_pixels"] == 128                                     # its own tiles
    depthwise = hand[hand["op"] == "depthwise"]
    assert len(depthwise) and (depthwise["depthwise_rows"] == 4).all() and (depthwise["pointwise_pixels"] == 64).all()
    defaults = frame[frame["schedule"] == "defaults"]
    assert (defaults["op"] != "block").all() and (defaults["pointwise_pixels"] == 64).all()
    assert frame.loc[frame["config_id"] == ids[0], "schedule"].isna().all()
    totals = sweep_totals(frame).set_index("config_id")
    assert totals.loc[ids[0], "pointwise_pixels"] == 32 and pd.isna(totals.loc[ids[1], "pointwise_pixels"])
    assert list(totals["schedule"].iloc[1:]) == ["by hand", "defaults"]
    pd.testing.assert_frame_equal(read_table(out), frame, check_dtype=False)

    calls = []
    real = sweep_runners.profile
    monkeypatch.setattr(sweep_runners, "profile", lambda *a, **k: (calls.append(k["tiles"]), real(*a, **k))[1])
    again = sweep(model_path, threads=1, fuse_blocks=False, repeats=1, ceilings=ceilings, progress=False, out=out,
                  resume=True, schedules=[by_hand, engine.Tiles()])
    # unnamed, a schedule is labelled by a digest of its contents: by_hand is new under it, the defaults too
    digest = config_id({"batch": 1, "threads": 1, "fuse_blocks": False, "schedule": schedule_digest(by_hand)})
    assert calls == [by_hand, engine.TileSchedule()] and digest in set(again["config_id"])
    calls.clear()
    sweep(model_path, threads=1, fuse_blocks=False, repeats=1, ceilings=ceilings, progress=False, out=out,
          resume=True, schedules={"by hand": by_hand})
    assert calls == []                                                 # in the file already: not run again


def test_tuned_runs_the_schedule_cached_on_the_machine_and_is_skipped_where_there_is_none(
        model_path, ceilings, tmp_path, monkeypatch):
    from engine import schedules

    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    model = engine.load(model_path)
    project = _project_layers(model_path)[1]
    key = model.schedule_key(1, 1, run_machine(ceilings))
    schedules.save(schedules.cache_path(key), engine.TileSchedule(overrides={project: engine.Tiles(
        pointwise_channels=32)}), key)
    elsewhere = engine.TileSchedule(tuned_for=schedules.ScheduleKey(key.model, 1, 1, "Another CPU", key.lanes,
                                                                    key.engine_version))
    frame = sweep(model_path, batch=[1, 2], threads=1, fuse_blocks=False, repeats=1, ceilings=ceilings,
                  progress=False, schedules={"tuned": "tuned", "elsewhere": elsewhere})
    assert list(frame["config_id"].unique()) == ["batch=1,threads=1,fuse_blocks=0,schedule=tuned"]
    assert frame.set_index("layer").loc[project, "pointwise_channels"] == 32
    skipped = pd.DataFrame(frame.attrs["skipped"]).set_index("config_id")
    assert "no tuned schedule" in skipped.loc["batch=2,threads=1,fuse_blocks=0,schedule=tuned", "reason"]
    for batch in (1, 2):
        reason = skipped.loc[f"batch={batch},threads=1,fuse_blocks=0,schedule=elsewhere", "reason"]
        assert "cpu_model 'Another CPU'" in reason
    assert set(skipped["schedule"]) == {"tuned", "elsewhere"}


def test_config_id_is_stable_and_readable():
    config = {"batch": 8, "threads": 2, "fuse_blocks": True,
              **engine.Tiles(pointwise_pixels=32, pointwise_channels=16).as_dict()}
    assert config_id(config) == ("batch=8,threads=2,fuse_blocks=1,pointwise_pixels=32,pointwise_channels=16,"
                                 "depthwise_rows=16,block_rows=0")
    assert config_id({**config, "fuse_blocks": "auto"}).split(",")[2] == "fuse_blocks=auto"
    assert config_id({**config, "fuse_blocks": np.bool_(False)}).split(",")[2] == "fuse_blocks=0"


def test_the_default_fuse_blocks_is_the_engines():
    (config,) = grid()
    assert config["fuse_blocks"] == engine.DEFAULT_FUSE_BLOCKS
    assert [c["fuse_blocks"] for c in grid(fuse_blocks=[True, "auto", True, False])] == [True, "auto", False]


@pytest.mark.parametrize("kwargs,match", [
    (dict(tiles={"rows": [1]}), "unknown tile field"),
    (dict(batch=[]), "at least one"),
    (dict(fuse_blocks=["yes"]), "fuse_blocks"),
    (dict(fuse_blocks=[False, "Auto"]), "fuse_blocks"),
    (dict(fuse_blocks=[1]), "fuse_blocks"),
    (dict(out="sweep.txt"), "parquet or .csv"),
    (dict(repeats=0), "repeats"),
    (dict(tiles={"pointwise_pixels": [32]}, schedules=[engine.TileSchedule()]), "not both"),
    (dict(schedules={"a=b": engine.TileSchedule()}), "label"),
])
def test_bad_arguments_are_refused_before_anything_runs(model_path, ceilings, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sweep(model_path, ceilings=ceilings, progress=False, **kwargs)


# ---------------------------------------------------------------------------- on a Dask cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two single-threaded worker processes on loopback, with a ceilings cache of hand-made
    roofs (keyed to this machine) that the workers load as their own."""
    distributed = pytest.importorskip("distributed")
    data_dir = tmp_path_factory.mktemp("data")
    machine = machine_info()
    key = cache_key(machine, "quick")
    path = _cache_path(data_dir / "ceilings", key)
    path.parent.mkdir(parents=True)
    cached = hand_made_ceilings(key=key)
    cached.measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps(cached.to_json_dict()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROOFLINE_DATA_DIR", str(data_dir))   # inherited by the spawned workers
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None) as local_cluster:
            yield local_cluster


def test_a_cluster_sweep_runs_on_the_workers_one_timing_per_host_with_their_own_ceilings(
        cluster, model_path, steps, tmp_path):
    from distributed import Client

    out = tmp_path / "cluster.parquet"
    cores = engine.available_cores()
    with Client(cluster, set_as_default=False) as client:
        frame = sweep(model_path, batch=[1, 2], threads=[1, cores + 1], tiles={"pointwise_pixels": [32, 64]},
                      repeats=2, out=out, client=client, progress=False)
    assert frame["config_id"].nunique() == 4 and len(frame) == 2 * (steps[1] + steps[2])
    assert (frame["host"] == socket.gethostname()).all()
    assert (frame["cpu_model"] == machine_info().cpu_model).all()
    # the roofs are the workers' own (their cache), not measured and not the caller's
    assert frame["attainable_gflops"].max() == pytest.approx(PEAK_PER_THREAD)
    skipped = pd.DataFrame(frame.attrs["skipped"])
    assert len(skipped) == 4 and skipped["reason"].str.contains(f"threads={cores + 1}").all()
    assert (skipped["host"] == socket.gethostname()).all()        # decided on the worker, by its cores
    # two workers, one host: the timed windows never overlap (the per-host lock)
    windows = frame.groupby("config_id")[["started_at", "finished_at"]].first().sort_values("started_at")
    assert (windows["started_at"].to_numpy()[1:] >= windows["finished_at"].to_numpy()[:-1]).all()
    pd.testing.assert_frame_equal(read_table(out), frame, check_dtype=False)


def test_a_cluster_sweep_compares_each_workers_own_tuned_schedule_with_another(cluster, model_path, tmp_path):
    """"tuned" is looked up on the worker, in its cache (the fixture's ROOFLINE_DATA_DIR,
    which the workers inherited), keyed to the machine its ceilings describe."""
    import os

    from distributed import Client
    from engine import schedules

    model = engine.load(model_path)
    project = _project_layers(model_path)[2]
    key = model.schedule_key(1, 1, run_machine(hand_made_ceilings()))
    path = schedules.cache_path(key, Path(os.environ["ROOFLINE_DATA_DIR"]) / "schedules")
    schedules.save(path, engine.TileSchedule(overrides={project: engine.Tiles(pointwise_pixels=16)}), key)
    try:
        by_hand = engine.TileSchedule(overrides={project: engine.Tiles(pointwise_pixels=256)})
        with Client(cluster, set_as_default=False) as client:
            frame = sweep(model_path, threads=1, fuse_blocks=False, repeats=1, client=client, progress=False,
                          schedules={"tuned": "tuned", "by hand": by_hand})
    finally:
        path.unlink()
    pixels = frame[frame["layer"] == project].set_index("schedule")["pointwise_pixels"]
    assert pixels.to_dict() == {"tuned": 16, "by hand": 256}
    assert frame.attrs["skipped"] == []


def test_a_cluster_sweep_by_scheduler_address_resumes_from_the_file(cluster, model_path, tmp_path):
    out = tmp_path / "cluster.csv"
    first = sweep(model_path, batch=[1], threads=[1], repeats=1, out=out, client=cluster.scheduler_address,
                  progress=False)
    again = sweep(model_path, batch=[1, 2], threads=[1], repeats=1, out=out, resume=True,
                  client=cluster.scheduler_address, progress=False)
    assert sorted(again["batch"].unique()) == [1, 2]
    kept = again[again["batch"] == 1].reset_index(drop=True)
    np.testing.assert_array_equal(kept["started_at"], first["started_at"])   # batch 1 was not run again
