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
- each roof labelled on its line with its value ("L2 477 GB/s");
- one marker per step with flops > 0 at (ai_<level>, gflops): diameter MARKER_MIN +
  (MARKER_MAX - MARKER_MIN) x sqrt(share of the run time), so area tracks time (a size
  legend says how much); colour by what bounds the step at the level (BOUND_COLORS),
  symbol by op kind (OP_SYMBOLS; a legend click hides a kind); error bars from the p10 to
  the p90 GFLOP/s over the repeats; a step whose AI at the level is not a positive finite
  number (no bytes modelled) has no point at that level;
  the hover says the layer, its NCHW shapes, its activation (when the profile has the
  column workbench.activations.with_activations adds), time, GFLOP/s, AI, % of the attainable roof
  at the level (with the word on why when above 100 %: roof_notes) and whether the step
  is memory or compute bound there (profile.is_memory_bound).
Axis ranges fit the data (`axis_ranges`): the points, the ridge point and the peak with a
margin, never more than DATA_DECADES beyond the outermost point; each level its own view.
The title carries a noise warning when the repeats spread widely (workbench.spread).

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

from workbench.activations import activation_of
from workbench.figure_parts import (BOUND_COLORS, NOISE_COLOR, OP_COLORS, OP_SYMBOLS, finite_positive, format_ms,
                                    format_value, marker_sizes, memoised, op_kind, or_none, plotted_steps, shape_text,
                                    short_name, step_members)
from workbench.profile import bound_at, check_level, check_profile, describe_fusion, is_memory_bound, profile_threads
from workbench.roof_notes import above_roof_note, format_roof_fraction
from workbench.spread import noise_warning

ROOF_COLORS = {"peak": "#222222", "L1": "#5b3a96", "L2": "#1f6f9f", "L3": "#2a9d8f", "DRAM": "#7a8f2f"}
REGION_COLOR = "rgba(228, 87, 86, 0.09)"

X_RANGE = (0.01, 1000.0)     # FLOP/byte: the x axis of a figure without points
Y_MIN = 0.1                  # GFLOP/s: bottom of the y axis without points
Y_HEADROOM = 2.0             # top of the y axis without points = this x the peak of the most threads
AXIS_MARGIN = 2.0            # axes end this factor (0.3 decade) beyond the outermost point, ridge or peak
DATA_DECADES = 2.0           # ... but never more than this many decades beyond the outermost point
LABEL_AT = 0.3               # a bandwidth roof's label sits this far (in log x) along its visible part,
LABEL_CLEAR = 0.08           # and this share of the x axis' width right of its left edge (half a label)
LABEL_TOP = 6                # steps labelled with their name on the plot (the slowest ones)
FIGURE_HEIGHT = 760          # px (the legend under the plot takes ~120); the width follows the output area
SIZE_LEGEND_SHARES = (0.01, 0.1, 0.3)   # shares of the run time shown in the size legend

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

def _data_extent(ceilings, profiles: Sequence[pd.DataFrame], level: str | None):
    """(x values, y values) the axes must show: every plotted step's AI at `level` (every
    level when None) and GFLOP/s (with its p10..p90 spread), each profile's ridge point(s)
    and peak at its thread count."""
    levels = list(ceilings.levels) if level is None else [level]
    xs, ys = [], []
    for frame in profiles:
        rows = plotted_steps(frame)
        threads = profile_threads(frame)
        xs.extend(ceilings.ridge_point(lv, threads) for lv in levels)
        ys.append(ceilings.peak_gflops(threads))
        for lv in levels:
            column = f"ai_{lv}"
            if column in rows.columns:
                values = rows[column].to_numpy(dtype=float)
                xs.extend(values[finite_positive(values)].tolist())
        for column in ("gflops", "gflops_p10", "gflops_p90"):
            if column in rows.columns:
                values = rows[column].to_numpy(dtype=float)
                ys.extend(values[finite_positive(values)].tolist())
    return xs, ys


def _points_extent(profiles: Sequence[pd.DataFrame], level: str | None, ceilings) -> tuple[list, list]:
    """(x, y) of the plotted points only: what the axis must stay within DATA_DECADES of."""
    levels = list(ceilings.levels) if level is None else [level]
    xs, ys = [], []
    for frame in profiles:
        rows = plotted_steps(frame)
        for lv in levels:
            values = rows[f"ai_{lv}"].to_numpy(dtype=float) if f"ai_{lv}" in rows.columns else np.array([])
            xs.extend(values[finite_positive(values)].tolist())
        ys.extend(rows["gflops"].to_numpy(dtype=float).tolist())
    return xs, ys


