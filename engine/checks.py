"""Argument checks shared by the engine and the workbench: one definition of what each
argument accepts, each raising ValueError that names the argument, what it accepts and what
it got. numpy integers and bools are accepted wherever an int or a bool is.

The kernels' own wrappers check shapes and dtypes (engine/kernels/_common.py); these are
the checks of the public entries: engine.Model.run/plan, workbench.profile, sweep, compare,
the Explorer and the CLI.
"""
from __future__ import annotations

import functools
import os

import numba
import numpy as np

from engine.kernels.layout import CB
from engine.machine import MachineInfo, machine_info
from engine.tiles import Tiles, TileSchedule

MAX_BATCH = 4096            # images per run; split larger batches


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int, or ValueError naming `name`, the range and the value unless it is
    an int (numpy integers too; bools, floats, strings and None refused) in low..high."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low
            or (high is not None and value > high)):
        accepted = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {accepted}, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """`value` as a bool, or ValueError unless it is True or False (numpy bools too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_batch(batch) -> int:
    """Images per run: an int in 1..MAX_BATCH."""
    return check_int("batch", batch, 1, MAX_BATCH)


def check_repeats(repeats) -> int:
    """Timed runs: an int in 1..10000."""
    return check_int("repeats", repeats, 1, 10_000)


def check_seed(seed):
    """A numpy seed: None or an int >= 0."""
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    return seed


@functools.lru_cache(maxsize=1)
def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, read once), also numba's thread limit."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


def check_threads(threads) -> int:
    """`threads` as an int, or ValueError unless it is an int in 1..available_cores()."""
    cores = available_cores()
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= cores:
        raise ValueError(f"threads must be an int in 1..{cores} (this machine's cores), got {threads!r}")
    return int(threads)


def check_tiles(tiles, tuned_allowed: bool = False):
    """`tiles`: Tiles() for None, an engine.Tiles (the same for every step), an
    engine.TileSchedule (tiles per step) or, where `tuned_allowed`, "tuned" (the schedule
    engine.tune cached for this model and machine); ValueError for anything else."""
    if tiles is None:
        return Tiles()
    if tuned_allowed and isinstance(tiles, str) and tiles == "tuned":
        return tiles
    if not isinstance(tiles, (Tiles, TileSchedule)):
        accepted = "an engine.Tiles, an engine.TileSchedule" + (' or "tuned"' if tuned_allowed else "")
        raise ValueError(f"tiles must be {accepted}, got {tiles!r}" if isinstance(tiles, str)
                         else f"tiles must be {accepted}, got {type(tiles).__name__}")
    return tiles


def check_fuse_blocks(fuse_blocks):
    """True, False (numpy bools too) or "auto"; ValueError for anything else."""
    if isinstance(fuse_blocks, str) and fuse_blocks == "auto":
        return fuse_blocks
    if isinstance(fuse_blocks, (bool, np.bool_)):
        return bool(fuse_blocks)
    raise ValueError(f"fuse_blocks must be True, False or \"auto\", got {fuse_blocks!r}")


def check_machine(machine) -> MachineInfo:
    """`machine`, machine_info() for None, or ValueError unless it is an
    engine.machine.MachineInfo with the lane width the kernels are built for (CB)."""
    if machine is None:
        return machine_info()
    if not isinstance(machine, MachineInfo):
        raise ValueError(f"machine must be an engine.machine.MachineInfo, got {type(machine).__name__}")
    if machine.simd_lanes_fp32 != CB:
        raise ValueError(f"machine describes {machine.simd_lanes_fp32}-lane channel blocks, but the kernels "
                         f"are built for {CB} (set ROOFLINE_LANES={machine.simd_lanes_fp32} before importing "
                         f"engine to run that layout)")
    return machine


def check_hooks(hooks) -> tuple:
    """`hooks` as a tuple: None, one hook, or an iterable of hooks. A hook has a callable
    on_layer(record); on_run_start / on_run_end, when present, must be callable too."""
    if hooks is None:
        return ()
    if hasattr(hooks, "on_layer"):          # one hook given alone (a Recorder, say)
        hooks = (hooks,)
    try:
        hooks = tuple(hooks)
    except TypeError:
        raise ValueError(f"hooks must be a hook (an object with on_layer(record)) or a list of them, "
                         f"got {type(hooks).__name__}") from None
    for hook in hooks:
        if not callable(getattr(hook, "on_layer", None)):
            raise ValueError(f"hook {hook!r} has no on_layer(record) method")
        for name in ("on_run_start", "on_run_end"):
            method = getattr(hook, name, None)
            if method is not None and not callable(method):
                raise ValueError(f"hook {hook!r}: {name} must be a method, got {type(method).__name__}")
    return hooks


def check_input(x, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Validate an input batch (N, C, H, W) float32 for a model whose input is
    `input_shape` (C, H, W); returns `x` itself (not a copy).

    Any memory layout is accepted (the runtime copies what is not C-contiguous native
    float32). Other dtypes (float64 included) are refused, not converted; masked arrays
    are refused (the engine would ignore the mask); N must be in 1..MAX_BATCH."""
    shape_text = ", ".join(map(str, input_shape))
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a numpy.ndarray of float32 (N, {shape_text}), got {type(x).__name__}")
    if isinstance(x, np.ma.MaskedArray):
        raise ValueError("x must be a plain numpy.ndarray, got a masked array (the engine would ignore "
                         "its mask): pass x.filled(value)")
    if x.dtype != np.float32 and not (x.dtype.kind == "f" and x.dtype.itemsize == 4):   # any byte order
        raise ValueError(f"x must be float32, got {x.dtype} (convert with x.astype(np.float32))")
    if x.ndim != 4:
        raise ValueError(f"x must have rank 4 (N, C, H, W) = (N, {shape_text}), got shape {x.shape}")
    if x.shape[0] < 1:
        raise ValueError(f"x must hold at least one image, got batch {x.shape[0]}")
    if x.shape[0] > MAX_BATCH:
        raise ValueError(f"x must hold at most {MAX_BATCH} images (split larger batches), got batch {x.shape[0]}")
    for axis, got, want in zip("CHW", x.shape[1:], input_shape):
        if got != want:
            raise ValueError(f"x has {axis} = {got}, the model expects {axis} = {want} "
                             f"(input shape (N, {shape_text}), got {x.shape})")
    return x
