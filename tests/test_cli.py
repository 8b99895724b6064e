"""`roofline-workbench` run in-process through workbench.cli.main: every subcommand does its
job on a small model (ceilings measured by a stand-in, so fast and machine-independent),
and bad flags or values end with status 2 and one line on stderr, never a traceback."""
from __future__ import annotations

import argparse
import json
import re

import pandas as pd
import pytest

import engine
from workbench import ceilings as ceilings_module
from workbench.ceilings import Ceilings
from workbench import models as models_module
from workbench.cli import build_parser, main
from workbench.models import model_names
from workbench.sweep import read_table

LEVELS = ["L1", "L2", "L3", "DRAM"]


def hand_made_ceilings(**_) -> Ceilings:
    rows = []
    for threads in (1, 2):
        rows.append((threads, "fp32_fma", 90.0 * threads, "GFLOP/s"))
        for level, bandwidth in zip(LEVELS, (180, 90, 60, 15)):
            rows.append((threads, level, float(bandwidth * threads), "GB/s"))
    table = pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])
    return Ceilings(table=table, machine={"cpu_model": "Hand-made CPU", "cores": 2},
                    measured_at="2026-01-01T00:00:00+00:00",
                    key={"cpu_model": "Hand-made CPU", "cores": 2, "lanes": 8, "package_version": "0", "mode": "quick"})


@pytest.fixture(autouse=True)
def no_measuring(monkeypatch):
    """Every subcommand asks workbench.ceilings.measure_ceilings; it answers at once."""
    calls = []
    monkeypatch.setattr(ceilings_module, "measure_ceilings", lambda **kw: (calls.append(kw), hand_made_ceilings())[1])
    return calls


@pytest.fixture(scope="module")
def model_path(model_path):
    """conftest's model file, as the string a command line holds."""
    return str(model_path)


def run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_ceilings_prints_the_roofs_per_thread_count(capsys, no_measuring):
    status, out, _ = run(["ceilings", "--refresh"], capsys)
    assert status == 0
    assert "Hand-made CPU" in out and "fp32_fma" in out and "DRAM" in out
    assert re.search(r"^\s*2\s+.*\b180\b", out, re.M)           # threads 2: peak 180 GFLOP/s
    header = next(line for line in out.splitlines() if "L1" in line and "fp32_fma" in line)
    assert [column.split()[0] for column in re.split(r"\s{2,}", header.strip())] == \
        ["L1", "L2", "L3", "DRAM", "fp32_fma"]                  # memory-hierarchy order, then the FMA peak
    assert "L1 (GB/s)" in header and "fp32_fma (GFLOP/s)" in header
    assert no_measuring == [{"quick": True, "refresh": True}]


def test_profile_prints_the_slowest_layers_and_a_total(model_path, capsys):
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--top", "5"], capsys)
    assert status == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["layer", "op"] and len(lines) == 1 + 5 + 1
    assert lines[-1].startswith("total ") and "batch 1, threads 1" in lines[-1]
    times = [float(line.split()[2]) for line in lines[1:-1]]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("command", ["ceilings", "profile", "report", "tune", "sweep", "compare"])
def test_every_option_of_every_command_has_help_and_every_value_option_its_default(command, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    subparser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert subparser.description and subparser.description in text
    for action in subparser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1]
        assert action.help, f"{command} {flag} has no help"
        if action.nargs != 0 and not action.required:          # it takes a value: say what happens without it
            shown = " ".join(subparser._get_formatter()._get_help_string(action).split())
            assert "default" in shown, f"{command} {flag}: {shown!r}"
            assert shown in text


def test_profile_help_says_the_defaults_of_model_batch_repeats_and_top(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--batch BATCH", "(default 1)"), ("--repeats REPEATS", "(default 5)"),
                          ("--top TOP", "(default 20)"), ("--threads THREADS", "default: all cores"),
                          ("--model NAME|FILE", "(default mobilenet_v2)")):
        start = text.index(flag, text.index("options:"))
        assert default in text[start:start + 160], (flag, text[start:start + 160])


