"""workbench.ceilings: the ceiling kernels against numpy, the working-set sizing, the
Ceilings arithmetic, the JSON cache (with a fast fake measurement) and one real quick
measurement of this machine."""
from __future__ import annotations

import json
import math
import re

import numba
import numpy as np
import pandas as pd
import pytest

import engine  # noqa: F401  (numba settings first)
from engine.machine import CacheLevel, MachineInfo, machine_info
from workbench import Ceilings, measure_ceilings
from workbench import _ceiling_kernels as kernels
from workbench import ceilings as ceilings_module

RESOURCES = ["fp32_fma", "L1", "L2", "L3", "DRAM"]


@pytest.fixture(autouse=True)
def restore_numba_threads():
    threads = numba.get_num_threads()
    yield
    numba.set_num_threads(threads)


# ---------------------------------------------------------------------------- kernels vs numpy

@pytest.mark.parametrize("threads", [1, 2])
def test_fma_chains_match_the_numpy_recurrence(threads):
    seeds = np.random.default_rng(0).uniform(-2, 2, (threads, kernels.FMA_WIDTH)).astype(np.float32)
    expected = seeds.astype(np.float64)
    for _ in range(37):
        expected = expected * float(kernels.FMA_MULTIPLIER) + float(kernels.FMA_ADDEND)
    got = kernels.fma_chains(seeds, 37)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)   # fp32 vs fp64, 37 steps
    assert kernels.fma_flops(threads, 37) == 2 * kernels.FMA_WIDTH * 37 * threads


@pytest.mark.parametrize("threads, n", [(1, 64), (2, 1000), (2, 13)])
def test_triad_writes_b_plus_s_c_on_each_threads_slice_only(threads, n):
    rng = np.random.default_rng(1)
    a = np.full(threads * n + 5, -7.0, np.float32)
    b, c = (rng.standard_normal(threads * n + 5).astype(np.float32) for _ in range(2))
    numba.set_num_threads(threads)
    kernels.triad(a, b, c, 0.5, n, 3, threads)
    np.testing.assert_allclose(a[:threads * n], b[:threads * n] + np.float32(0.5) * c[:threads * n], rtol=1e-6)
    assert np.all(a[threads * n:] == -7.0)     # beyond the slices: untouched
    assert kernels.triad_bytes(n, threads, 3) == 12 * n * threads * 3


@pytest.mark.parametrize("threads, n", [(1, 64), (2, 1000), (2, 13)])
def test_read_sum_sums_each_threads_slice(threads, n):
    source = np.random.default_rng(2).uniform(0, 1, threads * n + 3).astype(np.float32)
    numba.set_num_threads(threads)
    got = kernels.read_sum(source, n, 4, threads)
    expected = [4 * source[t * n:(t + 1) * n].astype(np.float64).sum() for t in range(threads)]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert kernels.read_bytes(n, threads, 4) == 4 * n * threads * 4


def test_kernel_wrappers_reject_what_would_crash_numba():
    ok = np.ones(256, np.float32)
    with pytest.raises(ValueError, match="at least|>= 512"):
        kernels.triad(ok, ok.copy(), ok.copy(), 0.5, 256, 1, 2)              # slices past the end
    with pytest.raises(ValueError, match="float32"):
        kernels.read_sum(np.ones(256), 64, 1, 1)                            # float64
    with pytest.raises(ValueError, match="overlap"):
        kernels.triad(ok, ok, ok.copy(), 0.5, 64, 1, 1)                     # a is b
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.read_sum(np.ones(512, np.float32)[::2], 64, 1, 1)           # strided
    with pytest.raises(ValueError, match=str(kernels.FMA_WIDTH)):
        kernels.fma_chains(np.ones((1, 3), np.float32), 1)
    with pytest.raises(ValueError, match="repeats"):
        kernels.fma_chains(np.ones((1, kernels.FMA_WIDTH), np.float32), -1)


def test_fma_loop_keeps_every_chain_in_vector_registers():
    # The cached kernel cannot be inspected; compile the same function uncached.
    options = {k: v for k, v in kernels._fma_kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernels._fma_kernel.py_func)
    seeds = np.ones((1, kernels.FMA_WIDTH), np.float32)
    fresh(seeds, kernels.FMA_MULTIPLIER, kernels.FMA_ADDEND, 1, np.empty_like(seeds))
    asm = fresh.inspect_asm(fresh.signatures[0])
    register = "zmm" if kernels.CB == 16 else "ymm"
    blocks = re.split(r"\n\.?L\w+:", asm)                   # basic blocks, split at labels
    loop = max(blocks, key=lambda block: len(re.findall(r"vfmadd\w*ps", block)))
    fmas = re.findall(rf"vfmadd\w*ps\s+(%{register}\d+), (%{register}\d+), (%{register}\d+)", loop)
    assert len(fmas) >= kernels.FMA_CHAINS, loop
    assert len({accumulator for _, _, accumulator in fmas}) >= kernels.FMA_CHAINS   # independent chains
    instructions = [line for line in loop.splitlines() if line.startswith("\t") and not line.startswith("\t.")]
    assert not [line for line in instructions if "(" in line], "memory operand in the FMA loop"


