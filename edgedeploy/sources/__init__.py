"""Where a model comes from: a factory, an ONNX file, or a model named in the package it was trained with (timm,
torchvision, Ultralytics, Hugging Face transformers: edgedeploy.sources.families).

`SOURCES` maps each `model.<name>` key of the config to its ModelSourceKind (edgedeploy.sources.kind), declared as
`KIND` in sources/<name>.py. Adding a source is one module and one line here (docs/architecture.md)."""

from __future__ import annotations

from edgedeploy.config import BuildSpec
from edgedeploy.sources import factory, onnx
from edgedeploy.sources.kind import ModelSourceKind

SOURCES: dict[str, ModelSourceKind] = {k.name: k for k in (
    factory.KIND,
    onnx.KIND,
)}


def source_of(spec: BuildSpec) -> ModelSourceKind:
    """The source the spec's `model:` names (the config allows exactly one)."""
    return next(kind for name, kind in SOURCES.items() if getattr(spec.model, name, None) is not None)


__all__ = ["ModelSourceKind", "SOURCES", "source_of"]
