"""workbench.teaching: the shape formulas the notebooks teach agree with the engine's
counted FLOPs and bound its modelled bytes from below, and their limits are the ones the
notebooks state."""
from __future__ import annotations

import pytest

from workbench.teaching import (bound_summary, conv_intensity, explain_bounds, fusion_effect, intensity_by_kind,
                                model_intensities, ridge_point_figure, ridge_points)
from tests.test_widgets import synthetic_ceilings


@pytest.fixture(scope="module")
def ceilings():
    return synthetic_ceilings()


def test_conv_intensity_counts_flops_and_compulsory_bytes_by_hand():
    # depthwise 3x3, 8 channels, 10x10, stride 1: 2*8*10*10*9 FLOPs; in 800 + w 72 + out 800 floats
    depthwise = conv_intensity("depthwise", 8, 8, 10, 10)
    assert depthwise["flops"] == 2 * 8 * 10 * 10 * 9
    assert depthwise["bytes"] == 4 * (800 + 72 + 800)
    # pointwise 16 -> 32 over 5x5, batch 2: kernel and stride are ignored
    pointwise = conv_intensity("pointwise", 16, 32, 5, 5, kernel=3, stride=2, batch=2)
    assert pointwise["flops"] == 2 * 2 * 32 * 25 * 16
    assert pointwise["bytes"] == 4 * (2 * 16 * 25 + 16 * 32 + 2 * 32 * 25)
    # dense 3x3 stride 2 over 7x7 -> 4x4 ("same" padding)
    dense = conv_intensity("dense", 3, 4, 7, 7, kernel=3, stride=2)
    assert (dense["out_height"], dense["out_width"]) == (4, 4)
    assert dense["flops"] == 2 * 4 * 16 * 3 * 9
    assert dense["arithmetic_intensity"] == pytest.approx(dense["flops"] / dense["bytes"])


def test_the_limits_the_notebook_states():
    assert conv_intensity("depthwise", 512, 512, 512, 512)["arithmetic_intensity"] == pytest.approx(2.25, rel=1e-3)
    assert conv_intensity("depthwise", 512, 512, 512, 512, stride=2)["arithmetic_intensity"] < 1.0
    cin, cout = 96, 576
    limit = cin * cout / (2 * (cin + cout))
    assert conv_intensity("pointwise", cin, cout, 1024, 1024)["arithmetic_intensity"] == pytest.approx(limit, rel=1e-2)
    shape = (144, 144, 56, 56)
    ais = {kind: conv_intensity(kind, *shape)["arithmetic_intensity"] for kind in ("dense", "pointwise", "depthwise")}
    assert ais["dense"] > ais["pointwise"] > ais["depthwise"]


def test_conv_intensity_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        conv_intensity("grouped", 8, 8, 4, 4)
    with pytest.raises(ValueError, match="depthwise"):
        conv_intensity("depthwise", 8, 16, 4, 4)
    with pytest.raises(ValueError, match="height"):
        conv_intensity("dense", 8, 8, 0, 4)


def test_model_intensities_flops_equal_the_engines_counts(small_model):
    table = model_intensities(small_model, batches=(1, 8))
    steps = {s.name: s for s in small_model.plan(1, threads=1, fuse_blocks=False).steps}
    assert len(table) == 52          # MobileNetV2: stem, 17 depthwise, 17 project, 16 expand, last 1x1
    for _, row in table.iterrows():
        assert row["flops_per_image"] == steps[row["layer"]].flops, row["layer"]
        assert row["op"] == steps[row["layer"]].op


def test_compulsory_bytes_bound_the_engines_modelled_bytes_from_below(small_model, ceilings):
    """At L1 and L2 the engine charges every step cold (engine.traffic), so its bytes
    are at least the compulsory traffic of the shape formulas. (Not L3 and DRAM: there the
    model credits an input the previous step left in the L2s, and activations and weights
    left in L3 by the previous step or run.)"""
    import workbench

    frame = workbench.profile(small_model, threads=1, repeats=1, ceilings=ceilings,
                              fuse_blocks=False).set_index("layer")
    table = model_intensities(small_model).set_index("layer")
    for layer, row in table.iterrows():
        compulsory = row["flops_per_image"] / row["ai_batch1"]
        for level in ("L1", "L2"):
            assert frame.loc[layer, f"bytes_{level}"] >= compulsory * (1 - 1e-9), (layer, level)


