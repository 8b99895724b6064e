"""Time per layer kind: our engine's steps beside ONNX Runtime's nodes, for any zoo model.

For each model (an engine.zoo.MODELS name or an ONNX path), batch and thread count:

- engine: its default configuration (fuse_blocks "auto", default tiles) run with an
  engine.Recorder after --warmups runs; the median per step over the runs;
- ONNX Runtime: its CPU provider (all graph optimisations, default spinning threads,
  `threads` intra-op threads) with profiling on; the median per node of its "kernel_time"
  events. Its nodes are mapped onto our layers as workbench.compare maps them (LayerMap:
  Layer.sources, the tensor a node writes, "_nchwc" suffixes); a mapped node takes the kind
  of our unfused plan's step for that layer (our plan runs Flatten as a view: "classifier"),
  an unmapped Reorder* node is "layout", an unmapped activation node "activation", anything
  else "other".

Runs: --runs at batch 1, --batched-runs (default max(3, runs // 4)) at larger batches, after
min(--warmups, runs) warm-ups. The table's rows:

- one per layer kind, derived from our plan's steps (step op, Layer.conv_kind,
  kernel_shape, strides): stem (the direct conv on the input's few channels), maxpool,
  1x1 sN (group-1 1x1 convs: pointwise/expand/project at stride 1, conv_nchwc at stride 2),
  dense kxk sN (other group-1 convs), depthwise kxk sN, fused block (expand + depthwise +
  project in one step of ours), se, activation (stand-alone), pool (global average),
  classifier (flatten + linear), layout (our input/output and layout conversions, ORT's
  Reorder* nodes), other. Columns: how many of our steps, our time, ORT's time for the same
  nodes, the difference, the ratio, the kind's share of our summed steps, and the kind's
  conv/linear FLOPs (our steps' count, the same work for both) per second, ours / ORT's;
- "sum of steps / nodes": the kind rows added up;
- "run overhead": a hooked run's wall time (as the caller sees it) minus its steps (ours),
  ORT's model_run event minus its node events (theirs): medians per run;
- "run, hooked / profiled": the median wall time of those runs (perf_counter around
  model.run / session.run);
- "run without hooks / profiling": profiling costs ORT time per node, so both are timed
  plainly too, back to back: our run without hooks, a second ORT session without profiling.

Above each table: the plan's step count and the median time of a run whose every step is a
no-op (the run loop's Python cost); once per thread count, the median time of one empty
numba prange region (a fork-join of numba's threads). --steps adds every step of ours (kind,
our time, ORT's time for the nodes mapped onto its layers, ratio) and every ORT node
(op, our layer, kind, time).

    python bench/per_kind.py [--models mobilenet_v3_small resnet18 path/to/model.onnx ...]
                             [--batches 1 16] [--threads 2] [--runs 200] [--batched-runs N]
                             [--warmups 20] [--steps]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine import runtime, zoo  # noqa: E402

# the order of the kinds in a table (a kind's family: its text before the kernel size)
KIND_ORDER = ("stem", "maxpool", "1x1", "dense", "depthwise", "fused block", "se", "activation", "pool",
              "classifier", "layout", "other")
# step ops whose kind is the op itself
OWN_KIND_OPS = ("stem", "maxpool", "se", "activation", "pool", "layout")
# ORT node types that are an activation on their own (SiLU as QuickGelu, HardSwish): we run
# them in the producing conv's epilogue
ORT_ACTIVATIONS = ("QuickGelu", "HardSwish", "HardSigmoid", "Sigmoid", "Mul", "Relu", "Clip")


def step_kind(step) -> str:
    """The layer kind of one of our plan's steps (see the module docstring)."""
    if step.op == "block":
        return "fused block"
    if step.op in ("linear", "flatten"):
        return "classifier"
    if step.op in OWN_KIND_OPS:
        return step.op
    layer = step.layer
    if layer is None or layer.op != "Conv":
        return "other"
    kh, kw = layer.attrs["kernel_shape"]
    stride = layer.attrs["strides"][0]
    if layer.conv_kind == "depthwise":
        return f"depthwise {kh}x{kw} s{stride}"
    if (kh, kw) == (1, 1):
        return f"1x1 s{stride}"
    return f"dense {kh}x{kw} s{stride}"


def kind_order(kind: str) -> tuple:
    """Sort key: the family's place in KIND_ORDER, then kernel size and stride."""
    family = next((f for f in KIND_ORDER if kind.startswith(f)), "other")
    return KIND_ORDER.index(family), kind


def resolve(model: str) -> tuple[str, Path]:
    """(label, ONNX path) of a zoo model name (written to data/ if missing) or an ONNX path."""
    if model in zoo.MODELS:
        return model, zoo.model_path(model)
    path = Path(model)
    if not path.is_file():
        raise SystemExit(f"{model!r} is neither a zoo model ({', '.join(zoo.MODELS)}) nor an ONNX file")
    return path.stem, path


