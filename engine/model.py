"""`engine.load` and `Model.run`: the engine's public entry points."""
from __future__ import annotations

import functools
import gc
import os
import threading
import time
from collections import OrderedDict

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

from engine.graph import Graph
from engine.hooks import LayerRecord, RunInfo
from engine.kernels.layout import CB
from engine.machine import MachineInfo, machine_info
from engine.onnx_import import import_graph, read_model
from engine.passes import run_passes
from engine.plan import PackedWeights, Plan, RunConfig, build_plan
from engine.tiles import Tiles

REENTRANT_RUN_MESSAGE = (
    "Model.run was called while a run is in progress on this same thread (from a hook or a "
    "callback of that run): the engine runs one batch at a time, so this call would wait for "
    "itself forever. Keep what the hook needs and run after the outer run has returned.")


class _RunLock:
    """A process-wide lock around every run, that refuses re-entry from the thread holding it.

    Runs share plan buffers and numba's thread pool, so they go one at a time: callers on
    other threads wait their turn. A run started on the thread that holds the lock (from
    a hook of the running one) would wait for itself forever; `with` raises RuntimeError
    there instead. (threading.RLock would let it in, and the inner run would overwrite
    the outer one's buffers.)"""

    def __init__(self):
        self._lock = threading.Lock()
        self._holder = threading.local()

    def __enter__(self):
        if getattr(self._holder, "active", False):
            raise RuntimeError(REENTRANT_RUN_MESSAGE)
        self._lock.acquire()
        self._holder.active = True
        return self

    def __exit__(self, *exc_info):
        self._holder.active = False
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


_FLOAT32 = np.dtype(np.float32)          # native float32; numpy's dtype objects for it are this one


def _numba_threads() -> int:
    """numba.get_num_threads() for the calling thread. Once numba's threads are running,
    read straight from the threading layer (the ctypes getter numba.get_num_threads
    itself ends with): the public function first takes two initialisation locks, ~28 us
    when the interpreter's caches are cold after a run. Falls back to the public function
    before the threads start or if numba's internals differ."""
    getter = getattr(_numba_parallel, "_get_num_threads", None)
    if getter is not None and getattr(_numba_parallel, "_is_initialized", False):
        threads = getter()
        if threads > 0:
            return threads
    return numba.get_num_threads()


class _CollectorPaused:
    """`with _CollectorPaused():` -- Python's cyclic garbage collector waits while the
    kernels run: a full collection of this process (~110,000 tracked objects once numba is
    loaded) takes ~70 ms here and would otherwise land inside a run now and then (batch 1,
    2 threads: mean 6.6 ms with it, 6.0 without; medians equal). It runs at the next
    allocation after the run instead; the collector is left as found. A plain class: a
    generator-based context manager costs tens of microseconds when the interpreter's
    caches are cold after a run."""

    __slots__ = ("collecting",)

    def __enter__(self):
        self.collecting = gc.isenabled()
        if self.collecting:
            gc.disable()

    def __exit__(self, *exc_info):
        if self.collecting:
            gc.enable()


# numba's default (workqueue) threading layer must not be entered from two Python
# threads at once: every run in this process takes this lock, so concurrent callers queue.
_RUN_LOCK = _RunLock()


@functools.lru_cache(maxsize=1)
def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, read once), also numba's thread limit."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


# What Model.run does with inverted-residual blocks unless told: False (never fuse), True
# (fuse every block) or "auto" (fuse where engine.plan.fusion_wins expects it to pay).
DEFAULT_FUSE_BLOCKS: bool | str = "auto"


