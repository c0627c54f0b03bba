"""Plan manifests (`model.plan.json`) are read from files anyone may have edited: every malformed one is one clear
UsageError naming the file and what to do (through `read_manifest`, `load_plan` and `edgedeploy inspect`), never
another exception."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgedeploy import fileio
from edgedeploy.backends import trt_manifest
from edgedeploy.backends.tensorrt import load_plan
from edgedeploy.errors import UsageError

REPO = Path(__file__).resolve().parents[3]


def good_manifest(plan_bytes: bytes) -> dict:
    return {
        "schema": trt_manifest.MANIFEST_SCHEMA, "edgedeploy": "0.1.0", "plan": "model.plan",
        "plan_sha256": fileio.sha256_bytes(plan_bytes), "plan_bytes": len(plan_bytes), "onnx": "deploy.onnx",
        "onnx_sha256": "1" * 64, "precision": "fp16", "route": "fp32 deploy graph",
        "tensorrt": {"version": "10.3.0.26", "major": 10},
        "gpu": {"name": "Orin", "compute_capability": "8.7", "cuda_driver": "12.6"},
        "platform": {"machine": "aarch64", "jetson": True},
        "compatibility": {"hardware": "none", "version_compatible": False},
        "device": {"type": "GPU", "dla_core": None, "gpu_fallback": False, "gpu_fallback_layers": []},
        "flags": {"strongly_typed": False, "network": [], "builder": ["FP16"], "cleared": [], "parser": []},
        "io_tensors": [{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 64, 64],
                        "profile": {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]}}],
        "build": {"seconds": 1.5, "builder_optimization_level": 3, "workspace_bytes": None, "timing_cache": None,
                  "engine_layers": 2},
        "calibration": None, "plan_description": {},
    }


def set_path(m: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = m
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return m


DELETE = object()


@pytest.fixture
def folder(tmp_path) -> Path:
    plan = tmp_path / "trt" / "model.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"not an engine")
    (tmp_path / "trt" / "model.plan.json").write_text(json.dumps(good_manifest(plan.read_bytes())))
    return tmp_path


def test_a_good_manifest_reads_back_with_every_field(folder):
    m, path = trt_manifest.read_manifest(folder)
    assert path == folder / "trt" / "model.plan.json"
    assert m == good_manifest(b"not an engine")


FIELD_FAULTS = [
    ("plan_bytes", "13", "`plan_bytes`: Input should be a valid integer"),
    ("compatibility.version_compatible", "yes", "`compatibility.version_compatible`: Input should be a valid boolean"),
    ("compatibility.hardware", "turing_plus", "`compatibility.hardware`"),
    ("tensorrt", DELETE, "`tensorrt`: Field required"),
    ("tensorrt.version", 10.3, "`tensorrt.version`: Input should be a valid string"),
    ("tensorrt.version", "ten", "`tensorrt.version`: Value error, must look like 10.3.0.30"),
    ("gpu.compute_capability", "sm_87", "`gpu.compute_capability`: Value error, must look like 8.7"),
    ("plan", "../../etc/passwd", "`plan`: Value error, must be a file name next to the manifest"),
    ("plan_sha256", "abc", "`plan_sha256`: Value error, must be 64 hex digits"),
    ("io_tensors", {"images": 1}, "`io_tensors`: Input should be a valid list"),
    ("io_tensors.0.shape", [-1, "3"], "`io_tensors.0.shape.1`: Input should be a valid integer"),
    ("io_tensors.0.profile.min", None, "`io_tensors.0.profile.min`: Input should be a valid list"),
    ("device.type", "TPU", "`device.type`"),
    ("device.dla_core", -1, "`device.dla_core`: Input should be greater than or equal to 0"),
    ("precision", "bf16", "`precision`"),
    ("flags", [], "`flags`: Input should be a valid dictionary"),
]


@pytest.mark.parametrize("field, value, message", FIELD_FAULTS, ids=[f[0] for f in FIELD_FAULTS])
def test_a_wrongly_typed_or_missing_field_is_one_clear_error(folder, field, value, message):
    mpath = folder / "trt" / "model.plan.json"
    mpath.write_text(json.dumps(set_path(good_manifest(b"not an engine"), field, value)))
    with pytest.raises(UsageError) as e:
        trt_manifest.read_manifest(folder)
    assert message in e.value.message and e.value.where == str(mpath)
    assert "rebuild the plan" in e.value.message


TEXT_FAULTS = {
    "truncated": lambda text: text[: len(text) // 2],
    "nan": lambda text: text.replace('"seconds": 1.5', '"seconds": NaN'),
    "infinity": lambda text: text.replace('"plan_bytes": 13', '"plan_bytes": Infinity'),
    "not json": lambda text: "plan: model.plan\n",
    "a list": lambda text: "[1, 2, 3]",
    "another schema": lambda text: text.replace("edgedeploy.trt-manifest/1", "edgedeploy.trt-manifest/9"),
    "empty": lambda text: "",
    "deep nesting": lambda text: "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("fault", TEXT_FAULTS, ids=list(TEXT_FAULTS))
def test_an_unreadable_manifest_is_one_clear_error(folder, fault):
    mpath = folder / "trt" / "model.plan.json"
    mpath.write_text(TEXT_FAULTS[fault](mpath.read_text()))
    with pytest.raises(UsageError) as e:
        trt_manifest.read_manifest(folder)
    assert e.value.where == str(mpath)
    assert "manifest" in e.value.message and "rebuild the plan" in e.value.message


def test_bytes_that_are_not_utf8_are_one_clear_error(folder):
    mpath = folder / "trt" / "model.plan.json"
    mpath.write_bytes(b'{"schema": "\xff\xfe"}')
    with pytest.raises(UsageError, match="unreadable manifest"):
        trt_manifest.read_manifest(folder)


def test_load_plan_and_cli_inspect_refuse_a_malformed_manifest_in_one_line(folder):
    mpath = folder / "trt" / "model.plan.json"
    mpath.write_text(json.dumps(set_path(good_manifest(b"not an engine"), "device", "GPU")))
    with pytest.raises(UsageError, match="`device`: Input should be a valid dictionary"):
        load_plan(folder / "trt" / "model.plan")  # refused before any TensorRT import
    result = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "inspect", str(folder)], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "malformed manifest: `device`" in result.stderr and str(mpath) in result.stderr
