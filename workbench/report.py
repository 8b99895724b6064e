"""Headless reports: one self-contained HTML page (plotly.js inline, works offline) plus
the per-layer records as CSV and Parquet."""
from __future__ import annotations

import html
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import plotly.io as pio

from engine.checks import check_bool
from workbench.atomic import atomic_path
from workbench.before_after import before_after_figure
from workbench.export import export_figure, image_export_unavailable
from workbench.profile import check_ceilings, check_level, check_profile, default_ceilings, describe_fusion, save_frame
from workbench.roofline import roofline_figure
from workbench.time_bars import time_bars

logger = logging.getLogger(__name__)

# What the report reads from a profile (besides the table's columns, shown when present).
REQUIRED_COLUMNS = ["layer", "op", "seconds", "flops", "batch", "threads", "bound"]
TABLE_COLUMNS = ["layer", "op", "seconds", "share_of_time", "flops", "gflops", "ai_L1", "ai_L2", "ai_L3",
                 "ai_DRAM", "attainable_gflops", "roof_fraction", "bound", "bound_level"]


def _table_html(frame: pd.DataFrame) -> str:
    shown = frame[[c for c in TABLE_COLUMNS if c in frame.columns]].copy()
    shown["seconds"] = (shown["seconds"] * 1e3).round(3)
    shown = shown.rename(columns={"seconds": "ms"})
    return shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", classes="layers", border=0)


def _check_report_arguments(frame, out, model_name, ceilings, before, level, images) -> None:
    for name, value in (("frame", frame), ("before", before)):
        if value is not None or name == "frame":
            check_profile(value, REQUIRED_COLUMNS, name)
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"out must be a folder path, got {type(out).__name__}")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out must be a folder, got an existing file: {str(out)!r}")
    if not isinstance(model_name, str):
        raise ValueError(f"model_name must be a str, got {type(model_name).__name__}")
    check_bool("images", images)
    if check_ceilings(ceilings) is not None:
        check_level(ceilings, level)
    elif not isinstance(level, str):
        raise ValueError(f"level must be a memory level name such as 'L2', got {level!r}")


def write_report(frame: pd.DataFrame, out: Path, model_name: str = "model", ceilings=None,
                 before: pd.DataFrame | None = None, level: str = "L2", images: bool = True) -> list[Path]:
    """Write report.html, layers.csv and layers.parquet into `out`, and roofline.png and
    roofline.svg when kaleido and a Chromium are available (images=True); returns the paths.

    frame: a workbench.profile DataFrame. out: a folder (created if missing; an existing
    file there is refused). before: optionally a second profile shown as a before/after view
    (e.g. fuse_blocks=False before a profile with True or "auto": layers match by name and
    a fused block matches the combined point of its members); when the two ran their blocks
    differently, the view is labelled with each one's setting ("blocks unfused", "all
    blocks fused", "auto fusion (n blocks fused)"), else "before" and "after". The summary
    line says how `frame` ran its blocks. level: a memory level of the ceilings. Files are written
    atomically. Bad arguments raise ValueError before anything is written or measured.
    """
    _check_report_arguments(frame, out, model_name, ceilings, before, level, images)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ceilings is None:
        ceilings = default_ceilings()
        check_level(ceilings, level)
    figures = _figures(frame, ceilings, before, level)
    html_path = out / "report.html"
    with atomic_path(html_path) as temporary:
        temporary.write_text(_page(frame, ceilings, figures, model_name), encoding="utf-8")
    paths = [html_path, save_frame(frame, out / "layers.csv"), save_frame(frame, out / "layers.parquet")]
    if images:
        reason = image_export_unavailable()
        if reason:
            logger.warning("roofline images not written: %s", reason)
        else:
            paths += [export_figure(figures[0], out / f"roofline.{kind}") for kind in ("png", "svg")]
    return paths


def _figures(frame: pd.DataFrame, ceilings, before: pd.DataFrame | None, level: str) -> list:
    """The report's figures: the roofline, the before/after view when there is a `before`,
    the time bars."""
    figures = [roofline_figure(frame, ceilings, level=level), time_bars(frame, ceilings, level=level)]
    if before is not None:
        labels = (describe_fusion(before), describe_fusion(frame))
        if None in labels or labels[0] == labels[1]:
            labels = ("before", "after")
        figures.insert(1, before_after_figure(before, frame, ceilings, level=level, labels=labels))
    return figures


def _page(frame: pd.DataFrame, ceilings, figures: list, model_name: str) -> str:
    """The report's HTML: a summary line, the figures (plotly.js inlined once, with the
    first) and the table of layers."""
    parts = []
    for index, figure in enumerate(figures):
        parts.append(pio.to_html(figure, full_html=False, include_plotlyjs="inline" if index == 0 else False))
    total = frame["seconds"].sum()
    fusion = describe_fusion(frame)
    summary = (f"{html.escape(model_name)}: batch {int(frame['batch'].iloc[0])}, "
               f"{int(frame['threads'].iloc[0])} thread(s){f', {fusion}' if fusion else ''}, "
               f"{total * 1e3:.2f} ms per run "
               f"(sum of step medians), {frame['flops'].sum() / total / 1e9:.1f} GFLOP/s overall; "
               f"{(frame['bound'] == 'memory').sum()} of {(frame['bound'] != 'n/a').sum()} layers memory bound.")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Roofline report: {html.escape(model_name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.layers{{border-collapse:collapse;font-size:12px}}
table.layers td,table.layers th{{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body>
<h1>Roofline report: {html.escape(model_name)}</h1>
<p>{summary}</p>
<p>Time is measured (median over runs); FLOPs are counted exactly (2 per multiply-accumulate);
bytes moved are modelled per memory level (see engine/traffic.py). Roofs are this machine's
measured ceilings ({html.escape(str(ceilings.machine.get('cpu_model', '')))}).
Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p>
{''.join(parts)}
<h2>Layers</h2>
{_table_html(frame)}
</body></html>"""
