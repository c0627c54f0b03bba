"""Transformer-aware INT8: which graphs are transformers, and which of their nodes stay float in a Q/DQ graph.

A graph is a transformer when it has attention: a Softmax whose input comes from a MatMul of two activations
(Q·Kᵀ, a few nodes up) and whose output feeds a MatMul with another activation (·V, a few nodes down), and whose
weights are mostly in MatMul/Gemm rather than convolutions (a CNN with an attention block, such as YOLO11's C2PSA,
is quantized as a CNN: keeping its SiLUs float would leave ONNX Runtime no int8 convolution to fuse, 1.8x slower
than fp32 on YOLO11n). For such a graph `int8.model_type: auto` becomes `transformer`: NNCF's TRANSFORMER model type on OpenVINO and on the NNCF Q/DQ route, and on ONNX Runtime's
quantize_static route int8 only for the weight-carrying Conv/MatMul/Gemm (per-channel weights), with the attention
MatMuls, LayerNorm, Softmax, GELU and the residual Adds kept float: their activations have the outliers int8
ranges cannot hold (docs/precision.md)."""

from __future__ import annotations

from typing import Literal

import onnx

from edgedeploy.config import Int8Settings

WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _constants(model: onnx.ModelProto) -> set[str]:
    """Tensors that are weights: initializers and Constant outputs, through DequantizeLinear / Transpose / Cast /
    Reshape chains of them."""
    known = {t.name for t in model.graph.initializer}
    known |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    changed = True
    while changed:
        changed = False
        for n in model.graph.node:
            if n.op_type in ("DequantizeLinear", "Transpose", "Cast", "Reshape", "Identity", "Unsqueeze") and \
                    n.input and n.input[0] in known and not set(n.output) <= known:
                known |= set(n.output)
                changed = True
    return known


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes whose both inputs are activations (attention's Q·Kᵀ and ·V)."""
    weights = _constants(model)
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not (set(n.input) & weights)]


def has_attention(model: onnx.ModelProto) -> bool:
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    attention = set(activation_matmuls(model))

    def upstream_matmul(tensor: str, depth: int = 4) -> bool:
        node = producers.get(tensor)
        for _ in range(depth):
            if node is None:
                return False
            if node.name in attention:
                return True
            node = producers.get(node.input[0]) if node.input else None
        return False

    def downstream_matmul(tensor: str, depth: int = 3) -> bool:
        """Through what exporters put between (torch's SDPA: IsNaN/Where that zero fully masked rows, Cast, Dropout)."""
        frontier = [tensor]
        for _ in range(depth):
            nodes = [c for t in frontier for c in consumers.get(t, [])]
            if any(c.name in attention for c in nodes):
                return True
            frontier = [o for c in nodes for o in c.output]
        return False

    return any(n.op_type == "Softmax" and n.input and upstream_matmul(n.input[0]) and downstream_matmul(n.output[0])
               for n in model.graph.node)


def mostly_matmul_weights(model: onnx.ModelProto) -> bool:
    """At least as many weight-carrying MatMul/Gemm nodes as convolutions: attention and MLP blocks make up the
    network (ViT, SegFormer), not a CNN with an attention block."""
    weights = _constants(model)
    dense = sum(n.op_type == "Gemm" or (n.op_type == "MatMul" and bool(set(n.input) & weights))
                for n in model.graph.node)
    convs = sum(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)
    return dense >= convs


def model_type(int8: Int8Settings, model: onnx.ModelProto) -> Literal["none", "transformer"]:
    """`int8.model_type` with `auto` resolved on the graph."""
    if int8.model_type != "auto":
        return int8.model_type
    return "transformer" if has_attention(model) and mostly_matmul_weights(model) else "none"


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes a transformer's Q/DQ graph keeps float: everything but the weight-carrying Conv/MatMul/Gemm."""
    weights = _constants(model)
    return sorted(n.name for n in model.graph.node
                  if n.name and not (n.op_type in WEIGHT_OPS and set(n.input[1:2]) & weights))