def median(values) -> float:
    return float(statistics.median(values))


@dataclass
class Side:
    """One engine's measurement: seconds per kind, run overhead, hooked/profiled and plain run."""
    per_kind: dict = field(default_factory=lambda: defaultdict(float))
    overhead: float = 0.0
    hooked: float = 0.0
    plain: float = 0.0
    flops: dict = field(default_factory=lambda: defaultdict(int))   # ours: conv/linear FLOPs per kind, whole batch


def time_plain(run, runs: int) -> float:
    """Median wall time of `run()` over `runs` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return median(times)


def engine_side(model, x, threads: int, runs: int, warmups: int) -> tuple[Side, dict, dict]:
    """Our side, the {step name: median seconds} and {step name: kind} of the default plan."""
    plan = model.plan(x.shape[0], threads)
    kinds = {step.name: step_kind(step) for step in plan.steps}
    flops = defaultdict(int)
    for step in plan.steps:
        flops[kinds[step.name]] += step.flops
    for _ in range(warmups):
        model.run(x, threads=threads)
    recorder, per_step, overhead, walls = engine.Recorder(), defaultdict(list), [], []
    for _ in range(runs):
        recorder.clear()
        start = time.perf_counter()
        model.run(x, threads=threads, hooks=[recorder])
        walls.append(time.perf_counter() - start)
        for record in recorder.records:
            per_step[record.name].append(record.seconds)
        overhead.append(walls[-1] - sum(record.seconds for record in recorder.records))
    side = Side(overhead=median(overhead), hooked=median(walls),
                plain=time_plain(lambda: model.run(x, threads=threads), runs), flops=flops)
    steps = {name: median(values) for name, values in per_step.items()}
    for name, seconds in steps.items():
        side.per_kind[kinds.get(name, "other")] += seconds
    return side, steps, kinds


def ort_session(path: Path, threads: int, profile_prefix: str | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_kind(layer, op: str, kinds: dict) -> str:
    """The kind of an ORT node mapped onto `layer` (None: unmapped) of op type `op`."""
    if layer is not None and layer in kinds:
        return kinds[layer]
    if op.startswith("Reorder"):
        return "layout"
    if layer is not None:                   # a layer our plan runs as a view (Flatten)
        return "classifier"
    if op in ORT_ACTIVATIONS:               # ORT runs these beside the conv, we in its epilogue
        return "activation"
    return "other"


def ort_side(model, path: Path, x, threads: int, runs: int, warmups: int) -> tuple[Side, list]:
    """ORT's side and its rows (node, op, our layer or None, kind, median seconds)."""
    from engine.onnx_import import read_model
    from workbench.compare import LayerMap, parse_ort_profile

    with tempfile.TemporaryDirectory() as workdir:
        session = ort_session(path, threads, os.path.join(workdir, "ort"))
        feed_name = session.get_inputs()[0].name
        for _ in range(warmups):
            session.run(None, {feed_name: x})
        hooked = time_plain(lambda: session.run(None, {feed_name: x}), runs)
        raw, run_seconds = parse_ort_profile(session.end_profiling())
    session = ort_session(path, threads, None)
    for _ in range(warmups):
        session.run(None, {feed_name: x})
    plain = time_plain(lambda: session.run(None, {feed_name: x}), runs)
    raw = raw[raw["run"] >= warmups]
    node_sums = raw.groupby("run")["seconds"].sum().to_numpy()
    overhead = median(np.asarray(run_seconds[warmups:warmups + len(node_sums)]) - node_sums)
    side = Side(overhead=overhead, hooked=hooked, plain=plain)
    kinds = {step.name: step_kind(step) for step in model.plan(x.shape[0], threads, fuse_blocks=False).steps}
    layer_map = LayerMap(model, read_model(str(path)))
    rows = []
    for (node, op), seconds in raw.groupby(["ort_node", "ort_op"], sort=False)["seconds"].median().items():
        layer = layer_map.layer_of(node)
        kind = ort_kind(layer, op, kinds)
        side.per_kind[kind] += seconds
        rows.append((node, op, layer, kind, seconds))
    return side, rows


def python_per_step(model, x, threads: int, runs: int) -> tuple[float, int]:
    """Median wall time of a run whose every step is a no-op (Python's share), and the steps."""
    plan = model.plan(x.shape[0], threads)
    calls = [step.call for step in plan.steps]
    for step in plan.steps:
        step.call = _noop
    try:
        return time_plain(lambda: runtime.run(plan, x, threads), runs), len(plan.steps)
    finally:
        for step, call in zip(plan.steps, calls):
            step.call = call


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
    return time_plain(lambda: region(a), runs)


