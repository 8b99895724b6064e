"""workbench.compare: our engine and ONNX Runtime timed in one run with the stated cost
arithmetic; ORT's profiler parsed and every Conv of the model mapped onto one of our layers
with our FLOPs and bytes; what cannot be mapped reported with its time; a missing runtime is
a note, not an error; every row runs fp32 and says so from what its runtime reports
(OpenVINO's bf16 default on CPUs with AVX512_BF16 or AMX pinned to f32)."""
from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

import engine
from conftest import hand_made_ceilings
import workbench
from workbench.compare import (DEFAULT_PRICE_PER_CORE_HOUR, ORT_BF16_FASTMATH, LayerMap, compare,
                               cost_per_million_inferences, onnxruntime_precision, openvino_config,
                               openvino_node_precisions, openvino_precision, ort_node_profile, parse_ort_profile,
                               precision_name)
from workbench.profile import profile as engine_profile

pytest.importorskip("onnxruntime")

THREADS = min(2, engine.available_cores())
BATCH = 2


@pytest.fixture(scope="module")
def ceilings():
    return hand_made_ceilings()


@pytest.fixture(scope="module")
def result(model_path, ceilings):
    return compare(model_path, batch=BATCH, threads=THREADS, repeats=3, ceilings=ceilings)


def test_engine_and_onnxruntime_are_timed_with_positive_numbers_and_the_stated_cost(result):
    table = result.table.set_index("engine")
    assert {"engine", "onnxruntime"} <= set(table.index)
    for name in ("engine", "onnxruntime"):
        row = table.loc[name]
        assert row["seconds"] > 0 and row["seconds_min"] <= row["seconds"] and row["repeats"] == 3
        assert row["batch"] == BATCH and row["threads"] == row["cores"] == THREADS
        assert row["images_per_second"] == pytest.approx(BATCH / row["seconds"])
        assert row["images_per_second_per_core"] == pytest.approx(BATCH / row["seconds"] / THREADS)
        assert row["cost_per_million_inferences"] == pytest.approx(
            1e6 / row["images_per_second"] / 3600 * THREADS * DEFAULT_PRICE_PER_CORE_HOUR)
    assert result.price_per_core_hour == DEFAULT_PRICE_PER_CORE_HOUR == 0.05


def test_cost_per_million_inferences_is_core_hours_times_price():
    # 1e6 images at 1000 images/s = 1000 s on 2 cores = 2000/3600 core-hours, at 0.05 per core-hour
    assert cost_per_million_inferences(1000.0, 2, 0.05) == pytest.approx(2000 / 3600 * 0.05)
    assert cost_per_million_inferences(1000.0, 2, 0.10) == pytest.approx(2 * cost_per_million_inferences(1000.0, 2, 0.05))


def test_ort_profile_maps_every_conv_of_the_model_onto_exactly_one_of_our_layers(result, model_path):
    model = engine.load(model_path)
    nodes = result.ort_nodes
    convs = nodes[nodes["ort_op"].str.contains("Conv")]
    assert convs["mapped"].all(), convs[~convs["mapped"]]["ort_node"].tolist()
    our_convs = [layer.name for layer in model.layers if layer.op == "Conv"]
    assert sorted(convs["layer"]) == sorted(our_convs)             # each of ours once
    assert not convs["ort_node"].str.contains(" + ", regex=False).any()   # by one ORT node each
    # mapped rows carry our FLOPs and modelled bytes for that layer, and ORT's time
    steps = {step.name: step for step in model.plan(BATCH, THREADS, fuse_blocks=False).steps}
    for row in nodes[nodes["mapped"] & (nodes["flops"] > 0)].itertuples():
        step = steps[row.layer]
        assert row.flops == step.flops and row.op == step.op
        assert row.bytes_L2 == step.bytes["L2"]
        assert row.gflops == pytest.approx(row.flops / row.seconds / 1e9)
    assert (nodes["seconds"] > 0).all() and (nodes["engine"] == "onnxruntime").all()
    assert nodes["share_of_time"].sum() == pytest.approx(1.0)


def test_what_cannot_be_mapped_is_only_orts_layout_reorders_and_is_reported_with_its_time(result):
    unmapped = result.unmapped
    assert unmapped["ort_op"].str.startswith("Reorder").all()
    assert (unmapped["seconds"] > 0).all()
    rows = result.ort_nodes[~result.ort_nodes["mapped"]]
    assert (rows["op"] == "layout").all() and (rows["flops"] == 0).all()
    if len(unmapped):
        assert any("match none of our layers" in note for note in result.notes)


