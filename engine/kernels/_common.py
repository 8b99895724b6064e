"""What every kernel module shares: the fast-math flags, unsigned flat indexing, stack
scratch buffers that LLVM keeps in registers, and the cheap argument checks the public
wrappers run before anything reaches numba (a bad shape in numba is a segfault)."""
from __future__ import annotations

import functools
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# LLVM fast-math flags every kernel here compiles with: contract lets a*b+c become one
# FMA, nnan/ninf/nsz let min/max become vminps/vmaxps. No 'reassoc': a sum keeps the order
# the code gives it, so results do not depend on how LLVM vectorised it (and full fastmath
# was not faster: bench/README, "Kernel design figures").
FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}

_U = np.uint64  # flat indices are unsigned: numba then skips the negative-index wrap-around


def register_scratch(count: int):
    """A function `scratch()` returning a float32 array of `count` elements that lives on the
    stack of the njit function calling it (an `alloca` in that function's entry block). With
    constant indices (lane loops over CB) LLVM keeps it in registers. Contents unspecified
    (numba zero-fills an alloca once at function entry); valid until the caller returns.
    Under NUMBA_DISABLE_JIT it is a plain np.empty, so the kernels also run as Python."""
    if numba.config.DISABLE_JIT:
        return lambda: np.empty(count, np.float32)

    @intrinsic
    def stack_pointer(typingctx):
        def codegen(context, builder, signature, args):
            buffer = cgutils.alloca_once(builder, ir.ArrayType(ir.FloatType(), count))
            return builder.bitcast(buffer, ir.PointerType(ir.FloatType()))

        return types.CPointer(types.float32)(), codegen

    # inline="always" is what makes this safe: the alloca lands in the caller's frame
    @njit(inline="always")
    def scratch():
        return numba.carray(stack_pointer(), (count,))

    return scratch


_FLOAT32 = np.dtype(np.float32)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_array(function: str, name: str, array, shape: tuple, dtype=_FLOAT32) -> None:
    """Raise ValueError unless `array` is a C-contiguous ndarray of `dtype` with `shape`
    (an entry None matches any size). The message names the function, expected and got.
    The right array takes the first test and returns: the wrappers call this on every
    kernel call that is not bound (`bind`)."""
    if type(array) is np.ndarray and array.dtype == dtype and array.ndim == len(shape) and array.flags.c_contiguous:
        # fast path for the common case; the checks below name what is wrong
        got = array.shape
        for axis in range(len(shape)):
            if shape[axis] is not None and shape[axis] != got[axis]:
                break
        else:
            return
    expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{function}: {name} must be a numpy array of shape {expected} {np.dtype(dtype)}, "
                         f"got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(f"{function}: {name} must be {np.dtype(dtype)}, got {array.dtype}")
    if array.ndim != len(shape) or any(s is not None and s != g for s, g in zip(shape, array.shape)):
        raise ValueError(f"{function}: {name} must have shape {expected}, got {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{function}: {name} must be C-contiguous, got strides {array.strides}")


def check_clip(function: str, clip_min: float, clip_max: float) -> tuple[float, float]:
    """Validate the clip bounds and return them as finite float32-representable floats.

    Padded lanes hold 0 and see zero weights and bias, so they stay exactly 0 only if
    clip_min <= 0 <= clip_max. Infinite bounds become +-float32 max (same result for every
    finite value; keeps infinities away from the 'ninf' fast-math flag)."""
    low, high = float(clip_min), float(clip_max)
    if not low <= 0.0 <= high:  # also False for NaN
        raise ValueError(f"{function}: clip bounds must satisfy clip_min <= 0 <= clip_max (padded channels "
                         f"must stay 0), got clip_min={clip_min}, clip_max={clip_max}")
    return max(low, -_FLOAT32_MAX), min(high, _FLOAT32_MAX)


def check_range(function: str, name: str, clip) -> tuple[float, float]:
    """`clip` = (low, high), low <= high, as floats with infinities (and anything beyond
    float32's range) brought to +-float32 max (keeps infinities away from the 'ninf' fast-math
    flag); else a ValueError naming `function` and `name`. Lenient, unlike `check_clip`: for
    kernels whose padded lanes are masked, not kept 0 by the clip, so 0 need not lie within."""
    try:
        low, high = (float(v) for v in clip)
    except (TypeError, ValueError):
        raise ValueError(f"{function}: {name} must be (low, high), got {clip!r}") from None
    if not low <= high:      # also False for NaN
        raise ValueError(f"{function}: {name} must have low <= high, got {clip!r}")
    return max(low, -_FLOAT32_MAX), min(high, _FLOAT32_MAX)


def check_int(function: str, name: str, value, minimum: int) -> int:
    """`value` as an int, or ValueError unless it is an integer >= minimum (bools refused)."""
    if type(value) is int or (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))):
        if value >= minimum:
            return int(value)
    raise ValueError(f"{function}: {name} must be an int >= {minimum}, got {value!r}")


def _check_output_size(fn: str, axis: str, got: int, size: int, kernel: int, stride: int, pad_start: int,
                       dilation: int = 1) -> None:
    """The output size must be floor((size + pad_start + pad_end - eff_kernel) / stride) + 1
    for some end pad >= 0 (eff_kernel = (kernel - 1) * dilation + 1), i.e. at least the size
    that end pad 0 gives. ONNX bounds the end pad no further; rows or columns whose window
    lies wholly in the padding come out as clip(bias)."""
    effective = (kernel - 1) * dilation + 1
    smallest = max(1, (size + pad_start - effective) // stride + 1)
    if got < smallest:
        raise ValueError(f"{fn}: out {axis} must be >= {smallest} for input {axis} {size}, kernel {kernel}, "
                         f"stride {stride}, start pad {pad_start} and an end pad >= 0, got {got}")


# ---------------------------------------------------------------------------- binding

_capture = threading.local()


def launch(kernel, *args) -> None:
    """Every public wrapper ends here: run `kernel(*args)` — or, inside `bind`, hand the
    validated arguments to it instead of running."""
    target = getattr(_capture, "target", None)
    if target is None:
        kernel(*args)
    else:
        target.append((kernel, args))


def bind(wrapper, *args, **kwargs):
    """Validate a kernel call once through its public `wrapper` and return a zero-argument
    callable that runs the kernel on exactly these arrays without re-checking them.

    The runtime's plans use this: their buffers and packed weights never change after the
    plan is built, so checking shapes again on every run would be wasted (a wrapper's checks
    cost microseconds per call, against tens for a small layer: bench/README)."""
    captured: list = []
    _capture.target = captured
    try:
        wrapper(*args, **kwargs)
    finally:
        _capture.target = None
    if not captured:
        return lambda: None               # the wrapper found nothing to do (an empty input)
    kernel, kernel_args = captured[0]
    return functools.partial(kernel, *kernel_args)
