"""`edgedeploy validate`: re-run from reference.npz, thresholds, planted faults, baselines, JUnit, exit codes.

The model is a small real classifier built here: a scikit-learn logistic regression on the digits set (8×8 → 10
classes) written as an ONNX MLP (Gemm → Relu → Gemm), built through the normal pipeline from `model.onnx`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgedeploy import pipeline, revalidate
from edgedeploy.backends import get_backend
from edgedeploy.config import RegressionSettings, load_spec
from edgedeploy.errors import UsageError
from edgedeploy.validate import gate, junit
from edgedeploy.validate.record import Report

SAMPLES = 200


def make_classifier(folder: Path) -> Path:
    """Digits → a trained 64-32-10 MLP classifier as ONNX + a validation .npz (`x`, `labels`) + a build spec."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=0).fit(x[SAMPLES:], y[SAMPLES:])
    w1, w2 = (w.astype(np.float32) for w in clf.coefs_)
    b1, b2 = (b.astype(np.float32) for b in clf.intercepts_)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
         helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"])],
        "digits_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "mlp.onnx"))
    np.savez(folder / "val.npz", x=x[:SAMPLES], labels=y[:SAMPLES])
    config = {
        "name": "digits-mlp",
        "model": {"onnx": "mlp.onnx"},
        "inputs": [{"name": "x", "shape": ["batch", 64]}],
        "validation": {"data": "val.npz", "task": "classification", "output": "logits",
                       "latency": {"batch_sizes": [1, 8], "warmup": 3, "iterations": 10}},
        "thresholds": {"fp32": {"max_rel_l2": 1e-5, "min_top1_agreement": 0.99},
                       "fp16": {"max_rel_l2": 1e-2, "max_top1_drop": 0.01}},
    }
    path = folder / "mlp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def mlp_config(tmp_path_factory) -> Path:
    return make_classifier(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="module")