def test_ort_nodes_plot_on_the_roofline_and_next_to_our_steps(result, ceilings):
    figure = workbench.roofline_figure(result.ort_nodes, ceilings)
    points = sum(len(trace.x) for trace in figure.data if str(trace.meta).startswith("ops:"))
    plotted = result.ort_nodes[(result.ort_nodes["flops"] > 0)]
    assert points == len(plotted)
    both = result.figure(ceilings)
    ours = set(result.engine_profile[result.engine_profile["flops"] > 0]["layer"])
    assert len(both.layout.annotations) == len(ours & set(plotted["layer"]))   # one arrow per shared layer


def test_a_missing_openvino_or_onnxruntime_is_a_note_not_an_error(model_path, ceilings, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)          # import openvino -> ImportError
    without_openvino = compare(model_path, batch=1, threads=1, repeats=1, ceilings=ceilings)
    assert "openvino" not in set(without_openvino.table["engine"])
    assert any("openvino is not installed" in note for note in without_openvino.notes)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    only_ours = compare(model_path, batch=1, threads=1, repeats=1, ceilings=ceilings)
    assert list(only_ours.table["engine"]) == ["engine"] and only_ours.ort_nodes.empty
    assert any("onnxruntime is not installed" in note for note in only_ours.notes)


def test_parse_ort_profile_keeps_kernel_times_and_takes_the_median_over_runs(tmp_path, model_path, ceilings):
    model = engine.load(model_path)
    conv = model.layers[0]                 # stem: Conv + Clip, ORT names it after the Clip's output
    clip_output = conv.output
    events = [{"cat": "Session", "name": "model_run", "dur": 900}]
    for run, (conv_us, reorder_us) in enumerate([(100, 7), (300, 9), (200, 8)]):
        events += [
            {"cat": "Node", "name": f"{clip_output}_nchwc_fence_before", "dur": 0, "args": {"op_name": "Conv"}},
            {"cat": "Node", "name": f"{clip_output}_nchwc_kernel_time", "dur": conv_us,
             "args": {"op_name": "Conv", "input_type_shape": [{"float": [2, 3, 64, 64]}],
                      "output_type_shape": [{"float": [2, 32, 32, 32]}]}},
            {"cat": "Node", "name": "ReorderInput_kernel_time", "dur": reorder_us, "args": {"op_name": "ReorderInput"}},
        ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    raw, run_seconds = parse_ort_profile(path)
    assert len(raw) == 6 and run_seconds == [900e-6]
    assert list(raw["run"]) == [0, 0, 1, 1, 2, 2]
    assert raw["input_shape"].iloc[0] == (2, 3, 64, 64)
    assert LayerMap(model).layer_of(f"{clip_output}_nchwc") == conv.name
    frame = ort_node_profile(raw, model, batch=2, threads=1, ceilings=ceilings)
    stem = frame.set_index("layer").loc[conv.name]
    assert stem["seconds"] == pytest.approx(200e-6) and stem["mapped"]
    assert stem["flops"] == next(s.flops for s in model.plan(2, 1, fuse_blocks=False).steps if s.name == conv.name)
    reorder = frame[~frame["mapped"]].iloc[0]
    assert reorder["op"] == "layout" and reorder["seconds"] == pytest.approx(8e-6)
    # the same columns as one of our own profiles
    ours = engine_profile(model, batch=2, threads=1, repeats=1, ceilings=ceilings)
    assert set(ours.columns) - set(engine.Tiles().as_dict()) <= set(frame.columns)


@pytest.mark.parametrize("kwargs,match", [(dict(price_per_core_hour=0), "price_per_core_hour"),
                                          (dict(price_per_core_hour=-1.0), "price_per_core_hour"),
                                          (dict(batch=0), "batch"), (dict(threads=99), "threads"),
                                          (dict(repeats=0), "repeats")])
def test_bad_arguments_are_refused(model_path, ceilings, kwargs, match):
    with pytest.raises(ValueError, match=match):
        compare(model_path, ceilings=ceilings, **kwargs)


def test_a_missing_model_file_is_refused(tmp_path, ceilings):
    with pytest.raises(ValueError, match="not found"):
        compare(tmp_path / "missing.onnx", ceilings=ceilings)


# ---------------------------------------------------------------------------- precision

def test_every_row_of_the_table_says_the_precision_it_ran_and_all_ran_fp32(result):
    table = result.table.set_index("engine")
    expected = {"engine", "onnxruntime"} | ({"openvino"} if importlib.util.find_spec("openvino") else set())
    assert expected <= set(table.index), result.notes      # an installed OpenVINO that failed is a failure here
    assert table["precision"].notna().all() and (table["precision"] == "fp32").all(), table["precision"]
    assert table["precision_source"].str.len().gt(0).all()
    assert "CPUExecutionProvider only" in table.loc["onnxruntime", "precision_source"]


def _fake_openvino(honours_precision_hint: bool):
    """An `openvino` module whose CPU plugin records compile_model's config and, like the real
    one on an AVX512_BF16/AMX CPU, runs bf16 unless told f32; with honours_precision_hint
    False it runs bf16 whatever it is told (so a row labelled from the request, not the
    read-back, would be caught)."""
    compiled_configs = []

    class Compiled:
        def __init__(self, config):
            asked = config.get("INFERENCE_PRECISION_HINT", "bf16")
            self.precision = asked if honours_precision_hint else "bf16"

        def get_property(self, name):
            assert name == "INFERENCE_PRECISION_HINT", name
            return self.precision

        def get_runtime_model(self):
            node = types.SimpleNamespace(get_rt_info=lambda: {"runtimePrecision": self.precision})
            return types.SimpleNamespace(get_ops=lambda: [node, node])

        def create_infer_request(self):
            return types.SimpleNamespace(infer=lambda feed: None)

    class Core:
        def read_model(self, path):
            return types.SimpleNamespace(reshape=lambda shape: None)

        def compile_model(self, network, device, config=None):
            compiled_configs.append((device, dict(config or {})))
            return Compiled(config or {})

    module = types.ModuleType("openvino")
    module.Core = Core
    module.__version__ = "0.0-fake"
    return module, compiled_configs


@pytest.mark.parametrize("honours_precision_hint,precision", [(True, "fp32"), (False, "bf16")])
def test_openvino_is_compiled_with_f32_pinned_and_its_row_says_what_it_read_back(
        model_path, ceilings, monkeypatch, honours_precision_hint, precision):
    fake, compiled_configs = _fake_openvino(honours_precision_hint)
    monkeypatch.setitem(sys.modules, "openvino", fake)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)        # not needed here: keeps the test short
    result = compare(model_path, batch=1, threads=1, repeats=1, ceilings=ceilings)
    assert len(compiled_configs) == 1
    device, config = compiled_configs[0]
    assert device == "CPU" and config["INFERENCE_PRECISION_HINT"] == "f32"
    assert config["INFERENCE_NUM_THREADS"] == "1"
    row = result.table.set_index("engine").loc["openvino"]
    assert row["precision"] == precision
    openvino_notes = [note for note in result.notes if note.startswith("openvino")]
    if precision == "fp32":
        assert openvino_notes == []
    else:      # a plugin that ignores the hint is labelled with what it ran, and said out loud
        assert any("ran bf16" in note for note in openvino_notes)
        assert any("2 bf16" in note for note in openvino_notes)


