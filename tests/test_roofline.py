"""The roofline figures: roofs equal the ceilings and are labelled on their lines, markers
sit at the profile's numbers coloured by their bound, axes fit the data, arrows go old ->
new inside the axes, time bars agree with their title at every level, HTML is
self-contained, bad input is refused. Profiles are synthetic but go through workbench.profile's own summarise, so
they have exactly the columns the engine's profiles have."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from engine.hooks import LayerRecord
from workbench.ceilings import Ceilings
from workbench.profile import records_frame, summarise
from workbench.before_after import before_after_figure
from workbench.export import figure_html
from workbench.figure_parts import MARKER_MIN, OP_COLORS, short_name
from workbench.profile import bound_at
from workbench.roofline import DATA_DECADES, axis_ranges, roofline_figure, roofline_traces, update_roofline
from workbench.time_bars import BOUND_COLORS, time_bars

LEVELS = ("L1", "L2", "L3", "DRAM")


def make_ceilings(threads=(1, 2)) -> Ceilings:
    """Round numbers: peak 60 GFLOP/s per thread; L1 200, L2 100, L3 50, DRAM 15 GB/s per thread."""
    rows = []
    for t in threads:
        rows.append((t, "fp32_fma", 60.0 * t, "GFLOP/s"))
        for level, bandwidth in zip(LEVELS, (200.0, 100.0, 50.0, 15.0)):
            rows.append((t, level, bandwidth * t, "GB/s"))
    table = pd.DataFrame(rows, columns=["threads", "resource", "value", "unit"])
    return Ceilings(table, machine={}, measured_at="test", key={})


F = "/features/features"
STEM = f"{F}.0/features.0.0/Conv"
EXPAND, DEPTHWISE, PROJECT = (f"{F}.2/conv/conv.0/conv.0.0/Conv", f"{F}.2/conv/conv.1/conv.1.0/Conv",
                              f"{F}.2/conv/conv.2/Conv")
BLOCK = "block features.2"
# name, op, flops, seconds at 1 thread, bytes per level (L1, L2, L3, DRAM)
UNFUSED = [
    ("input to NCHWc", "layout", 0, 2e-5, (6e5, 6e5, 6e5, 6e5)),
    (STEM, "stem", 21_000_000, 1e-3, (4e6, 2e6, 1.8e6, 1.7e6)),
    (f"{F}.1/conv/conv.0/conv.0.0/Conv", "depthwise", 7_000_000, 5e-4, (6e6, 3.5e6, 3.3e6, 3.2e6)),
    (f"{F}.1/conv/conv.1/Conv", "project", 25_000_000, 1e-3, (3e6, 1.5e6, 1.2e6, 1.0e6)),
    (EXPAND, "expand", 30_000_000, 1.5e-3, (5e6, 3e6, 2.5e6, 2.4e6)),
    (DEPTHWISE, "depthwise", 10_000_000, 9e-4, (9e6, 7e6, 6.5e6, 6.2e6)),
    (PROJECT, "project", 40_000_000, 2e-3, (4e6, 2.2e6, 1.9e6, 1.7e6)),
    (f"{F}.18/features.18.0/Conv", "pointwise", 400_000_000, 1e-2, (1e7, 2e6, 1.5e6, 1.3e6)),
    ("/GlobalAveragePool", "pool", 0, 5e-5, (2.5e5, 2.5e5, 2.5e5, 2.5e5)),
    ("/Flatten", "flatten", 0, 1e-6, (0, 0, 0, 0)),
    ("/classifier/classifier.1/Gemm", "linear", 2_560_000, 8e-4, (5.1e6, 5.1e6, 5.1e6, 5.1e6)),
]
ZERO_FLOP_LAYERS = ("input to NCHWc", "/GlobalAveragePool", "/Flatten")


def make_profile(threads: int = 1, fused: bool = False, ceilings: Ceilings | None = None,
                 speedup: float = 1.0, outlier_ai: float | None = None) -> pd.DataFrame:
    """A profile as workbench.profile returns it (through the real summarise)."""
    steps = []
    for name, op, flops, seconds, moved in UNFUSED:
        if fused and name == EXPAND:
            members = [s for s in UNFUSED if s[0] in (EXPAND, DEPTHWISE, PROJECT)]
            steps.append((BLOCK, "block", sum(s[2] for s in members), 3.5e-3, (9e6, 3e6, 2e6, 1.8e6),
                          tuple(s[0] for s in members), True))
        elif fused and name in (DEPTHWISE, PROJECT):
            continue
        else:
            steps.append((name, op, flops, seconds, moved, (name,), False))
    if outlier_ai is not None:
        name, op, flops, seconds, _, members, is_fused = steps[7]
        steps[7] = (name, op, flops, seconds, (flops / outlier_ai,) * 4, members, is_fused)
    records = []
    for run in range(3):
        for index, (name, op, flops, seconds, moved, members, is_fused) in enumerate(steps):
            records.append(LayerRecord(
                run_index=run, step_index=index, name=name, op=op, input_shape=(1, 3, 224, 224),
                output_shape=(1, 4, 112, 112, 8), batch=1, threads=threads, tiles={"pointwise_pixels": 64},
                fused=is_fused, seconds=seconds / speedup / threads * (1 + 0.01 * run), flops=flops,
                other_flops=0, bytes=dict(zip(LEVELS, moved)), members=members))
    return summarise(records_frame(records), ceilings or make_ceilings())


@pytest.fixture(scope="module")
def ceilings():
    return make_ceilings()


@pytest.fixture(scope="module")
def profile(ceilings):
    return make_profile(threads=1, ceilings=ceilings)


@pytest.fixture(scope="module")
def figures(profile, ceilings):
    """roofline_figure(profile, ceilings, level) for every level, built once."""
    return {level: roofline_figure(profile, ceilings, level=level) for level in LEVELS}


def traces_by_meta(figure) -> dict:
    return {trace.meta: trace for trace in figure.data}


def marker_points(figure) -> list[tuple]:
    """(x, y, hover) of every marker of the op-kind traces."""
    points = []
    for trace in figure.data:
        if str(trace.meta).startswith("ops:"):
            points += list(zip(trace.x, trace.y, trace.hovertext))
    return points


# ---------------------------------------------------------------------------- the figure

def test_figure_has_region_then_roofs_then_one_marker_trace_per_op_kind(profile, ceilings):
    figure = roofline_figure(profile, ceilings)
    expected = (["region", "roof:peak"] + [f"roof:{level}" for level in LEVELS]
                + [f"ops:{kind}" for kind in OP_COLORS]
                + ["legend:memory", "legend:compute", "size:1%", "size:10%", "size:30%"])
    assert [t.meta for t in figure.data] == expected
    assert figure.layout.xaxis.type == "log" and figure.layout.yaxis.type == "log"
    names = {t.meta: t.name for t in figure.data}
    assert names["ops:depthwise"] == "depthwise" and names["roof:L2"].startswith("L2 roof")
    assert names["roof:peak"].startswith("peak FP32 FMA, 1 thread")
    # kinds with no step in this profile are kept (stable trace set) but out of the legend
    shown = {t.meta for t in figure.data if t.meta.startswith("ops:") and t.showlegend}
    assert shown == {"ops:stem", "ops:depthwise", "ops:expand", "ops:project", "ops:pointwise", "ops:linear"}


def test_roofs_equal_the_ceilings_numbers(figures, ceilings):
    roofs = traces_by_meta(figures["L2"])
    assert set(roofs["roof:peak"].y) == {ceilings.peak_gflops(1)} == {60.0}
    for level in LEVELS:
        roof = roofs[f"roof:{level}"]
        bandwidth = ceilings.bandwidth_gbs(level, 1)
        assert np.allclose(np.array(roof.y) / np.array(roof.x), bandwidth, rtol=1e-12)
        assert roof.x[-1] == pytest.approx(ceilings.ridge_point(level, 1))   # drawn up to the ridge point
        assert roof.y[-1] == pytest.approx(ceilings.peak_gflops(1))          # ... where it meets the peak


def test_chosen_level_roof_is_emphasised(figures):
    for level in LEVELS:
        roofs = traces_by_meta(figures[level])
        widths = {other: roofs[f"roof:{other}"].line.width for other in LEVELS}
        assert all(widths[level] > widths[other] for other in LEVELS if other != level), widths


@pytest.mark.parametrize("level", LEVELS)
def test_marker_x_is_the_profiles_ai_at_the_level_and_y_its_gflops(profile, figures, level):
    points = marker_points(figures[level])
    rows = profile[profile["flops"] > 0]
    got = np.array(sorted((x, y) for x, y, _ in points))
    expected = np.array(sorted(zip(rows[f"ai_{level}"], rows["gflops"])))
    assert got.shape == expected.shape and np.allclose(got, expected, rtol=1e-12, atol=0)


def test_steps_without_flops_get_no_marker(profile, figures):
    points = marker_points(figures["L2"])
    assert len(points) == int((profile["flops"] > 0).sum()) == len(profile) - len(ZERO_FLOP_LAYERS)
    hovers = " ".join(h for _, _, h in points)
    assert not any(f"<b>{name}</b>" in hovers for name in ZERO_FLOP_LAYERS)


def test_marker_area_grows_with_share_of_time(profile, figures):
    sizes, shares = [], []
    for trace in figures["L2"].data:
        if trace.meta.startswith("ops:") and trace.x:
            sizes += list(trace.marker.size)
            rows = profile[profile["op"] == trace.meta.removeprefix("ops:")]
            shares += list(rows.loc[rows["flops"] > 0, "share_of_time"])
    order = np.argsort(shares)
    assert min(sizes) >= MARKER_MIN
    assert np.all(np.diff(np.array(sizes)[order]) >= 0) and max(sizes) > min(sizes)
    # sqrt scaling: diameter - min proportional to sqrt(share)
    ratio = (np.array(sizes) - MARKER_MIN) / np.sqrt(shares)
    assert np.allclose(ratio, ratio[0])


def test_hover_names_the_layer_and_says_memory_or_compute_bound_at_the_level(profile, ceilings, figures):
    ridge = ceilings.ridge_point("L2", 1)
    points = marker_points(figures["L2"])
    for _, row in profile[profile["flops"] > 0].iterrows():
        hover = next(h for x, _, h in points if h.startswith(f"<b>{row['layer']}</b>"))
        expected = "memory bound" if row["ai_L2"] < ridge else "compute bound"
        assert expected in hover
        assert f"{row['seconds'] * 1e3:.3g} ms" in hover and "GFLOP/s" in hover and "FLOP/byte" in hover
        attainable = min(ceilings.peak_gflops(1), row["ai_L2"] * ceilings.bandwidth_gbs("L2", 1))
        assert f"{row['gflops'] / attainable:.0%} of it" in hover
        assert "(1, 3, 224, 224) → (1, 32, 112, 112)" in hover          # NCHW, never the blocked layout
    # both kinds occur, so the check above could fail either way
    assert (profile.loc[profile["flops"] > 0, "ai_L2"] < ridge).any()
    assert (profile.loc[profile["flops"] > 0, "ai_L2"] >= ridge).any()


def test_slowest_steps_are_labelled_with_short_names(profile, ceilings):
    figure = roofline_figure(profile, ceilings, label_top=2)
    labels = [text for t in figure.data if t.meta.startswith("ops:") for text in t.text if text]
    slowest = profile.nlargest(2, "seconds")["layer"]
    assert sorted(labels) == sorted(short_name(n) for n in slowest)


def test_short_name_drops_scopes_that_prefix_the_next_and_the_op_type():
    assert short_name("/features/features.3/conv/conv.0/conv.0.0/Conv") == "features.3/conv.0.0"
    assert short_name("/classifier/classifier.1/Gemm") == "classifier.1"
    assert short_name("block features.2") == "block features.2"


@pytest.mark.parametrize("level", LEVELS)
def test_shaded_region_ends_at_the_ridge_point_of_the_level(figures, ceilings, level):
    figure = figures[level]
    region = traces_by_meta(figure)["region"]
    assert region.fill == "toself"
    assert max(region.x) == pytest.approx(ceilings.ridge_point(level, 1))
    assert min(region.x) == pytest.approx(10 ** figure.layout.xaxis.range[0])


def _within_decades(axis_range, values, decades=DATA_DECADES) -> bool:
    lo, hi = (10 ** v for v in axis_range)
    return lo >= min(values) / 10 ** decades * 0.999 and hi <= max(values) * 10 ** decades * 1.001


PROFILES = {"1 thread": dict(threads=1), "2 threads fused": dict(threads=2, fused=True),
            "an outlier at AI 5000": dict(outlier_ai=5000.0), "4x faster": dict(speedup=4.0)}


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("level", LEVELS)
def test_axes_fit_the_data_within_two_decades_and_clip_no_marker(ceilings, name, level):
    profile = make_profile(ceilings=ceilings, **PROFILES[name])
    figure = roofline_figure(profile, ceilings, level=level)
    xs, ys = zip(*[(x, y) for x, y, _ in marker_points(figure) if x is not None])
    assert _within_decades(figure.layout.yaxis.range, ys) and _within_decades(figure.layout.xaxis.range, xs)
    x_lo, x_hi = figure.layout.xaxis.range
    y_lo, y_hi = figure.layout.yaxis.range
    for x, y in zip(xs, ys):          # every marker inside, with room for its size
        assert x_lo < math.log10(x) < x_hi and y_lo < math.log10(y) < y_hi
    peak = ceilings.peak_gflops(profile_threads_of(profile))
    assert y_lo < math.log10(peak) < y_hi          # the peak roof is in view


def profile_threads_of(profile) -> int:
    return int(profile["threads"].iloc[0])


def test_axis_ranges_are_fitted_per_level_and_the_level_buttons_set_them(profile, ceilings, figures):
    ranges = {level: axis_ranges(ceilings, [profile], level) for level in LEVELS}
    assert ranges["L1"]["x"] != ranges["DRAM"]["x"]        # each level its own view of the data
    for level, button in zip(LEVELS, figures["L2"].layout.updatemenus[0].buttons):
        _, relayout = button.args
        assert relayout["xaxis.range"] == pytest.approx([math.log10(v) for v in ranges[level]["x"]])
        assert tuple(figures[level].layout.xaxis.range) == pytest.approx(relayout["xaxis.range"])
        assert tuple(figures[level].layout.yaxis.range) == pytest.approx(relayout["yaxis.range"])


@pytest.mark.parametrize("level", LEVELS)
def test_every_roof_is_labelled_with_its_value_on_its_line_inside_the_axes(ceilings, level):
    profile = make_profile(ceilings=ceilings)
    figure = roofline_figure(profile, ceilings, level=level)
    x_lo, x_hi = (10 ** v for v in figure.layout.xaxis.range)
    y_lo, y_hi = (10 ** v for v in figure.layout.yaxis.range)
    labelled = 0
    for trace in figure.data:
        if not trace.meta.startswith("roof:"):
            continue
        (index,) = [i for i, text in enumerate(trace.text) if text]
        x, y, text = trace.x[index], trace.y[index], trace.text[index]
        assert min(trace.x) < x < max(trace.x), trace.meta          # on the line, not at an end
        assert x_lo < x < x_hi and y_lo < y < y_hi, trace.meta
        roof = trace.meta.removeprefix("roof:")
        if roof == "peak":
            assert text.startswith(f"peak {ceilings.peak_gflops(1):.3g} GFLOP/s")
        else:
            assert text == f"{roof} {ceilings.bandwidth_gbs(roof, 1):.3g} GB/s"
            assert y == pytest.approx(x * ceilings.bandwidth_gbs(roof, 1))     # on the line y = AI x GB/s
        labelled += 1
    assert labelled == 1 + len(LEVELS)


@pytest.mark.parametrize("level", LEVELS)
def test_no_annotation_or_text_sits_outside_the_axis_range(ceilings, level):
    before = make_profile(threads=1, ceilings=ceilings)
    after = make_profile(threads=2, fused=True, ceilings=ceilings, speedup=1.5)
    for figure in (before_after_figure(before, after, ceilings, level=level),
                   roofline_figure(after, ceilings, level=level)):
        (x_lo, x_hi), (y_lo, y_hi) = figure.layout.xaxis.range, figure.layout.yaxis.range
        for note in figure.layout.annotations:     # arrows: log10 data coordinates
            for x, y in ((note.x, note.y), (note.ax, note.ay)):
                assert x_lo <= x <= x_hi and y_lo <= y <= y_hi, note.name
        for trace in figure.data:
            for x, y, text in zip(trace.x or (), trace.y or (), trace.text or ()):
                if text and x is not None and y is not None:
                    assert x_lo <= math.log10(x) <= x_hi and y_lo <= math.log10(y) <= y_hi, (trace.meta, text)


@pytest.mark.parametrize("level", LEVELS)
def test_markers_are_coloured_by_their_bound_at_the_level(profile, ceilings, figures, level):
    bounds = dict(zip(profile["layer"], bound_at(profile, ceilings, level)))
    seen = set()
    for trace in figures[level].data:
        if trace.meta.startswith("ops:"):
            for name, color in zip(trace.customdata or (), trace.marker.color or ()):
                assert color == BOUND_COLORS[bounds[name]], name
                seen.add(bounds[name])
    assert seen == {"memory", "compute"} or level != "L2"      # at L2 both kinds occur: a wrong colour shows


def test_error_bars_span_p10_to_p90_of_the_repeats(profile, figures):
    rows = profile.set_index("layer")
    checked = 0
    for trace in figures["L2"].data:
        if trace.meta.startswith("ops:") and trace.customdata:
            assert trace.error_y.visible
            for name, y, plus, minus in zip(trace.customdata, trace.y, trace.error_y.array, trace.error_y.arrayminus):
                assert y + plus == pytest.approx(rows.loc[name, "gflops_p90"])
                assert y - minus == pytest.approx(rows.loc[name, "gflops_p10"])
                checked += 1
    assert checked and (rows["gflops_p90"] > rows["gflops_p10"]).any()   # the repeats do differ


def test_a_point_above_its_roof_says_why_in_its_hover(ceilings):
    # 4x faster than the fixture: the classifier (AI 0.5 FLOP/byte) beats its DRAM roof of 7.5 GFLOP/s
    profile = make_profile(ceilings=ceilings, speedup=4.0)
    figure = roofline_figure(profile, ceilings, level="DRAM")
    attainable = np.minimum(ceilings.peak_gflops(1), profile["ai_DRAM"] * ceilings.bandwidth_gbs("DRAM", 1))
    above = set(profile.loc[(profile["flops"] > 0) & (profile["gflops"] > attainable), "layer"])
    assert "/classifier/classifier.1/Gemm" in above
    for x, y, hover in marker_points(figure):
        name = re.match(r"<b>(.*?)</b>", hover).group(1)
        assert ("above roof: the bytes model undercounts this step" in hover) == (name in above), name


def test_the_title_warns_when_the_repeats_spread_widely(ceilings):
    quiet = make_profile(ceilings=ceilings)
    noisy = quiet.copy()
    noisy["seconds_p90"] = noisy["seconds_p10"] * 2.0
    assert "noisy" not in roofline_figure(quiet, ceilings).layout.title.text
    assert "noisy measurement" in roofline_figure(noisy, ceilings).layout.title.text


def test_more_threads_raise_the_peak_roof(ceilings):
    peak = {t: traces_by_meta(roofline_figure(make_profile(threads=t, ceilings=ceilings), ceilings))["roof:peak"]
            for t in (1, 2)}
    assert peak[2].y[0] > peak[1].y[0]
    assert peak[2].y[0] == ceilings.peak_gflops(2)


def test_level_buttons_switch_markers_and_region_to_that_level(figures, ceilings):
    figure = figures["L2"]
    (menu,) = figure.layout.updatemenus
    assert [b.label for b in menu.buttons] == [f"AI at {level}" for level in LEVELS]
    assert menu.active == LEVELS.index("L2")
    keys = [t.meta for t in figure.data]
    for level, button in zip(LEVELS, menu.buttons):
        restyle, relayout = button.args
        fresh = figures[level]
        for key, x, width in zip(keys, restyle["x"], restyle["line.width"]):
            fresh_trace = traces_by_meta(fresh)[key]
            assert tuple(x) == pytest.approx(tuple(fresh_trace.x))
            assert width == fresh_trace.line.width
        assert max(restyle["x"][keys.index("region")]) == pytest.approx(ceilings.ridge_point(level, 1))
        assert relayout["xaxis.title.text"] == fresh.layout.xaxis.title.text
        assert relayout["title.text"] == fresh.layout.title.text


def test_level_buttons_can_be_left_out(profile, ceilings):
    assert not roofline_figure(profile, ceilings, level_buttons=False).layout.updatemenus


@pytest.mark.parametrize("figure_class", [go.Figure, go.FigureWidget])
def test_update_roofline_in_place_equals_a_fresh_figure(ceilings, figure_class):
    before = make_profile(threads=1, ceilings=ceilings)
    after = make_profile(threads=2, fused=True, ceilings=ceilings)
    figure = figure_class(roofline_figure(before, ceilings, level="L2"))
    traces = list(figure.data)
    update_roofline(figure, after, ceilings, level="L3")
    assert all(a is b for a, b in zip(traces, figure.data))         # same trace objects: updated, not rebuilt
    fresh = roofline_figure(after, ceilings, level="L3")
    for got, want in zip(figure.data, fresh.data):
        got_json, want_json = got.to_plotly_json(), want.to_plotly_json()
        got_json.pop("uid", None), want_json.pop("uid", None)
        assert got_json == want_json, got.meta
    assert tuple(figure.layout.xaxis.range) == tuple(fresh.layout.xaxis.range)
    assert figure.layout.updatemenus[0].active == LEVELS.index("L3")


def test_update_roofline_leaves_an_overlay_after_the_roofline_traces_alone(ceilings):
    """A figure's owner may add traces after roofline_figure's (the Explorer's selection
    ring); update_roofline redraws the roofline's and keeps the rest, and the level buttons
    restyle only the roofline's traces."""
    before = make_profile(threads=1, ceilings=ceilings)
    after = make_profile(threads=2, fused=True, ceilings=ceilings)
    figure = go.FigureWidget(roofline_figure(before, ceilings, level="L2"))
    count = len(figure.data)
    figure.add_trace(go.Scatter(meta="selection", x=[1.0], y=[2.0], mode="markers"))
    update_roofline(figure, after, ceilings, level="L3")
    assert (figure.data[-1].meta, tuple(figure.data[-1].x), tuple(figure.data[-1].y)) == ("selection", (1.0,), (2.0,))
    fresh = roofline_figure(after, ceilings, level="L3")
    assert [t.x for t in figure.data[:count]] == [t.x for t in fresh.data]
    for button in figure.layout.updatemenus[0].buttons:
        restyle, _, indices = button.args
        assert list(indices) == list(range(count)) and len(restyle["x"]) == count
    with pytest.raises(ValueError, match="not those of roofline_figure"):
        update_roofline(go.Figure([go.Scatter(meta="selection"), *fresh.data]), after, ceilings)


