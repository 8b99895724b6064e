"""Graph passes run after import: fold BatchNormalization and Pad into convolutions,
fuse activations and residual Adds into the conv epilogue, and reject what is left over
that no kernel runs. Each pass rewrites `graph.layers` in place."""
from __future__ import annotations

import numpy as np

from engine.errors import ModelError, UnsupportedOperatorError
from engine.graph import IMAGE_LAYOUTS, NO_CLIP, Graph, Layer

EXECUTABLE_OPS = ("Conv", "GlobalAveragePool", "Flatten", "Linear")


def _sole_consumer(graph: Graph, layer: Layer) -> Layer | None:
    """The one layer reading `layer`'s output, or None if zero, several, or it is the graph output."""
    if layer.output == graph.output_name:
        return None
    consumers = graph.consumers_of(layer.output)
    return consumers[0] if len(consumers) == 1 else None


def _absorb(graph: Graph, keeper: Layer, absorbed: Layer) -> None:
    """`keeper` now also computes what `absorbed` did: take over its output and remove it."""
    keeper.output = absorbed.output
    keeper.output_shape = absorbed.output_shape
    keeper.sources.extend(absorbed.sources)
    graph.layers.remove(absorbed)


def fold_batchnorm(graph: Graph) -> None:
    """Conv -> BatchNormalization becomes one Conv with scaled weights and shifted bias."""
    for bn in [layer for layer in graph.layers if layer.op == "BatchNormalization"]:
        conv = graph.producer_of(bn.inputs[0])
        if conv is None or conv.op != "Conv" or conv.clip != NO_CLIP or conv.residual \
                or _sole_consumer(graph, conv) is not bn:
            raise UnsupportedOperatorError(bn.name, "BatchNormalization", ("Conv -> BatchNormalization",),
                                           "BatchNormalization is only supported directly after a Conv "
                                           "whose output nothing else reads")
        multiplier, offset = bn.attrs["multiplier"], bn.attrs["offset"]
        conv.weight = (conv.weight * multiplier[:, None, None, None]).astype(np.float32)
        bias = conv.bias if conv.bias is not None else np.zeros(conv.output_shape[0], np.float32)
        conv.bias = (bias * multiplier + offset).astype(np.float32)
        _absorb(graph, conv, bn)


def fold_pad(graph: Graph) -> None:
    """Pad (zeros on H, W) -> Conv becomes one Conv with larger pads."""
    for pad in [layer for layer in graph.layers if layer.op == "Pad"]:
        consumers = graph.consumers_of(pad.output)
        if not consumers or pad.output == graph.output_name or \
                any(c.op != "Conv" or c.inputs[0] != pad.output or c.residual == pad.output for c in consumers):
            raise UnsupportedOperatorError(pad.name, "Pad", ("Pad -> Conv",),
                                           "Pad is only supported when it feeds convolutions only")
        for conv in consumers:
            conv.attrs["pads"] = tuple(a + b for a, b in zip(conv.attrs["pads"], pad.attrs["pads"]))
            conv.inputs[0] = pad.inputs[0]
            conv.input_shape = pad.input_shape
            conv.sources[:0] = pad.sources
        graph.layers.remove(pad)


def _fusable(graph: Graph, producer: Layer | None, consumer: Layer, *, needs_no_clip: bool) -> bool:
    """True if `consumer` can become `producer`'s epilogue: a Conv whose only reader it is."""
    return (producer is not None and producer.op == "Conv"
            and not (needs_no_clip and (producer.clip != NO_CLIP or producer.residual is not None))
            and _sole_consumer(graph, producer) is consumer)


def fuse_activation(graph: Graph, strict: bool = True) -> bool:
    """Conv -> Clip/Relu becomes a Conv with a clip epilogue (two clips combine).

    Returns whether anything was fused; with `strict`, an activation that cannot be fused
    raises UnsupportedOperatorError (there is no stand-alone activation kernel)."""
    changed = False
    for clip in [layer for layer in graph.layers if layer.op == "Clip"]:
        producer = graph.producer_of(clip.inputs[0])
        if _fusable(graph, producer, clip, needs_no_clip=False):
            low = max(producer.clip[0], clip.clip[0])
            producer.clip = (low, max(low, min(producer.clip[1], clip.clip[1])))
            _absorb(graph, producer, clip)
            changed = True
        elif strict:
            raise UnsupportedOperatorError(clip.name, "Clip/Relu", ("Conv -> Clip/Relu",),
                                           "an activation is only supported directly after a Conv "
                                           "(or a residual Add fused into one) whose output nothing else reads")
    return changed


def _computed_before(graph: Graph, tensor: str, layer: Layer) -> bool:
    """True if `tensor` is the graph input or written by a layer that runs before `layer`."""
    producer = graph.producer_of(tensor)
    return producer is None or graph.layers.index(producer) < graph.layers.index(layer)


