"""The fp16-cast ONNX graph (deploy.fp16.onnx) for strongly typed TensorRT 11 and ONNX Runtime fp16.

Our own pass over onnx.ModelProto (no onnxconverter-common): every node runs in fp16 except the ops in the keep list
and the named nodes; float32 tensors that cross between an fp16 node and an fp32 node get one Cast per tensor and
direction; the graph's inputs and outputs stay float32 (Cast at the boundaries), so callers feed and read what they
did before. Float32 initializers become fp16 where only fp16 nodes read them (a copy where both kinds do).

Default keep list (config `fp16.keep_fp32_ops`) and why:
- Exp, Pow, Softmax, LogSoftmax, ReduceLogSumExp: overflow (fp16 max 65504: exp(x) overflows at x > 11.1; YOLO's
  `(2*sigmoid)**2 * anchor` box decode is a Pow on pixel sizes);
- Log, Sqrt, Reciprocal: small arguments lose most of their digits (fp16's smallest normal is 6.1e-5);
- ReduceMean/Sum/SumSquare/L1/L2/LogSum/Prod, CumSum: long accumulations lose precision and overflow;
- LayerNormalization, GroupNormalization, InstanceNormalization: variance of large activations overflows;
- Range: index arithmetic (grid coordinates) must be exact.
Sigmoid, Conv, activations, Resize, Concat and data movement run in fp16 (TensorRT does the same in its fp16 mode).
Q/DQ and NonMaxSuppression/RoiAlign always stay fp32.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.errors import UsageError

ALWAYS_FP32 = {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression", "RoiAlign", "DynamicQuantizeLinear"}
# input slots that must stay float32 whatever the node runs in (ONNX types them tensor(float) only, or a roi)
FP32_SLOTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
_FP16_MAX = 65504.0


@dataclass
class CastStats:
    fp16_nodes: int = 0
    fp32_nodes: list[str] = field(default_factory=list)  # names of nodes kept in fp32
    casts: int = 0
    clipped_initializers: list[str] = field(default_factory=list)  # weights beyond the fp16 range (saturated)

    def to_dict(self) -> dict:
        return {"fp16_nodes": self.fp16_nodes, "fp32_nodes": len(self.fp32_nodes),
                "fp32_node_names": self.fp32_nodes[:50], "casts": self.casts,
                "clipped_initializers": self.clipped_initializers}


def cast_to_fp16(model: onnx.ModelProto, keep_fp32_ops: Iterable[str] = (),
                 keep_fp32_nodes: Iterable[str] = ()) -> tuple[onnx.ModelProto, CastStats]:
    """An fp16 copy of `model` with float32 graph I/O; `keep_fp32_nodes` are names or regular expressions."""
    keep_ops = set(keep_fp32_ops) | ALWAYS_FP32
    patterns = [re.compile(p) for p in keep_fp32_nodes]
    src = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    g = src.graph
    for node in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise UsageError(f"the fp16 cast does not handle control flow ({node.op_type})",
                             where=f"node {node.name or node.output[0]}",
                             fix="use fp32, or the openvino target (fp16 weights)")
    elem: dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type"):
            elem[vi.name] = vi.type.tensor_type.elem_type
    out = onnx.ModelProto()
    out.CopyFrom(src)
    og = out.graph
    inits = {t.name: t for t in og.initializer}
    for name, t in inits.items():
        elem[name] = t.data_type
    del og.value_info[:]
    nodes = list(og.node)
    stats = CastStats()

    def is_float(name: str, node: onnx.NodeProto | None = None) -> bool:
        if not name:
            return False
        if name not in elem:
            where = f"tensor {name}" + (f" (node {node.name})" if node is not None else "")
            raise UsageError("the fp16 cast needs the type of every tensor and shape inference gave none", where=where,
                             fix="run the optimize stage (simplify) first, or add keep_fp32_nodes for this node")
        return elem[name] == TensorProto.FLOAT

    prec: dict[int, str] = {}
    for i, node in enumerate(nodes):
        kept = node.op_type in keep_ops or any(p.fullmatch(node.name) or p.search(node.name) for p in patterns)
        prec[i] = "fp32" if kept else "fp16"
        if kept:
            stats.fp32_nodes.append(node.name or node.output[0])
        else:
            stats.fp16_nodes += 1

    # graph outputs made by fp16 nodes: the node writes an alias, a Cast writes the output name in float32
    graph_out = {o.name for o in og.output}
    alias: dict[str, str] = {}
    for i, node in enumerate(nodes):
        for k, o in enumerate(node.output):
            if o in graph_out and prec[i] == "fp16" and is_float(o, node):
                alias[o] = f"{o}__fp16"
                node.output[k] = alias[o]
                elem[alias[o]] = TensorProto.FLOAT
    for node in nodes:
        for k, name in enumerate(node.input):
            if name in alias:
                node.input[k] = alias[name]

    home: dict[str, str] = {vi.name: "fp32" for vi in og.input}
    for i, node in enumerate(nodes):
        for o in node.output:
            home[o] = prec[i]
        if prec[i] == "fp16":
            _retype_attributes(node)

    # initializers: which precision does each reader want?
    wants: dict[str, set[str]] = {}
    for i, node in enumerate(nodes):
        for k, name in enumerate(node.input):
            if name in inits and is_float(name, node):
                wants.setdefault(name, set()).add(_slot_precision(node, k, prec[i]))
    new_inits = []
    fp16_name: dict[str, str] = {}
    for name, req in wants.items():
        if "fp16" not in req:
            continue
        arr = numpy_helper.to_array(inits[name])
        if np.abs(arr).max(initial=0) > _FP16_MAX:
            stats.clipped_initializers.append(name)
        half = numpy_helper.from_array(np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16),
                                       name if req == {"fp16"} else f"{name}__fp16")
        if req == {"fp16"}:
            inits[name].CopyFrom(half)
        else:
            new_inits.append(half)
        fp16_name[name] = half.name
    og.initializer.extend(new_inits)

    # rewire every float read whose producer's precision differs from what the reader needs
    casts: dict[tuple[str, str], str] = {}
    cast_nodes: dict[str, onnx.NodeProto] = {}
    for i, node in enumerate(nodes):
        for k, name in enumerate(node.input):
            if not name or not is_float(name, node):
                continue
            need = _slot_precision(node, k, prec[i])
            if name in inits:
                if need == "fp16":
                    node.input[k] = fp16_name[name]
                continue
            have = home.get(name, "fp32")
            if have == need:
                continue
            key = (name, need)
            if key not in casts:
                casts[key] = f"{name}__to_{need}"
                cast_nodes[name + need] = helper.make_node(
                    "Cast", [name], [casts[key]], name=f"{name}__cast_{need}",
                    to=TensorProto.FLOAT16 if need == "fp16" else TensorProto.FLOAT)
            node.input[k] = casts[key]
    # each Cast goes right after its input's producer, so the graph stays topologically sorted
    producer_index = {o: i for i, n in enumerate(nodes) for o in n.output}
    ordered: list[onnx.NodeProto] = [c for key, c in cast_nodes.items() if c.input[0] not in producer_index]
    after: dict[int, list[onnx.NodeProto]] = {}
    for c in cast_nodes.values():
        if c.input[0] in producer_index:
            after.setdefault(producer_index[c.input[0]], []).append(c)
    for i, node in enumerate(nodes):
        ordered.append(node)
        ordered.extend(after.get(i, []))
    for name, a in alias.items():
        ordered.append(helper.make_node("Cast", [a], [name], name=f"{name}__cast_fp32", to=TensorProto.FLOAT))
    stats.casts = len(cast_nodes) + len(alias)
    del og.node[:]
    og.node.extend(ordered)
    out = onnx.shape_inference.infer_shapes(out, strict_mode=False)
    onnx.checker.check_model(out)
    return out, stats


def _slot_precision(node: onnx.NodeProto, index: int, node_precision: str) -> str:
    return "fp32" if (node.op_type, index) in FP32_SLOTS else node_precision


def _retype_attributes(node: onnx.NodeProto) -> None:
    """Attributes that name or hold float32 in a node that now runs in fp16."""
    if node.op_type == "Constant":
        for a in list(node.attribute):
            if a.name in ("value_float", "value_floats"):
                arr = np.asarray(a.f if a.name == "value_float" else list(a.floats), np.float16)
                node.attribute.remove(a)
                node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(arr)))
    for a in node.attribute:
        if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
            a.i = TensorProto.FLOAT16
        elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(a.t)
            a.t.CopyFrom(numpy_helper.from_array(np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16), a.t.name))
        elif node.op_type in ("EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike") \
                and a.name == "dtype" and a.i == TensorProto.FLOAT:
            a.i = TensorProto.FLOAT16


def io_types(model: onnx.ModelProto) -> dict[str, str]:
    """{name: element type} of the graph's inputs and outputs."""
    return {vi.name: TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
            for vi in list(model.graph.input) + list(model.graph.output)}


__all__ = ["cast_to_fp16", "CastStats", "io_types", "ALWAYS_FP32"]
