"""Graph + RunConfig -> Plan: the steps to run, in order, and the buffers they use.

A `Plan` is built for one batch size and one configuration, in four passes:
1. schedule: the graph's layers in order, with a layout change before a layer that reads
   a tensor in another layout, and the blocks the config fuses grouped into one item;
2. buffers: each tensor's lifetime (written .. last read) -> an offset in one arena
   (engine.arena), so memory stays near the largest simultaneously live activations;
3. steps: one Step per item from its builder (engine.steps.STEP_BUILDERS), kernels bound
   to the buffers and packed weights (engine.weights) once;
4. io and bytes: the first steps read the caller's batch in place and the classifier
   writes each run's result array; the L3 and prefetch credits of the bytes model.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from engine.arena import Arena
from engine.config import RunConfig
from engine.fusion import block_scratch, fusion_wins
from engine.graph import IMAGE_LAYOUTS, Graph, Layer
from engine.kernels import pointwise
from engine.kernels.layout import CB, channel_blocks, nchwc_to_nchw
from engine.passes import find_fusable_blocks
from engine.residency import plan_residency, walk_ways
from engine.steps import Block, Convert, LayerItem, Step, StepContext, build_step
from engine.trace.calls import kernel_and_arguments, trace_call
from engine.trace.records import PREFETCH
from engine.traffic import (LEVELS, charge_write_allocate, credit_l2_residency, credit_l3_residency, credit_l3_walk,
                            fits)
from engine.weights import PackedWeights, flat_width

__all__ = ["Plan", "RunConfig", "PackedWeights", "Step", "build_plan"]


@dataclass
class Plan:
    batch: int
    config: RunConfig
    steps: list[Step]
    input_buffer: np.ndarray | None       # (N, C, H, W) the caller's input is copied here, or None:
                                          # the first steps read the caller's array itself
    io: dict                              # "input": the caller's array for the first step; "output": the result
    arena_bytes: int                      # activation memory held by the plan


def build_plan(graph: Graph, weights: PackedWeights, batch: int, config: RunConfig, *, allocate=None,
               bytes_model: bool = True) -> Plan:
    """Steps, buffers and closures for running `graph` on `batch` images. allocate:
    callable(float32 elements) -> the activation arena (default engine.pages.aligned_empty);
    bytes_model=False skips the residency walk (the records' bytes then lack its credits)."""
    layouts = _Layouts(graph)
    _check_schedule_names(graph, config)
    items = _schedule(graph, layouts, config, batch)
    in_place = set(_in_place_items(graph, layouts, items))
    buffers, arena_bytes = _allocate(graph, layouts, items, batch, in_place, allocate)
    context = StepContext(graph, weights, buffers, layouts.key, config, batch,
                          block_scratch([i.layers for i in items if isinstance(i, Block)], config, batch))
    steps = []
    for index, item in enumerate(items):
        if not layouts.is_view(item):
            steps.append(build_step(item, context, _later_weights(items, index, weights)))
            steps[-1].in_place = index in in_place
    io: dict = {"input": None, "output": None}
    output_buffer = buffers[graph.output_name]          # the input's own buffer when the graph returns its input
    input_buffer = _wire_input(graph, steps, buffers.pop(graph.input_name), output_buffer, io)
    _wire_output(graph, steps, output_buffer, io, batch)
    for step in steps:                  # what each step ran with, for its records
        step.tiles = step.tiles or config.tiles.tiles_for(step.name)
    input_bytes = 4 * batch * int(np.prod(graph.input_shape))      # the caller's array or our copy of it
    if bytes_model:
        _credit_l3_residency(steps, weights, arena_bytes + input_bytes, config, buffers)
    return Plan(batch=batch, config=config, steps=steps, input_buffer=input_buffer, io=io, arena_bytes=arena_bytes)


# ---------------------------------------------------------------- layouts

class _Layouts:
    """How each tensor is stored (Graph.layout_of: the graph input NCHW; a conv's, max pool's
    or squeeze-and-excitation's output NCHWc; an activation's as its input; the rest flat)
    and read. The direct convs (the stem, dilated convs) read plain NCHW, the other convs,
    the pools and the squeeze-and-excitation NCHWc (a conv's residual too), an activation
    and a Flatten as stored; a tensor read in a layout other than its own gets a copy named
    `key(tensor, layout)`. A Flatten is a view of its input, not a step, unless that input is
    blocked (NCHWc: its channel order must be undone first). engine.passes.check_layouts
    refuses at load a layer that would read a flat tensor as an image."""

    def __init__(self, graph: Graph):
        self.graph = graph

    def of(self, tensor: str) -> str:
        """How a tensor is stored: "nchw" (graph input), "nchwc" (a conv's output) or "flat"."""
        return self.graph.layout_of(tensor)

    def key(self, tensor: str, layout: str) -> str:
        """The buffer name of `tensor` in `layout`: itself, or its converted copy."""
        return tensor if layout == self.of(tensor) else f"{tensor}@{layout}"

    @staticmethod
    def reads(layer: Layer) -> list[tuple[str, str | None]]:
        """(tensor, layout the kernel reads it in) for each input of a layer; None: as stored."""
        if layer.op in ("GlobalAveragePool", "MaxPool", "SqueezeExcite"):
            return [(layer.inputs[0], "nchwc")]
        if layer.op != "Conv":
            return [(layer.inputs[0], None)]
        reads = [(layer.inputs[0], "nchw" if layer.conv_kind == "direct" else "nchwc")]
        if layer.residual:
            reads.append((layer.residual, "nchwc"))
        return reads

    def read_names(self, item) -> list[str]:
        """The buffers an item reads."""
        if isinstance(item, Convert):
            return [item.tensor]
        if isinstance(item, Block):
            first, project = item.expand or item.depthwise, item.project
            return [self.key(first.inputs[0], "nchwc")] + ([self.key(project.residual, "nchwc")]
                                                            if project.residual else [])
        return [self.key(tensor, layout) if layout else tensor for tensor, layout in self.reads(item.layer)]

    def is_view(self, item) -> bool:
        """A Flatten of a tensor that is not blocked: the graph input (N, C, H, W), a pooled
        vector (the pool wrote (N, C_padded)) or a flat one already."""
        if not isinstance(item, LayerItem) or item.layer.op != "Flatten":
            return False
        return self.of(item.layer.inputs[0]) != "nchwc"

    def written_shape(self, item, batch: int) -> tuple[int, ...]:
        """Buffer shape of what an item writes."""
        graph = self.graph
        if isinstance(item, Convert):
            base = graph.input_shape if item.tensor == graph.input_name else graph.producer_of(item.tensor).output_shape
            return _buffer_shape(item.layout, batch, base)
        layer = _last_layer(item)
        if self.of(layer.output) in IMAGE_LAYOUTS:        # (an activation of the NCHW input is NCHW)
            return _buffer_shape(self.of(layer.output), batch, layer.output_shape)
        if layer.op in ("GlobalAveragePool", "Flatten", "Activation"):
            return (batch, flat_width(graph, layer, int(np.prod(layer.output_shape))))
        return (batch, int(np.prod(layer.output_shape)))


def _last_layer(item) -> Layer:
    return item.project if isinstance(item, Block) else item.layer


def _buffer_shape(layout: str, batch: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    if layout == "nchw":
        return (batch, *shape)
    if layout == "nchwc":
        channels, height, width = shape
        return (batch, channel_blocks(channels), height, width, CB)
    return (batch, int(np.prod(shape)))


# ---------------------------------------------------------------- 1. schedule

def _schedule(graph: Graph, layouts: _Layouts, config: RunConfig, batch: int) -> list:
    """The items in execution order: layout changes where needed, layers, fused blocks."""
    items: list = []
    converted: set[str] = set()
    for layer in graph.layers:
        for tensor, layout in layouts.reads(layer):
            if layout is not None and layout != layouts.of(tensor) and layouts.key(tensor, layout) not in converted:
                converted.add(layouts.key(tensor, layout))
                items.append(Convert(tensor, layout))
        items.append(LayerItem(layer))
    return _group_blocks(items, [block for block in find_fusable_blocks(graph)
                                 if fused(block, config, batch)])


def fused(block, config: RunConfig, batch: int) -> bool:
    """Whether a plan runs `block` fused: the schedule's choice for it (config.tiles.fused,
    by the block's name: its project layer's) where it has one, else config.fuse_blocks
    (True: every block, "auto": where fusion_wins)."""
    choice = config.tiles.fused_for(block[2].name)
    if choice is not None:
        return choice
    if config.fuse_blocks == "auto":
        return fusion_wins(block, config, batch)
    return bool(config.fuse_blocks)


def _check_schedule_names(graph: Graph, config: RunConfig) -> None:
    """ValueError naming a step or block of the tile schedule that this graph does not have."""
    layers = {layer.name for layer in graph.layers}
    blocks = {block[2].name for block in find_fusable_blocks(graph)}
    for name, _ in config.tiles.overrides:
        if name not in layers:
            raise ValueError(f"tile schedule: no step {name!r} in this model (steps are named after their layers, "
                             f"a fused block after its project layer; e.g. {sorted(layers)[:3]})")
    for name, _ in config.tiles.fused:
        if name not in blocks:
            raise ValueError(f"tile schedule: no inverted-residual block {name!r} in this model (blocks are named "
                             f"after their project layer: {sorted(blocks)[:3]} ...)")


def _group_blocks(items: list, blocks) -> list:
    """Replace each block's expand, depthwise and project items by one Block item."""
    member_of = {id(layer): block for block in blocks for layer in block if layer is not None}
    grouped = []
    for item in items:
        block = member_of.get(id(item.layer)) if isinstance(item, LayerItem) else None
        if block is None:
            grouped.append(item)
        elif item.layer is block[2]:
            grouped.append(Block(*block))
    return grouped


# ---------------------------------------------------------------- 2. buffers

def _allocate(graph: Graph, layouts: _Layouts, items: list, batch: int,
              in_place: set[int], allocate=None) -> tuple[dict[str, np.ndarray], int]:
    """A buffer for every tensor the items write (views into one arena, shared by tensors
    whose lifetimes do not overlap), the network input's, and Flatten views; and the
    arena's bytes. The items at indices `in_place` (_in_place_items) write over their input;
    `allocate`: as build_plan's (a callable giving the arena its memory, or None)."""
    storage_of = {}                 # a Flatten view or an in-place output -> the buffer it views
    for item in items:
        if layouts.is_view(item):
            source = item.layer.inputs[0]
            storage_of[item.layer.output] = storage_of.get(source, source)
    for index in in_place:
        source = items[index].layer.inputs[0]
        storage_of[items[index].layer.output] = storage_of.get(source, source)
    last_use: dict[str, int] = {}
    for index, item in enumerate(items):
        for name in layouts.read_names(item):
            last_use[storage_of.get(name, name)] = index
    last_use[storage_of.get(graph.output_name, graph.output_name)] = len(items)
    shapes: dict[str, tuple[int, ...]] = {}
    arena = Arena()
    for index, item in enumerate(items):
        written = layouts.key(item.tensor, item.layout) if isinstance(item, Convert) else _last_layer(item).output
        shapes[written] = layouts.written_shape(item, batch)
        if written not in storage_of:
            arena.assign(written, shapes[written], first=index, last=last_use.get(written, index))
    buffers = arena.materialise(allocate)
    buffers[graph.input_name] = np.empty((batch, *graph.input_shape), np.float32)
    for view, base in storage_of.items():       # (an in-place output: the input's own array)
        buffers[view] = buffers[base] if buffers[base].shape == shapes[view] else buffers[base].reshape(shapes[view])
    return buffers, arena.nbytes


def _in_place_items(graph: Graph, layouts: _Layouts, items: list) -> list[int]:
    """The items that write their output over their input: a squeeze-and-excitation whose
    input (an NCHWc image, not the graph's input or output) no later item reads. Its scale
    pass then reads and writes the same lines, still in the core's L2 (bench/README, "Batch
    1"), where a separate output first fetches its own lines and evicts the input's."""
    last_reader: dict[str, int] = {}
    for index, item in enumerate(items):
        for name in layouts.read_names(item):
            last_reader[name] = index
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, LayerItem) or item.layer.op != "SqueezeExcite":
            continue
        source = item.layer.inputs[0]
        if (source != graph.input_name and source != graph.output_name and layouts.of(source) == "nchwc"
                and last_reader.get(source) == index):
            found.append(index)
    return found


# ---------------------------------------------------------------- 3. what each step prefetches

def _later_weights(items: list, index: int, weights: PackedWeights) -> np.ndarray | None:
    """The packed weights of the next 1x1 conv, linear layer or fused block after item
    `index` (depthwise convs and squeeze-and-excitations, whose weights are small, pooling,
    activation and layout steps skipped): what a 1x1 conv prefetches while it runs
    (pointwise_conv's `ahead`). None at the end, or when a direct or dense conv (weights of
    KxK taps: too many to prefetch for one) comes first."""
    for item in items[index + 1:]:
        if isinstance(item, Block):
            return weights.by_layer[(item.expand or item.project).name][0]
        if isinstance(item, LayerItem):
            layer = item.layer
            if layer.op == "Linear" or (layer.op == "Conv" and layer.conv_kind == "pointwise"):
                return weights.by_layer[layer.name][0]
            if layer.op == "Conv" and layer.conv_kind in ("direct", "dense"):
                return None
    return None


# ---------------------------------------------------------------- 4. io

def _wire_input(graph: Graph, steps: list[Step], input_buffer: np.ndarray, output_buffer: np.ndarray,
                io: dict) -> np.ndarray | None:
    """The steps that read the network's input read the caller's batch itself (Model.run
    hands over a C-contiguous float32 array of the plan's shape in io["input"]); only when
    one of them cannot is the batch copied into the plan's input buffer first, by a step
    of its own. Returns that buffer, or None."""
    if output_buffer is not input_buffer and _read_input_directly(steps, input_buffer, io):
        return None                         # bound for validation only; freed with this frame

    def copy_in():
        np.copyto(input_buffer, io["input"])
    moved = 2 * input_buffer.nbytes
    steps.insert(0, Step(name="input", op="layout", input_shape=input_buffer.shape, output_shape=input_buffer.shape,
                         flops=0, other_flops=0, call=copy_in, bytes={lv: moved for lv in LEVELS}))
    return input_buffer


def _wire_output(graph: Graph, steps: list[Step], output_buffer: np.ndarray, io: dict, batch: int) -> None:
    """The last step writes each run's result into a new array itself where it can (a
    classifier writing the whole output); otherwise a copy-out step (hooks see it like any
    other step) puts the result in io["output"]."""
    if steps and _write_output_directly(steps[-1], output_buffer, io):
        return
    features = graph.output_shape[0]
    if _Layouts(graph).of(graph.output_name) == "nchwc":
        def copy_out():
            out = np.empty((batch, *graph.output_shape), np.float32)
            nchwc_to_nchw(output_buffer, out)
            io["output"] = out
    else:
        def copy_out():         # (N, width) rows -> (N, *output_shape): a pool's (C, 1, 1) keeps its 1, 1
            io["output"] = output_buffer[:, :features].reshape(batch, *graph.output_shape).copy()
    moved = 2 * 4 * batch * int(np.prod(graph.output_shape))
    steps.append(Step(name="output", op="layout", input_shape=output_buffer.shape,
                      output_shape=(batch, *graph.output_shape), flops=0, other_flops=0, call=copy_out,
                      bytes={lv: moved for lv in LEVELS}))


def _write_output_directly(last: Step, output_buffer: np.ndarray, io: dict) -> bool:
    """Let the last step (a classifier writing the network's whole output) write a new array
    each run and hand it over in io["output"], instead of a copy-out step after it; False
    (nothing changed) unless its bound kernel's last argument is the whole output buffer."""
    call = last.call
    if last.op != "linear" or not isinstance(call, functools.partial) or call.keywords:
        return False
    positions = [i for i, a in enumerate(call.args) if a is output_buffer]
    if len(positions) != 1:
        return False
    kernel, shape = call.func, output_buffer.shape
    before, after = call.args[:positions[0]], call.args[positions[0] + 1:]

    def write_new_output():
        result = np.empty(shape, np.float32)
        kernel(*before, result, *after)
        io["output"] = result
    last.call = write_new_output
    return True


def _read_input_directly(steps: list[Step], input_buffer: np.ndarray, io: dict) -> bool:
    """Rebind every step whose kernel was bound to `input_buffer` to read io["input"] in its
    place; False (nothing rebound) if some step uses the buffer in another way (a view of
    it: an activation reads the NCHW input as flat rows)."""
    readers = []
    for step in steps:
        call = step.call
        if any(isinstance(a, np.ndarray) and a.base is input_buffer for a in getattr(call, "args", ())):
            return False
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


# ---------------------------------------------------------------- 4. bytes between steps

def _credit_l3_residency(steps: list[Step], weights: PackedWeights, activation_memory: int,
                         config: RunConfig, buffers: dict[str, np.ndarray]) -> None:
    """Between steps, data that fits the shared L3 stays there, outputs are written with a
    line fill first, and what the threads' L2s still hold is found there (engine.residency:
    the buffers followed through an LRU; engine.traffic docstring)."""
    l3_bytes = config.machine.cache("L3").usable_bytes
    l2 = config.machine.cache("L2")
    l2_bytes = l2.usable_bytes // max(1, min(config.threads, l2.shared_by_cores))      # one thread's share
    weights_resident = fits(weights.nbytes + activation_memory, l3_bytes)
    # the L3 walked too unless the weights and all activations fit half of it (then nothing
    # leaves it from run to run, as credit_l3_residency says, and the walk would agree)
    walked = plan_residency(steps, buffers, weights, l2_bytes, config.threads, 0 if weights_resident else l3_bytes,
                            l2_ways=walk_ways(l2), l3_ways=walk_ways(config.machine.cache("L3")))
    for step, residency in zip(steps, walked):
        if not step.bytes:
            continue
        output = int(np.prod(step.output_shape))
        residual = output if step.layer is not None and step.layer.residual else 0
        input_bytes = 4 * int(np.prod(step.input_shape))
        activation_bytes = input_bytes + 4 * (output + residual)
        step.bytes = charge_write_allocate(step.bytes, 4 * output)
        if step.in_place:                   # it loads each line just before it stores to it: no fill
            step.bytes["L2"] -= 4 * output  # from L2 (below, the walk finds the lines it read)
        if residency is not None and residency.l3_walked:
            step.bytes = credit_l3_walk(step.bytes, 4 * output, residency.loaded, residency.dram_read,
                                        residency.dram_written_back)
        else:   # the output's fill stays in L3 with the rest of the activations where they fit
            step.bytes = credit_l3_residency(step.bytes, activation_bytes, weights.of(step.members),
                                             weights_resident, l3_bytes, fill_bytes=4 * output)
        if residency is not None:           # (a fused block's scratch too, where the walk follows it)
            # with the L3 walked too, the L3 bytes are not bounded by the DRAM ones (those
            # include the write-backs of other steps' lines L3 evicts)
            dram = step.bytes["DRAM"]
            step.bytes = credit_l2_residency({**step.bytes, "DRAM": 0 if residency.l3_walked else dram}, 4 * output,
                                             residency.loaded, residency.read + residency.scratch_filled,
                                             residency.filled, residency.written_back, residency.scratch_charged)
            step.bytes["DRAM"] = dram
    if not weights_resident:
        _charge_prefetched_weights(steps, weights)     # (at most what the walk left the consumer at DRAM)


def _charge_prefetched_weights(steps: list[Step], weights: PackedWeights) -> None:
    """A 1x1 conv with few pixel tiles prefetches the next weighted step's weights while it
    runs (its `ahead`; pointwise.prefetches_weights says which do): when they come from
    DRAM, that traffic is the prefetching step's, and the step that uses them finds them in
    cache. Move those bytes (the lines the conv's prefetches cover, at most the user's DRAM
    bytes) from the one to the other. How many lines that is comes from the conv's access
    trace (engine.trace: the kernel's own walk), not from the array's size: a conv with few
    micro-tiles per block group has few left over for `ahead` after fetching its own next
    group's weights (at 16 lanes the last 1x1 conv of MobileNetV2 prefetches none of the
    classifier's weights, at 8 lanes 31 %: bench/README, "Bytes model against a cache
    simulation")."""
    owner = {id(weights.by_layer[name][0]): step for step in steps for name in step.members
             if name in weights.by_layer}
    for step in steps:
        consumer = owner.get(id(step.ahead)) if step.ahead is not None else None
        if consumer is None or consumer is step:
            continue
        batch, _, height, width, _ = step.input_shape
        if not pointwise.prefetches_weights(batch * height * width, step.tiles.pointwise_pixels):
            continue
        shifted = min(_prefetched_bytes(step), consumer.bytes["DRAM"])
        consumer.bytes = {**consumer.bytes, "DRAM": consumer.bytes["DRAM"] - shifted}
        step.bytes = {**step.bytes, "DRAM": step.bytes["DRAM"] + shifted}


def _prefetched_bytes(step: Step) -> int:
    """Bytes of `step.ahead` whose lines the step's kernel prefetches (its access trace)."""
    found = kernel_and_arguments(step.call)
    if found is None:
        return 0
    records = trace_call(*found)
    start = step.ahead.__array_interface__["data"][0]
    addresses = records[records[:, 2] == PREFETCH, 0]
    inside = addresses[(addresses >= start) & (addresses < start + step.ahead.nbytes)]
    return min(step.ahead.nbytes, 64 * len(np.unique(inside // 64)))
