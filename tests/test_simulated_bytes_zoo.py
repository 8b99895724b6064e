"""workbench.profile(..., bytes="both") on the zoo networks whose plans run issue 15's
kernels (dense NCHWc convs, max pooling, squeeze-and-excitation, stand-alone activations):
every step traced and simulated, at a small resolution (64) to stay fast."""
from __future__ import annotations

import numpy as np
import pytest

import engine
import workbench
from test_bytes_check_figure import LEVELS, make_ceilings

pytestmark = pytest.mark.lanes     # the plans' tiles and layouts depend on the lane width

# the ops each network's plan must contain: the new kernels are the point of the test
NEW_OPS = {"resnet18": {"conv", "maxpool"}, "mobilenet_v3_small": {"se"}, "efficientnet_b0": {"se"}}


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_profile_with_simulated_bytes_runs_on_the_zoo_networks(name, tmp_path):
    path = engine.zoo.save_model(engine.zoo.MODELS[name](resolution=64), tmp_path / f"{name}.onnx")
    frame = workbench.profile(str(path), batch=1, threads=1, repeats=1, warmup=0, ceilings=make_ceilings(),
                              bytes="both")
    assert NEW_OPS[name] <= set(frame["op"])
    for level in LEVELS:
        simulated = frame[f"bytes_sim_{level}"].to_numpy(float)
        assert np.isfinite(simulated).all() and (simulated >= 0).all()     # an untraced step would be NaN
    # every step moves data between registers and L1, and the L1 bytes are the traced
    # loads and stores: the same order as the model's count (within 4x either way)
    assert (frame["bytes_sim_L1"] > 0).all()
    ratio = frame["bytes_sim_L1"] / frame["bytes_L1"]
    assert ratio.between(0.25, 4).all(), frame.loc[~ratio.between(0.25, 4), ["layer", "op", "bytes_L1", "bytes_sim_L1"]]


def test_stand_alone_activations_are_simulated():
    """No zoo network has a stand-alone activation step (its activations all fold into a
    conv's epilogue), so two small graphs that do: a sigmoid on the NCHW graph input (the
    flat kernel, on the caller's input) and one after a conv (not zero-preserving: the
    blocked kernel); two threads."""
    from machines import KIB, described, with_lanes
    from new_ops_graphs import GraphBuilder, single_op
    from engine.kernels.layout import CB
    from workbench.simulated_bytes import simulated_frame

    g = GraphBuilder(3, 16)
    after_conv = g.model(g.classifier(g.act(g.conv(g.act(g.conv(g.input.name, 24, 3, 2), "relu"), 24), "sigmoid"),
                                      10))
    machine = with_lanes(described("tiny, described", 2, 4 * KIB, 32 * KIB, 256 * KIB, 8), CB)
    for model in (single_op("Sigmoid", shape=(1, 8, 9, 9)), after_conv):
        frame = simulated_frame(engine.load(model), batch=2, threads=2, machine=machine, progress=False)
        steps = frame[frame["op"] == "activation"]
        # (the NCHW output's copy-out step of the first graph is not a kernel: not traced)
        assert len(steps) == 1 and steps["traced"].all()
        assert steps["bytes_sim_L1"].iloc[0] == steps["bytes_L1"].iloc[0] > 0    # x read once, out written once
