"""The explicit Q/DQ INT8 ONNX (deploy.int8.qdq.onnx), in the flavour the target runs fastest and accurately.

One Q/DQ graph cannot serve both runtimes (measured, docs/precision.md):

- **tensorrt**: Q/DQ on the inputs of Conv/ConvTranspose/MatMul/Gemm (TensorRT fuses DQ→Conv→act and propagates Q/DQ
  through pooling/concat itself), int8 activations with a symmetric range (zero point 0: TensorRT accepts no other),
  per-channel symmetric int8 weights (axis 0), biases left in float. Calibrated by NNCF on the onnx.ModelProto
  (default: performance preset, fast bias correction; NNCF picks uint8 for non-negative tensors, which
  `to_signed_int8` turns into int8 with the same top of range) or ONNX Runtime's `quantize_static`.
- **onnxruntime** (the onnxruntime target): ONNX Runtime's x86 fast path, uint8 activations (asymmetric) x int8
  per-channel symmetric weights, Q/DQ on every tensor of every op ONNX Runtime has an int8 kernel for, so its graph
  optimizer turns each DQ→op→Q into QLinearConv / QGemm / QLinearAdd / QLinearLeakyRelu / QLinearSigmoid ... and
  drops ReLU/ReLU6/Clip into the output quantizer's range. Signed int8 activations (the tensorrt flavour, or
  quantize_static's defaults) leave most convs in float there, between Q/DQ pairs that only cost time: 2–4x slower
  than fp32 on the demo. `reduce_range` (7-bit weights) where the x86 CPU has no VNNI: there ONNX Runtime's u8s8
  kernels use `vpmaddubsw`, whose int16 pair sums saturate with full-range weights. What follows the last
  convolution (a box decode, `float_tail`) and a Gemm/MatMul graph output (logits, `float_outputs`) stay float.

NVIDIA Model Optimizer's ONNX PTQ is not offered: its wheel pins onnx~=1.21 and onnxruntime-gpu/cupy on x86_64,
which conflicts with this CPU stack.
"""

from __future__ import annotations

import functools
import logging
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedeploy.config import IgnoredScope, Int8Settings, QdqSettings
from edgedeploy.device import cpu_flags
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.calibration import CalibrationSet
from edgedeploy.precision.transformer import float_nodes

_QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
FLAVOURS = ("tensorrt", "onnxruntime")
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")
_ORT_INT8_KERNELS = ("QLinear", "QGemm", "ConvInteger", "MatMulInteger", "QAttention", "DynamicQuantize")
_PASS_THROUGH = ("Concat", "MaxPool", "Resize", "Reshape", "Transpose", "Slice", "Split", "Flatten", "Squeeze",
                 "Unsqueeze", "Identity")


def flavour_of(target_flavour: str, q: QdqSettings) -> str:
    """The Q/DQ flavour a build makes: `int8.qdq.flavour`, or the target's own (its PrecisionRoute's)."""
    return q.flavour if q.flavour != "auto" else target_flavour


@functools.cache
def cpu_has_vnni() -> bool:
    """True where int8 dot products do not saturate: an x86 CPU with VNNI (AVX512-VNNI, AVX-VNNI or AMX-INT8), or a
    CPU that is not x86 at all (the vpmaddubsw problem is x86's)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return True
    return bool(_VNNI_FLAGS & cpu_flags())  # unreadable: no VNNI (7-bit weights cost a little, saturation a lot)


def reduce_range(q: QdqSettings, flavour: str) -> bool:
    """`int8.qdq.reduce_range` with `auto` resolved: the onnxruntime flavour reduces where the CPU has no VNNI; the
    tensorrt flavour keeps its ort method's earlier default (on), so the same graph also runs right on such CPUs."""
    if q.reduce_range != "auto":
        return bool(q.reduce_range)
    return True if flavour == "tensorrt" else not cpu_has_vnni()


