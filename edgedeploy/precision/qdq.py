"""The explicit Q/DQ INT8 ONNX (deploy.int8.qdq.onnx): what TensorRT 10 and 11 build, and what ONNX Runtime runs on the
CPU so INT8 accuracy is measured before a GPU is involved.

TensorRT-friendly placement: Q/DQ on the inputs of Conv/ConvTranspose/MatMul/Gemm (TensorRT fuses DQ→Conv→act and
propagates Q/DQ through pooling/concat itself), int8 activations with a symmetric range (zero point 0: TensorRT
accepts no other), per-channel symmetric int8 weights (axis 0), biases left in float.

Two calibrators, compared by measured mAP on the demo (docs/precision.md):
- NNCF on the onnx.ModelProto (default): performance preset (symmetric), fast bias correction; NNCF picks uint8 for
  non-negative tensors, which `to_signed_int8` turns into int8 with the same top of range.
- ONNX Runtime's `quantize_static` (MinMax / Entropy / Percentile), QDQ, ActivationSymmetric, WeightSymmetric,
  per-channel, QuantizeBias off; `moving_average` / `reduce_range` options. On CPUs without VNNI (AVX2 only) ONNX
  Runtime's fused int8 kernels saturate (vpmaddubsw) on full-range weights; reduce_range (7-bit weights) avoids it.
NVIDIA Model Optimizer's ONNX PTQ is not offered: its wheel pins onnx~=1.21 and onnxruntime-gpu/cupy on x86_64,
which conflicts with this CPU stack (shared/stack-notes.md).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedeploy.config import IgnoredScope, Int8Settings, QdqSettings
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.calibration import CalibrationSet

_QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
_PASS_THROUGH = ("Concat", "MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Split", "Flatten", "Squeeze",
                 "Unsqueeze", "Identity")


def qdq_settings(int8: Int8Settings) -> dict[str, Any]:
    """The settings a Q/DQ model depends on (its cache key)."""
    q = int8.qdq
    out: dict[str, Any] = {"method": q.method, "excluded": q.excluded.model_dump(),
                           "activations": "int8 symmetric", "weights": "int8 symmetric per-channel",
                           "bias": "float"}
    if q.method == "ort":
        out.update(op_types=list(q.op_types), calibrate_method=q.calibrate_method, moving_average=q.moving_average, reduce_range=q.reduce_range)
        if q.calibrate_method == "percentile":
            out["percentile"] = q.percentile
    else:
        # NNCF 3.4's full bias correction fails on ONNX graphs with a tensor read by two convs ("Duplicate
        # definition-site"), so the ONNX route always uses the fast one
        out.update(preset="performance", fast_bias_correction=True)
    return out


def resolve_nodes(model: onnx.ModelProto, scope: IgnoredScope, where: str = "int8.qdq.excluded") -> list[str]:
    """Node names matched by names / regex patterns / op types; a name or pattern that matches nothing is an error
    (a typo would otherwise quantize the layer silently)."""
    nodes = list(model.graph.node)
    names = {n.name for n in nodes}
    missing = [n for n in scope.names if n not in names]
    if missing:
        raise UsageError(f"excluded node names not in the graph: {missing}", where=where,
                         fix="use node names of deploy.onnx (edgedeploy inspect lists them)")
    out = set(scope.names)
    for p in scope.patterns:
        rx = re.compile(p)
        hits = {n.name for n in nodes if rx.search(n.name)}
        if not hits:
            raise UsageError(f"excluded pattern {p!r} matches no node", where=where)
        out |= hits
    out |= {n.name for n in nodes if n.op_type in set(scope.types)}
    return sorted(out)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over the calibration samples."""

    def __init__(self, calib: CalibrationSet):
        self._samples = calib.samples
        self._i = 0

    def get_next(self):
        if self._i >= len(self._samples):
            return None
        self._i += 1
        return self._samples[self._i - 1]

    def rewind(self):
        self._i = 0


