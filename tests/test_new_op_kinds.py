"""The ops ResNet, MobileNetV3 and EfficientNet-B0 bring (issue 15): "conv" (a dense KxK conv
on NCHWc), "maxpool", "se" (squeeze-and-excitation in one step) and "activation" (a
stand-alone activation) are first-class in every view: a colour and a symbol of their own
on the roofline and in the time bars, rows of the layer table and the report (with its
time-by-op table), and the activation a layer applies (hardswish, silu, relu, ...) in the
hover, the detail panel and the tables. Real profiles of small-resolution zoo models, on
hand-made ceilings (no machine measurement)."""
from __future__ import annotations

import re

import pandas as pd
import pytest

import engine
import workbench
from engine.zoo import MODELS, save_model
from tests.conftest import hand_made_ceilings
from tests.new_ops_graphs import single_op
from workbench.activations import with_activations
from workbench.figure_parts import OP_COLORS, OP_SYMBOLS, op_kind, short_name
from workbench.layer_list import visible_rows
from workbench.layer_table import formatted, layer_table, op_summary
from workbench.report import write_report
from workbench.roof_notes import WEIGHTED_OPS
from workbench.roofline import roofline_figure
from workbench.simulated_bytes import FAMILY_OF_OP
from workbench.step_detail import step_detail_html
from workbench.teaching import OP_FORMULAS, bound_summary
from workbench.time_bars import time_bars

NEW_OPS = ("conv", "maxpool", "se", "activation")
ZOO = {"resnet18": {"resolution": 64}, "mobilenet_v3_small": {"resolution": 64},
       "efficientnet_b0": {"resolution": 64}}


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    loaded = {}
    for name, arguments in ZOO.items():
        path = folder / f"{name}.onnx"
        save_model(MODELS[name](**arguments), path)
        loaded[name] = engine.load(str(path))
    # a stand-alone activation: a HardSwish on the graph input, which no kernel's epilogue takes
    loaded["hardswish_alone"] = engine.load(single_op("HardSwish").SerializeToString())
    return loaded


@pytest.fixture(scope="module")
def frames(models, ceilings):
    return {name: with_activations(workbench.profile(model, batch=1, threads=1, repeats=1, warmup=0,
                                                     ceilings=ceilings), model)
            for name, model in models.items()}


def test_every_kind_has_its_own_colour_and_symbol():
    assert len(set(OP_COLORS.values())) == len(OP_COLORS)
    assert len(set(OP_SYMBOLS.values())) == len(OP_SYMBOLS)
    assert set(OP_SYMBOLS) == set(OP_COLORS)
    for op in NEW_OPS:
        assert op_kind(op) == op
    assert op_kind("flatten") == "layout" and op_kind("something new") == "other"
    assert "se" in WEIGHTED_OPS and "maxpool" not in WEIGHTED_OPS
    assert FAMILY_OF_OP["maxpool"] == "pooling" and FAMILY_OF_OP["se"] == "squeeze-excite"
    assert FAMILY_OF_OP["activation"] == "elementwise" and FAMILY_OF_OP["conv"] == "dense conv"
    assert OP_FORMULAS["conv"] == "dense" and "se" not in OP_FORMULAS


def test_no_step_is_other_and_the_new_ops_occur(frames):
    ops = set()
    for name, frame in frames.items():
        kinds = {op: op_kind(op) for op in frame["op"]}
        assert "other" not in kinds.values(), f"{name}: {kinds}"
        ops |= set(frame["op"])
    assert set(NEW_OPS) <= ops
    assert {"conv", "maxpool"} <= set(frames["resnet18"]["op"])
    assert "se" in set(frames["mobilenet_v3_small"]["op"]) and "se" in set(frames["efficientnet_b0"]["op"])
    assert "activation" in set(frames["hardswish_alone"]["op"])


