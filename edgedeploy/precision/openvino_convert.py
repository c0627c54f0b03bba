"""The one ONNX → OpenVINO conversion: the NNCF INT8 route quantizes what it makes, the OpenVINO backend builds the IR
from it, and the per-layer INT8 error compares its layers. OpenVINO is imported inside the functions."""

from __future__ import annotations

import re
from pathlib import Path

import onnx

from edgedeploy.errors import EdgeDeployError
from edgedeploy.shapes import graph_inputs, input_dims


def convert_onnx(onnx_path: Path):
    """`ov.convert_model` of an ONNX file, with every input dim that is not a positive integer in the ONNX file made
    dynamic: OpenVINO's ONNX frontend reads `dim_value: 0` (Paddle2ONNX, tf2onnx) as a static size 0."""
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:
        raise conversion_error(str(e), Path(onnx_path)) from None
    wanted = {}
    for value in graph_inputs(onnx.load(str(onnx_path), load_external_data=False)):
        dims = input_dims(value)
        if dims is not None:
            wanted[value.name] = ov.PartialShape([ov.Dimension(d) if isinstance(d, int) else ov.Dimension()
                                                  for d in dims])
    current = {p.get_any_name(): p.get_partial_shape() for p in model.inputs}
    changed = {name: shape for name, shape in wanted.items() if name in current and current[name] != shape}
    if changed:
        model.reshape(changed)
    return model


def conversion_error(message: str, onnx_path: Path) -> EdgeDeployError:
    """OpenVINO names the op types it cannot convert (`domain.Op`); the error names the nodes that use them."""
    found = re.search(r"No conversion rule found for operations: (.+)", message)
    if found is None:
        return EdgeDeployError(f"OpenVINO cannot convert the model: {message.strip().splitlines()[-1]}",
                               where=str(onnx_path))
    ops = {re.sub(r"-\d+$", "", op.strip()) for op in found.group(1).split(",")}
    nodes = [n for n in onnx.load(str(onnx_path), load_external_data=False).graph.node
             if (f"{n.domain}.{n.op_type}" if n.domain else n.op_type) in ops]
    named = ", ".join(f"{n.name!r} ({n.domain + ':' if n.domain else ''}{n.op_type})" for n in nodes[:3])
    more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
    return EdgeDeployError(f"OpenVINO has no conversion for node {named or ', '.join(sorted(ops))}{more}",
                           where=str(onnx_path), fix="build it with --target onnxruntime (which runs it), or "
                                                     "replace the op with standard ONNX operators")


__all__ = ["convert_onnx", "conversion_error"]
