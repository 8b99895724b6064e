"""Access trace of the stand-alone activation (engine.kernels.elementwise.activation_step):
flat tensors in work items of CHUNK elements, NCHWc ones in items (image, channel block)
of one plane each; each item's span read and written vector by vector, traced in pieces
of PIECE bytes (engine.trace.squeeze_excite.trace_stream: a load then a store each)."""
from __future__ import annotations

from numba import njit

from engine.trace.records import FLOAT32
from engine.trace.squeeze_excite import trace_stream


@njit(cache=True)
def trace_activation(trace, count, x_address, out_address, size, item_elements, item_begin, item_end):
    """`_activation_flat_kernel`'s (item_elements = CHUNK) or `_activation_blocked_kernel`'s
    (item_elements = one plane, H * W * CB) accesses for items [item_begin, item_end);
    size: the tensor's elements."""
    for item in range(item_begin, item_end):
        start = item * item_elements
        end = min(size, start + item_elements)
        count = trace_stream(trace, count, x_address, out_address, start * FLOAT32, (end - start) * FLOAT32)
    return count
