"""The depthwise row cores in-core: llvm-mca's prediction per target, and the measured time
per output pixel and channel block on a plane in L1 and in L2.

Cores (engine/kernels/depthwise.py), each as the kernels compile it:
    3x3-s1        `depthwise_3x3_rows`' constant copy (stride 1, no activation but the clip)
    3x3-s2        its general copy (stride a run-time value), on the no-activation path (stride 2)
    3x3-hs        the same on the hardswish path (MobileNetV3)
    kxk           `_rows_kxk` (5x5 and the other sizes), run-time kernel size and stride, no activation

    analyse   (needs nothing but LLVM) each core compiled by numba for a --targets CPU
              (NUMBA_CPU_NAME, in a subprocess with a throw-away cache), the interior loop
              (the innermost loop with the most FMAs) through llvm-mca: predicted cycles per
              output pixel-block against the FMA bound (9 or 25 FMAs / 2 ports) and the
              load-port bound (the loop's loads / 2 ports), the vector FP ops per pixel the
              loop really issues (taps, masks, clip), spills, the busiest port. Predictions.
    measure   (this host) each core on one channel block's plane repeated over `--blocks`
              planes (a 14x14 plane in L1, 56x56 in L2, ...), one thread, ns per output
              pixel-block, min and median of --repeats, border columns included.

    .venv/bin/python bench/depthwise_incore.py analyse --targets sapphirerapids,icelake-server,haswell,znver3
    flock /tmp/roofline-bench.lock .venv/bin/python bench/depthwise_incore.py measure

llvm-mca is Debian's `llvm` package (`make mca-tools` installs it).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from micro_tiles import TARGETS, backward_jumps, busiest_port, loop_body  # noqa: E402


def innermost_loop(asm: str) -> list[str]:
    """The instructions of the innermost loop (no backward jump to a label inside it) with
    the most FMAs in `asm` (AT&T syntax): from its label to the conditional jump back."""
    lines, loops = backward_jumps(asm)
    best: list[str] = []
    for start, end in loops:
        if any(start < s2 and e2 < end for s2, e2 in loops if (s2, e2) != (start, end)):
            continue                   # holds a loop: not innermost
        body = loop_body(lines, (start, end))
        if sum("fmadd" in x for x in body) > sum("fmadd" in x for x in best):
            best = body
    return best


CORES = ("3x3-s1", "3x3-s2", "3x3-hs", "kxk")
FMA_PORTS = LOAD_PORTS = 2
FP_OP = re.compile(r"^v(fn?m(add|sub)\w*ps|mulps|addps|subps|maxps|minps)\b")
STORE = re.compile(r"^vmov\w*ps\s+%[xyz]mm\d+,\s*-?\w*\(%r(?!sp)")


def loop_counts(loop: list[str]) -> dict:
    """FMAs, vector FP ops, loads (memory operands read, stack reloads included), stores
    other than to the stack, and stack accesses in a loop's instructions (AT&T syntax)."""
    fmas = sum(bool(re.match(r"^vfn?m(add|sub)", line)) for line in loop)
    fp_ops = sum(bool(FP_OP.match(line)) for line in loop)
    stores = sum(bool(STORE.match(line)) for line in loop)
    loads = 0
    for line in loop:
        if "(" not in line or line.startswith(("lea", "prefetch", "j")):
            continue
        operands = line.split(None, 1)[1] if " " in line or "\t" in line else ""
        # AT&T: the destination is last; a memory operand anywhere before it is a read
        if re.search(r"\([^)]*\)\s*,", operands) or (line.startswith(("vbroadcast", "vfm", "vfnm", "vmul", "vadd",
                                                                         "vmax", "vmin", "cmp", "add", "sub", "inc",
                                                                         "dec")) and "(" in operands):
            if not STORE.match(line):
                loads += 1
    spills = sum("(%rsp)" in line for line in loop)
    return {"fmas": fmas, "fp_ops": fp_ops, "loads": loads, "stores": stores, "spills": spills,
            "instructions": len(loop)}


# ------------------------------------------------------------------------ the cores as compiled

