"""Regular against non-temporal (streaming) vector stores on one thread, GB/s by working set.

Two kernels, each in a regular and a non-temporal build (numba @intrinsic emitting an aligned
`<16 x float>` store, the NT one with `!nontemporal` metadata: `vmovntps` on AVX-512):

- write: y[:] = constant, N bytes written. Bytes counted: N (the line fill a regular store
  pays is not counted: it is the cost being measured).
- copy: y[:] = x * s, like a 1x1 layer's streams (read the input, write the output).
  Bytes counted: 2N (N read, N written), the STREAM convention.

Working sets (x and y together for copy) go from L2-resident to 4x the effective L3, from the
cached ceilings (workbench.measure_ceilings). Arrays are engine.pages.aligned_empty (64-byte
lines), checked before use: a misaligned `vmovntps` faults. Each figure is the best of
--samples timings of repeated passes (>= 20 ms each). The NT kernels end with `sfence`.

    flock /tmp/roofline-bench.lock .venv/bin/python bench/streaming_stores.py
    .venv/bin/python bench/streaming_stores.py --asm     # the inner loops' store instructions
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (sets numba's environment first)
import numba  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from engine.pages import aligned_empty  # noqa: E402

VECTOR = 16                      # floats per store: one 64-byte line, one zmm register
LINE = 64


def _vector_pointer(context, builder, array_type, array, index):
    """`<16 x float>*` at float element `index` of a 1-D float32 array."""
    data = context.make_array(array_type)(context, builder, array).data
    element = builder.gep(data, [index])
    return builder.bitcast(element, ir.VectorType(ir.FloatType(), VECTOR).as_pointer())


def _store(builder, value, pointer, nontemporal: bool) -> None:
    store = builder.store(value, pointer, align=LINE)
    if nontemporal:
        module = builder.module
        store.set_metadata("nontemporal", module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _make_fill(nontemporal: bool):
    @intrinsic
    def fill16(typingctx, y, index, value):
        """Store 16 copies of `value` at y[index:index + 16] (index a multiple of 16)."""
        def codegen(context, builder, signature, args):
            y_value, index_value, scalar = args
            pointer = _vector_pointer(context, builder, signature.args[0], y_value, index_value)
            vector_type = ir.VectorType(ir.FloatType(), VECTOR)
            vector = cgutils.get_null_value(vector_type)
            for lane in range(VECTOR):
                vector = builder.insert_element(vector, scalar, ir.Constant(ir.IntType(32), lane))
            _store(builder, vector, pointer, nontemporal)
            return context.get_dummy_value()
        return types.void(y, index, value), codegen
    return fill16


def _make_scale(nontemporal: bool):
    @intrinsic
    def scale16(typingctx, y, x, index, factor):
        """y[index:index + 16] = x[index:index + 16] * factor (index a multiple of 16)."""
        def codegen(context, builder, signature, args):
            y_value, x_value, index_value, scalar = args
            source = _vector_pointer(context, builder, signature.args[1], x_value, index_value)
            target = _vector_pointer(context, builder, signature.args[0], y_value, index_value)
            loaded = builder.load(source, align=LINE)
            vector_type = ir.VectorType(ir.FloatType(), VECTOR)
            splat = cgutils.get_null_value(vector_type)
            for lane in range(VECTOR):
                splat = builder.insert_element(splat, scalar, ir.Constant(ir.IntType(32), lane))
            _store(builder, builder.fmul(loaded, splat), target, nontemporal)
            return context.get_dummy_value()
        return types.void(y, x, index, factor), codegen
    return scale16


@intrinsic
def sfence(typingctx):
    """x86 `sfence`: orders the weakly-ordered NT stores before what follows."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                  "llvm.x86.sse.sfence")
        builder.call(function, [])
        return context.get_dummy_value()
    return types.void(), codegen


def _make_kernels(nontemporal: bool):
    fill16, scale16 = _make_fill(nontemporal), _make_scale(nontemporal)

    @njit(nogil=True)
    def write(y, value, passes):
        for _ in range(passes):
            for i in range(0, y.size, VECTOR):
                fill16(y, i, value)
        if nontemporal:
            sfence()

    @njit(nogil=True)
    def copy(y, x, factor, passes):
        for _ in range(passes):
            for i in range(0, y.size, VECTOR):
                scale16(y, x, i, factor)
        if nontemporal:
            sfence()

    return write, copy


