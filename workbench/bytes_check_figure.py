"""Model against simulation, drawn: one point per step and memory level, the simulated bytes
(engine.trace's cache simulation) across, the modelled bytes (engine.traffic) up, on log
axes; the diagonal is agreement and the dashed lines 25 % either way. Beside it the table
per kernel family and level (workbench.simulated_bytes.agreement_table), and a profile's
view with its points placed by the simulated bytes (`placed_by_simulated_bytes`), which
the roofline draws like any profile.

    frame = simulated_frame(model, batch=1)        # or a profile with bytes_sim_<level> columns
    bytes_check_figure(frame).show()
    bytes_check_table(frame)                       # a formatted table (workbench.tables)
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.traffic import LEVELS
from workbench.figure_parts import short_name
from workbench.simulated_bytes import agreement_table, model_vs_simulated
from workbench.tables import format_table

LEVEL_COLORS = {"L1": "#4c78a8", "L2": "#f58518", "L3": "#54a24b", "DRAM": "#e45756"}
AGREEMENT_BAND = 1.25       # the dashed lines: model 25 % above or below the simulation


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for level in LEVELS for c in (f"bytes_{level}", f"bytes_sim_{level}") if c not in frame.columns]
    if missing or "layer" not in frame.columns or "op" not in frame.columns:
        raise ValueError(f"needs layer, op, bytes_<level> and bytes_sim_<level> columns (a simulated profile: "
                         f"workbench.profile(..., bytes='both')); missing {missing or ['layer', 'op']}")


def bytes_check_figure(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """The model-vs-simulated scatter of `frame` (workbench.simulated_bytes.simulated_frame,
    or a profile with bytes_sim_<level> columns). One trace per level (the legend hides a
    level); a point with 0 bytes on either side cannot sit on a log axis and is counted in
    the subtitle instead. ValueError for a frame without the columns or without any point."""
    _check_columns(frame)
    pairs = model_vs_simulated(frame)
    plotted = pairs[(pairs["model_bytes"] > 0) & (pairs["simulated_bytes"] > 0)]
    if plotted.empty:
        raise ValueError("no step has bytes on both sides at any level: nothing to draw")
    figure = go.Figure()
    for level in LEVELS:
        points = plotted[plotted["level"] == level]
        if points.empty:
            continue
        hover = [f"<b>{short_name(row.layer)}</b> ({row.op})<br>{level}: model {row.model_bytes / 1e6:.3g} MB, "
                 f"simulated {row.simulated_bytes / 1e6:.3g} MB<br>model / simulated ×{row.ratio:.3g}"
                 for row in points.itertuples()]
        figure.add_trace(go.Scatter(x=points["simulated_bytes"], y=points["model_bytes"], mode="markers",
                                    name=level, meta=f"level:{level}", hovertext=hover, hoverinfo="text",
                                    marker=dict(color=LEVEL_COLORS[level], size=8, opacity=0.8,
                                                line=dict(width=0.5, color="white"))))
    low = float(min(plotted["model_bytes"].min(), plotted["simulated_bytes"].min())) / 2
    high = float(max(plotted["model_bytes"].max(), plotted["simulated_bytes"].max())) * 2
    for key, factor, dash, label in (("agreement", 1.0, "solid", "model = simulated"),
                                     ("over", AGREEMENT_BAND, "dash", "±25 %"),
                                     ("under", 1 / AGREEMENT_BAND, "dash", None)):
        figure.add_trace(go.Scatter(x=[low, high], y=[low * factor, high * factor], mode="lines", meta=key,
                                    name=label or "", showlegend=label is not None, hoverinfo="skip",
                                    line=dict(color="#555" if factor == 1 else "#aaa", dash=dash, width=1)))
    hidden = int(((pairs["model_bytes"] > 0) != (pairs["simulated_bytes"] > 0)).sum())   # 0 on one side only
    subtitle = (f"{len(plotted)} points (steps x levels)"
                + (f"; {hidden} with 0 bytes on one side not shown" if hidden else ""))
    batch, threads = frame.attrs.get("batch"), frame.attrs.get("threads")
    if batch is None and "batch" in frame.columns:
        batch, threads = int(frame["batch"].iloc[0]), int(frame["threads"].iloc[0])
    config = f", batch {batch}, {threads} thread(s)" if batch is not None else ""
    figure.update_layout(
        title=dict(text=(title or f"Bytes moved: model against cache simulation{config}")
                   + f"<br><sup>{subtitle}; above the diagonal the model counts more</sup>"),
        xaxis=dict(type="log", title="simulated bytes (pycachesim, the kernels' own access traces)",
                   range=[math.log10(low), math.log10(high)]),
        yaxis=dict(type="log", title="modelled bytes (engine.traffic)", range=[math.log10(low), math.log10(high)]),
        legend=dict(title="level"), template="plotly_white", height=620, width=760)
    return figure


def bytes_check_table(frame: pd.DataFrame):
    """Per kernel family and level: steps, median and worst model/simulated ratio, the worst
    step, and the share of steps off by more than 25 % (workbench.tables' formatting)."""
    _check_columns(frame)
    table = agreement_table(frame).copy()
    table["worst_step"] = table["worst_step"].map(lambda name: short_name(name) if name else "")
    return format_table(table, units={"steps": "count", "median_ratio": "×", "worst_ratio": "×",
                                      "off_by_25pct": "%"},
                        names={"median_ratio": "median model/simulated", "worst_ratio": "worst",
                               "worst_step": "worst step", "off_by_25pct": "steps off by > 25 %"})


def placed_by_simulated_bytes(profile: pd.DataFrame, ceilings) -> pd.DataFrame:
    """`profile` (with bytes_sim_<level> columns) with its bytes_<level>, ai_<level>,
    attainable_gflops, roof_fraction, bound_level and bound taken from the simulated bytes,
    so a roofline of it places every point by the simulation (the model's are kept as
    bytes_model_<level>). A step the simulation did not trace keeps the model's bytes."""
    from workbench.profile import place_by_bytes             # here: profile imports this module's neighbours

    if profile.attrs.get("bytes") == "simulated" and "bytes_model_L1" in profile.columns:
        return profile.copy()                               # placed already (profile(..., bytes="simulated"))
    missing = [f"bytes_sim_{level}" for level in LEVELS if f"bytes_sim_{level}" not in profile.columns]
    if missing:
        raise ValueError(f"no simulated bytes in this profile (missing {missing}): profile it with "
                         "bytes='simulated' or 'both'")
    out = profile.copy()
    moved = {}
    for level in LEVELS:
        out[f"bytes_model_{level}"] = profile[f"bytes_{level}"]
        simulated = profile[f"bytes_sim_{level}"].to_numpy(dtype=float)
        moved[level] = np.where(np.isnan(simulated), profile[f"bytes_{level}"].to_numpy(dtype=float), simulated)
    place_by_bytes(out, moved, ceilings)
    out.attrs.update(profile.attrs)
    out.attrs["bytes"] = "simulated"
    return out


def roofline_by_bytes(profile: pd.DataFrame, ceilings, level: str = "L2", bytes: str = "simulated", **options):
    """workbench.roofline_figure of `profile` with its points placed by the modelled
    (bytes="model") or the simulated bytes (bytes="simulated": the profile needs
    bytes_sim_<level> columns; `placed_by_simulated_bytes`). options: roofline_figure's."""
    from workbench.roofline import roofline_figure
    from workbench.simulated_bytes import check_bytes_choice

    if check_bytes_choice(bytes) == "both":
        raise ValueError("a roofline places each point once: bytes must be 'model' or 'simulated'")
    return roofline_figure(profile, ceilings, level=level, bytes=bytes, **options)


def _simulated_axis_titles(figure: go.Figure) -> go.Figure:
    """Say "simulated bytes" where roofline's axis titles say "modelled bytes" (the axis and
    the level buttons' relayouts)."""
    title = figure.layout.xaxis.title.text or ""
    figure.update_layout(xaxis_title_text=title.replace("modelled bytes", "simulated bytes"))
    menus = figure.to_plotly_json()["layout"].get("updatemenus")
    if menus:
        text = json.dumps(menus).replace("modelled bytes", "simulated bytes")
        figure.update_layout(updatemenus=json.loads(text))
    return figure


def roofline_bytes_toggle(profile: pd.DataFrame, ceilings, level: str = "L2", title: str | None = None) -> go.Figure:
    """A roofline of `profile` (with bytes_sim_<level> columns) at `level` with two buttons:
    points placed by the modelled bytes or by the simulated ones (the markers' x, colour by
    bound and hover switch; the roofs stay). The axes fit both placings."""
    from workbench.roofline import axis_ranges, base_layout, default_title, roofline_traces

    placed = placed_by_simulated_bytes(profile, ceilings)
    model_view = profile
    if profile.attrs.get("bytes") == "simulated":              # placed already: the model's view back
        from workbench.profile import place_by_bytes             # here: profile imports this module's neighbours
        model_view = place_by_bytes(profile.copy(), {lv: profile[f"bytes_model_{lv}"].to_numpy(dtype=float)
                                                     for lv in LEVELS}, ceilings)
    ranges = axis_ranges(ceilings, [model_view, placed], level)
    views = {"model": roofline_traces(model_view, ceilings, level, ranges=ranges),
             "simulated": roofline_traces(placed, ceilings, level, ranges=ranges)}
    keys = list(views["model"])
    figure = go.Figure([go.Scatter(**spec) for spec in views["model"].values()])
    shown = title if title is not None else default_title(model_view, level)
    figure.update_layout(**base_layout(ranges, level, shown))
    points = [i for i, key in enumerate(keys) if key.startswith("ops:")]
    buttons = []
    for name, label in (("model", "modelled bytes"), ("simulated", "simulated bytes")):
        specs = views[name]
        data = {"x": [specs[keys[i]]["x"] for i in points],
                "hovertext": [specs[keys[i]]["hovertext"] for i in points],
                "marker.color": [specs[keys[i]]["marker"]["color"] for i in points]}
        axis = f"arithmetic intensity at {level} (FLOP/byte, {label})"
        buttons.append(dict(label=f"points by {label}", method="update",
                            args=[data, {"xaxis.title.text": axis}, points]))
    figure.update_layout(updatemenus=[dict(type="buttons", direction="right", buttons=buttons, showactive=True,
                                           active=0, x=1.0, xanchor="right", y=1.12, yanchor="bottom")])
    return figure
