"""The topology of an ONNX graph as plain data, to compare a builder's graph with a real
exporter's node by node without names: one entry per node, in graph order,

    [op_type, {attribute: value} (schema defaults dropped, floats to 6 significant digits),
     [input, ...]]

where an input is ["node", i, k] (output k of node i of this list), ["input"] (the graph's
input), ["weight", shape] (a float initializer or Constant of that shape) or ["value", [...]]
(a small int64 or float scalar constant: axes, shapes, Clip bounds). Initializer names,
node names and whether a constant is an initializer or a Constant node do not count.

Used by tests/test_zoo_models.py and by tests/data/torchvision_exports/export_torchvision.py,
which writes the committed fixtures from real torch exports (needs torch + torchvision; runs
outside the project's venv)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import defs, numpy_helper

SMALL = 16  # constants with at most this many int64 elements (or a float scalar) are kept as values


def _round(value):
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _value(attribute: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        value = value.decode()
    elif isinstance(value, list):
        value = [v.decode() if isinstance(v, bytes) else v for v in value]
    return _round(value)


def _attributes(node: onnx.NodeProto, opset: int) -> dict:
    try:
        schema = defs.get_schema(node.op_type, opset)
        defaults = {name: attr.default_value for name, attr in schema.attributes.items()
                    if attr.default_value.name}
    except defs.SchemaError:
        defaults = {}
    result = {}
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            continue  # a Constant's value: handled as an input of its consumers
        value = _value(attribute)
        if attribute.name in defaults and value == _value(defaults[attribute.name]):
            continue
        result[attribute.name] = _round(value)
    return dict(sorted(result.items()))


def _constant_entry(array: np.ndarray) -> list:
    if array.dtype == np.int64 and array.size <= SMALL or (array.dtype.kind == "f" and array.ndim == 0):
        return ["value", _round(array.tolist())]
    return ["weight", list(array.shape)]


def topology(model: onnx.ModelProto) -> list:
    """The model's graph as described in the module docstring (a JSON-ready list)."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    produced: dict[str, list] = {i.name: ["input"] for i in graph.input if i.name not in constants}
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        if node.op_type == "Identity" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]]
            continue
        inputs = []
        for name in node.input:
            if not name:
                inputs.append(["absent"])
            elif name in constants:
                inputs.append(_constant_entry(constants[name]))
            else:
                inputs.append(produced[name])
        for k, output in enumerate(node.output):
            produced[output] = ["node", len(nodes), k]
        nodes.append([node.op_type, _attributes(node, opset), inputs])
    return nodes
