"""Backends by name. Importing this package imports no SDK."""

from __future__ import annotations

from edgedeploy.backends.base import Backend, BuildResult, Runner
from edgedeploy.errors import EdgeDeployError, UsageError


def get_backend(name: str) -> Backend:
    """The backend for a target name, with its SDK checked; a missing SDK is one clear line."""
    if name == "onnxruntime":
        from edgedeploy.backends.onnxruntime import OnnxRuntimeBackend as cls
    elif name == "openvino":
        from edgedeploy.backends.openvino import OpenVINOBackend as cls
    elif name == "trt":
        from edgedeploy.backends.tensorrt import TensorRTBackend as cls
    else:
        raise UsageError(f"unknown target {name!r}", fix="use one of: openvino, onnxruntime, trt")
    backend = cls()
    if (hint := backend.missing()) is not None:
        raise EdgeDeployError(hint)
    return backend


__all__ = ["Backend", "BuildResult", "Runner", "get_backend"]
