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
# # 02 · Why MobileNetV2 is memory bound
#
# MobileNetV2 replaces dense 3×3 convolutions by *depthwise-separable* ones: a cheap
# depthwise 3×3 (one filter per channel) between two 1×1 (pointwise) convolutions. That
# cuts the FLOPs by ~8×, but it also cuts the arithmetic each byte of data gets, which
# pushes layers left of the ridge point, where bytes, not FLOPs, set the pace. This
# notebook derives that from the shapes, puts this machine's numbers on it (which layers
# really end up memory bound depends on its caches and bandwidths), and shows what batch
# size and block fusion change, and how we know the bytes it all rests on.
#
# Set `ROOFLINE_FAST=1` in the environment for fewer repeats.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import engine
import workbench
from workbench.bytes_check_figure import bytes_check_figure, bytes_check_table
from workbench.figure_parts import short_name
from workbench.simulated_bytes import model_vs_simulated
from workbench.tables import format_table
from workbench.teaching import (conv_intensity, fusion_effect, intensity_by_kind, model_intensities, ridge_point_figure,
                                ridge_points)
from workbench.widgets import Explorer

setup = workbench.setup_notebook(repeats=7)      # the default MobileNetV2, this machine's ceilings
model, ceilings = setup.model, setup.ceilings
THREADS, REPEATS = setup.threads, setup.repeats

# %% [markdown]
# ## 1. Arithmetic intensity from the shapes
#
# Take a convolution over an $N \times C_{in} \times H \times W$ float32 input giving
# $N \times C_{out} \times H_o \times W_o$ with a $k \times k$ kernel. Count 2 FLOPs per
# multiply-accumulate and the *compulsory* traffic: every input, weight and output crosses
# memory once (4 bytes each).
#
# | conv | FLOPs | weights |
# |---|---|---|
# | dense $k\times k$ | $2\,N C_{out} H_o W_o \cdot C_{in} k^2$ | $C_{out} C_{in} k^2$ |
# | depthwise $k\times k$ | $2\,N C H_o W_o \cdot k^2$ | $C k^2$ |
# | pointwise $1\times 1$ | $2\,N C_{out} H W \cdot C_{in}$ | $C_{out} C_{in}$ |
#
# $$\text{bytes} = 4\,(N C_{in} H W + \text{weights} + N C_{out} H_o W_o), \qquad
#   \text{AI} = \frac{\text{FLOPs}}{\text{bytes}}\ \text{FLOP/byte}$$
#
# Per output element a dense conv does $2 C_{in} k^2$ FLOPs, a pointwise conv $2 C_{in}$,
# a depthwise conv only $2k^2 = 18$, whatever the number of channels. A depthwise 3×3 at
# stride 1 reads about one input and writes one output per output element, so its
# intensity can never exceed $18/8 = 2.25$ FLOP/byte. A pointwise conv approaches
# $C_{in} C_{out} / (2 (C_{in} + C_{out}))$ once its weights are amortised over many pixels.
#
# The same formulas applied to one inverted-residual block of MobileNetV2 (the first
# 144-channel depthwise, at 56×56), and to a dense 3×3 conv of the same width:

# %%
intensities = model_intensities(model, batches=(1, 8))
example = intensities[(intensities["op"] == "depthwise") & (intensities["in_channels"] == 144)].iloc[0]
c, h, w = int(example["in_channels"]), int(example["height"]), int(example["width"])
expand = intensities[(intensities["op"] == "expand") & (intensities["out_channels"] == c)].iloc[0]
rows = {
    f"expand 1×1 {int(expand['in_channels'])}→{c}": conv_intensity("pointwise", int(expand["in_channels"]), c, h, w),
    f"depthwise 3×3, {c} ch": conv_intensity("depthwise", c, c, h, w),
    f"dense 3×3 {c}→{c} (for comparison)": conv_intensity("dense", c, c, h, w),
}
table = pd.DataFrame(rows).T[["flops", "input_bytes", "weight_bytes", "output_bytes", "bytes", "arithmetic_intensity"]]
depthwise_ai = rows[f"depthwise 3×3, {c} ch"]["arithmetic_intensity"]
dense_ai = rows[f"dense 3×3 {c}→{c} (for comparison)"]["arithmetic_intensity"]
display(Markdown(
    f"At {h}×{w} with {c} channels, batch 1: the depthwise conv does "
    f"2·{c}·{h}·{w}·9 = {rows[f'depthwise 3×3, {c} ch']['flops']:,} FLOPs on "
    f"{rows[f'depthwise 3×3, {c} ch']['bytes']:,} bytes, **{depthwise_ai:.2f} FLOP/byte**; a dense 3×3 "
    f"of the same width would do {dense_ai / depthwise_ai:.0f}× more arithmetic per byte "
    f"(**{dense_ai:.0f} FLOP/byte**)."))