KERNELS = {False: _make_kernels(False), True: _make_kernels(True)}   # nontemporal -> (write, copy)


def aligned(elements: int) -> np.ndarray:
    """A 64-byte-aligned float32 array of `elements` (a multiple of 16), checked."""
    if elements <= 0 or elements % VECTOR:
        raise ValueError(f"elements must be a positive multiple of {VECTOR}, got {elements}")
    array = aligned_empty(elements)
    if array.ctypes.data % LINE:
        raise ValueError(f"array at {array.ctypes.data:#x} is not on a {LINE}-byte line")
    array[...] = 1.0      # touch every page before timing
    return array


def gbs(kind: str, nontemporal: bool, working_set: int, samples: int) -> float:
    """Best GB/s of `kind` ("write" or "copy") over `samples` timings, working set in bytes."""
    write, copy = KERNELS[nontemporal]
    if kind == "write":
        y = aligned(working_set // 4 // VECTOR * VECTOR)
        run, counted = (lambda passes: write(y, np.float32(2.0), passes)), y.nbytes
    else:
        elements = working_set // 8 // VECTOR * VECTOR
        x, y = aligned(elements), aligned(elements)
        run, counted = (lambda passes: copy(y, x, np.float32(0.5), passes)), 2 * y.nbytes
    run(1)
    passes = 1
    while True:                              # calibrate to >= 20 ms a sample
        start = time.perf_counter()
        run(passes)
        if time.perf_counter() - start >= 0.02:
            break
        passes *= 2
    best = np.inf
    for _ in range(samples):
        start = time.perf_counter()
        run(passes)
        best = min(best, (time.perf_counter() - start) / passes)
    expected = 2.0 if kind == "write" else 0.5
    if not np.array_equal(y, np.full_like(y, expected)):
        raise AssertionError(f"{kind} kernel ({'NT' if nontemporal else 'regular'}) wrote wrong values")
    return counted / best / 1e9


def store_instructions(nontemporal: bool) -> dict[str, int]:
    """Counts of vector store mnemonics in the compiled write and copy kernels."""
    counts = {}
    for kernel in KERNELS[nontemporal]:
        for asm in kernel.inspect_asm().values():
            for mnemonic in re.findall(r"\b(vmovntps|vmovaps|vmovups|vmovntdq|sfence)\b", asm):
                key = f"{kernel.py_func.__name__}:{mnemonic}"
                counts[key] = counts.get(key, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="timings per figure (best kept)")
    parser.add_argument("--sizes-mib", type=str, default=None,
                        help="comma-separated working sets in MiB (default: 1 MiB .. 4x effective L3)")
    parser.add_argument("--asm", action="store_true", help="only print the kernels' store instructions")
    args = parser.parse_args(argv)
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    numba.set_num_threads(1)
    compiled = {nt: (KERNELS[nt][0].compile("(float32[::1], float32, int64)"),
                     KERNELS[nt][1].compile("(float32[::1], float32[::1], float32, int64)")) for nt in (False, True)}
    del compiled
    for nt in (False, True):
        print(f"{'non-temporal' if nt else 'regular'} stores: {store_instructions(nt)}")
    if args.asm:
        return
    if args.sizes_mib:
        sizes = [int(float(s) * 2**20) for s in args.sizes_mib.split(",")]
    else:
        from workbench.ceilings import measure_ceilings  # bench-only
        l3 = measure_ceilings(quick=True, threads=[1]).effective_bytes()["L3"]
        sizes = [2**20, 2**22, 2**24, 2**25, 2**26, l3, 2 * l3, 4 * l3]
    print("1 thread; GB/s, best of", args.samples, "samples; write counts N bytes, copy 2N (read + write)")
    print(f"{'working set':>12s} {'write reg':>10s} {'write NT':>9s} {'NT/reg':>7s} {'copy reg':>9s} {'copy NT':>8s} {'NT/reg':>7s}")
    for size in sizes:
        figures = [gbs(kind, nt, size, args.samples) for kind in ("write", "copy") for nt in (False, True)]
        print(f"{size / 2**20:9.1f} MiB {figures[0]:10.1f} {figures[1]:9.1f} {figures[1] / figures[0]:7.2f} "
              f"{figures[2]:9.1f} {figures[3]:8.1f} {figures[3] / figures[2]:7.2f}", flush=True)


if __name__ == "__main__":
    main()
