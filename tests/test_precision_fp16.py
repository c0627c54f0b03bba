"""The fp16-cast ONNX: fp32 graph I/O, sensitive ops kept fp32, outputs equal to the fp32 graph within fp16 error."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.config import Fp16Settings
from edgedeploy.precision.fp16 import cast_to_fp16, io_types
from edgedeploy.tasks import detection
from edgedeploy.validate import metrics

from precision_helpers import built


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_small_graph_casts_at_the_boundaries_and_keeps_blocked_ops_fp32():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], name="resize", mode="nearest"),
        helper.make_node("Sigmoid", ["r"], ["s"], name="sig"),
        helper.make_node("Pow", ["s", "two"], ["p"], name="pow"),  # kept fp32
        helper.make_node("Mul", ["p", "s"], ["y"], name="mul"),  # graph output made by an fp16 node
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", keepdims=0),  # kept fp32, second output
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("m", TensorProto.FLOAT, None)],
                              [w, scales, two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    half, stats = cast_to_fp16(model, Fp16Settings().keep_fp32_ops)
    assert io_types(half) == {"x": "FLOAT", "y": "FLOAT", "m": "FLOAT"}
    inits = {t.name: t.data_type for t in half.graph.initializer}
    assert inits["w"] == TensorProto.FLOAT16 and inits["scales"] == TensorProto.FLOAT  # Resize scales stay fp32
    assert inits["two"] == TensorProto.FLOAT  # read only by the fp32 Pow
    assert sorted(stats.fp32_nodes) == ["mean", "pow"]
    assert stats.casts >= 4  # x in, into/out of pow, c into mean, y out
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref, got = run(model, {"x": x}), run(half, {"x": x})
    for a, b in zip(ref, got):
        assert b.dtype == np.float32
        assert metrics.compare(a, b)["rel_l2"] < 2e-3


@pytest.mark.slow
def test_demo_fp16_graph_matches_fp32_and_keeps_map():
    out, report = built("onnxruntime", "fp16")
    assert report["passed"], report["checks"]
    half = onnx.load(str(out / "deploy.fp16.onnx"))
    assert io_types(half) == {"images": "FLOAT", "pred": "FLOAT"}
    types = {t.data_type for t in half.graph.initializer if t.dims and len(t.dims) == 4}
    assert types == {TensorProto.FLOAT16}  # every conv weight is fp16
    p = report["precision_stage"]
    assert p["cast"]["fp32_nodes"] == 2  # the two Pow of the box decode
    assert p["vs_fp32_graph"]["pred"]["rel_l2"] < 1e-3
    assert report["tensors"]["pred"]["rel_l2"] < 1e-2
    assert report["task"]["map50_drop"] <= 0.005
    ref = np.load(out / "reference.npz")
    dets = detection.postprocess(run(half, {"images": ref["input.images"][:16]})[0])
    assert len(dets) == 16