format_table(table, {"flops": "FLOP", "input_bytes": "bytes", "weight_bytes": "bytes", "output_bytes": "bytes",
                     "bytes": "bytes", "arithmetic_intensity": "FLOP/byte"},
             names={"flops": "FLOPs", "input_bytes": "input", "weight_bytes": "weights", "output_bytes": "output",
                    "arithmetic_intensity": "AI"}, index=True)

# %% [markdown]
# Every convolution of the network, batch 1, by kind (FLOP/byte, compulsory traffic):

# %%
by_kind = intensity_by_kind(intensities, "ai_batch1")
format_table(by_kind, {"layers": "count", "min": "FLOP/byte", "median": "FLOP/byte", "max": "FLOP/byte"}, index=True)

# %% [markdown]
# ## 2. This machine's ridge points
#
# A layer is memory bound at a level when its intensity there is left of the level's ridge
# point, peak FLOP/s / bandwidth (measured on this machine, `workbench.measure_ceilings`):

# %%
ridges = ridge_points(ceilings)
format_table(ridges, {"peak_gflops": "GFLOP/s", **{f"{level}_gbs": "GB/s" for level in ceilings.levels},
                      **{level: "FLOP/byte" for level in ceilings.levels}},
             names={"peak_gflops": "peak", **{f"{level}_gbs": f"{level} bandwidth" for level in ceilings.levels},
                    **{level: f"{level} ridge" for level in ceilings.levels}}, index=True)

# %%
ridge = ridges.loc[THREADS, list(ceilings.levels)]
left_of = {level: (intensities["ai_batch1"] < ridge[level]).mean() for level in ceilings.levels}
depthwise_max = intensities.loc[intensities["op"] == "depthwise", "ai_batch1"].max()
l3_mib = engine.machine.machine_info().cache("L3").size_bytes / 2**20
display(Markdown(
    f"With {THREADS} thread(s) the ridge points are " + ", ".join(f"{level} **{value:.3g}**" for level, value
                                                                in ridge.items()) + " FLOP/byte. "
    f"No depthwise layer's compulsory intensity exceeds {depthwise_max:.2f} FLOP/byte. If every operand streamed "
    f"from DRAM, {left_of['DRAM']:.0%} of the convolutions would be left of the DRAM ridge point (memory "
    f"bound); {left_of['L3']:.0%} are left of the L3 one. Whether the data does come from DRAM depends on the "
    f"cache: this machine has {l3_mib:.0f} MiB of L3, and the engine's bytes model (used by the profiles below) "
    f"credits activations that stay there between layers. Every convolution, its compulsory intensity against "
    f"the ridge points:"))

ridge_point_figure(intensities, ceilings, THREADS)

# %% [markdown]
# ## 3. Batch size moves pointwise layers right, not depthwise ones
#
# A larger batch re-uses each weight for more images. Pointwise weights are a large part of
# a pointwise layer's traffic deep in the network (small $H W$, many channels), so their
# intensity grows with the batch; a depthwise layer's traffic is almost all activations,
# which grow with the batch exactly as its FLOPs do. From the formulas:

# %%
ratio = intensities["ai_batch8"] / intensities["ai_batch1"]
by_batch = ratio.groupby(intensities["op"], sort=False).agg(["min", "median", "max"])   # batch 8 over batch 1
display(Markdown(f"Compulsory intensity at batch 8 over batch 1: depthwise layers gain at most "
                 f"×{by_batch.loc['depthwise', 'max']:.2f}; pointwise layers a median ×"
                 f"{ratio[intensities['kind'] == 'pointwise'].median():.2f} and up to "
                 f"×{ratio[intensities['kind'] == 'pointwise'].max():.2f} (the deep ones, whose weights "
                 f"outweigh their small activations)."))
format_table(by_batch, {"min": "×", "median": "×", "max": "×"}, index=True)

# %% [markdown]
# And measured: profile batch 1 and batch 8 and draw one over the other at L3 (hollow:
# batch 1, filled: batch 8; an arrow per layer). Bytes are the engine's model, time is
# measured.