def core_function(core: str):
    """An njit function running `core` on one plane (the arguments as the kernels pass them;
    in the 3x3 general copy the stride is a run-time value and the activation a constant, so
    the analysed loop is the path a run-time activation takes, without the other paths)."""
    import numpy as np
    from numba import njit

    from engine.kernels import depthwise as dw
    from engine.kernels._common import FASTMATH
    from engine.kernels.activation import HARDSWISH, NONE

    if core == "3x3-s1":
        @njit(fastmath=FASTMATH)
        def run(x, w, b, out, height, width, out_w, out_h, stride, pad, act, alpha, repeats, blocks):
            low, high = np.float32(0.0), np.float32(6.0)
            plane, out_plane = height * width * dw.CB, out_h * out_w * dw.CB
            for _ in range(repeats):
                for k in range(blocks):
                    dw._rows_3x3(x, k * plane, 0, 0, height, height, width, w, k * 9 * dw.CB, b, k * dw.CB,
                                 out, k * out_plane, out_w, 0, out_h, 1, 1, pad, pad, low, high,
                                 NONE, alpha, alpha)
        return run
    if core in ("3x3-s2", "3x3-hs"):
        code = NONE if core == "3x3-s2" else HARDSWISH

        @njit(fastmath=FASTMATH)
        def run(x, w, b, out, height, width, out_w, out_h, stride, pad, act, alpha, repeats, blocks):
            low, high = np.float32(0.0), np.float32(6.0)
            plane, out_plane = height * width * dw.CB, out_h * out_w * dw.CB
            for _ in range(repeats):
                for k in range(blocks):
                    dw._rows_3x3(x, k * plane, 0, 0, height, height, width, w, k * 9 * dw.CB, b, k * dw.CB,
                                 out, k * out_plane, out_w, 0, out_h, stride, stride, pad, pad, low, high,
                                 code, alpha, np.float32(0.5))
        return run

    @njit(fastmath=FASTMATH)
    def run(x, w, b, out, height, width, out_w, out_h, stride, pad, act, alpha, repeats, blocks):
        low, high = np.float32(0.0), np.float32(6.0)
        plane, out_plane = height * width * dw.CB, out_h * out_w * dw.CB
        kernel = 2 * pad + 1
        for _ in range(repeats):
            for k in range(blocks):
                dw._rows_kxk(x, w, b, out, k * plane, k * out_plane, k * kernel * kernel * dw.CB, k * dw.CB,
                             height, width, kernel, kernel, out_w, 0, out_h, stride, stride, pad, pad, low, high,
                             NONE, alpha, alpha)
    return run


def arguments(core: str, size: int, stride: int, blocks: int, act: int, repeats: int):
    import numpy as np

    from engine.kernels.layout import CB

    kernel = 5 if core == "kxk" else 3
    pad = kernel // 2
    out_size = (size + 2 * pad - kernel) // stride + 1
    from engine.pages import aligned_empty

    def on_lines(values):   # the engine's arrays start on a cache line; numpy's need not
        array = aligned_empty(values.size)
        array[...] = values
        return array

    rng = np.random.default_rng(0)
    x = on_lines(rng.standard_normal(blocks * size * size * CB))
    w = on_lines(rng.standard_normal(blocks * kernel * kernel * CB) / kernel)
    b = on_lines(rng.standard_normal(blocks * CB))
    out = on_lines(np.zeros(blocks * out_size * out_size * CB))
    return (x, w, b, out, np.int64(size), np.int64(size), np.int64(out_size), np.int64(out_size), np.int64(stride),
            np.int64(pad), np.int64(act), np.float32(1 / 6), np.int64(repeats), np.int64(blocks)), out_size


def analyse_worker(core: str, target: str) -> dict:
    from engine.kernels.layout import CB

    run = core_function(core)
    args, _ = arguments(core, 14, 1, 1, 0, 1)
    run(*args)
    asm = run.inspect_asm(run.signatures[0])
    loop = innermost_loop(asm)
    counts = loop_counts(loop)
    taps = 25 if core == "kxk" else 9
    # pixels per iteration: the 3x3 interior loop stores each pass's pixels; the kxk loop
    # runs taps of KXK_PIXELS pixels (no stores): FMAs / taps pixel-equivalents
    pixels = counts["stores"] if counts["stores"] else counts["fmas"] / taps
    result = {"core": core, "target": target, "lanes": CB, "pixels_per_iteration": pixels, **counts}
    mca = shutil.which("llvm-mca") or shutil.which("llvm-mca-14")
    if mca is None:
        result["error"] = "llvm-mca not found (Debian package llvm: make mca-tools)"
        return result
    text = subprocess.run([mca, f"-mcpu={target}", "-iterations=200", "-resource-pressure"],
                          input="\n".join(loop) + "\n", capture_output=True, text=True)
    if text.returncode:
        result["error"] = (text.stderr.strip().splitlines() or ["llvm-mca failed"])[0]
        return result
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", text.stdout).group(1)) / 200
    result.update(cycles_per_iteration=cycles, cycles_per_pixel=cycles / pixels,
                  fma_bound=taps / FMA_PORTS, load_bound=counts["loads"] / pixels / LOAD_PORTS,
                  fp_bound=counts["fp_ops"] / pixels / FMA_PORTS, binding_port=busiest_port(text.stdout))
    return result


def measure_worker(core: str, size: int, stride: int, blocks: int, act: int, repeats: int, rounds: int) -> dict:
    import numba

    numba.set_num_threads(1)
    run = core_function(core)
    args, out_size = arguments(core, size, stride, blocks, act, 1)
    run(*args)
    args, _ = arguments(core, size, stride, blocks, act, repeats)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(*args)
        times.append(time.perf_counter() - start)
    per = out_size * out_size * blocks * repeats
    return {"core": core, "size": size, "stride": stride, "blocks": blocks, "act": act,
            "ns_min": min(times) / per * 1e9, "ns_median": statistics.median(times) / per * 1e9,
            "bytes": (size * size + out_size * out_size) * blocks * 4 * int(args[0].size / (size * size * blocks))}


