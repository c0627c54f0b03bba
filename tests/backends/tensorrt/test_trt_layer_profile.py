"""The per-layer profile (TensorRT's IProfiler) in report.json (`layer_profile`, a typed field of the report schema)
and report.html (the slowest layers), taken on the conformance stand-ins of 10.3, the newest 10.x and the newest
11.x. The stand-in's layer times are markers (layer k takes (k + 1) µs), not measurements: the tests check that
edgedeploy carries whatever TensorRT reports, in order, into the report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from trt_standin import install, surface_versions
from trt_standin.models import conv_model, deploy_folder, feeds

from edgedeploy.ort_runner import OnnxRuntimeRunner
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.validate import latency, record
from edgedeploy.validate.html import layer_profile_html
from report_helpers import report_of

VERSIONS = surface_versions()
NEWEST10 = max((v for v in VERSIONS if v.startswith("10.")), key=lambda v: int(v.split(".")[1]))
NEWEST11 = max((v for v in VERSIONS if v.startswith("11.")), key=lambda v: int(v.split(".")[1]))


@pytest.mark.parametrize("version", ["10.3", NEWEST10, NEWEST11])
def test_the_profile_reaches_report_json_and_html_slowest_first(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    deploy_folder(tmp_path)
    built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32", TensorRTSettings())
    runner = load_plan(built.artifact)
    try:
        profile = latency.layer_profile(runner, feeds(1))
    finally:
        runner.close()
    assert profile["batch"] == 1 and profile["iterations"] == latency.PROFILE_ITERATIONS
    assert [lay["layer"] for lay in profile["layers"]] == ["relu0", "conv0"]  # 2 µs, 1 µs: slowest first
    assert [lay["runs"] for lay in profile["layers"]] == [latency.PROFILE_ITERATIONS] * 2
    assert record.LayerProfile.model_validate(profile).layers[0].median_ms == pytest.approx(0.002)
    page = layer_profile_html(report_of({"layer_profile": profile}), top=1)
    assert "Slowest layers" in page and "relu0" in page and "conv0" not in page and "66.7 %" in page


def test_the_report_schema_types_the_profile(tmp_path):
    assert record.Report.model_fields["layer_profile"].annotation == record.LayerProfile | None
    with pytest.raises(ValidationError):  # a layer without its share is not a layer time
        record.LayerProfile.model_validate({"profiler": "x", "batch": 1, "iterations": 1,
                                            "layers": [{"layer": "a", "median_ms": 1.0, "runs": 1}]})
    assert layer_profile_html(report_of({})) == ""


def test_a_backend_without_layer_times_gives_no_profile(tmp_path):
    runner = OnnxRuntimeRunner(conv_model(tmp_path / "m.onnx"))
    assert latency.layer_profile(runner, {"images": np.zeros((1, 3, 16, 16), np.float32)}) is None