def test_each_marker_carries_its_steps_name_for_a_click(profile, ceilings):
    figure = roofline_figure(profile, ceilings, level="L2")
    names = [name for t in figure.data if t.meta.startswith("ops:") for name in (t.customdata or ())]
    assert sorted(names) == sorted(profile.loc[(profile["flops"] > 0) & (profile["gflops"] > 0), "layer"])


def test_roofline_traces_keys_do_not_depend_on_the_profile(ceilings):
    one = roofline_traces(make_profile(threads=1, ceilings=ceilings), ceilings)
    two = roofline_traces(make_profile(threads=2, fused=True, ceilings=ceilings), ceilings, level="DRAM")
    assert list(one) == list(two)
    assert all(spec["meta"] == key for key, spec in one.items())


# ---------------------------------------------------------------------------- time bars

@pytest.mark.parametrize("use_ceilings", [True, False])
def test_time_bars_colour_each_step_by_its_bound(profile, ceilings, use_ceilings):
    figure = time_bars(profile, ceilings if use_ceilings else None, level="DRAM")
    ridge = ceilings.ridge_point("DRAM", 1)
    expected = {}
    for _, row in profile.iterrows():
        if row["flops"] == 0:
            kind = "n/a"
        elif use_ceilings:
            kind = "memory" if row["ai_DRAM"] < ridge else "compute"
        else:
            kind = row["bound"]
        expected[short_name(row["layer"])] = (kind, row["seconds"] * 1e3)
    got = {}
    for trace in figure.data:
        if not trace.meta.startswith("bound:"):         # the op markers at the bars' ends
            continue
        kind = trace.meta.removeprefix("bound:")
        assert trace.marker.color == BOUND_COLORS[kind]
        got.update({label: (kind, ms) for label, ms in zip(trace.y, trace.x)})
    assert got.keys() == expected.keys()
    for label, (kind, ms) in expected.items():
        assert got[label][0] == kind and got[label][1] == pytest.approx(ms)
    assert {kind for kind, _ in got.values()} == {"memory", "compute", "n/a"}
    assert list(figure.layout.yaxis.categoryarray) == [short_name(n) for n in profile["layer"]]


