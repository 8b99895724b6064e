"""Tables as a person reads them: numbers formatted by their unit, the unit in the header.

    from workbench.tables import format_table
    format_table(frame[["layer", "seconds", "share_of_time", "gflops"]],
                 {"seconds": "s→ms", "share_of_time": "%", "gflops": "GFLOP/s"})

One rule for every table the notebooks and the CLI show: times in milliseconds and
quantities with a unit (GFLOP/s, GB/s, FLOP/byte, MB, KiB) with 3 significant digits and
no exponent ("0.122", "12.3", "1230"), shares and roof fractions in per cent ("37.3%",
"172%"), counts with thousands separators, ratios as "×1.23". The numbers underneath stay
numbers (a pandas Styler), so a table can still be sorted or exported.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

# unit -> (scale applied to the stored value, header suffix, kind of formatting)
UNITS = {
    "s→ms": (1e3, "ms", "significant"),           # a column in seconds, shown in milliseconds
    "ms": (1.0, "ms", "significant"),
    "%": (100.0, "", "percent"),                  # a fraction (0.3725) shown as 37.3%
    "GFLOP/s": (1.0, "GFLOP/s", "significant"),
    "GB/s": (1.0, "GB/s", "significant"),
    "FLOP/byte": (1.0, "FLOP/byte", "significant"),
    "bytes→MB": (1e-6, "MB", "significant"),      # a column in bytes, shown in MB (1e6 bytes)
    "MB": (1.0, "MB", "significant"),
    "KiB": (1.0, "KiB", "significant"),
    "FLOP": (1.0, "FLOP", "count"),
    "bytes": (1.0, "bytes", "count"),
    "count": (1.0, "", "count"),
    "×": (1.0, "", "ratio"),
    "number": (1.0, "", "significant"),          # the unit is elsewhere (say, in the row's label)
}


def significant(value, digits: int = 3) -> str:
    """`value` with `digits` significant digits and no exponent for everyday magnitudes:
    0.000122 -> "0.000122", 0.12345 -> "0.123", 12.345 -> "12.3", 1234.5 -> "1230",
    26667 -> "26700"; "" for a missing value, "inf" for an infinite one."""
    if value is None or pd.isna(value):
        return ""
    value = float(value)
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -6 or magnitude > 12:
        return f"{value:.{digits - 1}e}"
    decimals = max(digits - 1 - magnitude, 0)
    if magnitude >= digits:                        # 26667 -> 26700: round the integer part too
        value = round(value, digits - 1 - magnitude)
    text = f"{value:.{decimals}f}"
    if float(text) != 0 and math.floor(math.log10(abs(float(text)))) > magnitude:   # 9.996 -> "10.00"
        text = f"{value:.{max(decimals - 1, 0)}f}"
    return text


def format_number(value, unit: str) -> str:
    """One value as format_table shows it in a column of `unit` (a key of UNITS)."""
    scale, _, kind = UNITS[unit]
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if kind == "count":
        return f"{int(value):,}"
    if kind == "percent":
        return significant(float(value) * scale) + "%"
    if kind == "ratio":
        return "×" + significant(value)
    return significant(float(value) * scale)


def header(name: str, unit: str) -> str:
    """A column's header with its unit: "time (ms)", "GFLOP/s"; no suffix where the
    name says it already or the cells carry it (%, ×)."""
    suffix = UNITS[unit][1]
    if not suffix or suffix in name:
        return name
    return f"{name} ({suffix})"


def format_table(frame: pd.DataFrame, units: Mapping[str, str], names: Mapping[str, str] | None = None,
                 index: bool = False):
    """A Styler of `frame` with each column of `units` formatted for its unit (a key of
    UNITS) and its header naming the unit; `names` renames columns (before the unit is
    added); the index is shown only with `index`. Columns not in `units` are shown as
    they are. ValueError for a unit or column that does not exist, or for two columns that
    would end up with the same header."""
    names = dict(names or {})
    for column, unit in units.items():
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r} for {column!r}; units: {sorted(UNITS)}")
        if column not in frame.columns:
            raise ValueError(f"no column {column!r}; have {list(frame.columns)}")
    headers = [header(str(names.get(c, c)), units[c]) if c in units else str(names.get(c, c))
               for c in frame.columns]
    duplicated = sorted({h for h in headers if headers.count(h) > 1})
    if duplicated:
        raise ValueError(f"columns {duplicated} appear twice")
    shown = frame.copy()
    shown.columns = headers
    formatters = {header_text: (lambda v, unit=units[column]: format_number(v, unit))
                  for column, header_text in zip(frame.columns, headers) if column in units}
    styler = shown.style.format(formatters, na_rep="")
    if not index:
        styler = styler.hide(axis="index")
    return styler


def roofs_table(ceilings) -> pd.DataFrame:
    """This machine's roofs, one row per resource in memory-hierarchy order (L1, L2, L3,
    DRAM in GB/s, then fp32 FMA in GFLOP/s), one column per thread count measured
    ("1 thread", "2 threads", ...). The values are numbers; the row label names the unit."""
    table = ceilings.table.pivot(index="resource", columns="threads", values="value")
    resources = [level for level in ceilings.levels if level in table.index] + \
        [r for r in table.index if r not in ceilings.levels]
    table = table.loc[resources]
    units = ceilings.table.drop_duplicates("resource").set_index("resource")["unit"]
    table.index = [f"{r} ({units.get(r, '')})" if units.get(r) else r for r in table.index]
    table.index.name = None
    table.columns = [f"{t} thread{'s' if t != 1 else ''}" for t in table.columns]
    return table
