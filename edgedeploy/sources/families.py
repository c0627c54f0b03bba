"""The package sources (timm, torchvision, Ultralytics, transformers): each module's `load(model, trust_code) ->
Loaded` builds the model ready to export, and `resolve` fills a spec's inputs and preprocessing from what the
package says, key by key under what the config gives (the config wins)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.config import PACKAGE_SOURCES, BuildSpec, InputSpec, ModelSource, Preprocess
from edgedeploy.sources.base import Loaded
from edgedeploy.sources.kind import ModelSourceKind


FAMILIES: dict[str, str] = {name: f"edgedeploy.sources.{name}" for name in PACKAGE_SOURCES}  # imported on use


_last: tuple[str, Loaded] | None = None  # the one most recently loaded: resolve and export share it


def load(model: ModelSource, trust_code: bool = False) -> Loaded:
    """The model built by its package (the last one is kept, so the spec's resolution and the export load once)."""
    global _last
    family = model.package()
    if family is None:
        raise ValueError("not a package source")
    key = json.dumps([model.model_dump(mode="json"), trust_code], sort_keys=True)
    if _last is None or _last[0] != key:
        _last = None  # release the previous model before building the next
        loaded = importlib.import_module(FAMILIES[family]).load(model, trust_code)
        loaded.module.output_names = list(loaded.output_names)  # what export.export_onnx names the graph outputs
        _last = (key, loaded)
    return _last[1]


def resolve(spec: BuildSpec, trust_code: bool = False) -> BuildSpec:
    """The spec with what the package source knows filled in: the input (when `inputs` is left out), and the
    preprocessing keys the config does not set. Idempotent; a factory or ONNX spec is returned as it is."""
    if spec.model.package() is None:
        return spec
    info = load(spec.model, trust_code).info
    update: dict[str, Any] = {}
    if not spec.inputs:
        c, h, w = info.input_shape
        update["inputs"] = [InputSpec(name=info.input_name, shape=["batch", c, h, w])]
    given = spec.preprocess.model_dump(exclude_unset=True) if "preprocess" in spec.model_fields_set else {}
    update["preprocess"] = Preprocess(**{**info.preprocess, **given})
    if info.task == "classification" and "task" not in spec.validation.model_fields_set:
        # top-1 agreement with the reference in every report (the other tasks need labelled data)
        update["validation"] = spec.validation.model_copy(update={"task": "classification"})
    return spec.model_copy(update=update)


def record(model: ModelSource, trust_code: bool = False) -> dict[str, Any]:
    """What the report and the bundle manifest keep about a package source."""
    family = model.package()
    return {"kind": family, "name": str(getattr(model, family)), "kwargs": model.kwargs,
            **({"weights": model.weights} if model.weights else {}), **load(model, trust_code).info.record()}


def weights_sha256(model: ModelSource) -> str | None:
    """sha256 of what a package source reads besides the package: the checkpoint, the Ultralytics .pt / yaml, or
    the transformers folder's config, preprocessor config and safetensors files (by name); None: random weights."""
    path = model.checkpoint or model.ultralytics
    if path is not None and Path(path).is_file():
        return fileio.sha256_file(Path(path))
    if model.transformers is not None:
        folder = Path(model.transformers)
        files = sorted(f for f in [folder / "config.json", folder / "preprocessor_config.json",
                                   *folder.glob("*.safetensors")] if f.is_file())
        return fileio.sha256_bytes("".join(f"{f.name}:{fileio.sha256_file(f)}\n" for f in files).encode())
    return None


def package_versions(model: ModelSource) -> dict[str, str | None]:
    """The versions a package source's model depends on (its package; transformers and Ultralytics: torchvision
    too where installed), for the stage cache's key."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in (model.package(), "torchvision"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# The spec-level view of a package source: the fields of its ModelSourceKind (load, record, preprocess, class_names,
# task, decoder).
def load_module(spec: BuildSpec, trust_code: bool = False):
    return load(spec.model, trust_code).module


def source_record(spec: BuildSpec) -> dict[str, Any]:
    checkpoint = spec.model.checkpoint
    return {**record(spec.model), "checkpoint": str(checkpoint) if checkpoint else None,
            "sha256": weights_sha256(spec.model)}


def preprocess(spec: BuildSpec) -> Preprocess:
    return Preprocess(**load(spec.model).info.preprocess)


def class_names(spec: BuildSpec) -> list[str] | None:
    return load(spec.model).info.class_names


def task(spec: BuildSpec) -> str | None:
    return load(spec.model).info.task


def decoder(spec: BuildSpec) -> str | None:
    return load(spec.model).info.decoder


def package_kind(name: str) -> ModelSourceKind:
    """The registry entry of the package source `name` (declared as KIND in sources/<name>.py)."""
    return ModelSourceKind(name, record=source_record, reference="PyTorch eager (fp32)", load=load_module,
                           preprocess=preprocess, class_names=class_names, task=task, decoder=decoder)