def _memory_bars(restyle_or_figure) -> int:
    """Bars in the memory-bound trace of time_bars (a figure, or a level button's restyle)."""
    if isinstance(restyle_or_figure, dict):
        return len(restyle_or_figure["y"][list(BOUND_COLORS).index("memory")])
    return len(traces_by_meta(restyle_or_figure)["bound:memory"].y)


def test_time_bars_level_buttons_recolour_the_bars_and_the_title_counts_them(profile, ceilings):
    figure = time_bars(profile, ceilings, level="L2")
    (menu,) = figure.layout.updatemenus
    assert [b.label for b in menu.buttons] == [f"bound at {level}" for level in LEVELS]
    counts = set()
    for level, button in zip(LEVELS, menu.buttons):
        restyle, relayout, indices = button.args
        assert list(indices) == [0, 1, 2]      # the bound traces only: the op markers stay
        fresh = time_bars(profile, ceilings, level=level)
        expected = int((bound_at(profile, ceilings, level) == "memory").sum())
        assert _memory_bars(restyle) == _memory_bars(fresh) == expected
        assert relayout["title.text"] == fresh.layout.title.text
        assert f"{expected} of {int((profile['flops'] > 0).sum())} steps memory bound" in fresh.layout.title.text
        counts.add(expected)
    assert len(counts) > 1          # the levels disagree, so a stale colouring would be caught


