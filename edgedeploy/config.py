"""The build spec: what to deploy, how to feed it, what to keep, and what counts as correct.

Loaded from YAML (unknown keys are errors, so a typo never silently falls back to a default) and overridden by CLI
flags. Relative paths in a config file are relative to that file. A config is untrusted input: a key given twice,
NaN/Inf numbers, a regular expression that does not compile and a path with a NUL byte are refused at load time
instead of failing minutes into a build, and YAML aliases cannot blow the document up (a cycle or an expansion past
_MAX_NODES values is refused), so every accepted spec can be written back to JSON (the manifest) and reloaded.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StrictInt, ValidationError,
                      field_serializer, field_validator, model_validator)

from edgedeploy.errors import UsageError
from edgedeploy.fileio import read_input

Target = Literal["openvino", "onnxruntime", "trt"]
Precision = Literal["fp32", "fp16", "int8"]
# a budget's key: a precision, or bf16 (an fp16 build the OpenVINO CPU plugin ran in bf16, and auto's bf16 candidate)
BudgetKey = Literal["fp32", "fp16", "int8", "bf16"]
DType = Literal["float32", "float16", "uint8", "int8", "int32", "int64"]
_MAX_NODES = 100_000  # values in a config once YAML aliases are expanded; real ones have a few hundred
_MAX_CONFIG_BYTES = 16 << 20  # a config is a few KiB; this refuses a wrong file before parsing it
_MAX_NAME_BYTES = 128


def _no_nul(path: Path) -> Path:
    if "\0" in str(path):
        raise ValueError("a path cannot contain a NUL character")
    return path


def _regexes(patterns: list[str]) -> list[str]:
    for p in patterns:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{p!r} is not a regular expression ({e})") from None
    return patterns


ConfigPath = Annotated[Path, AfterValidator(_no_nul)]
Regexes = Annotated[list[str], AfterValidator(_regexes)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


PACKAGE_SOURCES = ("timm", "torchvision", "ultralytics", "transformers")  # edgedeploy.sources.families


class ModelSource(_Strict):
    """One of: a PyTorch factory (`package.module:function`) with an optional checkpoint, an ONNX file, or a model
    named in the package it was trained with (`timm: NAME`, `torchvision: NAME`, `ultralytics: best.pt | model.yaml`,
    `transformers: FOLDER`), whose preprocessing and class names come from the package (edgedeploy.sources)."""

    factory: str | None = None
    kwargs: dict[str, JsonValue] = Field(default_factory=dict, description="keyword arguments (JSON values) of factory "
                                                                          "or of the package's model constructor")
    checkpoint: ConfigPath | None = None
    onnx: ConfigPath | None = None
    timm: str | None = Field(None, description="timm.create_model name (random weights unless checkpoint is given)")
    torchvision: str | None = Field(None, description="torchvision.models.get_model name")
    weights: str | None = Field(None, description="torchvision: the weights enum whose transforms and categories "
                                                  "apply (e.g. ResNet18_Weights.IMAGENET1K_V1); its file is not "
                                                  "downloaded: give checkpoint for the weights")
    ultralytics: ConfigPath | None = Field(None, description="an Ultralytics checkpoint (best.pt) or model yaml")
    transformers: ConfigPath | None = Field(None, description="a Hugging Face model folder (config.json + "
                                                              "model.safetensors)")

    def package(self) -> str | None:
        """The package source this names (timm, torchvision, ultralytics, transformers), or None."""
        return next((name for name in PACKAGE_SOURCES if getattr(self, name) is not None), None)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [k for k in ("factory", "onnx", *PACKAGE_SOURCES) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of model.factory (a PyTorch `module:function`), model.onnx (a file), "
                             "model.timm, model.torchvision, model.ultralytics or model.transformers"
                             + (f"; got {', '.join(given)}" if given else ""))
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"model.factory {self.factory!r} must look like `package.module:function`")
        if self.onnx is not None and (self.checkpoint is not None or self.kwargs):
            raise ValueError("model.checkpoint and model.kwargs apply to a PyTorch model, not to model.onnx")
        if self.checkpoint is not None and (self.ultralytics is not None or self.transformers is not None):
            raise ValueError(f"model.{given[0]} carries its own weights; remove model.checkpoint")
        if self.weights is not None and self.torchvision is None:
            raise ValueError("model.weights names a torchvision weights enum; it applies to model.torchvision only")
        return self


class InputSpec(_Strict):
    """A model input; a string dimension (e.g. `batch`) is dynamic, the same name means the same size."""

    name: str
    shape: list[StrictInt | str]
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
    resize: Literal["resize", "letterbox", "crop", "none"] = Field(
        "resize", description="how an image of another size is fitted to the input's H x W: stretched, letterboxed "
                              "(aspect kept, padded), shorter side to size / crop_pct then centre-cropped (crop: "
                              "timm's and torchvision's evaluation transform), or refused (none); same-size images "
                              "are untouched")
    pad_value: int = Field(114, ge=0, le=255, description="letterbox padding (uint8, all channels)")
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    crop_pct: float = Field(1.0, gt=0, le=1, description="resize: crop, the input's share of the resized image")
    stride: int | None = Field(
        None, ge=1, description="letterbox to the smallest multiple of this around the image (Ultralytics' rect "
                                "inference; dynamic input sizes only); None: the input's full H x W")


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
    max_det: int = Field(100, ge=1, description="detections kept per image (COCO evaluation reads 100)")
    multi_label: bool = Field(False, description="a box for every class above conf_thres (Ultralytics val)")
    reference_score_thres: float = Field(0.25, description="reference detections above this count as ground truth")


class LatencySettings(_Strict):
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 8])
    warmup: int = Field(10, ge=0)
    iterations: int | None = Field(
        None, ge=1, description="timed calls per batch size (ignored when duration_s is set); with neither, "
                                "1 s of calls (edgedeploy.validate.latency.DEFAULT_DURATION_S)")
    duration_s: float | None = Field(None, gt=0, description="time budget per batch size instead of a fixed count")
    threads: int | None = Field(None, ge=1, description="inference threads; default: all cores")
    async_requests: int | None = Field(
        None, ge=0, description="requests in flight for the throughput run; None: the backend's choice; 0: skip it")
    unstable_cov: float = Field(0.05, gt=0, description="warn (and mark unstable) above this coefficient of variation")


class ValidationSettings(_Strict):
    """Real inputs the artifact is checked on: an .npz with `images` (uint8 NHWC, preprocessed here) or `inputs`
    (already model inputs), for detection `targets` (M,6: image, class, x1, y1, x2, y2), for classification
    optionally `labels` (N,) class indices; or a dataset: a COCO JSON file, an Ultralytics YOLO data.yaml or folder,
    a folder of class folders (ImageNet style), a Pascal VOC folder."""

    data: ConfigPath | None = None
    format: Literal["auto", "npz", "coco", "yolo", "imagefolder", "voc"] = Field(
        "auto", description="the format of `data`; auto tells it from the path")
    images: ConfigPath | None = Field(None, description="COCO: the folder file_names are relative to")
    split: str = Field("val", description="YOLO / VOC: the split to read")
    class_map: ConfigPath | None = Field(None, description="class folders: a .txt or .json class-index map")
    samples: int | None = Field(None, ge=1, description="use the first N samples (default: all)")
    subset: int | None = Field(None, ge=1, description="datasets: a seeded random N of those, kept in order")
    seed: int = 0
    task: Literal["detection", "classification", "none"] = "none"
    output: str | None = Field(None, description="the output the task metric reads (default: all the outputs "
                                                 "for a detector's decoder, the first for a classifier)")
    decoder: Literal["yolo-objectness", "yolo-anchor-free", "yolo-end2end", "detr", "boxes-scores", "yolo-seg",
                     "yolo-pose"] | None = Field(
        None, description="how the detector's outputs are read; None: the one decoder their shapes fit")
    num_classes: int | None = Field(
        None, ge=1, description="classes of the model (checked against its outputs); default: the dataset's")
    kpt_shape: tuple[int, int] | None = Field(None, description="pose: keypoints per object and values per point")
    bootstrap: int = Field(200, ge=0, description="resamples of the images for the interval of the mAP drop")
    tensor_samples: int = Field(
        300, ge=1, description="full output tensors are kept (in reference.npz too) and compared per output for the "
                               "first N samples only; every sample is streamed and scored on its task results")
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    latency: LatencySettings = Field(default_factory=LatencySettings)
    layer_error_samples: int = Field(
        16, ge=0, description="int8 builds: per-layer error vs the float graph on this many samples, plotted in "
                              "report.html (0: off); `edgedeploy debug precision` goes further")
    strict: bool = Field(False, description="every warning (precision not as requested, accuracy not measured, "
                                            "too few calibration samples, unstable latency) fails the run (CI)")


class TensorThresholds(_Strict):
    """Per-output budgets; None means not checked. In a config only the keys given count: the rest come from the
    precision's defaults (a key given as null turns that default check off)."""

    max_rel_l2: float | None = None
    max_abs: float | None = Field(None, description="largest allowed absolute error of any element")
    min_cosine: float | None = None
    min_snr_db: float | None = None


