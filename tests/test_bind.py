"""Plans validate each kernel call once (bind) and then skip the wrapper's checks."""
from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import pointwise
from engine.kernels._common import bind
from engine.kernels.layout import CB


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
