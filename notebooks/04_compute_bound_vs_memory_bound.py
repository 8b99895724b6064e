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
# # 04 · Compute bound against memory bound: ResNet-50 beside MobileNetV2
#
# "MobileNetV2 is memory bound" (notebook 02) is only half a lesson until the same roofline
# shows a network that is *not*. ResNet-50 is built of dense 3×3 and 1×1 convolutions over
# 64 to 2048 channels: every byte it moves feeds many FLOPs, so its layers sit right of
# the ridge points, where the FMA units set the pace. MobileNetV2 (and EfficientNet-B0,
# built of the same inverted-residual blocks) does about a fourteenth of ResNet-50's FLOPs,
# but its depthwise convolutions feed each byte a handful of FLOPs.
#
# This notebook profiles the networks on this machine at one configuration and puts them
# side by side: on one roofline at one memory level; FLOPs per image against time per
# image; the spread of per-layer arithmetic intensity against this machine's ridge points;
# the share of each network's time that is memory bound; and what a larger batch changes
# for each. All networks come from `engine.zoo` (torchvision's topologies with synthetic
# weights: speed depends on the shapes, not on the weight values).
#
# With `ROOFLINE_FAST=1` in the environment (as the test suite runs it) the networks are
# built at a lower resolution (112×112 instead of 224×224), the larger batch is smaller
# and there are fewer repeats, so it runs in well under a minute; the figures keep their
# shape but the numbers are not the 224×224 ones (smaller images make activations smaller
# next to the weights, which moves the deep layers' intensities).

# %%
import pandas as pd
from IPython.display import Markdown, display

import workbench
from workbench.models import load_model
from workbench.networks import (flops_time_figure, format_network_table, intensity_spread_figure, network_table,
                                networks_roofline_figure)
from workbench.tables import format_table
from workbench.widgets import Explorer

setup = workbench.setup_notebook(repeats=5)     # this machine's ceilings, its cores, the repeats
ceilings, THREADS, REPEATS, FAST = setup.ceilings, setup.threads, setup.repeats, setup.fast

# %% [markdown]
# ## Parameters
#
# `NETWORKS`: the zoo models to compare (`workbench.models.model_names()` lists them), the
# compute-bound one first. `LEVEL`: the memory level whose arithmetic intensity is the x
# axis everywhere (L3: on this machine the activations between layers live there).

# %%
NETWORKS = ("resnet50", "mobilenet_v2", "efficientnet_b0")
LEVEL = "L3"
RESOLUTION = 112 if FAST else None              # pixels; None: the models' own 224x224
BATCHES = (1, 4) if FAST else (1, 16)           # batch 1, and a larger batch for section 5

# %% [markdown]
# ## 1. The networks at batch 1
#
# Each network profiled at batch 1 on every core (`workbench.profile`: time measured,
# FLOPs counted, bytes modelled per level), then summed per network: FLOPs and time per
# image, the FLOP rate it achieves against the FMA peak, and how much of its time goes to
# steps that are memory bound at the level (intensity below the ridge point).

# %%
models = {name: load_model(name, resolution=RESOLUTION) for name in NETWORKS}
profiles = {name: workbench.profile(model, batch=BATCHES[0], threads=THREADS, repeats=REPEATS, ceilings=ceilings)
            for name, model in models.items()}
table = network_table(profiles, ceilings, LEVEL)
format_network_table(table)

# %% [markdown]
# ## 2. One roofline, one level
#
# Every step of every network at its intensity at the level and the FLOP rate it ran at
# (marker area: its share of its own network's time), and a star per network for the whole
# run (all its FLOPs over all its bytes, all its FLOPs over its time). The shaded region is
# memory bound at the level.

# %%
networks_roofline_figure(profiles, ceilings, LEVEL)

# %%
display(Markdown("\n".join(
    f"- **{name}**: {row['gflops']:.3g} GFLOP/s, {row['peak_fraction']:.0%} of the FMA peak; the whole run's "
    f"intensity at {LEVEL} is {row['ai']:.3g} FLOP/byte against a ridge point of {row['ridge']:.3g}; "
    f"{row['memory_bound_time']:.0%} of its time is in memory-bound steps."
    for name, row in table.iterrows())))

