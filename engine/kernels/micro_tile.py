"""The 1x1 conv's micro-tile shape per lane width and the default work item it implies.

No numba here: `engine.tiles` reads the defaults without loading the kernels.
"""
from __future__ import annotations

from engine._numba_env import LANES

# Micro-tile shape per lane width: (pixels, output blocks), chosen by bench/micro_tiles.py
# (bench/README, "Micro-tiles per ISA"). 6 x 2 fills AVX2's 16 ymm registers (12
# accumulators + 2 weights + 1 broadcast). On AVX-512's 32 zmm registers 8 x 3 (24
# accumulators, 11 loads per 24 FMAs) is at the FMA bound in llvm-mca's Skylake-X, Ice Lake
# and Sapphire Rapids models where 8 x 2 (10 loads per 16 FMAs) reaches 88 %, and it was the
# fastest measured shape over MobileNetV2's 1x1 layers at batch 1 and 8 (6 x 4 ties at batch
# 8, loses at batch 1 where 64-channel work items are too coarse).
MICRO_TILE: dict[int, tuple[int, int]] = {8: (6, 2), 16: (8, 3)}
ROWS, BLOCKS = MICRO_TILE[LANES]   # the shape of the width the kernels are built for

# Default work item: 64 output pixels x one micro-tile's output channels (16 on AVX2, 48 on
# AVX-512), the best summed time over MobileNetV2's 1x1 layers in the sweeps of
# bench/kernel_pointwise.py (bench/README): small channel tiles give the 7x7 layers (one
# pixel tile) enough work items to split evenly; less than a micro-tile's width leaves the
# micro-kernel with fewer accumulators than it was built for.
DEFAULT_POINTWISE_PIXELS = 64
DEFAULT_POINTWISE_CHANNELS = BLOCKS * LANES
