"""Depthwise and stem kernels on MobileNetV2's shapes at batch 1: time, GFLOP/s and GB/s.

For each of the 17 depthwise layers (3x3, pad 1, ReLU6) and for each thread count, the
minimum and median of `--repeats` calls; GB/s counts input + output + weights + bias bytes
once (the compulsory traffic) over the minimum time. A sweep over depthwise_rows gives the
sum over the 17 layers for each setting, which is how the default was chosen. The stem
(3 -> 32, 3x3 stride 2 pad 1, 224 -> 112) is timed the same way, and so are the 5x5 (pad 2)
depthwise layers of EfficientNet-B0 and MobileNetV3-Large (`--five`: at batch 1 and 16, hardswish).

Timings are only meaningful under the machine's benchmark lock when others share it:

    flock /tmp/roofline-bench.lock .venv/bin/python bench/kernel_depthwise.py [--repeats 50]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402

import engine  # noqa: E402,F401  (sets numba's environment first)
from engine.kernels import depthwise, direct_conv  # noqa: E402
from engine.kernels.layout import CB, channel_blocks  # noqa: E402

# (channels, input height = width, stride) of MobileNetV2's depthwise layers, in order
MOBILENET_V2_DEPTHWISE = [
    (32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1), (192, 28, 1), (192, 28, 2),
    (384, 14, 1), (384, 14, 1), (384, 14, 1), (384, 14, 1), (576, 14, 1), (576, 14, 1), (576, 14, 2),
    (960, 7, 1), (960, 7, 1), (960, 7, 1),
]

# (label, channels, input height = width, stride) of the 5x5 pad-2 depthwise layers of
# EfficientNet-B0 and MobileNetV3-Large (torchvision), one row per distinct shape
FIVE_BY_FIVE_DEPTHWISE = [
    ("effnet-b0", 144, 56, 2), ("effnet-b0", 240, 28, 1), ("effnet-b0", 480, 14, 1), ("effnet-b0", 672, 14, 1),
    ("effnet-b0", 672, 14, 2), ("effnet-b0", 1152, 7, 1), ("v3-large", 72, 56, 2), ("v3-large", 120, 28, 1),
    ("v3-large", 672, 14, 2), ("v3-large", 960, 7, 1),
]


def timed(call, repeats: int) -> tuple[float, float]:
    """(min, median) seconds of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def depthwise_case(channels: int, size: int, stride: int, rng: np.random.Generator):
    """Arguments and (flops, bytes) of one 3x3 pad-1 depthwise layer at batch 1."""
    blocks = channel_blocks(channels)
    out_size = (size + 2 - 3) // stride + 1
    x = rng.standard_normal((1, blocks, size, size, CB)).astype(np.float32)
    weight, bias = depthwise.pack_depthwise(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32),
                                            rng.standard_normal(channels).astype(np.float32))
    out = np.empty((1, blocks, out_size, out_size, CB), np.float32)
    flops = depthwise.depthwise_flops(1, channels, out_size, out_size, 3, 3)
    nbytes = x.nbytes + out.nbytes + weight.nbytes + bias.nbytes
    return (x, weight, bias, out, stride), flops, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                        help="depthwise_rows settings to sweep (the table above uses DEFAULT_DEPTHWISE_ROWS)")
    parser.add_argument("--five", action="store_true", help="only the 5x5 layers (EfficientNet-B0, V3-Large)")
    args = parser.parse_args()
    if args.five:
        five_by_five(args)
        return
    rng = np.random.default_rng(0)
    cases = [depthwise_case(c, s, st, rng) for c, s, st in MOBILENET_V2_DEPTHWISE]
    default_rows = depthwise.DEFAULT_DEPTHWISE_ROWS

    def run(case, rows):
        (x, w, b, out, stride), _, _ = case
        return lambda: depthwise.depthwise_conv(x, w, b, out, stride, stride, 1, 1, 0.0, 6.0, rows)

    print(f"CB = {CB}, repeats = {args.repeats}, depthwise_rows = {default_rows} in this table")
    header = f"{'layer':>16} " + " ".join(f"{f'{t} thr: us (med)  GB/s GFLOP/s':>32}" for t in args.threads)
    print(header)
    totals = {t: 0.0 for t in args.threads}
    for (channels, size, stride), case in zip(MOBILENET_V2_DEPTHWISE, cases):
        _, flops, nbytes = case
        cells = []
        for threads in args.threads:
            numba.set_num_threads(threads)
            best, median = timed(run(case, default_rows), args.repeats)
            totals[threads] += best
            cells.append(f"{best * 1e6:8.1f} ({median * 1e6:6.1f}) {nbytes / best / 1e9:6.1f} {flops / best / 1e9:6.1f}")
        print(f"{f'{channels}@{size} s{stride}':>16} " + " ".join(f"{c:>32}" for c in cells))
    all_bytes = sum(c[2] for c in cases)
    all_flops = sum(c[1] for c in cases)
    print(f"{'sum of 17':>16} " + " ".join(
        f"{f'{totals[t] * 1e6:8.1f}          {all_bytes / totals[t] / 1e9:6.1f} {all_flops / totals[t] / 1e9:6.1f}':>32}"
        for t in args.threads))
    print(f"  ({all_bytes / 1e6:.1f} MB compulsory traffic, {all_flops / 1e6:.1f} MFLOP)")

    print("\ndepthwise_rows sweep: sum over the 17 layers of the per-layer minimum, us")
    print("(settings take turns call by call, so machine noise hits them alike)")
    print(f"{'depthwise_rows':>16} " + " ".join(f"{f'{t} thr':>10}" for t in args.threads))
    sums = {(rows, t): 0.0 for rows in args.rows for t in args.threads}
    for threads in args.threads:
        numba.set_num_threads(threads)
        for case in cases:
            calls = {rows: run(case, rows) for rows in args.rows}
            best = {rows: math.inf for rows in args.rows}
            for call in calls.values():
                call()
            for _ in range(args.repeats):
                for rows, call in calls.items():
                    start = time.perf_counter()
                    call()
                    best[rows] = min(best[rows], time.perf_counter() - start)
            for rows in args.rows:
                sums[rows, threads] += best[rows]
    for rows in args.rows:
        print(f"{rows:>16} " + " ".join(f"{sums[rows, t] * 1e6:10.1f}" for t in args.threads))

    print("\nstem: 3 -> 32, 3x3 stride 2 pad 1, 224 -> 112, ReLU6")
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    weight, bias = direct_conv.pack_direct(rng.standard_normal((32, 3, 3, 3)).astype(np.float32),
                                           rng.standard_normal(32).astype(np.float32))
    out = np.empty((1, channel_blocks(32), 112, 112, CB), np.float32)   # 4 blocks at 8 lanes, 2 at 16
    flops = direct_conv.direct_conv_flops(1, 3, 32, 112, 112, 3, 3)
    nbytes = x.nbytes + out.nbytes + weight.nbytes + bias.nbytes
    for threads in args.threads:
        numba.set_num_threads(threads)
        best, median = timed(lambda: direct_conv.direct_conv(x, weight, bias, out, 2, 2, 1, 1, 1, 1, 0.0, 6.0),
                             args.repeats)
        print(f"{threads} thr: {best * 1e6:7.1f} us (median {median * 1e6:7.1f}), {flops / best / 1e9:6.1f} GFLOP/s, "
              f"{nbytes / best / 1e9:5.1f} GB/s")
    print(f"numba threading layer: {numba.threading_layer()}")


