"""Described machines: the CPUs this project runs on, as engine.machine.MachineInfo, so the
decisions that depend on machine facts (fusion policy, band heights, the bytes model,
ceilings sizes) are tested for each of them on any host.

    from machines import DESCRIBED, ZEN3
    config = RunConfig(threads=2, tiles=Tiles(), fuse_blocks="auto", machine=ZEN3)
"""
from __future__ import annotations

from dataclasses import replace

from engine.machine import CacheLevel, MachineInfo

KIB, MIB = 1024, 1024**2


def described(cpu_model: str, cores: int, l1: int, l2: int, l3: int, lanes: int,
              l3_effective: int | None = None) -> MachineInfo:
    """A machine with private L1 and L2 per core and one L3 shared by its `cores`."""
    return MachineInfo(cpu_model=cpu_model, cores=cores,
                       caches=(CacheLevel("L1", l1, 1, 64), CacheLevel("L2", l2, 1, 64),
                               CacheLevel("L3", l3, cores, 64, l3_effective)),
                       simd_lanes_fp32=lanes, source="described")


# A 2-core AMD EPYC Zen 3 VM with AVX2 (the first development machine).
ZEN3 = described("AMD EPYC 7B13 (Zen 3), described", 2, 32 * KIB, 512 * KIB, 32 * MIB, 8)
# The same VM as measured: it behaves as ~10 MiB of its 32 MiB L3.
ZEN3_VM_EFFECTIVE = described("AMD EPYC 7B13 (Zen 3), effective L3, described", 2, 32 * KIB, 512 * KIB, 32 * MIB, 8,
                              l3_effective=10 * MIB)
# A 2-core AMD EPYC Zen 5 VM with AVX-512.
ZEN5 = described("AMD EPYC 9B45 (Zen 5), described", 2, 48 * KIB, 1 * MIB, 32 * MIB, 16)
# A 2-core Intel Xeon Sapphire/Emerald Rapids VM with AVX-512.
EMERALD_RAPIDS = described("Intel Xeon Emerald Rapids, described", 2, 48 * KIB, 2 * MIB, 260 * MIB, 16)
# A 1-core host (AVX2).
ONE_CORE = described("One-core AVX2 host, described", 1, 32 * KIB, 1 * MIB, 16 * MIB, 8)

DESCRIBED = {"zen3": ZEN3, "zen3-vm": ZEN3_VM_EFFECTIVE, "zen5": ZEN5, "emerald-rapids": EMERALD_RAPIDS,
             "one-core": ONE_CORE}


def with_lanes(machine: MachineInfo, lanes: int) -> MachineInfo:
    """`machine` with another lane width: a described machine's caches with the lanes the
    kernels of this process are built for, so a plan can run under it."""
    return replace(machine, simd_lanes_fp32=lanes)
