"""What the figures (roofline, before_after, time_bars) share: the colour and symbol of
each op kind, the colour of each bound, marker sizes by share of time, short layer names,
the steps that get a point, number and shape formatting for hovers and tables, and a
per-figure memo of the ceilings' numbers."""
from __future__ import annotations

import ast
import math

import numpy as np
import pandas as pd

from workbench.shapes import unblocked

# Colour of each op kind; fixed so a kind keeps its colour across figures. "other" takes
# any op not listed (a new kernel family) so nothing with FLOPs is left off the plot.
# "conv" is a dense KxK conv (NCHWc, ResNet's 3x3s; also a dilated direct conv), "maxpool"
# a max pooling, "se" a squeeze-and-excitation in one step, "activation" a stand-alone
# activation (one not fused into the step before), "layout" a layout change (no FLOPs: in
# the time bars only; "flatten" is drawn as one, OP_ALIASES). The newer kinds take tab20's
# dark shades: far in lightness from the tab10 hues beside them, so they stay apart for
# colour-blind eyes (and every kind has its own symbol besides).
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
    "maxpool": "#637939",
    "se": "#393b79",
    "activation": "#7b4173",
    "layout": "#c7c7c7",
    "other": "#bcbd22",
}
# Marker symbol of each op kind on the roofline (the colour says what bounds the step).
OP_SYMBOLS = {
    "stem": "star",
    "conv": "hexagon",
    "depthwise": "diamond",
    "expand": "triangle-up",
    "project": "triangle-down",
    "pointwise": "square",
    "block": "circle",
    "pool": "cross",
    "linear": "pentagon",
    "maxpool": "hourglass",
    "se": "hexagram",
    "activation": "bowtie",
    "layout": "triangle-right",
    "other": "x",
}
# Colour of what bounds a step, the same in every figure and table (profile.bound_at).
BOUND_COLORS = {"memory": "#e45756", "compute": "#4c78a8", "n/a": "#bab0ac"}
NOISE_COLOR = "#8a5a00"              # the noise warning's text
MARKER_MIN, MARKER_MAX = 6.0, 60.0   # px diameter at share_of_time 0 and 1 (sqrt scaling)


class CeilingsMemo:
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


def memoised(ceilings) -> CeilingsMemo:
    """`ceilings` behind a CeilingsMemo (itself if it already is one)."""
    return ceilings if isinstance(ceilings, CeilingsMemo) else CeilingsMemo(ceilings)


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


def step_members(row) -> tuple[str, ...]:
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


# Ops drawn as another kind.
OP_ALIASES = {"flatten": "layout"}


def op_kind(op) -> str:
    """`op` if it has a colour of its own in OP_COLORS (an alias its kind's), else "other"."""
    op = OP_ALIASES.get(op, op)
    return op if op in OP_COLORS else "other"


def marker_sizes(share) -> list[float]:
    """Diameter in px: MIN + (MAX - MIN) * sqrt(share), so marker *area* grows with time."""
    share = np.clip(np.nan_to_num(np.asarray(share, dtype=float), nan=0.0), 0.0, 1.0)
    return (MARKER_MIN + (MARKER_MAX - MARKER_MIN) * np.sqrt(share)).tolist()


def finite_positive(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.isfinite(values) & (values > 0)


def or_none(values) -> list:
    """Floats with non-finite or non-positive entries as None (a gap: not drawn on log axes)."""
    values = np.asarray(values, dtype=float)
    return [float(v) if math.isfinite(v) and v > 0 else None for v in values]


def plotted_steps(profile: pd.DataFrame) -> pd.DataFrame:
    """Steps that get a marker: flops > 0 and a positive finite GFLOP/s."""
    flops = pd.to_numeric(profile["flops"], errors="coerce").fillna(0).to_numpy()
    keep = (flops > 0) & finite_positive(profile["gflops"])
    return profile[keep]


def format_value(value: float, unit: str = "") -> str:
    """Three significant digits and the unit; "inf" for a non-finite value."""
    if value is None or not math.isfinite(value):
        return "inf" + (f" {unit}" if unit else "")
    return f"{value:.3g}" + (f" {unit}" if unit else "")


def format_ms(seconds: float) -> str:
    """Seconds as milliseconds with 3 significant digits: 0.000122 -> "0.122 ms"."""
    if seconds is None or not math.isfinite(float(seconds)):
        return ""
    return f"{float(seconds) * 1e3:.3g} ms"


def shape_text(shape) -> str:
    """A shape as "(1, 384, 14, 14)": a tuple, list or its str() from a CSV. A blocked
    buffer shape (N, C/lanes, H, W, lanes), from records that did not go through
    workbench.profile, is shown unblocked (its padded channels): never the layout."""
    if isinstance(shape, str):
        try:
            shape = ast.literal_eval(shape)
        except (ValueError, SyntaxError):
            return shape
    if isinstance(shape, (tuple, list, np.ndarray)):
        return "(" + ", ".join(str(int(v)) for v in unblocked(shape)) + ")"
    return str(shape)
