# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Tuning tiles, layer by layer
#
# The engine's kernels take their tile sizes at run time, so trying another tile never
# recompiles anything, and every step of the network can have tiles of its own: an
# `engine.TileSchedule` holds default `engine.Tiles` plus overrides by step name, and for
# each inverted-residual block whether it runs fused. A tile decides how often an operand is
# re-read: re-reads are bytes, and bytes move a layer left on the roofline.
#
# The story: why one layer's best tile is not another's (its shape against this machine's
# caches); one layer tuned by hand, measured with `workbench.sweep`; then the tuner
# (`workbench.tune`), which does that for every step within a time budget; then the whole
# network before and after on one roofline. Timings on a shared machine are noisy:
# differences of a few per cent are not meaningful. `ROOFLINE_FAST=1` makes every step
# smaller (fewer tiles tried, a 10 s tuning budget).

# %%
import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown, display

import engine
import workbench
from workbench.figure_parts import short_name
from workbench.profile import run_machine
from workbench.tables import format_table
from workbench.teaching import model_intensities
from workbench.widgets import Explorer

setup = workbench.setup_notebook(repeats=5)      # the default MobileNetV2, this machine's ceilings
model, ceilings = setup.model, setup.ceilings
THREADS, REPEATS, FAST = setup.threads, setup.repeats, setup.fast
machine = run_machine(ceilings)                  # the caches the engine's runs assume: measured, where measured
KIB = 1024
caches = {level.name: level.usable_bytes for level in machine.caches}
display(Markdown(f"{machine.cpu_model}: L1 {caches['L1'] // KIB} KiB and L2 {caches['L2'] // KIB} KiB per core, "
                 f"L3 {caches['L3'] // KIB // KIB} MiB shared (effective sizes where the ceilings measured them); "
                 f"{THREADS} thread(s)."))

# %% [markdown]
# ## 1. Why a layer's best tile depends on its shape and the caches
#
# A 1×1 conv is a matrix multiply, `out[pixels, Cout] = x[pixels, Cin] @ W.T[Cin, Cout]`,
# cut into work items of `pointwise_pixels` pixels × `pointwise_channels` output channels.
# The engine's bytes model (`engine/kernels/pointwise.py`, `pointwise_bytes`) says what crosses
# each cache boundary: the weights once if they all stay in the cache, else once per pixel
# tile (so fewer, larger pixel tiles re-read them less); a pixel tile's inputs
# (`pointwise_pixels × Cin × 4` bytes) once if they stay in the cache while its channel
# tiles are walked, else once per pair of output-channel blocks (so they must fit).
#
# MobileNetV2's 1×1 convs are nothing alike. An early expand sees a large image through few
# channels: its weights are a few KiB and fit anywhere, its pixel tiles are small. The last
# 1×1 convs see 7×7 pixels through hundreds of channels: their weights are hundreds of KiB,
# larger than L1 and a good part of L2, and a single 64-pixel tile of their input is tens
# of KiB. No one `Tiles` suits both.

# %%
layers = model_intensities(model, batches=(1,), dense_comparison=False)
pointwise = layers[layers["kind"] == "pointwise"].copy()
pointwise["pixels"] = pointwise["height"] * pointwise["width"]
pointwise["weights KiB"] = pointwise["in_channels"] * pointwise["out_channels"] * 4 / KIB
pointwise["64-pixel input tile KiB"] = 64 * pointwise["in_channels"] * 4 / KIB
pointwise["weights fit L1"] = pointwise["weights KiB"] * KIB <= caches["L1"]
pointwise["weights fit L2"] = pointwise["weights KiB"] * KIB <= caches["L2"]
EARLY = pointwise.loc[pointwise["pixels"].idxmax(), "layer"]          # the widest image
LATE = pointwise.loc[pointwise["weights KiB"].idxmax(), "layer"]      # the largest weights
shown = pointwise.assign(layer=pointwise["layer"].map(short_name))
format_table(shown[["layer", "op", "in_channels", "out_channels", "height", "width", "weights KiB",
                    "64-pixel input tile KiB", "weights fit L1", "weights fit L2"]].iloc[[0, 1, 2, len(shown) // 2,
                                                                                          -3, -2, -1]],
             {"weights KiB": "KiB", "64-pixel input tile KiB": "KiB"},
             names={"in_channels": "Cin", "out_channels": "Cout", "weights KiB": "weights",
                    "64-pixel input tile KiB": "64-pixel input tile"})

