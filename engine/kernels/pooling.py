"""Global average pooling: NCHWc activations -> plain (N, C_padded) vectors.

Work items are (image, channel block), spread by prange; each sums its H x W pixels of CB
lanes in four register accumulators (`register_scratch`), then scales by 1 / (H * W). Padded
lanes are sums of zeros, so they stay exactly 0.

Napkin math (MobileNetV2: 1280 channels, 7 x 7): reads 251 KB, writes 5 KB, one add per
input element: 0.25 FLOP/byte, a streaming read.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.kernels._common import FASTMATH, _U, check_array, launch, register_scratch
from engine.kernels.layout import CB

SUMS = 4  # independent partial sums per channel block (the 4-way sum below is written out)
_scratch_sums = register_scratch(SUMS * CB)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _global_average_pool_kernel(x, out):
    n_images, n_blocks, height, width, _ = x.shape
    pixels = height * width
    scale = np.float32(1.0 / pixels)
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    for item in prange(n_images * n_blocks):  # item = n * n_blocks + b, the order of out's blocks too
        # four partial sums (pixels p, p+1, p+2, p+3) so four add chains run at once: one chain
        # would wait an add latency (3-4 cycles) per pixel
        acc = _scratch_sums()
        for k in range(SUMS * CB):
            acc[k] = 0.0
        base = item * pixels * CB
        quads = pixels // SUMS
        for p in range(quads):
            ux = _U(base + p * SUMS * CB)
            for k in range(SUMS * CB):
                acc[k] += xf[ux + _U(k)]
        for p in range(quads * SUMS, pixels):
            ux = _U(base + p * CB)
            for lane in range(CB):
                acc[lane] += xf[ux + _U(lane)]
        uo = _U(item * CB)
        for lane in range(CB):
            of[uo + _U(lane)] = ((acc[lane] + acc[CB + lane]) + (acc[2 * CB + lane] + acc[3 * CB + lane])) * scale


def global_average_pool(x: np.ndarray, out: np.ndarray) -> None:
    """out[n, c] = mean of x over H and W, written in place.

    x: (N, Cb, H, W, CB) float32 NCHWc; out: (N, Cb * CB) float32 plain, channel c at
    column c (padded channels come out 0).
    """
    fn = "global_average_pool"
    check_array(fn, "x", x, (None, None, None, None, CB))
    n_images, n_blocks, height, width, _ = x.shape
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "out", out, (n_images, n_blocks * CB))
    launch(_global_average_pool_kernel, x, out)


def global_average_pool_flops(batch: int, channels: int, height: int, width: int) -> int:
    """One add per input element (the final scaling, one multiply per channel, not counted)."""
    return batch * channels * height * width


def global_average_pool_bytes(batch: int, channels: int, height: int, width: int, budget) -> dict[str, int]:
    """Modelled bytes moved per memory level: the input once and the output once, everywhere."""
    # imported here, not at the top: a module-level import would put traffic.py in this file's
    # numba cache stamp (engine._numba_env), and every edit to the bytes model would recompile the kernels
    from engine.traffic import FLOAT32, LEVELS

    padded = budget.padded(channels)
    moved = batch * padded * (height * width + 1) * FLOAT32
    return {level: moved for level in LEVELS}
