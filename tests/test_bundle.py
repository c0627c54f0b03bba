"""`edgedeploy bundle` and building from a bundle: what a bundle holds, a tampered bundle refused, builds from the
bundled variants with torch blocked, TensorRT's missing-SDK message."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from edgedeploy import fileio
from edgedeploy.bundle.manifest import open_bundle
from edgedeploy.precision.calibration import hash_samples

from cli_helpers import error_line, run_cli
from notorch_helpers import assert_no_torch, run_without_torch

pytestmark = pytest.mark.slow  # the demo bundle (export, calibration) and builds from it

DEVICE_FILES = {"bundle.json", "spec.json", "deploy.onnx", "deploy.fp16.onnx", "deploy.int8.qdq.onnx", "reference.npz",
                "calibration.npz", "optimize.json"}


def test_bundle_holds_what_a_device_needs(demo_bundle):
    assert {p.name for p in demo_bundle.iterdir()} == DEVICE_FILES  # no raw.onnx, checkpoint, cache, torch objects
    bundle = open_bundle(demo_bundle)
    m = bundle.manifest
    assert m["precisions"] == ["fp32", "fp16", "int8"]
    assert m["graph"]["inputs"] == ["images"] and m["graph"]["outputs"] == ["pred"] and m["graph"]["opset"] >= 18
    assert m["source"]["kind"] == "pytorch" and m["source"]["reference"] == "PyTorch eager (fp32)"
    assert m["made_with"]["libraries"]["torch"]  # recorded, not needed on the device
    for rel, entry in m["files"].items():
        assert fileio.sha256_file(demo_bundle / rel) == entry["sha256"], rel
    assert bundle.spec.model.onnx == demo_bundle.resolve() / "deploy.onnx" and bundle.spec.model.factory is None
    assert bundle.spec.validation.data is None and bundle.spec.model.checkpoint is None
    with np.load(demo_bundle / "reference.npz", allow_pickle=False) as ref:
        assert ref["input.images"].shape == (100, 3, 64, 64) and ref["output.pred"].shape[0] == 100
    with np.load(demo_bundle / "calibration.npz", allow_pickle=False) as cal:  # the samples, in the order used
        samples = [{"images": cal["images"][i:i + 1]} for i in range(len(cal["images"]))]
    assert len(samples) == 32
    assert hash_samples(samples, ["images"]) == m["precision"]["int8"]["calibration"]["sha256"]


@pytest.mark.parametrize("fault", ["changed", "missing", "added", "symlink", "file table", "default"])
def test_tampered_bundle_is_refused(demo_bundle, tmp_path, fault):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bundle)
    if fault == "changed":
        data = bytearray((bundle / "deploy.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        (bundle / "deploy.onnx").write_bytes(bytes(data))
    elif fault == "missing":
        (bundle / "reference.npz").unlink()
    elif fault == "added":
        (bundle / "extra.onnx").write_bytes(b"not listed")
    elif fault == "symlink":
        (bundle / "deploy.onnx").unlink()
        (bundle / "deploy.onnx").symlink_to(demo_bundle / "deploy.onnx")
    else:  # bundle.json itself edited into the wrong shape: one line, never an internal error
        manifest = json.loads((bundle / "bundle.json").read_text())
        if fault == "file table":
            manifest["files"]["deploy.onnx"] = "ok"
        else:
            manifest["default"] = {"target": "onnxruntime", "precision": "int4"}
        (bundle / "bundle.json").write_text(json.dumps(manifest))
    result = run_cli("build", str(bundle), "--target", "onnxruntime", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    line = error_line(result)
    expected = {"changed": "deploy.onnx does not match its sha256 in bundle.json",
                "missing": "reference.npz is missing", "added": "extra.onnx is not listed in bundle.json",
                "symlink": "deploy.onnx is a symbolic link",
                "file table": "bundle.json has no valid file table",
                "default": "bundle.json has no valid default"}[fault]
    assert f"{bundle}: bundle refused: {expected}" in line
    assert not (tmp_path / "out").exists()


def test_precision_missing_from_the_bundle(demo_bundle, tmp_path):
    """A bundle made without int8 says so, and how to make one with it."""
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    for name in ("deploy.int8.qdq.onnx", "calibration.npz"):
        (bundle / name).unlink()
        del manifest["files"][name]
    manifest["precisions"] = ["fp32", "fp16"]
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    result = run_cli("build", str(bundle), "--target", "onnxruntime", "--precision", "int8", "--out",
                     str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "the bundle holds fp32, fp16, not int8. make it with `edgedeploy bundle --precision int8`" in \
        error_line(result)


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: the missing-SDK message cannot appear")
def test_trt_from_bundle_names_what_to_install(demo_bundle, tmp_path):
    result = run_cli("build", str(demo_bundle), "--target", "trt", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert error_line(result).startswith("error: TensorRT is not installed")
    assert not (tmp_path / "out").exists()


def test_int8_builds_from_the_bundle_with_torch_blocked(demo_bundle, tmp_path):
    """ONNX Runtime builds the bundled Q/DQ graph as it is; OpenVINO calibrates here with NNCF from the bundled
    samples, and its calibration key has the workstation's data hash. Neither imports torch, nor does validate."""
    ort, record = run_without_torch(sys.executable, "build", str(demo_bundle), "--target", "onnxruntime",
                                    "--precision", "int8", "--out", "ort8", cwd=tmp_path)
    assert ort.returncode == 0, ort.stderr
    assert_no_torch(record)
    assert fileio.sha256_file(tmp_path / "ort8/deploy.int8.qdq.onnx") == \
        fileio.sha256_file(demo_bundle / "deploy.int8.qdq.onnx")
    report = json.loads((tmp_path / "ort8/report.json").read_text())
    assert report["passed"] and report["precision_stage"]["from_bundle"] is True
    assert report["bundle"]["sha256"] == open_bundle(demo_bundle).sha256
    assert report["device"]["cpu"]["cores"] >= 1 and "## Device" in (tmp_path / "ort8/report.md").read_text()

    ov, record = run_without_torch(sys.executable, "build", str(demo_bundle), "--target", "openvino",
                                   "--precision", "int8", "--out", "ov8", cwd=tmp_path)
    assert ov.returncode == 0, ov.stderr
    assert_no_torch(record)
    report = json.loads((tmp_path / "ov8/report.json").read_text())
    calibration = report["precision_stage"]["calibration"]
    assert calibration["sha256"] == open_bundle(demo_bundle).manifest["precision"]["int8"]["calibration"]["sha256"]
    assert report["precision_stage"]["fake_quantize"] > 0 and report["passed"]

    validated, record = run_without_torch(sys.executable, "validate", "ov8", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert_no_torch(record)
    assert json.loads((tmp_path / "ov8-validate" / "report.json").read_text())["checks"][0]["name"] == \
        "artifact.files_unchanged"