def qdq_settings(int8: Int8Settings, flavour: str = "tensorrt", keep_float: list[str] | None = None) -> dict[str, Any]:
    """The settings a Q/DQ model depends on (its cache key; each flavour is keyed separately). The onnxruntime flavour
    always calibrates with quantize_static (NNCF's placement leaves ONNX Runtime's convs in float). `keep_float`:
    nodes kept in float besides `excluded` (a detection head's decode)."""
    q = int8.qdq
    method = "ort" if flavour == "onnxruntime" else q.method
    out: dict[str, Any] = {"flavour": flavour, "method": method, "excluded": q.excluded.model_dump(),
                           "weights": "int8 symmetric per-channel"}
    if int8.model_type == "transformer":  # resolved by the precision stage; `none` keeps the earlier keys
        out["model_type"] = "transformer"
    if keep_float:
        out["keep_float_nodes"] = sorted(keep_float)
    if flavour == "onnxruntime":
        out.update(activations="uint8 asymmetric", op_types="every op with an ONNX Runtime int8 kernel", bias="int32",
                   float_tail=True, float_gemm_outputs=True)
    else:
        out.update(activations="int8 symmetric", bias="float")
    if method == "ort":
        out.update(calibrate_method=q.calibrate_method, moving_average=q.moving_average,
                   reduce_range=reduce_range(q, flavour))
        if flavour == "tensorrt":
            out["op_types"] = list(q.op_types)
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

    def __init__(self, calib: CalibrationSet, first: int | None = None):
        self._samples = calib.samples[:first]
        self._i = 0

    def get_next(self):
        if self._i >= len(self._samples):
            return None
        self._i += 1
        return self._samples[self._i - 1]

    def rewind(self):
        self._i = 0


def quantize_ort(onnx_path: Path, out_path: Path, calib: CalibrationSet, q: QdqSettings,
                 flavour: str = "tensorrt", model_type: str = "none", keep_float: list[str] | None = None
                 ) -> dict[str, Any]:
    """onnxruntime.quantization.quantize_static → Q/DQ ONNX at out_path (the caller places it atomically): the
    tensorrt flavour (symmetric int8 on q.op_types, float bias) or the onnxruntime flavour (uint8 x int8 on every op
    with an ONNX Runtime int8 kernel, int32 bias, float tail and Gemm outputs).

    The onnxruntime flavour with MinMax ranges collects every activation's per-sample min and max in one pass and
    quantizes from them (quantize_static's TensorQuantOverrides): `moving_average` true takes the mean of the
    per-sample extremes (clips rare outliers), false the extremes over all samples; `auto` quantizes both and keeps
    the one whose outputs are closer to the float model's on the calibration samples. Neither is best everywhere:
    the mean is 1.4 mAP points better on the demo detector, the extremes 3x less output error on the
    MobileNetV2-like classifier (docs/precision.md). `keep_float` nodes (a detection head's decode) get no Q/DQ
    in either flavour."""
    from onnxruntime.quantization import QuantType

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    model = onnx.load(str(onnx_path))
    excluded = resolve_nodes(model, q.excluded)
    if model_type == "transformer":  # int8 for the weight-carrying Conv/MatMul/Gemm only
        excluded = sorted(set(excluded) | set(float_nodes(model)))
    head = [n for n in keep_float or [] if n not in excluded]
    if flavour != "onnxruntime":
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                 "CalibTensorRangeSymmetric": True,
                 **({"CalibMovingAverage": True} if q.calibrate_method == "minmax" and q.moving_average else {})}
        _quantize_static(onnx_path, out_path, q, flavour, excluded + head, extra, QuantType.QInt8, list(q.op_types),
                         calib)
        if head:  # the decode reads the head convs' float outputs, not their Q/DQ pairs
            onnx.save(float_inputs(onnx.load(str(out_path)), head), str(out_path))
        return {"excluded_nodes": excluded}
    tail = [n for n in dict.fromkeys([*float_tail(model), *head]) if n not in excluded]
    # with layers kept in float, ReLU/Clip stay explicit nodes, so float_inputs can feed those layers their output
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "QDQKeepRemovableActivations": bool(excluded)}
    made: dict[str, Any] = {"excluded_nodes": excluded, "float_tail": tail}
    if q.calibrate_method != "minmax":  # a histogram calibrator: quantize_static's own pass
        _quantize_static(onnx_path, out_path, q, flavour, excluded + tail, extra, QuantType.QUInt8, None, calib)
        made["float_outputs"] = _float_outputs_file(out_path, excluded + head)
        return made
    ranges = activation_ranges(onnx_path, calib)
    choices = [True, False] if q.moving_average == "auto" else [bool(q.moving_average)]
    errors: dict[str, float] = {}
    for mean in choices:
        label = "mean" if mean else "extremes"
        path = out_path if len(choices) == 1 else out_path.with_name(f"{out_path.stem}.{label}{out_path.suffix}")
        _quantize_static(onnx_path, path, q, flavour, excluded + tail, extra, QuantType.QUInt8, None, calib,
                         ranges=ranges.pick(mean))
        made["float_outputs"] = _float_outputs_file(path, excluded + head)
        if len(choices) > 1:
            errors[label] = output_error(onnx_path, path, calib)
    if errors:
        best = min(errors, key=errors.get)
        for label in errors:
            path = out_path.with_name(f"{out_path.stem}.{label}{out_path.suffix}")
            if label == best:
                path.replace(out_path)
            else:
                path.unlink()
        made["ranges"] = {"chosen": best, "output_rel_l2": errors}
    else:
        made["ranges"] = {"chosen": "mean" if choices[0] else "extremes"}
    return made


