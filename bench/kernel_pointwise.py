"""Benchmark of the pointwise (1x1) convolution kernel on MobileNetV2's 1x1 layer shapes.

Checks the kernel against the numpy reference on each shape first, then times it and prints
one row per layer: GFLOP/s at 1 and 2 threads (default tiles, plus with --sweep the best pair)
and, as the ceiling a real GEMM reaches on the same problem, OpenBLAS's sgemm through numpy's
matmul on (pixels x Cin) @ (Cin x Cout) held to one thread by threadpoolctl (all operands
float32: a float64 operand silently leaves sgemm for a slow mixed-type loop), the best of
the row-major and the transposed form, with
ours / OpenBLAS on one thread and, with --peak, both as % of the FMA peak.
--net resnet50 times ResNet-50's 1x1 shapes instead of MobileNetV2's.

--roof adds each layer's roof on this machine from the cached measured ceilings
(workbench.measure_ceilings; --peak defaults to their 1-thread FMA peak): the compute roof
(the FMA peak x true / padded FLOPs: channels are padded to whole CB-lane blocks) and the
memory roof of the layer's compulsory bytes (input read, output written, the packed weights
once, plus the output's line fill -- the read-for-ownership of a regular store -- at the
levels where it is paid, FILL_PAID) at the triad bandwidth of the level its working set fits
in (effective L2 / L3 size, else DRAM). Columns: the roof (GFLOP/s), the binding resource,
the first thread count as % of the roof; the sum line adds the layers' combined roof (total
FLOPs over the summed roof times), the best sum % of peak this host allows if every layer
ran at its roof.

Timings are noisy when other work shares the cores; run it under the project's lock, one
batch at a time so each run stays short:

    flock /tmp/roofline-bench.lock .venv/bin/python bench/kernel_pointwise.py --batch 1
    flock /tmp/roofline-bench.lock .venv/bin/python bench/kernel_pointwise.py --batch 1 --sweep --threads 2 --layers 0,1,2
    flock /tmp/roofline-bench.lock .venv/bin/python bench/kernel_pointwise.py --batch 8 --threads 1 --peak 235
    flock /tmp/roofline-bench.lock .venv/bin/python bench/kernel_pointwise.py --net resnet50 --threads 1 --peak 235

Napkin math (see engine/kernels/pointwise.py): one Zen 3 core peaks at 2 FMA/cycle x 8 lanes
x 2 FLOP = 32 FLOP/cycle, about 90 GFLOP/s at 2.8-2.9 GHz; a 6x16 micro-tile needs 8 loads
per 12 FMAs, within the 2-3 loads/cycle the core can issue, so the kernel can approach it.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy reference single-threaded
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (sets numba's environment first)
from engine.kernels.layout import CB, channel_blocks, from_blocked, to_blocked  # noqa: E402
from engine.pages import aligned_empty  # noqa: E402
from engine.kernels.pointwise import (DEFAULT_POINTWISE_CHANNELS, DEFAULT_POINTWISE_PIXELS,  # noqa: E402
                                      pack_pointwise, pointwise_conv, pointwise_flops)
from tests.naive.pointwise import pointwise_reference  # noqa: E402

# MobileNetV2 (224x224) 1x1 convolutions, one of each distinct shape: (Cin, Cout, H=W)
MOBILENET_V2_SHAPES = [
    (32, 16, 112), (16, 96, 112), (96, 24, 56), (24, 144, 56), (144, 24, 56), (144, 32, 28),
    (192, 32, 28), (192, 64, 14), (384, 64, 14), (384, 96, 14), (576, 96, 14), (576, 160, 7),
    (960, 160, 7), (960, 320, 7), (320, 1280, 7),
]
# ResNet-50 (224x224) stride-1 1x1 convolutions, one of each distinct shape (the stride-2
# downsample 1x1s run on conv_nchwc)
RESNET50_SHAPES = [
    (64, 64, 56), (64, 256, 56), (256, 64, 56), (256, 128, 56), (128, 512, 28), (512, 128, 28),
    (512, 256, 28), (256, 1024, 14), (1024, 256, 14), (1024, 512, 14), (512, 2048, 7), (2048, 512, 7),
]
NETWORKS = {"mobilenet_v2": MOBILENET_V2_SHAPES, "resnet50": RESNET50_SHAPES}
SWEEP_PIXELS = [24, 48, 64, 96, 192, 384]
SWEEP_CHANNELS = [16, 32, 64, 128, 4096]


def best_seconds(call, min_seconds: float = 0.03, min_repeats: int = 3) -> float:
    """Minimum wall time of `call()` (seconds) over repeats for at least `min_seconds`."""
    times = []
    stop = time.perf_counter() + min_seconds
    while len(times) < min_repeats or time.perf_counter() < stop:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """`array` copied into engine.pages.aligned_empty memory, same shape. numpy's own
    allocations start 16 bytes past a line (glibc malloc), so every vector load of them
    straddles two lines; the engine's buffers never do."""
    copy = aligned_empty(array.size).reshape(array.shape)
    copy[...] = array
    return copy


