"""Benchmark of the dense NCHWc conv kernel (engine.kernels.conv_nchwc) on every distinct conv
layer of torchvision's ResNet-18 and ResNet-50 at 224x224, beside ONNX Runtime running the
same single conv (+ ReLU) as an ONNX model, in one run.

Per layer, batch and thread count: engine and ONNX Runtime time (best of repeats), GFLOP/s
and % of the FMA peak. The peak is measured at the start of the run with workbench's FMA
probe (`workbench.ceilings`' kernel: independent FMA chains in registers), per thread count.
Each layer is checked against ONNX Runtime's output first (relative 1e-4). Both run with
the same thread count (numba.set_num_threads / intra_op_num_threads), in one process, on a
machine whose cores both engines share the same way; the whole run holds the project's bench
lock exclusively (so nothing else under the lock runs meanwhile).

    .venv/bin/python bench/kernel_conv_nchwc.py [--batches 1,16] [--threads 1,2] [--models resnet18,resnet50]
                                                [--pixels P] [--channels C] [--min-seconds S]

The summary weights each distinct layer by how often it occurs in the network: the
network's dense convs end to end (the stem included), as time and % of peak.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import fcntl  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (sets numba's environment first)
from engine.kernels import conv_nchwc as kernel  # noqa: E402
from engine.kernels.layout import CB, from_blocked, to_blocked  # noqa: E402

LOCK = Path("/tmp/roofline-bench.lock")

# (name, Cin, Cout, input H=W, kernel, stride, pad, occurrences in the network)
RESNET18 = [
    ("conv1 7x7/2", 3, 64, 224, 7, 2, 3, 1),
    ("l1 3x3 64", 64, 64, 56, 3, 1, 1, 4),
    ("l2 3x3/2 64-128", 64, 128, 56, 3, 2, 1, 1),
    ("l2 3x3 128", 128, 128, 28, 3, 1, 1, 3),
    ("l2 ds 1x1/2", 64, 128, 56, 1, 2, 0, 1),
    ("l3 3x3/2 128-256", 128, 256, 28, 3, 2, 1, 1),
    ("l3 3x3 256", 256, 256, 14, 3, 1, 1, 3),
    ("l3 ds 1x1/2", 128, 256, 28, 1, 2, 0, 1),
    ("l4 3x3/2 256-512", 256, 512, 14, 3, 2, 1, 1),
    ("l4 3x3 512", 512, 512, 7, 3, 1, 1, 3),
    ("l4 ds 1x1/2", 256, 512, 14, 1, 2, 0, 1),
]
RESNET50 = [
    ("conv1 7x7/2", 3, 64, 224, 7, 2, 3, 1),
    ("l1 1x1 64-64", 64, 64, 56, 1, 1, 0, 1),
    ("l1 3x3 64", 64, 64, 56, 3, 1, 1, 3),
    ("l1 1x1 64-256", 64, 256, 56, 1, 1, 0, 4),      # 3 expands + the downsample (stride 1)
    ("l1 1x1 256-64", 256, 64, 56, 1, 1, 0, 2),
    ("l2 1x1 256-128", 256, 128, 56, 1, 1, 0, 1),
    ("l2 3x3/2 128", 128, 128, 56, 3, 2, 1, 1),
    ("l2 1x1 128-512", 128, 512, 28, 1, 1, 0, 4),
    ("l2 ds 1x1/2", 256, 512, 56, 1, 2, 0, 1),
    ("l2 1x1 512-128", 512, 128, 28, 1, 1, 0, 3),
    ("l2 3x3 128", 128, 128, 28, 3, 1, 1, 3),
    ("l3 1x1 512-256", 512, 256, 28, 1, 1, 0, 1),
    ("l3 3x3/2 256", 256, 256, 28, 3, 2, 1, 1),
    ("l3 1x1 256-1024", 256, 1024, 14, 1, 1, 0, 6),
    ("l3 ds 1x1/2", 512, 1024, 28, 1, 2, 0, 1),
    ("l3 1x1 1024-256", 1024, 256, 14, 1, 1, 0, 5),
    ("l3 3x3 256", 256, 256, 14, 3, 1, 1, 5),
    ("l4 1x1 1024-512", 1024, 512, 14, 1, 1, 0, 1),
    ("l4 3x3/2 512", 512, 512, 14, 3, 2, 1, 1),
    ("l4 1x1 512-2048", 512, 2048, 7, 1, 1, 0, 3),
    ("l4 ds 1x1/2", 1024, 2048, 14, 1, 2, 0, 1),
    ("l4 1x1 2048-512", 2048, 512, 7, 1, 1, 0, 2),
    ("l4 3x3 512", 512, 512, 7, 3, 1, 1, 2),
]
MODELS = {"resnet18": RESNET18, "resnet50": RESNET50}


def best_seconds(call, min_seconds: float, min_repeats: int = 3) -> float:
    """Minimum wall time of `call()` (seconds) over repeats for at least `min_seconds`."""
    times = []
    stop = time.perf_counter() + min_seconds
    while len(times) < min_repeats or time.perf_counter() < stop:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def fma_peak(threads: int) -> float:
    """FMA peak GFLOP/s on `threads` threads: workbench.ceilings' FMA-chain probe, best of 5."""
    from workbench.ceilings import kernels as probes

    seeds = np.random.default_rng(threads).uniform(0.5, 1.5, (threads, probes.FMA_WIDTH)).astype(np.float32)
    probes.fma_chains(seeds, 10)
    repeats = 2_000_000
    seconds = min(best_seconds(lambda: probes.fma_chains(seeds, repeats), 0.0, 1) for _ in range(5))
    return probes.fma_flops(threads, repeats) / seconds / 1e9


