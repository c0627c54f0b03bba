"""`--static-batch N`: the build stage builds a static-shape artifact (ONNX with a fixed leading dimension, an
OpenVINO IR reshaped to it), validated and timed at that batch, the last partial chunk of samples padded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgedeploy import pipeline
from edgedeploy.config import ModelSource
from edgedeploy.errors import UsageError
from edgedeploy.static_batch import static_onnx

from precision_helpers import built, demo_spec, quick


def _dims(value_info) -> list:
    return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.slow  # a session-cached int8 build of the demo
def test_static_onnx_fixes_the_leading_dimension(tmp_path):
    raw = built("onnxruntime", "int8")[0] / "deploy.onnx"
    model = onnx.load(str(static_onnx(raw, tmp_path / "static.onnx", 4)))
    assert _dims(model.graph.input[0]) == [4, 3, 64, 64] and _dims(model.graph.output[0])[0] == 4
    with pytest.raises(UsageError, match="no dynamic leading dimension"):
        static_onnx(tmp_path / "static.onnx", tmp_path / "again.onnx", 4)


def test_a_fixed_leading_dimension_that_is_not_the_batch_stays(tmp_path):
    """An input whose first dim is a fixed size (anchors [100, 4]) keeps it, in the ONNX graph and the OpenVINO IR."""
    import openvino as ov
    from onnx import TensorProto, helper

    from edgedeploy.static_batch import static_ir

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("ReduceSum", ["anchors"], ["t"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
              helper.make_tensor_value_info("anchors", TensorProto.FLOAT, [100, 4])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 1])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = onnx.load(str(static_onnx(path, tmp_path / "static.onnx", 8)))
    assert [_dims(v) for v in model.graph.input] == [[8, 4], [100, 4]]
    assert _dims(model.graph.output[1]) == [1, 1]
    ov.save_model(ov.convert_model(str(path)), str(tmp_path / "m.xml"))
    reshaped = ov.Core().read_model(str(static_ir(tmp_path / "m.xml", tmp_path / "ir", 8)))
    assert [list(p.get_partial_shape().to_shape()) for p in reshaped.inputs] == [[8, 4], [100, 4]]


def test_a_minus_one_batch_is_fixed_and_a_named_count_output_stays_dynamic(tmp_path):
    """Paddle/tf2onnx write the batch as dim_value -1: it is dynamic (edgedeploy.shapes) and gets the static batch; an
    output whose leading dim is another name (a detection count) is not the batch and stays as it is."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("NonZero", ["x"], ["nz"]),
         helper.make_node("Transpose", ["nz"], ["boxes"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4]),
         helper.make_tensor_value_info("boxes", TensorProto.INT64, ["count", 2])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    model = onnx.load(str(static_onnx(path, tmp_path / "static.onnx", 8)))
    assert _dims(model.graph.input[0]) == [8, 4] and _dims(model.graph.output[0]) == [8, 4]
    assert _dims(model.graph.output[1])[0] != 8


@pytest.mark.slow
@pytest.mark.parametrize("target, precision", [("openvino", "int8"), ("onnxruntime", "int8")])
def test_static_batch_build_validates_and_times_at_that_batch(target, precision, tmp_path):
    raw = built("onnxruntime", "int8")[0] / "raw.onnx"
    spec = quick(demo_spec(), target=target, precision=precision, static_batch=8,
                 model=ModelSource(onnx=raw))
    report = pipeline.build(spec, tmp_path / "out")
    assert report["passed"], report["checks"]  # 300 samples: 37 batches of 8 and a padded one of 4
    assert [t["batch"] for t in report["latency"]] == [8]
    assert report["latency_measurement"]["int8_vs_float"][0]["batch"] == 8  # compared with a static float graph
    if target == "openvino":
        import openvino as ov

        shape = ov.Core().read_model(str(tmp_path / "out" / "openvino" / "model.xml")).inputs[0].get_partial_shape()
        assert shape.is_static and list(shape.to_shape()) == [8, 3, 64, 64]
    else:
        model = onnx.load(str(tmp_path / "out" / "onnxruntime" / "model.onnx"))
        assert _dims(model.graph.input[0]) == [8, 3, 64, 64]


def test_static_batch_is_refused_for_tensorrt_naming_the_profile_to_set():
    spec = demo_spec().model_copy(update={"target": "trt", "static_batch": 2})
    with pytest.raises(UsageError, match="optimization profile") as e:  # before the TensorRT SDK is looked for
        pipeline.check_request(spec)
    assert "tensorrt.profiles: {batch: {min: 2, opt: 2, max: 2}}" in e.value.message


def test_padded_run_drops_the_padding():
    from edgedeploy.validate.evaluate import run_all

    class Fixed:
        input_names, output_names = ["x"], ["y"]

        def run(self, feeds):
            assert len(feeds["x"]) == 4
            return {"y": feeds["x"] * 2}

    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    np.testing.assert_array_equal(run_all(Fixed(), {"x": x}, 4, static=True)["y"], x * 2)


def test_batch1_copy_of_a_dynamic_ir_and_onnx_and_none_for_a_static_one(tmp_path):
    """The batch-1 copy a default OpenVINO build writes beside its dynamic artifact: same outputs at batch 1."""
    import openvino as ov
    import onnxruntime as ort

    import yolo_graphs
    from edgedeploy.static_batch import batch1_copy

    model, _ = yolo_graphs.v8()
    src = tmp_path / "model.onnx"
    onnx.save(model, str(src))
    ov.save_model(ov.convert_model(str(src)), str(tmp_path / "model.xml"))
    x = np.random.default_rng(0).random((1, 3, yolo_graphs.SIZE, yolo_graphs.SIZE), dtype=np.float32)
    xml = batch1_copy(tmp_path / "model.xml", tmp_path / "ir1")
    core = ov.Core()
    assert core.read_model(str(xml)).inputs[0].get_partial_shape().is_static
    np.testing.assert_allclose(core.compile_model(str(xml), "CPU")(x)[0],
                               core.compile_model(str(tmp_path / "model.xml"), "CPU")(x)[0], rtol=1e-5, atol=1e-4)
    copy = batch1_copy(src, tmp_path / "onnx1")
    assert _dims(onnx.load(str(copy)).graph.input[0])[0] == 1
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
           for p in (src, copy)}
    np.testing.assert_allclose(run[src], run[copy], rtol=1e-6, atol=1e-6)
    assert batch1_copy(copy, tmp_path / "again") is None  # static already: nothing to copy
