"""The bad-input matrix: backend."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bad_input.matrix import Run, build, conv_model, matrix_test, registry, tiny_model

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


@case("ONNX opset from the future", 1, "ONNX Runtime cannot load the model: the model uses opset 30",
      "export the model with opset")
def _(bench, here, out):
    model = conv_model()
    model.opset_import[0].version = 30
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"),))


@case("ONNX type error the checker misses", 1, "ONNX Runtime cannot load the model: Type Error",
      "the graph has a type error")
def _(bench, here, out):
    k = numpy_helper.from_array(np.ones(1, np.int64), "k")
    model = tiny_model([helper.make_node("Add", ["images", "k"], ["y"], name="add0")], [k], "y", 3)
    onnx.checker.check_model(model)  # the checker passes it
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"), "node (add0)"))


@case("ONNX node allocating petabytes", 1, "ONNX Runtime failed running the model", "Failed to allocate memory",
      "asks for more memory than this machine has")
def _(bench, here, out):
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20, 1 << 10], np.int64), "s")
    model = tiny_model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="huge0"),
                    helper.make_node("ReduceSum", ["c"], ["r"], name="sum0", keepdims=0),
                    helper.make_node("Add", ["images", "r"], ["y"], name="add0")], [shape], "y", 3)
    return Run(build(bench.config(here, bench.model(here, model)), out), (str(here / "model.onnx"), "'huge0'"))


@case("artifact model.onnx replaced by garbage", 1, "ONNX Runtime cannot load the model",
      "onnxruntime/model.onnx changed since the build", existing=True)
def _(bench, here, out):
    (out / "onnxruntime" / "model.onnx").write_bytes(b"not a model")
    return Run(["validate", str(out)], (str(out / "onnxruntime" / "model.onnx"),), keep=(here / "out-validate",))


@case("OpenVINO IR replaced by garbage", 1, "OpenVINO cannot compile the model for CPU",
      "openvino/model.xml changed since the build", existing=True)
def _(bench, here, out):
    shutil.rmtree(out)
    shutil.copytree(bench.openvino, out)
    (out / "openvino" / "model.xml").write_text("<net><layers><layer id='0' type='Nonsense'/></layers></net>")
    return Run(["validate", str(out)], (str(out / "openvino" / "model.xml"),), keep=(here / "out-validate",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
