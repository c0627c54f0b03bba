"""`model.factory: package.module:function` (with `kwargs` and an optional `checkpoint`): a PyTorch module built by
the user's function, exported with torch (edgedeploy.export, which imports torch inside its functions)."""

from __future__ import annotations

from typing import Any

from edgedeploy import export, fileio
from edgedeploy.config import BuildSpec
from edgedeploy.sources.kind import ModelSourceKind


def record(spec: BuildSpec) -> dict[str, Any]:
    checkpoint = spec.model.checkpoint
    return {"kind": "pytorch", "factory": spec.model.factory, "kwargs": spec.model.kwargs,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "sha256": fileio.sha256_file(checkpoint) if checkpoint else None}


KIND = ModelSourceKind("factory", record=record, reference="PyTorch eager (fp32)", load=export.build_module)

__all__ = ["KIND"]
