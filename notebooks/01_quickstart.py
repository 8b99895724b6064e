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
# # 01 · Quickstart: the roofline of MobileNetV2 on this machine
#
# Load a network, run it, profile it layer by layer, and place every layer on a roofline
# drawn from *this* machine's measured ceilings. Then read off which layers are memory
# bound, and why.
#
# - **Time** is measured (the median of a few runs), **FLOPs** are counted exactly (2 per
#   multiply-accumulate), **bytes** are *modelled* per memory level (`engine/traffic.py`).
# - A layer's **arithmetic intensity** (AI) at a memory level is FLOPs / bytes moved across
#   that level. Left of the level's **ridge point** (peak FLOP/s / bandwidth) even a perfect
#   kernel waits for memory: the layer is *memory bound* there.
#
# Set `ROOFLINE_FAST=1` in the environment for fewer repeats.

# %%
import numpy as np
from IPython.display import Markdown, display

import workbench
from workbench.figure_parts import short_name
from workbench.tables import format_table, roofs_table
from workbench.teaching import bound_summary, explain_bounds
from workbench.widgets import Explorer

# The default model; put the path of your own MobileNet ONNX file here to profile it instead.
MODEL_PATH = workbench.DEFAULT_MODEL

# %% [markdown]
# ## 1. Load the model
#
# `setup_notebook` loads the model (writing the default MobileNetV2 first if the file is
# missing: torchvision's topology, synthetic weights, since speed depends on shapes, not
# weight values) and this machine's ceilings (section 3), and says how many cores to use
# and how many timed runs to take per measurement (fewer with `ROOFLINE_FAST=1`).

# %%
setup = workbench.setup_notebook(MODEL_PATH, repeats=7)
model, ceilings = setup.model, setup.ceilings
THREADS, REPEATS = setup.threads, setup.repeats
model

# %% [markdown]
# ## 2. Run it
#
# `run` takes a float32 NCHW batch and returns the logits. Threads, tile sizes and block
# fusion are arguments of the run, not of the model: changing them never recompiles.

# %%
x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)
logits = model.run(x, threads=THREADS)
print(f"input {x.shape} -> logits {logits.shape}, top class {int(logits.argmax())}")

# %% [markdown]
# ## 3. This machine's ceilings
#
# Peak fp32 FMA throughput and the bandwidth of each memory level, measured with numba
# kernels for every thread count (`workbench.measure_ceilings()`, which the set-up called)
# and cached in `data/ceilings/`.

# %%
roofs = roofs_table(ceilings)           # memory levels in GB/s, fastest first, then the FMA peak in GFLOP/s
format_table(roofs, {column: "number" for column in roofs.columns}, index=True)

# %% [markdown]
# The same probe sweeps one thread's bandwidth over growing working sets to find each
# cache's *effective* size: where the bandwidth falls half-way (geometrically) from that
# level's plateau to the next one's. In a VM the effective L3 can be much smaller than the
# nominal size sysfs reports, because sysfs describes the host CPU's whole L3 while the
# VM's cores share it with other tenants' cores (or get only a slice of it). The engine's
# bytes model and fusion policy count on the effective sizes.

# %%
ceilings.cache_table()[["level", "nominal", "effective", "shared_by_cores", "note"]]

# %% [markdown]
# ## 4. Profile
#
# One row per executed step: its time, FLOPs, modelled bytes and arithmetic intensity at
# every level, the roof it can attain, and what bounds it.

# %%
frame = workbench.profile(model, batch=1, threads=THREADS, repeats=REPEATS, ceilings=ceilings)
print(f"{frame['seconds'].sum() * 1e3:.2f} ms per image (sum of the steps' medians), "
      f"{frame['flops'].sum() / frame['seconds'].sum() / 1e9:.1f} GFLOP/s overall, {len(frame)} steps")
AI_UNITS = {f"ai_{level}": "FLOP/byte" for level in ceilings.levels}
AI_NAMES = {f"ai_{level}": f"AI {level}" for level in ceilings.levels}
format_table(frame.assign(layer=frame["layer"].map(short_name))[
                 ["layer", "op", "output_shape", "seconds", "share_of_time", "gflops", *AI_UNITS, "bound",
                  "bound_level"]].head(10),
             {"seconds": "s→ms", "share_of_time": "%", "gflops": "GFLOP/s", **AI_UNITS},
             names={"seconds": "time", "share_of_time": "share", **AI_NAMES})

# %% [markdown]
# ## 5. The roofline
#
# One marker per layer at (AI at the chosen level, achieved GFLOP/s); the marker's area is
# its share of the time, its colour its kind. The shaded band is memory bound at that level.
# The buttons switch the level the x axis is measured at. We start at the level most of
# the memory-bound steps are bound at (from the profile's `bound_level`).

# %%
memory_levels = frame.loc[frame["bound"] == "memory", "bound_level"]
LEVEL = memory_levels.mode().iloc[0] if len(memory_levels) else "L2"
print(f"x axis: arithmetic intensity at {LEVEL}")
workbench.roofline_figure(frame, ceilings, level=LEVEL)

# %% [markdown]
# Where the time goes, each bar coloured by what bounds the layer at the same level as the
# roofline above (the buttons recolour the bars at every other level):

# %%
workbench.time_bars(frame, ceilings, level=LEVEL)

# %% [markdown]
# ## 6. Which layers are memory bound, and why
#
# Computed from the profile above (each step against its *tightest* roof over all levels):

# %%
display(Markdown(explain_bounds(frame, ceilings)))
format_table(bound_summary(frame).reset_index(),
             {"steps": "count", "ms": "ms", "share_of_time": "%", "memory_bound": "count", "median_ai": "FLOP/byte",
              "median_roof_fraction": "%"},
             names={"ms": "time", "share_of_time": "share of time", "memory_bound": "memory bound",
                    "memory_level": "at level", "median_ai": "median AI there",
                    "median_roof_fraction": "median % of roof"})

# %% [markdown]
# The memory-bound steps that cost the most time, with the level whose roof is tightest
# for each and how close they get to it:

# %%
memory_bound = frame[frame["bound"] == "memory"].nlargest(8, "seconds")
format_table(memory_bound.assign(layer=memory_bound["layer"].map(short_name))[
                 ["layer", "op", "seconds", "gflops", "bound_level", *AI_UNITS, "attainable_gflops", "roof_fraction"]],
             {"seconds": "s→ms", "gflops": "GFLOP/s", **AI_UNITS, "attainable_gflops": "GFLOP/s",
              "roof_fraction": "%"},
             names={"seconds": "time", "gflops": "achieved", "bound_level": "tightest roof", **AI_NAMES,
                    "attainable_gflops": "roof", "roof_fraction": "% of roof"})

# %% [markdown]
# ## 7. Explore
#
# Change the core count, batch, fusion or a tile size: the panel measures again and the
# roofline moves in place. "fuse blocks" has three settings: *off* (every layer on its own),
# *auto* (only the inverted-residual blocks the engine expects to run faster fused at this
# core count and batch) and *all blocks*; the panel starts at the engine's default
# (`engine.DEFAULT_FUSE_BLOCKS`). `level` only redraws. Errors (an invalid tile, say) appear in the
# message line above the figure.

# %%
explorer = Explorer(model, ceilings=ceilings, level=LEVEL, repeats=REPEATS)
explorer
