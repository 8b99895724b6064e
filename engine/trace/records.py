"""The access records every trace generator writes, and the buffer they write them into.

A trace is an int64 array of records (RECORD_FIELDS columns), in the order the kernel
issues the accesses:
    address         byte address of the first byte touched (the real buffer's address)
    length          bytes touched from there (one vector, one row of a window, a micro-tile's
                    inputs for one channel block: a contiguous run the kernel reads in one go)
    kind            LOAD, STORE or PREFETCH (a software prefetch: no register traffic)
    register_bytes  bytes the kernel's load/store instructions move for this record (the
                    model's "L1" level). Usually `length`; more where the kernel reads the
                    same bytes several times inside one record (a depthwise window row is read
                    by up to three overlapping windows), 0 for a prefetch.

Granularity. A record is a contiguous run the kernel touches inside one step of its
innermost loop that matters to a cache: for a 1x1 conv one input-channel block of one
micro-tile (its weight vectors per output block, then its inputs), for a depthwise row the
three input rows its windows read, then the outputs. Inside a record the simulator walks
the lines in address order; the kernel interleaves them (lane by lane). Those lines are a
few dozen, all touched within a few hundred instructions, so the order inside a record
changes no miss unless a level's set holds fewer ways than the record's lines that map to
it, which no level of the machines here does (12+ ways).

Generators are @njit functions `f(trace, count, ...) -> count` that append records with
`emit` while count < len(trace) and count the rest, so a caller that gave too small a
buffer learns the size it needs and runs again (`collect`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

LOAD, STORE, PREFETCH = 0, 1, 2
KIND_NAMES = {LOAD: "load", STORE: "store", PREFETCH: "prefetch"}
RECORD_FIELDS = 4       # address, length, kind, register_bytes
FLOAT32 = 4             # bytes per element


@njit(cache=True, inline="always")
def emit(trace, count, address, length, kind, register_bytes):
    """Append one record (when there is room) and return the new count."""
    if count < trace.shape[0]:
        trace[count, 0] = address
        trace[count, 1] = length
        trace[count, 2] = kind
        trace[count, 3] = register_bytes
    return count + 1


@njit(cache=True, inline="always")
def load(trace, count, address, length):
    return emit(trace, count, address, length, LOAD, length)


@njit(cache=True, inline="always")
def store(trace, count, address, length):
    return emit(trace, count, address, length, STORE, length)


@njit(cache=True, inline="always")
def prefetch(trace, count, address, length):
    return emit(trace, count, address, length, PREFETCH, 0)


def collect(generator, *args, capacity: int = 1 << 16) -> np.ndarray:
    """Run `generator(trace, 0, *args)` until its records fit; returns the (count, 4) records."""
    trace = np.empty((capacity, RECORD_FIELDS), np.int64)
    count = generator(trace, 0, *args)
    if count > capacity:
        trace = np.empty((count, RECORD_FIELDS), np.int64)
        again = generator(trace, 0, *args)
        assert again == count, "a trace generator gave two lengths for the same arguments"
    return trace[:count]


def address_of(array: np.ndarray) -> int:
    """Byte address of an array's first element."""
    return int(array.__array_interface__["data"][0])


def register_bytes(trace: np.ndarray) -> int:
    """Bytes the traced loads and stores move between registers and L1."""
    return int(trace[:, 3].sum())


def touched_elements(trace: np.ndarray, array: np.ndarray, kind: int) -> np.ndarray:
    """Boolean mask over `array`'s float32 elements (flat) that `kind` records touch. A
    record counts whole elements: a prefetch of one byte touches that byte's element."""
    base, size = address_of(array), array.size
    mask = np.zeros(size, bool)
    for address, length, record_kind, _ in trace:
        if record_kind != kind:
            continue
        first = max(0, (address - base) // FLOAT32)
        last = min(size, -(-(address + length - base) // FLOAT32))
        if first < last:
            mask[first:last] = True
    return mask