def _quantize_static(onnx_path: Path, out_path: Path, q: QdqSettings, flavour: str, excluded: list[str],
                     extra: dict[str, Any], activation_type, op_types: list[str] | None,
                     calib: CalibrationSet | None = None, ranges: dict[str, tuple[float, float]] | None = None,
                     ) -> None:
    """quantize_static in QDQ format, per-channel int8 weights, calibrated on `calib`, or quantized from given
    `ranges` (as TensorQuantOverrides rmin/rmax: ONNX Runtime computes scale and zero point from them as from its own
    calibration, byte for byte; its calibration pass then runs on one sample, whose ranges the overrides replace).
    The overrides work from ONNX Runtime 1.17 on, so the JetPack 6 device set (1.23) quantizes as the host does."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[q.calibrate_method]
    extra = {**extra, **({"CalibPercentile": q.percentile} if q.calibrate_method == "percentile" else {})}
    reader = _Reader(calib)
    if ranges is not None:
        reader = _Reader(calib, first=1)
        extra["TensorQuantOverrides"] = {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
                                         for name, (low, high) in ranges.items()}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static's "consider pre-processing" advice goes to the root logger
    try:
        quantize_static(str(onnx_path), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range(q, flavour), weight_type=QuantType.QInt8,
                        activation_type=activation_type, op_types_to_quantize=op_types, nodes_to_exclude=excluded,
                        calibrate_method=method, extra_options=extra)
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EdgeDeployError(f"ONNX Runtime quantization failed: {type(e).__name__}: {text}",
                              where=str(onnx_path)) from None
    finally:
        root.setLevel(level)


def _float_outputs_file(path: Path, excluded: list[str]) -> list[str]:
    """float_outputs and float_inputs applied to the file at `path`."""
    model, changed = float_outputs(onnx.load(str(path)))
    model = float_inputs(model, excluded)
    onnx.save(model, str(path))
    return changed


def float_inputs(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    """The nodes kept in float read their activations unquantized: quantize_static leaves an excluded node's inputs
    behind the Q→DQ pair its producer's int8 kernel writes, so excluding a layer alone would keep the rounding that
    made it lose accuracy. Each such input is rewired to the tensor before the pair, on through single-input
    activations (kept explicit for this) to the producing layer, which then writes float (in ONNX Runtime it runs in
    float: the cost of keeping its consumer in float); pairs nothing reads any more are removed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}

    def before_pair(tensor: str) -> str:
        dq = producer.get(tensor)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in producer:
            return tensor  # not an activation's Q/DQ pair (a weight, or a graph input's)
        act = producer[q.input[0]]
        if act.op_type in _ACTIVATIONS:
            act.input[0] = before_pair(act.input[0])
        return q.input[0]

    keep = set(nodes)
    for n in g.node:
        if n.name in keep:
            for i, name in enumerate(n.input):
                n.input[i] = before_pair(name)
    while True:  # drop Q/DQ nodes whose outputs nothing reads, then their scales and zero points
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in _QUANT_OPS and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used |= {i.name for i in g.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return model


class ActivationRanges:
    """Per-sample min and max of every float activation over the calibration samples."""

    def __init__(self, mins: dict[str, list[float]], maxs: dict[str, list[float]]):
        self.mins, self.maxs = mins, maxs

    def pick(self, mean: bool) -> dict[str, tuple[float, float]]:
        """{tensor: (low, high)}: the mean of the per-sample extremes, or the extremes over all samples."""
        if mean:
            return {k: (float(np.mean(self.mins[k])), float(np.mean(self.maxs[k]))) for k in self.mins}
        return {k: (float(np.min(self.mins[k])), float(np.max(self.maxs[k]))) for k in self.mins}


def _float_tensors(model: onnx.ModelProto) -> list[str]:
    """Graph inputs and node outputs of float type (shape inference gives the types)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o]
    return [n for n in dict.fromkeys(names) if typed.get(n) == onnx.TensorProto.FLOAT]


def activation_ranges(onnx_path: Path, calib: CalibrationSet) -> ActivationRanges:
    """One pass of ONNX Runtime over the calibration samples with every float activation an output; only each
    tensor's per-sample min and max are kept (memory: one sample's activations at a time)."""
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    names = _float_tensors(model)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    mins: dict[str, list[float]] = {n: [] for n in names}
    maxs: dict[str, list[float]] = {n: [] for n in names}
    for sample in calib.samples:
        for name, value in zip(names, session.run(names, sample)):
            if value.size:
                mins[name].append(float(value.min()))
                maxs[name].append(float(value.max()))
    return ActivationRanges({k: v for k, v in mins.items() if v}, {k: v for k, v in maxs.items() if v})


def output_error(float_path: Path, quantized_path: Path, calib: CalibrationSet, samples: int = 32) -> float:
    """Mean rel-L2 of the quantized model's outputs vs the float model's, over the first `samples` calibration
    samples, both on ONNX Runtime (the quantized one with its int8 kernels)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    ref = ort.InferenceSession(str(float_path), options, providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(str(quantized_path), options, providers=["CPUExecutionProvider"])
    num, den = 0.0, 0.0
    for sample in calib.samples[:samples]:
        for a, b in zip(ref.run(None, sample), got.run(None, sample)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            num += float(np.sum((a - b) ** 2))
            den += float(np.sum(a ** 2))
    return float(np.sqrt(num / den)) if den > 0 else float("inf")


_COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Nodes after the last convolution / matrix product of every path (no such op downstream): a detector's box
    decode, a classifier's softmax. Kept in float by the onnxruntime flavour: uint8 there would round the decoded
    boxes and the scores (a sigmoid's output in steps of 1/255 drops every detection under 0.004 confidence: 4.7 mAP
    points on the demo, 0.4 with the tail in float), and int8 kernels would save nothing on such small ops."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    feeds: dict[int, bool] = {}

    def feeds_compute(node: onnx.NodeProto) -> bool:
        key = id(node)
        if key not in feeds:
            feeds[key] = False  # a cycle (impossible in a valid graph) cannot loop forever
            feeds[key] = any(c.op_type in _COMPUTE or feeds_compute(c)
                             for o in node.output for c in consumers.get(o, []))
        return feeds[key]

    return [n.name for n in model.graph.node if n.op_type not in _COMPUTE and not feeds_compute(n)]


def float_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Drop the Q→DQ pair quantize_static puts on a graph output computed by Gemm/MatMul (a classifier's logits):
    ONNX Runtime's QGemm writes float itself, so the output keeps full precision at no cost. Returns the model and
    the outputs made float."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    drop, changed = set(), []
    for out in g.output:
        dq = producer.get(out.name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        compute = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if compute is None or compute.op_type not in ("Gemm", "MatMul") \
                or consumers.get(q.input[0], 0) != 1 or consumers.get(q.output[0], 0) != 1:
            continue
        compute.output[0] = out.name
        drop |= {id(q), id(dq)}
        changed.append(out.name)
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    return model, changed


def ort_kernels(model_path: Path) -> dict[str, Any]:
    """What ONNX Runtime's CPU graph optimizer makes of a model (ORT_ENABLE_ALL): op counts, and how many
    convolutions / matrix products run as int8 kernels and how many stay in float."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgedeploy-ort-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    ops: dict[str, int] = {}
    for n in graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    int8 = {k: v for k, v in ops.items() if k.startswith(_ORT_INT8_KERNELS)}
    compute_int8 = sum(v for k, v in int8.items() if k in ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger",
                                                             "MatMulInteger"))
    compute_float = sum(v for k, v in ops.items() if k in ("Conv", "FusedConv", "NchwcConv", "ConvTranspose",
                                                             "Gemm", "MatMul", "FusedMatMul", "FusedGemm"))
    return {"int8_kernels": int8, "compute_int8": compute_int8, "compute_float": compute_float,
            "quantize_linear": ops.get("QuantizeLinear", 0), "dequantize_linear": ops.get("DequantizeLinear", 0),
            "nodes": sum(ops.values())}


def quantize_nncf(onnx_path: Path, out_path: Path, calib: CalibrationSet, int8: Int8Settings,
                  keep_float: list[str] | None = None) -> dict[str, Any]:
    """NNCF on the onnx.ModelProto (performance preset: symmetric activations) → Q/DQ ONNX at out_path; the
    `keep_float` nodes join the ignored scope."""
    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(onnx_path))
    del model.graph.value_info[:]  # NNCF 3.4's statistics model fails ("Duplicate definition-site") with them
    excluded = resolve_nodes(model, int8.qdq.excluded)
    ignored = sorted(set(excluded) | set(keep_float or []))
    scope = nncf.IgnoredScope(names=ignored) if ignored else None
    try:
        quantized = nncf.quantize(model, nncf.Dataset(calib.samples), subset_size=len(calib),
                                  preset=nncf.QuantizationPreset.PERFORMANCE, fast_bias_correction=True,
                                  ignored_scope=scope, model_type=nncf.ModelType.TRANSFORMER
                                  if int8.model_type == "transformer" else None)
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
    int32_biases = 0
    for n in q_nodes:
        zp = const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None and zp.dtype == np.int32:  # a bias quantized to int32 (the onnxruntime flavour)
            int32_biases += 1
            continue
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
        "int32_biases": int32_biases,
        "compute_ops": len(compute),
        "compute_ops_int8": len(fed),
        "compute_ops_float": sorted(n.name for n in compute if n not in fed),
        "tensorrt_ready": dtypes <= {"int8"} and all(int(np.abs(z.astype(np.int64)).max(initial=0)) == 0
                                                     for z in zero_points),
    }


__all__ = ["quantize_ort", "quantize_nncf", "describe", "resolve_nodes", "qdq_settings", "flavour_of",
           "reduce_range", "cpu_has_vnni", "ort_kernels", "FLAVOURS"]
