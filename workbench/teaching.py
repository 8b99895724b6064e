"""Napkin math for the notebooks: arithmetic intensity from shapes, ridge points, and a
plain-words reading of a profile.

    from workbench.teaching import conv_intensity, model_intensities, ridge_points
    conv_intensity("depthwise", 144, 144, 56, 56, stride=1)["arithmetic_intensity"]   # ~2.2 FLOP/byte
    model_intensities(engine.load("data/mobilenet_v2.onnx"), batches=(1, 8))

Everything here is the *compulsory* (minimum) traffic: every input element, weight and
output element crosses memory once, float32, and nothing else moves. That is the best a
layer can do when its operands come from and go to a memory level it does not fit in; it
is the DRAM row of the engine's bytes model when all the re-use fits in cache (the
engine's model, engine.traffic, adds re-reads when tiles do not fit and charges the padded
channel blocks, so its numbers can be a little higher). FLOPs are 2 per multiply-accumulate
of the convolution, as everywhere in the project; bias and activation are left out.

For a convolution over an N x C_in x H x W input giving N x C_out x H_o x W_o with a
k x k kernel (H_o = ceil(H / stride), "same" padding):

    dense      FLOPs = 2 N C_out H_o W_o C_in k^2   weights C_out C_in k^2
    depthwise  FLOPs = 2 N C H_o W_o k^2             weights C k^2          (C_in = C_out = C)
    pointwise  FLOPs = 2 N C_out H W C_in            weights C_out C_in     (k = 1, stride 1)
    bytes      = 4 (N C_in H W + weights + N C_out H_o W_o)
    AI         = FLOPs / bytes   (FLOP/byte)

Limits worth knowing: a depthwise 3x3 at stride 1 does 18 FLOPs per output and must read
one input and write one output (8 bytes), so AI -> 18 / 8 = 2.25 FLOP/byte whatever C and N;
a pointwise conv with large N H W tends to C_in C_out / (2 (C_in + C_out)) FLOP/byte, and
its weights are amortised over the batch, so a larger batch moves it right.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.checks import check_batch
from workbench.profile import as_model

FLOAT32_BYTES = 4
CONV_KINDS = ("dense", "depthwise", "pointwise")


# ---------------------------------------------------------------------------- formulas

def conv_intensity(kind: str, in_channels: int, out_channels: int, height: int, width: int,
                   kernel: int = 3, stride: int = 1, batch: int = 1) -> dict[str, float]:
    """FLOPs, compulsory bytes and arithmetic intensity of one convolution, from its shape.

    kind: "dense" (a k x k conv over all input channels), "depthwise" (one k x k filter per
        channel; out_channels must equal in_channels) or "pointwise" (1x1; kernel and
        stride are taken as 1).
    height, width: input spatial size (pixels); the output is ceil(height / stride) x
        ceil(width / stride) ("same" padding).
    Returns {"flops": FLOP, "input_bytes", "weight_bytes", "output_bytes", "bytes": bytes,
    "arithmetic_intensity": FLOP/byte, "out_height", "out_width"}, for the whole batch.
    ValueError for an unknown kind or a non-positive size.
    """
    if kind not in CONV_KINDS:
        raise ValueError(f"kind must be one of {CONV_KINDS}, got {kind!r}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("height", height),
                        ("width", width), ("kernel", kernel), ("stride", stride), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if kind == "depthwise" and in_channels != out_channels:
        raise ValueError(f"a depthwise conv has out_channels == in_channels, got {in_channels} -> {out_channels}")
    if kind == "pointwise":
        kernel, stride = 1, 1
    out_height, out_width = math.ceil(height / stride), math.ceil(width / stride)
    outputs = batch * out_channels * out_height * out_width
    if kind == "dense":
        macs_per_output, weights = in_channels * kernel * kernel, out_channels * in_channels * kernel * kernel
    elif kind == "depthwise":
        macs_per_output, weights = kernel * kernel, out_channels * kernel * kernel
    else:
        macs_per_output, weights = in_channels, out_channels * in_channels
    flops = 2 * outputs * macs_per_output
    input_bytes = FLOAT32_BYTES * batch * in_channels * height * width
    weight_bytes = FLOAT32_BYTES * weights
    output_bytes = FLOAT32_BYTES * outputs
    moved = input_bytes + weight_bytes + output_bytes
    return {"flops": flops, "input_bytes": input_bytes, "weight_bytes": weight_bytes,
            "output_bytes": output_bytes, "bytes": moved, "arithmetic_intensity": flops / moved,
            "out_height": out_height, "out_width": out_width}


# The ops of profiles and plans by the conv formula they use; the others have none: "se"
# (two 1x1 convs on a pooled vector, no image-sized conv), "linear", and the ops without
# FLOPs ("pool", "maxpool", "activation", "layout", "flatten").
OP_FORMULAS = {"stem": "dense", "conv": "dense", "depthwise": "depthwise", "expand": "pointwise",
               "project": "pointwise", "pointwise": "pointwise"}


def _kind_of(op: str) -> str | None:
    """The formula a profile/plan op uses (OP_FORMULAS: stem and conv, ResNet's 3x3s, are
    dense convs); None for an op that is no convolution."""
    return OP_FORMULAS.get(op)


def model_intensities(model, batches: Sequence[int] = (1,), dense_comparison: bool = True) -> pd.DataFrame:
    """One row per convolution of `model` (an engine.Model, path, bytes or ModelProto), in
    execution order, with its shapes and compulsory arithmetic intensity at each batch.

    Columns: layer, op (as in profiles: stem, conv, depthwise, expand, project, ...; a
    squeeze-and-excitation, max pool or stand-alone activation is no convolution), kind (the
    formula: dense, depthwise, pointwise), in_channels, out_channels, height, width (input,
    pixels), kernel, stride, flops_per_image (FLOP), then for each batch b:
    ai_batch<b> (FLOP/byte). With dense_comparison: ai_as_dense_3x3, the intensity the same
    layer would have at the first batch as a dense 3x3 conv of the same channels and stride.
    """
    model = as_model(model)
    batches = [check_batch(b) for b in batches]
    if not batches:
        raise ValueError("batches must name at least one batch size")
    rows = []
    for step in model.plan(1, threads=1, fuse_blocks=False).steps:   # named as profiles name them
        kind = _kind_of(step.op)
        if kind is None or step.layer is None:
            continue
        layer = step.layer
        in_channels, height, width = layer.input_shape
        out_channels = layer.output_shape[0]
        kernel = int(layer.attrs["kernel_shape"][0])
        stride = int(layer.attrs["strides"][0])
        row = {"layer": layer.name, "op": step.op, "kind": kind, "in_channels": in_channels,
               "out_channels": out_channels, "height": height, "width": width, "kernel": kernel, "stride": stride}
        shape = (in_channels, out_channels, height, width)
        row["flops_per_image"] = conv_intensity(kind, *shape, kernel=kernel, stride=stride)["flops"]
        for batch in batches:
            row[f"ai_batch{batch}"] = conv_intensity(kind, *shape, kernel=kernel, stride=stride,
                                                     batch=batch)["arithmetic_intensity"]
        if dense_comparison:
            row["ai_as_dense_3x3"] = conv_intensity("dense", *shape, kernel=3, stride=stride,
                                                    batch=batches[0])["arithmetic_intensity"]
        rows.append(row)
    return pd.DataFrame(rows)


def intensity_by_kind(intensities: pd.DataFrame, column: str) -> pd.DataFrame:
    """Min, median and max of `column` (e.g. "ai_batch1") per op, from model_intensities."""
    if column not in intensities.columns:
        raise ValueError(f"no column {column!r}; have {list(intensities.columns)}")
    grouped = intensities.groupby("op", sort=False)[column]
    return pd.DataFrame({"layers": grouped.size(), "min": grouped.min(), "median": grouped.median(),
                         "max": grouped.max()})


# ---------------------------------------------------------------------------- the machine

def ridge_points(ceilings) -> pd.DataFrame:
    """This machine's ridge points: one row per thread count, a column per memory level
    (FLOP/byte: peak GFLOP/s / that level's GB/s), plus peak_gflops (GFLOP/s) and the
    bandwidths (<level>_gbs, GB/s). A layer left of a level's ridge point is memory bound
    there whatever its kernel does."""
    rows = []
    for threads in ceilings.threads:
        row = {"threads": threads, "peak_gflops": ceilings.peak_gflops(threads)}
        for level in ceilings.levels:
            row[f"{level}_gbs"] = ceilings.bandwidth_gbs(level, threads)
        for level in ceilings.levels:
            row[level] = ceilings.ridge_point(level, threads)
        rows.append(row)
    return pd.DataFrame(rows).set_index("threads")


RIDGE_COLORS = {"L1": "#54a24b", "L2": "#4c78a8", "L3": "#b279a2", "DRAM": "#e45756"}
AXIS_MARGIN_DECADES = 0.15     # the log y axis reaches this far beyond the data and the ridges


def ridge_point_figure(intensities: pd.DataFrame, ceilings, threads: int, column: str = "ai_batch1"):
    """Every convolution's compulsory intensity (y, FLOP/byte, log axis; x: execution
    order), coloured by op, against each memory level's ridge point at `threads` (a dotted
    line labelled on the line with the level and its value).

    intensities: model_intensities' table; column: its intensity column to plot. The y
    axis spans the data and the ridge points with a small margin, and every label sits on
    its line: plotly's add_hline puts an annotation at y = value on a log axis (where
    annotation y is log10(value)), so the labels are placed here in log units.
    """
    # plotly only when a figure is asked for: the rest of the module is plain pandas
    import plotly.graph_objects as go

    from workbench.figure_parts import OP_COLORS, short_name

    if column not in intensities.columns:
        raise ValueError(f"no column {column!r}; have {list(intensities.columns)}")
    ridges = {level: ceilings.ridge_point(level, threads) for level in ceilings.levels}
    figure = go.Figure()
    for op, rows in intensities.groupby("op", sort=False):
        figure.add_trace(go.Scatter(
            x=rows.index, y=rows[column], mode="markers", name=op,
            marker=dict(color=OP_COLORS.get(op, OP_COLORS["other"]), size=9),
            customdata=[short_name(n) for n in rows["layer"]],
            hovertemplate="%{customdata}: %{y:.3g} FLOP/byte<extra>" + op + "</extra>"))
    values = [float(v) for v in intensities[column] if v > 0] + [v for v in ridges.values() if v > 0]
    low, high = math.log10(min(values)), math.log10(max(values))
    last = max(len(intensities) - 1, 1)
    for position, (level, ridge) in enumerate(sorted(ridges.items(), key=lambda item: item[1])):
        color = RIDGE_COLORS.get(level, "#555555")
        figure.add_shape(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=ridge, y1=ridge,
                         line=dict(color=color, dash="dot", width=1.5))
        # alternate ends, so two ridge points close together do not print over each other
        left = position % 2 == 1
        figure.add_annotation(x=0 if left else last, xanchor="left" if left else "right", xref="x",
                              y=math.log10(ridge), yref="y", yanchor="bottom", showarrow=False,
                              text=f"{level} ridge {ridge:.3g} FLOP/byte", font=dict(color=color, size=12))
    figure.update_layout(
        title=f"Compulsory arithmetic intensity of every convolution, batch {column.removeprefix('ai_batch')}, "
              f"against the ridge points ({threads} thread{'s' if threads != 1 else ''})",
        xaxis=dict(title="convolution (execution order)", range=[-1, last + 1]),
        yaxis=dict(title="compulsory arithmetic intensity (FLOP/byte)", type="log",
                   range=[low - AXIS_MARGIN_DECADES, high + 2 * AXIS_MARGIN_DECADES]),
        height=450, plot_bgcolor="white", legend=dict(title="op"))
    return figure


# ---------------------------------------------------------------------------- reading a profile

def bound_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per op kind of a workbench.profile DataFrame, what bounds its steps.

    Columns: steps, ms (summed median time), share_of_time, memory_bound (steps whose
    tightest roof is a memory level), memory_level (the most common tightest level among
    those, "" if none), median_ai (FLOP/byte: median over the memory-bound steps of their
    intensity at memory_level), median_roof_fraction (achieved / attainable GFLOP/s, all
    steps). Only steps with FLOPs; sorted by time, slowest first.
    """
    needed = ["op", "seconds", "share_of_time", "flops", "bound", "bound_level", "roof_fraction"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks {missing}: is it workbench.profile's output?")
    rows = frame[frame["flops"] > 0]
    out = []
    for op, group in rows.groupby("op", sort=False):
        memory = group[group["bound"] == "memory"]
        level, median_ai = "", math.nan
        if len(memory):
            level = str(memory["bound_level"].astype(str).mode().iloc[0])
            median_ai = float(memory.loc[memory["bound_level"] == level, f"ai_{level}"].median())
        out.append({"op": op, "steps": len(group), "ms": 1e3 * float(group["seconds"].sum()),
                    "share_of_time": float(group["share_of_time"].sum()), "memory_bound": len(memory),
                    "memory_level": level, "median_ai": median_ai,
                    "median_roof_fraction": float(group["roof_fraction"].median())})
    return pd.DataFrame(out).sort_values("ms", ascending=False).set_index("op")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def explain_bounds(frame: pd.DataFrame, ceilings) -> str:
    """A few Markdown sentences, computed from the profile, saying which steps are memory
    bound, at which level, and why (their intensity against the ridge point there)."""
    summary = bound_summary(frame)
    threads = int(frame["threads"].iloc[0])
    with_flops = frame[frame["flops"] > 0]
    memory = with_flops[with_flops["bound"] == "memory"]
    share = float(memory["seconds"].sum()) / float(frame["seconds"].sum())
    peak = ceilings.peak_gflops(threads)
    lines = [f"**{len(memory)} of {len(with_flops)}** steps with FLOPs are memory bound, and they take "
             f"**{share:.0%}** of the run time ({_plural(threads, 'thread')}, peak {peak:.3g} GFLOP/s). "
             f"A step is memory bound when its arithmetic intensity at some memory level is left of that "
             f"level's ridge point (peak FLOP/s / the level's bandwidth): it does too little arithmetic per "
             f"byte to keep the FMA units busy, however good its kernel.", ""]
    for op, row in summary.iterrows():
        head = f"- **{op}** ({_plural(int(row['steps']), 'step')}, {row['share_of_time']:.0%} of the time): "
        if row["memory_bound"] == 0:
            lines.append(head + f"compute bound; a median {row['median_roof_fraction']:.0%} of the peak reached.")
            continue
        level = row["memory_level"]
        ridge = ceilings.ridge_point(level, threads)
        lines.append(
            head + f"{row['memory_bound']} of {row['steps']} memory bound, most tightly at **{level}**: median "
            f"intensity {row['median_ai']:.3g} FLOP/byte there against a ridge point of {ridge:.3g} FLOP/byte "
            f"({peak:.3g} GFLOP/s / {ceilings.bandwidth_gbs(level, threads):.3g} GB/s); a median "
            f"{row['median_roof_fraction']:.0%} of the attainable roof reached.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- fusion

def fusion_effect(unfused: pd.DataFrame, fused: pd.DataFrame, levels: Sequence[str] = ("L3", "DRAM")) -> pd.DataFrame:
    """What fusing each inverted-residual block did, from two profiles of the same model
    and batch (fuse_blocks False and True).

    One row per fused block (index: its layer name), with: members (how many layers it
    fuses), input_hw (its input image, "HxW"), ms_unfused / ms_fused (median time of the
    members summed / of the block, ms), and for each level: MB_<level>_unfused (the
    members' modelled bytes summed, 1e6 bytes), MB_<level>_fused, ai_<level>_unfused (the
    members' FLOPs over their bytes: the combined point), ai_<level>_fused (FLOP/byte) and
    right_<level> (True when fusion moved the point right: fewer bytes for the same FLOPs).
    """
    for name, frame in (("unfused", unfused), ("fused", fused)):
        if not isinstance(frame, pd.DataFrame) or "members" not in frame.columns:
            raise ValueError(f"{name} must be a workbench.profile DataFrame")
    by_layer = unfused.set_index("layer")
    rows = {}
    for _, block in fused[fused["op"] == "block"].iterrows():
        members = list(block["members"])
        missing = [m for m in members if m not in by_layer.index]
        if missing:
            raise ValueError(f"block {block['layer']}: members {missing} are not steps of the unfused profile")
        parts = by_layer.loc[members]
        shape = tuple(block["input_shape"])
        # (N, C, H, W) or the blocked (N, C/c, H, W, c): H and W are the third and fourth
        row = {"members": len(members), "input_hw": f"{shape[2]}x{shape[3]}" if len(shape) in (4, 5) else str(shape),
               "ms_unfused": 1e3 * float(parts["seconds"].sum()), "ms_fused": 1e3 * float(block["seconds"])}
        flops = float(parts["flops"].sum())
        for level in levels:
            moved_unfused = float(parts[f"bytes_{level}"].sum())
            moved_fused = float(block[f"bytes_{level}"])
            row[f"MB_{level}_unfused"] = moved_unfused / 1e6
            row[f"MB_{level}_fused"] = moved_fused / 1e6
            row[f"ai_{level}_unfused"] = flops / moved_unfused if moved_unfused > 0 else math.inf
            row[f"ai_{level}_fused"] = float(block[f"ai_{level}"])
            row[f"right_{level}"] = moved_fused < moved_unfused
        rows[block["layer"]] = row
    return pd.DataFrame.from_dict(rows, orient="index")
