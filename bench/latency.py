"""Our engine against ONNX Runtime (and OpenVINO / DeepSparse where installed), side by side.

For each (batch, threads) cell the engines take turns in blocks of a few runs each
(round robin, --rounds rounds), so machine noise hits all of them alike, with a short
pause after each block so one engine's idle threads cannot steal the next one's cores.
ONNX Runtime runs with its default session options (all graph optimisations, spinning
threads): what its users get. The table gives medians (ms at batch 1, images/s at larger
batches), our time ratio to ONNX Runtime and to DeepSparse, thread scaling, and the
compute floor (the network's FLOPs at this machine's measured FMA peak) and each row's
share of that peak.

    python bench/latency.py [--model NAME|FILE | --models A,B,...|all] [--rounds 12] [--batches 1 64]
                            [--threads 1 2] [--deepsparse-python /work/deepsparse-venv/bin/python]
                            [--openvino-default-precision] [--tune-budget S]

Models: --model takes a name of engine.zoo.MODELS (mobilenet_v2, resnet50, ...; written to
data/<name>.onnx on first use) or an ONNX file; default mobilenet_v2. --models runs several
(comma-separated names or files; "all": every zoo model) one after the other in one run:
each gets its own table, then a summary gives every model's engine, ONNX Runtime and
OpenVINO figures and "% of peak" side by side. A model the engine cannot load yet gets the
engine row "not supported yet: <the error>"; the other runtimes still run it (its FLOPs
then counted from the ONNX graph: onnx_flops_per_image).

"% of peak" = the model's FLOPs per second (engine.model.total_flops: conv and linear FLOPs, 2
per multiply-accumulate, the same count for every runtime) / this machine's fp32 FMA peak
at the cell's thread count, measured by workbench.measure_ceilings(quick=True) (cached in
data/ceilings/; the value used is printed).

"engine" is the engine's default configuration (engine.DEFAULT_FUSE_BLOCKS); the other
engine rows are its fusion settings. DeepSparse 1.8 runs in a venv of its own (`make
deepsparse-venv`), driven through bench/deepsparse_worker.py; without --deepsparse-python
(or ROOFLINE_DEEPSPARSE_PYTHON) its row says "not installed".

Precision: every row runs the model in float32 unless its label names another precision.
The engine rows have float32 kernels only (engine.load accepts only float32 models without
quantization ops, so the model every engine gets is fp32). ONNX Runtime runs on
CPUExecutionProvider only (no fp16 or other provider, no quantization; the ARM64 bf16
fast-math GEMM pinned off), its precision read back from the session. OpenVINO's CPU
plugin defaults to bf16 on CPUs with AVX512_BF16 or AMX, so its row is compiled with
INFERENCE_PRECISION_HINT=f32 and labelled with the precision read back from the compiled
model (workbench.compare.openvino_config / openvino_precision). --openvino-default-precision
adds a second OpenVINO row with the plugin's default, labelled "(bf16, default on this
CPU)", and only where that default is not f32. DeepSparse's worker pins its runtime config
to default_precision: fp32 (bench/deepsparse_worker.py), on the same fp32 model, without
quantization. The time ratios are taken to fp32 rows only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from deepsparse_worker import DeepSparseRunner  # noqa: E402 - bench/, the script's folder
from engine.model import total_flops  # noqa: E402
from engine.passes import find_fusable_blocks  # noqa: E402
from workbench.models import is_model_name, model_names  # noqa: E402
from workbench.profile import model_file  # noqa: E402
from workbench.compare import (ORT_BF16_FASTMATH, PRECISION, onnxruntime_precision, openvino_config,  # noqa: E402
                               openvino_precision, precision_name)

ENGINE = "engine"                     # the default configuration: the row the ratios use
TUNED = "engine, tuned (engine.tune)"
FUSION_ROWS = {"engine, unfused": False, "engine, fuse where it wins": "auto", "engine, every block fused": True}
DEEPSPARSE = "DeepSparse"
ONNX_RUNTIME = "ONNX Runtime"
OPENVINO = "OpenVINO"
PAUSE_SECONDS = 0.1     # after each block: ONNX Runtime's idle threads spin ~65 ms after a 2-thread run


def make_engines(model: engine.Model | None, model_path: Path, threads: int, deepsparse_python: str | None,
                 openvino_default_precision: bool = False, tuned=None):
    """label -> (callable(x), timed_by_callable) for every engine that is installed. Labels of
    the other runtimes carry the precision each reports (see the module docstring).
    model: None when the engine cannot load the model (no engine rows).
    tuned: an engine.TileSchedule for this cell (the "tuned" row), or None."""
    engines = {ENGINE: (lambda x: model.run(x, threads=threads), False)} if model is not None else {}
    if tuned is not None:
        engines[TUNED] = (lambda x: model.run(x, threads=threads, tiles=tuned), False)
    # the fusion rows only where there is something to fuse (ResNet has no inverted-residual or squeeze-and-excitation block)
    for name, fuse in FUSION_ROWS.items() if model is not None and find_fusable_blocks(model.graph) else ():
        if fuse != engine.DEFAULT_FUSE_BLOCKS:
            engines[name] = (lambda x, fuse=fuse: model.run(x, threads=threads, fuse_blocks=fuse), False)
    try:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(ORT_BF16_FASTMATH, "0")   # ORT's default, said out loud
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        label = f"{ONNX_RUNTIME} {ort.__version__} ({onnxruntime_precision(session)}, CPU EP)"
        engines[label] = (lambda x: session.run(None, {name: x})[0], False)
    except ImportError:
        print("onnxruntime not installed: skipped", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - a model ONNX Runtime refuses must not stop the benchmark
        print(f"onnxruntime failed: {exc}", file=sys.stderr)
    try:
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(str(model_path), "CPU", openvino_config(threads))
        engines[f"{OPENVINO} {version('openvino')} ({openvino_precision(compiled)})"] = \
            (lambda x: compiled(x)[0], False)
        default = precision_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        if openvino_default_precision and default != PRECISION:
            compiled_default = core.compile_model(str(model_path), "CPU",
                                                  openvino_config(threads, inference_precision=None))
            label = f"{OPENVINO} {version('openvino')} ({openvino_precision(compiled_default)}, default on this CPU)"
            engines[label] = (lambda x: compiled_default(x)[0], False)
        elif openvino_default_precision:
            print(f"OpenVINO's default precision on this CPU is {default}: no extra row", file=sys.stderr)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - a broken optional engine must not stop the benchmark
        print(f"openvino failed: {exc}", file=sys.stderr)
    if deepsparse_python:
        try:
            runner = DeepSparseRunner(deepsparse_python, model_path, threads)
            engines[f"{DEEPSPARSE} {runner.version} ({runner.precision}, {runner.isa})"] = \
                (runner.seconds, True)   # timed in its worker
        except RuntimeError as exc:
            print(f"deepsparse failed: {exc}", file=sys.stderr)
    return engines


def tuned_schedule(model: engine.Model, batch: int, threads: int, budget_s: float):
    """The schedule engine.tune cached for this cell, or a new one tuned within `budget_s`."""
    from engine import schedules

    key = model.schedule_key(batch, threads)
    if schedules.cache_path(key).exists():
        return schedules.cached(key)
    result = engine.tune(model, batch=batch, threads=threads, budget_s=budget_s)
    print(f"  tuned batch {batch}, {threads} thread(s) in {result.seconds:.1f} s ({result.stopped or 'complete'}): "
          f"{result.default_seconds * 1e3:.2f} -> {result.tuned_seconds * 1e3:.2f} ms per run", file=sys.stderr)
    return result.schedule


def fp32_row(names: list[str], prefix: str) -> str | None:
    """The first row of `prefix`'s runtime that ran fp32 (the one a ratio is taken to)."""
    def precision(label: str) -> str:      # "OpenVINO 2026.4.1 (bf16, default on this CPU)" -> "bf16"
        return label.partition("(")[2].split(",")[0].rstrip(")")

    return next((n for n in names if n.startswith(prefix) and precision(n) == PRECISION), None)


