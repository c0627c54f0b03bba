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
import onnx_ir as ir

from edgedeploy.graph.ir import tensor_array
from edgedeploy.graph.onnxir import to_ir

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


def _constants(g: ir.Graph) -> dict[ir.Value, np.ndarray | None]:
    """Tensors that do not depend on the input data: initializers, Constant outputs, shape reads and what is computed
    from those alone (value known for initializers and Constants, else None)."""
    const: dict[ir.Value, np.ndarray | None] = {
        v: tensor_array(v.const_value, f"initializer '{v.name}'") for v in g.initializers.values()
    }
    for n in g:  # a valid graph lists nodes in topological order
        if n.op_type == "Constant":
            attr = n.attributes.get("value")
            const[n.outputs[0]] = (tensor_array(attr.as_tensor(), f"Constant node '{n.name}'")
                                   if attr is not None else None)
        elif n.op_type in _SHAPE_OPS or all(i in const for i in n.inputs if i is not None):
            for o in n.outputs:
                const.setdefault(o, None)
    return const


def _dfl_nodes(g: ir.Graph, const: dict[ir.Value, np.ndarray | None]) -> set[ir.Node]:
    """Conv/MatMul nodes that take the expectation over a softmax's bins: a constant weight whose values are 0..n-1
    (n >= 2), the data input a Softmax through reshapes and transposes."""
    found = set()
    for n in g:
        if n.op_type not in ("Conv", "MatMul") or len(n.inputs) < 2 or n.inputs[0] is None:
            continue
        data, weight = n.inputs[0], n.inputs[1]
        values = const.get(weight)
        if data in const or values is None or values.size < 2:
            continue
        if not np.array_equal(values.reshape(-1).astype(np.float64), np.arange(values.size, dtype=np.float64)):
            continue
        p = data.producer()
        while p is not None and p.op_type in _MOVES and p.inputs and p.inputs[0] is not None:
            p = p.inputs[0].producer()
        if p is not None and p.op_type == "Softmax":
            found.add(n)
    return found


def decode_scope(model: onnx.ModelProto) -> HeadScope:
    """The decode subgraph of a YOLO-family head in `model`; empty when the graph has none (see the module doc)."""
    g = to_ir(model).graph
    const = _constants(g)
    dfl = _dfl_nodes(g, const)
    data_nodes = [n for n in g if n.op_type not in _SHAPE_OPS and any(i is not None and i not in const
                                                                     for i in n.inputs)]
    data = set(data_nodes)

    def learned(n: ir.Node) -> bool:
        return n.op_type in _COMPUTE and n not in dfl

    feeds: dict[ir.Node, bool] = {}
    for n in reversed(data_nodes):  # reverse topological order: every consumer is decided first
        feeds[n] = any(learned(c) or feeds[c] for o in n.outputs for c in o.consumers() if c in data)
    tail = [n for n in data_nodes if not learned(n) and not feeds[n]]
    # connected parts of the tail (nodes joined by a tensor one writes and the other reads)
    parent = {n: n for n in tail}

    def root(k: ir.Node) -> ir.Node:
        while parent[k] is not k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for n in tail:
        for i in n.inputs:
            writer = i.producer() if i is not None else None
            if writer in parent:
                parent[root(n)] = root(writer)
    parts: dict[ir.Node, list[ir.Node]] = {}
    for n in tail:
        parts.setdefault(root(n), []).append(n)

    def is_decode(part: list[ir.Node]) -> bool:
        has_sigmoid = any(n.op_type == "Sigmoid" for n in part)
        grid = any(n.op_type in _ARITHMETIC and any(i in const and _size(const[i], i) > 1 for i in n.inputs)
                   for n in part)
        return has_sigmoid and (grid or any(n in dfl for n in part))

    keep = {n for part in parts.values() if is_decode(part) for n in part}
    nodes = [n for n in data_nodes if n in keep]
    written = {o.name for n in nodes for o in n.outputs}
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return HeadScope(nodes=tuple(n.name for n in nodes), outputs=tuple(o.name for o in g.outputs if o.name in written),
                     dfl_nodes=tuple(n.name for n in nodes if n in dfl), op_counts=counts)


def _size(array: np.ndarray | None, value: ir.Value) -> int:
    """Element count of a constant; a computed one (array unknown) counts as a tensor when its inferred shape says so
    (a grid built with Range), else as a scalar."""
    if array is not None:
        return int(array.size)
    if value.shape is None:
        return 1
    return int(np.prod([d if isinstance(d, int) else 2 for d in value.shape])) if value.shape.rank() else 1


__all__ = ["HeadScope", "decode_scope"]
