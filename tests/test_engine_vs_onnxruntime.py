"""The whole network against ONNX Runtime: max |engine - ORT| <= 1e-4 * max |ORT logits|."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from conftest import assert_close_to_reference, ort_run
from engine.zoo import mobilenet_v1, mobilenet_v2

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width

TILE_SETTINGS = [
    engine.Tiles(),
    engine.Tiles(pointwise_pixels=1, pointwise_channels=16, depthwise_rows=1),
    engine.Tiles(pointwise_pixels=37, pointwise_channels=48, depthwise_rows=3),
    engine.Tiles(pointwise_pixels=4096, pointwise_channels=4096, depthwise_rows=1024),
]


def _images(batch: int, seed: int = 0, shape=(3, 224, 224)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_mobilenet_v2_matches_onnxruntime(mobilenet, mobilenet_ort, batch, threads):
    x = _images(batch, seed=batch)
    reference = mobilenet_ort.run(None, {"input": x})[0]
    got = mobilenet.run(x, threads=min(threads, engine.available_cores()))
    assert got.shape == (batch, 1000)
    assert got.dtype == np.float32
    assert_close_to_reference(got, reference)


@pytest.mark.parametrize("tiles", TILE_SETTINGS, ids=lambda t: "-".join(map(str, t.as_dict().values())))
@pytest.mark.parametrize("threads", [1, 2])
def test_every_tile_setting_gives_the_same_logits(mobilenet, mobilenet_ort, tiles, threads):
    x = _images(2, seed=7)
    reference = mobilenet_ort.run(None, {"input": x})[0]
    got = mobilenet.run(x, threads=min(threads, engine.available_cores()), tiles=tiles)
    assert_close_to_reference(got, reference)


def test_logits_are_not_degenerate(mobilenet):
    # A check that the comparison above means something: the logits vary across
    # classes and across images, so a wrong kernel could not match by accident.
    y = mobilenet.run(_images(2, seed=3))
    assert y.std(axis=1).min() > 1e-2
    assert np.abs(y[0] - y[1]).max() > 1e-2


def test_non_contiguous_input_gives_the_same_answer(mobilenet):
    x = _images(2, seed=5)
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(mobilenet.run(strided), mobilenet.run(x))


def test_the_stem_reads_the_callers_batch_without_copying_or_keeping_it(mobilenet, mobilenet_ort):
    import weakref

    plan = mobilenet.plan(2, fuse_blocks=False)
    assert plan.input_buffer is None and plan.steps[0].op == "stem"       # no copy-in step
    rng = np.random.default_rng(5)
    for _ in range(2):       # each run reads the array it is given, not the previous one
        x = rng.standard_normal((2, 3, 224, 224), dtype=np.float32)
        assert_close_to_reference(mobilenet.run(x, fuse_blocks=False), mobilenet_ort.run(None, {"input": x})[0])
    gone = weakref.ref(x)
    del x
    assert gone() is None                                       # the plan keeps no reference


def test_repeated_runs_are_deterministic_and_independent_of_batch_neighbours(mobilenet):
    x = _images(3, seed=11)
    whole = mobilenet.run(x, threads=min(2, engine.available_cores()))
    again = mobilenet.run(x, threads=min(2, engine.available_cores()))
    np.testing.assert_array_equal(whole, again)
    alone = mobilenet.run(x[1:2].copy())
    np.testing.assert_allclose(alone[0], whole[1], rtol=1e-5, atol=1e-5 * np.abs(whole).max())


@pytest.mark.parametrize("kwargs", [
    dict(separate_batchnorm=True, opset=10),                 # BN separate, Clip with attributes
    dict(opset=9, separate_batchnorm=True, dropout=True),
    dict(opset=11, flatten_style="reshape_shape_chain"),     # old exporters' Shape->Gather->... chain
    dict(opset=13, flatten_style="reshape_constant", classifier_style="matmul_add"),
    dict(opset=13, pool_style="reduce_mean"),
    dict(opset=18, pool_style="reduce_mean", dropout=True),
])
def test_models_written_other_ways_load_and_match_onnxruntime(kwargs):
    proto = mobilenet_v2(resolution=96, **kwargs)
    x = _images(2, seed=1, shape=(3, 96, 96))
    assert_close_to_reference(engine.load(proto).run(x), ort_run(proto, x))


@pytest.mark.parametrize("width_mult,resolution", [(0.5, 160), (0.75, 96), (1.4, 128)])
def test_other_widths_and_resolutions_match_onnxruntime(width_mult, resolution):
    proto = mobilenet_v2(width_mult=width_mult, resolution=resolution)
    x = _images(2, seed=2, shape=(3, resolution, resolution))
    assert_close_to_reference(engine.load(proto).run(x), ort_run(proto, x))


def test_mobilenet_v1_with_relu_matches_onnxruntime():
    proto = mobilenet_v1(resolution=128)
    x = _images(2, seed=4, shape=(3, 128, 128))
    assert_close_to_reference(engine.load(proto).run(x), ort_run(proto, x))


def test_loading_from_a_path_and_from_bytes_gives_the_same_model(tmp_path, mobilenet_proto):
    path = tmp_path / "m.onnx"
    path.write_bytes(mobilenet_proto.SerializeToString())
    x = _images(1)
    from_path = engine.load(path).run(x)
    from_bytes = engine.load(path.read_bytes()).run(x)
    np.testing.assert_array_equal(from_path, from_bytes)
