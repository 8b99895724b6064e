"""The bytes model (engine.traffic) against a cache simulation of the kernels' own access
traces (engine.trace), per kernel family and memory level, on the default model.

For each batch the plan the workbench would run (its default threads, tiles and fusion,
this machine's caches with the effective sizes the ceilings measured) is simulated step
by step through one LRU hierarchy (pycachesim), after one warm run; every step's modelled
bytes at each level are set against the simulated ones. A ratio is modelled / simulated:
the table gives, per family and level, the median and the worst (furthest from 1) over
the steps, and the share of steps off by more than 25 %. Levels where a step moves under
64 KiB both ways are left out.

    python bench/bytes_model_vs_sim.py [--batches 1 8] [--threads 2] [--described zen3-vm] [--csv out.csv]

--described NAME simulates one of tests/machines.py's described machines instead of this one
(with this process's lane width, which the kernels are built for): a small effective L3
such as the Zen 3 VM's 10 MiB puts the DRAM level in play, which this host's L3 hides.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from workbench.profile import as_model, default_ceilings, default_threads, model_file, run_machine  # noqa: E402
from workbench.simulated_bytes import SMALL_BYTES, agreement_table, model_vs_simulated, simulated_frame  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (default: 1 8)")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: the workbench's, <= 2)")
    parser.add_argument("--model", default=None, help="ONNX file (default: data/mobilenet_v2.onnx)")
    parser.add_argument("--described", default=None, help="a described machine of tests/machines.py (default: this one)")
    parser.add_argument("--csv", default=None, help="write the per-step frames here (default: none)")
    args = parser.parse_args(argv)
    threads = args.threads or default_threads()
    model = as_model(args.model or model_file())
    if args.described:
        sys.path.insert(0, str(ROOT / "tests"))
        from engine.kernels.layout import CB
        from machines import DESCRIBED, with_lanes
        machine = with_lanes(DESCRIBED[args.described], CB)
    else:
        machine = run_machine(default_ceilings(threads))     # this machine, with the L3 the ceilings measured
    print(f"# {machine.cpu_model}, {threads} threads, lanes {machine.simd_lanes_fp32}; caches "
          + ", ".join(f"{c.name} {c.usable_bytes // 1024} KiB ({c.ways or '?'} ways)" for c in machine.caches))
    frames = []
    for batch in args.batches:
        started = time.perf_counter()
        frame = simulated_frame(model, batch, threads, fuse_blocks=engine.DEFAULT_FUSE_BLOCKS, machine=machine,
                                progress=False)
        seconds = time.perf_counter() - started
        frame["batch"] = batch
        frames.append(frame)
        print(f"\n## batch {batch}: {len(frame)} steps simulated in {seconds:.1f} s "
              f"({int(frame['traced'].sum())} traced)\n")
        table = agreement_table(frame)
        print("| family | level | steps | median model/sim | worst | worst step | off > 25 % |")
        print("|---|---|---:|---:|---:|---|---:|")
        for row in table.itertuples():
            step = row.worst_step.replace("/features/", "").replace("/Conv", "")[:34]
            print(f"| {row.family} | {row.level} | {row.steps} | {row.median_ratio:.2f} | {row.worst_ratio:.2f} "
                  f"| {step} | {row.off_by_25pct:.0%} |")
        print("\n" + summary(frame))
    if args.csv:
        import pandas as pd
        pd.concat(frames).to_csv(args.csv, index=False)
    return 0


def summary(frame) -> str:
    """Steps within 25 % of the simulation at L2, L3 and DRAM together (step and level pairs
    past the 64 KiB filter), and per level the whole network's modelled / simulated bytes."""
    pairs = model_vs_simulated(frame)
    kept = pairs[(pairs["model_bytes"] >= SMALL_BYTES) | (pairs["simulated_bytes"] >= SMALL_BYTES)]
    below = kept[kept["level"].isin(["L2", "L3", "DRAM"])]
    within = ((below["ratio"] >= 0.8) & (below["ratio"] <= 1.25)).mean()
    sums = ", ".join(f"{level} {group['model_bytes'].sum() / group['simulated_bytes'].sum():.2f}"
                     for level, group in pairs.groupby("level", sort=False) if group["simulated_bytes"].sum() > 0)
    return f"steps within 25 % at L2, L3 and DRAM: {within:.0%} of {len(below)}; network model / simulated: {sums}"


if __name__ == "__main__":
    sys.exit(main())
