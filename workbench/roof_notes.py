"""The word on a roof fraction above 100 %.

A step cannot beat its roof; when its measured GFLOP/s is above min(peak, AI x bandwidth),
the AI is overstated: the bytes model (engine/traffic.py) counted fewer bytes than the
step moved, because some of its operands were already in a faster cache than the model
credits (the cache simulation, `profile(bytes="simulated")`, follows the real accesses and
says which). Every figure, table, the report and the CLI say so with `above_roof_note`;
`format_roof_fraction` is the "% of roof" cell.
"""
from __future__ import annotations

import math

# Ops whose kernels read weights (a squeeze-and-excitation step reads its two 1x1 convs';
# maxpool and activation read none): their operands include weights a run before left in cache.
WEIGHTED_OPS = frozenset({"stem", "conv", "expand", "project", "pointwise", "block", "linear", "se"})


def is_above_roof(fraction) -> bool:
    """True when a roof fraction (measured / attainable GFLOP/s) is a finite number above 1."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value > 1.0


def above_roof_note(fraction, op: str | None = None) -> str:
    """"" for a fraction <= 1 (or not a number); else the sentence that says why a step sits
    above its roof, naming the likely cause for the step's op."""
    if not is_above_roof(fraction):
        return ""
    cause = ("its input or weights were in a faster cache than it credits" if op in WEIGHTED_OPS
             else "its input was in a faster cache than it credits")
    return f"above roof: the bytes model undercounts this step ({cause}; bytes=\"simulated\" checks it)"


def format_roof_fraction(fraction, op: str | None = None, short: bool = False) -> str:
    """A roof fraction as a table cell: "64%", "172% (above roof*)" with short, else with
    the whole note; "" for a missing value."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(value):
        return ""
    text = f"{value:.0%}"
    if is_above_roof(value):
        text += " (above roof*)" if short else f" ({above_roof_note(value, op)})"
    return text
