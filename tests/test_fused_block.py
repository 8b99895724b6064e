"""The fused inverted-residual block against its unfused numpy composition, and the whole
network with fuse_blocks=True against ONNX Runtime: every band height, stride 1 and 2,
with and without expand and residual, batch > 1, 1 and 2 threads."""
from __future__ import annotations

import inspect
import math

import numba
import numpy as np
import pytest

import engine
from conftest import assert_close_to_reference
from engine.kernels import fused_block as fb
from engine.kernels.depthwise import depthwise_conv, pack_depthwise
from engine.kernels.layout import CB, from_blocked, to_blocked
from engine.kernels.pointwise import pack_pointwise
from engine.kernels._common import _FLOAT32_MAX, bind
from tests.naive.fused_block import NONE, RELU6, inverted_residual_reference

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

THREADS = [t for t in (1, 2) if t <= engine.available_cores()]


def _block_weights(rng, cin, hidden, cout, has_expand):
    scale = lambda fan_in: 1.0 / math.sqrt(fan_in)  # noqa: E731
    expand = ((rng.standard_normal((hidden, cin, 1, 1)) * scale(cin)).astype(np.float32),
              rng.standard_normal(hidden).astype(np.float32) * 0.1) if has_expand else None
    depthwise = ((rng.standard_normal((hidden, 1, 3, 3)) / 3).astype(np.float32),
                 rng.standard_normal(hidden).astype(np.float32) * 0.1)
    project = ((rng.standard_normal((cout, hidden, 1, 1)) * scale(hidden)).astype(np.float32),
               rng.standard_normal(cout).astype(np.float32) * 0.1)
    return expand, depthwise, project