# ---------------------------------------------------------------------------- sizing

FAKE_MACHINE = MachineInfo("Fake CPU 9000", 2, (CacheLevel("L1", 32 * 1024, 1, 64), CacheLevel("L2", 512 * 1024, 1, 64),
                                                 CacheLevel("L3", 32 * 1024**2, 2, 64)), 8, "sysfs")


def test_working_sets_are_sized_per_level_and_thread():
    size = ceilings_module.working_set_bytes
    assert size("L1", 1, FAKE_MACHINE) == size("L1", 2, FAKE_MACHINE) == 16 * 1024   # half of a private L1
    assert size("L2", 2, FAKE_MACHINE) == 256 * 1024
    assert size("L3", 1, FAKE_MACHINE) == 8 * 1024**2                                # a quarter of the shared L3 ...
    assert size("L3", 2, FAKE_MACHINE) == 4 * 1024**2                                # ... split between its sharers
    assert size("DRAM", 1, FAKE_MACHINE) == 512 * 1024**2                            # >= 8 x L3 and >= 512 MiB
    assert size("DRAM", 2, FAKE_MACHINE) == 256 * 1024**2
    small_l3 = MachineInfo("x", 2, FAKE_MACHINE.caches[:2] + (CacheLevel("L3", 1024**2, 2, 64),), 8, "sysfs")
    assert size("L3", 2, small_l3) == 2 * 512 * 1024                                # never inside L2


# ---------------------------------------------------------------------------- Ceilings arithmetic

def fake_table(threads=(1, 2), peak=100.0, bandwidths=(200.0, 90.0, 60.0, 15.0)):
    rows = []
    for t in threads:
        rows.append((t, "fp32_fma", peak * t, "GFLOP/s"))
        rows += [(t, level, bw * t, "GB/s") for level, bw in zip(["L1", "L2", "L3", "DRAM"], bandwidths)]
    return pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])


def test_ridge_point_is_peak_over_bandwidth_in_flop_per_byte():
    ceilings = Ceilings(fake_table(), FAKE_MACHINE.to_dict(), "2025-01-01T00:00:00+00:00", {})
    assert ceilings.peak_gflops(2) == 200.0
    assert ceilings.bandwidth_gbs("DRAM", 1) == 15.0
    assert ceilings.ridge_point("DRAM", 1) == pytest.approx(100.0 / 15.0)
    assert ceilings.ridge_point("L1", 2) == pytest.approx(200.0 / 400.0)
    assert ceilings.levels == ("L1", "L2", "L3", "DRAM")
    assert ceilings.threads == [1, 2]
    with pytest.raises(ValueError, match="threads=3.*\\[1, 2\\]"):
        ceilings.peak_gflops(3)
    with pytest.raises(ValueError, match="level"):
        ceilings.bandwidth_gbs("L4", 1)


# ---------------------------------------------------------------------------- the cache

@pytest.fixture
def fake_measure(monkeypatch):
    """Replace the measurement by a fast fake; `calls` counts how often it ran."""
    calls = []

    def measure(machine, threads, quick):
        calls.append((tuple(threads), quick))
        detail = pd.DataFrame(columns=ceilings_module.DETAIL_COLUMNS)
        return fake_table(threads, peak=100.0 + len(calls)), detail

    monkeypatch.setattr(ceilings_module, "_measure_all", measure)
    return calls


def only_cache_file(folder):
    files = sorted(folder.iterdir())
    assert len(files) == 1, files    # one JSON, no leftover temp file
    assert files[0].suffix == ".json"
    return files[0]


def test_cache_round_trip_measures_once(tmp_path, fake_measure):
    first = measure_ceilings(cache_dir=tmp_path)
    second = measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 1
    pd.testing.assert_frame_equal(first.table, second.table)
    assert second.measured_at == first.measured_at and second.machine == first.machine
    cores = machine_info().cores
    assert second.key == {"cpu_model": machine_info().cpu_model, "cores": cores,
                          "package_version": ceilings_module.package_version(), "mode": "quick"}
    assert fake_measure[0] == (tuple(range(1, cores + 1)), True)
    path = only_cache_file(tmp_path)
    assert "quick" in path.name and f"{cores}cores" in path.name


def test_refresh_measures_again(tmp_path, fake_measure):
    measure_ceilings(cache_dir=tmp_path)
    again = measure_ceilings(cache_dir=tmp_path, refresh=True)
    assert len(fake_measure) == 2
    assert again.peak_gflops(1) == 102.0
    assert measure_ceilings(cache_dir=tmp_path).peak_gflops(1) == 102.0   # the refreshed result was cached
    only_cache_file(tmp_path)


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                                         # truncated JSON
    lambda text: "\x00garbage",                                                  # not JSON
    lambda text: json.dumps(dict(json.loads(text), schema=99)),                  # other schema
    lambda text: json.dumps(dict(json.loads(text), table=json.loads(text)["table"][:-1])),   # a row missing
    lambda text: text.replace('"GB/s"', '"MB/s"', 1),                            # wrong unit
    lambda text: json.dumps([1, 2, 3]),                                          # wrong shape
])
def test_corrupted_cache_is_re_measured_with_a_warning(tmp_path, fake_measure, damage):
    measure_ceilings(cache_dir=tmp_path)
    path = only_cache_file(tmp_path)
    path.write_text(damage(path.read_text()))
    with pytest.warns(UserWarning, match="corrupted"):
        again = measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 2 and again.peak_gflops(1) == 102.0
    assert Ceilings.from_json_dict(json.loads(only_cache_file(tmp_path).read_text())).peak_gflops(1) == 102.0


