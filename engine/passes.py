"""Graph passes run after import: fold BatchNormalization and Pad into convolutions,
recognise gated activations (x * sigmoid(x) -> silu, x * hardsigmoid(x) -> hardswish) and
squeeze-and-excitation blocks, fuse activations and residual Adds into the conv epilogue,
and reject what is left over that no kernel runs. Each pass rewrites `graph.layers` in
place."""
from __future__ import annotations

import numpy as np

from engine.errors import ModelError, UnsupportedOperatorError
from engine.graph import IMAGE_LAYOUTS, NO_CLIP, Graph, Layer
from engine.kernels.activation import NO_ACTIVATION, ZERO_PRESERVING

EXECUTABLE_OPS = ("Conv", "GlobalAveragePool", "MaxPool", "SqueezeExcite", "Activation", "Flatten", "Linear")
# The layers whose kernels read their input (and a conv its residual) as an image.
IMAGE_READERS = ("Conv", "GlobalAveragePool", "MaxPool", "SqueezeExcite")
# The conv kinds whose kernels have a residual epilogue.
RESIDUAL_CONV_KINDS = ("pointwise", "dense")
# x * gate(x) -> activation(x): the gate's activation and the product's.
GATED = {"sigmoid": "silu", "hardsigmoid": "hardswish"}


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
    """True if `consumer` can become `producer`'s epilogue: a Conv whose only reader it is
    (with `needs_no_clip`: one with nothing in its epilogue yet after the bias, since a
    residual comes before the activation and the clip)."""
    return (producer is not None and producer.op == "Conv"
            and not (needs_no_clip and (producer.clip != NO_CLIP or producer.residual is not None
                                        or producer.activation != NO_ACTIVATION))
            and _sole_consumer(graph, producer) is consumer)


def _combined_clip(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float]:
    """clip(clip(v, first), second) as one clip."""
    low = max(first[0], second[0])
    return (low, max(low, min(first[1], second[1])))


def _absorbs_activation(graph: Graph, producer: Layer | None, layer: Layer) -> bool:
    """Whether `producer` can take over `layer` (a Clip, or an Activation with its clip) as
    its epilogue: the epilogue order is activation then clip, so an activation joins only a
    producer with neither yet; a conv takes only zero-preserving activations (padded lanes
    stay 0), a Linear (flat output, no clip in its kernel) any activation but no clip; a clip
    joins a conv or a stand-alone Activation."""
    if producer is None or _sole_consumer(graph, producer) is not layer:
        return False
    if layer.activation == NO_ACTIVATION:
        return producer.op in ("Conv", "Activation")
    if producer.activation != NO_ACTIVATION or producer.clip != NO_CLIP:
        return False
    if producer.op == "Conv":
        return layer.activation[0] in ZERO_PRESERVING
    return producer.op == "Linear" and layer.clip == NO_CLIP


def fuse_activation(graph: Graph, strict: bool = True) -> bool:
    """Conv -> Clip/Relu becomes a Conv with a clip epilogue (two clips combine); Conv ->
    Activation (hardswish, silu: zero-preserving) a Conv with that activation, Linear ->
    Activation (any) a Linear with it; a Clip after an activation joins it as its clip.

    Returns whether anything was fused; with `strict` (the last round), a Clip that cannot
    be fused becomes a stand-alone Activation layer (engine.kernels.elementwise), as every
    Activation left over already is."""
    changed = False
    for layer in [layer for layer in graph.layers if layer.op in ("Clip", "Activation")]:
        producer = graph.producer_of(layer.inputs[0])
        if _absorbs_activation(graph, producer, layer):
            if layer.activation != NO_ACTIVATION:
                producer.activation = layer.activation
            producer.clip = _combined_clip(producer.clip, layer.clip)
            _absorb(graph, producer, layer)
            changed = True
        elif strict and layer.op == "Clip":
            layer.op = "Activation"
    return changed


def fuse_gated_activations(graph: Graph) -> None:
    """Mul(x, Sigmoid(x)) becomes Activation silu(x), Mul(x, HardSigmoid(x)) Activation
    hardswish(x) with that HardSigmoid's alpha and beta (either operand order), when the
    Mul is the gate's only reader (older exporters' HardSwish, every exporter's SiLU)."""
    for mul in [layer for layer in graph.layers if layer.op == "Mul" and layer.attrs["scale_input"] is None]:
        for index in (0, 1):
            gate, x = graph.producer_of(mul.inputs[index]), mul.inputs[1 - index]
            if gate is not None and gate.op == "Activation" and gate.activation[0] in GATED \
                    and gate.clip == NO_CLIP and gate.inputs[0] == x and _sole_consumer(graph, gate) is mul:
                name, alpha, beta = gate.activation
                mul.op, mul.inputs, mul.attrs = "Activation", [x], {}
                mul.activation = (GATED[name], alpha, beta) if name == "hardsigmoid" else (GATED[name], 0.0, 0.0)
                mul.sources[:0] = gate.sources
                graph.layers.remove(gate)
                break


