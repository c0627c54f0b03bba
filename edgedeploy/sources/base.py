"""What a package source knows about its model besides the weights, and the wrapper that gives structured outputs
(ModelOutput, dict, namedtuple, nested tuples) one named graph output per tensor. torch is imported lazily."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgedeploy.errors import EdgeDeployError


@dataclass
class SourceInfo:
    """What the package says about the model: its input, its preprocessing (Preprocess keys), where that came from
    (`details`, recorded in the report and the bundle), class names, task and the output decoder that fits."""

    kind: str
    input_shape: tuple[int, int, int]  # C, H, W of one image
    input_name: str = "images"
    preprocess: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    task: str | None = None
    decoder: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON the report and the bundle manifest keep (class names counted, listed when few)."""
        names = self.class_names
        return {"preprocess": self.preprocess, "preprocess_from": self.details, "task": self.task,
                "decoder": self.decoder, "num_classes": len(names) if names is not None else None,
                "class_names": names}


@dataclass
class Loaded:
    module: Any  # torch.nn.Module in eval mode whose forward returns a tuple of tensors named by `output_names`
    output_names: list[str]
    info: SourceInfo


def torch_module():
    try:
        import torch
    except ImportError:
        raise EdgeDeployError("a package model source needs torch, which is not installed",
                              fix='install it with `pip install "edgedeploy[export]"`') from None
    return torch


def require(package: str, extra: str):
    """Import a model package, or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise EdgeDeployError(f"model.{extra} needs the {package} package ({e})",
                              fix=f'pip install "edgedeploy[{extra}]"') from None


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, tensor) for every tensor in a structured output, in order: a mapping (ModelOutput, OrderedDict) by key,
    a namedtuple by field, a tuple/list by index (`output0`, `output1` at the top level, `aux.0` inside); None
    entries are skipped. Anything else is one error naming the output."""
    torch = torch_module()
    if isinstance(value, torch.Tensor):
        return [(prefix or "output", value)]
    if value is None:
        return []
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = list(zip(value._fields, value))
    elif isinstance(value, (tuple, list)):
        items = [(f"{'' if prefix else 'output'}{i}", v) for i, v in enumerate(value)]
    else:
        raise EdgeDeployError(f"the model's output {prefix or '(top level)'} is a {type(value).__name__}, not a "
                              "tensor or a structure of tensors", fix="wrap the model so forward returns tensors")
    out: list[tuple[str, Any]] = []
    for key, v in items:
        out.extend(flatten(v, f"{prefix}.{key}" if prefix else key))
    return out


def with_named_outputs(module, example_inputs: tuple, single: str = "output") -> tuple[Any, list[str]]:
    """`module` wrapped so forward returns a flat tuple of its output tensors, and their names (from one forward on
    the example inputs): a lone tensor is `single`, a flat tuple's are output0, output1..."""
    torch = torch_module()
    with torch.inference_mode():
        names = [name for name, _ in flatten(module(*example_inputs), "")]
    if names == ["output"]:
        names = [single]
    if len(set(names)) != len(names):
        raise EdgeDeployError(f"the model's outputs flatten to repeated names {names}",
                              fix="wrap the model so forward returns uniquely named tensors")

    class NamedOutputs(torch.nn.Module):
        """The model with its structured output flattened to the tensors `names` lists, in that order."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):  # every package source takes one image batch (torch.export maps it by position)
            found = dict(flatten(self.inner(images)))
            return tuple(found["output" if n == single and len(names) == 1 else n] for n in names)

    return NamedOutputs(module).eval(), names
