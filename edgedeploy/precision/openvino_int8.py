"""OpenVINO INT8 with NNCF: post-training quantization (`nncf.quantize`) and accuracy-aware quantization
(`nncf.quantize_with_accuracy_control`) driven by the task metric on the validation set.

Both start from the fp32 OpenVINO model converted from deploy.onnx (NNCF's advice: quantize the uncompressed model).
NNCF validates with the f32 precision hint, so the metric is not blurred by this CPU's bf16 default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.config import IgnoredScope, Int8Settings
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.calibration import CalibrationSet
from edgedeploy.precision.openvino_convert import convert_onnx
from edgedeploy.tasks import detection
from edgedeploy.tasks.decoders import choose
from edgedeploy.tasks.decoders.base import DecodeSettings

KeepFloat = dict[str, list[str]]  # ONNX node name: its output tensor names


def nncf_settings(int8: Int8Settings, accuracy_aware: bool, keep_float: KeepFloat | None = None) -> dict[str, Any]:
    """The settings a quantized IR depends on (its cache key); `keep_float`: the ONNX nodes kept in float besides
    the ignored scope (a detection head's decode)."""
    out = {"method": "nncf.quantize_with_accuracy_control" if accuracy_aware else "nncf.quantize",
           "preset": int8.preset, "fast_bias_correction": int8.fast_bias_correction, "model_type": int8.model_type,
           "ignored_scope": int8.ignored_scope.model_dump()}
    if keep_float:
        out["keep_float_nodes"] = sorted(keep_float)
    if accuracy_aware:
        out["accuracy_aware"] = int8.accuracy_aware.model_dump()
    return out


def openvino_names(model, keep_float: KeepFloat) -> list[str]:
    """The OpenVINO ops made from the ONNX nodes in `keep_float` ({node name: its output tensor names}): the
    frontend names an op after its node (a decomposed node's parts `NODE/...`), or after the graph output it
    writes; every op whose output carries one of the node's tensor names is matched too."""
    tensors = {t for outs in keep_float.values() for t in outs}
    names = []
    for op in model.get_ops():
        name = op.get_friendly_name()
        if op.get_type_name() in ("Constant", "Parameter", "Result"):
            continue
        if name in keep_float or name.split("/", 1)[0] in keep_float \
                or any(tensors & out.get_names() for out in op.outputs()):
            names.append(name)
    return sorted(set(names))


def _ignored_scope(scope: IgnoredScope, extra: list[str]):
    import nncf

    if scope.empty() and not extra:
        return None
    return nncf.IgnoredScope(names=sorted(set(scope.names) | set(extra)), patterns=list(scope.patterns),
                             types=list(scope.types), validate=True)


def _common(int8: Int8Settings, model=None, keep_float: KeepFloat | None = None) -> dict[str, Any]:
    import nncf

    return {"preset": {"performance": nncf.QuantizationPreset.PERFORMANCE,
                       "mixed": nncf.QuantizationPreset.MIXED}[int8.preset],
            "fast_bias_correction": int8.fast_bias_correction,
            "model_type": nncf.ModelType.TRANSFORMER if int8.model_type == "transformer" else None,
            "ignored_scope": _ignored_scope(int8.ignored_scope,
                                            openvino_names(model, keep_float) if keep_float else [])}


def _quiet():
    for name in ("nncf", "openvino"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quantize_ir(onnx_path: Path, calib: CalibrationSet, int8: Int8Settings, keep_float: KeepFloat | None = None):
    """nncf.quantize on the OpenVINO model of `onnx_path`, the ops of the ONNX nodes in `keep_float` left in
    float; returns the quantized ov.Model."""
    import nncf


    _quiet()
    model = convert_onnx(onnx_path)
    dataset = nncf.Dataset(calib.samples)
    try:
        return nncf.quantize(model, dataset, subset_size=len(calib), **_common(int8, model, keep_float))
    except Exception as e:  # NNCF raises its own ValidationError for an ignored scope that matches nothing
        raise _nncf_error(e, onnx_path) from None


def quantize_ir_accuracy_aware(onnx_path: Path, calib: CalibrationSet, int8: Int8Settings,
                               validation_items: list[Any], validation_fn: Callable[[Any, list[Any]], float],
                               keep_float: KeepFloat | None = None):
    """nncf.quantize_with_accuracy_control: layers are reverted to float until the metric drop is <= max_drop."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters


    _quiet()
    aa = int8.accuracy_aware
    restorer = AdvancedAccuracyRestorerParameters(ranking_subset_size=aa.ranking_subset_size)
    if aa.max_num_iterations:
        restorer.max_num_iterations = aa.max_num_iterations
    model = convert_onnx(onnx_path)
    try:
        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(calib.samples), nncf.Dataset(validation_items), validation_fn=validation_fn,
            max_drop=aa.max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib),
            advanced_accuracy_restorer_parameters=restorer, **_common(int8, model, keep_float))
    except Exception as e:
        raise _nncf_error(e, onnx_path) from None


def _nncf_error(e: Exception, where: Path) -> EdgeDeployError:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "ignored" in text.lower() or type(e).__name__ == "ValidationError":
        return UsageError(f"NNCF refused the ignored scope: {text}", where="int8.ignored_scope",
                          fix="use node names / types of the OpenVINO model (edgedeploy inspect lists them)")
    return EdgeDeployError(f"NNCF quantization failed: {type(e).__name__}: {text}", where=str(where))


def detection_validation(inputs: dict[str, np.ndarray], targets: np.ndarray, output: str,
                         conf_thres: float, iou_thres: float):
    """(items, validation_fn) for accuracy-aware quantization: mAP@0.5 of the items given (NNCF also calls it on
    single items to rank layers). An item is (image index, feeds of one image). The output is read by the decoder
    its shape fits (edgedeploy.tasks.decoders), so a YOLOv8 head is never scored as YOLOv5's."""
    count = len(next(iter(inputs.values())))
    items = [(i, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(count)]

    def validation_fn(compiled, data) -> float:
        idx, preds = [], []
        request = compiled.create_infer_request()
        port = next(p for p in compiled.outputs if output in p.get_names())
        for i, feeds in data:
            result = request.infer(feeds)
            preds.append(np.array(result[port], copy=True))
            idx.append(i)
        pred = np.concatenate(preds)
        decoded = choose({output: pred.shape}, None, produces="detections").decode(
            {output: pred}, DecodeSettings((0, 0), conf_thres=conf_thres, iou_thres=iou_thres))
        dets = [np.column_stack([d.boxes, d.scores, d.classes]) for d in decoded]
        remap = {old: new for new, old in enumerate(idx)}
        tg = targets[np.isin(targets[:, 0].astype(int), idx)].copy()
        tg[:, 0] = [remap[int(i)] for i in tg[:, 0]]
        return float(detection.evaluate_map(dets, tg)["map50"])

    return items, validation_fn


def save_ir(model, folder: Path) -> list[Path]:
    """Write model.xml/.bin into `folder` (a staging folder: the caller swaps it in atomically)."""
    import os

    import openvino as ov

    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    files = [folder / "model.xml", folder / "model.bin"]
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    return files


def count_fake_quantize(model) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


__all__ = ["quantize_ir", "quantize_ir_accuracy_aware", "detection_validation", "save_ir", "nncf_settings",
           "count_fake_quantize", "openvino_names"]
