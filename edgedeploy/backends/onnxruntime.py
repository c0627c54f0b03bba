"""ONNX Runtime on the CPU: the reference backend every CI run exercises.

fp16 runs the precision stage's fp16-cast graph (deploy.fp16.onnx), int8 its Q/DQ graph (deploy.int8.qdq.onnx,
which ORT fuses into QLinearConv int8 kernels); build() is given that file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.backends.base import BuildResult, TargetKind
from edgedeploy.errors import UsageError
from edgedeploy.ort_runner import OnnxRuntimeRunner, kernel_ops, ort_error
from edgedeploy.precision.stage import PrecisionRoute


class OnnxRuntimeBackend:
    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")

    def missing(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "ONNX Runtime is not installed: pip install onnxruntime"
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str, settings: Any = None) -> BuildResult:
        if precision not in self.precisions:
            raise UsageError(f"the onnxruntime target builds {', '.join(self.precisions)}, not {precision}")
        artifact = out_dir / "model.onnx"
        fileio.write_bytes(artifact, Path(onnx_path).read_bytes())
        return BuildResult(artifact=artifact, files=[artifact], info={"precision": precision})

    def load(self, build: BuildResult, settings: Any = None, threads: int | None = None) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(build.artifact, threads)



def _route(spec) -> PrecisionRoute:
    return PrecisionRoute(fp16="fp16-cast", int8="qdq", qdq_flavour="onnxruntime")


def _fp16_candidate(spec, cpu_flags) -> tuple[str, str | None, str | None]:
    return "fp16", ("ONNX Runtime's CPU provider has no fp16 convolution kernels on x86: an fp16 graph runs "
                    "slower"), None


TARGET = TargetKind("onnxruntime", OnnxRuntimeBackend, precision_route=_route, fp16_candidate=_fp16_candidate)

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeRunner", "TARGET", "kernel_ops", "ort_error"]
