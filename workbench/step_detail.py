"""The Explorer's detail panel: everything about one step, as HTML.

What the hover says (workbench.roofline.hover_text), the tiles its kernel reads, its bytes
moved at each memory level as a small bar chart (modelled bytes, MB), and where it sits
at every level: AI, the level's roof there, its % of that roof (with the note when above
100 %) and whether it is memory or compute bound there.
"""
from __future__ import annotations

import html
import math

import pandas as pd

from workbench.figure_parts import BOUND_COLORS
from workbench.profile import bound_at
from workbench.roof_notes import above_roof_note, format_roof_fraction
from workbench.roofline import hover_text
from workbench.tables import significant

BAR_WIDTH = 220                 # px of the longest bytes bar


def _bytes_chart(row: dict, levels) -> str:
    """Horizontal bars of the step's modelled bytes at each level (MB), longest BAR_WIDTH px."""
    moved = {lv: float(row.get(f"bytes_{lv}", float("nan"))) for lv in levels}
    largest = max((v for v in moved.values() if math.isfinite(v)), default=0.0)
    lines = []
    for level, value in moved.items():
        width = int(BAR_WIDTH * value / largest) if largest > 0 and math.isfinite(value) else 0
        text = f"{significant(value / 1e6)} MB" if math.isfinite(value) else "not modelled"
        lines.append(f'<tr><td>{html.escape(level)}</td><td><div class="bytes-bar" style="width:{width}px;height:10px;'
                     f'background:#1f6f9f"></div></td><td>{text}</td></tr>')
    return "<table class='step-bytes'>" + "".join(lines) + "</table>"


def _levels_table(frame_row: pd.DataFrame, ceilings, threads: int) -> str:
    """AI, roof, % of roof and bound at every level, one row per level."""
    row = frame_row.iloc[0]
    peak = ceilings.peak_gflops(threads)
    lines = ["<tr><th>level</th><th>AI (FLOP/byte)</th><th>roof (GFLOP/s)</th><th>% of roof</th><th>bound</th></tr>"]
    for level in ceilings.levels:
        ai = float(row[f"ai_{level}"])
        roof = min(peak, ai * ceilings.bandwidth_gbs(level, threads)) if math.isfinite(ai) else peak
        fraction = float(row["gflops"]) / roof if roof > 0 else float("nan")
        bound = str(bound_at(frame_row, ceilings, level)[0])
        note = above_roof_note(fraction, str(row["op"]))
        lines.append(f"<tr><td>{html.escape(level)}</td><td>{significant(ai)}</td><td>{significant(roof)}</td>"
                     f"<td title='{html.escape(note)}'>{html.escape(format_roof_fraction(fraction, short=True))}</td>"
                     f"<td style='color:{BOUND_COLORS[bound]}'>{html.escape(bound)}</td></tr>")
    return "<table class='step-levels'>" + "".join(lines) + "</table>"


def step_detail_html(frame: pd.DataFrame, name: str, ceilings, level: str, tile_fields=()) -> str:
    """The detail panel of step `name` of profile `frame` at `level` (HTML); tile_fields: the
    Tiles fields its kernel reads (shown with the values the step ran with). "" when the
    profile has no such step."""
    rows = frame[frame["layer"] == name]
    if not len(rows):
        return ""
    row = rows.iloc[0].to_dict()
    threads = int(row["threads"])
    tiles = ", ".join(f"{field.replace('_', ' ')} {int(row[field])}" for field in tile_fields if field in row)
    return (f"<div class='step-detail' style='font-size:12px'>"
            f"<div>{hover_text(row, level, threads, ceilings)}</div>"
            f"<div><b>tiles</b>: {html.escape(tiles) if tiles else 'its kernel takes none'}</div>"
            f"<div><b>bytes moved</b> (modelled, whole batch)</div>{_bytes_chart(row, ceilings.levels)}"
            f"<div><b>at every level</b></div>{_levels_table(rows.head(1), ceilings, threads)}</div>")
