"""The ONNX Runtime flavour's one-pass calibration hands its activation ranges to quantize_static as
TensorQuantOverrides (rmin/rmax), which every ONNX Runtime from 1.17 reads, so a JetPack 6 device (onnxruntime 1.23
on Python 3.10, CI's device job runs this file) quantizes as the host does. No torch: a Conv network built here."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType

from edgedeploy.config import QdqSettings
from edgedeploy.precision import qdq
from edgedeploy.precision.calibration import CalibrationSet


def small_network(path):
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), n)
               for n, s in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (4, 8, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "w2"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "r"], ["s"], name="add"),
             helper.make_node("Conv", ["s", "w3"], ["y"], name="conv3")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def calibration(count=12) -> CalibrationSet:
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(count)]
    return CalibrationSet(samples, [str(i) for i in range(count)], "sha", "test", "npz", count, 0, 0.0)


def quantizers(model: onnx.ModelProto) -> dict[str, tuple[float, int]]:
    """Per quantized tensor: its scale and zero point."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: (float(init[n.input[1]]), int(init[n.input[2]])) for n in model.graph.node
            if n.op_type == "QuantizeLinear"}


def test_given_ranges_quantize_as_onnx_runtimes_own_minmax_pass(tmp_path):
    """The extremes over all samples are what ONNX Runtime's MinMax calibrator computes: handing them over gives the
    same graph, zero points and scales as letting quantize_static calibrate (scales to float32 rounding: its own
    pass computes them from ranges of another float type, one ulp apart on some tensors)."""
    small_network(tmp_path / "f.onnx")
    calib, q = calibration(), QdqSettings()
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    qdq._quantize_static(tmp_path / "f.onnx", tmp_path / "own.onnx", q, "onnxruntime", [], extra, QuantType.QUInt8,
                         None, calib)
    ranges = qdq.activation_ranges(tmp_path / "f.onnx", calib).pick(mean=False)
    qdq._quantize_static(tmp_path / "f.onnx", tmp_path / "given.onnx", q, "onnxruntime", [], extra,
                         QuantType.QUInt8, None, calib, ranges=ranges)
    own, given = onnx.load(str(tmp_path / "own.onnx")), onnx.load(str(tmp_path / "given.onnx"))
    assert [n.op_type for n in given.graph.node] == [n.op_type for n in own.graph.node]
    mine, theirs = quantizers(given), quantizers(own)
    assert len(mine) >= 5 and mine.keys() == theirs.keys()
    for name, (scale, zero_point) in mine.items():
        assert zero_point == theirs[name][1], name
        assert np.isclose(scale, theirs[name][0], rtol=1e-6, atol=0), name


def test_the_mean_ranges_are_the_ones_in_the_model(tmp_path):
    """The moving-average choice (mean of per-sample extremes) reaches the model: the input's scale is
    (mean max - mean min) / 255 (uint8, asymmetric, zero included)."""
    small_network(tmp_path / "f.onnx")
    calib = calibration()
    ranges = qdq.activation_ranges(tmp_path / "f.onnx", calib)
    low, high = ranges.pick(mean=True)["x"]
    qdq._quantize_static(tmp_path / "f.onnx", tmp_path / "mean.onnx", QdqSettings(), "onnxruntime", [],
                         {"ActivationSymmetric": False, "WeightSymmetric": True}, QuantType.QUInt8, None, calib,
                         ranges=ranges.pick(mean=True))
    scale = quantizers(onnx.load(str(tmp_path / "mean.onnx")))["x"][0]
    assert np.isclose(scale, (max(high, 0) - min(low, 0)) / 255, rtol=1e-6)
    assert not np.isclose(scale, (np.max(ranges.maxs["x"]) - np.min(ranges.mins["x"])) / 255, rtol=1e-3)