def _fitted(values: list[float], points: list[float]) -> tuple[float, float]:
    """(lo, hi): `values` with AXIS_MARGIN either side, but no further than DATA_DECADES
    from the outermost of `points` (so a far roof never squeezes the data)."""
    lo, hi = min(values) / AXIS_MARGIN, max(values) * AXIS_MARGIN
    if points:
        lo = max(lo, min(points) / 10.0 ** DATA_DECADES)
        hi = min(hi, max(points) * 10.0 ** DATA_DECADES)
    return lo, hi


def axis_ranges(ceilings, profiles: Sequence[pd.DataFrame] = (), level: str | None = None
                ) -> dict[str, tuple[float, float]]:
    """{"x": (lo, hi) FLOP/byte, "y": (lo, hi) GFLOP/s}, in data units (not log10), fitted
    to the data: every plotted point (its AI at `level`, or at every level when None, and
    its GFLOP/s with its p10..p90 spread), the ridge point of `level` and the peak at each
    profile's thread count, with a margin of AXIS_MARGIN (a factor) either side, and never
    reaching more than DATA_DECADES beyond the outermost point. Without profiles: X_RANGE and
    Y_MIN .. Y_HEADROOM x the peak of the most threads measured."""
    ceilings = memoised(ceilings)
    xs, ys = _data_extent(ceilings, profiles, level)
    if not profiles or not xs or not ys:
        return {"x": X_RANGE, "y": (Y_MIN, Y_HEADROOM * ceilings.peak_gflops(_max_threads(ceilings)))}
    point_xs, point_ys = _points_extent(profiles, level, ceilings)
    return {"x": _fitted(xs, point_xs), "y": _fitted(ys, point_ys)}


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


def roof_label_x(bandwidth: float, x_end: float, ranges) -> float | None:
    """Where a bandwidth roof (y = AI x `bandwidth` GB/s, drawn from the left edge to
    `x_end`) is labelled: LABEL_AT of the way (in log x) along the part of the line inside
    both axes; None when no part of it is."""
    (x_lo, x_hi), (y_lo, y_hi) = ranges["x"], ranges["y"]
    left = max(x_lo, y_lo / bandwidth)
    right = min(x_end, x_hi, y_hi / bandwidth)
    if not right > left:
        return None
    left_log, right_log = math.log10(left), math.log10(right)
    # centred on its point: at least LABEL_CLEAR of the axis' width from its left edge (half
    # a label) when the line is that long
    clear = math.log10(x_lo) + LABEL_CLEAR * (math.log10(x_hi) - math.log10(x_lo))
    at = max(left_log + LABEL_AT * (right_log - left_log), min(clear, right_log))
    return 10.0 ** min(at, right_log)


def roof_label_position(label_x: float, ranges) -> str:
    """Where a roof's label sits around its point: centred above it, or below and to the
    right when the point is too near the left edge for half a label (a short visible roof)."""
    x_lo, x_hi = (math.log10(v) for v in ranges["x"])
    return "top center" if math.log10(label_x) >= x_lo + 0.99 * LABEL_CLEAR * (x_hi - x_lo) else "bottom right"


