"""How far the tuner's greedy search lands from an exhaustive one, on a few 1x1 steps.

engine.tune searches a 1x1 conv's pixels and channels one at a time (each value with the
other at its current setting: 6 + 4 candidates). Here, for the --steps longest unfused
1x1 steps of the default model, every (pixels, channels) pair is measured in whole runs
(the same way, interleaved over --repeats rounds), and the greedy pick (run by
engine.tune's own session on that step alone) is compared with the best pair: the ratio
greedy / best of the step's median seconds.

    python bench/tune_exhaustive.py [--batch 1] [--threads 2] [--steps 3] [--repeats 7]
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine.tiles import Tiles, TileSchedule  # noqa: E402
from engine.tune import POINTWISE_CHANNELS, POINTWISE_PIXELS, _Session  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=engine.available_cores())
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    model = engine.load(args.model)
    x = np.random.default_rng(0).standard_normal((args.batch, *model.input_shape), dtype=np.float32)
    session = _Session(model, x, args.threads, False, engine.machine.machine_info())
    start = TileSchedule(fused={name: False for name in session.blocks})
    baseline = session.unit_seconds(start, 3, "steps")
    steps = [name for name in sorted(baseline, key=baseline.get, reverse=True)
             if session.kinds[name] == "pointwise"][:args.steps]
    print(f"batch {args.batch}, {args.threads} thread(s), medians of {args.repeats} interleaved runs (ms)")
    print(f"{'step':<44}{'default':>9}{'greedy':>18}{'best':>18}{'greedy/best':>12}")
    rng = random.Random(0)
    for name in steps:
        trials: list[dict] = []
        greedy = session.tune_unit(start, name, args.repeats, time.perf_counter() + 1e9, trials, rng)
        channels = session.output_shapes[name][1] * session.output_shapes[name][-1]
        pairs = [(p, c) for p, c in itertools.product(POINTWISE_PIXELS, POINTWISE_CHANNELS) if c <= channels]
        greedy_pair = (greedy.tiles_for(name).pointwise_pixels, greedy.tiles_for(name).pointwise_channels)
        candidates = {pair: start.with_step(name, Tiles(pointwise_pixels=pair[0], pointwise_channels=pair[1]))
                      for pair in set(pairs) | {greedy_pair, (64, 16)}}
        samples = {pair: [] for pair in candidates}
        for _ in range(args.repeats):
            order = list(candidates)
            rng.shuffle(order)
            for pair in order:
                samples[pair].append(session.run(candidates[pair])[name])
        medians = {pair: statistics.median(values) for pair, values in samples.items()}
        best = min(medians, key=medians.get)
        print(f"{name[-43:]:<44}{medians[(64, 16)] * 1e3:9.3f}{medians[greedy_pair] * 1e3:10.3f} {greedy_pair!s:>7}"
              f"{medians[best] * 1e3:10.3f} {best!s:>7}{medians[greedy_pair] / medians[best]:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