def five_by_five(args) -> None:
    """Time the 5x5 pad-2 layers of FIVE_BY_FIVE_DEPTHWISE at batch 1 and 16 (hardswish, no clip)."""
    rng = np.random.default_rng(0)
    print(f"5x5 depthwise, pad 2, hardswish; CB = {CB}, min of --repeats calls (batch 16: a quarter as many)")
    print(f"{'layer':>24} " + " ".join(f"{f'{t} thr: us  GFLOP/s':>22}" for t in args.threads))
    for batch in (1, 16):
        totals = {t: 0.0 for t in args.threads}
        for label, channels, size, stride in FIVE_BY_FIVE_DEPTHWISE:
            blocks = channel_blocks(channels)
            out_size = (size + 4 - 5) // stride + 1
            x = rng.standard_normal((batch, blocks, size, size, CB)).astype(np.float32)
            weight, bias = depthwise.pack_depthwise(rng.standard_normal((channels, 1, 5, 5)).astype(np.float32),
                                                    rng.standard_normal(channels).astype(np.float32))
            out = np.empty((batch, blocks, out_size, out_size, CB), np.float32)
            flops = depthwise.depthwise_flops(batch, channels, out_size, out_size, 5, 5)
            cells = []
            for threads in args.threads:
                numba.set_num_threads(threads)
                best, _ = timed(lambda: depthwise.depthwise_conv(x, weight, bias, out, stride, stride, 2, 2,
                                                                 -math.inf, math.inf,
                                                                 activation=("hardswish", 0.0, 0.0)),
                                args.repeats if batch == 1 else max(3, args.repeats // 4))
                totals[threads] += best
                cells.append(f"{best * 1e6:9.1f} {flops / best / 1e9:7.1f}")
            print(f"{f'{label} {channels}@{size} s{stride} N{batch}':>24} " + " ".join(f"{c:>22}" for c in cells))
        print(f"{f'sum N{batch}':>24} " + " ".join(f"{totals[t] * 1e6:>14.1f}        " for t in args.threads))


if __name__ == "__main__":
    main()