def time_cell(engines: dict, x: np.ndarray, rounds: int, block: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per run of each engine: `rounds` rounds, each engine `block` runs in turn."""
    for run, _ in engines.values():
        for _ in range(warmup):
            run(x)
    samples = {name: [] for name in engines}
    for _ in range(rounds):
        for name, (run, timed_by_callable) in engines.items():
            for _ in range(block):
                if timed_by_callable:
                    samples[name].append(run(x))
                    continue
                start = time.perf_counter()
                run(x)
                samples[name].append(time.perf_counter() - start)
            time.sleep(PAUSE_SECONDS)
    return samples


_CEILINGS: list = []        # this machine's ceilings, looked up once (None: they could not be had)


def ceilings():
    """workbench.measure_ceilings(quick=True) for every core count: the cached result in
    data/ceilings/ when there is one (measure it on a quiet machine: `roofline-workbench
    ceilings --refresh`), else measured now. None, with a note on stderr, when it fails."""
    if not _CEILINGS:
        try:
            from workbench.ceilings import measure_ceilings
            _CEILINGS.append(measure_ceilings(quick=True))
        except Exception as exc:  # noqa: BLE001 - the peak is context, not the benchmark
            print(f"no ceilings, so no FMA peak: {exc}", file=sys.stderr)
            _CEILINGS.append(None)
    return _CEILINGS[0]


def peak_gflops(threads: int) -> float | None:
    """This machine's fp32 FMA peak at `threads` (GFLOP/s), from `ceilings()`."""
    measured = ceilings()
    return None if measured is None else float(measured.peak_gflops(threads))


def compute_floor_seconds(flops_per_image: int, threads: int) -> float | None:
    """One image's FLOPs at this machine's measured FMA peak (workbench ceilings, cached)."""
    peak = peak_gflops(threads)
    return None if peak is None else flops_per_image / (peak * 1e9)


def share_of_peak(flops_per_image: int, batch: int, threads: int, seconds: float | None) -> float | None:
    """The model's FLOPs per second in a run of `seconds` at `batch`, as a fraction of the
    FMA peak at `threads` (None without a time or a peak)."""
    peak = peak_gflops(threads)
    if seconds is None or peak is None:
        return None
    return flops_per_image * batch / seconds / (peak * 1e9)


def model_list(args) -> list[str]:
    """The models to run: --models (comma-separated; "all": the zoo) or --model."""
    if args.models is None:
        return [args.model]
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    return list(model_names()) if names == ["all"] else names


def onnx_flops_per_image(path: Path) -> tuple[int, tuple[int, int, int]]:
    """(FLOPs of one image counted from the ONNX graph itself, input (C, H, W)), for a model
    the engine cannot load: 2 per multiply-accumulate of every Conv, Gemm and MatMul, as
    engine.model.total_flops counts them (the same figure for the models it loads), with
    the shapes from onnx's shape inference at batch 1."""
    import onnx
    from onnx import shape_inference

    proto = onnx.load(str(path))
    graph_input = next(i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer})
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    graph_input.type.tensor_type.shape.dim[0].dim_value = 1           # batch 1, named or not
    inferred = shape_inference.infer_shapes(proto)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    shapes.update({t.name: list(t.dims) for t in proto.graph.initializer})
    flops = 0
    for node in proto.graph.node:
        if node.op_type == "Conv":
            weight, output = shapes[node.input[1]], shapes[node.output[0]]   # (Cout, Cin/group, kh, kw), (1, Cout, Ho, Wo)
            flops += 2 * int(np.prod(output)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            left, output = shapes[node.input[0]], shapes[node.output[0]]
            flops += 2 * int(np.prod(output)) * left[-1]
    return flops, tuple(dims[1:])


def measure_model(label: str, path: Path, args) -> dict:
    """Time every (batch, threads) cell of one model: {"flops": per image, "cells": [...],
    "medians": {(batch, threads): {row: seconds}}, "runs": {cell: runs per engine},
    "refused": None, or the engine's error when it cannot load the model (then only the
    other runtimes run, and the FLOPs are counted from the ONNX graph)}."""
    try:
        model = engine.load(path)
        refused = None
    except engine.ModelError as error:          # UnsupportedOperatorError is one
        model = None
        message = " ".join(str(error).split()).split("; supported op types")[0]     # not the list of ops
        refused = f"not supported yet: {type(error).__name__}: {message}"
    if model is not None:
        (c, h, w), flops_per_image = model.input_shape, total_flops(model, 1)
    else:
        flops_per_image, (c, h, w) = onnx_flops_per_image(path)
    cells = [(b, t) for b in args.batches for t in args.threads if t <= engine.available_cores()]
    print(f"model {label}: {flops_per_image / 1e6:.1f} MFLOP per image, input {c}x{h}x{w}; cores "
          f"{engine.available_cores()}; engine default fuse_blocks={engine.DEFAULT_FUSE_BLOCKS!r}; engine rows: "
          f"{PRECISION} kernels only; every row {PRECISION} unless its label names another precision")
    if refused:
        print(f"  engine: {refused}; the other runtimes only")
    medians: dict[tuple[int, int], dict[str, float]] = {}
    runs: dict[tuple[int, int], int] = {}
    for batch, threads in cells:
        x = np.random.default_rng(0).standard_normal((batch, c, h, w), dtype=np.float32)
        block = args.block if batch == 1 else 1
        rounds = args.rounds if batch == 1 else max(3, args.rounds // 2)
        tuned = (tuned_schedule(model, batch, threads, args.tune_budget)
                 if args.tune_budget > 0 and model is not None else None)
        engines = make_engines(model, path, threads, args.deepsparse_python, args.openvino_default_precision, tuned)
        samples = time_cell(engines, x, rounds, block, warmup=args.warmup)
        medians[(batch, threads)] = {name: statistics.median(values) for name, values in samples.items()}
        runs[(batch, threads)] = max((len(v) for v in samples.values()), default=0)
        print(f"  {label}: measured batch {batch}, {threads} thread(s): {runs[(batch, threads)]} runs per engine",
              file=sys.stderr)
    return {"flops": flops_per_image, "cells": cells, "medians": medians, "runs": runs, "refused": refused}


def show(batch: int, seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.2f} ms" if batch == 1 else f"{batch / seconds:.1f} img/s"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f} %"


def print_model_table(result: dict) -> None:
    """The per-model table: every row's median per cell, the time ratios, thread scaling,
    the compute floor and every row's % of the FMA peak."""
    cells, medians, flops_per_image = result["cells"], result["medians"], result["flops"]
    names = list(dict.fromkeys(name for cell in medians.values() for name in cell))
    if result.get("refused"):
        names.insert(0, f"{ENGINE} (not supported yet)")          # the reason: printed above the table
    if not any(n.startswith(DEEPSPARSE) for n in names):
        names.append(f"{DEEPSPARSE} (not installed)")
    width = max(32, *(len(name) + 13 for name in names))
    header = [f"{'':<{width}}"] + [f"{f'batch {b}, {t} thread' + ('s' if t > 1 else ''):>20}" for b, t in cells]
    print("".join(header))
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{show(b, medians[(b, t)].get(name)):>20}" for b, t in cells))
    for runtime in (ONNX_RUNTIME, OPENVINO, DEEPSPARSE):
        other = fp32_row(names, runtime)
        if other and not result.get("refused"):
            label = f"engine / {runtime} ({PRECISION}) time"
            print(f"{label:<{width}}" + "".join(f"{medians[c][ENGINE] / medians[c][other]:>20.2f}"
                                           if other in medians[c] else f"{'-':>20}" for c in cells))
            if TUNED in names:
                label = f"tuned / {runtime} ({PRECISION}) time"
                print(f"{label:<{width}}" + "".join(f"{medians[c][TUNED] / medians[c][other]:>20.2f}"
                                               if other in medians[c] and TUNED in medians[c] else f"{'-':>20}"
                                               for c in cells))
    if TUNED in names:
        label = "tuned / engine default time"
        print(f"{label:<{width}}" + "".join(f"{medians[c][TUNED] / medians[c][ENGINE]:>20.2f}"
                                           if TUNED in medians[c] else f"{'-':>20}" for c in cells))
    scaling = []
    for batch, threads in cells:
        one = medians.get((batch, 1), {}).get(ENGINE)
        mine = medians[(batch, threads)].get(ENGINE)
        scaling.append(f"{one / mine:>20.2f}" if one and mine and threads > 1 else f"{'-':>20}")
    print(f"{'engine thread scaling (vs 1)':<{width}}" + "".join(scaling))
    floors = [compute_floor_seconds(flops_per_image * b, t) for b, t in cells]
    print(f"{'compute floor (FMA peak)':<{width}}" + "".join(f"{show(b, f):>20}" for (b, _), f in zip(cells, floors)))
    print(f"{'FMA peak (measured, GFLOP/s)':<{width}}" + "".join(
        f"{'-' if peak_gflops(t) is None else f'{peak_gflops(t):.0f}':>20}" for _, t in cells))
    for name in names:
        if name.endswith(("(not installed)", "(not supported yet)")):
            continue
        print(f"{'% of peak: ' + name:<{width}}" + "".join(
            f"{percent(share_of_peak(flops_per_image, b, t, medians[(b, t)].get(name))):>20}" for b, t in cells))


def print_summary(results: dict[str, dict | str], cells: list[tuple[int, int]]) -> None:
    """One line per model and cell: the engine's and ONNX Runtime's (and OpenVINO's)
    time per batch and share of the FMA peak, and the time ratio; or why the model did not run."""
    peaks = ", ".join(f"{'-' if peak_gflops(t) is None else f'{peak_gflops(t):.0f}'} GFLOP/s on {t} "
                      f"thread{'s' if t > 1 else ''}" for t in sorted({t for _, t in cells}))
    measured_at = getattr(ceilings(), "measured_at", "?")
    print(f"\nsummary: median ms per batch and % of the fp32 FMA peak (model FLOPs per second / the measured peak: "
          f"{peaks}; workbench.measure_ceilings(quick=True), measured {measured_at})")
    runtimes = (ENGINE, ONNX_RUNTIME, OPENVINO)
    header = f"{'model':<20}{'MFLOP/img':>10}{'cell':>14}" + "".join(
        f"{short:>24}" for short in ("engine", "ONNX Runtime", "OpenVINO")) + f"{'engine/ORT':>12}"
    print(header)
    for label, result in results.items():
        if isinstance(result, str):
            print(f"{label:<20}{'':>10}{'':>14}  {result}")
            continue
        if result.get("refused"):
            print(f"{label:<20}{'':>10}{'':>14}  engine {result['refused']}")
        for batch, threads in result["cells"]:
            medians = result["medians"][(batch, threads)]
            names = list(medians)
            rows = [ENGINE if runtime == ENGINE else fp32_row(names, runtime) for runtime in runtimes]
            figures = []
            for row in rows:
                seconds = medians.get(row) if row else None
                figures.append("-" if seconds is None else
                               f"{seconds * 1e3:.1f} ms {percent(share_of_peak(result['flops'], batch, threads, seconds))}")
            ratio = medians[ENGINE] / medians[rows[1]] if rows[1] in medians and ENGINE in medians else None
            print(f"{label:<20}{result['flops'] / 1e6:>10.0f}{f'b{batch} t{threads}':>14}"
                  + "".join(f"{f:>24}" for f in figures) + f"{'-' if ratio is None else f'{ratio:.2f}':>12}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="mobilenet_v2", metavar="NAME|FILE",
                       help=f"a zoo model ({', '.join(model_names())}) or an ONNX file (default mobilenet_v2)")
    which.add_argument("--models", default=None, metavar="A,B,...",
                       help="several models in one run, comma-separated (names or files), or \"all\" (the zoo)")
    parser.add_argument("--rounds", type=int, default=12, help="round-robin rounds per cell at batch 1 (half, "
                                                               "at least 3, at larger batches)")
    parser.add_argument("--block", type=int, default=5, help="consecutive runs per engine per round at batch 1")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per engine per cell")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--deepsparse-python", default=os.environ.get("ROOFLINE_DEEPSPARSE_PYTHON"),
                        help="python of a venv with deepsparse 1.8 (make deepsparse-venv)")
    parser.add_argument("--tune-budget", type=float, default=None,
                        help="seconds engine.tune may take per cell for the tuned row (0: no tuned row; default 60 "
                             "with one model, 0 with --models); a schedule cached for the cell (tiles=\"tuned\") is "
                             "used as it is")
    parser.add_argument("--openvino-default-precision", action="store_true",
                        help="add an OpenVINO row with its CPU plugin's default precision (bf16 on CPUs with "
                             "AVX512_BF16 or AMX), labelled as such; only where that default is not f32")
    args = parser.parse_args(argv)
    if args.tune_budget is None:
        args.tune_budget = 0.0 if args.models is not None else 60.0
    labels = model_list(args)
    paths = {}
    for label in labels:          # every model named or found before anything runs
        try:
            paths[label] = model_file(label)
        except ValueError as error:
            parser.error(str(error))
    results: dict[str, dict | str] = {}
    for label, path in paths.items():
        name = label if is_model_name(label) else path.stem
        results[name] = measure_model(name, path, args)
        print_model_table(results[name])
        print()
    if len(labels) > 1:
        cells = next((r["cells"] for r in results.values() if isinstance(r, dict)), [])
        print_summary(results, cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
