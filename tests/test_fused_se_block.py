"""The fused squeeze-and-excitation block against its unfused numpy composition: 3x3 and
5x5, stride 1 and 2, with and without expand and residual, both work splits (whole images
per worker, an image's bands over the workers), several band heights, 1 and 2 threads; the
ring-reading 5x5 core's interior loop, a 3x3 stride-2 block and ReLU6 clips on the convs."""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pytest

import engine
from conftest import assert_close_to_reference
from engine.kernels import fused_se_block as fse
from engine.kernels.depthwise import KXK_PIXELS, pack_depthwise
from engine.kernels.layout import CB, from_blocked, to_blocked
from engine.kernels.pointwise import pack_pointwise
from engine.kernels.squeeze_excite import pack_squeeze_excite
from tests.naive.fused_se_block import NONE, se_block_reference

pytestmark = pytest.mark.lanes

THREADS = [t for t in (1, 2) if t <= engine.available_cores()]
HARDSWISH = ("hardswish", 1.0 / 6.0, 0.5)
SILU = ("silu", 0.0, 0.0)
RELU = (0.0, math.inf)
RELU6 = (0.0, 6.0)
# MobileNetV3's SE: ReLU hidden, hardsigmoid gate; EfficientNet's: SiLU hidden, sigmoid gate
V3_SE = (("none", 0.0, 0.0), RELU, ("hardsigmoid", 1.0 / 6.0, 0.5))
B0_SE = (SILU, NONE, ("sigmoid", 0.0, 0.0))


def _weights(rng, cin, hidden, squeezed, cout, kernel, has_expand):
    def conv(o, i):
        return ((rng.standard_normal((o, i, 1, 1)) / math.sqrt(i)).astype(np.float32),
                (rng.standard_normal(o) * 0.1).astype(np.float32))
    expand = conv(hidden, cin) if has_expand else None
    depthwise = ((rng.standard_normal((hidden, 1, kernel, kernel)) / kernel).astype(np.float32),
                 (rng.standard_normal(hidden) * 0.1).astype(np.float32))
    se = ((rng.standard_normal((squeezed, hidden)) / math.sqrt(hidden)).astype(np.float32),
          (rng.standard_normal(squeezed) * 0.1).astype(np.float32),
          (rng.standard_normal((hidden, squeezed)) / math.sqrt(squeezed)).astype(np.float32),
          (rng.standard_normal(hidden) * 0.1).astype(np.float32))
    return expand, depthwise, se, conv(cout, hidden)


def _run(x, weights, stride, residual, block_rows, threads, activations, se_activations, clips=(NONE, NONE, NONE)):
    expand, depthwise, se, project = weights
    n, _, h, w = x.shape
    kernel = depthwise[0].shape[2]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    hidden, cout = depthwise[0].shape[0], project[0].shape[0]
    out = np.full((n, -(-cout // CB), ho, wo, CB), np.nan, np.float32)
    scratch = fse.make_scratch(threads, hidden, w, ho, wo, min(block_rows, ho), stride, kernel)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fse.fused_se_block(to_blocked(x), None if expand is None else pack_pointwise(*expand), pack_depthwise(*depthwise),
                           pack_squeeze_excite(*se), pack_pointwise(*project), out,
                           None if residual is None else to_blocked(residual), stride, *clips, block_rows,
                           *scratch, expand_activation=activations[0], depthwise_activation=activations[1],
                           project_activation=activations[2], hidden_activation=se_activations[0],
                           hidden_clip=se_activations[1], gate_activation=se_activations[2])
    finally:
        numba.set_num_threads(previous)
    return from_blocked(out, cout)


# (cin, hidden, squeezed, cout, H, W, kernel, stride, has_expand, has_residual, batch)
SHAPES = [
    (16, 72, 24, 24, 9, 8, 5, 2, True, False, 1),     # V3's 5x5 stride-2 block, odd sizes, bands split
    (24, 40, 10, 24, 7, 6, 5, 1, True, True, 4),      # 5x5 residual, whole images per worker
    (16, 64, 16, 16, 6, 7, 3, 1, True, True, 2),      # 3x3 residual
    (32, 32, 8, 16, 7, 5, 3, 1, False, False, 3),     # EfficientNet's first block: no expand
    (8, 48, 12, 12, 3, 3, 5, 2, True, False, 2),      # an image smaller than the kernel
]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:8])) + f"-e{int(s[8])}r{int(s[9])}n{s[10]}")
def test_fused_se_block_matches_the_unfused_reference(shape, threads):
    cin, hidden, squeezed, cout, h, w, kernel, stride, has_expand, has_residual, batch = shape
    rng = np.random.default_rng(sum(shape))
    weights = _weights(rng, cin, hidden, squeezed, cout, kernel, has_expand)
    x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    residual = rng.standard_normal((batch, cout, ho, wo)).astype(np.float32) if has_residual else None
    for activations, se_activations in (((HARDSWISH, HARDSWISH, ("none", 0.0, 0.0)), V3_SE),
                                        ((SILU, SILU, ("none", 0.0, 0.0)), B0_SE)):
        reference = se_block_reference(x, weights[0], weights[1], weights[2], weights[3], stride, residual,
                                       activations=activations, se_activations=se_activations)
        for block_rows in sorted({1, 2, ho, ho + 1}):
            got = _run(x, weights, stride, residual, block_rows, threads, activations, se_activations)
            assert_close_to_reference(got, reference.astype(np.float32), relative=1e-5)


