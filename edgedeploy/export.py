"""PyTorch → ONNX export and the PyTorch reference outputs (the only stage that imports torch).

Checkpoints load with `torch.load(weights_only=True)`: a pickled checkpoint that would run code is refused unless the
user passes --trust-code.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy.config import BuildSpec, InputSpec, import_callable
from edgedeploy.errors import EdgeDeployError, UsageError, strip_ansi

_SINGLE_FILE_LIMIT = 1_800_000_000  # protobuf's 2 GB cap, with room for the graph itself


def _torch():
    try:
        import torch
    except ImportError:
        raise EdgeDeployError(
            "exporting a PyTorch model needs torch, which is not installed",
            fix='install it with `pip install "edgedeploy[export]"`, or give an .onnx file as model.onnx',
        ) from None
    return torch


def load_checkpoint(path: Path, trust_code: bool = False) -> Any:
    """Load a checkpoint without executing code from it, unless the user trusts the file."""
    torch = _torch()
    if not path.is_file():
        raise UsageError("checkpoint not found", where=str(path), fix="check model.checkpoint in the config")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise EdgeDeployError("reading .safetensors needs the safetensors package", where=str(path),
                                  fix="pip install safetensors") from None
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises SafetensorError (or OSError) for a damaged file
            raise EdgeDeployError(f"cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                                  where=str(path), fix="the file is corrupt, truncated or not a .safetensors "
                                                       "checkpoint; save it again") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_code)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        if not trust_code and ("GLOBAL" in str(e) or "Unsupported global" in str(e)):
            raise EdgeDeployError(
                "checkpoint holds pickled Python objects; loading it would run code from the file, so it was refused",
                where=str(path),
                fix="re-save it as a state_dict (torch.save(model.state_dict(), ...)), or pass --trust-code if you "
                "trust the file's origin",
                exit_code=2,
            ) from None
        raise EdgeDeployError(f"cannot read checkpoint ({type(e).__name__})", where=str(path),
                              fix="the file is corrupt, truncated or not a PyTorch checkpoint; save it again") from None


def build_module(spec: BuildSpec, trust_code: bool = False):
    """Instantiate the factory and load its checkpoint; returns the module in eval mode."""
    torch = _torch()
    factory = import_callable(spec.model.factory, "model.factory")
    try:
        module = factory(**spec.model.kwargs)
    except TypeError as e:
        raise UsageError(f"factory call failed: {e}", where=f"model.factory {spec.model.factory}",
                         fix="check model.kwargs") from None
    if spec.model.checkpoint is not None:
        state = load_checkpoint(spec.model.checkpoint, trust_code)
        if isinstance(state, torch.nn.Module):
            module = state
        else:
            if isinstance(state, dict):
                state = state.get("state_dict", state.get("model", state))
            if not isinstance(state, dict):
                raise EdgeDeployError(f"checkpoint holds a {type(state).__name__}, not a state_dict",
                                      where=str(spec.model.checkpoint))
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as e:
                first = str(e).splitlines()[0:2]
                raise EdgeDeployError(f"checkpoint does not match the model: {' '.join(first)}",
                                      where=str(spec.model.checkpoint),
                                      fix="check model.factory / model.kwargs against the checkpoint") from None
    return module.eval()


def _example_inputs(inputs: list[InputSpec], real: dict[str, np.ndarray] | None):
    torch = _torch()
    examples = []
    for spec_in in inputs:
        if real is not None and spec_in.name in real:
            arr = real[spec_in.name][:2]
        else:
            shape = [2 if isinstance(d, str) else d for d in spec_in.shape]
            arr = np.random.default_rng(0).random(shape).astype(spec_in.dtype)
        examples.append(torch.from_numpy(np.ascontiguousarray(arr)))
    return tuple(examples)


def forward_arity(module, count: int) -> None:
    """Config inputs map to forward()'s positional parameters by position (the deployed graph keeps the config's
    names, whatever the Python arguments are called); a UsageError when the counts cannot match."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # a C++/scripted forward without a Python signature: torch checks it itself
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if count < len(required) or (count > len(positional) and not varargs):
        names = ", ".join(p.name for p in positional) or "no arguments"
        raise UsageError(f"the config lists {count} input(s) but {type(module).__name__}.forward takes "
                         f"{len(required)}{'' if len(required) == len(positional) else f'..{len(positional)}'} "
                         f"({names})", where="inputs",
                         fix="list one input per forward() argument, in the same order; the config's names are "
                             "the deployed graph's and need not match the Python argument names")


