"""Sweep of the 1x1 and dense-conv tiles (Tiles.pointwise_pixels / pointwise_channels) inside
the ResNets: per layer kind (bench/per_kind.py's kinds), the engine's summed step time for
each tile setting, the settings interleaved round robin (one run each per round), medians.

The dense convs (conv_nchwc) get the channel tile rounded by conv_nchwc.item_channels, the
1x1 stride-1 convs (pointwise) take it as it is: one sweep shows both kernels' best default.

    python bench/dense_tiles.py [--models resnet18 resnet50] [--batch 16] [--threads 2] [--rounds 3]
                                [--channels 48 64 128] [--pixels 64 128]
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
sys.path.insert(0, str(ROOT / "bench"))

import engine  # noqa: E402
from engine import zoo  # noqa: E402
from per_kind import kind_order, step_kind  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, nargs="+", default=[48, 64, 128])
    parser.add_argument("--pixels", type=int, nargs="+", default=[64])
    args = parser.parse_args()
    settings = [(p, c) for p in args.pixels for c in args.channels]
    for name in args.models:
        model = engine.load(zoo.model_path(name))
        x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
        tiles = {s: engine.Tiles(pointwise_pixels=s[0], pointwise_channels=s[1]) for s in settings}
        kinds = {step.name: step_kind(step) for step in model.plan(args.batch, args.threads).steps}
        for s in settings:                                  # warm-up: plans built, kernels compiled
            model.run(x, threads=args.threads, tiles=tiles[s])
        times = {s: defaultdict(list) for s in settings}
        walls = {s: [] for s in settings}
        for _ in range(args.rounds):
            for s in settings:
                recorder = engine.Recorder()
                model.run(x, threads=args.threads, tiles=tiles[s], hooks=recorder)
                for record in recorder.records:
                    times[s][record.name].append(record.seconds)
                walls[s].append(sum(r.seconds for r in recorder.records))
        all_kinds = sorted(set(kinds.values()), key=kind_order)
        print(f"\n## {name}, batch {args.batch}, {args.threads} threads, medians of {args.rounds} runs (ms per kind)")
        print("| pixels, channels | " + " | ".join(all_kinds) + " | sum of steps |")
        print("|---" * (len(all_kinds) + 2) + "|")
        for s in settings:
            per_kind = defaultdict(float)
            for step, values in times[s].items():
                per_kind[kinds.get(step, "other")] += statistics.median(values)
            cells = " | ".join(f"{per_kind[k] * 1e3:.2f}" for k in all_kinds)
            print(f"| {s[0]}, {s[1]} | {cells} | {statistics.median(walls[s]) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
