"""The numba kernels behind the machine ceilings: FMA throughput, streaming read, triad.

Each kernel runs one work item per thread (`prange(n_threads)`; the caller sets
numba.set_num_threads(n_threads) so each thread gets exactly one) and repeats its work
`repeats` times inside the parallel region, so one call is one timed sample and the cost
of starting the parallel region is amortised.

Napkin math (what a sample does, per thread):
- FMA: FMA_CHAINS independent chains, each one vector register of FMA_LANES fp32 lanes:
  the register width of the code numba builds, not CB (12 zmm = 192 floats on an
  AVX-512 host building 16 lanes; 12 ymm = 96 floats otherwise: a 16-lane build on an
  AVX2 host runs each block as two ymm, and 24 ymm accumulators would not fit its 16
  registers). An FMA has a latency of 4-5 cycles and 2 pipes issue one each per cycle,
  so >= 10 chains keep both pipes busy; 12 accumulators plus the multiplier and the
  addend take 14 registers. No memory operation inside the loop (checked in the asm, see
  tests). FLOPs = 2 per lane per FMA (multiply + add).
- read: sum of n floats; bytes = 4 * n per repeat. LLVM splits the sum over 4 vector
  accumulators, so in L1 it is bound by the add latency (4 x 8 floats per 3 cycles on
  Zen 3, ~43 B/cycle), not by the two load ports (64 B/cycle): the read roof in L1 comes
  out below the triad's (Ceilings.detail holds both). One reason triad is the reported roof.
- triad: a[i] = b[i] + s * c[i] over n floats; bytes = 12 * n per repeat, counting the
  three streams (two loads, one store) of 4 bytes each. The STREAM convention: the extra
  read a write-allocate cache does before overwriting a line of `a` is not counted, as the
  engine's bytes-moved model does not count it either.

Arrays are 1-d float32, C-contiguous; thread t works on elements [t * n, (t + 1) * n).
The public wrappers check that; the `_kernel` functions do arithmetic only.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.core.registry import cpu_target

from engine.kernels._common import register_scratch


def vector_register_lanes(cpu_features: str) -> int:
    """fp32 lanes of the vector registers LLVM uses for code built with `cpu_features` (an
    LLVM feature string, "+avx2,+avx512f,-prefer-256-bit,..."): 16 where AVX-512 is on and
    256-bit vectors are not preferred (engine._numba_env's setting for 16-lane builds),
    else 8. Without an explicit -prefer-256-bit the answer is 8, as LLVM's tuning for
    Intel's AVX-512 CPUs prefers 256-bit vectors."""
    flags = cpu_features.split(",")
    return 16 if "+avx512f" in flags and "-prefer-256-bit" in flags else 8


def _built_features() -> str:
    """The CPU features numba's CPU target compiles with. The target reads them once, when
    it is created: if numba was imported before `engine` set NUMBA_CPU_FEATURES, they are
    the host's defaults, not what numba.config says now."""
    try:
        return cpu_target.target_context.codegen()._tm_features   # numba internals, as of 0.68
    except AttributeError:  # pragma: no cover - depends on numba's version
        return numba.config.CPU_FEATURES or ""


FMA_CHAINS = 12                                        # independent vector accumulators per thread
FMA_LANES = vector_register_lanes(_built_features())   # fp32 lanes of one accumulator register
FMA_WIDTH = FMA_CHAINS * FMA_LANES                     # fp32 accumulators per thread (96 or 192)
FMA_MULTIPLIER = np.float32(0.999)   # x <- x * 0.999 + 0.001 converges to 1: no overflow,
FMA_ADDEND = np.float32(0.001)       # no denormals, whatever the number of repeats


# ---------------------------------------------------------------------------- FMA peak

_scratch_accumulators = register_scratch(FMA_WIDTH)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _fma_kernel(seeds, multiplier, addend, repeats, out):
    # seeds, out: (n_threads, FMA_WIDTH) float32; one row per thread.
    # The accumulators are a stack array of constant length, touched only with constant
    # indices once the lane loops are unrolled, so SROA turns them into FMA_CHAINS vector
    # registers (a heap array would rely on LICM promoting its loads and stores instead).
    for t in prange(seeds.shape[0]):
        acc = _scratch_accumulators()
        for j in range(FMA_WIDTH):
            acc[j] = seeds[t, j]
        for _ in range(repeats):
            for j in range(FMA_WIDTH):
                acc[j] = acc[j] * multiplier + addend
        for j in range(FMA_WIDTH):
            out[t, j] = acc[j]


def fma_flops(n_threads: int, repeats: int) -> int:
    """FLOPs one `fma_chains` call does: 2 (multiply + add) per accumulator per repeat."""
    return 2 * FMA_WIDTH * repeats * n_threads


def fma_chains(seeds: np.ndarray, repeats: int) -> np.ndarray:
    """Run x <- x * FMA_MULTIPLIER + FMA_ADDEND `repeats` times on every accumulator.

    seeds: (n_threads, FMA_WIDTH) float32, one row of starting values per thread.
    Returns the final accumulators, same shape. Does `fma_flops(n_threads, repeats)` FLOPs.
    """
    if not (isinstance(seeds, np.ndarray) and seeds.dtype == np.float32 and seeds.ndim == 2
            and seeds.shape[1] == FMA_WIDTH and seeds.shape[0] >= 1 and seeds.flags.c_contiguous):
        got = f"{seeds.shape} {seeds.dtype}" if isinstance(seeds, np.ndarray) else type(seeds).__name__
        raise ValueError(f"seeds must be a C-contiguous float32 (n_threads >= 1, {FMA_WIDTH}) array, got {got}")
    _check_count("repeats", repeats, minimum=0)
    out = np.empty_like(seeds)
    _fma_kernel(seeds, FMA_MULTIPLIER, FMA_ADDEND, repeats, out)
    return out


# ---------------------------------------------------------------------------- read

@njit(parallel=True, cache=True, fastmath=True)
def _read_kernel(source, n_per_thread, repeats, n_threads, out):
    # source: (>= n_threads * n_per_thread,) float32; out: (n_threads,) float32.
    # fastmath lets LLVM split the sum over several vector accumulators. The slice keeps
    # the loop index from 0, which lets numba drop the negative-index check and LLVM
    # vectorise (with range(lo, hi) the loop stays scalar).
    for t in prange(n_threads):
        mine = source[t * n_per_thread:(t + 1) * n_per_thread]
        total = np.float32(0.0)
        for _ in range(repeats):
            for i in range(n_per_thread):
                total += mine[i]
        out[t] = total


def read_bytes(n_per_thread: int, n_threads: int, repeats: int) -> int:
    """Bytes one `read_sum` call reads: 4 per float per repeat."""
    return 4 * n_per_thread * n_threads * repeats


def read_sum(source: np.ndarray, n_per_thread: int, repeats: int, n_threads: int) -> np.ndarray:
    """Each thread t sums source[t*n : (t+1)*n] `repeats` times; returns (n_threads,) sums.

    source: 1-d float32 C-contiguous with at least n_threads * n_per_thread elements.
    Reads `read_bytes(n_per_thread, n_threads, repeats)` bytes.
    """
    _check_stream("source", source, n_per_thread, n_threads)
    _check_count("repeats", repeats, minimum=0)
    out = np.zeros(n_threads, np.float32)
    _read_kernel(source, n_per_thread, repeats, n_threads, out)
    return out


# ---------------------------------------------------------------------------- triad

@njit(parallel=True, cache=True, fastmath=True)
def _triad_kernel(a, b, c, scalar, n_per_thread, repeats, n_threads):
    # a, b, c: (>= n_threads * n_per_thread,) float32. a is overwritten with the same
    # values every repeat; LLVM cannot drop the repeats because it cannot prove that a
    # does not alias b or c.
    for t in prange(n_threads):
        lo = t * n_per_thread
        hi = lo + n_per_thread
        a_mine = a[lo:hi]
        b_mine = b[lo:hi]
        c_mine = c[lo:hi]
        for _ in range(repeats):
            for i in range(n_per_thread):
                a_mine[i] = b_mine[i] + scalar * c_mine[i]


def triad_bytes(n_per_thread: int, n_threads: int, repeats: int) -> int:
    """Bytes one `triad` call moves: 3 streams x 4 bytes per element per repeat (no write-allocate)."""
    return 12 * n_per_thread * n_threads * repeats


def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, scalar: float, n_per_thread: int,
          repeats: int, n_threads: int) -> None:
    """a[i] = b[i] + scalar * c[i] on each thread's slice [t*n, (t+1)*n), `repeats` times.

    a, b, c: 1-d float32 C-contiguous, at least n_threads * n_per_thread elements, a not
    overlapping b or c. Moves `triad_bytes(n_per_thread, n_threads, repeats)` bytes.
    """
    for name, array in (("a", a), ("b", b), ("c", c)):
        _check_stream(name, array, n_per_thread, n_threads)
    if np.shares_memory(a, b) or np.shares_memory(a, c):
        raise ValueError("triad: a must not overlap b or c")
    _check_count("repeats", repeats, minimum=0)
    _triad_kernel(a, b, c, np.float32(scalar), n_per_thread, repeats, n_threads)


# ---------------------------------------------------------------------------- checks

def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_stream(name: str, array, n_per_thread: int, n_threads: int) -> None:
    _check_count("n_per_thread", n_per_thread, minimum=1)
    _check_count("n_threads", n_threads, minimum=1)
    needed = n_per_thread * n_threads
    if not (isinstance(array, np.ndarray) and array.dtype == np.float32 and array.ndim == 1
            and array.flags.c_contiguous and array.shape[0] >= needed):
        got = f"{array.shape} {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"{name} must be a 1-d C-contiguous float32 array of >= {needed} elements "
                         f"(n_threads {n_threads} x n_per_thread {n_per_thread}), got {got}")
