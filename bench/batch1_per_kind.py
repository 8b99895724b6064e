"""Batch-1 time per layer kind: our engine's steps beside ONNX Runtime's nodes.

For each model: our engine's default configuration (fuse_blocks "auto", default tiles) run
with a Recorder, the median per step over --runs runs; ONNX Runtime's CPU provider (all graph
optimisations, default spinning threads, `threads` intra-op threads) with profiling on, the
median per node. ORT's nodes are mapped onto our layers as workbench.compare maps them
(Layer.sources, tensor names; its Reorder* nodes are "layout"), and both sides are summed per
kind of layer:

    stem, 1x1 conv, depthwise kxk sN, fused block (our expand+dw+project in one step),
    se, activation (stand-alone), pool, classifier (flatten + linear), layout

plus "run overhead": the run's wall time (as the caller sees it) minus the sum of its steps
(ours) or of its nodes (ORT's model_run event minus its node events). Profiling costs ORT
time per node (its profiled total is well above its plain one), so the last row times both
plainly: our run without hooks, a second ORT session without profiling, back to back.

Also, for our engine: the Python cost per step (the run loop with every kernel call replaced
by a no-op) and the fork-join cost of one empty numba prange region at `threads` threads.

    python bench/batch1_per_kind.py [--models mobilenet_v3_small ...] [--runs 200] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine import runtime  # noqa: E402
from engine.zoo import model_path  # noqa: E402

KINDS = ("stem", "1x1 conv", "depthwise 3x3 s1", "depthwise 3x3 s2", "depthwise 5x5 s1", "depthwise 5x5 s2",
         "fused block", "se", "activation", "pool", "classifier", "layout", "other")


# ORT node types that are an activation on their own (SiLU as QuickGelu, HardSwish)
ORT_ACTIVATIONS = ("QuickGelu", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Relu", "Clip")


def step_kind(step) -> str:
    """The kind (KINDS) of one of our plan's steps."""
    op = step.op
    if op in ("pointwise", "expand", "project"):
        return "1x1 conv"
    if op == "depthwise":
        kh, _ = step.layer.attrs["kernel_shape"]
        return f"depthwise {kh}x{kh} s{step.layer.attrs['strides'][0]}"
    if op == "block":
        return "fused block"
    if op in ("linear", "flatten"):
        return "classifier"
    if op in ("stem", "se", "activation", "pool", "layout"):
        return op
    return "other"


def engine_per_kind(model, x, threads: int, runs: int) -> tuple[dict, float, dict]:
    """(median seconds per kind, median run overhead, median seconds per step name, median
    seconds of a run without hooks)."""
    plan = model.plan(1, threads)
    kinds = {step.name: step_kind(step) for step in plan.steps}
    recorder = engine.Recorder()
    for _ in range(20):
        model.run(x, threads=threads)
    per_step = defaultdict(list)
    overhead = []
    for _ in range(runs):
        recorder.clear()
        start = time.perf_counter()
        model.run(x, threads=threads, hooks=[recorder])
        wall = time.perf_counter() - start
        for record in recorder.records:
            per_step[record.name].append(record.seconds)
        overhead.append(wall - sum(record.seconds for record in recorder.records))
    plain = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(x, threads=threads)
        plain.append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in per_step.items()}
    by_kind = defaultdict(float)
    for name, seconds in medians.items():
        by_kind[kinds.get(name, "other")] += seconds
    return dict(by_kind), statistics.median(overhead), medians, statistics.median(plain)


