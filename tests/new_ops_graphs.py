"""Small hand-built ONNX graphs with the patterns of issue 15's networks (MobileNetV3,
EfficientNet-B0, ResNet): activations after convs (HardSwish, HardSigmoid + Mul, Sigmoid +
Mul), squeeze-and-excitation, max pooling, dense 3x3 convs with residual Add + ReLU.
Written as torch's exporter writes them (Conv with bias after BatchNorm folding, or Conv +
BatchNormalization), deterministic weights. Used by tests/test_passes_new_ops.py and
tests/test_models_vs_onnxruntime.py."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Nodes and initializers of one graph; every method returns its output's name."""

    def __init__(self, channels: int, resolution: int, opset: int = 17, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.initializers: list = []
        self.opset = opset
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, resolution, resolution])
        self.shapes = {"input": channels}
        self.count = 0

    def _name(self, op: str) -> str:
        self.count += 1
        return f"/{op.lower()}_{self.count}"

    def constant(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or f"w{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], channels: int | None = None, **attrs) -> str:
        name = self._name(op)
        output = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        self.shapes[output] = channels if channels is not None else self.shapes[inputs[0]]
        return output

    def conv(self, x: str, out_channels: int, kernel: int = 1, stride: int = 1, group: int = 1, bias: bool = True,
             batchnorm: bool = False, pad: int | None = None) -> str:
        cin = self.shapes[x]
        fan_in = cin // group * kernel * kernel
        weight = (self.rng.standard_normal((out_channels, cin // group, kernel, kernel))
                  * np.sqrt(2.0 / fan_in)).astype(np.float32)
        inputs = [x, self.constant(weight)]
        if bias:
            inputs.append(self.constant((0.1 * self.rng.standard_normal(out_channels)).astype(np.float32)))
        pad = kernel // 2 if pad is None else pad
        out = self.node("Conv", inputs, out_channels, kernel_shape=[kernel, kernel], strides=[stride, stride],
                        pads=[pad] * 4, group=group)
        if batchnorm:
            params = [(1 + 0.1 * self.rng.standard_normal(out_channels)), 0.1 * self.rng.standard_normal(out_channels),
                      0.1 * self.rng.standard_normal(out_channels), 0.5 + self.rng.random(out_channels)]
            out = self.node("BatchNormalization", [out] + [self.constant(p.astype(np.float32)) for p in params])
        return out

    def act(self, x: str, kind: str) -> str:
        """kind: relu, relu6, hardswish (HardSwish op), hardswish_mul (x * HardSigmoid(x, 1/6)),
        silu (x * Sigmoid(x)), sigmoid, hardsigmoid (torch's: alpha 1/6), none."""
        if kind == "none":
            return x
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "relu6":
            return self.node("Clip", [x, self.constant(np.float32(0.0)), self.constant(np.float32(6.0))])
        if kind == "hardswish":
            return self.node("HardSwish", [x])
        if kind == "hardswish_mul":
            return self.node("Mul", [x, self.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])
        if kind == "silu":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if kind == "sigmoid":
            return self.node("Sigmoid", [x])
        if kind == "hardsigmoid":
            return self.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
        raise ValueError(kind)

    def squeeze_excite(self, x: str, squeezed: int, hidden: str = "relu", gate: str = "hardsigmoid",
                       reduce_mean: bool = False, gate_first: bool = False) -> str:
        channels = self.shapes[x]
        if reduce_mean:
            if self.opset >= 18:
                pooled = self.node("ReduceMean", [x, self.constant(np.array([2, 3], np.int64))], keepdims=1)
            else:
                pooled = self.node("ReduceMean", [x], axes=[2, 3], keepdims=1)
        else:
            pooled = self.node("GlobalAveragePool", [x])
        scale = self.act(self.conv(self.act(self.conv(pooled, squeezed), hidden), channels), gate)
        return self.node("Mul", [scale, x] if gate_first else [x, scale])

    def max_pool(self, x: str, kernel: int = 3, stride: int = 2, pad: int = 1) -> str:
        return self.node("MaxPool", [x], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b])

    def classifier(self, x: str, classes: int, hidden: int | None = None, activation: str = "hardswish") -> str:
        out = self.node("Flatten", [self.node("GlobalAveragePool", [x])], axis=1)
        features = self.shapes[x]
        if hidden:
            weight = (self.rng.standard_normal((hidden, features)) / np.sqrt(features)).astype(np.float32)
            out = self.node("Gemm", [out, self.constant(weight), self.constant(np.zeros(hidden, np.float32))],
                            hidden, transB=1)
            out = self.act(out, activation)
            features = hidden
        weight = (self.rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
        return self.node("Gemm", [out, self.constant(weight), self.constant(np.zeros(classes, np.float32))],
                         classes, transB=1)

    def model(self, output: str) -> onnx.ModelProto:
        out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", self.shapes[output]])
        graph = helper.make_graph(self.nodes, "test", [self.input], [out], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="tests.new_ops_graphs")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def mobilenet_v3_like(resolution: int = 32, hardswish: str = "hardswish", opset: int = 17, classes: int = 10,
                      seed: int = 0) -> onnx.ModelProto:
    """Stem 3x3/2 + hardswish; a dw3x3 block with SE (ReLU, hardsigmoid); an inverted
    residual expand -> dw5x5 + hardswish -> SE -> project (+ residual); an expand -> dw3x3
    -> project block without SE (the fused-block pattern); last conv + hardswish;
    classifier with a hardswish hidden layer."""
    g = GraphBuilder(3, resolution, opset, seed)
    x = g.act(g.conv("input", 16, 3, 2, bias=False, batchnorm=True), hardswish)
    y = g.act(g.conv(x, 16, 3, 2, group=16, bias=False, batchnorm=True), "relu")
    y = g.squeeze_excite(y, 8)
    x = g.conv(y, 24, bias=False, batchnorm=True)
    y = g.act(g.conv(x, 72, bias=False, batchnorm=True), "relu")
    y = g.act(g.conv(y, 72, 5, 1, group=72, bias=False, batchnorm=True), hardswish)
    y = g.squeeze_excite(y, 24, gate_first=True)
    x = g.add(g.conv(y, 24, bias=False, batchnorm=True), x)
    y = g.act(g.conv(x, 48, bias=False, batchnorm=True), hardswish)
    y = g.act(g.conv(y, 48, 3, 2, group=48, bias=False, batchnorm=True), hardswish)
    x = g.conv(y, 40, bias=False, batchnorm=True)
    x = g.act(g.conv(x, 96, bias=False, batchnorm=True), hardswish)
    return g.model(g.classifier(x, classes, hidden=64, activation=hardswish))


def efficientnet_like(resolution: int = 32, opset: int = 17, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """Stem 3x3/2 + SiLU; MBConv1 (dw3x3 + SiLU, SE with SiLU hidden and sigmoid gate via
    ReduceMean, project); MBConv6 with 5x5 stride 2 and a residual MBConv6; head conv +
    SiLU; classifier."""
    g = GraphBuilder(3, resolution, opset, seed)
    x = g.act(g.conv("input", 16, 3, 2, bias=False, batchnorm=True), "silu")
    y = g.act(g.conv(x, 16, 3, 1, group=16, bias=False, batchnorm=True), "silu")
    y = g.squeeze_excite(y, 4, hidden="silu", gate="sigmoid", reduce_mean=True)
    x = g.conv(y, 16, bias=False, batchnorm=True)
    y = g.act(g.conv(x, 96, bias=False, batchnorm=True), "silu")
    y = g.act(g.conv(y, 96, 5, 2, group=96, bias=False, batchnorm=True), "silu")
    y = g.squeeze_excite(y, 4, hidden="silu", gate="sigmoid")
    x = g.conv(y, 24, bias=False, batchnorm=True)
    y = g.act(g.conv(x, 144, bias=False, batchnorm=True), "silu")
    y = g.act(g.conv(y, 144, 3, 1, group=144, bias=False, batchnorm=True), "silu")
    y = g.squeeze_excite(y, 6, hidden="silu", gate="sigmoid")
    x = g.add(g.conv(y, 24, bias=False, batchnorm=True), x)
    x = g.act(g.conv(x, 64, bias=False, batchnorm=True), "silu")
    return g.model(g.classifier(x, classes))


def resnet_like(resolution: int = 32, bottleneck: bool = False, opset: int = 17, classes: int = 10,
                seed: int = 0) -> onnx.ModelProto:
    """Stem 7x7/2 + BN + ReLU, MaxPool 3x3/2 pad 1, then BasicBlocks (3x3 conv + ReLU, 3x3
    conv + Add + ReLU; a stride-2 one with a 1x1 stride-2 downsample) or Bottlenecks
    (1x1, 3x3, 1x1 + Add + ReLU); classifier."""
    g = GraphBuilder(3, resolution, opset, seed)
    x = g.max_pool(g.act(g.conv("input", 16, 7, 2, bias=False, batchnorm=True), "relu"))
    for width, stride in ((16, 1), (32, 2)):
        out_channels = width * 4 if bottleneck else width
        if bottleneck:
            y = g.act(g.conv(x, width, 1, 1, bias=False, batchnorm=True), "relu")
            y = g.act(g.conv(y, width, 3, stride, bias=False, batchnorm=True), "relu")
            y = g.conv(y, out_channels, 1, 1, bias=False, batchnorm=True)
        else:
            y = g.act(g.conv(x, width, 3, stride, bias=False, batchnorm=True), "relu")
            y = g.conv(y, width, 3, 1, bias=False, batchnorm=True)
        shortcut = x
        if stride != 1 or g.shapes[x] != out_channels:
            shortcut = g.conv(x, out_channels, 1, stride, bias=False, batchnorm=True, pad=0)
        x = g.act(g.add(y, shortcut), "relu")
    return g.model(g.classifier(x, classes))


def single_op(op: str, shape=(1, 8, 9, 9), opset: int = 17, **attrs) -> onnx.ModelProto:
    """One node `op` on a graph input of `shape` (N, C, H, W), e.g. MaxPool or HardSigmoid."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", shape[1], None, None])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], "single", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model