class Thresholds(TensorThresholds):
    """Pass/fail budgets for one precision; None means not checked. `outputs` overrides the tensor budgets for
    named outputs (only the keys it sets). NaN/Inf in any output always fails."""

    outputs: dict[str, TensorThresholds] = Field(default_factory=dict)
    max_map50_drop: float | None = Field(None, description="mAP@0.5 drop vs the PyTorch reference, in mAP units")
    max_map50_95_drop: float | None = Field(None, description="mAP@0.5:0.95 drop vs the reference, in mAP units")
    max_top1_drop: float | None = Field(None, description="classification top-1 accuracy drop vs the reference")
    min_top1_agreement: float | None = Field(None, description="share of samples whose top-1 matches the reference")


class RegressionSettings(_Strict):
    """How `edgedeploy validate --baseline` compares a run with a committed baseline report."""

    max_task_drop: float = Field(0.005, ge=0, description="task metric (mAP, top-1) drop vs the baseline")
    max_rel_l2_growth: float = Field(
        10.0, ge=1, description="fail when rel-L2 exceeds the baseline's times this AND 10% of the precision's budget")
    latency_tolerance: float = Field(0.15, ge=0, description="allowed slowdown of the median, as a fraction")
    latency_cov_factor: float = Field(
        3.0, ge=0, description="…or this many combined CoVs of the two runs, whichever is larger (noise guard)")
    latency_same_machine_only: bool = Field(
        True, description="compare latency only when processor, threads and precision hint match the baseline's")