# %%
# blocks unfused (whatever the engine's default), so every layer keeps its own point
batch_one = workbench.profile(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings, fuse_blocks=False)
batch_eight = workbench.profile(model, batch=8, threads=THREADS, repeats=REPEATS, ceilings=ceilings, fuse_blocks=False)
workbench.before_after_figure(batch_one, batch_eight, ceilings, level="L3", labels=("batch 1", "batch 8"))

# %%
with_flops_one, with_flops_eight = batch_one[batch_one["flops"] > 0], batch_eight[batch_eight["flops"] > 0]
moved = pd.DataFrame({
    "AI at L3, batch 1": with_flops_one.groupby("op", sort=False)["ai_L3"].median(),
    "AI at L3, batch 8": with_flops_eight.groupby("op", sort=False)["ai_L3"].median(),
    "GFLOP/s, batch 1": with_flops_one.groupby("op", sort=False)["gflops"].median(),
    "GFLOP/s, batch 8": with_flops_eight.groupby("op", sort=False)["gflops"].median(),
})
moved["AI ratio"] = moved["AI at L3, batch 8"] / moved["AI at L3, batch 1"]
dram_per_image = {b: frame["bytes_DRAM"].sum() / b / 1e6 for b, frame in ((1, batch_one), (8, batch_eight))}
display(Markdown(
    "Median over the layers of each kind, intensity at L3 from batch 1 to 8: " + "; ".join(
        f"**{op}** ×{ratio:.2f}" for op, ratio in moved["AI ratio"].items()) + ". "
    f"Modelled DRAM traffic per image: {dram_per_image[1]:.2f} MB at batch 1, {dram_per_image[8]:.2f} MB at "
    f"batch 8" + (" (the weights are amortised over more images, but the activations of a larger batch stop "
                  "fitting in L3)." if dram_per_image[8] > dram_per_image[1] else
                  " (the weights are amortised over more images).")))
format_table(moved, {"AI at L3, batch 1": "FLOP/byte", "AI at L3, batch 8": "FLOP/byte", "GFLOP/s, batch 1": "GFLOP/s",
                     "GFLOP/s, batch 8": "GFLOP/s", "AI ratio": "×"}, index=True)

# %% [markdown]
# ## 4. Fusion changes the bytes
#
# Unfused, an inverted-residual block writes its 6×-expanded intermediate to memory after
# the expand conv, reads it back for the depthwise conv, writes it again and reads it
# again for the projection. Fused (`fuse_blocks=True`) the engine computes the block band
# by band of output rows, so the expanded intermediate lives in a small per-thread scratch
# buffer and never crosses into the outer levels. Same FLOPs; whether there are fewer
# bytes depends on the level: the fused block saves the intermediate's traffic but reads
# its three weight tensors once per band (and re-expands a few halo rows where each
# thread's stripe starts), so where the weights are large next to the intermediate (deep
# blocks, small images), or where the intermediate would have stayed in cache anyway,
# fusion can cost bytes. The point of each
# block moves right where it saves bytes, left where it costs them. (Between the two,
# `fuse_blocks="auto"` fuses only the blocks the engine expects to run *faster* fused at
# the run's core count and batch: `engine.fusion.fusion_wins`.)

# %%
unfused = workbench.profile(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings, fuse_blocks=False)
fused = workbench.profile(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings, fuse_blocks=True)
workbench.before_after_figure(unfused, fused, ceilings, level="L3", labels=("unfused", "fused"))

# %%
effect = fusion_effect(unfused, fused, levels=ceilings.levels)
effect.index = [short_name(name) for name in effect.index]
lines = []
for level in ("L2", "L3", "DRAM"):
    right = effect[effect[f"right_{level}"]]
    left = effect[effect[f"MB_{level}_fused"] > effect[f"MB_{level}_unfused"]]
    text = (f"At **{level}**, {len(right)} of {len(effect)} blocks move right (in all: "
            f"{effect[f'MB_{level}_fused'].sum():.1f} MB fused against {effect[f'MB_{level}_unfused'].sum():.1f} MB "
            f"for their layers unfused)")
    if len(left):
        images = sorted(set(left["input_hw"]), key=lambda hw: -int(hw.split("x")[0]))
        text += f"; {len(left)} move left (images of {', '.join(images)})"
    if len(effect) - len(right) - len(left):
        text += f"; {len(effect) - len(right) - len(left)} do not move"
    lines.append("- " + text + ".")
