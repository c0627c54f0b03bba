"""Issue 24 (3): a bundle names no place on the machine that made it. bundle.json held the checkpoint's and the
calibration folder's workstation paths, optimize.json the absolute paths of raw.onnx and deploy.onnx."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import edgedeploy

RECORDS = ("bundle.json", "optimize.json", "spec.json")


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_bundle_records_hold_no_workstation_path(demo_bundle):
    prefixes = {str(Path.home()), tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()),
                str(Path(edgedeploy.__file__).resolve().parents[1]), str(demo_bundle.parent)}
    for name in RECORDS:
        text = (demo_bundle / name).read_text()
        found = [p for p in prefixes if p in text]
        assert not found, f"{name} names {found}"
        absolute = [s for s in _strings(json.loads(text)) if os.path.isabs(s)]
        assert not absolute, f"{name}: {absolute}"
    manifest = json.loads((demo_bundle / "bundle.json").read_text())
    assert manifest["source"]["checkpoint"] == "weights.pt" and len(manifest["source"]["sha256"]) == 64
    optimize = json.loads((demo_bundle / "optimize.json").read_text())
    assert (optimize["input_path"], optimize["output_path"]) == ("raw.onnx", "deploy.onnx")
