"""Backends by name. Importing this package imports no SDK: each backend imports its own inside its methods."""

from __future__ import annotations

from edgedeploy.backends.base import Backend, BuildResult, Runner
from edgedeploy.backends.onnxruntime import OnnxRuntimeBackend
from edgedeploy.backends.openvino import OpenVINOBackend
from edgedeploy.backends.tensorrt import TensorRTBackend
from edgedeploy.errors import EdgeDeployError, UsageError

_BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVINOBackend, "trt": TensorRTBackend}


def get_backend(name: str) -> Backend:
    """The backend for a target name, with its SDK checked; a missing SDK is one clear line."""
    if name not in _BACKENDS:
        raise UsageError(f"unknown target {name!r}", fix="use one of: openvino, onnxruntime, trt")
    backend = _BACKENDS[name]()
    if (hint := backend.missing()) is not None:
        raise EdgeDeployError(hint)
    return backend


__all__ = ["Backend", "BuildResult", "Runner", "get_backend"]
