"""What instrumentation costs, and how much of a run the per-layer times account for.

Runs the default model at batch 1, alternating runs without hooks and with a Recorder,
and reports (medians over --repeats runs each):
- overhead: median time with a Recorder / median time without, minus 1 (runs in
  alternating blocks of ten of each kind);
- coverage: sum of the per-layer seconds of a run / that run's wall time as the caller
  sees it (model.run from call to return: input copy, steps, output copy).

    python bench/hooks_overhead.py [--repeats 200] [--threads 2] [--batch 1] [--fuse-blocks]
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

BLOCK = 10


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=min(2, engine.available_cores()))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--fuse-blocks", action="store_true")
    args = parser.parse_args(argv)
    model = engine.load(args.model)
    x = np.random.default_rng(0).standard_normal((args.batch, *model.input_shape), dtype=np.float32)
    options = dict(threads=args.threads, fuse_blocks=args.fuse_blocks)
    for _ in range(5):
        model.run(x, **options)
        model.run(x, hooks=[engine.Recorder()], **options)
    plain, hooked, coverage = [], [], []
    # blocks of BLOCK runs of each kind, alternating, so that neither kind always follows
    # the other (numba's worker threads spin for a while after a run and then sleep)
    for _ in range(max(1, args.repeats // BLOCK)):
        for _ in range(BLOCK):
            start = time.perf_counter()
            model.run(x, **options)
            plain.append(time.perf_counter() - start)
        for _ in range(BLOCK):
            recorder = engine.Recorder()
            start = time.perf_counter()
            model.run(x, hooks=[recorder], **options)
            wall = time.perf_counter() - start
            hooked.append(wall)
            coverage.append(sum(r.seconds for r in recorder.records) / wall)
    plain_median, hooked_median = statistics.median(plain), statistics.median(hooked)
    print(f"batch {args.batch}, threads {args.threads}, fuse_blocks {args.fuse_blocks}, {args.repeats} runs each")
    print(f"median without hooks: {plain_median * 1e3:.3f} ms; with a Recorder: {hooked_median * 1e3:.3f} ms")
    print(f"Recorder overhead: {100 * (hooked_median / plain_median - 1):+.2f} %")
    print(f"per-layer seconds / run wall time: median {100 * statistics.median(coverage):.1f} %, "
          f"range {100 * min(coverage):.1f}..{100 * max(coverage):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