# ---------------------------------------------------------------------------- before / after

def arrows_by_name(figure) -> dict:
    return {a.name: a for a in figure.layout.annotations}


def test_compare_draws_one_arrow_per_matched_layer_from_old_to_new(ceilings):
    before = make_profile(threads=1, ceilings=ceilings)
    after = make_profile(threads=2, ceilings=ceilings)
    figure = before_after_figure(before, after, ceilings, level="L2", labels=("1 core", "2 cores"))
    arrows = arrows_by_name(figure)
    with_flops = before[before["flops"] > 0]
    assert sorted(arrows) == sorted(with_flops["layer"]) and len(figure.layout.annotations) == len(with_flops)
    for _, old in with_flops.iterrows():
        new = after[after["layer"] == old["layer"]].iloc[0]
        arrow = arrows[old["layer"]]
        assert (arrow.xref, arrow.yref, arrow.axref, arrow.ayref) == ("x", "y", "x", "y")
        assert (arrow.ax, arrow.ay) == pytest.approx((math.log10(old["ai_L2"]), math.log10(old["gflops"])))
        assert (arrow.x, arrow.y) == pytest.approx((math.log10(new["ai_L2"]), math.log10(new["gflops"])))
        assert arrow.y > arrow.ay        # 2 threads: the same work in less time, the arrow points up
    metas = [t.meta for t in figure.data]
    assert "roof:peak" in metas and "roof:peak:before" in metas    # both thread counts' roofs


