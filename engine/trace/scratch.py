"""Addresses for the buffers a kernel allocates itself (numba's np.empty inside the kernel:
conv_nchwc's zero-bordered input rows, squeeze_excite's pooled / hidden / scale vectors).

Their real addresses are whatever the allocator hands out on each call, which a trace
cannot know. They are modelled as one fixed region per (buffer kind, thread), above the
47-bit user address space so that no real array's lines can alias them: the allocator
hands a freed block of the same size back to the thread that freed it, so one fixed
address per thread is what the caches see from call to call. Regions of different kinds
and threads start on different pages and lines (so they do not all map to set 0).
"""
from __future__ import annotations

SCRATCH_BASE = 1 << 48          # beyond any user-space address (x86-64 and AArch64: < 2**47 / 2**48)
REGION = 1 << 36                # bytes per (kind, thread): far more than any buffer a kernel allocates
THREAD_SLOTS = 256

CONV_INPUT_ROWS, SE_POOLED, SE_HIDDEN, SE_SCALE = range(4)


def scratch_address(kind: int, thread: int = 0) -> int:
    """Byte address of buffer `kind`'s region for thread `thread` (see the module docstring)."""
    slot = kind * THREAD_SLOTS + thread
    return SCRATCH_BASE + slot * REGION + slot * (4096 + 64)
