"""What the engine knows about the machine: CPU model, usable cores, cache sizes, SIMD width.

Cache sizes come from Linux sysfs (/sys/devices/system/cpu/cpu0/cache/index*/). The bytes-
moved model uses them to decide which working sets fit which level, and the workbench sizes
its bandwidth measurements from them. Where sysfs is absent or unreadable the numbers fall
back to sane defaults (L1 32 KiB, L2 1 MiB, L3 8 MiB, 64-byte lines) with a warning that
names what was missing, and `source` says "defaults".

    >>> from engine.machine import machine_info
    >>> info = machine_info()
    >>> info.cache("L2").size_bytes      # bytes, one instance (here: per core)

No pandas, plotly or workbench here: `engine` stays usable alone.
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from engine.kernels.layout import CB

logger = logging.getLogger(__name__)

SYSFS_CPU_ROOT = Path("/sys/devices/system/cpu")
PROC_CPUINFO = Path("/proc/cpuinfo")

LEVEL_NAMES = ("L1", "L2", "L3")

# Fallbacks where sysfs says nothing: a typical x86 core of the last decade.
DEFAULT_CACHE_BYTES = {"L1": 32 * 1024, "L2": 1024 * 1024, "L3": 8 * 1024 * 1024}
DEFAULT_LINE_BYTES = 64


@dataclass(frozen=True)
class CacheLevel:
    """One data (or unified) cache level, as one instance of it is seen from a core."""

    name: str               # "L1", "L2" or "L3"; L1 is the L1 *data* cache
    size_bytes: int         # nominal capacity of one instance (sysfs), bytes
    shared_by_cores: int    # logical CPUs sharing one instance (1 = private per core)
    line_bytes: int         # coherency line size, bytes
    effective_bytes: int | None = None   # measured capacity of one instance, bytes (where the
                                         # ceilings probe's bandwidth falls off); None: not measured
    ways: int | None = None              # associativity (sysfs ways_of_associativity); None: not known
                                         # (the cache simulation, engine.trace, then assumes DEFAULT_WAYS)

    @property
    def usable_bytes(self) -> int:
        """The capacity the bytes model and the fusion policy count on, bytes: the effective
        (measured) one where known, else the nominal one. A VM often gets only part of its L3."""
        return self.size_bytes if self.effective_bytes is None else self.effective_bytes


@dataclass(frozen=True)
class MachineInfo:
    """The CPU the engine runs on."""

    cpu_model: str                      # /proc/cpuinfo "model name"
    cores: int                          # logical CPUs this process may run on (affinity)
    caches: tuple[CacheLevel, ...]      # L1, L2, L3 in that order
    simd_lanes_fp32: int                # fp32 lanes per vector register the kernels use (CB)
    source: str                         # "sysfs": every level read there; "defaults": some fell back

    def cache(self, name: str) -> CacheLevel:
        """The cache level called `name` ("L1", "L2" or "L3")."""
        for level in self.caches:
            if level.name == name:
                return level
        raise ValueError(f"no cache level {name!r}; levels: {[level.name for level in self.caches]}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (caches as a list of dicts)."""
        info = asdict(self)
        info["caches"] = [asdict(level) for level in self.caches]
        return info

    @classmethod
    def from_dict(cls, data: dict) -> "MachineInfo":
        """The MachineInfo `to_dict` wrote (a dict without effective sizes reads as unmeasured).
        ValueError names what is missing or wrong."""
        try:
            caches = tuple(CacheLevel(**level) for level in data["caches"])
            info = cls(cpu_model=str(data["cpu_model"]), cores=int(data["cores"]), caches=caches,
                       simd_lanes_fp32=int(data["simd_lanes_fp32"]), source=str(data["source"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a MachineInfo dict: {error}") from None
        if [level.name for level in caches] != list(LEVEL_NAMES):
            raise ValueError(f"not a MachineInfo dict: cache levels {[level.name for level in caches]}, "
                             f"expected {list(LEVEL_NAMES)}")
        return info

    def with_effective_caches(self, effective_bytes: dict[str, int | None]) -> "MachineInfo":
        """This machine with measured capacities ({"L1": bytes, ...}, one instance each) set;
        levels not named keep theirs. ValueError for an unknown level or a size that is not
        a positive int."""
        for name, size in effective_bytes.items():
            self.cache(name)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
                raise ValueError(f"effective size of {name} must be a positive int (bytes) or None, got {size!r}")
        caches = tuple(replace(level, effective_bytes=effective_bytes.get(level.name, level.effective_bytes))
                       for level in self.caches)
        return replace(self, caches=caches)


@functools.lru_cache(maxsize=1)
def machine_info() -> MachineInfo:
    """The machine this process runs on, read once (sysfs, /proc/cpuinfo, CPU affinity).

    Warns (UserWarning) the first time if a cache level could not be read from sysfs.
    """
    return _read_machine_info(SYSFS_CPU_ROOT, PROC_CPUINFO)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read_machine_info(sysfs_cpu_root: Path, cpuinfo_path: Path, cores: int | None = None) -> MachineInfo:
    """MachineInfo from a sysfs cpu tree rooted at `sysfs_cpu_root` (tests pass a fake one)."""
    cores = _usable_cores() if cores is None else cores
    found, problems = _read_sysfs_caches(Path(sysfs_cpu_root) / "cpu0" / "cache")
    caches = []
    missing = []
    for name in LEVEL_NAMES:
        if name in found:
            caches.append(found[name])
        else:
            missing.append(name)
            shared = 1 if name != "L3" else cores
            caches.append(CacheLevel(name, DEFAULT_CACHE_BYTES[name], shared, DEFAULT_LINE_BYTES))
    source = "sysfs"
    if missing:
        source = "defaults"
        defaults = ", ".join(f"{name} {_format_bytes(DEFAULT_CACHE_BYTES[name])}" for name in missing)
        detail = "; ".join(problems) if problems else "no data/unified cache entry for those levels"
        warnings.warn(
            f"cache sizes for {', '.join(missing)} not found in {sysfs_cpu_root}/cpu0/cache "
            f"({detail}); using defaults: {defaults}",
            UserWarning,
            stacklevel=3,
        )
    return MachineInfo(
        cpu_model=_read_cpu_model(Path(cpuinfo_path)),
        cores=cores,
        caches=tuple(caches),
        simd_lanes_fp32=CB,
        source=source,
    )


def _read_sysfs_caches(cache_dir: Path) -> tuple[dict[str, CacheLevel], list[str]]:
    """Data/unified caches under cache_dir/index*/ by level name, and what went wrong."""
    found: dict[str, CacheLevel] = {}
    problems: list[str] = []
    try:
        entries = sorted(p for p in cache_dir.iterdir() if p.name.startswith("index"))
    except OSError as error:
        return found, [f"cannot list {cache_dir}: {error.strerror or error}"]
    for entry in entries:
        try:
            kind = (entry / "type").read_text().strip()
            if kind not in ("Data", "Unified"):
                continue  # instruction caches hold no tensors
            level = int((entry / "level").read_text().strip())
            size = _parse_size((entry / "size").read_text())
            shared = _count_cpus((entry / "shared_cpu_list").read_text())
            line = int((entry / "coherency_line_size").read_text().strip())
            ways = _read_ways(entry)
            if not 1 <= level <= 3:
                continue  # an L4 (eDRAM) is not modelled
            if not (16 <= line <= 1024 and line & (line - 1) == 0):
                raise ValueError(f"line size {line} is not a power of two in 16..1024")
        except (OSError, ValueError) as error:
            problems.append(f"{entry.name}: {error}")
            continue
        name = f"L{level}"
        if name not in found:  # the first data/unified entry of a level is the one cpu0 uses
            found[name] = CacheLevel(name, size, shared, line, ways=ways)
    return found, problems


def _read_ways(entry: Path) -> int | None:
    """A sysfs cache entry's associativity, or None where it is absent or not a positive
    number (0 is how some kernels say "fully associative" or "unknown")."""
    try:
        ways = int((entry / "ways_of_associativity").read_text().strip())
    except (OSError, ValueError):
        return None
    return ways if ways > 0 else None


def _parse_size(text: str) -> int:
    """sysfs cache size ("32K", "512K", "32768K", "1M", "65536") -> bytes."""
    text = text.strip()
    multipliers = {"K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].upper() in multipliers else (text, "")
    size = int(number) * multipliers.get(unit, 1)
    if size <= 0:
        raise ValueError(f"cache size {text!r} is not positive")
    return size


def _count_cpus(text: str) -> int:
    """Number of CPUs in a sysfs cpu list such as "0", "0-1" or "0,2,4-7"."""
    count = 0
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(f"bad cpu range {part!r}")
        count += last - first + 1
    return count


def _read_cpu_model(cpuinfo_path: Path) -> str:
    try:
        for line in cpuinfo_path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    logger.info("no 'model name' in %s; CPU model taken as %r", cpuinfo_path, fallback)
    return fallback


def _format_bytes(size: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
