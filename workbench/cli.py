"""`roofline-workbench`: the workbench headless.

    roofline-workbench ceilings [--full] [--refresh]
    roofline-workbench profile  [--model M] [--batch N] [--threads T] [--pointwise-pixels P] ...
                                [--fuse-blocks [false|true|auto]] [--tiles schedule.json|tuned]
                                [--bytes model|simulated|both]
    roofline-workbench report   [--model M] [--fuse-blocks [false|true|auto]] [--tiles ...]
                                [--bytes model|simulated|both] --out DIR
    roofline-workbench tune     [--model M] [--batch N] [--threads T] [--budget S] [--out schedule.json]
    roofline-workbench sweep    [--model M] [--batch N ...] [--threads T ...] [--pointwise-pixels P ...] ...
                                [--fuse-blocks [false|true|auto ...]] [--schedules FILE|tuned ...]
                                [--out FILE] [--resume] [--scheduler ADDRESS]
    roofline-workbench compare  [--model M] [--batch N] [--threads T] [--price-per-core-hour USD] [--out DIR]

--model: a model of engine.zoo by name (mobilenet_v1, mobilenet_v2, mobilenet_v3_small,
mobilenet_v3_large, efficientnet_b0, resnet18, resnet50: `--help` of a command lists
them; written to data/<name>.onnx on first use) or the path of an ONNX file; default
mobilenet_v2.

--fuse-blocks: false runs every layer on its own; true fuses every inverted-residual block
(expand, depthwise, project computed band by band); auto fuses only the blocks the engine
expects to run faster fused at that thread count and batch (engine.fusion.fusion_wins).
Without the flag: the engine's default (engine.DEFAULT_FUSE_BLOCKS); the flag alone: true.

--bytes: what the arithmetic intensities stand on. model (default): the bytes model
(engine.traffic). simulated: a cache simulation of each step's own access trace
(engine.trace; a second or so at batch 1, a progress bar on stderr) places every step,
the model's bytes kept as bytes_model_<level>. both: the model places them and the
simulation is added as bytes_sim_<level> / ai_sim_<level>. With simulated or both,
profile prints the model against the simulation per kernel family and level, and report
adds that table and a scatter (one point per step and level) to the page.

tune chooses every step's tiles and every block's fusion by measurement (workbench.tune,
engine.tune) within --budget seconds, writes the schedule to --out and caches it here;
--tiles then runs a saved schedule (a file) or the cached one ("tuned"). A schedule tuned
for another model, batch, thread count or machine is refused (status 2, one line).

Bad flags or values (an unknown flag, a value of the wrong type or out of range, a missing
model, an --out that cannot be written) print one line on stderr and exit with status 2,
never a traceback; Ctrl-C exits with status 130.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

import engine
from engine import ModelError, schedules
from engine.checks import check_threads
# the module, not its function: measure_ceilings is looked up when a command runs, as the
# rest of the workbench does (profile.default_ceilings)
from workbench import ceilings as ceilings_module
from workbench.compare import DEFAULT_PRICE_PER_CORE_HOUR, compare
from workbench.figure_parts import short_name
from workbench.models import DEFAULT_MODEL_NAME, is_model_name, model_names
from workbench.profile import (default_ceilings, describe_fusion, model_file, profile, run_machine,
                               save_frame)
from workbench.report import write_report
from workbench.sweep import CONFIG_COLUMNS, sweep, sweep_totals
from workbench.roof_notes import above_roof_note, format_roof_fraction
from workbench.simulated_bytes import BYTES_CHOICES, agreement_table
from workbench.tables import roofs_table, significant
from workbench.tuning import TUNED, tune, tuned_schedule


class _UsageError(Exception):
    """A bad flag or value: one line on stderr and exit status 2."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option that takes a value says its default in --help: "(default X)" is added
    where the help text does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.nargs == 0 or action.required or action.default in (None, argparse.SUPPRESS)
                or "default" in text):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        elif isinstance(default, bool):
            default = str(default).lower()
        return f"{text} (default {str(default).replace('%', '%%')})".strip()


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int_in(low: int, high: int):
    """argparse type: an int in low..high."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {value}")
        return value
    return parse


_batch = _int_in(1, 4096)          # images, as workbench.profile accepts
_repeats = _int_in(1, 10_000)      # timed runs, as workbench.profile accepts


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _fuse_blocks(text: str):
    """argparse type for a --fuse-blocks value: False, True or "auto" (any case; yes/no,
    on/off, 1/0 are true/false too)."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    try:
        return _boolean(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected false, true or auto, got {text!r}") from None


_FUSE_BLOCKS_HELP = ("auto: fuse only the inverted-residual blocks engine.fusion.fusion_wins expects to run faster "
                     "fused at this thread count and batch; true: every block; false: none")


def _fuse_blocks_default() -> str:
    value = engine.DEFAULT_FUSE_BLOCKS
    return "auto" if value == "auto" else str(bool(value)).lower()


def _tile_value(name: str):
    """argparse type for one value of Tiles.<name>: an int the Tiles field accepts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
            engine.Tiles(**{name: value})
        except ValueError as error:
            message = str(error) if "Tiles." in str(error) else f"expected an int, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        return value
    return parse


def _tile_flags(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """One flag per Tiles field (--pointwise-pixels, ...): one value (default the field's
    default), or with `several` one or more values (default None: the field not swept)."""
    for name, value in engine.Tiles().as_dict().items():
        low, high, step = engine.Tiles.field_range(name)
        what = f"values of Tiles.{name}" if several else f"Tiles.{name}"
        parser.add_argument(f"--{name.replace('_', '-')}", type=_tile_value(name), dest=name,
                            nargs="+" if several else None, default=None if several else value,
                            help=f"{what} ({low}..{high}{f', multiple of {step}' if step > 1 else ''}; "
                                 f"default {value})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="roofline-workbench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    text = "measure, print and cache this machine's roofs"
    ceilings = commands.add_parser("ceilings", help=text, description=text)
    ceilings.add_argument("--full", action="store_true", help="full (slower, steadier) measurement")
    ceilings.add_argument("--refresh", action="store_true", help="re-measure even if cached")
    _add_profile_and_report(commands)
    _add_tune(commands)
    _add_sweep(commands)
    _add_compare(commands)
    return parser


def _add_profile_and_report(commands) -> None:
    for name, text in (("profile", "profile one configuration, layers sorted by time"),
                       ("report", "write an HTML report and the records (CSV, Parquet)")):
        sub = commands.add_parser(name, help=text, description=text)
        _model_flag(sub)
        sub.add_argument("--batch", type=_batch, default=1, help="images per run (1..4096)")
        sub.add_argument("--threads", type=_positive_int, default=None, help="threads (default: all cores)")
        sub.add_argument("--repeats", type=_repeats, default=5,
                         help="timed runs after a warm-up; each layer's median is kept")
        sub.add_argument("--fuse-blocks", type=_fuse_blocks, nargs="?", const=True, default=engine.DEFAULT_FUSE_BLOCKS,
                         metavar="false|true|auto",
                         help=f"{_FUSE_BLOCKS_HELP}; the flag alone: true (default: {_fuse_blocks_default()}, "
                              f"engine.DEFAULT_FUSE_BLOCKS)")
        _tile_flags(sub)
        sub.add_argument("--tiles", metavar="schedule.json|tuned", default=None,
                         help="a tile schedule: a file `tune` wrote (or engine.TileSchedule.save), or \"tuned\" "
                              "for the one cached here for this model, batch and threads; refused when tuned for "
                              "another model, batch, thread count or machine (not with the tile flags; default: none, "
                              "the tile flags set every step)")
        sub.add_argument("--bytes", choices=BYTES_CHOICES, default="model",
                         help="what the arithmetic intensities stand on: model (engine.traffic's bytes model), "
                              "simulated (a cache simulation of each step's access trace places the points) or "
                              "both (model placing, simulated columns beside; the comparison printed)")
        if name == "report":
            sub.add_argument("--out", type=Path, required=True, help="output folder")
        else:
            sub.add_argument("--top", type=_positive_int, default=20, help="rows to print, slowest first")


def _add_tune(commands) -> None:
    text = "choose every step's tiles by measurement, write the schedule (JSON)"
    tune = commands.add_parser("tune", help=text, description=text)
    _model_flag(tune)
    tune.add_argument("--batch", type=_batch, default=1, help="images per run (1..4096)")
    tune.add_argument("--threads", type=_positive_int, default=None, help="threads (default: all cores)")
    tune.add_argument("--budget", type=_positive_float, default=60.0, metavar="SECONDS",
                      help="seconds the search may take (default 60)")
    tune.add_argument("--repeats", type=_int_in(3, 100), default=5, help="runs per candidate (3..100, default 5)")
    tune.add_argument("--fuse-blocks", type=_fuse_blocks, nargs="?", const=True, default=engine.DEFAULT_FUSE_BLOCKS,
                      metavar="false|true|auto", help=f"the fusion the search starts from; {_FUSE_BLOCKS_HELP}")
    tune.add_argument("--out", type=Path, default=Path("schedule.json"),
                      help="the schedule, JSON (default schedule.json); --tiles takes it")
    tune.add_argument("--top", type=_positive_int, default=20, help="changed steps to print")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_sweep(commands) -> None:
    text = "profile a grid of configurations into one table (Parquet or CSV)"
    sweep = commands.add_parser("sweep", help=text, description=text)
    _model_flag(sweep)
    sweep.add_argument("--batch", type=_batch, nargs="+", default=[1], help="batch sizes (default 1)")
    sweep.add_argument("--threads", type=_positive_int, nargs="+", default=None,
                       help="thread counts (default: all cores); above a machine's cores: skipped")
    sweep.add_argument("--repeats", type=_repeats, default=3, help="timed runs per config (default 3)")
    sweep.add_argument("--fuse-blocks", type=_fuse_blocks, nargs="*", default=None, metavar="false|true|auto",
                       help=f"with values: each of them (e.g. --fuse-blocks false auto true); alone: true only; "
                            f"default (without the flag): {_fuse_blocks_default()} (engine.DEFAULT_FUSE_BLOCKS). "
                            f"{_FUSE_BLOCKS_HELP}")
    _tile_flags(sweep, several=True)
    sweep.add_argument("--schedules", nargs="+", default=None, metavar="FILE|tuned",
                       help="tile schedules to sweep instead of tile values: files (labelled by their name) or "
                            "\"tuned\" (each machine's own tuned schedule); default: none, the tile values")
    sweep.add_argument("--out", type=Path, default=Path("sweep.parquet"),
                       help="table written after every config, .parquet or .csv (default sweep.parquet)")
    sweep.add_argument("--resume", action="store_true", help="skip configs already in --out")
    sweep.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="a Dask scheduler (e.g. tcp://host:8786): run the configs on its workers "
                            "(default: run them here)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_compare(commands) -> None:
    text = "our engine next to ONNX Runtime and OpenVINO, cost per inference"
    compare = commands.add_parser("compare", help=text, description=text)
    _model_flag(compare)
    compare.add_argument("--batch", type=_batch, default=1, help="images per call (1..4096)")
    compare.add_argument("--threads", type=_positive_int, default=None, help="cores per engine (default: all)")
    compare.add_argument("--repeats", type=_repeats, default=20, help="timed calls per engine")
    compare.add_argument("--price-per-core-hour", type=_positive_float, default=None, metavar="USD",
                         help="price of one core for one hour (default 0.05 USD)")
    compare.add_argument("--top", type=_positive_int, default=10, help="ONNX Runtime nodes to print")
    compare.add_argument("--out", type=Path, default=None,
                         help="folder for compare.csv and ort_nodes.csv (default: print only)")


def _model_flag(parser: argparse.ArgumentParser) -> None:
    """--model: a zoo model name or an ONNX file (resolved to its file by _model_file)."""
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME, metavar="NAME|FILE",
                        help=f"a zoo model name or an ONNX file (default {DEFAULT_MODEL_NAME}); the zoo: "
                             f"{', '.join(model_names())} (torchvision's topologies, synthetic weights, written to "
                             f"data/<name>.onnx on first use)")


def _tiles_from(args):
    return engine.Tiles(**{name: getattr(args, name) for name in engine.Tiles().as_dict()})


def _load_schedule(path_text: str, flag: str) -> engine.TileSchedule:
    """A saved TileSchedule (with the key it was tuned for); a usage error naming the flag
    when the file is missing or not a schedule."""
    try:
        return engine.TileSchedule.load(path_text)
    except ValueError as error:
        raise _UsageError(f"roofline-workbench: {flag} {path_text}: {error}") from None


def _tiles_or_schedule(args, model: engine.Model, threads: int, ceilings):
    """What --tiles or the tile flags ask for: a Tiles, a saved schedule, or the tuned one
    cached here. Usage errors: --tiles with a tile flag, an unreadable file, no tuned
    schedule, a schedule tuned for another model, batch, thread count or machine."""
    if args.tiles is None:
        return _tiles_from(args)
    flags = [f"--{name.replace('_', '-')}" for name, value in engine.Tiles().as_dict().items()
             if getattr(args, name) != value]
    if flags:
        raise _UsageError(f"roofline-workbench: --tiles and {', '.join(flags)} cannot be combined: a schedule "
                          f"carries every step's tiles")
    try:
        if args.tiles == TUNED:
            return tuned_schedule(model, args.batch, threads, ceilings)
        schedule = _load_schedule(args.tiles, "--tiles")
        return schedules.check_key(schedule, model.schedule_key(args.batch, threads, run_machine(ceilings)),
                                   f"the schedule in {args.tiles}")
    except ValueError as error:
        raise _UsageError(f"roofline-workbench: --tiles: {error}") from None


def _model_file(args) -> Path:
    """Resolve args.model (a zoo name or a path, profile.model_file: a zoo model's file is
    written when missing) to its file, in place; keep what to call it in args.model_name
    (the zoo name, or the file's name). A missing file is a usage error."""
    name = args.model
    try:
        args.model = model_file(name)
    except ValueError as error:
        raise _UsageError(f"roofline-workbench: --model: {error}") from None
    args.model_name = name if is_model_name(name) else args.model.name
    return args.model


def _output_folder(path: Path) -> Path:
    """`path` unless it exists and is not a folder (a usage error)."""
    if path.exists() and not path.is_dir():
        raise _UsageError(f"roofline-workbench: --out must be a folder, got an existing file: {path}")
    return path


def _profile(args):
    _model_file(args)
    threads = check_threads(args.threads or engine.available_cores())
    model = engine.load(args.model)
    ceilings = default_ceilings(threads)
    return profile(model, batch=args.batch, threads=threads, tiles=_tiles_or_schedule(args, model, threads, ceilings),
                   fuse_blocks=args.fuse_blocks, repeats=args.repeats, ceilings=ceilings, bytes=args.bytes)


def format_bytes_check(frame) -> str:
    """The model against the simulation per kernel family and level (a profile with
    bytes_sim_<level> columns): steps, median and worst model / simulated ratio, the worst
    step, the share of steps off by more than 25 %; "" without simulated bytes."""
    if "bytes_sim_L1" not in frame.columns:
        return ""
    table = agreement_table(frame)
    if table.empty:
        return "bytes: no step moves 64 KiB at any level; nothing to compare"
    table["worst_step"] = table["worst_step"].map(lambda name: short_name(name)[-32:] if name else "")
    table["off_by_25pct"] = table["off_by_25pct"] * 100
    table = table.rename(columns={"median_ratio": "median", "worst_ratio": "worst", "worst_step": "worst step",
                                  "off_by_25pct": "% off >25%"})
    sim_seconds = frame.attrs.get("sim_seconds")
    took = f", simulated in {sim_seconds:.1f} s" if sim_seconds is not None else ""
    return (f"bytes moved, model / cache simulation per kernel family and level (1 = agreement{took}):\n"
            + table.to_string(index=False, float_format=significant))


def _tune(args) -> int:
    _model_file(args)
    if args.out.suffix != ".json" or args.out.is_dir():
        raise _UsageError(f"roofline-workbench tune: --out must be a .json file path, got {str(args.out)!r}")
    threads = args.threads or engine.available_cores()
    result = tune(args.model, batch=args.batch, threads=threads, budget_s=args.budget, repeats=args.repeats,
                  fuse_blocks=args.fuse_blocks, progress=not args.no_progress)
    engine_result = result.result
    path = schedules.save(args.out, result.schedule, result.schedule.tuned_for, engine_result.trials)
    changed = result.changed_steps()
    print(f"{args.model_name}: batch {args.batch}, {threads} thread(s); tuned in {engine_result.seconds:.1f} s "
          f"({engine_result.stopped or 'search complete'}), {len(engine_result.trials)} candidates measured")
    print(f"whole run (median, default and tuned side by side): {engine_result.default_seconds * 1e3:.3f} ms -> "
          f"{engine_result.tuned_seconds * 1e3:.3f} ms")
    if not changed.empty:
        shown = changed.head(args.top).copy()
        shown["step"] = shown["step"].str[-48:]
        print(shown.to_string(index=False, float_format=significant))
    print(f"{len(changed)} steps changed; schedule written to {path} (run it: --tiles {path})")
    return 0


def format_layers(frame, top: int | None = None) -> str:
    """Layers sorted by time: time (ms, 3 significant digits), share of the run, GFLOP/s,
    arithmetic intensity at every memory level (so the level the bound column names is
    always among them), % of the attainable roof, and what bounds the layer (its tightest
    roof: "memory (L3)" is read against "AI L3"); then a total line with the batch,
    threads and fusion setting."""
    shown = frame.sort_values("seconds", ascending=False)
    if top:
        shown = shown.head(top)
    levels = [level for level in ("L1", "L2", "L3", "DRAM") if f"ai_{level}" in frame.columns]
    lines = [f"{'layer':<32} {'op':<10} {'ms':>7} {'share':>6} {'GFLOP/s':>8} "
             + " ".join(f"{'AI ' + level:>7}" for level in levels) + f" {'roof%':>6}  bound"]
    for row in shown.itertuples():
        bound = row.bound if row.bound != "memory" else f"memory ({row.bound_level})"
        intensities = " ".join(f"{significant(getattr(row, f'ai_{level}')):>7}" for level in levels)
        lines.append(f"{short_name(row.layer)[-32:]:<32} {row.op:<10} {significant(row.seconds * 1e3):>7} "
                     f"{significant(row.share_of_time * 100) + '%':>6} {significant(row.gflops):>8} {intensities} "
                     f"{format_roof_fraction(row.roof_fraction, row.op, short=True):>6}  {bound}")
    notes = {above_roof_note(row.roof_fraction, row.op) for row in shown.itertuples()} - {""}
    lines += [f"* {note}" for note in sorted(notes)]
    total = frame["seconds"].sum()
    fusion = describe_fusion(frame)
    fusion = f", {fusion}" if fusion else ""
    lines.append(f"total {significant(total * 1e3)} ms over {len(frame)} steps, "
                 f"{significant(frame['flops'].sum() / total / 1e9)} GFLOP/s; batch {frame['batch'].iloc[0]}, "
                 f"threads {frame['threads'].iloc[0]}{fusion}")
    return "\n".join(lines)


def _sweep(args) -> int:
    _model_file(args)
    if args.out.suffix not in (".parquet", ".csv"):
        raise _UsageError(f"roofline-workbench sweep: --out must end in .parquet or .csv, got {str(args.out)!r}")
    fuse_blocks = [engine.DEFAULT_FUSE_BLOCKS] if args.fuse_blocks is None else (args.fuse_blocks or [True])
    tiles = {name: getattr(args, name) for name in engine.Tiles().as_dict() if getattr(args, name) is not None}
    threads = args.threads or [engine.available_cores()]
    named = None
    if args.schedules:
        if tiles:
            raise _UsageError("roofline-workbench sweep: --schedules and tile flags cannot be combined: a schedule "
                              "carries every step's tiles")
        named = {text if text == TUNED else Path(text).stem: text if text == TUNED
                 else _load_schedule(text, "--schedules") for text in args.schedules}
    try:
        frame = sweep(args.model, batch=args.batch, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks,
                      repeats=args.repeats, out=args.out, resume=args.resume, client=args.scheduler,
                      progress=not args.no_progress, schedules=named)
    except OSError as error:          # an unreachable scheduler, an unwritable --out
        raise _UsageError(f"roofline-workbench sweep: {error}") from None
    skipped = len(frame.attrs["skipped"])      # each one was logged as a warning with its reason
    totals = sweep_totals(frame)
    if totals.empty:
        print("roofline-workbench: no configuration could run", file=sys.stderr)
        return 1
    varying = [c for c in CONFIG_COLUMNS + ["schedule"] if c in totals and totals[c].nunique() > 1] \
        or ["batch", "threads"]
    shown = totals[varying + ["host", "run_seconds", "images_per_second", "gflops", "ai_L2"]].copy()
    shown["run_seconds"] = shown["run_seconds"] * 1e3
    shown = shown.rename(columns={"run_seconds": "ms/run", "images_per_second": "images/s", "gflops": "GFLOP/s",
                                  "ai_L2": "AI L2"})
    print(shown.sort_values("ms/run").to_string(index=False, float_format=significant))
    print(f"{len(totals)} configs, {len(frame)} rows in {args.out}" + (f"; {skipped} skipped" if skipped else ""))
    return 0


def _compare(args) -> int:
    _model_file(args)
    if args.out is not None:
        _output_folder(args.out)
    price = DEFAULT_PRICE_PER_CORE_HOUR if args.price_per_core_hour is None else args.price_per_core_hour
    result = compare(args.model, batch=args.batch, threads=args.threads or engine.available_cores(),
                     repeats=args.repeats, price_per_core_hour=price)
    table = result.table.copy()
    table["ms"] = table["seconds"] * 1e3
    columns = {"engine": "engine", "version": "version", "precision": "precision", "ms": "ms/batch",
               "images_per_second": "images/s",
               "images_per_second_per_core": "images/s/core",
               "cost_per_million_inferences": f"cost/1M @ {price:g}/core-h"}
    print(f"{args.model_name}: batch {args.batch}, {int(table['threads'].iloc[0])} thread(s), "
          f"median of {args.repeats} interleaved calls")
    print(table[list(columns)].rename(columns=columns).to_string(index=False, float_format=significant))
    for note in result.notes:
        print(f"note: {note}")
    if not result.ort_nodes.empty:
        print("\nONNX Runtime's slowest nodes (its profiler), on our layers:")
        print(format_layers(result.ort_nodes, args.top))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        print(save_frame(result.table, args.out / "compare.csv"))
        if not result.ort_nodes.empty:
            print(save_frame(result.ort_nodes, args.out / "ort_nodes.csv"))
    return 0


def _run(args) -> int:
    if args.command == "ceilings":
        ceilings = ceilings_module.measure_ceilings(quick=not args.full, refresh=args.refresh)
        table = roofs_table(ceilings).T            # L1, L2, L3, DRAM (GB/s, triad), then fp32_fma (GFLOP/s)
        table.index = pd.Index(ceilings.threads, name="threads")
        print(f"{ceilings.machine['cpu_model']}, {ceilings.machine['cores']} cores")
        print(table.to_string(float_format=significant))
        caches = ceilings.cache_table()
        if not caches.empty:
            print("\ncaches, one instance each: nominal (sysfs) and effective (where the 1-thread triad's "
                  "bandwidth falls off)")
            print(caches[["level", "nominal", "effective", "shared_by_cores", "note"]].to_string(index=False))
        return 0
    if args.command == "profile":
        frame = _profile(args)
        if args.bytes == "simulated":
            print("arithmetic intensities from simulated bytes (a cache simulation of each step's access trace)")
        print(format_layers(frame, args.top))
        check = format_bytes_check(frame)
        if check:
            print("\n" + check)
        return 0
    if args.command == "report":
        _output_folder(args.out)
        frame = _profile(args)
        paths = write_report(frame, args.out, model_name=args.model_name)
        for path in paths:
            print(path)
        return 0
    if args.command == "tune":
        return _tune(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "compare":
        return _compare(args)
    raise _UsageError(f"unknown command {args.command!r}")


def _one_line(text: str) -> str:
    """An error message on one line (a message may hold newlines, e.g. a list of ops)."""
    return " ".join(str(text).split())


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return _run(args)
    except _UsageError as error:
        print(_one_line(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("roofline-workbench: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:      # bad values; an --out that cannot be written
        print(f"roofline-workbench: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:       # ModelError and anything the user can act on
        if isinstance(error, ModelError):
            print(f"roofline-workbench: {_one_line(error)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
