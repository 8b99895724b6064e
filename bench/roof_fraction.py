"""How close each layer runs to its roof: achieved GFLOP/s against the attainable roof.

For one configuration (default: batch 1, all cores, default tiles and fusion), profile the
default model (workbench.profile, median of --repeats runs) under this machine's measured
ceilings and print, per step that does convolution or linear FLOPs, its time, achieved
GFLOP/s, the attainable roof min(peak, AI x bandwidth) at the memory level that binds, and
the percentage achieved; then the median over those steps and the thread scaling of the
whole run (1 thread against --threads, timed alternately).

    python bench/roof_fraction.py [--batch 1] [--threads 2] [--fuse-blocks auto] [--repeats 50]
                                  [--tiles tuned | schedule.json]

--tiles tuned runs the schedule engine.tune cached for this model, batch and threads (the
defaults, with a warning, where there is none); a path runs a saved TileSchedule.
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
from workbench.ceilings import measure_ceilings  # noqa: E402
from workbench.profile import profile  # noqa: E402


def fuse_value(text: str):
    return {"true": True, "false": False, "auto": "auto"}[text.lower()]


def thread_scaling(model, batch: int, threads: int, fuse_blocks, runs: int) -> tuple[float, float]:
    """Median whole-run seconds on 1 thread and on `threads`, runs alternating."""
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape), dtype=np.float32)
    samples = {1: [], threads: []}
    for count in samples:
        model.run(x, threads=count, fuse_blocks=fuse_blocks)
    for _ in range(runs):
        for count in samples:
            start = time.perf_counter()
            model.run(x, threads=count, fuse_blocks=fuse_blocks)
            samples[count].append(time.perf_counter() - start)
    return statistics.median(samples[1]), statistics.median(samples[threads])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=engine.available_cores())
    parser.add_argument("--fuse-blocks", type=fuse_value, default=engine.DEFAULT_FUSE_BLOCKS,
                        help="true, false or auto (default: the engine's default)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--tiles", default=None, help='"tuned" or a saved TileSchedule (JSON); default Tiles()')
    args = parser.parse_args(argv)
    model = engine.load(args.model)
    ceilings = measure_ceilings(quick=True)
    tiles = None
    if args.tiles == "tuned":
        from engine import schedules
        tiles = schedules.cached(model.schedule_key(args.batch, args.threads))
    elif args.tiles:
        tiles = engine.TileSchedule.load(args.tiles)
    frame = profile(model, batch=args.batch, threads=args.threads, fuse_blocks=args.fuse_blocks, tiles=tiles,
                    repeats=args.repeats, warmup=3, ceilings=ceilings)
    print(f"batch {args.batch}, {args.threads} thread(s), fuse_blocks={args.fuse_blocks}, tiles={args.tiles or 'default'}, "
          f"median of {args.repeats} runs; peak {ceilings.peak_gflops(args.threads):.0f} GFLOP/s")
    print(f"{'step':>4} {'op':<10} {'output':<22} {'ms':>7} {'GFLOP/s':>8} {'roof':>7} {'bound by':>9} {'% roof':>7}")
    computing = frame[frame["flops"] > 0]
    for row in computing.itertuples():
        print(f"{row.step:>4} {row.op:<10} {str(row.output_shape):<22} {row.seconds * 1e3:7.3f} {row.gflops:8.1f} "
              f"{row.attainable_gflops:7.1f} {row.bound_level:>9} {100 * row.roof_fraction:6.1f}%")
    other = frame[frame["flops"] == 0]
    print(f"steps without conv/linear FLOPs (layout, pooling): {len(other)}, "
          f"{other['seconds'].sum() * 1e3:.3f} ms of {frame['seconds'].sum() * 1e3:.3f} ms")
    print(f"median % of roof over {len(computing)} steps: {100 * computing['roof_fraction'].median():.1f}%")
    by_op = computing.groupby("op").agg(ms=("seconds", lambda s: 1e3 * s.sum()),
                                        median_roof=("roof_fraction", "median"))
    print(by_op.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.threads > 1:
        one, many = thread_scaling(model, args.batch, args.threads, args.fuse_blocks,
                                   runs=max(5, 200 // args.batch))
        print(f"thread scaling, batch {args.batch}: 1 thread {one * 1e3:.2f} ms, {args.threads} threads "
              f"{many * 1e3:.2f} ms: {one / many:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
