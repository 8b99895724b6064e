"""Headless reports: one self-contained HTML page (plotly.js inline, works offline) plus
the per-layer records as CSV and Parquet, and the roofline as a 1600 px PNG and an SVG.

The page says one thing one way: its header counts the steps memory bound at the chosen
level (profile.bound_at, the rule the time bars colour by), and at every other level (what
the bars' level buttons show); its table is workbench.layer_table's, sortable (click a
header) and filterable (the box above it), and a table of the time by op kind
(layer_table.op_summary) follows it. A profile with simulated bytes (workbench.profile(...,
bytes="both" or "simulated")) adds the model against the cache simulation: the scatter
(workbench.bytes_check_figure, one point per step and level) and the table per kernel
family and level; a profile placed by the simulated bytes has its roofline say so.
"""
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
from engine.traffic import LEVELS
from workbench.before_after import before_after_figure
from workbench.bytes_check_figure import bytes_check_figure, bytes_check_table
from workbench.export import export_figure, image_export_unavailable
from workbench.figure_parts import OP_COLORS, OP_SYMBOLS, op_kind
from workbench.layer_table import formatted, layer_table, op_summary
from workbench.profile import (bound_at, check_ceilings, check_level, check_profile, default_ceilings, describe_fusion,
                               save_frame)
from workbench.roof_notes import above_roof_note
from workbench.roofline import roofline_figure
from workbench.spread import noise_warning
from workbench.tables import format_number, significant
from workbench.time_bars import time_bars

logger = logging.getLogger(__name__)

# What the report reads from a profile.
REQUIRED_COLUMNS = ["layer", "op", "seconds", "flops", "batch", "threads", "bound"]

# Sorting (click a header; numbers by their data-value) and filtering (rows containing the
# box's text) of the layers table, without any library.
TABLE_SCRIPT = """<script>
(function () {
  var table = document.getElementById("layers"), box = document.getElementById("layers-filter");
  box.addEventListener("input", function () {
    var text = box.value.toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      row.style.display = row.textContent.toLowerCase().indexOf(text) >= 0 ? "" : "none";
    });
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell, column) {
    cell.style.cursor = "pointer";
    cell.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = cell.getAttribute("data-order") !== "down";
      cell.setAttribute("data-order", down ? "down" : "up");
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute("data-value"), y = b.cells[column].getAttribute("data-value");
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return down ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
})();
</script>"""