def _is_plain_1x1(layer: Layer | None) -> bool:
    """A 1x1 conv (stride 1, unpadded) with nothing in its epilogue but its bias."""
    return (layer is not None and layer.conv_kind == "pointwise" and layer.clip == NO_CLIP
            and layer.activation == NO_ACTIVATION and layer.residual is None)


def _is_gate(layer: Layer) -> bool:
    return layer.op == "Activation" and layer.activation[0] in ("hardsigmoid", "sigmoid") and layer.clip == NO_CLIP


def _is_hidden_activation(layer: Layer) -> bool:
    """ReLU / Clip, or an Activation (SiLU; the hidden vector has no padded lanes to keep 0)."""
    return layer.op in ("Clip", "Activation")


def _is_keepdims_pool(layer: Layer) -> bool:
    return layer.op == "GlobalAveragePool" and layer.output_shape == (layer.input_shape[0], 1, 1)


def _squeeze_excite_chain(graph: Graph, mul: Layer, scaled: int) -> list[Layer] | None:
    """[pool, reduce, hidden, expand, gate] of a squeeze-and-excitation ending in `mul`, its
    input `scaled` the gate, or None: mul = x * gate(expand(hidden(reduce(pool(x))))), each
    link read only by the next."""
    x = mul.inputs[1 - scaled]
    chain = []
    tensor, reader = mul.inputs[scaled], mul
    for accepts in (_is_gate, _is_plain_1x1, _is_hidden_activation, _is_plain_1x1, _is_keepdims_pool):
        layer = graph.producer_of(tensor)
        if layer is None or not accepts(layer) or _sole_consumer(graph, layer) is not reader:
            return None
        chain.insert(0, layer)
        tensor, reader = layer.inputs[0], layer
    return chain if chain[0].inputs[0] == x else None


def fuse_squeeze_excite(graph: Graph) -> None:
    """Squeeze-and-excitation: Mul(x, gate) [either order] where gate = HardSigmoid/Sigmoid of
    a 1x1 Conv of ReLU/Clip or an Activation (SiLU) of a 1x1 Conv of
    GlobalAveragePool / ReduceMean(keepdims=1) of x becomes one "SqueezeExcite" layer
    (engine.kernels.squeeze_excite): its attrs hold w1 (S, C), b1 (S,), w2 (C, S), b2 (C,),
    hidden_activation, hidden_clip and gate_activation. It runs before fuse_activation
    (the hidden ReLU must still be a layer of its own) and check_layouts (a conv reading a
    pooled vector is refused there: this is the one pattern that does)."""
    for mul in [layer for layer in graph.layers if layer.op == "Mul"]:
        scaled = mul.attrs["scale_input"]
        # where the image is 1x1 (a small input's last stages), x and the gate have one shape
        tries = (scaled,) if scaled is not None else (0, 1) if mul.output_shape[1:] == (1, 1) else ()
        chain = next((chain for index in tries if (chain := _squeeze_excite_chain(graph, mul, index))), None)
        if chain is None:
            continue
        pool, reduce, hidden, expand, gate = chain
        channels, squeezed = reduce.input_shape[0], reduce.output_shape[0]
        zeros = np.zeros
        mul.attrs = {
            "w1": np.ascontiguousarray(reduce.weight.reshape(squeezed, channels), np.float32),
            "b1": reduce.bias if reduce.bias is not None else zeros(squeezed, np.float32),
            "w2": np.ascontiguousarray(expand.weight.reshape(channels, squeezed), np.float32),
            "b2": expand.bias if expand.bias is not None else zeros(channels, np.float32),
            "hidden_activation": hidden.activation, "hidden_clip": hidden.clip,
            "gate_activation": gate.activation, "squeezed": squeezed}
        mul.op, mul.inputs = "SqueezeExcite", [pool.inputs[0]]
        mul.sources[:0] = [source for layer in chain for source in layer.sources]
        for layer in chain:
            graph.layers.remove(layer)