lines.append(f"- Time of the blocks: {effect['ms_unfused'].sum():.2f} ms unfused, {effect['ms_fused'].sum():.2f} ms fused "
             f"(whole run: {unfused['seconds'].sum() * 1e3:.2f} ms unfused, {fused['seconds'].sum() * 1e3:.2f} ms fused).")
display(Markdown("\n".join(lines)))
format_table(effect[["input_hw", "ms_unfused", "ms_fused", "MB_L3_unfused", "MB_L3_fused", "ai_L3_unfused",
                     "ai_L3_fused", "MB_DRAM_unfused", "MB_DRAM_fused"]],
             {"ms_unfused": "ms", "ms_fused": "ms", "MB_L3_unfused": "MB", "MB_L3_fused": "MB",
              "ai_L3_unfused": "FLOP/byte", "ai_L3_fused": "FLOP/byte", "MB_DRAM_unfused": "MB", "MB_DRAM_fused": "MB"},
             names={"input_hw": "input", "ms_unfused": "time unfused", "ms_fused": "time fused",
                    "MB_L3_unfused": "L3 unfused", "MB_L3_fused": "L3 fused", "ai_L3_unfused": "AI L3 unfused",
                    "ai_L3_fused": "AI L3 fused", "MB_DRAM_unfused": "DRAM unfused", "MB_DRAM_fused": "DRAM fused"},
             index=True)

# %% [markdown]
# ## 5. How do we know the bytes?
#
# Time is measured and FLOPs are counted exactly, but every arithmetic intensity above
# divides by *modelled* bytes: `engine/traffic.py` says, per step and level, what must
# cross into that level given the tiles and the cache sizes (compulsory traffic, re-reads
# when a working set does not fit, an input the step before left in L2, what stays in L3).
# These machines have no hardware counters to check it against, so the workbench checks it
# against a **cache simulation**: every kernel has a trace generator that walks its own
# loops (the same work items, tiles and prefetches) and lists the cache lines it loads and
# stores, and the steps run in order through a simulated L1/L2/L3 of this machine's sizes
# (pycachesim), so what one step leaves in cache the next one finds.
#
# `profile(..., bytes="both")` puts both side by side. On the scatter each point is one
# step at one level: on the diagonal model and simulation agree; above it the model counts
# more bytes than the simulated caches move (its points sit too far left on the roofline),
# below it fewer (too far right: a point *above its roof* is often one whose bytes the
# model undercounts).

# %%
checked = workbench.profile(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings, bytes="both")
bytes_check_figure(checked)

# %%
pairs = model_vs_simulated(checked)
pairs = pairs[(pairs["level"] != "L1") & (pairs[["model_bytes", "simulated_bytes"]].max(axis=1) >= 64 * 1024)]
within = pairs["ratio"].between(0.8, 1.25)
worst = pairs.assign(off=abs(np.log(pairs["ratio"].where(pairs["ratio"] > 0)))).nlargest(3, "off")
display(Markdown(
    f"Beyond the registers (where model and trace count nearly the same loads), {within.mean():.0%} of the "
    f"{len(pairs)} step-and-level pairs that move over 64 KiB agree within 25 %. Furthest apart: "
    + "; ".join(f"{short_name(r.layer)} at {r.level} (model ×{r.ratio:.2g} the simulation)" for r in worst.itertuples())
    + ". bench/README.md (\"Bytes model against a cache simulation\") says why they differ: at batch 1 the "
    "arena's buffers stay in the L2s from step to step, so an output there costs no line fill and no write-back "
    "that the model charges (it sees one step at a time); consecutive fused blocks find the scratch they share "
    "still in L2; weights a prefetch did not bring in. The simulation has its own blind spots: no hardware "
    "prefetcher, LRU only."))
bytes_check_table(checked)

# %% [markdown]
# The same profile with its points placed by the simulated bytes: where the two rooflines
# differ, the model's bytes decided which roof a step sits under.

# %%
workbench.roofline_figure(checked, ceilings, level="L3", bytes="simulated")

# %% [markdown]
# ## 6. Try it
#
# The explorer starts at L3 with every block fused; switch fusion off or to auto, raise
# the batch, switch the level, or move `block rows`, and watch the points move. Its
# `bytes` toggle places the points by the cache simulation instead of the model (a second
# or so per configuration, then instant).

# %%
explorer = Explorer(model, ceilings=ceilings, level="L3", fuse_blocks=True, repeats=REPEATS)
explorer