def test_compare_matches_a_fused_block_to_its_members_combined_point(ceilings):
    before = make_profile(threads=1, fused=False, ceilings=ceilings)
    after = make_profile(threads=1, fused=True, ceilings=ceilings)
    arrows = arrows_by_name(before_after_figure(before, after, ceilings, level="L3", labels=("unfused", "fused")))
    assert BLOCK in arrows
    assert not {EXPAND, DEPTHWISE, PROJECT} & arrows.keys()          # members are inside the block's arrow
    assert len(arrows) == int((after["flops"] > 0).sum())
    members = before[before["layer"].isin([EXPAND, DEPTHWISE, PROJECT])]
    combined_ai = members["flops"].sum() / members["bytes_L3"].sum()
    combined_gflops = members["flops"].sum() / members["seconds"].sum() / 1e9
    block = after[after["layer"] == BLOCK].iloc[0]
    arrow = arrows[BLOCK]
    assert (arrow.ax, arrow.ay) == pytest.approx((math.log10(combined_ai), math.log10(combined_gflops)))
    assert (arrow.x, arrow.y) == pytest.approx((math.log10(block["ai_L3"]), math.log10(block["gflops"])))
    assert arrow.x > arrow.ax        # fusion keeps the intermediate in cache: the block moves right


def test_compare_markers_are_the_two_profiles_points(ceilings):
    before = make_profile(threads=1, ceilings=ceilings)
    after = make_profile(threads=1, ceilings=ceilings, speedup=2.0)
    figure = before_after_figure(before, after, ceilings, labels=("slow", "fast"))
    points = traces_by_meta(figure)
    for label, frame in (("slow", before), ("fast", after)):
        rows = frame[frame["flops"] > 0]
        assert sorted(points[f"points:{label}"].x) == pytest.approx(sorted(rows["ai_L2"]))
        assert sorted(points[f"points:{label}"].y) == pytest.approx(sorted(rows["gflops"]))
    assert "roof:peak:before" not in points        # same threads: one set of roofs


