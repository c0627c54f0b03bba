"""The committed demo baselines (OpenVINO fp32 and int8): a fresh demo build passes `edgedeploy validate --baseline`,
and a planted preprocessing fault (ImageNet mean/std on a model trained on [0, 1] inputs) fails it on the task metric.

A wrong mean/std is invisible to the tensor checks — the PyTorch reference sees the same wrong inputs — which is
exactly what the baseline's accuracy checks are for.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from edgedeploy import pipeline, revalidate
from edgedeploy.config import demo_spec_path, load_spec
from edgedeploy.validate import gate

from conftest import fast

pytestmark = pytest.mark.slow  # demo builds; the int8 one is shared (precision_helpers)

BASELINE = Path(__file__).parent / "baselines" / "demo-openvino-fp32.json"
INT8_BASELINE = Path(__file__).parent / "baselines" / "demo-openvino-int8.json"


@pytest.fixture(scope="module")
def no_latency_gate(tmp_path_factory) -> Path:
    """Latency is not what these tests are about (5 timed calls on a shared machine): widen its budget."""
    path = tmp_path_factory.mktemp("cfg") / "gate.yaml"
    path.write_text(yaml.safe_dump({"regression": {"latency_tolerance": 1000.0}}))
    return path


def test_committed_baseline_is_a_demo_openvino_fp32_report():
    baseline = gate.load_baseline(BASELINE)
    assert (baseline["name"], baseline["target"], baseline["precision"]) == ("demo", "openvino", "fp32")
    assert baseline["passed"] and baseline["task"]["map50"] > 0.9
    assert baseline["conditions"]["precision_hint_effective"] == "f32"


def test_fresh_demo_build_passes_the_baseline(tmp_path, no_latency_gate):
    pipeline.build(fast(load_spec(demo_spec_path()), target="openvino", precision="fp32"), tmp_path / "build")
    report = revalidate.validate_artifact(tmp_path / "build", baseline=BASELINE, config=no_latency_gate,
                                    junit=tmp_path / "j.xml")
    assert report["passed"], [c["message"] for c in report["checks"] if not c["passed"]]
    names = {c["name"] for c in report["checks"]}
    assert {"baseline.map50", "baseline.map50_95", "baseline.pred.rel_l2", "pred.rel_l2"} <= names


def test_wrong_normalisation_fails_the_baseline(tmp_path, no_latency_gate):
    spec = fast(load_spec(demo_spec_path()), target="openvino", precision="fp32")
    wrong = spec.preprocess.model_copy(update={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    out = tmp_path / "wrong"
    build = pipeline.build(spec.model_copy(update={"preprocess": wrong}), out)
    assert build["passed"]  # the artifact matches its (equally wrong) reference: tensor checks cannot see this
    report = revalidate.validate_artifact(out, baseline=BASELINE, config=no_latency_gate, junit=tmp_path / "j.xml")
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "baseline.map50" in failed and not any(n.endswith("rel_l2") for n in failed)
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert "below limit >= " in cases["baseline.map50"].find("failure").get("message")
    assert json.loads((tmp_path / "wrong-validate" / "report.json").read_text())["passed"] is False


def test_committed_int8_baseline_is_a_full_demo_openvino_int8_report():
    baseline = gate.load_baseline(INT8_BASELINE)
    assert (baseline["name"], baseline["target"], baseline["precision"]) == ("demo", "openvino", "int8")
    assert baseline["passed"] and baseline["task"]["map50"] > 0.9
    assert baseline["precision_stage"]["calibration"]["size"] == 300  # the demo config, not a test shortcut


def _int8_from_exported_onnx(**updates):
    """The demo's int8 OpenVINO build with its own calibration settings, from the demo's exported raw.onnx (the
    graph the baseline's build exported; reference from ONNX Runtime) so no second PyTorch export is needed."""
    from edgedeploy.config import ModelSource
    from precision_helpers import built

    raw = built("onnxruntime", "int8")[0] / "raw.onnx"
    spec = fast(load_spec(demo_spec_path()), target="openvino", precision="int8")
    return spec.model_copy(update={"model": ModelSource(onnx=raw), **updates})


def test_demo_int8_artifact_passes_the_int8_baseline(tmp_path, no_latency_gate):
    pipeline.build(_int8_from_exported_onnx(), tmp_path / "build")
    report = revalidate.validate_artifact(tmp_path / "build", baseline=INT8_BASELINE, config=no_latency_gate,
                                    junit=tmp_path / "j.xml")
    assert report["passed"], [c["message"] for c in report["checks"] if not c["passed"]]
    assert {"baseline.map50", "baseline.map50_95", "baseline.pred.rel_l2", "map50_drop"} <= {
        c["name"] for c in report["checks"]}


def test_wrong_normalisation_fails_the_int8_baseline(tmp_path, no_latency_gate):
    spec = _int8_from_exported_onnx()
    wrong = spec.preprocess.model_copy(update={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    pipeline.build(spec.model_copy(update={"preprocess": wrong}), tmp_path / "wrong")
    report = revalidate.validate_artifact(tmp_path / "wrong", baseline=INT8_BASELINE, config=no_latency_gate,
                                    junit=tmp_path / "j.xml")
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "baseline.map50" in failed
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert cases["baseline.map50"].find("failure") is not None
