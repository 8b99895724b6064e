"""Cold and warm start of `engine.load(path).run(x)` on the default model.

Cold: a fresh, empty numba cache directory (everything compiles). Warm: the same cache
directory again (everything loads from the cache). Each is a new Python process, so the
figures include interpreter start-up and imports.

    python bench/startup.py [--model data/mobilenet_v2.onnx] [--fuse-blocks]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import numpy as np, engine, sys
model = engine.load(sys.argv[1])
x = np.zeros((1, *model.input_shape), np.float32)
model.run(x, threads=engine.available_cores(), fuse_blocks={fuse})
"""


def timed_child(model: Path, cache_dir: str, fuse: bool) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD.format(fuse=fuse), str(model)], env=env, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "mobilenet_v2.onnx")
    parser.add_argument("--fuse-blocks", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        cold = timed_child(args.model, cache_dir, args.fuse_blocks)
        warm = timed_child(args.model, cache_dir, args.fuse_blocks)
    print(f"cold start (empty numba cache): {cold:.1f} s")
    print(f"warm start (cache filled):      {warm:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
