"""INT8 on the real demo: Q/DQ ONNX on ONNX Runtime, NNCF on OpenVINO, accuracy-aware, stale-cache refusal, and
`edgedeploy build --precision int8` end to end for both CPU targets."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml

from edgedeploy import fileio
from edgedeploy.backends import precision_route
from edgedeploy.config import QdqSettings
from edgedeploy.precision import qdq
from edgedeploy.precision.calibration import load_calibration
from edgedeploy.precision.stage import run_precision
from edgedeploy.preprocess import load_validation_set
from edgedeploy.versions import library_versions

from precision_helpers import CALIB_SUBSET, built, demo_spec, quick

pytestmark = pytest.mark.slow  # the shared demo int8 builds (precision_helpers)


def test_onnxruntime_flavour_runs_every_conv_as_an_int8_kernel_within_budget():
    """The onnxruntime target's Q/DQ: uint8 activations x int8 per-channel weights, every conv an int8 kernel in
    ONNX Runtime's optimized graph, the box decode left in float, mAP within the 1-point budget."""
    out, report = built("onnxruntime", "int8")
    assert report["passed"], report["checks"]
    assert report["task"]["map50_drop"] <= 0.01  # acceptance: Q/DQ on ONNX Runtime within 1 point
    p = report["precision_stage"]
    assert p["flavour"] == "onnxruntime" and p["settings"]["activations"] == "uint8 asymmetric"
    assert p["calibration"]["size"] == CALIB_SUBSET and len(p["calibration"]["sha256"]) == 64
    assert p["cache"]["kind"] == "qdq-int8-onnxruntime-ort"
    kernels = p["ort_kernels"]
    assert kernels["compute_int8"] == 38 and kernels["compute_float"] == 0  # every conv a QLinearConv
    assert kernels["int8_kernels"]["QLinearLeakyRelu"] > 0  # activations fused too, not left between Q/DQ pairs
    model = onnx.load(str(out / "deploy.int8.qdq.onnx"))
    s = qdq.describe(model)
    assert "uint8" in s["zero_point_dtypes"] and not s["tensorrt_ready"]
    assert s["per_channel_weights"] == 38 and s["per_tensor_weights"] == 0
    decode = {n.name for n in model.graph.node if n.op_type in ("Sigmoid", "Pow")}
    assert decode and decode <= set(qdq.float_tail(onnx.load(str(out / "deploy.onnx"))))
    producer = {o: n for n in model.graph.node for o in n.output}
    assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear"
               for n in model.graph.node if n.name in decode for i in n.input)  # the decode reads float
    assert report["artifact"]["path"] == "onnxruntime/model.onnx"
    assert (out / "onnxruntime" / "model.onnx").read_bytes() == (out / "deploy.int8.qdq.onnx").read_bytes()


def test_tensorrt_flavour_is_symmetric_int8_and_keyed_apart_from_the_onnxruntime_one(tmp_path):
    """The same deploy graph and calibration data give two Q/DQ graphs, one per flavour, each under its own cache
    key: TensorRT's (int8, zero point 0, every conv fed by DQ) is not ONNX Runtime's."""
    out, report = built("onnxruntime", "int8")
    spec = quick(demo_spec(), target="trt", precision="int8")
    spec = spec.model_copy(update={"calibration": spec.calibration.model_copy(update={"cache_dir": out / "cache"})})
    trt = run_precision(spec, precision_route(spec), out / "deploy.onnx", tmp_path, None, {"nncf": "x"})
    assert trt.info["flavour"] == "tensorrt" and trt.info["cache"]["kind"] == "qdq-int8-tensorrt-nncf"
    assert trt.info["cache"]["status"] == "new"  # the onnxruntime flavour's entry is not reused for it
    s = qdq.describe(onnx.load(str(trt.model_path)))
    assert s["zero_point_dtypes"] == ["int8"] and s["all_zero_points_zero"] and s["tensorrt_ready"]
    assert s["compute_ops_int8"] == s["compute_ops"] == 38
    ort_spec = spec.model_copy(update={"target": "onnxruntime"})
    again = run_precision(ort_spec, precision_route(ort_spec), out / "deploy.onnx", tmp_path / "ort", None,
                          library_versions())
    assert again.info["cache"]["status"] == "reused"
    assert again.info["cache"]["key"] == report["precision_stage"]["cache"]["key"]


def test_reduce_range_follows_vnni_for_the_onnxruntime_flavour(monkeypatch):
    """reduce_range auto: 7-bit weights for ONNX Runtime only on an x86 CPU without VNNI, and part of the key."""
    from edgedeploy.config import Int8Settings

    monkeypatch.setattr(qdq, "cpu_has_vnni", lambda: True)
    with_vnni = qdq.qdq_settings(Int8Settings(), "onnxruntime")
    monkeypatch.setattr(qdq, "cpu_has_vnni", lambda: False)
    without = qdq.qdq_settings(Int8Settings(), "onnxruntime")
    assert with_vnni["reduce_range"] is False and without["reduce_range"] is True
    assert qdq.qdq_settings(Int8Settings(), "tensorrt")["activations"] == "int8 symmetric"
    forced = Int8Settings(qdq=QdqSettings(reduce_range=False))
    assert qdq.qdq_settings(forced, "onnxruntime")["reduce_range"] is False