def roof_specs(ceilings, threads: int, level: str, ranges, key_suffix: str = "", label_suffix: str = "",
               faded: bool = False, levels: Sequence[str] | None = None) -> dict[str, dict]:
    """The peak roof and one bandwidth roof per level (or per `levels`), keyed "roof:peak",
    "roof:<level>" (+ key_suffix); faded: dotted and half transparent (a compared profile's).

    Each roof is labelled on its line with its value ("L2 477 GB/s", "peak 180 GFLOP/s"):
    the label is the text of a middle point of the line, inside the axis ranges."""
    x_lo, x_hi = ranges["x"]
    peak = ceilings.peak_gflops(threads)
    thread_text = f"{threads} thread{'s' if threads != 1 else ''}"
    opacity = 0.45 if faded else 1.0
    ridges = {lv: ceilings.ridge_point(lv, threads) for lv in ceilings.levels}
    start = max(x_lo, min(ridges.values()))
    peak_label = 10.0 ** (math.log10(start) + 0.85 * (math.log10(x_hi) - math.log10(start))) if x_hi > start else x_hi
    specs = {f"roof:peak{key_suffix}": dict(
        name=f"peak FP32 FMA, {thread_text}: {peak:.3g} GFLOP/s{label_suffix}",
        x=[start, peak_label, x_hi], y=[peak, peak, peak], mode="lines+text",
        text=["", f"peak {peak:.3g} GFLOP/s ({thread_text}){label_suffix}", ""], textposition="top center",
        textfont=dict(size=11, color=ROOF_COLORS["peak"]),
        line=dict(color=ROOF_COLORS["peak"], width=3.0, dash="dot" if faded else "solid"), opacity=opacity,
        hoverinfo="text", hovertext=[f"peak FP32 FMA, {thread_text}: {peak:.3g} GFLOP/s"] * 3, showlegend=True)}
    for lv, ridge in ridges.items():
        if levels is not None and lv not in levels:
            continue
        bandwidth = ceilings.bandwidth_gbs(lv, threads)
        chosen = lv == level
        hover = (f"{lv} roof, {thread_text}: {bandwidth:.3g} GB/s x AI<br>"
                 f"ridge point {ridge:.3g} FLOP/byte")
        label_x = roof_label_x(bandwidth, ridge, ranges)
        middle = label_x if label_x is not None else math.sqrt(x_lo * ridge)
        label = f"{lv} {bandwidth:.3g} GB/s{label_suffix}" if label_x is not None else ""
        specs[f"roof:{lv}{key_suffix}"] = dict(
            name=f"{lv} roof: {bandwidth:.3g} GB/s{label_suffix}",
            x=[x_lo, middle, ridge], y=[x_lo * bandwidth, middle * bandwidth, ridge * bandwidth],
            mode="lines+text", text=["", label, ""], textposition=roof_label_position(middle, ranges),
            textfont=dict(size=13 if chosen else 11, color=ROOF_COLORS.get(lv, "#555555")),
            line=dict(color=ROOF_COLORS.get(lv, "#555555"), width=3.5 if chosen else 1.5,
                      dash="dot" if faded else ("solid" if chosen else "dash")),
            opacity=opacity, hoverinfo="text", hovertext=[hover] * 3, showlegend=True)
    return specs


def hover_text(row: dict, level: str, threads: int, ceilings) -> str:
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
    lines.append(f"{html.escape(shape_text(row['input_shape']))} → {html.escape(shape_text(row['output_shape']))}")
    activation = activation_of(row)
    if activation:
        lines.append(f"activation: {html.escape(activation)}")
    lines.append(f"time {format_ms(float(row['seconds']))} ({float(row['share_of_time']):.1%} of the run)")
    if not float(row.get("flops", 1) or 0) > 0 or not attainable > 0:
        # a step without FLOPs (maxpool, activation, pool, layout): no point, no roof
        other = row.get("other_flops")
        lines.append("no multiply-add FLOPs: not on the roofline" +
                     (f" ({int(other):,} other FLOPs: compares, activations)" if other and float(other) > 0 else ""))
        return "<br>".join(lines)
    lines += [
        f"{gflops:.3g} GFLOP/s achieved" + _spread_text(row),
        f"AI at {level}: {format_value(ai, 'FLOP/byte')}",
        f"{level} roof here: {attainable:.3g} GFLOP/s → "
        f"{format_roof_fraction(gflops / attainable, short=True)} of it",
    ]
    note = above_roof_note(gflops / attainable, row["op"])
    if note:
        lines.append(f"<i>{html.escape(note)}</i>")
    lines.append(f"<b>{bound} bound</b> at {level} (ridge {ridge:.3g} FLOP/byte)")
    if "bound_level" in row and "roof_fraction" in row and pd.notna(row["roof_fraction"]):
        lines.append(f"tightest roof of all: {row['bound_level']} "
                     f"({format_roof_fraction(row['roof_fraction'], short=True)} of it)")
    return "<br>".join(lines)


def _spread_text(row: dict) -> str:
    """" (p10-p90 a-b)" of a row with percentile columns, else ""."""
    low, high = row.get("gflops_p10"), row.get("gflops_p90")
    if low is None or high is None or not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return ""
    return f" (p10-p90 over the repeats: {float(low):.3g}-{float(high):.3g})"


def _error_bars(rows: list[dict]) -> dict:
    """error_y of markers: p10..p90 of GFLOP/s over the repeats around the median; hidden
    when the profile has no percentiles."""
    shown = bool(rows) and "gflops_p10" in rows[0]
    plus = [max(0.0, float(r["gflops_p90"]) - float(r["gflops"])) for r in rows] if shown else []
    minus = [max(0.0, float(r["gflops"]) - float(r["gflops_p10"])) for r in rows] if shown else []
    # every key always set, so an update in place leaves nothing of the previous profile's
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, visible=shown, thickness=1.0, width=0,
                color="rgba(60, 60, 60, 0.55)")