@pytest.mark.parametrize("command", ["profile", "report", "tune", "sweep", "compare"])
def test_every_model_flag_lists_the_zoo_names_and_says_the_default(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--model NAME|FILE", text.index("options:"))
    shown = text[start:text.index("--", start + 20)]
    assert all(name in shown for name in model_names()), shown
    assert "(default mobilenet_v2)" in shown and "ONNX file" in shown


@pytest.fixture
def zoo_folder(tmp_path, monkeypatch):
    """Zoo models are written to a temporary data/ folder, not the repository's."""
    monkeypatch.setattr(models_module, "DATA_FOLDER", tmp_path / "data")
    return tmp_path / "data"


def test_profile_takes_a_zoo_model_name_writes_its_file_and_report_names_it(zoo_folder, tmp_path, capsys):
    status, out, _ = run(["profile", "--model", "mobilenet_v1", "--threads", "1", "--repeats", "1", "--top", "3"],
                         capsys)
    assert status == 0 and (zoo_folder / "mobilenet_v1.onnx").is_file()
    assert "features.1" in out or "features.2" in out or "Conv" in out
    assert "total" in out.splitlines()[-1]
    status, _, _ = run(["report", "--model", "mobilenet_v1", "--threads", "1", "--repeats", "1",
                        "--out", tmp_path / "report"], capsys)
    assert status == 0
    page = next((tmp_path / "report").glob("*.html")).read_text()
    assert "Roofline report: mobilenet_v1" in page


def test_an_unknown_model_name_exits_2_naming_the_zoo_models(zoo_folder, capsys):
    status, _, err = run(["profile", "--model", "mobilenet_v9"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "mobilenet_v9" in err and all(name in err for name in model_names()), err
    assert not zoo_folder.exists()


def test_profile_table_shows_the_ai_at_the_level_its_bound_column_names(model_path, capsys):
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--top", "1000",
                          "--fuse-blocks", "false"], capsys)
    assert status == 0
    lines = out.strip().splitlines()
    header = lines[0]
    bound_levels = {m.group(1) for line in lines[1:-1] for m in [re.search(r"memory \((\w+)\)$", line)] if m}
    assert bound_levels, "no memory-bound row to check"
    for level in LEVELS:
        assert f"AI {level}" in header
    # ms with 3 significant digits, shares and roof fractions in per cent
    first = lines[1].split()
    assert re.fullmatch(r"\d+(\.\d+)?", first[2]) and len(first[2].replace(".", "").lstrip("0")) >= 3
    assert first[3].endswith("%") and re.search(r"\d%$", lines[1].split("  ")[-2].strip() or "0%")


def test_report_writes_self_contained_html_and_the_records(model_path, tmp_path, capsys):
    out = tmp_path / "report"
    status, printed, _ = run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--out", out],
                             capsys)
    assert status == 0
    for name in ("report.html", "layers.csv", "layers.parquet"):
        assert (out / name).is_file() and str(out / name) in printed
    page = (out / "report.html").read_text()
    assert "Plotly" in page and "<script" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)   # plotly.js inline: no CDN, works offline
    assert len(pd.read_parquet(out / "layers.parquet")) == len(pd.read_csv(out / "layers.csv")) > 0


def test_report_with_fuse_blocks_auto_records_and_states_it(model_path, tmp_path, capsys):
    out = tmp_path / "report"
    status, _, _ = run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--fuse-blocks", "auto",
                        "--out", out], capsys)
    assert status == 0
    assert set(pd.read_csv(out / "layers.csv")["fuse_blocks"]) == {"auto"}
    assert set(pd.read_parquet(out / "layers.parquet")["fuse_blocks"]) == {"auto"}
    assert "thread(s), auto fusion (" in (out / "report.html").read_text()


def test_a_report_before_after_view_of_two_fusion_settings_is_labelled_with_them(model_path, tmp_path):
    from workbench.report import write_report
    from workbench.profile import profile

    model = engine.load(model_path)
    unfused = profile(model, threads=1, repeats=1, warmup=0, ceilings=hand_made_ceilings(), fuse_blocks=False)
    every = profile(model, threads=1, repeats=1, warmup=0, ceilings=hand_made_ceilings(), fuse_blocks=True)
    write_report(every, tmp_path / "a", ceilings=hand_made_ceilings(), before=unfused, images=False)
    page = (tmp_path / "a" / "report.html").read_text()
    assert re.search(r"blocks unfused (→|\\u2192) all blocks fused at L2", page)   # the title, maybe JSON-escaped
    write_report(every, tmp_path / "b", ceilings=hand_made_ceilings(), before=every, images=False)
    page = (tmp_path / "b" / "report.html").read_text()
    assert re.search(r"before (→|\\u2192) after at L2", page)


