"""Settings numba must see before it compiles anything: imported first by `engine`.

- NUMBA_CPU_NAME / NUMBA_CPU_FEATURES: the host CPU, and on AVX-512 hosts the features
  without `prefer-256-bit`, so LLVM emits 512-bit FMAs (by default it keeps to ymm).
- NUMBA_SLP_VECTORIZE=1: SLP packing of scalar lanes into vectors (off by default).
- NUMBA_CACHE_DIR: a user-writable folder when the package directory is read-only.

A variable the user already set is never overridden.
"""
from __future__ import annotations

import os
from pathlib import Path


def _host_cpu() -> tuple[str, str]:
    import llvmlite.binding as llvm

    try:  # llvmlite < 0.45 needs explicit initialisation; newer ones refuse it
        llvm.initialize_native_target()
    except Exception:  # pragma: no cover - depends on llvmlite version
        pass
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


HOST_CPU_NAME, _features = _host_cpu()
HOST_HAS_AVX512: bool = "+avx512f" in _features.split(",")

if HOST_HAS_AVX512:
    _features = ",".join(f for f in _features.split(",") if f != "+prefer-256-bit") + ",-prefer-256-bit"

os.environ.setdefault("NUMBA_CPU_NAME", HOST_CPU_NAME)
os.environ.setdefault("NUMBA_CPU_FEATURES", _features)
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")

if "NUMBA_CACHE_DIR" not in os.environ:
    _package_dir = Path(__file__).resolve().parent
    if not os.access(_package_dir, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "roofline-workbench" / "numba")
