"""The passes' working view of an ONNX model, on onnx-ir.

A `Graph` holds the model as an `onnx_ir` Model (graph/onnxir.py converts at the pass boundary): tensors are
`ir.Value`s that know their producer and their uses (subgraph reads included), so passes rewire and remove nodes
through onnx-ir, and dead code and topological order come from it on `finish()`. What onnx-ir does not have stays
here: reading a constant whether it is an initializer, a `Constant` node (Paddle stores every weight as one) or a cheap
op over constants; writing a changed constant without touching other users of the same tensor; float64 values of
what a pass computed; types and shapes from ONNX shape inference; fresh unique names. The input model is never
mutated.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import AttributeProto, TensorProto, numpy_helper

from edgedeploy.errors import EdgeDeployError
from edgedeploy.graph.onnxir import remove_dead_code, to_ir, to_onnx

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE})

# Cheap, deterministic ops whose output is a constant when their inputs are. Exporters build conv biases and
# broadcast constants from them (dynamo without its optimizer: Expand(CastLike(0, x), Shape(W)[0:1]) for a
# bias-free conv), so reading through them lets the passes see those tensors as the constants they are.
COMPUTABLE_OPS = frozenset(
    {
        "Identity", "Cast", "CastLike", "Shape", "Size", "Expand", "Reshape", "Unsqueeze", "Squeeze", "Flatten",
        "Concat", "Slice", "Gather", "Transpose", "ConstantOfShape", "Range", "Add", "Sub", "Mul", "Div", "Neg",
        "Sqrt", "Reciprocal", "Abs", "Max", "Min",
    }
)  # fmt: skip
_COMPUTE_LIMIT = 1 << 24  # elements: larger computed tensors are left to the simplifiers
_MAX_COMPUTE_DEPTH = 32  # constant chains are short; long Add/Mul chains are activations, not worth recursing into


@dataclass
class PassStats:
    """What a pass did: `changes` counts edits by kind, `notes` says what it deliberately left alone and why."""

    name: str
    changes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.changes.values())

    def count(self, key: str, n: int = 1) -> None:
        self.changes[key] = self.changes.get(key, 0) + n

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "changed": self.changed, "changes": dict(self.changes), "notes": list(self.notes)}


# ---------------------------------------------------------------------------------------------------------- helpers


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held by a node's attributes (If branches, Loop/Scan bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _all_names(graph: onnx.GraphProto, acc: set[str]) -> None:
    acc.update(v.name for v in itertools.chain(graph.input, graph.output, graph.value_info))
    acc.update(t.name for t in graph.initializer)
    for node in graph.node:
        acc.add(node.name)
        acc.update(node.input)
        acc.update(node.output)
        for sub in subgraphs(node):
            _all_names(sub, acc)


def tensor_value(tensor: TensorProto, where: str) -> np.ndarray:
    """A TensorProto as an array; EdgeDeployError naming it when its data does not fill its dims (a corrupt file)."""
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as e:
        raise EdgeDeployError(f"tensor data does not match its dims {list(tensor.dims)} and type ({e})", where=where,
                              fix="Re-export the model") from None


def tensor_array(tensor: ir.TensorProtocol, where: str) -> np.ndarray | None:
    """An onnx-ir tensor as a fresh array (None for external data, which the passes do not rewrite); a tensor read
    from the model is converted by ONNX itself, so corrupt data is the EdgeDeployError of `tensor_value`."""
    if isinstance(tensor, ir.ExternalTensor):
        return None
    if isinstance(tensor, ir.TensorProtoTensor):
        return tensor_value(tensor.raw, where)
    return np.array(tensor.numpy())


def constant_node_value(node: ir.Node) -> np.ndarray | None:
    """The value of a `Constant` node as an array, or None for sparse/string constants."""
    for name, a in node.attributes.items():
        if a.is_ref():
            return None
        if name == "value":
            return tensor_array(a.as_tensor(), f"Constant node '{node.name}'")
        if name == "value_float":
            return np.array(a.as_float(), dtype=np.float32)
        if name == "value_floats":
            return np.array(list(a.as_floats()), dtype=np.float32)
        if name == "value_int":
            return np.array(a.as_int(), dtype=np.int64)
        if name == "value_ints":
            return np.array(list(a.as_ints()), dtype=np.int64)
    return None


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """An attribute's Python value (lists for the repeated kinds), or `default` when absent."""
    a = node.attributes.get(name)
    if a is None or a.is_ref():
        return default
    if a.type in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return list(a.value)
    return a.value