# %% [markdown]
# ## 2. One layer by hand
#
# Two layers at the two ends of that table, the widest image and the largest weights, each
# with `pointwise_pixels` overridden in a `TileSchedule` (every other step keeps the
# defaults). `workbench.sweep` runs one configuration per schedule (`schedules=`, a label
# each) and keeps each step's time and modelled bytes; both layers change in each schedule,
# and each is read from its own rows. Blocks unfused, so the early expand is a step of its
# own (fused, it would be part of its block's kernel, which reads `block_rows` instead).

# %%
pixel_tiles = [16, 64, 256] if FAST else [8, 16, 32, 64, 128, 256, 512]
by_pixels = {f"{pixels} pixels": engine.TileSchedule(overrides={EARLY: engine.Tiles(pointwise_pixels=pixels),
                                                                LATE: engine.Tiles(pointwise_pixels=pixels)})
             for pixels in pixel_tiles}
table = workbench.sweep(model, batch=1, threads=THREADS, fuse_blocks=False, repeats=REPEATS, ceilings=ceilings,
                        schedules=by_pixels)
two = table[table["layer"].isin([EARLY, LATE])]
two = two.assign(layer=two["layer"].map(short_name), ms=two["seconds"] * 1e3, MB_L2=two["bytes_L2"] / 1e6)
by_hand = two.pivot_table(index="pointwise_pixels", columns="layer", values=["ms", "MB_L2"])
by_hand.columns = [f"{layer}: {'time' if value == 'ms' else 'across L2'}" for value, layer in by_hand.columns]
format_table(by_hand.reset_index(), {column: ("ms" if column.endswith("time") else "MB")
                                     for column in by_hand.columns})

# %%
figure = go.Figure()
for layer, rows in two.groupby("layer"):
    rows = rows.sort_values("pointwise_pixels")
    figure.add_trace(go.Scatter(x=rows["pointwise_pixels"], y=rows["ms"] / rows["ms"].min(), mode="lines+markers",
                                name=layer, customdata=rows[["ms", "MB_L2"]].to_numpy(),
                                hovertemplate="pointwise_pixels %{x}: %{customdata[0]:.3f} ms, "
                                              "%{customdata[1]:.2f} MB across L2 (modelled)<extra></extra>"))
figure.update_layout(title="One layer's time by pointwise_pixels, relative to its best (lower is better)",
                     xaxis=dict(title="pointwise_pixels", type="log"), height=400,
                     # a log scale: one measurement a busy machine slowed tenfold does not flatten the rest
                     yaxis=dict(title="time / best time (log scale)", type="log"))
figure

# %% [markdown]
# Each layer's best pixel tile, as one schedule: that is tuning by hand. The Explorer below
# runs it in its per-layer mode, with the large-weights layer selected (ringed): its tile
# sliders now set that step's tiles only. Click any point of the roofline to select its
# step, or pick one from the list; "every step" sets the default tiles again.

# %%
best = two.loc[two.groupby("layer")["ms"].idxmin()].set_index("layer")["pointwise_pixels"]
hand_schedule = engine.TileSchedule(overrides={EARLY: engine.Tiles(pointwise_pixels=int(best[short_name(EARLY)])),
                                               LATE: engine.Tiles(pointwise_pixels=int(best[short_name(LATE)]))})
display(Markdown(f"Best here: `{short_name(EARLY)}` with {best[short_name(EARLY)]} pixels per tile, "
                 f"`{short_name(LATE)}` with {best[short_name(LATE)]}."))
explorer = Explorer(model, ceilings=ceilings, fuse_blocks=False, tiles=hand_schedule, level="L2", repeats=REPEATS)
explorer.set(step=LATE)
explorer

