"""Wrong rewrites planted on purpose: each is fold_affine's exact result with one realistic bug in it.

Used by tests/graph/test_graph_drift.py (the verification must roll every one of them back, on deep and shallow graphs)
and by `tools/optimize_corpus.py --plants` (the measured margin between exact rewrites and these bugs, which is
what the drift factor k is chosen from). Each function returns None when the model has nothing to plant it in.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgedeploy.graph.fold_affine import fold_affine


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=numpy_helper.to_array(t).dtype), name))
            return
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            old = numpy_helper.to_array(n.attribute[0].t)
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=old.dtype)))
            return
    raise KeyError(name)


def wrong_bn_eps(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A fold that ignores BatchNormalization's epsilon attribute and uses another (1e-3 ↔ 1e-5)."""
    m = _copy(model)
    found = False
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            eps = next((a for a in n.attribute if a.name == "epsilon"), None)
            if eps is None:
                n.attribute.append(onnx.helper.make_attribute("epsilon", 1e-3))
            else:
                eps.f = 1e-5 if abs(eps.f - 1e-5) > 1e-7 else 1e-3
            found = True
    return fold_affine(m)[0] if found else None


def dropped_channel_mul(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A fold that loses a per-channel Mul (YOLOv7's ImplicitM, say): the first Mul by a constant that varies along
    exactly one axis becomes Identity."""
    m = _copy(model)
    consts = _constants(m)
    for n in m.graph.node:
        if n.op_type != "Mul" or len(n.input) != 2:
            continue
        const = [i for i in n.input if i in consts]
        if len(const) != 1:
            continue
        c = consts[const[0]]
        if c.size > 1 and sum(d > 1 for d in c.shape) == 1 and not np.allclose(c, 1.0):
            data = next(i for i in n.input if i not in consts)
            n.op_type = "Identity"
            del n.input[:]
            n.input.append(data)
            return fold_affine(m)[0]
    return None


def swapped_rgb(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """RGB/BGR weights swapped: the first conv that reads a graph input gets its input channels reversed."""
    m = fold_affine(model)[0]
    inputs = {i.name for i in m.graph.input}
    consts = _constants(m)
    for n in m.graph.node:
        if n.op_type == "Conv" and n.input[0] in inputs and n.input[1] in consts:
            w = consts[n.input[1]]
            if w.shape[1] > 1 and not np.array_equal(w, w[:, ::-1]):
                _set(m, n.input[1], np.ascontiguousarray(w[:, ::-1]))
                return m
    return None


def dropped_bias(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A fold that forgets a bias (a BN shift folded into a conv without one, say): the first Conv/Gemm with a
    non-zero bias loses it."""
    m = fold_affine(model)[0]
    consts = _constants(m)
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in consts \
                and np.any(consts[n.input[2]] != 0):
            del n.input[2]
            return m
    return None


PLANTS = {"wrong BN eps": wrong_bn_eps, "dropped per-channel Mul": dropped_channel_mul,
          "swapped RGB/BGR weights": swapped_rgb, "dropped bias": dropped_bias}
