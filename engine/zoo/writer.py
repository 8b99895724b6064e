"""`_GraphWriter`: writes the zoo's layers as ONNX nodes with the names and in the forms
torch's exporters use, in the conventions an `ExportStyle` names.

Names follow torch's TorchScript exporter: nodes "/features/features.1/conv/conv.0/conv.0.0/Conv",
their outputs "<node name>_output_0", initializers by module path ("features.0.0.weight",
"features.0.1.running_mean", "classifier.1.bias").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.zoo.parameters import _ConvBN, _SqueezeExcite

MIN_OPSET = 9
MAX_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM_NAME = "N"  # symbolic batch dimension when dynamic_batch=True

_FLATTEN_STYLES = ("flatten", "reshape_constant", "reshape_shape_chain")
_POOL_STYLES = ("global_average_pool", "reduce_mean", "reduce_mean_negative_axes")
_CLASSIFIER_STYLES = ("gemm", "matmul_add")
_CLIP_STYLES = ("auto", "inputs", "attributes")


def _scope(module_path: str) -> str:
    """torch exporter scope of a module path: "features.1.conv.0.0" ->
    "/features/features.1/conv/conv.0/conv.0.0" (a numeric child extends its parent's name)."""
    if not module_path:
        return ""
    names: list[str] = []
    current = ""
    for part in module_path.split("."):
        current = f"{current}.{part}" if part.isdigit() and current else part
        names.append(current)
    return "/" + "/".join(names)


@dataclass(frozen=True)
class ExportStyle:
    """How a builder writes a network (each field one exporter convention); see
    `export_style` for the choices and their defaults."""

    opset: int
    separate_batchnorm: bool = False
    clip_style: str = "inputs"              # ReLU6 as Clip with "inputs" (opset >= 11) or "attributes"
    hardswish_style: str = "op"             # "op" (HardSwish, opset >= 14) or "hardsigmoid_mul"
    hardsigmoid_beta: bool = False          # write HardSigmoid's beta=0.5 (the default) explicitly
    pool_style: str = "global_average_pool"
    flatten_style: str = "flatten"
    reshape_allowzero: bool = False         # Reshape's allowzero=1 (opset >= 14), as the dynamo exporter writes
    classifier_style: str = "gemm"
    dropout: bool = False                   # an inference-mode Dropout where the network has one
    dynamic_batch: bool = True


class _GraphWriter:
    """Accumulates nodes and initializers with torch-exporter names."""

    def __init__(self, opset: int | ExportStyle):
        self.style = opset if isinstance(opset, ExportStyle) else ExportStyle(opset)
        self.opset = self.style.opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._initializer_names: set[str] = set()
        self._node_names: set[str] = set()

    def initializer(self, name: str, array: np.ndarray) -> str:
        if name not in self._initializer_names:
            self._initializer_names.add(name)
            # np.array, not np.ascontiguousarray, which turns a 0-d scalar into shape (1,)
            self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op_type: str, scope: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        """Append a node named "<scope>/<op_type>" (suffixed _1, _2... if taken); returns its
        output name ("<node name>_output_0" unless `output` is given)."""
        base = f"{scope}/{op_type}"
        name, count = base, 0
        while name in self._node_names:
            count += 1
            name = f"{base}_{count}"
        self._node_names.add(name)
        output = output or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))
        return output

    def constant(self, scope: str, array: np.ndarray) -> str:
        """A Constant node (what torch writes for the small tensors of a shape chain)."""
        return self.node("Constant", scope, [], value=numpy_helper.from_array(np.asarray(array), ""))

    def clip6(self, scope: str, x: str, clip_style: str) -> str:
        if clip_style == "attributes":
            return self.node("Clip", scope, [x], min=0.0, max=6.0)
        low = self.initializer("relu6.min", np.array(0.0, np.float32))
        high = self.initializer("relu6.max", np.array(6.0, np.float32))
        return self.node("Clip", scope, [x, low, high])

    def activation(self, kind: str | None, scope: str, x: str) -> str:
        """The activation `kind` of x, as torch's exporters write it:
        relu -> Relu; relu6 -> Clip(0, 6); sigmoid -> Sigmoid;
        hardsigmoid -> HardSigmoid(alpha=1/6[, beta=0.5]);
        hardswish -> HardSwish (opset 14) or Mul(x, HardSigmoid(x)) (the opset < 14 form);
        silu -> Mul(x, Sigmoid(x))."""
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", scope, [x])
        if kind == "relu6":
            return self.clip6(scope, x, self.style.clip_style)
        if kind == "sigmoid":
            return self.node("Sigmoid", scope, [x])
        if kind == "hardsigmoid":
            return self._hardsigmoid(scope, x)
        if kind == "hardswish":
            if self.style.hardswish_style == "op":
                return self.node("HardSwish", scope, [x])
            return self.node("Mul", scope, [x, self._hardsigmoid(scope, x)])
        if kind == "silu":
            return self.node("Mul", scope, [x, self.node("Sigmoid", scope, [x])])
        raise ValueError(f"activation: unknown kind {kind!r}")

    def _hardsigmoid(self, scope: str, x: str) -> str:
        if self.style.hardsigmoid_beta:
            return self.node("HardSigmoid", scope, [x], alpha=1.0 / 6.0, beta=0.5)
        return self.node("HardSigmoid", scope, [x], alpha=1.0 / 6.0)

    def conv(self, scope: str, x: str, weight: str, bias: str | None, kernel: int, stride: int, groups: int) -> str:
        """Conv with torch's attributes: padding (k - 1) // 2 on every side, dilation 1."""
        inputs = [x, weight] if bias is None else [x, weight, bias]
        return self.node("Conv", scope, inputs, dilations=[1, 1], group=groups, kernel_shape=[kernel, kernel],
                         pads=[(kernel - 1) // 2] * 4, strides=[stride, stride])

    def conv_bn(self, layer: _ConvBN, x: str, separate_batchnorm: bool | None = None) -> str:
        """The conv and its BatchNorm (folded into the conv's weight and bias, or a separate
        BatchNormalization node), without the activation."""
        separate = self.style.separate_batchnorm if separate_batchnorm is None else separate_batchnorm
        scope = _scope(layer.conv_path)
        if separate:
            w = self.initializer(f"{layer.conv_path}.weight", layer.weight)
            y = self.conv(scope, x, w, None, layer.kernel, layer.stride, layer.groups)
            bn = layer.bn_path
            inputs = [y] + [self.initializer(f"{bn}.{field}", array) for field, array in (
                ("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.mean), ("running_var", layer.var))]
            return self.node("BatchNormalization", _scope(bn), inputs, epsilon=layer.epsilon, momentum=layer.momentum)
        weight, bias = layer.folded()
        w = self.initializer(f"{layer.conv_path}.weight", weight)
        b = self.initializer(f"{layer.conv_path}.bias", bias)
        return self.conv(scope, x, w, b, layer.kernel, layer.stride, layer.groups)

    def conv_bn_act(self, layer: _ConvBN, x: str, separate_batchnorm: bool | None = None,
                    clip_style: str | None = None) -> str:
        y = self.conv_bn(layer, x, separate_batchnorm)
        if layer.activation == "relu6" and clip_style is not None:
            return self.clip6(_scope(layer.act_path), y, clip_style)
        return self.activation(layer.activation, _scope(layer.act_path) if layer.act_path else "", y)

    def squeeze_excite(self, se: _SqueezeExcite, x: str) -> str:
        """scale * x with scale = scale_activation(fc2(activation(fc1(avgpool(x))))): the Mul's
        inputs in that order, as torchvision's `scale * input` is exported."""
        pooled = self.global_pool(x, _scope(f"{se.path}.avgpool"))
        fc1 = self.initializer(f"{se.path}.fc1.weight", se.fc1_weight)
        fc1_bias = self.initializer(f"{se.path}.fc1.bias", se.fc1_bias)
        hidden = self.conv(_scope(f"{se.path}.fc1"), pooled, fc1, fc1_bias, 1, 1, 1)
        hidden = self.activation(se.activation, _scope(f"{se.path}.activation"), hidden)
        fc2 = self.initializer(f"{se.path}.fc2.weight", se.fc2_weight)
        fc2_bias = self.initializer(f"{se.path}.fc2.bias", se.fc2_bias)
        scale = self.conv(_scope(f"{se.path}.fc2"), hidden, fc2, fc2_bias, 1, 1, 1)
        scale = self.activation(se.scale_activation, _scope(f"{se.path}.scale_activation"), scale)
        return self.node("Mul", _scope(se.path), [scale, x])

    def max_pool(self, scope: str, x: str, kernel: int, stride: int, padding: int) -> str:
        return self.node("MaxPool", scope, [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[kernel, kernel],
                         pads=[padding] * 4, strides=[stride, stride])

    def global_pool(self, x: str, scope: str = "", pool_style: str | None = None) -> str:
        """(N, C, H, W) -> (N, C, 1, 1): GlobalAveragePool, or ReduceMean keepdims=1 over axes
        [2, 3] ("reduce_mean") or [-1, -2] ("reduce_mean_negative_axes", as the dynamo exporter
        writes it); axes an attribute before opset 18, an input from 18."""
        pool_style = pool_style or self.style.pool_style
        if pool_style == "global_average_pool":
            return self.node("GlobalAveragePool", scope, [x])
        negative = pool_style == "reduce_mean_negative_axes"
        axes = [-1, -2] if negative else [2, 3]
        if self.opset >= 18:
            name = "reduce_mean.negative_axes" if negative else "reduce_mean.axes"
            return self.node("ReduceMean", scope, [x, self.initializer(name, np.array(axes, np.int64))], keepdims=1)
        return self.node("ReduceMean", scope, [x], axes=axes, keepdims=1)

    def flatten(self, x: str, channels: int, flatten_style: str | None = None,
                dynamic_batch: bool | None = None) -> str:
        """(N, C, 1, 1) -> (N, C)."""
        flatten_style = flatten_style or self.style.flatten_style
        dynamic_batch = self.style.dynamic_batch if dynamic_batch is None else dynamic_batch
        if flatten_style == "flatten":
            return self.node("Flatten", "", [x], axis=1)
        if flatten_style == "reshape_constant":
            shape = self.initializer("flatten.shape", np.array([-1 if dynamic_batch else 1, channels], np.int64))
            if self.style.reshape_allowzero and self.opset >= 14:
                return self.node("Reshape", "", [x, shape], allowzero=1)
            return self.node("Reshape", "", [x, shape])
        # x.view(x.size(0), -1) as torch < 1.13 writes it: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        shape = self.node("Shape", "", [x])
        batch = self.node("Gather", "", [shape, self.constant("", np.array(0, np.int64))], axis=0)
        if self.opset >= 13:
            batch = self.node("Unsqueeze", "", [batch, self.constant("", np.array([0], np.int64))])
        else:
            batch = self.node("Unsqueeze", "", [batch], axes=[0])
        target = self.node("Concat", "", [batch, self.constant("", np.array([-1], np.int64))], axis=0)
        return self.node("Reshape", "", [x, target])

    def dropout(self, x: str, scope: str, ratio: float = 0.2) -> str:
        """An inference-mode Dropout (identity): ratio as attribute before opset 12, as input
        from 12 (training_mode omitted = False)."""
        if self.opset >= 12:
            r = self.initializer(f"{scope.strip('/').split('/')[-1]}.ratio", np.array(ratio, np.float32))
            return self.node("Dropout", scope, [x, r])
        return self.node("Dropout", scope, [x], ratio=ratio)

    def linear(self, x: str, module_path: str, weight: np.ndarray, bias: np.ndarray,
               classifier_style: str | None = None, output: str | None = OUTPUT_NAME) -> str:
        """y = x @ weight.T + bias, weight (out, in); named `output` (the graph's output by
        default; None: the node's own output name)."""
        classifier_style = classifier_style or self.style.classifier_style
        scope = _scope(module_path)
        b = self.initializer(f"{module_path}.bias", bias)
        if classifier_style == "gemm":
            w = self.initializer(f"{module_path}.weight", weight)
            return self.node("Gemm", scope, [x, w, b], output=output, alpha=1.0, beta=1.0, transB=1)
        w = self.initializer(f"{module_path}.weight_transposed", weight.T)
        y = self.node("MatMul", scope, [x, w])
        return self.node("Add", scope, [y, b], output=output)

    def model(self, graph_name: str, resolution: int, num_classes: int, dynamic_batch: bool | None,
              doc: str) -> onnx.ModelProto:
        dynamic_batch = self.style.dynamic_batch if dynamic_batch is None else dynamic_batch
        batch = BATCH_DIM_NAME if dynamic_batch else 1
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, 3, resolution, resolution])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, num_classes])],
            self.initializers)
        opset_import = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opset_import, producer_name="roofline-workbench engine.zoo",
                                  doc_string=doc)
        # the oldest IR version that knows this opset, so older runtimes also load it
        model.ir_version = helper.find_min_ir_version_for(opset_import)
        return model
