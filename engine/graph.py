"""The engine's IR: a `Graph` is a list of `Layer`s in execution order over named tensors.

Shapes are batch-free: an activation of shape (N, C, H, W) is recorded as (C, H, W), a
feature vector (N, F) as (F,). Weights stay in ONNX layout here; the plan packs them for
the kernels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.kernels.activation import NO_ACTIVATION

NO_CLIP = (-math.inf, math.inf)

# How the plan stores a tensor (engine.plan; engine.kernels.layout for the blocked layout):
# "nchw" the graph input as the caller gives it, (N, C, H, W); "nchwc" a conv's, max pool's or
# squeeze-and-excitation's output, channels in blocks of the SIMD width, (N, C_blocks, H, W, CB);
# a stand-alone activation's output is stored as its input is; "flat" everything else, rows of features
# (N, width): pooled vectors, flattened and linear outputs. IMAGE_LAYOUTS are the two an image
# (C, H, W) can be read in: the plan converts between them, never from "flat".
IMAGE_LAYOUTS = ("nchw", "nchwc")
# The layers whose kernels write NCHWc.
BLOCKED_OUTPUT_OPS = ("Conv", "MaxPool", "SqueezeExcite")


@dataclass
class Layer:
    """One executable step before kernel selection.

    op: "Conv", "GlobalAveragePool", "MaxPool", "SqueezeExcite", "Activation", "Flatten"
        or "Linear" once the passes have run; the importer also emits "BatchNormalization",
        "Clip", "Add", "Mul" and "Pad", which the passes fold into their neighbours (a Clip
        left alone becomes an "Activation") or reject. "Activation" is stand-alone: its
        `activation` then `clip` on each element. "SqueezeExcite" (engine.passes) holds
        w1 (S, C), b1, w2 (C, S), b2 and the hidden_activation, hidden_clip and
        gate_activation of the pattern it replaced in attrs.
    inputs: activation tensor names read (constants are already attributes/weights).
    clip: (low, high) applied last in the epilogue; NO_CLIP when there is none.
    activation: (name, alpha, beta) applied after the bias and residual, before the clip
        (engine.kernels.activation: "hardswish", "silu", ...); NO_ACTIVATION when none.
    residual: name of a tensor added after the bias and before the activation (fused Add).
    sources: the ONNX node names this layer stands for (for errors and profiles).
    """

    name: str
    op: str
    inputs: list[str]
    output: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    clip: tuple[float, float] = NO_CLIP
    activation: tuple[str, float, float] = NO_ACTIVATION
    residual: str | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def conv_kind(self) -> str | None:
        """For a Conv, the kernel family that runs it; None otherwise:
        "pointwise" 1x1 stride 1 unpadded (engine.kernels.pointwise), "depthwise"
        (engine.kernels.depthwise), "dense" any other group-1 conv on NCHWc input
        (engine.kernels.conv_nchwc), "direct" a group-1 conv on plain NCHW input
        (engine.kernels.direct_conv): the stem, which reads the graph input's few channels
        (attrs["stem"], set by engine.passes.route_convs), and dilated convs."""
        if self.op != "Conv":
            return None
        kh, kw = self.attrs["kernel_shape"]
        group = self.attrs["group"]
        in_channels = self.input_shape[0]
        out_channels = self.output_shape[0]
        if group == 1 and (kh, kw) == (1, 1) and self.attrs["strides"] == (1, 1) \
                and self.attrs["pads"] == (0, 0, 0, 0):
            return "pointwise"
        if group == in_channels == out_channels and group > 1 and self.attrs["dilations"] == (1, 1):
            return "depthwise"
        if group == 1:
            if self.attrs["dilations"] != (1, 1) or self.attrs.get("stem", False):
                return "direct"
            return "dense"
        return None

    @property
    def activation_name(self) -> str:
        """"relu6", "relu", "none", "clip(lo,hi)", "hardswish", "silu", ... for display
        (an activation and a clip after it: "hardswish+relu6")."""
        if self.activation[0] != "none":
            clip = Layer(self.name, self.op, [], "", (), (), clip=self.clip).activation_name
            return self.activation[0] if clip == "none" else f"{self.activation[0]}+{clip}"
        if self.clip == NO_CLIP:
            return "none"
        if self.clip == (0.0, 6.0):
            return "relu6"
        if self.clip == (0.0, math.inf):
            return "relu"
        return f"clip({self.clip[0]:g},{self.clip[1]:g})"


@dataclass
class Graph:
    """Layers in execution order; the single input and output tensor names and shapes."""

    layers: list[Layer]
    input_name: str
    input_shape: tuple[int, int, int]           # (C, H, W)
    output_name: str
    output_shape: tuple[int, ...]               # batch-free
    opset: int = 0
    producer: str = ""

    def producer_of(self, tensor: str) -> Layer | None:
        for layer in self.layers:
            if layer.output == tensor:
                return layer
        return None

    def layout_of(self, tensor: str) -> str:
        """How the plan stores `tensor`: "nchw", "nchwc" or "flat" (IMAGE_LAYOUTS' comment).
        A stand-alone Activation writes its input's layout (it works element by element)."""
        producer = self.producer_of(tensor)
        while producer is not None and producer.op == "Activation":
            tensor = producer.inputs[0]
            producer = self.producer_of(tensor)
        if tensor == self.input_name:
            return "nchw"
        return "nchwc" if producer is not None and producer.op in BLOCKED_OUTPUT_OPS else "flat"

    def consumers_of(self, tensor: str) -> list[Layer]:
        return [layer for layer in self.layers
                if tensor in layer.inputs or layer.residual == tensor]
