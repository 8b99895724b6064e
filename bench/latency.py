"""Our engine against ONNX Runtime (and OpenVINO / DeepSparse where installed), side by side.

For each (batch, threads) cell the engines take turns in blocks of a few runs each
(round robin, --rounds rounds), so machine noise hits all of them alike, with a short
pause after each block so one engine's idle threads cannot steal the next one's cores.
ONNX Runtime runs with its default session options (all graph optimisations, spinning
threads): what its users get. The table gives medians (ms at batch 1, images/s at larger
batches), our time ratio to ONNX Runtime and to DeepSparse, thread scaling, and the
compute floor (the network's FLOPs at this machine's measured FMA peak).

    python bench/latency.py [--model data/mobilenet_v2.onnx] [--rounds 12] [--batches 1 64]
                            [--deepsparse-python /work/deepsparse-venv/bin/python]
                            [--openvino-default-precision]

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
from workbench.compare import (ORT_BF16_FASTMATH, PRECISION, onnxruntime_precision, openvino_config,  # noqa: E402
                               openvino_precision, precision_name)

ENGINE = "engine"                     # the default configuration: the row the ratios use
TUNED = "engine, tuned (engine.tune)"
FUSION_ROWS = {"engine, unfused": False, "engine, fuse where it wins": "auto", "engine, every block fused": True}
DEEPSPARSE = "DeepSparse"
ONNX_RUNTIME = "ONNX Runtime"
OPENVINO = "OpenVINO"
PAUSE_SECONDS = 0.1     # after each block: ONNX Runtime's idle threads spin ~65 ms after a 2-thread run


def make_engines(model: engine.Model, model_path: Path, threads: int, deepsparse_python: str | None,
                 openvino_default_precision: bool = False, tuned=None):
    """label -> (callable(x), timed_by_callable) for every engine that is installed. Labels of
    the other runtimes carry the precision each reports (see the module docstring).
    tuned: an engine.TileSchedule for this cell (the "tuned" row), or None."""
    engines = {ENGINE: (lambda x: model.run(x, threads=threads), False)}
    if tuned is not None:
        engines[TUNED] = (lambda x: model.run(x, threads=threads, tiles=tuned), False)
    for name, fuse in FUSION_ROWS.items():
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


def compute_floor_seconds(flops_per_image: int, threads: int) -> float | None:
    """One image's FLOPs at this machine's measured FMA peak (workbench ceilings, cached)."""
    try:
        from workbench.ceilings import measure_ceilings
        return flops_per_image / (measure_ceilings(quick=True, threads=[threads]).peak_gflops(threads) * 1e9)
    except Exception as exc:  # noqa: BLE001 - the floor is context, not the benchmark
        print(f"no compute floor: {exc}", file=sys.stderr)
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--rounds", type=int, default=12, help="round-robin rounds per cell")
    parser.add_argument("--block", type=int, default=5, help="consecutive runs per engine per round at batch 1")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--deepsparse-python", default=os.environ.get("ROOFLINE_DEEPSPARSE_PYTHON"),
                        help="python of a venv with deepsparse 1.8 (make deepsparse-venv)")
    parser.add_argument("--tune-budget", type=float, default=60.0,
                        help="seconds engine.tune may take per cell for the tuned row (0: no tuned row); a "
                             "schedule cached for the cell (tiles=\"tuned\") is used as it is")
    parser.add_argument("--openvino-default-precision", action="store_true",
                        help="add an OpenVINO row with its CPU plugin's default precision (bf16 on CPUs with "
                             "AVX512_BF16 or AMX), labelled as such; only where that default is not f32")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        from engine.zoo import write_default_model
        write_default_model(args.model)
    model = engine.load(args.model)
    c, h, w = model.input_shape
    flops_per_image = sum(s.flops for s in model.plan(1).steps)
    cells = [(b, t) for b in args.batches for t in args.threads if t <= engine.available_cores()]
    print(f"model {args.model.name}: {flops_per_image / 1e6:.1f} MFLOP per image; cores {engine.available_cores()}; "
          f"engine default fuse_blocks={engine.DEFAULT_FUSE_BLOCKS!r}; engine rows: {PRECISION} kernels only; "
          f"every row {PRECISION} unless its label names another precision")
    medians: dict[tuple[int, int], dict[str, float]] = {}
    for batch, threads in cells:
        x = np.random.default_rng(0).standard_normal((batch, c, h, w), dtype=np.float32)
        block = args.block if batch == 1 else 1
        rounds = args.rounds if batch == 1 else max(3, args.rounds // 2)
        tuned = tuned_schedule(model, batch, threads, args.tune_budget) if args.tune_budget > 0 else None
        engines = make_engines(model, args.model, threads, args.deepsparse_python, args.openvino_default_precision,
                               tuned)
        samples = time_cell(engines, x, rounds, block)
        medians[(batch, threads)] = {name: statistics.median(values) for name, values in samples.items()}
        print(f"  measured batch {batch}, {threads} thread(s): {len(samples[ENGINE])} runs per engine", file=sys.stderr)

    def show(batch: int, seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return f"{seconds * 1e3:.2f} ms" if batch == 1 else f"{batch / seconds:.1f} img/s"

    names = list(dict.fromkeys(name for cell in medians.values() for name in cell))
    if not any(n.startswith(DEEPSPARSE) for n in names):
        names.append(f"{DEEPSPARSE} (not installed)")
    width = max(32, *(len(name) + 2 for name in names))
    header = [f"{'':<{width}}"] + [f"{f'batch {b}, {t} thread' + ('s' if t > 1 else ''):>20}" for b, t in cells]
    print("".join(header))
    for name in names:
        print(f"{name:<{width}}" + "".join(f"{show(b, medians[(b, t)].get(name)):>20}" for b, t in cells))
    for runtime in (ONNX_RUNTIME, OPENVINO, DEEPSPARSE):
        other = fp32_row(names, runtime)
        if other:
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
        scaling.append(f"{one / medians[(batch, threads)][ENGINE]:>20.2f}" if one and threads > 1 else f"{'-':>20}")
    print(f"{'engine thread scaling (vs 1)':<{width}}" + "".join(scaling))
    floors = [compute_floor_seconds(flops_per_image * b, t) for b, t in cells]
    print(f"{'compute floor (FMA peak)':<{width}}" + "".join(f"{show(b, f):>20}" for (b, _), f in zip(cells, floors)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
