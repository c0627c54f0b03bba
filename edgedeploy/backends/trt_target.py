"""The `trt` target as the pipeline sees it (edgedeploy.backends.base.TargetKind), apart from the TensorRT layers
(tensorrt.py, trt_plan.py, trt_manifest.py, trt_cuda.py, trt_timing.py) it points to."""

from __future__ import annotations

from pathlib import Path

from edgedeploy.backends.base import TargetKind
from edgedeploy.backends.tensorrt import TensorRTBackend
from edgedeploy.config import BuildSpec, TensorRTSettings
from edgedeploy.errors import UsageError
from edgedeploy.precision.stage import PrecisionRoute


def _settings(spec: BuildSpec) -> TensorRTSettings:
    return spec.tensorrt


def _route(spec: BuildSpec) -> PrecisionRoute:
    """Q/DQ in the TensorRT flavour, or TensorRT 10's implicit calibrator on deploy.onnx (tensorrt.int8_route)."""
    calibrator = spec.tensorrt.int8_route == "calibrator"
    return PrecisionRoute(fp16="fp16-cast", int8="backend" if calibrator else "qdq", qdq_flavour="tensorrt",
                          int8_method="TensorRT 10 implicit calibrator (tensorrt.int8_route)",
                          int8_fix="use tensorrt.int8_route: qdq")


def _static_batch_refusal(spec: BuildSpec) -> UsageError | None:
    n = spec.static_batch
    return UsageError("--static-batch builds static ONNX / OpenVINO artifacts; a TensorRT engine gets a fixed batch "
                      "from its optimization profile", where="static_batch",
                      fix=f"set tensorrt.profiles: {{batch: {{min: {n}, opt: {n}, max: {n}}}}}")


def _on_device(spec: BuildSpec, cache_root: Path, bundled_timing_cache: Path | None) -> BuildSpec:
    """A TensorRT build from a bundle keeps its timing cache in the device's cache folder
    (<cache_root>/tensorrt/timing.cache, shared by the device's builds, saved under its lock) and, when the bundle
    carries a cache, combines the bundle's entries into it first (tensorrt.timing_cache_seed)."""
    tensorrt = spec.tensorrt.model_copy(update={"timing_cache": cache_root / "tensorrt" / "timing.cache",
                                                "timing_cache_seed": bundled_timing_cache})
    return spec.model_copy(update={"tensorrt": tensorrt})


TARGET = TargetKind("trt", TensorRTBackend, settings=_settings, precision_route=_route,
                    builds_from_deploy_graph=True, float_latency_reference=False,
                    static_batch_refusal=_static_batch_refusal, on_device=_on_device)

__all__ = ["TARGET"]
