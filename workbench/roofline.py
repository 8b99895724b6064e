"""`roofline`: the roofline figure of a profile against this machine's measured ceilings.

    from workbench import profile, measure_ceilings, roofline_figure
    ceilings = measure_ceilings()
    frame = profile(model, threads=2)
    roofline_figure(frame, ceilings, level="L2")          # a plotly.graph_objects.Figure

What is drawn (log-log; x: arithmetic intensity in FLOP/byte, y: GFLOP/s = 1e9 FLOP/s):
- the peak fp32 FMA roof for the profile's thread count (horizontal line);
- one bandwidth roof per memory level, y = AI x bandwidth, from the left edge up to the
  level's ridge point (where it meets the peak); the chosen level's roof is emphasised;
- the memory-bound region (AI below the chosen level's ridge point) shaded;
- one marker per step with flops > 0 at (ai_<level>, gflops): diameter MARKER_MIN +
  (MARKER_MAX - MARKER_MIN) x sqrt(share of the run time), so area tracks time; colour
  by op kind (`OP_COLORS`, fixed across figures); a step whose AI at the level is not a
  positive finite number (no bytes modelled) has no point at that level;
  the hover says the layer, shapes, time, GFLOP/s, AI, % of the attainable roof at the
  level and whether the step is memory or compute bound there (profile.is_memory_bound).
Axis ranges come from the ceilings (`axis_ranges`), not the data, so figures of different
configurations line up; they widen, by whole decades, only to keep a point in view.

Bytes are *modelled* (engine.traffic), so the AI of a point is the model's; FLOPs and time
are counted and measured.

For a FigureWidget that updates in place (workbench.widgets): every trace of
`roofline_figure` carries a stable key in `trace.meta` ("region", "roof:peak",
"roof:<level>", "ops:<kind>"); `roofline_traces` returns {key: trace properties} for a
profile and `update_roofline(fig, ...)` assigns them (and the axis ranges and level
buttons) inside `fig.batch_update()` without rebuilding the figure.

The other figures: two profiles on one roofline in `workbench.before_after`, time per
step in `workbench.time_bars`; a figure to a file in `workbench.export`.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.figure_parts import (OP_COLORS, format_value, finite_positive, marker_sizes, memoised, op_kind,
                                    or_none, plotted_steps, short_name, step_members)
from workbench.profile import check_level, check_profile, describe_fusion, is_memory_bound, profile_threads

ROOF_COLORS = {"peak": "#222222", "L1": "#5b3a96", "L2": "#1f6f9f", "L3": "#2a9d8f", "DRAM": "#7a8f2f"}
REGION_COLOR = "rgba(228, 87, 86, 0.09)"

X_RANGE = (0.01, 1000.0)     # FLOP/byte: the default x axis, widened by decades for outliers
Y_MIN = 0.1                  # GFLOP/s: bottom of the y axis
Y_HEADROOM = 2.0             # top of the y axis = this x the peak of the most threads measured
LABEL_TOP = 6                # steps labelled with their name on the plot (the slowest ones)

# Columns every figure needs; the ai_<level> column of each ceilings level is added.
REQUIRED_COLUMNS = ("layer", "op", "input_shape", "output_shape", "threads", "seconds", "flops",
                    "gflops", "share_of_time")


def roofline_columns(ceilings) -> list[str]:
    """The columns a profile needs to be drawn on a roofline of these ceilings."""
    return list(REQUIRED_COLUMNS) + [f"ai_{level}" for level in ceilings.levels]


def _max_threads(ceilings) -> int:
    return int(pd.to_numeric(ceilings.table["threads"]).max())


def _thread_counts(ceilings) -> list[int]:
    return sorted(int(t) for t in pd.unique(ceilings.table["threads"]))


def _decade_floor(value: float) -> float:
    return 10.0 ** math.floor(math.log10(value))


def _decade_ceil(value: float) -> float:
    return 10.0 ** math.ceil(math.log10(value))


# ---------------------------------------------------------------------------- axis ranges

def axis_ranges(ceilings, profiles: Sequence[pd.DataFrame] = ()) -> dict[str, tuple[float, float]]:
    """{"x": (lo, hi) FLOP/byte, "y": (lo, hi) GFLOP/s}, in data units (not log10).

    x: X_RANGE, y: Y_MIN .. Y_HEADROOM x the peak of the most threads in the ceilings table,
    so two figures with the same ceilings line up. Widened by whole decades only to keep
    every ridge point and every plotted point (AI at every level, GFLOP/s) in view.
    """
    ceilings = memoised(ceilings)
    x_lo, x_hi = X_RANGE
    y_lo, y_hi = Y_MIN, Y_HEADROOM * ceilings.peak_gflops(_max_threads(ceilings))
    xs = [ceilings.ridge_point(level, t) for t in _thread_counts(ceilings) for level in ceilings.levels]
    ys = []
    for frame in profiles:
        rows = plotted_steps(frame)
        for level in ceilings.levels:
            column = f"ai_{level}"
            if column in rows.columns:
                values = rows[column].to_numpy(dtype=float)
                xs.extend(values[finite_positive(values)].tolist())
        ys.extend(rows["gflops"].to_numpy(dtype=float).tolist())
    if xs:
        x_lo, x_hi = min(x_lo, _decade_floor(min(xs))), max(x_hi, _decade_ceil(max(xs)))
    if ys:
        y_lo, y_hi = min(y_lo, _decade_floor(min(ys))), max(y_hi, Y_HEADROOM * max(ys))
    return {"x": (x_lo, x_hi), "y": (y_lo, y_hi)}


def _log_range(pair: tuple[float, float]) -> list[float]:
    return [math.log10(pair[0]), math.log10(pair[1])]


# ---------------------------------------------------------------------------- trace specs

def region_spec(ceilings, threads: int, level: str, ranges) -> dict:
    """The shaded memory-bound region at `level` (key "region"): a filled rectangle from
    the left edge of `ranges` to the level's ridge point, full height."""
    (x_lo, _), (y_lo, y_hi) = ranges["x"], ranges["y"]
    ridge = ceilings.ridge_point(level, threads)
    return dict(
        meta="region", name=f"memory bound at {level} (AI < {ridge:.3g} FLOP/byte)",
        x=[x_lo, ridge, ridge, x_lo, x_lo], y=[y_lo, y_lo, y_hi, y_hi, y_lo],
        mode="lines", fill="toself", fillcolor=REGION_COLOR, line=dict(width=0, color=REGION_COLOR, dash="solid"),
        hoverinfo="skip", hovertext=None, showlegend=True)


