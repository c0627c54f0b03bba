"""Issue 24 (1): a baseline is bound to what it measured. A report carries the model's identity (deploy graph sha256
and I/O signature, task, validation-data hash, target, precision); `validate --baseline` refuses a baseline of
another model, task, output set or data set in one line naming the difference, unless `--accept-model-change`
(recorded); a skipped baseline check is a warning, a failure under --strict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgedeploy import pipeline
from edgedeploy.config import load_spec

from cli_helpers import error_line, run_cli
from test_validate_gate import make_classifier

DEMO_BASELINE = Path(__file__).parent / "baselines" / "demo-openvino-fp32.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    out = folder / "mlp-ov32"
    report = pipeline.build(load_spec(make_classifier(folder)).model_copy(update={"target": "openvino"}), out)
    return out, report


def _baseline(tmp_path: Path, report: dict, change=None) -> Path:
    baseline = json.loads(json.dumps(report))
    if change:
        change(baseline)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    return path


def test_report_carries_the_model_identity(built):
    out, report = built
    identity = report["identity"]
    assert identity["inputs"] == {"x": ["FLOAT", ["batch", 64]]}
    assert identity["outputs"] == {"logits": ["FLOAT", ["batch", 10]]}
    assert identity["task"] == "classification" and identity["target"] == "openvino"
    assert identity["precision"] == "fp32" and len(identity["deploy_sha256"]) == 64
    assert len(identity["validation_data_sha256"]) == 64


def test_another_models_baseline_is_refused_naming_the_difference(built, tmp_path):
    """The issue's case: the classifier validated against the demo detector's committed baseline passed (its mAP
    checks vanished, latency compared with another network); now it is one usage line."""
    out, _ = built
    done = run_cli("validate", str(out), "--baseline", str(DEMO_BASELINE), "--out", str(tmp_path / "v"))
    assert done.returncode == 2, done.stdout + done.stderr
    line = error_line(done)
    assert "the baseline measured another output set" in line and "'pred'" in line and "'logits'" in line


@pytest.mark.parametrize("field, says", [
    ("deploy_sha256", "model (deploy graph)"), ("validation_data_sha256", "validation data"), ("task", "task")])
def test_a_changed_identity_is_refused_and_accept_model_change_records_it(built, tmp_path, field, says):
    out, report = built
    path = _baseline(tmp_path, report, lambda b: b["identity"].update({field: "detection" if field == "task"
                                                                       else "0" * 64}))
    done = run_cli("validate", str(out), "--baseline", str(path), "--out", str(tmp_path / "v"))
    assert done.returncode == 2 and f"the baseline measured another {says}" in error_line(done), done.stderr
    accepted = run_cli("validate", str(out), "--baseline", str(path), "--accept-model-change",
                       "--out", str(tmp_path / "v"))
    assert accepted.returncode == 0, accepted.stderr
    written = json.loads((tmp_path / "v" / "report.json").read_text())
    assert says in written["baseline"]["model_change_accepted"]
    assert "baseline_model_changed" in [w["code"] for w in written["warnings"]]


def test_the_same_models_baseline_is_compared(built, tmp_path):
    out, report = built
    done = run_cli("validate", str(out), "--baseline", str(_baseline(tmp_path, report)), "--out", str(tmp_path / "v"))
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "v" / "report.json").read_text())
    assert written["baseline"]["identity"] == "same"
    assert written["identity"] == report["identity"]


def test_a_skipped_baseline_check_is_a_warning_and_fails_strict(built, tmp_path):
    out, report = built

    def other_batches(b):
        for t in b["latency"]:
            t["batch"] += 100  # no timing at the artifact's batch sizes: the latency checks are skipped

    path = _baseline(tmp_path, report, other_batches)
    done = run_cli("validate", str(out), "--baseline", str(path), "--out", str(tmp_path / "v"))
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "v" / "report.json").read_text())
    assert "baseline_check_skipped" in [w["code"] for w in written["warnings"]]
    strict = run_cli("validate", str(out), "--baseline", str(path), "--strict", "--out", str(tmp_path / "s"))
    assert strict.returncode == 1, strict.stderr
