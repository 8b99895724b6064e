"""`engine.load` and `Model.run`: the engine's public entry points."""
from __future__ import annotations

import functools
import os
import threading
import time
from collections import OrderedDict

import numba
import numpy as np

from engine.graph import Graph
from engine.hooks import LayerRecord, RunInfo
from engine.onnx_import import import_graph, read_model
from engine.passes import run_passes
from engine.plan import PackedWeights, Plan, RunConfig, build_plan
from engine.tiles import Tiles

# numba's default (workqueue) threading layer must not be entered from two Python
# threads at once: every run in this process takes this lock, so concurrent callers queue.
_RUN_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, read once), also numba's thread limit."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


class Model:
    """A loaded network: its graph, packed weights and cached plans.

    `input_shape` is (C, H, W); `output_shape` the batch-free output, e.g. (1000,)."""

    _PLAN_CACHE_SIZE = 4

    def __init__(self, graph: Graph):
        self.graph = graph
        self.weights = PackedWeights(graph)
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._runs = 0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.graph.output_shape

    @property
    def layers(self):
        return self.graph.layers

    def __repr__(self) -> str:
        return (f"<engine.Model {len(self.graph.layers)} layers, input {self.input_shape}, "
                f"output {self.output_shape}>")

    # ------------------------------------------------------------ validation

    def check_input(self, x) -> np.ndarray:
        """Validate an input batch; returns it as a C-contiguous float32 array.

        Raises ValueError naming what was expected and what was given. NaN and Inf are not
        rejected, but the kernels are compiled with fast-math flags that assume finite values,
        so the outputs of an image holding them are unspecified (observed: a NaN makes that
        image's logits NaN, an Inf saturates in ReLU6); other images of the batch are not
        affected. Check with np.isfinite first where that matters."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"x must be a numpy.ndarray of float32 (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"x must be float32, got {x.dtype}")
        expected = self.input_shape
        if x.ndim != 4:
            raise ValueError(f"x must have rank 4 (N, C, H, W) = (N, {', '.join(map(str, expected))}), "
                             f"got shape {x.shape}")
        if x.shape[0] < 1:
            raise ValueError(f"x must hold at least one image, got batch {x.shape[0]}")
        for axis, got, want in zip("CHW", x.shape[1:], expected):
            if got != want:
                raise ValueError(f"x has {axis} = {got}, the model expects {axis} = {want} "
                                 f"(input shape (N, {', '.join(map(str, expected))}), got {x.shape})")
        return x

    @staticmethod
    def check_threads(threads) -> int:
        cores = available_cores()
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= cores:
            raise ValueError(f"threads must be an int in 1..{cores} (this machine's cores), got {threads!r}")
        return int(threads)

    # ------------------------------------------------------------ planning

    def plan(self, batch: int, threads: int = 1, tiles: Tiles | None = None, fuse_blocks: bool = False) -> Plan:
        """The (cached) plan for a batch size and configuration."""
        tiles = Tiles() if tiles is None else tiles
        if not isinstance(tiles, Tiles):
            raise ValueError(f"tiles must be an engine.Tiles, got {type(tiles).__name__}")
        if not isinstance(fuse_blocks, (bool, np.bool_)):
            raise ValueError(f"fuse_blocks must be True or False, got {fuse_blocks!r}")
        config = RunConfig(threads=threads, tiles=tiles, fuse_blocks=bool(fuse_blocks))
        key = (batch, config)
        plan = self._plans.get(key)
        if plan is None:
            plan = build_plan(self.graph, self.weights, batch, config)
            self._plans[key] = plan
            while len(self._plans) > self._PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    # ------------------------------------------------------------ running

    def run(self, x: np.ndarray, threads: int = 1, tiles: Tiles | None = None, fuse_blocks: bool = False,
            hooks=()) -> np.ndarray:
        """Run the network on a batch.

        x: float32 (N, C, H, W), NCHW, any N >= 1 (non-contiguous arrays are copied).
        threads: numba threads, 1..cores. tiles: engine.Tiles (default Tiles()).
        hooks: objects with on_layer(record) (and optional on_run_start/on_run_end);
            a hook that raises stops the run and the error reaches the caller.
        Returns float32 (N, *output_shape), a new array.
        """
        x = self.check_input(x)
        threads = self.check_threads(threads)
        hooks = tuple(hooks or ())
        for hook in hooks:
            if not callable(getattr(hook, "on_layer", None)):
                raise ValueError(f"hook {hook!r} has no on_layer(record) method")
        batch = x.shape[0]
        with _RUN_LOCK:
            plan = self.plan(batch, threads, tiles, fuse_blocks)
            previous_threads = numba.get_num_threads()
            if previous_threads != threads:
                numba.set_num_threads(threads)
            plan.io["input"] = x
            try:
                if hooks:
                    self._run_hooked(plan, hooks)
                else:
                    for step in plan.steps:
                        step.call()
                return plan.io["output"]
            finally:
                plan.io["input"] = plan.io["output"] = None     # keep no reference to the caller's arrays
                if previous_threads != threads:
                    numba.set_num_threads(previous_threads)

    def _run_hooked(self, plan: Plan, hooks) -> None:
        """Run with one timestamp between consecutive steps; records are built and handed
        to the hooks after the last step, so the hooks cost the timed steps nothing."""
        self._runs += 1
        config = plan.config
        tiles = config.tiles._as_dict       # shared by this run's records: read-only
        info = RunInfo(run_index=self._runs, batch=plan.batch, threads=config.threads, tiles=tiles,
                       fused=config.fuse_blocks, steps=len(plan.steps))
        for hook in hooks:
            start = getattr(hook, "on_run_start", None)
            if start is not None:
                start(info)
        clock = time.perf_counter
        steps = plan.steps
        stamps = [0.0] * (len(steps) + 1)
        stamps[0] = clock()
        for index, step in enumerate(steps):
            step.call()
            stamps[index + 1] = clock()
        run_index, batch, threads = self._runs, plan.batch, config.threads
        make = LayerRecord._make
        callbacks = [hook.on_layer for hook in hooks]
        for index, step in enumerate(steps):
            name, op, input_shape, output_shape, fused, flops, other_flops, moved, members = step.record_fields
            record = make((run_index, index, name, op, input_shape, output_shape, batch, threads, tiles, fused,
                           stamps[index + 1] - stamps[index], flops, other_flops, moved, members))
            for on_layer in callbacks:
                on_layer(record)
        end_info = RunInfo(**{**info.__dict__, "seconds": stamps[-1] - stamps[0]})
        for hook in hooks:
            end = getattr(hook, "on_run_end", None)
            if end is not None:
                end(end_info)


def load(source) -> Model:
    """Load an ONNX model: a path, bytes or onnx.ModelProto -> Model.

    Raises engine.ModelError (or its subclass UnsupportedOperatorError) naming the node,
    op and reason for anything the engine cannot run exactly."""
    model_proto = read_model(source)
    graph = run_passes(import_graph(model_proto))
    return Model(graph)


def total_flops(model: Model, batch: int = 1) -> int:
    """Conv and linear FLOPs (2 per MAC) of one run at `batch`."""
    return sum(step.flops for step in model.plan(batch).steps)


__all__ = ["Model", "load", "available_cores", "total_flops"]
