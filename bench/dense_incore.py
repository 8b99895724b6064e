"""The dense conv's and the 7x7 stem's inner loops: predicted in-core (llvm-mca) and measured
with operands in L1 / L2, beside the same layer in the network (bench/per_kind.py).

    analyse   numba's code for a --targets CPU (NUMBA_CPU_NAME, each target in a fresh process
              with a throw-away cache), the innermost loop with the most FMAs, through llvm-mca:
              cycles per iteration against the FMA bound (FMAs / 2 ports), stack accesses
              (spills) in the loop, the busiest port. Predictions, not measurements.
                dense R x B: conv_nchwc's micro-tile (R pixels x B output blocks, 3x3, all
                  lanes), its loop = one tap of one input block (R*B*lanes FMAs)
                stem: direct_conv's interior loop for ResNet's 7x7 stride-2 3 -> 64 stem
                  (_pair_columns: one tap of the 147, 2 blocks x PAIR_PIXELS pixels)
    measure   one thread, this host:
                tile   conv_nchwc's micro-tile called over and over on the same operands,
                       as the kernel calls it (one input block of a 3x3 per call, the
                       partial sum loaded and stored): the in-core rate, weights in L1 (and
                       with 4 input blocks per call, 144 KiB of weights from L2; a 1x1 with 2)
                layer  the whole kernel on one image of each ResNet-18 3x3 s1 layer (its
                       input, weights and output fit L2: 0.2-1.0 MB), best of --rounds
                stem   direct_conv on the 7x7 stem: 8 output rows without border pixels (inputs and
                       outputs in L1/L2), the same with the 4 border columns of 112, the
                       whole 224x224 image (output 3.2 MB, past L2)

    parts     one thread, the whole 3x3 s1 kernel on one image (a ResNet-18 shape), located part
              by part: a copy of _conv_kernel's loop (serial, here, not in engine/) with a switch
              per part, timed beside the real kernel, all variants alternating within each round,
              medians; GFLOP/s count only the FLOPs a variant computes:
                all        every part on (must match the real kernel)
                no-alloc   the copy kept, into one buffer allocated once (not one np.empty per item)
                no-copy    each work item reads a zero-bordered copy of the image made beforehand
                           (not timed) instead of copying its input rows
                psum-L1    partial sums of the non-final input blocks loaded from / stored to an
                           L1-resident scratch instead of `out` (their traffic beyond L1 gone)
                psum-regs  one call per micro-tile over all input blocks: no partial sums at all,
                           but the weights of all input blocks (4 x Cin/16 x 9 KiB) from L2
                no-rem     the short last micro-tile of each work item skipped (not computed)
                none       no-copy + psum-L1 + no-rem
              and the real kernel on the input zero-bordered beforehand (kernel-pre: no copy, the
              pixel tiles not widened to 2 rows)

    .venv/bin/python bench/dense_incore.py analyse --targets sapphirerapids,icelake-server,haswell,znver3
    flock /tmp/roofline-bench.lock .venv/bin/python bench/dense_incore.py measure
    flock /tmp/roofline-bench.lock .venv/bin/python bench/dense_incore.py parts --shape 64x56
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGETS = {"skylake-avx512": 16, "icelake-server": 16, "sapphirerapids": 16, "znver3": 8, "haswell": 8}
FMA_PORTS = 2
ITERATIONS = 100


def mca(loop: list[str], target: str) -> dict:
    from micro_tiles import busiest_port

    tool = shutil.which("llvm-mca") or shutil.which("llvm-mca-14")
    done = subprocess.run([tool, f"-mcpu={target}", f"-iterations={ITERATIONS}", "-resource-pressure"],
                          input="\n".join(loop) + "\n", capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["llvm-mca failed"])[0]}
    out = done.stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    uops = int(re.search(r"Total uOps:\s+(\d+)", out).group(1))
    return {"cycles": cycles / ITERATIONS, "uops": uops / ITERATIONS, "port": busiest_port(out)}


def innermost_loop(asm: str) -> list[str]:
    """The innermost loop (no backward jump inside it) densest in FMAs (at least 8) in `asm` (AT&T):
    from its label to the conditional jump back to it."""
    from micro_tiles import backward_jumps, loop_body

    lines, loops = backward_jumps(asm)
    inner = [(a, b) for a, b in loops if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    best: list[str] = []
    for loop in inner:  # the densest in FMAs (not an activation's polynomial: fewer FMAs per instruction)
        body = loop_body(lines, loop)
        fmas = sum("vfmadd231ps" in x for x in body)
        if fmas >= 8 and (not best or fmas / len(body) > sum("vfmadd231ps" in x for x in best) / len(best)):
            best = body
    return best


def loop_stats(loop: list[str]) -> dict:
    return {"fmas": sum("vfmadd231ps" in x for x in loop), "instructions": len(loop),
            "spills": sum("(%rsp)" in x for x in loop),
            "loads": sum(bool(re.search(r"\d*\(%\w+", x.split(",")[0] if "," in x else x)) for x in loop),
            "broadcasts": sum("broadcast" in x or "{1to" in x for x in loop)}


def analyse_worker(what: str, target: str) -> dict:
    import numpy as np
    from numba import njit

    from engine.kernels.layout import CB

    if what == "stem":
        from engine.kernels import direct_conv as dc

        x = np.zeros((1, 3, 224, 224), np.float32)
        w, b = dc.pack_direct(np.zeros((64, 3, 7, 7), np.float32), None)
        out = np.zeros((1, w.shape[0], 112, 112, CB), np.float32)
        dc.direct_conv(x, w, b, out, 2, 2, 3, 3, 1, 1, -np.inf, np.inf)
        fn = dc._direct_kernel
        asm = fn.inspect_asm(fn.signatures[0])
    else:
        from engine.kernels import conv_nchwc as cn

        rows, blocks = (int(v) for v in what.split("x"))
        tile = cn.micro_tile
        r64, b64 = np.int64(rows), np.int64(blocks)
        lanes = np.int64(CB)

        @njit
        def one_tile(src, offsets, w, bias, out, cin_blocks):
            z = np.int64(0)
            tile(r64, b64, src, offsets, np.int64(4096), np.int64(58 * CB), cin_blocks, np.int64(3), np.int64(3),
                 lanes, w, z, cin_blocks * 9 * CB * CB, bias, z, out, offsets, np.int64(4096), out, z, True,
                 np.float32(0), np.float32(6))

        buffer = np.zeros(1 << 18, np.float32)
        offsets = np.arange(8, dtype=np.int64) * CB
        one_tile(buffer, offsets, buffer.copy(), buffer.copy(), buffer.copy(), np.int64(1))
        asm = one_tile.inspect_asm(one_tile.signatures[0])
    loop = innermost_loop(asm)
    if os.environ.get("DENSE_ASM"):
        Path(os.environ["DENSE_ASM"]).write_text("\n".join(loop) + "\n")
    result = {"what": what, "target": target, "lanes": CB, **loop_stats(loop)}
    result.update(mca(loop, target))
    return result


def run_analyse(what: str, target: str) -> dict:
    lanes = TARGETS[target]
    with tempfile.TemporaryDirectory(prefix="roofline-dense-mca-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, ROOFLINE_LANES=str(lanes), NUMBA_CPU_NAME=target,
                   NUMBA_CPU_FEATURES="-prefer-256-bit" if lanes == 16 else "+prefer-256-bit")
        done = subprocess.run([sys.executable, __file__, "worker", what, target], capture_output=True, text=True,
                              env=env, cwd=ROOT)
    if done.returncode:
        return {"what": what, "target": target, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def analyse(args) -> None:
    print("llvm-mca (LLVM 14) on numba's code per target; predictions. FMA bound = FMAs / 2 ports")
    print(f"{'target':15s} {'loop':6s} {'FMAs':>5s} {'insns':>5s} {'uops':>6s} {'bcast':>5s} {'spill':>5s} "
          f"{'cycles':>7s} {'bound':>6s} {'%bound':>7s}  busiest")
    for target in args.targets.split(","):
        lanes = TARGETS[target]
        shapes = args.dense16 if lanes == 16 else args.dense8
        for what in [*shapes.split(","), "stem"]:
            r = run_analyse(what, target)
            if "cycles" not in r:
                print(f"{target:15s} {what:6s} failed: {r.get('error')}")
                continue
            bound = r["fmas"] / FMA_PORTS
            print(f"{target:15s} {what:6s} {r['fmas']:5d} {r['instructions']:5d} {r['uops']:6.0f} "
                  f"{r['broadcasts']:5d} {r['spills']:5d} {r['cycles']:7.1f} {bound:6.1f} "
                  f"{100 * bound / r['cycles']:6.1f}%  {r['port']}", flush=True)


# ------------------------------------------------------------------------ measurements

RESNET18_3X3 = [(64, 56), (128, 28), (256, 14), (512, 7)]   # stride-1 3x3: channels, size


def aligned(a):
    from engine.pages import aligned_empty

    b = aligned_empty(a.size).reshape(a.shape)
    b[...] = a
    return b


def best_time(fn, rounds: int, repeat: int = 1) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def measure(args) -> None:
    import numba
    import numpy as np
    from numba import njit

    from engine.kernels import conv_nchwc as cn
    from engine.kernels import direct_conv as dc
    from engine.kernels.layout import CB, to_blocked

    numba.set_num_threads(1)
    peak = args.peak
    rng = np.random.default_rng(0)
    print(f"one thread, {CB} lanes, best of {args.rounds}; % of {peak} GFLOP/s per core")

    # in-core: one micro-tile over and over on the same operands; the kernel's call is one
    # input block of a 3x3 (cin_chunk 1), its partial sum read from and written to `out`
    tile = cn.micro_tile
    lanes = np.int64(CB)

    @njit(cache=False)
    def tiles(rows, blocks, src, offsets, block_stride, row_stride, cin_blocks, k, w, w_block_stride, bias, out,
              repeat):
        z = np.int64(0)
        for _ in range(repeat):
            tile(rows, blocks, src, offsets, block_stride, row_stride, cin_blocks, k, k, lanes, w, z, w_block_stride,
                 bias, z, out, offsets, np.int64(CB * 8), out, np.int64(2), False, np.float32(0), np.float32(0))

    width = 58
    src = aligned(rng.standard_normal(8 * 4 * width * CB).astype(np.float32))
    out = aligned(np.zeros(8 * 8 * CB, np.float32))
    offsets = np.arange(8, dtype=np.int64) * CB
    variants = [(r, b, 1, 3) for b, r in enumerate(cn.ROWS_FOR_BLOCKS) if b][::-1]
    variants += [(variants[0][0], variants[0][1], 4, 3), (variants[0][0], variants[0][1], 2, 1)]
    for rows, blocks, cin_blocks, k in variants:
        taps = cin_blocks * k * k
        w = aligned(rng.standard_normal(blocks * taps * CB * CB).astype(np.float32) * 0.01)
        bias = aligned(np.zeros(blocks * CB, np.float32))
        repeat = max(1, 40000 // taps)
        t = best_time(lambda: tiles(np.int64(rows), np.int64(blocks), src, offsets, np.int64(4 * width * CB),
                                    np.int64(width * CB), np.int64(cin_blocks), np.int64(k), w,
                                    np.int64(taps * CB * CB), bias, out, repeat), args.rounds)
        flops = 2 * rows * blocks * CB * taps * CB * repeat
        print(f"tile {rows}x{blocks}, {k}x{k} x {cin_blocks} input block(s) per call, weights "
              f"{w.nbytes // 1024} KiB, repeated: {flops / t / 1e9:6.1f} GFLOP/s ({100 * flops / t / 1e9 / peak:4.1f} %)",
              flush=True)

    # the whole kernel on one image of each ResNet-18 3x3 s1 layer
    for channels, size in RESNET18_3X3:
        x = aligned(to_blocked(rng.standard_normal((1, channels, size, size)).astype(np.float32)))
        w, b = cn.pack_conv_nchwc(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05,
                                  np.zeros(channels, np.float32))
        w, b = aligned(w), aligned(b)
        y = aligned(np.zeros((1, w.shape[0], size, size, CB), np.float32))
        item = cn.item_channels(64, channels)
        flops = cn.conv_nchwc_flops(1, channels, channels, size, size, 3, 3)
        t = best_time(lambda: cn.conv_nchwc(x, w, b, y, 1, 1, 1, 1, -np.inf, np.inf, None, 64, item),
                      args.rounds, max(1, int(2e-2 * 235e9 / flops)))
        print(f"3x3 s1 {channels}->{channels} @{size}x{size}, one image (in L2): {t * 1e3:7.3f} ms "
              f"{flops / t / 1e9:6.1f} GFLOP/s ({100 * flops / t / 1e9 / peak:4.1f} %)", flush=True)

    # the stem
    wt = rng.standard_normal((64, 3, 7, 7)).astype(np.float32) * 0.05
    w, b = dc.pack_direct(wt, np.zeros(64, np.float32))
    w, b = aligned(w), aligned(b)
    for label, in_h, in_w, out_h, out_w, pad in (("8 rows x 108 columns, no border pixel", 21, 221, 8, 108, 0),
                                                 ("8 rows x 112, 4 border columns", 21, 224, 8, 112, -1),
                                                 ("whole 224x224 image", 224, 224, 112, 112, 3)):
        x = aligned(rng.standard_normal((1, 3, in_h, in_w)).astype(np.float32))
        y = aligned(np.zeros((1, w.shape[0], out_h, out_w, CB), np.float32))
        flops = dc.direct_conv_flops(1, 3, 64, out_h, out_w, 7, 7)
        pad_top, pad_left = (max(pad, 0), 3 if pad else 0)
        t = best_time(lambda: dc.direct_conv(x, w, b, y, 2, 2, pad_top, pad_left, 1, 1, -np.inf, np.inf),
                      args.rounds, max(1, int(2e-2 * 235e9 / flops)))
        print(f"stem 7x7 s2 3->64, {label}: {t * 1e3:7.3f} ms {flops / t / 1e9:6.1f} GFLOP/s "
              f"({100 * flops / t / 1e9 / peak:4.1f} %)", flush=True)


PARTS = {  # name: (copy 0 none / 1 per item / 2 into one buffer, psum 0 out / 1 L1 scratch / 2 registers,
    #                remainder)
    "all": (1, 0, True), "no-alloc": (2, 0, True), "no-copy": (0, 0, True), "psum-L1": (1, 1, True),
    "psum-regs": (1, 2, True), "no-rem": (1, 0, False), "none": (0, 1, False)}


def _parts_kernel():
    import numpy as np
    from numba import njit, prange

    from engine.kernels import conv_nchwc as cn
    from engine.kernels.layout import CB

    tile = cn.micro_tile
    rows_for_blocks = np.array(cn.ROWS_FOR_BLOCKS, np.int64)
    max_blocks, max_rows = cn.MAX_BLOCKS, cn.MAX_ROWS

    @njit(parallel=True, cache=False)  # as the kernel: its slice copies compile as parfors
    def kernel(x, padded, w, bias, out, pixels, channels, copy, psum, remainder):
        """_conv_kernel's loop for a 3x3, stride 1, pad 1, no residual, no activation (one thread);
        returns the output pixels x blocks computed (the no-rem variant skips some)."""
        n_images, cin_blocks, height, width, _ = x.shape
        cout_blocks, _, kernel_h, kernel_w, in_lanes, _ = w.shape
        out_h, out_w = out.shape[2], out.shape[3]
        howo = out_h * out_w
        total = n_images * howo
        blocks_per_item = max(1, channels // CB)
        full_rows = rows_for_blocks[min(max_blocks, blocks_per_item, cout_blocks)]
        w_block_stride = cin_blocks * kernel_h * kernel_w * in_lanes * CB
        tap_weights = kernel_h * kernel_w * in_lanes * CB
        out_block_stride = howo * CB
        n_channel_tiles, n_pixel_tiles, cin_chunk, needs_copy, padded_w = cn.work_split(
            n_images, height, width, cout_blocks, out_h, out_w, kernel_h, kernel_w, in_lanes, 1, 1, 1, 1,
            pixels, channels)
        if psum == 2:
            cin_chunk = cin_blocks
        pad_top = 1
        pad_left = 1
        low = np.float32(-np.inf)
        high = np.float32(np.inf)
        xf = x.reshape(x.size)
        pf = padded.reshape(padded.size)
        of = out.reshape(out.size)
        scratch = np.zeros(max_rows * max_blocks * CB, np.float32)
        scratch_offsets = np.arange(max_rows).astype(np.int64) * CB
        scratch_stride = np.int64(max_rows * CB)
        buffer = np.empty(cin_blocks * (out_h + kernel_h) * padded_w * CB, np.float32)
        done = 0
        for item in prange(n_channel_tiles * n_pixel_tiles):  # run on one thread
            src_offsets = np.empty(max_rows, np.int64)
            out_offsets = np.empty(max_rows, np.int64)
            channel_tile = item // n_pixel_tiles
            pixel_tile = item - channel_tile * n_pixel_tiles
            pixel_begin = cn._tile_start(pixel_tile, n_pixel_tiles, total, full_rows)
            pixel_end = cn._tile_start(pixel_tile + 1, n_pixel_tiles, total, full_rows)
            block_begin = channel_tile * blocks_per_item
            block_end = min(cout_blocks, block_begin + blocks_per_item)
            segment = pixel_begin
            while segment < pixel_end:
                image = segment // howo
                segment_end = min(pixel_end, (image + 1) * howo)
                first_row = (segment - image * howo) // out_w
                last_row = (segment_end - 1 - image * howo) // out_w
                row0 = first_row - pad_top
                row_stride = padded_w * CB
                if copy > 0:
                    src_rows = (last_row - first_row) + kernel_h
                    block_stride = src_rows * row_stride
                    if copy == 1:
                        src = np.empty(cin_blocks * block_stride, np.float32)
                    else:  # one buffer, allocated once
                        src = buffer[:cin_blocks * block_stride]
                    r_lo = max(0, -row0)
                    r_hi = max(r_lo, min(src_rows, height - row0))
                    right = (pad_left + width) * CB
                    for cb in range(cin_blocks):
                        d = cb * block_stride
                        src[d:d + r_lo * row_stride] = 0.0
                        src[d + r_hi * row_stride:d + src_rows * row_stride] = 0.0
                        for r in range(r_lo, r_hi):
                            s = ((image * cin_blocks + cb) * height + row0 + r) * width * CB
                            e = d + r * row_stride
                            src[e:e + pad_left * CB] = 0.0
                            src[e + pad_left * CB:e + right] = xf[s:s + width * CB]
                            src[e + right:e + row_stride] = 0.0
                    first_input_row = row0
                else:  # the image copied beforehand: (cin_blocks, height + 2, padded_w, CB)
                    src = pf
                    block_stride = (height + 2) * row_stride
                    first_input_row = -pad_top
                block = block_begin
                while block < block_end:
                    blocks = min(block_end - block, max_blocks)
                    rows_max = rows_for_blocks[blocks]
                    out_first = (image * cout_blocks + block) * howo * CB
                    cb0 = 0
                    while cb0 < cin_blocks:
                        chunk = min(cin_chunk, cin_blocks - cb0)
                        finish = cb0 + chunk >= cin_blocks
                        init = 0 if cb0 == 0 else 2
                        q = segment
                        rem = segment - image * howo
                        oh = rem // out_w
                        ow = rem - oh * out_w
                        while q < segment_end:
                            rows = min(segment_end - q, rows_max)
                            for r in range(rows):
                                src_offsets[r] = (cb0 * block_stride + (oh - pad_top - first_input_row) * row_stride
                                                  + ow * CB)
                                out_offsets[r] = out_first + rem * CB
                                rem += 1
                                ow += 1
                                if ow == out_w:
                                    ow = 0
                                    oh += 1
                            if rows == rows_max or remainder:
                                target, target_offsets, target_stride, start = of, out_offsets, out_block_stride, init
                                if psum == 1 and not finish:
                                    target, target_offsets, target_stride = scratch, scratch_offsets, scratch_stride
                                elif psum == 1:  # the final block starts from zero, not the scratch
                                    start = 0
                                tile(rows, blocks, src, src_offsets, block_stride, row_stride, chunk, kernel_h,
                                     kernel_w, in_lanes, w, block * w_block_stride + cb0 * tap_weights,
                                     w_block_stride, bias, block * CB, target, target_offsets, target_stride,
                                     target, start, finish, low, high)
                                if finish:
                                    done += rows * blocks
                            q += rows
                        cb0 += chunk
                    block += blocks
                segment = segment_end
        return done

    return kernel


def parts(args) -> None:
    import statistics

    import numba
    import numpy as np

    from engine.kernels import conv_nchwc as cn
    from engine.kernels.layout import CB, to_blocked

    numba.set_num_threads(1)
    kernel = _parts_kernel()
    rng = np.random.default_rng(0)
    names = args.variants.split(",")
    print(f"one thread, {CB} lanes, {args.rounds} rounds alternating, medians; % of {args.peak} GFLOP/s; "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    for shape in args.shape.split(","):
        channels, size = (int(v) for v in shape.split("x"))
        x = aligned(to_blocked(rng.standard_normal((1, channels, size, size)).astype(np.float32)))
        wt = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05
        w, b = cn.pack_conv_nchwc(wt, rng.standard_normal(channels).astype(np.float32))
        w, b = aligned(w), aligned(b)
        padded = aligned(np.pad(x[0], ((0, 0), (1, 1), (1, 1), (0, 0))))
        y = aligned(np.zeros((1, w.shape[0], size, size, CB), np.float32))
        y_ref = aligned(np.zeros_like(y))
        item = cn.item_channels(64, channels)
        cn.conv_nchwc(x, w, b, y_ref, 1, 1, 1, 1, -np.inf, np.inf, None, 64, item)
        full = size * size * w.shape[0]
        for name in names:  # compile, and check the variants that compute everything
            copy, psum, remainder = PARTS[name]
            y[...] = 0
            kernel(x, padded, w, b, y, 64, item, copy, psum, remainder)
            if name in ("all", "no-copy", "psum-regs"):
                assert np.allclose(y, y_ref, rtol=1e-4, atol=1e-3), name
        flops = cn.conv_nchwc_flops(1, channels, channels, size, size, 3, 3)
        repeat = max(1, int(1e-2 * 235e9 / flops))
        calls = {"kernel": lambda: cn.conv_nchwc(x, w, b, y, 1, 1, 1, 1, -np.inf, np.inf, None, 64, item)}
        padded4 = padded[None]  # the real kernel on the input zero-bordered beforehand: no copy
        calls["kernel-pre"] = lambda: cn.conv_nchwc(padded4, w, b, y, 1, 1, 0, 0, -np.inf, np.inf, None, 64, item)
        work = {"kernel": full, "kernel-pre": full}
        for name in names:
            copy, psum, remainder = PARTS[name]
            calls[name] = (lambda c=copy, p=psum, r=remainder: kernel(x, padded, w, b, y, 64, item, c, p, r))
            work[name] = calls[name]()
        times = {k: [] for k in calls}
        for _ in range(args.rounds):
            for k, fn in calls.items():
                t = time.perf_counter()
                for _ in range(repeat):
                    fn()
                times[k].append((time.perf_counter() - t) / repeat)
        base = statistics.median(times["all"])
        print(f"3x3 s1 {channels}->{channels} @{size}x{size}, 1 image, item {item} channels x "
              f"{cn.work_split(1, size, size, w.shape[0], size, size, 3, 3, CB, 1, 1, 1, 1, 64, item)[1]} pixel tiles")
        for k in calls:
            t = statistics.median(times[k])
            f = flops * work[k] / full
            print(f"  {k:10s} {t * 1e6:8.1f} us  {f / t / 1e9:6.1f} GFLOP/s ({100 * f / t / 1e9 / args.peak:4.1f} %)  "
                  f"time x{t / base:5.3f}  pixels x blocks computed {100 * work[k] / full:5.1f} %", flush=True)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(analyse_worker(sys.argv[2], sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("analyse")
    a.add_argument("--targets", default="sapphirerapids,icelake-server,haswell,znver3")
    a.add_argument("--dense16", default="5x4,7x3,8x2")
    a.add_argument("--dense8", default="6x2")
    m = sub.add_parser("measure")
    m.add_argument("--rounds", type=int, default=5)
    m.add_argument("--peak", type=float, default=235.0)
    p = sub.add_parser("parts")
    p.add_argument("--shape", default="64x56,256x14", help="channels x size, comma-separated")
    p.add_argument("--variants", default=",".join(PARTS))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--peak", type=float, default=235.0)
    args = parser.parse_args()
    {"analyse": analyse, "measure": measure, "parts": parts}[args.mode](args)


if __name__ == "__main__":
    main()
