"""Cold and warm start of the engine on the default model, and proof that tiles never recompile.

Cold: a fresh, empty numba cache directory (everything compiles). Warm: the same cache
directory again (everything loads from the cache). Each is a new Python process, so the
figures include interpreter start-up and imports. The child loads the model and runs it
once per configuration (unfused, then every block fused, then fuse_blocks="auto", the
default -- by then every kernel it needs has compiled), timing each
phase; then it runs again with other tile sizes and reports how many new kernel
specialisations that compiled (must be 0: tiles are run-time arguments).

    python bench/startup.py [--model data/mobilenet_v2.onnx]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np, engine
phases = {"import": time.perf_counter() - start}
mark = time.perf_counter()
model = engine.load(sys.argv[1])
x = np.zeros((1, *model.input_shape), np.float32)
phases["load"] = time.perf_counter() - mark
threads = engine.available_cores()
for label, fuse in (("unfused", False), ("every block fused", True), ("auto (the default)", "auto")):
    mark = time.perf_counter()
    model.run(x, threads=threads, fuse_blocks=fuse)
    phases[f"first run, {label}"] = time.perf_counter() - mark

def specialisations():
    from numba.core.registry import CPUDispatcher
    import gc
    return sum(len(d.overloads) for d in gc.get_objects() if isinstance(d, CPUDispatcher))

before = specialisations()
mark = time.perf_counter()
for tiles in (engine.Tiles(pointwise_pixels=24, pointwise_channels=32, depthwise_rows=3, block_rows=5),
              engine.Tiles(pointwise_pixels=300, pointwise_channels=4096, depthwise_rows=1, block_rows=1)):
    for fuse in (False, True):
        model.run(np.zeros((2, *model.input_shape), np.float32), threads=1, tiles=tiles, fuse_blocks=fuse)
phases["runs with other tiles and batch"] = time.perf_counter() - mark
print(json.dumps({"phases": phases, "new_specialisations": specialisations() - before}))
"""


def timed_child(model: Path, cache_dir: str) -> tuple[float, dict]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(model)], env=env, check=True, cwd=ROOT,
                          capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        results = {"cold (empty numba cache)": timed_child(args.model, cache_dir),
                   "warm (cache filled)": timed_child(args.model, cache_dir)}
    for label, (total, report) in results.items():
        print(f"{label}: {total:.1f} s in all")
        for phase, seconds in report["phases"].items():
            print(f"    {phase:<34} {seconds:6.1f} s")
        print(f"    new kernel specialisations after changing tiles and batch: {report['new_specialisations']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