# %% [markdown]
# ## 3. The tuner
#
# Doing that for every step, with the depthwise rows, each block's band height and whether
# it runs fused at all, is the tuner's job: `workbench.tune` runs `engine.tune` greedily,
# the slowest steps first, each candidate timed inside whole runs (caches warm as in a real
# run), interleaved and repeated, a candidate kept only if it wins by more than its spread.
# It leaves alone a step already within 5 % of its roof on this machine's roofline, and
# stops when its budget is spent. The tuned schedule is keyed to this model, batch, thread
# count and CPU; it is cached, so `model.run(x, tiles="tuned")` and
# `roofline-workbench profile --tiles tuned` find it (not in a `ROOFLINE_FAST` test run,
# which must not replace this machine's schedule with a 10-second one). The Explorer's Tune
# button does the same and draws the result on its roofline.

# %%
BUDGET = 10 if FAST else 60
tuning = workbench.tune(model, batch=1, threads=THREADS, budget_s=BUDGET, ceilings=ceilings,
                        repeats=3 if FAST else 5, profile_repeats=REPEATS, save=not FAST)
result = tuning.result
display(Markdown(
    f"Tuned in {result.seconds:.1f} s ({result.stopped or 'search complete'}), {len(tuning.trials)} candidates "
    f"measured. Whole runs, default and tuned side by side (medians): **{result.default_seconds * 1e3:.2f} ms → "
    f"{result.tuned_seconds * 1e3:.2f} ms**."))
changed = tuning.changed_steps()
format_table(changed.assign(step=changed["step"].map(short_name)), {"default ms": "ms", "tuned ms": "ms"},
             names={"default ms": "default", "tuned ms": "tuned"})

# %% [markdown]
# What it measured for one step (one row per candidate: its tiles, the median and spread
# of that step's time over the repeats; `chosen` is what it kept): the large-weights layer
# of section 2 if the budget reached it, else the first step it tuned (the slowest: blocks
# come first, fused or not, and a block's layers are tuned as the block).

# %%
trials = tuning.trials
if trials.empty:
    display(Markdown("The tuner searched no step: each ran within 5 % of its roof already."))
else:
    step = LATE if (trials["step"] == LATE).any() else trials["step"].iloc[0]
    display(Markdown(f"`{short_name(step)}`:"))
    display(format_table(trials[trials["step"] == step][["kind", "candidate", "median_s", "spread_s", "repeats",
                                                         "chosen"]],
                         {"median_s": "s→ms", "spread_s": "s→ms", "repeats": "count"},
                         names={"median_s": "median", "spread_s": "spread"}))

# %% [markdown]
# ## 4. The whole network, before and after
#
# Every step's default point (hollow) and its tuned point, an arrow between them. Right is
# fewer bytes per FLOP at L2, up is faster. Then the three schedules as whole runs, with
# `workbench.sweep` (on a Dask cluster, `schedules={"tuned": "tuned"}` runs each host's own
# tuned schedule, so one table compares them across machines).

# %%
tuning.figure(level="L2")

# %%
runs = workbench.sweep(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings,
                       schedules={"default": engine.Tiles(), "by hand": hand_schedule, "tuned": tuning.schedule})
totals = workbench.sweep_totals(runs).set_index("schedule")
format_table(totals[["run_seconds", "images_per_second", "gflops", "ai_L2"]],
             {"run_seconds": "s→ms", "images_per_second": "number", "gflops": "GFLOP/s", "ai_L2": "FLOP/byte"},
             names={"run_seconds": "whole run", "images_per_second": "images/s", "ai_L2": "AI L2"}, index=True)

# %% [markdown]
# The Explorer above, running the tuned schedule (one measurement):

# %%
explorer.set_schedule(tuning.schedule)
format_table(explorer.profile.assign(layer=explorer.profile["layer"].map(short_name))[
                 ["layer", "op", "seconds", "gflops", "ai_L2", "pointwise_pixels", "depthwise_rows",
                  "block_rows"]].head(),
             {"seconds": "s→ms", "gflops": "GFLOP/s", "ai_L2": "FLOP/byte"},
             names={"seconds": "time", "ai_L2": "AI L2"})
