"""Access trace of the fully connected layer (engine.kernels.linear): per work item (a tile
of TILE output features) and image, the K inputs one scalar at a time, each followed by
its row of the tile's weight slab (TILE floats), then the biases and outputs."""
from __future__ import annotations

from numba import njit

from engine.kernels.linear import TILE
from engine.trace.records import FLOAT32, load, store


@njit(cache=True)
def trace_linear(trace, count, x_address, n_images, in_features, w_address, b_address, out_address, out_features,
                 item_begin, item_end):
    """`_linear_kernel`'s accesses for tiles [item_begin, item_end)."""
    for tile in range(item_begin, item_end):
        m0 = tile * TILE
        features = min(TILE, out_features - m0)
        w_tile = tile * in_features * TILE
        for n in range(n_images):
            x_row = n * in_features
            for kk in range(in_features):
                count = load(trace, count, x_address + (x_row + kk) * FLOAT32, FLOAT32)
                count = load(trace, count, w_address + (w_tile + kk * TILE) * FLOAT32, TILE * FLOAT32)
            count = load(trace, count, b_address + m0 * FLOAT32, features * FLOAT32)
            count = store(trace, count, out_address + (n * out_features + m0) * FLOAT32, features * FLOAT32)
    return count
