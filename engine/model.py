"""`engine.load` and `Model`: the engine's public entry points. A Model holds a graph, its
packed weights and its cached plans; running a plan is engine.runtime's."""
from __future__ import annotations

import functools
import itertools
import threading
from typing import NamedTuple

import numpy as np

from engine import checks, runtime, schedules
from engine.graph import Graph
from engine.hooks import HookHandle
from engine.machine import MachineInfo
from engine.onnx_import import import_graph, read_model
from engine.passes import run_passes
from engine.plan import PackedWeights, Plan, RunConfig, build_plan
from engine.tiles import Tiles, TileSchedule, as_schedule

_FLOAT32 = np.dtype(np.float32)          # native float32; numpy's dtype objects for it are this one

# What Model.run does with inverted-residual blocks unless told: False (never fuse), True
# (fuse every block) or "auto" (fuse where engine.fusion.fusion_wins expects it to pay).
DEFAULT_FUSE_BLOCKS: bool | str = "auto"


class _RecentRun(NamedTuple):
    """The arguments of the last run without hooks (checked then) and its plan: run's fast path."""

    shape: tuple
    threads: int
    tiles: Tiles | None
    fuse_blocks: bool | str
    machine: MachineInfo | None
    plan: Plan


class Model:
    """A loaded network: its graph, packed weights and cached plans.

    `input_shape` is (C, H, W); `output_shape` the batch-free output, e.g. (1000,)."""

    _PLAN_CACHE_SIZE = 4

    def __init__(self, graph: Graph):
        self.graph = graph
        self.weights = PackedWeights(graph)
        self._plans = runtime.PlanCache(self._PLAN_CACHE_SIZE, on_evict=self._forget_recent)
        self._recent: _RecentRun | None = None
        self._run_indices = itertools.count(1)        # RunInfo.run_index of hooked runs
        self._hooks: tuple = ()                         # HookHandles of register_hook: every run
        self._hooks_lock = threading.Lock()

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

    def check_input(self, x) -> np.ndarray:
        """Validate an input batch (N, C, H, W) float32; returns `x` itself (not a copy).

        Any memory layout is accepted: non-contiguous, Fortran-ordered, negative-stride,
        read-only, unaligned and big-endian float32 arrays all work (run copies such an
        array into a C-contiguous native one first; a C-contiguous native float32 batch is
        read in place by the first kernels and never written). Other dtypes (float64
        included) are refused, not converted: pass x.astype(np.float32). Masked arrays are
        refused. Raises ValueError naming what was expected and what was given.

        NaN and Inf are not rejected (checking would cost a pass over the input), but the
        kernels are compiled with fast-math flags that assume finite values, so the outputs
        of an image holding them are unspecified (a NaN makes that image's logits NaN, an
        Inf saturates in ReLU6); other images of the batch are not affected
        (tests/test_argument_validation.py checks this bit for bit)."""
        return checks.check_input(x, self.input_shape)

    def register_hook(self, hook) -> HookHandle:
        """Call `hook` (an object with on_layer(record), and optional on_run_start/end) on
        every run of this model until the returned handle's remove() (or the end of its
        `with` block), besides any hooks= given to a run. Runs without hooks take no
        timestamps; a registered hook makes every run a hooked one."""
        (hook,) = checks.check_hooks((hook,))
        handle = HookHandle(self, hook)
        with self._hooks_lock:                          # runs read self._hooks without it: a new tuple each change
            self._hooks += (handle,)
        return handle

    def _remove_hook(self, handle) -> None:
        with self._hooks_lock:
            self._hooks = tuple(h for h in self._hooks if h is not handle)

    # ------------------------------------------------------------ planning

    def plan(self, batch: int, threads: int = 1, tiles: Tiles | TileSchedule | None = None,
             fuse_blocks: bool | str = DEFAULT_FUSE_BLOCKS, machine: MachineInfo | None = None) -> Plan:
        """The (cached) plan for a batch size and configuration (arguments as for run)."""
        return self._plan(checks.check_batch(batch), checks.check_threads(threads), checks.check_tiles(tiles, tuned_allowed=True),
                          checks.check_fuse_blocks(fuse_blocks), checks.check_machine(machine))

    def _plan(self, batch: int, threads: int, tiles, fuse_blocks, machine: MachineInfo) -> Plan:
        """plan() for arguments already checked (tiles: Tiles, TileSchedule or "tuned")."""
        if isinstance(tiles, str):                       # "tuned": this machine's cached schedule, or defaults
            tiles = schedules.cached(self.schedule_key(batch, threads, machine)) or Tiles()
        if isinstance(tiles, TileSchedule) and tiles.tuned_for is not None:
            schedules.check_key(tiles, self.schedule_key(batch, threads, machine))
        config = RunConfig(threads=threads, tiles=as_schedule(tiles), fuse_blocks=fuse_blocks, machine=machine)
        return self._plans.get((batch, config), lambda: build_plan(self.graph, self.weights, batch, config))

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of the graph and its weights (engine.schedules.fingerprint)."""
        return schedules.fingerprint(self.graph)

    def schedule_key(self, batch: int, threads: int, machine: MachineInfo | None = None) -> schedules.ScheduleKey:
        """What a schedule tuned for this model at `batch` and `threads` here is keyed by."""
        return schedules.ScheduleKey.of(self.fingerprint, batch, threads, checks.check_machine(machine))

    def _forget_recent(self, evicted: Plan) -> None:
        """The fast path must not keep an evicted plan alive."""
        recent = self._recent
        if recent is not None and recent.plan is evicted:
            self._recent = None

    # ------------------------------------------------------------ running

    def run(self, x: np.ndarray, threads: int = 1, tiles: Tiles | TileSchedule | None = None,
            fuse_blocks: bool | str = DEFAULT_FUSE_BLOCKS,
            hooks=(), machine: MachineInfo | None = None) -> np.ndarray:
        """Run the network on a batch.

        x: float32 (N, C, H, W), NCHW, any N >= 1, any strides (see check_input; NaN/Inf
            make only their own image's outputs unspecified).
        threads: numba threads, 1..cores. tiles: engine.Tiles (the same for every step;
            default Tiles()), engine.TileSchedule (tiles per step, fusion per block; one
            tuned for another model, batch, threads or machine is refused) or "tuned" (the
            schedule engine.tune cached for this model, batch, threads and machine; the
            defaults, with a one-time warning, where there is none).
        fuse_blocks: True, False or "auto".
        hooks: a hook or a list of hooks, objects with on_layer(record) (and optional
            on_run_start/on_run_end); a hook that raises stops the run and the error
            reaches the caller.
        machine: the engine.machine.MachineInfo the "auto" fusion policy, the band heights
            and the bytes model assume; default machine_info() (nominal caches from sysfs).
            The workbench passes the one its measured ceilings give (effective caches).
        Every argument is checked (ValueError naming expected and got) before any kernel runs
        (a repeat of the last hook-free call's arguments reuses that call's checks).
        Returns float32 (N, *output_shape), a new array.

        Threads: runs are serialised process-wide (one lock), so calls from several Python
        threads, on one model or several, queue and each gets its own correct result. A
        call from inside a hook of a run on the same thread raises RuntimeError (it would
        otherwise wait for itself forever).
        """
        # Fast path: the arguments of the last plain run again (same objects for tiles,
        # fuse_blocks and machine, an int thread count, a C-contiguous native float32 batch
        # of the same shape, no hooks), which were checked then. After a run the
        # interpreter's code and data are out of cache, and the full checks cost a few
        # per cent of a batch-1 run before the first kernel; this test costs microseconds.
        recent = self._recent
        if (recent is not None and type(hooks) is tuple and not hooks and not self._hooks and type(x) is np.ndarray
                and x.dtype is _FLOAT32 and type(threads) is int and threads == recent.threads
                and tiles is recent.tiles and fuse_blocks is recent.fuse_blocks and machine is recent.machine
                and x.shape == recent.shape and x.flags.c_contiguous):
            return runtime.run(recent.plan, x, threads)
        arguments = (threads, tiles, fuse_blocks, machine)
        x = self.check_input(x)
        threads = checks.check_threads(threads)
        hooks = tuple(handle.hook for handle in self._hooks) + checks.check_hooks(hooks)
        plan = self._plan(x.shape[0], threads, checks.check_tiles(tiles, tuned_allowed=True),
                          checks.check_fuse_blocks(fuse_blocks), checks.check_machine(machine))
        # "tuned" is looked up again on every checked run: a new tuning result takes effect
        if not hooks and x.flags.c_contiguous and x.dtype is _FLOAT32 and type(arguments[0]) is int \
                and not isinstance(tiles, str):
            self._recent = _RecentRun(x.shape, *arguments, plan)
        return runtime.run(plan, x, threads, hooks, next(self._run_indices) if hooks else 0)


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


__all__ = ["Model", "load", "total_flops", "DEFAULT_FUSE_BLOCKS"]