# The budgets a precision gets for every key a config does not set. fp32: backend noise alone puts outputs up to
# 2.4e-5 rel-L2 from PyTorch's (+7.5e-6 when the reference came from other kernels; threads, batch size, kernel
# choice and ISA measured on the demo, a MobileNetV2-like and a ResNet-50-like model with tools/fp32_noise.py, see
# docs/validation.md), so 1e-4 leaves 3x headroom while the faults it is for (a BN epsilon folded wrong, bf16
# execution) land at 1e-3 and above.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"max_rel_l2": 1e-4},
    "fp16": {"max_rel_l2": 1e-2, "max_map50_drop": 0.005, "max_top1_drop": 0.005},
    "int8": {"max_map50_drop": 0.01, "max_top1_drop": 0.01},
    # bf16 keeps 8 significant bits to fp16's 11: 8x fp16's rel-L2 budget; the task budgets are fp16's
    "bf16": {"max_rel_l2": 8e-2, "max_map50_drop": 0.005, "max_top1_drop": 0.005},
}
# threshold keys that read a task metric, by the validation.task that has it
TASK_KEYS = {"max_map50_drop": "detection", "max_map50_95_drop": "detection", "max_top1_drop": "classification",
             "min_top1_agreement": "classification"}


def _given(t: TensorThresholds) -> dict[str, Any]:
    """The keys a config set (explicit nulls included), without `outputs`."""
    return {k: getattr(t, k) for k in t.model_fields_set if k != "outputs"}


