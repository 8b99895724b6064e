"""A fused squeeze-and-excitation block step lists its layers in execution order (expand,
depthwise, SE, project), so the workbench shows the block's real output and activations."""
from __future__ import annotations

import pandas as pd

import engine
from workbench.activations import step_activations
from workbench.shapes import logical_shapes
from new_ops_graphs import efficientnet_like


def test_a_fused_se_step_shows_its_projects_output_and_its_activations_in_order():
    model = engine.load(efficientnet_like())     # 32x32 input, stem stride 2: blocks at 16x16 and 8x8
    plan = model.plan(2, threads=1, fuse_blocks=True)
    frame = pd.DataFrame([{"layer": s.name, "members": s.members, "batch": 2, "input_shape": s.input_shape,
                           "output_shape": s.output_shape} for s in plan.steps if s.op == "block"])
    layers = {layer.name: layer for layer in model.graph.layers}
    assert [[layers[m].conv_kind or layers[m].op for m in members] for members in frame["members"]] == [
        ["depthwise", "SqueezeExcite", "pointwise"],
        ["pointwise", "depthwise", "SqueezeExcite", "pointwise"],
        ["pointwise", "depthwise", "SqueezeExcite", "pointwise"]]
    assert list(frame["layer"]) == [members[-1] for members in frame["members"]]    # named after its project
    shown = logical_shapes(frame, model)
    # the model's graph: 16 -> dw3x3 -> 16; 16 -> 96 -> dw5x5 s2 -> 24; 24 -> 144 -> dw3x3 -> 24 (+ residual)
    assert list(shown["output_shape"]) == [(2, 16, 16, 16), (2, 24, 8, 8), (2, 24, 8, 8)]
    assert list(shown["input_shape"]) == [(2, 16, 16, 16), (2, 16, 16, 16), (2, 24, 8, 8)]
    assert step_activations(frame, model) == ["silu → se: silu → sigmoid → none",
                                              "silu → silu → se: silu → sigmoid → none",
                                              "silu → silu → se: silu → sigmoid → none"]