def test_sweep_writes_the_grid_and_resume_runs_only_new_configs(model_path, tmp_path, capsys):
    out = tmp_path / "sweep.parquet"
    common = ["sweep", "--model", model_path, "--threads", "1", "--repeats", "1", "--no-progress", "--out", out]
    status, printed, _ = run([*common, "--batch", "1", "2", "--pointwise-pixels", "32", "64"], capsys)
    assert status == 0 and "4 configs" in printed
    first = read_table(out)
    assert first["config_id"].nunique() == 4

    status, printed, _ = run([*common, "--batch", "1", "2", "4", "--pointwise-pixels", "32", "64", "--resume"], capsys)
    assert status == 0 and "6 configs" in printed
    table = read_table(out)
    assert table["config_id"].nunique() == 6
    kept = table[table["config_id"].isin(first["config_id"])]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), first, check_dtype=False)   # not re-run


def test_sweep_fuse_blocks_flag_alone_means_fused_and_with_values_means_each(model_path, tmp_path, capsys):
    common = ["sweep", "--model", model_path, "--threads", "1", "--repeats", "1", "--no-progress"]
    assert run([*common, "--out", tmp_path / "a.csv", "--fuse-blocks"], capsys)[0] == 0
    assert set(read_table(tmp_path / "a.csv")["fuse_blocks"]) == {True}
    assert run([*common, "--out", tmp_path / "b.csv", "--fuse-blocks", "false", "true"], capsys)[0] == 0
    assert set(read_table(tmp_path / "b.csv")["fuse_blocks"]) == {False, True}


def test_sweep_fuse_blocks_takes_auto_among_its_values(model_path, tmp_path, capsys):
    common = ["sweep", "--model", model_path, "--threads", "1", "--repeats", "1", "--no-progress"]
    status, printed, _ = run([*common, "--out", tmp_path / "c.parquet", "--fuse-blocks", "false", "auto", "TRUE"],
                             capsys)
    assert status == 0 and "3 configs" in printed
    table = read_table(tmp_path / "c.parquet")
    assert list(table.groupby("config_id", sort=False)["fuse_blocks"].first()) == [False, "auto", True]
    assert table["config_id"].str.contains("fuse_blocks=auto").sum() == (table["fuse_blocks"] == "auto").sum() > 0


@pytest.mark.parametrize("command", ["profile", "report"])
@pytest.mark.parametrize("flags,expected", [
    ([], engine.DEFAULT_FUSE_BLOCKS), (["--fuse-blocks"], True), (["--fuse-blocks", "auto"], "auto"),
    (["--fuse-blocks", "AUTO"], "auto"), (["--fuse-blocks", "true"], True), (["--fuse-blocks", "false"], False),
    (["--fuse-blocks", "--batch", "2"], True),                  # alone before another flag: true, as it used to
])
def test_profile_and_report_fuse_blocks_takes_an_optional_value(command, flags, expected):
    args = build_parser().parse_args([command, *flags, *(["--out", "r"] if command == "report" else [])])
    assert args.fuse_blocks == expected and type(args.fuse_blocks) is type(expected)


def test_profile_with_fuse_blocks_auto_runs_auto_and_says_so(model_path, capsys):
    from engine.passes import find_inverted_residual_blocks
    from engine.config import RunConfig
    from engine.fusion import fusion_wins

    # batch 8: the 64x64 model's early blocks then have depthwise inputs larger than an L2
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--batch", "8", "--repeats", "1",
                          "--top", "1000", "--fuse-blocks", "auto"], capsys)
    assert status == 0
    model = engine.load(model_path)
    from workbench.profile import run_machine

    config = RunConfig(threads=1, tiles=engine.Tiles(), fuse_blocks="auto",
                       machine=run_machine(ceilings_module.measure_ceilings()))
    picked = [b for b in find_inverted_residual_blocks(model.graph) if fusion_wins(b, config, 8)]
    assert 0 < len(picked) < 17
    total = out.strip().splitlines()[-1]
    assert total.endswith(f"auto fusion ({len(picked)} block{'s' if len(picked) != 1 else ''} fused)"), total
    assert sum(line.split()[1] == "block" for line in out.strip().splitlines()[1:-1]) == len(picked)


# ---------------------------------------------------------------------------- tune and --tiles

@pytest.fixture
def schedule_cache(tmp_path, monkeypatch):
    """Tuned schedules are cached under tmp_path, not in the repository's data/."""
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data" / "schedules"