def quantize_ort(onnx_path: Path, out_path: Path, calib: CalibrationSet, q: QdqSettings) -> dict[str, Any]:
    """onnxruntime.quantization.quantize_static → Q/DQ ONNX at out_path (the caller places it atomically)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    model = onnx.load(str(onnx_path))
    excluded = resolve_nodes(model, q.excluded)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[q.calibrate_method]
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "CalibTensorRangeSymmetric": True}
    if q.calibrate_method == "percentile":
        extra["CalibPercentile"] = q.percentile
    if q.calibrate_method == "minmax" and q.moving_average:
        extra["CalibMovingAverage"] = True
    try:
        quantize_static(str(onnx_path), str(out_path), _Reader(calib), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(q.op_types), per_channel=True, reduce_range=q.reduce_range,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=method, extra_options=extra)
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EdgeDeployError(f"ONNX Runtime quantization failed: {type(e).__name__}: {text}",
                              where=str(onnx_path)) from None
    return {"excluded_nodes": excluded}


def quantize_nncf(onnx_path: Path, out_path: Path, calib: CalibrationSet, int8: Int8Settings) -> dict[str, Any]:
    """NNCF on the onnx.ModelProto (performance preset: symmetric activations) → Q/DQ ONNX at out_path."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(onnx_path))
    del model.graph.value_info[:]  # NNCF 3.4's statistics model fails ("Duplicate definition-site") with them
    excluded = resolve_nodes(model, int8.qdq.excluded)
    scope = nncf.IgnoredScope(names=excluded) if excluded else None
    try:
        quantized = nncf.quantize(model, nncf.Dataset(calib.samples), subset_size=len(calib),
                                  preset=nncf.QuantizationPreset.PERFORMANCE,
                                  fast_bias_correction=True, ignored_scope=scope)
    except Exception as e:
        raise EdgeDeployError(f"NNCF ONNX quantization failed: {type(e).__name__}: {e}", where=str(onnx_path)) \
            from None
    quantized, signed = to_signed_int8(quantized)
    onnx.save(quantized, str(out_path))
    return {"excluded_nodes": excluded, "unsigned_quantizers_made_signed": signed}


def to_signed_int8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Make every uint8 Q/DQ with zero point 0 (NNCF's choice for non-negative tensors) int8 with zero point 0 and the
    same top of range (scale x 255/127): TensorRT accepts only int8 symmetric. Costs those tensors one bit, which
    TensorRT's own int8 would cost them too. Returns the model and how many quantizers changed."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    changed_params: dict[tuple[str, str], tuple[str, str]] = {}
    count = 0
    for n in g.node:
        if n.op_type not in _QUANT_OPS or len(n.input) < 3 or n.input[2] not in inits:
            continue
        zp = numpy_helper.to_array(inits[n.input[2]])
        if zp.dtype != np.uint8:
            continue
        if np.any(zp != 0):
            raise EdgeDeployError("an unsigned quantizer has a non-zero zero point; TensorRT needs symmetric int8",
                                  where=f"node {n.name}", fix="use int8.qdq.method: ort")
        key = (n.input[1], n.input[2])
        if key not in changed_params:
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) * np.float32(255.0 / 127.0)
            s_name, z_name = f"{n.input[1]}__s8", f"{n.input[2]}__s8"
            g.initializer.extend([numpy_helper.from_array(scale, s_name),
                                  numpy_helper.from_array(np.zeros_like(zp, dtype=np.int8), z_name)])
            changed_params[key] = (s_name, z_name)
        n.input[1], n.input[2] = changed_params[key]
        count += 1
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]  # the Q outputs' recorded uint8 types are stale
    return onnx.shape_inference.infer_shapes(model), count


def describe(model: onnx.ModelProto) -> dict[str, Any]:
    """Q/DQ structure: counts, zero points and dtypes, per-channel weights, and which Conv/MatMul/Gemm are fed by DQ on
    both data and weight (the pattern TensorRT fuses into an int8 kernel)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def const(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        p = producer.get(name)
        if p is not None and p.op_type == "Constant":
            return numpy_helper.to_array(p.attribute[0].t)
        return None

    q_nodes = [n for n in g.node if n.op_type in _QUANT_OPS]
    zero_points, dtypes, per_channel_weights, per_tensor_weights = [], set(), 0, 0
    for n in q_nodes:
        zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None:
            zero_points.append(zp)
            dtypes.add(str(zp.dtype))
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            scale = const(n.input[1])
            if scale is not None and scale.size > 1:
                per_channel_weights += 1
            else:
                per_tensor_weights += 1
    compute = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    def from_dq(name: str, depth: int = 0) -> bool:
        """Fed by a DequantizeLinear, directly or through data movement TensorRT propagates Q/DQ across."""
        p = producer.get(name)
        if p is None or depth > 8:
            return False
        if p.op_type == "DequantizeLinear":
            return True
        if p.op_type in _PASS_THROUGH:
            return all(from_dq(i, depth + 1) for i in p.input[:1 if p.op_type != "Concat" else None] if i)
        return False

    fed = [n for n in compute if all(from_dq(i) for i in n.input[:2])]
    return {
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in q_nodes),
        "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in q_nodes),
        "zero_point_dtypes": sorted(dtypes),
        "all_zero_points_zero": all(int(np.abs(z.astype(np.int64)).max(initial=0)) == 0 for z in zero_points),
        "per_channel_weights": per_channel_weights,
        "per_tensor_weights": per_tensor_weights,
        "compute_ops": len(compute),
        "compute_ops_int8": len(fed),
        "compute_ops_float": sorted(n.name for n in compute if n not in fed),
        "tensorrt_ready": dtypes <= {"int8"} and all(int(np.abs(z.astype(np.int64)).max(initial=0)) == 0
                                                     for z in zero_points),
    }


__all__ = ["quantize_ort", "quantize_nncf", "describe", "resolve_nodes", "qdq_settings"]
