"""The precision stage, between optimize and build: turns deploy.onnx into what the target builds at the precision
asked for, and says how (method, calibration set, cache) for the report. Which route a target takes is the target's
(its `PrecisionRoute`, declared in edgedeploy.backends); today's targets:

| target      | fp32        | fp16                                    | int8                                              |
| ----------- | ----------- | --------------------------------------- | ------------------------------------------------- |
| openvino    | deploy.onnx | deploy.onnx (IR weights compressed)     | NNCF-quantized IR (cache/openvino-int8*/model.xml)|
| onnxruntime | deploy.onnx | deploy.fp16.onnx (fp16-cast graph)      | deploy.int8.qdq.onnx (Q/DQ, onnxruntime flavour)  |
| trt         | deploy.onnx | deploy.fp16.onnx (TensorRT 11 builds it)| deploy.int8.qdq.onnx (tensorrt flavour, or TRT 10's calibrator) |

Every calibration result is keyed (edgedeploy.precision.cache): an equal key is reused, a stale one never silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from edgedeploy import fileio
from edgedeploy.config import BuildSpec
from edgedeploy.errors import UsageError
from edgedeploy.ort_runner import OnnxRuntimeRunner
from edgedeploy.precision import openvino_int8 as ovq
from edgedeploy.precision import qdq
from edgedeploy.precision.cache import CalibrationCache
from edgedeploy.precision.calibration import CalibrationSet, load_calibration, resolve_format
from edgedeploy.precision.fp16 import cast_to_fp16, io_types
from edgedeploy.tensor_error import tensor_errors

FP16_ONNX = "deploy.fp16.onnx"
QDQ_ONNX = "deploy.int8.qdq.onnx"
_KEY_LIBRARIES = {"openvino": ("nncf", "openvino", "onnx", "numpy"),
                  "qdq-ort": ("onnxruntime", "onnx", "numpy"),
                  "qdq-nncf": ("nncf", "onnxruntime", "onnx", "numpy")}


@dataclass(frozen=True)
class PrecisionRoute:
    """How a target gets each precision from deploy.onnx (declared by its backend, edgedeploy.backends).

    fp16: `fp16-cast` (this stage writes deploy.fp16.onnx) or `backend` (the backend makes fp16 from deploy.onnx
    itself: `fp16_method` says how). int8: `qdq` (deploy.int8.qdq.onnx in `qdq_flavour`, unless int8.qdq.flavour
    names one), `nncf-openvino` (an NNCF-quantized OpenVINO model; accuracy-aware possible) or `backend` (the backend
    calibrates deploy.onnx itself: `int8_method` says how, `int8_fix` how to get a quantized graph instead)."""

    fp16: Literal["fp16-cast", "backend"] = "fp16-cast"
    int8: Literal["qdq", "nncf-openvino", "backend"] = "qdq"
    qdq_flavour: str = "tensorrt"
    fp16_method: str = ""
    int8_method: str = ""
    int8_fix: str = ""

    def makes_onnx(self, precision: str) -> bool:
        """True when this stage writes a backend-neutral ONNX for `precision` (a bundle carries it ready-made)."""
        return (precision == "fp16" and self.fp16 == "fp16-cast") or (precision == "int8" and self.int8 == "qdq")


@dataclass
class PrecisionResult:
    model_path: Path  # what the backend builds from
    info: dict[str, Any]
    files: list[Path] = field(default_factory=list)  # files the stage wrote (for the manifest)

    @property
    def summary(self) -> str:
        i = self.info
        text = f"{i['method']}"
        if "calibration" in i:
            c = i["calibration"]
            text += f", {c['size']} calibration samples ({c['sha256'][:12]}), {i['cache']['status']}"
        return text


def uses_calibration(spec: BuildSpec, route: PrecisionRoute) -> bool:
    """True when this stage reads calibration data (int8, unless the backend calibrates itself)."""
    return spec.precision == "int8" and route.int8 != "backend"


def check_precision_request(spec: BuildSpec, route: PrecisionRoute) -> None:
    """What can be refused before export: no calibration data, accuracy-aware without a task metric."""
    if not uses_calibration(spec, route):
        return
    resolve_format(spec.calibration)
    if route.int8 == "nncf-openvino" and spec.int8.accuracy_aware.enabled and spec.validation.task != "detection":
        raise UsageError("accuracy-aware INT8 needs a task metric, and validation.task is none",
                         where="int8.accuracy_aware", fix="set validation.task: detection with labelled data, or "
                                                          "turn accuracy_aware off")


def run_precision(spec: BuildSpec, route: PrecisionRoute, deploy_path: Path, out_dir: Path, validation,
                  libraries: dict[str, str | None], check_inputs: dict[str, np.ndarray] | None = None,
                  ) -> PrecisionResult:
    """Make what the target builds at spec.precision by the target's `route`; `validation` is the ValidationSet
    (accuracy-aware needs it)."""
    deploy_path, out_dir = Path(deploy_path), Path(out_dir)
    if spec.precision == "fp32":
        return PrecisionResult(deploy_path, {"method": "none (fp32 deploy graph)"})
    if spec.precision == "fp16":
        if route.fp16 == "backend":
            return PrecisionResult(deploy_path, {"method": route.fp16_method})
        return _fp16(spec, deploy_path, out_dir, check_inputs)
    if not uses_calibration(spec, route):
        return PrecisionResult(deploy_path, {"method": route.int8_method})
    calib = load_calibration(spec)
    cache = CalibrationCache(spec.calibration.cache_dir or out_dir / "cache")
    model_sha = fileio.sha256_file(deploy_path)
    if route.int8 == "nncf-openvino":
        return _openvino_int8(spec, deploy_path, calib, cache, model_sha, validation, libraries)
    return _qdq_int8(spec, route, deploy_path, out_dir, calib, cache, model_sha, libraries)


# ------------------------------------------------------------------------------------------------------ fp16

def _fp16(spec: BuildSpec, deploy_path: Path, out_dir: Path, check_inputs) -> PrecisionResult:
    start = time.perf_counter()
    model, stats = cast_to_fp16(onnx.load(str(deploy_path)), spec.fp16.keep_fp32_ops, spec.fp16.keep_fp32_nodes)
    path = out_dir / FP16_ONNX
    fileio.write_bytes(path, model.SerializeToString())
    info: dict[str, Any] = {"method": "fp16-cast ONNX (edgedeploy.precision.fp16), fp32 graph I/O",
                            "file": FP16_ONNX, "cast": stats.to_dict(), "io_types": io_types(model),
                            "keep_fp32_ops": list(spec.fp16.keep_fp32_ops),
                            "seconds": time.perf_counter() - start}
    if check_inputs:
        info["vs_fp32_graph"] = compare_on_ort(deploy_path, path, check_inputs)
    return PrecisionResult(path, info, [path])


def compare_on_ort(reference: Path, candidate: Path, inputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Both graphs on ONNX Runtime (CPU) on the same inputs: tensor metrics per output."""
    a, b = OnnxRuntimeRunner(reference), OnnxRuntimeRunner(candidate)
    ra, rb = a.run(inputs), b.run(inputs)
    return {k: {m: v for m, v in tensor_errors(ra[k], rb[k]).items() if m in ("max_abs", "rel_l2", "cosine")}
            for k in a.output_names}


