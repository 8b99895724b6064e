"""Every bad input to load() and run() raises the documented error with a message that
says what was wrong."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import engine
from conftest import assert_close_to_reference, ort_session
from engine.zoo import mobilenet_v2


def _conv_model(*, input_dims=("N", 3, 8, 8), weight_dtype=np.float32, input_type=TensorProto.FLOAT,
                extra_nodes=(), op_type="Conv", opset=13, domain=""):
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), weight_dtype), "w")
    nodes = [helper.make_node(op_type, ["x", "w"], ["y"], name="conv0", pads=[1, 1, 1, 1], domain=domain),
             *extra_nodes]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, list(input_dims))],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(engine.ModelError, match="not found.*nope.onnx"):
        engine.load(tmp_path / "nope.onnx")


def test_a_file_that_is_not_onnx_is_rejected(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\xff this is not a protobuf \x12\x34" * 10)
    with pytest.raises(engine.ModelError, match="not an ONNX model"):
        engine.load(path)


def test_empty_and_truncated_bytes_are_rejected(mobilenet_proto):
    with pytest.raises(engine.ModelError, match="empty"):
        engine.load(b"")
    data = mobilenet_proto.SerializeToString()
    with pytest.raises(engine.ModelError):
        engine.load(data[: len(data) // 3])


def test_wrong_source_type_is_rejected():
    with pytest.raises(engine.ModelError, match="path, bytes or onnx.ModelProto"):
        engine.load(12345)


def test_unsupported_operator_names_node_op_and_supported_ops():
    tanh = helper.make_node("Tanh", ["y"], ["z"], name="my_tanh")
    with pytest.raises(engine.UnsupportedOperatorError) as info:
        engine.load(_conv_model(extra_nodes=[tanh]))
    message = str(info.value)
    assert "my_tanh" in message and "'Tanh'" in message and "Conv" in message and "Sigmoid" in message
    assert info.value.op_type == "Tanh" and info.value.node_name == "my_tanh"
    assert isinstance(info.value, engine.ModelError)


def test_custom_domain_is_rejected():
    with pytest.raises(engine.UnsupportedOperatorError, match="custom domain"):
        engine.load(_conv_model(domain="com.example"))


def test_float16_weights_are_rejected():
    with pytest.raises(engine.ModelError, match="float16.*only float32"):
        engine.load(_conv_model(weight_dtype=np.float16))


def test_non_float_input_is_rejected():
    with pytest.raises(engine.ModelError, match="graph input 'x' is .*only float32"):
        engine.load(_conv_model(input_type=TensorProto.DOUBLE))


def test_dynamic_spatial_dimension_is_rejected():
    with pytest.raises(engine.ModelError, match="dimension H is dynamic"):
        engine.load(_conv_model(input_dims=("N", 3, "height", 8)))


def test_shapes_that_do_not_fit_together_are_rejected():
    # weights for 3 input channels fed with a 5-channel input
    with pytest.raises(engine.ModelError, match="does not fit an input of 5 channels"):
        engine.load(_conv_model(input_dims=("N", 5, 8, 8)))


def test_kernel_larger_than_padded_input_is_rejected():
    with pytest.raises(engine.ModelError, match="does not fit the padded input"):
        engine.load(_tiny_kernel_model())


def _tiny_kernel_model():
    weight = numpy_helper.from_array(np.ones((2, 3, 5, 5), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="big_kernel")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_dangling_edge_is_rejected():
    relu = helper.make_node("Relu", ["does_not_exist"], ["z"], name="orphan")
    with pytest.raises(engine.ModelError, match="does_not_exist.*not produced"):
        engine.load(_conv_model(extra_nodes=[relu]))


def test_unsupported_opset_is_rejected():
    with pytest.raises(engine.ModelError, match="opset 3 is not supported"):
        engine.load(_conv_model(opset=3))


def test_grouped_conv_names_the_limitation():
    weight = numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="grouped", group=2)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    with pytest.raises(engine.UnsupportedOperatorError, match="grouped.*group=2"):
        engine.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


# ---------------------------------------------------------------- run-time arguments

@pytest.fixture(scope="module")
def small_model():
    return engine.load(mobilenet_v2(resolution=64, num_classes=10))


@pytest.mark.parametrize("x,match", [
    (np.zeros((3, 64, 64), np.float32), "rank 4"),
    (np.zeros((1, 4, 64, 64), np.float32), "C = 4.*expects C = 3"),
    (np.zeros((1, 3, 65, 64), np.float32), "H = 65.*expects H = 64"),
    (np.zeros((1, 3, 64, 32), np.float32), "W = 32.*expects W = 64"),
    (np.zeros((1, 3, 64, 64), np.float64), "float32, got float64"),
    (np.zeros((0, 3, 64, 64), np.float32), "at least one image"),
    ([[1.0]], "numpy.ndarray"),
])
def test_bad_inputs_name_expected_and_got(small_model, x, match):
    with pytest.raises(ValueError, match=match):
        small_model.run(x)


@pytest.mark.parametrize("threads", [0, -1, 10_000, 1.5, "2", True])
def test_bad_thread_counts_are_rejected(small_model, threads):
    with pytest.raises(ValueError, match="threads must be an int in 1.."):
        small_model.run(np.zeros((1, 3, 64, 64), np.float32), threads=threads)


@pytest.mark.parametrize("field,value", [("pointwise_pixels", 0), ("pointwise_channels", 20),
                                         ("pointwise_channels", 8192), ("depthwise_rows", -3),
                                         ("block_rows", 2000), ("depthwise_rows", 2.5)])
def test_bad_tiles_name_the_field_and_range(field, value):
    with pytest.raises(ValueError, match=f"Tiles.{field} must be"):
        engine.Tiles(**{field: value})


def test_tiles_must_be_a_tiles_object(small_model):
    with pytest.raises(ValueError, match="engine.Tiles"):
        small_model.run(np.zeros((1, 3, 64, 64), np.float32), tiles={"pointwise_pixels": 4})


def test_a_failed_run_leaves_the_model_usable(small_model):
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    before = small_model.run(x)
    with pytest.raises(ValueError):
        small_model.run(x[:, :2])
    np.testing.assert_array_equal(small_model.run(x), before)


# ---------------------------------------------------------------- external data
# model.onnx + model.onnx.data, as torch.onnx.export(..., dynamo=True) writes it. ONNX Runtime
# refuses what the engine refuses (checked: the refusals are not gaps of the engine's own) and
# loads bytes whose data file is in the working directory, as the engine does.

def _ort_refuses(source) -> bool:
    import onnxruntime as ort      # here, as in conftest: only these tests need it

    try:
        ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001  (ORT raises its own Fail/InvalidArgument types)
        return True
    return False


@pytest.fixture
def external_model(tmp_path):
    """A small MobileNetV2 saved as models/model.onnx + models/model.onnx.data; the working
    directory is another folder, tmp_path/elsewhere."""
    from engine.zoo import save_model

    return save_model(mobilenet_v2(resolution=32, num_classes=10, opset=18), tmp_path / "models" / "model.onnx",
                      external_data=True)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "elsewhere"


def test_a_missing_data_file_is_named_with_the_folder_it_was_looked_for_in(external_model, elsewhere):
    (external_model.parent / "model.onnx.data").unlink()
    expected = str(external_model.parent / "model.onnx.data")
    with pytest.raises(engine.ModelError, match=f"external file 'model.onnx.data'.*{expected}"):
        engine.load("../models/model.onnx")
    assert _ort_refuses(str(external_model))


def test_a_data_file_in_the_working_directory_is_not_used_for_a_model_elsewhere(external_model, elsewhere):
    (external_model.parent / "model.onnx.data").rename(elsewhere / "model.onnx.data")
    with pytest.raises(engine.ModelError, match="external file 'model.onnx.data'.*models"):
        engine.load(external_model)


def test_bytes_with_external_data_not_in_the_working_directory_are_refused_naming_the_file(external_model, elsewhere):
    data = external_model.read_bytes()
    expected = str(elsewhere / "model.onnx.data")
    with pytest.raises(engine.ModelError, match=f"of the given bytes keeps its data in the external file "
                                                f"'model.onnx.data'.*working directory.*{expected}.*load the model "
                                                "from its path"):
        engine.load(data)
    assert _ort_refuses(data)


def test_a_model_proto_with_unresolved_external_data_is_refused_naming_the_file(external_model, elsewhere):
    proto = onnx.load(str(external_model), load_external_data=False)
    before = proto.SerializeToString()
    with pytest.raises(engine.ModelError, match="of the given onnx.ModelProto keeps its data in the external file "
                                                "'model.onnx.data'.*working directory.*onnx.load"):
        engine.load(proto)
    assert proto.SerializeToString() == before         # not modified
    assert _ort_refuses(before)
    assert engine.load(onnx.load(str(external_model))).output_shape == (10,)   # resolved by onnx.load: loads


@pytest.mark.parametrize("given", ["bytes", "proto"])
def test_bytes_or_a_proto_whose_data_file_is_in_the_working_directory_load_as_onnxruntime_does(
        external_model, elsewhere, given):
    (external_model.parent / "model.onnx.data").rename(elsewhere / "model.onnx.data")
    data = external_model.read_bytes()
    proto = onnx.load(str(external_model), load_external_data=False)
    model = engine.load(data if given == "bytes" else proto)
    assert proto.SerializeToString() == data            # the given proto is not modified
    session = ort_session(proto)                        # ONNX Runtime loads these bytes from here too
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    assert_close_to_reference(model.run(x), session.run(None, {"input": x})[0])


@pytest.mark.parametrize("key,value,match", [
    ("location", "../escape.data", "points outside the directory"),
    ("location", "/tmp/model.onnx.data", "should be a relative path"),
    ("offset", str(2 ** 40), "exceeds file size"),
    ("offset", "-1", "must be non-negative"),
    ("length", str(2 ** 40), "exceeds available data"),
])
def test_external_data_outside_the_folder_or_past_its_file_is_refused(external_model, elsewhere, key, value, match):
    proto = onnx.load(str(external_model), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == key:
            entry.value = value
    (elsewhere.parent / "escape.data").write_bytes((external_model.parent / "model.onnx.data").read_bytes())
    external_model.write_bytes(proto.SerializeToString())
    with pytest.raises(engine.ModelError, match=f"initializer '{proto.graph.initializer[0].name}' keeps its data in "
                                                f"the external file .*{match}"):
        engine.load(external_model)
    assert _ort_refuses(str(external_model))
