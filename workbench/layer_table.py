"""The table of layers every view shows (the Explorer, the report): one row per step,
numbers at one memory level, and the same numbers formatted for reading.

`layer_table` holds numbers (to sort and filter on); `formatted` turns them into text by
workbench.tables' rule (ms with 3 significant digits, shares and roof fractions in %),
shapes in NCHW; a roof fraction above 100 % carries its note (workbench.roof_notes).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.activations import ACTIVATION_COLUMN, activation_of
from workbench.figure_parts import shape_text, short_name
from workbench.profile import bound_at
from workbench.roof_notes import above_roof_note
from workbench.tables import format_number, significant


def layer_table(frame: pd.DataFrame, ceilings, level: str) -> pd.DataFrame:
    """One row per step of a profile, in execution order: step, layer (full name), name
    (short), op, input, output (NCHW text), ms (median), ms_p10, ms_p90 (over the repeats,
    NaN when not measured), share (of the run's time, 0..1), gflops (GFLOP/s), ai (FLOP/byte
    at `level`), gbs (modelled bytes at `level` / time, GB/s), roof (measured / attainable
    at `level`, min(peak, AI x bandwidth)), bound ("memory", "compute", "n/a" at `level`),
    note (why a roof fraction is above 1, else ""), activation (workbench.activations: "relu6",
    "hardswish", ...; "" when the profile has no activation column)."""
    threads = int(frame["threads"].iloc[0])
    peak, bandwidth = ceilings.peak_gflops(threads), ceilings.bandwidth_gbs(level, threads)
    rows = frame.sort_values("step", kind="stable") if "step" in frame.columns else frame
    seconds = rows["seconds"].to_numpy(dtype=float)
    ai = rows[f"ai_{level}"].to_numpy(dtype=float)
    gflops = rows["gflops"].to_numpy(dtype=float)
    flops = pd.to_numeric(rows["flops"], errors="coerce").fillna(0).to_numpy()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        attainable = np.minimum(peak, ai * bandwidth)
        roof = np.where(flops > 0, gflops / attainable, np.nan)
        gbs = rows[f"bytes_{level}"].to_numpy(dtype=float) / seconds / 1e9
    ops = rows["op"].astype(str).to_numpy()
    table = pd.DataFrame({
        "step": rows["step"].to_numpy() if "step" in rows.columns else np.arange(len(rows)),
        "layer": rows["layer"].astype(str).to_numpy(),
        "name": [short_name(n) for n in rows["layer"]],
        "op": ops,
        "input": [shape_text(s) for s in rows["input_shape"]],
        "output": [shape_text(s) for s in rows["output_shape"]],
        "ms": seconds * 1e3,
        "ms_p10": _column(rows, "seconds_p10") * 1e3,
        "ms_p90": _column(rows, "seconds_p90") * 1e3,
        "share": rows["share_of_time"].to_numpy(dtype=float),
        "gflops": np.where(flops > 0, gflops, np.nan),
        "ai": np.where(flops > 0, ai, np.nan),
        "gbs": gbs,
        "roof": roof,
        "bound": bound_at(rows, ceilings, level),
    })
    table["note"] = [above_roof_note(r, op) for r, op in zip(roof, ops)]
    table["activation"] = [activation_of(row) for _, row in rows.iterrows()] if ACTIVATION_COLUMN in rows.columns \
        else [""] * len(rows)
    return table.reset_index(drop=True)


def op_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per op of a layer_table (every op, also those without FLOPs: maxpool, activation,
    pool, layout): op, steps, ms (summed medians), share (of the run's time, 0..1),
    memory_bound (steps memory bound at the table's level); slowest op first."""
    grouped = table.groupby("op", sort=False)
    summary = pd.DataFrame({"steps": grouped.size(), "ms": grouped["ms"].sum(), "share": grouped["share"].sum(),
                            "memory_bound": grouped["bound"].agg(lambda b: int((b == "memory").sum()))})
    return summary.sort_values("ms", ascending=False, kind="stable").reset_index()


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    return rows[name].to_numpy(dtype=float) if name in rows.columns else np.full(len(rows), np.nan)


def formatted(table: pd.DataFrame, level: str) -> pd.DataFrame:
    """`layer_table`'s rows as text columns a person reads: layer (short name), op, input,
    output, ms (3 significant digits), % time, GFLOP/s, AI at <level>, GB/s at <level>,
    % of roof at <level> (with "above roof*" past 100 %), bound at <level>; after op, the
    activation when any step has one named (workbench.activations)."""
    activation = table["activation"] if "activation" in table.columns else pd.Series([""] * len(table))
    extra = {"activation": activation.to_numpy()} if (activation != "").any() else {}
    return pd.DataFrame({
        "layer": table["name"],
        "op": table["op"],
        **extra,
        "input": table["input"],
        "output": table["output"],
        "ms": [significant(v) for v in table["ms"]],
        "% time": [format_number(v, "%") for v in table["share"]],
        "GFLOP/s": [significant(v) for v in table["gflops"]],
        f"AI at {level}": [significant(v) for v in table["ai"]],
        f"GB/s at {level}": [significant(v) for v in table["gbs"]],
        f"% of roof at {level}": [format_number(v, "%") + (" (above roof*)" if note else "") if pd.notna(v) else ""
                                 for v, note in zip(table["roof"], table["note"])],
        f"bound at {level}": table["bound"].replace({"n/a": "no FLOPs"}),
    })