def test_tune_writes_a_schedule_keyed_to_its_run_and_caches_it(model_path, tmp_path, capsys, schedule_cache):
    out = tmp_path / "schedule.json"
    status, printed, _ = run(["tune", "--model", model_path, "--threads", "1", "--budget", "3", "--repeats", "3",
                              "--no-progress", "--out", out], capsys)
    assert status == 0
    schedule = engine.TileSchedule.load(out)
    model = engine.load(model_path)
    assert schedule.tuned_for == model.schedule_key(1, 1)
    assert schedule.overrides or schedule.fused
    assert re.search(r"whole run .*: [\d.]+ ms -> [\d.]+ ms", printed) and f"--tiles {out}" in printed
    assert len(json.loads(out.read_text())["trials"]) > 0
    assert len(list(schedule_cache.glob("*.json"))) == 1          # model.run(tiles="tuned") finds it


def test_profile_and_report_run_a_saved_schedule_step_by_step(model_path, tmp_path, capsys, schedule_cache):
    model = engine.load(model_path)
    layers = [s.name for s in model.plan(1, fuse_blocks=False).steps if s.op in ("project", "depthwise")]
    schedule = engine.TileSchedule(engine.Tiles(pointwise_pixels=32), {layers[0]: engine.Tiles(depthwise_rows=3),
                                                                      layers[1]: engine.Tiles(pointwise_pixels=128)},
                                   tuned_for=model.schedule_key(1, 1))
    path = schedule.save(tmp_path / "schedule.json")
    assert run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--fuse-blocks", "false",
                "--tiles", path], capsys)[0] == 0
    out = tmp_path / "report"
    status, _, _ = run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--fuse-blocks", "false",
                        "--tiles", path, "--out", out], capsys)
    assert status == 0
    rows = pd.read_csv(out / "layers.csv").set_index("layer")
    for layer in rows.index:
        tiles = schedule.tiles_for(layer)
        assert (rows.loc[layer, "pointwise_pixels"], rows.loc[layer, "depthwise_rows"]) == \
            (tiles.pointwise_pixels, tiles.depthwise_rows), layer
    assert rows.loc[layers[1], "pointwise_pixels"] == 128 and (rows["pointwise_pixels"] == 32).sum() > 10


def test_tiles_tuned_runs_the_cached_schedule_or_says_there_is_none(model_path, tmp_path, capsys, schedule_cache):
    from engine import schedules

    status, _, err = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--tiles", "tuned"],
                         capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "no tuned schedule" in err
    model = engine.load(model_path)
    key = model.schedule_key(1, 1)
    layer = next(s.name for s in model.plan(1, fuse_blocks=False).steps if s.op == "project")
    schedules.save(schedules.cache_path(key), engine.TileSchedule(overrides={layer: engine.Tiles(pointwise_pixels=8)}),
                   key)
    out = tmp_path / "report"
    assert run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--fuse-blocks", "false",
                "--tiles", "tuned", "--out", out], capsys)[0] == 0
    assert pd.read_csv(out / "layers.csv").set_index("layer").loc[layer, "pointwise_pixels"] == 8


@pytest.mark.parametrize("what, expected", [
    ("another CPU", "cpu_model 'Another CPU'"), ("another batch", "batch 4 (here 1)"),
    ("another model", "model"), ("not a schedule", "a tile schedule needs"), ("missing", "not a readable"),
    ("with a tile flag", "cannot be combined"),
])
def test_a_foreign_or_broken_schedule_is_refused_with_one_line_and_status_2(what, expected, model_path, tmp_path,
                                                                           capsys):
    from engine import schedules

    model = engine.load(model_path)
    key = model.schedule_key(1, 1)
    path = tmp_path / "schedule.json"
    extra = []
    if what == "another CPU":
        schedules.save(path, engine.TileSchedule(), schedules.ScheduleKey(key.model, 1, 1, "Another CPU", key.lanes,
                                                                           key.engine_version))
    elif what == "another batch":
        engine.TileSchedule(tuned_for=model.schedule_key(4, 1)).save(path)
    elif what == "another model":
        schedules.save(path, engine.TileSchedule(), schedules.ScheduleKey("0123456789abcdef", 1, 1, key.cpu_model,
                                                                           key.lanes, key.engine_version))
    elif what == "not a schedule":
        path.write_text('{"schema": 1, "key": null, "schedule": {"tiles": 5}}')
    elif what == "with a tile flag":
        engine.TileSchedule().save(path)
        extra = ["--pointwise-pixels", "32"]
    for command in (["profile"], ["report", "--out", tmp_path / "report"]):
        status, _, err = run([*command, "--model", model_path, "--threads", "1", "--repeats", "1", "--tiles", path,
                              *extra], capsys)
        assert status == 2, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and err.startswith("roofline-workbench")
        assert expected in err
    assert not (tmp_path / "report").exists()                       # refused before anything was written