def _marker_specs(profile: pd.DataFrame, ceilings, threads: int, level: str, label_top: int) -> dict[str, dict]:
    """One marker trace per op kind in OP_COLORS, always all of them (empty ones hidden from
    the legend) so the set of traces never depends on the profile: symbol by op kind
    (OP_SYMBOLS; a legend click toggles a kind), colour by what bounds the step at `level`
    (BOUND_COLORS), error bars p10..p90 over the repeats. The `label_top` slowest steps are
    labelled with their short name."""
    rows = plotted_steps(profile)
    records = rows.to_dict("records")          # plain dicts: far faster than per-kind DataFrame slicing
    seconds = rows["seconds"].to_numpy(dtype=float)
    labelled = set(np.argsort(-seconds, kind="stable")[:max(0, int(label_top))].tolist())
    sizes = marker_sizes(rows["share_of_time"])
    bounds = bound_at(rows, ceilings, level) if len(rows) else np.array([])
    positions = {kind: [] for kind in OP_COLORS}
    for position, record in enumerate(records):
        positions[op_kind(record["op"])].append(position)
    specs = {}
    for kind in OP_COLORS:
        these = positions[kind]
        specs[f"ops:{kind}"] = dict(
            name=kind, x=or_none([records[i][f"ai_{level}"] for i in these]),
            y=[float(records[i]["gflops"]) for i in these],
            mode="markers+text", customdata=[records[i]["layer"] for i in these],
            text=[short_name(records[i]["layer"]) if i in labelled else "" for i in these],
            textposition="top center", textfont=dict(size=10, color="#333333"),
            marker=dict(color=[BOUND_COLORS[bounds[i]] for i in these], size=[sizes[i] for i in these],
                        symbol=OP_SYMBOLS[kind], sizemode="diameter", opacity=0.85,
                        line=dict(width=0.8, color="white")),
            error_y=_error_bars([records[i] for i in these]),
            line=dict(width=0, dash="solid"), opacity=1.0, legendgroup="op kind",
            legendgrouptitle=dict(text="op kind (click to hide)"),
            hoverinfo="text", hovertext=[hover_text(records[i], level, threads, ceilings) for i in these],
            showlegend=len(these) > 0)
    return specs


def _legend_specs(level: str) -> dict[str, dict]:
    """Legend-only traces (no data): the colour of each bound at `level` ("legend:<bound>")
    and marker sizes for a few shares of the run time ("size:<percent>")."""
    specs = {}
    for bound in ("memory", "compute"):
        specs[f"legend:{bound}"] = dict(
            name=f"{bound} bound at {level}", x=[None], y=[None], mode="markers", legendgroup="bound",
            legendgrouptitle=dict(text="colour: what bounds it"), hoverinfo="skip",
            marker=dict(color=BOUND_COLORS[bound], size=11, symbol="circle"), showlegend=True)
    for share in SIZE_LEGEND_SHARES:
        specs[f"size:{share:.0%}"] = dict(
            name=f"{share:.0%} of the time", x=[None], y=[None], mode="markers", legendgroup="size",
            legendgrouptitle=dict(text="size: share of time"), hoverinfo="skip",
            marker=dict(color="#bbbbbb", size=marker_sizes([share])[0], symbol="circle",
                        line=dict(width=0.8, color="white")), showlegend=True)
    return specs


def roofline_traces(profile: pd.DataFrame, ceilings, level: str = "L2", label_top: int = LABEL_TOP,
                    ranges: dict | None = None) -> dict[str, dict]:
    """The data of every trace of `roofline_figure`: {key: scatter properties}, in drawing order.

    Keys (also stored in each trace's `meta`, which FigureWidget keeps, unlike `uid`):
      "region"          the shaded memory-bound region at `level` (a filled rectangle from
                        the left edge to the ridge point, full height);
      "roof:peak"       the peak fp32 FMA roof for the profile's threads, GFLOP/s;
      "roof:<level>"    one bandwidth roof per ceilings level, y = AI x GB/s, up to its ridge,
                        labelled on the line with its value;
      "ops:<kind>"      markers of the steps of that op kind (every kind of OP_COLORS, empty
                        ones with showlegend=False): x = ai_<level> (FLOP/byte), y = gflops,
                        colour = bound at `level`, error bars p10..p90, customdata = the
                        step's name (its `layer`: what a click selects);
      "legend:<bound>", "size:<percent>"   legend entries only (no points).
    The set of keys depends only on the ceilings' levels, never on the profile, so a widget
    can do `with fig.batch_update(): trace.update(specs[trace.meta])` for each trace (or
    simply call `update_roofline`). `ranges`: axis_ranges(...) to draw the region and roofs
    against (default: fitted to this profile at `level`).
    """
    ceilings = memoised(ceilings)
    check_level(ceilings, level)
    check_profile(profile, roofline_columns(ceilings))
    threads = profile_threads(profile)
    ranges = axis_ranges(ceilings, [profile], level) if ranges is None else ranges
    specs = {"region": region_spec(ceilings, threads, level, ranges)}
    specs.update(roof_specs(ceilings, threads, level, ranges))
    specs.update(_marker_specs(profile, ceilings, threads, level, label_top))
    specs.update(_legend_specs(level))
    return {key: {**spec, "meta": key} for key, spec in specs.items()}


