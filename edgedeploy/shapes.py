"""Which dimensions of an ONNX input are dynamic, and the concrete sizes edgedeploy runs a model at.

Exporters write a dynamic dimension in several ways: `dim_param: "batch"` (a name: the same name means the same
size), `dim_param: "?"` or an empty dimension (anonymous), and `dim_value: -1` or `0` (Paddle2ONNX, tf2onnx and older
converters). Every dimension that is not a positive integer is dynamic, everywhere: verification inputs, I/O checks,
OpenVINO's input shapes and TensorRT's optimization profiles all read dimensions through `input_dims`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgedeploy import arrayfile
from edgedeploy.errors import UsageError

Dim = int | str | None  # static size, dynamic with a name, dynamic anonymous
ANONYMOUS = ("", "?")
DEFAULT_BATCH = 2  # a leading dynamic dimension in verification: 2 catches ops that mix samples


def dim_of(d: onnx.TensorShapeProto.Dimension) -> Dim:
    """A positive int for a static dimension; the dimension's name, or None when it has none, for a dynamic one."""
    if d.HasField("dim_value") and d.dim_value > 0:
        return int(d.dim_value)
    if d.HasField("dim_param") and d.dim_param not in ANONYMOUS:
        return d.dim_param
    return None


def input_dims(value: onnx.ValueInfoProto) -> list[Dim] | None:
    """The dimensions of a graph input or output, or None when the model does not give its rank."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [dim_of(d) for d in tensor.shape.dim]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old models list their weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def format_dims(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME:1x3x48x192` (as trtexec --shapes / onnxsim --overwrite-input-shape) → (NAME, (1, 3, 48, 192))."""
    name, sep, dims = text.rpartition(":")
    if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims) or any(int(d) < 1 for d in dims.split("x")):
        raise UsageError(f"invalid --input-shape {text!r}", fix="write NAME:1x3x48x192 (positive sizes, x between)")
    return name, tuple(int(d) for d in dims.split("x"))


@dataclass
class InputShapes:
    """Concrete shapes for every input, and for each dynamic dimension where its size came from."""

    shapes: dict[str, tuple[int, ...]]
    sources: dict[str, list[str]] = field(default_factory=dict)  # input → one note per dynamic axis

    @property
    def chosen(self) -> dict[str, list[str]]:
        """Only the dynamic axes whose size nobody gave (edgedeploy picked it)."""
        return {k: [s for s in v if "chosen" in s] for k, v in self.sources.items() if any("chosen" in s for s in v)}

    def to_dict(self) -> dict[str, object]:
        return {name: {"shape": list(shape), "dynamic_axes": self.sources.get(name, [])}
                for name, shape in self.shapes.items()}


def resolve_shapes(model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None = None,
                   examples: Mapping[str, np.ndarray] | None = None, size: int = 64,
                   batch: int = DEFAULT_BATCH) -> InputShapes:
    """A shape for every input: `given` shapes (--input-shape) first; other dynamic dims from `examples` (real
    inputs: every dim but the leading one), then `batch` for a leading dynamic dim and `size` for the rest. A named
    dim takes one size across all inputs. UsageError when a given shape contradicts the model."""
    given = dict(given or {})
    examples = dict(examples or {})
    inputs = graph_inputs(model)
    known = {i.name for i in inputs}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UsageError(f"--input-shape names {unknown[0]!r}, which is not an input of the model",
                         fix=f"its inputs: {', '.join(sorted(known))}")
    named: dict[str, tuple[int, str]] = {}  # dim name → (size, where it came from)
    for vi in inputs:  # names bound by given shapes and examples first, so every input agrees on them
        dims = input_dims(vi)
        for source, shape in ((f"--input-shape {vi.name}", given.get(vi.name)),
                              (f"the given inputs ({vi.name})", _example_shape(examples.get(vi.name)))):
            if shape is None or dims is None or len(shape) != len(dims):
                continue
            for axis, d in enumerate(dims):
                if isinstance(d, str) and d not in named and (source.startswith("--") or axis > 0):
                    named[d] = (int(shape[axis]), source)
    out = InputShapes({})
    for vi in inputs:
        dims = input_dims(vi)
        shape_given = given.get(vi.name)
        example = _example_shape(examples.get(vi.name))
        if dims is None:
            dims = [None] * len(shape_given or example or ())
            if not dims:
                raise UsageError(f"input {vi.name!r} has no shape in the model, so no inputs can be made for it",
                                 fix=f"give its shape with --input-shape {vi.name}:1x3x224x224, or real inputs")
        if shape_given is not None:
            _check_given(vi.name, dims, shape_given)
        shape, notes = [], []
        for axis, d in enumerate(dims):
            if isinstance(d, int):
                shape.append(d)
                continue
            label = f"axis {axis}" + (f" ({d})" if d else "")
            if shape_given is not None:
                value, how = int(shape_given[axis]), "--input-shape"
            elif example is not None and len(example) == len(dims) and axis > 0:
                value, how = int(example[axis]), "given inputs"
            elif isinstance(d, str) and d in named:
                value, how = named[d][0], named[d][1]
            elif axis == 0:
                value, how = batch, "batch, chosen"
            else:
                value, how = size, "chosen"
            if isinstance(d, str):
                named.setdefault(d, (value, how))
            shape.append(value)
            notes.append(f"{label} = {value} ({how})")
        out.shapes[vi.name] = tuple(shape)
        out.sources[vi.name] = notes
    return out


def _example_shape(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else tuple(np.shape(array))


def _check_given(name: str, dims: Sequence[Dim], shape: Sequence[int]) -> None:
    if len(shape) != len(dims):
        raise UsageError(f"--input-shape {name}: {len(shape)} dims given, the input has rank {len(dims)} "
                         f"{format_dims(dims)}")
    for axis, (d, s) in enumerate(zip(dims, shape)):
        if isinstance(d, int) and d != s:
            raise UsageError(f"--input-shape {name}: axis {axis} is static ({d}) in the model, the shape says {s}",
                             fix=f"the model's shape is {format_dims(dims)}")


def load_input_arrays(path: Path, samples: int = 8) -> dict[str, np.ndarray]:
    """Representative inputs from an .npz: one array per model input, by the input's name (or `input.NAME`, as in a
    build's reference.npz); the first `samples` along the leading axis. Pickled arrays are refused."""
    path = Path(path)
    if not path.is_file():
        raise UsageError("inputs file not found", where=str(path), fix="give an .npz with one array per model input")
    with arrayfile.open_npz(path, "inputs file", fix="save it with numpy.savez(path, NAME=array, ...)") as data:
        arrays = {k.removeprefix("input."): data[k] for k in data.files if not k.startswith(("output.", "label."))}
    if not arrays:
        raise UsageError("the inputs file holds no arrays", where=str(path), fix="save one array per model input")
    return {k: v[:samples] if v.ndim else v for k, v in arrays.items()}


__all__ = ["ANONYMOUS", "DEFAULT_BATCH", "Dim", "InputShapes", "dim_of", "format_dims", "graph_inputs", "input_dims",
           "load_input_arrays", "parse_input_shape", "resolve_shapes"]
