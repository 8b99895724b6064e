"""The stand-alone activation step: out = clip(activate(x), low, high), element by element.

For an activation no kernel epilogue could take (one that follows something other than a
conv, or one that is not 0 at 0 after a conv whose padded lanes must stay 0). Two layouts:
- flat (N, F) float32 (F >= channels; columns >= channels written 0): chunks of CHUNK
  elements, spread by prange;
- NCHWc (N, Cb, H, W, CB) float32: items (image, channel block), spread by prange; the
  result multiplied by the block's lane mask (1.0 on real channels, 0.0 on padded ones), so
  padded lanes come out exactly 0 whatever the activation gives at 0 (sigmoid: 1/2).
out may be x itself: each vector is read before it is written. The loop is written once
per activation code (`_activate_span` inlined with a constant code), so no branch on the
code runs per element. The kernels compile with error_model="numpy": under numba's default
("python") every float division checks its divisor for zero to raise ZeroDivisionError,
and that branch keeps LLVM from vectorising silu's and sigmoid's divide.

Napkin math: one read and one write of every element, 0-4 FLOPs each (hardswish 4: the
activation's `activation_flops`): 0.5 FLOP/byte at most, a stream.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from engine.kernels._common import FASTMATH, _U, check_array, check_int, check_range, launch, register_scratch
from engine.kernels.activation import HARDSIGMOID, HARDSWISH, NONE, SIGMOID, SILU, activate, kernel_activation
from engine.kernels.activation import activation_flops as _activation_flops
from engine.kernels.layout import CB, channel_blocks

CHUNK = 16 * 1024   # elements per work item of a flat tensor (64 KB: several per thread on any layer)

_scratch_lanes = register_scratch(CB)
_scratch_mask = register_scratch(CB)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _activate_span(xf, of, start, end, mask, code, alpha, beta, low, high):
    """of[i] = clip(activate(xf[i])) * mask[(i - start) % CB] for i in [start, end), whole
    vectors of CB through a stack scratch (so LLVM vectorises the lane loop although xf and
    of may alias), the tail element by element."""
    acc = _scratch_lanes()
    vectors = (end - start) // CB
    for v in range(vectors):
        u = _U(start + v * CB)
        for lane in range(CB):
            acc[lane] = min(max(activate(xf[u + _U(lane)], code, alpha, beta), low), high) * mask[lane]
        for lane in range(CB):
            of[u + _U(lane)] = acc[lane]
    for i in range(start + vectors * CB, end):
        of[i] = min(max(activate(xf[i], code, alpha, beta), low), high) * mask[(i - start) % CB]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _span(xf, of, start, end, mask, code, alpha, beta, low, high):
    # one call per code with the code a literal, so each inlined copy folds its branches away
    if code == HARDSWISH:
        _activate_span(xf, of, start, end, mask, HARDSWISH, alpha, beta, low, high)
    elif code == SILU:
        _activate_span(xf, of, start, end, mask, SILU, alpha, beta, low, high)
    elif code == HARDSIGMOID:
        _activate_span(xf, of, start, end, mask, HARDSIGMOID, alpha, beta, low, high)
    elif code == SIGMOID:
        _activate_span(xf, of, start, end, mask, SIGMOID, alpha, beta, low, high)
    else:
        _activate_span(xf, of, start, end, mask, NONE, alpha, beta, low, high)


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _activation_flat_kernel(x, out, channels, code, alpha, beta, low, high):
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    size = x.size
    width = x.shape[1]
    a, b, lo, hi = np.float32(alpha), np.float32(beta), np.float32(low), np.float32(high)
    for item in prange((size + CHUNK - 1) // CHUNK):
        mask = _scratch_mask()
        for lane in range(CB):
            mask[lane] = 1.0
        start, end = item * CHUNK, min(size, (item + 1) * CHUNK)
        _span(xf, of, start, end, mask, code, a, b, lo, hi)
        if channels < width:     # the padded columns of this chunk's rows, overwritten with 0
            for row in range(start // width, (end - 1) // width + 1):
                for i in range(max(start, row * width + channels), min(end, (row + 1) * width)):
                    of[i] = 0.0


@njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _activation_blocked_kernel(x, out, channels, code, alpha, beta, low, high):
    n_images, n_blocks, height, width, _ = x.shape
    plane = height * width * CB
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    a, b, lo, hi = np.float32(alpha), np.float32(beta), np.float32(low), np.float32(high)
    for item in prange(n_images * n_blocks):     # item = n * n_blocks + block
        mask = _scratch_mask()
        first_channel = (item % n_blocks) * CB
        for lane in range(CB):
            mask[lane] = 1.0 if first_channel + lane < channels else 0.0
        _span(xf, of, item * plane, (item + 1) * plane, mask, code, a, b, lo, hi)


def _check_in_place(fn: str, x: np.ndarray, out: np.ndarray) -> None:
    """out may be x (the same memory: same start, and the shapes already equal and both
    C-contiguous), or not overlap it at all: a partial overlap would read elements already written."""
    if out is x or out.__array_interface__["data"][0] == x.__array_interface__["data"][0]:
        return
    if np.may_share_memory(x, out):
        raise ValueError(f"{fn}: out must be x itself or not overlap x, got out partly overlapping x")


def activation_step(x: np.ndarray, out: np.ndarray, channels: int, *, activation,
                    clip=(-math.inf, math.inf)) -> None:
    """out = clip(activate(x), clip[0], clip[1]), written in place; out may be x (any
    other overlap with x is a ValueError).

    x, out: the same shape, float32 C-contiguous: flat (N, F) with channels <= F (columns
    >= channels, a padded vector's, are written 0), or NCHWc
    (N, Cb, H, W, CB) with ceil(channels / CB) == Cb, whose padded lanes (channel >=
    channels) are written 0. activation: (name, alpha, beta), any of
    engine.kernels.activation's (none, hardswish, silu, hardsigmoid, sigmoid); clip
    (low, high), low <= high, applied after it.
    """
    fn = "activation_step"
    code, alpha, beta = kernel_activation(fn, activation, zero_preserving=False)
    low, high = check_range(fn, "clip", clip)
    channels = check_int(fn, "channels", channels, 1)
    if isinstance(x, np.ndarray) and x.ndim == 2:
        check_array(fn, "x", x, (None, None))
        if x.shape[1] < channels:
            raise ValueError(f"{fn}: x must have at least channels = {channels} columns, got shape {x.shape}")
        check_array(fn, "out", out, x.shape)
        _check_in_place(fn, x, out)
        launch(_activation_flat_kernel, x, out, channels, code, alpha, beta, low, high)
        return
    check_array(fn, "x", x, (None, channel_blocks(channels), None, None, CB))
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: x must have no empty dimension, got {x.shape}")
    check_array(fn, "out", out, x.shape)
    _check_in_place(fn, x, out)
    launch(_activation_blocked_kernel, x, out, channels, code, alpha, beta, low, high)


def activation_step_flops(batch: int, channels: int, h: int, w: int, activation,
                          clip=(-math.inf, math.inf)) -> int:
    """The activation's FLOPs per element (`activation_flops`), plus 1 for a clip that bounds
    anything (not (-inf, inf)), over the real elements (h = w = 1 for a flat tensor)."""
    clipped = tuple(float(v) for v in clip) != (-math.inf, math.inf)
    return batch * channels * h * w * (_activation_flops(activation) + clipped)


def activation_step_bytes(batch: int, channels: int, h: int, w: int, budget, blocked: bool = True) -> dict[str, int]:
    """Modelled bytes moved per memory level (engine.traffic): the input once and the output
    once, everywhere; channels padded to whole blocks when `blocked` (NCHWc), not for a
    flat (N, F) tensor (h = w = 1)."""
    from engine.traffic import FLOAT32, LEVELS     # here: as in pooling.global_average_pool_bytes

    padded = budget.padded(channels) if blocked else channels
    moved = 2 * batch * padded * h * w * FLOAT32
    return {level: moved for level in LEVELS}