# The roofline's level buttons also recolour the time bars (their own button of that level).
LINK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var roof = document.getElementById("roofline"), bars = document.getElementById("time-bars");
  if (!roof || !bars || !roof.on) return;
  roof.on("plotly_buttonclicked", function (event) {
    var level = event.button.label.replace("AI at ", "");
    var menu = bars.layout.updatemenus && bars.layout.updatemenus[0];
    if (!menu) return;
    var index = menu.buttons.findIndex(function (b) { return b.label === "bound at " + level; });
    if (index < 0) return;
    var args = menu.buttons[index].args;
    Plotly.update(bars, args[0], Object.assign({}, args[1], {"updatemenus[0].active": index}), args[2]);
  });
});
</script>"""


def memory_bound_counts(frame: pd.DataFrame, ceilings) -> dict[str, int]:
    """{level: steps memory bound there (profile.bound_at)} for every level of the ceilings."""
    return {level: int((bound_at(frame, ceilings, level) == "memory").sum()) for level in ceilings.levels}


def _table_html(frame: pd.DataFrame, ceilings, level: str) -> str:
    """The layers table: formatted cells, each with its number (or text) to sort by."""
    table = layer_table(frame, ceilings, level)
    shown = formatted(table, level)
    keys = {"ms": table["ms"], "% time": table["share"], "GFLOP/s": table["gflops"], f"AI at {level}": table["ai"],
            f"GB/s at {level}": table["gbs"], f"% of roof at {level}": table["roof"]}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    body = []
    for index, row in shown.iterrows():
        cells = []
        for column, text in row.items():
            value = keys[column].iloc[index] if column in keys else text
            value = "" if isinstance(value, float) and value != value else value
            title = f' title="{html.escape(table["note"].iloc[index])}"' if column.startswith("% of roof") and \
                table["note"].iloc[index] else ""
            cells.append(f'<td data-value="{html.escape(str(value))}"{title}>{html.escape(str(text))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = sorted(set(n for n in table["note"] if n))
    footnote = "".join(f"<p class='note'>* {html.escape(n)}</p>" for n in notes)
    return (f'<p><input id="layers-filter" placeholder="filter rows (e.g. depthwise, memory)" size="40"> '
            f'click a column header to sort</p>'
            f'<table id="layers" class="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"{footnote}{TABLE_SCRIPT}")


def _ops_html(frame: pd.DataFrame, ceilings, level: str) -> str:
    """Time by op kind (layer_table.op_summary), each op with its colour and marker symbol."""
    rows = []
    for _, row in op_summary(layer_table(frame, ceilings, level)).iterrows():
        kind = op_kind(row["op"])
        rows.append(f'<tr><td style="text-align:left"><span style="color:{OP_COLORS[kind]}">&#9632;</span> '
                    f'{html.escape(str(row["op"]))}</td><td>{html.escape(OP_SYMBOLS[kind])}</td>'
                    f'<td>{int(row["steps"])}</td><td>{significant(row["ms"])}</td>'
                    f'<td>{format_number(row["share"], "%")}</td><td>{int(row["memory_bound"])}</td></tr>')
    head = "".join(f"<th>{name}</th>" for name in ("op", "marker", "steps", "ms", "% time",
                                                    f"memory bound at {html.escape(level)}"))
    return f'<table id="ops" class="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


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
    """Write report.html, layers.csv and layers.parquet into `out`, and roofline.png (1600
    px wide) and roofline.svg, without the level buttons (workbench.export.for_image), when
    kaleido and a Chromium are available (images=True); returns the paths.

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
        temporary.write_text(_page(frame, ceilings, figures, model_name, level), encoding="utf-8")
    paths = [html_path, save_frame(frame, out / "layers.csv"), save_frame(frame, out / "layers.parquet")]
    if images:
        reason = image_export_unavailable()
        if reason:
            logger.warning("roofline images not written: %s", reason)
        else:
            paths += [export_figure(figures[0], out / f"roofline.{kind}") for kind in ("png", "svg")]
    return paths


def has_simulated_bytes(frame: pd.DataFrame) -> bool:
    """The profile carries a cache simulation's bytes (bytes_sim_<level> columns)."""
    return all(f"bytes_sim_{level}" in frame.columns for level in LEVELS)


def placed_by_simulation(frame: pd.DataFrame) -> bool:
    """The profile's points stand on the simulated bytes (the model's kept as bytes_model_<level>)."""
    return has_simulated_bytes(frame) and all(f"bytes_model_{level}" in frame.columns for level in LEVELS)


def _figures(frame: pd.DataFrame, ceilings, before: pd.DataFrame | None, level: str) -> list:
    """The report's figures: the roofline, the before/after view when there is a `before`,
    the model-vs-simulated scatter when the profile has simulated bytes, the time bars."""
    roofline = roofline_figure(frame, ceilings, level=level,
                               bytes="simulated" if placed_by_simulation(frame) else "model")
    figures = [roofline, time_bars(frame, ceilings, level=level)]
    if has_simulated_bytes(frame):
        figures.insert(1, bytes_check_figure(frame))
    if before is not None:
        labels = (describe_fusion(before), describe_fusion(frame))
        if None in labels or labels[0] == labels[1]:
            labels = ("before", "after")
        figures.insert(1, before_after_figure(before, frame, ceilings, level=level, labels=labels))
    return figures


