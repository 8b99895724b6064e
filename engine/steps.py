"""Plan steps: what a plan runs (`Step`), the items a plan is made of (a layout change, a
layer, a fused block), and one builder per kind of item in a registry (`STEP_BUILDERS`),
like the importer's HANDLERS: adding an op is an importer handler, a kernel and a builder.

A builder turns an item into a Step: it picks the kernel, binds it to the plan's buffers
and packed weights once (engine.kernels._common.bind: checked now, never again per run),
and records the step's FLOPs and modelled bytes per memory level (the kernel's *_bytes).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine.config import RunConfig
from engine.fusion import BlockScratch, block_rows_for, block_scratch_use
from engine.graph import Graph, Layer
from engine.kernels import (conv_nchwc, depthwise, direct_conv, elementwise, fused_block, linear, pointwise, pooling,
                            fused_se_block, squeeze_excite)
from engine.kernels._common import bind
from engine.kernels.activation import NO_ACTIVATION, activation_flops
from engine.kernels.layout import nchw_to_nchwc, nchwc_to_nchw
from engine.tiles import BLOCK_FIELDS, DEPTHWISE_FIELDS, POINTWISE_FIELDS, Tiles
from engine.traffic import LEVELS
from engine.weights import PackedWeights


@dataclass
class Step:
    """One kernel call. `flops` counts 2 per multiply-accumulate of the conv/linear part,
    `other_flops` the bias, activation, residual and pooling arithmetic, both per batch."""

    name: str
    op: str                               # stem, conv, depthwise, expand, project, pointwise, block,
                                          # pool, maxpool, se, activation, flatten, linear, layout
    input_shape: tuple[int, ...]          # with batch
    output_shape: tuple[int, ...]         # with batch
    flops: int
    other_flops: int
    call: Callable[[], None]
    bytes: dict                           # modelled bytes per memory level (engine.traffic)
    tiles: Tiles | None = None            # the tiles this step runs with (build_plan sets them)
    tile_fields: tuple[str, ...] = ()     # the Tiles fields its kernel reads (engine.tiles)
    layer: Layer | None = None
    inputs: tuple[str, ...] = ()
    output: str = ""
    members: tuple[str, ...] = ()         # the layers it runs, in execution order: (name,) unless a fused block
    fused: bool = False                   # a fused inverted-residual block
    block_rows: int | None = None          # fused block: output rows per band
    stride: int | None = None             # fused block: the depthwise's stride
    expand_recompute: float | None = None  # fused block: expanded rows computed / input rows
    scratch: BlockScratch | None = None   # fused block: the per-worker scratch its kernel uses
    ahead: np.ndarray | None = None       # 1x1 conv: the later weights it prefetches while it runs
    in_place: bool = False                # writes its output over its input (one buffer for both;
                                          # build_plan decides: a squeeze-and-excitation nothing later reads)

    def __post_init__(self):
        if not self.members:
            self.members = (self.name,)

    @functools.cached_property
    def record_fields(self) -> tuple:
        """What every LayerRecord of this step shares, computed once."""
        return (self.name, self.op, tuple(self.input_shape), tuple(self.output_shape), self.tiles.as_dict(),
                self.fused, self.flops, self.other_flops, self.bytes, self.members, self.tile_fields)


# ---------------------------------------------------------------- the items of a plan

@dataclass(frozen=True)
class Convert:
    """Copy `tensor` into `layout` ("nchw" or "nchwc") for the layers that read it so."""

    tensor: str
    layout: str


@dataclass(frozen=True)
class LayerItem:
    """One layer, run by its own kernel."""

    layer: Layer


@dataclass(frozen=True)
class Block:
    """A block run fused: expand (or None), depthwise, project, and the squeeze-and-excitation
    between depthwise and project (or None: an inverted-residual block)."""

    expand: Layer | None
    depthwise: Layer
    project: Layer
    se: Layer | None = None

    @property
    def layers(self) -> tuple:
        """Its layers in execution order: (expand, depthwise, project), the squeeze-excite
        (where there is one) between depthwise and project."""
        return (self.expand, self.depthwise) + ((self.se,) if self.se is not None else ()) + (self.project,)


def item_kind(item) -> str:
    """The STEP_BUILDERS key of an item: "convert", "block", a conv kind ("pointwise",
    "depthwise", "dense", "direct") or the layer's op."""
    if isinstance(item, Convert):
        return "convert"
    if isinstance(item, Block):
        return "block"
    layer = item.layer
    return layer.conv_kind if layer.op == "Conv" else layer.op


