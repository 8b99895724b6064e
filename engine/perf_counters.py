"""Measured cache-miss traffic from Linux hardware counters, beside the modelled bytes.

`PerfCounterHook` opens the kernel's generic hardware counters through perf_event_open(2)
(process-wide, this thread and the threads it starts later) and, at every layer, records
how many last-level-cache misses and cache references happened since the previous layer.
Many virtual machines (these among them) expose no hardware counters: then `available`
is False, `reason` says why, and every record says "not available" — never zeros.

    hook = PerfCounterHook()
    model.run(x, hooks=[engine.Recorder(), hook])
    hook.records      # [{"step_index", "name", "llc_misses", "llc_references", "dram_bytes_estimate"} | "not available"]
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct

NOT_AVAILABLE = "not available"

_PERF_TYPE_HARDWARE = 0
_PERF_COUNT_HW_CACHE_REFERENCES = 2
_PERF_COUNT_HW_CACHE_MISSES = 3
_SYSCALL_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_ATTR_SIZE = 128                    # PERF_ATTR_SIZE_VER7 and later accept 128
_INHERIT = 1 << 1                   # count child threads (numba's workers) too
_EXCLUDE_KERNEL = 1 << 5
_EXCLUDE_HV = 1 << 6
CACHE_LINE_BYTES = 64


def _open_counter(config: int) -> int:
    """A perf_event_open file descriptor counting `config` for this process, or raise OSError."""
    number = _SYSCALL_PERF_EVENT_OPEN.get(platform.machine())
    if number is None or not hasattr(ctypes, "CDLL"):
        raise OSError(f"perf_event_open is not known on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    # struct perf_event_attr: type u32, size u32, config u64, sample_period u64,
    # sample_type u64, read_format u64, flags u64, then zeros
    attr = struct.pack("IIQQQQQ", _PERF_TYPE_HARDWARE, _ATTR_SIZE, config, 0, 0, 0,
                       _INHERIT | _EXCLUDE_KERNEL | _EXCLUDE_HV).ljust(_ATTR_SIZE, b"\0")
    buffer = ctypes.create_string_buffer(attr, _ATTR_SIZE)
    fd = libc.syscall(number, buffer, 0, -1, -1, 0)   # pid 0 = this process, any CPU
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return fd


def _read_counter(fd: int) -> int:
    return struct.unpack("Q", os.read(fd, 8))[0]


class PerfCounterHook:
    """A hook recording measured LLC misses per layer where the CPU exposes counters."""

    def __init__(self):
        self.records: list = []
        self.available = False
        self.reason = ""
        self._fds: dict[str, int] = {}
        self._last: dict[str, int] = {}
        try:
            self._fds = {"llc_misses": _open_counter(_PERF_COUNT_HW_CACHE_MISSES),
                         "llc_references": _open_counter(_PERF_COUNT_HW_CACHE_REFERENCES)}
            self.available = True
        except OSError as error:
            self.reason = f"hardware counters {NOT_AVAILABLE}: perf_event_open failed ({error})"
            self.close()

    def _snapshot(self) -> dict[str, int]:
        return {name: _read_counter(fd) for name, fd in self._fds.items()}

    def on_run_start(self, info) -> None:
        if self.available:
            self._last = self._snapshot()

    def on_layer(self, record) -> None:
        if not self.available:
            self.records.append({"step_index": record.step_index, "name": record.name, "measured": NOT_AVAILABLE,
                                 "reason": self.reason})
            return
        now = self._snapshot()
        delta = {name: now[name] - self._last.get(name, now[name]) for name in now}
        self._last = now
        self.records.append({"step_index": record.step_index, "name": record.name, **delta,
                             "dram_bytes_estimate": delta["llc_misses"] * CACHE_LINE_BYTES})

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        self.available = False

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
