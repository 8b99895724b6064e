"""engine.pages: the buffers behind the packed weights and the activation arenas."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import pages
from engine.zoo import mobilenet_v2


@pytest.mark.parametrize("elements", [0, 1, 17, 4096, pages.HUGE_PAGE // 4 - 1, pages.HUGE_PAGE // 4,
                                      3 * pages.HUGE_PAGE // 4 + 5])
def test_aligned_empty_gives_a_writable_contiguous_float32_array_on_a_cache_line(elements):
    array = pages.aligned_empty(elements)
    assert array.dtype == np.float32 and array.shape == (elements,)
    assert array.flags.c_contiguous and array.flags.writeable
    assert elements == 0 or array.ctypes.data % pages.CACHE_LINE == 0   # (an empty view has no data)
    array[...] = np.arange(elements, dtype=np.float32)
    np.testing.assert_array_equal(array, np.arange(elements, dtype=np.float32))


def test_large_buffers_start_on_a_huge_page_where_the_os_offers_them_and_do_not_overlap():
    elements = 3 * pages.HUGE_PAGE // 4 + 5           # 6 MiB and a bit
    first, second = pages.aligned_empty(elements), pages.aligned_empty(elements)
    assert not np.may_share_memory(first, second)
    first[...] = 1.0
    second[...] = 2.0
    assert (first == 1.0).all() and (second == 2.0).all()
    if pages.huge_pages_offered():
        assert first.ctypes.data % pages.HUGE_PAGE == 0 and second.ctypes.data % pages.HUGE_PAGE == 0


def test_aligned_empty_refuses_a_negative_size():
    with pytest.raises(ValueError, match="elements must be >= 0"):
        pages.aligned_empty(-1)


def test_packed_weights_are_views_of_one_buffer_on_cache_lines_with_the_packed_values():
    graph_model = mobilenet_v2(resolution=64, num_classes=10)
    model = engine.load(graph_model)
    arrays = [a for pair in model.weights.by_layer.values() for a in pair]
    bases = {id(a.base) for a in arrays}
    assert len(bases) == 1 and arrays[0].base is not None
    assert all(a.ctypes.data % pages.CACHE_LINE == 0 and a.flags.c_contiguous for a in arrays)
    # the values are what the packing functions give
    from engine.kernels import pointwise
    layer = next(l for l in model.graph.layers if l.op == "Conv" and l.conv_kind == "pointwise")
    expected_w, expected_b = pointwise.pack_pointwise(layer.weight, layer.bias)
    got_w, got_b = model.weights.by_layer[layer.name]
    np.testing.assert_array_equal(got_w, expected_w)
    np.testing.assert_array_equal(got_b, expected_b)
    # no two arrays overlap
    spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for a in arrays)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
