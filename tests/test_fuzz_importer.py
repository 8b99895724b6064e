"""Fuzzing the ONNX importer: every mutation of a valid model either loads and matches ONNX
Runtime, or is rejected with `engine.ModelError` — never another exception, a crash, a hang
or a wrong answer.

Hypothesis draws a base model (small MobileNetV2 / V1 variants, a tiny hand-built network
with every op the importer folds, small hand-built networks with issue 15's patterns —
HardSwish / HardSigmoid + Mul / Sigmoid + Mul after convs, squeeze-and-excitation, MaxPool,
dense 3x3 convs with residual Add + ReLU (tests/new_ops_graphs.py) — and the zoo's
MobileNetV3, EfficientNet-B0 and ResNet at small widths and resolutions) and one to three
mutations from these families:

    node       drop (optionally rewiring its readers), duplicate, move a node, swap its inputs,
               insert a Relu / Clip / Identity / Dropout / zero Pad / Add / Sigmoid /
               HardSigmoid / HardSwish / x * Sigmoid(x) / MaxPool after it
    attribute  Conv kernel_shape / strides / pads / dilations / group / auto_pad (alone, or
               kernel and weight resized together), and the attributes of the other ops (Clip
               bounds, Gemm trans/alpha/beta, Flatten axis, BatchNormalization epsilon,
               ReduceMean axes, HardSigmoid alpha/beta, MaxPool geometry, ...), deleted or of
               the wrong type
    weight     an initializer's shape, dtype, values, or data moved to a missing external file
    input      the graph input's dtype, a dimension (0, 1, odd, 65536, 2^31, symbolic, unset),
               its rank
    opset      the default opset version (0..25) with or without a matching IR version, and
               malformed opset imports
    domain     a node in a custom / ML / Microsoft domain, an unknown op, a model-local function
    edge       dangling inputs, cycles, self loops, a node reading an earlier tensor, graph
               outputs that are intermediate, missing or several, extra / missing graph
               inputs, removed initializers, empty names
    bytes      the serialized model truncated, with flipped, inserted or deleted bytes, or a
               name / attribute string that is not UTF-8
    none       the base model itself (must match)

Each case also draws a batch seed, fuse_blocks, tile sizes and 1 or 2 threads. It runs in a
worker process (tests/fuzz_worker.py), so a segfault or hang fails the case instead of
killing the test session; the parent restarts a dead worker. A loaded model runs at batch 1
and 2 (or its fixed batch) and must match ONNX Runtime within the whole-network tolerance,
max |engine - ORT| <= 1e-4 max |ORT|. A failing case's
model is saved under artifacts/fuzz/ with a JSON description; `python -m tests.fuzz_worker
<file>` reproduces it. The counts of every run go to artifacts/fuzz/summary.json and the
pytest terminal summary.

Environment:
    ROOFLINE_FUZZ_CASES=2000      number of hypothesis examples (default DEFAULT_CASES)
    ROOFLINE_FUZZ_SEED=123        a different (still reproducible) stream of cases
    ROOFLINE_FUZZ_KEEP_GOING=1    collect every failure and report them all at the end,
                                  instead of stopping at the first (and shrinking it)
    ROOFLINE_FUZZ_LOG=1           every case and its verdict to artifacts/fuzz/cases.jsonl
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import engine
from conftest import FUZZ_SUMMARY_KEY, assert_close_to_reference, ort_run
from engine import zoo
from engine.zoo import mobilenet_v1, mobilenet_v2
from new_ops_graphs import efficientnet_like, mobilenet_v3_like, resnet_like

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts" / "fuzz"
DEFAULT_CASES = 600
CASES = int(os.environ.get("ROOFLINE_FUZZ_CASES", DEFAULT_CASES))
SEED = os.environ.get("ROOFLINE_FUZZ_SEED")
KEEP_GOING = os.environ.get("ROOFLINE_FUZZ_KEEP_GOING", "") not in ("", "0")
LOG_CASES = os.environ.get("ROOFLINE_FUZZ_LOG", "") not in ("", "0")
STARTUP_SECONDS = 300     # the worker's first start may cold-compile every kernel (< 90 s here)
CASE_SECONDS = 30         # one case: load + 2 runs + ONNX Runtime take well under 1 s

# Verdicts of the worker that pass. "matched_onnx_reference": matched onnx.reference where
# ONNX Runtime has no kernel (Gemm, BatchNormalization at opset 6). "too_large": it loaded
# but is not run (huge mutated input); "nonfinite_reference": ONNX Runtime's output has NaN/Inf (NaN or overflowing
# weights), where the fast-math kernels are unspecified (engine.Model.check_input).
PASSING = ("matched", "matched_onnx_reference", "rejected", "too_large", "nonfinite_reference")


# ----------------------------------------------------------------------------- base models


def _tiny_model() -> onnx.ModelProto:
    """Every op the importer folds, on a 9x9 input: Conv 3x3 -> Clip(0,6) -> depthwise 3x3
    -> Relu -> Conv 1x1 -> Add(residual) -> Pad -> Conv 3x3 stride 2 -> BatchNormalization
    -> Relu -> GlobalAveragePool -> Flatten -> Gemm. Opset 13, batch symbolic."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("stem.w", (8, 3, 3, 3)), init("stem.b", (8,)), init("dw.w", (8, 1, 3, 3)), init("dw.b", (8,)),
             init("pw.w", (8, 8, 1, 1)), init("down.w", (16, 8, 3, 3)),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "bn.scale"), init("bn.bias", (16,)),
             init("bn.mean", (16,), 0.1),
             numpy_helper.from_array(rng.uniform(0.5, 2.0, 16).astype(np.float32), "bn.var"),
             init("fc.w", (5, 16)), init("fc.b", (5,)),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(6.0, np.float32), "six"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "stem.w", "stem.b"], ["stem"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Clip", ["stem", "zero", "six"], ["stem_act"], name="stem_relu6"),
        node("Conv", ["stem_act", "dw.w", "dw.b"], ["dw"], name="dw", group=8, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("Relu", ["dw"], ["dw_act"], name="dw_relu"),
        node("Conv", ["dw_act", "pw.w"], ["pw"], name="pw"),
        node("Add", ["pw", "stem_act"], ["res"], name="residual"),
        node("Pad", ["res", "pads"], ["padded"], name="pad"),
        node("Conv", ["padded", "down.w"], ["down"], name="down", strides=[2, 2]),
        node("BatchNormalization", ["down", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], name="bn"),
        node("Relu", ["bn"], ["bn_act"], name="bn_relu"),
        node("GlobalAveragePool", ["bn_act"], ["pool"], name="pool"),
        node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    opsets = [helper.make_opsetid("", 13)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fuzz-tiny")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


# width 0.35 / 0.25 and 32x32 pixels: a case loads and runs in milliseconds
BASE_BUILDERS = {
    "tiny": _tiny_model,
    "v2": lambda: mobilenet_v2(0.35, 32, 10),
    "v2_bn_opset10": lambda: mobilenet_v2(0.35, 32, 10, opset=10, separate_batchnorm=True, dropout=True),
    "v2_chain_opset11": lambda: mobilenet_v2(0.35, 32, 10, opset=11, flatten_style="reshape_shape_chain",
                                             pool_style="reduce_mean", classifier_style="matmul_add"),
    "v2_opset18_batch1": lambda: mobilenet_v2(0.35, 32, 10, opset=18, pool_style="reduce_mean", dropout=True,
                                              flatten_style="reshape_constant", dynamic_batch=False),
    "v1": lambda: mobilenet_v1(0.25, 32, 10),
    "v3_like": lambda: mobilenet_v3_like(16, classes=5),
    "v3_like_hardsigmoid_mul": lambda: mobilenet_v3_like(16, hardswish="hardswish_mul", opset=13, classes=5),
    "effnet_like": lambda: efficientnet_like(16, opset=18, classes=5),
    "resnet_like": lambda: resnet_like(16, classes=5),
    "resnet_like_bottleneck": lambda: resnet_like(16, bottleneck=True, classes=5),
}
# the zoo's issue-15 networks, small (where the zoo has them): 32x32 pixels, 10 classes
_ZOO_BASES = {"v3_small": ("mobilenet_v3_small", {"width_mult": 0.5}),
              "v3_large_legacy": ("mobilenet_v3_large", {"width_mult": 0.35, "exporter": "legacy"}),
              "effnet_b0": ("efficientnet_b0", {"width_mult": 0.25}),
              "resnet18": ("resnet18", {}), "resnet50_legacy": ("resnet50", {"exporter": "legacy"})}
for _base, (_name, _kwargs) in _ZOO_BASES.items():
    if _name in getattr(zoo, "MODELS", {}):
        BASE_BUILDERS[_base] = (lambda name=_name, kwargs=_kwargs:
                                zoo.MODELS[name](resolution=32, num_classes=10, **kwargs))
_BASES: dict[str, onnx.ModelProto] = {}


def base_model(name: str) -> onnx.ModelProto:
    if name not in _BASES:
        _BASES[name] = BASE_BUILDERS[name]()
    return _BASES[name]


# ----------------------------------------------------------------------------- mutations
#
# A mutation is a plain tuple (family, kind, *parameters) so a failing case prints and
# saves as data. Node and initializer indices are taken modulo the current count when
# applied (an earlier mutation may have removed one).

INTS = st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 7, 100, 2 ** 31 - 1, 2 ** 40])
SMALL_INTS = st.integers(-1, 5)
FLOATS = st.sampled_from([0.0, -1.0, 0.5, 1.0, 6.0, 1e-5, 1e30, -1e30, float("inf"), float("-inf"), float("nan")])
INT_LISTS = st.one_of(st.lists(SMALL_INTS, min_size=2, max_size=2), st.lists(SMALL_INTS, min_size=4, max_size=4),
                      st.lists(INTS, max_size=5))
ATTRIBUTE_VALUES = {     # op type -> attribute -> values (a wrong type is its own mutation)
    "Conv": {"kernel_shape": INT_LISTS, "strides": INT_LISTS, "pads": INT_LISTS, "dilations": INT_LISTS,
             "group": st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 16, 2 ** 31]),
             "auto_pad": st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS"])},
    "Clip": {"min": FLOATS, "max": FLOATS},
    "BatchNormalization": {"epsilon": FLOATS, "momentum": FLOATS, "training_mode": SMALL_INTS,
                           "spatial": SMALL_INTS, "is_test": SMALL_INTS},
    "Gemm": {"transA": SMALL_INTS, "transB": SMALL_INTS, "alpha": FLOATS, "beta": FLOATS, "broadcast": SMALL_INTS},
    "Flatten": {"axis": st.integers(-5, 5)},
    "ReduceMean": {"axes": st.lists(st.integers(-5, 5), max_size=4), "keepdims": SMALL_INTS,
                   "noop_with_empty_axes": SMALL_INTS},
    "Dropout": {"ratio": FLOATS, "seed": SMALL_INTS, "is_test": SMALL_INTS},
    "Gather": {"axis": st.integers(-3, 3)}, "Concat": {"axis": st.integers(-3, 3)},
    "Unsqueeze": {"axes": st.lists(st.integers(-3, 3), max_size=3)},
    "Cast": {"to": st.integers(0, 17)}, "Reshape": {"allowzero": SMALL_INTS},
    "Pad": {"mode": st.sampled_from(["constant", "reflect", "edge", "bogus"]), "pads": INT_LISTS, "value": FLOATS},
    "Relu": {"alpha": FLOATS}, "Add": {"broadcast": SMALL_INTS, "axis": SMALL_INTS},
    "GlobalAveragePool": {"keepdims": SMALL_INTS},
    "HardSigmoid": {"alpha": FLOATS, "beta": FLOATS},
    "MaxPool": {"kernel_shape": INT_LISTS, "strides": INT_LISTS, "pads": INT_LISTS, "dilations": INT_LISTS,
                "ceil_mode": SMALL_INTS, "storage_order": SMALL_INTS,
                "auto_pad": st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS"])},
}
WRONG_TYPES = st.sampled_from(["float", "string", "floats", "tensor", "graph"])
NUMPY_DTYPES = st.sampled_from(["float16", "float64", "int64", "int32", "int8", "uint8", "bool"])
PROTO_DTYPES = st.sampled_from([TensorProto.UNDEFINED, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16,
                                TensorProto.INT64, TensorProto.UINT8, TensorProto.STRING, TensorProto.BOOL,
                                TensorProto.COMPLEX64, TensorProto.FLOAT8E4M3FN, 99])
DIM_VALUES = st.sampled_from([0, -1, 1, 2, 3, 5, 7, 17, 31, 33, 63, 65536, 65537, 2 ** 31, 2 ** 62, "param", "unset"])
INDEX = st.integers(0, 10_000)


def _op_types(base: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in base.graph.node} & set(ATTRIBUTE_VALUES))


