"""Large float32 buffers on 2 MiB pages where the OS offers them, 64-byte aligned otherwise.

At batch 1 a run streams the 14 MB of packed weights and a few MB of activations through
memory, more than the L2 TLB covers in 4 KiB pages (2048 entries = 8 MiB on Zen 3), so
pages are walked again on every run. The packed weights (one buffer, engine.plan.
PackedWeights) and each plan's activation arena are big buffers: mapped on their own and
advised to Linux's transparent huge pages (madvise(MADV_HUGEPAGE); THP "madvise" or
"always" mode), they take a handful of TLB entries. Measured side by side in one process
(MobileNetV2, batch 1, 250-300 interleaved runs): 0.96-0.97x the time on 2 threads,
0.97-0.98x on 1.

Where huge pages are not offered (another OS, THP "never", no MADV_HUGEPAGE) the buffers
are plain numpy memory; results are the same either way.
"""
from __future__ import annotations

import functools
import mmap
from pathlib import Path

import numpy as np

HUGE_PAGE = 2 << 20              # bytes: x86-64 transparent huge page
CACHE_LINE = 64                  # bytes: every buffer starts on a cache line
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@functools.lru_cache(maxsize=1)
def huge_pages_offered() -> bool:
    """Whether buffers can be advised to transparent huge pages here (read once)."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        setting = THP_SETTING.read_text()
    except OSError:
        return False
    return "[never]" not in setting


def aligned_empty(elements: int) -> np.ndarray:
    """An uninitialised float32 array of `elements`, C-contiguous and writable, starting on
    a 64-byte line; a buffer of HUGE_PAGE bytes or more gets a mapping of its own that
    starts on a 2 MiB boundary and is advised to huge pages (see the module docstring)."""
    elements = int(elements)
    if elements < 0:
        raise ValueError(f"aligned_empty: elements must be >= 0, got {elements}")
    nbytes = 4 * elements
    if nbytes >= HUGE_PAGE and huge_pages_offered():
        huge = _huge_page_empty(nbytes)
        if huge is not None:
            return huge
    raw = np.empty(elements + CACHE_LINE // 4, np.float32)
    offset = (-raw.ctypes.data % CACHE_LINE) // 4
    return raw[offset:offset + elements]


def _huge_page_empty(nbytes: int) -> np.ndarray | None:
    """float32 view of `nbytes` in an anonymous mapping, 2 MiB aligned, advised to huge
    pages; None if the mapping or the advice is refused. The mapping lives as long as an
    array viewing it (numpy holds the buffer) and is unmapped with the last one."""
    size = -(-nbytes // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE     # room to slide to a boundary
    try:
        mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        mapping.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return None
    raw = np.frombuffer(mapping, dtype=np.uint8)
    offset = -raw.ctypes.data % HUGE_PAGE
    return raw[offset:offset + nbytes].view(np.float32)
