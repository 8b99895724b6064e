"""workbench.ceilings: the ceiling kernels against numpy, the working-set sizing, the
Ceilings arithmetic, the JSON cache (with a fast fake measurement) and one real quick
measurement of this machine."""
from __future__ import annotations

import json
import math
import platform
import re

import numba
import numpy as np
import pandas as pd
import pytest

import engine  # noqa: F401  (numba settings first)
from engine._numba_env import features_for
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


def innermost_fma_loop(asm: str) -> list[str]:
    """The instructions of the loop in `asm` (x86-64 AT&T, as numba prints it) with the most
    vector FMAs, the innermost if loops nest: from a label to the last jump back to it."""
    lines = asm.splitlines()
    loops = []
    for start, line in enumerate(lines):
        label = re.match(r"([.\w]+):", line)
        if label is None:
            continue
        jumps_back = [end for end in range(start + 1, len(lines))
                      if re.fullmatch(rf"\tj\w+\s+{re.escape(label.group(1))}\s*", lines[end])]
        if jumps_back:
            body = lines[start + 1:jumps_back[-1] + 1]
            loops.append([line for line in body if line.startswith("\t") and not line.startswith(("\t.", "\t#"))])
    assert loops, "no loop in the asm"
    return max(loops, key=lambda loop: (sum(line.startswith("\tvfmadd") for line in loop), -len(loop)))


def fma_loop_problems(loop: list[str], register: str, chains: int) -> list[str]:
    """What keeps `loop` from being `chains` independent FMA chains in `register` ("ymm",
    "zmm") registers with no memory access; empty if nothing does."""
    problems = [f"memory operand: {line.strip()}" for line in loop if "(" in line]
    fmas = [re.fullmatch(r"\tvfmadd\w*ps\s+(%\w+), (%\w+), (%\w+)\s*", line) for line in loop
            if line.startswith("\tvfmadd")]
    operands = [fma.groups() for fma in fmas if fma]
    accumulators = {destination for *_, destination in operands if destination.startswith(f"%{register}")}
    if len(accumulators) < chains:
        problems.append(f"{len(accumulators)} {register} accumulators, not {chains}")
    crossing = [ops for ops in operands if accumulators & set(ops[:2])]    # a chain feeding another
    problems += [f"dependent chains: {ops}" for ops in crossing]
    return problems


GOOD_LOOP = """.LBB4_4:
\tvmovups\t(%rax), %zmm12
.LBB4_5:
""" + "".join(f"\tvfmadd213ps\t%zmm12, %zmm13, %zmm{r}\n" for r in range(12)) + """\tdecq\t%rax
\tjne\t.LBB4_5
\tvmovups\t%zmm11, (%r14)
\tjne\t.LBB4_4
"""


@pytest.mark.parametrize("asm, problem", [
    (GOOD_LOOP, None),                                                        # stores after the loop are fine
    (GOOD_LOOP.replace("%zmm12, %zmm13, %zmm7", "%zmm12, %zmm13, %zmm6"), "11 zmm accumulators"),
    (GOOD_LOOP.replace("\tdecq", "\tvmovups\t%zmm3, 208(%rsp)\n\tdecq"), "memory operand"),   # a spill
    (GOOD_LOOP.replace("%zmm12, %zmm13, %zmm7", "%zmm12, %zmm6, %zmm7"), "dependent chains"),
    (GOOD_LOOP.replace("zmm", "ymm"), "0 zmm accumulators"),                  # half-width registers
])
def test_fma_loop_check_rejects_spills_shared_and_dependent_chains(asm, problem):
    problems = fma_loop_problems(innermost_fma_loop(asm), "zmm", 12)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in found for found in problems), problems


@pytest.mark.parametrize("lanes, host, expected", [
    (16, "+avx,+avx2,+fma,+avx512f,+avx512vl", 16), (8, "+avx,+avx2,+fma,+avx512f,+avx512vl", 8),
    (16, "+avx,+avx2,+fma,-avx512f", 8), (8, "+avx,+avx2,+fma,-avx512f", 8),
])
def test_fma_accumulators_have_the_register_width_of_the_build(lanes, host, expected):
    assert kernels.vector_register_lanes(features_for(host, lanes)) == expected
    assert kernels.vector_register_lanes("+avx512f") == 8        # LLVM's Intel tuning prefers 256 bits


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="reads x86-64 asm")
def test_fma_loop_keeps_every_chain_in_vector_registers():
    # The cached kernel cannot be inspected; compile the same function uncached.
    options = {k: v for k, v in kernels._fma_kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernels._fma_kernel.py_func)
    seeds = np.ones((1, kernels.FMA_WIDTH), np.float32)
    fresh(seeds, kernels.FMA_MULTIPLIER, kernels.FMA_ADDEND, 1, np.empty_like(seeds))
    loop = innermost_fma_loop(fresh.inspect_asm(fresh.signatures[0]))
    register = {16: "zmm", 8: "ymm"}[kernels.FMA_LANES]
    assert fma_loop_problems(loop, register, kernels.FMA_CHAINS) == [], "\n".join(loop)


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


