"""What an ONNX model must satisfy before edgedeploy runs any of it, each failure one error naming the tensor or node:

- external data stays inside the model's folder (a model file is untrusted input: a location such as
  `../../etc/passwd` would make the build read any file the user can);
- its inputs and outputs are the ones the config names, with the config's dtypes and shapes;
- every node is an operator ONNX Runtime can run: the pipeline runs every model in it (the reference for an ONNX
  source, the verification of each graph pass), whatever the target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.prune import select_outputs
from edgedeploy.shapes import Dim, format_dims, input_dims

if TYPE_CHECKING:
    from edgedeploy.config import BuildSpec


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph (If/Loop/Scan bodies) inside it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _graphs(model.graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            for attr in node.attribute:
                yield from ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse, before any is read, external data that is absolute, leaves the model's folder (`..`, a symbolic
    link) or is missing."""
    folder = Path(path).parent.resolve()
    for tensor in _tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = folder / location
        if not location or os.path.isabs(location) or target.is_symlink() or \
                not target.resolve().is_relative_to(folder):
            raise UsageError(f"tensor {tensor.name!r} keeps its data in {location!r}, outside the model's folder; "
                             "refused (a model may only read files beside it)", where=str(path),
                             fix="move the data file into the model's folder and save the model with a relative "
                                 "location (onnx.save_model(..., save_as_external_data=True))")
        if not target.is_file():
            raise UsageError(f"external data file {location!r} of tensor {tensor.name!r} not found", where=str(path),
                             fix="copy the data file next to the model")


def _shape_matches(model_dims: list[Dim], config_dims: list[int | str]) -> bool:
    """Same rank; a static model dimension needs that size in the config (not a dynamic name). Every dimension that
    is not a positive integer in the model (a name, `?`, -1, 0, none) is dynamic, so any config entry fits it."""
    return len(model_dims) == len(config_dims) and all(
        not isinstance(m, int) or m == c for m, c in zip(model_dims, config_dims))


def check_io(model: onnx.ModelProto, spec: BuildSpec, path: Path) -> None:
    """The config's inputs (names, dtypes, shapes) and named outputs are the model's."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
    outputs = [o.name for o in model.graph.output]
    for spec_in in spec.inputs:
        value = inputs.get(spec_in.name)
        if value is None:
            raise UsageError(f"the model has no input {spec_in.name!r} (its inputs: {', '.join(inputs)})",
                             where=str(path), fix="set inputs[].name to the model's input names")
        elem = value.type.tensor_type.elem_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name if elem else None
        if dtype is not None and dtype != spec_in.dtype:
            raise UsageError(f"input {spec_in.name!r} is {dtype} in the model, the config says {spec_in.dtype}",
                             where=str(path), fix=f"set inputs[].dtype to {dtype}")
        dims = input_dims(value)
        if dims is not None and not _shape_matches(dims, spec_in.shape):
            raise UsageError(f"input {spec_in.name!r} has shape {format_dims(dims)} in the model, the config says "
                             f"[{', '.join(map(str, spec_in.shape))}]", where=str(path),
                             fix="make inputs[].shape match the model (a name for a dynamic dimension)")
    extra = [name for name in inputs if name not in {i.name for i in spec.inputs}]
    if extra:
        raise UsageError(f"the model's input {extra[0]!r} is not in the config's inputs", where=str(path),
                         fix="name every model input under inputs[]")
    for name in spec.outputs:
        if name not in outputs:
            raise UsageError(f"the model has no output {name!r} (its outputs: {', '.join(outputs)})",
                             where=str(path), fix="list the model's output names under outputs, or leave it out")
    kept = select_outputs(outputs, list(spec.optimize.keep_outputs) or None, list(spec.optimize.drop_outputs))
    if spec.validation.output is not None and spec.validation.output not in kept:
        raise UsageError(f"validation.output {spec.validation.output!r} is not an output of the deployed model "
                         f"(its outputs: {', '.join(kept)})", where=str(path),
                         fix="set validation.output to one of them")


def check_operators(model: onnx.ModelProto, path: Path, kernels: set[tuple[str, str]] | None) -> None:
    """Every node is an ONNX operator at the model's opset, a function the model defines, or a kernel in `kernels`
    ((domain, op type) pairs ONNX Runtime registers; None when it cannot list them: custom domains are then left to
    ONNX Runtime itself)."""
    opsets = {"" if o.domain == "ai.onnx" else o.domain: o.version for o in model.opset_import}
    functions = {(f.domain, f.name) for f in model.functions}
    unknown = [node for graph in _graphs(model.graph) for node in graph.node
               if not _runnable(node, opsets, functions, kernels)]
    if unknown:
        first = unknown[0]
        op = f"{first.domain}:{first.op_type}" if first.domain else first.op_type
        more = f" (and {len(unknown) - 1} more node(s))" if len(unknown) > 1 else ""
        raise EdgeDeployError(f"node {first.name!r} ({op}) is neither an ONNX operator nor one ONNX Runtime "
                              f"implements, so no backend here can run it{more}", where=str(path),
                              fix="replace it with standard ONNX operators (or export the model without the custom op)")


def _runnable(node: onnx.NodeProto, opsets: dict[str, int], functions: set[tuple[str, str]],
              kernels: set[tuple[str, str]] | None) -> bool:
    domain = "" if node.domain == "ai.onnx" else node.domain
    if onnx.defs.has(node.op_type, opsets.get(domain, 1), domain) or (node.domain, node.op_type) in functions:
        return True
    if kernels is None:  # ONNX Runtime cannot be asked: an unknown ONNX op is still refused, a custom one left to it
        return domain not in ("", "ai.onnx.ml")
    return (domain, node.op_type) in kernels


__all__ = ["check_external_data", "check_io", "check_operators"]