# ------------------------------------------------------------------------------------------------------ int8

def _versions(libraries: dict[str, str | None], kind: str) -> dict[str, str | None]:
    return {k: libraries.get(k) for k in _KEY_LIBRARIES[kind]}


def _calibration_info(calib: CalibrationSet) -> dict[str, Any]:
    return calib.summary()


def _openvino_int8(spec: BuildSpec, deploy_path: Path, calib: CalibrationSet, cache: CalibrationCache,
                   model_sha: str, validation, libraries) -> PrecisionResult:
    aa = spec.int8.accuracy_aware.enabled
    settings = ovq.nncf_settings(spec.int8, aa)
    material: dict[str, Any] = {"model_sha256": model_sha, "data_sha256": calib.sha256, "settings": settings,
                                "libraries": _versions(libraries, "openvino")}
    if aa:
        if validation is None or validation.targets is None:
            raise UsageError("accuracy-aware INT8 needs labelled validation data (validation.data with targets)",
                             where="int8.accuracy_aware")
        det = spec.validation.detection
        material["validation"] = {"sha256": arrays_sha256({**validation.inputs, "targets": validation.targets}),
                                  "metric": "map50", "conf_thres": det.conf_thres, "iou_thres": det.iou_thres}
    entry = cache.entry("openvino-int8-accuracy-aware" if aa else "openvino-int8", material)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if not entry.reused:
        if aa:
            output = spec.validation.output or (spec.outputs[0] if spec.outputs else None)
            output = output or onnx.load(str(deploy_path), load_external_data=False).graph.output[0].name
            items, fn = ovq.detection_validation(validation.inputs, validation.targets, output,
                                                 det.conf_thres, det.iou_thres)
            model = ovq.quantize_ir_accuracy_aware(deploy_path, calib, spec.int8, items, fn)
        else:
            model = ovq.quantize_ir(deploy_path, calib, spec.int8)
        staged = entry.staging()
        ovq.save_ir(model, staged)
        fileio.write_json(staged / "quantize.json", {"fake_quantize": ovq.count_fake_quantize(model),
                                                     "seconds": time.perf_counter() - start,
                                                     "calibration": _calibration_info(calib)})
        entry.commit(staged)
    record = _read_json(entry.dir / "quantize.json")
    extra["fake_quantize"] = record.get("fake_quantize")
    xml = entry.dir / "model.xml"
    info = {"method": settings["method"], "settings": settings, "calibration": _calibration_info(calib),
            "cache": entry.report(), "quantize_seconds": record.get("seconds"),
            "stage_quantize_seconds": time.perf_counter() - start, **extra}
    return PrecisionResult(xml, info, [xml, entry.dir / "model.bin"])


