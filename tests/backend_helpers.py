"""A small real ONNX model (MatMul + Add + Relu, dynamic batch) that every backend's own tests build and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)
WEIGHT = RNG.standard_normal((16, 8)).astype(np.float32)
BIAS = RNG.standard_normal(8).astype(np.float32)


def mlp_onnx(folder: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(BIAS, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = folder / "mlp.onnx"
    onnx.save(model, str(path))
    return path


def expected(x: np.ndarray) -> np.ndarray:
    return np.maximum(x.astype(np.float64) @ WEIGHT + BIAS, 0.0)
