"""Candidate 1x1-conv micro-tiles, measured where the machine allows and analysed where not.

A micro-tile of ROWS pixels x BLOCKS output blocks keeps ROWS*BLOCKS vector accumulators in
registers; per input channel it loads BLOCKS weight vectors, broadcasts ROWS inputs and
issues ROWS*BLOCKS FMAs (engine/kernels/pointwise.py). Which shape is best depends on the
ISA: 16 ymm registers on AVX2, 32 zmm on AVX-512, the load ports, the FMA latency.

Two modes, each candidate in a subprocess of its own (the kernel's shape is a module
constant folded in at compile time, so each candidate is built fresh, in a throw-away
numba cache that never mixes with the project's):

    measure   (needs the ISA: this host's lane width, or 8 lanes on an AVX-512 host)
              every MobileNetV2 1x1 layer at --batch on one thread, checked against the
              numpy reference first, GFLOP/s and % of the FMA peak --peak (GFLOP/s per
              core; default: the cached ceilings' measured peak)
    analyse   (needs nothing but LLVM): the full micro-tile's inner loop (one input-channel
              block: ROWS*BLOCKS*lanes FMAs) compiled by numba for a --targets CPU
              (NUMBA_CPU_NAME) and run through LLVM's machine-code analyser, llvm-mca:
              predicted cycles per iteration against the FMA bound
              (ROWS*BLOCKS*lanes FMAs / 2 FMA ports), register spills in the loop, and the
              port with the highest pressure. Predictions, not measurements.

    flock /tmp/roofline-bench.lock .venv/bin/python bench/micro_tiles.py measure --batch 8
    .venv/bin/python bench/micro_tiles.py analyse --targets skylake-avx512,icelake-server,znver3

llvm-mca is Debian's `llvm` package (`make mca-tools` installs it).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# candidates per lane width: (rows, blocks) with rows*blocks accumulators + blocks weight
# vectors + a broadcast register within the register file (16 ymm / 32 zmm)
CANDIDATES = {
    16: [(8, 2), (12, 2), (14, 2), (6, 4), (7, 4), (8, 3), (9, 3), (4, 4)],
    8: [(6, 2), (4, 3), (3, 4), (5, 2), (4, 2)],
}
# llvm-mca's CPU names: AVX-512 (16 lanes) and AVX2 (8 lanes) targets LLVM 14 models
TARGETS = {"skylake-avx512": 16, "icelake-server": 16, "sapphirerapids": 16,
           "znver3": 8, "haswell": 8, "skylake": 8}
FMA_PORTS = 2


def parse_shape(text: str) -> tuple[int, int]:
    rows, blocks = text.lower().split("x")
    return int(rows), int(blocks)


# ------------------------------------------------------------------------ worker (one candidate)

def use_micro_tile(rows: int, blocks: int):
    """Rebuild engine.kernels.pointwise's micro-kernel as rows x blocks (before anything
    that uses it is compiled: numba reads module globals at compile time). Returns the
    pointwise module."""
    from engine.kernels import pointwise as pw
    from engine.kernels.layout import CB

    pw.ROWS, pw.BLOCKS = rows, blocks
    pw.MICRO_TILE = {**pw.MICRO_TILE, CB: (rows, blocks)}
    pw.WEIGHT_PREFETCH_TILES = blocks * CB * CB // (16 * pw.W_PREFETCH_LINES)
    pw.micro_tile = pw._tile_intrinsic(CB, rows, blocks)
    return pw


def measure_worker(rows: int, blocks: int, batch: int, pixels: int, rounds: int) -> dict:
    import numba

    pw = use_micro_tile(rows, blocks)
    from bench.kernel_pointwise import MOBILENET_V2_SHAPES, Layer
    from engine.kernels.layout import CB

    numba.set_num_threads(1)
    channels = blocks * CB if (blocks * CB) % 16 == 0 else 2 * blocks * CB
    result = {"rows": rows, "blocks": blocks, "lanes": CB, "channels": channels, "pixels": pixels, "layers": []}
    for cin, cout, size in MOBILENET_V2_SHAPES:
        layer = Layer(batch, cin, cout, size)
        layer.check(pixels, channels)
        gflops = layer.gflops([(pixels, channels)], rounds)[(pixels, channels)]
        result["layers"].append({"layer": f"{cin}->{cout}@{size}x{size}", "flops": layer.flops,
                                 "seconds": layer.flops / gflops / 1e9})
    del pw
    return result


def backward_jumps(asm: str) -> tuple[list[str], list[tuple[int, int]]]:
    """`asm`'s lines (AT&T syntax) and its loops as (label line, jump line): every
    conditional jump back to a `.LBB` label above it."""
    lines = asm.splitlines()
    labels = {line.strip()[:-1]: i for i, line in enumerate(lines) if re.match(r"^\.LBB\w+:", line.strip())}
    loops = []
    for i, line in enumerate(lines):
        match = re.match(r"\s*j\w+\s+(\.LBB\w+)", line)
        if match and match.group(1) in labels and labels[match.group(1)] < i:
            loops.append((labels[match.group(1)], i))
    return lines, loops


def loop_body(lines: list[str], loop: tuple[int, int]) -> list[str]:
    """The instructions of `loop` (backward_jumps'), from after its label to its jump back."""
    start, end = loop
    return [x.strip() for x in lines[start + 1:end + 1] if x.strip() and not x.strip().startswith((".", "#"))]


def loop_assembly(asm: str) -> list[str]:
    """The instructions of the loop with the most FMAs in `asm` (AT&T syntax): from a label
    to the conditional jump back to it."""
    lines, loops = backward_jumps(asm)
    best: list[str] = []
    for loop in loops:
        body = loop_body(lines, loop)
        if sum("fmadd" in x for x in body) > sum("fmadd" in x for x in best):
            best = body
    return best


def analyse_worker(rows: int, blocks: int, target: str) -> dict:
    import numpy as np
    from numba import njit

    pw = use_micro_tile(rows, blocks)
    from engine.kernels.layout import CB

    tile = pw.micro_tile
    full_rows, full_blocks = np.int64(rows), np.int64(blocks)

    @njit
    def one_tile(x, w, bias, out, cin_blocks):
        z = np.int64(0)
        tile(full_rows, full_blocks, x, z, np.int64(4096), np.int64(2 * rows * CB), w, z, cin_blocks * CB * CB,
             cin_blocks, bias, z, out, z, np.int64(4096), out, False, np.float32(0), np.float32(6),
             z, np.float32(0), np.float32(0), z, z)

    buffer = np.zeros(1 << 20, np.float32)
    one_tile(buffer, buffer.copy(), buffer.copy(), buffer.copy(), np.int64(4))
    asm = one_tile.inspect_asm(one_tile.signatures[0])
    loop = loop_assembly(asm)
    fmas = sum("fmadd" in line for line in loop)
    spills = sum("(%rsp)" in line for line in loop)
    registers = sorted({r for line in loop for r in re.findall(r"%([xyz]mm\d+)", line)})
    mca = shutil.which("llvm-mca") or shutil.which("llvm-mca-14")
    result = {"rows": rows, "blocks": blocks, "lanes": CB, "target": target, "fmas": fmas,
              "instructions": len(loop), "spills": spills, "vector_registers": len(registers)}
    if mca is None:
        result["error"] = "llvm-mca not found (Debian package llvm: make mca-tools)"
        return result
    text = subprocess.run([mca, f"-mcpu={target}", "-iterations=200", "-resource-pressure"],
                          input="\n".join(loop) + "\n", capture_output=True, text=True)
    if text.returncode:
        result["error"] = text.stderr.strip().splitlines()[0] if text.stderr.strip() else "llvm-mca failed"
        return result
    out = text.stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    result["cycles_per_iteration"] = cycles / 200
    result["fma_bound_cycles"] = fmas / FMA_PORTS
    result["binding_port"] = busiest_port(out)
    return result


def busiest_port(mca_output: str) -> str:
    """The resource with the highest pressure per iteration in llvm-mca's summary table."""
    lines = mca_output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Resource pressure per iteration:"):
            names = re.findall(r"\[([\w.]+)\]", lines[i + 1])
            values = [float(v) if v != "-" else 0.0 for v in lines[i + 2].split()]
            index = {}
            for j, line2 in enumerate(lines[:i]):
                match = re.match(r"\[([\w.]+)\]\s+-\s+(\S+)", line2.strip())
                if match:
                    index[match.group(1)] = match.group(2)
            port, value = max(zip(names, values), key=lambda item: item[1])
            return f"{index.get(port, port)} ({value:.1f})"
    return "?"


# ------------------------------------------------------------------------ driver

def run_candidate(mode: str, shape: tuple[int, int], lanes: int, extra: list[str], cpu: str | None) -> dict:
    """One candidate in a fresh process with a throw-away numba cache."""
    with tempfile.TemporaryDirectory(prefix="roofline-microtile-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, ROOFLINE_LANES=str(lanes))
        if cpu is not None:
            env["NUMBA_CPU_NAME"] = cpu
            env["NUMBA_CPU_FEATURES"] = "-prefer-256-bit" if lanes == 16 else "+prefer-256-bit"
        command = [sys.executable, __file__, "worker", mode, f"{shape[0]}x{shape[1]}", *extra]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        return {"rows": shape[0], "blocks": shape[1], "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_peak() -> float | None:
    try:
        from workbench.profile import default_ceilings
        return default_ceilings().peak_gflops(1)
    except Exception:  # noqa: BLE001 - no cached ceilings: the table shows GFLOP/s only
        return None


def best_of(results: list[dict]) -> dict:
    """One candidate's results over several processes: per layer the fastest."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[0]
    best = dict(ok[0], layers=[dict(layer) for layer in ok[0]["layers"]])
    for r in ok[1:]:
        for mine, other in zip(best["layers"], r["layers"]):
            mine["seconds"] = min(mine["seconds"], other["seconds"])
    return best


def measure(args) -> None:
    from engine._numba_env import HOST_LANES

    lanes = args.lanes or HOST_LANES
    if lanes > HOST_LANES:
        raise SystemExit(f"{lanes}-lane code cannot run on this host ({HOST_LANES} lanes): use `analyse`")
    shapes = [parse_shape(s) for s in args.candidates.split(",")] if args.candidates else CANDIDATES[lanes]
    peak = args.peak or default_peak()
    runs = {shape: [] for shape in shapes}
    for _ in range(args.processes):        # the candidates take turns, so drifting load hits them alike
        for shape in shapes:
            runs[shape].append(run_candidate("measure", shape, lanes, ["--batch", str(args.batch), "--pixels",
                                                                      str(args.pixels), "--rounds", str(args.rounds)],
                                             None))
    results = [best_of(runs[shape]) for shape in shapes]
    print(f"1x1 layers of MobileNetV2, batch {args.batch}, 1 thread, {lanes} lanes, pixels/work item {args.pixels}, "
          f"best of {args.processes} process(es) x {args.rounds} rounds, "
          f"channels/work item = one micro-tile; peak {peak and round(peak, 1)} GFLOP/s per core")
    ok = [r for r in results if "error" not in r]
    for r in results:
        if "error" in r:
            print(f"{r['rows']}x{r['blocks']}: failed: {r['error']}")
    if not ok:
        return
    names = [layer["layer"] for layer in ok[0]["layers"]]
    tiles = [f"{r['rows']}x{r['blocks']}" for r in ok]
    print(f"{'layer':18s}" + "".join(f"{t:>9s}" for t in tiles) + "   (GFLOP/s)")
    for i, name in enumerate(names):
        print(f"{name:18s}" + "".join(f"{r['layers'][i]['flops'] / r['layers'][i]['seconds'] / 1e9:9.1f}" for r in ok))
    totals = [sum(x["flops"] for x in r["layers"]) / sum(x["seconds"] for x in r["layers"]) / 1e9 for r in ok]
    print(f"{'all 15 layers':18s}" + "".join(f"{t:9.1f}" for t in totals))
    if peak:
        print(f"{'% of peak':18s}" + "".join(f"{100 * t / peak:8.1f}%" for t in totals))
        lowest = [min(x["flops"] / x["seconds"] / 1e9 for x in r["layers"]) for r in ok]
        print(f"{'lowest layer %':18s}" + "".join(f"{100 * t / peak:8.1f}%" for t in lowest))


def analyse(args) -> None:
    targets = args.targets.split(",")
    print("predicted by llvm-mca (LLVM 14 scheduling models) from numba's code for each target; "
          "one inner iteration = one input-channel block")
    print(f"{'target':16s} {'tile':>5s} {'lanes':>5s} {'FMAs':>5s} {'cycles':>7s} {'FMA bound':>9s} {'% bound':>8s} "
          f"{'spills':>6s} {'regs':>5s}  busiest resource")
    for target in targets:
        lanes = TARGETS.get(target, 16)
        shapes = [parse_shape(s) for s in args.candidates.split(",")] if args.candidates else CANDIDATES[lanes]
        for shape in shapes:
            r = run_candidate("analyse", shape, lanes, ["--target", target], target)
            tile = f"{shape[0]}x{shape[1]}"
            if "error" in r and "cycles_per_iteration" not in r:
                print(f"{target:16s} {tile:>5s} {lanes:5d}  failed: {r['error']}")
                continue
            print(f"{target:16s} {tile:>5s} {lanes:5d} {r['fmas']:5d} {r['cycles_per_iteration']:7.1f} "
                  f"{r['fma_bound_cycles']:9.1f} {100 * r['fma_bound_cycles'] / r['cycles_per_iteration']:7.1f}% "
                  f"{r['spills']:6d} {r['vector_registers']:5d}  {r['binding_port']}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("shape", type=parse_shape)
        parser.add_argument("--batch", type=int, default=8)
        parser.add_argument("--pixels", type=int, default=64)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--target", default="")
        args = parser.parse_args(argv[1:])
        import engine  # noqa: F401  (numba's environment first)
        if args.mode == "measure":
            print(json.dumps(measure_worker(*args.shape, args.batch, args.pixels, args.rounds)))
        else:
            print(json.dumps(analyse_worker(*args.shape, args.target)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("measure", help="time each candidate on this host")
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--pixels", type=int, default=64, help="pointwise_pixels (output pixels per work item)")
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--processes", type=int, default=1, help="processes per candidate, taking turns; per layer "
                   "the fastest is kept")
    m.add_argument("--lanes", type=int, choices=(8, 16), default=None, help="default: this host's width")
    m.add_argument("--candidates", default="", help="e.g. 8x2,14x2 (default: the list for the lane width)")
    m.add_argument("--peak", type=float, default=None, help="FMA peak per core, GFLOP/s")
    a = sub.add_parser("analyse", help="llvm-mca predictions for target CPUs")
    a.add_argument("--targets", default="skylake-avx512,icelake-server,znver3")
    a.add_argument("--candidates", default="")
    args = parser.parse_args(argv)
    (measure if args.mode == "measure" else analyse)(args)


if __name__ == "__main__":
    main()
