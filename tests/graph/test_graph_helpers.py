"""Small-graph builders and assertions shared by the tests/graph/test_graph_*.py modules (no tests here).

Imported as `test_graph_helpers` (pytest puts this folder on sys.path: tests/ has no __init__.py).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.graph.verify import compare_models

OPSET = 18
NP_TO_ONNX = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE}


class Builder:
    """Accumulates nodes and weights; weights go into initializers or, with `as_constants`, Constant nodes."""

    def __init__(self, seed: int = 0, dtype=np.float32, as_constants: bool = False):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.as_constants = as_constants
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def input(self, name: str, shape, dtype=None) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, NP_TO_ONNX[dtype or self.dtype], shape))
        return name

    def weight(self, base: str, value) -> str:
        name = self.name(base)
        value = np.asarray(value).astype(self.dtype)
        if self.as_constants:
            self.nodes.append(
                helper.make_node("Constant", [], [name], name=name + "_const", value=numpy_helper.from_array(value))
            )
        else:
            self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, name: str | None = None, **attrs) -> str | list[str]:
        name = name or self.name(op.lower())
        outs = [f"{name}_out{i}" if i else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, groups=1, pads=None, bias=True, strides=None, dilations=None, w=None, name=None):
        ks = (k, k) if isinstance(k, int) else tuple(k)
        w = w if w is not None else self.weight("w", self.rng.standard_normal((cout, cin // groups) + ks) * 0.5)
        inputs = [x, w]
        if bias:
            inputs.append(self.weight("b", self.rng.standard_normal(cout)))
        attrs = {"group": groups, "kernel_shape": list(ks)}
        attrs["pads"] = list(pads) if pads is not None else [(kk - 1) // 2 for kk in ks] * 2
        if strides:
            attrs["strides"] = list(strides)
        if dilations:
            attrs["dilations"] = list(dilations)
        return self.node("Conv", inputs, name=name, **attrs)

    def bn_params(self, c):
        r = self.rng
        return [
            self.weight("gamma", r.uniform(0.5, 1.5, c)),
            self.weight("beta", r.standard_normal(c)),
            self.weight("mean", r.standard_normal(c) * 0.5),
            self.weight("var", r.uniform(0.05, 2.0, c)),
        ]

    def bn(self, x, c, eps=1e-5, name=None):
        return self.node("BatchNormalization", [x] + self.bn_params(c), name=name, epsilon=eps)

    def model(self, outputs, opset: int = OPSET) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, NP_TO_ONNX[self.dtype], None) for o in outputs]
        graph = helper.make_graph(self.nodes, "g", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 9
        model = onnx.shape_inference.infer_shapes(model)
        del model.graph.value_info[:]  # like most exporters' graphs: shapes only on inputs and outputs
        onnx.checker.check_model(model)
        return model


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def init_value(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return numpy_helper.to_array(n.attribute[0].t)
    raise KeyError(name)


def node_named(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def assert_equal(ref: onnx.ModelProto, cand: onnx.ModelProto, tol: float = 1e-5, **kw) -> dict:
    """Both models run in ORT (optimizations off) on seeded random inputs; every shared output within rel-L2 tol."""
    onnx.checker.check_model(cand)
    errors = compare_models(ref, cand, **kw)
    assert errors, "no outputs compared"
    for name, e in errors.items():
        assert e["rel_l2"] <= tol, f"{name}: {e}"
    return errors