def _dynamic_shapes(inputs: list[InputSpec]) -> tuple[dict[int, Any], ...]:
    """torch.export's dynamic_shapes as a tuple: it matches forward()'s arguments by position, not by name."""
    torch = _torch()
    dims: dict[str, Any] = {}
    return tuple({axis: dims.setdefault(d, torch.export.Dim(_dim_name(d))) for axis, d in enumerate(spec_in.shape)
                  if isinstance(d, str)} for spec_in in inputs)


def _dim_name(name: str) -> str:
    """torch.export.Dim needs a Python identifier; the ONNX graph's dim name comes from it."""
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return cleaned if cleaned.isidentifier() else f"d_{cleaned}"


@contextlib.contextmanager
def _captured_logger(name: str, stream: io.StringIO):
    """Send `name`'s records to `stream` only: its own handlers write to the real stderr, past redirect_stderr."""
    logger = logging.getLogger(name)
    saved = (logger.handlers[:], logger.propagate, logger.level)
    handler = logging.StreamHandler(stream)
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate, _ = saved
        logger.setLevel(saved[2])


def export_onnx(spec: BuildSpec, module, out_path: Path, real_inputs: dict[str, np.ndarray] | None = None) -> Path:
    """Export `module` to `out_path` atomically (dynamo exporter, the config's input/output names, dynamic dims
    from the spec; inputs map to forward()'s arguments by position). On failure the exporter's whole log is in a file
    the error names (and, for --debug, in the error's `log`)."""
    torch = _torch()
    forward_arity(module, len(spec.inputs))
    examples = _example_inputs(spec.inputs, real_inputs)
    param_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    external = param_bytes > _SINGLE_FILE_LIMIT
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".export.", dir=out_path.parent))
    tmp = tmp_dir / out_path.name
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                _captured_logger("torch.onnx", log):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                examples,
                str(tmp),
                input_names=[i.name for i in spec.inputs],
                output_names=spec.outputs or getattr(module, "output_names", None),
                dynamic_shapes=_dynamic_shapes(spec.inputs),
                opset_version=spec.export.opset,
                dynamo=True,
                optimize=spec.export.exporter_optimize,
                external_data=external,
            )
        _drop_stack_traces(tmp)
        for produced in tmp_dir.iterdir():
            os.replace(produced, out_path.parent / produced.name)
    except EdgeDeployError:
        raise
    except Exception as e:
        raise _export_error(spec, e, log.getvalue(), out_path) from e
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return out_path


_STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_stack_traces(path: Path) -> None:
    """Remove the exporter's per-node Python stack traces: they name this machine's file paths, which a shipped model
    must not carry and which would make the same model's bytes (and every hash keyed on them) depend on where the
    code was checked out. The module scopes and names the exporter records stay."""
    model = onnx.load(str(path), load_external_data=False)
    changed = False
    for node in _all_nodes([model.graph.node, *(f.node for f in model.functions)]):
        kept = [p for p in node.metadata_props if p.key != _STACK_TRACE]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            changed = True
    if changed:
        onnx.save(model, str(path))


