"""Engine vs ONNX Runtime (and OpenVINO / DeepSparse when installed), side by side.

For each (batch, threads) cell the engines take turns, one timed run each, so machine
noise hits all of them alike; the table gives medians and our time ratio to ONNX Runtime.

    python bench/latency.py [--model data/mobilenet_v2.onnx] [--repeats 30] [--batches 1 64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402


def make_engines(model_path: Path, threads: int, fuse_blocks: bool):
    """name -> callable(x) for every engine that is installed."""
    engines = {}
    model = engine.load(model_path)
    engines["engine"] = lambda x: model.run(x, threads=threads)
    if fuse_blocks:
        engines["engine (fused)"] = lambda x: model.run(x, threads=threads, fuse_blocks=True)
    try:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's idle threads otherwise keep spinning on the cores after each run, which
        # slows whichever engine runs next in this interleaved benchmark
        options.add_session_config_entry("session.force_spinning_stop", "1")
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        engines[f"onnxruntime {ort.__version__}"] = lambda x: session.run(None, {name: x})[0]
    except ImportError:
        print("onnxruntime not installed: skipped", file=sys.stderr)
    try:
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(str(model_path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                               "PERFORMANCE_HINT": "LATENCY"})
        engines[f"openvino {ov.__version__}"] = lambda x: compiled(x)[0]
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - a broken optional engine must not stop the benchmark
        print(f"openvino failed: {exc}", file=sys.stderr)
    return engines


def time_cell(engines: dict, x: np.ndarray, repeats: int, warmup: int = 3) -> dict[str, float]:
    for run in engines.values():
        for _ in range(warmup):
            run(x)
    samples = {name: [] for name in engines}
    for _ in range(repeats):
        for name, run in engines.items():
            start = time.perf_counter()
            run(x)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per engine at batch 1")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fuse-blocks", action="store_true", help="also time fuse_blocks=True")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        from engine.models import write_default_model
        write_default_model(args.model)
    model = engine.load(args.model)
    c, h, w = model.input_shape
    flops_per_image = sum(s.flops for s in model.plan(1).steps)
    print(f"model {args.model.name}: {flops_per_image / 1e6:.1f} MFLOP per image; "
          f"cores {engine.available_cores()}")
    rows = []
    for batch in args.batches:
        x = np.random.default_rng(0).standard_normal((batch, c, h, w), dtype=np.float32)
        repeats = max(5, args.repeats // batch) if batch > 1 else args.repeats
        for threads in args.threads:
            if threads > engine.available_cores():
                continue
            medians = time_cell(make_engines(args.model, threads, args.fuse_blocks), x, repeats)
            rows.append((batch, threads, medians))
    names = list(rows[0][2]) if rows else []
    ort_name = next((n for n in names if n.startswith("onnxruntime")), None)
    header = f"{'batch':>5} {'threads':>7} " + " ".join(f"{n:>22}" for n in names)
    if ort_name:
        header += f" {'engine/ORT time':>16}"
    print(header)
    for batch, threads, medians in rows:
        cells = []
        for name in names:
            seconds = medians[name]
            cells.append(f"{seconds * 1e3:>10.2f} ms" if batch == 1 else f"{batch / seconds:>10.1f} img/s")
        line = f"{batch:>5} {threads:>7} " + " ".join(f"{c:>22}" for c in cells)
        if ort_name:
            line += f" {medians['engine'] / medians[ort_name]:>16.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