def budget_key(spec: BuildSpec, effective_hint: str | None) -> str:
    """The budget a build is judged on: its precision's, except an fp16 build that ran in bf16 when the config gives
    a `thresholds.bf16` (the plugin chose bf16 on this CPU, and the user said what bf16 may lose)."""
    return "bf16" if spec.precision == "fp16" and effective_hint == "bf16" and "bf16" in spec.thresholds \
        else spec.precision


def effective_thresholds(spec: BuildSpec, precision: str | None = None) -> tuple[Thresholds, dict[str, str]]:
    """The budget `precision` (default: the spec's) is checked against: the defaults that apply to the spec's task,
    overridden key by key by the config; and where each key came from (`default` or `config`, per-output keys as
    `outputs.NAME.KEY`)."""
    precision = precision or spec.precision
    values = {k: v for k, v in DEFAULT_THRESHOLDS[precision].items()
              if TASK_KEYS.get(k, spec.validation.task) == spec.validation.task}
    origin = {k: "default" for k in values}
    given = spec.thresholds.get(precision)
    outputs: dict[str, TensorThresholds] = {}
    if given is not None:
        values.update(_given(given))
        origin.update({k: "config" for k in _given(given)})
        outputs = dict(given.outputs)
        origin.update({f"outputs.{name}.{k}": "config" for name, t in outputs.items() for k in _given(t)})
    return Thresholds(**values, outputs=outputs), origin


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
                    "an unprofiled leading dimension gets min 1 / opt 1 / max 8 (larger batches run in chunks)")
    workspace_mb: int | None = Field(None, ge=1, description="workspace memory pool limit; default: TensorRT's")
    tactic_dram_mb: int | None = Field(
        None, ge=1, description="tactic DRAM pool limit (TensorRT 8.6+): memory tactics may use while building; "
                                "lower it on 8 GB boards; default: TensorRT's")
    builder_optimization_level: int = Field(3, ge=0, le=5)
    timing_cache: ConfigPath | None = Field(
        None, description="timing cache file, loaded if present and saved atomically")
    timing_cache_seed: ConfigPath | None = Field(
        None, description="a timing cache whose entries are combined into this build's before it starts, never "
                          "written (`edgedeploy build BUNDLE` sets it to the bundle's cache)")
    tf32: bool = Field(False, description="allow TF32 in fp32 layers (Ampere+); off keeps fp32 within its budget")
    dla_core: int | None = Field(None, ge=0, description="build for this DLA core (Xavier, Orin AGX/NX); fp16/int8")
    gpu_fallback: bool = Field(True, description="let layers DLA cannot run fall back to the GPU (reported)")
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    version_compatible: bool = Field(False, description="plan runs on later TensorRT versions (lean runtime inside)")
    int8_route: Literal["qdq", "calibrator"] = Field(
        "qdq", description="qdq: the Q/DQ ONNX (TensorRT 8.5-11); calibrator: TensorRT 8/10's implicit calibrator")
    int8_unquantized: Literal["fp16", "fp32"] = Field(
        "fp16", description="precision TensorRT 8/10 may give layers without Q/DQ in an int8 build (fp16 is what "
                            "trtexec --int8 --fp16 builds)")
    layer_precisions: dict[str, Literal["fp32", "fp16"]] = Field(
        default_factory=dict,
        description="ONNX node name -> the precision its TensorRT layers must compute and write in (TensorRT 8/10 "
                    "weakly typed builds; OBEY_PRECISION_CONSTRAINTS); `edgedeploy debug precision --target trt "
                    "--search` writes it")
    calibrator: Literal["entropy2", "minmax"] = "entropy2"
    calibration_data: ConfigPath | None = Field(
        None, description=".npz of model inputs (arrays named like the inputs)")
    calibration_cache: ConfigPath | None = Field(
        None, description="calibrator cache file; default: next to the plan")
    calibration_batch_size: int = Field(8, ge=1)
    plan_for_major: Literal[8, 10, 11] | None = Field(
        None, description="plan for this TensorRT major version instead of the installed one (dry runs)")