# ---------------------------------------------------------------------------- the figure

def default_title(profile: pd.DataFrame, level: str) -> str:
    """The title a roofline of `profile` at `level` gets unless told: level, batch, threads,
    fusion and total step time, and a noise warning when the repeats spread widely."""
    parts = []
    if "batch" in profile.columns:
        parts.append(f"batch {int(profile['batch'].iloc[0])}")
    threads = int(profile["threads"].iloc[0])
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    fusion = describe_fusion(profile)
    if fusion is not None:
        parts.append(fusion)
    total = float(profile["seconds"].sum()) * 1e3
    parts.append(f"{total:.3g} ms of steps")
    title = f"Roofline at {level}: " + ", ".join(parts)
    warning = noise_warning(profile)
    if warning:
        title += f"<br><span style='font-size:12px;color:{NOISE_COLOR}'>{html.escape(warning)}</span>"
    return title


_LEVEL_DEPENDENT = ("x", "y", "text", "hovertext", "name", "line.width", "line.dash", "textfont.size",
                    "marker.color")


def _get(spec: dict, path: str):
    value = spec
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _level_menu(profile, ceilings, level, label_top, ranges, keys, title: str | None,
                indices: list[int] | None = None) -> list[dict]:
    """Buttons that restyle every trace to another level, client side (no Python needed).
    ranges: {level: axis ranges} (each level's view fitted to its data), or None to draw
    every level against the roofline_traces default. title: the caller's fixed title, or
    None for each level's default title. indices: the traces `keys` are (default: every
    trace of the figure, in order)."""
    buttons = []
    for other in ceilings.levels:
        other_ranges = ranges.get(other) if ranges is not None else None
        specs = roofline_traces(profile, ceilings, other, label_top, other_ranges)
        restyle = {path: [_get(specs[key], path) for key in keys] for path in _LEVEL_DEPENDENT}
        relayout = {"xaxis.title.text": _x_title(other),
                    "title.text": title if title is not None else default_title(profile, other)}
        if other_ranges is not None:
            relayout.update({"xaxis.range": _log_range(other_ranges["x"]),
                             "yaxis.range": _log_range(other_ranges["y"])})
        args = [restyle, relayout] if indices is None else [restyle, relayout, indices]
        buttons.append(dict(label=f"AI at {other}", method="update", args=args))
    return [dict(type="buttons", direction="right", active=list(ceilings.levels).index(level), buttons=buttons,
                 x=1.0, xanchor="right", y=1.02, yanchor="bottom", pad=dict(r=0, t=0), showactive=True,
                 font=dict(size=11))]


def _x_title(level: str) -> str:
    return f"arithmetic intensity at {level} (FLOP/byte, modelled bytes)"


def base_layout(ranges, level: str, title: str) -> dict:
    return dict(
        title=dict(text=title, x=0.01, xref="container", xanchor="left"),   # a few px in: no letter cut off
        xaxis=dict(type="log", range=_log_range(ranges["x"]), title=dict(text=_x_title(level)),
                   showgrid=True, gridcolor="#e5e5e5", zeroline=False, exponentformat="power"),
        yaxis=dict(type="log", range=_log_range(ranges["y"]), title=dict(text="performance (GFLOP/s)"),
                   showgrid=True, gridcolor="#e5e5e5", zeroline=False),
        plot_bgcolor="white", hovermode="closest", height=FIGURE_HEIGHT, autosize=True,
        # the legend under the plot, so the axes take the figure's whole width; far enough below
        # the axis title for a short plot (the Explorer's) too
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.19, yanchor="top", font=dict(size=11),
                    groupclick="toggleitem", tracegroupgap=12),
        margin=dict(l=70, r=20, t=95, b=60),
        hoverlabel=dict(align="left"))


