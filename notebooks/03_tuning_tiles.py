# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Tuning tiles
#
# The engine's kernels take their tile sizes at run time (`engine.Tiles`), so trying a new
# tile never recompiles anything. A tile decides how often an operand is re-read: the
# weights of a 1×1 conv once per tile of `pointwise_pixels` pixels, its input once per tile
# of `pointwise_channels` output channels; `block_rows` is the band height of a fused
# inverted-residual block (0 lets the cost model choose per block). Re-reads are bytes, and
# bytes move a layer left on the roofline.
#
# First by hand with the explorer, then a small sweep, then the best configuration found
# with fusion off, automatic and on. Timings on a shared machine are noisy: differences of a few
# percent are not meaningful. Set `ROOFLINE_FAST=1` for a smaller sweep.

# %%
import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown, display

import engine
import workbench
from workbench.widgets import Explorer

setup = workbench.setup_notebook(repeats=5)      # the default MobileNetV2, this machine's ceilings
model, ceilings = setup.model, setup.ceilings
THREADS, REPEATS, FAST = setup.threads, setup.repeats, setup.fast
print("tile ranges (low, high, step):", {name: engine.Tiles.field_range(name) for name in engine.Tiles().as_dict()})

# %% [markdown]
# ## 1. By hand
#
# Move `pointwise pixels` down to 8 and watch the pointwise markers (blue expand, green
# project) slide left at L2: their weights are now re-read for every 8 pixels. The table
# under the figure lists the slowest steps.

# %%
explorer = Explorer(model, ceilings=ceilings, level="L2", repeats=REPEATS)
explorer

# %% [markdown]
# ## 2. A small sweep over the pointwise tiles
#
# Every combination of a few `pointwise_pixels` and `pointwise_channels` values, blocks
# unfused, batch 1, with `workbench.sweep` (one row per config and step; a progress bar;
# given `out=` a file it would also write the table as it goes and resume an interrupted
# sweep); the time of the whole network (sum of the steps' medians) and of its pointwise
# layers alone, from `workbench.sweep_totals`.

# %%
pixel_tiles = [16, 128] if FAST else [8, 32, 128, 512]
channel_tiles = [32, 128] if FAST else [16, 64, 256]
table = workbench.sweep(model, batch=1, threads=THREADS, fuse_blocks=False, repeats=REPEATS, ceilings=ceilings,
                        tiles={"pointwise_pixels": pixel_tiles, "pointwise_channels": channel_tiles})
totals = workbench.sweep_totals(table).set_index("config_id")
pointwise = workbench.sweep_totals(table, ops=["expand", "project", "pointwise"]).set_index("config_id")
sweep = totals[["pointwise_pixels", "pointwise_channels"]].assign(
    ms=totals["seconds"] * 1e3, pointwise_ms=pointwise["seconds"] * 1e3, pointwise_MB_L2=pointwise["bytes_L2"] / 1e6)
sweep = sweep.reset_index(drop=True)
sweep

# %%
grid = sweep.pivot(index="pointwise_channels", columns="pointwise_pixels", values="pointwise_ms")
heatmap = go.Figure(go.Heatmap(
    z=grid.to_numpy(), x=[str(v) for v in grid.columns], y=[str(v) for v in grid.index], colorscale="Viridis_r",
    colorbar=dict(title="ms"), text=grid.map(lambda v: f"{v:.2f}").to_numpy(), texttemplate="%{text}",
    hovertemplate="pixels %{x}, channels %{y}: %{z:.2f} ms<extra></extra>"))
heatmap.update_layout(title="Time of the pointwise layers (ms, lower is better), blocks unfused, batch 1",
                      xaxis_title="pointwise_pixels", yaxis_title="pointwise_channels", height=420)
heatmap

# %% [markdown]
# ## 3. The band height of fused blocks
#
# With fusion on, `block_rows` sets how many output rows a block computes per band: small
# bands re-read the weights more often and do more per-band set-up (each thread keeps the
# halo rows it already expanded, so the expand is not re-computed), large ones make the
# per-thread scratch buffer outgrow L2. 0 is the cost model's choice.

# %%
best = sweep.loc[sweep["ms"].idxmin()]
best_tiles = engine.Tiles(pointwise_pixels=int(best["pointwise_pixels"]),
                          pointwise_channels=int(best["pointwise_channels"]))
