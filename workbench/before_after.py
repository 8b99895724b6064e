"""`before_after_figure`: two profiles of one model (fusion off and on, 1 and 2 cores,
batch 1 and 8, our engine and another runtime) on one roofline, an arrow from each step's
point in the first to its point in the second.

    from workbench import before_after_figure
    before_after_figure(unfused, fused, ceilings, level="L3", labels=("unfused", "fused"))

The step matcher (`match_steps`): steps of the two profiles are linked when they compute
a layer in common (a step's layers: its `members` column, else its own name), and each
connected group becomes one point per side. A layer matches itself by name; a fused block
in one profile matches the combined point (summed FLOPs, bytes and seconds) of its member
layers in the other.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figure_parts import (OP_COLORS, format_ms, format_value, marker_sizes, memoised, op_kind, or_none,
                                    plotted_steps, short_name, step_members)
from workbench.profile import check_level, check_profile, profile_threads
from workbench.roofline import axis_ranges, base_layout, region_spec, roof_specs, roofline_columns


class _Unit:
    """Steps of one profile combined into one point: FLOPs and seconds and bytes summed."""

    def __init__(self, rows: pd.DataFrame, level: str):
        flops = rows["flops"].astype(float).to_numpy()
        self.layers = [str(n) for n in rows["layer"]]
        self.name = self.layers[0] if len(rows) == 1 else None
        self.op = str(rows["op"].iloc[0]) if len(rows) == 1 else "block"
        self.seconds = float(rows["seconds"].astype(float).sum())
        self.share = float(rows["share_of_time"].astype(float).sum())
        if len(rows) == 1:   # the profile's own numbers, exactly
            self.ai = float(rows[f"ai_{level}"].iloc[0])
            self.gflops = float(rows["gflops"].iloc[0])
        else:
            ai = rows[f"ai_{level}"].to_numpy(dtype=float)
            if f"bytes_{level}" in rows.columns:
                moved = rows[f"bytes_{level}"].to_numpy(dtype=float)
            else:
                with np.errstate(divide="ignore"):
                    moved = np.where(np.isfinite(ai), flops / ai, 0.0)
            total_bytes = float(moved.sum())
            self.ai = float(flops.sum()) / total_bytes if total_bytes > 0 else math.inf
            self.gflops = float(flops.sum()) / self.seconds / 1e9 if self.seconds > 0 else math.nan


def _linked_groups(sides: dict[str, pd.DataFrame]) -> list[list[tuple]]:
    """The (side, row index) nodes of both sides in groups linked by a shared member layer
    (union-find), in no particular order."""
    parent: dict = {}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    owner: dict[str, tuple] = {}
    for side, rows in sides.items():
        for index, row in rows.iterrows():
            node = (side, index)
            parent[node] = node
            for member in step_members(row):
                if member in owner:
                    parent[find(node)] = find(owner[member])
                else:
                    owner[member] = node
    groups: dict = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    return list(groups.values())


def match_steps(before: pd.DataFrame, after: pd.DataFrame, level: str):
    """Pair the steps of two profiles by the layers they compute (see the module docstring).

    Returns (matched [(name, before_unit, after_unit)], unmatched_before [unit],
    unmatched_after [unit]), in `after`'s order; a unit has layers, name (None for a
    combined point), op, seconds, share, ai (at `level`, FLOP/byte) and gflops.
    """
    sides = {"before": plotted_steps(before).reset_index(drop=True),
             "after": plotted_steps(after).reset_index(drop=True)}
    order = {node: i for i, node in enumerate([("after", i) for i in sides["after"].index] +
                                                [("before", i) for i in sides["before"].index])}
    matched, unmatched_before, unmatched_after = [], [], []
    for nodes in sorted(_linked_groups(sides), key=lambda ns: min(order[n] for n in ns)):
        parts = {side: sides[side].loc[[i for s, i in nodes if s == side]] for side in sides}
        units = {side: _Unit(rows, level) for side, rows in parts.items() if len(rows)}
        if len(units) == 2:
            # name the pair after the side that is one step (the block), else the after side
            single = [u for u in (units["after"], units["before"]) if u.name is not None]
            name = single[0].name if single else units["after"].layers[0]
            matched.append((name, units["before"], units["after"]))
        elif "before" in units:
            unmatched_before.append(units["before"])
        else:
            unmatched_after.append(units["after"])
    return matched, unmatched_before, unmatched_after


def _unit_hover(unit: _Unit, label: str, level: str) -> str:
    name = unit.name if unit.name is not None else f"{len(unit.layers)} steps combined"
    lines = [f"<b>{html.escape(name)}</b> ({html.escape(unit.op)}), {html.escape(label)}"]
    if unit.name is None:
        lines.append(", ".join(html.escape(short_name(n)) for n in unit.layers))
    lines += [f"time {format_ms(unit.seconds)} ({unit.share:.1%} of the run)",
              f"{unit.gflops:.3g} GFLOP/s", f"AI at {level}: {format_value(unit.ai, 'FLOP/byte')}"]
    return "<br>".join(lines)


def _unit_trace(units: list[_Unit], label: str, level: str, hollow: bool) -> go.Scatter:
    colors = [OP_COLORS[op_kind(u.op)] for u in units]
    return go.Scatter(
        meta=f"points:{label}", name=label, mode="markers", x=or_none([u.ai for u in units]),
        y=or_none([u.gflops for u in units]), hoverinfo="text",
        hovertext=[_unit_hover(u, label, level) for u in units],
        marker=dict(color="white" if hollow else colors, size=marker_sizes([u.share for u in units]),
                    symbol="circle", opacity=0.9 if hollow else 0.85,
                    line=dict(color=colors, width=2.0) if hollow else dict(color="white", width=0.8)))


def step_arrow(name: str, old: _Unit, new: _Unit) -> dict | None:
    """A layout annotation from `old`'s point to `new`'s (log10 coordinates, as plotly wants
    on log axes); None when either point is not on the log axes."""
    ends = (old.ai, old.gflops, new.ai, new.gflops)
    if not all(math.isfinite(v) and v > 0 for v in ends):
        return None
    return dict(
        name=name, x=math.log10(new.ai), y=math.log10(new.gflops), ax=math.log10(old.ai),
        ay=math.log10(old.gflops), xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True,
        arrowhead=2, arrowsize=1.0, arrowwidth=1.3, arrowcolor=OP_COLORS[op_kind(new.op)], opacity=0.8,
        standoff=2, hovertext=(f"{html.escape(name)}: {old.gflops:.3g} → {new.gflops:.3g} GFLOP/s, "
                               f"AI {format_value(old.ai)} → {format_value(new.ai)} FLOP/byte, "
                               f"{format_ms(old.seconds)} → {format_ms(new.seconds)}"))


def _roof_traces(ceilings, threads: tuple[int, int], level: str, ranges, labels: tuple[str, str]) -> list[go.Scatter]:
    """The after profile's shaded region and roofs; the before profile's roofs at `level`
    too (dotted and faded) when the two ran on different thread counts."""
    threads_before, threads_after = threads
    traces = [go.Scatter(**region_spec(ceilings, threads_after, level, ranges))]
    specs = roof_specs(ceilings, threads_after, level, ranges)
    if threads_before != threads_after:
        specs.update(roof_specs(ceilings, threads_before, level, ranges, key_suffix=":before",
                                label_suffix=f" ({labels[0]})", faded=True, levels=[level]))
    return traces + [go.Scatter(**{**spec, "meta": key}) for key, spec in specs.items()]


def before_after_figure(before: pd.DataFrame, after: pd.DataFrame, ceilings, level: str = "L2",
                        labels: tuple[str, str] = ("before", "after"), title: str | None = None) -> go.Figure:
    """Two profiles (fusion off vs on, 1 vs 2 cores, ...) on one roofline at `level`, with
    an arrow (a layout annotation, log10 coordinates as plotly wants on log axes) from each
    matched layer's old point to its new one. Layers match by name; a fused block matches
    the combined point (summed FLOPs, bytes and seconds) of its member layers in the other
    profile (`match_steps`). Markers: hollow for `before`, filled for `after`, colour by op
    kind, size by share of time; unmatched steps are drawn without an arrow. Roofs of both
    thread counts are drawn when they differ (the before ones dotted and faded); the shaded
    region is the after profile's.
    """
    ceilings = memoised(ceilings)
    check_level(ceilings, level)
    if len(labels) != 2:
        raise ValueError(f"labels must be two strings (before, after), got {labels!r}")
    check_profile(before, roofline_columns(ceilings), "before")
    check_profile(after, roofline_columns(ceilings), "after")
    threads = (profile_threads(before, "before"), profile_threads(after, "after"))
    ranges = axis_ranges(ceilings, [before, after], level)
    matched, only_before, only_after = match_steps(before, after, level)

    figure = go.Figure(_roof_traces(ceilings, threads, level, ranges, labels))
    figure.add_trace(_unit_trace([b for _, b, _ in matched] + only_before, labels[0], level, hollow=True))
    figure.add_trace(_unit_trace([a for _, _, a in matched] + only_after, labels[1], level, hollow=False))
    arrows = [arrow for arrow in (step_arrow(name, old, new) for name, old, new in matched) if arrow is not None]
    if title is None:
        total_before, total_after = before["seconds"].sum() * 1e3, after["seconds"].sum() * 1e3
        title = (f"{labels[0]} → {labels[1]} at {level}: {total_before:.3g} ms → {total_after:.3g} ms of steps "
                 f"({len(arrows)} matched steps)")
    figure.update_layout(**base_layout(ranges, level, title), annotations=arrows)
    return figure
