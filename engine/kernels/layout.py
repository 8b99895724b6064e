"""The blocked channel layout every kernel shares, and conversions to and from it.

Activations between layers live in NCHWc: shape (N, C_blocks, H, W, CB) float32,
C-contiguous, with C padded up to a multiple of CB and the padded channels held at
exactly 0.0 (zero weights and zero bias keep them there through conv + clip).

CB is the SIMD width in fp32 lanes: 16 where the CPU has AVX-512 (one zmm register),
8 otherwise (one ymm register), or what $ROOFLINE_LANES forces (engine._numba_env). It is
a module constant so numba folds it into the kernels at compile time; numba's cache is
keyed by CPU and features, which differ between the two widths, so a cache built on
another CPU or for the other width is never reused here.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine._numba_env import LANES

CB: int = LANES


def channel_blocks(channels: int, lanes: int = CB) -> int:
    """Number of `lanes`-wide channel blocks holding `channels` channels (default: CB, the
    width the kernels are built for; the bytes model asks for other machines' widths)."""
    return (channels + lanes - 1) // lanes


def padded_channels(channels: int, lanes: int = CB) -> int:
    """`channels` rounded up to a multiple of `lanes` (default CB)."""
    return channel_blocks(channels, lanes) * lanes


@njit(parallel=True, cache=True)
def _nchw_to_nchwc(x, out):
    # x: (N, C, H, W) -> out: (N, Cb, H, W, CB); padded lanes are written as 0
    n_images, channels, height, width = x.shape
    n_blocks = out.shape[1]
    for item in prange(n_images * n_blocks):
        n = item // n_blocks
        b = item % n_blocks
        for lane in range(CB):
            c = b * CB + lane
            if c < channels:
                for h in range(height):
                    for w in range(width):
                        out[n, b, h, w, lane] = x[n, c, h, w]
            else:
                for h in range(height):
                    for w in range(width):
                        out[n, b, h, w, lane] = 0.0


@njit(parallel=True, cache=True)
def _nchwc_to_nchw(x, out):
    # x: (N, Cb, H, W, CB) -> out: (N, C, H, W), dropping padded lanes
    n_images, channels, height, width = out.shape
    for item in prange(n_images * channels):
        n = item // channels
        c = item % channels
        b = c // CB
        lane = c % CB
        for h in range(height):
            for w in range(width):
                out[n, c, h, w] = x[n, b, h, w, lane]


def nchw_to_nchwc(x: np.ndarray, out: np.ndarray) -> None:
    """Write x (N, C, H, W) float32 into out (N, ceil(C/CB), H, W, CB) float32, padded lanes 0.
    Both C-contiguous; checked here, since an array of another rank in the kernel is a numba
    typing error and one of another size an out-of-bounds write."""
    # imported here, not at the top: a module-level import would put _common.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to it would recompile these kernels
    from engine.kernels._common import check_array, launch

    fn = "nchw_to_nchwc"
    check_array(fn, "x", x, (None, None, None, None))
    n, c, h, w = x.shape
    check_array(fn, "out", out, (n, channel_blocks(c), h, w, CB))
    launch(_nchw_to_nchwc, x, out)


def nchwc_to_nchw(x: np.ndarray, out: np.ndarray) -> None:
    """Write x (N, Cb, H, W, CB) float32 into out (N, C, H, W) float32 (C <= Cb * CB; the
    padded lanes are dropped). Both C-contiguous; checked here, as nchw_to_nchwc."""
    from engine.kernels._common import check_array, launch     # here: as in nchw_to_nchwc

    fn = "nchwc_to_nchw"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n, blocks, h, w, _ = x.shape
    check_array(fn, "out", out, (n, None, h, w))
    if channel_blocks(out.shape[1]) != blocks:
        raise ValueError(f"{fn}: out has {out.shape[1]} channels, which x's {blocks} blocks of {CB} do not hold "
                         "exactly")
    launch(_nchwc_to_nchw, x, out)


def to_blocked(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float32 -> (N, ceil(C/CB), H, W, CB) float32, padded lanes 0."""
    if x.ndim != 4 or x.dtype != np.float32:
        raise ValueError(f"to_blocked expects a 4-d float32 array, got {x.ndim}-d {x.dtype}")
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty((n, channel_blocks(c), h, w, CB), dtype=np.float32)
    _nchw_to_nchwc(x, out)
    return out


def from_blocked(x: np.ndarray, channels: int) -> np.ndarray:
    """(N, Cb, H, W, CB) float32 -> (N, channels, H, W) float32."""
    if x.ndim != 5 or x.shape[4] != CB or x.dtype != np.float32:
        raise ValueError(f"from_blocked expects (N, Cb, H, W, {CB}) float32, got {x.shape} {x.dtype}")
    if not 0 < channels <= x.shape[1] * CB:
        raise ValueError(f"channels must be in 1..{x.shape[1] * CB}, got {channels}")
    n, _, h, w, _ = x.shape
    out = np.empty((n, channels, h, w), dtype=np.float32)
    _nchwc_to_nchw(np.ascontiguousarray(x), out)
    return out
