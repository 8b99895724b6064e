"""engine.machine: cache sizes from sysfs (a fake tree here), defaults with a warning where
sysfs is absent or unreadable, CPU model, cores and SIMD width of this machine."""
from __future__ import annotations

import os
import warnings

import pytest

from engine.kernels.layout import CB
from engine.machine import (DEFAULT_CACHE_BYTES, CacheLevel, MachineInfo, _count_cpus, _parse_size, _read_machine_info,
                            machine_info)

ZEN3_CACHES = [  # (index, level, type, size, shared_cpu_list, line size), as this VM's sysfs
    (0, "1", "Data", "32K", "0", "64"),
    (1, "1", "Instruction", "32K", "0", "64"),
    (2, "2", "Unified", "512K", "0", "64"),
    (3, "3", "Unified", "32768K", "0-1", "64"),
]


def make_sysfs(root, entries):
    """A fake /sys/devices/system/cpu tree with cpu0/cache/index*/ files."""
    for index, level, kind, size, shared, line in entries:
        folder = root / "cpu0" / "cache" / f"index{index}"
        folder.mkdir(parents=True)
        for name, text in (("level", level), ("type", kind), ("size", size),
                           ("shared_cpu_list", shared), ("coherency_line_size", line)):
            if text is not None:  # None: the file is missing
                (folder / name).write_text(text + "\n")
    return root


def make_cpuinfo(path, model="AMD EPYC 7B13 64-Core Processor"):
    path.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: {model}\nflags\t\t: fpu avx2\n")
    return path


def read_without_warnings(root, cpuinfo, cores=2):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return _read_machine_info(root, cpuinfo, cores=cores)


def test_reads_data_and_unified_caches_from_sysfs(tmp_path):
    info = read_without_warnings(make_sysfs(tmp_path / "cpu", ZEN3_CACHES), make_cpuinfo(tmp_path / "cpuinfo"))
    assert info.caches == (
        CacheLevel("L1", 32 * 1024, 1, 64),
        CacheLevel("L2", 512 * 1024, 1, 64),
        CacheLevel("L3", 32 * 1024**2, 2, 64),
    )
    assert info.source == "sysfs"
    assert info.cpu_model == "AMD EPYC 7B13 64-Core Processor"
    assert info.cores == 2
    assert info.cache("L3").shared_by_cores == 2


def test_instruction_cache_listed_first_is_not_taken_as_l1(tmp_path):
    entries = [(0, "1", "Instruction", "64K", "0", "64"), (1, "1", "Data", "48K", "0-1", "64"),
               (2, "2", "Unified", "2048K", "0-1", "64"), (3, "3", "Unified", "1M", "0-7", "128")]
    info = read_without_warnings(make_sysfs(tmp_path / "cpu", entries), make_cpuinfo(tmp_path / "cpuinfo"))
    assert info.cache("L1") == CacheLevel("L1", 48 * 1024, 2, 64)
    assert info.cache("L2").size_bytes == 2 * 1024**2
    assert info.cache("L3") == CacheLevel("L3", 1024**2, 8, 128)


def test_missing_sysfs_tree_gives_defaults_and_a_warning_naming_the_levels(tmp_path):
    with pytest.warns(UserWarning, match=r"L1, L2, L3 not found.*cannot list"):
        info = _read_machine_info(tmp_path / "no-such-dir", make_cpuinfo(tmp_path / "cpuinfo"), cores=4)
    assert info.source == "defaults"
    assert [level.size_bytes for level in info.caches] == [32 * 1024, 1024**2, 8 * 1024**2]
    assert [level.size_bytes for level in info.caches] == [DEFAULT_CACHE_BYTES[n] for n in ("L1", "L2", "L3")]
    assert info.cache("L3").shared_by_cores == 4      # a default L3 is shared by every core
    assert info.cache("L1").shared_by_cores == 1
    assert all(level.line_bytes == 64 for level in info.caches)