# ---------------------------------------------------------------------------- HTML

def test_figure_html_is_self_contained_with_plotly_js_inline(figures):
    from plotly.offline import get_plotlyjs_version

    page = figure_html(figures["L2"])
    assert page.lstrip().lower().startswith("<html") or page.lstrip().lower().startswith("<!doctype")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)      # nothing fetched
    assert "https://cdn.plot.ly/plotly" not in page
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, re.DOTALL)
    library = max(scripts, key=len)
    assert f"plotly.js v{get_plotlyjs_version()}" in library and len(library) > 1_000_000
    # the bundle itself names map-tile servers for geo plots we never draw; nothing else may
    assert "cdn" not in page.replace(library, "").lower()


# ---------------------------------------------------------------------------- bad input

def all_public_calls(profile, ceilings):
    return [
        lambda p, level="L2": roofline_figure(p, ceilings, level=level),
        lambda p, level="L2": roofline_traces(p, ceilings, level=level),
        lambda p, level="L2": time_bars(p, ceilings, level=level),
        lambda p, level="L2": before_after_figure(profile, p, ceilings, level=level),
        lambda p, level="L2": before_after_figure(p, profile, ceilings, level=level),
    ]


def test_unknown_level_is_refused_with_the_levels_listed(profile, ceilings):
    for call in all_public_calls(profile, ceilings):
        with pytest.raises(ValueError, match="'L4'.*L1, L2, L3, DRAM"):
            call(profile, level="L4")


