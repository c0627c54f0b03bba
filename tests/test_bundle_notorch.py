"""The device install: a fresh virtual environment with `pip install edgedeploy` and no export extra (so no
PyTorch), which builds and validates a bundle for OpenVINO and ONNX Runtime while any torch import is blocked.

Slow (the install alone took 59 s on 2 busy cores, 23 s of CPU: pip unpacking OpenVINO, ONNX Runtime, SciPy, NNCF
from its cache): `pytest -m "not slow"` leaves it out; CI runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notorch_helpers import assert_no_torch, run_without_torch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    """A venv with edgedeploy installed from a copy of this checkout, without the export extra."""
    base = tmp_path_factory.mktemp("device")
    source = base / "src"  # a copy, so the build writes no build/ or egg-info into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "edgedeploy", source / "edgedeploy", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "--no-compile",  # byte-compiling every installed module doubles the time; imports compile
                          "-c", str(source / "constraints.txt"), str(source)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    print(f"\nno-torch device venv: python -m venv + pip install in {time.perf_counter() - start:.1f} s")
    return venv


def test_device_install_has_no_torch(device_venv):
    python = str(device_venv / "bin/python")
    probe = subprocess.run([python, "-c", "import importlib.util, edgedeploy, edgedeploy.graph.optimize; "
                                          "print(importlib.util.find_spec('torch') is None, "
                                          "importlib.util.find_spec('onnxscript') is None, edgedeploy.__file__)"],
                           capture_output=True, text=True, cwd=device_venv)
    absent, no_onnxscript, location = probe.stdout.split()
    assert absent == "True", "torch is installed in the device venv: the base install must not pull it"
    assert no_onnxscript == "True", "onnxscript is installed in the device venv: the graph passes need onnx-ir alone"
    assert location.startswith(str(device_venv)), location  # the installed package, not this checkout
    assert subprocess.run([str(device_venv / "bin/edgedeploy"), "--help"], capture_output=True).returncode == 0


@pytest.mark.parametrize("target, precision", [("openvino", "fp32"), ("onnxruntime", "fp16")])
def test_build_and_validate_on_the_device(device_venv, demo_bundle, tmp_path, target, precision):
    python = device_venv / "bin/python"
    built, record = run_without_torch(python, "build", str(demo_bundle), "--target", target, "--precision", precision,
                                      "--out", "out", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert_no_torch(record)
    assert record["package"].startswith(str(device_venv))
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["passed"] and report["target"] == target and report["precision"] == precision
    assert report["task"]["map50"] >= 0.9
    assert json.loads((tmp_path / "out/manifest.json").read_text())["libraries"]["torch"] is None

    validated, record = run_without_torch(python, "validate", "out", "--junit", "junit.xml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert_no_torch(record)
    again = json.loads((tmp_path / "out-validate/report.json").read_text())
    assert again["passed"] and again["libraries"]["torch"] is None
    assert 'failures="0"' in (tmp_path / "junit.xml").read_text()
