"""The decode subgraph of a YOLO-family detection head, found from the graph's structure (not its node names), so
INT8 can keep it in float.

A YOLO head ends in learned 1x1 convolutions, one per output branch and level; what follows them is arithmetic on
their raw maps: reshape/transpose/split, the sigmoid of the scores (and of v5/v7 boxes, keypoint visibilities), the
grid and stride (and v5/v7 anchor) arithmetic that turns cell offsets into pixels, v8/v11's DFL (a softmax over 16
distance bins, then a fixed 1x1 conv with weights 0..15: the expected distance), the concat of levels and branches,
and in end-to-end heads the top-k selection. Quantizing it rounds pixel coordinates and scores (a uint8 sigmoid
moves in steps of 1/255): box error that mAP@0.5:0.95 sees, for no speed (these are tiny element-wise ops).

The rule: the *learned* compute ops are Conv/ConvTranspose/Gemm/MatMul except DFL convs (a constant weight equal to
0..n-1, read after a Softmax); the tail is every node on the data path that feeds no learned compute op; a connected
part of the tail is a decode when it holds a Sigmoid and either a DFL conv or arithmetic with a constant tensor (a
grid, anchors, strides). So a classifier's softmax, a segmentation mask's SiLU or an upsampled logit map are not
decodes, and v5/v7 objectness heads, v8/v11 anchor-free heads, their seg mask-coefficient and pose keypoint branches
and end-to-end heads are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

_COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Pow")
_MOVES = ("Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten")
_SHAPE_OPS = ("Shape", "Size")


@dataclass(frozen=True)
class HeadScope:
    """The decode nodes (graph order), the graph outputs they write, and what identified them."""

    nodes: tuple[str, ...]
    outputs: tuple[str, ...]
    dfl_nodes: tuple[str, ...]
    op_counts: dict[str, int]

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def to_dict(self) -> dict:
        return {"nodes": list(self.nodes), "outputs": list(self.outputs), "dfl_nodes": list(self.dfl_nodes),
                "op_counts": dict(self.op_counts)}


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray | None]:
    """Tensors that do not depend on the input data: initializers, Constant outputs, shape reads and what is computed
    from those alone (value known for initializers and Constants, else None)."""
    g = model.graph
    const: dict[str, np.ndarray | None] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:  # a valid graph lists nodes in topological order
        if n.op_type == "Constant":
            attr = next((a for a in n.attribute if a.name == "value"), None)
            const[n.output[0]] = numpy_helper.to_array(attr.t) if attr is not None else None
        elif n.op_type in _SHAPE_OPS or all(i in const for i in n.input if i):
            for o in n.output:
                const.setdefault(o, None)
    return const


def _dfl_nodes(model: onnx.ModelProto, const: dict[str, np.ndarray | None]) -> set[str]:
    """Conv/MatMul nodes that take the expectation over a softmax's bins: a constant weight whose values are 0..n-1
    (n >= 2), the data input a Softmax through reshapes and transposes."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found = set()
    for n in model.graph.node:
        if n.op_type not in ("Conv", "MatMul") or len(n.input) < 2:
            continue
        data, weight = n.input[0], n.input[1]
        values = const.get(weight)
        if data in const or values is None or values.size < 2:
            continue
        if not np.array_equal(values.reshape(-1).astype(np.float64), np.arange(values.size, dtype=np.float64)):
            continue
        p = producer.get(data)
        while p is not None and p.op_type in _MOVES:
            p = producer.get(p.input[0])
        if p is not None and p.op_type == "Softmax":
            found.add(n.name)
    return found


def decode_scope(model: onnx.ModelProto) -> HeadScope:
    """The decode subgraph of a YOLO-family head in `model`; empty when the graph has none (see the module doc)."""
    g = model.graph
    const = _constants(model)
    dfl = _dfl_nodes(model, const)
    data_nodes = [n for n in g.node if n.op_type not in _SHAPE_OPS and any(i and i not in const for i in n.input)]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in data_nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def learned(n: onnx.NodeProto) -> bool:
        return n.op_type in _COMPUTE and n.name not in dfl

    feeds: dict[int, bool] = {}
    for n in reversed(data_nodes):  # reverse topological order: every consumer is decided first
        feeds[id(n)] = any(learned(c) or feeds[id(c)] for o in n.output for c in consumers.get(o, []))
    tail = [n for n in data_nodes if not learned(n) and not feeds[id(n)]]
    # connected parts of the tail (nodes joined by a tensor one writes and the other reads)
    parent = {id(n): id(n) for n in tail}

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    writer = {o: n for n in tail for o in n.output}
    for n in tail:
        for i in n.input:
            if i in writer:
                parent[root(id(n))] = root(id(writer[i]))
    parts: dict[int, list[onnx.NodeProto]] = {}
    for n in tail:
        parts.setdefault(root(id(n)), []).append(n)

    def is_decode(part: list[onnx.NodeProto]) -> bool:
        has_sigmoid = any(n.op_type == "Sigmoid" for n in part)
        grid = any(n.op_type in _ARITHMETIC and any(i in const and _size(const[i], i, model) > 1 for i in n.input)
                   for n in part)
        return has_sigmoid and (grid or any(n.name in dfl for n in part))

    keep = {id(n) for part in parts.values() if is_decode(part) for n in part}
    nodes = [n for n in data_nodes if id(n) in keep]
    written = {o for n in nodes for o in n.output}
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return HeadScope(nodes=tuple(n.name for n in nodes), outputs=tuple(o.name for o in g.output if o.name in written),
                     dfl_nodes=tuple(n.name for n in nodes if n.name in dfl), op_counts=counts)


def _size(value: np.ndarray | None, name: str, model: onnx.ModelProto) -> int:
    """Element count of a constant; a computed one (value unknown) counts as a tensor when its inferred shape says so
    (a grid built with Range), else as a scalar."""
    if value is not None:
        return int(value.size)
    for v in model.graph.value_info:
        if v.name == name:
            dims = v.type.tensor_type.shape.dim
            return int(np.prod([d.dim_value if d.HasField("dim_value") else 2 for d in dims])) if dims else 1
    return 1


__all__ = ["HeadScope", "decode_scope"]