# %% [markdown]
# ## 3. FLOPs per image against time per image
#
# If time followed FLOPs, a network with 14× the FLOPs would take 14× the time. But a
# network whose layers are compute bound turns its FLOPs into time at close to the peak
# rate, while a memory-bound one spends time waiting for bytes that its few FLOPs do not
# pay for: the FLOP-heavy network should take far less than its FLOP ratio in time. The
# dotted line is the compute floor: every FLOP at the peak.

# %%
flops_time_figure(table, ceilings)

# %%
heavy = NETWORKS[0]
display(Markdown("\n".join(
    f"- {heavy} does **{table.loc[heavy, 'gflop_per_image'] / table.loc[other, 'gflop_per_image']:.3g}×** the "
    f"FLOPs of {other} per image and takes **{table.loc[heavy, 'ms_per_image'] / table.loc[other, 'ms_per_image']:.3g}×**"
    f" its time." for other in NETWORKS[1:])))

# %% [markdown]
# ## 4. Per-layer intensity against this machine's ridge points
#
# A layer's place relative to a ridge point is decided by its shapes (and the caches), not
# by how well its kernel is written: left of a level's ridge point, even a perfect kernel
# waits for that level. Each row is one network's layers at their intensity at the level
# (marker area: share of the network's time); the vertical lines are every level's ridge
# point, the level's own drawn solid.

# %%
intensity_spread_figure(profiles, ceilings, LEVEL)

# %% [markdown]
# The share of each network's time spent in steps memory bound at each level (a step is
# memory bound at a level when its intensity there is below the level's ridge point):

# %%
memory_bound = pd.DataFrame({level: network_table(profiles, ceilings, level)["memory_bound_time"]
                             for level in ceilings.levels})
format_table(memory_bound, {level: "%" for level in ceilings.levels},
             names={level: f"memory bound at {level}" for level in ceilings.levels}, index=True)

# %% [markdown]
# ## 5. What a larger batch changes
#
# A larger batch re-uses every weight for more images. Where weights are a large part of
# a layer's traffic (dense and pointwise convolutions deep in the network) its intensity
# grows; a depthwise layer's traffic is activations, which grow with the batch as its FLOPs
# do. Each network again, at the larger batch:

# %%
large = {name: workbench.profile(model, batch=BATCHES[1], threads=THREADS, repeats=REPEATS, ceilings=ceilings)
         for name, model in models.items()}
both = pd.concat({f"batch {BATCHES[0]}": table, f"batch {BATCHES[1]}": network_table(large, ceilings, LEVEL)},
                 names=["batch size", "network"]).swaplevel().sort_index()
format_network_table(both[["ms_per_image", "gflops", "peak_fraction", "ai", "memory_bound_time"]])

# %%
networks_roofline_figure(large, ceilings, LEVEL)

# %%
display(Markdown("\n".join(
    f"- **{name}**: batch {BATCHES[0]} → {BATCHES[1]}: time per image ×"
    f"{both.loc[(name, f'batch {BATCHES[1]}'), 'ms_per_image'] / both.loc[(name, f'batch {BATCHES[0]}'), 'ms_per_image']:.2f}, "
    f"intensity of the run at {LEVEL} ×"
    f"{both.loc[(name, f'batch {BATCHES[1]}'), 'ai'] / both.loc[(name, f'batch {BATCHES[0]}'), 'ai']:.2f}, "
    f"time memory bound {both.loc[(name, f'batch {BATCHES[0]}'), 'memory_bound_time']:.0%} → "
    f"{both.loc[(name, f'batch {BATCHES[1]}'), 'memory_bound_time']:.0%}."
    for name in NETWORKS)))

# %% [markdown]
# ## 6. Try it
#
# The Explorer on the first network as profiled here; its model dropdown switches to any
# network of the zoo (at 224×224), profiled with the same controls.

# %%
explorer = Explorer(models[NETWORKS[0]], ceilings=ceilings, level=LEVEL, repeats=REPEATS)
explorer