def roof_specs(ceilings, threads: int, level: str, ranges, key_suffix: str = "", label_suffix: str = "",
               faded: bool = False, levels: Sequence[str] | None = None) -> dict[str, dict]:
    """The peak roof and one bandwidth roof per level (or per `levels`), keyed "roof:peak",
    "roof:<level>" (+ key_suffix); faded: dotted and half transparent (a compared profile's)."""
    x_lo, x_hi = ranges["x"]
    peak = ceilings.peak_gflops(threads)
    thread_text = f"{threads} thread{'s' if threads != 1 else ''}"
    opacity = 0.45 if faded else 1.0
    ridges = {lv: ceilings.ridge_point(lv, threads) for lv in ceilings.levels}
    start = max(x_lo, min(ridges.values()))
    specs = {f"roof:peak{key_suffix}": dict(
        name=f"peak FP32 FMA, {thread_text}: {peak:.3g} GFLOP/s{label_suffix}",
        x=[start, x_hi], y=[peak, peak], mode="lines+text",
        text=["", f"peak {peak:.3g} GFLOP/s ({thread_text}){label_suffix}"], textposition="top left",
        textfont=dict(size=11, color=ROOF_COLORS["peak"]),
        line=dict(color=ROOF_COLORS["peak"], width=3.0, dash="dot" if faded else "solid"), opacity=opacity,
        hoverinfo="text", hovertext=[f"peak FP32 FMA, {thread_text}: {peak:.3g} GFLOP/s"] * 2, showlegend=True)}
    for lv, ridge in ridges.items():
        if levels is not None and lv not in levels:
            continue
        bandwidth = ceilings.bandwidth_gbs(lv, threads)
        chosen = lv == level
        hover = (f"{lv} roof, {thread_text}: {bandwidth:.3g} GB/s x AI<br>"
                 f"ridge point {ridge:.3g} FLOP/byte")
        # labelled with the level's name just above its ridge point: the roofs are parallel
        # and ~50 px apart, too close for a horizontal label along them to stay clear
        specs[f"roof:{lv}{key_suffix}"] = dict(
            name=f"{lv} roof: {bandwidth:.3g} GB/s{label_suffix}",
            x=[x_lo, ridge], y=[x_lo * bandwidth, ridge * bandwidth], mode="lines+text",
            text=["", lv], textposition="top center",
            textfont=dict(size=13 if chosen else 10, color=ROOF_COLORS.get(lv, "#555555")),
            line=dict(color=ROOF_COLORS.get(lv, "#555555"), width=3.5 if chosen else 1.5,
                      dash="dot" if faded else ("solid" if chosen else "dash")),
            opacity=opacity, hoverinfo="text", hovertext=[hover] * 2, showlegend=True)
    return specs