def set_attr(node: ir.Node, name: str, value: Any) -> None:
    """Set (or replace) an attribute."""
    node.attributes[name] = ir.convenience.convert_attribute(name, value)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Main-graph node counts by op type, most frequent first."""
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def param_count(model: onnx.ModelProto) -> int:
    """Elements in all initializers and Constant nodes, subgraphs (If/Loop bodies) included: weights, whatever their
    storage, so that a simplifier moving them into a branch does not look like it removed them."""
    return _graph_params(model.graph)


def _graph_params(graph: onnx.GraphProto) -> int:
    total = 0
    for t in graph.initializer:
        total += int(np.prod(t.dims, dtype=np.int64))
    for node in graph.node:
        total += sum(_graph_params(sub) for sub in subgraphs(node))
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    total += int(np.prod(a.t.dims, dtype=np.int64))
                elif a.name in ("value_floats", "value_ints"):
                    total += len(a.floats) + len(a.ints)
                elif a.name in ("value_float", "value_int"):
                    total += 1
    return total


# ---------------------------------------------------------------------------------------------------------- Graph


class Graph:
    """Editable onnx-ir copy of `model` with constant reading and writing for the passes.

    Nodes are `ir.Node`s and tensors `ir.Value`s of `self.graph`; add and remove nodes and rewire tensors through
    the methods here so that computed constants and recorded types stay right. `finish()` returns a new ModelProto.
    A graph onnx-ir cannot describe (a tensor with two writers, a cycle), an attribute of another kind than its op
    takes, or a constant whose data does not fit its dims is an EdgeDeployError naming what it can, not a wrong edit.
    """

    def __init__(self, model: onnx.ModelProto, *, infer_shapes: bool = False):
        self.source = model
        self.model = to_ir(model)
        self.graph = self.model.graph
        self.opset = self.model.opset_imports.get("", self.model.opset_imports.get("ai.onnx", 18))
        self._names: set[str] = set()
        _all_names(model.graph, self._names)
        self._counter = itertools.count()
        self._computed: dict[ir.Value, np.ndarray | None] = {}
        self._exact: dict[ir.Value, np.ndarray] = {}  # float64 values of constants this pass wrote in a narrower dtype
        self._types: dict[str, onnx.TypeProto] = {}
        self._collect_types(model)
        self._check_attributes()
        try:
            self.graph.sort()  # refuses a cycle before any edit
        except ValueError:
            raise EdgeDeployError("a node depends on its own output (a cycle)", where="model graph",
                                  fix="Re-export the model") from None
        if infer_shapes:
            self._infer_shapes(model)

    def _check_attributes(self) -> None:
        """EdgeDeployError naming the node whose attribute is not of the kind its op's schema declares: the passes
        read attributes as those kinds (a corrupt or hand-edited model; the ONNX checker refuses it too)."""
        for node in self.graph:
            if node.domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type):
                continue  # an op ONNX does not define: the passes leave it alone
            try:
                schema = onnx.defs.get_schema(node.op_type, self.opset, "")
            except onnx.defs.SchemaError:  # newer than the model's (or a bogus) opset: its attributes' kinds last
                schema = onnx.defs.get_schema(node.op_type, "")
            for a in node.attributes.values():
                want = schema.attributes.get(a.name)
                if want is not None and not a.is_ref() and int(a.type) != int(want.type):
                    kind = AttributeProto.AttributeType.Name
                    raise EdgeDeployError(
                        f"attribute '{a.name}' of {node.op_type} node '{node.name}' is {kind(int(a.type))}, the op "
                        f"takes {kind(int(want.type))}", where=f"node '{node.name}'", fix="Re-export the model")

    # ------------------------------------------------------------------ nodes and uses

    @property
    def nodes(self) -> list[ir.Node]:
        """The main graph's nodes, in order (a snapshot: safe to edit while iterating)."""
        return list(self.graph)

    def alive(self, node: ir.Node) -> bool:
        return node.graph is self.graph

    def is_output(self, value: ir.Value) -> bool:
        """Whether `value` is an output of the model or of a subgraph (its name must then stay)."""
        return value.is_graph_output()

    def sole_user(self, value: ir.Value | None) -> ir.Node | None:
        """The one node reading `value` (exactly once, not from a subgraph), when `value` is no graph output."""
        if value is None or value.is_graph_output():
            return None
        uses = list(value.uses())
        if len(uses) != 1 or uses[0].node.graph is not self.graph:
            return None
        return uses[0].node

    # ------------------------------------------------------------------ names

    def fresh(self, base: str) -> str:
        """A name not used anywhere in the model, derived from `base`."""
        base = base or "t"
        name = base
        while name in self._names:
            name = f"{base}_{next(self._counter)}"
        self._names.add(name)
        return name

    # ------------------------------------------------------------------ constants

    def is_constant(self, value: ir.Value | None) -> bool:
        return self.constant(value) is not None

    def constant(self, value: ir.Value | None, _depth: int = 0) -> np.ndarray | None:
        """The value of `value` if it is an initializer (that is not also an overridable graph input), the output of
        a `Constant` node, or the output of a cheap op (COMPUTABLE_OPS) over such constants; else None."""
        if value is None or _depth > _MAX_COMPUTE_DEPTH:
            return None
        if value.is_initializer():
            if value.is_graph_input() or value.const_value is None:
                return None
            return tensor_array(value.const_value, f"initializer '{value.name}'")
        node = value.producer()
        if node is None:
            return None
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            return constant_node_value(node)
        if node.op_type not in COMPUTABLE_OPS or node.domain not in ("", "ai.onnx"):
            return None
        if value not in self._computed:
            self._computed[value] = None  # also stops cycles
            values = self._compute(node, _depth + 1)
            if values is not None:
                for out, array in zip(node.outputs, values):
                    if out.name:
                        self._computed[out] = array
        return self._computed.get(value)

    def _compute(self, node: ir.Node, depth: int) -> list[np.ndarray] | None:
        if node.op_type == "CastLike":  # only the second input's dtype matters
            if len(node.inputs) != 2:
                return None
            array, et = self.constant(node.inputs[0], depth), self.elem_type(node.inputs[1])
            if array is None or et is None:
                return None
            return [array.astype(onnx.helper.tensor_dtype_to_np_dtype(et))]
        feeds = {}
        for v in node.inputs:
            if v is not None:
                array = self.constant(v, depth)
                if array is None:
                    return None
                feeds[v.name] = array
        try:
            from onnx.reference import ReferenceEvaluator

            outs = ReferenceEvaluator(ir.serde.serialize_node(node), opsets={"": self.opset}).run(None, feeds)
        except Exception:  # noqa: BLE001 - not computable here: treat as not constant
            return None
        outs = [np.asarray(o) for o in outs]
        if any(o.size > _COMPUTE_LIMIT or o.dtype == object for o in outs):
            return None
        return outs

    def exact(self, value: ir.Value | None) -> np.ndarray | None:
        """Like `constant`, but a value this pass computed comes back in the float64 it was computed in, so that
        folding twice into the same tensor rounds to its dtype once."""
        array = self._exact.get(value) if value is not None else None
        return array if array is not None else self.constant(value)

    def add_initializer(self, array: np.ndarray, base: str, exact: np.ndarray | None = None,
                        *, name: str | None = None) -> ir.Value:
        """A new initializer named after `base` (or exactly `name`, which must be free); `exact` is its float64 value
        before rounding to array's dtype."""
        name = name or self.fresh(base)
        self._names.add(name)
        value = ir.Value(name=name)
        self._set_tensor(value, array)
        self.graph.register_initializer(value)
        if exact is not None:
            self._exact[value] = np.asarray(exact, dtype=np.float64)
        return value

    @staticmethod
    def _set_tensor(value: ir.Value, array: np.ndarray) -> None:
        array = np.asarray(array, order="C")
        value.const_value = ir.Tensor(array, name=value.name)
        value.type = ir.TensorType(value.const_value.dtype)
        value.shape = ir.Shape(array.shape)

    def replace_by_constant(self, node: ir.Node, arrays: Sequence[np.ndarray | None]) -> None:
        """Replace `node` by initializers of its outputs' names holding `arrays` (one per output)."""
        for out, array in zip(node.outputs, arrays):
            if out.name and array is not None:  # the initializer takes the name over once `out` is read no more
                self.take_over(out, self.add_initializer(array, out.name, name=out.name))
        self.remove_node(node)

    def set_constant_input(
        self, node: ir.Node, index: int, array: np.ndarray, base: str, exact: np.ndarray | None = None
    ) -> ir.Value:
        """Make input `index` of `node` hold `array`.

        The existing tensor is overwritten only when this node is its sole reader; a weight shared with another node
        (or exposed as a graph output) is left alone and the new value goes into a fresh initializer.
        """
        value = node.inputs[index] if index < len(node.inputs) else None
        if value is not None and self.sole_user(value) is node:
            self._computed.pop(value, None)
            written = False
            if value.is_initializer() and not value.is_graph_input():
                self._set_tensor(value, array)
                written = True
            else:
                prod = value.producer()
                if prod is not None and prod.op_type == "Constant":
                    prod.attributes.clear()
                    set_attr(prod, "value", ir.Tensor(np.asarray(array, order="C")))
                    written = True
            if written:
                self._types.pop(value.name, None)
                self._exact.pop(value, None)
                if exact is not None:
                    self._exact[value] = np.asarray(exact, dtype=np.float64)
                return value
        new = self.add_initializer(array, base or (value.name + "_folded" if value is not None else "") or "const",
                                   exact)
        self.set_input(node, index, new)
        return new

    # ------------------------------------------------------------------ edits

    def _forget(self, node: ir.Node) -> None:
        for o in node.outputs:
            self._computed.pop(o, None)

    def set_input(self, node: ir.Node, index: int, value: ir.Value | None) -> None:
        """Point input `index` of `node` at `value` (padding optional inputs with None as needed)."""
        self._forget(node)
        if len(node.inputs) <= index:
            node.resize_inputs(index + 1)
        node.replace_input_with(index, value)

    def add_node(self, op_type: str, inputs: Sequence[ir.Value | None], output: str | ir.Value, name: str,
                 domain: str = "", doc: str = "", **attrs: Any) -> ir.Value:
        """Append a node with one output (order is fixed by the topological sort in `finish()`). `output` is a
        free name for it, or a tensor whose readers, graph-output place and name the new output takes over."""
        node = ir.Node(domain, op_type, inputs, attributes=ir.convenience.convert_attributes(attrs),
                       name=self.fresh(name), doc_string=doc or None, num_outputs=1)
        self.graph.append(node)
        new = node.outputs[0]
        if isinstance(output, ir.Value):
            self.take_over(output, new)
        else:
            self._names.add(output)
            new.name = output
        return new

    def take_over(self, old: ir.Value, new: ir.Value) -> None:
        """Make every reader of `old` (in subgraphs too, and the graph outputs) read `new`, and give `new` old's
        name, so that graph outputs keep their names."""
        name = old.name
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        self._computed.pop(old, None)
        old.name = self.fresh(f"{name}_replaced")
        new.name = name

    def remove_node(self, node: ir.Node | Sequence[ir.Node]) -> None:
        """Remove nodes nothing else reads any more (onnx-ir refuses to remove a node whose output is still read)."""
        nodes = [node] if isinstance(node, ir.Node) else list(node)
        for n in nodes:
            self._forget(n)
        self.graph.remove(nodes, safe=True)

    # ------------------------------------------------------------------ types and shapes

    def _collect_types(self, model: onnx.ModelProto) -> None:
        g = model.graph
        for vi in itertools.chain(g.value_info, g.input, g.output):
            if vi.type.HasField("tensor_type"):
                self._types[vi.name] = vi.type

    def _infer_shapes(self, model: onnx.ModelProto) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - shapes are a hint; without them passes only do what needs none
            return
        self._collect_types(inferred)

    def elem_type(self, value: ir.Value | None) -> int | None:
        if value is None:
            return None
        if value.is_initializer() and value.const_value is not None:
            return int(value.const_value.dtype)
        t = self._types.get(value.name)
        if t is None or not t.tensor_type.elem_type:
            array = self.constant(value)
            if array is not None:
                return int(onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
        if t is not None and t.tensor_type.elem_type:
            return t.tensor_type.elem_type
        return None

    def shape(self, value: ir.Value | None) -> list[int | None] | None:
        """Static dims (None where unknown/symbolic), or None if even the rank is unknown."""
        array = self.constant(value)
        if array is not None:
            return list(array.shape)
        t = self._types.get(value.name) if value is not None else None
        if t is None or not t.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]

    def rank(self, value: ir.Value | None) -> int | None:
        s = self.shape(value)
        return None if s is None else len(s)

    def copy_type(self, src: ir.Value, dst: ir.Value) -> None:
        """Record that `dst` has the type and shape of `src` (for tensors a pass creates)."""
        if src.name in self._types:
            self._types[dst.name] = self._types[src.name]

    # ------------------------------------------------------------------ output

    def finish(self) -> onnx.ModelProto:
        """A new model with the edited nodes, without dead nodes and unused initializers, topologically sorted."""
        remove_dead_code(self.model)
        return to_onnx(self.model, self.source)
