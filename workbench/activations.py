"""What each step applies after its arithmetic, in words: "relu6", "hardswish", "silu",
"hardswish+relu6" (an activation, then a clip), "none".

    frame = with_activations(workbench.profile(model), model)    # adds an "activation" column
    step_detail_html(frame, name, ceilings, "L2")                 # ... which the detail panel,
                                                                  # the hover and the tables show

A profile's records do not carry the activation, the model's layers do
(engine.graph.Layer.activation_name), so the column is added from the model: a step that
computes one layer gets that layer's; a fused block its members', joined with " → "
("relu6 → relu6 → none"); a squeeze-and-excitation step its hidden and gate activations
("se: relu → hardsigmoid"); a step without a layer (a layout change) "".
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from workbench.figure_parts import step_members

ACTIVATION_COLUMN = "activation"


def layer_activation(layer) -> str:
    """The activation of one engine.graph.Layer as text. A SqueezeExcite layer: "se: <hidden>
    → <gate>" (its hidden activation and clip, then its gate: "se: relu → hardsigmoid")."""
    if layer.op == "SqueezeExcite":
        attrs = layer.attrs
        hidden = dataclasses.replace(layer, op="Conv", activation=tuple(attrs["hidden_activation"]),
                                     clip=tuple(attrs["hidden_clip"])).activation_name
        gate = dataclasses.replace(layer, op="Conv", activation=tuple(attrs["gate_activation"]),
                                   clip=(float("-inf"), float("inf"))).activation_name
        return f"se: {hidden} → {gate}"
    return layer.activation_name


def step_activations(frame: pd.DataFrame, model) -> list[str]:
    """One text per row of a profile `frame` of `model` (an engine.Model): its layers'
    activations (layer_activation; a fused block's members joined with " → "), "" for a
    step that computes no layer of the model."""
    by_name = {layer.name: layer for layer in model.graph.layers}
    texts = []
    for _, row in frame.iterrows():
        members = [by_name[name] for name in step_members(row) if name in by_name]
        texts.append(" → ".join(layer_activation(layer) for layer in members))
    return texts


def with_activations(frame: pd.DataFrame, model) -> pd.DataFrame:
    """A copy of a profile `frame` of `model` (an engine.Model, or anything
    workbench.profile.as_model loads) with an "activation" column (step_activations)."""
    from workbench.profile import as_model      # here: profile imports the figure helpers

    out = frame.copy()
    out[ACTIVATION_COLUMN] = step_activations(frame, as_model(model))
    out.attrs.update(frame.attrs)
    return out


def activation_of(row) -> str:
    """A profile row's activation text (a dict or Series), "" when the profile has none."""
    value = row.get(ACTIVATION_COLUMN, "") if hasattr(row, "get") else ""
    return value if isinstance(value, str) else ""