def test_sweep_takes_schedule_files_and_tuned(model_path, tmp_path, capsys, schedule_cache):
    model = engine.load(model_path)
    layer = next(s.name for s in model.plan(1, fuse_blocks=False).steps if s.op == "project")
    engine.TileSchedule(overrides={layer: engine.Tiles(pointwise_pixels=16)}).save(tmp_path / "mine.json")
    out = tmp_path / "sweep.csv"
    status, printed, _ = run(["sweep", "--model", model_path, "--threads", "1", "--repeats", "1", "--no-progress",
                              "--fuse-blocks", "false", "--schedules", tmp_path / "mine.json", "tuned", "--out", out],
                             capsys)
    assert status == 0 and "1 configs" in printed and "1 skipped" in printed
    table = read_table(out)
    assert set(table["schedule"]) == {"mine"} and table.set_index("layer").loc[layer, "pointwise_pixels"] == 16
    status, _, err = run(["sweep", "--model", model_path, "--schedules", tmp_path / "missing.json"], capsys)
    assert status == 2 and "--schedules" in err


def test_compare_prints_engines_cost_and_orts_nodes_and_writes_csv(model_path, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    status, out, _ = run(["compare", "--model", model_path, "--threads", "1", "--repeats", "2",
                          "--price-per-core-hour", "0.1", "--out", tmp_path], capsys)
    assert status == 0
    assert re.search(r"^\s*engine\s", out, re.M) and re.search(r"^\s*onnxruntime\s", out, re.M)
    assert "cost/1M @ 0.1/core-h" in out and "ONNX Runtime's slowest nodes" in out
    table = pd.read_csv(tmp_path / "compare.csv")
    assert set(table["engine"]) >= {"engine", "onnxruntime"}
    assert (tmp_path / "ort_nodes.csv").is_file()


@pytest.mark.parametrize("argv", [
    ["frobnicate"],
    [],
    ["profile", "--batch", "0"],
    ["profile", "--threads", "two"],
    ["profile", "--pointwise-channels", "20", "--model", "{model}"],
    ["profile", "--threads", "999", "--model", "{model}"],
    ["profile", "--model", "{missing}"],
    ["report", "--model", "{model}"],                              # --out is required
    ["sweep", "--batch", "0"],
    ["sweep", "--pointwise-channels", "20"],
    ["sweep", "--fuse-blocks", "maybe"],
    ["sweep", "--fuse-blocks", "false", "Automatic"],
    ["profile", "--fuse-blocks", "yes-please"],
    ["profile", "--model", "{model}", "--fuse-blocks", "sometimes"],
    ["sweep", "--model", "{missing}"],
    ["sweep", "--model", "{model}", "--out", "{tmp}/sweep.txt"],
    ["compare", "--price-per-core-hour", "0"],
    ["compare", "--price-per-core-hour", "cheap"],
    ["compare", "--model", "{missing}"],
    ["compare", "--model", "{model}", "--threads", "999"],
    ["tune", "--budget", "0"],
    ["tune", "--budget", "soon"],
    ["tune", "--repeats", "2"],
    ["tune", "--model", "{model}", "--threads", "999", "--out", "{tmp}/s.json"],
    ["tune", "--model", "{model}", "--out", "{tmp}"],
    ["tune", "--model", "{model}", "--out", "{tmp}/schedule.txt"],
    ["tune", "--model", "{missing}"],
    ["profile", "--model", "{model}", "--tiles", "{tmp}/missing.json"],
    ["sweep", "--model", "{model}", "--schedules", "{tmp}/missing.json", "--out", "{tmp}/s.csv"],
])
def test_bad_flags_and_values_exit_2_with_one_line_and_no_traceback(argv, model_path, tmp_path, capsys):
    argv = [a.format(model=model_path, missing=tmp_path / "missing.onnx", tmp=tmp_path) for a in argv]
    status, out, err = run(argv, capsys)
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("roofline-workbench")


def test_profile_table_marks_a_step_above_its_roof_and_says_why_below():
    import pandas as pd

    from workbench.cli import format_layers

    row = dict(layer="/classifier/classifier.1/Gemm", seconds=2e-4, share_of_time=0.1, gflops=50.0, flops=1e7,
               ai_L1=1.0, ai_L2=1.0, ai_L3=1.0, ai_DRAM=1.0, bound="memory", bound_level="DRAM", batch=1, threads=1)
    frame = pd.DataFrame([dict(row, op="linear", roof_fraction=1.72),
                          dict(row, layer="/features/features.1/conv/conv.1/Conv", op="depthwise", roof_fraction=0.5)])
    lines = format_layers(frame).splitlines()
    assert "172% (above roof*)" in lines[1] and "50%" in lines[2] and "above roof" not in lines[2]
    assert lines[3] == ("* above roof: the bytes model undercounts this step (its input or weights in a faster cache than "
                        "it credits), or a read-mostly stream outran the triad that measured the ceiling; "
                        "bytes=\"simulated\" tells which")


# ---------------------------------------------------------------------------- --bytes

@pytest.mark.parametrize("command", ["profile", "report"])
def test_bytes_flag_takes_model_simulated_or_both_defaulting_to_model(command):
    extra = ["--out", "r"] if command == "report" else []
    assert build_parser().parse_args([command, *extra]).bytes == "model"
    for value in ("model", "simulated", "both"):
        assert build_parser().parse_args([command, "--bytes", value, *extra]).bytes == value


@pytest.mark.parametrize("command", ["profile", "report"])
def test_a_bad_bytes_value_is_a_usage_error_naming_the_flag(command, model_path, tmp_path, capsys):
    status, out, err = run([command, "--model", model_path, "--bytes", "counters",
                            *(["--out", tmp_path / "r"] if command == "report" else [])], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--bytes" in err and "counters" in err and "simulated" in err


def _bytes_check_rows(out: str) -> list[list[str]]:
    """The rows of profile's model-vs-simulation table (family, level, ...)."""
    lines = out.split("model / cache simulation per kernel family and level")[1].strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["family", "level"])
    return [re.split(r"\s{2,}|(?<=\S)\s(?=L\d|DRAM)", line.strip()) for line in lines[header + 1:] if line.strip()]


def test_profile_bytes_both_prints_the_model_against_the_simulation_per_family_and_level(model_path, capsys):
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--top", "3",
                          "--bytes", "both"], capsys)
    assert status == 0
    assert out.splitlines()[0].split()[:2] == ["layer", "op"]       # the model places the points: as ever
    rows = _bytes_check_rows(out)
    assert rows and {row[1] for row in rows} <= {"L1", "L2", "L3", "DRAM"}
    assert any(row[0] == "depthwise" for row in rows)
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--top", "3"],
                         capsys)
    assert "cache simulation" not in out                           # model: no simulation, no table