def test_roofs_are_sized_from_the_effective_sizes_where_measured():
    size = ceilings_module.working_set_bytes
    vm = FAKE_MACHINE.with_effective_caches({"L3": 8 * 1024**2})
    assert size("L3", 1, vm) == 2 * 1024**2                         # a quarter of the effective 8 MiB
    assert size("L3", 1, FAKE_MACHINE) == 8 * 1024**2               # ... not of the nominal 32 MiB
    assert size("L1", 1, vm) == size("L1", 1, FAKE_MACHINE)
    big_l3 = MachineInfo("x", 2, FAKE_MACHINE.caches[:2] + (CacheLevel("L3", 256 * 1024**2, 2, 64),), 8, "sysfs")
    assert size("DRAM", 1, big_l3.with_effective_caches({"L3": 80 * 1024**2})) == 640 * 1024**2   # 8 x effective


def test_sweep_runs_geometrically_from_inside_l1_to_twice_the_l3():
    sizes = ceilings_module.sweep_working_sets(FAKE_MACHINE)
    quantum = 12 * ceilings_module.ELEMENT_ALIGN                      # a, b, c of ELEMENT_ALIGN floats each
    assert sizes[0] == 4 * 1024 // quantum * quantum                  # an eighth of L1 ...
    assert sizes[-1] == 64 * 1024**2 // quantum * quantum             # ... to 2 x L3
    ratios = np.array(sizes[1:]) / np.array(sizes[:-1])
    assert np.all(ratios > 1.3) and np.all(ratios[:-1] <= 1.5), ratios  # sqrt(2), rounded to whole quanta
    assert all(size % quantum == 0 for size in sizes)


# ---------------------------------------------------------------------------- effective sizes

SWEEP = [4096 * 2 ** (k / 2) for k in range(33)]                     # 4 KiB .. 256 MiB in sqrt(2) steps
NOMINAL = {"L1": 32 * 1024, "L2": 512 * 1024, "L3": 32 * 1024**2}
CAPACITIES = (24 * 1024, 384 * 1024, 20 * 1024**2)                   # where each level really falls off


def synthetic_curve(sizes, capacities=CAPACITIES, plateaus=(300.0, 120.0, 40.0), memory_gbs=15.0, steepness=8.0):
    """Bandwidth (GB/s) of a hierarchy whose level i holds `plateaus[i]` up to about
    `capacities[i]` bytes: in log-log, a logistic step per level that is exactly at the
    geometric midpoint of its plateau and the next at its capacity."""
    log_sizes = np.log(np.asarray(sizes, dtype=float))
    log_rate = np.full(log_sizes.shape, math.log(memory_gbs))
    for capacity, plateau in reversed(list(zip(capacities, plateaus))):
        inside = np.exp(-np.logaddexp(0.0, steepness * (log_sizes - math.log(capacity))))   # 1 well inside, 0 beyond
        log_rate = log_rate + (math.log(plateau) - log_rate) * inside
    return np.exp(log_rate)


def effective(frame):
    return dict(zip(frame["level"], frame["effective_bytes"]))


def test_a_clear_step_is_found_between_the_sweep_points_around_it():
    found = ceilings_module.find_effective_sizes(SWEEP, synthetic_curve(SWEEP, steepness=1000.0), NOMINAL)
    for (level, size), capacity in zip(effective(found).items(), CAPACITIES):
        assert capacity / 2 ** 0.25 <= size <= capacity * 2 ** 0.25, (level, size, capacity)   # half a step
    assert list(found["note"]) == ["", "", ""]
    assert found["plateau_gbs"].round(1).tolist() == [300.0, 120.0, 40.0]
    assert found["next_plateau_gbs"].round(1).tolist() == [120.0, 40.0, 15.0]


