"""Where a fused inverted-residual block's time goes: its expand, depthwise and project stages
timed separately, beside the whole fused kernel and the 1x1 kernel alone on the same shapes.

For each of MobileNetV2's blocks chosen (default: the 14x14 and 7x7 ones, the network's
"compute bound" blocks), on one thread at --batch images, band height as the run would
choose it (engine.kernels.fused_block.auto_block_rows on this machine's L2, or --block-rows):

- fused: engine.kernels.fused_block.fused_block, as the runtime calls it;
- staged (all stages): a copy of the fused kernel's loop with a switch per stage, run with
  every stage on (it should match `fused`), then with one stage only: expand, depthwise,
  project. Each stage's share of the block's time and its GFLOP/s;
- depthwise outlined: the depthwise stage as a function of its own (not inlined in the loop);
- expand / project image 0: that stage with every work item on image 0 (its input, output
  and residual stay in cache, the scratch and weights walked as before): against the stage
  above, what streaming a fresh image through L3 costs the 1x1 stage;
- grouped 1/2/4 (whole-image bands at stride 1): each 1x1 stage walks a pair of output
  blocks over 1, 2 or 4 images before the next pair, so the weights are read once per group
  (checked against fused_block's output first);
- the same 1x1 convs as whole-tensor pointwise_conv calls with default tiles
  (what bench/kernel_pointwise.py times), for the expand and the project.

Activations are ReLU6 as in MobileNetV2; weights random. Medians of --repeats calls after
warm-up, the variants interleaved per round.

    flock /tmp/roofline-bench.lock .venv/bin/python bench/fused_stages.py --batch 64 --peak 235
    flock /tmp/roofline-bench.lock .venv/bin/python bench/fused_stages.py --only fused,depthwise
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402,F401  (sets numba's environment first)
from numba import njit  # noqa: E402

from engine.kernels._common import FASTMATH  # noqa: E402
from engine.kernels.activation import NONE  # noqa: E402
from engine.kernels.depthwise import depthwise_3x3_rows, pack_depthwise  # noqa: E402
from engine.kernels.fused_block import (auto_block_rows, fused_block, make_scratch,  # noqa: E402
                                        scratch_floats)
from engine.kernels.layout import CB, channel_blocks  # noqa: E402
from engine.kernels.pointwise import pack_pointwise, pointwise_conv, walk_micro_tiles  # noqa: E402
from engine.pages import aligned_empty  # noqa: E402

# MobileNetV2's inverted-residual blocks with an expand conv: (Cin, hidden, Cout, H, stride)
BLOCKS = {
    "56x56 24": (24, 144, 24, 56, 1), "28x28 32": (32, 192, 32, 28, 1),
    "14x14 64 s2": (32, 192, 64, 28, 2), "14x14 64": (64, 384, 64, 14, 1),
    "14x14 96 first": (64, 384, 96, 14, 1), "14x14 96": (96, 576, 96, 14, 1),
    "7x7 160 s2": (96, 576, 160, 14, 2), "7x7 160": (160, 960, 160, 7, 1),
    "7x7 320": (160, 960, 320, 7, 1),
}
DEFAULT_BLOCKS = ["14x14 64", "14x14 96", "7x7 160", "7x7 320"]
EXPAND, DEPTHWISE, PROJECT = 1, 2, 4


@njit(cache=True, fastmath=FASTMATH)
def _depthwise_band(src, ring_rows, height, width, dwf, dbf, s2, out_w, in_start, row_start, row_end, stride,
                    hidden_blocks, lo, hi, act, alpha):
    # the depthwise stage of one band as a function of its own (not inlined)
    band_h = row_end - row_start
    for hb in range(hidden_blocks):
        depthwise_3x3_rows(src, hb * ring_rows * width * CB, in_start, in_start % ring_rows, ring_rows, height,
                           width, dwf, hb * 9 * CB, dbf, hb * CB, s2, hb * band_h * out_w * CB, out_w,
                           row_start, row_end, stride, stride, 1, 1, lo, hi, act, alpha, alpha)


@njit(cache=True, fastmath=FASTMATH)
def _staged(x, ew, eb, dw, db, pw, pb, out, residual, has_residual, stride, block_rows, scratch_expand,
            scratch_depthwise, stages, act, alpha):
    # engine.kernels.fused_block._fused_block_kernel on one worker, each stage behind a switch
    n_images, cin_blocks, height, width, _ = x.shape
    hidden_blocks = dw.shape[0]
    cout_blocks, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    bands = (out_h + block_rows - 1) // block_rows
    ring_rows = (block_rows - 1) * stride + 3
    s1 = scratch_expand[0]
    s2 = scratch_depthwise[0]
    xf = x.reshape(x.size)
    ewf = ew.reshape(ew.size)
    ebf = eb.reshape(eb.size)
    dwf = dw.reshape(dw.size)
    dbf = db.reshape(db.size)
    pwf = pw.reshape(pw.size)
    pbf = pb.reshape(pb.size)
    of = out.reshape(out.size)
    rf = residual.reshape(residual.size)
    lo = np.float32(0.0)
    hi = np.float32(6.0)
    big = np.float32(3e38)
    no_residual = n_images < 0
    held_image = -1
    held_end = 0
    for item in range(n_images * bands):
        image = item // bands
        band = item - image * bands
        if stages & 16:             # every item on image 0: input, output and residual stay in cache
            image = 0
            held_image = -1
        row_start = band * block_rows
        row_end = min(out_h, row_start + block_rows)
        in_start = max(0, row_start * stride - 1)
        in_end = min(height, (row_end - 1) * stride + 2)
        row = in_start
        if image == held_image and held_end > in_start:
            row = held_end
        while row < in_end:
            slot = row % ring_rows
            count = min(in_end - row, ring_rows - slot)
            if stages & 1:
                walk_micro_tiles(xf, (image * cin_blocks * height * width + row * width) * CB, height * width * CB,
                                 ewf, cin_blocks, ebf, s1, slot * width * CB, ring_rows * width * CB,
                                 s1, no_residual, lo, hi, act, alpha, alpha,
                                 count * width, 0, hidden_blocks, -1, item == 0, 0, 0, 0)
            row += count
        held_image = image
        held_end = in_end
        band_h = row_end - row_start
        pixels = band_h * out_w
        if stages & 2:
            for hb in range(hidden_blocks):
                depthwise_3x3_rows(s1, hb * ring_rows * width * CB, in_start, in_start % ring_rows, ring_rows, height,
                                   width, dwf, hb * 9 * CB, dbf, hb * CB, s2, hb * band_h * out_w * CB, out_w,
                                   row_start, row_end, stride, stride, 1, 1, lo, hi, act, alpha, alpha)
        if stages & 8:
            _depthwise_band(s1, ring_rows, height, width, dwf, dbf, s2, out_w, in_start, row_start, row_end, stride,
                            hidden_blocks, lo, hi, act, alpha)
        if stages & 4:
            walk_micro_tiles(s2, 0, pixels * CB, pwf, hidden_blocks, pbf,
                             of, (image * cout_blocks * out_h * out_w + row_start * out_w) * CB, out_h * out_w * CB,
                             rf, has_residual, -big, big, act, alpha, alpha,
                             pixels, 0, cout_blocks, -1, item == 0, 0, 0, 0)


@njit(cache=True, fastmath=FASTMATH)
def _grouped(x, ew, eb, dw, db, pw, pb, out, residual, has_residual, group, s1, s2, act, alpha):
    # whole-image bands (stride 1), `group` images per item: each 1x1 stage walks a pair of
    # output blocks over all the group's images before the next pair (weights reused group x)
    n_images, cin_blocks, height, width, _ = x.shape
    hidden_blocks = dw.shape[0]
    cout_blocks = out.shape[1]
    plane = height * width * CB
    xf = x.reshape(x.size)
    ewf = ew.reshape(ew.size)
    ebf = eb.reshape(eb.size)
    dwf = dw.reshape(dw.size)
    dbf = db.reshape(db.size)
    pwf = pw.reshape(pw.size)
    pbf = pb.reshape(pb.size)
    of = out.reshape(out.size)
    rf = residual.reshape(residual.size)
    lo = np.float32(0.0)
    hi = np.float32(6.0)
    big = np.float32(3e38)
    no_residual = n_images < 0
    for first in range(0, n_images, group):
        count = min(group, n_images - first)
        for block in range(0, hidden_blocks, 3):
            for g in range(count):
                walk_micro_tiles(xf, (first + g) * cin_blocks * plane, plane, ewf, cin_blocks, ebf,
                                 s1, g * plane, count * plane, s1, no_residual, lo, hi, act, alpha, alpha,
                                 height * width, block, min(block + 3, hidden_blocks), -1, False, 0, 0, 0)
        for hb in range(hidden_blocks):
            for g in range(count):
                depthwise_3x3_rows(s1, (hb * count + g) * plane, 0, 0, height, height, width, dwf, hb * 9 * CB,
                                   dbf, hb * CB, s2, (hb * count + g) * plane, width, 0, height, 1, 1, 1, 1,
                                   lo, hi, act, alpha, alpha)
        for block in range(0, cout_blocks, 3):
            for g in range(count):
                walk_micro_tiles(s2, g * plane, count * plane, pwf, hidden_blocks, pbf,
                                 of, (first + g) * cout_blocks * plane, plane, rf, has_residual, -big, big,
                                 act, alpha, alpha, height * width, block, min(block + 3, cout_blocks), -1, False,
                                 0, 0, 0)


def aligned(shape, rng=None) -> np.ndarray:
    array = aligned_empty(int(np.prod(shape))).reshape(shape)
    array[...] = 0.0 if rng is None else rng.standard_normal(shape, dtype=np.float32) * 0.1
    return array


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--blocks", default=",".join(DEFAULT_BLOCKS), help=f"of {', '.join(BLOCKS)}")
    parser.add_argument("--block-rows", type=int, default=0, help="0: auto_block_rows")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--peak", type=float, default=235.0, help="FMA peak of one core, GFLOP/s")
    parser.add_argument("--only", default="", help="comma-separated variant names to time (default: all)")
    parser.add_argument("--l2", type=int, default=2 * 1024 * 1024, help="L2 bytes for auto_block_rows")
    args = parser.parse_args(argv)
    import numba
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"batch {args.batch}, 1 thread, {CB} lanes; GFLOP/s (% of {args.peak:.0f}), medians of {args.repeats}")
    for name in args.blocks.split(","):
        cin, hidden, cout, height, stride = BLOCKS[name]
        n = args.batch
        out_h = (height - 1) // stride + 1
        block_rows = args.block_rows or auto_block_rows(hidden, height, height, out_h, out_h, stride, 1, args.l2,
                                                        n, CB)
        block_rows = min(block_rows, out_h)
        cb, hb, ob = channel_blocks(cin), channel_blocks(hidden), channel_blocks(cout)
        x = aligned((n, cb, height, height, CB), rng)
        ew_packed = pack_pointwise(rng.standard_normal((hidden, cin), dtype=np.float32) * 0.1,
                                   rng.standard_normal(hidden, dtype=np.float32))
        ew, eb = (aligned(a.shape) for a in ew_packed)
        ew[...], eb[...] = ew_packed
        dw_packed = pack_depthwise(rng.standard_normal((hidden, 1, 3, 3), dtype=np.float32) * 0.3,
                                   rng.standard_normal(hidden, dtype=np.float32))
        dw, db = (aligned(a.shape) for a in dw_packed)
        dw[...], db[...] = dw_packed
        pw_packed = pack_pointwise(rng.standard_normal((cout, hidden), dtype=np.float32) * 0.05,
                                   rng.standard_normal(cout, dtype=np.float32))
        pw, pb = (aligned(a.shape) for a in pw_packed)
        pw[...], pb[...] = pw_packed
        out = aligned((n, ob, out_h, out_h, CB))
        has_residual = stride == 1 and cin == cout
        residual = aligned(out.shape, rng) if has_residual else out
        s1, s2 = make_scratch(1, hidden, height, out_h, block_rows, stride)
        hidden_x = aligned((n, hb, height, height, CB))          # the whole expanded tensor, for pointwise_conv
        dw_out = aligned((n, hb, out_h, out_h, CB), rng)
        relu6 = (0.0, 6.0)
        none = (-np.inf, np.inf)

        def fused():
            fused_block(x, (ew, eb), (dw, db), (pw, pb), out, residual if has_residual else None, stride, relu6,
                        relu6, none, block_rows, s1, s2)

        def staged(stages):
            return lambda: _staged(x, ew, eb, dw, db, pw, pb, out, residual, has_residual, stride, block_rows, s1, s2,
                                   stages, np.int64(NONE), np.float32(0.0))

        def expand_conv():
            pointwise_conv(x, ew, eb, hidden_x, 0.0, 6.0)

        def project_conv():
            pointwise_conv(dw_out, pw, pb, out, -np.inf, np.inf, residual if has_residual else None)

        groups = {}
        if stride == 1 and block_rows >= out_h:
            for group in (1, 2, 4):
                g1 = aligned((1, group * hb * height * height * CB))
                g2 = aligned((1, group * hb * height * height * CB))
                groups[f"grouped {group}"] = (lambda group=group, g1=g1, g2=g2: _grouped(
                    x, ew, eb, dw, db, pw, pb, out, residual, has_residual, group, g1[0], g2[0], np.int64(NONE),
                    np.float32(0.0)))

        expand_flops = 2 * n * height * height * cin * hidden
        dw_flops = 2 * n * out_h * out_h * hidden * 9
        project_flops = 2 * n * out_h * out_h * hidden * cout
        variants = {"fused": (fused, expand_flops + dw_flops + project_flops),
                    "staged all": (staged(7), expand_flops + dw_flops + project_flops),
                    "expand": (staged(EXPAND), expand_flops), "depthwise": (staged(DEPTHWISE), dw_flops),
                    "depthwise outlined": (staged(8), dw_flops),
                    "project": (staged(PROJECT), project_flops),
                    "expand image 0": (staged(EXPAND | 16), expand_flops),
                    "project image 0": (staged(PROJECT | 16), project_flops),
                    "expand+project": (staged(EXPAND | PROJECT), expand_flops + project_flops),
                    "1x1 expand alone": (expand_conv, expand_flops),
                    **{key: (call, expand_flops + dw_flops + project_flops) for key, call in groups.items()},
                    "1x1 project alone": (project_conv, project_flops)}
        if args.only:
            variants = {key: value for key, value in variants.items() if key in args.only.split(",")}
        fused()
        reference = out.copy()
        for key, (call, _) in variants.items():
            if key.startswith("grouped") or key == "staged all":
                out[...] = 0.0
                call()
                error = float(np.max(np.abs(out - reference)) / max(1e-30, float(np.max(np.abs(reference)))))
                if error > 1e-5:
                    raise SystemExit(f"{name}: {key} differs from fused_block by {error:.2e} (relative to max)")
        samples = {key: [] for key in variants}
        for key, (call, _) in variants.items():
            call()
            call()
        for _ in range(args.repeats):
            for key, (call, _) in variants.items():
                start = time.perf_counter()
                call()
                samples[key].append(time.perf_counter() - start)
        whole = statistics.median(samples["staged all"]) if "staged all" in samples else float("nan")
        print(f"\n{name}: {cin}->{hidden}->{cout} at {height}x{height} stride {stride}, block_rows {block_rows}, "
              f"scratch {4 * sum(scratch_floats(hidden, height, out_h, block_rows, stride)) / 1024:.0f} KiB")
        for key, (_, flops) in variants.items():
            seconds = statistics.median(samples[key])
            gflops = flops / seconds / 1e9
            share = f"{100 * seconds / whole:5.1f} % of staged" if key in ("expand", "depthwise", "project",
                                                                          "expand+project") else ""
            print(f"  {key:<18} {seconds * 1e3:8.3f} ms {gflops:7.1f} GFLOP/s "
                  f"({100 * gflops / args.peak:5.1f} %) {share}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
