"""The 1x1 micro-kernel's inner loop, as numba builds it for other CPUs, analysed by llvm-mca
(bench/micro_tiles.py analyse): the chosen shape keeps every accumulator in registers and
stays at the FMA bound on AVX-512 and AVX2 targets, whatever this host has."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import micro_tiles  # noqa: E402
from engine.kernels.micro_tile import MICRO_TILE  # noqa: E402

# like the browser test: skipped where llvm-mca is missing, but never in CI (make test installs it)
needs_mca = pytest.mark.skipif(shutil.which("llvm-mca") is None and shutil.which("llvm-mca-14") is None
                               and os.environ.get("CI", "").lower() in ("", "0", "false"),
                               reason="llvm-mca missing (make mca-tools installs Debian's llvm)")


def test_the_loop_is_found_in_assembly_with_a_setup_block_and_an_outer_loop():
    asm = """
one_tile:
\tvxorps %xmm0, %xmm0, %xmm0
.LBB0_1:
\tvmovups (%rsi), %zmm1
.LBB0_2:
\tvbroadcastss (%rdx), %zmm2
\tvfmadd231ps %zmm1, %zmm2, %zmm0
\tvfmadd231ps %zmm1, %zmm2, %zmm3
\taddq $64, %rdx
\tjne .LBB0_2
\tdecq %rcx
\tjne .LBB0_1
\tretq
"""
    loop = micro_tiles.loop_assembly(asm)
    assert loop[0].startswith("vbroadcastss") and loop[-1].startswith("jne")
    assert sum("fmadd" in line for line in loop) == 2


@needs_mca
@pytest.mark.parametrize("target", ["skylake-avx512", "znver3"])
def test_the_chosen_micro_tile_keeps_its_accumulators_in_registers_and_near_the_fma_bound(target):
    lanes = micro_tiles.TARGETS[target]
    rows, blocks = MICRO_TILE[lanes]
    result = micro_tiles.run_candidate("analyse", (rows, blocks), lanes, ["--target", target], target)
    assert "error" not in result, result
    assert result["fmas"] == rows * blocks * lanes          # one input-channel block, fully unrolled
    assert result["spills"] == 0
    predicted = result["fma_bound_cycles"] / result["cycles_per_iteration"]
    # AVX-512 targets: the FMA ports bind. LLVM 14's Zen 3 model takes both FP0 and FP1 for
    # each 256-bit FMA (one per cycle, half the real rate), so it predicts half the
    # 2-per-cycle bound for any loop of FMAs (measured on Zen 3: 75-90 % of peak)
    assert predicted >= (0.95 if lanes == 16 else 0.45), result


@needs_mca
def test_the_3x3_depthwise_row_core_keeps_its_taps_in_registers_and_near_its_port_bound():
    # the stride-1 copy of the 3x3 row core (bench/depthwise_incore.py) as built for
    # Sapphire Rapids: 4 pixels per pass, each input vector loaded once for the up to 3
    # pixels that read it (4.5 loads per pixel), the row masks folded into the taps per row
    # (9 FMAs + the 2-op clip per pixel, no mask multiplies), no spills; predicted 6.0 cycles
    # per pixel-block against the 4.5 of 9 FMAs on 2 ports (5.5 for its 11 FP ops)
    import depthwise_incore

    result = depthwise_incore.analyse_one("3x3-s1", "sapphirerapids")
    assert "error" not in result, result
    assert result["spills"] == 0, result
    pixels = result["pixels_per_iteration"]
    assert result["fmas"] == 9 * pixels and result["fp_ops"] == 11 * pixels, result
    assert result["loads"] <= 3 * (pixels + 2), result
    assert result["fma_bound"] / result["cycles_per_pixel"] >= 0.70, result