@st.composite
def _attribute_mutation(draw, base):
    op_type = draw(st.sampled_from(_op_types(base)))
    names = sorted(ATTRIBUTE_VALUES[op_type])
    name = draw(st.sampled_from(names))
    how = draw(st.sampled_from(["set", "set", "set", "set", "delete", "wrong_type"]))
    if how == "set":
        return ("attribute", "set", op_type, draw(INDEX), name, draw(ATTRIBUTE_VALUES[op_type][name]))
    if how == "delete":
        return ("attribute", "delete", op_type, draw(INDEX), name)
    return ("attribute", "wrong_type", op_type, draw(INDEX), name, draw(WRONG_TYPES))


def mutation_strategy(family: str, base: onnx.ModelProto):
    if family == "none":
        return st.just(("none",))
    if family == "node":
        return st.one_of(
            st.tuples(st.just("node"), st.just("drop"), INDEX, st.booleans()),
            st.tuples(st.just("node"), st.just("duplicate"), INDEX,
                      st.sampled_from(["same_output", "same_name", "unused_copy", "parallel_branch"])),
            st.tuples(st.just("node"), st.just("move"), INDEX, INDEX),
            st.tuples(st.just("node"), st.just("swap_inputs"), INDEX),
            # a new node after node k, fed by its output, its readers rewired to the new node
            st.tuples(st.just("node"), st.just("insert"), INDEX,
                      st.sampled_from(["Relu", "Clip6", "Identity", "Dropout", "Pad0", "Add_self", "Add_skip",
                                       "Sigmoid", "HardSigmoid", "HardSwish", "SiLU", "MaxPool"])))
    if family == "attribute":
        kernel = st.integers(1, 7)
        return st.one_of(
            _attribute_mutation(base),
            # a consistent change: kernel_shape and the weight resized together (pads k // 2 if "same")
            st.tuples(st.just("attribute"), st.just("conv_kernel"), INDEX, kernel, kernel, st.booleans()),
            st.tuples(st.just("attribute"), st.just("conv_geometry"), INDEX, st.lists(st.integers(1, 3), min_size=2,
                      max_size=2), st.lists(st.integers(0, 3), min_size=4, max_size=4),
                      st.lists(st.integers(1, 3), min_size=2, max_size=2)))
    if family == "weight":
        return st.one_of(
            st.tuples(st.just("weight"), st.just("shape"), INDEX,
                      st.sampled_from(["transpose", "drop_dim", "add_dim", "halve", "double", "scalar", "empty",
                                       "dims_only"])),
            st.tuples(st.just("weight"), st.just("dtype"), INDEX, NUMPY_DTYPES),
            st.tuples(st.just("weight"), st.just("relabel"), INDEX, PROTO_DTYPES),
            st.tuples(st.just("weight"), st.just("values"), INDEX,
                      st.sampled_from(["zeros", "huge", "nan", "inf", "denormal"])),
            st.tuples(st.just("weight"), st.just("external"), INDEX))
    if family == "input":
        return st.one_of(
            st.tuples(st.just("input"), st.just("dtype"), PROTO_DTYPES),
            st.tuples(st.just("input"), st.just("dim"), st.integers(0, 3), DIM_VALUES),
            st.tuples(st.just("input"), st.just("rank"), st.sampled_from([0, 1, 2, 3, 5, 6, "no_shape", "no_type"])))
    if family == "opset":
        return st.one_of(
            st.tuples(st.just("opset"), st.just("version"), st.integers(0, 25),
                      st.sampled_from(["min_ir", "keep_ir", "ir_3", "ir_latest"])),
            st.tuples(st.just("opset"), st.just("imports"),
                      st.sampled_from(["remove_default", "spell_ai_onnx", "duplicate_default", "add_custom",
                                       "ir_0", "ir_118"])))
    if family == "domain":
        return st.one_of(
            st.tuples(st.just("domain"), st.just("node"), INDEX,
                      st.sampled_from(["com.example", "ai.onnx.ml", "com.microsoft", "ai.onnx", "local"]),
                      st.booleans()),
            st.tuples(st.just("domain"), st.just("unknown_op"), INDEX,
                      st.sampled_from(["FancyConv", "Sigmoid", "HardSwish", "conv"])),
            st.tuples(st.just("domain"), st.just("local_function"), INDEX))
    if family == "edge":
        return st.one_of(
            st.tuples(st.just("edge"), st.just("dangling"), INDEX, st.integers(0, 3)),
            st.tuples(st.just("edge"), st.just("cycle"), INDEX, INDEX),
            st.tuples(st.just("edge"), st.just("rewire"), INDEX, INDEX),   # read an earlier tensor instead
            st.tuples(st.just("edge"), st.just("self_loop"), INDEX),
            st.tuples(st.just("edge"), st.just("empty_name"), INDEX, st.integers(0, 3), st.booleans()),
            st.tuples(st.just("edge"), st.just("graph_output"),
                      st.sampled_from(["intermediate", "ghost", "input", "second", "none", "initializer"]), INDEX),
            st.tuples(st.just("edge"), st.just("graph_input"),
                      st.sampled_from(["extra", "remove", "duplicate", "initializer_as_input"]), INDEX),
            st.tuples(st.just("edge"), st.just("remove_initializer"), INDEX))
    if family == "bytes":
        fraction = st.floats(0.0, 1.0, allow_nan=False)
        region = st.sampled_from(["structure", "anywhere"])
        return st.one_of(
            st.tuples(st.just("bytes"), st.just("truncate"), fraction),
            st.tuples(st.just("bytes"), st.just("flip"), region,
                      st.lists(st.tuples(fraction, st.integers(1, 255)), min_size=1, max_size=8)),
            st.tuples(st.just("bytes"), st.just("insert"), region, fraction, st.binary(min_size=1, max_size=16)),
            st.tuples(st.just("bytes"), st.just("delete"), region, fraction, st.integers(1, 16)),
            # a string that is not UTF-8 (protobuf parses it; decoding it must not crash)
            st.tuples(st.just("bytes"), st.just("bad_utf8"), INDEX,
                      st.sampled_from(["node_name", "tensor_name", "attribute", "domain", "input_name"])))
    raise ValueError(family)


