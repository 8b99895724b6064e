"""How much of the network the tuner searches within its budget: per configuration, the
tuner's wall seconds, why it stopped, how many blocks (fused or not, band height) and how
many 1x1 / depthwise / dense conv steps outside fused blocks it searched, of how many, the
whole runs it measured, and the default and tuned run times it measured side by side.

    python bench/tune_coverage.py [--model M] [--configs 1x2 64x1 64x2] [--budget 60]
                                  [--tuner path/to/tune.py] [--out-dir DIR]

--tuner runs another version of engine/tune.py (e.g. `git show REV:engine/tune.py > old.py`)
for an old-against-new comparison; --out-dir saves each schedule there (never the shared
cache: the tuner runs with save=False).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from engine import schedules  # noqa: E402


def load_tuner(path: Path | None):
    if path is None:
        return importlib.import_module("engine.tune")     # (engine.tune is the function)
    spec = importlib.util.spec_from_file_location("engine._tune_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def coverage(module, model, batch: int, threads: int, schedule) -> dict:
    """Units of each phase the schedule leaves to search: blocks, and steps outside fused blocks."""
    import numpy as np
    x = np.zeros((batch, *model.input_shape), np.float32)
    session = module._Session(model, x, threads, "auto", None)
    try:
        fused = {name for name in session.blocks if schedule.fused_for(name)}
        steps = [name for name, kind in session.kinds.items() if kind in module.TILED_KINDS
                 and session.block_of.get(name) not in fused]
        return {"blocks": set(session.blocks), "steps": set(steps)}
    finally:
        session.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--configs", nargs="+", default=["1x2", "64x1", "64x2"], help="BATCHxTHREADS")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--tuner", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    module = load_tuner(args.tuner)
    model = engine.load(args.model)
    for config in args.configs:
        batch, threads = (int(v) for v in config.split("x"))
        started = time.perf_counter()
        result = module.tune(model, batch=batch, threads=threads, budget_s=args.budget, save=False)
        wall = time.perf_counter() - started
        units = coverage(module, model, batch, threads, result.schedule)
        tried = {row["step"] for row in result.trials}
        blocks = {row["step"] for row in result.trials if row["kind"] == "block"}
        steps = tried & units["steps"]
        runs = getattr(result, "runs", None)
        print(f"{args.tuner or 'engine.tune'}: batch {batch}, {threads} thread(s): tuner {result.seconds:.1f} s "
              f"(wall {wall:.1f} s), {result.stopped or 'complete'}; blocks searched {len(blocks)}/{len(units['blocks'])}, "
              f"steps searched {len(steps)}/{len(units['steps'])}; trials {len(result.trials)}"
              + (f", runs {runs}" if runs is not None else "")
              + f"; default {result.default_seconds * 1e3:.2f} ms, tuned {result.tuned_seconds * 1e3:.2f} ms "
              f"({result.tuned_seconds / result.default_seconds:.3f})", flush=True)
        if args.out_dir is not None:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            path = args.out_dir / f"schedule_b{batch}_t{threads}.json"
            schedules.save(path, result.schedule, model.schedule_key(batch, threads), result.trials)
            print(f"  saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
