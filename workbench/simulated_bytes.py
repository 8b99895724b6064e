"""Bytes you can check: the bytes model (engine.traffic) beside a cache simulation of each
step's real access pattern (engine.trace), as columns of a profile and as tables.

    frame = simulated_frame(model, batch=1, threads=2)     # one row per step, model and simulated
    add_simulated_columns(profile_frame, model, ...)       # bytes_sim_<level>, ai_sim_<level>
    model_vs_simulated(frame)                              # one row per step and level
    agreement_table(frame)                                 # per family and level: median and worst ratio

A ratio is modelled / simulated bytes: above 1 the model counts more traffic than the
simulated caches see, below 1 less. `FAMILY_OF_OP` groups the steps' ops by kernel family.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd

import engine
from engine.traffic import LEVELS

logger = logging.getLogger(__name__)

# "conv" is a dense NCHWc conv (engine.kernels.conv_nchwc) unless its layer runs on the direct
# conv kernel (a dilated conv: Layer.conv_kind "direct"), which `family_of` tells apart.
FAMILY_OF_OP = {"stem": "direct conv", "conv": "dense conv", "expand": "1x1", "project": "1x1", "pointwise": "1x1",
                "depthwise": "depthwise", "block": "fused block", "pool": "pooling", "maxpool": "pooling",
                "linear": "linear", "se": "squeeze-excite", "activation": "elementwise", "layout": "layout",
                "flatten": "layout"}
BYTES_CHOICES = ("model", "simulated", "both")
# Below this many bytes at a level a step's ratio says nothing (a few lines either way).
SMALL_BYTES = 64 * 1024


def family_of(step) -> str:
    """The kernel family of a plan step (FAMILY_OF_OP; a "conv" on the direct conv kernel,
    a dilated one, is "direct conv"); an op not listed is its own family."""
    layer = getattr(step, "layer", None)
    if step.op == "conv" and layer is not None and getattr(layer, "conv_kind", None) == "direct":
        return "direct conv"
    return FAMILY_OF_OP.get(step.op, step.op)


def check_bytes_choice(value) -> str:
    """`value` if it is one of BYTES_CHOICES, else ValueError naming them."""
    if not isinstance(value, str) or value not in BYTES_CHOICES:
        raise ValueError(f"bytes must be one of {BYTES_CHOICES}, got {value!r}")
    return value


def simulate_plan_bytes(plan, machine=None, threads=None, progress=None) -> list:
    """engine.trace.simulator.simulate_plan with progress shown: progress None or True, a
    tqdm bar (tqdm.auto picks the console or the notebook form); False, none; a callable,
    called as progress(done, total, step name) after each step simulated (a widget's bar)."""
    from engine.trace.simulator import simulate_plan      # here: loads pycachesim and compiles its feed on first use

    if callable(progress):
        return simulate_plan(plan, machine=machine, threads=threads, warm_runs=1, progress=progress)
    bar = None
    if progress is not False:
        from tqdm.auto import tqdm
        bar = tqdm(total=(1 + 1) * len(plan.steps), desc="cache simulation", unit="step", leave=False)

    def advance(done, total, name):
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)
    try:
        return simulate_plan(plan, machine=machine, threads=threads, warm_runs=1, progress=advance)
    finally:
        if bar is not None:
            bar.close()


def simulated_frame(model, batch: int = 1, threads: int = 2, tiles=None, fuse_blocks=engine.DEFAULT_FUSE_BLOCKS,
                    machine=None, progress=None) -> pd.DataFrame:
    """One row per step of `model`'s plan: step (index), layer, op, family, flops,
    bytes_<level> (the model's) and bytes_sim_<level> (simulated), traced, sim_seconds.
    machine: the MachineInfo the plan and the simulation assume (default: this machine).
    progress: as simulate_plan_bytes's."""
    from engine.machine import machine_info

    machine = machine or machine_info()
    plan = model.plan(batch, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, machine=machine)
    started = time.perf_counter()
    results = simulate_plan_bytes(plan, machine, threads, progress)
    rows = []
    for index, (step, result) in enumerate(zip(plan.steps, results)):
        row = {"step": index, "layer": step.name, "op": step.op, "family": family_of(step),
               "flops": step.flops, "traced": result.traced}
        row.update({f"bytes_{level}": float(step.bytes[level]) for level in LEVELS})
        row.update({f"bytes_sim_{level}": float(result.bytes[level]) if result.traced else math.nan
                    for level in LEVELS})
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(sim_seconds=time.perf_counter() - started, batch=batch, threads=threads,
                       cpu_model=machine.cpu_model)
    return frame


def add_simulated_columns(frame: pd.DataFrame, model, machine, tiles=None, fuse_blocks=engine.DEFAULT_FUSE_BLOCKS,
                          progress: bool | None = None) -> pd.DataFrame:
    """`frame` (a workbench.profile frame: one row per step, in plan order, columns batch,
    threads, flops) with bytes_sim_<level> and ai_sim_<level> (FLOP/byte) added, from a
    simulation of the same plan (batch, threads, tiles, fusion, machine). A step that runs
    no traced kernel gets NaN. Returns a new frame."""
    batch, threads = int(frame["batch"].iloc[0]), int(frame["threads"].iloc[0])
    simulated = simulated_frame(model, batch, threads, tiles, fuse_blocks, machine, progress)
    return with_simulated_columns(frame, simulated)


