"""compare_models: seeded inputs from the graph's types and shapes, ORT with optimizations off, rel-L2 and max-abs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_graph_helpers import Builder

from edgedeploy.errors import UsageError
from edgedeploy.graph.verify import compare_models, random_inputs, tensor_errors, violations


def affine_model(scale=2.0, shape=("batch", 3, 4)):
    b = Builder()
    x = b.input("x", list(shape))
    y = b.node("Mul", [x, b.weight("s", np.array(scale))], name="mul")
    return b.model([y])


def test_identical_models_have_zero_error():
    m = affine_model()
    errors = compare_models(m, m)
    assert errors == {"mul_out": {"max_abs": 0.0, "rel_l2": 0.0, "ref_max_abs": errors["mul_out"]["ref_max_abs"]}}


def test_rel_l2_is_relative_to_the_reference_norm():
    ref, cand = affine_model(2.0), affine_model(2.02)
    e = compare_models(ref, cand)["mul_out"]
    assert e["rel_l2"] == pytest.approx(0.01, rel=1e-5)
    assert e["max_abs"] == pytest.approx(0.01 * e["ref_max_abs"], rel=1e-4)


def test_dynamic_dims_take_dynamic_dim_and_seed_is_reproducible():
    m = affine_model()
    feeds = random_inputs(m, seed=3, dynamic_dim=5)
    assert feeds["x"].shape == (5, 3, 4) and feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["x"], random_inputs(m, seed=3, dynamic_dim=5)["x"])


def test_real_inputs_are_used():
    ref, cand = affine_model(2.0), affine_model(3.0)
    zeros = {"x": np.zeros((1, 3, 4), np.float32)}
    assert compare_models(ref, cand, inputs=zeros, samples=0)["mul_out"]["max_abs"] == 0.0
    assert compare_models(ref, cand, inputs=[zeros], samples=1)["mul_out"]["max_abs"] > 0.0


def test_integer_and_bool_inputs_are_generated():
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])
    f = helper.make_tensor_value_info("flag", TensorProto.BOOL, [3])
    feeds = random_inputs(helper.make_model(helper.make_graph([], "g", [x, f], [])), dynamic_dim=4)
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].shape == (4,)
    assert feeds["flag"].dtype == np.bool_


def test_initializers_listed_as_inputs_are_not_fed():
    m = affine_model()
    m.graph.input.append(helper.make_tensor_value_info("s1", TensorProto.FLOAT, []))
    assert set(random_inputs(m)) == {"x"}
    assert compare_models(m, m)["mul_out"]["rel_l2"] == 0.0


def test_ort_graph_optimizations_are_disabled():
    # ORT would otherwise fuse Conv+BN itself at load time and hide a difference between two graphs.
    import onnxruntime as ort

    from edgedeploy.graph.verify import session

    sess = session(affine_model())
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def test_shape_mismatch_and_nan_handling():
    assert tensor_errors(np.zeros(3), np.zeros(4))["rel_l2"] == float("inf")
    a = np.array([1.0, np.nan, np.inf])
    assert tensor_errors(a, a.copy()) == {"max_abs": 0.0, "rel_l2": 0.0, "ref_max_abs": 1.0}
    assert tensor_errors(a, np.array([1.0, 0.0, np.inf]))["max_abs"] == float("inf")


def test_violations_scale_max_abs_by_the_reference():
    errs = {"y": {"max_abs": 5e-3, "rel_l2": 1e-7, "ref_max_abs": 100.0}}
    assert violations(errs, 1e-5, 1e-4) == []
    assert violations(errs, 1e-5, 1e-5)  # guard 1e-3 < 5e-3
    assert violations(errs, 1e-8)  # rel-L2 over


def test_input_without_shape_asks_for_real_inputs():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    m = helper.make_model(helper.make_graph([], "g", [x], []))
    with pytest.raises(UsageError, match="real inputs"):
        random_inputs(m)


def test_fp16_model_runs():
    b = Builder(dtype=np.float16)
    x = b.input("x", [2, 3])
    m = b.model([b.node("Mul", [x, b.weight("s", np.array(2.0))])])
    assert compare_models(m, m)[m.graph.output[0].name]["rel_l2"] == 0.0
    assert numpy_helper.to_array(m.graph.initializer[0]).dtype == np.float16
    onnx.checker.check_model(m)