def _checked_traces(profile: pd.DataFrame, ceilings, level: str, label_top: int, fit_also: Sequence = ()):
    """(memoised ceilings, {level: axis ranges fitted at that level}, roofline_traces at
    `level`) of a profile, after the checks every entry point makes (level, then columns).
    fit_also: more profiles the axes must show (an owner's overlay of them)."""
    ceilings = memoised(ceilings)
    check_level(ceilings, level)
    check_profile(profile, roofline_columns(ceilings))
    profile_threads(profile)
    for other in fit_also:
        check_profile(other, roofline_columns(ceilings), "fit_also profile")
    ranges = {lv: axis_ranges(ceilings, [profile, *fit_also], lv) for lv in ceilings.levels}
    return ceilings, ranges, roofline_traces(profile, ceilings, level, label_top, ranges[level])


def roofline_figure(profile: pd.DataFrame, ceilings, level: str = "L2", title: str | None = None,
                    level_buttons: bool = True, label_top: int = LABEL_TOP, bytes: str = "model") -> go.Figure:
    """The roofline of one profile (workbench.profile's DataFrame) on `ceilings`.

    level: memory level whose arithmetic intensity is the x axis ("L1", "L2", "L3", "DRAM";
        any of ceilings.levels); its roof is emphasised and the region left of its ridge
        point (memory bound there) is shaded.
    title: default says the level, batch, threads, fusion and total step time.
    level_buttons: add buttons that switch the level in the browser (x data, hover, shaded
        region and emphasised roof). A widget with its own level control may turn them off.
    label_top: the slowest this-many steps are labelled with their (short) name.
    bytes: place the points by the modelled bytes ("model") or by the cache simulation's
        ("simulated": a profile made with bytes="both" or "simulated";
        workbench.bytes_check_figure.placed_by_simulated_bytes), said on the x axis.
    Raises ValueError for an unknown level, an empty profile, a profile missing columns,
    or one that mixes thread counts.
    """
    if bytes not in ("model", "simulated"):
        raise ValueError(f"bytes must be 'model' or 'simulated', got {bytes!r}")
    if bytes == "simulated":
        from workbench.bytes_check_figure import placed_by_simulated_bytes    # here: it imports profile's helpers

        profile = placed_by_simulated_bytes(profile, ceilings)
    ceilings, ranges, specs = _checked_traces(profile, ceilings, level, label_top)
    figure = go.Figure([go.Scatter(**spec) for spec in specs.values()])
    figure.update_layout(**base_layout(ranges[level], level,
                                       title if title is not None else default_title(profile, level)))
    if level_buttons:
        figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges,
                                                     list(specs), title))
    if bytes == "simulated":
        from workbench.bytes_check_figure import _simulated_axis_titles     # here: as above

        _simulated_axis_titles(figure)
    return figure


def update_roofline(figure: go.Figure, profile: pd.DataFrame, ceilings, level: str = "L2",
                    title: str | None = None, label_top: int = LABEL_TOP, fit_also: Sequence = ()) -> None:
    """Redraw a `roofline_figure` (a Figure or FigureWidget) for another profile or level in
    place, inside `figure.batch_update()`: trace data by `trace.meta` key, axis ranges,
    title, axis title and the level buttons (if the figure has them). Traces added after
    roofline_figure's (an overlay its owner draws, as the Explorer's selection ring) and
    layout annotations are left as they are; fit_also: the profiles such an overlay draws,
    so the axes show their points too. ValueError if the figure's traces do not begin with
    those of roofline_figure for these ceilings."""
    ceilings, ranges, specs = _checked_traces(profile, ceilings, level, label_top, fit_also)
    keys = [trace.meta for trace in figure.data]
    if keys[:len(specs)] != list(specs):
        raise ValueError(f"figure traces {keys} are not those of roofline_figure for these ceilings "
                         f"({list(specs)}); build a new figure with roofline_figure")
    with figure.batch_update():
        for trace in figure.data[:len(specs)]:
            trace.update(specs[trace.meta])
        shown_title = title if title is not None else default_title(profile, level)
        figure.update_layout(**base_layout(ranges[level], level, shown_title))
        if figure.layout.updatemenus:
            indices = list(range(len(specs))) if len(keys) > len(specs) else None
            figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges, list(specs),
                                                         title, indices))