@dataclass
class StepContext:
    """What every builder may use: the graph, its packed weights, the plan's buffers by
    tensor (and by `key(tensor, layout)` for converted copies), the config and batch, and
    the fused blocks' shared per-thread scratch."""

    graph: Graph
    weights: PackedWeights
    buffers: dict[str, np.ndarray]
    key: Callable[[str, str], str]
    config: RunConfig
    batch: int
    scratch: tuple | None


def build_step(item, context: StepContext, ahead: np.ndarray | None) -> Step:
    """The Step for `item`; `ahead`: the packed weights of the next weighted step, which a
    1x1 conv prefetches while it runs (None: nothing to prefetch)."""
    return STEP_BUILDERS[item_kind(item)](item, context, ahead)


# ---------------------------------------------------------------- builders

def _convert(item: Convert, ctx: StepContext, ahead) -> Step:
    source, target = ctx.buffers[item.tensor], ctx.buffers[ctx.key(item.tensor, item.layout)]
    call = bind(nchw_to_nchwc if item.layout == "nchwc" else nchwc_to_nchw, source, target)
    moved = 4 * (source.size + target.size)
    return Step(name=f"{item.tensor} to {item.layout}", op="layout", input_shape=source.shape,
                output_shape=target.shape, flops=0, other_flops=0, call=call, bytes={lv: moved for lv in LEVELS},
                inputs=(item.tensor,), output=ctx.key(item.tensor, item.layout))


def _epilogue_flops(layer: Layer, batch: int) -> int:
    """Bias, clip and residual add: one FLOP each per output element; the activation its
    activation_flops per element."""
    return batch * int(np.prod(layer.output_shape)) * (1 + (layer.residual is not None)
                                                       + (layer.clip != (-math.inf, math.inf))
                                                       + activation_flops(layer.activation))


def _conv_step(layer: Layer, ctx: StepContext, op: str, x: np.ndarray, flops: int, moved: dict, call,
               ahead=None, tile_fields: tuple[str, ...] = (), tiles: Tiles | None = None) -> Step:
    """tiles: what the kernel runs with where it differs from the schedule's (else the plan sets them)."""
    out = ctx.buffers[layer.output]
    return Step(name=layer.name, op=op, input_shape=x.shape, output_shape=out.shape, flops=flops,
                other_flops=_epilogue_flops(layer, ctx.batch), call=call, bytes=moved, layer=layer,
                inputs=tuple(layer.inputs), output=layer.output, ahead=ahead, tile_fields=tile_fields, tiles=tiles)


def pointwise_role(layer: Layer) -> str:
    """"project" (narrows, or adds a residual), "expand" (widens) or "pointwise"."""
    if layer.residual is not None or layer.output_shape[0] < layer.input_shape[0]:
        return "project"
    if layer.output_shape[0] > layer.input_shape[0]:
        return "expand"
    return "pointwise"


