"""Where a ResNet's time goes, per layer kind: the engine's per-step time beside ONNX Runtime's
per-node time, summed per kind of layer (stem, maxpool, 3x3 stride 1, 3x3 stride 2, 1x1
stride 1, 1x1 stride 2 downsample, classifier, layout changes).

Engine: `model.run(x, threads=T)` with an engine.Recorder hook (the default configuration),
`--repeats` runs after warm-ups, the median per step. ONNX Runtime: its default session
options (all graph optimisations) with enable_profiling=True, `--repeats` runs after warm-ups,
the median per node of its profile's "kernel_time" events. Its nodes are matched to our
steps by tensor name: ONNX Runtime names a node after its output (with "_nchwc" where its
NCHWc transformer rewrote it), and the engine's step holds the ONNX nodes it fused
(Layer.sources). The two engines run one after the other in one process (never at once).
Per-step sums are below the run's wall time (the runtime's own work between steps is not in
them): both totals are printed.

    .venv/bin/python bench/resnet_layers.py [--models resnet18,resnet50] [--batches 1,16]
                                           [--threads 2] [--repeats 20] [--steps]

--steps also prints every step (engine and ONNX Runtime ms, ratio).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402
from engine import zoo  # noqa: E402

KINDS = ("stem", "maxpool", "3x3 s1", "3x3 s2", "1x1 s1", "1x1 s2", "classifier", "layout")


def layer_kind(layer) -> str:
    """The layer kind of one engine layer (a Conv by its kernel and stride)."""
    if layer is None:
        return "layout"
    if layer.op == "MaxPool":
        return "maxpool"
    if layer.op != "Conv":
        return "classifier"        # GlobalAveragePool, Flatten, Linear
    if layer.conv_kind == "direct":
        return "stem"
    kh, _ = layer.attrs["kernel_shape"]
    stride = layer.attrs["strides"][0]
    return f"{kh}x{kh} s{stride}"


def engine_steps(model, batch, threads, repeats):
    """{step name: median seconds}, {step name: kind}, median run seconds."""
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape), dtype=np.float32)
    for _ in range(3):
        model.run(x, threads=threads)
    recorder = engine.Recorder()
    for _ in range(repeats):
        model.run(x, threads=threads, hooks=[recorder])
    by_name = {layer.name: layer for layer in model.layers}
    seconds, kinds = defaultdict(list), {}
    for record in recorder.records:
        seconds[record.name].append(record.seconds)
        kinds[record.name] = layer_kind(by_name.get(record.name))
    runs = [run.seconds for run in recorder.runs]
    return {name: float(np.median(s)) for name, s in seconds.items()}, kinds, float(np.median(runs))


def ort_nodes(path, batch, threads, repeats):
    """{tensor name ONNX Runtime's node writes: median seconds}, median run seconds."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        feed = {session.get_inputs()[0].name: x}
        for _ in range(3):
            session.run(None, feed)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feed)
            runs.append(time.perf_counter() - start)
        events = json.load(open(session.end_profiling()))
    per_run = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_run[event["name"][:-len("_kernel_time")]].append(event["dur"] * 1e-6)
    # the last `repeats` runs of each node (the warm-ups come first)
    return {name: float(np.median(d[-repeats:])) for name, d in per_run.items()}, float(np.median(runs))


def match(model, onnx_path, ort_times):
    """{ONNX Runtime node: engine step name or None}: through the tensor the node writes."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    producer = {out: node.name for node in proto.graph.node for out in node.output}
    layer_of_source = {source: layer.name for layer in model.layers for source in layer.sources}
    matched = {}
    for name in ort_times:
        tensor = name[:-len("_nchwc")] if name.endswith("_nchwc") else name
        node = producer.get(tensor, tensor)
        matched[name] = layer_of_source.get(node)
    return matched


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", action="store_true")
    args = parser.parse_args(argv)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
          f"threads {args.threads}, repeats {args.repeats}")
    for name in args.models.split(","):
        path = zoo.model_path(name)
        model = engine.load(path)
        for batch in (int(b) for b in args.batches.split(",")):
            repeats = args.repeats if batch == 1 else max(3, args.repeats // 4)
            ours, kinds, our_run = engine_steps(model, batch, args.threads, repeats)
            theirs, their_run = ort_nodes(path, batch, args.threads, repeats)
            matched = match(model, path, theirs)
            ours_by_kind, theirs_by_kind, counts = defaultdict(float), defaultdict(float), defaultdict(int)
            for step, seconds in ours.items():
                ours_by_kind[kinds[step]] += seconds
                counts[kinds[step]] += 1
            their_by_step = defaultdict(float)
            for node, seconds in theirs.items():
                step = matched[node]
                kind = kinds.get(step, "classifier" if step is None and "Reorder" not in node else "layout")
                theirs_by_kind[kind] += seconds
                if step is not None:
                    their_by_step[step] += seconds
            print(f"\n## {name} batch {batch}: run {our_run * 1e3:.2f} ms engine, {their_run * 1e3:.2f} ms "
                  f"ONNX Runtime (x{our_run / their_run:.2f}); per-step sums {sum(ours.values()) * 1e3:.2f} / "
                  f"{sum(theirs.values()) * 1e3:.2f} ms")
            print("| kind | steps | engine ms | ONNX Runtime ms | engine / ORT | engine share |")
            print("|---|---|---|---|---|---|")
            total = sum(ours.values())
            for kind in KINDS:
                if kind in ours_by_kind or kind in theirs_by_kind:
                    a, b = ours_by_kind[kind], theirs_by_kind[kind]
                    ratio = f"{a / b:.2f}" if b > 0 else "-"
                    print(f"| {kind} | {counts[kind]} | {a * 1e3:.2f} | {b * 1e3:.2f} | {ratio} | "
                          f"{a / total * 100:.0f} % |")
            if args.steps:
                for step, seconds in ours.items():
                    b = their_by_step.get(step, 0.0)
                    print(f"  {kinds[step]:10s} {step:50s} {seconds * 1e3:7.3f} {b * 1e3:7.3f} "
                          f"{seconds / b if b else float('nan'):5.2f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