MUTATING_FAMILIES = ("node", "attribute", "weight", "input", "opset", "domain", "edge", "bytes")
TILE_CHOICES = {"pointwise_pixels": [1, 3, 64, 4096], "pointwise_channels": [16, 32, 48, 4096],
                "depthwise_rows": [1, 2, 16, 1024], "block_rows": [0, 1, 3, 1024]}


@dataclass
class Case:
    base: str
    mutations: list[tuple]
    seed: int
    fuse_blocks: bool
    tiles: dict = field(default_factory=dict)
    threads: int = 1          # for batches > 1 (2 threads on a busy 2-core machine cost ~0.5 s a run)

    @property
    def families(self) -> list[str]:
        return sorted({m[0] for m in self.mutations})

    def describe(self) -> str:
        return (f"base={self.base} mutations={self.mutations!r} seed={self.seed} fuse_blocks={self.fuse_blocks} "
                f"tiles={self.tiles} threads={self.threads}")


@st.composite
def fuzz_cases(draw):
    base = draw(st.sampled_from(sorted(BASE_BUILDERS)))
    proto = base_model(base)
    if draw(st.integers(0, 19)) == 7:      # 1 case in 20: the base model as it is
        families = ["none"]
    else:
        count = draw(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 2, 2, 3]))   # mostly one: it gets further
        families = [draw(st.sampled_from(MUTATING_FAMILIES)) for _ in range(count)]
    mutations = [draw(mutation_strategy(f, proto)) for f in families]
    tiles = {name: draw(st.sampled_from(values)) for name, values in TILE_CHOICES.items()}
    threads = 2 if draw(st.integers(0, 3)) == 2 else 1
    return Case(base, mutations, draw(st.integers(0, 2 ** 31 - 1)), draw(st.booleans()), tiles, threads)


# ---- applying mutations to a ModelProto


def _nodes(model) -> list[onnx.NodeProto]:
    return list(model.graph.node)


def _set_nodes(model, nodes) -> None:
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
    del model.graph.node[:]
    model.graph.node.extend(copies)


def _pick(sequence, index):
    return sequence[index % len(sequence)] if len(sequence) else None


def _rename_uses(model, old: str, new: str, after: int = 0) -> None:
    for node in list(model.graph.node)[after:]:
        for j, name in enumerate(node.input):
            if name == old:
                node.input[j] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new