def _hover(row: dict, level: str, threads: int, ceilings) -> str:
    """Hover text of one step (a profile row as a dict) at `level`."""
    peak = ceilings.peak_gflops(threads)
    bandwidth = ceilings.bandwidth_gbs(level, threads)
    ridge = ceilings.ridge_point(level, threads)
    ai = float(row[f"ai_{level}"])
    gflops = float(row["gflops"])
    attainable = min(peak, ai * bandwidth) if math.isfinite(ai) else peak
    bound = "memory" if is_memory_bound(ai, level, threads, ceilings) else "compute"
    lines = [f"<b>{html.escape(str(row['layer']))}</b> ({html.escape(str(row['op']))})"]
    members = step_members(row)
    if len(members) > 1:
        lines.append("members: " + ", ".join(html.escape(short_name(m)) for m in members))
    lines += [
        f"{html.escape(str(row['input_shape']))} → {html.escape(str(row['output_shape']))}",
        f"time {float(row['seconds']) * 1e3:.3f} ms ({float(row['share_of_time']):.1%} of the run)",
        f"{gflops:.3g} GFLOP/s achieved",
        f"AI at {level}: {format_value(ai, 'FLOP/byte')}",
        f"{level} roof here: {attainable:.3g} GFLOP/s → {gflops / attainable:.0%} of it",
        f"<b>{bound} bound</b> at {level} (ridge {ridge:.3g} FLOP/byte)",
    ]
    if "bound_level" in row and "roof_fraction" in row and pd.notna(row["roof_fraction"]):
        lines.append(f"tightest roof of all: {row['bound_level']} ({float(row['roof_fraction']):.0%} of it)")
    return "<br>".join(lines)


def _marker_specs(profile: pd.DataFrame, ceilings, threads: int, level: str, label_top: int) -> dict[str, dict]:
    """One marker trace per op kind in OP_COLORS, always all of them (empty ones hidden from
    the legend) so the set of traces never depends on the profile. The `label_top` slowest
    steps are labelled with their short name."""
    rows = plotted_steps(profile)
    records = rows.to_dict("records")          # plain dicts: far faster than per-kind DataFrame slicing
    seconds = rows["seconds"].to_numpy(dtype=float)
    labelled = set(np.argsort(-seconds, kind="stable")[:max(0, int(label_top))].tolist())
    sizes = marker_sizes(rows["share_of_time"])
    positions = {kind: [] for kind in OP_COLORS}
    for position, record in enumerate(records):
        positions[op_kind(record["op"])].append(position)
    specs = {}
    for kind, color in OP_COLORS.items():
        these = positions[kind]
        specs[f"ops:{kind}"] = dict(
            name=kind, x=or_none([records[i][f"ai_{level}"] for i in these]),
            y=[float(records[i]["gflops"]) for i in these],
            mode="markers+text", customdata=[records[i]["layer"] for i in these],
            text=[short_name(records[i]["layer"]) if i in labelled else "" for i in these],
            textposition="top center", textfont=dict(size=10, color=color),
            marker=dict(color=color, size=[sizes[i] for i in these], sizemode="diameter",
                        opacity=0.85, line=dict(width=0.8, color="white")),
            line=dict(width=0, dash="solid"), opacity=1.0,
            hoverinfo="text", hovertext=[_hover(records[i], level, threads, ceilings) for i in these],
            showlegend=len(these) > 0)
    return specs


