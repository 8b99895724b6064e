"""`compare`: our engine, ONNX Runtime and OpenVINO timed side by side on one model, and
ONNX Runtime's own per-node profile placed on the same roofline as our layers.

    import workbench
    result = workbench.compare("data/mobilenet_v2.onnx", batch=1, threads=2)
    result.table            # engine, precision, seconds, images_per_second(_per_core), cost_per_million_inferences
    result.notes            # e.g. "openvino is not installed: skipped"
    result.ort_nodes        # ORT's nodes in workbench.profile's columns (mapped onto our layers)
    result.figure(ceilings) # our steps and ORT's nodes on one roofline, an arrow per layer

Timing. Every engine runs the same float32 batch (N, C, H, W) with `threads` threads: ours
with `threads` numba threads (default tiles and engine.DEFAULT_FUSE_BLOCKS unless asked), ONNX Runtime on
the CPU execution provider with intra_op_num_threads=threads, inter_op_num_threads=1, all
graph optimisations and "session.force_spinning_stop" = "1" (its workers spin while a run
lasts but stop when it ends: left spinning, they keep a core busy long after the run and
slow whichever engine runs next; bench/README.md, "Spinning threads"), OpenVINO on
"CPU" with INFERENCE_NUM_THREADS=threads, one stream, the LATENCY hint and
INFERENCE_PRECISION_HINT=f32 (openvino_config). The engines take turns: in each of
`repeats` rounds each engine, in an order rotated every round, does one untimed call (it
absorbs the previous engine's thread-pool spin-down and brings its own caches back) then
one timed call. The interleaving spreads a burst of outside load over all engines instead
of one. `seconds` is the median of the timed calls (`seconds_min` the fastest), per batch.

Precision. Every row runs the model in float32 ("fp32" in the table's precision column),
and says so from what its runtime reports, not from what was asked:
- engine: float32 kernels only. engine.load refuses inputs and weights that are not float32
  and has no handler for any quantization op (QuantizeLinear, QLinearConv, ...), so every
  model compare times is fp32 without quantization.
- onnxruntime: CPUExecutionProvider only (no other provider, so no fp16 one; read back with
  session.get_providers()), no quantization (the model has no quantization ops and ORT adds
  none), and "mlas.enable_gemm_fastmath_arm64_bfloat16" = "0" (ORT's switch that runs
  float32 GEMMs in bf16; ARM64 only, off by default) pinned off and read back.
- openvino: its CPU plugin's default INFERENCE_PRECISION_HINT is bf16 on CPUs with
  AVX512_BF16 or AMX, f32 elsewhere, so left alone it would put a bf16 row beside our fp32
  one on such a CPU. The hint is pinned to f32 and read back from the compiled model
  (openvino_precision); the executed graph's node precisions are checked as well
  (openvino_node_precisions). A compiled model that reports another precision is labelled
  with it, and a note says so.
`precision_source` says, per row, where its precision comes from.

Cost. cores = threads (the cores each engine was allowed), images_per_second = batch /
seconds, images_per_second_per_core = images_per_second / cores, and
cost_per_million_inferences = 1e6 / images_per_second / 3600 * cores * price_per_core_hour
(USD when the price is in USD per core-hour). The default price, DEFAULT_PRICE_PER_CORE_HOUR
= 0.05 USD, is roughly what clouds charge for one vCPU of a general-purpose instance
on demand (about 0.04-0.05 USD per vCPU-hour in 2024); give your own.

ORT's per-node profile. A second ONNX Runtime session with enable_profiling=True runs the
batch 1 + `repeats` times; its JSON trace is parsed: events with cat == "Node" and a name
ending in "_kernel_time" (older releases: every Node event), args.op_name, dur in
microseconds. The first run is a warm-up and dropped; the rest give a median per node.
Mapping onto our layers: ORT renames the nodes it rewrites (its NCHWc transformer names a
fused Conv+Clip "<output tensor of the Clip>_nchwc"), so a node's name is tried, with the
"_kernel_time" and "_nchwc" suffixes removed, as (1) the name of an ONNX node one of our
layers stands for (`Layer.sources`: the Conv and the Clip, Add, BatchNormalization it
absorbed), then (2) an ONNX tensor name, whose producing node is looked up in the model,
then (3) the output tensor name of one of our layers. Several ORT nodes on one layer are
summed. A mapped node gets our FLOPs (2 per multiply-accumulate) and our bytes-moved model
for that layer (default tiles, blocks unfused whatever `fuse_blocks` says: ORT runs each of
them on its own, at this batch and thread count), and ORT's measured
time, through the same `summarise` as `workbench.profile`, so the frame plots with
`workbench.roofline_figure`. What cannot be mapped: ORT's ReorderInput / ReorderOutput
(layout changes between NCHW and its NCHWc blocking; our engine has its own layout steps,
but no names link them) and any node ORT creates without a source name; they stay in
`ort_nodes` with mapped=False, op "layout" (reorders) or ORT's op type, flops 0 and their
time (they count in share_of_time, draw no point), and `unmapped` lists them.
ORT's node times come from the profiled session, and its profiler costs time per node: on
this 2-core machine they summed to about 1.2-1.4x the unprofiled run at batch 1 (our own
per-step times carry a smaller hook overhead too). Read them for where ORT spends its time
and for positions on the roofline; take end-to-end speed from `table`.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import engine
from engine import checks
from engine.traffic import LEVELS
from engine.checks import check_batch, check_repeats, check_seed
from engine.version import package_version
from workbench.activations import with_activations
from workbench.before_after import before_after_figure
from workbench.profile import check_ceilings, default_ceilings, default_threads, profile, summarise

logger = logging.getLogger(__name__)

DEFAULT_PRICE_PER_CORE_HOUR = 0.05   # USD per core-hour: about one on-demand cloud vCPU-hour
TABLE_COLUMNS = ["engine", "version", "precision", "precision_source", "batch", "threads", "cores", "seconds",
                 "seconds_min", "images_per_second", "images_per_second_per_core", "cost_per_million_inferences",
                 "repeats"]
ENGINE_NAME = "engine"
PRECISION = "fp32"                    # what every row runs: the model's own float32
OPENVINO_INFERENCE_PRECISION = "f32"  # OpenVINO's name for PRECISION (INFERENCE_PRECISION_HINT's value)
# OpenVINO's element type names -> this module's precision names
OPENVINO_TYPE_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "float32": "fp32", "bfloat16": "bf16",
                       "float16": "fp16"}
LOWER_FLOAT_PRECISIONS = ("bf16", "f16")   # OpenVINO node precisions below float32
ORT_BF16_FASTMATH = "mlas.enable_gemm_fastmath_arm64_bfloat16"   # ORT's float32-GEMMs-in-bf16 switch (ARM64)
PRECISION_SOURCES = {
    ENGINE_NAME: "float32 kernels only; engine.load accepts only float32 models without quantization ops",
    "onnxruntime": f"CPUExecutionProvider only (read back), {ORT_BF16_FASTMATH}=0, fp32 model, no quantization",
    "openvino": "CPU plugin, INFERENCE_PRECISION_HINT=f32 asked; the row's precision is read back from the "
                "compiled model",
}


@dataclass
class Comparison:
    """What `compare` found.

    table: one row per engine that ran: engine ("engine" = ours, "onnxruntime",
        "openvino"), version, precision (what it ran, read back from the runtime: "fp32";
        see the module docstring), precision_source (where that comes from, a sentence),
        batch, threads, cores, seconds (median per batch, s),
        seconds_min (s), images_per_second, images_per_second_per_core,
        cost_per_million_inferences (at price_per_core_hour), repeats.
    ort_nodes: ONNX Runtime's per-node profile in workbench.profile's columns (layer is
        our layer name when mapped), plus engine, ort_node (ORT's node names, joined by
        " + "), ort_op and mapped (bool). Empty when ONNX Runtime is not installed.
    engine_profile: our engine's workbench.profile at the same batch and threads.
    notes: what was skipped or could not be mapped, one sentence each.
    price_per_core_hour: the price used for the cost column.
    """

    table: pd.DataFrame
    ort_nodes: pd.DataFrame
    engine_profile: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR

    @property
    def unmapped(self) -> pd.DataFrame:
        """ORT nodes that match none of our layers: ort_node, ort_op, seconds (median, s)."""
        if self.ort_nodes.empty:
            return pd.DataFrame(columns=["ort_node", "ort_op", "seconds"])
        rows = self.ort_nodes[~self.ort_nodes["mapped"]]
        return rows[["ort_node", "ort_op", "seconds"]].reset_index(drop=True)

    def figure(self, ceilings, level: str = "L2"):
        """Our steps (hollow) and ORT's mapped nodes (filled) on one roofline at `level`,
        an arrow from our point to ORT's for every layer both ran (before_after_figure)."""
        if self.engine_profile is None or self.ort_nodes.empty:
            raise ValueError("nothing to compare: " + ("; ".join(self.notes) or "no ONNX Runtime profile"))
        return before_after_figure(self.engine_profile, self.ort_nodes, ceilings, level=level,
                                   labels=("our engine", "onnxruntime"))