def test_profile_missing_columns_is_refused_naming_them(profile, ceilings):
    broken = profile.drop(columns=["ai_L2", "gflops"])
    for call in all_public_calls(profile, ceilings):
        with pytest.raises(ValueError, match=r"\['gflops', 'ai_L2'\]"):
            call(broken)


def test_empty_profile_is_refused(profile, ceilings):
    for call in all_public_calls(profile, ceilings):
        with pytest.raises(ValueError, match="empty"):
            call(profile.iloc[:0])


def test_profile_mixing_thread_counts_is_refused(ceilings):
    mixed = pd.concat([make_profile(threads=1, ceilings=ceilings), make_profile(threads=2, ceilings=ceilings)])
    with pytest.raises(ValueError, match="mixes thread counts"):
        roofline_figure(mixed, ceilings)


def test_update_roofline_refuses_a_figure_it_did_not_make(profile, ceilings):
    with pytest.raises(ValueError, match="not those of roofline_figure"):
        update_roofline(time_bars(profile), profile, ceilings)


def test_update_roofline_fits_the_axes_to_the_profiles_an_overlay_draws_too(ceilings):
    profile = make_profile(ceilings=ceilings)
    overlay = make_profile(ceilings=ceilings, outlier_ai=5000.0)      # drawn by the figure's owner
    figure = go.Figure(roofline_figure(profile, ceilings, level="L2"))
    assert figure.layout.xaxis.range[1] < math.log10(5000.0)
    update_roofline(figure, profile, ceilings, level="L2", fit_also=[overlay])
    assert figure.layout.xaxis.range[1] > math.log10(5000.0)
    marker_x = [x for x, _, _ in marker_points(figure)]
    assert max(marker_x) < 1000                                     # the profile's own points are unchanged
