"""From a bound kernel call (the `functools.partial(kernel, *args)` a plan step holds:
engine.kernels._common.bind) to its access trace: one tracer per kernel, in a registry
keyed by the kernel (`TRACERS`), like the plan's STEP_BUILDERS.

A tracer is `tracer(args, thread, threads) -> records` (engine.trace.records): the accesses
of thread `thread`'s share of the kernel's work items, split as numba's static prange
schedule splits them (thread t of T gets items [t * n // T, (t + 1) * n // T)), or of the
workers the kernel makes itself (the fused block: one contiguous run of items per worker);
a kernel of several parallel loops (squeeze-and-excitation) splits each loop so, and a loop
it runs serially falls to thread 0.
`threads=1` traces the whole call in the order one thread runs it.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from engine.kernels import (conv_nchwc, depthwise, direct_conv, elementwise, fused_block, linear, pointwise, pooling,
                            squeeze_excite)
from engine.kernels.layout import _nchw_to_nchwc, _nchwc_to_nchw
from engine.trace import depthwise as trace_dw
from engine.trace import conv_nchwc as trace_conv
from engine.trace import direct_conv as trace_direct
from engine.trace import elementwise as trace_elementwise
from engine.trace import fused_block as trace_fused
from engine.trace import fused_se_block as trace_fused_se
from engine.trace import layout as trace_layout
from engine.trace import linear as trace_linear
from engine.trace import max_pool as trace_max_pool
from engine.trace import pointwise as trace_pw
from engine.trace import pooling as trace_pool
from engine.trace import squeeze_excite as trace_se
from engine.trace.records import address_of, collect
from engine.trace.scratch import CONV_INPUT_ROWS, SE_HIDDEN, SE_POOLED, SE_SCALE, scratch_address


def share(items: int, thread: int, threads: int) -> tuple[int, int]:
    """[begin, end) of the `items` work items that thread `thread` of `threads` runs."""
    return thread * items // threads, (thread + 1) * items // threads


def _pointwise(args, thread: int, threads: int) -> np.ndarray:
    (x, w, bias, out, residual, has_residual, _low, _high, _act, _alpha, _beta, pointwise_pixels,
     pointwise_channels, ahead_offset, ahead_elements) = args
    cout_blocks = out.shape[1]
    items = trace_pw.pointwise_items(x.shape, cout_blocks, pointwise_pixels, pointwise_channels)
    begin, end = share(items, thread, threads)
    return collect(trace_pw.trace_pointwise, address_of(x), x.shape[:4], address_of(w), address_of(bias),
                   address_of(out), cout_blocks, address_of(residual), bool(has_residual), pointwise_pixels,
                   pointwise_channels, ahead_offset, ahead_elements, begin, end)


def _depthwise(args, thread: int, threads: int) -> np.ndarray:
    x, w, bias, out, stride_h, stride_w, pad_top, pad_left, _low, _high, _act, _alpha, _beta, depthwise_rows = args
    out_h, out_w = out.shape[2:4]
    begin, end = share(trace_dw.depthwise_items(x.shape, out_h, depthwise_rows), thread, threads)
    return collect(trace_dw.trace_depthwise, address_of(x), x.shape[:4], address_of(w), w.shape[1], w.shape[2],
                   address_of(bias), address_of(out), out_h, out_w, stride_h, stride_w, pad_top, pad_left,
                   depthwise_rows, begin, end)


def _direct(args, thread: int, threads: int) -> np.ndarray:
    (x, w, bias, out, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, _low, _high,
     _act, _alpha, _beta) = args
    out_h, out_w = out.shape[2:4]
    begin, end = share(trace_direct.direct_items(x.shape, w.shape[0], out_h), thread, threads)
    return collect(trace_direct.trace_direct, address_of(x), x.shape, address_of(w), w.shape[:4], address_of(bias),
                   address_of(out), out_h, out_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                   begin, end)


def _fused(args, thread: int, threads: int) -> np.ndarray:
    (x, ew, eb, has_expand, dw, db, pw, pb, out, residual, has_residual, stride, pad, *_clips_and_activations,
     block_rows,
     scratch_expand, scratch_depthwise) = args
    workers = scratch_expand.shape[0]
    begin, end = share(workers, thread, threads)
    return collect(trace_fused.trace_fused, address_of(x), x.shape[:4], address_of(ew), address_of(eb),
                   bool(has_expand), address_of(dw), address_of(db), dw.shape[0], address_of(pw), address_of(pb),
                   address_of(out), out.shape[1:4], address_of(residual), bool(has_residual), stride, pad, block_rows,
                   address_of(scratch_expand), scratch_expand.shape[1], address_of(scratch_depthwise),
                   scratch_depthwise.shape[1], workers, begin, end)


def _pool(args, thread: int, threads: int) -> np.ndarray:
    x, out = args
    n_images, n_blocks, height, width, _ = x.shape
    begin, end = share(n_images * n_blocks, thread, threads)
    return collect(trace_pool.trace_pool, address_of(x), height * width, address_of(out), begin, end)


def _linear(args, thread: int, threads: int) -> np.ndarray:
    x, w, bias, _act, _alpha, _beta, out = args
    begin, end = share(w.shape[0], thread, threads)
    return collect(trace_linear.trace_linear, address_of(x), x.shape[0], x.shape[1], address_of(w),
                   address_of(bias), address_of(out), out.shape[1], begin, end)


def _to_blocked(args, thread: int, threads: int) -> np.ndarray:
    x, out = args
    n_images, channels, height, width = x.shape
    n_blocks = out.shape[1]
    begin, end = share(n_images * n_blocks, thread, threads)
    return collect(trace_layout.trace_to_blocked, address_of(x), channels, height * width, address_of(out), n_blocks,
                   begin, end)


def _from_blocked(args, thread: int, threads: int) -> np.ndarray:
    x, out = args
    n_images, channels, height, width = out.shape
    begin, end = share(n_images * channels, thread, threads)
    return collect(trace_layout.trace_from_blocked, address_of(x), x.shape[1], height * width, address_of(out),
                   channels, begin, end)


def _conv_nchwc(args, thread: int, threads: int) -> np.ndarray:
    (x, w, bias, out, residual, has_residual, stride_h, stride_w, pad_top, pad_left, _low, _high, act, _alpha, _beta,
     pixels, channels) = args
    items = trace_conv.conv_nchwc_items(x.shape, w.shape, out.shape, stride_h, stride_w, pad_top, pad_left, pixels,
                                        channels)
    begin, end = share(items, thread, threads)
    return collect(trace_conv.trace_conv_nchwc, address_of(x), x.shape[:4], address_of(w),
                   (w.shape[0], w.shape[2], w.shape[3], w.shape[4]), address_of(bias), address_of(out), out.shape[2], out.shape[3],
                   address_of(residual), bool(has_residual), stride_h, stride_w, pad_top, pad_left, act != 0,
                   pixels, channels, scratch_address(CONV_INPUT_ROWS, thread), begin, end)


def _max_pool(args, thread: int, threads: int) -> np.ndarray:
    x, out, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, rows_per_band = args
    out_h, out_w = out.shape[2:4]
    begin, end = share(trace_max_pool.max_pool_items(x.shape, out_h, rows_per_band), thread, threads)
    return collect(trace_max_pool.trace_max_pool, address_of(x), x.shape[:4], address_of(out), out_h, out_w,
                   kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, rows_per_band, begin, end)


def _squeeze_excite(args, thread: int, threads: int) -> np.ndarray:
    x, w1, b1, w2, b2, mask, out, *_activations = args
    n_images, n_blocks = x.shape[:2]
    squeezed = w1.shape[0]
    planes = n_images * n_blocks
    if squeeze_excite.per_image_path(n_images, squeezed, n_blocks * squeeze_excite.CB, x.shape[2] * x.shape[3]):
        # whole-image items under one prange over the images
        return collect(trace_se.trace_squeeze_excite_per_image, address_of(x), x.shape[:4], address_of(w1),
                       address_of(b1), address_of(w2), address_of(b2), address_of(mask), address_of(out), squeezed,
                       scratch_address(SE_POOLED), scratch_address(SE_HIDDEN), scratch_address(SE_SCALE),
                       *share(n_images, thread, threads))
    parallel = n_images * squeezed * n_blocks * squeeze_excite.CB >= squeeze_excite.SERIAL_MACS
    if parallel:        # passes 2 and 3 under prange: four rows per item, then the last rows one by one
        quads = squeezed // 4
        rows = share(quads + squeezed - 4 * quads, thread, threads)
        blocks = share(n_blocks, thread, threads)
    else:               # serial, on the calling thread: one row per item
        rows = (0, squeezed) if thread == 0 else (0, 0)
        blocks = (0, n_blocks) if thread == 0 else (0, 0)
    pool = share(planes, thread, threads)
    # pooled, hidden, scale: allocated once per call by the calling thread, shared by all
    return collect(trace_se.trace_squeeze_excite, address_of(x), x.shape[:4], address_of(w1), address_of(b1),
                   address_of(w2), address_of(b2), address_of(mask), address_of(out), squeezed,
                   scratch_address(SE_POOLED), scratch_address(SE_HIDDEN), scratch_address(SE_SCALE), *pool, *rows,
                   parallel, *blocks, *pool)


def _activation_flat(args, thread: int, threads: int) -> np.ndarray:
    x, out, *_code_and_clip = args
    chunk = elementwise.CHUNK
    begin, end = share(-(-x.size // chunk), thread, threads)
    return collect(trace_elementwise.trace_activation, address_of(x), address_of(out), x.size, chunk, begin, end)


def _activation_blocked(args, thread: int, threads: int) -> np.ndarray:
    x, out, *_channels_code_and_clip = args
    n_images, n_blocks, height, width, lanes = x.shape
    begin, end = share(n_images * n_blocks, thread, threads)
    return collect(trace_elementwise.trace_activation, address_of(x), address_of(out), x.size,
                   height * width * lanes, begin, end)


TRACERS: dict[Callable, Callable] = {
    pointwise._pointwise_kernel: _pointwise,
    depthwise._depthwise_kernel: _depthwise,
    direct_conv._direct_kernel: _direct,
    fused_block._fused_block_kernel: _fused,
    trace_fused_se.TRACED_KERNEL: trace_fused_se.trace_args,
    pooling._global_average_pool_kernel: _pool,
    linear._linear_kernel: _linear,
    _nchw_to_nchwc: _to_blocked,
    _nchwc_to_nchw: _from_blocked,
    conv_nchwc._conv_kernel: _conv_nchwc,
    pooling._max_pool_kernel: _max_pool,
    squeeze_excite._squeeze_excite_kernel: _squeeze_excite,
    elementwise._activation_flat_kernel: _activation_flat,
    elementwise._activation_blocked_kernel: _activation_blocked,
}


def trace_call(kernel, args, thread: int = 0, threads: int = 1) -> np.ndarray:
    """Records of thread `thread` of `threads` running `kernel(*args)` (a kernel of TRACERS).
    KeyError names the kernels that have a tracer."""
    tracer = TRACERS.get(kernel)
    if tracer is None:
        raise KeyError(f"no access trace for {getattr(kernel, '__name__', kernel)!r}; traced kernels: "
                       f"{sorted(k.__name__ for k in TRACERS)}")
    return tracer(args, thread, threads)


def untraced_kernel(call) -> str | None:
    """The name of the kernel a plan step's call runs when no tracer covers it (a kernel
    added without one: max pooling, squeeze-and-excitation, the dense NCHWc conv, the
    stand-alone activation), else None."""
    found = kernel_and_arguments(call)
    if found is None or found[0] in TRACERS:
        return None
    return getattr(found[0], "__name__", repr(found[0]))


def kernel_and_arguments(call) -> tuple[Callable, tuple] | None:
    """(kernel, its arguments) of a plan step's call, or None for a call that runs no
    kernel of TRACERS (a copy in numpy). Besides a plain bound partial, a plan rebinds the
    first steps to read the caller's input (`_read_input_directly`: the kernel, the
    arguments before and after the input, as defaults; the input is then a fresh array of
    the bound one's shape) and the classifier to write a new output each run (the kernel
    and the arguments before and after the output, in its closure)."""
    if isinstance(call, functools.partial) and not call.keywords:
        return call.func, tuple(call.args)
    defaults = getattr(call, "__defaults__", None) or ()
    closure = dict(zip(call.__code__.co_freevars, (cell.cell_contents for cell in call.__closure__ or ())))
    if len(defaults) == 3 and call.__code__.co_varnames[:3] == ("kernel", "before", "after"):
        kernel, before, after = defaults
        return kernel, (*before, None, *after)         # None: the caller's input, filled by the caller
    if {"kernel", "before", "after", "shape"} <= closure.keys():
        return closure["kernel"], (*closure["before"], np.empty(closure["shape"], np.float32), *closure["after"])
    return None
