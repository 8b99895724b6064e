"""`time_bars`: where the time of a run goes, one horizontal bar per step (ms), in
execution order, coloured by what bounds the step.

    from workbench import time_bars
    time_bars(frame)                      # bound: each step's tightest roof over all levels
    time_bars(frame, ceilings, "L2")      # bound at L2 (profile.is_memory_bound)
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figure_parts import format_value, memoised, short_name
from workbench.profile import bound_at, check_level, check_profile, profile_threads

BOUND_COLORS = {"memory": "#e45756", "compute": "#4c78a8", "n/a": "#bab0ac"}
BOUND_LABELS = {"memory": "memory bound", "compute": "compute bound", "n/a": "no FLOPs"}


def _bar_labels(profile: pd.DataFrame) -> list[str]:
    """Short layer names, or the full ones if shortening makes two steps collide."""
    full = [str(n) for n in profile["layer"]]
    short = [short_name(n) for n in full]
    labels = short if len(set(short)) == len(short) else full
    if len(set(labels)) != len(labels):   # duplicate names: prefix the step position
        labels = [f"{i}: {n}" for i, n in enumerate(labels)]
    return labels


def _bar_hover(row, kind: str, level: str | None) -> str:
    """Hover text of one bar; `level`: where the bound was decided (None: over all levels)."""
    text = (f"<b>{html.escape(str(row['layer']))}</b> ({html.escape(str(row['op']))})<br>"
            f"time {float(row['seconds']) * 1e3:.3f} ms ({float(row['share_of_time']):.1%})<br>"
            f"{float(row['gflops']):.3g} GFLOP/s<br>{BOUND_LABELS[kind]}")
    if level is not None and kind != "n/a":
        text += f" at {level} (AI {format_value(float(row[f'ai_{level}']), 'FLOP/byte')})"
    return text


def _bound_trace(frame: pd.DataFrame, labels: np.ndarray, bound: np.ndarray, kind: str,
                 level: str | None) -> go.Bar:
    """The bars of the steps whose bound is `kind`, as one trace (meta "bound:<kind>")."""
    mask = bound == kind
    rows = frame[mask]
    hover = [_bar_hover(row, kind, level) for _, row in rows.iterrows()]
    return go.Bar(
        name=BOUND_LABELS[kind], meta=f"bound:{kind}", orientation="h",
        y=list(labels[mask]), x=(rows["seconds"].astype(float) * 1e3).tolist(),
        marker=dict(color=BOUND_COLORS[kind]), hoverinfo="text", hovertext=hover, showlegend=bool(mask.any()))


def time_bars(profile: pd.DataFrame, ceilings=None, level: str = "L2") -> go.Figure:
    """Horizontal bars of each step's time (ms), in execution order (top to bottom),
    coloured by what bounds it: one trace per class ("memory bound", "compute bound",
    "no FLOPs"), colours BOUND_COLORS.

    With `ceilings`, bound means at `level` (AI < ridge point => memory bound); without,
    the profile's own `bound` column (its tightest roof over all levels) is used.
    """
    ceilings = None if ceilings is None else memoised(ceilings)
    columns = ["layer", "op", "seconds", "share_of_time", "flops", "gflops"]
    if ceilings is None:
        columns.append("bound")
    else:
        check_level(ceilings, level)
        columns += ["threads", f"ai_{level}"]
    check_profile(profile, columns)
    frame = profile.sort_values("step", kind="stable") if "step" in profile.columns else profile
    if ceilings is None:
        bound, shown_level = frame["bound"].astype(str).to_numpy(), None
        basis = "each step's tightest roof over all levels"
    else:
        profile_threads(frame)
        bound, shown_level = bound_at(frame, ceilings, level), level
        basis = f"at {level}: AI below the ridge point is memory bound"
    labels = _bar_labels(frame)
    figure = go.Figure([_bound_trace(frame, np.asarray(labels, dtype=object), bound, kind, shown_level)
                        for kind in BOUND_COLORS])
    figure.update_layout(
        title=dict(text=f"Time per step, coloured by bound ({basis})", x=0.0, xanchor="left"),
        barmode="overlay", plot_bgcolor="white", hovermode="closest",
        xaxis=dict(title=dict(text="time (ms)"), showgrid=True, gridcolor="#e5e5e5"),
        yaxis=dict(categoryorder="array", categoryarray=labels, autorange="reversed", automargin=True,
                   tickfont=dict(size=10)),
        height=max(400, 16 * len(frame) + 140), margin=dict(l=10, r=20, t=60, b=50),
        legend=dict(orientation="h", x=0.0, y=1.0, yanchor="bottom"))
    return figure