# ------------------------------------------------------------------------ driver

def in_subprocess(argv: list[str], lanes: int, cpu: str | None, cache: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="roofline-dwcore-") as scratch:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache or scratch, ROOFLINE_LANES=str(lanes))
        if cpu is not None:
            env["NUMBA_CPU_NAME"] = cpu
            env["NUMBA_CPU_FEATURES"] = "-prefer-256-bit" if lanes == 16 else "+prefer-256-bit"
        done = subprocess.run([sys.executable, __file__, "worker", *argv], capture_output=True, text=True,
                              env=env, cwd=ROOT)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def analyse_one(core: str, target: str) -> dict:
    return in_subprocess(["analyse", core, "--target", target], TARGETS.get(target, 16), target)


def analyse(args) -> None:
    print("predicted by llvm-mca (LLVM 14 models) from numba's code per target; cycles per output pixel and "
          "channel block in the interior loop")
    print(f"{'core':8s} {'target':15s} {'lanes':>5s} {'px/it':>5s} {'cyc/px':>7s} {'FMA bd':>6s} {'%FMA':>6s} "
          f"{'ld/px':>6s} {'ld bd':>6s} {'fp/px':>6s} {'spills':>6s}  busiest")
    for core in args.cores.split(","):
        for target in args.targets.split(","):
            r = analyse_one(core, target)
            if "cycles_per_pixel" not in r:
                print(f"{core:8s} {target:15s} failed: {r.get('error')}")
                continue
            px = r["pixels_per_iteration"]
            print(f"{core:8s} {target:15s} {r['lanes']:5d} {px:5.2f} {r['cycles_per_pixel']:7.2f} "
                  f"{r['fma_bound']:6.1f} {100 * r['fma_bound'] / r['cycles_per_pixel']:5.1f}% "
                  f"{r['loads'] / px:6.2f} {r['load_bound']:6.2f} {r['fp_ops'] / px:6.2f} {r['spills']:6d}  "
                  f"{r['binding_port']}", flush=True)


PLANES = {"L1": (14, 1), "L2": (56, 4)}   # (size, blocks): at 16 lanes 25 KB in + out, 1.6 MB


def measure(args) -> None:
    from engine._numba_env import HOST_LANES

    lanes = args.lanes or HOST_LANES
    print(f"ns per output pixel-block, 1 thread, {lanes} lanes, min / median of {args.rounds} rounds; "
          f"load {open('/proc/loadavg').read().split()[:3]}")
    cases = [("3x3-s1", 1, 0), ("3x3-s2", 2, 0), ("3x3-hs", 1, 1), ("kxk", 1, 0)]
    for core, stride, act in cases:
        if core not in args.cores.split(","):
            continue
        for level, (size, blocks) in PLANES.items():
            if core == "3x3-s1" or level == "L1" or args.all:
                blocks_here = blocks * 2 if stride == 2 else blocks
                repeats = max(1, int(2e6 // (size * size * blocks_here)))
                r = in_subprocess(["measure", core, "--size", str(size), "--stride", str(stride), "--blocks",
                                   str(blocks_here), "--act", str(act), "--repeats", str(repeats), "--rounds",
                                   str(args.rounds)], lanes, None, cache=args.cache)
                if "ns_min" not in r:
                    print(f"{core} {level}: failed: {r.get('error')}")
                    continue
                print(f"{core:8s} stride {stride} act {act} {level} {size}x{size} x{blocks_here}: "
                      f"{r['ns_min']:.3f} / {r['ns_median']:.3f} ns", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("core")
        parser.add_argument("--target", default="")
        parser.add_argument("--size", type=int, default=14)
        parser.add_argument("--stride", type=int, default=1)
        parser.add_argument("--blocks", type=int, default=8)
        parser.add_argument("--act", type=int, default=0)
        parser.add_argument("--repeats", type=int, default=100)
        parser.add_argument("--rounds", type=int, default=7)
        args = parser.parse_args(argv[1:])
        import engine  # noqa: F401  (numba's environment first)
        if args.mode == "analyse":
            print(json.dumps(analyse_worker(args.core, args.target)))
        else:
            print(json.dumps(measure_worker(args.core, args.size, args.stride, args.blocks, args.act, args.repeats,
                                            args.rounds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("analyse", help="llvm-mca predictions for target CPUs")
    a.add_argument("--targets", default="sapphirerapids,icelake-server,haswell,znver3")
    a.add_argument("--cores", default=",".join(CORES))
    m = sub.add_parser("measure", help="time each core on this host")
    m.add_argument("--cores", default=",".join(CORES))
    m.add_argument("--rounds", type=int, default=7)
    m.add_argument("--lanes", type=int, choices=(8, 16), default=None)
    m.add_argument("--all", action="store_true", help="every core in L2 too (default: the stride-1 core only)")
    m.add_argument("--cache", default=None, help="a NUMBA_CACHE_DIR to keep the compiled cores in")
    args = parser.parse_args(argv)
    (analyse if args.mode == "analyse" else measure)(args)


if __name__ == "__main__":
    main()
