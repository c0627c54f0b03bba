"""Rewrite a graph to an older default-domain opset, for parsers that read only up to that opset.

TensorRT 8.5/8.6's ONNX parser supports "operators up to Opset 17" (onnx-tensorrt docs/operators.md on 8.5-GA and
8.6-GA) and does not refuse a newer graph: its Reduce* importers read `axes` from the attribute only, so an opset-18
ReduceMean (axes as an input) silently reduces over every axis. `downgrade_opset` uses onnx's version converter, which
moves those inputs back into attributes (and leaves a `noop_with_empty_axes` the older Reduce* ops lack, removed
here where it changes nothing). onnx has no 18→17 adapter for Split and Pad; the forms of those two whose
meaning did not change at 18 (Split with a split-sizes input, or with `num_outputs` on a dimension of known size,
rewritten to sizes; Pad without an `axes` input, not in `wrap` mode) are carried over unchanged. Anything the converter
cannot do is one EdgeDeployError naming the op and the node.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from edgedeploy.errors import EdgeDeployError
from edgedeploy.graph.optimize import lowest_ir_version

_CARRY_DOMAIN = "edgedeploy.carry-over"  # marks nodes the converter must leave alone while it runs
# the Reduce* ops whose axes moved from attribute to input at opset 18 (ReduceSum moved at 13)
_REDUCE_13 = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
              "ReduceProd", "ReduceSumSquare")


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain ("" or ai.onnx) opset version; 0 when it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def downgrade_opset(model: onnx.ModelProto, target: int, *, fix: str, where: str) -> onnx.ModelProto:
    """`model` rewritten to default-domain opset `target` (a copy; the model itself is left alone). `fix` and `where`
    go into the EdgeDeployError raised for a node that cannot be rewritten."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    shapes = _static_shapes(work)
    carried = []
    for node in work.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("Split", "Pad"):
            continue
        reason = _split_to_sizes(work, node, shapes) if node.op_type == "Split" else _pad_unchanged(node)
        if reason:
            raise _refusal(node, f"{reason}; it has no opset-{target} form", fix, where)
        node.domain = _CARRY_DOMAIN
        carried.append(node)
    if carried:
        work.opset_import.append(onnx.helper.make_opsetid(_CARRY_DOMAIN, 1))
    try:
        converted = version_converter.convert_version(work, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises RuntimeError/ValueError/IndexError by adapter
        raise _refusal(_failing_node(work, str(exc)), f"onnx's version converter cannot rewrite it to opset "
                       f"{target}: {' '.join(str(exc).split())[:200]}", fix, where) from exc
    for node in converted.graph.node:
        if node.domain == _CARRY_DOMAIN:
            node.domain = ""
        elif target < 18 and node.op_type in _REDUCE_13 and node.domain in ("", "ai.onnx"):
            reason = _drop_noop_with_empty_axes(node)
            if reason:
                raise _refusal(node, f"{reason}; it has no opset-{target} form", fix, where)
    kept = [o for o in converted.opset_import if o.domain != _CARRY_DOMAIN]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    converted.ir_version = lowest_ir_version(converted)  # a device's onnxruntime may not read the writer's newest
    return converted


def _drop_noop_with_empty_axes(node: onnx.NodeProto) -> str | None:
    """onnx's 18→17 Reduce* adapters move `axes` into an attribute but keep `noop_with_empty_axes`, which those ops
    (ReduceSum aside) lack before 18, so ONNX Runtime refuses the node: drop it where it changes nothing (`axes`
    given, or the default 0); None when done, else why it cannot be."""
    attrs = {a.name: a for a in node.attribute}
    if "noop_with_empty_axes" not in attrs:
        return None
    if attrs["noop_with_empty_axes"].i and "axes" not in attrs:
        return f"a {node.op_type} with noop_with_empty_axes=1 and no axes (opset 18)"
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    del node.attribute[:]
    node.attribute.extend(kept)
    return None


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without inferred shapes, num_outputs splits are refused by name
        inferred = model
    g = inferred.graph
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _split_to_sizes(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict[str, list[int | None]]) -> str | None:
    """Give a `num_outputs` Split explicit sizes (opset 18: equal chunks, the last one smaller); None when the node
    then means the same at opset 13-17, else why it cannot."""
    attrs = {a.name: a for a in node.attribute}
    if "num_outputs" not in attrs:
        return None  # sizes as an input, or equal parts by output count: as in opset 13
    parts = attrs["num_outputs"].i
    axis = attrs["axis"].i if "axis" in attrs else 0
    dims = shapes.get(node.input[0])
    dim = dims[axis] if dims and -len(dims) <= axis < len(dims) else None
    if not dim:
        return "a Split with num_outputs on a dimension whose size is not known before run time"
    chunk = -(-dim // parts)
    sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
    name = f"{node.name or node.output[0]}_split_sizes"
    model.graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), name))
    kept = [a for a in node.attribute if a.name != "num_outputs"]
    del node.attribute[:]
    node.attribute.extend(kept)
    del node.input[1:]
    node.input.append(name)
    return None


def _pad_unchanged(node: onnx.NodeProto) -> str | None:
    """None when the Pad means the same at opset 13-17 (no axes input, a mode opset 17 has), else why not."""
    if len(node.input) > 3 and node.input[3]:
        return "a Pad with an axes input (opset 18)"
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    if mode == "wrap":
        return "a Pad in wrap mode (opset 19)"
    return None


def _failing_node(model: onnx.ModelProto, message: str) -> onnx.NodeProto | None:
    """The first node whose op the converter's message names (it names ops, not nodes)."""
    words = set(re.findall(r"[A-Za-z]+", message))
    return next((n for n in model.graph.node if n.op_type in words), None)


def _refusal(node: onnx.NodeProto | None, reason: str, fix: str, where: str) -> EdgeDeployError:
    what = f"node {node.name!r} ({node.op_type})" if node is not None else "the graph"
    return EdgeDeployError(f"{what}: {reason}", where=where, fix=fix)
