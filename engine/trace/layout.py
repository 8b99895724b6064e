"""Access traces of the layout changes (engine.kernels.layout) and of plain copies.

NCHW -> NCHWc: per work item (image, channel block) and lane, the lane's channel plane
read front to back and written every CB-th float of the block's plane: one record over
that whole plane (every line of it is touched), whose register bytes are the H x W floats
stored. NCHWc -> NCHW: per (image, channel) the lane read from the block's plane the same
way, the channel's plane stored."""
from __future__ import annotations

from numba import njit

from engine.kernels.layout import CB
from engine.trace.records import FLOAT32, LOAD, STORE, emit, load, store


@njit(cache=True)
def trace_to_blocked(trace, count, x_address, channels, pixels, out_address, n_blocks, item_begin, item_end):
    """`_nchw_to_nchwc`'s accesses for items [item_begin, item_end) (item = n * n_blocks + b)."""
    for item in range(item_begin, item_end):
        n = item // n_blocks
        b = item % n_blocks
        block_plane = out_address + item * pixels * CB * FLOAT32
        for lane in range(CB):
            c = b * CB + lane
            if c < channels:
                count = load(trace, count, x_address + (n * channels + c) * pixels * FLOAT32, pixels * FLOAT32)
            count = emit(trace, count, block_plane + lane * FLOAT32, ((pixels - 1) * CB + 1) * FLOAT32, STORE,
                         pixels * FLOAT32)
    return count


@njit(cache=True)
def trace_from_blocked(trace, count, x_address, n_blocks, pixels, out_address, channels, item_begin, item_end):
    """`_nchwc_to_nchw`'s accesses for items [item_begin, item_end) (item = n * channels + c)."""
    for item in range(item_begin, item_end):
        n = item // channels
        c = item % channels
        block_plane = x_address + ((n * n_blocks + c // CB) * pixels * CB + c % CB) * FLOAT32
        count = emit(trace, count, block_plane, ((pixels - 1) * CB + 1) * FLOAT32, LOAD, pixels * FLOAT32)
        count = store(trace, count, out_address + item * pixels * FLOAT32, pixels * FLOAT32)
    return count


@njit(cache=True)
def trace_copy(trace, count, source_address, target_address, nbytes):
    """A contiguous copy (numpy's): the source read, the target written."""
    count = load(trace, count, source_address, nbytes)
    count = store(trace, count, target_address, nbytes)
    return count