def test_each_step_says_which_tile_fields_its_kernel_reads_and_a_dense_conv_the_channels_it_ran(frames, models):
    from engine.kernels.conv_nchwc import item_channels
    from engine.tiles import DEPTHWISE_FIELDS, POINTWISE_FIELDS

    resnet = frames["resnet18"].set_index("layer")
    layers = {layer.name: layer for layer in models["resnet18"].graph.layers}
    dense = [name for name in resnet.index if name in layers and layers[name].conv_kind == "dense"]
    assert dense
    for name in dense:          # the 3x3 and downsample convs: tiled like a 1x1, channels rounded per layer
        row = resnet.loc[name]
        assert row["tile_fields"] == POINTWISE_FIELDS
        cout, ho, wo = layers[name].output_shape    # (the profile is at batch 1)
        kh, kw = layers[name].attrs["kernel_shape"]
        assert row["pointwise_channels"] == item_channels(engine.Tiles().pointwise_channels, cout,
                                                          max(layers[name].attrs["strides"]), kh * kw,
                                                          -(-ho * wo // engine.Tiles().pointwise_pixels))
    assert all(fields == () for fields in resnet.loc[resnet["op"].isin(["stem", "maxpool", "linear"]), "tile_fields"])
    v3 = frames["mobilenet_v3_small"]
    assert set(v3.loc[v3["op"] == "depthwise", "tile_fields"]) == {DEPTHWISE_FIELDS}
    assert set(v3.loc[v3["op"].isin(["expand", "project", "pointwise"]), "tile_fields"]) == {POINTWISE_FIELDS}
    assert set(v3.loc[v3["op"] == "se", "tile_fields"]) == {()}


def test_roofline_draws_conv_and_se_with_their_own_symbol(frames, ceilings):
    for name, ops in (("resnet18", ("conv", "stem")), ("mobilenet_v3_small", ("se",)), ("efficientnet_b0", ("se",))):
        frame = frames[name]
        figure = roofline_figure(frame, ceilings, level="L2")
        traces = {t.meta: t for t in figure.data}
        assert traces["ops:other"].showlegend is False and not traces["ops:other"].x
        for op in ops:
            trace = traces[f"ops:{op}"]
            assert trace.showlegend and trace.name == op and trace.marker.symbol == OP_SYMBOLS[op]
            with_flops = frame[(frame["op"] == op) & (frame["flops"] > 0)]
            assert sorted(trace.customdata) == sorted(with_flops["layer"])
            assert any(f"({op})" in text for text in trace.hovertext)
        # every op kind drawn is named in the legend
        shown = {t.meta.removeprefix("ops:") for t in figure.data if t.meta.startswith("ops:") and t.showlegend}
        assert shown == set(frame.loc[frame["flops"] > 0, "op"])


def test_time_bars_mark_every_step_with_its_op(frames, ceilings):
    for name, frame in frames.items():
        figure = time_bars(frame, ceilings, level="L2")
        ops = {t.meta.removeprefix("op:"): t for t in figure.data if t.meta.startswith("op:")}
        assert set(ops) == set(OP_COLORS)
        bars = [t for t in figure.data if t.meta.startswith("bound:")]
        assert len(bars) == 3 and figure.data[:3] == tuple(bars)          # the level buttons restyle these
        assert all(list(button.args[2]) == [0, 1, 2] for button in figure.layout.updatemenus[0].buttons)
        labelled = {}
        for kind, trace in ops.items():
            assert trace.marker.symbol == OP_SYMBOLS[kind] and trace.marker.color == OP_COLORS[kind]
            assert trace.showlegend == bool(len(trace.y)) and trace.legend == "legend2"
            labelled.update({label: kind for label in trace.y})
        assert len(labelled) == len(frame)                                # every bar has its op's marker
        assert "other" not in labelled.values()
        for op in set(frame["op"]) & set(NEW_OPS):
            assert ops[op].showlegend and len(ops[op].y) == int((frame["op"] == op).sum())


def test_layer_table_and_its_op_filter(frames, ceilings):
    frame = frames["resnet18"]
    table = layer_table(frame, ceilings, "L2")
    assert {"conv", "maxpool", "stem"} <= set(table["op"])
    maxpool = visible_rows(table, "op:maxpool", "execution order", False)
    assert list(maxpool["op"]) == ["maxpool"]
    convs = visible_rows(table, "op:conv", "execution order", False)
    assert len(convs) == int((frame["op"] == "conv").sum()) and set(convs["op"]) == {"conv"}
    assert set(visible_rows(table, "pool", "execution order", False)["op"]) == {"pool", "maxpool"}
    assert len(visible_rows(table, "relu", "execution order", False)) > 0        # by activation
    shown = formatted(table, "L2")
    assert list(shown.columns[:3]) == ["layer", "op", "activation"]
    assert "relu" in set(shown["activation"])
    summary = op_summary(table).set_index("op")
    assert summary.loc["conv", "steps"] == int((frame["op"] == "conv").sum())
    assert summary["share"].sum() == pytest.approx(1.0)
    se_table = layer_table(frames["mobilenet_v3_small"], ceilings, "L2")
    assert list(visible_rows(se_table, "op:se", "time", False)["op"].unique()) == ["se"]
    assert "hardswish" in set(formatted(se_table, "L2")["activation"])


def test_report_renders_the_new_ops(frames, ceilings, tmp_path):
    for name in ("resnet18", "mobilenet_v3_small", "hardswish_alone"):
        frame = frames[name]
        out = tmp_path / name
        write_report(frame, out, model_name=name, ceilings=ceilings, images=False)
        page = (out / "report.html").read_text(encoding="utf-8")
        layers = page[page.index('<table id="layers"'):page.index("</table>")]
        ops_table = page[page.index('<table id="ops"'):]
        ops_table = ops_table[:ops_table.index("</table>")]
        for op in set(frame["op"]):
            assert f">{op}<" in layers
            assert f"> {op}</td><td>{OP_SYMBOLS[op_kind(op)]}</td>" in ops_table
            assert OP_COLORS[op_kind(op)] in ops_table
        assert "<th>activation</th>" in layers
        # the time bars' level buttons (and the roofline's link to them) restyle the bars only
        assert "args[2]);" in page


def test_hover_and_detail_panel_show_the_activation(frames, ceilings):
    cases = {"mobilenet_v3_small": "hardswish", "efficientnet_b0": "silu", "resnet18": "relu",
             "hardswish_alone": "hardswish"}
    for name, activation in cases.items():
        frame = frames[name]
        row = frame[frame["activation"].str.split(" → ").apply(lambda parts: activation in parts)].iloc[0]
        detail = step_detail_html(frame, row["layer"], ceilings, "L2")
        assert f"activation: {activation}" in detail
        assert f"({row['op']})" in detail
    # a step without FLOPs (max pool, stand-alone activation) has a detail panel too, without a roof
    for name, op in (("resnet18", "maxpool"), ("hardswish_alone", "activation")):
        frame = frames[name]
        step = frame[frame["op"] == op].iloc[0]
        detail = step_detail_html(frame, step["layer"], ceilings, "L2")
        assert f"({op})" in detail and "not on the roofline" in detail and "other FLOPs" in detail
    # a squeeze-and-excitation says its hidden and gate activations
    for name, gate in (("mobilenet_v3_small", "hardsigmoid"), ("efficientnet_b0", "sigmoid")):
        frame = frames[name]
        se = frame[frame["op"] == "se"].iloc[0]
        assert re.fullmatch(r"se: \S+ → " + gate, se["activation"]), se["activation"]
        detail = step_detail_html(frame, se["layer"], ceilings, "L2")
        assert "activation: se: " in detail and gate in detail
    # the roofline's hover too
    frame = frames["efficientnet_b0"]
    figure = roofline_figure(frame, ceilings, level="L2")
    texts = [text for t in figure.data if t.meta.startswith("ops:") for text in (t.hovertext or ())]
    assert any("activation: silu" in text for text in texts)
    # a fused block lists its members' activations
    blocks = frames["mobilenet_v3_small"][frames["mobilenet_v3_small"]["op"] == "block"]
    for _, block in blocks.iterrows():
        assert block["activation"].count(" → ") == len(block["members"]) - 1


def test_teaching_reads_the_new_ops(frames, models):
    summary = bound_summary(frames["efficientnet_b0"])
    assert "se" in summary.index and "other" not in summary.index
    intensities = workbench.teaching.model_intensities(models["resnet18"])
    convs = intensities[intensities["op"] == "conv"]
    assert len(convs) and set(convs["kind"]) == {"dense"}
    assert set(intensities["op"]) <= set(OP_FORMULAS)


def test_a_profile_without_the_activation_column_still_renders(frames, ceilings):
    frame = frames["resnet18"].drop(columns=["activation"])
    table = layer_table(frame, ceilings, "L2")
    assert "activation" not in formatted(table, "L2").columns
    detail = step_detail_html(frame, frame["layer"].iloc[1], ceilings, "L2")
    assert "activation:" not in detail and short_name(frame["layer"].iloc[1]) is not None
    assert isinstance(pd.DataFrame(op_summary(table)), pd.DataFrame)
