"""TensorRT (10 on JetPack 6, 11 strongly typed). Until the engine builder lands, this backend only checks for the SDK
so `--target trt` fails with what to install, never silently falling back."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from edgedeploy.backends.base import BuildResult, Runner
from edgedeploy.errors import EdgeDeployError


def install_hint() -> str:
    if platform.machine() == "aarch64":
        return ("TensorRT is not installed: on a Jetson install JetPack's TensorRT packages "
                "(sudo apt install nvidia-tensorrt python3-libnvinfer); pip wheels do not exist there")
    return 'TensorRT is not installed: pip install "edgedeploy[tensorrt]" (the tensorrt wheel; needs an NVIDIA GPU)'


class TensorRTBackend:
    name = "trt"
    precisions = ("fp32", "fp16", "int8")

    def missing(self) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except (ImportError, OSError):  # the PyPI bindings without NVIDIA's libraries raise ImportError on a .so
            return install_hint()
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str, settings: Any = None) -> BuildResult:
        raise EdgeDeployError("the TensorRT engine builder is not implemented yet (tracked in the TensorRT issue)",
                              fix="use --target openvino or --target onnxruntime for now")

    def load(self, build: BuildResult, settings: Any = None, threads: int | None = None) -> Runner:
        raise EdgeDeployError("the TensorRT runner is not implemented yet (tracked in the TensorRT issue)")
