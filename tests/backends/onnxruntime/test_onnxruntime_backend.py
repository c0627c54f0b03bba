"""The onnxruntime target: its registry entry, its build (the graph it is given, as it is) and its runner."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backend_helpers import expected, mlp_onnx
from edgedeploy.backends import TARGETS, backend_settings, get_backend, precision_route
from edgedeploy.errors import EdgeDeployError, UsageError


def test_build_copies_the_graph_and_the_runner_computes_it(tmp_path):
    backend = get_backend("onnxruntime")
    source = mlp_onnx(tmp_path)
    built = backend.build(source, tmp_path / "onnxruntime", "fp32")
    assert built.artifact.read_bytes() == source.read_bytes() and built.files == [built.artifact]
    runner = backend.load(built, None, threads=1)
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    y = runner.run({"x": x})["y"]
    np.testing.assert_allclose(y, expected(x), rtol=1e-5, atol=1e-5)
    assert runner.conditions["backend"] == "onnxruntime" and runner.conditions["threads"] == 1


def test_a_precision_it_does_not_build_is_refused(tmp_path):
    with pytest.raises(UsageError, match="builds fp32, fp16, int8, not int4"):
        get_backend("onnxruntime").build(mlp_onnx(tmp_path), tmp_path / "out", "int4")


def test_a_model_onnx_runtime_cannot_load_is_one_error_naming_it(tmp_path):
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "typed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [2])])
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    built = get_backend("onnxruntime").build(path, tmp_path / "out", "fp32")
    with pytest.raises(EdgeDeployError, match="ONNX Runtime cannot load the model") as info:
        get_backend("onnxruntime").load(built)
    assert info.value.where == str(built.artifact)


def test_registry_entry(demo_spec):
    spec = demo_spec.model_copy(update={"target": "onnxruntime"})
    route = precision_route(spec)
    assert (route.fp16, route.int8, route.qdq_flavour) == ("fp16-cast", "qdq", "onnxruntime")
    assert backend_settings(spec) is None
    kind = TARGETS["onnxruntime"]
    assert not kind.builds_from_deploy_graph and kind.float_latency_reference
    name, skipped, hint = kind.fp16_candidate(spec, lambda: {"avx512_fp16"})
    assert name == "fp16" and "no fp16 convolution kernels" in skipped and hint is None
