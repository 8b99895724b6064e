"""`roofline`: plotly figures of a profile against this machine's measured ceilings.

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
  level and whether the step is memory or compute bound there.
Axis ranges come from the ceilings (`axis_ranges`), not the data, so figures of different
configurations line up; they widen, by whole decades, only to keep a point in view.

Bytes are *modelled* (engine.traffic), so the AI of a point is the model's; FLOPs and time
are counted and measured.

For a FigureWidget that updates in place (workbench.widgets): every trace of
`roofline_figure` carries a stable key in `trace.meta` ("region", "roof:peak",
"roof:<level>", "ops:<kind>"); `roofline_traces` returns {key: trace properties} for a
profile and `update_roofline(fig, ...)` assigns them (and the axis ranges and level
buttons) inside `fig.batch_update()` without rebuilding the figure.
"""
from __future__ import annotations

import ast
import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.profile import describe_fusion

# Colour of each op kind; fixed so a kind keeps its colour across figures. "other" takes
# any op not listed (a new kernel family) so nothing with FLOPs is left off the plot.
OP_COLORS = {
    "stem": "#8c564b",
    "conv": "#7f7f7f",
    "depthwise": "#d62728",
    "expand": "#1f77b4",
    "project": "#2ca02c",
    "pointwise": "#9467bd",
    "block": "#ff7f0e",
    "pool": "#17becf",
    "linear": "#e377c2",
    "other": "#bcbd22",
}
BOUND_COLORS = {"memory": "#e45756", "compute": "#4c78a8", "n/a": "#bab0ac"}
BOUND_LABELS = {"memory": "memory bound", "compute": "compute bound", "n/a": "no FLOPs"}
ROOF_COLORS = {"peak": "#222222", "L1": "#5b3a96", "L2": "#1f6f9f", "L3": "#2a9d8f", "DRAM": "#7a8f2f"}
REGION_COLOR = "rgba(228, 87, 86, 0.09)"

X_RANGE = (0.01, 1000.0)     # FLOP/byte: the default x axis, widened by decades for outliers
Y_MIN = 0.1                  # GFLOP/s: bottom of the y axis
Y_HEADROOM = 2.0             # top of the y axis = this x the peak of the most threads measured
MARKER_MIN, MARKER_MAX = 6.0, 60.0   # px diameter at share_of_time 0 and 1 (sqrt scaling)
LABEL_TOP = 6                # steps labelled with their name on the plot (the slowest ones)

# Columns every figure needs; the ai_<level> column of each ceilings level is added.
REQUIRED_COLUMNS = ("layer", "op", "input_shape", "output_shape", "threads", "seconds", "flops",
                    "gflops", "share_of_time")


# ---------------------------------------------------------------------------- checks

def _check_level(ceilings, level: str) -> str:
    levels = tuple(ceilings.levels)
    if level not in levels:
        raise ValueError(f"unknown level {level!r}: the ceilings have roofs for {', '.join(levels)}")
    return level