def fuse_residual_add(graph: Graph, strict: bool = True) -> bool:
    """Conv -> Add(other) becomes a Conv whose epilogue adds `other` before its clip; the
    Conv must be pointwise, the only kernel with a residual epilogue.

    Of the Add's two inputs, the later-computed conv absorbs it, so the other input is
    ready when it runs; a conv computed before the other input never does."""
    changed = False
    for add in [layer for layer in graph.layers if layer.op == "Add"]:
        candidates = []
        for index, name in enumerate(add.inputs):
            producer = graph.producer_of(name)
            # only the pointwise kernel has a residual epilogue (direct and depthwise have none),
            # and the other input must be computed before the conv that would read it
            if _fusable(graph, producer, add, needs_no_clip=True) and producer.conv_kind == "pointwise" \
                    and _computed_before(graph, add.inputs[1 - index], producer):
                candidates.append((graph.layers.index(producer), producer, add.inputs[1 - index]))
        if candidates:
            _, conv, other = max(candidates, key=lambda c: c[0])
            conv.residual = other
            _absorb(graph, conv, add)
            changed = True
        elif strict:
            raise UnsupportedOperatorError(add.name, "Add", ("Conv -> Add",),
                                           "Add is only supported as a residual add after a 1x1 Conv (stride 1, "
                                           "no padding) with no activation whose output nothing else reads")
    return changed


def check_executable(graph: Graph) -> None:
    for layer in graph.layers:
        if layer.op not in EXECUTABLE_OPS:
            raise UnsupportedOperatorError(layer.name, layer.op, EXECUTABLE_OPS, "left over after the passes")


def check_layouts(graph: Graph) -> None:
    """Every image a Conv or GlobalAveragePool reads (its input, a conv's residual) is stored
    as an image (Graph.layout_of: the graph input or a conv's output), so the plan can hand it
    to the kernel in the layout that kernel reads; a pooled (C, 1, 1) vector is stored flat,
    and the plan has no conversion from flat to an image (a squeeze-and-excitation's 1x1 conv
    reads one)."""
    for layer in graph.layers:
        if layer.op not in ("Conv", "GlobalAveragePool"):
            continue
        for tensor in (layer.inputs[0], layer.residual):
            if tensor is not None and graph.layout_of(tensor) not in IMAGE_LAYOUTS:
                producer = graph.producer_of(tensor)
                raise UnsupportedOperatorError(
                    layer.name, layer.op, EXECUTABLE_OPS,
                    f"it reads {tensor!r}, the pooled vector of {producer.name!r} ({producer.op}): a {layer.op} "
                    "is only supported on the graph input or a Conv's output")


def check_finite_weights(graph: Graph) -> None:
    """Every weight and bias (BatchNormalization folded in) is finite: the kernels are compiled
    with fast-math flags that assume it, so a NaN or Inf would give unspecified outputs (and a
    zero-padded tap times Inf is NaN where ONNX Runtime skips the tap)."""
    for layer in graph.layers:
        for what, array in (("weight", layer.weight), ("bias", layer.bias)):
            if array is not None and not np.isfinite(array).all():     # one pass over every weight, at load
                count = int(array.size - np.isfinite(array).sum())
                raise ModelError(f"layer {layer.name!r} ({layer.op}): {count} of its {what} values are NaN or "
                                 "infinite (BatchNormalization folded in); the kernels need finite weights")


def run_passes(graph: Graph) -> Graph:
    """The standard pipeline: fold BN and Pad, then fuse residual adds and activations
    (alternating, since a Clip after an Add fuses once the Add has), then check that every
    layer has a kernel, reads its inputs in a layout the plan can give it, and has finite
    weights."""
    fold_batchnorm(graph)
    fold_pad(graph)
    while fuse_activation(graph, strict=False) | fuse_residual_add(graph, strict=False):
        pass
    fuse_activation(graph)
    fuse_residual_add(graph)
    check_executable(graph)
    check_layouts(graph)
    check_finite_weights(graph)
    return graph


def find_inverted_residual_blocks(graph: Graph) -> list[tuple[Layer | None, Layer, Layer]]:
    """(expand or None, depthwise, project) triples the fused-block kernel can run.

    A block is a depthwise 3x3 conv (pad 1 on every side, stride 1 or 2) whose output only a
    pointwise conv (the projection) reads, optionally fed by a pointwise conv (the expansion)
    whose output only the depthwise reads. Every clip must contain 0 (padded lanes stay 0).
    """
    blocks = []
    claimed: set[int] = set()      # ids of layers already in a block: a layer joins one block at most
    for depthwise in graph.layers:
        if depthwise.conv_kind != "depthwise" or depthwise.attrs["kernel_shape"] != (3, 3) \
                or depthwise.attrs["pads"] != (1, 1, 1, 1) or depthwise.attrs["strides"] not in ((1, 1), (2, 2)):
            continue
        project = _sole_consumer(graph, depthwise)
        if project is None or project.conv_kind != "pointwise" or project.inputs[0] != depthwise.output:
            continue
        expand = graph.producer_of(depthwise.inputs[0])
        if expand is None or expand.conv_kind != "pointwise" or _sole_consumer(graph, expand) is not depthwise \
                or expand.residual is not None or id(expand) in claimed:
            expand = None       # (MobileNetV1: the previous block's projection is not also this expansion)
        if any(not layer.clip[0] <= 0 <= layer.clip[1] for layer in (expand, depthwise, project) if layer):
            continue
        blocks.append((expand, depthwise, project))
        claimed.update(id(layer) for layer in (expand, depthwise, project) if layer is not None)
    return blocks