def _ring_interior_columns(h, w, kernel, stride, block_rows):
    """Interior output columns _ring_rows_kxk walks KXK_PIXELS at a time, or 0 where the
    kernel takes another core (3x3, or an image's rows all in the ring); as the kernel's
    own conditions (expand conv present)."""
    ho, wo, pad = (h - 1) // stride + 1, (w - 1) // stride + 1, kernel // 2
    if kernel == 3 or fse.rows_needed(min(block_rows, ho), stride, kernel) >= h:
        return 0
    col_lo = min(wo, (pad + stride - 1) // stride)
    return max(col_lo, min(wo, (w - kernel + pad) // stride + 1)) - col_lo


# (cin, hidden, squeezed, cout, H, W, kernel, stride, has_residual, batch), clips, activations, SE
RING_CASES = [
    ((16, 32, 8, 16, 12, 17, 5, 1, True, 1), (RELU6, RELU6, NONE), ((("none", 0.0, 0.0),) * 3), V3_SE),
    ((16, 40, 10, 24, 13, 16, 5, 2, False, 2), (NONE, NONE, NONE), (SILU, SILU, ("none", 0.0, 0.0)), B0_SE),
    ((16, 48, 12, 24, 9, 10, 3, 2, False, 1), (NONE, RELU6, RELU6), (HARDSWISH, HARDSWISH, ("none", 0.0, 0.0)),
     V3_SE),
]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("case", RING_CASES, ids=["k5s1-12x17-relu6", "k5s2-13x16", "k3s2-9x10-relu6"])
def test_fused_se_block_ring_core_interior_stride2_3x3_and_clips(case, threads):
    """Band heights 1 and 2 where an image's rows do not all fit the ring: the 5x5 cases run
    the ring-reading k x k core with more than KXK_PIXELS interior columns (its
    KXK_PIXELS-pixel loop and leftover pixels, as EfficientNet's 5x5 blocks at 224x224);
    a 3x3 stride-2 block (EfficientNet's features.2.0 / 4.0); ReLU6 clips on the convs."""
    (cin, hidden, squeezed, cout, h, w, kernel, stride, has_residual, batch), clips, activations, se_activations = case
    for block_rows in (1, 2):
        assert (_ring_interior_columns(h, w, kernel, stride, block_rows) > KXK_PIXELS) == (kernel == 5)
    rng = np.random.default_rng(h * w + kernel)
    weights = _weights(rng, cin, hidden, squeezed, cout, kernel, True)
    x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    residual = rng.standard_normal((batch, cout, ho, wo)).astype(np.float32) if has_residual else None
    reference = se_block_reference(x, *weights, stride, residual, clips=clips, activations=activations,
                                   se_activations=se_activations)
    for block_rows in (1, 2):
        got = _run(x, weights, stride, residual, block_rows, threads, activations, se_activations, clips)
        assert_close_to_reference(got, reference.astype(np.float32), relative=1e-5)


def test_fused_se_block_result_barely_depends_on_threads_or_split():
    """The band sums are added in band order, so 1 and 2 threads, whole images per worker or
    an image's bands split, agree to 1e-6 (not bit for bit: the project's micro-tiles fall
    differently on a split image's pixels)."""
    rng = np.random.default_rng(3)
    weights = _weights(rng, 16, 48, 12, 16, 5, True)
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    runs = [_run(x[:1], weights, 1, None, 2, t, (SILU, SILU, ("none", 0.0, 0.0)), B0_SE) for t in THREADS]
    runs += [_run(x, weights, 1, None, 2, t, (SILU, SILU, ("none", 0.0, 0.0)), B0_SE)[:1] for t in THREADS]
    for got in runs[1:]:
        assert_close_to_reference(got, runs[0], relative=1e-6)


# ------------------------------------------------------------------------- access trace

@pytest.mark.parametrize("kernel, stride, batch, has_expand", [(5, 1, 1, True), (3, 2, 2, False)],
                         ids=["k5s1-bands-split", "k3s2-whole-images-no-expand"])
def test_fused_se_block_trace_touches_what_the_kernel_reads_and_writes(kernel, stride, batch, has_expand):
    """engine.trace.fused_se_block: the trace loads exactly the elements of x, the weights
    and the residual that reach the output, stores exactly the output's; two workers' traces
    together are the one-thread trace (the same records; the band split's excite runs on the
    calling thread, so the order differs)."""
    from engine.trace.calls import kernel_and_arguments, trace_call
    from test_access_trace import assert_footprint, positive

    from engine.kernels._common import bind

    rng = np.random.default_rng(kernel + batch)
    cin_blocks, hidden_blocks, cout_blocks, squeezed, size = 1, (2 if has_expand else 1), 1, 3, 5
    x = positive(rng, batch, cin_blocks, size, size, CB)
    expand = (positive(rng, hidden_blocks, cin_blocks * CB, CB), positive(rng, hidden_blocks, CB)) if has_expand \
        else None
    depthwise = (positive(rng, hidden_blocks, kernel, kernel, CB), positive(rng, hidden_blocks, CB))
    se = (positive(rng, squeezed, hidden_blocks * CB), positive(rng, squeezed),
          positive(rng, hidden_blocks, squeezed, CB), positive(rng, hidden_blocks, CB),
          positive(rng, hidden_blocks, CB))
    project = (positive(rng, cout_blocks, hidden_blocks * CB, CB), positive(rng, cout_blocks, CB))
    out_size = (size - 1) // stride + 1
    out = np.empty((batch, cout_blocks, out_size, out_size, CB), np.float32)
    residual = positive(rng, *out.shape) if stride == 1 else None
    block_rows = 2
    scratch = fse.make_scratch(2, hidden_blocks * CB, size, out_size, out_size, block_rows, stride, kernel)
    args = (x, expand, depthwise, se, project, out, residual, stride, NONE, NONE, NONE, block_rows, *scratch)
    inputs = {"x": x, "depthwise weight": depthwise[0], "depthwise bias": depthwise[1], "w1": se[0], "b1": se[1],
              "w2": se[2], "b2": se[3], "mask": se[4], "project weight": project[0], "project bias": project[1]}
    if has_expand:
        inputs.update({"expand weight": expand[0], "expand bias": expand[1]})
    if residual is not None:
        inputs["residual"] = residual
    # a linear gate: a saturated sigmoid would hide an infinite input from the output
    wrapper = functools.partial(fse.fused_se_block, gate_activation=("none", 0.0, 0.0))
    trace = assert_footprint(wrapper, args, inputs, {"out": out}, every=3)
    kernel_fn, kernel_args = kernel_and_arguments(bind(wrapper, *args))
    parts = np.concatenate([trace_call(kernel_fn, kernel_args, thread, 2) for thread in range(2)])
    assert np.array_equal(np.unique(parts, axis=0), np.unique(trace, axis=0)) and len(parts) == len(trace)


# ------------------------------------------------------------------------- plans

def test_plans_fuse_squeeze_excite_blocks_by_policy_and_schedule():
    """EfficientNet-B0 (zoo topology at 64x64): every SE block is found; fuse_blocks=True
    fuses them all into op "block" steps whose FLOPs are their unfused steps' sum; "auto"
    fuses exactly the blocks se_fusion_wins picks; a schedule's fused choice and block_rows
    (by the project layer's name) win."""
    from engine import zoo
    from engine.config import RunConfig
    from engine.fusion import se_fusion_wins
    from engine.machine import machine_info
    from engine.passes import find_squeeze_excite_blocks
    from engine.tiles import TileSchedule

    model = engine.load(zoo.MODELS["efficientnet_b0"](resolution=64))
    blocks = find_squeeze_excite_blocks(model.graph)
    assert len(blocks) == 16 and all(len(block) == 4 and block[3].op == "SqueezeExcite" for block in blocks)
    batch, threads, machine = 8, 2, machine_info()
    unfused = {step.name: step for step in model.plan(batch, threads, engine.Tiles(), False, machine).steps}
    fused = [step for step in model.plan(batch, threads, engine.Tiles(), True, machine).steps if step.fused]
    assert len(fused) == 16 and {step.op for step in fused} == {"block"}
    for step in fused:
        assert len(step.members) in (3, 4)
        assert step.flops == sum(unfused[name].flops for name in step.members)
        assert step.other_flops == sum(unfused[name].other_flops for name in step.members)
    config = RunConfig(threads=threads, tiles=engine.Tiles(), fuse_blocks="auto", machine=machine)
    chosen = {block[2].name for block in blocks if se_fusion_wins(block, config, batch)}
    auto = {step.name for step in model.plan(batch, threads, engine.Tiles(), "auto", machine).steps if step.fused}
    assert chosen and auto == chosen
    name = blocks[-1][2].name
    schedule = TileSchedule(engine.Tiles(), {name: engine.Tiles(block_rows=3)}, {name: True, blocks[0][2].name: False})
    steps = {step.name: step for step in model.plan(batch, threads, schedule, "auto", machine).steps}
    assert steps[name].fused and steps[name].block_rows == min(3, blocks[-1][1].output_shape[1])
    assert blocks[0][2].name in steps and not steps[blocks[0][2].name].fused