# ---------------------------------------------------------------------------- arithmetic

def cost_per_million_inferences(images_per_second: float, cores: int, price_per_core_hour: float) -> float:
    """Price of 1e6 inferences: 1e6 / images_per_second seconds of `cores` cores, at
    `price_per_core_hour` per core-hour (same currency)."""
    return 1e6 / images_per_second / 3600.0 * cores * price_per_core_hour


def _check_price(price) -> float:
    if isinstance(price, (bool, np.bool_)) or not isinstance(price, (int, float, np.floating, np.integer)) \
            or not np.isfinite(price) or price <= 0:
        raise ValueError(f"price_per_core_hour must be a positive number (per core-hour), got {price!r}")
    return float(price)


# ---------------------------------------------------------------------------- engines

def _read_proto(model):
    """(onnx.ModelProto, path or None); ValueError for a missing file or another type,
    engine.ModelError for bytes that are not an ONNX model."""
    from engine.onnx_import import read_model

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        return read_model(path), path
    if isinstance(model, (bytes, bytearray)):
        return read_model(bytes(model)), None
    if hasattr(model, "SerializeToString"):
        return model, None
    raise ValueError(f"model must be an ONNX file path, bytes or an onnx.ModelProto, got {type(model).__name__}")


def _ort_session(model_bytes: bytes, threads: int, profile_prefix: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op workers otherwise keep spinning on the cores after a run, and the next
    # engine's threads get only part of the machine.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.add_session_config_entry(ORT_BF16_FASTMATH, "0")   # float32 GEMMs stay float32
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnxruntime_precision(session) -> str:
    """The precision an ONNX Runtime session runs a float32 model in, from the session itself:
    "fp32" when CPUExecutionProvider is its only provider and the ARM64 bf16 fast-math GEMM
    (ORT_BF16_FASTMATH) is off, "bf16" when that is on (ORT honours it on ARM64 only; on x86
    the label then says less than ORT ran). ValueError when the session has any other
    provider (an fp16 or accelerator provider is not what this comparison times)."""
    providers = list(session.get_providers())
    if providers != ["CPUExecutionProvider"]:
        raise ValueError(f"ONNX Runtime session runs on {providers}; expected ['CPUExecutionProvider'] only")
    try:
        fastmath = session.get_session_options().get_session_config_entry(ORT_BF16_FASTMATH)
    except RuntimeError:           # never set: ORT's default, off
        fastmath = "0"
    return "bf16" if fastmath == "1" else PRECISION


def openvino_config(threads: int, inference_precision: str | None = OPENVINO_INFERENCE_PRECISION) -> dict[str, str]:
    """OpenVINO CPU plugin config for compile_model: `threads` inference threads, one stream,
    the LATENCY hint and INFERENCE_PRECISION_HINT = inference_precision (default "f32",
    OpenVINO's spelling of float32). None leaves the hint out, and the plugin picks its
    default: bf16 on CPUs with AVX512_BF16 or AMX, f32 elsewhere (the separately labelled
    "default precision" row of bench/latency.py)."""
    config = {"INFERENCE_NUM_THREADS": str(int(threads)), "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    if inference_precision is not None:
        config["INFERENCE_PRECISION_HINT"] = inference_precision
    return config


def precision_name(openvino_type) -> str:
    """An OpenVINO element type (ov.Type, or its name: "f32", "bf16", "f16") in this module's
    spelling: "fp32", "bf16", "fp16"; any other type keeps OpenVINO's name."""
    name = openvino_type.get_type_name() if hasattr(openvino_type, "get_type_name") else str(openvino_type)
    return OPENVINO_TYPE_NAMES.get(name, name)


def openvino_precision(compiled) -> str:
    """The precision an OpenVINO compiled model runs ("fp32", "bf16", "fp16"), read back from
    it: its INFERENCE_PRECISION_HINT property after compilation, which on the CPU plugin is
    the precision the plugin chose, whatever was asked."""
    return precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


def openvino_node_precisions(compiled) -> dict[str, int]:
    """Node count per runtime precision of the graph OpenVINO executes ({"f32": 217, "i32":
    54}; OpenVINO's type names): the "runtimePrecision" of every node of
    compiled.get_runtime_model(). Nodes without it are not counted."""
    counts: dict[str, int] = defaultdict(int)
    for node in compiled.get_runtime_model().get_ops():
        info = node.get_rt_info()
        if "runtimePrecision" in info:
            value = info["runtimePrecision"]
            counts[str(value.astype(str) if hasattr(value, "astype") else value)] += 1
    return dict(counts)


def _openvino_runner(model_bytes: bytes, path: Path | None, x: np.ndarray, threads: int, workdir: str):
    """(run, version, precision, notes) for OpenVINO compiled with openvino_config(threads)
    (f32 pinned); precision is read back from the compiled model (openvino_precision), notes
    say where it or the executed graph is not fp32. Raises ImportError when it is not installed."""
    import openvino as ov

    if path is None:
        path = Path(workdir) / "model.onnx"
        path.write_bytes(model_bytes)
    core = ov.Core()
    network = core.read_model(str(path))
    network.reshape(list(x.shape))
    compiled = core.compile_model(network, "CPU", openvino_config(threads))
    precision = openvino_precision(compiled)
    notes = []
    if precision != PRECISION:
        notes.append(f"openvino ran {precision} although INFERENCE_PRECISION_HINT={OPENVINO_INFERENCE_PRECISION} "
                     f"was asked: its row says {precision}")
    lowered = {name: count for name, count in openvino_node_precisions(compiled).items()
               if name in LOWER_FLOAT_PRECISIONS}
    if lowered:
        notes.append("openvino's executed graph has nodes below float32 ("
                     + ", ".join(f"{count} {name}" for name, count in sorted(lowered.items())) + ")")
    request = compiled.create_infer_request()

    def run():
        request.infer({0: x})

    return run, getattr(ov, "__version__", ""), precision, notes


def _time_interleaved(runners: dict, repeats: int) -> dict[str, list[float]]:
    """Per engine, `repeats` timed calls, the engines taking turns (see the module docstring)."""
    names = list(runners)
    for name in names:                  # warm-up: compile, allocate, fill caches
        runners[name]()
        runners[name]()
    seconds = {name: [] for name in names}
    clock = time.perf_counter
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            run = runners[name]
            run()
            start = clock()
            run()
            seconds[name].append(clock() - start)
    return seconds


# ---------------------------------------------------------------------------- ORT's profile

def parse_ort_profile(path) -> tuple[pd.DataFrame, list[float]]:
    """ORT's profiling JSON -> (one row per node per run: run, order, ort_node, ort_op, seconds,
    input_shape, output_shape; the run times in s from its "model_run" events).

    Node events: cat == "Node"; names ending in "_kernel_time" when any does (the
    "_fence_before/_after" events of older releases are then left out); dur in us. The
    k-th event of a node name belongs to run k."""
    events = json.loads(Path(path).read_text())
    if isinstance(events, dict):          # some releases wrap the list
        events = events.get("traceEvents", [])
    nodes = [e for e in events if isinstance(e, dict) and e.get("cat") == "Node"]
    if any(str(e.get("name", "")).endswith("_kernel_time") for e in nodes):
        nodes = [e for e in nodes if str(e["name"]).endswith("_kernel_time")]
    runs = [float(e["dur"]) * 1e-6 for e in events
            if isinstance(e, dict) and e.get("cat") == "Session" and e.get("name") == "model_run"]
    seen: dict[str, int] = defaultdict(int)
    order: dict[str, int] = {}
    rows = []
    for event in nodes:
        name = str(event["name"]).removesuffix("_kernel_time")
        args = event.get("args", {}) or {}
        run = seen[name]
        seen[name] += 1
        order.setdefault(name, len(order))
        rows.append({"run": run, "order": order[name], "ort_node": name, "ort_op": str(args.get("op_name", "")),
                     "seconds": float(event.get("dur", 0.0)) * 1e-6,
                     "input_shape": _first_shape(args.get("input_type_shape")),
                     "output_shape": _first_shape(args.get("output_type_shape"))})
    return pd.DataFrame(rows, columns=["run", "order", "ort_node", "ort_op", "seconds", "input_shape",
                                       "output_shape"]), runs


def _first_shape(shapes) -> tuple:
    """ORT writes shapes as [{"float": [1, 32, 112, 112]}, ...]: the first one, as a tuple."""
    try:
        return tuple(int(v) for v in next(iter(shapes[0].values())))
    except (TypeError, IndexError, KeyError, AttributeError, StopIteration, ValueError):
        return ()


class LayerMap:
    """ORT node name -> our layer name, by the rules of the module docstring."""

    def __init__(self, model: engine.Model, proto=None):
        self.by_source: dict[str, str] = {}
        self.by_output: dict[str, str] = {}
        for layer in model.layers:
            for source in [layer.name, *layer.sources]:
                self.by_source.setdefault(source, layer.name)
            self.by_output.setdefault(layer.output, layer.name)
        self.producer: dict[str, str] = {}
        if proto is not None:
            for node in proto.graph.node:
                for output in node.output:
                    if output and node.name:
                        self.producer[output] = node.name

    def layer_of(self, ort_node: str) -> str | None:
        candidates = [ort_node]
        for suffix in ("_nchwc", "_kernel_time"):
            candidates += [c.removesuffix(suffix) for c in candidates if c.endswith(suffix)]
        for name in candidates:
            if name in self.by_source:
                return self.by_source[name]
        for name in candidates:
            node = self.producer.get(name)
            if node is not None and node in self.by_source:
                return self.by_source[node]
        for name in candidates:
            if name in self.by_output:
                return self.by_output[name]
        return None


def ort_node_profile(raw: pd.DataFrame, model: engine.Model, batch: int, threads: int, ceilings,
                     proto=None, run_seconds=()) -> pd.DataFrame:
    """ORT's per-node rows (parse_ort_profile) -> a workbench.profile-style frame.

    Mapped nodes carry our step's op, shapes, FLOPs and modelled bytes (default tiles,
    unfused plan at batch and threads); unmapped ones op "layout" (ORT's Reorder*) or ORT's
    op type lower-cased, flops 0, bytes 0. Median over runs, via workbench.profile.summarise.
    Extra columns: engine ("onnxruntime"), ort_node, ort_op, mapped."""
    layer_map = LayerMap(model, proto)
    # unfused whatever the engine's default: ORT's nodes map onto single layers, never onto a fused block
    steps = {step.name: step for step in model.plan(batch, threads, fuse_blocks=False).steps
             if step.layer is not None}
    units: dict[str, dict] = {}       # unit key -> description; key = our layer name or "ort:<node>"
    per_run: dict[tuple[int, str], float] = defaultdict(float)
    for row in raw.itertuples():
        layer = layer_map.layer_of(row.ort_node)
        key = layer if layer is not None else f"ort:{row.ort_node}"
        unit = units.get(key)
        if unit is None:
            unit = units[key] = {"layer": layer, "order": row.order, "ort_nodes": [], "ort_ops": [],
                                 "input_shape": row.input_shape, "output_shape": row.output_shape}
        if row.ort_node not in unit["ort_nodes"]:
            unit["ort_nodes"].append(row.ort_node)
            unit["ort_ops"].append(row.ort_op)
        per_run[(row.run, key)] += row.seconds
    records = []
    ordered = sorted(units.items(), key=lambda item: item[1]["order"])
    for index, (key, unit) in enumerate(ordered):
        step = steps.get(unit["layer"]) if unit["layer"] is not None else None
        if unit["layer"] is None:
            op = "layout" if all(o.startswith("Reorder") for o in unit["ort_ops"]) else unit["ort_ops"][0].lower()
            described = dict(name=unit["ort_nodes"][0], op=op, input_shape=unit["input_shape"],
                             output_shape=unit["output_shape"], flops=0, other_flops=0,
                             bytes=dict.fromkeys(LEVELS, 0), members=(unit["ort_nodes"][0],))
        elif step is None:    # a layer our plan runs as a view (Flatten): no step, no work
            layer = next(lay for lay in model.layers if lay.name == unit["layer"])
            described = dict(name=layer.name, op=layer.op.lower(), input_shape=unit["input_shape"],
                             output_shape=unit["output_shape"], flops=0, other_flops=0,
                             bytes=dict.fromkeys(LEVELS, 0), members=(layer.name,))
        else:
            described = dict(name=step.name, op=step.op, input_shape=tuple(step.input_shape),
                             output_shape=tuple(step.output_shape), flops=int(step.flops),
                             other_flops=int(step.other_flops), bytes=dict(step.bytes),
                             members=tuple(step.members))
        runs = sorted({run for run, k in per_run if k == key})
        for run in runs:
            record = {"run_index": run, "step_index": index, "name": described["name"], "op": described["op"],
                      "input_shape": described["input_shape"], "output_shape": described["output_shape"],
                      "batch": batch, "threads": threads, "fused": False, "seconds": per_run[(run, key)],
                      "flops": described["flops"], "other_flops": described["other_flops"],
                      "members": described["members"]}
            for level in LEVELS:
                record[f"bytes_{level}"] = described["bytes"].get(level, np.nan)
            records.append(record)
    frame = summarise(pd.DataFrame(records), ceilings, run_seconds=run_seconds)
    frame["engine"] = "onnxruntime"
    frame["ort_node"] = [" + ".join(unit["ort_nodes"]) for _, unit in ordered]
    frame["ort_op"] = [" + ".join(unit["ort_ops"]) for _, unit in ordered]
    frame["mapped"] = [unit["layer"] is not None for _, unit in ordered]
    return with_activations(frame, model)      # a mapped node's layer's activation, as in our profiles


def _profile_ort(model_bytes: bytes, x: np.ndarray, threads: int, runs: int, workdir: str):
    session = _ort_session(model_bytes, threads, profile_prefix=os.path.join(workdir, "ort_profile"))
    feed = {session.get_inputs()[0].name: x}
    for _ in range(runs):
        session.run(None, feed)
    path = session.end_profiling()
    del session
    raw, run_seconds = parse_ort_profile(path)
    if raw.empty:
        raise RuntimeError(f"ONNX Runtime's profile {path} has no Node events")
    if raw["run"].max() >= 1:            # drop the warm-up run
        raw = raw[raw["run"] >= 1]
        run_seconds = run_seconds[1:]
    return raw, run_seconds


# ---------------------------------------------------------------------------- compare

def compare(model_path, batch: int = 1, threads: int | None = None, repeats: int = 20,
            price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR, ceilings=None, tiles: engine.Tiles | None = None,
            fuse_blocks: bool | str = engine.DEFAULT_FUSE_BLOCKS, seed: int = 0) -> Comparison:
    """Time our engine, ONNX Runtime and OpenVINO (each when installed) on one model, each
    in float32 (OpenVINO with INFERENCE_PRECISION_HINT pinned to f32; see the module docstring).

    model_path: an ONNX file (bytes or an onnx.ModelProto also work). batch: images per
    call, 1..4096. threads: cores each engine may use, 1..this machine's cores; default
    workbench.profile.default_threads() (the cores, at most 2). repeats:
    timed calls per engine (and ORT profiled runs). price_per_core_hour: USD (or any
    currency) per core-hour, default DEFAULT_PRICE_PER_CORE_HOUR = 0.05. ceilings: the roofs
    for the per-node profiles (default measure_ceilings(quick=True)). tiles, fuse_blocks:
    our engine's configuration (fuse_blocks False, True or "auto"; default
    engine.DEFAULT_FUSE_BLOCKS). seed: of the random input (int >= 0). Returns a Comparison
    (see its docstring and the module's). Every argument is checked (ValueError naming
    expected and got) before the model is loaded or anything runs.
    """
    batch = check_batch(batch)
    repeats = check_repeats(repeats)
    threads = checks.check_threads(default_threads() if threads is None else threads)
    price_per_core_hour = _check_price(price_per_core_hour)
    tiles = checks.check_tiles(tiles)
    fuse_blocks = checks.check_fuse_blocks(fuse_blocks)
    seed = check_seed(seed)
    ceilings = check_ceilings(ceilings, threads)
    proto, path = _read_proto(model_path)
    model = engine.load(proto)
    if ceilings is None:
        ceilings = default_ceilings(threads)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="roofline-compare-") as workdir:
        runners = _Runners(model, proto, path, x, threads, workdir)
        runners.add_engine(tiles, fuse_blocks)
        runners.add_onnxruntime()
        runners.add_openvino()
        seconds = _time_interleaved(runners.calls, repeats)
        runners.close()
        ort_nodes = _ort_nodes(runners, model, proto, x, batch, threads, ceilings, repeats, workdir)
    table = _table(seconds, runners, batch, threads, price_per_core_hour)
    engine_profile = profile(model, batch=batch, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks,
                             repeats=repeats, ceilings=ceilings, seed=seed)
    engine_profile["engine"] = ENGINE_NAME
    return Comparison(table=table, ort_nodes=ort_nodes, engine_profile=engine_profile, notes=runners.notes,
                      price_per_core_hour=price_per_core_hour)


class _Runners:
    """The runtimes being compared: a call per runtime that runs the batch once, with its
    version, the precision it reports, and notes on what was skipped."""

    def __init__(self, model, proto, path, x: np.ndarray, threads: int, workdir: str):
        self.model, self.model_bytes, self.path = model, proto.SerializeToString(), path
        self.x, self.threads, self.workdir = x, threads, workdir
        self.calls: dict = {}
        self.versions: dict[str, str] = {}
        self.precisions: dict[str, str] = {}      # engine name -> what it ran, from its runtime
        self.notes: list[str] = []
        self.ort_installed = False

    def add_engine(self, tiles, fuse_blocks) -> None:
        model, x, threads = self.model, self.x, self.threads
        self.calls[ENGINE_NAME] = lambda: model.run(x, threads=threads, tiles=tiles, fuse_blocks=fuse_blocks)
        self.versions[ENGINE_NAME], self.precisions[ENGINE_NAME] = package_version(), PRECISION

    def add_onnxruntime(self) -> None:
        try:
            import onnxruntime as ort        # optional: the comparison goes on without it
        except ImportError:
            self.notes.append("onnxruntime is not installed (pip install onnxruntime): skipped, and no per-node "
                              "profile")
            return
        session = _ort_session(self.model_bytes, self.threads)
        feed = {session.get_inputs()[0].name: self.x}
        self.calls["onnxruntime"] = lambda: session.run(None, feed)
        self.versions["onnxruntime"], self.precisions["onnxruntime"] = ort.__version__, onnxruntime_precision(session)
        self.ort_installed = True

    def add_openvino(self) -> None:
        try:
            self.calls["openvino"], self.versions["openvino"], self.precisions["openvino"], notes = \
                _openvino_runner(self.model_bytes, self.path, self.x, self.threads, self.workdir)
            self.notes += notes
        except ImportError:
            self.notes.append("openvino is not installed (pip install openvino): skipped")
        except Exception as error:     # a model OpenVINO cannot compile is a note, not a failure of the others
            self.notes.append(f"openvino could not run the model ({type(error).__name__}: {error}): skipped")

    def close(self) -> None:
        """Drop the calls: ORT's thread pool goes with its session."""
        self.calls.clear()


def _ort_nodes(runners: _Runners, model, proto, x, batch: int, threads: int, ceilings, repeats: int,
               workdir: str) -> pd.DataFrame:
    """ONNX Runtime's per-node profile on our roofline (empty without onnxruntime); a note
    on the nodes that match none of our layers."""
    if not runners.ort_installed:
        return pd.DataFrame()
    raw, run_seconds = _profile_ort(runners.model_bytes, x, threads, 1 + repeats, workdir)
    ort_nodes = ort_node_profile(raw, model, batch, threads, ceilings, proto=proto, run_seconds=run_seconds)
    unmapped = ort_nodes[~ort_nodes["mapped"]]
    if len(unmapped):
        runners.notes.append(f"{len(unmapped)} ONNX Runtime node(s) match none of our layers "
                             f"({', '.join(sorted(set(unmapped['ort_op'])))}; "
                             f"{unmapped['seconds'].sum() * 1e3:.3f} ms, {unmapped['share_of_time'].sum():.1%} "
                             f"of ORT's node time): listed in Comparison.unmapped")
    return ort_nodes


def _table(seconds: dict, runners: _Runners, batch: int, threads: int, price_per_core_hour: float) -> pd.DataFrame:
    """One row per runtime: median seconds, throughput, cost, what it ran."""
    rows = []
    for name, times in seconds.items():
        median = statistics.median(times)
        images_per_second = batch / median
        rows.append({"engine": name, "version": runners.versions.get(name, ""), "precision": runners.precisions[name],
                     "precision_source": PRECISION_SOURCES[name], "batch": batch, "threads": threads,
                     "cores": threads, "seconds": median, "seconds_min": min(times),
                     "images_per_second": images_per_second, "images_per_second_per_core": images_per_second / threads,
                     "cost_per_million_inferences": cost_per_million_inferences(images_per_second, threads,
                                                                                price_per_core_hour),
                     "repeats": len(times)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
