"""numba's threading layer: OpenMP first unless the user chose one (engine._numba_env)."""
from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = "import engine, numba; print(' '.join(numba.config.THREADING_LAYER_PRIORITY), numba.config.THREADING_LAYER)"


def _run(**environ) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    env.update(environ)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def test_openmp_comes_first_so_a_library_bringing_libtbb_does_not_switch_the_engine_to_tbb():
    assert _run() == "omp tbb workqueue default"


def test_a_layer_or_an_order_the_user_chose_is_kept():
    assert _run(NUMBA_THREADING_LAYER="workqueue").endswith(" workqueue")
    assert _run(NUMBA_THREADING_LAYER="workqueue").startswith("tbb omp workqueue")
    assert _run(NUMBA_THREADING_LAYER_PRIORITY="tbb workqueue omp") == "tbb workqueue omp default"
