"""`Arena`: one buffer for a plan's activations, tensors whose lifetimes do not overlap
sharing memory."""
from __future__ import annotations

import numpy as np

from engine.pages import aligned_empty


class Arena:
    """Offset assignment in one buffer: tensors whose lifetimes do not overlap share memory.

    A tensor is live from the step that writes it to the last step that reads it, both
    inclusive, so a step's inputs and its output never overlap. Placement is greedy by size
    (largest tensor first, each at the lowest-waste gap between the already-placed tensors
    whose lifetimes overlap its own), which for a chain of layers lands at or near the peak
    sum of simultaneously live tensors, the least any assignment can use. Offsets are
    multiples of 64 bytes so vector loads of a whole channel block never split lines."""

    ALIGN = 16                            # float32 elements per 64 bytes

    def __init__(self):
        self.shape_of: dict[str, tuple[int, ...]] = {}
        self.lifetime: dict[str, tuple[int, int]] = {}  # tensor -> (first step, last step)
        self._offsets: dict[str, int] | None = None
        self._elements = 0

    def assign(self, tensor: str, shape: tuple[int, ...], first: int, last: int) -> None:
        self.shape_of[tensor] = shape
        self.lifetime[tensor] = (first, max(first, last))
        self._offsets = None

    def _padded(self, tensor: str) -> int:
        size = int(np.prod(self.shape_of[tensor]))
        return -(-size // self.ALIGN) * self.ALIGN

    def _place(self) -> dict[str, int]:
        if self._offsets is not None:
            return self._offsets
        offsets: dict[str, int] = {}
        placed: list[tuple[int, int, int, int]] = []      # (offset, end, first, last) in elements
        for tensor in sorted(self.shape_of, key=lambda t: (-self._padded(t), self.lifetime[t])):
            size = self._padded(tensor)
            first, last = self.lifetime[tensor]
            busy = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
            best, best_gap, cursor = None, None, 0
            for offset, end in busy:
                gap = offset - cursor
                if gap >= size and (best_gap is None or gap < best_gap):
                    best, best_gap = cursor, gap
                cursor = max(cursor, end)
            offset = cursor if best is None else best
            offsets[tensor] = offset
            placed.append((offset, offset + size, first, last))
        self._offsets = offsets
        self._elements = max((o + self._padded(t) for t, o in offsets.items()), default=0)
        return offsets

    def materialise(self, allocate=None) -> dict[str, np.ndarray]:
        """One array view per tensor, into one new buffer (engine.pages: huge pages where offered),
        or into `allocate(elements)`'s float32 array (at least that many elements)."""
        offsets = self._place()
        memory = (allocate or aligned_empty)(self._elements)
        return {t: memory[o:o + int(np.prod(self.shape_of[t]))].reshape(self.shape_of[t])
                for t, o in offsets.items()}

    @property
    def nbytes(self) -> int:
        self._place()
        return 4 * self._elements
