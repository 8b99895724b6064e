"""Memory of the engine: the plan's own sizes (engine.memory) and measured peak resident memory.

Part 1, planned (deterministic): for each batch and fused / unfused, engine.memory's report:
packed weights, activation arena, fused-block scratch, input/output buffers, the two largest
activations live at one step, and ratio = held / (two largest + weights) (target <= 1.5).

Part 2, measured: each configuration in a fresh process (python bench/memory.py --child):
    1. import engine; load the model; one small run (kernels load from the numba cache);
    2. make the caller's batch x (the caller's memory, not the engine's);
    3. reset VmHWM and tracemalloc's peak; run at the batch twice (the first builds the plan);
    4. report the growth of the peak over the RSS before step 3 ("run peak"), the peak of
       numpy allocations traced by tracemalloc over that step, and the absolute VmHWM;
    5. stop tracemalloc (it slows numba's dispatch) and time a few more runs (median).
The run peak is compared with what the plan says it holds beyond the model (arena + io +
scratch + temporaries). Batch 256 unfused needs about 1.8 GB.

    python bench/memory.py [--batches 1 64 256] [--threads 2] [--no-measure]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 2 ** 20


def child(model_path: str, batch: int, threads: int, fuse: bool) -> dict:
    """Runs in the fresh process; returns the measurements (bytes, seconds)."""
    import tracemalloc

    import numpy as np

    import engine
    from engine.memory import memory_report, reset_peak_resident_memory, resident_memory

    after_import = resident_memory()["rss"]
    tracemalloc.start()
    model = engine.load(model_path)
    after_load = resident_memory()["rss"]
    options = dict(threads=threads, fuse_blocks=fuse)
    # loads every kernel from the numba cache; batch 2 when measuring batch 1, so that the
    # measured plan is built inside the measured window
    model.run(np.zeros((2 if batch == 1 else 1, *model.input_shape), np.float32), **options)
    after_warm_up = resident_memory()["rss"]
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape), dtype=np.float32)
    before_run = resident_memory()["rss"]
    traced_before = tracemalloc.get_traced_memory()[0]
    reset = reset_peak_resident_memory()
    tracemalloc.reset_peak()
    model.run(x, **options)                 # builds the plan
    model.run(x, **options)
    traced_peak = tracemalloc.get_traced_memory()[1]
    status = resident_memory()
    tracemalloc.stop()                      # it slows numba's dispatch: time without it
    seconds = []
    for _ in range(3 if batch > 1 else 20):
        start = time.perf_counter()
        model.run(x, **options)
        seconds.append(time.perf_counter() - start)
    report = memory_report(model, batch, **options)
    return {"batch": batch, "threads": threads, "fuse_blocks": fuse, "after_import": after_import,
            "after_load": after_load, "after_warm_up": after_warm_up, "before_run": before_run,
            "peak": status["peak"], "rss_end": status["rss"], "peak_was_reset": reset,
            "run_peak": status["peak"] - before_run, "traced_run_peak": traced_peak - traced_before,
            "planned_run": report.held_bytes - report.weights_bytes, "run_s": sorted(seconds)[len(seconds) // 2]}


def measure(model_path: Path, batch: int, threads: int, fuse: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(model_path), str(batch), str(threads),
                          str(int(fuse))], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def planned_table(model_path: Path, batches, threads: int) -> list[str]:
    import engine
    from engine.memory import memory_report

    model = engine.load(model_path)
    lines = ["| batch | fused | packed weights | arena | scratch | io | two largest live | held | "
             "held / (two largest + weights) |",
             "|---|---|---|---|---|---|---|---|---|"]
    graph_weights = 0
    for batch in batches:
        for fuse in (False, True):
            r = memory_report(model, batch, threads=threads, fuse_blocks=fuse)
            graph_weights = r.graph_weights_bytes
            lines.append(f"| {batch} | {'yes' if fuse else 'no'} | {r.weights_bytes / MiB:.1f} MiB | "
                         f"{r.arena_bytes / MiB:.1f} MiB | {r.scratch_bytes / MiB:.2f} MiB | "
                         f"{r.io_bytes / MiB:.2f} MiB | {r.two_largest_bytes / MiB:.1f} MiB | "
                         f"{r.held_bytes / MiB:.1f} MiB | {r.ratio:.3f} |")
            assert r.arena_bytes >= r.live_peak_bytes
            if r.arena_bytes != r.live_peak_bytes:
                lines[-1] += f" (arena {r.arena_efficiency:.2f} x its lower bound)"
    lines.append(f"\nThreads {threads}. The Graph also keeps the ONNX-layout weights "
                 f"({graph_weights / MiB:.1f} MiB), not counted in 'held'.")
    return lines


def measured_table(model_path: Path, batches, threads: int) -> list[str]:
    lines = ["| batch | fused | RSS after imports | after load | after first small run | "
             "run peak (VmHWM growth) | numpy peak (tracemalloc) | planned arena + io + scratch | "
             "run peak / planned | VmHWM | run time (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for batch in batches:
        for fuse in (False, True):
            m = measure(model_path, batch, threads, fuse)
            note = "" if m["peak_was_reset"] else " (VmHWM not reset)"
            lines.append(f"| {batch} | {'yes' if fuse else 'no'} | {m['after_import'] / MiB:.0f} MiB | "
                         f"{m['after_load'] / MiB:.0f} MiB | {m['after_warm_up'] / MiB:.0f} MiB | "
                         f"{m['run_peak'] / MiB:.1f} MiB{note} | {m['traced_run_peak'] / MiB:.1f} MiB | "
                         f"{m['planned_run'] / MiB:.1f} MiB | {m['run_peak'] / m['planned_run']:.2f} | "
                         f"{m['peak'] / MiB:.0f} MiB | {1e3 * m['run_s']:.0f} ms |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, model_path, batch, threads, fuse = sys.argv
        print(json.dumps(child(model_path, int(batch), int(threads), bool(int(fuse)))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-measure", action="store_true", help="only the planned table")
    args = parser.parse_args(argv)
    print("Planned (engine.memory, from the plan's sizes):\n")
    print("\n".join(planned_table(args.model, args.batches, args.threads)))
    if not args.no_measure:
        print("\nMeasured (fresh process per row; growth over the RSS before the first batch-N run):\n")
        print("\n".join(measured_table(args.model, args.batches, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