def _set_attribute(node, name, value) -> None:
    _delete_attribute(node, name)
    empty_list = isinstance(value, list) and not value
    kind = onnx.AttributeProto.INTS if empty_list else None    # an empty list's type cannot be inferred
    node.attribute.append(helper.make_attribute(name, value, attr_type=kind))


def _delete_attribute(node, name) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


def _wrong_type_attribute(name: str, kind: str) -> onnx.AttributeProto:
    if kind == "float":
        return helper.make_attribute(name, 1.5)
    if kind == "string":
        return helper.make_attribute(name, "three")
    if kind == "floats":
        return helper.make_attribute(name, [1.0, 2.5])
    if kind == "tensor":
        return helper.make_attribute(name, numpy_helper.from_array(np.array([1, 1], np.int64)))
    graph = helper.make_graph([], "empty", [], [])
    return helper.make_attribute(name, graph)


def _reshaped_weight(array: np.ndarray, how: str) -> np.ndarray:
    if how == "transpose":
        return array.T.copy()
    if how == "drop_dim":
        return array[0].copy() if array.ndim and array.shape[0] else array
    if how == "add_dim":
        return array[None].copy()
    if how == "halve":
        return array[: max(1, len(array) // 2)].copy() if array.ndim else array
    if how == "double":
        return np.concatenate([array, array]) if array.ndim else np.stack([array, array])
    if how == "scalar":
        return np.array(array.reshape(-1)[0] if array.size else 0, array.dtype)
    if how == "empty":
        return array.reshape(-1)[:0].reshape((0, *array.shape[1:])) if array.ndim else array.reshape(-1)[:0]
    raise ValueError(how)


def _replace_initializer(model, index: int, tensor: onnx.TensorProto) -> None:
    model.graph.initializer[index].CopyFrom(tensor)


def _local_function_call(model, index: int) -> None:
    """Replace an activation (or any single-input node) by a call of a model-local function
    that computes Relu."""
    candidates = [i for i, n in enumerate(model.graph.node) if n.op_type in ("Relu", "Clip")] \
        or list(range(len(model.graph.node)))
    i = _pick(candidates, index)
    node = model.graph.node[i]
    function = helper.make_function("local", "MyRelu", ["X"], ["Y"], [helper.make_node("Relu", ["X"], ["Y"])],
                                    opset_imports=[helper.make_opsetid("", 13)])
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("local", 1))
    call = helper.make_node("MyRelu", [node.input[0]], [node.output[0]], name=node.name + "_local", domain="local")
    node.CopyFrom(call)


def _opset(model) -> int:
    return next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), 13)


def _insert_after(model, index: int, what: str) -> None:
    """Insert a node reading node `index`'s first output; later readers and the graph output
    read the new node's output instead."""
    graph = model.graph
    source = graph.node[index]
    old, new = source.output[0], source.output[0] + f"_{what.lower()}"
    opset = _opset(model)

    def constant(name, array):
        if all(t.name != name for t in graph.initializer):
            graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    if what == "Relu":
        node = helper.make_node("Relu", [old], [new], name=new)
    elif what == "Clip6":
        node = helper.make_node("Clip", [old], [new], name=new, min=0.0, max=6.0) if opset < 11 else \
            helper.make_node("Clip", [old, constant("fuzz.zero", np.array(0, np.float32)),
                                      constant("fuzz.six", np.array(6, np.float32))], [new], name=new)
    elif what in ("Identity", "Dropout"):
        node = helper.make_node(what, [old], [new], name=new)
    elif what == "Pad0":
        node = helper.make_node("Pad", [old], [new], name=new, pads=[0] * 8) if opset < 11 else \
            helper.make_node("Pad", [old, constant("fuzz.pads0", np.zeros(8, np.int64))], [new], name=new)
    elif what in ("Sigmoid", "HardSigmoid") or (what == "HardSwish" and opset >= 14):
        node = helper.make_node(what, [old], [new], name=new)
    elif what == "HardSwish":               # before opset 14: the HardSigmoid + Mul older exporters write
        gate = helper.make_node("HardSigmoid", [old], [new + "_gate"], name=new + "_gate", alpha=1 / 6, beta=0.5)
        _rename_uses(model, old, new, after=index + 1)
        nodes = _nodes(model)
        nodes[index + 1:index + 1] = [gate, helper.make_node("Mul", [old, new + "_gate"], [new], name=new)]
        _set_nodes(model, nodes)
        return
    elif what == "SiLU":                    # x * Sigmoid(x), as every exporter writes SiLU
        gate = helper.make_node("Sigmoid", [old], [new + "_gate"], name=new + "_gate")
        _rename_uses(model, old, new, after=index + 1)
        nodes = _nodes(model)
        nodes[index + 1:index + 1] = [gate, helper.make_node("Mul", [new + "_gate", old], [new], name=new)]
        _set_nodes(model, nodes)
        return
    elif what == "MaxPool":                 # ResNet's 3x3 stride-2 pad-1 pool
        node = helper.make_node("MaxPool", [old], [new], name=new, kernel_shape=[3, 3], strides=[2, 2],
                                pads=[1, 1, 1, 1])
    elif what == "Add_self":
        node = helper.make_node("Add", [old, old], [new], name=new)
    else:                                   # Add_skip: the output plus the node's own input
        node = helper.make_node("Add", [old, source.input[0] if source.input else old], [new], name=new)
    _rename_uses(model, old, new, after=index + 1)
    nodes = _nodes(model)
    nodes.insert(index + 1, node)
    _set_nodes(model, nodes)