class CalibrationSpec(_Strict):
    """The calibration set INT8 is calibrated on (see calibration/README.md for the formats).

    `data` is an image folder (jpg/png), an .npy/.npz file, or a folder of them, or a dataset (a COCO JSON file,
    an Ultralytics YOLO data.yaml or folder, a folder of class folders, a Pascal VOC folder: its images, labels
    unused); `function` is a Python `package.module:function` returning an iterable of arrays (single-input models)
    or dicts keyed by input name."""

    data: ConfigPath | None = None
    function: str | None = None
    format: Literal["auto", "images", "npy", "npz", "callable", "coco", "yolo", "imagefolder", "voc"] = "auto"
    images: ConfigPath | None = Field(None, description="COCO: the folder file_names are relative to")
    split: str = Field("train", description="YOLO / VOC: the split calibrated on (keep validation images out)")
    subset_size: int = Field(300, ge=1, description="samples used; a larger set is subsampled with `seed`")
    min_samples: int = Field(
        100, ge=1, description="warn (fail under --strict) when calibration uses fewer samples than this")
    seed: int = 0
    cache_dir: ConfigPath | None = Field(
        None, description="where calibration results are kept by key; default <out>/cache")

    @model_validator(mode="after")
    def _one_source(self) -> CalibrationSpec:
        if self.data is not None and self.function is not None:
            raise ValueError("give calibration.data (a path) or calibration.function (`module:function`), not both")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"calibration.function {self.function!r} must look like `package.module:function`")
        return self


class IgnoredScope(_Strict):
    """Nodes kept in floating point: exact node names, regular expressions over names, and op types."""

    names: list[str] = Field(default_factory=list)
    patterns: Regexes = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)

    def empty(self) -> bool:
        return not (self.names or self.patterns or self.types)


class AccuracyAwareSettings(_Strict):
    """nncf.quantize_with_accuracy_control driven by the task metric (mAP@0.5 for detectors) on the validation set."""

    enabled: bool = False
    max_drop: float = Field(0.01, ge=0, description="largest allowed absolute drop of the metric (mAP units)")
    max_num_iterations: int = Field(0, ge=0, description="layers NNCF may revert to float; 0 = no limit")
    ranking_subset_size: int | None = Field(None, ge=1)


