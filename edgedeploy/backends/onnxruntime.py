"""ONNX Runtime on the CPU: the reference backend every CI run exercises."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import fileio
from edgedeploy.backends.base import BuildResult
from edgedeploy.errors import UsageError


class OnnxRuntimeBackend:
    name = "onnxruntime"
    precisions = ("fp32",)

    def missing(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "ONNX Runtime is not installed: pip install onnxruntime"
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str, settings: Any = None) -> BuildResult:
        if precision not in self.precisions:
            raise UsageError(f"the onnxruntime target builds {', '.join(self.precisions)}, not {precision}",
                             fix="use --target openvino for fp16 (an fp16 ONNX graph arrives with the precision work)")
        artifact = out_dir / "model.onnx"
        fileio.write_bytes(artifact, Path(onnx_path).read_bytes())
        return BuildResult(artifact=artifact, files=[artifact], info={"precision": precision})

    def load(self, build: BuildResult, settings: Any = None, threads: int | None = None) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(build.artifact, threads)


class OnnxRuntimeRunner:
    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.conditions = {
            "backend": "onnxruntime",
            "version": ort.__version__,
            "device": "CPU",
            "execution_provider": "CPUExecutionProvider",
            "threads": threads or os.cpu_count(),
        }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