class Units:
    """us below 20 ms of our plain run, ms above (ResNets at batch 16)."""

    def __init__(self, seconds: float):
        self.name, self.scale, self.digits = ("ms", 1e3, 2) if seconds > 0.02 else ("us", 1e6, 0)

    def __call__(self, seconds: float, sign: bool = False) -> str:
        return f"{seconds * self.scale:{'+' if sign else ''}.{self.digits}f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def print_table(ours: Side, theirs: Side, counts: dict, units: Units) -> None:
    """The per-kind rows, then the sums, run overhead and whole-run rows."""
    print(f"| kind | steps | engine {units.name} | ONNX Runtime {units.name} | engine - ORT | engine / ORT "
          f"| engine share | GFLOP/s engine / ORT |")
    print("|---|---|---|---|---|---|---|---|")
    total = sum(ours.per_kind.values())
    for kind in sorted(set(ours.per_kind) | set(theirs.per_kind), key=kind_order):
        a, b = ours.per_kind.get(kind, 0.0), theirs.per_kind.get(kind, 0.0)
        flops = ours.flops.get(kind, 0)
        rate = f"{flops / a / 1e9:.0f} / {flops / b / 1e9:.0f}" if flops and a > 0 and b > 0 else ""
        print(f"| {kind} | {counts.get(kind, 0)} | {units(a)} | {units(b)} | {units(a - b, True)} | {ratio(a, b)} "
              f"| {a / total * 100:.0f} % | {rate} |")
    rows = (("sum of steps / nodes", total, sum(theirs.per_kind.values())),
            ("run overhead", ours.overhead, theirs.overhead),
            ("run, hooked / profiled", ours.hooked, theirs.hooked),
            ("**run without hooks / profiling**", ours.plain, theirs.plain))
    for label, a, b in rows:
        print(f"| {label} | | {units(a)} | {units(b)} | {units(a - b, True)} | {ratio(a, b)} | | |")


def print_steps(model, x, threads: int, steps: dict, kinds: dict, rows: list, units: Units) -> None:
    """Every step of ours beside the ORT nodes mapped onto its layers, then every ORT node."""
    step_of = {member: step.name for step in model.plan(x.shape[0], threads).steps for member in step.members}
    theirs = defaultdict(float)
    for _, _, layer, _, seconds in rows:
        if layer is not None and layer in step_of:
            theirs[step_of[layer]] += seconds
    for name, seconds in steps.items():
        print(f"  engine {kinds.get(name, 'other'):18s} {name:50s} {units(seconds):>9s} "
              f"{units(theirs.get(name, 0.0)):>9s} {ratio(seconds, theirs.get(name, 0.0)):>5s}")
    for node, op, layer, kind, seconds in rows:
        print(f"  ort {node} ({op}) -> {layer} [{kind}]: {units(seconds)}")


def measure(name: str, path: Path, model, batch: int, threads: int, runs: int, warmups: int, steps: bool) -> None:
    """Measure one model at one batch and thread count and print its table."""
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape), dtype=np.float32)
    ours, our_steps, kinds = engine_side(model, x, threads, runs, warmups)
    theirs, their_rows = ort_side(model, path, x, threads, runs, warmups)
    python, step_count = python_per_step(model, x, threads, runs)
    counts = defaultdict(int)
    for step_name in our_steps:
        counts[kinds.get(step_name, "other")] += 1
    units = Units(ours.plain)
    print(f"\n## {name}, batch {batch}, {threads} threads, medians of {runs} runs after {warmups} warm-ups "
          f"({units.name}); our plan has {step_count} steps, a run of no-op steps takes {python * 1e6:.1f} us")
    print_table(ours, theirs, counts, units)
    if steps:
        print_steps(model, x, threads, our_steps, kinds, their_rows, units)
    sys.stdout.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"],
                        help="engine.zoo.MODELS names or ONNX paths")
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument("--runs", type=int, default=200, help="timed runs at batch 1")
    parser.add_argument("--batched-runs", type=int, default=None,
                        help="timed runs at batch > 1 (default max(3, runs // 4))")
    parser.add_argument("--warmups", type=int, default=20, help="untimed runs first (at most the timed runs)")
    parser.add_argument("--steps", action="store_true", help="also print every step's and node's median")
    args = parser.parse_args(argv)
    batched_runs = args.batched_runs if args.batched_runs is not None else max(3, args.runs // 4)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}")
    for threads in args.threads:
        print(f"fork-join of an empty prange region, {threads} threads: {fork_join_seconds(threads) * 1e6:.2f} us")
    for model_arg in args.models:
        name, path = resolve(model_arg)
        model = engine.load(str(path))
        for batch in args.batches:
            runs = args.runs if batch == 1 else batched_runs
            for threads in args.threads:
                measure(name, path, model, batch, threads, runs, min(args.warmups, runs), args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
