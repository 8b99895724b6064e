"""How much memory a plan holds, from the plan's own sizes: no timing, no measurement.

`memory_report(model, batch, ...)` builds (or takes from the model's cache) the plan for a
batch and configuration and returns a `MemoryReport`: what the model and plan hold, and the
bound the engine promises to stay near,

    ratio = (arena + packed weights + scratch + io + temporaries) / (two largest + packed weights)

where "two largest" is the largest sum of two activation tensors that are live at the same
step (definition in `activation_lifetimes` and `MemoryReport`). The target is a ratio
<= 1.5 at batch 64 (tests/test_memory.py checks it).

Napkin math for MobileNetV2 at batch 64 (NCHWc, CB = 8): the expand output of block 2 is
64 x 96 x 112 x 112 x 4 B = 294 MiB and the stride-2 depthwise reading it writes 73.5 MiB,
so no arena can be smaller than 367.5 MiB; packed weights are 13.4 MiB, the returned logits
0.24 MiB, and the stem reads the caller's 36.75 MiB batch in place (a plan that copies it in
holds an input buffer of that size, counted in io). Unfused the ratio is then about
(367.5 + 13.4 + 0.24) / (367.5 + 13.4) = 1.001; fused, the 6x-wide intermediates never exist
and the bound is the 98 + 49 MiB of block 1 (which has no expand and runs unfused).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.kernels import fused_block
from engine.plan import Plan
from engine.tiles import Tiles


@dataclass(frozen=True)
class Tensor:
    """One activation buffer of a plan and the steps (indices into plan.steps) it is live in."""

    name: str
    nbytes: int
    first_step: int        # the step that writes it
    last_step: int         # the last step that reads it (len(plan.steps) - 1 for the output)
    in_arena: bool         # False for the input buffer, which the plan allocates on its own


@dataclass(frozen=True)
class MemoryReport:
    """Bytes a model and one of its plans hold. All sizes in bytes.

    weights_bytes: packed (kernel-layout) weights and biases, PackedWeights.nbytes.
    graph_weights_bytes: the ONNX-layout weights the Graph keeps beside the packed ones (held
        by the Model too, but not part of the ratio, which counts what running needs).
    arena_bytes: the plan's activation arena, Plan.arena_bytes.
    scratch_bytes: per-thread scratch of the fused blocks (threads x the largest block's
        expanded and depthwise bands); 0 when no step is fused.
    io_bytes: the input buffer the caller's batch is copied into (N, C, H, W; none when the
        first steps read the caller's array itself, as in MobileNets) plus the
        (N, *output_shape) array each run returns.
    temporaries_bytes: arrays a step allocates beside the arena (a Flatten of a conv output
        unpacks through a planar copy); 0 for MobileNetV2.
    two_largest_bytes: max over steps s of the sum of the two largest activation tensors
        live at s (a tensor is live from the step that writes it to the last step that reads
        it, inclusive; the input buffer counts as an activation). For a chain of layers this
        is the largest input + output of one step; a residual kept alive across a block can
        raise it.
    two_largest_step: the name of that step.
    live_peak_bytes: max over steps of the sum of all arena tensors live at that step: no
        arena that gives every live tensor its own memory can be smaller.
    ratio: (arena + weights + scratch + io + temporaries) / (two_largest + weights).
    """

    batch: int
    threads: int
    fuse_blocks: bool | str   # as given to model.plan: False, True or "auto"
    weights_bytes: int
    graph_weights_bytes: int
    arena_bytes: int
    scratch_bytes: int
    io_bytes: int
    temporaries_bytes: int
    two_largest_bytes: int
    two_largest_step: str
    live_peak_bytes: int

    @property
    def held_bytes(self) -> int:
        """What running needs: arena + packed weights + scratch + io + temporaries."""
        return self.arena_bytes + self.weights_bytes + self.scratch_bytes + self.io_bytes + self.temporaries_bytes

    @property
    def bound_bytes(self) -> int:
        """two largest live activations + packed weights."""
        return self.two_largest_bytes + self.weights_bytes

    @property
    def ratio(self) -> float:
        return self.held_bytes / self.bound_bytes

    @property
    def arena_efficiency(self) -> float:
        """arena_bytes / live_peak_bytes: 1.0 means no assignment could use less."""
        return self.arena_bytes / self.live_peak_bytes if self.live_peak_bytes else 1.0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out.update(held_bytes=self.held_bytes, bound_bytes=self.bound_bytes, ratio=self.ratio,
                   arena_efficiency=self.arena_efficiency)
        return out


def memory_report(model, batch: int, threads: int = 1, tiles: Tiles | None = None,
                  fuse_blocks: bool = False) -> MemoryReport:
    """The MemoryReport of `model` (an engine.Model) at `batch` images and this configuration.

    Builds the plan through model.plan (so it is cached like a run's); the plan's arena is
    allocated but not touched, so this costs address space, not resident memory."""
    plan = model.plan(batch, threads, tiles, fuse_blocks)
    return report_for_plan(model, plan)


def report_for_plan(model, plan: Plan) -> MemoryReport:
    """The MemoryReport of an already-built plan of `model`."""
    graph = model.graph
    tensors = activation_lifetimes(model, plan)
    two_largest, two_largest_step, live_peak = 0, "", 0
    for index, step in enumerate(plan.steps):
        live = [t for t in tensors if t.first_step <= index <= t.last_step]
        sizes = sorted((t.nbytes for t in live), reverse=True)
        if sum(sizes[:2]) > two_largest:
            two_largest, two_largest_step = sum(sizes[:2]), step.name
        live_peak = max(live_peak, sum(t.nbytes for t in live if t.in_arena))
    output_bytes = 4 * plan.batch * int(np.prod(graph.output_shape))
    graph_weights = sum(array.nbytes for layer in graph.layers for array in (layer.weight, layer.bias)
                        if array is not None)
    return MemoryReport(batch=plan.batch, threads=plan.config.threads, fuse_blocks=plan.config.fuse_blocks,
                        weights_bytes=model.weights.nbytes, graph_weights_bytes=graph_weights,
                        arena_bytes=plan.arena_bytes, scratch_bytes=scratch_bytes(plan),
                        io_bytes=(0 if plan.input_buffer is None else plan.input_buffer.nbytes) + output_bytes,
                        temporaries_bytes=_temporaries_bytes(plan), two_largest_bytes=two_largest,
                        two_largest_step=two_largest_step, live_peak_bytes=live_peak)


def activation_lifetimes(model, plan: Plan) -> list[Tensor]:
    """Every activation buffer of the plan with the steps it is live in, from the steps'
    names: a step writes step.output and reads step.inputs[0] (and its layer's residual); a
    step that writes in place (`step.in_place`) gives its output no buffer of its own.

    A read resolves to the buffer holding it: the tensor itself, or a layout copy of it
    ("name@nchwc", written by a "layout" step) whose size matches what the step reads, or,
    for a tensor no step writes (a Flatten that is a view), its producer's input. Raises
    ValueError for a read that resolves to nothing (the plan changed under this model)."""
    graph = model.graph
    steps = plan.steps
    written: dict[str, int] = {}          # buffer name -> elements
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    held_in: dict[str, str] = {}          # a tensor written in place -> the buffer holding it
    input_elements = plan.batch * int(np.prod(graph.input_shape))
    if plan.input_buffer is None:       # the first steps read the caller's batch itself
        written[graph.input_name], first[graph.input_name], last[graph.input_name] = input_elements, 0, 0
    for index, step in enumerate(steps):
        if index == 0 and not step.output:                 # the copy-in step writes the input buffer
            name = graph.input_name
            written[name], first[name], last[name] = input_elements, index, index
            continue
        reads = [(step.inputs[0], int(np.prod(step.input_shape)))] if step.inputs else []
        if step.layer is not None and step.layer.residual:
            reads.append((step.layer.residual, int(np.prod(step.output_shape))))
        names = []
        for tensor, elements in reads:
            name = held_in.get(tensor) or _resolve(graph, tensor, elements, written, step.name)
            last[name] = max(last[name], index)
            names.append(name)
        if step.output and names and step.in_place:
            held_in[step.output] = names[0]           # no buffer of its own: it lives in its input's
        elif step.output:
            written[step.output], first[step.output], last[step.output] = \
                int(np.prod(step.output_shape)), index, index
    output = held_in.get(graph.output_name) or _resolve(graph, graph.output_name, None, written, "output")
    last[output] = len(steps) - 1
    return [Tensor(name=name, nbytes=4 * elements, first_step=first[name], last_step=last[name],
                   in_arena=name != graph.input_name) for name, elements in written.items()]


def _resolve(graph, tensor: str, elements: int | None, written: dict, step_name: str) -> str:
    seen = tensor
    while True:
        candidates = [name for name in written if name == tensor or name.startswith(tensor + "@")]
        matching = [name for name in candidates if elements is None or written[name] == elements]
        if matching:
            return matching[0]
        if candidates and elements is not None and len(candidates) == 1:
            return candidates[0]        # a view read with another width (never in MobileNetV2)
        producer = graph.producer_of(tensor)
        if producer is None or candidates or not producer.inputs:
            raise ValueError(f"step {step_name!r} reads {seen!r}, which no earlier step writes "
                             f"(buffers: {sorted(written)[-3:]} ...)")
        tensor = producer.inputs[0]      # a view: it lives in its producer's input buffer


def scratch_bytes(plan: Plan) -> int:
    """Bytes of the fused blocks' per-thread scratch: threads x (largest expanded rows +
    largest depthwise output of a block's Step.scratch, each rounded up to whole lines) x 4,
    as engine.fusion.block_scratch allocates them (fused_block.per_worker_zeros); 0 when unfused."""
    uses = [step.scratch for step in plan.steps if step.scratch is not None]
    if not uses:
        return 0
    rows = (fused_block.scratch_row_floats(max([1] + [use.expand for use in uses]))
            + fused_block.scratch_row_floats(max([1] + [use.depthwise for use in uses])))
    return 4 * plan.config.threads * rows


def _temporaries_bytes(plan: Plan) -> int:
    """A Flatten of a conv output allocates a planar (N, C, H, W) copy of its input."""
    return sum(4 * plan.batch * int(np.prod(step.layer.input_shape)) for step in plan.steps
               if step.op == "flatten" and step.layer is not None)




def resident_memory() -> dict[str, int] | None:
    """This process's resident set now ("rss") and its high-water mark ("peak"), in bytes,
    from /proc/self/status (VmRSS, VmHWM); None where that file does not exist (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    except OSError:
        return None
    kib = {key: int(value.split()[0]) for key, value in fields.items()}
    return {"rss": 1024 * kib["VmRSS"], "peak": 1024 * kib["VmHWM"]}


def reset_peak_resident_memory() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: "5" into /proc/self/clear_refs);
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


__all__ = ["MemoryReport", "Tensor", "memory_report", "report_for_plan", "activation_lifetimes", "scratch_bytes",
           "resident_memory", "reset_peak_resident_memory"]