def _run_fused(x, expand, depthwise, project, stride, residual, block_rows, threads, clips=(RELU6, RELU6, NONE)):
    n, _, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    hidden = depthwise[0].shape[0]
    cout = project[0].shape[0]
    out = np.full((n, -(-cout // fb.CB), ho, wo, fb.CB), np.nan, np.float32)
    scratch = fb.make_scratch(threads, hidden, w, wo, min(block_rows, ho), stride)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fb.fused_block(to_blocked(x), None if expand is None else pack_pointwise(*expand), pack_depthwise(*depthwise),
                       pack_pointwise(*project), out, None if residual is None else to_blocked(residual), stride,
                       *clips, block_rows, *scratch)
    finally:
        numba.set_num_threads(previous)
    return out


# (cin, hidden, cout, H, W, stride, has_expand, has_residual)
BLOCK_SHAPES = [
    (16, 96, 24, 11, 9, 2, True, False),     # a stride-2 block with odd sizes
    (24, 144, 24, 8, 7, 1, True, True),      # a residual block
    (32, 32, 16, 7, 5, 1, False, False),     # MobileNetV2's first block: no expand
    (5, 30, 7, 6, 6, 1, True, True),         # channels not a multiple of CB
    (8, 48, 8, 1, 1, 1, True, True),         # a 1x1 image
    (8, 48, 16, 2, 3, 2, True, False),
]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("shape", BLOCK_SHAPES, ids=lambda s: "x".join(map(str, s[:6])) + f"-e{int(s[6])}r{int(s[7])}")
def test_fused_block_matches_the_unfused_reference_for_every_band_height(shape, threads):
    cin, hidden, cout, h, w, stride, has_expand, has_residual = shape
    rng = np.random.default_rng(sum(shape))
    expand, depthwise, project = _block_weights(rng, cin, hidden, cout, has_expand)
    x = rng.standard_normal((3, cin, h, w)).astype(np.float32)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    residual = rng.standard_normal((3, cout, ho, wo)).astype(np.float32) if has_residual else None
    reference = inverted_residual_reference(x, expand, depthwise, project, stride, residual)
    for block_rows in range(1, ho + 2):          # every band height, and one larger than the image
        out = _run_fused(x, expand, depthwise, project, stride, residual, block_rows, threads)
        got = from_blocked(out, cout)
        assert_close_to_reference(got, reference.astype(np.float32), relative=1e-5)
        blocked = out.transpose(0, 1, 4, 2, 3).reshape(3, -1, ho, wo)
        assert np.all(blocked[:, cout:] == 0.0), "padded output channels must stay exactly 0"


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("clips", [(RELU6, NONE, NONE), (NONE, RELU6, (-1.5, 2.0)), (NONE, NONE, NONE)],
                         ids=["depthwise-none", "expand-none", "all-none"])
def test_fused_block_with_stages_without_activation_matches_the_reference(clips, threads):
    for cin, hidden, cout, h, w, stride, has_expand, has_residual in BLOCK_SHAPES[:4]:
        rng = np.random.default_rng(cin + h)
        expand, depthwise, project = _block_weights(rng, cin, hidden, cout, has_expand)
        x = rng.standard_normal((2, cin, h, w)).astype(np.float32)
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        residual = rng.standard_normal((2, cout, ho, wo)).astype(np.float32) if has_residual else None
        reference = inverted_residual_reference(x, expand, depthwise, project, stride, residual, clips)
        for block_rows in (1, 3, ho):
            out = _run_fused(x, expand, depthwise, project, stride, residual, block_rows, threads, clips)
            assert_close_to_reference(from_blocked(out, cout), reference.astype(np.float32), relative=1e-5)
            blocked = out.transpose(0, 1, 4, 2, 3).reshape(2, -1, ho, wo)
            assert np.all(blocked[:, cout:] == 0.0), "padded output channels must stay exactly 0"


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("channels, h, w, stride", [(32, 14, 14, 1), (40, 11, 9, 2), (16, 7, 7, 1), (16, 2, 3, 2)])
def test_fused_depthwise_stage_is_the_depthwise_kernel_bit_for_bit(channels, h, w, stride, threads):
    """Both run depthwise.depthwise_3x3_rows. A block without expand conv, one image in one
    band: the worker that runs it is left with the whole depthwise output in its scratch."""
    rng = np.random.default_rng(h)
    x = to_blocked(rng.standard_normal((1, channels, h, w)).astype(np.float32))
    _, depthwise, project = _block_weights(rng, channels, channels, 8, False)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    scratch = fb.make_scratch(threads, channels, w, wo, ho, stride)
    out = np.zeros((1, 1, ho, wo, fb.CB), np.float32)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fb.fused_block(x, None, pack_depthwise(*depthwise), pack_pointwise(*project), out, None, stride,
                       RELU6, RELU6, NONE, ho, *scratch)
        unfused = np.zeros((1, x.shape[1], ho, wo, fb.CB), np.float32)
        depthwise_conv(x, *pack_depthwise(*depthwise), unfused, stride, stride, 1, 1, *RELU6)
    finally:
        numba.set_num_threads(previous)
    stage = scratch[1][-1, :unfused.size].reshape(unfused.shape)  # one item: the last worker's
    assert np.array_equal(stage, unfused)


def _block_call_arguments(clips):
    rng = np.random.default_rng(0)
    expand, depthwise, project = _block_weights(rng, 8, 16, 8, True)
    x = to_blocked(rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    out = np.zeros((1, 1, 6, 6, fb.CB), np.float32)
    return (x, pack_pointwise(*expand), pack_depthwise(*depthwise), pack_pointwise(*project), out, None, 1, *clips, 2,
            *fb.make_scratch(1, 16, 6, 6, 2, 1))


def test_fused_block_hands_the_fast_math_kernel_finite_clip_bounds():
    """A stage without activation has clip (-inf, inf); the kernel, built with 'ninf', gets
    +-float32 max instead (the same result for every finite value)."""
    call = bind(fb.fused_block, *_block_call_arguments((NONE, NONE, NONE)))
    first = list(inspect.signature(fb._fused_block_kernel.py_func).parameters).index("expand_low")
    bounds = call.args[first:first + 6]     # expand, depthwise, project (low, high)
    assert all(math.isfinite(b) for b in bounds), bounds
    assert bounds == (-_FLOAT32_MAX, _FLOAT32_MAX) * 3


@pytest.mark.parametrize("stage", [0, 1, 2], ids=["expand_clip", "depthwise_clip", "project_clip"])
@pytest.mark.parametrize("bad", [(1.0, 6.0), (-6.0, -1.0), (math.nan, 6.0), (0.0, math.nan)])
def test_fused_block_refuses_a_clip_that_excludes_zero_or_is_nan(stage, bad):
    clips = [RELU6, RELU6, NONE]
    clips[stage] = bad
    name = ("expand_clip", "depthwise_clip", "project_clip")[stage]
    with pytest.raises(ValueError, match=f"fused_block {name}: clip bounds must satisfy clip_min <= 0 <= clip_max"):
        fb.fused_block(*_block_call_arguments(clips))


def test_fused_block_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    expand, depthwise, project = _block_weights(rng, 8, 16, 8, True)
    x = to_blocked(rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    out = np.zeros((1, 1, 6, 6, fb.CB), np.float32)
    scratch = fb.make_scratch(1, 16, 6, 6, 2, 1)
    args = (x, pack_pointwise(*expand), pack_depthwise(*depthwise), pack_pointwise(*project))
    clips = ((0.0, 6.0), (0.0, 6.0), (-math.inf, math.inf))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        fb.fused_block(*args, out, None, 3, *clips, 2, *scratch)
    with pytest.raises(ValueError, match="out"):
        fb.fused_block(*args, np.zeros((1, 1, 3, 3, fb.CB), np.float32), None, 1, *clips, 2, *scratch)
    with pytest.raises(ValueError, match="block_rows"):
        fb.fused_block(*args, out, None, 1, *clips, 0, *scratch)
    with pytest.raises(ValueError, match="scratch_expand"):
        fb.fused_block(*args, out, None, 1, *clips, 6, *fb.make_scratch(1, 16, 6, 6, 1, 1))
    two_workers, _ = fb.make_scratch(2, 16, 6, 6, 2, 1)
    with pytest.raises(ValueError, match="scratch_depthwise needs a row per worker"):
        fb.fused_block(*args, out, None, 1, *clips, 2, two_workers, scratch[1])     # 2 workers, 1 depthwise row


def test_auto_block_rows_fits_the_scratch_in_l2_and_keeps_threads_busy():
    band = fb.auto_block_rows(144, 56, 56, 56, 56, 1, threads=2, l2_bytes=512 * 1024, batch=1, lanes=8)
    expand, depthwise = fb.scratch_floats(144, 56, 56, band, 1, lanes=8)
    assert 4 * (expand + depthwise) <= fb.SCRATCH_SHARE * 512 * 1024
    taller_expand, taller_depthwise = fb.scratch_floats(144, 56, 56, band + 1, 1, lanes=8)
    assert 4 * (taller_expand + taller_depthwise) > fb.SCRATCH_SHARE * 512 * 1024   # the tallest that fits
    assert -(-56 // band) >= 4
    # 7 rows on 2 threads: two bands (4 + 3 rows), not one band that leaves a thread idle
    assert fb.auto_block_rows(960, 7, 7, 7, 7, 1, threads=2, l2_bytes=512 * 1024, batch=1, lanes=8) == 4
    # with 64 images there is work for every thread without splitting the image: no recompute
    assert fb.auto_block_rows(576, 7, 7, 7, 7, 1, threads=2, l2_bytes=512 * 1024, batch=64, lanes=8) == 7
    # 14 rows on 2 threads at batch 1: two equal bands, not three (one thread would do two)
    assert fb.auto_block_rows(384, 14, 14, 14, 14, 1, threads=2, l2_bytes=512 * 1024, batch=1, lanes=8) == 7


def test_expand_recompute_factor_counts_the_halo_rows_only_where_a_worker_starts():
    assert fb.expand_recompute_factor(8, 8, 8, 1) == 1.0                  # one band: no recompute
    # one worker walks down the bands keeping the shared rows: every row expanded once
    assert fb.expand_recompute_factor(8, 8, 4, 1) == 1.0
    assert fb.expand_recompute_factor(8, 4, 1, 2) == 1.0                  # stride 2, band 1
    # two workers, one band each: each expands its band's rows (5 + 5) including the halo
    assert fb.expand_recompute_factor(8, 8, 4, 1, workers=2) == (5 + 5) / 8
    # two workers, two bands each: rows 0-2 then 3-4 | rows 3-6 then 7: rows 3 and 4 twice
    assert fb.expand_recompute_factor(8, 8, 2, 1, workers=2) == (3 + 2 + 4 + 1) / 8
    # two images on two workers: one image each, nothing expanded twice
    assert fb.expand_recompute_factor(8, 8, 4, 1, workers=2, batch=2) == 1.0
    # three images of two bands on two workers: worker 0 starts image 1 at its second band
    assert fb.expand_recompute_factor(8, 8, 4, 1, workers=2, batch=3) == (8 + 5 + 5 + 8) / 24


# ---------------------------------------------------------------- whole network

@pytest.mark.parametrize("block_rows", [0, 1, 2, 3, 5, 8, 112])
def test_fused_network_matches_onnxruntime_for_every_band_height(mobilenet, mobilenet_ort, block_rows):
    x = np.random.default_rng(block_rows).standard_normal((2, 3, 224, 224), dtype=np.float32)
    reference = mobilenet_ort.run(None, {"input": x})[0]
    for threads in THREADS:
        got = mobilenet.run(x, threads=threads, fuse_blocks=True, tiles=engine.Tiles(block_rows=block_rows))
        assert_close_to_reference(got, reference)


def test_fused_run_records_one_step_per_block_listing_its_members(mobilenet):
    recorder = engine.Recorder()
    mobilenet.run(np.zeros((1, 3, 224, 224), np.float32), fuse_blocks=True, hooks=[recorder])
    blocks = [r for r in recorder.records if r.op == "block"]
    assert len(blocks) == 17 and all(r.fused for r in blocks)
    assert [len(r.members) for r in blocks] == [2] + [3] * 16
    unfused = engine.Recorder()
    mobilenet.run(np.zeros((1, 3, 224, 224), np.float32), hooks=[unfused])
    assert sum(r.flops for r in recorder.records) == sum(r.flops for r in unfused.records)


# ---------------------------------------------------------------- the "auto" policy

@pytest.mark.parametrize("batch", [1, 3])
def test_auto_fusion_matches_onnxruntime(mobilenet, mobilenet_ort, batch):
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    reference = mobilenet_ort.run(None, {"input": x})[0]
    for threads in THREADS:
        assert_close_to_reference(mobilenet.run(x, threads=threads, fuse_blocks="auto"), reference)


