"""Every public entry checks every argument before anything runs.

One table: (entry, argument, bad value). Each bad value must raise a ValueError (engine.load:
engine.ModelError) whose message names the argument and says what it got, and must do so
before a plan is built, a kernel runs, the ceilings are measured or (compare) the model is
loaded: the `nothing_runs` fixture replaces those with functions that fail the test.
The CLI: every bad flag exits with status 2 and one line on stderr, no traceback.

Then what is accepted: numpy integers and bools wherever an int or a bool is asked for, and
input arrays in any memory layout (non-contiguous, Fortran, negative strides, read-only,
unaligned, big-endian, a transposed view), each giving bit for bit the result of the same
values in a fresh C-contiguous array. And NaN / Inf inputs, as Model.check_input documents:
they are not refused and do not change the other images of the batch (bit for bit).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

import engine
import workbench
from engine.zoo import mobilenet_v2
from conftest import hand_made_ceilings
from engine.kernels.layout import CB
from machines import ZEN3, with_lanes
from workbench import ceilings as ceilings_module
from workbench.cli import main
from workbench.compare import compare
from workbench.report import write_report
from workbench.sweep import sweep
from workbench.widgets import Explorer

RESOLUTION = 64
CORES = engine.available_cores()
NAN = float("nan")


class Context(NamedTuple):
    """What the calls of the table need."""

    model: engine.Model
    x: np.ndarray
    ceilings: object
    frame: pd.DataFrame
    explorer: Explorer
    model_path: Path
    tmp_path: Path


class _Hook:
    def on_layer(self, record):
        pass


class _BadStartHook(_Hook):
    on_run_start = 5


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model():
    return engine.load(mobilenet_v2(resolution=RESOLUTION, num_classes=10))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mobilenet_v2_64.onnx"
    path.write_bytes(mobilenet_v2(resolution=RESOLUTION, num_classes=10).SerializeToString())
    return path


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def frame(model, ceilings):
    return workbench.profile(model, threads=1, repeats=1, ceilings=ceilings)


@pytest.fixture(scope="module")
def explorer(model, ceilings):
    return Explorer(model, ceilings=ceilings, threads=1, repeats=1)


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 3, RESOLUTION, RESOLUTION), dtype=np.float32)


@pytest.fixture
def nothing_runs(monkeypatch, model, model_path, frame, explorer):
    """From here on, building a plan (every run builds or looks one up), measuring ceilings
    or loading a model fails the test: a bad argument must be refused before any of them."""
    monkeypatch.setattr(engine.Model, "_plan", _refuse("a plan lookup (a run)"))
    monkeypatch.setattr(ceilings_module, "measure_ceilings", _refuse("a ceilings measurement"))
    monkeypatch.setattr(engine, "load", _refuse("loading the model"))


def _refuse(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} happened before the bad argument was refused")
    return fail


# ---------------------------------------------------------------------------- the table

def _ints(argument, low, high, *, above=True, name=None, none_is_default=False):
    """Bad values for an int argument in low..high: out of range, huge, float, NaN, str,
    None (unless it stands for the default), bool, a numpy float."""
    values = [low - 1, -(10 ** 12), 1.5, NAN, "2", True, np.float64(low + 1), [low]]
    if not none_is_default:
        values.append(None)
    if above:
        values += [high + 1, 10 ** 12]
    return [(argument, value, name or argument) for value in values]


def _machines():
    """Bad machine descriptions: not a MachineInfo, or one with the other lane width."""
    other_lanes = with_lanes(ZEN3, 16 if CB == 8 else 8)
    return [("machine", "zen3", "machine"), ("machine", ZEN3.to_dict(), "machine"),
            ("machine", other_lanes, "ROOFLINE_LANES")]


def _bools(argument):
    return [(argument, value, argument) for value in (1, 0, "yes", None, NAN, "True")]


def _fuse_blocks(argument="fuse_blocks"):
    """Bad fuse_blocks values: the bad bools, and strings that are not exactly "auto"."""
    return [*_bools(argument), *((argument, value, argument) for value in ("Auto", "AUTO", " auto", "on", ""))]


def _call_run(ctx, **kwargs):
    return ctx.model.run(kwargs.pop("x", ctx.x), **kwargs)


def _call_plan(ctx, **kwargs):
    return ctx.model.plan(**{"batch": 1, **kwargs})


def _call_tiles(ctx, **kwargs):
    return engine.Tiles(**kwargs)


def _call_profile(ctx, **kwargs):
    return workbench.profile(kwargs.pop("model", ctx.model), **{"threads": 1, "repeats": 1, "ceilings": ctx.ceilings,
                                                            **kwargs})


def _call_sweep(ctx, **kwargs):
    return sweep(kwargs.pop("model", ctx.model_path), **{"repeats": 1, "ceilings": ctx.ceilings, "progress": False,
                                                     **kwargs})


def _call_tune(ctx, **kwargs):
    return workbench.tune(kwargs.pop("model", ctx.model), **{"threads": 1, "budget_s": 1, "ceilings": ctx.ceilings,
                                                         "progress": False, "save": False, **kwargs})


def _call_explorer(ctx, **kwargs):
    return Explorer(kwargs.pop("model", ctx.model), **{"ceilings": ctx.ceilings, "threads": 1, "repeats": 1, **kwargs})


def _call_explorer_set(ctx, **kwargs):
    return ctx.explorer.set(**kwargs)


def _call_compare(ctx, **kwargs):
    return compare(kwargs.pop("model_path", ctx.model_path), **{"threads": 1, "repeats": 1, "ceilings": ctx.ceilings,
                                                           **kwargs})


def _call_report(ctx, **kwargs):
    return write_report(kwargs.pop("frame", ctx.frame), kwargs.pop("out", ctx.tmp_path / "report"),
                        **{"ceilings": ctx.ceilings, "images": False, **kwargs})


def _input_cases():
    c, h, w = 3, RESOLUTION, RESOLUTION
    return [("x", value, "x") for value in (
        None, [[1.0]], 1.5, "image", np.float32(1.0),
        np.zeros((c, h, w), np.float32),                       # rank 3
        np.zeros((1, 1, c, h, w), np.float32),                 # rank 5
        np.zeros((0, c, h, w), np.float32),                    # no image
        np.zeros((1, 4, h, w), np.float32),                    # C
        np.zeros((1, c, h + 1, w), np.float32),                # H
        np.zeros((1, c, h, w // 2), np.float32),               # W
        np.zeros((1, h, w, c), np.float32),                    # NHWC
        np.zeros((1, c, h, w), np.float64),                    # float64 is refused, not converted
        np.zeros((1, c, h, w), np.float16),
        np.zeros((1, c, h, w), np.int32),
        np.zeros((1, c, h, w), np.uint8),
        np.zeros((1, c, h, w), np.complex64),
        np.zeros((1, c, h, w), bool),
        np.zeros((1, c, h, w), object),
        np.ma.masked_array(np.zeros((1, c, h, w), np.float32)),
    )]


CASES = {
    "Model.run": (_call_run, [
        *_input_cases(),
        *_ints("threads", 1, CORES),
        ("tiles", {"pointwise_pixels": 32}, "tiles"), ("tiles", "default", "tiles"), ("tiles", 5, "tiles"),
        *_fuse_blocks(),
        ("hooks", 5, "hooks"), ("hooks", [object()], "on_layer"), ("hooks", [_Hook(), "x"], "on_layer"),
        ("hooks", [_BadStartHook()], "on_run_start"),
        *_machines(),
    ]),
    "Model.plan": (_call_plan, [*_ints("batch", 1, 10 ** 13, above=False), *_ints("threads", 1, CORES),
                                ("tiles", {}, "tiles"), *_fuse_blocks(), *_machines()]),
    "engine.Tiles": (_call_tiles, [
        *(case for field in engine.Tiles().as_dict()
          for case in _ints(field, *engine.Tiles.field_range(field)[:2], name=f"Tiles.{field}")),
        ("pointwise_channels", 20, "Tiles.pointwise_channels"),        # not a multiple of 16
        ("pointwise_channels", np.int64(24), "Tiles.pointwise_channels"),
    ]),
    "workbench.profile": (_call_profile, [
        *_ints("batch", 1, 4096), *_ints("threads", 1, CORES, none_is_default=True), *_ints("repeats", 1, 10_000),
        *_ints("warmup", 0, 10_000), ("seed", -1, "seed"), ("seed", 1.5, "seed"), ("seed", "a", "seed"),
        ("tiles", {"pointwise_pixels": 8}, "tiles"), *_fuse_blocks(),
        ("ceilings", "quick", "ceilings"), ("ceilings", {"L2": 90}, "ceilings"),
        ("model", 12345, "model"), ("model", None, "model"), ("model", "/no/such/model.onnx", "model"),
        ("bytes", "modelled", "bytes"), ("bytes", None, "bytes"), ("bytes", 1, "bytes"), ("bytes", "Both", "bytes"),
    ]),
    "workbench.sweep": (_call_sweep, [
        *((name, value, name) for name in ("batch", "threads")
          for value in ("1", None, 1.5, NAN, True, [1, "2"], [None], [])),
        ("tiles", [64], "tiles"), ("tiles", {"rows": [1]}, "unknown tile field"),
        ("tiles", {"pointwise_pixels": ["64"]}, "pointwise_pixels"),
        ("tiles", {"pointwise_pixels": 2.5}, "pointwise_pixels"),
        ("tiles", {"pointwise_pixels": [None]}, "pointwise_pixels"),
        ("tiles", {"pointwise_pixels": []}, "pointwise_pixels"),
        *(("fuse_blocks", value, "fuse_blocks")
          for value in (["yes"], [1], [0], [], "Auto", ["auto", "AUTO"], [False, None], "yes", 1, None)),
        *_ints("repeats", 1, 10_000),
        ("out", "sweep.txt", "out"), ("out", 5, "out"),
        ("resume", "no", "resume"), ("resume", None, "resume"),
        ("progress", "off", "progress"),
        ("client", 5, "client"),
        ("ceilings", "quick", "ceilings"),
        ("model", None, "model"), ("model", 12345, "model"), ("model", "/no/such/model.onnx", "not found"),
        ("schedules", 5, "schedules"), ("schedules", [], "schedules"), ("schedules", ["fast"], "schedules"),
        ("schedules", [engine.TileSchedule(), None], "schedules"), ("schedules", {}, "schedules"),
        ("schedules", {"a,b": engine.TileSchedule()}, "label"), ("schedules", {"": engine.TileSchedule()}, "label"),
        ("schedules", {5: engine.TileSchedule()}, "label"), ("schedules", {"x": "Tuned"}, "schedules"),
    ]),
    "workbench.tune": (_call_tune, [
        *_ints("batch", 1, 4096), *_ints("threads", 1, CORES, none_is_default=True), *_ints("repeats", 3, 100),
        *_ints("profile_repeats", 1, 10_000),
        *(("budget_s", value, "budget_s") for value in (0, -1.0, NAN, float("inf"), "60", None, True)),
        *(("roof_margin", value, "roof_margin") for value in (-0.1, 1, 2.0, NAN, "0.05", None, True)),
        ("progress", "yes", "progress"), ("progress", 1, "progress"), ("progress", None, "progress"),
        *_fuse_blocks(), *_bools("save"), ("ceilings", "quick", "ceilings"),
        ("model", 12345, "model"), ("model", None, "model"), ("model", "/no/such/model.onnx", "model"),
    ]),
    "workbench.Explorer": (_call_explorer, [
        *_ints("batch", 1, 4096), *(case for case in _ints("threads", 1, CORES) if case[1] is not None),  # None: all
        *_ints("repeats", 1, 10_000), ("tiles", {"pointwise_pixels": 8}, "tiles"), *_fuse_blocks(),
        ("level", "L4", "level"), ("level", None, "level"), ("level", ["L2"], "level"),
        ("ceilings", "quick", "ceilings"), ("model", 12345, "model"), ("model", "/no/such/model.onnx", "model"),
        *(("bytes", value, "bytes") for value in ("both", "modelled", "Model", None, 1)),   # model | simulated
    ]),
    "Explorer.set": (_call_explorer_set, [
        *_ints("threads", 1, CORES),
        *_ints("batch", 1, 4096, above=False),
        *(case for field in engine.Tiles().as_dict() for case in _ints(field, *engine.Tiles.field_range(field)[:2])),
        ("pointwise_channels", 20, "pointwise_channels"),
        *_fuse_blocks(),
        ("level", "L4", "level"), ("level", None, "level"),
        ("step", "no such step", "step"), ("step", 5, "step"),
        *(("bytes", value, "bytes") for value in ("both", "modelled", None, 1)),
        ("cores", 2, "unknown controls"),
    ]),
    "workbench.compare": (_call_compare, [
        *_ints("batch", 1, 4096), *_ints("threads", 1, CORES, none_is_default=True), *_ints("repeats", 1, 10_000),
        *((("price_per_core_hour", value, "price_per_core_hour"))
          for value in (0, -1.0, NAN, float("inf"), "0.05", None, True)),
        ("tiles", {"pointwise_pixels": 8}, "tiles"), *_fuse_blocks(),
        ("seed", -1, "seed"), ("ceilings", "quick", "ceilings"),
        ("model_path", "/no/such/model.onnx", "not found"), ("model_path", 12345, "model"),
    ]),
    "workbench.write_report": (_call_report, [
        ("frame", None, "frame"), ("frame", pd.DataFrame(), "frame"), ("frame", pd.DataFrame({"a": [1]}), "frame"),
        ("before", 5, "before"), ("before", pd.DataFrame(), "before"),
        ("out", 5, "out"), ("model_name", 5, "model_name"), ("level", "L4", "level"),
        ("images", "yes", "images"), ("ceilings", "quick", "ceilings"),
    ]),
}

def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{type(value).__name__}{value.shape}{value.dtype}"
    if isinstance(value, pd.DataFrame):
        return f"DataFrame{value.shape}"
    return repr(value)[:40]


TABLE = [pytest.param(entry, argument, value, named, id=f"{entry}-{argument}={_short(value)}")
         for entry, (_, cases) in CASES.items() for argument, value, named in cases]


@pytest.mark.parametrize("entry,argument,value,named", TABLE)
def test_a_bad_argument_is_refused_naming_it_before_anything_runs(entry, argument, value, named, nothing_runs,
                                                                  model, x, ceilings, frame, explorer, model_path,
                                                                  tmp_path):
    call = CASES[entry][0]
    ctx = Context(model, x, ceilings, frame, explorer, model_path, tmp_path)
    with pytest.raises(ValueError) as info:
        call(ctx, **{argument: value})
    message = str(info.value)
    assert named in message, f"the message does not name {named!r}: {message}"
    if named == argument or named.startswith("Tiles."):
        assert "got" in message, f"the message does not say what it got: {message}"


def test_the_table_covers_every_argument_of_every_entry():
    """A new argument of an entry must get rows in the table (or be listed here as exempt)."""
    import inspect

    exempt = {"self"}
    signatures = {
        "Model.run": engine.Model.run, "Model.plan": engine.Model.plan, "workbench.profile": workbench.profile,
        "workbench.sweep": sweep, "workbench.tune": workbench.tune, "workbench.Explorer": Explorer.__init__,
        "workbench.compare": compare,
        "workbench.write_report": write_report,
    }
    for entry, function in signatures.items():
        arguments = set(inspect.signature(function).parameters) - exempt
        tested = {argument for argument, _, _ in CASES[entry][1]}
        missing = arguments - tested
        assert not missing, f"{entry}: no bad-value rows for {sorted(missing)}"
    assert set(engine.Tiles().as_dict()) <= {a for a, _, _ in CASES["engine.Tiles"][1]}
    explorer_controls = {"threads", "batch", "fuse_blocks", "level", "step", *engine.Tiles().as_dict()}
    assert explorer_controls <= {a for a, _, _ in CASES["Explorer.set"][1]}


def test_report_refuses_an_out_that_is_a_file_and_writes_nothing(nothing_runs, frame, ceilings, tmp_path):
    existing = tmp_path / "taken"
    existing.write_text("not a folder")
    with pytest.raises(ValueError, match="out must be a folder"):
        write_report(frame, existing, ceilings=ceilings, images=False)
    assert existing.read_text() == "not a folder"


def test_a_missing_roof_for_the_thread_count_is_refused_before_running(nothing_runs, model, ceilings):
    with pytest.raises(ValueError, match="threads=2"):
        workbench.profile(model, threads=2, repeats=1, ceilings=ceilings.restricted_to([1]))


@pytest.mark.parametrize("source,match", [
    (None, "path, bytes or onnx.ModelProto, got NoneType"), (12345, "got int"), ([b"x"], "got list"),
    (b"", "empty"), (b"\x00\xffjunk" * 10, "not an ONNX model"), ("{tmp}/missing.onnx", "not found"),
    ("{tmp}", "not found"),
])
def test_engine_load_refuses_what_is_not_an_onnx_model(source, match, tmp_path):
    if isinstance(source, str):
        source = source.format(tmp=tmp_path)
    with pytest.raises(engine.ModelError, match=match):
        engine.load(source)


# ---------------------------------------------------------------------------- the CLI

CLI_CASES = [
    [], ["frobnicate"], ["profile", "--no-such-flag"],
    *(["profile", "--batch", value] for value in ("0", "-1", "5000", "abc", "1.5", "nan", "")),
    *(["profile", "--threads", value, "--model", "{model}"] for value in ("0", "-3", "two", "999", "1e3")),
    *(["profile", "--repeats", value] for value in ("0", "20000", "x")),
    *(["profile", "--top", value] for value in ("0", "-1")),
    *(["profile", f"--{field.replace('_', '-')}", value] for field in engine.Tiles().as_dict()
      for value in ("-1", "100000", "abc", "2.5")),
    ["profile", "--pointwise-channels", "20"], ["profile", "--pointwise-pixels", "0"],
    ["profile", "--model", "{missing}"], ["profile", "--model", "{tmp}"], ["profile", "--model", "{junk}"],
    ["report", "--model", "{model}"],                                        # --out is required
    ["report", "--model", "{model}", "--out", "{file}"],                     # --out is a file
    ["sweep", "--batch", "0"], ["sweep", "--batch"], ["sweep", "--threads", "0"], ["sweep", "--repeats", "0"],
    ["sweep", "--pointwise-channels", "16", "20"], ["sweep", "--block-rows", "-1"],
    ["sweep", "--fuse-blocks", "maybe"], ["sweep", "--fuse-blocks", "auto", "automatic"],
    ["profile", "--fuse-blocks", "maybe"], ["profile", "--fuse-blocks", "autox"], ["report", "--model", "{model}", "--out", "{tmp}/report", "--fuse-blocks", "2"],
    ["sweep", "--model", "{missing}"],
    ["sweep", "--model", "{model}", "--out", "{tmp}/sweep.txt"],
    ["sweep", "--model", "{model}", "--out", "{tmp}"],                       # a folder
    ["compare", "--price-per-core-hour", "0"], ["compare", "--price-per-core-hour", "nan"],
    ["compare", "--price-per-core-hour", "inf"], ["compare", "--price-per-core-hour", "cheap"],
    ["compare", "--batch", "0"], ["compare", "--repeats", "0"],
    ["compare", "--model", "{missing}"], ["compare", "--model", "{model}", "--threads", "999"],
    ["compare", "--model", "{model}", "--out", "{file}"],
    ["ceilings", "--full", "yes"],
]


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda argv: " ".join(argv)[:60] or "no-arguments")
def test_a_bad_flag_exits_2_with_one_line_on_stderr_and_runs_nothing(argv, model_path, tmp_path, capsys,
                                                                    monkeypatch):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xff not onnx" * 10)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    monkeypatch.setattr(ceilings_module, "measure_ceilings", _refuse("a ceilings measurement"))
    monkeypatch.setattr(engine.Model, "_plan", _refuse("a plan lookup (a run)"))
    argv = [a.format(model=model_path, missing=tmp_path / "missing.onnx", tmp=tmp_path, junk=junk, file=taken)
            for a in argv]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (status, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("roofline-workbench") and "Traceback" not in err


def test_the_installed_command_prints_no_traceback_for_a_bad_flag():
    """The same through a real process: its stderr, not a captured stream."""
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "profile", "--batch", "0"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "--batch" in done.stderr and "got 0" in done.stderr


# ---------------------------------------------------------------------------- what is accepted

def test_numpy_integers_and_bools_are_accepted_where_ints_and_bools_are(model, ceilings, x):
    reference = model.run(x, threads=1, tiles=engine.Tiles(pointwise_pixels=32), fuse_blocks=True)
    tiles = engine.Tiles(pointwise_pixels=np.int64(32), depthwise_rows=np.int32(16))
    assert type(tiles.pointwise_pixels) is int and tiles == engine.Tiles(pointwise_pixels=32)
    got = model.run(x, threads=np.int64(1), tiles=tiles, fuse_blocks=np.bool_(True))
    np.testing.assert_array_equal(got, reference)
    frame = workbench.profile(model, batch=np.int64(1), threads=np.int32(1), repeats=np.int64(1),
                              warmup=np.int64(0), seed=np.uint8(3), fuse_blocks=np.bool_(False), ceilings=ceilings)
    assert int(frame["batch"].iloc[0]) == 1


def test_auto_fusion_is_accepted_by_every_entry_that_takes_fuse_blocks(model, ceilings, x, explorer, model_path):
    """"auto" (exactly) is a valid fuse_blocks everywhere, and it is passed on, not turned into a bool."""
    model.run(x, threads=1, fuse_blocks="auto")
    assert model.plan(1, fuse_blocks="auto").config.fuse_blocks == "auto"
    frame = workbench.profile(model, threads=1, repeats=1, warmup=0, ceilings=ceilings, fuse_blocks="auto")
    assert set(frame["fuse_blocks"]) == {"auto"}
    table = sweep(model_path, threads=[1], fuse_blocks="auto", repeats=1, ceilings=ceilings, progress=False)
    assert set(table["fuse_blocks"]) == {"auto"} and table["config_id"].str.contains("fuse_blocks=auto").all()
    explorer.set(fuse_blocks="auto")
    assert explorer.controls["fuse_blocks"].value == "auto" and set(explorer.profile["fuse_blocks"]) == {"auto"}
    assert Explorer(model, ceilings=ceilings, threads=1, repeats=1, fuse_blocks="auto").config()["fuse_blocks"] == "auto"
    explorer.set(fuse_blocks=engine.DEFAULT_FUSE_BLOCKS)      # the module's explorer, as it was


def test_a_single_hook_is_accepted_without_a_list(model, x):
    recorder = engine.Recorder()             # empty: falsy (len 0), which once meant "no hooks"
    model.run(x, hooks=recorder)
    assert len(recorder.runs) == 1 and len(recorder) > 0


def _unaligned(array: np.ndarray) -> np.ndarray:
    raw = np.empty(array.nbytes + 1, np.uint8)
    view = raw[1:].view(np.float32).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


def _read_only(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array.flags.writeable = False
    return array


LAYOUTS = {
    "strided": lambda a: np.repeat(a, 2, axis=3)[:, :, :, ::2],
    "fortran": np.asfortranarray,
    "negative_strides": lambda a: np.ascontiguousarray(a[::-1, ::-1, ::-1, ::-1])[::-1, ::-1, ::-1, ::-1],
    "transposed_view_of_nhwc": lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
    "read_only": _read_only,
    "unaligned": _unaligned,
    "big_endian": lambda a: a.astype(">f4"),
    "broadcast_batch": lambda a: np.broadcast_to(a[:1], a.shape),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads,fuse_blocks", [(1, False), (CORES, True)])
def test_any_memory_layout_gives_the_result_of_a_contiguous_copy_bit_for_bit(model, x, layout, threads, fuse_blocks):
    arranged = LAYOUTS[layout](x)
    contiguous = np.ascontiguousarray(arranged, dtype=np.float32)
    assert np.array_equal(arranged, contiguous)
    before = arranged.copy()
    reference = model.run(contiguous, threads=threads, fuse_blocks=fuse_blocks)
    got = model.run(arranged, threads=threads, fuse_blocks=fuse_blocks)
    np.testing.assert_array_equal(got, reference)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (len(x), 10)
    np.testing.assert_array_equal(arranged, before)          # the input is read, never written


# ---------------------------------------------------------------------------- NaN and Inf

@pytest.mark.parametrize("threads,fuse_blocks", [(1, False), (CORES, False), (CORES, True)])
@pytest.mark.parametrize("poison", [NAN, np.inf, -np.inf])
def test_a_non_finite_image_leaves_the_other_images_of_the_batch_bit_for_bit_unchanged(model, poison, threads,
                                                                                      fuse_blocks):
    """Model.check_input's documented decision: NaN/Inf are not refused; the outputs of the
    image holding them are unspecified; every other image's are exactly what they would be."""
    rng = np.random.default_rng(1)
    clean = rng.standard_normal((4, 3, RESOLUTION, RESOLUTION), dtype=np.float32)
    poisoned = clean.copy()
    poisoned[1, 0, 10, 20] = poison                    # one pixel of image 1
    poisoned[3] = poison                               # all of image 3
    reference = model.run(clean, threads=threads, fuse_blocks=fuse_blocks)
    got = model.run(poisoned, threads=threads, fuse_blocks=fuse_blocks)
    np.testing.assert_array_equal(got[[0, 2]], reference[[0, 2]])
    assert got.shape == reference.shape
    assert not np.array_equal(got[3], reference[3])    # the poison did reach the kernels
    np.testing.assert_array_equal(model.run(clean, threads=threads, fuse_blocks=fuse_blocks), reference)


def test_the_readme_states_the_nan_and_validation_decisions():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "NaN" in readme and "Inf" in readme and "np.isfinite" in readme