def _all_nodes(node_lists) -> Iterator[onnx.NodeProto]:
    for nodes in node_lists:
        for node in nodes:
            yield node
            for attr in node.attribute:
                graphs = [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs
                yield from _all_nodes([g.node for g in graphs])


_ROOT_EXCEPTION = re.compile(r"^(?:<class ')?([\w.]+?(?:Error|Exception|SymNode|Unsupported)\w*)'?>?: (.+)$")
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')


def root_cause(log: str) -> tuple[str | None, str | None]:
    """The exporter log's root exception (`GuardOnDataDependentSymNode: ...`, the first one raised, not torch's
    wrappers) and the deepest frames of the traceback that are the model's code (not torch's), outermost first:
    `ssd.py:417 in postprocess_detections → boxes.py:73 in batched_nms → ...`. Either may be None."""
    cause = None
    for line in log.splitlines():
        m = _ROOT_EXCEPTION.match(line.strip())
        if m and not m.group(1).endswith(("TorchExportError", "OnnxExporterError")):
            cause = f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2).strip()}"
            break
    frames: list[str] = []
    for line in log.splitlines():
        m = _FRAME.match(line)
        if m and f"{os.sep}torch{os.sep}" not in m.group(1) and f"{os.sep}edgedeploy{os.sep}" not in m.group(1) \
                and not m.group(1).startswith("<"):
            frame = f"{Path(m.group(1)).name}:{m.group(2)} in {m.group(3)}"
            if frame not in frames[-3:]:
                frames.append(frame)
    return cause, " → ".join(frames[-3:]) or None


def _error_log_path(out_path: Path) -> Path:
    """Beside the output folder (a failed build's staging folder is discarded and the previous build stays whole):
    <parent>/<name>.export-error.log; the build's own folder when it is not a staging folder."""
    folder = out_path.parent
    if folder.name.startswith(".") and folder.name.endswith(".staging"):
        return folder.parent / f"{folder.name[1:-len('.staging')]}.export-error.log"
    return folder / "export-error.log"


def _export_error(spec: BuildSpec, exc: BaseException, log: str, out_path: Path) -> EdgeDeployError:
    """One line naming the cause in our words: the root exception of the exporter's log and the model code it came
    from; the whole log and traceback go to a file beside the output folder."""
    text = strip_ansi(str(exc)).strip()
    full = strip_ansi(log + "\n" + "".join(traceback.format_exception(exc)))
    cause, frame = root_cause(full)
    if cause is None:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        cause = next((ln for ln in lines if not ln.startswith(("Failed to export", "This is step", "-"))), None) \
            or (lines[0] if lines else type(exc).__name__)
    hint = ""
    if "GuardOnDataDependent" in cause or "data-dependent" in cause.lower():
        hint = ("the model's forward makes a decision on tensor values (score thresholds, NMS, a data-dependent "
                "size), which a static graph cannot hold: export the network without that step and run it after "
                "inference; ")
    path = _error_log_path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(full)
    os.replace(tmp, path)
    where = f" at {frame}" if frame else ""
    err = EdgeDeployError(f"torch.export cannot trace the model{where}: {cause[:400]}", where=_describe_source(spec),
                          fix=f"{hint}the exporter's log is in {path} (--debug prints it)")
    err.log = full
    return err


def _describe_source(spec: BuildSpec) -> str:
    """`model.timm convnext_atto`, a factory's `module:function` or the ONNX path: the model as errors name it."""
    family = spec.model.package()
    return f"model.{family} {getattr(spec.model, family)}" if family else str(spec.model.factory or spec.model.onnx)


REFERENCE_BATCH = 16


def reference_outputs(module, inputs: dict[str, np.ndarray], output_names: list[str],
                      batch: int = REFERENCE_BATCH) -> dict[str, np.ndarray]:
    """Run the PyTorch model on the validation inputs (in eval mode, no grad), in batches."""
    torch = _torch()
    first = next(iter(inputs.values()))
    collected: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(first), batch):
            args = [torch.from_numpy(np.ascontiguousarray(v[start:start + batch])) for v in inputs.values()]
            out = module(*args)
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            if len(outs) != len(output_names):
                raise UsageError(f"the model returns {len(outs)} outputs but `outputs` names {len(output_names)}",
                                 where="outputs", fix="name every output the model's forward returns, in order")
            for name, t in zip(output_names, outs):
                collected.setdefault(name, []).append(t.detach().cpu().numpy())
    return {k: np.concatenate(v) for k, v in collected.items()}
