"""Plans write a squeeze-and-excitation's output over its input where nothing later reads
that input (engine.plan._in_place_items), and only there; either way the network's output
matches ONNX Runtime's."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from new_ops_graphs import GraphBuilder

import engine


def _se_network(residual_reads_input: bool, hidden: str = "relu", gate: str = "hardsigmoid"):
    """conv 3x3/2 -> SE -> 1x1 conv (+ the SE's input as its residual) -> classifier."""
    g = GraphBuilder(3, 12)
    x = g.act(g.conv("input", 24, 3, 2), "relu")
    y = g.conv(g.squeeze_excite(x, 8, hidden=hidden, gate=gate), 24)
    if residual_reads_input:
        y = g.add(y, x)
    return g.model(g.classifier(y, 10))


def _squeeze_excite_steps(model, batch: int):
    steps = [step for step in model.plan(batch, 2).steps if step.op == "se"]
    assert len(steps) == 1
    return steps


def _kernel_x_and_out(step):
    args = step.call.args        # the bound kernel's (x, w1, b1, w2, b2, mask, out, ...)
    return args[0], args[6]


def _matches_onnxruntime(proto, model, batch: int):
    x = np.random.default_rng(batch).standard_normal((batch, 3, 12, 12), dtype=np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(model.run(x, threads=2), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("hidden, gate", [("relu", "hardsigmoid"), ("silu", "sigmoid")])
def test_a_squeeze_excitation_whose_input_nothing_else_reads_runs_in_place_and_matches(batch, hidden, gate):
    proto = _se_network(residual_reads_input=False, hidden=hidden, gate=gate)
    model = engine.load(proto)
    x, out = _kernel_x_and_out(_squeeze_excite_steps(model, batch)[0])
    assert out is x
    _matches_onnxruntime(proto, model, batch)


@pytest.mark.parametrize("batch", [1, 5])
def test_a_squeeze_excitation_whose_input_a_later_residual_reads_keeps_a_separate_output(batch):
    proto = _se_network(residual_reads_input=True)
    model = engine.load(proto)
    x, out = _kernel_x_and_out(_squeeze_excite_steps(model, batch)[0])
    assert out is not x and not np.may_share_memory(out, x)
    _matches_onnxruntime(proto, model, batch)
