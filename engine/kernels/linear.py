"""Fully connected layer y = x @ W^T + b (ONNX Gemm with transB=1, or MatMul + Add).

Layout. The weight (M, K) "out x in" is packed into tiles of MT = 8 * CB output features:
(M_tiles, K_padded, MT), zero for features M..M_tiles*MT and for inputs K..K_padded. One
work item is one tile: it streams its K_padded x MT slab front to back (contiguous, so the
hardware prefetcher sees one stream) and keeps MT accumulators (8 vector registers, 8
independent FMA chains) in `register_scratch`. Items run in parallel over output features,
so two threads each read half of the weights.

Napkin math (MobileNetV2 classifier, 1280 -> 1000, batch 1): 5.2 MB of weights
(1024 padded features x 1280 x 4 B) read once for 2.56 MFLOP: 0.5 FLOP/byte, a pure weight
stream. At batch N each tile (1280 x 64 x 4 B = 328 KB) is re-read N times from L2.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import FASTMATH, _U, check_array, launch, register_scratch
from engine.kernels.activation import NO_ACTIVATION, activate, kernel_activation
from engine.kernels.layout import CB

TILE = 8 * CB  # output features per work item (MT)
_scratch_tile = register_scratch(TILE)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _linear_kernel(x, weight, bias, act, alpha, beta, out):
    # out last: a plan rebinds the classifier to write a new output array each run
    # (engine.plan._write_output_directly)
    n_images, in_features = x.shape
    n_tiles = weight.shape[0]
    out_features = out.shape[1]
    xf = x.reshape(x.size)
    wf = weight.reshape(weight.size)
    for tile in prange(n_tiles):
        acc = _scratch_tile()
        m0 = tile * TILE
        count = min(TILE, out_features - m0)
        w_tile = tile * in_features * TILE
        for n in range(n_images):
            for k in range(TILE):
                acc[k] = 0.0
            x_row = n * in_features
            for kk in range(in_features):
                xv = xf[_U(x_row + kk)]
                uw = _U(w_tile + kk * TILE)
                for k in range(TILE):
                    acc[k] += xv * wf[uw + _U(k)]
            for k in range(count):
                out[n, m0 + k] = activate(acc[k] + bias[m0 + k], act, alpha, beta)


def pack_linear(weight: np.ndarray, bias: np.ndarray | None, in_features_padded: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pack a (M, K) "out x in" weight for `linear`.

    Returns (packed_weight (ceil(M / MT), K_padded, MT), packed_bias (M,)) float32
    C-contiguous, MT = 8 * CB; rows K..K_padded and features M..M_tiles*MT are zero, so a
    padded input (e.g. pooled NCHWc channels) multiplies into nothing. bias None -> zeros.
    """
    weight = np.asarray(weight)
    if weight.ndim != 2 or min(weight.shape) < 1:
        raise ValueError(f"pack_linear: weight must have shape (M, K), got {weight.shape}")
    out_features, in_features = weight.shape
    if isinstance(in_features_padded, bool) or not isinstance(in_features_padded, (int, np.integer)) \
            or in_features_padded < in_features:
        raise ValueError(f"pack_linear: in_features_padded must be an int >= K = {in_features}, "
                         f"got {in_features_padded!r}")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (out_features,):
            raise ValueError(f"pack_linear: bias must have shape ({out_features},), got {bias.shape}")
    n_tiles = -(-out_features // TILE)
    padded = np.zeros((n_tiles * TILE, int(in_features_padded)), np.float32)
    padded[:out_features, :in_features] = weight
    packed = np.ascontiguousarray(padded.reshape(n_tiles, TILE, int(in_features_padded)).transpose(0, 2, 1))
    packed_bias = np.zeros(out_features, np.float32) if bias is None else bias.astype(np.float32)
    return packed, np.ascontiguousarray(packed_bias)


def linear(x: np.ndarray, packed_weight: np.ndarray, packed_bias: np.ndarray, out: np.ndarray, *,
           activation=NO_ACTIVATION) -> None:
    """out = act(x @ W^T + b), written in place.

    x: (N, K_padded) float32; packed_weight (M_tiles, K_padded, MT) and packed_bias (M,) from
    `pack_linear`; out: (N, M) float32. activation: (name, alpha, beta), any of
    engine.kernels.activation's (no padded lanes here); default none.
    """
    fn = "linear"
    check_array(fn, "x", x, (None, None))
    n_images, in_features = x.shape
    if n_images < 1 or in_features < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "packed_weight", packed_weight, (None, in_features, TILE))
    check_array(fn, "packed_bias", packed_bias, (None,))
    out_features = packed_bias.shape[0]
    n_tiles = -(-out_features // TILE)
    if packed_weight.shape[0] != n_tiles:
        raise ValueError(f"{fn}: packed_weight must have {n_tiles} tiles for {out_features} outputs, "
                         f"got {packed_weight.shape[0]}")
    check_array(fn, "out", out, (n_images, out_features))
    act, alpha, beta = kernel_activation(fn, activation, zero_preserving=False)
    launch(_linear_kernel, x, packed_weight, packed_bias, act, alpha, beta, out)


def linear_flops(batch: int, in_features: int, out_features: int) -> int:
    """2 per multiply-accumulate: 2 * batch * in_features * out_features (bias not counted)."""
    return 2 * batch * in_features * out_features


def linear_bytes(batch: int, in_features: int, out_features: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic), whole batch.

    Each work item streams its (K, TILE) weight slab once per image: registers see the
    weights batch times; across a boundary the slab is read once if it stays resident
    between images (it fits), else once per image. Inputs and outputs once.
    """
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, by_level, fits

    tile = TILE // CB * budget.lanes              # TILE at that lane width
    k_padded = budget.padded(in_features)
    tiles = -(-out_features // tile)
    w_bytes = tiles * tile * (k_padded + 1) * FLOAT32
    x_bytes = batch * k_padded * FLOAT32
    y_bytes = batch * out_features * FLOAT32
    registers = w_bytes * batch + x_bytes * tiles * tile // budget.lanes + y_bytes
    slab = k_padded * tile * FLOAT32
    below = {b: x_bytes + y_bytes + (w_bytes if batch == 1 or fits(slab, budget.capacity_above(b)) else w_bytes * batch)
             for b in ("L2", "L3", "DRAM")}
    return by_level(registers, below)