class Model:
    """A loaded network: its graph, packed weights and cached plans.

    `input_shape` is (C, H, W); `output_shape` the batch-free output, e.g. (1000,)."""

    _PLAN_CACHE_SIZE = 4

    def __init__(self, graph: Graph):
        self.graph = graph
        self.weights = PackedWeights(graph)
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._plans_lock = threading.Lock()
        # (x.shape, threads, tiles, fuse_blocks, machine, plan) of the last run without hooks: run's fast path
        self._recent: tuple | None = None
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
        """Validate an input batch (N, C, H, W) float32; returns `x` itself (not a copy).

        Any memory layout is accepted: non-contiguous, Fortran-ordered, negative-stride,
        read-only, unaligned and big-endian float32 arrays all work (run copies such an
        array into a C-contiguous native one first; a C-contiguous native float32 batch is
        read in place by the first kernels and never written). Other
        dtypes (float64 included) are refused, not converted: pass x.astype(np.float32).
        Masked arrays are refused (the engine would ignore the mask). Raises ValueError
        naming what was expected and what was given.

        NaN and Inf are not rejected (checking would cost a pass over the input), but the
        kernels are compiled with fast-math flags that assume finite values, so the outputs
        of an image holding them are unspecified (observed: a NaN makes that image's logits
        NaN, an Inf saturates in ReLU6); other images of the batch are not affected
        (tests/test_argument_validation.py checks this bit for bit). Check with
        np.isfinite first where that matters."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"x must be a numpy.ndarray of float32 (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {type(x).__name__}")
        if isinstance(x, np.ma.MaskedArray):
            raise ValueError("x must be a plain numpy.ndarray, got a masked array (the engine would ignore "
                             "its mask): pass x.filled(value)")
        if x.dtype != np.float32 and not (x.dtype.kind == "f" and x.dtype.itemsize == 4):   # any byte order
            raise ValueError(f"x must be float32, got {x.dtype} (convert with x.astype(np.float32))")
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
        """`threads` as an int, or ValueError unless it is an int in 1..available_cores()."""
        cores = available_cores()
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= cores:
            raise ValueError(f"threads must be an int in 1..{cores} (this machine's cores), got {threads!r}")
        return int(threads)

    @staticmethod
    def check_batch(batch) -> int:
        """`batch` (images) as an int, or ValueError unless it is an int >= 1."""
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be an int >= 1 (images), got {batch!r}")
        return int(batch)

    @staticmethod
    def check_tiles(tiles) -> Tiles:
        """`tiles`, Tiles() for None, or ValueError unless it is an engine.Tiles."""
        if tiles is None:
            return Tiles()
        if not isinstance(tiles, Tiles):
            raise ValueError(f"tiles must be an engine.Tiles, got {type(tiles).__name__}")
        return tiles

    @staticmethod
    def check_fuse_blocks(fuse_blocks):
        """True, False (numpy bools too) or "auto"; ValueError for anything else."""
        if isinstance(fuse_blocks, str) and fuse_blocks == "auto":
            return fuse_blocks
        if isinstance(fuse_blocks, (bool, np.bool_)):
            return bool(fuse_blocks)
        raise ValueError(f"fuse_blocks must be True, False or \"auto\", got {fuse_blocks!r}")

    @staticmethod
    def check_machine(machine) -> MachineInfo:
        """`machine`, machine_info() for None, or ValueError unless it is an
        engine.machine.MachineInfo with the lane width the kernels are built for (CB)."""
        if machine is None:
            return machine_info()
        if not isinstance(machine, MachineInfo):
            raise ValueError(f"machine must be an engine.machine.MachineInfo, got {type(machine).__name__}")
        if machine.simd_lanes_fp32 != CB:
            raise ValueError(f"machine describes {machine.simd_lanes_fp32}-lane channel blocks, but the kernels "
                             f"are built for {CB} (set ROOFLINE_LANES={machine.simd_lanes_fp32} before importing "
                             f"engine to run that layout)")
        return machine

    @staticmethod
    def check_hooks(hooks) -> tuple:
        """`hooks` as a tuple: None, one hook, or an iterable of hooks. A hook has a callable
        on_layer(record); on_run_start / on_run_end, when present, must be callable too."""
        if hooks is None:
            return ()
        if hasattr(hooks, "on_layer"):          # one hook given alone (a Recorder, say)
            hooks = (hooks,)
        try:
            hooks = tuple(hooks)
        except TypeError:
            raise ValueError(f"hooks must be a hook (an object with on_layer(record)) or a list of them, "
                             f"got {type(hooks).__name__}") from None
        for hook in hooks:
            if not callable(getattr(hook, "on_layer", None)):
                raise ValueError(f"hook {hook!r} has no on_layer(record) method")
            for name in ("on_run_start", "on_run_end"):
                method = getattr(hook, name, None)
                if method is not None and not callable(method):
                    raise ValueError(f"hook {hook!r}: {name} must be a method, got {type(method).__name__}")
        return hooks

    # ------------------------------------------------------------ planning

    def plan(self, batch: int, threads: int = 1, tiles: Tiles | None = None,
             fuse_blocks: bool | str = DEFAULT_FUSE_BLOCKS, machine: MachineInfo | None = None) -> Plan:
        """The (cached) plan for a batch size and configuration (arguments as for run)."""
        return self._plan(self.check_batch(batch), self.check_threads(threads), self.check_tiles(tiles),
                          self.check_fuse_blocks(fuse_blocks), self.check_machine(machine))

    def _plan(self, batch: int, threads: int, tiles: Tiles, fuse_blocks, machine: MachineInfo) -> Plan:
        """plan() for arguments already checked. The cache is shared by threads: its lock
        is held while a plan is looked up or built (never while one runs)."""
        config = RunConfig(threads=threads, tiles=tiles, fuse_blocks=fuse_blocks, machine=machine)
        key = (batch, config)
        with self._plans_lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = build_plan(self.graph, self.weights, batch, config)
                self._plans[key] = plan
                while len(self._plans) > self._PLAN_CACHE_SIZE:
                    _, evicted = self._plans.popitem(last=False)
                    recent = self._recent
                    if recent is not None and recent[5] is evicted:
                        self._recent = None     # the fast path must not keep an evicted plan alive
            else:
                self._plans.move_to_end(key)
        return plan

    # ------------------------------------------------------------ running

    def run(self, x: np.ndarray, threads: int = 1, tiles: Tiles | None = None,
            fuse_blocks: bool | str = DEFAULT_FUSE_BLOCKS,
            hooks=(), machine: MachineInfo | None = None) -> np.ndarray:
        """Run the network on a batch.

        x: float32 (N, C, H, W), NCHW, any N >= 1, any strides (see check_input; NaN/Inf
            make only their own image's outputs unspecified).
        threads: numba threads, 1..cores. tiles: engine.Tiles (default Tiles()).
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
        # Fast path: the arguments of the last plain run again (same objects for tiles and
        # fuse_blocks, an int thread count, a C-contiguous native float32 batch of the same
        # shape, no hooks), which were checked then. After a run the interpreter's code and
        # data are out of cache, and the full checks cost ~0.19 ms before the first kernel
        # (3 % of a batch-1 run on 2 threads); this test costs a few microseconds.
        recent = self._recent
        if (recent is not None and type(hooks) is tuple and not hooks and type(x) is np.ndarray
                and x.dtype is _FLOAT32 and type(threads) is int and threads == recent[1] and tiles is recent[2]
                and fuse_blocks is recent[3] and machine is recent[4] and x.shape == recent[0]
                and x.flags.c_contiguous):
            plan = recent[5]
        else:
            arguments = (threads, tiles, fuse_blocks, machine)
            x = self.check_input(x)
            threads = self.check_threads(threads)
            tiles = self.check_tiles(tiles)
            fuse_blocks = self.check_fuse_blocks(fuse_blocks)
            hooks = self.check_hooks(hooks)
            plan = self._plan(x.shape[0], threads, tiles, fuse_blocks, self.check_machine(machine))
            if not hooks and x.flags.c_contiguous and x.dtype is _FLOAT32 and type(arguments[0]) is int:
                self._recent = (x.shape, *arguments, plan)
        with _RUN_LOCK:
            previous_threads = _numba_threads()
            if previous_threads != threads:
                numba.set_num_threads(threads)
            io = plan.io
            io["input"] = x if x.flags.c_contiguous and x.dtype.isnative else np.ascontiguousarray(x, np.float32)
            try:
                if hooks:
                    self._run_hooked(plan, hooks)
                else:
                    with _CollectorPaused():
                        for step in plan.steps:
                            step.call()
                return io["output"]
            finally:
                io["input"] = io["output"] = None     # keep no reference to the caller's arrays
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
        with _CollectorPaused():
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