def with_simulated_columns(frame: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """`frame` (a profile, one row per step in plan order) with bytes_sim_<level> and
    ai_sim_<level> (FLOP/byte) taken from `simulated` (a simulated_frame of the same plan;
    a cache of one can serve many profiles of one configuration). ValueError when the two
    are not the same steps. Returns a new frame."""
    if len(simulated) != len(frame) or ("layer" in frame.columns
                                        and list(simulated["layer"]) != list(frame["layer"])):
        raise ValueError(f"the simulated plan's {len(simulated)} steps are not the profile's {len(frame)} "
                         "(another fusion or tiles): profile and simulate the same configuration")
    out = frame.copy()
    flops = out["flops"].to_numpy(dtype=float)
    for level in LEVELS:
        moved = simulated[f"bytes_sim_{level}"].to_numpy()
        out[f"bytes_sim_{level}"] = moved
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"ai_sim_{level}"] = np.where(moved > 0, flops / moved, np.where(np.isnan(moved), np.nan, np.inf))
    out.attrs.update(frame.attrs)
    out.attrs["sim_seconds"] = simulated.attrs["sim_seconds"]
    return out


def model_vs_simulated(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per traced step and level: layer, op, family, level, model_bytes,
    simulated_bytes, ratio (model / simulated; NaN where the simulation saw nothing). A
    profile placed by the simulated bytes keeps the model's as bytes_model_<level>: those
    are the model's here."""
    placed = all(f"bytes_model_{level}" in frame.columns for level in LEVELS)
    model_column = "bytes_model_{}" if placed else "bytes_{}"
    rows = []
    for _, row in frame.iterrows():
        if "traced" in row and not row["traced"]:
            continue
        for level in LEVELS:
            modelled, simulated = float(row[model_column.format(level)]), float(row[f"bytes_sim_{level}"])
            if math.isnan(simulated):
                continue
            family = row["family"] if "family" in row and isinstance(row["family"], str) else \
                FAMILY_OF_OP.get(row["op"], row["op"])
            rows.append({"layer": row["layer"], "op": row["op"], "family": family,
                         "level": level, "model_bytes": modelled, "simulated_bytes": simulated,
                         "ratio": modelled / simulated if simulated > 0 else math.nan})
    return pd.DataFrame(rows)


def agreement_table(frame: pd.DataFrame, small_bytes: int = SMALL_BYTES) -> pd.DataFrame:
    """Per family and level: steps compared, the median and the worst ratio (model /
    simulated; worst: furthest from 1 either way), the worst step, and the share of steps off
    by more than 25 %. Steps where both model and simulation move under `small_bytes` at a
    level are left out there (a handful of lines says nothing)."""
    pairs = model_vs_simulated(frame)
    pairs = pairs[(pairs["model_bytes"] >= small_bytes) | (pairs["simulated_bytes"] >= small_bytes)]
    rows = []
    for (family, level), group in pairs.groupby(["family", "level"], sort=False):
        ratios = group["ratio"].replace([np.inf], np.nan)
        finite = group[ratios.notna() & (ratios > 0)]
        if finite.empty:
            rows.append({"family": family, "level": level, "steps": len(group), "median_ratio": math.nan,
                         "worst_ratio": math.nan, "worst_step": "", "off_by_25pct": math.nan})
            continue
        distance = np.abs(np.log(finite["ratio"].to_numpy()))
        worst = finite.iloc[int(np.argmax(distance))]
        rows.append({"family": family, "level": level, "steps": len(group),
                     "median_ratio": float(np.median(finite["ratio"])), "worst_ratio": float(worst["ratio"]),
                     "worst_step": worst["layer"],
                     "off_by_25pct": float(np.mean((finite["ratio"] > 1.25) | (finite["ratio"] < 0.8)))})
    table = pd.DataFrame(rows)
    order = {level: i for i, level in enumerate(LEVELS)}
    return table.sort_values(["family", "level"], key=lambda c: c.map(order) if c.name == "level" else c,
                             ignore_index=True)


def profile_with_bytes(model, bytes: str = "both", batch: int = 1, threads: int | None = None, tiles=None,
                       fuse_blocks=engine.DEFAULT_FUSE_BLOCKS, ceilings=None, progress: bool | None = None,
                       **profile_arguments) -> pd.DataFrame:
    """workbench.profile with the bytes it places points by chosen (`bytes`, BYTES_CHOICES):
    "model" is workbench.profile's frame; "both" adds bytes_sim_<level> and ai_sim_<level>
    (a cache simulation of the same plan on the machine the run assumed: workbench.profile.
    run_machine); "simulated" also takes bytes_<level>, ai_<level>, the roofs and bounds
    from the simulation (the model's bytes kept as bytes_model_<level>). Other arguments as
    workbench.profile's (repeats, warmup, seed)."""
    from workbench.bytes_check_figure import placed_by_simulated_bytes     # here: that module imports this one
    from workbench.profile import as_model, default_ceilings, default_threads, profile, run_machine

    bytes = check_bytes_choice(bytes)
    model = as_model(model)
    threads = default_threads() if threads is None else threads
    ceilings = default_ceilings(threads) if ceilings is None else ceilings
    frame = profile(model, batch=batch, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, ceilings=ceilings,
                    **profile_arguments)
    if bytes == "model":
        return frame
    frame = add_simulated_columns(frame, model, run_machine(ceilings), tiles, fuse_blocks, progress)
    frame.attrs["bytes"] = bytes
    return placed_by_simulated_bytes(frame, ceilings) if bytes == "simulated" else frame