def ort_session(weight, bias, batch, size, k, stride, pad, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cout, cin = weight.shape[:2]
    out = (size + 2 * pad - k) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[k, k], strides=[stride] * 2,
                              pads=[pad] * 4),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [batch, cin, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, cout, out, out])],
                              [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--pixels", type=int, default=kernel.DEFAULT_PIXELS)
    parser.add_argument("--channels", type=int, default=kernel.DEFAULT_CHANNELS)
    parser.add_argument("--min-seconds", type=float, default=0.2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    thread_counts = [min(int(t), numba.config.NUMBA_NUM_THREADS) for t in args.threads.split(",")]
    import onnxruntime as ort

    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        peaks = {t: fma_peak(t) for t in thread_counts}
        print(f"CPU: {cpu_name()}, {CB} fp32 lanes; onnxruntime {ort.__version__}; numba {numba.__version__}")
        print("FMA peak (workbench.ceilings FMA probe, measured now): "
              + ", ".join(f"{t} thread{'s' * (t > 1)} {peaks[t]:.0f} GFLOP/s" for t in thread_counts))
        print(f"engine tiles: pixels={args.pixels} channels={args.channels}")
        layers = {}
        for model in args.models.split(","):
            for row in MODELS[model]:
                layers.setdefault(row[1:7], []).append((model, row[0], row[7]))
        rng = np.random.default_rng(0)
        totals = {}
        for batch in batches:
            print(f"\nbatch {batch}")
            print(f"{'layer':<22} {'GFLOP':>6} | " + " | ".join(
                f"{t}T engine ms  %pk   ORT ms  %pk  e/ORT" for t in thread_counts))
            for (cin, cout, size, k, stride, pad), uses in layers.items():
                out_size = (size + 2 * pad - k) // stride + 1
                flops = kernel.conv_nchwc_flops(batch, cin, cout, out_size, out_size, k, k)
                x = rng.standard_normal((batch, cin, size, size)).astype(np.float32)
                weight = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
                bias = rng.standard_normal(cout).astype(np.float32)
                packed_w, packed_b = kernel.pack_conv_nchwc(weight, bias)
                xb = to_blocked(x)
                out = np.empty((batch, packed_w.shape[0], out_size, out_size, CB), np.float32)

                def run_engine():
                    kernel.conv_nchwc(xb, packed_w, packed_b, out, stride, stride, pad, pad, 0.0, np.inf, None,
                                      args.pixels, args.channels)

                cells = []
                for threads in thread_counts:
                    numba.set_num_threads(threads)
                    session = ort_session(weight, bias, batch, size, k, stride, pad, threads)
                    feed = {"x": x}
                    expected = session.run(None, feed)[0]
                    run_engine()
                    got = from_blocked(out, cout)
                    error = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30))
                    if error > 1e-4:
                        raise SystemExit(f"engine and ONNX Runtime disagree on {uses[0][1]}: relative {error:.2g}")
                    engine_s = best_seconds(run_engine, args.min_seconds)
                    ort_s = best_seconds(lambda: session.run(None, feed), args.min_seconds)
                    for model, _, count in uses:
                        key = (model, batch, threads)
                        e, o, f = totals.get(key, (0.0, 0.0, 0))
                        totals[key] = (e + count * engine_s, o + count * ort_s, f + count * flops)
                    peak = peaks[threads]
                    cells.append(f"{engine_s * 1e3:>12.2f} {100 * flops / engine_s / 1e9 / peak:>4.0f} "
                                 f"{ort_s * 1e3:>8.2f} {100 * flops / ort_s / 1e9 / peak:>4.0f} {engine_s / ort_s:>6.2f}")
                name = " / ".join(sorted({u[1] for u in uses}))
                print(f"{name[:22]:<22} {flops / 1e9:>6.2f} | " + " | ".join(cells), flush=True)
        print("\nWhole networks (dense convs only, each distinct layer x its occurrences):")
        for (model, batch, threads), (e, o, f) in sorted(totals.items()):
            peak = peaks[threads]
            print(f"  {model:<9} batch {batch:>3} {threads}T: engine {e * 1e3:8.1f} ms ({100 * f / e / 1e9 / peak:4.1f} % of "
                  f"peak), ONNX Runtime {o * 1e3:8.1f} ms ({100 * f / o / 1e9 / peak:4.1f} %), engine/ORT {e / o:.2f}")


if __name__ == "__main__":
    main()
