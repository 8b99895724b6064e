"""The word on a roof fraction above 100 %.

A step cannot beat its roof; when its measured GFLOP/s is above min(peak, AI x bandwidth),
either the AI is overstated (the bytes model, engine/traffic.py, counted fewer bytes than
the step moved: some operands were in a faster cache than it credits) or the bandwidth is
understated (the ceilings measure each level with a triad, two reads per write, and a
read-mostly stream such as a classifier's weights runs faster than that). The cache
simulation, `profile(bytes="simulated")`, tells the two apart: where it agrees with the
model, the ceiling is the cause (MobileNetV2's classifier at batch 1 on the development
machine: model and simulation 5.9 MB at L3, 107 % of the L3 roof). Every figure, table, the report and the CLI say so with `above_roof_note`;
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
    operands = "its input or weights" if op in WEIGHTED_OPS else "its input"
    return ("above roof: the bytes model undercounts this step (" + operands + " in a faster cache than it "
            "credits), or a read-mostly stream outran the triad that measured the ceiling; bytes=\"simulated\" "
            "tells which")


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