def test_profile_bytes_simulated_places_the_layers_by_the_simulation_and_says_so(model_path, capsys):
    status, out, _ = run(["profile", "--model", model_path, "--threads", "1", "--repeats", "1", "--top", "3",
                          "--bytes", "simulated"], capsys)
    assert status == 0
    assert out.startswith("arithmetic intensities from simulated bytes")
    assert _bytes_check_rows(out)


def test_report_bytes_both_adds_the_scatter_and_the_table_and_records_the_simulated_columns(model_path, tmp_path,
                                                                                            capsys):
    out = tmp_path / "report"
    status, _, _ = run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--bytes", "both",
                        "--out", out], capsys)
    assert status == 0
    page = (out / "report.html").read_text()
    assert "Bytes: model against a cache simulation" in page and "model = simulated" in page
    assert "stand on the <b>modelled</b> bytes" in page
    records = pd.read_csv(out / "layers.csv")
    assert {f"bytes_sim_{level}" for level in LEVELS} | {f"ai_sim_{level}" for level in LEVELS} <= set(records)
    status, _, _ = run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--bytes", "simulated",
                        "--out", tmp_path / "simulated"], capsys)
    page = (tmp_path / "simulated" / "report.html").read_text()
    assert status == 0 and "stand on the <b>simulated</b> bytes" in page
    assert re.search(r"FLOP(/|\\u002f)byte, simulated bytes", page)   # the roofline says so (JSON-escaped)
    plain = tmp_path / "plain"
    run(["report", "--model", model_path, "--threads", "1", "--repeats", "1", "--out", plain], capsys)
    assert "Bytes: model against a cache simulation" not in (plain / "report.html").read_text()