def test_onnxruntime_quantize_static_route_is_symmetric_int8(tmp_path):
    out, _ = built("onnxruntime", "int8")
    spec = quick(demo_spec(), calibration=demo_spec().calibration.model_copy(update={"subset_size": 16}))
    calib = load_calibration(spec)
    target = tmp_path / "ort.qdq.onnx"
    made = qdq.quantize_ort(out / "deploy.onnx", target, calib,
                            QdqSettings(method="ort", calibrate_method="minmax",
                                        excluded={"types": [], "names": [], "patterns": [r"conv2d_3[89]$"]}))
    s = qdq.describe(onnx.load(str(target)))
    assert s["zero_point_dtypes"] == ["int8"] and s["all_zero_points_zero"] and s["per_channel_weights"] > 0
    assert made["excluded_nodes"] == ["node_conv2d_38", "node_conv2d_39"]  # the two detect-head convs
    assert set(s["compute_ops_float"]) == set(made["excluded_nodes"])


def test_openvino_int8_map_and_report():
    out, report = built("openvino", "int8")
    assert report["passed"], report["checks"]
    assert report["task"]["map50_drop"] <= 0.01
    p = report["precision_stage"]
    assert p["method"] == "nncf.quantize" and p["fake_quantize"] > 30
    assert p["cache"]["status"] in ("new", "rebuilt")
    assert report["conditions"]["precision_hint_effective"] == "f32"
    assert "## Precision" in (out / "report.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"]["calibration"]["sha256"] == p["calibration"]["sha256"]


def test_stale_calibration_is_refused_after_the_model_or_the_data_change(tmp_path):
    out, _ = built("onnxruntime", "int8")
    spec = quick(demo_spec(), target="onnxruntime", precision="int8",
                 calibration=demo_spec().calibration.model_copy(update={"subset_size": 8,
                                                                        "cache_dir": tmp_path / "cache"}))
    spec = spec.model_copy(update={"int8": spec.int8.model_copy(update={"qdq": QdqSettings(method="ort")})})
    libs = {"onnxruntime": "x", "onnx": "y", "numpy": "z"}
    deploy = tmp_path / "deploy.onnx"
    deploy.write_bytes((out / "deploy.onnx").read_bytes())
    first = run_precision(spec, precision_route(spec), deploy, tmp_path, None, libs)
    assert first.info["cache"]["status"] == "new"
    again = run_precision(spec, precision_route(spec), deploy, tmp_path, None, libs)
    assert again.info["cache"]["status"] == "reused"

    # the model changes (one weight): the earlier scales are named stale and not used
    model = onnx.load(str(deploy))
    w = next(t for t in model.graph.initializer if t.dims and len(t.dims) == 4)
    arr = onnx.numpy_helper.to_array(w).copy()
    arr.flat[0] += 0.5
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    fileio.write_bytes(deploy, model.SerializeToString())
    after_model = run_precision(spec, precision_route(spec), deploy, tmp_path, None, libs)
    assert after_model.info["cache"]["status"] == "rebuilt"
    assert after_model.info["cache"]["stale"]["changed"] == ["model_sha256"]
    assert after_model.info["cache"]["key"] != first.info["cache"]["key"]

    # the data changes (another subset of the calibration images)
    other = spec.model_copy(update={"calibration": spec.calibration.model_copy(update={"seed": 7})})
    after_data = run_precision(other, precision_route(other), deploy, tmp_path, None, libs)
    assert after_data.info["cache"]["status"] == "rebuilt"
    assert after_data.info["cache"]["stale"]["changed"] == ["data_sha256"]


def test_accuracy_aware_meets_max_drop_on_a_small_subset(tmp_path):
    out, _ = built("openvino", "int8")
    base = demo_spec()
    spec = quick(base, target="openvino", precision="int8",
                 calibration=base.calibration.model_copy(update={"subset_size": 16}))
    aa = spec.int8.accuracy_aware.model_copy(update={"enabled": True, "max_drop": 0.002, "ranking_subset_size": 8})
    spec = spec.model_copy(update={"int8": spec.int8.model_copy(update={"accuracy_aware": aa}),
                                   "validation": spec.validation.model_copy(update={"samples": 32})})
    data = load_validation_set(spec)
    result = run_precision(spec, precision_route(spec), out / "deploy.onnx", tmp_path, data, {"nncf": "x"})
    assert result.info["method"] == "nncf.quantize_with_accuracy_control"
    import openvino as ov

    from edgedeploy.precision.openvino_int8 import detection_validation

    det = spec.validation.detection
    items, fn = detection_validation(data.inputs, data.targets, "pred", det.conf_thres, det.iou_thres)
    core = ov.Core()
    fp32 = core.compile_model(ov.convert_model(str(out / "deploy.onnx")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    int8 = core.compile_model(str(result.model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert fn(fp32, items) - fn(int8, items) <= 0.002 + 1e-9


def test_int8_without_calibration_data_is_refused_before_export(write_config, tmp_path):
    spec = demo_spec()
    raw = spec.model_dump(mode="json", exclude={"calibration"})
    raw["calibration"] = {}
    path = write_config(raw)
    result = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "build", str(path), "--precision", "int8",
                             "--target", "onnxruntime", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "INT8 needs calibration data" in result.stderr + result.stdout
    assert not (tmp_path / "out" / "raw.onnx").exists()


@pytest.mark.parametrize("target", ["openvino", "onnxruntime"])
def test_cli_build_int8_end_to_end(target, write_config, tmp_path):
    """The CLI from the PyTorch demo (64-image calibration subset): export, optimize, precision, build, validate.
    The deploy graph is byte-identical to the session's build, so its calibration result is reused by key."""
    spec = quick(demo_spec())
    raw = spec.model_dump(mode="json")
    raw["calibration"]["cache_dir"] = str(built(target)[0] / "cache")  # the session's build made the same result
    path = write_config(yaml.safe_dump(raw), name=f"{target}.yaml")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "build", str(path), "--precision", "int8",
                             "--target", target, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["precision"] == "int8" and report["passed"]
    assert report["precision_stage"]["cache"]["status"] == "reused"
    assert report["task"]["map50_drop"] <= 0.01
    assert np.isfinite(report["tensors"]["pred"]["rel_l2"])