class Layer:
    """Random data of one 1x1 layer in NCHWc, checked once against the numpy reference."""

    def __init__(self, batch: int, cin: int, cout: int, size: int, seed: int = 0, aligned: bool = True):
        rng = np.random.default_rng(seed)
        self.shape = (batch, cin, cout, size)
        self.flops = pointwise_flops(batch, cin, cout, size, size)
        self.x_nchw = rng.standard_normal((batch, cin, size, size), dtype=np.float32)
        self.weight = (rng.standard_normal((cout, cin), dtype=np.float32) / np.sqrt(cin)).astype(np.float32)
        self.bias = rng.standard_normal(cout, dtype=np.float32)
        self.x = to_blocked(self.x_nchw)
        self.packed_weight, self.packed_bias = pack_pointwise(self.weight, self.bias)
        self.out = np.empty((batch, channel_blocks(cout), size, size, CB), dtype=np.float32)
        if aligned:  # on 64-byte lines (huge pages where offered), as the engine's arena and weights are
            self.x, self.packed_weight, self.packed_bias, self.out = (
                aligned_copy(a) for a in (self.x, self.packed_weight, self.packed_bias, self.out))
        # numpy reference problem: (pixels, Cin) @ (Cin, Cout)
        self.x_rows = np.ascontiguousarray(self.x_nchw.transpose(0, 2, 3, 1).reshape(-1, cin))
        self.weight_t = np.ascontiguousarray(self.weight.T)
        self.rows_out = np.empty((self.x_rows.shape[0], cout), dtype=np.float32)
        # the same product transposed: (Cout, Cin) @ (Cin, pixels), the im2col-free NCHW form
        self.x_columns = np.ascontiguousarray(self.x_rows.T)
        self.columns_out = np.empty((cout, self.x_rows.shape[0]), dtype=np.float32)

    def run(self, pointwise_pixels: int, pointwise_channels: int) -> None:
        pointwise_conv(self.x, self.packed_weight, self.packed_bias, self.out, 0.0, 6.0,
                       None, pointwise_pixels, pointwise_channels)

    def check(self, pointwise_pixels: int = DEFAULT_POINTWISE_PIXELS,
              pointwise_channels: int = DEFAULT_POINTWISE_CHANNELS) -> None:
        self.run(pointwise_pixels, pointwise_channels)
        reference = pointwise_reference(self.x_nchw, self.weight, self.bias, 0.0, 6.0)
        got = from_blocked(self.out, self.shape[2])
        error = np.abs(got - reference).max() / max(1.0, np.abs(reference).max())
        if error > 1e-5:
            raise AssertionError(f"layer {self.shape}: relative error {error:.2e}")

    def gflops(self, tiles: list[tuple[int, int]], rounds: int) -> dict[tuple[int, int], float]:
        """GFLOP/s per (pointwise_pixels, pointwise_channels): best of `rounds` interleaved rounds
        (interleaving spreads every setting over the same spells of noise)."""
        seconds = {tile: np.inf for tile in tiles}
        for _ in range(rounds):
            for tile in tiles:
                self.run(*tile)  # warm
                seconds[tile] = min(seconds[tile], best_seconds(lambda: self.run(*tile)))
        return {tile: self.flops / seconds[tile] / 1e9 for tile in tiles}

    def numpy_gflops(self, rounds: int) -> float:
        """OpenBLAS sgemm on one thread, GFLOP/s: the faster of (pixels, Cin) @ (Cin, Cout)
        and (Cout, Cin) @ (Cin, pixels), each the best of `rounds` x best_seconds."""
        from threadpoolctl import threadpool_limits  # bench-only dependency

        calls = (lambda: np.matmul(self.x_rows, self.weight_t, out=self.rows_out),
                 lambda: np.matmul(self.weight, self.x_columns, out=self.columns_out))
        best = np.inf
        with threadpool_limits(limits=1, user_api="blas"):
            for call in calls:
                call()
                best = min(best, min(best_seconds(call) for _ in range(rounds)))
        return self.flops / best / 1e9