def route_convs(graph: Graph) -> None:
    """Mark the convs that read the graph input (stored NCHW; through stand-alone
    activations too) as stems: a dense one runs on the direct kernel, which reads NCHW and
    suits few input channels (Layer.conv_kind)."""
    for layer in graph.layers:
        if layer.op == "Conv":
            layer.attrs["stem"] = graph.layout_of(layer.inputs[0]) == "nchw"


def _computed_before(graph: Graph, tensor: str, layer: Layer) -> bool:
    """True if `tensor` is the graph input or written by a layer that runs before `layer`."""
    producer = graph.producer_of(tensor)
    return producer is None or graph.layers.index(producer) < graph.layers.index(layer)


def fuse_residual_add(graph: Graph, strict: bool = True) -> bool:
    """Conv -> Add(other) becomes a Conv whose epilogue adds `other` before its activation
    and clip; the Conv must be pointwise or dense (RESIDUAL_CONV_KINDS: the kernels with a
    residual epilogue; ResNet's blocks end in a 3x3 or strided 1x1 conv + Add + ReLU).

    Of the Add's two inputs, the later-computed conv absorbs it, so the other input is
    ready when it runs; a conv computed before the other input never does."""
    changed = False
    for add in [layer for layer in graph.layers if layer.op == "Add"]:
        candidates = []
        for index, name in enumerate(add.inputs):
            producer = graph.producer_of(name)
            # only the pointwise and dense kernels have a residual epilogue (direct and depthwise
            # have none), and the other input must be computed before the conv that would read it
            if _fusable(graph, producer, add, needs_no_clip=True) and producer.conv_kind in RESIDUAL_CONV_KINDS \
                    and _computed_before(graph, add.inputs[1 - index], producer):
                candidates.append((graph.layers.index(producer), producer, add.inputs[1 - index]))
        if candidates:
            _, conv, other = max(candidates, key=lambda c: c[0])
            conv.residual = other
            _absorb(graph, conv, add)
            changed = True
        elif strict:
            raise UnsupportedOperatorError(add.name, "Add", ("Conv -> Add",),
                                           "Add is only supported as a residual add after a Conv (1x1, or dense "
                                           "on a conv's output; not depthwise, dilated or the stem) with no "
                                           "activation whose output nothing else reads")
    return changed


def check_executable(graph: Graph) -> None:
    """Every layer left has a kernel (EXECUTABLE_OPS)."""
    for layer in graph.layers:
        if layer.op == "Mul":
            raise UnsupportedOperatorError(layer.name, "Mul", EXECUTABLE_OPS,
                                           "a Mul is only supported as x * Sigmoid(x) (SiLU), x * HardSigmoid(x) "
                                           "(HardSwish) or a squeeze-and-excitation's per-channel gate")
        if layer.op not in EXECUTABLE_OPS:
            raise UnsupportedOperatorError(layer.name, layer.op, EXECUTABLE_OPS, "left over after the passes")


def check_layouts(graph: Graph) -> None:
    """Every image a Conv, pool or squeeze-and-excitation reads (its input, a conv's residual)
    is stored as an image (Graph.layout_of: the graph input, a conv's, max pool's or
    squeeze-and-excitation's output, or an activation of one), so the plan can hand it to
    the kernel in the layout that kernel reads; a pooled (C, 1, 1) vector is stored flat,
    and the plan has no conversion from flat to an image (a conv reading one outside a
    squeeze-and-excitation pattern is refused)."""
    for layer in graph.layers:
        if layer.op not in IMAGE_READERS:
            continue
        for tensor in (layer.inputs[0], layer.residual):
            if tensor is not None and graph.layout_of(tensor) not in IMAGE_LAYOUTS:
                producer = graph.producer_of(tensor)
                what = "the pooled vector" if producer.op == "GlobalAveragePool" else "the flat output"
                raise UnsupportedOperatorError(
                    layer.name, layer.op, EXECUTABLE_OPS,
                    f"it reads {tensor!r}, {what} of {producer.name!r} ({producer.op}): a {layer.op} is only "
                    "supported on the graph input or a Conv's, MaxPool's or squeeze-and-excitation's output")


def check_finite_weights(graph: Graph) -> None:
    """Every weight and bias (BatchNormalization folded in) is finite: the kernels are compiled
    with fast-math flags that assume it, so a NaN or Inf would give unspecified outputs (and a
    zero-padded tap times Inf is NaN where ONNX Runtime skips the tap)."""
    for layer in graph.layers:
        arrays = [("weight", layer.weight), ("bias", layer.bias)]
        arrays += [(key, value) for key, value in layer.attrs.items() if isinstance(value, np.ndarray)]
        for what, array in arrays:
            if array is not None and not np.isfinite(array).all():     # one pass over every weight, at load
                count = int(array.size - np.isfinite(array).sum())
                raise ModelError(f"layer {layer.name!r} ({layer.op}): {count} of its {what} values are NaN or "
                                 "infinite (BatchNormalization folded in); the kernels need finite weights")


