"""The IR version of what a device reads: the onnx package writes its newest IR version (14 for onnx 1.23) whatever
the opset, and onnxruntime 1.23.2, the newest for JetPack 6's Python 3.10, refuses any model above IR 11. Every ONNX
file of a bundle carries the lowest IR version its opset needs (onnx's opset-to-IR table) and loads in the
onnxruntime installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.bundle.make import make_bundle
from edgedeploy.bundle.manifest import VARIANTS
from edgedeploy.config import BuildSpec
from edgedeploy.graph.optimize import lowest_ir_version

ORT_1_23_MAX_IR = 11  # "Unsupported model IR version: 12, max supported IR version: 11" (onnxruntime 1.23.2)


def conv_model(path: Path) -> None:
    """Conv + Relu, opset 18, saved as the onnx package saves it (its newest IR version)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5, "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = max(model.ir_version, ORT_1_23_MAX_IR + 1)  # what onnx >= 1.19 writes
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_every_bundled_model_carries_the_lowest_ir_version_of_its_opset(tmp_path):
    conv_model(tmp_path / "conv.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).random((16, 3, 8, 8)).astype(np.float32))
    spec = BuildSpec.model_validate({
        "model": {"onnx": str(tmp_path / "conv.onnx")}, "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}],
        "optimize": {"simplifier": "none"},
        "validation": {"samples": 8, "latency": {"batch_sizes": [1], "warmup": 1, "iterations": 2}},
        "calibration": {"data": str(tmp_path / "calib.npy"), "cache_dir": str(tmp_path / "cache")}})
    make_bundle(spec, tmp_path / "bundle", ["fp32", "fp16", "int8"])
    found = {}
    for name in VARIANTS.values():
        model = onnx.load(str(tmp_path / "bundle" / name))
        found[name] = (model.ir_version, onnx.helper.find_min_ir_version_for(list(model.opset_import), True))
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert all(ir == lowest <= ORT_1_23_MAX_IR for ir, lowest in found.values()), found


def test_a_model_with_int4_weights_keeps_its_ir_version():
    """int4 came with IR 10; ONNX Runtime's 4-bit Q/DQ at opset < 21 (com.microsoft DequantizeLinear) holds int4
    weights in an opset-18 graph, whose table entry (IR 8) would make them unreadable."""
    w = helper.make_tensor("w", TensorProto.INT4, [4], [1, -2, 3, -4])
    scale = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    node = helper.make_node("DequantizeLinear", ["w", "s"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    assert lowest_ir_version(model) == 10
    w.data_type, w.int32_data[:] = TensorProto.INT8, [1, -2, 3, -4]
    model.graph.initializer[0].CopyFrom(w)
    assert lowest_ir_version(model) == 8