def apply_mutation(model: onnx.ModelProto, mutation: tuple) -> None:
    """Apply one non-bytes mutation to `model` in place."""
    family, kind, *args = mutation if len(mutation) > 1 else (mutation[0], None)
    graph = model.graph
    nodes = _nodes(model)
    if family == "none":
        return
    if family == "node":
        i = args[0] % len(nodes)
        node = nodes[i]
        if kind == "drop":
            del nodes[i]
            _set_nodes(model, nodes)
            if args[1] and node.input and node.output:
                _rename_uses(model, node.output[0], node.input[0])
        elif kind == "duplicate":
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            if args[1] != "same_output":
                if args[1] != "same_name":
                    copy.name = node.name + "_dup"
                for j, name in enumerate(copy.output):
                    copy.output[j] = name + "_dup" if name else name
            nodes.insert(i + 1, copy)
            _set_nodes(model, nodes)
            if args[1] in ("parallel_branch", "same_name") and node.output:
                for reader in list(model.graph.node)[i + 2:]:
                    if node.output[0] in reader.input:
                        reader.input[list(reader.input).index(node.output[0])] = copy.output[0]
                        break
        elif kind == "move":
            nodes.insert(args[1] % len(nodes), nodes.pop(i))
            _set_nodes(model, nodes)
        elif kind == "swap_inputs":
            if len(node.input) >= 2:
                node.input[0], node.input[1] = node.input[1], node.input[0]
        elif kind == "insert" and node.output and node.output[0]:
            _insert_after(model, i, args[1])
        return
    if family == "attribute" and kind in ("conv_kernel", "conv_geometry"):
        convs = [n for n in graph.node if n.op_type == "Conv"]
        node = _pick(convs, args[0])
        if node is None:
            return
        if kind == "conv_geometry":
            for name, value in zip(("strides", "pads", "dilations"), args[1:]):
                _set_attribute(node, name, list(value))
            return
        kh, kw, same = args[1:]
        weights = {t.name: i for i, t in enumerate(graph.initializer)}
        if len(node.input) < 2 or node.input[1] not in weights:
            return
        old = graph.initializer[weights[node.input[1]]]
        if len(old.dims) != 4:
            return
        out_channels, in_per_group = old.dims[0], old.dims[1]
        rng = np.random.default_rng(kh * 8 + kw)
        weight = rng.standard_normal((out_channels, in_per_group, kh, kw)) / np.sqrt(in_per_group * kh * kw)
        _replace_initializer(model, weights[node.input[1]], numpy_helper.from_array(weight.astype(np.float32),
                                                                                    old.name))
        _set_attribute(node, "kernel_shape", [kh, kw])
        if same:
            _set_attribute(node, "pads", [kh // 2, kw // 2, (kh - 1) // 2, (kw - 1) // 2])
        return
    if family == "attribute":
        op_type, index, name = args[0], args[1], args[2]
        matching = [n for n in graph.node if n.op_type == op_type]
        node = _pick(matching, index)
        if node is None:
            return
        if kind == "set":
            _set_attribute(node, name, args[3])
        elif kind == "delete":
            _delete_attribute(node, name)
        else:
            _delete_attribute(node, name)
            node.attribute.append(_wrong_type_attribute(name, args[3]))
        return
    if family == "weight":
        if not graph.initializer:
            return
        i = args[0] % len(graph.initializer)
        tensor = graph.initializer[i]
        try:
            array = numpy_helper.to_array(tensor)
        except Exception:  # noqa: BLE001 - an earlier mutation broke it: only relabelling applies
            array = None
            if kind in ("dtype", "values") or (kind == "shape" and args[1] != "dims_only"):
                return
        if kind == "shape":
            if args[1] == "dims_only":
                if tensor.dims:
                    tensor.dims[0] += 1
                else:
                    tensor.dims.append(2)
            else:
                _replace_initializer(model, i, numpy_helper.from_array(_reshaped_weight(array, args[1]), tensor.name))
        elif kind == "dtype":
            _replace_initializer(model, i, numpy_helper.from_array(array.astype(args[1]), tensor.name))
        elif kind == "relabel":
            tensor.data_type = args[1]
        elif kind == "values":
            values = {"zeros": 0.0, "huge": 1e30, "nan": np.nan, "inf": np.inf, "denormal": 1e-42}[args[1]]
            if array.dtype.kind == "f" and array.size:
                changed = array.copy()
                changed.reshape(-1)[:: max(1, array.size // 7)] = values
                _replace_initializer(model, i, numpy_helper.from_array(changed, tensor.name))
        elif kind == "external":
            tensor.data_location = TensorProto.EXTERNAL
            del tensor.external_data[:]
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", "fuzz_missing_weights.bin"
            tensor.ClearField("raw_data")
        return
    if family == "input":
        inputs = [v for v in graph.input if v.name not in {t.name for t in graph.initializer}]
        if not inputs:
            return
        value_info = inputs[0]
        tensor_type = value_info.type.tensor_type
        if kind == "dtype":
            tensor_type.elem_type = args[0]
        elif kind == "dim":
            dims = tensor_type.shape.dim
            if args[0] >= len(dims):
                return
            dim = dims[args[0]]
            value = args[1]
            if value == "param":
                dim.dim_param = "X"
            elif value == "unset":
                dim.Clear()
            elif value < 0 or value >= 2 ** 63:
                dim.dim_value = max(-(2 ** 63), min(value, 2 ** 63 - 1))
            else:
                dim.dim_value = value
        elif kind == "rank":
            if args[0] == "no_shape":
                tensor_type.ClearField("shape")
            elif args[0] == "no_type":
                value_info.ClearField("type")
            else:
                dims = list(tensor_type.shape.dim)[: args[0]]
                while len(dims) < args[0]:
                    extra = onnx.TensorShapeProto.Dimension()
                    extra.dim_value = 1
                    dims.append(extra)
                del tensor_type.shape.dim[:]
                tensor_type.shape.dim.extend(dims)
        return
    if family == "opset":
        if kind == "version":
            version, ir_mode = args
            for entry in model.opset_import:
                if entry.domain in ("", "ai.onnx"):
                    entry.version = version
            if ir_mode == "min_ir":      # a valid pairing: before IR 4 every initializer is also an input
                try:
                    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", max(version, 1))])
                except Exception:  # noqa: BLE001 - an opset newer than this onnx knows
                    model.ir_version = onnx.IR_VERSION
                if model.ir_version < 4:
                    listed = {v.name for v in model.graph.input}
                    model.graph.input.extend(
                        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                        for t in model.graph.initializer if t.name not in listed)
            elif ir_mode == "ir_3":
                model.ir_version = 3
            elif ir_mode == "ir_latest":
                model.ir_version = onnx.IR_VERSION
        elif args[0] == "remove_default":
            kept = [e for e in model.opset_import if e.domain not in ("", "ai.onnx")]
            del model.opset_import[:]
            model.opset_import.extend(kept)
        elif args[0] == "spell_ai_onnx":
            for entry in model.opset_import:
                if entry.domain == "":
                    entry.domain = "ai.onnx"
        elif args[0] == "duplicate_default":
            model.opset_import.append(helper.make_opsetid("", 7))
        elif args[0] == "add_custom":
            model.opset_import.append(helper.make_opsetid("com.example", 1))
        elif args[0] in ("ir_0", "ir_118"):
            model.ir_version = int(args[0][3:])
        return
    if family == "domain":
        if kind == "local_function":
            _local_function_call(model, args[0])
            return
        node = graph.node[args[0] % len(graph.node)]
        if kind == "node":
            node.domain = args[1]
            if args[2] and args[1] not in ("", "ai.onnx") and \
                    all(e.domain != args[1] for e in model.opset_import):
                model.opset_import.append(helper.make_opsetid(args[1], 1))
        else:
            node.op_type = args[1]
        return
    if family == "edge":
        if kind == "dangling":
            node = nodes[args[0] % len(nodes)]
            j = args[1]
            if j < len(node.input):
                node.input[j] = "ghost_tensor"
            else:
                node.input.append("ghost_tensor")
        elif kind == "cycle":
            i, j = sorted((args[0] % len(nodes), args[1] % len(nodes)))
            if nodes[j].output and nodes[i].input:
                nodes[i].input[0] = nodes[j].output[0]     # i reads what a later (or the same) node writes
        elif kind == "rewire":
            i, j = sorted((args[0] % len(nodes), args[1] % len(nodes)))
            if i < j and nodes[i].output and nodes[j].input:
                nodes[j].input[0] = nodes[i].output[0]     # j reads what an earlier node i writes
        elif kind == "self_loop":
            node = nodes[args[0] % len(nodes)]
            if node.input and node.output:
                node.input[0] = node.output[0]
        elif kind == "empty_name":
            node = nodes[args[0] % len(nodes)]
            names = node.output if args[2] else node.input
            if names:
                names[args[1] % len(names)] = ""
        elif kind == "graph_output":
            how, index = args
            if not graph.output:
                graph.output.append(helper.make_tensor_value_info("ghost_output", TensorProto.FLOAT, None))
            if how == "intermediate":
                producer = nodes[index % len(nodes)]
                if producer.output:
                    graph.output[0].name = producer.output[0]
                    graph.output[0].type.tensor_type.ClearField("shape")
            elif how == "ghost":
                graph.output[0].name = "ghost_output"
            elif how == "input" and graph.input:
                graph.output[0].name = graph.input[0].name
            elif how == "second":
                producer = nodes[index % len(nodes)]
                if producer.output:
                    graph.output.append(helper.make_tensor_value_info(producer.output[0], TensorProto.FLOAT, None))
            elif how == "none":
                del graph.output[:]
            elif how == "initializer" and graph.initializer:
                graph.output[0].name = graph.initializer[index % len(graph.initializer)].name
        elif kind == "graph_input":
            how, index = args
            if how == "extra":
                graph.input.append(helper.make_tensor_value_info("extra_input", TensorProto.FLOAT, ["N", 3, 4, 4]))
            elif how == "remove" and graph.input:
                del graph.input[0]
            elif how == "duplicate" and graph.input:
                graph.input.append(graph.input[0])
            elif how == "initializer_as_input" and graph.initializer:
                tensor = graph.initializer[index % len(graph.initializer)]
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        elif kind == "remove_initializer":
            if graph.initializer:
                del graph.initializer[args[0] % len(graph.initializer)]
        return
    raise ValueError(f"unknown mutation {mutation!r}")


def apply_bytes_mutation(data: bytes, mutation: tuple, structure_bytes: int) -> bytes:
    """Corrupt the serialized model. "structure" positions fall in the first
    `structure_bytes` (the nodes, before the initializers' data); "anywhere" in all of it."""
    _, kind, *args = mutation
    if kind == "truncate":
        return data[: int(args[0] * len(data))]

    def position(region, fraction):
        span = min(structure_bytes, len(data)) if region == "structure" else len(data)
        return min(int(fraction * span), max(len(data) - 1, 0))

    if kind == "flip":
        region, flips = args
        buffer = bytearray(data)
        for fraction, xor in flips:
            if buffer:
                buffer[position(region, fraction)] ^= xor
        return bytes(buffer)
    if kind == "insert":
        region, fraction, payload = args
        at = position(region, fraction)
        return data[:at] + payload + data[at:]
    if kind == "delete":
        region, fraction, length = args
        at = position(region, fraction)
        return data[:at] + data[at + length:]
    raise ValueError(kind)


BAD_UTF8_MARKER, BAD_UTF8 = b"ZQZQ", b"\xde\xad\xbe\xef"


def _mark_bad_utf8(model, index: int, where: str) -> None:
    """Put BAD_UTF8_MARKER in a string field; build_case_bytes swaps it for invalid UTF-8."""
    graph = model.graph
    node = graph.node[index % len(graph.node)]
    marker = BAD_UTF8_MARKER.decode()
    if where == "node_name":
        node.name = marker
    elif where == "tensor_name" and node.output and node.output[0]:
        _rename_uses(model, node.output[0], marker)
        node.output[0] = marker
    elif where == "attribute":
        name = "auto_pad" if node.op_type == "Conv" else "mode" if node.op_type == "Pad" else "fuzz_string"
        _set_attribute(node, name, marker)
    elif where == "domain":
        node.domain = marker
    elif where == "input_name" and graph.input:
        old = graph.input[0].name
        _rename_uses(model, old, marker)
        graph.input[0].name = marker


def build_case_bytes(case: Case) -> bytes:
    model = onnx.ModelProto()
    model.CopyFrom(base_model(case.base))
    for mutation in case.mutations:
        if mutation[0] != "bytes":
            apply_mutation(model, mutation)
        elif mutation[1] == "bad_utf8":
            _mark_bad_utf8(model, *mutation[2:])
    data = model.SerializeToString().replace(BAD_UTF8_MARKER, BAD_UTF8)
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    del skeleton.graph.initializer[:]
    structure_bytes = len(skeleton.SerializeToString())
    for mutation in case.mutations:
        if mutation[0] == "bytes" and mutation[1] != "bad_utf8":
            data = apply_bytes_mutation(data, mutation, structure_bytes)
    return data


# ----------------------------------------------------------------------------- the worker


class FuzzWorker:
    """A `python -m tests.fuzz_worker` process, restarted whenever it dies or hangs."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.starts = 0

    def _start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fuzz_worker"], cwd=ROOT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                        bufsize=1)
        log.close()
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()
        message = self._next(STARTUP_SECONDS)
        if message is None or not message.get("ready"):
            self._kill()
            raise RuntimeError(f"fuzz worker did not start: {message!r}; see {self.log_path}")

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            try:
                lines.put(json.loads(line))
            except json.JSONDecodeError:
                lines.put({"phase": "noise", "text": line[:200]})
        lines.put(None)       # end of file: the worker exited

    def _next(self, timeout: float):
        return self.lines.get(timeout=timeout)

    def _kill(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        returncode = self.process.wait()
        self.process = None
        return returncode

    def check(self, request: dict, timeout: float = CASE_SECONDS) -> dict:
        """The worker's verdict, or {"verdict": "died" | "timeout", ...} (a failure)."""
        if self.process is None or self.process.poll() is not None:
            self._kill()
            self._start()
        phase = "sending"
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                message = self._next(max(0.0, deadline - time.monotonic()))
                if message is None:
                    returncode = self._kill()
                    how = f"signal {-returncode}" if returncode is not None and returncode < 0 \
                        else f"exit status {returncode}"
                    return {"verdict": "died", "phase": phase, "error": f"worker died ({how}) during {phase}"}
                if "verdict" in message:
                    return message
                phase = message.get("phase", phase) + (f" batch {message['batch']}" if "batch" in message else "")
        except queue.Empty:
            self._kill()
            return {"verdict": "timeout", "phase": phase, "error": f"no verdict within {timeout:g} s during {phase}"}
        except (BrokenPipeError, OSError) as exc:
            self._kill()
            return {"verdict": "died", "phase": phase, "error": f"worker pipe closed ({exc}) during {phase}"}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()


@pytest.fixture(scope="module")
def fuzz_worker():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "worker-stderr.log"
    log.write_bytes(b"")          # this session's worker output only
    worker = FuzzWorker(log)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def case_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "case.onnx"


# ----------------------------------------------------------------------------- the property


def judge(verdict: dict) -> str | None:
    """None if the verdict passes, else why it fails.

    Every ONNX Runtime refusal is a failure: each one the fuzzer met meant the engine had
    accepted an invalid model (the importer now rejects them all). The one refusal that does
    not make a model invalid, ORT having no kernel for an op at opset 6, is not a refusal
    here: the worker compares with onnx.reference instead ("matched_onnx_reference")."""
    outcome = verdict["verdict"]
    if outcome in PASSING:
        return None
    if outcome == "ort_refused":
        return f"the engine ran a model ONNX Runtime refuses ({verdict.get('error')})"
    return f"{outcome} in {verdict.get('phase', '?')}: {verdict.get('error')}"


def save_failure(case: Case, data: bytes, verdict: dict, reason: str) -> Path:
    digest = hashlib.sha1(data).hexdigest()[:12]
    path = ARTIFACTS / f"fail-{case.base}-{digest}.onnx"
    path.write_bytes(data)
    path.with_suffix(".json").write_text(json.dumps(
        {"case": case.describe(), "reason": reason, "verdict": verdict,
         "reproduce": f".venv/bin/python -m tests.fuzz_worker {path.relative_to(ROOT)}"}, indent=1, default=str))
    return path


# names, numbers and shapes blanked out, so rejections group by reason
_REJECTION_PATTERN = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?(e-?\d+)?|\([^()]*\)|\[[^\[\]]*\]")


class Tally:
    """Counts of one fuzz run, written to artifacts/fuzz/summary.json."""

    def __init__(self):
        self.cases = 0
        self.verdicts: Counter = Counter()
        self.by_family: dict[str, Counter] = defaultdict(Counter)
        self.by_base: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[dict] = []
        self.worker_seconds: Counter = Counter()     # per verdict, as the worker measured them
        self.rejections: dict[str, Counter] = defaultdict(Counter)   # family -> why ModelError was raised
        self.started = time.monotonic()

    def add(self, case: Case, verdict: dict, failure: str | None) -> None:
        self.cases += 1
        outcome = "FAIL:" + verdict["verdict"] if failure else verdict["verdict"]
        self.verdicts[outcome] += 1
        self.worker_seconds[outcome] += verdict.get("seconds", 0.0)
        self.by_base[case.base][outcome] += 1
        for family in case.families:       # a case with several families counts in each
            self.by_family[family][outcome] += 1
        if outcome == "rejected":
            reason = _REJECTION_PATTERN.sub("…", verdict.get("error", ""))[:110]
            for family in case.families:
                self.rejections[family][reason] += 1

    def as_dict(self, worker: FuzzWorker) -> dict:
        return {"cases": self.cases, "seconds": round(time.monotonic() - self.started, 1),
                "worker_starts": worker.starts, "hypothesis_max_examples": CASES, "seed": SEED,
                "verdicts": dict(self.verdicts),
                "worker_seconds": {k: round(v, 2) for k, v in self.worker_seconds.items()},
                "by_family": {k: dict(v) for k, v in sorted(self.by_family.items())},
                "by_base": {k: dict(v) for k, v in sorted(self.by_base.items())},
                "failures": self.failures,
                "top_rejections": {family: dict(reasons.most_common(12))
                                   for family, reasons in sorted(self.rejections.items())}}


def _fuzz_settings(test):
    configured = settings(max_examples=CASES, deadline=None, database=None, derandomize=SEED is None,
                          suppress_health_check=list(HealthCheck), print_blob=True)(test)
    return seed(int(SEED))(configured) if SEED is not None else configured


def test_every_mutated_model_loads_and_matches_onnxruntime_or_raises_model_error(fuzz_worker, case_file,
                                                                                  pytestconfig):
    tally = Tally()
    log = open(ARTIFACTS / "cases.jsonl", "w") if LOG_CASES else None

    @_fuzz_settings
    @given(case=fuzz_cases())
    def property_holds(case: Case):
        data = build_case_bytes(case)
        case_file.write_bytes(data)
        verdict = fuzz_worker.check({"model": str(case_file), "seed": case.seed, "fuse_blocks": case.fuse_blocks,
                                     "tiles": case.tiles, "threads": case.threads})
        failure = judge(verdict)
        tally.add(case, verdict, failure)
        if log is not None:
            log.write(json.dumps({"case": case.describe(), "verdict": verdict["verdict"],
                                  "error": verdict.get("error", "")[:300]}) + "\n")
        if failure:
            path = save_failure(case, data, verdict, failure)
            tally.failures.append({"case": case.describe(), "reason": failure[:500], "model": str(path)})
            if not KEEP_GOING:
                raise AssertionError(f"{failure}\n{case.describe()}\nmodel saved: {path}\n"
                                     f"{verdict.get('traceback', '')}")

    try:
        property_holds()
    finally:
        if log is not None:
            log.close()
        summary = tally.as_dict(fuzz_worker)
        (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=1))
        pytestconfig.stash.setdefault(FUZZ_SUMMARY_KEY, []).append(
            f"importer fuzz: {summary['cases']} cases in {summary['seconds']} s, worker started "
            f"{summary['worker_starts']}x; verdicts {summary['verdicts']} (artifacts/fuzz/summary.json)")
    assert not tally.failures, f"{len(tally.failures)} failing cases:\n" + "\n".join(
        f"- {f['reason']}\n  {f['case']}\n  {f['model']}" for f in tally.failures[:20])
    # the property is not vacuous: some cases ran end to end and were compared, some were rejected
    assert tally.verdicts["matched"] > 0 and tally.verdicts["rejected"] > 0, tally.verdicts


# ----------------------------------------------------------------------------- the harness can fail


def test_a_worker_killed_by_a_signal_fails_the_case_and_the_next_case_still_runs(fuzz_worker, case_file):
    case_file.write_bytes(base_model("tiny").SerializeToString())
    verdict = fuzz_worker.check({"model": str(case_file), "self_test": "segfault"})
    assert verdict["verdict"] == "died" and "signal 11" in verdict["error"]
    assert judge(verdict) is not None
    assert fuzz_worker.check({"model": str(case_file), "seed": 1})["verdict"] == "matched"


def test_a_hanging_case_times_out_and_fails(fuzz_worker, case_file):
    case_file.write_bytes(base_model("tiny").SerializeToString())
    verdict = fuzz_worker.check({"model": str(case_file), "self_test": "hang"}, timeout=2)
    assert verdict["verdict"] == "timeout"
    assert judge(verdict) is not None
    assert fuzz_worker.check({"model": str(case_file), "seed": 1})["verdict"] == "matched"


def test_an_output_off_by_more_than_the_tolerance_is_a_mismatch(fuzz_worker, case_file):
    case_file.write_bytes(base_model("v2").SerializeToString())
    verdict = fuzz_worker.check({"model": str(case_file), "self_test": "perturb"})
    assert verdict["verdict"] == "mismatch", verdict
    assert judge(verdict) is not None


def test_a_python_exception_other_than_model_error_is_a_crash(fuzz_worker, tmp_path):
    # a model file that is not there: read_bytes raises FileNotFoundError inside the worker
    verdict = fuzz_worker.check({"model": str(tmp_path / "missing.onnx")})
    assert verdict["verdict"] == "crash" and "FileNotFoundError" in verdict["error"]


# ----------------------------------------------------------------------------- what the fuzzer found
#
# Each case below once crashed, loaded an invalid model, or ran with a wrong answer; now it
# raises ModelError (or matches ONNX Runtime). Replayed in process: none can crash any more.

def _mutated(base: str, *mutations) -> bytes:
    return build_case_bytes(Case(base, list(mutations), 0, False))


def _three_conv_model(second: str, add_inputs: tuple[str, str], dead_reader: bool = False) -> onnx.ModelProto:
    """stem (3x3) -> a; a -> pw (1x1) -> p; a -> `second` conv -> q; Add(*add_inputs) -> y."""
    rng = np.random.default_rng(0)
    inits = []

    def weight(*shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), f"w{len(inits)}"))
        return inits[-1].name

    node = helper.make_node
    kernel = 3 if second == "dense3x3" else 1
    nodes = [node("Conv", ["x", weight(8, 3, 3, 3)], ["a"], name="stem", pads=[1, 1, 1, 1]),
             node("Conv", ["a", weight(8, 8, 1, 1)], ["p"], name="pw"),
             node("Conv", ["a", weight(8, 8, kernel, kernel)], ["q"], name="second", pads=[kernel // 2] * 4)]
    if dead_reader:     # q has a second reader, so only pw (computed before q) could take the Add
        nodes.append(node("Conv", ["q", weight(8, 8, 1, 1)], ["unused"], name="dead_reader"))
    nodes.append(node("Add", list(add_inputs), ["y"], name="add"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("model", [
    _three_conv_model("pw", ("p", "q"), dead_reader=True),       # was: pw read q before q was computed
    _three_conv_model("pw", ("p", "p")),                         # was: a conv adding its own output
], ids=["other_input_computed_later", "same_tensor_twice"])
def test_a_residual_add_the_kernels_cannot_fuse_is_rejected_not_run_wrong(model):
    with pytest.raises(engine.UnsupportedOperatorError, match="residual add after a Conv"):
        engine.load(model)


def test_a_residual_add_after_a_dense_conv_is_fused_and_matches_onnxruntime():
    # was refused (the residual had once been silently dropped): the dense NCHWc conv has a
    # residual epilogue, as ResNet's blocks need
    proto = _three_conv_model("dense3x3", ("p", "q"))
    model = engine.load(proto)
    (second,) = [layer for layer in model.graph.layers if layer.conv_kind == "dense"]
    assert second.residual == "p"
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9), dtype=np.float32)
    assert_close_to_reference(model.run(x), ort_run(proto, x))


def test_mobilenet_v1_runs_with_fused_blocks_and_matches_onnxruntime():
    # was: KeyError in the plan (the blocks overlapped: a projection was also the next expansion)
    proto = mobilenet_v1(0.25, 32, 10)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    model = engine.load(proto)
    assert any(step.fused for step in model.plan(2, fuse_blocks=True).steps)
    assert_close_to_reference(model.run(x, fuse_blocks=True), ort_run(proto, x))


REGRESSIONS = {   # id: (model bytes, the ModelError message it must raise)
    "clip11_with_min_max_attributes": (_mutated("v2", ("attribute", "set", "Clip", 0, "max", 0.0)),
                                       "Unrecognized attribute: max for operator Clip"),
    "clip6_with_a_second_input": (_mutated("v2_bn_opset10", ("edge", "dangling", 2, 3)), "input size 2 not in range"),
    "unknown_attribute": (_mutated("tiny", ("attribute", "set", "Add", 0, "axis", 0)), "Unrecognized attribute: axis"),
    "attribute_of_the_wrong_type": (_mutated("tiny", ("attribute", "wrong_type", "Conv", 0, "group", "graph")),
                                    "Mismatched attribute type"),
    "reduce_mean_axes_input_before_opset_18": (_mutated("v2_opset18_batch1", ("opset", "version", 13, "keep_ir")),
                                               "input size 2 not in range"),
    "dangling_optional_input": (_mutated("v2_opset18_batch1", ("edge", "dangling", 99, 1)),
                                "'ghost_tensor' is not produced"),
    "constant_written_twice": (_mutated("v2_chain_opset11", ("node", "duplicate", 103, "same_output")),
                               "is written twice"),
    "default_opset_imported_twice": (_mutated("tiny", ("opset", "imports", "duplicate_default")),
                                     "default ONNX operator set 2 times"),
    "no_ir_version": (_mutated("tiny", ("opset", "imports", "ir_0")), "IR version 0 is not valid"),
    "gemm_6_without_broadcast": (_mutated("v1", ("opset", "version", 6, "min_ir")), "needs broadcast=1"),
    "input_of_unknown_element_type": (_mutated("tiny", ("input", "dtype", 99)), "unknown type 99"),
    "clip_bound_of_the_wrong_type": (_mutated("tiny", ("weight", "dtype", 13, "bool")), r"\(max\) is bool"),
    "clip_excluding_zero": (_mutated("v2_bn_opset10", ("attribute", "set", "Clip", 3, "min", 0.5)), "exclude 0"),
    "auto_pad_with_pads": (_mutated("v1", ("attribute", "set", "Conv", 3, "auto_pad", "SAME_LOWER")),
                           "auto_pad=SAME_LOWER and pads are both given"),
    "unsqueeze_axis_out_of_range": (_mutated("v2_chain_opset11", ("attribute", "set", "Unsqueeze", 0, "axes", [3])),
                                    "out of range"),
    "scalar_pads": (_mutated("tiny", ("weight", "shape", 14, "scalar")), r"pads has shape \(\)"),
    "pads_of_rank_2": (_mutated("tiny", ("weight", "shape", 14, "add_dim")), r"pads has shape \(1, 8\)"),
    "ir_version_from_the_future": (_mutated("tiny", ("opset", "imports", "ir_118")), "IR version 118 is not valid"),
    "infinite_weight": (_mutated("v1", ("weight", "values", 1618, "inf")), "NaN or infinite"),
    "duplicate_node_name": (_mutated("tiny", ("node", "duplicate", 4, "same_name")), "two nodes are named 'pw'"),
    "pad_of_a_feature_vector": (_mutated("tiny", ("node", "insert", 12, "Pad0")), r"input of shape \(5,\)"),
    "ir_3_initializer_not_an_input": (_mutated("tiny", ("opset", "version", 13, "ir_3")), "not a graph input"),
    "attribute_string_not_utf8": (_mutated("tiny", ("bytes", "bad_utf8", 2, "attribute")), "auto_pad"),
    "input_name_not_utf8": (_mutated("tiny", ("bytes", "bad_utf8", 0, "input_name")), "not valid UTF-8"),
}


@pytest.mark.parametrize("data,message", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_models_the_fuzzer_found_raise_model_error(data, message):
    with pytest.raises(engine.ModelError, match=message):
        engine.load(data)


@pytest.mark.parametrize("base", ["tiny", "v2_chain_opset11"])
def test_a_model_whose_output_is_its_input_returns_the_input(base):
    # found against the working tree's plan (inputs read in place, no copy step): the output
    # step copied out the never-filled input buffer
    data = _mutated(base, ("edge", "graph_output", "input", 0))
    model = engine.load(data)
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape), dtype=np.float32)
    np.testing.assert_array_equal(model.run(x), x)
