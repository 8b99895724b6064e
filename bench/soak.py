"""Soak: many batch-1 runs in one process; latency should stay level and memory flat.

For each variant ("plain": no hooks; "recorder": a new engine.Recorder per run, dropped by
the caller after the run, as a user timing single runs would), after 50 warm-up runs, the
runs are timed one by one (perf_counter around model.run) and reported per chunk: min,
median, 99th percentile and max latency, and the process's CPU time per run (all threads;
on a shared machine the wall times move with other processes' load, the min and the CPU
time say more about the engine itself); at each chunk end the process's RSS (VmRSS), its growth
since the end of the first chunk, numpy + Python memory still allocated (tracemalloc,
traced from the end of the warm-up) and, for "recorder", how many Recorders are still alive
(a WeakSet of all of them: 0 or 1 means dropped records are freed).

Flags: RSS growth from the end of chunk 1 to the last chunk end > 2 MiB, traced growth >
256 KiB, live recorders > 1, or a chunk median > 1.25 x the first chunk's median.

tracemalloc is on by default (it adds a little to every Python allocation, the same in
every chunk, so it does not hide drift); --no-tracemalloc for latency alone.

With --lock PATH the soak takes that lock file (flock) for every 250 runs and lets it go in
between: one process throughout (so memory is one process's), while other benchmarks waiting
for the lock get the machine between chunks.

    python bench/soak.py --lock /tmp/roofline-bench.lock [--runs 10000] [--chunk 1000]
        [--threads 2] [--variant plain|recorder|both] [--fuse-blocks] [--no-tracemalloc]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import os
import sys
import time
import tracemalloc
import weakref
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine.memory import resident_memory  # noqa: E402

MiB = 2 ** 20
WARM_UP = 50
LOCK_RUNS = 250       # runs per hold of --lock


@contextlib.contextmanager
def held(lock_path: Path | None):
    """Hold an exclusive flock on lock_path (if given) for the duration of the block."""
    if lock_path is None:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def soak(model, x: np.ndarray, runs: int, chunk: int, threads: int, fuse_blocks: bool, recorder: bool,
         trace: bool, lock_path: Path | None = None) -> list[dict]:
    """One row per chunk of `chunk` runs: latency (seconds) and memory (bytes) at its end;
    each chunk runs holding lock_path (if given)."""
    options = dict(threads=threads, fuse_blocks=fuse_blocks)
    alive: weakref.WeakSet = weakref.WeakSet()
    expected_records = len(model.plan(x.shape[0], **options).steps)
    for _ in range(WARM_UP):
        model.run(x, hooks=[engine.Recorder()] if recorder else (), **options)
    gc.collect()
    if trace:
        tracemalloc.start()
    rows = []
    try:
        for first in range(0, runs, chunk):
            count = min(chunk, runs - first)
            seconds = np.empty(count)
            cpu_start = time.process_time()
            for part in range(0, count, LOCK_RUNS):     # hold the lock for at most LOCK_RUNS runs
                with held(lock_path):
                    _chunk(model, x, seconds[part:part + LOCK_RUNS], recorder, alive, expected_records, options)
            cpu = (time.process_time() - cpu_start) / count
            memory = resident_memory() or {"rss": 0}
            rows.append({"runs": first + count, "cpu": cpu, "min": float(seconds.min()),
                         "median": float(np.median(seconds)), "p99": float(np.percentile(seconds, 99)),
                         "max": float(seconds.max()),
                         "rss": memory["rss"], "traced": tracemalloc.get_traced_memory()[0] if trace else None,
                         "recorders_alive": len(alive) if recorder else None})
            print(f"  {rows[-1]['runs']} runs: median {1e3 * rows[-1]['median']:.2f} ms, "
                  f"RSS {rows[-1]['rss'] / MiB:.1f} MiB", file=sys.stderr, flush=True)
    finally:
        if trace:
            tracemalloc.stop()
    return rows


def _chunk(model, x, seconds: np.ndarray, recorder: bool, alive: weakref.WeakSet, expected_records: int,
           options: dict) -> None:
    """len(seconds) timed runs; with `recorder`, a new Recorder per run that is then dropped."""
    clock = time.perf_counter
    for index in range(len(seconds)):
        if recorder:
            rec = engine.Recorder()
            alive.add(rec)
            start = clock()
            model.run(x, hooks=[rec], **options)
            seconds[index] = clock() - start
            if len(rec.records) != expected_records:
                raise AssertionError(f"{len(rec.records)} records, expected {expected_records}")
            del rec                              # the caller drops it
        else:
            start = clock()
            model.run(x, **options)
            seconds[index] = clock() - start


def flags(rows: list[dict]) -> list[str]:
    first, last = rows[0], rows[-1]
    out = []
    if last["rss"] - first["rss"] > 2 * MiB:
        out.append(f"RSS grew {(last['rss'] - first['rss']) / MiB:.1f} MiB after the first chunk")
    if last["traced"] is not None and last["traced"] - first["traced"] > 256 * 1024:
        out.append(f"traced memory grew {(last['traced'] - first['traced']) / 1024:.0f} KiB after the first chunk")
    if any((row["recorders_alive"] or 0) > 1 for row in rows):
        out.append("dropped Recorders stay alive")
    slow = [row["runs"] for row in rows if row["median"] > 1.25 * first["median"]]
    if slow:
        out.append(f"chunk medians > 1.25 x the first chunk's at {slow} runs")
    return out


def table(rows: list[dict]) -> list[str]:
    recorder = rows[0]["recorders_alive"] is not None
    lines = ["| runs | min | median | p99 | max | CPU time per run | RSS | RSS growth since chunk 1 | "
             "traced (tracemalloc) |" + (" Recorders alive |" if recorder else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if recorder else "")]
    for row in rows:
        traced = "-" if row["traced"] is None else f"{row['traced'] / 1024:.0f} KiB"
        line = (f"| {row['runs']} | {1e3 * row['min']:.2f} ms | {1e3 * row['median']:.2f} ms | "
                f"{1e3 * row['p99']:.2f} ms | {1e3 * row['max']:.2f} ms | {1e3 * row['cpu']:.2f} ms | "
                f"{row['rss'] / MiB:.1f} MiB | "
                f"{(row['rss'] - rows[0]['rss']) / MiB:+.2f} MiB | {traced} |")
        if recorder:
            line += f" {row['recorders_alive']} |"
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=min(2, engine.available_cores()))
    parser.add_argument("--variant", choices=("plain", "recorder", "both"), default="both")
    parser.add_argument("--fuse-blocks", action="store_true")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--lock", type=Path, default=None, help="flock this file around each chunk")
    args = parser.parse_args(argv)
    model = engine.load(args.model)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)
    variants = ("plain", "recorder") if args.variant == "both" else (args.variant,)
    status = 0
    for variant in variants:
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        rows = soak(model, x, args.runs, args.chunk, args.threads, args.fuse_blocks, variant == "recorder",
                    not args.no_tracemalloc, args.lock)
        wall = time.perf_counter() - started
        print(f"\n{variant}: {args.runs} batch-1 runs, {args.threads} threads, fuse_blocks {args.fuse_blocks}, "
              f"tracemalloc {'off' if args.no_tracemalloc else 'on'}, {wall:.0f} s wall (with lock waits), "
              f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, numba threading layer "
              f"{numba.threading_layer()}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}\n")
        print("\n".join(table(rows)))
        found = flags(rows)
        print("\nflags: " + ("; ".join(found) if found else "none"))
        status |= bool(found)
    return status


if __name__ == "__main__":
    sys.exit(main())