def roofline_traces(profile: pd.DataFrame, ceilings, level: str = "L2", label_top: int = LABEL_TOP,
                    ranges: dict | None = None) -> dict[str, dict]:
    """The data of every trace of `roofline_figure`: {key: scatter properties}, in drawing order.

    Keys (also stored in each trace's `meta`, which FigureWidget keeps, unlike `uid`):
      "region"          the shaded memory-bound region at `level` (a filled rectangle from
                        the left edge to the ridge point, full height);
      "roof:peak"       the peak fp32 FMA roof for the profile's threads, GFLOP/s;
      "roof:<level>"    one bandwidth roof per ceilings level, y = AI x GB/s, up to its ridge;
      "ops:<kind>"      markers of the steps of that op kind (every kind of OP_COLORS, empty
                        ones with showlegend=False): x = ai_<level> (FLOP/byte), y = gflops,
                        customdata = the step's name (its `layer`: what a click selects).
    The set of keys depends only on the ceilings' levels, never on the profile, so a widget
    can do `with fig.batch_update(): trace.update(specs[trace.meta])` for each trace (or
    simply call `update_roofline`). `ranges`: axis_ranges(...) to draw the region and roofs
    against (default: from the ceilings and this profile).
    """
    ceilings = memoised(ceilings)
    check_level(ceilings, level)
    check_profile(profile, roofline_columns(ceilings))
    threads = profile_threads(profile)
    ranges = axis_ranges(ceilings, [profile]) if ranges is None else ranges
    specs = {"region": region_spec(ceilings, threads, level, ranges)}
    specs.update(roof_specs(ceilings, threads, level, ranges))
    specs.update(_marker_specs(profile, ceilings, threads, level, label_top))
    return {key: {**spec, "meta": key} for key, spec in specs.items()}


# ---------------------------------------------------------------------------- the figure

def _default_title(profile: pd.DataFrame, level: str) -> str:
    parts = []
    if "batch" in profile.columns:
        parts.append(f"batch {int(profile['batch'].iloc[0])}")
    threads = int(profile["threads"].iloc[0])
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    fusion = describe_fusion(profile)
    if fusion is not None:
        parts.append(fusion)
    total = float(profile["seconds"].sum()) * 1e3
    parts.append(f"{total:.2f} ms of steps")
    return f"Roofline at {level}: " + ", ".join(parts)


_LEVEL_DEPENDENT = ("x", "hovertext", "name", "line.width", "line.dash", "textfont.size")


def _get(spec: dict, path: str):
    value = spec
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _level_menu(profile, ceilings, level, label_top, ranges, keys, title: str | None,
                indices: list[int] | None = None) -> list[dict]:
    """Buttons that restyle every trace to another level, client side (no Python needed).
    title: the caller's fixed title, or None for each level's default title. indices: the
    traces `keys` are (default: every trace of the figure, in order)."""
    buttons = []
    for other in ceilings.levels:
        specs = roofline_traces(profile, ceilings, other, label_top, ranges)
        restyle = {path: [_get(specs[key], path) for key in keys] for path in _LEVEL_DEPENDENT}
        relayout = {"xaxis.title.text": _x_title(other),
                    "title.text": title if title is not None else _default_title(profile, other)}
        args = [restyle, relayout] if indices is None else [restyle, relayout, indices]
        buttons.append(dict(label=f"AI at {other}", method="update", args=args))
    return [dict(type="buttons", direction="right", active=list(ceilings.levels).index(level), buttons=buttons,
                 x=1.0, xanchor="right", y=1.02, yanchor="bottom", pad=dict(r=0, t=0), showactive=True,
                 font=dict(size=11))]