def test_batch_moves_pointwise_intensity_up_and_leaves_depthwise_in_place(mobilenet):
    """On the 224x224 default model, batch 1 -> 8: every depthwise layer's compulsory
    intensity changes by under 10 %, while the typical pointwise layer gains more than the
    most any depthwise layer does, and the deep, weight-heavy ones gain over 3x."""
    table = model_intensities(mobilenet, batches=(1, 8))
    ratio = table["ai_batch8"] / table["ai_batch1"]
    depthwise = table["op"] == "depthwise"
    pointwise = table["op"].isin(["expand", "project"])
    assert (ratio >= 1.0 - 1e-12).all()
    assert ratio[depthwise].max() < 1.1
    assert ratio[pointwise].median() > ratio[depthwise].max()
    assert ratio[pointwise].max() > 3.0
    summary = intensity_by_kind(table, "ai_batch1")
    assert summary.loc["depthwise", "max"] <= 2.25 and summary.loc["depthwise", "layers"] == 17


def test_ridge_points_are_peak_over_bandwidth(ceilings):
    table = ridge_points(ceilings)
    for threads in ceilings.threads:
        for level in ceilings.levels:
            expected = ceilings.peak_gflops(threads) / ceilings.bandwidth_gbs(level, threads)
            assert table.loc[threads, level] == pytest.approx(expected)


def test_bound_summary_and_explanation_count_the_memory_bound_steps(small_model, ceilings):
    import workbench

    frame = workbench.profile(small_model, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=False)
    summary = bound_summary(frame)
    with_flops = frame[frame["flops"] > 0]
    assert summary["steps"].sum() == len(with_flops)
    assert summary["memory_bound"].sum() == (with_flops["bound"] == "memory").sum()
    text = explain_bounds(frame, ceilings)
    assert f"**{(with_flops['bound'] == 'memory').sum()} of {len(with_flops)}**" in text
    for op in summary.index:
        assert f"**{op}**" in text


def test_fusion_effect_keeps_flops_and_compares_bytes(small_model, ceilings):
    import workbench

    unfused = workbench.profile(small_model, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=False)
    fused = workbench.profile(small_model, threads=1, repeats=1, ceilings=ceilings, fuse_blocks=True)
    effect = fusion_effect(unfused, fused)
    assert len(effect) == (fused["op"] == "block").sum() == 17
    for level in ("L3", "DRAM"):
        assert (effect[f"right_{level}"] == (effect[f"MB_{level}_fused"] < effect[f"MB_{level}_unfused"])).all()
        moved_right = effect[f"ai_{level}_fused"] > effect[f"ai_{level}_unfused"]
        assert (moved_right == effect[f"right_{level}"]).all()      # same FLOPs: fewer bytes <=> right
    assert effect.loc[effect.index[0], "input_hw"] == "48x48"
    with pytest.raises(ValueError):
        fusion_effect(unfused, fused.drop(columns="members"))


def _outside_the_axes(figure) -> list[str]:
    """Annotations and horizontal lines of `figure` whose y lies outside its y axis range
    (on a log axis, an annotation's y is log10 of the value; a shape's y is the value)."""
    import math

    layout = figure.layout
    low, high = layout.yaxis.range
    log = layout.yaxis.type == "log"
    outside = []
    for annotation in layout.annotations:
        if annotation.yref == "y" and not low <= annotation.y <= high:
            outside.append(f"annotation {annotation.text!r} at y={annotation.y}")
    for shape in layout.shapes:
        y = math.log10(shape.y0) if log else shape.y0
        if shape.yref == "y" and not low <= y <= high:
            outside.append(f"line at y={shape.y0}")
    return outside


def test_the_ridge_chart_labels_every_ridge_on_its_line_inside_an_axis_that_fits_the_data(small_model, ceilings):
    import math

    intensities = model_intensities(small_model)
    figure = ridge_point_figure(intensities, ceilings, threads=2)
    ridges = {level: ceilings.ridge_point(level, 2) for level in ceilings.levels}
    assert _outside_the_axes(figure) == []
    labels = {a.text.split()[0]: a for a in figure.layout.annotations}
    assert set(labels) == set(ridges)
    for level, ridge in ridges.items():
        assert labels[level].y == pytest.approx(math.log10(ridge))          # on its line
        assert f"{ridge:.3g} FLOP/byte" in labels[level].text
    # the axis spans the data and the ridges, with well under a decade to spare either side
    values = list(intensities["ai_batch1"]) + list(ridges.values())
    low, high = figure.layout.yaxis.range
    assert low <= math.log10(min(values)) and high >= math.log10(max(values))
    assert math.log10(min(values)) - low < 0.5 and high - math.log10(max(values)) < 0.5
    assert sum(len(trace.x) for trace in figure.data) == len(intensities)


def test_the_axis_check_catches_add_hline_labels_on_a_log_axis(small_model, ceilings):
    """The notebook's old chart: add_hline's annotation lands at y = value on a log axis."""
    figure = ridge_point_figure(model_intensities(small_model), ceilings, threads=2)
    figure.layout.annotations = []
    figure.add_hline(y=ceilings.ridge_point("DRAM", 2), annotation_text="DRAM ridge")
    assert any("DRAM ridge" in problem for problem in _outside_the_axes(figure))