class QdqSettings(_Strict):
    """The explicit Q/DQ ONNX (deploy.int8.qdq.onnx) that TensorRT 10/11 and ONNX Runtime build, in one flavour per
    runtime (edgedeploy.precision.qdq)."""

    flavour: Literal["auto", "tensorrt", "onnxruntime"] = Field(
        "auto", description="tensorrt: symmetric int8 activations, zero point 0; onnxruntime: uint8 activations x "
                            "int8 per-channel weights on every op with an int8 kernel (its x86 fast path); auto: by "
                            "target (onnxruntime for the onnxruntime target, else tensorrt)")
    method: Literal["nncf", "ort"] = Field(
        "nncf", description="tensorrt flavour: NNCF on the ONNX model (measured best on the demo) or onnxruntime "
                            "quantize_static; the onnxruntime flavour always uses quantize_static")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field("minmax", description="ort only")
    percentile: float = Field(99.999, gt=0, le=100, description="for calibrate_method: percentile")
    moving_average: Literal["auto"] | bool = Field(
        "auto", description="ort minmax: true averages the per-sample ranges (clips rare outliers), false takes the "
                            "extremes; auto: the onnxruntime flavour quantizes both and keeps the one closer to the "
                            "float model on the calibration samples, the tensorrt flavour averages")
    reduce_range: Literal["auto"] | bool = Field(
        "auto", description="ort: 7-bit weights, so ONNX Runtime's int8 kernels do not saturate on x86 CPUs without "
                            "VNNI; auto: on for the onnxruntime flavour only where the CPU has no VNNI, on for the "
                            "tensorrt flavour")
    op_types: list[str] = Field(
        default_factory=lambda: ["Conv", "ConvTranspose", "MatMul", "Gemm"],
        description="ort: ops whose inputs get Q/DQ (TensorRT fuses Q/DQ into these); NNCF places its own")
    excluded: IgnoredScope = Field(default_factory=IgnoredScope, description="nodes left unquantized")


class Int8Settings(_Strict):
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF preset (OpenVINO): performance = symmetric activations, the scheme the CPU "
                                   "int8 kernels run fastest (docs/benchmarks.md); mixed = asymmetric activations, "
                                   "for models whose activations are far from symmetric (docs/precision.md)")
    fast_bias_correction: bool = Field(
        False, description="NNCF: off runs the slower full bias correction (measured best on the demo)")
    model_type: Literal["auto", "none", "transformer"] = Field(
        "auto", description="transformer: NNCF's TRANSFORMER model type (OpenVINO, NNCF Q/DQ) and, on ONNX Runtime's "
                            "quantize_static route, int8 only for weight-carrying Conv/MatMul/Gemm (attention, "
                            "LayerNorm, Softmax, GELU and residual adds float); auto: transformer when the graph has "
                            "attention (edgedeploy.precision.transformer)")
    keep_head_float: Literal["auto"] | bool = Field(
        "auto", description="keep a YOLO-family head's decode (DFL, grid/stride arithmetic, concat, sigmoid) in float "
                            "on every int8 route (edgedeploy.graph.heads); auto: when one is found, true: refuse a "
                            "graph without one, false: quantize it like the rest")
    ignored_scope: IgnoredScope = Field(default_factory=IgnoredScope, description="NNCF (OpenVINO) ignored scope")
    accuracy_aware: AccuracyAwareSettings = Field(default_factory=AccuracyAwareSettings)
    qdq: QdqSettings = Field(default_factory=QdqSettings)


def _default_fp16_keep() -> list[str]:
    return ["Exp", "Log", "Pow", "Softmax", "LogSoftmax", "Sqrt", "Reciprocal", "ReduceMean", "ReduceSum",
            "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd",
            "LayerNormalization", "GroupNormalization", "InstanceNormalization", "CumSum", "Range"]


class Fp16Settings(_Strict):
    """The fp16-cast ONNX (deploy.fp16.onnx): graph I/O stays fp32, these ops stay fp32 (Cast around them)."""

    keep_fp32_ops: list[str] = Field(default_factory=_default_fp16_keep)
    keep_fp32_nodes: Regexes = Field(default_factory=list, description="node names (or regexes) kept in fp32")


def _folder_name(name: str) -> str:
    """`name` names the default output folder (edgedeploy-out/NAME-TARGET-PRECISION): one path component."""
    if not name or name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable():
        raise ValueError(f"{name!r} must be one folder name: no '/' or '\\', not '.' or '..', printable characters")
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"the name is {len(name.encode())} bytes; at most {_MAX_NAME_BYTES} (it names a folder)")
    return name


