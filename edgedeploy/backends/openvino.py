"""OpenVINO IR (FP32/FP16) for Intel/AMD CPUs and iGPUs.

The CPU plugin silently runs an "FP32" IR in bf16 on CPUs that support it, so every compile pins
INFERENCE_PRECISION_HINT and the runner reports the value the plugin actually uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.backends.base import BuildResult
from edgedeploy.config import OpenVINOSettings
from edgedeploy.errors import EdgeDeployError, UsageError

_DEFAULT_HINT = {"fp32": "f32", "fp16": "f16"}


class OpenVINOBackend:
    name = "openvino"
    precisions = ("fp32", "fp16")

    def missing(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "OpenVINO is not installed: pip install openvino"
        return None

    def build(self, onnx_path: Path, out_dir: Path, precision: str,
              settings: OpenVINOSettings | None = None) -> BuildResult:
        import openvino as ov

        if precision not in self.precisions:
            raise UsageError(f"the openvino target builds {', '.join(self.precisions)} here, not {precision}")
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as e:
            raise EdgeDeployError(f"OpenVINO cannot convert the model: {str(e).strip().splitlines()[-1]}",
                                  where=str(onnx_path)) from None
        staged = fileio.staging_dir(out_dir)
        ov.save_model(model, str(staged / "model.xml"), compress_to_fp16=(precision == "fp16"))
        for name in ("model.xml", "model.bin"):
            with open(staged / name, "rb") as f:
                os.fsync(f.fileno())
        fileio.replace_dir(staged, out_dir)
        xml = out_dir / "model.xml"
        return BuildResult(artifact=xml, files=[xml, out_dir / "model.bin"],
                           info={"precision": precision, "weights": "fp16" if precision == "fp16" else "fp32",
                                 "openvino_version": ov.get_version()})

    def load(self, build: BuildResult, settings: OpenVINOSettings | None = None,
             threads: int | None = None) -> OpenVINORunner:
        settings = settings or OpenVINOSettings()
        precision = build.info.get("precision", "fp32")
        hint = settings.inference_precision if settings.inference_precision != "auto" else _DEFAULT_HINT[precision]
        return OpenVINORunner(build.artifact, settings.device, hint, threads)


class OpenVINORunner:
    def __init__(self, xml: Path, device: str, precision_hint: str, threads: int | None = None):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(str(xml), device, config)
        except Exception as e:
            raise EdgeDeployError(f"OpenVINO cannot compile the model for {device}: "
                                  f"{str(e).strip().splitlines()[-1]}", where=str(xml)) from None
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.output_names = [p.get_any_name() for p in self.compiled.outputs]
        self.conditions = {
            "backend": "openvino",
            "version": ov.get_version(),
            "device": device,
            "precision_hint_requested": precision_hint,
            "precision_hint_effective": self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or threads or os.cpu_count(),
            "performance_hint": "LATENCY",
        }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(feeds)
        return {port.get_any_name(): np.array(value, copy=True) for port, value in results.items()}