def _pointwise(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    tiles = ctx.config.tiles.tiles_for(layer.name)
    (cin, h, w), (cout, _, _) = layer.input_shape, layer.output_shape
    x = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")]
    residual = ctx.buffers[ctx.key(layer.residual, "nchwc")] if layer.residual else None
    packed_w, packed_b = ctx.weights.by_layer[layer.name]
    low, high = layer.clip
    call = bind(pointwise.pointwise_conv, x, packed_w, packed_b, ctx.buffers[layer.output], float(low), float(high),
                residual, tiles.pointwise_pixels, tiles.pointwise_channels, ahead, activation=layer.activation)
    moved = pointwise.pointwise_bytes(batch, cin, cout, h, w, tiles.pointwise_pixels, tiles.pointwise_channels,
                                      layer.residual is not None, ctx.config.budget, ctx.config.threads)
    return _conv_step(layer, ctx, pointwise_role(layer), x, pointwise.pointwise_flops(batch, cin, cout, h, w), moved,
                      call, ahead, POINTWISE_FIELDS)


def _depthwise(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    (_, h, w), (cout, ho, wo) = layer.input_shape, layer.output_shape
    kh, kw = layer.attrs["kernel_shape"]
    sh, sw = layer.attrs["strides"]
    top, left = layer.attrs["pads"][:2]
    rows = ctx.config.tiles.tiles_for(layer.name).depthwise_rows
    x = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")]
    packed_w, packed_b = ctx.weights.by_layer[layer.name]
    low, high = layer.clip
    call = bind(depthwise.depthwise_conv, x, packed_w, packed_b, ctx.buffers[layer.output], sh, sw, top, left,
                float(low), float(high), rows, activation=layer.activation)
    moved = depthwise.depthwise_bytes(batch, cout, h, w, ho, wo, kh, kw, sh, rows, ctx.config.budget)
    return _conv_step(layer, ctx, "depthwise", x, depthwise.depthwise_flops(batch, cout, ho, wo, kh, kw), moved, call,
                      tile_fields=DEPTHWISE_FIELDS)


def _direct(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    (cin, h, w), (cout, ho, wo) = layer.input_shape, layer.output_shape
    kh, kw = layer.attrs["kernel_shape"]
    sh, sw = layer.attrs["strides"]
    dh, dw = layer.attrs["dilations"]
    top, left = layer.attrs["pads"][:2]
    x = ctx.buffers[ctx.key(layer.inputs[0], "nchw")]
    packed_w, packed_b = ctx.weights.by_layer[layer.name]
    low, high = layer.clip
    call = bind(direct_conv.direct_conv, x, packed_w, packed_b, ctx.buffers[layer.output], sh, sw, top, left, dh, dw,
                float(low), float(high), activation=layer.activation)
    moved = direct_conv.direct_conv_bytes(batch, cin, cout, h, w, ho, wo, kh, kw, sh, ctx.config.budget)
    op = "stem" if layer.attrs.get("stem") else "conv"        # (engine.passes.route_convs)
    return _conv_step(layer, ctx, op, x, direct_conv.direct_conv_flops(batch, cin, cout, ho, wo, kh, kw), moved, call)


def dense_item_channels(layer: Layer, tiles: Tiles, batch: int) -> int:
    """Output channels per work item a dense conv `layer` runs with under `tiles` at `batch`:
    tiles.pointwise_channels as conv_nchwc.item_channels widens and rounds it."""
    cout, out_h, out_w = layer.output_shape
    kh, kw = layer.attrs["kernel_shape"]
    pixel_tiles = -(-batch * out_h * out_w // tiles.pointwise_pixels)
    return conv_nchwc.item_channels(tiles.pointwise_channels, cout, max(layer.attrs["strides"]), kh * kw, pixel_tiles)


def _dense(item: LayerItem, ctx: StepContext, ahead) -> Step:
    """A dense (group 1) conv on a conv's NCHWc output: engine.kernels.conv_nchwc, with the
    pointwise tiles as its work split (the channel tile rounded to whole divisors of the
    layer's output blocks: conv_nchwc.item_channels)."""
    layer, batch = item.layer, ctx.batch
    tiles = ctx.config.tiles.tiles_for(layer.name)
    (cin, h, w), (cout, ho, wo) = layer.input_shape, layer.output_shape
    kh, kw = layer.attrs["kernel_shape"]
    sh, sw = layer.attrs["strides"]
    top, left = layer.attrs["pads"][:2]
    x = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")]
    residual = ctx.buffers[ctx.key(layer.residual, "nchwc")] if layer.residual else None
    packed_w, packed_b = ctx.weights.by_layer[layer.name]
    low, high = layer.clip
    channels = dense_item_channels(layer, tiles, batch)
    call = bind(conv_nchwc.conv_nchwc, x, packed_w, packed_b, ctx.buffers[layer.output], sh, sw, top, left,
                float(low), float(high), residual, tiles.pointwise_pixels, channels, activation=layer.activation)
    moved = conv_nchwc.conv_nchwc_bytes(batch, cin, cout, h, w, ho, wo, kh, kw, sh, ctx.config.budget,
                                        tiles.pointwise_pixels, channels, layer.residual is not None)
    ran = Tiles(**{**tiles.as_dict(), "pointwise_channels": channels})      # what its records say
    return _conv_step(layer, ctx, "conv", x, conv_nchwc.conv_nchwc_flops(batch, cin, cout, ho, wo, kh, kw), moved,
                      call, tile_fields=POINTWISE_FIELDS, tiles=ran)


def _max_pool(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    (channels, h, w), (_, ho, wo) = layer.input_shape, layer.output_shape
    kh, kw = layer.attrs["kernel_shape"]
    sh, sw = layer.attrs["strides"]
    top, left = layer.attrs["pads"][:2]
    x, out = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")], ctx.buffers[layer.output]
    call = bind(pooling.max_pool, x, out, kh, kw, sh, sw, top, left)
    return Step(name=layer.name, op="maxpool", input_shape=x.shape, output_shape=out.shape, flops=0,
                other_flops=pooling.max_pool_flops(batch, channels, ho, wo, kh, kw), call=call,
                bytes=pooling.max_pool_bytes(batch, channels, h, w, ho, wo, kh, kw, sh, sw,
                                                       ctx.config.budget),
                layer=layer, inputs=tuple(layer.inputs), output=layer.output)


def _squeeze_excite_flops(batch: int, channels: int, squeezed: int, h: int, w: int, hidden_activation,
                          gate_activation) -> tuple[int, int]:
    """(flops, other_flops) of a squeeze-and-excitation step: its two 1x1 convs (2 per
    multiply-accumulate, batch * 2 * squeezed * channels of them) as the conv part; the rest
    of squeeze_excite_flops (pool and scaling) and the two activations as the other part.
    Here, not beside the kernel, only because engine/kernels/squeeze_excite.py had another
    owner when this was written: it belongs there."""
    total = squeeze_excite.squeeze_excite_flops(batch, channels, squeezed, h, w)
    matmuls = 2 * batch * 2 * squeezed * channels
    other = (total - matmuls + batch * squeezed * activation_flops(hidden_activation)
             + batch * channels * activation_flops(gate_activation))
    return matmuls, other


def _squeeze_excite(item: LayerItem, ctx: StepContext, ahead) -> Step:
    """A squeeze-and-excitation block (engine.passes.fuse_squeeze_excite) in one kernel."""
    layer, batch = item.layer, ctx.batch
    channels, h, w = layer.input_shape
    squeezed = layer.attrs["squeezed"]
    x, out = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")], ctx.buffers[layer.output]
    call = bind(squeeze_excite.squeeze_excite, x, ctx.weights.by_layer[layer.name], out,
                hidden_activation=layer.attrs["hidden_activation"], hidden_clip=layer.attrs["hidden_clip"],
                gate_activation=layer.attrs["gate_activation"])
    matmuls, other = _squeeze_excite_flops(batch, channels, squeezed, h, w, layer.attrs["hidden_activation"],
                                           layer.attrs["gate_activation"])
    return Step(name=layer.name, op="se", input_shape=x.shape, output_shape=out.shape, flops=matmuls,
                other_flops=other,
                call=call, bytes=squeeze_excite.squeeze_excite_bytes(batch, channels, squeezed, h, w,
                                                                     ctx.config.budget),
                layer=layer, inputs=tuple(layer.inputs), output=layer.output)


def _activation(item: LayerItem, ctx: StepContext, ahead) -> Step:
    """A stand-alone activation (and clip), on a tensor in whatever layout it is stored: an
    NCHWc one block-wise (padded lanes stay 0), the others as flat rows (the NCHW graph
    input as (N, C*H*W))."""
    layer, batch = item.layer, ctx.batch
    x, out = ctx.buffers[layer.inputs[0]], ctx.buffers[layer.output]
    blocked = ctx.graph.layout_of(layer.output) == "nchwc"
    if blocked:
        channels, h, w = layer.output_shape
    else:
        # the true feature count: a pooled vector's buffer is padded to whole blocks, and its
        # padded columns must stay 0 (not f(0): sigmoid's 1/2)
        x, out = x.reshape(batch, -1), out.reshape(batch, -1)
        channels, h, w = int(np.prod(layer.output_shape)), 1, 1
    call = bind(elementwise.activation_step, x, out, channels, activation=layer.activation, clip=layer.clip)
    elements = int(np.prod(layer.output_shape))
    return Step(name=layer.name, op="activation", input_shape=x.shape, output_shape=out.shape, flops=0,
                other_flops=elementwise.activation_step_flops(batch, elements, 1, 1, layer.activation, layer.clip),
                call=call, bytes=elementwise.activation_step_bytes(batch, channels if blocked else x.shape[1], h, w,
                                                               ctx.config.budget, blocked),
                layer=layer, inputs=tuple(layer.inputs), output=layer.output)


def _global_average_pool(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    x, out = ctx.buffers[ctx.key(layer.inputs[0], "nchwc")], ctx.buffers[layer.output]
    channels, height, width = layer.input_shape
    call = bind(pooling.global_average_pool, x, out.reshape(batch, -1))
    return Step(name=layer.name, op="pool", input_shape=x.shape, output_shape=out.shape, flops=0,
                other_flops=pooling.global_average_pool_flops(batch, channels, height, width), call=call,
                bytes=pooling.global_average_pool_bytes(batch, channels, height, width, ctx.config.budget),
                layer=layer, inputs=tuple(layer.inputs), output=layer.output)


def _flatten(item: LayerItem, ctx: StepContext, ahead) -> Step:
    """A Flatten of a conv's NCHWc output: back to NCHW order, then flat (N, C*H*W)."""
    layer = item.layer
    source, out = ctx.buffers[layer.inputs[0]], ctx.buffers[layer.output]
    planar = np.empty((ctx.batch, *layer.input_shape), np.float32)
    to_planar = bind(nchwc_to_nchw, source, planar)

    def call(to_planar=to_planar, planar=planar, out=out):
        to_planar()
        out[...] = planar.reshape(out.shape)
    moved = 4 * (source.size + 2 * planar.size + out.size)
    return Step(name=layer.name, op="flatten", input_shape=source.shape, output_shape=out.shape, flops=0,
                other_flops=0, call=call, bytes={level: moved for level in LEVELS}, layer=layer,
                inputs=tuple(layer.inputs), output=layer.output)


def _linear(item: LayerItem, ctx: StepContext, ahead) -> Step:
    layer, batch = item.layer, ctx.batch
    x, out = ctx.buffers[layer.inputs[0]], ctx.buffers[layer.output]
    packed_w, packed_b = ctx.weights.by_layer[layer.name]
    out_features, in_features = layer.weight.shape
    call = bind(linear.linear, x, packed_w, packed_b, out, activation=layer.activation)
    return Step(name=layer.name, op="linear", input_shape=x.shape, output_shape=out.shape,
                flops=linear.linear_flops(batch, in_features, out_features),
                other_flops=batch * out_features * ((layer.bias is not None) + activation_flops(layer.activation)),
                call=call,
                bytes=linear.linear_bytes(batch, in_features, out_features, ctx.config.budget), layer=layer,
                inputs=tuple(layer.inputs), output=layer.output)


def _clip_of(layer: Layer | None) -> tuple[float, float]:
    return tuple(float(v) for v in (layer.clip if layer else (0.0, 0.0)))


def _activation_of(layer: Layer | None) -> tuple[str, float, float]:
    return layer.activation if layer else NO_ACTIVATION


def _block(block: Block, ctx: StepContext, ahead) -> Step:
    if block.se is not None:
        return _se_block(block, ctx, ahead)
    expand, dw_layer, project = block.layers
    first = expand or dw_layer
    config, batch = ctx.config, ctx.batch
    x, out = ctx.buffers[ctx.key(first.inputs[0], "nchwc")], ctx.buffers[project.output]
    residual = ctx.buffers[ctx.key(project.residual, "nchwc")] if project.residual else None
    stride = dw_layer.attrs["strides"][0]
    block_rows = block_rows_for(block.layers, config, batch)
    weights = ctx.weights.by_layer
    call = bind(fused_block.fused_block, x, weights[expand.name] if expand else None, weights[dw_layer.name],
                weights[project.name], out, residual, stride, *(_clip_of(layer) for layer in block.layers),
                block_rows, *ctx.scratch, expand_activation=_activation_of(expand),
                depthwise_activation=dw_layer.activation, project_activation=project.activation)
    (cin, h, w), hidden, (cout, ho, wo) = first.input_shape, dw_layer.output_shape[0], project.output_shape
    kh, kw = dw_layer.attrs["kernel_shape"]
    flops = ((pointwise.pointwise_flops(batch, cin, hidden, h, w) if expand else 0)
             + depthwise.depthwise_flops(batch, hidden, ho, wo, kh, kw)
             + pointwise.pointwise_flops(batch, hidden, cout, ho, wo))
    moved = fused_block.fused_block_bytes(batch, cin, hidden, cout, h, w, stride, block_rows, expand is not None,
                                          project.residual is not None, config.threads, config.budget)
    return Step(name=project.name, op="block", input_shape=x.shape, output_shape=out.shape, flops=flops,
                other_flops=sum(_epilogue_flops(layer, batch) for layer in block.layers if layer is not None),
                call=call, bytes=moved, layer=project, inputs=tuple(first.inputs), output=project.output,
                members=tuple(layer.name for layer in block.layers if layer is not None), fused=True,
                block_rows=block_rows, stride=stride, tile_fields=BLOCK_FIELDS,
                expand_recompute=fused_block.expand_recompute_factor(h, ho, block_rows, stride, config.threads, batch),
                scratch=block_scratch_use(block.layers, block_rows))


def _se_block(block: Block, ctx: StepContext, ahead) -> Step:
    """A squeeze-and-excitation block (engine.passes.find_squeeze_excite_blocks) in one
    kernel (engine.kernels.fused_se_block); its FLOPs those of its four unfused steps."""
    expand, dw_layer, project, se = block.expand, block.depthwise, block.project, block.se
    first = expand or dw_layer
    config, batch = ctx.config, ctx.batch
    x, out = ctx.buffers[ctx.key(first.inputs[0], "nchwc")], ctx.buffers[project.output]
    residual = ctx.buffers[ctx.key(project.residual, "nchwc")] if project.residual else None
    stride = dw_layer.attrs["strides"][0]
    kernel = dw_layer.attrs["kernel_shape"][0]
    block_rows = block_rows_for(block.layers, config, batch)
    weights = ctx.weights.by_layer
    call = bind(fused_se_block.fused_se_block, x, weights[expand.name] if expand else None, weights[dw_layer.name],
                weights[se.name], weights[project.name], out, residual, stride,
                *(_clip_of(layer) for layer in (expand, dw_layer, project)), block_rows, *ctx.scratch,
                expand_activation=_activation_of(expand), depthwise_activation=dw_layer.activation,
                project_activation=project.activation, hidden_activation=se.attrs["hidden_activation"],
                hidden_clip=se.attrs["hidden_clip"], gate_activation=se.attrs["gate_activation"])
    (cin, h, w), hidden, (cout, ho, wo) = first.input_shape, dw_layer.output_shape[0], project.output_shape
    squeezed = se.attrs["squeezed"]
    _, se_other = _squeeze_excite_flops(batch, hidden, squeezed, ho, wo, se.attrs["hidden_activation"],
                                        se.attrs["gate_activation"])
    flops = fused_se_block.fused_se_block_flops(batch, cin, hidden, squeezed, cout, h, w, ho, wo, kernel,
                                                expand is not None)
    moved = fused_se_block.fused_se_block_bytes(batch, cin, hidden, squeezed, cout, h, w, stride, kernel, block_rows,
                                                expand is not None, project.residual is not None, config.threads,
                                                config.budget)
    other = se_other + sum(_epilogue_flops(layer, batch) for layer in (expand, dw_layer, project) if layer is not None)
    return Step(name=project.name, op="block", input_shape=x.shape, output_shape=out.shape, flops=flops,
                other_flops=other, call=call, bytes=moved, layer=project, inputs=tuple(first.inputs),
                output=project.output, members=tuple(layer.name for layer in block.layers if layer is not None),
                fused=True, block_rows=block_rows, stride=stride, tile_fields=BLOCK_FIELDS,
                expand_recompute=fused_se_block.expand_recompute_factor(h, ho, block_rows, stride, kernel,
                                                                        config.threads, batch),
                scratch=block_scratch_use(block.layers, block_rows))


# One builder per item kind (item_kind): adding an op is one importer handler
# (engine.onnx_import.HANDLERS), one kernel (engine/kernels/) and one builder here.
STEP_BUILDERS: dict[str, Callable[..., Step]] = {
    "convert": _convert,
    "pointwise": _pointwise,
    "depthwise": _depthwise,
    "dense": _dense,
    "direct": _direct,
    "GlobalAveragePool": _global_average_pool,
    "MaxPool": _max_pool,
    "SqueezeExcite": _squeeze_excite,
    "Activation": _activation,
    "Flatten": _flatten,
    "Linear": _linear,
    "block": _block,
}
