"""`model.onnx: file.onnx`: an ONNX model as it is, read without trusting it (external data confined to its folder,
the ONNX checker) and checked against the config and ONNX Runtime's operators before anything runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from edgedeploy import fileio
from edgedeploy.config import BuildSpec
from edgedeploy.graph.optimize import load_model
from edgedeploy.onnx_checks import check_io, check_operators
from edgedeploy.ort_runner import kernel_ops
from edgedeploy.sources.kind import ModelSourceKind


def record(spec: BuildSpec) -> dict[str, Any]:
    source_file = Path(spec.model.onnx)
    return {"kind": "onnx", "file": str(source_file), "sha256": fileio.sha256_file(source_file)}


def read_onnx(spec: BuildSpec) -> onnx.ModelProto:
    path = Path(spec.model.onnx)
    model = load_model(path)
    check_io(model, spec, path)
    check_operators(model, path, kernel_ops())
    return model


KIND = ModelSourceKind("onnx", record=record, reference="ONNX Runtime on the given ONNX", read_onnx=read_onnx)

__all__ = ["KIND"]
