"""What the zoo's two test files share: ONNX Runtime sessions without graph optimisation, and
counts read off a ModelProto (ops, initializers, multiply-accumulates)."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def session(model: onnx.ModelProto):
    """One-thread CPU session with every graph optimisation off (the graph runs as written)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return session(model).run(["output"], {"input": x})[0]


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def multiply_accumulates(model: onnx.ModelProto) -> int:
    """Sum over Conv and Gemm of multiply-accumulates per image, from inferred shapes."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {info.name: [dim.dim_value for dim in info.type.tensor_type.shape.dim]
              for info in list(inferred.graph.value_info) + list(inferred.graph.output)}
    weights = {tensor.name: list(tensor.dims) for tensor in inferred.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":  # out (N, Co, Ho, Wo), weight (Co, Ci / group, kh, kw)
            total += int(np.prod(shapes[node.output[0]][1:])) * int(np.prod(weights[node.input[1]][1:]))
        elif node.op_type == "Gemm":  # weight (out, in)
            total += int(np.prod(weights[node.input[1]]))
    return total
