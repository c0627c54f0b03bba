"""The build spec: what to deploy, how to feed it, what to keep, and what counts as correct.

Loaded from YAML (unknown keys are errors, so a typo never silently falls back to a default) and overridden by CLI
flags. Relative paths in a config file are relative to that file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgedeploy.errors import UsageError

Target = Literal["openvino", "onnxruntime", "trt"]
Precision = Literal["fp32", "fp16", "int8"]
DType = Literal["float32", "float16", "uint8", "int8", "int32", "int64"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(_Strict):
    """Either a PyTorch factory (`package.module:function`) with an optional checkpoint, or an ONNX file."""

    factory: str | None = None
    kwargs: dict = Field(default_factory=dict)
    checkpoint: Path | None = None
    onnx: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.factory is None) == (self.onnx is None):
            raise ValueError("give exactly one of model.factory (a PyTorch `module:function`) or model.onnx (a file)")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"model.factory {self.factory!r} must look like `package.module:function`")
        if self.onnx is not None and (self.checkpoint is not None or self.kwargs):
            raise ValueError("model.checkpoint and model.kwargs apply to a PyTorch factory, not to model.onnx")
        return self


class InputSpec(_Strict):
    """A model input; a string dimension (e.g. `batch`) is dynamic, the same name means the same size."""

    name: str
    shape: list[int | str]
    dtype: DType = "float32"

    @field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int | str]) -> list[int | str]:
        if any(isinstance(d, int) and d <= 0 for d in shape):
            raise ValueError(f"static dimensions must be positive, got {shape}")
        return shape


class Preprocess(_Strict):
    """How raw images (uint8 HWC, RGB) become the model input."""

    color: Literal["RGB", "BGR"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    layout: Literal["NCHW", "NHWC"] = "NCHW"


class ExportSettings(_Strict):
    opset: int = Field(18, ge=18, description="torch's dynamo exporter writes opset 18 or newer")
    exporter_optimize: bool = Field(
        True, description="let torch's exporter fold Conv+BN itself (the best deploy graph); off keeps BN unfused"
    )


class OptimizeSettingsSpec(_Strict):
    keep_outputs: list[str] = Field(default_factory=list)
    drop_outputs: list[str] = Field(default_factory=list)
    simplifier: Literal["auto", "onnxsim", "onnxslim", "none"] = "auto"


class DetectionSettings(_Strict):
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    reference_score_thres: float = Field(0.25, description="reference detections above this count as ground truth")


class LatencySettings(_Strict):
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8])
    warmup: int = Field(10, ge=0)
    iterations: int = Field(100, ge=1)
    threads: int | None = Field(None, ge=1, description="inference threads; default: all cores")


class ValidationSettings(_Strict):
    """Real inputs the artifact is checked on: an .npz with `images` (uint8 NHWC, preprocessed here) or `inputs`
    (already model inputs), and for detection `targets` (M,6: image, class, x1, y1, x2, y2)."""

    data: Path | None = None
    samples: int | None = Field(None, ge=1, description="use the first N samples (default: all)")
    task: Literal["detection", "none"] = "none"
    output: str | None = Field(None, description="the output the task metric reads (default: the first)")
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    latency: LatencySettings = Field(default_factory=LatencySettings)


class Thresholds(_Strict):
    """Pass/fail budgets for one precision; None means not checked."""

    max_rel_l2: float | None = None
    min_cosine: float | None = None
    max_map50_drop: float | None = Field(None, description="mAP@0.5 drop vs the PyTorch reference, in mAP units")


def _default_thresholds() -> dict[str, Thresholds]:
    return {
        "fp32": Thresholds(max_rel_l2=1e-5),
        "fp16": Thresholds(max_rel_l2=1e-2, max_map50_drop=0.005),
        "int8": Thresholds(max_map50_drop=0.01),
    }


class OpenVINOSettings(_Strict):
    device: str = "CPU"
    inference_precision: Literal["auto", "f32", "f16", "bf16"] = Field(
        "auto", description="auto pins f32 for fp32 builds and f16 for fp16 builds; the effective value is reported"
    )


class TrtRange(_Strict):
    """min/opt/max of one optimization profile entry: ints for a dynamic dimension name (e.g. `batch`),
    full shapes (lists) for an input name."""

    min: int | list[int]
    opt: int | list[int]
    max: int | list[int]

    @model_validator(mode="after")
    def _ordered(self) -> TrtRange:
        kinds = {isinstance(v, list) for v in (self.min, self.opt, self.max)}
        if len(kinds) != 1:
            raise ValueError("min, opt and max must all be ints (a dimension) or all be shapes (an input)")
        lo, mid, hi = ([v] if isinstance(v, int) else v for v in (self.min, self.opt, self.max))
        if not len(lo) == len(mid) == len(hi):
            raise ValueError(f"min, opt and max must have the same rank, got {lo}, {mid}, {hi}")
        for a, b, c in zip(lo, mid, hi):
            if not 1 <= a <= b <= c:
                raise ValueError(f"need 1 <= min <= opt <= max, got min {self.min}, opt {self.opt}, max {self.max}")
        return self


class TensorRTSettings(_Strict):
    """How the TensorRT engine is built; planned by edgedeploy.backends.trt_plan (see docs/tensorrt.md)."""

    profiles: dict[str, TrtRange] = Field(
        default_factory=dict,
        description="optimization profile per input name (shapes) or per dynamic dimension name (ints); "
                    "an unprofiled leading dimension gets 1 / largest latency batch / largest latency batch")
    workspace_mb: int | None = Field(None, ge=1, description="workspace memory pool limit; default: TensorRT's")
    builder_optimization_level: int = Field(3, ge=0, le=5)
    timing_cache: Path | None = Field(None, description="timing cache file, loaded if present and saved atomically")
    tf32: bool = Field(False, description="allow TF32 in fp32 layers (Ampere+); off keeps fp32 within its budget")
    dla_core: int | None = Field(None, ge=0, description="build for this DLA core (Xavier, Orin AGX/NX); fp16/int8")
    gpu_fallback: bool = Field(True, description="let layers DLA cannot run fall back to the GPU (reported)")
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    version_compatible: bool = Field(False, description="plan runs on later TensorRT versions (lean runtime inside)")
    int8_route: Literal["qdq", "calibrator"] = Field(
        "qdq", description="qdq: the Q/DQ ONNX (TensorRT 10 and 11); calibrator: TensorRT 10's implicit calibrator")
    calibrator: Literal["entropy2", "minmax"] = "entropy2"
    calibration_data: Path | None = Field(None, description=".npz of model inputs (arrays named like the inputs)")
    calibration_cache: Path | None = Field(None, description="calibrator cache file; default: next to the plan")
    calibration_batch_size: int = Field(8, ge=1)
    plan_for_major: Literal[10, 11] | None = Field(
        None, description="plan for this TensorRT major version instead of the installed one (dry runs)")


class BuildSpec(_Strict):
    name: str = "model"
    model: ModelSource
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[str] = Field(default_factory=list, description="names given to the exported outputs, in order")
    preprocess: Preprocess = Field(default_factory=Preprocess)
    export: ExportSettings = Field(default_factory=ExportSettings)
    optimize: OptimizeSettingsSpec = Field(default_factory=OptimizeSettingsSpec)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    thresholds: dict[Precision, Thresholds] = Field(default_factory=_default_thresholds)
    openvino: OpenVINOSettings = Field(default_factory=OpenVINOSettings)
    tensorrt: TensorRTSettings = Field(default_factory=TensorRTSettings)
    target: Target = "openvino"
    precision: Precision = "fp32"

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, inputs: list[InputSpec]) -> list[InputSpec]:
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        return inputs


def load_spec(path: str | Path) -> BuildSpec:
    """Read a YAML build spec; every problem is one UsageError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError("config file not found", where=str(path), fix="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read config ({e})", where=str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"invalid YAML: {problem}", where=at, fix="fix the syntax") from None
    if not isinstance(raw, dict):
        raise UsageError("config must be a YAML mapping of keys to values", where=str(path))
    try:
        spec = BuildSpec.model_validate(raw)
    except ValidationError as e:
        raise UsageError(_describe(e), where=str(path), fix="see the config reference in README.md") from None
    return _resolve_paths(spec, path.parent)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        msg = f"unknown key `{key}`"
    else:
        msg = f"`{key}`: {first['msg']}"
    more = error.error_count() - 1
    return msg + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _resolve_paths(spec: BuildSpec, base: Path) -> BuildSpec:
    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else (base / p).resolve()

    model = spec.model.model_copy(
        update={k: rel(getattr(spec.model, k)) or getattr(spec.model, k) for k in ("checkpoint", "onnx")}
    )
    validation = spec.validation.model_copy(update={"data": rel(spec.validation.data) or spec.validation.data})
    trt = spec.tensorrt.model_copy(
        update={k: rel(getattr(spec.tensorrt, k)) or getattr(spec.tensorrt, k)
                for k in ("timing_cache", "calibration_data", "calibration_cache")}
    )
    return spec.model_copy(update={"model": model, "validation": validation, "tensorrt": trt})


def demo_spec_path() -> Path:
    """The bundled demo detector's config, used when `edgedeploy build` is given no config."""
    return Path(str(importlib.resources.files("edgedeploy.demo") / "demo.yaml"))
