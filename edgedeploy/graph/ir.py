"""A small working copy of an ONNX graph for the passes in this package.

Passes edit a `Graph` instead of juggling `graph.node` / initializer lists by hand: it keeps producer and consumer maps
current as nodes are added and removed, reads a constant whether it is an initializer or the output of a `Constant`
node (Paddle stores every weight as a Constant node), writes a changed constant back without touching other users of
the same tensor, makes fresh unique names, and on `finish()` returns a new, topologically sorted, dead-code-free model.
The input model is copied once and never mutated.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from edgedeploy.errors import EdgeDeployError

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


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from enclosing scopes (used but not defined inside it)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        defined.update(o for o in node.output if o)
        used.update(i for i in node.input if i)
        for sub in subgraphs(node):
            used |= outer_names(sub)
    used.update(o.name for o in graph.output)
    return used - defined


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every tensor a node reads: its inputs plus what its subgraphs take from the enclosing scope."""
    names = [i for i in node.input if i]
    for sub in subgraphs(node):
        names.extend(sorted(outer_names(sub)))
    return names


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


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a `Constant` node as an array, or None for sparse/string constants."""
    for attr in node.attribute:
        if attr.name == "value":
            return tensor_value(attr.t, f"Constant node '{node.name}'")
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An attribute's Python value, or `default` when absent."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    """Set (or replace) an attribute."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


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
    """Mutable working copy of `model`'s main graph with producer/consumer maps.

    Nodes are held as standalone `NodeProto`s; edit them only through the methods here (or, for attributes and the
    constant inputs of a node, directly) so the maps stay right. `finish()` writes everything back into a new model.
    A graph the maps cannot describe (a tensor with two writers, a cycle, an attribute of another kind than its op
    takes, a constant whose data does not fit its dims) is an EdgeDeployError naming the tensor or node, not a wrong
    edit.
    """

    def __init__(self, model: onnx.ModelProto, *, infer_shapes: bool = False):
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.nodes: list[onnx.NodeProto] = [copy.deepcopy(n) for n in self.graph.node]
        self.initializers: dict[str, TensorProto] = {t.name: t for t in self.graph.initializer}
        self.input_names = [i.name for i in self.graph.input]
        self.output_names = [o.name for o in self.graph.output]
        self._input_set = set(self.input_names)
        self._names: set[str] = set()
        _all_names(self.graph, self._names)
        self._counter = itertools.count()
        self._computed: dict[str, np.ndarray | None] = {}
        self._exact: dict[str, np.ndarray] = {}  # float64 values of constants this pass wrote in a narrower dtype
        self.opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 18)
        self._types: dict[str, onnx.TypeProto] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self._live: set[int] = {id(n) for n in self.nodes}
        defined = set(self.input_names) | set(self.initializers)
        for node in self.nodes:
            for o in node.output:
                if o and (o in self.producer or o in defined):
                    first = f"node '{self.producer[o].name}'" if o in self.producer else "a graph input or initializer"
                    raise EdgeDeployError(f"tensor '{o}' is written by node '{node.name}' and by {first}",
                                          where=f"tensor '{o}'", fix="Re-export the model (each tensor has one writer)")
            self._index(node)
        self._collect_types(self.model)
        self._check_attributes()
        self._toposorted()  # refuses a cycle before any edit
        if infer_shapes:
            self._infer_shapes()

    def _check_attributes(self) -> None:
        """EdgeDeployError naming the node whose attribute is not of the kind its op's schema declares: the passes
        read attributes as those kinds (a corrupt or hand-edited model; the ONNX checker refuses it too)."""
        for node in self.nodes:
            if node.domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type):
                continue  # an op ONNX does not define: the passes leave it alone
            try:
                schema = onnx.defs.get_schema(node.op_type, self.opset, "")
            except onnx.defs.SchemaError:  # newer than the model's (or a bogus) opset: its attributes' kinds last
                schema = onnx.defs.get_schema(node.op_type, "")
            for a in node.attribute:
                want = schema.attributes.get(a.name)
                if want is not None and a.type != int(want.type):
                    kind = AttributeProto.AttributeType.Name
                    raise EdgeDeployError(
                        f"attribute '{a.name}' of {node.op_type} node '{node.name}' is {kind(a.type)}, the op takes "
                        f"{kind(int(want.type))}", where=f"node '{node.name}'", fix="Re-export the model")

    # ------------------------------------------------------------------ maps

    def _index(self, node: onnx.NodeProto) -> None:
        for o in node.output:
            if o:
                self.producer[o] = node
        for name in node_reads(node):
            self.consumers.setdefault(name, []).append(node)

    def _unindex(self, node: onnx.NodeProto) -> None:
        for o in node.output:
            if o and self.producer.get(o) is node:
                del self.producer[o]
        for name in node_reads(node):
            users = self.consumers.get(name, [])
            for i, u in enumerate(users):
                if u is node:
                    del users[i]
                    break

    def users(self, name: str) -> list[onnx.NodeProto]:
        """Nodes that read `name` (one entry per node, even if it reads the name twice)."""
        seen: list[onnx.NodeProto] = []
        for u in self.consumers.get(name, []):
            if not any(u is s for s in seen):
                seen.append(u)
        return seen

    def is_output(self, name: str) -> bool:
        return name in self.output_names

    def sole_user(self, name: str) -> onnx.NodeProto | None:
        """The one node reading `name` (exactly once, not from a subgraph), when `name` is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or self.is_output(name):
            return None
        node = users[0]
        if list(node.input).count(name) != 1:
            return None
        return node

    def keep_outputs(self, names: Iterable[str]) -> None:
        """Make the graph outputs exactly `names` (a subset of the current ones, in their original order)."""
        wanted = set(names)
        kept = [copy.deepcopy(o) for o in self.graph.output if o.name in wanted]
        del self.graph.output[:]
        self.graph.output.extend(kept)
        self.output_names = [o.name for o in self.graph.output]

    def alive(self, node: onnx.NodeProto) -> bool:
        return id(node) in self._live

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

    def is_constant(self, name: str) -> bool:
        return self.constant(name) is not None

    def constant(self, name: str, _depth: int = 0) -> np.ndarray | None:
        """The value of `name` if it is an initializer (that is not also an overridable graph input), the output of
        a `Constant` node, or the output of a cheap op (COMPUTABLE_OPS) over such constants; else None."""
        if not name or _depth > _MAX_COMPUTE_DEPTH:
            return None
        if name in self.initializers and name not in self._input_set:
            tensor = self.initializers[name]
            if tensor.data_location == TensorProto.EXTERNAL:
                return None
            return tensor_value(tensor, f"initializer '{name}'")
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            return constant_node_value(node)
        if node.op_type not in COMPUTABLE_OPS or node.domain not in ("", "ai.onnx"):
            return None
        if name not in self._computed:
            self._computed[name] = None  # also stops cycles
            values = self._compute(node, _depth + 1)
            if values is not None:
                for out, value in zip(node.output, values):
                    if out:
                        self._computed[out] = value
        return self._computed.get(name)

    def _compute(self, node: onnx.NodeProto, depth: int) -> list[np.ndarray] | None:
        if node.op_type == "CastLike":  # only the second input's dtype matters
            value, et = self.constant(node.input[0], depth), self.elem_type(node.input[1])
            if value is None or et is None:
                return None
            return [value.astype(onnx.helper.tensor_dtype_to_np_dtype(et))]
        feeds = {}
        for i in node.input:
            if i:
                value = self.constant(i, depth)
                if value is None:
                    return None
                feeds[i] = value
        try:
            from onnx.reference import ReferenceEvaluator

            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception:  # noqa: BLE001 - not computable here: treat as not constant
            return None
        outs = [np.asarray(o) for o in outs]
        if any(o.size > _COMPUTE_LIMIT or o.dtype == object for o in outs):
            return None
        return outs

    def exact(self, name: str) -> np.ndarray | None:
        """Like `constant`, but a value this pass computed comes back in the float64 it was computed in, so that
        folding twice into the same tensor rounds to its dtype once."""
        value = self._exact.get(name)
        return value if value is not None else self.constant(name)

    def add_initializer(self, array: np.ndarray, base: str, exact: np.ndarray | None = None) -> str:
        """A new initializer named after `base`; `exact` is its float64 value before rounding to array's dtype."""
        name = self.fresh(base)
        tensor = numpy_helper.from_array(np.asarray(array, order="C"), name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = self.graph.initializer[-1]
        if exact is not None:
            self._exact[name] = np.asarray(exact, dtype=np.float64)
        return name

    def define_constant(self, name: str, array: np.ndarray) -> None:
        """Make `name` an initializer holding `array`; whatever produced it must already be removed."""
        if name in self.producer or name in self.initializers:
            raise ValueError(f"{name!r} is still defined")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
        self.initializers[name] = self.graph.initializer[-1]
        self._names.add(name)
        self._computed.pop(name, None)

    def set_constant_input(
        self, node: onnx.NodeProto, index: int, array: np.ndarray, base: str, exact: np.ndarray | None = None
    ) -> str:
        """Make input `index` of `node` hold `array`.

        The existing tensor is overwritten only when this node is its sole reader; a weight shared with another node
        (or exposed as a graph output) is left alone and the new value goes into a fresh initializer.
        """
        name = node.input[index] if index < len(node.input) else ""
        self._computed.pop(name, None)
        if name and self.sole_user(name) is node:
            written = False
            if name in self.initializers and name not in self.input_names:
                self.initializers[name].CopyFrom(numpy_helper.from_array(np.asarray(array, order="C"), name))
                written = True
            else:
                prod = self.producer.get(name)
                if prod is not None and prod.op_type == "Constant":
                    del prod.attribute[:]
                    prod.attribute.append(
                        onnx.helper.make_attribute("value", numpy_helper.from_array(np.asarray(array, order="C")))
                    )
                    written = True
            if written:
                self._types.pop(name, None)
                self._exact.pop(name, None)
                if exact is not None:
                    self._exact[name] = np.asarray(exact, dtype=np.float64)
                return name
        new = self.add_initializer(array, base or (name + "_folded") or "const", exact)
        self.set_input(node, index, new)
        return new

    # ------------------------------------------------------------------ edits

    def _forget(self, node: onnx.NodeProto) -> None:
        for o in node.output:
            self._computed.pop(o, None)

    def set_input(self, node: onnx.NodeProto, index: int, name: str) -> None:
        """Point input `index` of `node` at `name` (padding optional inputs with "" as needed)."""
        self._forget(node)
        self._unindex(node)
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = name
        self._index(node)

    def set_output(self, node: onnx.NodeProto, index: int, name: str) -> None:
        self._forget(node)
        self._computed.pop(name, None)
        self._unindex(node)
        node.output[index] = name
        self._index(node)

    def add_node(
        self,
        op_type: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        name: str,
        domain: str = "",
        doc: str = "",
        **attrs: Any,
    ) -> onnx.NodeProto:
        """Append a node (order is fixed by the topological sort in `finish()`)."""
        node = onnx.helper.make_node(
            op_type, list(inputs), list(outputs), name=self.fresh(name), domain=domain, doc_string=doc or None, **attrs
        )
        for o in node.output:
            self._names.add(o)
        self.nodes.append(node)
        self._live.add(id(node))
        self._index(node)
        return node

    def remove_node(self, node: onnx.NodeProto) -> None:
        for i, n in enumerate(self.nodes):
            if n is node:
                self._forget(node)
                del self.nodes[i]
                self._live.discard(id(node))
                self._unindex(node)
                return
        raise ValueError(f"node {node.name!r} is not in the graph")

    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of `old` read `new` instead (not for names read from subgraphs or graph outputs)."""
        for node in self.users(old):
            if old not in node.input:
                raise ValueError(f"{old!r} is read from a subgraph of {node.name!r}")
            self._forget(node)
            self._unindex(node)
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            self._index(node)

    # ------------------------------------------------------------------ types and shapes

    def _collect_types(self, model: onnx.ModelProto) -> None:
        g = model.graph
        for vi in itertools.chain(g.value_info, g.input, g.output):
            if vi.type.HasField("tensor_type"):
                self._types[vi.name] = vi.type

    def _infer_shapes(self) -> None:
        try:
            inferred = onnx.shape_inference.infer_shapes(
                self.model, check_type=False, strict_mode=False, data_prop=True
            )
        except Exception:  # noqa: BLE001 - shapes are a hint; without them passes only do what needs none
            return
        self._collect_types(inferred)

    def elem_type(self, name: str) -> int | None:
        if name in self.initializers:
            return self.initializers[name].data_type
        t = self._types.get(name)
        if t is None or not t.tensor_type.elem_type:
            value = self.constant(name)
            if value is not None:
                return int(onnx.helper.np_dtype_to_tensor_dtype(value.dtype))
        if t is not None and t.tensor_type.elem_type:
            return t.tensor_type.elem_type
        return None

    def shape(self, name: str) -> list[int | None] | None:
        """Static dims (None where unknown/symbolic), or None if even the rank is unknown."""
        value = self.constant(name)
        if value is not None:
            return list(value.shape)
        t = self._types.get(name)
        if t is None or not t.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]

    def rank(self, name: str) -> int | None:
        s = self.shape(name)
        return None if s is None else len(s)

    def copy_type(self, src: str, dst: str) -> None:
        """Record that `dst` has the type and shape of `src` (for tensors a pass creates)."""
        if src in self._types:
            self._types[dst] = self._types[src]

    # ------------------------------------------------------------------ output

    def dead_code(self) -> list[onnx.NodeProto]:
        """Nodes that no graph output needs."""
        needed = set(self.output_names)
        live: list[onnx.NodeProto] = []
        for node in reversed(self._toposorted()):
            if any(o in needed for o in node.output if o):
                live.append(node)
                needed.update(node_reads(node))
        keep = {id(n) for n in live}
        return [n for n in self.nodes if id(n) not in keep]

    def _toposorted(self) -> list[onnx.NodeProto]:
        """Stable topological order (original order wherever the data flow allows); EdgeDeployError naming a node
        on a cycle, which no order can have."""
        available = set(self.input_names) | set(self.initializers) | {""}
        produced_here = {o: n for n in self.nodes for o in n.output if o}
        pending = list(self.nodes)
        order: list[onnx.NodeProto] = []
        while pending:
            rest = []
            for node in pending:
                if all(i in available or i not in produced_here for i in node_reads(node)):
                    order.append(node)
                    available.update(node.output)
                else:
                    rest.append(node)
            if len(rest) == len(pending):  # every pending node waits on another: walk back until one repeats
                node, seen = rest[0], set()
                while id(node) not in seen:
                    seen.add(id(node))
                    node = next(produced_here[i] for i in node_reads(node) if i in produced_here and i not in available)
                raise EdgeDeployError(f"{node.op_type} node '{node.name}' depends on its own output (a cycle)",
                                      where=f"node '{node.name}'", fix="Re-export the model")
            pending = rest
        return order

    def _init_type_ok(self, vi: onnx.ValueInfoProto) -> bool:
        """False for a value_info that no longer matches the initializer of that name (a pass rewrote it)."""
        t = self.initializers.get(vi.name)
        if t is None or not vi.type.HasField("tensor_type"):
            return True
        tt = vi.type.tensor_type
        if tt.elem_type and tt.elem_type != t.data_type:
            return False
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(dims) != len(t.dims) or any(d is not None and d != e for d, e in zip(dims, t.dims)):
                return False
        return True

    def finish(self, *, remove_dead: bool = True) -> onnx.ModelProto:
        """A new model with the edited nodes, without dead nodes, unused initializers and stale value_info."""
        if remove_dead:
            for node in self.dead_code():
                self.remove_node(node)
        nodes = self._toposorted()
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        used: set[str] = set(self.output_names)
        for node in nodes:
            used.update(node_reads(node))
        live_inits = [t for t in self.graph.initializer if t.name in used or t.name in self.input_names]
        if len(live_inits) != len(self.graph.initializer):
            kept = [copy.deepcopy(t) for t in live_inits]
            del self.graph.initializer[:]
            self.graph.initializer.extend(kept)
        self.initializers = {t.name: t for t in self.graph.initializer}
        defined = {o for n in nodes for o in n.output if o} | set(self.initializers) | set(self.input_names)
        stale = [vi for vi in self.graph.value_info if vi.name not in defined or not self._init_type_ok(vi)]
        for vi in stale:
            self.graph.value_info.remove(vi)
        out = onnx.ModelProto()
        out.CopyFrom(self.model)
        return out