def summary_line(frame: pd.DataFrame, ceilings, level: str, model_name: str = "model") -> str:
    """The report's header sentence (plain text): the configuration, the time and GFLOP/s,
    and how many steps are memory bound at `level` (what the time bars show) and at each
    other level."""
    total = float(frame["seconds"].sum())
    fusion = describe_fusion(frame)
    counts = memory_bound_counts(frame, ceilings)
    with_flops = int((pd.to_numeric(frame["flops"]) > 0).sum())
    others = ", ".join(f"{lv}: {n}" for lv, n in counts.items() if lv != level)
    return (f"{model_name}: batch {int(frame['batch'].iloc[0])}, {int(frame['threads'].iloc[0])} thread(s)"
            f"{f', {fusion}' if fusion else ''}, {total * 1e3:.3g} ms per run (sum of step medians), "
            f"{frame['flops'].sum() / total / 1e9:.3g} GFLOP/s overall; "
            f"{counts[level]} of {with_flops} steps memory bound at {level} (AI below its ridge point; "
            f"at {others}).")


def _bytes_check_html(frame: pd.DataFrame) -> str:
    """The model against the cache simulation per kernel family and level, with what the
    points stand on; "" for a profile without simulated bytes."""
    if not has_simulated_bytes(frame):
        return ""
    placed = ("The points above stand on the <b>simulated</b> bytes (the model's are kept as "
              "bytes_model_&lt;level&gt; in the records)." if placed_by_simulation(frame) else
              "The points above stand on the <b>modelled</b> bytes; the simulated ones are in the records "
              "(bytes_sim_&lt;level&gt;, ai_sim_&lt;level&gt;).")
    return (f'<h2 id="bytes-check">Bytes: model against a cache simulation</h2>'
            f"<p>Each step's access trace, generated from the kernel's own loops (engine.trace), run through an "
            f"LRU cache hierarchy set up from this machine (pycachesim); model / simulated per kernel family and "
            f"level, steps moving under 64 KiB at a level left out. {placed}</p>"
            f"{bytes_check_table(frame).to_html()}")


def _page(frame: pd.DataFrame, ceilings, figures: list, model_name: str, level: str) -> str:
    """The report's HTML: a summary line, a noise warning when the repeats spread widely,
    the figures (plotly.js inlined once, with the first, each as wide as the page; the
    roofline's level buttons recolour the time bars too) and the table of layers."""
    parts = []
    for index, figure in enumerate(figures):
        div_id = {0: "roofline", len(figures) - 1: "time-bars"}.get(index)
        parts.append(pio.to_html(figure, full_html=False, include_plotlyjs="inline" if index == 0 else False,
                                 config={"responsive": True, "displaylogo": False}, default_width="100%",
                                 div_id=div_id))
    warning = noise_warning(frame)
    warning_html = f'<p class="warning">{html.escape(warning)}</p>' if warning else ""
    above = int(sum(bool(above_roof_note(r, op)) for r, op in zip(frame.get("roof_fraction", []), frame["op"])))
    above_html = (f"<p>{above} step(s) measured above their tightest roof: the bytes model undercounts "
                  f"them (see the * notes under the table).</p>" if above else "")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Roofline report: {html.escape(model_name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table.layers{{border-collapse:collapse;font-size:12px}}
table.layers td,table.layers th{{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}}
p.warning{{color:#8a5a00;font-weight:bold}} p.note{{font-size:12px;color:#555}}</style>
</head><body>
<h1>Roofline report: {html.escape(model_name)}</h1>
<p id="summary">{html.escape(summary_line(frame, ceilings, level, model_name))}</p>
{warning_html}{above_html}
<p>Time is measured (median over runs; error bars p10-p90); FLOPs are counted exactly (2 per
multiply-accumulate); bytes moved are modelled per memory level (see engine/traffic.py). Roofs
are this machine's measured ceilings ({html.escape(str(ceilings.machine.get('cpu_model', '')))}).
Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}.</p>
{''.join(parts)}
{LINK_SCRIPT}
<h2>Layers at {html.escape(level)}</h2>
{_table_html(frame, ceilings, level)}
<h2>Time by op at {html.escape(level)}</h2>
{_ops_html(frame, ceilings, level)}
{_bytes_check_html(frame)}
</body></html>"""