def _x_title(level: str) -> str:
    return f"arithmetic intensity at {level} (FLOP/byte, modelled bytes)"


def base_layout(ranges, level: str, title: str) -> dict:
    return dict(
        title=dict(text=title, x=0.0, xanchor="left"),
        xaxis=dict(type="log", range=_log_range(ranges["x"]), title=dict(text=_x_title(level)),
                   showgrid=True, gridcolor="#e5e5e5", zeroline=False, exponentformat="power"),
        yaxis=dict(type="log", range=_log_range(ranges["y"]), title=dict(text="performance (GFLOP/s)"),
                   showgrid=True, gridcolor="#e5e5e5", zeroline=False),
        plot_bgcolor="white", hovermode="closest", height=620,
        legend=dict(x=1.01, y=1.0, xanchor="left", font=dict(size=11)),
        margin=dict(l=70, r=20, t=90, b=60),
        hoverlabel=dict(align="left"))


def _checked_traces(profile: pd.DataFrame, ceilings, level: str, label_top: int):
    """(memoised ceilings, axis ranges, roofline_traces) of a profile, after the checks
    every entry point makes (level, then columns)."""
    ceilings = memoised(ceilings)
    check_level(ceilings, level)
    check_profile(profile, roofline_columns(ceilings))
    ranges = axis_ranges(ceilings, [profile])
    return ceilings, ranges, roofline_traces(profile, ceilings, level, label_top, ranges)


def roofline_figure(profile: pd.DataFrame, ceilings, level: str = "L2", title: str | None = None,
                    level_buttons: bool = True, label_top: int = LABEL_TOP) -> go.Figure:
    """The roofline of one profile (workbench.profile's DataFrame) on `ceilings`.

    level: memory level whose arithmetic intensity is the x axis ("L1", "L2", "L3", "DRAM";
        any of ceilings.levels); its roof is emphasised and the region left of its ridge
        point (memory bound there) is shaded.
    title: default says the level, batch, threads, fusion and total step time.
    level_buttons: add buttons that switch the level in the browser (x data, hover, shaded
        region and emphasised roof). A widget with its own level control may turn them off.
    label_top: the slowest this-many steps are labelled with their (short) name.
    Raises ValueError for an unknown level, an empty profile, a profile missing columns,
    or one that mixes thread counts.
    """
    ceilings, ranges, specs = _checked_traces(profile, ceilings, level, label_top)
    figure = go.Figure([go.Scatter(**spec) for spec in specs.values()])
    figure.update_layout(**base_layout(ranges, level, title if title is not None else _default_title(profile, level)))
    if level_buttons:
        figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges,
                                                     list(specs), title))
    return figure


def update_roofline(figure: go.Figure, profile: pd.DataFrame, ceilings, level: str = "L2",
                    title: str | None = None, label_top: int = LABEL_TOP) -> None:
    """Redraw a `roofline_figure` (a Figure or FigureWidget) for another profile or level in
    place, inside `figure.batch_update()`: trace data by `trace.meta` key, axis ranges,
    title, axis title and the level buttons (if the figure has them). Traces added after
    roofline_figure's (an overlay its owner draws, as the Explorer's selection ring) and
    layout annotations are left as they are. ValueError if the figure's traces do not
    begin with those of roofline_figure for these ceilings."""
    ceilings, ranges, specs = _checked_traces(profile, ceilings, level, label_top)
    keys = [trace.meta for trace in figure.data]
    if keys[:len(specs)] != list(specs):
        raise ValueError(f"figure traces {keys} are not those of roofline_figure for these ceilings "
                         f"({list(specs)}); build a new figure with roofline_figure")
    with figure.batch_update():
        for trace in figure.data[:len(specs)]:
            trace.update(specs[trace.meta])
        shown_title = title if title is not None else _default_title(profile, level)
        figure.update_layout(**base_layout(ranges, level, shown_title))
        if figure.layout.updatemenus:
            indices = list(range(len(specs))) if len(keys) > len(specs) else None
            figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges, list(specs),
                                                         title, indices))
