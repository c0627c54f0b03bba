"""The stage boundary between onnx.ModelProto (what every pass takes and returns) and onnx-ir's `ir.Model` (what a
pass edits): producers, uses, subgraph reads, dead-code removal and topological order come from onnx-ir.

Converting costs ~20 ms on the corpus's largest model (PP-OCRv4 rec, 860 nodes, 11 MB; docs/architecture.md), far
below one pass's verification in ONNX Runtime, so each pass converts in and out and stays a function over
ModelProto. A model onnx-ir cannot read (a tensor with two writers) or order (a cycle) is an EdgeDeployError.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from edgedeploy.errors import EdgeDeployError


def to_ir(model: onnx.ModelProto) -> ir.Model:
    """`model` as an editable ir.Model; the proto is not changed (initializer data is read lazily from it)."""
    try:
        return ir.from_proto(model)
    except (ValueError, ir.serde.SerdeError) as e:  # a tensor written twice: onnx-ir says "... is redeclared ..."
        reason = e.__cause__ or e
        raise EdgeDeployError(f"onnx-ir cannot read the graph: {reason}", where="model graph",
                              fix="Re-export the model (each tensor has one writer)") from None


def to_onnx(model: ir.Model, source: onnx.ModelProto) -> onnx.ModelProto:
    """`model` as a new ModelProto, its graphs in stable topological order (the original order wherever the data
    flow allows). The main graph's inputs, outputs and value_info keep `source`'s descriptions (onnx-ir holds one
    type per tensor and describes every initializer, which would change the interface of a tensor that is an input
    and an output and grow the file), less those of tensors that are gone or of initializers a pass rewrote."""
    try:
        model.graph.sort()
    except ValueError:
        raise EdgeDeployError("a node depends on its own output (a cycle)", where="model graph",
                              fix="Re-export the model") from None
    out = ir.to_proto(model)
    for written, original in ((out.graph.input, source.graph.input), (out.graph.output, source.graph.output)):
        by_name = {vi.name: vi for vi in original}
        for vi in written:
            if vi.name in by_name:
                vi.CopyFrom(by_name[vi.name])
    initializers = {t.name: t for t in out.graph.initializer}
    defined = {o for n in out.graph.node for o in n.output if o} | set(initializers) | {i.name for i in out.graph.input}
    kept = [vi for vi in source.graph.value_info
            if vi.name in defined and (vi.name not in initializers or _describes(vi, initializers[vi.name]))]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept)
    return out


def _describes(vi: onnx.ValueInfoProto, tensor: onnx.TensorProto) -> bool:
    """False for a value_info that no longer matches the initializer of that name (a pass rewrote it)."""
    if not vi.type.HasField("tensor_type"):
        return True
    tt = vi.type.tensor_type
    if tt.elem_type and tt.elem_type != tensor.data_type:
        return False
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != len(tensor.dims) or any(d is not None and d != e for d, e in zip(dims, tensor.dims)):
            return False
    return True


def remove_dead_code(model: ir.Model) -> None:
    """Remove, in place, every node and initializer no graph output needs (in subgraphs too); graph inputs stay."""
    RemoveUnusedNodesPass()(model)


def node_count(model: ir.Model) -> dict[str, int]:
    """Nodes in all graphs (subgraphs included): Constant nodes under 'Constant', the rest under 'other'."""
    counts = {"Constant": 0, "other": 0}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        counts["Constant" if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else "other"] += 1
    return counts


def named_outputs(model: ir.Model) -> dict[ir.Node, int]:
    """How many named outputs each node (in all graphs) writes; dead-code removal clears optional ones nothing
    reads."""
    return {node: sum(1 for v in node.outputs if v.name) for node in ir.traversal.RecursiveGraphIterator(model.graph)}