@pytest.mark.parametrize("bad_field, bad_value", [
    ("size", "lots"),              # not a number
    ("size", "0K"),                # not positive
    ("shared_cpu_list", "3-1"),    # reversed range
    ("coherency_line_size", "48"),  # not a power of two
    ("coherency_line_size", None),  # file missing
    ("level", ""),                 # empty file
])
def test_garbage_in_one_entry_defaults_that_level_only_with_a_warning(tmp_path, bad_field, bad_value):
    fields = ["index", "level", "type", "size", "shared_cpu_list", "coherency_line_size"]
    entries = [list(entry) for entry in ZEN3_CACHES]
    entries[2][fields.index(bad_field)] = bad_value   # index2 is the L2
    root = make_sysfs(tmp_path / "cpu", entries)
    with pytest.warns(UserWarning, match=r"L2 not found.*index2") as caught:
        info = _read_machine_info(root, make_cpuinfo(tmp_path / "cpuinfo"), cores=2)
    assert len(caught) == 1
    assert info.source == "defaults"
    assert info.cache("L2").size_bytes == DEFAULT_CACHE_BYTES["L2"]
    assert info.cache("L1").size_bytes == 32 * 1024          # the good levels still come from sysfs
    assert info.cache("L3").size_bytes == 32 * 1024**2


def test_machine_without_an_l3_entry_warns_and_defaults_l3(tmp_path):
    root = make_sysfs(tmp_path / "cpu", ZEN3_CACHES[:3])
    with pytest.warns(UserWarning, match=r"L3 not found.*no data/unified cache entry"):
        info = _read_machine_info(root, make_cpuinfo(tmp_path / "cpuinfo"), cores=2)
    assert info.cache("L3").size_bytes == DEFAULT_CACHE_BYTES["L3"]
    assert info.cache("L2").size_bytes == 512 * 1024


def test_missing_cpuinfo_still_gives_a_cpu_model(tmp_path):
    info = read_without_warnings(make_sysfs(tmp_path / "cpu", ZEN3_CACHES), tmp_path / "no-cpuinfo")
    assert isinstance(info.cpu_model, str) and info.cpu_model


@pytest.mark.parametrize("text, expected", [("32K", 32768), ("512K\n", 524288), ("32768K", 32 * 1024**2),
                                            ("1M", 1024**2), ("65536", 65536)])
def test_parse_size_understands_sysfs_units(text, expected):
    assert _parse_size(text) == expected


@pytest.mark.parametrize("text, expected", [("0", 1), ("0-1", 2), ("0,2,4-7\n", 6), ("0-63", 64)])
def test_count_cpus_counts_cpu_lists(text, expected):
    assert _count_cpus(text) == expected


def test_machine_info_of_this_machine_is_consistent_and_cached():
    info = machine_info()
    assert machine_info() is info
    assert info.cores == len(os.sched_getaffinity(0))
    assert info.simd_lanes_fp32 == CB
    assert [level.name for level in info.caches] == ["L1", "L2", "L3"]
    sizes = [level.size_bytes for level in info.caches]
    assert sizes == sorted(sizes) and sizes[0] >= 4096
    assert info.source in ("sysfs", "defaults")
    as_dict = info.to_dict()
    assert as_dict["caches"][0]["name"] == "L1" and as_dict["cores"] == info.cores


def test_asking_for_an_unknown_cache_level_names_the_known_ones():
    with pytest.raises(ValueError, match="L4.*L1"):
        machine_info().cache("L4")


@pytest.mark.parametrize("lanes", ["8", "16"])
def test_numba_imported_before_engine_still_builds_for_the_engines_lane_width(lanes):
    """numba reads its CPU settings at import: a process that imports numba (or a library
    that does) before engine must still get the features engine chose for the lane width."""
    import subprocess
    import sys

    code = ("import numba\nimport engine\nfrom numba.core.registry import cpu_target\n"
            "from engine.kernels.layout import CB\n"
            "print(CB, cpu_target.target_context.codegen()._tm_features.split(',')[-1])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "ROOFLINE_LANES": lanes}).stdout.split()
    assert out == [lanes, "-prefer-256-bit" if lanes == "16" else "+prefer-256-bit"]


def test_associativity_is_read_from_sysfs_where_given_and_none_where_not(tmp_path):
    root = make_sysfs(tmp_path / "cpu", ZEN3_CACHES)
    (root / "cpu0" / "cache" / "index0" / "ways_of_associativity").write_text("12\n")
    (root / "cpu0" / "cache" / "index2" / "ways_of_associativity").write_text("0\n")   # "unknown" on some kernels
    info = read_without_warnings(root, make_cpuinfo(tmp_path / "cpuinfo"))
    assert info.cache("L1").ways == 12
    assert info.cache("L2").ways is None
    assert info.cache("L3").ways is None
    assert MachineInfo.from_dict(info.to_dict()) == info
