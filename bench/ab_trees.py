"""Whole-network A/B of two source trees (e.g. main and a branch's worktree): a model at one
batch runs in alternating separate processes, one per tree in turn, each with only its tree's
`engine` on the path; several pairs; medians.

Each process (under the exclusive bench lock, if given) loads the model, runs it `--warmup`
times, then prints the median of `--runs` timed `model.run(x, threads=T)` calls (ms per
batch). Which tree goes first alternates pair by pair. Printed: each process's median with
the load average at its end, then per tree the median over pairs, and B / A (< 1: B faster)
with the range of the per-pair ratios. A process over twice its tree's fastest is marked `*`
(another job took the cores, most likely): judge those pairs by hand.

    python bench/ab_trees.py --trees /work/main /work/wt/NAME --model efficientnet_b0 --batch 16 \\
        [--runs 10] [--pairs 3] [--threads 2] [--fuse-blocks auto] [--lock /tmp/roofline-bench.lock]
"""
from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# run with the tree's directory first on sys.path (and as the working directory)
WORKER = """
import statistics, sys, time
import numpy as np
import engine
path, batch, runs, warmup, threads, fuse = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5]), sys.argv[6]
fuse = {"True": True, "False": False}.get(fuse, fuse)
model = engine.load(path)
x = np.random.default_rng(0).standard_normal((batch, *model.input_shape), dtype=np.float32)
for _ in range(warmup):
    model.run(x, threads=threads, fuse_blocks=fuse)
times = []
for _ in range(runs):
    start = time.perf_counter()
    model.run(x, threads=threads, fuse_blocks=fuse)
    times.append(time.perf_counter() - start)
print(engine.__file__)
print(f"{statistics.median(times) * 1e3:.3f}")
"""


@contextmanager
def locked(path: str):
    """The exclusive lock on `path` ("" : none) while the block runs."""
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_tree(tree: Path, model_path: str, args) -> float:
    """Median ms per batch of one process running `model_path` with `tree`'s engine."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-c", WORKER, model_path, str(args.batch), str(args.runs), str(args.warmup),
               str(args.threads), args.fuse_blocks]
    with locked(args.lock):
        result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{tree}: the worker failed:\n{result.stderr}")
    engine_file, median = result.stdout.split()[-2:]
    if not Path(engine_file).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: the worker imported {engine_file}, not this tree's engine")
    return float(median)


def load_average() -> str:
    with open("/proc/loadavg") as handle:
        return handle.read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs=2, type=Path, required=True, metavar=("A", "B"))
    parser.add_argument("--model", default="efficientnet_b0", help="NAME (data/NAME.onnx) or a .onnx path")
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fuse-blocks", default="auto", help="True, False or auto (the run's default)")
    parser.add_argument("--lock", default="/tmp/roofline-bench.lock", help='"" for no lock')
    args = parser.parse_args()
    model_path = args.model if args.model.endswith(".onnx") else str((args.data / f"{args.model}.onnx").resolve())
    names = [tree.name for tree in args.trees]
    print(f"# {Path(model_path).stem} batch {args.batch}, threads {args.threads}, fuse_blocks {args.fuse_blocks}, "
          f"median of {args.runs} runs per process; A = {args.trees[0]}, B = {args.trees[1]}")
    times = {0: [], 1: []}
    for pair in range(args.pairs):
        for index in ((0, 1) if pair % 2 == 0 else (1, 0)):
            ms = run_tree(args.trees[index], model_path, args)
            times[index].append(ms)
            print(f"pair {pair} {'AB'[index]} {names[index]:>16} {ms:10.3f} ms  load {load_average()}", flush=True)
    medians = [statistics.median(times[index]) for index in (0, 1)]
    for index in (0, 1):
        marked = " ".join(f"{ms:.2f}{'*' if ms > 2 * min(times[index]) else ''}" for ms in times[index])
        print(f"{'AB'[index]} {names[index]}: median {medians[index]:.3f} ms ({marked})")
    ratios = [b / a for a, b in zip(times[0], times[1])]
    print(f"B / A = {medians[1] / medians[0]:.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