class BuildSpec(_Strict):
    name: Annotated[str, AfterValidator(_folder_name)] = Field(
        "model", description="names the default output folder, edgedeploy-out/NAME-TARGET-PRECISION")
    model: ModelSource
    inputs: list[InputSpec] = Field(default_factory=list, description="the model's inputs; a package source "
                                                                     "(model.timm, ...) fills them when left out")
    outputs: list[str] = Field(default_factory=list, description="names given to the exported outputs, in order")
    preprocess: Preprocess = Field(default_factory=Preprocess)
    export: ExportSettings = Field(default_factory=ExportSettings)
    optimize: OptimizeSettingsSpec = Field(default_factory=OptimizeSettingsSpec)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    thresholds: dict[BudgetKey, Thresholds] = Field(
        default_factory=dict, description="budgets per precision, merged key by key over DEFAULT_THRESHOLDS; `bf16` "
                                          "judges an fp16 build that ran in bf16 (and auto's bf16 candidate)")
    regression: RegressionSettings = Field(default_factory=RegressionSettings)
    openvino: OpenVINOSettings = Field(default_factory=OpenVINOSettings)
    tensorrt: TensorRTSettings = Field(default_factory=TensorRTSettings)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    int8: Int8Settings = Field(default_factory=Int8Settings)
    fp16: Fp16Settings = Field(default_factory=Fp16Settings)
    target: Target = "openvino"
    precision: Precision = "fp32"
    static_batch: int | None = Field(
        None, ge=1, description="build a static-shape artifact for this fixed deployment batch (validated and timed "
                                "at it); None keeps the batch dynamic (edgedeploy.static_batch)")
    batch1_artifact: Literal["auto"] | bool = Field(
        "auto", description="beside a dynamic-batch artifact, also write its static batch-1 copy (<target>/batch1/, "
                            "checked against it and timed at batch 1) for deployments that run one image at a time; "
                            "auto: for the openvino target, whose static shapes are faster at batch 1")

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, inputs: list[InputSpec]) -> list[InputSpec]:
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        return inputs

    @field_serializer("thresholds")
    def _given_thresholds(self, thresholds: dict[str, Thresholds]) -> dict[str, Any]:
        """Only the keys the config set, so a reloaded spec (the manifest's) still merges over the defaults."""
        return {p: t.model_dump(mode="json", exclude_unset=True) for p, t in thresholds.items()}

    @model_validator(mode="after")
    def _inputs_given(self) -> BuildSpec:
        if not self.inputs and self.model.package() is None:
            raise ValueError("`inputs`: list the model's inputs (name, shape, dtype); only a package source "
                             "(model.timm, model.torchvision, model.ultralytics, model.transformers) fills them")
        return self

    @model_validator(mode="after")
    def _thresholds_apply(self) -> BuildSpec:
        """A threshold the build would never check is a mistake (a copied block, a typo'd output), not a no-op."""
        for precision, t in self.thresholds.items():
            for key, value in _given(t).items():
                task = TASK_KEYS.get(key)
                if value is not None and task is not None and task != self.validation.task:
                    raise ValueError(f"`thresholds.{precision}.{key}` checks a {task} metric, and validation.task "
                                     f"is {self.validation.task}: remove the key or set validation.task: {task}")
            unknown = [name for name in t.outputs if self.outputs and name not in self.outputs]
            if unknown:
                raise ValueError(f"`thresholds.{precision}.outputs.{unknown[0]}` names no output of the model "
                                 f"(outputs: {', '.join(self.outputs)})")
        return self


class _SpecLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, but a key given twice in one mapping is an error (YAML would keep the last one
    silently, the same trap as a misspelt key)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> Any:
    """The YAML document in a config file; UsageError naming the file (and line) for a missing, unreadable, oversized
    or non-UTF-8 file, one that is not a regular file (a FIFO, a device, a folder), invalid YAML, a repeated key,
    nesting too deep to read, or aliases that cycle or explode."""
    path = Path(path)
    try:
        text = read_input(path, "config file", max_bytes=_MAX_CONFIG_BYTES).decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read config ({e})", where=str(path)) from None
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
        _check_expansion(raw, path)
        return raw
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"invalid YAML: {problem}", where=at, fix="fix the syntax") from None
    except RecursionError:
        raise UsageError("YAML nested too deeply to read", where=str(path), fix="flatten the document") from None