def run_passes(graph: Graph) -> Graph:
    """The standard pipeline: fold BN and Pad; recognise gated activations, then
    squeeze-and-excitation blocks (whose hidden activation may be a gated one); mark the
    stems; fuse residual adds and activations (alternating, since a Clip after an Add fuses
    once the Add has; a Clip left over runs stand-alone); then check that every layer has a
    kernel, reads its inputs in a layout the plan can give it, and has finite weights."""
    fold_batchnorm(graph)
    fold_pad(graph)
    fuse_gated_activations(graph)
    fuse_squeeze_excite(graph)
    route_convs(graph)
    while fuse_activation(graph, strict=False) | fuse_residual_add(graph, strict=False):
        pass
    fuse_activation(graph)
    fuse_residual_add(graph)
    check_executable(graph)
    check_layouts(graph)
    check_finite_weights(graph)
    return graph


def _expansion_of(graph: Graph, depthwise: Layer, claimed: set[int]) -> Layer | None:
    """The pointwise conv that feeds `depthwise` and nothing else, without a residual and in
    no block yet (ids in `claimed`), or None (MobileNetV1: the previous block's projection
    is not also this block's expansion)."""
    expand = graph.producer_of(depthwise.inputs[0])
    if expand is None or expand.conv_kind != "pointwise" or _sole_consumer(graph, expand) is not depthwise \
            or expand.residual is not None or id(expand) in claimed:
        return None
    return expand


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
        expand = _expansion_of(graph, depthwise, claimed)
        if any(not layer.clip[0] <= 0 <= layer.clip[1] for layer in (expand, depthwise, project) if layer):
            continue
        blocks.append((expand, depthwise, project))
        claimed.update(id(layer) for layer in (expand, depthwise, project) if layer is not None)
    return blocks


def find_squeeze_excite_blocks(graph: Graph, claimed: set[int] | None = None) \
        -> list[tuple[Layer | None, Layer, Layer, Layer]]:
    """(expand or None, depthwise, project, squeeze-excite) quadruples the fused
    squeeze-and-excitation block kernel (engine.kernels.fused_se_block) can run: a
    depthwise conv (square odd kernel k, pad k // 2 on every side, stride 1 or 2) whose
    output only a SqueezeExcite reads, whose output only a pointwise conv (the projection)
    reads, optionally fed by a pointwise conv (the expansion) whose output only the
    depthwise reads. Every conv's clip must contain 0 (padded lanes stay 0). The project
    is third, as in find_inverted_residual_blocks' triples: a block is named after it.
    `claimed`: ids of layers already in another block (none of them joins one here)."""
    blocks = []
    claimed = set(claimed or ())
    for se in graph.layers:
        if se.op != "SqueezeExcite":
            continue
        depthwise = graph.producer_of(se.inputs[0])
        if depthwise is None or depthwise.conv_kind != "depthwise" or _sole_consumer(graph, depthwise) is not se:
            continue
        kh, kw = depthwise.attrs["kernel_shape"]
        if kh != kw or kh % 2 == 0 or depthwise.attrs["pads"] != (kh // 2,) * 4 \
                or depthwise.attrs["strides"] not in ((1, 1), (2, 2)):
            continue
        project = _sole_consumer(graph, se)
        if project is None or project.conv_kind != "pointwise" or project.inputs[0] != se.output:
            continue
        expand = _expansion_of(graph, depthwise, claimed)
        if any(not layer.clip[0] <= 0 <= layer.clip[1] for layer in (expand, depthwise, project) if layer) \
                or any(id(layer) in claimed for layer in (depthwise, project, se)):
            continue
        blocks.append((expand, depthwise, project, se))
        claimed.update(id(layer) for layer in (expand, depthwise, project, se) if layer is not None)
    return blocks


def find_fusable_blocks(graph: Graph) -> list[tuple]:
    """Every block a plan may run fused: find_inverted_residual_blocks' triples, then
    find_squeeze_excite_blocks' quadruples (project third in both: the block's name)."""
    blocks = find_inverted_residual_blocks(graph)
    claimed = {id(layer) for block in blocks for layer in block if layer is not None}
    return blocks + find_squeeze_excite_blocks(graph, claimed)