def test_a_smooth_fall_off_is_interpolated_to_within_a_few_per_cent():
    found = effective(ceilings_module.find_effective_sizes(SWEEP, synthetic_curve(SWEEP), NOMINAL))
    for size, capacity in zip(found.values(), CAPACITIES):
        assert size == pytest.approx(capacity, rel=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_curve_with_dips_inside_the_plateaus_still_finds_each_fall_off(seed):
    rates = synthetic_curve(SWEEP) * np.exp(np.random.default_rng(seed).normal(0.0, 0.04, len(SWEEP)))
    rates[2] *= 0.5              # a lone disturbed sample inside L1 (8 KiB)
    rates[9:11] *= 0.5           # two in a row inside L2 (90 and 128 KiB): more than smoothing removes
    rates[-3] *= 0.6             # and one in memory
    rates[22] *= 1.5             # a lone sample too high inside L3 (8 MiB)
    found = ceilings_module.find_effective_sizes(SWEEP, rates, NOMINAL)
    for size, capacity in zip(effective(found).values(), CAPACITIES):
        assert size == pytest.approx(capacity, rel=0.15)


def test_a_level_the_sweep_never_leaves_keeps_its_nominal_size_and_says_so():
    rates = synthetic_curve(SWEEP, capacities=CAPACITIES[:2] + (1024**3,))   # L3 holds more than the sweep
    found = ceilings_module.find_effective_sizes(SWEEP, rates, NOMINAL)
    assert effective(found)["L3"] == NOMINAL["L3"]
    assert "no fall-off visible" in found["note"].iloc[2]
    assert effective(found)["L2"] == pytest.approx(CAPACITIES[1], rel=0.03)


def test_a_vm_l3_that_falls_off_at_a_quarter_of_nominal_is_a_quarter():
    rates = synthetic_curve(SWEEP, capacities=CAPACITIES[:2] + (NOMINAL["L3"] // 4,))
    found = ceilings_module.find_effective_sizes(SWEEP, rates, NOMINAL)
    assert effective(found)["L3"] == pytest.approx(NOMINAL["L3"] / 4, rel=0.03)
    assert found["note"].iloc[2] == ""


def test_a_fall_off_beyond_nominal_is_capped_at_nominal():
    rates = synthetic_curve(SWEEP, capacities=(48 * 1024,) + CAPACITIES[1:])    # L1 seems 1.5x its sysfs size
    found = ceilings_module.find_effective_sizes(SWEEP, rates, NOMINAL)
    assert effective(found)["L1"] == NOMINAL["L1"] and "capped at nominal" in found["note"].iloc[0]


def test_find_effective_sizes_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match="length"):
        ceilings_module.find_effective_sizes(SWEEP, [1.0, 2.0], NOMINAL)
    with pytest.raises(ValueError, match="positive"):
        ceilings_module.find_effective_sizes(SWEEP, -synthetic_curve(SWEEP), NOMINAL)
    with pytest.raises(ValueError, match="L2"):
        ceilings_module.find_effective_sizes(SWEEP, synthetic_curve(SWEEP), dict(NOMINAL, L2=0))


def test_cache_table_reads_nominal_against_effective():
    caches = ceilings_module.find_effective_sizes(
        SWEEP, synthetic_curve(SWEEP, capacities=CAPACITIES[:2] + (8 * 1024**2,), steepness=1000.0), NOMINAL)
    levels = tuple(CacheLevel(name, size, 2 if name == "L3" else 1, 64) for name, size in NOMINAL.items())
    fake = MachineInfo("Fake CPU 9000", 2, levels, 8, "sysfs")
    ceilings = Ceilings(fake_table(), fake.to_dict(), "2025-01-01T00:00:00+00:00", {}, caches=caches)
    table = ceilings.cache_table()
    assert list(table.columns) == ["level", "nominal_bytes", "effective_bytes", "shared_by_cores", "nominal",
                                   "effective", "note"]
    assert list(table["nominal"]) == ["32 KiB", "512 KiB", "32 MiB"]
    assert list(table["shared_by_cores"]) == [1, 1, 2]
    assert table["effective"].iloc[2].endswith(" MiB") and float(table["effective"].iloc[2].split()[0]) < 10
    info = ceilings.machine_info()
    assert [c.effective_bytes for c in info.caches] == list(table["effective_bytes"])
    assert info.cache("L3").usable_bytes < 10 * 1024**2
    unmeasured = Ceilings(fake_table(), fake.to_dict(), "2025-01-01T00:00:00+00:00", {})
    assert list(unmeasured.cache_table()["effective"]) == ["not measured"] * 3
    assert unmeasured.machine_info().cache("L3").effective_bytes is None
    assert Ceilings(fake_table(), {}, "x", {}).cache_table().empty
    with pytest.raises(ValueError):
        Ceilings(fake_table(), {}, "x", {}).machine_info()
    assert [ceilings_module.format_bytes(n) for n in (512, 49152, 1536 * 1024, 89723594, 3 * 1024**3)] == \
        ["512 B", "48 KiB", "1.5 MiB", "85.6 MiB", "3 GiB"]


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

    def sweep(machine, quick):     # this machine's sweep points, an L3 that falls off at a quarter of nominal
        sizes = ceilings_module.sweep_working_sets(machine)
        nominal = [level.size_bytes for level in machine.caches]
        rates = synthetic_curve(sizes, capacities=(nominal[0] * 0.75, nominal[1] * 0.75, nominal[2] / 4))
        return pd.DataFrame({"working_set_bytes": sizes, "bandwidth_gbs": rates, "median_gbs": rates, "repeats": 1,
                             "samples": 1, "cpu_share": 1.0})

    monkeypatch.setattr(ceilings_module, "_measure_all", measure)
    monkeypatch.setattr(ceilings_module, "_measure_sweep", sweep)
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
    assert second.key == {"cpu_model": machine_info().cpu_model, "cores": cores, "lanes": machine_info().simd_lanes_fp32,
                          "package_version": ceilings_module.package_version(), "mode": "quick"}
    assert fake_measure[0] == (tuple(range(1, cores + 1)), True)
    path = only_cache_file(tmp_path)
    assert "quick" in path.name and f"{cores}cores" in path.name and f"{machine_info().simd_lanes_fp32}lanes" in path.name


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


def test_an_old_schema_file_is_re_measured_with_a_warning(tmp_path, fake_measure):
    measure_ceilings(cache_dir=tmp_path)
    path = only_cache_file(tmp_path)
    old = json.loads(path.read_text())
    del old["sweep"], old["caches"]              # a schema-1 file: roofs only
    path.write_text(json.dumps(dict(old, schema=1)))
    with pytest.warns(UserWarning, match="schema 1, expected 2"):
        again = measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 2
    rewritten = json.loads(only_cache_file(tmp_path).read_text())
    assert rewritten["schema"] == ceilings_module.SCHEMA_VERSION == 2
    assert [row["level"] for row in rewritten["caches"]] == ["L1", "L2", "L3"]
    assert again.effective_bytes()["L3"] == pytest.approx(machine_info().cache("L3").size_bytes / 4, rel=0.05)


def test_json_round_trip_keeps_the_sweep_and_the_effective_sizes(tmp_path, fake_measure):
    first = measure_ceilings(cache_dir=tmp_path)
    second = measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 1
    pd.testing.assert_frame_equal(first.caches, second.caches)
    pd.testing.assert_frame_equal(first.sweep, second.sweep)
    assert second.machine_info() == first.machine_info()
    assert second.machine_info().cache("L3").effective_bytes < machine_info().cache("L3").size_bytes


@pytest.mark.parametrize("damage", [
    lambda data: dict(data, caches=data["caches"][:2]),                                        # a level missing
    lambda data: dict(data, caches=[dict(row, effective_bytes=row["nominal_bytes"] + 1) for row in data["caches"]]),
    lambda data: dict(data, sweep=[dict(row, bandwidth_gbs=-1.0) for row in data["sweep"]]),
])
def test_cache_with_impossible_effective_sizes_is_re_measured(tmp_path, fake_measure, damage):
    measure_ceilings(cache_dir=tmp_path)
    path = only_cache_file(tmp_path)
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.warns(UserWarning, match="corrupted"):
        measure_ceilings(cache_dir=tmp_path)
    assert len(fake_measure) == 2


@pytest.mark.parametrize("field, value", [("cores", 999), ("cpu_model", "Other CPU"), ("package_version", "0.0.1"),
                                          ("lanes", 4)])
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
def measured_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ceilings")


@pytest.fixture(scope="module")
def measured(measured_dir):
    numba.set_num_threads(1)
    ceilings = measure_ceilings(quick=True, refresh=True, cache_dir=measured_dir)
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


def test_quick_measurement_finds_effective_sizes_within_the_nominal_ones(measured):
    ceilings, _ = measured
    host = machine_info()
    table = ceilings.cache_table()
    assert list(table["level"]) == ["L1", "L2", "L3"]
    for row in table.itertuples():
        assert row.nominal_bytes == host.cache(row.level).size_bytes
        assert 0 < row.effective_bytes <= row.nominal_bytes, row
    info = ceilings.machine_info()
    assert (info.cpu_model, info.cores) == (host.cpu_model, host.cores)
    assert {level.name: level.effective_bytes for level in info.caches} == ceilings.effective_bytes()
    sweep = ceilings.sweep
    assert list(sweep["working_set_bytes"]) == ceilings_module.sweep_working_sets(host)
    assert (sweep["bandwidth_gbs"] > 0).all()
    assert (sweep["samples"] == ceilings_module.MODES["quick"].sweep_samples).all()
    assert sweep["bandwidth_gbs"].iloc[:3].min() > sweep["bandwidth_gbs"].iloc[-3:].max()   # L1 beats memory


def test_json_round_trip_keeps_the_measured_effective_sizes(measured, measured_dir):
    ceilings, _ = measured
    again = measure_ceilings(quick=True, cache_dir=measured_dir)        # read back from the file just written
    assert again.measured_at == ceilings.measured_at
    assert again.effective_bytes() == ceilings.effective_bytes()
    pd.testing.assert_frame_equal(again.caches, ceilings.caches)
    pd.testing.assert_frame_equal(again.sweep, ceilings.sweep)
    assert again.machine_info() == ceilings.machine_info()
