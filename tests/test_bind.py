"""Plans validate each kernel call once (bind) and then skip the wrapper's checks."""
from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import pointwise
from engine.kernels._common import bind
from engine.kernels.layout import CB

pytestmark = pytest.mark.lanes     # layouts, packing, plans and bytes depend on the lane width


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 3, 5, CB)).astype(np.float32)
    weight, bias = pointwise.pack_pointwise(rng.standard_normal((3 * CB, 2 * CB)).astype(np.float32), None)
    return x, weight, bias, np.zeros((1, 3, 3, 5, CB), np.float32)


def test_bound_call_computes_what_the_wrapper_computes():
    x, weight, bias, out = _arrays()
    expected = np.zeros_like(out)
    pointwise.pointwise_conv(x, weight, bias, expected, 0.0, 6.0)
    call = bind(pointwise.pointwise_conv, x, weight, bias, out, 0.0, 6.0)
    assert not out.any()                      # binding does not run the kernel
    call()
    np.testing.assert_array_equal(out, expected)


def test_binding_validates_immediately():
    x, weight, bias, out = _arrays()
    with pytest.raises(ValueError, match="out"):
        bind(pointwise.pointwise_conv, x, weight, bias, out[:, :2], 0.0, 6.0)
    # and a failed bind leaves launching in its normal state
    pointwise.pointwise_conv(x, weight, bias, out, 0.0, 6.0)
    assert out.any()


def test_each_1x1_step_of_a_plan_prefetches_the_weights_of_the_next_1x1_linear_or_block_step():
    """engine.plan hands every 1x1 conv the packed weights of the next step that has large
    weights (1x1 conv, linear layer, fused block), as pointwise_conv's `ahead`: the bound
    kernel's last two arguments are their offset from the conv's own weights and their size."""
    import engine
    from engine.zoo import mobilenet_v2

    model = engine.load(mobilenet_v2(resolution=64, num_classes=10))
    for fuse in (False, "auto", True):
        steps = model.plan(1, threads=1, fuse_blocks=fuse).steps
        weighted = [i for i, s in enumerate(steps) if s.op in ("expand", "project", "pointwise", "linear", "block")]
        checked = 0
        for position, index in enumerate(weighted):
            step = steps[index]
            if step.op not in ("expand", "project", "pointwise"):
                continue
            args = step.call.args
            own_weights, ahead_offset, ahead_elements = args[1], args[-2], args[-1]
            if position + 1 == len(weighted):
                assert (ahead_offset, ahead_elements) == (0, 0)
                continue
            later = steps[weighted[position + 1]]
            first = later.members[0] if later.op == "block" else later.name
            later_weights = model.weights.by_layer[first][0]
            assert ahead_elements == later_weights.size, step.name
            assert own_weights.ctypes.data + 4 * ahead_offset == later_weights.ctypes.data, step.name
            checked += 1
        assert checked >= (1 if fuse is True else 3)      # all fused: only the last 1x1 conv is left