# Whether a regular store's line fill costs bandwidth beyond the triad convention (3 streams
# counted, the store's fill not) at each level, from bench/streaming_stores.py on the Xeon VM
# (2026-12-07): with the working set in L3, a write-only stream of regular stores runs at
# 27-29 GB/s of bytes written, a read-and-write copy at 27-29 GB/s of bytes read + written,
# the triad at 27 GB/s -- a written byte costs what a read one does, the fill is not paid
# on top (probably: L2 victims go back to the non-inclusive L3 dirty or not); in L2 (63 against
# a 120 GB/s triad) and DRAM (10 against 16) the write-only stream runs at about half, the
# fill is paid. When it is, the bus moves 4 streams for the triad's 3 counted: triad x 4/3.
FILL_PAID = {"L1": True, "L2": True, "L3": False, "DRAM": True}


def layer_roof(batch: int, cin: int, cout: int, size: int, ceilings, threads: int = 1) -> tuple[float, str]:
    """(roof GFLOP/s, binding resource) of one 1x1 layer from the measured `ceilings`
    (workbench.ceilings.Ceilings) at `threads`: min of the compute roof (FMA peak x true /
    padded FLOPs) and the compulsory bytes -- input read, output written, packed weights once,
    and the output's line fill where FILL_PAID (then at 4/3 x the triad: the triad figure counts
    3 of the 4 streams it moves) -- at the triad bandwidth of the level the layer's working set
    fits in."""
    cin_padded, cout_padded = channel_blocks(cin) * CB, channel_blocks(cout) * CB
    pixels = batch * size * size
    flops = pointwise_flops(batch, cin, cout, size, size)
    compute = ceilings.peak_gflops(threads) * cin * cout / (cin_padded * cout_padded)
    activations = 4 * pixels * (cin_padded + cout_padded)
    weights = 4 * (cin_padded * cout_padded + cout_padded)
    effective = ceilings.effective_bytes()
    level = next((name for name in ("L2", "L3") if activations + weights <= effective.get(name, 0)), "DRAM")
    fill = FILL_PAID[level]
    moved = 4 * pixels * (cin_padded + (2 if fill else 1) * cout_padded) + weights
    memory = flops / (moved / (ceilings.bandwidth_gbs(level, threads) * (4 / 3 if fill else 1.0)))
    if memory < compute:
        return memory, level
    return compute, "FMA" if cin == cin_padded and cout == cout_padded else "FMA pad"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--net", choices=sorted(NETWORKS), default="mobilenet_v2", help="whose 1x1 shapes")
    parser.add_argument("--peak", type=float, default=None, help="FMA peak of one core, GFLOP/s (adds %% columns)")
    parser.add_argument("--roof", action="store_true",
                        help="add each layer's roof from the cached measured ceilings (see the docstring)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers", type=str, default="all",
                        help="comma-separated layer indices into the --net's shapes, or 'all'")
    parser.add_argument("--pixels", type=int, default=DEFAULT_POINTWISE_PIXELS, help="pointwise_pixels (default tiles)")
    parser.add_argument("--channels", type=int, default=DEFAULT_POINTWISE_CHANNELS, help="pointwise_channels (default tiles)")
    parser.add_argument("--sweep", action="store_true", help="also time every tile pair of the sweep grid, report the best")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best is kept)")
    parser.add_argument("--no-numpy", action="store_true", help="skip the numpy matmul reference")
    parser.add_argument("--unaligned", action="store_true",
                        help="numpy's own allocations for the kernel's arrays (16 bytes past a line) instead of aligned ones")
    args = parser.parse_args(argv)
    ceilings = None
    if args.roof:
        from workbench.ceilings import measure_ceilings  # bench-only: engine never imports workbench

        ceilings = measure_ceilings(quick=True, threads=[args.threads[0]])
        args.peak = args.peak or ceilings.peak_gflops(args.threads[0])
        print(f"ceilings (measured {ceilings.measured_at}), {args.threads[0]} thread(s): FMA peak "
              f"{ceilings.peak_gflops(args.threads[0]):.1f} GFLOP/s, triad "
              + ", ".join(f"{level} {ceilings.bandwidth_gbs(level, args.threads[0]):.1f}" for level in ceilings.levels)
              + " GB/s; effective " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in ceilings.effective_bytes().items()))

    shapes = NETWORKS[args.net]
    indices = range(len(shapes)) if args.layers == "all" else [int(i) for i in args.layers.split(",")]
    default = (args.pixels, args.channels)
    tiles = [default] + ([(p, c) for p in SWEEP_PIXELS for c in SWEEP_CHANNELS if (p, c) != default]
                         if args.sweep else [])
    print(f"batch {args.batch}, CB={CB}, default tiles pixels/channels = {default[0]}/{default[1]}"
          + (f", sweep pixels {SWEEP_PIXELS} x channels {SWEEP_CHANNELS}" if args.sweep else ""))
    header = f"{'layer Cin->Cout@HxW':22s} {'MFLOP':>7s}"
    for threads in args.threads:
        header += f" {f'{threads}T':>6s}" + (f" {f'{threads}T best':>9s} {'tiles':>8s}" if args.sweep else "")
    if not args.no_numpy:
        header += f" {'BLAS 1T':>8s} {'ours/BLAS':>9s}"
    if args.peak:
        header += f" {'1T %pk':>7s}" + ("" if args.no_numpy else f" {'BLAS %pk':>8s}")
    if ceilings is not None:
        header += f" {'roof':>6s} {'bound':>7s} {'%roof':>6s}"
    print(header + "   (GFLOP/s)")
    seconds = {(threads, kind): 0.0 for threads in args.threads for kind in ("default", "best")}
    total_flops = 0
    numpy_seconds = 0.0
    roof_seconds = 0.0
    for index in indices:
        cin, cout, size = shapes[index]
        layer = Layer(args.batch, cin, cout, size, aligned=not args.unaligned)
        layer.check()
        total_flops += layer.flops
        row = f"{f'{cin}->{cout}@{size}x{size}':22s} {layer.flops / 1e6:7.1f}"
        first = None  # default tiles at the first thread count
        for threads in args.threads:
            numba.set_num_threads(threads)
            results = layer.gflops(tiles, args.rounds)
            best = max(results, key=results.get)
            seconds[threads, "default"] += layer.flops / (results[default] * 1e9)
            seconds[threads, "best"] += layer.flops / (results[best] * 1e9)
            row += f" {results[default]:6.1f}"
            first = results[default] if first is None else first
            if args.sweep:
                row += f" {results[best]:9.1f} {f'{best[0]}/{best[1]}':>8s}"
        blas = None if args.no_numpy else layer.numpy_gflops(args.rounds)
        if blas:
            numpy_seconds += layer.flops / (blas * 1e9)
            row += f" {blas:8.1f} {first / blas:9.2f}"
        if args.peak:
            row += f" {100 * first / args.peak:6.1f}%" + ("" if blas is None else f" {100 * blas / args.peak:7.1f}%")
        if ceilings is not None:
            roof, bound = layer_roof(args.batch, cin, cout, size, ceilings, args.threads[0])
            roof_seconds += layer.flops / (roof * 1e9)
            row += f" {roof:6.1f} {bound:>7s} {100 * first / roof:5.1f}%"
        print(row, flush=True)
    for threads in args.threads:
        for kind in ("default", "best") if args.sweep else ("default",):
            total = seconds[threads, kind]
            print(f"sum of these layers, {threads} thread(s), {kind} tiles: {total * 1e3:.3f} ms "
                  f"({total_flops / total / 1e9:.1f} GFLOP/s)")
    if not args.no_numpy:
        print(f"sum of these layers, OpenBLAS 1 thread: {numpy_seconds * 1e3:.3f} ms "
              f"({total_flops / numpy_seconds / 1e9:.1f} GFLOP/s"
              + (f", {100 * total_flops / numpy_seconds / 1e9 / args.peak:.1f} % of peak" if args.peak else "") + ")")
    if args.peak:
        total = seconds[args.threads[0], "default"]
        print(f"ours, {args.threads[0]} thread(s), default tiles: {100 * total_flops / total / 1e9 / args.peak:.1f} % of peak")
    if ceilings is not None:
        total = seconds[args.threads[0], "default"]
        roof = total_flops / roof_seconds / 1e9
        print(f"combined roof of these layers, {args.threads[0]} thread(s): {roof_seconds * 1e3:.3f} ms "
              f"({roof:.1f} GFLOP/s, {100 * roof / args.peak:.1f} % of peak: the best sum this host allows); "
              f"ours {100 * roof_seconds / total:.1f} % of it")
    print(f"numba threading layer: {numba.threading_layer()}")


if __name__ == "__main__":
    main()
