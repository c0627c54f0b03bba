"""Shared, session-cached builds of the real demo for the precision tests (each build is made once per run).

EDGEDEPLOY_DEMO_YAML points the tests at another copy of the demo config (e.g. while the bundled weights are being
retrained); by default the bundled edgedeploy/demo/demo.yaml with calibration/demo."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from edgedeploy import pipeline
from edgedeploy.config import BuildSpec, ModelSource, demo_spec_path, load_spec

_BUILDS: dict[tuple, tuple[Path, dict]] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="edgedeploy-precision-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)
CALIB_SUBSET = 64  # keeps NNCF and ORT calibration to seconds; the full 300 are measured in docs/precision.md


def demo_spec() -> BuildSpec:
    return load_spec(os.environ.get("EDGEDEPLOY_DEMO_YAML") or demo_spec_path())


def quick(spec: BuildSpec, **updates) -> BuildSpec:
    """Short latency run, 64 calibration samples, fast bias correction."""
    lat = spec.validation.latency.model_copy(update={"warmup": 2, "iterations": 5, "batch_sizes": [1]})
    calibration = spec.calibration.model_copy(update={"subset_size": CALIB_SUBSET})
    int8 = spec.int8.model_copy(update={"fast_bias_correction": True})
    return spec.model_copy(update={"validation": spec.validation.model_copy(update={"latency": lat}),
                                   "calibration": calibration, "int8": int8, **updates})


def built(target: str, precision: str = "int8") -> tuple[Path, dict]:
    """(out_dir, report) of a quick demo build, made once per test session. The onnxruntime int8 build exports the
    PyTorch model; the others start from its raw.onnx (same graph, reference from ONNX Runtime) to save the export."""
    key = (target, precision)
    if key not in _BUILDS:
        out = _ROOT / f"{target}-{precision}"
        spec = demo_spec()
        if key != ("onnxruntime", "int8"):
            first = built("onnxruntime", "int8")[0]
            spec = spec.model_copy(update={"model": ModelSource(onnx=first / "raw.onnx")})
        _BUILDS[key] = (out, pipeline.build(quick(spec, target=target, precision=precision), out))
    return _BUILDS[key]
