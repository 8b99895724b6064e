"""Several networks side by side on this machine: one roofline at one level, FLOPs per
image against time per image, the spread of per-layer arithmetic intensity against the
ridge points, and the share of each network's time that is memory bound.

    from workbench.networks import network_table, networks_roofline_figure
    profiles = {name: workbench.profile(name, batch=1, threads=2) for name in ("resnet50", "mobilenet_v2")}
    network_table(profiles, ceilings, level="L3")          # one row per network
    networks_roofline_figure(profiles, ceilings, level="L3")

`profiles` is always {label: workbench.profile DataFrame}, each profile of one network at
one configuration; every figure here takes all of them at one thread count (so one set of
roofs applies). "Memory bound" is the workbench's one rule (profile.is_memory_bound,
through profile.bound_at): a step is memory bound at a level when its arithmetic
intensity there is below the level's ridge point. Bytes are the engine's model, FLOPs are
counted (2 per multiply-accumulate), time is measured.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figure_parts import format_ms, marker_sizes, memoised, short_name
from workbench.profile import bound_at, check_level, check_profile, profile_threads
from workbench.tables import format_table
from workbench.roofline import axis_ranges, base_layout, region_spec, roof_specs, roofline_columns
from workbench.teaching import RIDGE_COLORS

# One colour per network, in the order given (the figures share it).
NETWORK_COLORS = ("#4c78a8", "#e45756", "#54a24b", "#b279a2", "#f58518", "#72b7b2", "#9d755d")
FIGURE_HEIGHT = 520          # px, the two smaller figures


def check_profiles(profiles, ceilings, level: str) -> int:
    """The one thread count of `profiles` ({label: profile}, at least one), after checking
    each is a profile with the columns the figures need and `level` is a level of
    `ceilings`; ValueError naming the label otherwise."""
    if not isinstance(profiles, Mapping) or not profiles:
        raise ValueError(f"profiles must be a non-empty dict {{label: workbench.profile DataFrame}}, got "
                         f"{type(profiles).__name__}")
    check_level(ceilings, level)
    threads = set()
    for label, frame in profiles.items():
        check_profile(frame, roofline_columns(ceilings), f"profile {label!r}")
        threads.add(profile_threads(frame, f"profile {label!r}"))
    if len(threads) != 1:
        raise ValueError(f"profiles must share one thread count (one set of roofs), got {sorted(threads)}")
    return threads.pop()


def _color(index: int) -> str:
    return NETWORK_COLORS[index % len(NETWORK_COLORS)]


def network_table(profiles: Mapping[str, pd.DataFrame], ceilings, level: str = "L3") -> pd.DataFrame:
    """One row per network (index: its label): batch, threads, gflop_per_image (GFLOP),
    ms_per_image (the steps' median times summed, / batch), gflops (achieved GFLOP/s over
    the run), peak_fraction (of the FMA peak at the threads), ai (the whole run's FLOPs /
    its modelled bytes at `level`, FLOP/byte), ridge (the level's ridge point), steps (with
    FLOPs), memory_bound_steps and memory_bound_time (share of the run's time in steps
    memory bound at `level`)."""
    threads = check_profiles(profiles, ceilings, level)
    rows = {}
    for label, frame in profiles.items():
        batch = int(frame["batch"].iloc[0])
        seconds, flops = float(frame["seconds"].sum()), float(frame["flops"].sum())
        bound = bound_at(frame, ceilings, level)
        memory = bound == "memory"
        rows[label] = {
            "batch": batch, "threads": threads,
            "gflop_per_image": flops / batch / 1e9,
            "ms_per_image": seconds / batch * 1e3,
            "gflops": flops / seconds / 1e9,
            "peak_fraction": flops / seconds / 1e9 / ceilings.peak_gflops(threads),
            "ai": flops / float(frame[f"bytes_{level}"].sum()),
            "ridge": ceilings.ridge_point(level, threads),
            "steps": int((frame["flops"] > 0).sum()),
            "memory_bound_steps": int(memory.sum()),
            "memory_bound_time": float(frame.loc[memory, "seconds"].sum()) / seconds,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def networks_roofline_figure(profiles: Mapping[str, pd.DataFrame], ceilings, level: str = "L3",
                             title: str | None = None) -> go.Figure:
    """Every network's steps on one roofline at `level`: the peak and bandwidth roofs at
    the profiles' thread count, the memory-bound region shaded, one colour per network, a
    marker per step with FLOPs at (AI at `level`, GFLOP/s) whose area tracks its share of
    its own network's time, and a star per network for the whole run (its FLOPs / its
    bytes, its FLOPs / its time)."""
    threads = check_profiles(profiles, ceilings, level)
    memo = memoised(ceilings)
    ranges = axis_ranges(memo, list(profiles.values()), level)
    figure = go.Figure([go.Scatter(**region_spec(memo, threads, level, ranges))])
    for spec in roof_specs(memo, threads, level, ranges).values():
        figure.add_trace(go.Scatter(**spec))
    table = network_table(profiles, ceilings, level)
    for index, (label, frame) in enumerate(profiles.items()):
        steps = frame[(frame["flops"] > 0) & np.isfinite(frame[f"ai_{level}"]) & (frame[f"ai_{level}"] > 0)]
        hover = [f"<b>{html.escape(label)}</b>: {html.escape(short_name(row.layer))} ({html.escape(str(row.op))})<br>"
                 f"time {format_ms(row.seconds)} ({row.share_of_time:.1%} of the run)<br>"
                 f"{row.gflops:.3g} GFLOP/s, AI {getattr(row, f'ai_{level}'):.3g} FLOP/byte at {level}"
                 for row in steps.itertuples()]
        figure.add_trace(go.Scatter(
            x=steps[f"ai_{level}"], y=steps["gflops"], mode="markers", name=f"{label}: its steps",
            legendgroup=label, hoverinfo="text", hovertext=hover,
            marker=dict(color=_color(index), size=marker_sizes(steps["share_of_time"]), opacity=0.55,
                        line=dict(color="white", width=0.5))))
        whole = table.loc[label]
        figure.add_trace(go.Scatter(
            x=[whole["ai"]], y=[whole["gflops"]], mode="markers+text", name=f"{label}: whole run",
            legendgroup=label, text=[label], textposition="top center", textfont=dict(color=_color(index), size=13),
            hoverinfo="text", hovertext=[f"<b>{html.escape(label)}</b>, whole run: {whole['gflops']:.3g} GFLOP/s "
                                         f"({whole['peak_fraction']:.0%} of the peak), AI {whole['ai']:.3g} FLOP/byte "
                                         f"at {level}; {whole['memory_bound_time']:.0%} of the time memory bound"],
            marker=dict(symbol="star", size=22, color=_color(index), line=dict(color="black", width=1.5))))
    batches = sorted({int(frame["batch"].iloc[0]) for frame in profiles.values()})
    figure.update_layout(**base_layout(ranges, level, title or (
        f"{', '.join(profiles)} on one roofline at {level}: batch {', '.join(map(str, batches))}, "
        f"{threads} thread{'s' if threads != 1 else ''} (marker area: share of its network's time)")))
    return figure


def flops_time_figure(table: pd.DataFrame, ceilings) -> go.Figure:
    """FLOPs per image (x, GFLOP) against time per image (y, ms), log-log, one point per
    row of `network_table`, with the compute floor of each thread count in it (time =
    FLOPs / the FMA peak: a network on that line runs at the peak)."""
    figure = go.Figure()
    for index, (label, row) in enumerate(table.iterrows()):
        figure.add_trace(go.Scatter(
            x=[row["gflop_per_image"]], y=[row["ms_per_image"]], mode="markers+text", name=str(label),
            text=[f"{label}, batch {int(row['batch'])}"], textposition="top center",
            marker=dict(size=16, color=_color(index)),
            hovertext=[f"{html.escape(str(label))}: {row['gflop_per_image']:.3g} GFLOP and {row['ms_per_image']:.3g} ms "
                       f"per image, {row['gflops']:.3g} GFLOP/s ({row['peak_fraction']:.0%} of the peak)"],
            hoverinfo="text"))
    low = float(table["gflop_per_image"].min()) / 2
    high = float(table["gflop_per_image"].max()) * 2
    for threads in sorted(set(table["threads"].astype(int))):
        peak = ceilings.peak_gflops(threads)
        figure.add_trace(go.Scatter(
            x=[low, high], y=[low / peak * 1e3, high / peak * 1e3], mode="lines", hoverinfo="skip",
            name=f"compute floor: the FMA peak, {peak:.3g} GFLOP/s ({threads} thread{'s' if threads != 1 else ''})",
            line=dict(color="#222222", dash="dot", width=1.5)))
    figure.update_layout(
        title="FLOPs per image against time per image (the dotted line: every FLOP at the peak)",
        xaxis=dict(type="log", title="GFLOP per image"), yaxis=dict(type="log", title="ms per image"),
        plot_bgcolor="white", height=FIGURE_HEIGHT, legend=dict(orientation="h", y=-0.2))
    return figure


def intensity_spread_figure(profiles: Mapping[str, pd.DataFrame], ceilings, level: str = "L3") -> go.Figure:
    """Per-layer arithmetic intensity at `level` (x, FLOP/byte, log), one row of points per
    network, each point's area its share of its network's time, against every level's
    ridge point at the profiles' thread count (a vertical line): the points left of
    `level`'s line are the memory-bound steps."""
    threads = check_profiles(profiles, ceilings, level)
    figure = go.Figure()
    values = []
    for index, (label, frame) in enumerate(profiles.items()):
        steps = frame[(frame["flops"] > 0) & np.isfinite(frame[f"ai_{level}"]) & (frame[f"ai_{level}"] > 0)]
        values += steps[f"ai_{level}"].tolist()
        # a deterministic spread across the row, so equal intensities do not hide each other
        offsets = (np.arange(len(steps)) % 7 - 3) * 0.06
        figure.add_trace(go.Scatter(
            x=steps[f"ai_{level}"], y=index + offsets, mode="markers", name=label,
            marker=dict(color=_color(index), size=marker_sizes(steps["share_of_time"]), opacity=0.6,
                        line=dict(color="white", width=0.5)),
            hoverinfo="text", hovertext=[f"<b>{html.escape(label)}</b>: {html.escape(short_name(row.layer))} "
                                         f"({html.escape(str(row.op))})<br>AI {getattr(row, f'ai_{level}'):.3g} "
                                         f"FLOP/byte at {level}, {row.share_of_time:.1%} of the time"
                                         for row in steps.itertuples()]))
    ridges = {lv: ceilings.ridge_point(lv, threads) for lv in ceilings.levels}
    values += list(ridges.values())
    for lv, ridge in ridges.items():
        chosen = lv == level
        figure.add_shape(type="line", yref="paper", y0=0, y1=1, x0=ridge, x1=ridge,
                         line=dict(color=RIDGE_COLORS.get(lv, "#555555"), dash="solid" if chosen else "dot",
                                   width=3 if chosen else 1.5))
        figure.add_annotation(x=math.log10(ridge), xref="x", y=1.0, yref="paper", yanchor="bottom", showarrow=False,
                              text=f"{lv} ridge {ridge:.3g}", font=dict(color=RIDGE_COLORS.get(lv, "#555555"), size=11),
                              textangle=-30)
    low, high = math.log10(min(values)), math.log10(max(values))
    figure.update_layout(
        title=dict(text=f"Per-layer arithmetic intensity at {level} against this machine's ridge points "
                        f"({threads} thread{'s' if threads != 1 else ''}; area: share of the network's time)", y=0.97),
        xaxis=dict(type="log", title=f"arithmetic intensity at {level} (FLOP/byte, modelled bytes)",
                   range=[low - 0.2, high + 0.2]),
        yaxis=dict(tickvals=list(range(len(profiles))), ticktext=list(profiles), range=[-0.6, len(profiles) - 0.4]),
        plot_bgcolor="white", height=max(FIGURE_HEIGHT - 120, 140 * len(profiles) + 160), showlegend=False,
        margin=dict(t=110))
    return figure


# network_table's columns as a person reads them (workbench.tables.format_table)
TABLE_UNITS = {"batch": "count", "threads": "count", "gflop_per_image": "number", "ms_per_image": "ms",
               "gflops": "GFLOP/s", "peak_fraction": "%", "ai": "FLOP/byte", "ridge": "FLOP/byte", "steps": "count",
               "memory_bound_steps": "count", "memory_bound_time": "%"}
TABLE_NAMES = {"gflop_per_image": "GFLOP per image", "ms_per_image": "time per image", "gflops": "achieved",
               "peak_fraction": "of the FMA peak", "ai": "AI of the run", "ridge": "ridge point",
               "steps": "steps with FLOPs", "memory_bound_steps": "memory-bound steps",
               "memory_bound_time": "time memory bound"}


def format_network_table(table: pd.DataFrame):
    """network_table as a formatted table (a pandas Styler: units in the headers, 3
    significant digits, shares in per cent)."""
    units = {column: unit for column, unit in TABLE_UNITS.items() if column in table.columns}
    return format_table(table, units, names=TABLE_NAMES, index=True)
