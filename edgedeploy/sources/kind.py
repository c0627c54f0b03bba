"""What a model source declares (edgedeploy.sources.SOURCES): how the pipeline gets a model to export (a torch
module, torch imported only inside `load`) or a ready ONNX model, what the report records of it, and what it knows
of the model besides its weights (preprocessing, class names, task, output decoder: None when it knows nothing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx

from edgedeploy.config import BuildSpec, Preprocess


def knows_nothing(spec: BuildSpec) -> None:
    return None


@dataclass(frozen=True)
class ModelSourceKind:
    """One `model.<name>` key. Exactly one of `load` (spec, trust_code → torch.nn.Module in eval mode, exported by
    edgedeploy.export; its reference is PyTorch eager) and `read_onnx` (spec → the checked ONNX model; its reference
    is ONNX Runtime on it) is set. `record`: report.json's / manifest.json's `source` (without `reference`);
    `reference`: what the reference outputs are, in words."""

    name: str
    record: Callable[[BuildSpec], dict[str, Any]]
    reference: str
    load: Callable[[BuildSpec, bool], Any] | None = None
    read_onnx: Callable[[BuildSpec], onnx.ModelProto] | None = None
    preprocess: Callable[[BuildSpec], Preprocess | None] = knows_nothing
    class_names: Callable[[BuildSpec], list[str] | None] = knows_nothing
    task: Callable[[BuildSpec], str | None] = knows_nothing
    decoder: Callable[[BuildSpec], str | None] = knows_nothing


__all__ = ["ModelSourceKind", "knows_nothing"]