def test_real_openvino_runs_f32_when_pinned_and_its_default_precision_is_told_apart(model_path):
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    pinned = core.compile_model(str(model_path), "CPU", openvino_config(1))
    assert openvino_precision(pinned) == "fp32"
    nodes = openvino_node_precisions(pinned)
    assert nodes.get("f32", 0) > 0 and not {"bf16", "f16"} & set(nodes), nodes
    # the plugin's own default (bf16 on CPUs with AVX512_BF16 or AMX): read back as such
    default = precision_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    unpinned = core.compile_model(str(model_path), "CPU", openvino_config(1, inference_precision=None))
    assert "INFERENCE_PRECISION_HINT" not in openvino_config(1, inference_precision=None)
    assert openvino_precision(unpinned) == default
    if default == "bf16":
        assert openvino_node_precisions(unpinned).get("bf16", 0) > 0


def test_onnxruntime_precision_is_read_from_the_session_providers_and_fastmath_setting(model_path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert onnxruntime_precision(session) == "fp32"      # the entry unset: ORT's default, off

    def fake_session(providers, fastmath):
        options = types.SimpleNamespace(get_session_config_entry=lambda key: {ORT_BF16_FASTMATH: fastmath}[key])
        return types.SimpleNamespace(get_providers=lambda: providers, get_session_options=lambda: options)

    assert onnxruntime_precision(fake_session(["CPUExecutionProvider"], "0")) == "fp32"
    assert onnxruntime_precision(fake_session(["CPUExecutionProvider"], "1")) == "bf16"
    with pytest.raises(ValueError, match="CPUExecutionProvider"):
        onnxruntime_precision(fake_session(["CUDAExecutionProvider", "CPUExecutionProvider"], "0"))
