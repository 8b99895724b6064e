"""Fused vs unfused blocks, block by block, measured side by side: inverted-residual blocks
and squeeze-and-excitation blocks (engine.passes.find_fusable_blocks).

For each (batch, threads) cell the configurations take turns (one run each, with a
Recorder), and every block's time is the median over runs of its fused step against the
sum of its unfused steps (expand, depthwise, [squeeze-excite,] project). Band heights: the cost
model's choice (block_rows=0) and any given with --bands. The last columns say what the
engine's "auto" fusion policy (engine.fusion.fusion_wins) decides for the block.

    python bench/fusion.py [--model efficientnet_b0] [--batches 1 64] [--threads 1 2] [--bands 2 4 8] [--runs 30]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine.machine import machine_info  # noqa: E402
from engine.passes import find_fusable_blocks  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.fusion import block_rows_for, fusion_wins  # noqa: E402


def step_times(model, x, threads, runs_per_config, configs_order):
    """{config label: {step name: [seconds per run]}}, configs interleaved run by run."""
    samples = {label: defaultdict(list) for label, _, _ in configs_order}
    for _, tiles_, fuse in configs_order:          # warm-up (compile, plan, caches)
        model.run(x, threads=threads, tiles=tiles_, fuse_blocks=fuse)
    for _ in range(runs_per_config):
        for label, tiles_, fuse in configs_order:
            recorder = engine.Recorder()
            model.run(x, threads=threads, tiles=tiles_, fuse_blocks=fuse, hooks=[recorder])
            for record in recorder.records:
                samples[label][record.name].append(record.seconds)
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "data" / "mobilenet_v2.onnx"),
                        help="an ONNX path or a zoo name (data/<name>.onnx)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--bands", type=int, nargs="*", default=[], help="band heights to try besides auto")
    parser.add_argument("--runs", type=int, default=30, help="runs per configuration at batch 1")
    parser.add_argument("--stat", choices=["median", "min"], default="median")
    args = parser.parse_args(argv)
    stat = statistics.median if args.stat == "median" else min
    path = Path(args.model)
    if not path.exists():
        path = ROOT / "data" / f"{args.model}.onnx"
    model = engine.load(path)
    blocks = find_fusable_blocks(model.graph)
    c, h, w = model.input_shape
    for batch in args.batches:
        x = np.random.default_rng(0).standard_normal((batch, c, h, w), dtype=np.float32)
        runs = args.runs if batch == 1 else max(3, args.runs // 8)
        for threads in args.threads:
            if threads > engine.available_cores():
                continue
            configs = [("unfused", engine.Tiles(), False), ("auto band", engine.Tiles(), True)]
            configs += [(f"band {b}", engine.Tiles(block_rows=b), True) for b in args.bands]
            samples = step_times(model, x, threads, runs, configs + [("policy", engine.Tiles(), "auto")])
            times = {label: {name: stat(v) for name, v in steps.items()} for label, steps in samples.items()}
            totals = {label: sum(steps.values()) for label, steps in times.items()}
            print(f"\nbatch {batch}, {threads} thread(s), {args.stat} of {runs} runs (ms; speed-up = unfused / fused)")
            header = f"{'block':<14}{'stride':>7}{'unfused':>9}" + "".join(f"{label:>12}" for label, _, _ in configs[1:])
            print(header + f"{'auto rows':>10}{'policy':>8}{'SE':>4}")
            config = RunConfig(threads=threads, tiles=engine.Tiles(), fuse_blocks=True, machine=machine_info())
            for block in blocks:
                depthwise, project = block[1], block[2]
                members = [layer.name for layer in block if layer is not None]
                unfused = sum(times["unfused"][name] for name in members)
                cells = []
                for label, _, _ in configs[1:]:
                    fused = times[label].get(project.name)
                    cells.append(f"{fused * 1e3:6.3f} {unfused / fused:4.2f}" if fused else f"{'-':>11}")
                name = project.name.split("/")[2] if project.name.count("/") >= 2 else project.name
                decision = "fuse" if fusion_wins(block, config, batch) else "-"
                print(f"{name:<14}{depthwise.attrs['strides'][0]:>7}{unfused * 1e3:9.3f}" + "".join(f"{c:>12}" for c in cells)
                      + f"{block_rows_for(block, config, batch):>10}{decision:>8}{'SE' if len(block) == 4 else '':>4}")
            line = f"{'whole run':<14}{'':>7}{totals['unfused'] * 1e3:9.3f}"
            line += "".join(f"{totals[label] * 1e3:6.3f} {totals['unfused'] / totals[label]:4.2f}" .rjust(12)
                            for label, _, _ in configs[1:])
            print(line + f"   policy (fuse where it wins): {totals['policy'] * 1e3:.3f} ms, "
                         f"{totals['unfused'] / totals['policy']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