def built(mlp_config, tmp_path_factory):
    """One OpenVINO fp32 build of the classifier; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("mlp_ov32")
    report = pipeline.build(load_spec(mlp_config).model_copy(update={"target": "openvino"}), out)
    return out, report


def copy_of(built, tmp_path) -> Path:
    dst = tmp_path / "artifact"
    shutil.copytree(built[0], dst)
    return dst


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedeploy.cli", *args], capture_output=True, text=True,
                          timeout=300)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def reports(art: Path) -> Path:
    """Where `edgedeploy validate` writes its reports by default: beside the build folder."""
    return art.with_name(f"{art.name}-validate")


# --------------------------------------------------------------------------------------------- build + validate
def test_build_report_has_classification_and_schema(built):
    out, report = built
    assert report["schema"] == gate.REPORT_SCHEMA and report["kind"] == "build"
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    task = report["task"]
    assert task["kind"] == "classification" and task["samples"] == SAMPLES
    assert task["top1_agreement"] == 1.0 and task["top1"] == task["reference_top1"] > 0.9
    checks = by_name(report)
    assert [checks[n]["origin"] for n in ("logits.finite", "logits.rel_l2", "top1_agreement")] == [
        "always", "config", "config"]
    with np.load(out / "reference.npz") as ref:
        assert "label.labels" in ref.files and len(ref["label.labels"]) == SAMPLES
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).is_file()


def test_validate_reruns_the_artifact_and_passes(built, tmp_path):
    art = copy_of(built, tmp_path)
    junit_path = tmp_path / "junit.xml"
    report = revalidate.validate_artifact(art, junit=junit_path)
    assert report["passed"] and report["kind"] == "validate"
    checks = by_name(report)
    assert checks["artifact.files_unchanged"]["passed"]
    assert report["tensors"]["logits"]["rel_l2"] == pytest.approx(built[1]["tensors"]["logits"]["rel_l2"], abs=1e-7)
    assert report["task"]["top1"] == built[1]["task"]["top1"]
    for name in ("report.json", "report.md", "report.html"):
        assert (reports(art) / name).is_file()
    suite = ET.parse(junit_path).getroot().find("testsuite")
    assert int(suite.get("tests")) == len(report["checks"]) and suite.get("failures") == "0"


def _plant_weight_fault(art: Path, scale: float = 1.02) -> None:
    """Rebuild the IR from a deploy.onnx whose first-layer weights are scaled (like a wrong BN epsilon folded in)."""
    model = onnx.load(str(art / "deploy.onnx"))
    init = next(i for i in model.graph.initializer if i.name == "w1")
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(scale), "w1"))
    faulty = art / "faulty.onnx"
    onnx.save(model, str(faulty))
    get_backend("openvino").build(faulty, art / "openvino", "fp32")


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_planted_fault_fails_and_junit_names_the_metric(built, tmp_path):
    art = copy_of(built, tmp_path)
    _plant_weight_fault(art)
    junit_path = tmp_path / "junit.xml"
    result = run_cli("validate", str(art), "--junit", str(junit_path))
    assert result.returncode == 1, result.stderr
    assert "logits.rel_l2" in result.stderr
    root = ET.parse(junit_path).getroot()
    failures = {case.get("name"): case.find("failure") for case in root.iter("testcase")
                if case.find("failure") is not None}
    assert {"logits.rel_l2", "artifact.files_unchanged"} <= set(failures)
    message = failures["logits.rel_l2"].get("message")
    assert "exceeds limit <= 1e-05" in message and "logits.rel_l2 = " in message
    report = json.loads((reports(art) / "report.json").read_text())
    assert not report["passed"]
    # the IR rebuilt in place: its files differ, and the batch-1 copy beside it is gone
    assert by_name(report)["artifact.files_unchanged"]["changed"] == [
        "openvino/model.xml", "openvino/model.bin", "openvino/batch1/model.xml", "openvino/batch1/model.bin"]


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_nan_output_is_its_own_failing_check(built, tmp_path):
    art = copy_of(built, tmp_path)
    model = onnx.load(str(art / "deploy.onnx"))
    b2 = next(i for i in model.graph.initializer if i.name == "b2")
    bad = numpy_helper.to_array(b2).copy()
    bad[3] = np.nan
    b2.CopyFrom(numpy_helper.from_array(bad, "b2"))
    onnx.save(model, str(art / "nan.onnx"))
    get_backend("openvino").build(art / "nan.onnx", art / "openvino", "fp32")
    report = revalidate.validate_artifact(art)
    finite = by_name(report)["logits.finite"]
    assert not finite["passed"] and finite["value"] == SAMPLES  # one NaN logit per sample
    assert "NaN" in finite["message"]
    assert report["tensors"]["logits"]["nan_count"] == SAMPLES
    assert np.isfinite(report["tensors"]["logits"]["rel_l2"])  # the other metrics stay numbers (strict JSON)
    json.loads((reports(art) / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_per_output_override_and_config_file(built, tmp_path):
    art = copy_of(built, tmp_path)
    cfg = tmp_path / "gate.yaml"
    cfg.write_text(yaml.safe_dump({"thresholds": {"fp32": {"max_rel_l2": 1e-5, "outputs": {
        "logits": {"max_rel_l2": 1e-12, "min_snr_db": 60}}}}}))
    report = revalidate.validate_artifact(art, config=cfg)
    checks = by_name(report)
    assert checks["logits.rel_l2"]["limit"] == 1e-12
    assert checks["logits.snr_db"]["passed"]
    assert checks["logits.rel_l2"]["passed"] is (report["tensors"]["logits"]["rel_l2"] <= 1e-12)
    cfg.write_text(yaml.safe_dump({"thresholdz": {}}))
    with pytest.raises(UsageError, match="unknown key"):
        revalidate.validate_artifact(art, config=cfg)


# --------------------------------------------------------------------------------------------- baselines
def test_baseline_accuracy_regression_fails(built, tmp_path):
    art = copy_of(built, tmp_path)
    baseline = json.loads((art / "report.json").read_text())
    baseline["task"]["top1"] += 0.02  # the committed run was 2 points better
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    report = revalidate.validate_artifact(art, baseline=path)
    checks = by_name(report)
    assert not checks["baseline.top1"]["passed"]
    assert checks["baseline.top1_agreement"]["passed"] and checks["baseline.logits.rel_l2"]["passed"]
    xml = junit.to_junit(Report.model_validate(report))
    assert 'name="baseline.top1"' in xml and "below limit &gt;= " in xml


def test_baseline_latency_regression_and_noise_guard(built, tmp_path):
    art = copy_of(built, tmp_path)
    current = revalidate.validate_artifact(art)
    for t in current["latency"]:  # as if timed quietly: a 1 % CoV and samples within ±1 % of the median
        t["cov"] = 0.01
        t["samples_ms"] = [t["median_ms"] * f for f in np.linspace(0.99, 1.01, 51)]
    slow_base = json.loads(json.dumps(current))
    for t in slow_base["latency"]:  # a baseline 3x faster, both timed quietly
        t["median_ms"] /= 3
        t["samples_ms"] = [x / 3 for x in t["samples_ms"]]
    checks = {c["name"]: c for c in gate.baseline_checks(current, slow_base, RegressionSettings(), None)}
    lat = [c for n, c in checks.items() if n.startswith("baseline.latency.")]
    assert lat and all(c["status"] == "fail" for c in lat), lat
    # the same slowdown on noisy runs (CoV 60%) is inside the noise guard: 3 x hypot(.6,.6) = 254% > 200%
    for t in slow_base["latency"]:
        t["cov"] = 0.6
    noisy = [t | {"cov": 0.6} for t in current["latency"]]
    checks = gate.baseline_checks(current | {"latency": noisy}, slow_base, RegressionSettings(), None)
    lat = [c for c in checks if c["name"].startswith("baseline.latency.")]
    assert all(c["passed"] and c["noise_guard"] == "cov" for c in lat)
    # another processor: latency is not compared, and the check says why
    other = json.loads(json.dumps(slow_base))
    other["conditions"]["processor"] = "Some Other CPU"
    checks = gate.baseline_checks(current, other, RegressionSettings(), None)
    lat = [c for c in checks if c["name"].startswith("baseline.latency.")]
    assert all(c["status"] == "skip" and "processor differs" in c["message"] for c in lat)


def test_baseline_for_another_precision_is_a_usage_error(built, tmp_path):
    art = copy_of(built, tmp_path)
    baseline = json.loads((art / "report.json").read_text())
    baseline["precision"] = "fp16"
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline))
    result = run_cli("validate", str(art), "--baseline", str(path))
    assert result.returncode == 2 and "baseline is for precision 'fp16'" in result.stderr


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_cli_exit_codes(built, tmp_path):
    art = copy_of(built, tmp_path)
    ok = run_cli("validate", str(art), "--baseline", str(art / "report.json"), "--out", str(tmp_path / "v"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "v" / "report.html").is_file()
    missing = run_cli("validate", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "artifact folder not found" in missing.stderr
    bad = run_cli("validate", str(tmp_path / "v"))  # a folder without manifest.json
    assert bad.returncode == 2 and "manifest.json not found" in bad.stderr


# --------------------------------------------------------------------------------------------- reports
def test_html_is_self_contained_with_plots(built, tmp_path):
    import base64
    import re

    art = copy_of(built, tmp_path)
    report = revalidate.validate_artifact(art)
    report["layer_errors"] = [{"layer": f"conv{i}", "rel_l2": 10.0 ** -i} for i in range(5)]
    from edgedeploy.validate.html import render_html

    page = render_html(Report.model_validate(report))
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [alt for alt, _ in images] == ["error per output", "per-layer INT8 error, local and cumulative",
                                          "latency histogram and CDF"]
    for _, b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page and "<script" not in page
    md = (reports(art) / "report.md").read_text()
    assert md.startswith("# edgedeploy validate: digits-mlp → openvino fp32 — PASS")
    assert "## Classification" in md and "top-1 agreement" in md


# --------------------------------------------------------------------------------------------- warnings, labels
@pytest.fixture(scope="module")
def unlabelled(mlp_config, tmp_path_factory):
    """The classifier built (ONNX Runtime fp16) on validation data without `labels`: accuracy cannot be measured."""
    folder = mlp_config.parent
    with np.load(folder / "val.npz") as data:
        np.savez(folder / "unlabelled.npz", x=data["x"])
    spec = load_spec(mlp_config)
    spec = spec.model_copy(update={"target": "onnxruntime", "precision": "fp16", "validation": spec.validation.model_copy(
        update={"data": folder / "unlabelled.npz"})})
    out = tmp_path_factory.mktemp("mlp_unlabelled")
    return out, pipeline.build(spec, out)


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_a_pass_that_measured_no_accuracy_says_so_and_strict_fails_it(unlabelled, tmp_path):
    out, report = unlabelled
    assert report["passed"]
    codes = [w["code"] for w in report["warnings"]]
    assert "accuracy_not_measured" in codes
    assert by_name(report)["top1_drop"]["status"] == "skip"  # the fp16 top-1 budget could not be checked
    top = (out / "report.md").read_text().split("## Checks")[0]
    assert "— PASS with " in top and "> ⚠️ the validation data has no `labels`" in top
    strict = revalidate.validate_artifact(out, out_dir=tmp_path / "strict", strict=True)
    assert not strict["passed"] and strict["strict"]
    failed = [c for c in strict["checks"] if not c["passed"]]
    assert "warning.accuracy_not_measured" in [c["name"] for c in failed]
    assert all(c["origin"] == "strict" for c in failed)
    result = run_cli("validate", str(out), "--out", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr
    verdict = next(line for line in result.stderr.splitlines() if line.startswith("PASS"))
    assert verdict.startswith("PASS with ") and "accuracy not measured" in verdict
    assert len(verdict) > 80 and verdict.endswith("report.md")  # no terminal, yet one line: never wrapped at 80
    assert "warning: the validation data has no `labels`" in result.stderr
    strict_cli = run_cli("validate", str(out), "--out", str(tmp_path / "cli"), "--strict")
    assert strict_cli.returncode == 1 and "warning.accuracy_not_measured" in strict_cli.stderr.splitlines()[-1]


def test_a_precision_the_backend_did_not_run_is_a_warning(built, demo_spec):
    from edgedeploy.validate import notices

    report = {**built[1], "conditions": {**built[1]["conditions"], "precision_hint_requested": "f16",
                                         "precision_hint_effective": "f32"}, "precision": "fp16"}
    (w,) = notices.precision_not_as_requested(report, demo_spec)
    assert w["title"] == "ran in f32, not f16" and "fp16 artifact ran in f32" in w["message"]


def test_too_few_calibration_samples_is_a_warning(built, demo_spec):
    from edgedeploy.validate import notices

    report = {**built[1], "precision": "int8", "precision_stage": {"calibration": {"size": 1}}}
    (w,) = notices.calibration_too_small(report, demo_spec)
    assert w["title"] == "1 calibration sample" and "fewer than calibration.min_samples (100)" in w["message"]
    report["precision_stage"]["calibration"]["size"] = 300
    assert notices.calibration_too_small(report, demo_spec) == []


@pytest.mark.parametrize("key, layout", [
    ("labels", lambda y: y), ("labels", lambda y: y[:, None]), ("targets", lambda y: y),
    ("labels", lambda y: np.eye(10, dtype=np.uint8)[y]), ("labels", lambda y: y.astype(np.float32)),
], ids=["indices", "column", "as-targets", "one-hot", "float-indices"])
def test_classification_labels_in_any_usual_layout(tmp_path, key, layout):
    from edgedeploy.config import ValidationSettings
    from edgedeploy.validate.evaluate import load_labels

    y = np.arange(20) % 10
    np.savez(tmp_path / "v.npz", x=np.zeros((20, 64), np.float32), **{key: layout(y)})
    labels = load_labels(ValidationSettings(data=tmp_path / "v.npz", task="classification"), 20)
    assert labels.dtype == np.int64 and labels.tolist() == y.tolist()


@pytest.mark.parametrize("array, expected", [
    (np.zeros((20, 6), np.float32), "the detection layout"),
    (np.full(20, 0.5), "fractional"),
    (np.array(["cat"] * 20), "only bool, integer and floating-point arrays are read"),
    (np.zeros((20, 2, 2)), "one class index per sample"),
    (-np.ones(20), "negative class index"),
    (np.zeros(5), "5 entries for 20 samples"),
])
def test_classification_labels_in_another_layout_are_one_clear_error(tmp_path, array, expected):
    from edgedeploy.config import ValidationSettings
    from edgedeploy.validate.evaluate import load_labels

    np.savez(tmp_path / "v.npz", x=np.zeros((20, 64), np.float32), targets=array)
    with pytest.raises(UsageError, match=expected) as info:
        load_labels(ValidationSettings(data=tmp_path / "v.npz", task="classification"), 20)
    assert ("`targets`" in info.value.message or "'targets'" in info.value.message) and "v.npz" in info.value.message


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_labels_stored_as_targets_build_through_the_cli(mlp_config, tmp_path):
    """The newcomer's layout: classification labels under `targets` (was `internal error: IndexError`)."""
    folder = mlp_config.parent
    with np.load(folder / "val.npz") as data:
        np.savez(tmp_path / "t.npz", x=data["x"], targets=data["labels"])
    config = yaml.safe_load(mlp_config.read_text())
    config["model"]["onnx"] = str(folder / "mlp.onnx")
    config["validation"].update(data="t.npz", latency={"batch_sizes": [1], "warmup": 1, "iterations": 3})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("build", str(tmp_path / "t.yaml"), "--target", "onnxruntime", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["task"]["top1"] > 0.9
    out_of_range = tmp_path / "bad.npz"
    np.savez(out_of_range, x=np.zeros((8, 64), np.float32), labels=np.full(8, 12))
    config["validation"]["data"] = str(out_of_range)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("build", str(tmp_path / "t.yaml"), "--target", "onnxruntime", "--out", str(tmp_path / "o2"))
    assert result.returncode == 2 and "class index 12" in result.stderr and "internal error" not in result.stderr