def _check_profile(profile, columns: Sequence[str], what: str = "profile") -> pd.DataFrame:
    """ValueError naming `what` unless `profile` is a non-empty DataFrame with `columns`
    (workbench.profile's output); shared by the figures and the report."""
    if not isinstance(profile, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame (workbench.profile's output), "
                         f"got {type(profile).__name__}")
    if profile.empty:
        raise ValueError(f"{what} must be a non-empty profile (one row per step), got {len(profile)} rows")
    missing = [c for c in columns if c not in profile.columns]
    if missing:
        raise ValueError(f"{what} lacks required columns {missing}; is it workbench.profile's output? "
                         f"(got columns {list(profile.columns)[:12]})")
    return profile


def _profile_threads(profile: pd.DataFrame, what: str = "profile") -> int:
    threads = pd.unique(profile["threads"])
    if len(threads) != 1:
        raise ValueError(f"{what} mixes thread counts {sorted(threads.tolist())}: plot one configuration at a time")
    return int(threads[0])


def _roofline_columns(ceilings) -> list[str]:
    return list(REQUIRED_COLUMNS) + [f"ai_{level}" for level in ceilings.levels]


# ---------------------------------------------------------------------------- small helpers

class _Memo:
    """The ceilings' numbers, each looked up once per figure (a lookup filters a DataFrame,
    and a figure asks for the same few numbers hundreds of times)."""

    def __init__(self, ceilings):
        self.ceilings = ceilings
        self.levels = tuple(ceilings.levels)
        self.table = ceilings.table
        self._values: dict = {}

    def _value(self, method: str, *args) -> float:
        key = (method, *args)
        if key not in self._values:
            self._values[key] = float(getattr(self.ceilings, method)(*args))
        return self._values[key]

    def peak_gflops(self, threads: int) -> float:
        return self._value("peak_gflops", threads)

    def bandwidth_gbs(self, level: str, threads: int) -> float:
        return self._value("bandwidth_gbs", level, threads)

    def ridge_point(self, level: str, threads: int) -> float:
        return self._value("ridge_point", level, threads)


def _memo(ceilings) -> _Memo:
    return ceilings if isinstance(ceilings, _Memo) else _Memo(ceilings)


def short_name(name: str) -> str:
    """A short label for an exporter's layer name, for markers and bars.

    "/features/features.3/conv/conv.0/conv.0.0/Conv" -> "features.3/conv.0.0": drops empty
    parts, a trailing ONNX op type (capitalised) and every scope that merely prefixes the
    next one. Names without "/" are returned unchanged; "/Flatten" -> "Flatten".
    """
    name = str(name)
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2:
        return parts[0] if parts else name
    if parts[-1][:1].isupper():
        parts = parts[:-1]
    kept = [p for p, following in zip(parts, parts[1:] + [""]) if not (following and following.startswith(p))]
    return "/".join(kept) or name


def _members(row) -> tuple[str, ...]:
    """The layers a step computes: `members` (tuple, list or its str() from a CSV) or (layer,)."""
    value = row.get("members") if hasattr(row, "get") else None
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = (value,)
    if isinstance(value, (tuple, list, np.ndarray)) and len(value):
        return tuple(str(v) for v in value)
    return (str(row["layer"]),)


def _op_kind(op) -> str:
    return op if op in OP_COLORS else "other"


def _marker_sizes(share) -> list[float]:
    """Diameter in px: MIN + (MAX - MIN) * sqrt(share), so marker *area* grows with time."""
    share = np.clip(np.nan_to_num(np.asarray(share, dtype=float), nan=0.0), 0.0, 1.0)
    return (MARKER_MIN + (MARKER_MAX - MARKER_MIN) * np.sqrt(share)).tolist()


def _finite_positive(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.isfinite(values) & (values > 0)


def _or_none(values) -> list:
    """Floats with non-finite or non-positive entries as None (a gap: not drawn on log axes)."""
    values = np.asarray(values, dtype=float)
    return [float(v) if math.isfinite(v) and v > 0 else None for v in values]


def _plotted(profile: pd.DataFrame) -> pd.DataFrame:
    """Steps that get a marker: flops > 0 and a positive finite GFLOP/s."""
    flops = pd.to_numeric(profile["flops"], errors="coerce").fillna(0).to_numpy()
    keep = (flops > 0) & _finite_positive(profile["gflops"])
    return profile[keep]


def _max_threads(ceilings) -> int:
    return int(pd.to_numeric(ceilings.table["threads"]).max())


def _thread_counts(ceilings) -> list[int]:
    return sorted(int(t) for t in pd.unique(ceilings.table["threads"]))


def _decade_floor(value: float) -> float:
    return 10.0 ** math.floor(math.log10(value))


def _decade_ceil(value: float) -> float:
    return 10.0 ** math.ceil(math.log10(value))


def _fmt(value: float, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "inf" + (f" {unit}" if unit else "")
    return f"{value:.3g}" + (f" {unit}" if unit else "")


# ---------------------------------------------------------------------------- axis ranges

def axis_ranges(ceilings, profiles: Sequence[pd.DataFrame] = ()) -> dict[str, tuple[float, float]]:
    """{"x": (lo, hi) FLOP/byte, "y": (lo, hi) GFLOP/s}, in data units (not log10).

    x: X_RANGE, y: Y_MIN .. Y_HEADROOM x the peak of the most threads in the ceilings table,
    so two figures with the same ceilings line up. Widened by whole decades only to keep
    every ridge point and every plotted point (AI at every level, GFLOP/s) in view.
    """
    ceilings = _memo(ceilings)
    x_lo, x_hi = X_RANGE
    y_lo, y_hi = Y_MIN, Y_HEADROOM * ceilings.peak_gflops(_max_threads(ceilings))
    xs = [ceilings.ridge_point(level, t) for t in _thread_counts(ceilings) for level in ceilings.levels]
    ys = []
    for frame in profiles:
        rows = _plotted(frame)
        for level in ceilings.levels:
            column = f"ai_{level}"
            if column in rows.columns:
                values = rows[column].to_numpy(dtype=float)
                xs.extend(values[_finite_positive(values)].tolist())
        ys.extend(rows["gflops"].to_numpy(dtype=float).tolist())
    if xs:
        x_lo, x_hi = min(x_lo, _decade_floor(min(xs))), max(x_hi, _decade_ceil(max(xs)))
    if ys:
        y_lo, y_hi = min(y_lo, _decade_floor(min(ys))), max(y_hi, Y_HEADROOM * max(ys))
    return {"x": (x_lo, x_hi), "y": (y_lo, y_hi)}


def _log_range(pair: tuple[float, float]) -> list[float]:
    return [math.log10(pair[0]), math.log10(pair[1])]


# ---------------------------------------------------------------------------- trace specs

def _region_spec(ceilings, threads: int, level: str, ranges) -> dict:
    (x_lo, _), (y_lo, y_hi) = ranges["x"], ranges["y"]
    ridge = ceilings.ridge_point(level, threads)
    return dict(
        meta="region", name=f"memory bound at {level} (AI < {ridge:.3g} FLOP/byte)",
        x=[x_lo, ridge, ridge, x_lo, x_lo], y=[y_lo, y_lo, y_hi, y_hi, y_lo],
        mode="lines", fill="toself", fillcolor=REGION_COLOR, line=dict(width=0, color=REGION_COLOR, dash="solid"),
        hoverinfo="skip", hovertext=None, showlegend=True)


def _roof_specs(ceilings, threads: int, level: str, ranges, key_suffix: str = "", label_suffix: str = "",
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
    bound = "memory" if ai < ridge else "compute"
    lines = [f"<b>{html.escape(str(row['layer']))}</b> ({html.escape(str(row['op']))})"]
    members = _members(row)
    if len(members) > 1:
        lines.append("members: " + ", ".join(html.escape(short_name(m)) for m in members))
    lines += [
        f"{html.escape(str(row['input_shape']))} → {html.escape(str(row['output_shape']))}",
        f"time {float(row['seconds']) * 1e3:.3f} ms ({float(row['share_of_time']):.1%} of the run)",
        f"{gflops:.3g} GFLOP/s achieved",
        f"AI at {level}: {_fmt(ai, 'FLOP/byte')}",
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
    rows = _plotted(profile)
    records = rows.to_dict("records")          # plain dicts: far faster than per-kind DataFrame slicing
    seconds = rows["seconds"].to_numpy(dtype=float)
    labelled = set(np.argsort(-seconds, kind="stable")[:max(0, int(label_top))].tolist())
    sizes = _marker_sizes(rows["share_of_time"])
    positions = {kind: [] for kind in OP_COLORS}
    for position, record in enumerate(records):
        positions[_op_kind(record["op"])].append(position)
    specs = {}
    for kind, color in OP_COLORS.items():
        these = positions[kind]
        specs[f"ops:{kind}"] = dict(
            name=kind, x=_or_none([records[i][f"ai_{level}"] for i in these]),
            y=[float(records[i]["gflops"]) for i in these],
            mode="markers+text",
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
                        ones with showlegend=False): x = ai_<level> (FLOP/byte), y = gflops.
    The set of keys depends only on the ceilings' levels, never on the profile, so a widget
    can do `with fig.batch_update(): trace.update(specs[trace.meta])` for each trace (or
    simply call `update_roofline`). `ranges`: axis_ranges(...) to draw the region and roofs
    against (default: from the ceilings and this profile).
    """
    ceilings = _memo(ceilings)
    _check_level(ceilings, level)
    _check_profile(profile, _roofline_columns(ceilings))
    threads = _profile_threads(profile)
    ranges = axis_ranges(ceilings, [profile]) if ranges is None else ranges
    specs = {"region": _region_spec(ceilings, threads, level, ranges)}
    specs.update(_roof_specs(ceilings, threads, level, ranges))
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


def _level_menu(profile, ceilings, level, label_top, ranges, keys, title: str | None) -> list[dict]:
    """Buttons that restyle every trace to another level, client side (no Python needed).
    title: the caller's fixed title, or None for each level's default title."""
    buttons = []
    for other in ceilings.levels:
        specs = roofline_traces(profile, ceilings, other, label_top, ranges)
        restyle = {path: [_get(specs[key], path) for key in keys] for path in _LEVEL_DEPENDENT}
        relayout = {"xaxis.title.text": _x_title(other),
                    "title.text": title if title is not None else _default_title(profile, other)}
        buttons.append(dict(label=f"AI at {other}", method="update", args=[restyle, relayout]))
    return [dict(type="buttons", direction="right", active=list(ceilings.levels).index(level), buttons=buttons,
                 x=1.0, xanchor="right", y=1.02, yanchor="bottom", pad=dict(r=0, t=0), showactive=True,
                 font=dict(size=11))]


def _x_title(level: str) -> str:
    return f"arithmetic intensity at {level} (FLOP/byte, modelled bytes)"


def _base_layout(ranges, level: str, title: str) -> dict:
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
    ceilings = _memo(ceilings)
    _check_level(ceilings, level)
    _check_profile(profile, _roofline_columns(ceilings))
    ranges = axis_ranges(ceilings, [profile])
    specs = roofline_traces(profile, ceilings, level, label_top, ranges)
    figure = go.Figure([go.Scatter(**spec) for spec in specs.values()])
    figure.update_layout(**_base_layout(ranges, level, title if title is not None else _default_title(profile, level)))
    if level_buttons:
        figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges,
                                                     list(specs), title))
    return figure


def update_roofline(figure: go.Figure, profile: pd.DataFrame, ceilings, level: str = "L2",
                    title: str | None = None, label_top: int = LABEL_TOP) -> None:
    """Redraw a `roofline_figure` (a Figure or FigureWidget) for another profile or level in
    place, inside `figure.batch_update()`: trace data by `trace.meta` key, axis ranges,
    title, axis title and the level buttons (if the figure has them). ValueError if the
    figure's traces are not those of roofline_figure for these ceilings."""
    ceilings = _memo(ceilings)
    _check_level(ceilings, level)
    _check_profile(profile, _roofline_columns(ceilings))
    ranges = axis_ranges(ceilings, [profile])
    specs = roofline_traces(profile, ceilings, level, label_top, ranges)
    keys = [trace.meta for trace in figure.data]
    if keys != list(specs):
        raise ValueError(f"figure traces {keys} are not those of roofline_figure for these ceilings "
                         f"({list(specs)}); build a new figure with roofline_figure")
    with figure.batch_update():
        for trace in figure.data:
            trace.update(specs[trace.meta])
        shown_title = title if title is not None else _default_title(profile, level)
        figure.update_layout(**_base_layout(ranges, level, shown_title))
        if figure.layout.updatemenus:
            figure.update_layout(updatemenus=_level_menu(profile, ceilings, level, label_top, ranges, keys, title))


# ---------------------------------------------------------------------------- time bars

def _bound_at(profile: pd.DataFrame, ceilings, level: str) -> np.ndarray:
    """"memory" / "compute" / "n/a" per row at `level`: AI < ridge point => memory bound."""
    threads = _profile_threads(profile)
    ridge = ceilings.ridge_point(level, threads)
    ai = profile[f"ai_{level}"].to_numpy(dtype=float)
    flops = pd.to_numeric(profile["flops"], errors="coerce").fillna(0).to_numpy()
    with np.errstate(invalid="ignore"):
        memory = np.isfinite(ai) & (ai < ridge)
    return np.where(flops <= 0, "n/a", np.where(memory, "memory", "compute"))


def _bar_labels(profile: pd.DataFrame) -> list[str]:
    """Short layer names, or the full ones if shortening makes two steps collide."""
    full = [str(n) for n in profile["layer"]]
    short = [short_name(n) for n in full]
    labels = short if len(set(short)) == len(short) else full
    if len(set(labels)) != len(labels):   # duplicate names: prefix the step position
        labels = [f"{i}: {n}" for i, n in enumerate(labels)]
    return labels


def time_bars(profile: pd.DataFrame, ceilings=None, level: str = "L2") -> go.Figure:
    """Horizontal bars of each step's time (ms), in execution order (top to bottom),
    coloured by what bounds it: one trace per class ("memory bound", "compute bound",
    "no FLOPs"), colours BOUND_COLORS.

    With `ceilings`, bound means at `level` (AI < ridge point => memory bound); without,
    the profile's own `bound` column (its tightest roof over all levels) is used.
    """
    ceilings = None if ceilings is None else _memo(ceilings)
    columns = ["layer", "op", "seconds", "share_of_time", "flops", "gflops"]
    if ceilings is None:
        columns.append("bound")
    else:
        _check_level(ceilings, level)
        columns += ["threads", f"ai_{level}"]
    _check_profile(profile, columns)
    frame = profile.sort_values("step", kind="stable") if "step" in profile.columns else profile
    if ceilings is None:
        bound = frame["bound"].astype(str).to_numpy()
        basis = "each step's tightest roof over all levels"
    else:
        bound = _bound_at(frame, ceilings, level)
        basis = f"at {level}: AI below the ridge point is memory bound"
    labels = _bar_labels(frame)
    figure = go.Figure()
    for kind, color in BOUND_COLORS.items():
        mask = bound == kind
        rows = frame[mask]
        hover = []
        for (_, r), label in zip(rows.iterrows(), np.asarray(labels, dtype=object)[mask]):
            text = (f"<b>{html.escape(str(r['layer']))}</b> ({html.escape(str(r['op']))})<br>"
                    f"time {float(r['seconds']) * 1e3:.3f} ms ({float(r['share_of_time']):.1%})<br>"
                    f"{float(r['gflops']):.3g} GFLOP/s<br>{BOUND_LABELS[kind]}")
            if ceilings is not None and kind != "n/a":
                text += f" at {level} (AI {_fmt(float(r[f'ai_{level}']), 'FLOP/byte')})"
            hover.append(text)
        figure.add_trace(go.Bar(
            name=BOUND_LABELS[kind], meta=f"bound:{kind}", orientation="h",
            y=list(np.asarray(labels, dtype=object)[mask]), x=(rows["seconds"].astype(float) * 1e3).tolist(),
            marker=dict(color=color), hoverinfo="text", hovertext=hover, showlegend=bool(mask.any())))
    figure.update_layout(
        title=dict(text=f"Time per step, coloured by bound ({basis})", x=0.0, xanchor="left"),
        barmode="overlay", plot_bgcolor="white", hovermode="closest",
        xaxis=dict(title=dict(text="time (ms)"), showgrid=True, gridcolor="#e5e5e5"),
        yaxis=dict(categoryorder="array", categoryarray=labels, autorange="reversed", automargin=True,
                   tickfont=dict(size=10)),
        height=max(400, 16 * len(frame) + 140), margin=dict(l=10, r=20, t=60, b=50),
        legend=dict(orientation="h", x=0.0, y=1.0, yanchor="bottom"))
    return figure


# ---------------------------------------------------------------------------- before / after

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


def _match_units(before: pd.DataFrame, after: pd.DataFrame, level: str):
    """Pair the steps of two profiles by the layers they compute.

    Steps are linked when they share a member layer (a step's members: its `members`
    column, else its own name), and each connected group becomes one point per side: a
    layer matches itself by name; a fused block in one profile matches the combined point
    of its member layers in the other. Returns (matched [(name, before_unit, after_unit)],
    unmatched_before [unit], unmatched_after [unit]), in `after`'s order.
    """
    sides = {"before": _plotted(before).reset_index(drop=True), "after": _plotted(after).reset_index(drop=True)}
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
            for member in _members(row):
                if member in owner:
                    parent[find(node)] = find(owner[member])
                else:
                    owner[member] = node
    groups: dict = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    order = {node: i for i, node in enumerate([("after", i) for i in sides["after"].index] +
                                                [("before", i) for i in sides["before"].index])}
    matched, unmatched_before, unmatched_after = [], [], []
    for nodes in sorted(groups.values(), key=lambda ns: min(order[n] for n in ns)):
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
    lines += [f"time {unit.seconds * 1e3:.3f} ms ({unit.share:.1%} of the run)",
              f"{unit.gflops:.3g} GFLOP/s", f"AI at {level}: {_fmt(unit.ai, 'FLOP/byte')}"]
    return "<br>".join(lines)


def _unit_trace(units: list[_Unit], label: str, level: str, hollow: bool) -> go.Scatter:
    colors = [OP_COLORS[_op_kind(u.op)] for u in units]
    return go.Scatter(
        meta=f"points:{label}", name=label, mode="markers", x=_or_none([u.ai for u in units]),
        y=_or_none([u.gflops for u in units]), hoverinfo="text",
        hovertext=[_unit_hover(u, label, level) for u in units],
        marker=dict(color="white" if hollow else colors, size=_marker_sizes([u.share for u in units]),
                    symbol="circle", opacity=0.9 if hollow else 0.85,
                    line=dict(color=colors, width=2.0) if hollow else dict(color="white", width=0.8)))


def compare_figure(before: pd.DataFrame, after: pd.DataFrame, ceilings, level: str = "L2",
                   labels: tuple[str, str] = ("before", "after"), title: str | None = None) -> go.Figure:
    """Two profiles (fusion off vs on, 1 vs 2 cores, ...) on one roofline at `level`, with
    an arrow (a layout annotation, log10 coordinates as plotly wants on log axes) from each
    matched layer's old point to its new one. Layers match by name; a fused block matches
    the combined point (summed FLOPs, bytes and seconds) of its member layers in the other
    profile. Markers: hollow for `before`, filled for `after`, colour by op kind, size by
    share of time; unmatched steps are drawn without an arrow. Roofs of both thread counts
    are drawn when they differ (the before ones dotted and faded); the shaded region is the
    after profile's.
    """
    ceilings = _memo(ceilings)
    _check_level(ceilings, level)
    if len(labels) != 2:
        raise ValueError(f"labels must be two strings (before, after), got {labels!r}")
    _check_profile(before, _roofline_columns(ceilings), "before")
    _check_profile(after, _roofline_columns(ceilings), "after")
    threads_before, threads_after = _profile_threads(before, "before"), _profile_threads(after, "after")
    ranges = axis_ranges(ceilings, [before, after])
    matched, only_before, only_after = _match_units(before, after, level)

    figure = go.Figure()
    figure.add_trace(go.Scatter(**_region_spec(ceilings, threads_after, level, ranges)))
    for key, spec in _roof_specs(ceilings, threads_after, level, ranges).items():
        figure.add_trace(go.Scatter(**{**spec, "meta": key}))
    if threads_before != threads_after:
        for key, spec in _roof_specs(ceilings, threads_before, level, ranges, key_suffix=":before",
                                     label_suffix=f" ({labels[0]})", faded=True, levels=[level]).items():
            figure.add_trace(go.Scatter(**{**spec, "meta": key}))
    figure.add_trace(_unit_trace([b for _, b, _ in matched] + only_before, labels[0], level, hollow=True))
    figure.add_trace(_unit_trace([a for _, _, a in matched] + only_after, labels[1], level, hollow=False))

    arrows = []
    for name, old, new in matched:
        ends = (old.ai, old.gflops, new.ai, new.gflops)
        if not all(math.isfinite(v) and v > 0 for v in ends):
            continue
        arrows.append(dict(
            name=name, x=math.log10(new.ai), y=math.log10(new.gflops), ax=math.log10(old.ai),
            ay=math.log10(old.gflops), xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True,
            arrowhead=2, arrowsize=1.0, arrowwidth=1.3, arrowcolor=OP_COLORS[_op_kind(new.op)], opacity=0.8,
            standoff=2, hovertext=(f"{html.escape(name)}: {old.gflops:.3g} → {new.gflops:.3g} GFLOP/s, "
                                   f"AI {_fmt(old.ai)} → {_fmt(new.ai)} FLOP/byte, "
                                   f"{old.seconds * 1e3:.3f} → {new.seconds * 1e3:.3f} ms")))
    if title is None:
        total_before, total_after = before["seconds"].sum() * 1e3, after["seconds"].sum() * 1e3
        title = (f"{labels[0]} → {labels[1]} at {level}: {total_before:.2f} ms → {total_after:.2f} ms of steps "
                 f"({len(arrows)} matched steps)")
    figure.update_layout(**_base_layout(ranges, level, title), annotations=arrows)
    return figure


# ---------------------------------------------------------------------------- HTML

def figure_html(figure: go.Figure) -> str:
    """A full, self-contained HTML page of `figure`: plotly.js is inlined from the installed
    plotly package (no CDN, no network needed to view it); MathJax is not included."""
    return figure.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False,
                          config={"displaylogo": False, "responsive": True})
