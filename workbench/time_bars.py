"""`time_bars`: where the time of a run goes, one horizontal bar per step (ms), in
execution order, coloured by what bounds the step.

    from workbench import time_bars
    time_bars(frame)                      # bound: each step's tightest roof over all levels
    time_bars(frame, ceilings, "L2")      # bound at L2 (profile.is_memory_bound), buttons for every level

Each bar ends in its op's marker (the roofline's symbol and colour of the kind), so a
step without FLOPs (maxpool, activation, pool), which has no point on the roofline, still
shows what it is.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figure_parts import (BOUND_COLORS, OP_COLORS, OP_SYMBOLS, format_ms, format_value, memoised, op_kind,
                                    short_name)
from workbench.profile import bound_at, check_level, check_profile, profile_threads

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
            f"time {format_ms(float(row['seconds']))} ({float(row['share_of_time']):.1%})<br>"
            f"{float(row['gflops']):.3g} GFLOP/s<br>{BOUND_LABELS[kind]}")
    if level is not None and kind != "n/a":
        text += f" at {level} (AI {format_value(float(row[f'ai_{level}']), 'FLOP/byte')})"
    return text


def _bound_specs(frame: pd.DataFrame, labels: np.ndarray, bound: np.ndarray, level: str | None) -> list[dict]:
    """The bars of each bound class as one trace spec each (meta "bound:<kind>", in
    BOUND_COLORS order): y the steps' labels, x their time in ms."""
    specs = []
    for kind in BOUND_COLORS:
        mask = bound == kind
        rows = frame[mask]
        specs.append(dict(
            name=BOUND_LABELS[kind], meta=f"bound:{kind}", orientation="h",
            y=list(labels[mask]), x=(rows["seconds"].astype(float) * 1e3).tolist(),
            marker=dict(color=BOUND_COLORS[kind]), hoverinfo="text",
            hovertext=[_bar_hover(row, kind, level) for _, row in rows.iterrows()], showlegend=bool(mask.any())))
    return specs


def _op_specs(frame: pd.DataFrame, labels: np.ndarray) -> list[dict]:
    """One marker trace per op kind of OP_COLORS (meta "op:<kind>", always all of them, empty
    ones hidden from the legend): the kind's symbol and colour at the end of each of its
    steps' bars, so every bar says its op (the bar's colour says its bound)."""
    kinds = np.asarray([op_kind(op) for op in frame["op"].astype(str)], dtype=object)
    ms = frame["seconds"].astype(float).to_numpy() * 1e3
    specs = []
    for kind in OP_COLORS:
        mask = kinds == kind
        specs.append(dict(
            type="scatter", name=kind, meta=f"op:{kind}", mode="markers", y=list(labels[mask]), x=ms[mask].tolist(),
            marker=dict(color=OP_COLORS[kind], symbol=OP_SYMBOLS[kind], size=9, line=dict(width=0.8, color="white")),
            cliponaxis=False, hoverinfo="skip", legend="legend2", showlegend=bool(mask.any())))
    return specs


def _title(frame: pd.DataFrame, bound: np.ndarray, level: str | None) -> str:
    basis = "each step's tightest roof over all levels" if level is None else \
        f"at {level}: AI below the ridge point is memory bound"
    memory, with_flops = int((bound == "memory").sum()), int((bound != "n/a").sum())
    return f"Time per step: {memory} of {with_flops} steps memory bound ({basis})"


def _level_menu(frame: pd.DataFrame, labels: np.ndarray, ceilings, level: str) -> list[dict]:
    """Buttons that recolour the bars at another level, client side (no Python needed)."""
    buttons = []
    for other in ceilings.levels:
        bound = bound_at(frame, ceilings, other)
        specs = _bound_specs(frame, labels, bound, other)
        restyle = {key: [spec[key] for spec in specs] for key in ("x", "y", "hovertext", "showlegend")}
        # only the bound traces (the first ones) change; the op markers stay
        buttons.append(dict(label=f"bound at {other}", method="update",
                            args=[restyle, {"title.text": _title(frame, bound, other)}, list(range(len(specs)))]))
    return [dict(type="buttons", direction="right", active=list(ceilings.levels).index(level), buttons=buttons,
                 x=1.0, xanchor="right", y=1.0, yanchor="bottom", pad=dict(r=0, t=0, b=24), showactive=True,
                 font=dict(size=11))]


def time_bars(profile: pd.DataFrame, ceilings=None, level: str = "L2", level_buttons: bool = True) -> go.Figure:
    """Horizontal bars of each step's time (ms), in execution order (top to bottom),
    coloured by what bounds it: one trace per class ("memory bound", "compute bound",
    "no FLOPs"; meta "bound:<kind>"), colours BOUND_COLORS. The title counts the memory
    bound steps, so it agrees with the bars. After them, one marker trace per op kind
    (meta "op:<kind>", OP_COLORS and OP_SYMBOLS as on the roofline) at the end of each bar.

    With `ceilings`, bound means at `level` (profile.bound_at: AI < ridge point => memory
    bound), and level_buttons recolour the bars at each level of the ceilings in the
    browser; without, the profile's own `bound` column (its tightest roof over all levels)
    is used.
    """
    ceilings = None if ceilings is None else memoised(ceilings)
    columns = ["layer", "op", "seconds", "share_of_time", "flops", "gflops"]
    if ceilings is None:
        columns.append("bound")
    else:
        check_level(ceilings, level)
        columns += ["threads"] + [f"ai_{lv}" for lv in ceilings.levels]
    check_profile(profile, columns)
    frame = profile.sort_values("step", kind="stable") if "step" in profile.columns else profile
    if ceilings is None:
        bound, shown_level = frame["bound"].astype(str).to_numpy(), None
    else:
        profile_threads(frame)
        bound, shown_level = bound_at(frame, ceilings, level), level
    labels = np.asarray(_bar_labels(frame), dtype=object)
    figure = go.Figure([go.Bar(**spec) for spec in _bound_specs(frame, labels, bound, shown_level)]
                       + [go.Scatter(**{k: v for k, v in spec.items() if k != "type"})
                          for spec in _op_specs(frame, labels)])
    figure.update_layout(
        title=dict(text=_title(frame, bound, shown_level), x=0.01, xanchor="left"),
        barmode="overlay", plot_bgcolor="white", hovermode="closest", autosize=True,
        xaxis=dict(title=dict(text="time (ms)"), showgrid=True, gridcolor="#e5e5e5"),
        yaxis=dict(categoryorder="array", categoryarray=list(labels), autorange="reversed", automargin=True,
                   tickfont=dict(size=10)),
        height=max(400, 16 * len(frame) + 200), margin=dict(l=10, r=20, t=90, b=90),
        legend=dict(orientation="h", x=0.0, y=1.0, yanchor="bottom"),
        # the op markers' legend under the x axis, in one row of its own
        legend2=dict(orientation="h", x=0.0, xanchor="left", y=0.0, yref="container", yanchor="bottom",
                     title=dict(text="op (marker at the bar's end):"), font=dict(size=11)))
    if ceilings is not None and level_buttons:
        figure.update_layout(updatemenus=_level_menu(frame, labels, ceilings, level))
    return figure
