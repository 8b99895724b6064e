"""Tensor shapes as a user reads them: NCHW, logical channels.

The engine records the shapes of its buffers, which hold activations in a blocked layout
(N, C / lanes, H, W, lanes) with the channels padded to a whole number of blocks, e.g.
(1, 24, 14, 14, 16) for 384 channels of 14x14. Figures and tables show the logical
(N, C, H, W) of the layers a step computes, (1, 384, 14, 14), read from the model's graph.
"""
from __future__ import annotations

import pandas as pd


def unblocked(shape) -> tuple[int, ...]:
    """A buffer shape without its channel blocks: (N, CB, H, W, lanes) -> (N, CB x lanes,
    H, W), the padded channel count (the logical one is not in the shape); other shapes
    as they are."""
    shape = tuple(int(v) for v in shape)
    if len(shape) == 5:
        n, blocks, height, width, lanes = shape
        return (n, blocks * lanes, height, width)
    return shape


def logical_shapes(frame: pd.DataFrame, model) -> pd.DataFrame:
    """`frame` (profile rows: layer, members, batch, input_shape, output_shape) with
    input_shape and output_shape in NCHW with the model's logical channels: a step's input
    is its first member's, its output its last member's (a fused block). A step the graph
    does not name (the input's layout step) gets its buffer shape unblocked. (The columns
    stay those of every profile, ONNX Runtime's in workbench.compare too.)"""
    layers = {layer.name: layer for layer in model.layers}
    out = frame.copy()
    inputs, outputs = [], []
    for row in frame.to_dict("records"):
        members = tuple(row.get("members") or (row["layer"],))
        first, last = layers.get(members[0]), layers.get(members[-1])
        batch = int(row["batch"])
        inputs.append((batch, *first.input_shape) if first is not None else unblocked(row["input_shape"]))
        outputs.append((batch, *last.output_shape) if last is not None else unblocked(row["output_shape"]))
    out["input_shape"], out["output_shape"] = inputs, outputs
    return out
