"""Graph + RunConfig -> Plan: the kernel and arguments of every step, and the buffers.

A `Plan` is built for one batch size and one configuration. Weights are packed once per
model (`PackedWeights`); activation buffers are assigned to a few reusable arenas by a
linear scan over tensor lifetimes, so memory stays near the two largest live activations.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine.graph import Graph, Layer
from engine.machine import MachineInfo
from engine.pages import aligned_empty
from engine.kernels._common import bind
from engine.kernels import depthwise, direct_conv, fused_block, linear, pointwise, pooling
from engine.passes import find_inverted_residual_blocks
from engine.kernels.layout import CB, _nchw_to_nchwc, _nchwc_to_nchw, channel_blocks
from engine.tiles import Tiles
from engine.traffic import LEVELS, CacheBudget, credit_l3_residency, fits


@dataclass(frozen=True)
class RunConfig:
    """What a run may vary without reloading the model."""

    threads: int          # numba threads, 1..cores
    tiles: Tiles          # tile sizes (runtime arguments; never recompile)
    fuse_blocks: bool | str   # False, True (every block) or "auto" (where `fusion_wins`)
    machine: MachineInfo  # the caches and lanes every decision and the bytes model assume

    @property
    def budget(self) -> CacheBudget:
        """Cache bytes per thread and lanes, as the bytes model and fusion policy see them."""
        return CacheBudget.for_machine(self.machine, self.threads)


@dataclass
class Step:
    """One kernel call. `flops` counts 2 per multiply-accumulate of the conv/linear part,
    `other_flops` the bias, activation, residual and pooling arithmetic, both per batch."""

    name: str
    op: str                               # stem, depthwise, expand, project, pointwise, pool, flatten, linear, layout
    input_shape: tuple[int, ...]          # with batch
    output_shape: tuple[int, ...]         # with batch
    flops: int
    other_flops: int
    call: Callable[[], None]
    layer: Layer | None = None
    inputs: tuple[str, ...] = ()
    output: str = ""
    attrs: dict = field(default_factory=dict)


    @property
    def fused(self) -> bool:
        return bool(self.attrs.get("fused", False))

    @property
    def bytes(self) -> dict:
        """Modelled bytes per memory level (shared with every record of this step)."""
        return self.attrs.get("bytes", _NO_BYTES)

    @property
    def members(self) -> tuple[str, ...]:
        return self.attrs.get("members", (self.name,))

    @functools.cached_property
    def record_fields(self) -> tuple:
        """What every LayerRecord of this step shares, computed once."""
        return (self.name, self.op, tuple(self.input_shape), tuple(self.output_shape), self.fused, self.flops,
                self.other_flops, self.bytes, self.members)


_NO_BYTES: dict = {}


@dataclass
class Plan:
    batch: int
    config: RunConfig
    steps: list[Step]
    input_buffer: np.ndarray | None       # (N, C, H, W) the caller's input is copied here, or None:
                                          # the first steps read the caller's array itself
    io: dict                              # "input": the caller's array for the first step; "output": the result
    arena_bytes: int                      # activation memory held by the plan


class PackedWeights:
    """Kernel-layout weights of every layer, packed once per model."""

    def __init__(self, graph: Graph):
        self.by_layer: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for layer in graph.layers:
            if layer.op == "Conv":
                kind = layer.conv_kind
                if kind == "pointwise":
                    packed = pointwise.pack_pointwise(layer.weight, layer.bias)
                elif kind == "depthwise":
                    packed = depthwise.pack_depthwise(layer.weight, layer.bias)
                else:
                    packed = direct_conv.pack_direct(layer.weight, layer.bias)
            elif layer.op == "Linear":
                in_features = layer.input_shape[0]
                producer = graph.producer_of(layer.inputs[0])
                padded = _flat_width(graph, producer, in_features)
                packed = linear.pack_linear(layer.weight, layer.bias, padded)
            else:
                continue
            self.by_layer[layer.name] = packed
        self._gather()

    def _gather(self) -> None:
        """Move every packed array into one buffer (engine.pages: on huge pages where the OS
        offers them), each starting on a 64-byte line; the arrays become views of it."""
        sizes = [-(-a.size // 16) * 16 for pair in self.by_layer.values() for a in pair]
        memory = aligned_empty(sum(sizes))
        offset = 0
        for name, pair in self.by_layer.items():
            views = []
            for array in pair:
                view = memory[offset:offset + array.size].reshape(array.shape)
                view[...] = array
                views.append(view)
                offset += -(-array.size // 16) * 16
            self.by_layer[name] = tuple(views)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for pair in self.by_layer.values() for a in pair)


def _flat_width(graph: Graph, producer: Layer | None, features: int) -> int:
    """Width of the (N, F) buffer `producer` writes (or, for a Flatten, views): pooled
    vectors keep the channel padding, everything else is `features` wide."""
    if producer is not None and producer.op == "Flatten":
        producer = graph.producer_of(producer.inputs[0])
    if producer is not None and producer.op == "GlobalAveragePool":
        return channel_blocks(producer.output_shape[0]) * CB
    return features


# ---------------------------------------------------------------- layouts

def _reads(layer: Layer) -> list[tuple[str, str | None]]:
    """(tensor, layout the kernel reads it in) for each input of a layer; None: as stored.
    Dense convs read plain NCHW, the other convs NCHWc (their residual too)."""
    if layer.op != "Conv":
        return [(layer.inputs[0], None)]
    reads = [(layer.inputs[0], "nchw" if layer.conv_kind == "direct" else "nchwc")]
    if layer.residual:
        reads.append((layer.residual, "nchwc"))
    return reads


def _layout_of(graph: Graph, tensor: str) -> str:
    """How a tensor is stored: "nchw" (graph input, direct-conv input), "nchwc" or "flat"."""
    if tensor == graph.input_name:
        return "nchw"
    producer = graph.producer_of(tensor)
    if producer.op == "Conv":
        return "nchwc"
    return "flat"


def _buffer_shape(layout: str, batch: int, shape: tuple[int, ...], width: int | None = None) -> tuple[int, ...]:
    if layout == "nchw":
        return (batch, *shape)
    if layout == "nchwc":
        channels, height, width_ = shape
        return (batch, channel_blocks(channels), height, width_, CB)
    return (batch, width if width is not None else int(np.prod(shape)))


class _Arena:
    """Offset assignment in one buffer: tensors whose lifetimes do not overlap share memory.

    A tensor is live from the step that writes it to the last step that reads it, both
    inclusive, so a step's inputs and its output never overlap. Placement is greedy by size
    (largest tensor first, each at the lowest-waste gap between the already-placed tensors
    whose lifetimes overlap its own), which for a chain of layers lands at or near the peak
    sum of simultaneously live tensors, the least any assignment can use. Offsets are
    multiples of 64 bytes so vector loads of a whole channel block never split lines."""

    ALIGN = 16                            # float32 elements per 64 bytes

    def __init__(self):
        self.shape_of: dict[str, tuple[int, ...]] = {}
        self.lifetime: dict[str, tuple[int, int]] = {}  # tensor -> (first step, last step)
        self._offsets: dict[str, int] | None = None
        self._elements = 0

    def assign(self, tensor: str, shape: tuple[int, ...], first: int, last: int) -> None:
        self.shape_of[tensor] = shape
        self.lifetime[tensor] = (first, max(first, last))
        self._offsets = None

    def _padded(self, tensor: str) -> int:
        size = int(np.prod(self.shape_of[tensor]))
        return -(-size // self.ALIGN) * self.ALIGN

    def _place(self) -> dict[str, int]:
        if self._offsets is not None:
            return self._offsets
        offsets: dict[str, int] = {}
        placed: list[tuple[int, int, int, int]] = []      # (offset, end, first, last) in elements
        for tensor in sorted(self.shape_of, key=lambda t: (-self._padded(t), self.lifetime[t])):
            size = self._padded(tensor)
            first, last = self.lifetime[tensor]
            busy = sorted((o, e) for o, e, f, l in placed if f <= last and first <= l)
            best, best_gap, cursor = None, None, 0
            for offset, end in busy:
                gap = offset - cursor
                if gap >= size and (best_gap is None or gap < best_gap):
                    best, best_gap = cursor, gap
                cursor = max(cursor, end)
            offset = cursor if best is None else best
            offsets[tensor] = offset
            placed.append((offset, offset + size, first, last))
        self._offsets = offsets
        self._elements = max((o + self._padded(t) for t, o in offsets.items()), default=0)
        return offsets

    def materialise(self) -> dict[str, np.ndarray]:
        offsets = self._place()
        memory = aligned_empty(self._elements)
        return {t: memory[o:o + int(np.prod(self.shape_of[t]))].reshape(self.shape_of[t])
                for t, o in offsets.items()}

    @property
    def nbytes(self) -> int:
        self._place()
        return 4 * self._elements


# ---------------------------------------------------------------- plan building

def _pointwise_role(layer: Layer) -> str:
    if layer.residual is not None or layer.output_shape[0] < layer.input_shape[0]:
        return "project"
    if layer.output_shape[0] > layer.input_shape[0]:
        return "expand"
    return "pointwise"


def build_plan(graph: Graph, weights: PackedWeights, batch: int, config: RunConfig) -> Plan:
    """Steps, buffers and closures for running `graph` on `batch` images."""
    # 1. Which (tensor, layout) pairs exist, and the layout-change steps between them.
    def key(tensor, layout):
        return tensor if layout == _layout_of(graph, tensor) else f"{tensor}@{layout}"

    # sequence of (kind, payload) where kind is "convert" or "layer"
    sequence: list[tuple[str, tuple]] = []
    converted: set[str] = set()
    for layer in graph.layers:
        for tensor, layout in _reads(layer):
            if layout is not None and layout != _layout_of(graph, tensor) and key(tensor, layout) not in converted:
                converted.add(key(tensor, layout))
                sequence.append(("convert", (tensor, layout)))
        sequence.append(("layer", (layer,)))
    out_layout = _layout_of(graph, graph.output_name)
    if config.fuse_blocks:
        blocks = find_inverted_residual_blocks(graph)
        if config.fuse_blocks == "auto":
            blocks = [block for block in blocks if fusion_wins(block, config, batch)]
        sequence = _group_blocks(sequence, blocks)

    # 2. Lifetimes -> arena slots.
    def reads_of(item) -> list[str]:
        kind, payload = item
        if kind == "convert":
            return [payload[0]]
        if kind == "block":
            first, project = payload[0] or payload[1], payload[2]
            names = [key(first.inputs[0], "nchwc")]
            if project.residual:
                names.append(key(project.residual, "nchwc"))
            return names
        return [key(tensor, layout) if layout else tensor for tensor, layout in _reads(payload[0])]

    def writes_of(item) -> str:
        kind, payload = item
        if kind == "convert":
            return key(payload[0], payload[1])
        return payload[-1].output

    # A Flatten of a pooled vector is a view of the pool's buffer: its reads are the pool's.
    storage_of: dict[str, str] = {}
    for kind, payload in sequence:
        if kind == "layer" and payload[0].op == "Flatten" and _flatten_is_view(graph, payload[0]):
            storage_of[payload[0].output] = storage_of.get(payload[0].inputs[0], payload[0].inputs[0])

    def storage(name: str) -> str:
        return storage_of.get(name, name)

    last_use: dict[str, int] = {}
    for index, item in enumerate(sequence):
        for name in reads_of(item):
            last_use[storage(name)] = index
    last_use[storage(graph.output_name)] = len(sequence)

    shapes: dict[str, tuple[int, ...]] = {}
    arena = _Arena()
    for index, item in enumerate(sequence):
        written = writes_of(item)
        shapes[written] = _written_shape(graph, item, batch)
        if written not in storage_of:
            arena.assign(written, shapes[written], first=index, last=last_use.get(written, index))
    buffers = arena.materialise()
    buffers[graph.input_name] = np.empty((batch, *graph.input_shape), np.float32)
    for view, base in storage_of.items():
        buffers[view] = buffers[base].reshape(shapes[view])

    # 3. Closures (fused blocks share one pair of per-thread scratch buffers).
    scratch = _block_scratch(sequence, config, batch)
    steps = [_make_step(graph, weights, item, buffers, shapes, key, config, batch, scratch,
                        ahead=_later_weights(sequence, index, weights))
             for index, item in enumerate(sequence) if not _is_view_item(graph, item)]

    output_buffer = buffers[graph.output_name]
    true_features = graph.output_shape[0]
    if out_layout == "nchwc":
        def output_view():
            out = np.empty((batch, *graph.output_shape), np.float32)
            _nchwc_to_nchw(output_buffer, out)
            return out
    else:
        def output_view():
            return output_buffer[:, :true_features].copy()

    # The steps that read the network's input read the caller's batch itself (Model.run
    # hands over a C-contiguous float32 array of the plan's shape in io["input"]); only
    # when one of them cannot is the batch copied into the plan's input buffer first.
    # Copying the result out is a step too (hooks see it like any other step), unless the
    # last step can write each run's result into a new array itself.
    io: dict = {"input": None, "output": None}
    input_buffer = buffers.pop(graph.input_name)
    if output_buffer is not input_buffer and _read_input_directly(steps, input_buffer, io):
        input_buffer = None                 # bound for validation only; freed with this frame
    else:
        def copy_in():
            np.copyto(input_buffer, io["input"])
        in_bytes = 2 * input_buffer.nbytes
        steps.insert(0, Step(name="input", op="layout", input_shape=input_buffer.shape,
                             output_shape=input_buffer.shape, flops=0, other_flops=0, call=copy_in,
                             attrs={"bytes": {lv: in_bytes for lv in LEVELS}}))

    if not _write_output_directly(steps[-1], output_buffer, io):
        def copy_out():
            io["output"] = output_view()
        out_bytes = 2 * 4 * batch * int(np.prod(graph.output_shape))
        steps.append(Step(name="output", op="layout", input_shape=output_buffer.shape,
                          output_shape=(batch, *graph.output_shape), flops=0, other_flops=0, call=copy_out,
                          attrs={"bytes": {lv: out_bytes for lv in LEVELS}}))
    input_bytes = 4 * batch * int(np.prod(graph.input_shape))      # the caller's array or our copy of it
    _credit_l3_residency(steps, weights, arena.nbytes + input_bytes, config.machine)
    return Plan(batch=batch, config=config, steps=steps, input_buffer=input_buffer, io=io,
                arena_bytes=arena.nbytes)


def _write_output_directly(last: Step, output_buffer: np.ndarray, io: dict) -> bool:
    """Let the last step (a classifier writing the network's whole output) write a new array
    each run and hand it over in io["output"], instead of a copy-out step after it; False
    (nothing changed) unless its bound kernel's last argument is the whole output buffer."""
    call = last.call
    if (last.op != "linear" or not isinstance(call, functools.partial) or call.keywords
            or not call.args or call.args[-1] is not output_buffer):
        return False
    kernel, before, shape = call.func, call.args[:-1], output_buffer.shape

    def write_new_output():
        result = np.empty(shape, np.float32)
        kernel(*before, result)
        io["output"] = result
    last.call = write_new_output
    return True


def _read_input_directly(steps: list[Step], input_buffer: np.ndarray, io: dict) -> bool:
    """Rebind every step whose kernel was bound to `input_buffer` to read io["input"] in its
    place; False (nothing rebound) if some step uses the buffer in another way."""
    readers = []
    for step in steps:
        call = step.call
        positions = [i for i, a in enumerate(getattr(call, "args", ())) if a is input_buffer]
        if positions:
            if not isinstance(call, functools.partial) or len(positions) != 1 or call.keywords:
                return False
            readers.append((step, call.func, call.args[:positions[0]], call.args[positions[0] + 1:]))
        elif any(a is input_buffer for a in getattr(call, "__defaults__", None) or ()):
            return False
    if not readers:
        return False
    for step, kernel, before, after in readers:
        def call(kernel=kernel, before=before, after=after):
            kernel(*before, io["input"], *after)
        step.call = call
    return True


def _written_shape(graph: Graph, item, batch: int) -> tuple[int, ...]:
    """Buffer shape of what a sequence item writes."""
    kind, payload = item
    if kind == "convert":
        tensor, layout = payload
        base = graph.input_shape if tensor == graph.input_name else graph.producer_of(tensor).output_shape
        return _buffer_shape(layout, batch, base)
    layer = payload[-1]
    layout = _layout_of(graph, layer.output)
    if layout == "nchwc":
        return _buffer_shape(layout, batch, layer.output_shape)
    if layer.op in ("GlobalAveragePool", "Flatten"):
        return (batch, _flat_width(graph, layer, int(np.prod(layer.output_shape))))
    return (batch, int(np.prod(layer.output_shape)))


def _credit_l3_residency(steps: list[Step], weights: PackedWeights, activation_memory: int,
                         machine: MachineInfo) -> None:
    """Between steps, data that fits the shared L3 stays there (engine.traffic docstring)."""
    l3_bytes = machine.cache("L3").usable_bytes
    weights_resident = fits(weights.nbytes + activation_memory, l3_bytes)
    for step in steps:
        moved = step.attrs.get("bytes")
        if not moved:
            continue
        output = int(np.prod(step.output_shape))
        residual = output if step.layer is not None and step.layer.residual else 0
        activation_bytes = 4 * (int(np.prod(step.input_shape)) + output + residual)
        weight_bytes = sum(a.nbytes for name in step.members for a in weights.by_layer.get(name, ()))
        step.attrs["bytes"] = credit_l3_residency(moved, activation_bytes, weight_bytes, weights_resident, l3_bytes)
    if not weights_resident:
        _charge_prefetched_weights(steps, weights)


def _charge_prefetched_weights(steps: list[Step], weights: PackedWeights) -> None:
    """A 1x1 conv prefetches the next weighted step's weights while it runs (its `ahead`):
    when they come from DRAM, that traffic is the prefetching step's, and the step that
    uses them finds them in cache. Move those bytes of DRAM traffic from the one to the other."""
    owner = {id(weights.by_layer[step.members[0]][0]): step for step in steps
             if step.members and step.members[0] in weights.by_layer}
    for step in steps:
        consumer = owner.get(id(step.attrs.get("ahead")))
        if consumer is None or consumer is step:
            continue
        weight_bytes = sum(a.nbytes for name in consumer.members for a in weights.by_layer.get(name, ()))
        shifted = min(weight_bytes, consumer.bytes["DRAM"])
        consumer.attrs["bytes"] = {**consumer.bytes, "DRAM": consumer.bytes["DRAM"] - shifted}
        step.attrs["bytes"] = {**step.bytes, "DRAM": step.bytes["DRAM"] + shifted}


def _is_view_item(graph: Graph, item) -> bool:
    """A Flatten that is only a reshape of its input's buffer: no step runs for it."""
    kind, payload = item
    return kind == "layer" and payload[0].op == "Flatten" and _flatten_is_view(graph, payload[0])


def _flatten_is_view(graph: Graph, layer: Layer) -> bool:
    """Flatten of a pooled (C, 1, 1) vector is free: the pool already wrote (N, C_padded)."""
    producer = graph.producer_of(layer.inputs[0])
    return producer is not None and producer.op != "Conv"


def _group_blocks(sequence, blocks):
    """Replace each block's expand, depthwise and project items by one ("block", triple) item."""
    member_of = {}
    for block in blocks:
        for layer in block:
            if layer is not None:
                member_of[id(layer)] = block
    grouped = []
    for kind, payload in sequence:
        block = member_of.get(id(payload[0])) if kind == "layer" else None
        if block is None:
            grouped.append((kind, payload))
        elif payload[0] is block[2]:
            grouped.append(("block", block))
    return grouped


# Once a block's intermediates would go to DRAM unfused (batch 64), fusion keeps them in
# cache; the ring of expanded rows (engine.kernels.fused_block) keeps the expand recompute
# near 1.0x, and blocks whose bands would recompute more than this are left unfused anyway.
FUSE_MAX_RECOMPUTE_FROM_DRAM = 1.5


def intermediates_level(block, config: RunConfig, batch: int) -> str:
    """Where an unfused block's intermediates (its expanded tensor, unless it has no expand,
    and its depthwise output; whole batch, channels padded) live between its steps: "L2"
    when they stay in the L2 caches of the run's threads together, "L3" when they stay in
    L3, else "DRAM" (engine.traffic.fits; usable sizes of `config.machine`)."""
    expand, depthwise, _ = block
    hidden, out_h, out_w = depthwise.output_shape
    _, height, width = depthwise.input_shape
    budget = config.budget
    padded = budget.padded(hidden)
    intermediates = 4 * batch * padded * (out_h * out_w + (height * width if expand is not None else 0))
    if fits(intermediates, budget.L2 * config.threads):
        return "L2"
    if fits(intermediates, config.machine.cache("L3").usable_bytes):
        return "L3"
    return "DRAM"


def fusion_wins(block, config: RunConfig, batch: int) -> bool:
    """The "auto" fusion policy: whether `block` is expected to run faster fused, from the
    machine facts in `config` (caches, lanes, threads) and the block's shapes.

    Fusing keeps the block's intermediates in a per-thread scratch that stays in L2; what
    it saves is their round trips through the level they would live in unfused
    (`intermediates_level`), what it costs is the band overheads and recomputed halo rows.
    - DRAM: the round trips are the slowest traffic of the block, so fuse (unless the bands
      recompute more than FUSE_MAX_RECOMPUTE_FROM_DRAM).
    - L2: nothing to save, so never fuse.
    - L3: fuse only the blocks whose unfused steps are bound by that traffic rather than by
      the 1x1 convs' FLOPs: a stride-2 block (its depthwise reads four times what it
      writes) or one without an expand conv (the depthwise reads the block input itself).
      A stride-1 block with an expand does 2 x hidden x (Cin + Cout) FLOPs per pixel
      against ~4 x 4 bytes of intermediates at L3: compute bound either way, and the
      fused block's smaller parallel regions cost more than the L3 trips
      (bench/fusion.py; bench/README.md has the measurements per machine).
    """
    expand, depthwise, _ = block
    level = intermediates_level(block, config, batch)
    if level == "L2":
        return False
    stride = depthwise.attrs["strides"][0]
    if level == "DRAM":
        if expand is None:
            return True
        _, height, _ = depthwise.input_shape
        out_h = depthwise.output_shape[1]
        band = block_band_rows(block, config, batch)
        recompute = fused_block.expand_recompute_factor(height, out_h, band, stride, config.threads, batch)
        return recompute <= FUSE_MAX_RECOMPUTE_FROM_DRAM
    return stride == 2 or expand is None


def block_band_rows(block, config: RunConfig, batch: int) -> int:
    """The band height a fused block runs with: Tiles.block_rows, or 0 -> the cost model's
    (fused_block.auto_band_rows for one core's usable L2 on `config.machine`)."""
    expand, depthwise, project = block
    out_h = depthwise.output_shape[1]
    if config.tiles.block_rows:
        return min(config.tiles.block_rows, out_h)
    budget = config.budget
    return fused_block.auto_band_rows(depthwise.output_shape[0], depthwise.input_shape[1], depthwise.input_shape[2],
                                      out_h, depthwise.output_shape[2], depthwise.attrs["strides"][0], config.threads,
                                      budget.L2, batch, budget.lanes)


def _block_scratch(sequence, config: RunConfig, batch: int):
    """One (scratch_expand, scratch_depthwise) pair, big enough for every fused block."""
    need_expand = need_depthwise = 1
    for kind, payload in sequence:
        if kind == "block":
            _, depthwise, _ = payload
            expand, dw = fused_block.scratch_floats(depthwise.output_shape[0], depthwise.input_shape[2],
                                                    depthwise.output_shape[2], block_band_rows(payload, config, batch),
                                                    depthwise.attrs["strides"][0])
            need_expand, need_depthwise = max(need_expand, expand), max(need_depthwise, dw)
    if need_expand == need_depthwise == 1:
        return None
    return (np.zeros((config.threads, need_expand), np.float32), np.zeros((config.threads, need_depthwise), np.float32))


def _later_weights(sequence, index: int, weights: PackedWeights) -> np.ndarray | None:
    """The packed weights of the next 1x1 conv, linear layer or fused block after item
    `index` (depthwise convs, whose weights are small, pooling and layout steps skipped):
    what a 1x1 conv prefetches while it runs (pointwise_conv's `ahead`). None at the end."""
    for kind, payload in sequence[index + 1:]:
        if kind == "block":
            first = payload[0] or payload[2]
            return weights.by_layer[first.name][0]
        if kind == "layer":
            layer = payload[0]
            if layer.op == "Linear" or (layer.op == "Conv" and layer.conv_kind == "pointwise"):
                return weights.by_layer[layer.name][0]
            if layer.op == "Conv" and layer.conv_kind == "direct":
                return None
    return None


def _make_step(graph, weights, item, buffers, shapes, key, config: RunConfig, batch: int, scratch=None,
               ahead: np.ndarray | None = None) -> Step:
    kind, payload = item
    tiles = config.tiles
    budget = config.budget
    if kind == "block":
        return _block_step(graph, weights, payload, buffers, key, config, batch, scratch)
    if kind == "convert":
        tensor, layout = payload
        source, target = buffers[tensor], buffers[key(tensor, layout)]
        call = functools.partial(_nchw_to_nchwc if layout == "nchwc" else _nchwc_to_nchw, source, target)
        moved = 4 * (source.size + target.size)
        return Step(name=f"{tensor} to {layout}", op="layout", input_shape=source.shape,
                    output_shape=target.shape, flops=0, other_flops=0, call=call,
                    inputs=(tensor,), output=key(tensor, layout), attrs={"bytes": {lv: moved for lv in LEVELS}})

    layer: Layer = payload[0]
    out = buffers[layer.output]
    low, high = (float(v) for v in layer.clip)
    if layer.op == "Conv":
        kind_ = layer.conv_kind
        packed_w, packed_b = weights.by_layer[layer.name]
        cin, h, w = layer.input_shape
        cout, ho, wo = layer.output_shape
        epilogue = batch * cout * ho * wo * (1 + (layer.residual is not None) + (layer.clip != (-math.inf, math.inf)))
        attrs: dict = {}
        if kind_ == "pointwise":
            x = buffers[key(layer.inputs[0], "nchwc")]
            residual = buffers[key(layer.residual, "nchwc")] if layer.residual else None
            flops = pointwise.pointwise_flops(batch, cin, cout, h, w)
            op = _pointwise_role(layer)

            moved = pointwise.pointwise_bytes(batch, cin, cout, h, w, tiles.pointwise_pixels,
                                              tiles.pointwise_channels, layer.residual is not None, budget)

            call = bind(pointwise.pointwise_conv, x, packed_w, packed_b, out, low, high, residual,
                        tiles.pointwise_pixels, tiles.pointwise_channels, ahead)
            attrs["ahead"] = ahead
        elif kind_ == "depthwise":
            x = buffers[key(layer.inputs[0], "nchwc")]
            kh, kw = layer.attrs["kernel_shape"]
            sh, sw = layer.attrs["strides"]
            top, left = layer.attrs["pads"][:2]
            flops = depthwise.depthwise_flops(batch, cout, ho, wo, kh, kw)
            op = "depthwise"
            moved = depthwise.depthwise_bytes(batch, cout, h, w, ho, wo, kh, kw, sh, tiles.depthwise_rows, budget)

            call = bind(depthwise.depthwise_conv, x, packed_w, packed_b, out, sh, sw, top, left, low, high,
                        tiles.depthwise_rows)
        else:
            x = buffers[key(layer.inputs[0], "nchw")]
            kh, kw = layer.attrs["kernel_shape"]
            sh, sw = layer.attrs["strides"]
            dh, dw = layer.attrs["dilations"]
            top, left = layer.attrs["pads"][:2]
            flops = direct_conv.direct_conv_flops(batch, cin, cout, ho, wo, kh, kw)
            op = "stem" if layer.inputs[0] == graph.input_name else "conv"
            moved = direct_conv.direct_conv_bytes(batch, cin, cout, h, w, ho, wo, kh, kw, sh, budget)

            call = bind(direct_conv.direct_conv, x, packed_w, packed_b, out, sh, sw, top, left, dh, dw, low, high)
        return Step(name=layer.name, op=op, input_shape=x.shape, output_shape=out.shape, flops=flops,
                    other_flops=epilogue, call=call, layer=layer, inputs=tuple(layer.inputs), output=layer.output,
                    attrs={"bytes": moved, **attrs})
    if layer.op == "GlobalAveragePool":
        x = buffers[layer.inputs[0]]
        channels, height, width = layer.input_shape
        call = bind(pooling.global_average_pool, x, out.reshape(batch, -1))
        return Step(name=layer.name, op="pool", input_shape=x.shape, output_shape=out.shape, flops=0,
                    other_flops=pooling.global_average_pool_flops(batch, channels, height, width), call=call,
                    layer=layer, inputs=tuple(layer.inputs), output=layer.output,
                    attrs={"bytes": pooling.global_average_pool_bytes(batch, channels, height, width, budget)})
    if layer.op == "Flatten":
        source = buffers[layer.inputs[0]]
        planar = np.empty((batch, *layer.input_shape), np.float32)

        def call(source=source, planar=planar, out=out):
            _nchwc_to_nchw(source, planar)
            out[...] = planar.reshape(out.shape)
        moved = 4 * (source.size + 2 * planar.size + out.size)
        return Step(name=layer.name, op="flatten", input_shape=source.shape, output_shape=out.shape, flops=0,
                    other_flops=0, call=call, layer=layer, inputs=tuple(layer.inputs), output=layer.output,
                    attrs={"bytes": {level: moved for level in LEVELS}})
    if layer.op == "Linear":
        x = buffers[layer.inputs[0]]
        packed_w, packed_b = weights.by_layer[layer.name]
        out_features, in_features = layer.weight.shape
        call = bind(linear.linear, x, packed_w, packed_b, out)
        return Step(name=layer.name, op="linear", input_shape=x.shape, output_shape=out.shape,
                    flops=linear.linear_flops(batch, in_features, out_features),
                    other_flops=batch * out_features * (layer.bias is not None), call=call, layer=layer,
                    inputs=tuple(layer.inputs), output=layer.output,
                    attrs={"bytes": linear.linear_bytes(batch, in_features, out_features, budget)})
    raise AssertionError(f"no step for layer op {layer.op}")  # passes.check_executable prevents this


def _block_step(graph, weights, block, buffers, key, config: RunConfig, batch: int, scratch) -> Step:
    expand, depthwise, project = block
    first = expand or depthwise
    x = buffers[key(first.inputs[0], "nchwc")]
    out = buffers[project.output]
    residual = buffers[key(project.residual, "nchwc")] if project.residual else None
    stride = depthwise.attrs["strides"][0]
    band_rows = block_band_rows(block, config, batch)
    packed_expand = weights.by_layer[expand.name] if expand else None
    packed_depthwise = weights.by_layer[depthwise.name]
    packed_project = weights.by_layer[project.name]
    clips = [tuple(float(v) for v in (layer.clip if layer else (0.0, 0.0))) for layer in (expand, depthwise, project)]
    scratch_expand, scratch_depthwise = scratch
    members = tuple(layer.name for layer in block if layer is not None)
    cin, h, w = first.input_shape
    hidden = depthwise.output_shape[0]
    cout, ho, wo = project.output_shape
    flops = (pointwise.pointwise_flops(batch, cin, hidden, h, w) if expand else 0) \
        + depthwise_flops_of(depthwise, batch) + pointwise.pointwise_flops(batch, hidden, cout, ho, wo)
    epilogue = sum(batch * int(np.prod(layer.output_shape)) * (1 + (layer.clip != (-math.inf, math.inf))
                                                               + (layer.residual is not None))
                   for layer in block if layer is not None)

    call = bind(fused_block.fused_block, x, packed_expand, packed_depthwise, packed_project, out, residual, stride,
                clips[0], clips[1], clips[2], band_rows, scratch_expand, scratch_depthwise)
    return Step(name=project.name, op="block", input_shape=x.shape, output_shape=out.shape, flops=flops,
                other_flops=epilogue, call=call, layer=project, inputs=tuple(first.inputs), output=project.output,
                attrs={"fused": True, "members": members, "band_rows": band_rows, "stride": stride,
                       "bytes": fused_block.fused_block_bytes(batch, cin, hidden, cout, h, w, stride, band_rows,
                                                              expand is not None, project.residual is not None,
                                                              config.threads, config.budget),
                       "expand_recompute": fused_block.expand_recompute_factor(h, ho, band_rows, stride,
                                                                               config.threads, batch)})


def depthwise_flops_of(layer: Layer, batch: int) -> int:
    kh, kw = layer.attrs["kernel_shape"]
    return depthwise.depthwise_flops(batch, layer.output_shape[0], layer.output_shape[1], layer.output_shape[2], kh, kw)
