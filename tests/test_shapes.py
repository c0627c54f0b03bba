"""Every dim that is not a positive integer (-1, 0, '?', empty, a name) is dynamic: shape resolution, I/O checks,
OpenVINO's input shapes and TensorRT's profiles all agree."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgedeploy.backends import trt_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import UsageError
from edgedeploy.shapes import dim_of, input_dims, load_input_arrays, parse_input_shape, resolve_shapes


def model_with(dims: list, name: str = "x", extra: list | None = None) -> onnx.ModelProto:
    """Relu over one input whose dims are written as given: ints become dim_value (even -1 / 0), strings dim_param,
    None an empty dimension."""
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, [1] * len(dims))
    for d, want in zip(x.type.tensor_type.shape.dim, dims):
        d.Clear()
        if isinstance(want, int):
            d.dim_value = want
        elif isinstance(want, str):
            d.dim_param = want
    inputs = [x] + [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (extra or [])]
    nodes = [helper.make_node("Relu", [i.name], [f"{i.name}_y"]) for i in inputs]
    outputs = [helper.make_tensor_value_info(f"{i.name}_y", TensorProto.FLOAT, None) for i in inputs]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)])


def test_every_non_positive_dim_is_dynamic():
    m = model_with([-1, 0, "?", None, "h", 7])
    assert input_dims(m.graph.input[0]) == [None, None, None, None, "h", 7]
    assert [dim_of(d) for d in m.graph.input[0].type.tensor_type.shape.dim][-1] == 7


def test_resolve_shapes_takes_given_then_real_then_chosen_sizes():
    m = model_with([-1, 3, "?", "w"], extra=[("y", ["batch2", "w"])])
    chosen = resolve_shapes(m, size=64)
    assert chosen.shapes == {"x": (2, 3, 64, 64), "y": (2, 64)}  # "w" is one size across inputs
    assert "axis 2 = 64 (chosen)" in chosen.sources["x"] and chosen.chosen
    given = resolve_shapes(m, {"x": (1, 3, 48, 192)})
    assert given.shapes == {"x": (1, 3, 48, 192), "y": (2, 192)} and "x" not in given.chosen
    real = resolve_shapes(m, examples={"x": np.zeros((8, 3, 32, 100), np.float32)})
    assert real.shapes["x"] == (2, 3, 32, 100)  # real inputs give every dim but the batch
    assert real.shapes["y"] == (2, 100)


def test_a_given_shape_must_fit_the_model():
    m = model_with([-1, 3, "?", "?"])
    with pytest.raises(UsageError, match="axis 1 is static"):
        resolve_shapes(m, {"x": (1, 4, 8, 8)})
    with pytest.raises(UsageError, match="rank 4"):
        resolve_shapes(m, {"x": (1, 3, 8)})
    with pytest.raises(UsageError, match="not an input"):
        resolve_shapes(m, {"images": (1, 3, 8, 8)})


@pytest.mark.parametrize("text", ["x", "x:", "x:1x3xx4", "x:1x0x4", ":1x2", "x:1,3"])
def test_bad_input_shape_flags(text):
    with pytest.raises(UsageError, match="--input-shape"):
        parse_input_shape(text)


def test_input_shape_flag():
    assert parse_input_shape("x:1x3x48x192") == ("x", (1, 3, 48, 192))
    assert parse_input_shape("ns:images:2x3") == ("ns:images", (2, 3))  # the last colon separates the shape


def test_input_arrays_from_npz(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((20, 3), np.float32), **{"input.y": np.ones((2, 3))})
    arrays = load_input_arrays(tmp_path / "a.npz")
    assert set(arrays) == {"x", "y"} and arrays["x"].shape == (8, 3)
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UsageError, match="holds Python objects"):
        load_input_arrays(tmp_path / "bad.npz")
    with pytest.raises(UsageError, match="not found"):
        load_input_arrays(tmp_path / "missing.npz")


def test_check_io_accepts_minus_one_and_question_mark_dims(demo_spec):
    from edgedeploy.onnx_checks import check_io

    m = model_with([-1, 3, "?", 0], name="images")
    m.graph.output[0].name = "pred"
    m.graph.node[0].output[0] = "pred"
    check_io(m, demo_spec, "m.onnx")  # [batch, 3, 64, 64] fits every dynamic dim
    bad = model_with([-1, 4, "?", 0], name="images")
    with pytest.raises(UsageError, match=r"\[\?, 4, \?, \?\]"):
        check_io(bad, demo_spec, "m.onnx")


def test_tensorrt_profiles_see_every_anonymous_dim_as_its_own():
    m = model_with([-1, 3, "?", 0])
    info = trt_plan.inputs_from_onnx(m)[0]
    assert info.shape == ("x.0", 3, "x.2", "x.3")  # '?' twice is two dimensions, not one named '?'
    with pytest.raises(UsageError, match="'x.2'.*needs a profile"):
        trt_plan.plan_profiles([info], TensorRTSettings())
    settings = TensorRTSettings(profiles={"x.2": {"min": 32, "opt": 48, "max": 64},
                                          "x.3": {"min": 64, "opt": 192, "max": 320}})
    profiles, _ = trt_plan.plan_profiles([info], settings)
    assert profiles[0].opt == (1, 3, 48, 192)


def test_openvino_reads_zero_dims_as_dynamic(tmp_path):
    from edgedeploy.backends.openvino import OpenVINOBackend, convert_onnx

    path = tmp_path / "m.onnx"
    onnx.save(model_with([0, 3, "?", 5]), str(path))
    model = convert_onnx(path)
    assert str(model.inputs[0].get_partial_shape()) == "[?,3,?,5]"  # the ONNX frontend alone gives [0,3,?,5]
    built = OpenVINOBackend().build(path, tmp_path / "ov", "fp32")
    runner = OpenVINOBackend().load(built)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(runner.run({"x": x})["x_y"], np.maximum(x, 0))