def ort_per_kind(model, path: Path, x, threads: int, runs: int) -> tuple[dict, float, list]:
    """(median seconds per kind, median run overhead (model_run minus its nodes), rows, median
    seconds of a run of a session without profiling)."""
    import onnxruntime as ort

    from workbench.compare import LayerMap, parse_ort_profile
    from engine.onnx_import import read_model

    plan = model.plan(1, threads, fuse_blocks=False)
    kinds = {step.name: step_kind(step) for step in plan.steps}
    layer_map = LayerMap(model, read_model(str(path)))
    with tempfile.TemporaryDirectory() as workdir:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(workdir, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(20):
            session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        raw, run_seconds = parse_ort_profile(session.end_profiling())
        options.enable_profiling = False
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feed)
        plain = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feed)
            plain.append(time.perf_counter() - start)
    raw = raw[raw["run"] >= 20]
    run_seconds = run_seconds[20:]
    node_sums = raw.groupby("run")["seconds"].sum().to_numpy()
    overhead = statistics.median(np.asarray(run_seconds[:len(node_sums)]) - node_sums)
    medians = raw.groupby(["ort_node", "ort_op"])["seconds"].median()
    by_kind = defaultdict(float)
    rows = []
    for (node, op), seconds in medians.items():
        layer = layer_map.layer_of(node)
        if layer is not None and layer in kinds:
            kind = kinds[layer]
        elif op.startswith("Reorder"):
            kind = "layout"
        elif layer is not None:                 # a layer our plan runs as a view (Flatten)
            kind = "classifier"
        elif op in ORT_ACTIVATIONS:             # ORT runs these beside the conv, we in its epilogue
            kind = "activation"
        else:
            kind = "other"
        by_kind[kind] += seconds
        rows.append((node, op, layer, kind, seconds))
    return dict(by_kind), overhead, rows, statistics.median(plain)


def python_per_step(model, x, threads: int, runs: int) -> tuple[float, int]:
    """Median wall time of a run whose every step is a no-op (Python's share), and the steps."""
    plan = model.plan(1, threads)
    calls = [step.call for step in plan.steps]
    for step in plan.steps:
        step.call = _noop
    try:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            runtime.run(plan, x, threads)
            times.append(time.perf_counter() - start)
    finally:
        for step, call in zip(plan.steps, calls):
            step.call = call
    return statistics.median(times), len(plan.steps)


def _noop():
    return None


def fork_join_seconds(threads: int, runs: int = 2000) -> float:
    """Median time of one call to an empty-bodied numba prange region of 2 items."""
    import numba

    @numba.njit(parallel=True)
    def region(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1.0
    numba.set_num_threads(threads)
    a = np.zeros(2, np.float32)
    for _ in range(100):
        region(a)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        region(a)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", action="store_true", help="also print every step's and node's median")
    args = parser.parse_args(argv)
    print(f"fork-join of an empty prange region, {args.threads} threads: "
          f"{fork_join_seconds(args.threads) * 1e6:.2f} us")
    for name in args.models:
        path = model_path(name)
        model = engine.load(str(path))
        x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)
        ours, our_overhead, our_steps, our_plain = engine_per_kind(model, x, args.threads, args.runs)
        theirs, their_overhead, their_rows, their_plain = ort_per_kind(model, path, x, args.threads, args.runs)
        python, steps = python_per_step(model, x, args.threads, args.runs)
        print(f"\n{name}, batch 1, {args.threads} threads, medians of {args.runs} runs (us); our plan has {steps} "
              f"steps, a run of no-op steps takes {python * 1e6:.1f} us")
        print(f"| kind | engine | ONNX Runtime | engine - ORT |")
        print("|---|---|---|---|")
        for kind in KINDS:
            a, b = ours.get(kind, 0.0) * 1e6, theirs.get(kind, 0.0) * 1e6
            if a or b:
                print(f"| {kind} | {a:.0f} | {b:.0f} | {a - b:+.0f} |")
        print(f"| run overhead | {our_overhead * 1e6:.0f} | {their_overhead * 1e6:.0f} | "
              f"{(our_overhead - their_overhead) * 1e6:+.0f} |")
        total_ours = sum(ours.values()) + our_overhead
        total_theirs = sum(theirs.values()) + their_overhead
        print(f"| **total** | {total_ours * 1e6:.0f} | {total_theirs * 1e6:.0f} | "
              f"{(total_ours - total_theirs) * 1e6:+.0f} |")
        print(f"| run without hooks / profiling | {our_plain * 1e6:.0f} | {their_plain * 1e6:.0f} | "
              f"{(our_plain - their_plain) * 1e6:+.0f} |")
        if args.steps:
            for step, seconds in our_steps.items():
                print(f"  engine {step}: {seconds * 1e6:.1f}")
            for node, op, layer, kind, seconds in their_rows:
                print(f"  ort {node} ({op}) -> {layer} [{kind}]: {seconds * 1e6:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