def _qdq_int8(spec: BuildSpec, route: PrecisionRoute, deploy_path: Path, out_dir: Path, calib: CalibrationSet,
              cache: CalibrationCache, model_sha: str, libraries) -> PrecisionResult:
    flavour = qdq.flavour_of(route.qdq_flavour, spec.int8.qdq)
    settings = qdq.qdq_settings(spec.int8, flavour)
    method = settings["method"]
    material = {"model_sha256": model_sha, "data_sha256": calib.sha256, "settings": settings,
                "libraries": _versions(libraries, f"qdq-{method}")}
    entry = cache.entry(f"qdq-int8-{flavour}-{method}", material)
    start = time.perf_counter()
    if not entry.reused:
        staged = entry.staging()
        target = staged / "model.qdq.onnx"
        if method == "ort":
            made = qdq.quantize_ort(deploy_path, target, calib, spec.int8.qdq, flavour)
        else:
            made = qdq.quantize_nncf(deploy_path, target, calib, spec.int8)
        structure = qdq.describe(onnx.load(str(target)))
        fileio.write_json(staged / "quantize.json", {**made, "structure": structure,
                                                     "ort_kernels": qdq.ort_kernels(target),
                                                     "seconds": time.perf_counter() - start,
                                                     "calibration": _calibration_info(calib)})
        entry.commit(staged)
    record = _read_json(entry.dir / "quantize.json")
    path = out_dir / QDQ_ONNX
    fileio.write_bytes(path, (entry.dir / "model.qdq.onnx").read_bytes())
    info = {"method": {"ort": "onnxruntime.quantization.quantize_static (QDQ)",
                       "nncf": "nncf.quantize on the ONNX model (QDQ)"}[method],
            "flavour": flavour, "file": QDQ_ONNX, "settings": settings, "calibration": _calibration_info(calib),
            "cache": entry.report(), "quantize_seconds": record.get("seconds"),
            "excluded_nodes": record.get("excluded_nodes", []), "structure": record.get("structure"),
            "ort_kernels": record.get("ort_kernels"), "stage_quantize_seconds": time.perf_counter() - start}
    if flavour == "onnxruntime" and spec.int8.qdq.reduce_range == "auto":
        info["reduce_range_reason"] = ("on: this x86 CPU has no VNNI" if settings["reduce_range"]
                                       else "off: this CPU has VNNI (or is not x86)")
    return PrecisionResult(path, info, [path])


def arrays_sha256(arrays: dict[str, np.ndarray | None]) -> str:
    """sha256 over named arrays (name, dtype, shape, bytes, in name order); None values are skipped."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(arrays):
        value = arrays[k]
        if value is None:
            continue
        value = np.ascontiguousarray(value)
        h.update(f"{k}\0{value.dtype.str}\0{value.shape}\0".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


__all__ = ["run_precision", "check_precision_request", "PrecisionResult", "PrecisionRoute", "FP16_ONNX", "QDQ_ONNX",
           "uses_calibration", "compare_on_ort", "arrays_sha256"]