@pytest.mark.parametrize("field, value", [("cores", 999), ("cpu_model", "Other CPU"), ("package_version", "0.0.1")])
def test_stale_cache_key_is_re_measured_with_a_warning(tmp_path, fake_measure, field, value):
    measure_ceilings(cache_dir=tmp_path)
    path = only_cache_file(tmp_path)
    data = json.loads(path.read_text())
    data["key"][field] = value
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="stale"):
        measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 2


def test_failed_write_leaves_old_cache_intact_and_no_temp_file(tmp_path, fake_measure, monkeypatch):
    measure_ceilings(cache_dir=tmp_path)
    before = only_cache_file(tmp_path).read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ceilings_module.json, "dump", broken_dump)
    with pytest.warns(UserWarning, match="could not write.*disk full"):
        result = measure_ceilings(cache_dir=tmp_path, refresh=True)
    assert result.peak_gflops(1) == 102.0                     # the measurement is still returned
    assert only_cache_file(tmp_path).read_text() == before    # the old file untouched, no temp left


def test_cache_dir_defaults_to_roofline_data_dir(tmp_path, fake_measure, monkeypatch):
    monkeypatch.setenv("ROOFLINE_DATA_DIR", str(tmp_path))
    measure_ceilings()
    only_cache_file(tmp_path / "ceilings")


def test_quick_call_reuses_a_full_result_and_a_subset_of_threads(tmp_path, fake_measure):
    full = measure_ceilings(quick=False, cache_dir=tmp_path)
    quick = measure_ceilings(quick=True, cache_dir=tmp_path, threads=[1])
    assert len(fake_measure) == 1 and fake_measure[0][1] is False
    assert quick.key["mode"] == "full" and quick.threads == [1]
    assert quick.peak_gflops(1) == full.peak_gflops(1)


def test_thread_counts_outside_the_machine_are_rejected(tmp_path, fake_measure):
    cores = machine_info().cores
    for bad in ([0], [cores + 1], [], [1.5], "1"):
        with pytest.raises(ValueError, match="threads"):
            measure_ceilings(cache_dir=tmp_path, threads=bad)
    assert not fake_measure


# ---------------------------------------------------------------------------- one real measurement

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    numba.set_num_threads(1)
    ceilings = measure_ceilings(quick=True, refresh=True, cache_dir=tmp_path_factory.mktemp("ceilings"))
    return ceilings, numba.get_num_threads()


def test_quick_measurement_has_the_documented_table(measured):
    ceilings, _ = measured
    table = ceilings.table
    assert list(table.columns) == ["threads", "resource", "value", "unit"]
    cores = machine_info().cores
    assert ceilings.threads == list(range(1, cores + 1))
    for threads in range(1, cores + 1):
        rows = table[table["threads"] == threads]
        assert sorted(rows["resource"]) == sorted(RESOURCES)
        assert dict(zip(rows["resource"], rows["unit"])) == {"fp32_fma": "GFLOP/s", "L1": "GB/s", "L2": "GB/s",
                                                             "L3": "GB/s", "DRAM": "GB/s"}
    assert np.isfinite(table["value"]).all() and (table["value"] > 0).all()
    detail = ceilings.detail
    assert set(detail["kernel"]) == {"fma", "triad", "read"}
    assert (detail["samples"] == ceilings_module.MODES["quick"].samples).all()
    assert (detail["cpu_share"] > 0).all() and (detail["best"] >= detail["median"]).all()


def test_measured_roofs_are_plausible_and_ordered(measured):
    ceilings, _ = measured
    for threads in ceilings.threads:
        assert 1.0 < ceilings.peak_gflops(threads) < 10_000.0
        bandwidth = [ceilings.bandwidth_gbs(level, threads) for level in ceilings.levels]
        assert all(0.5 < value < 10_000.0 for value in bandwidth)
        assert bandwidth[0] > bandwidth[-1]                            # L1 beats DRAM, whatever the noise
        assert math.isclose(ceilings.ridge_point("DRAM", threads),
                            ceilings.peak_gflops(threads) / bandwidth[-1])
    one = [ceilings.bandwidth_gbs(level, 1) for level in ceilings.levels]
    assert all(faster >= 0.8 * slower for faster, slower in zip(one, one[1:])), one   # roughly L1>=L2>=L3>=DRAM


def test_measurement_restores_numba_thread_count(measured):
    _, threads_after = measured
    assert threads_after == 1