def _check_expansion(raw: Any, path: Path) -> None:
    """Refuse YAML whose aliases make a cycle or expand past _MAX_NODES values (an alias bomb)."""
    sizes: dict[int, int] = {}

    def size(obj: Any, open_: frozenset) -> int:
        if not isinstance(obj, (dict, list)):
            return 1
        if id(obj) in open_:
            raise UsageError("a YAML alias refers to itself (a cycle)", where=str(path), fix="expand the alias")
        if id(obj) not in sizes:
            inner = open_ | {id(obj)}
            items = [x for kv in obj.items() for x in kv] if isinstance(obj, dict) else obj
            total = 1
            for x in items:
                total += size(x, inner)
                if total > _MAX_NODES:
                    raise UsageError(f"the config expands to over {_MAX_NODES} values (YAML aliases)",
                                     where=str(path), fix="write the values out instead of nesting aliases")
            sizes[id(obj)] = total
        return sizes[id(obj)]

    size(raw, frozenset())


def load_spec(path: str | Path) -> BuildSpec:
    """Read a YAML build spec; every problem is one UsageError naming the file and the key."""
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise UsageError("config must be a YAML mapping of keys to values", where=str(path))
    try:
        spec = BuildSpec.model_validate(raw)
    except ValidationError as e:
        raise UsageError(describe_validation_error(e), where=str(path),
                         fix="see the config reference in README.md") from None
    try:
        return _resolve_paths(spec, path.parent)
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise UsageError(f"cannot resolve a path in the config ({e})", where=str(path)) from None


def describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    key = key if key.isprintable() else repr(key)[1:-1]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key `{key}`"
    elif not first["loc"]:  # a check across sections names its keys itself
        msg = first["msg"].removeprefix("Value error, ")
    else:
        msg = f"`{key}`: {first['msg']}"
    more = error.error_count() - 1
    return msg + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _resolve_paths(spec: BuildSpec, base: Path) -> BuildSpec:
    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else (base / p).resolve()

    model = spec.model.model_copy(
        update={k: rel(getattr(spec.model, k)) or getattr(spec.model, k)
                for k in ("checkpoint", "onnx", "ultralytics", "transformers")}
    )
    validation = spec.validation.model_copy(
        update={k: rel(getattr(spec.validation, k)) or getattr(spec.validation, k)
                for k in ("data", "images", "class_map")}
    )
    trt = spec.tensorrt.model_copy(
        update={k: rel(getattr(spec.tensorrt, k)) or getattr(spec.tensorrt, k)
                for k in ("timing_cache", "timing_cache_seed", "calibration_data", "calibration_cache")}
    )
    calibration = spec.calibration.model_copy(
        update={k: rel(getattr(spec.calibration, k)) or getattr(spec.calibration, k) for k in ("data", "cache_dir")}
    )
    return spec.model_copy(update={"model": model, "validation": validation, "tensorrt": trt,
                                   "calibration": calibration})


def demo_spec_path() -> Path:
    """The bundled demo detector's config, used when `edgedeploy build` is given no config."""
    return Path(str(importlib.resources.files("edgedeploy.demo") / "demo.yaml"))


def import_callable(target: str, where: str):
    """Resolve a `package.module:function` named in the config; importing user code the config names is intended."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import module {module_name!r} ({e})", where=where,
                         fix="make the module importable (installed, or on PYTHONPATH)") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise UsageError(f"module {module_name!r} has no function {attr!r}", where=where) from None
    return func