band_rows = [0, 2, 8] if FAST else [0, 1, 2, 4, 8, 16]
table = workbench.sweep(model, batch=1, threads=THREADS, fuse_blocks=True, repeats=REPEATS, ceilings=ceilings,
                        tiles={**best_tiles.as_dict(), "block_rows": band_rows})
totals = workbench.sweep_totals(table).set_index("config_id")
blocks = workbench.sweep_totals(table, ops="block").set_index("config_id")
bands = totals[["block_rows"]].rename(columns={"block_rows": "value"}).assign(
    ms=totals["seconds"] * 1e3, block_ms=blocks["seconds"] * 1e3, block_MB_L3=blocks["bytes_L3"] / 1e6,
    block_MB_DRAM=blocks["bytes_DRAM"] / 1e6)
bands.insert(0, "block_rows", ["auto" if value == 0 else str(value) for value in bands["value"]])
bands = bands.reset_index(drop=True)
bar = go.Figure(go.Bar(x=bands["block_rows"], y=bands["block_ms"], marker_color="#ff7f0e",
                       hovertemplate="block_rows %{x}: %{y:.2f} ms<extra></extra>"))
bar.update_layout(title="Time of the fused blocks by band height (ms)", xaxis_title="block_rows",
                  yaxis_title="ms", height=360, xaxis_type="category")
display(bands)
bar

# %% [markdown]
# ## 4. The best configuration found, fusion off, auto and on
#
# `fuse_blocks="auto"` fuses only the blocks `engine.plan.fusion_wins` expects to run faster
# fused at this core count and batch; "default" is default tiles with the engine's default
# fusion (`engine.DEFAULT_FUSE_BLOCKS`).

# %%
best_band = int(bands.loc[bands["ms"].idxmin(), "value"])
best_tiles = engine.Tiles(**{**best_tiles.as_dict(), "block_rows": best_band})
unfused = workbench.profile(model, batch=1, threads=THREADS, tiles=best_tiles, fuse_blocks=False, repeats=REPEATS,
                            ceilings=ceilings)
auto = workbench.profile(model, batch=1, threads=THREADS, tiles=best_tiles, fuse_blocks="auto", repeats=REPEATS,
                         ceilings=ceilings)
fused = workbench.profile(model, batch=1, threads=THREADS, tiles=best_tiles, fuse_blocks=True, repeats=REPEATS,
                          ceilings=ceilings)
default = workbench.profile(model, batch=1, threads=THREADS, fuse_blocks=engine.DEFAULT_FUSE_BLOCKS, repeats=REPEATS,
                            ceilings=ceilings)
configs = {"default": (engine.Tiles(), default), "best tiles, unfused": (best_tiles, unfused),
           "best tiles, auto": (best_tiles, auto), "best tiles, fused": (best_tiles, fused)}
summary = pd.DataFrame([{**tiles.as_dict(), "fuse_blocks": frame["fuse_blocks"].iloc[0],
                         "blocks fused": int((frame["op"] == "block").sum()), "ms": frame["seconds"].sum() * 1e3,
                         "MB at L3 (modelled)": frame["bytes_L3"].sum() / 1e6,
                         "MB at DRAM (modelled)": frame["bytes_DRAM"].sum() / 1e6}
                        for tiles, frame in configs.values()], index=list(configs))
choice = summary["ms"].idxmin()
display(Markdown(f"Fastest here: **{choice}**, {summary.loc[choice, 'ms']:.2f} ms per image "
                 f"(default tiles and fusion: {summary.loc['default', 'ms']:.2f} ms). "
                 f"Best tiles: `{best_tiles}`."))
summary

# %%
workbench.before_after_figure(unfused, fused, ceilings, level="L3", labels=("best tiles, unfused", "best tiles, fused"))

# %% [markdown]
# The explorer above, set to the best configuration (one measurement for all the changes):

# %%
explorer.set(**best_tiles.as_dict(), fuse_blocks=summary.loc[choice, "fuse_blocks"])
explorer.profile[["layer", "op", "seconds", "gflops", "ai_L2", "ai_L3", "bound", "bound_level"]].head()
