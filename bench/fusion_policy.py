"""What the "auto" fusion policy and the band-height rule decide on each described machine.

Nothing is timed: this prints, for the default model (MobileNetV2 at 224x224) and every
machine of tests/machines.py (Zen 3, the Zen 3 VM as measured, Zen 5, Emerald Rapids, a
1-core host), each inverted-residual block's decision at batch 1 and 64 on 1..cores
threads: "F<band>" fused with that band height, "-" unfused, and where its unfused
intermediates would live (L2, L3 or DRAM: engine.fusion.intermediates_level). Markdown, for
bench/README.md. Measure whether a decision pays on a machine with bench/fusion.py.

    python bench/fusion_policy.py [--batches 1 64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))       # the described machines are the tests' own

import engine  # noqa: E402
from engine.zoo import mobilenet_v2  # noqa: E402
from engine.passes import find_inverted_residual_blocks  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.fusion import block_rows_for, fusion_wins, intermediates_level  # noqa: E402
from machines import DESCRIBED  # noqa: E402


def decision(block, config: RunConfig, batch: int) -> str:
    level = intermediates_level(block, config, batch)
    fused = f"F{block_rows_for(block, config, batch)}" if fusion_wins(block, config, batch) else "-"
    return f"{fused} {level}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args(argv)
    blocks = find_inverted_residual_blocks(engine.load(mobilenet_v2()).graph)
    columns = [(name, machine, batch, threads) for batch in args.batches for name, machine in DESCRIBED.items()
               for threads in range(1, machine.cores + 1)]
    print("| block | stride | " + " | ".join(f"{name} b{batch} t{threads}" for name, _, batch, threads in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for block in blocks:
        expand, depthwise, project = block
        hidden, out_h, out_w = depthwise.output_shape
        label = f"{depthwise.input_shape[0] if expand is None else expand.input_shape[0]}->{hidden}->" \
                f"{project.output_shape[0]} @{depthwise.input_shape[1]}"
        cells = [decision(block, RunConfig(threads, engine.Tiles(), "auto", machine), batch)
                 for _, machine, batch, threads in columns]
        print(f"| {label} | {depthwise.attrs['strides'][0]} | " + " | ".join(cells) + " |")
    totals = [sum(fusion_wins(b, RunConfig(threads, engine.Tiles(), "auto", machine), batch) for b in blocks)
              for _, machine, batch, threads in columns]
    print("| blocks fused | | " + " | ".join(str(t) for t in totals) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
