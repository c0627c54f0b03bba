"""Hand-built ONNX graphs of YOLO-family heads (onnx.helper, random weights), for the detection-head tests: a
v8/v11-style anchor-free head with DFL (optionally with a seg mask-coefficient branch and its proto output, a pose
keypoint branch, or an end-to-end top-k), a v5/v7-style objectness head with anchors, and a classifier. Each
returns (model, the names of its decode nodes) — the decode listed by construction, so a test can compare."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32
_RNG = np.random.default_rng(0)


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.decode: list[str] = []
        self._n = 0

    def const(self, value, dtype=np.float32) -> str:
        self._n += 1
        name = f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], decode: bool = False, outputs: int = 1, **attrs) -> str | list[str]:
        self._n += 1
        name = f"{op_type.lower()}{self._n}"
        outs = [f"{name}_out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        if decode:
            self.decode.append(name)
        return outs[0] if outputs == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 1, stride: int = 1, act: bool = False) -> str:
        w = self.const(_RNG.normal(0, 0.3, (cout, cin, k, k)))
        b = self.const(_RNG.normal(0, 0.1, cout))
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.op("Mul", [y, self.op("Sigmoid", [y])]) if act else y  # SiLU

    def model(self, outputs: dict[str, list]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outputs.items()], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model)


def _backbone(g: _Graph) -> list[tuple[str, int]]:
    """Two feature levels, (tensor, stride): 8x8 (stride 4) and 4x4 (stride 8), 8 channels each."""
    f3 = g.conv(g.conv("images", 3, 8, 3, 2, act=True), 8, 8, 3, 2, act=True)
    f4 = g.conv(f3, 8, 8, 3, 2, act=True)
    return [(f3, 4), (f4, 8)]


def _anchors(levels) -> tuple[np.ndarray, np.ndarray]:
    points, strides = [], []
    for _, s in levels:
        n = SIZE // s
        yv, xv = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
        points.append(np.stack([xv.ravel(), yv.ravel()]))
        strides.append(np.full(n * n, s))
    return np.concatenate(points, 1)[None].astype(np.float32), np.concatenate(strides)[None, None].astype(np.float32)


def v8(nc: int = 3, seg: int = 0, pose: int = 0, end_to_end: bool = False) -> tuple[onnx.ModelProto, set[str]]:
    """v8/v11 Detect: per level box conv (4x16 bins) and class conv, concat, DFL, dist2bbox, strides, sigmoid;
    `seg` mask coefficients (+ a proto output through SiLU: not decode), `pose` keypoints (x, y, visibility),
    `end_to_end` top-k over the scores."""
    g = _Graph()
    levels = _backbone(g)
    maps, extra = [], []
    for f, _ in levels:
        box, cls = g.conv(g.conv(f, 8, 8, 3, act=True), 8, 64), g.conv(g.conv(f, 8, 8, 3, act=True), 8, nc)
        maps.append(g.op("Reshape", [g.op("Concat", [box, cls], True, axis=1), g.const([0, 64 + nc, -1], np.int64)],
                         True))
        if seg or pose:
            m = g.conv(f, 8, seg or pose * 3)
            extra.append(g.op("Reshape", [m, g.const([0, seg or pose * 3, -1], np.int64)], True))
    x = g.op("Concat", maps, True, axis=2)
    box, cls = g.op("Split", [x, g.const([64, nc], np.int64)], True, outputs=2, axis=1)
    a = int(sum((SIZE // s) ** 2 for _, s in levels))
    d = g.op("Reshape", [box, g.const([0, 4, 16, a], np.int64)], True)
    d = g.op("Softmax", [g.op("Transpose", [d], True, perm=[0, 2, 1, 3])], True, axis=1)
    d = g.op("Conv", [d, g.const(np.arange(16).reshape(1, 16, 1, 1))], True, kernel_shape=[1, 1])
    d = g.op("Reshape", [d, g.const([0, 4, a], np.int64)], True)
    lt, rb = g.op("Split", [d, g.const([2, 2], np.int64)], True, outputs=2, axis=1)
    anchors, strides = _anchors(levels)
    x1y1, x2y2 = g.op("Sub", [g.const(anchors), lt], True), g.op("Add", [g.const(anchors), rb], True)
    cxy = g.op("Div", [g.op("Add", [x1y1, x2y2], True), g.const(2.0)], True)
    wh = g.op("Sub", [x2y2, x1y1], True)
    dbox = g.op("Mul", [g.op("Concat", [cxy, wh], True, axis=1), g.const(strides)], True)
    parts = [dbox, g.op("Sigmoid", [cls], True)]
    outputs: dict[str, list] = {}
    if seg:
        parts.append(g.op("Concat", extra, True, axis=2))
    if pose:
        k = g.op("Reshape", [g.op("Concat", extra, True, axis=2), g.const([0, pose, 3, a], np.int64)], True)
        xy, vis = g.op("Split", [k, g.const([2, 1], np.int64)], True, outputs=2, axis=2)
        grid = g.const((anchors - 0.5).reshape(1, 1, 2, a))
        xy = g.op("Mul", [g.op("Add", [g.op("Mul", [xy, g.const(2.0)], True), grid], True),
                          g.const(strides.reshape(1, 1, 1, a))], True)
        k = g.op("Concat", [xy, g.op("Sigmoid", [vis], True)], True, axis=2)
        parts.append(g.op("Reshape", [k, g.const([0, pose * 3, a], np.int64)], True))
    y = g.op("Concat", parts, True, axis=1)
    channels = 4 + nc + seg + pose * 3
    if end_to_end:
        t = g.op("Transpose", [y], True, perm=[0, 2, 1])
        boxes, scores = g.op("Split", [t, g.const([4, nc], np.int64)], True, outputs=2, axis=2)
        best = g.op("ReduceMax", [scores, g.const([-1], np.int64)], True, keepdims=0)
        _, idx = g.op("TopK", [best, g.const([10], np.int64)], True, outputs=2, axis=1)
        idx = g.op("Unsqueeze", [idx, g.const([-1], np.int64)], True)
        idx = g.op("Tile", [idx, g.const([1, 1, 4], np.int64)], True)
        y = g.op("GatherElements", [boxes, idx], True, axis=1)
        outputs[y] = ["batch", 10, 4]
    else:
        outputs[y] = ["batch", channels, a]
    if seg:
        outputs[g.conv(levels[0][0], 8, seg, act=True)] = ["batch", seg, 8, 8]  # proto: conv + SiLU, not decode
    return g.model(outputs), set(g.decode)


def v7(nc: int = 3) -> tuple[onnx.ModelProto, set[str]]:
    """v5/v7 Detect: per level one conv (3 anchors x (5 + nc)), reshape/permute, sigmoid, xy against the grid,
    wh against the anchors (squared), concat, reshape, concat over levels."""
    g = _Graph()
    levels = _backbone(g)
    no, outs = 5 + nc, []
    for f, s in levels:
        n = SIZE // s
        y = g.op("Reshape", [g.conv(f, 8, 3 * no), g.const([-1, 3, no, n, n], np.int64)], True)
        y = g.op("Sigmoid", [g.op("Transpose", [y], True, perm=[0, 1, 3, 4, 2])], True)
        xy, wh, conf = g.op("Split", [y, g.const([2, 2, no - 4], np.int64)], True, outputs=3, axis=4)
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grid = ((np.stack([xv, yv], 2)[None, None] - 0.5) * s).astype(np.float32)
        xy = g.op("Add", [g.op("Mul", [xy, g.const(2.0 * s)], True), g.const(grid)], True)
        anchor = np.array([[10, 13], [16, 30], [33, 23]], np.float32).reshape(1, 3, 1, 1, 2) * s / 8
        wh = g.op("Mul", [g.op("Pow", [g.op("Mul", [wh, g.const(2.0)], True), g.const(2.0)], True),
                          g.const(anchor)], True)
        y = g.op("Concat", [xy, wh, conf], True, axis=4)
        outs.append(g.op("Reshape", [y, g.const([-1, 3 * n * n, no], np.int64)], True))
    y = g.op("Concat", outs, True, axis=1)
    return g.model({y: ["batch", 3 * sum((SIZE // s) ** 2 for _, s in levels), no]}), set(g.decode)


def classifier() -> onnx.ModelProto:
    """Convs, global pooling, a Gemm, then softmax: a tail with no decode."""
    g = _Graph()
    f = _backbone(g)[1][0]
    x = g.op("Flatten", [g.op("GlobalAveragePool", [f])])
    y = g.op("Gemm", [x, g.const(_RNG.normal(0, 0.3, (5, 8))), g.const(np.zeros(5))], transB=1)
    y = g.op("Softmax", [g.op("Mul", [y, g.const(np.full(5, 0.5))])], axis=1)  # a per-class temperature
    return g.model({y: ["batch", 5]})


def renamed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The same graph with every node renamed to an opaque name; returns the model and old name -> new name."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    mapping = {}
    for i, n in enumerate(model.graph.node):
        mapping[n.name] = f"n{(i * 7919) % 100003}"
        n.name = mapping[n.name]
    return model, mapping
