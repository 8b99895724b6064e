"""Access trace of global average pooling (engine.kernels.pooling): per work item (image,
channel block) one front-to-back read of its H x W x CB plane, then CB sums stored."""
from __future__ import annotations

from numba import njit

from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, load, store


@njit(cache=True)
def trace_pool(trace, count, x_address, pixels, out_address, item_begin, item_end):
    """`_global_average_pool_kernel`'s accesses for items [item_begin, item_end) (item =
    image * blocks + block); pixels: H * W."""
    for item in range(item_begin, item_end):
        count = load(trace, count, x_address + item * pixels * CB * FLOAT32, pixels * CB * FLOAT32)
        count = store(trace, count, out_address + item * CB * FLOAT32, CB * FLOAT32)
    return count
