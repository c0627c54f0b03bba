"""A static-shape artifact for a fixed deployment batch (`--static-batch N`, spec key `static_batch`).

Every graph edgedeploy builds keeps the batch dimension dynamic, so one artifact serves any batch. When the batch is
fixed, a static shape lets the backend plan for it: OpenVINO compiles kernels for that shape (2-27% faster at
batch 1 on the models measured in docs/benchmarks.md), ONNX Runtime can pre-plan its memory. The build then
validates and times at that batch only; a last partial chunk of validation samples is padded and its padding
discarded.

Without a static batch, an OpenVINO build also writes the artifact's static batch-1 copy (`batch1_artifact`, default
auto): one image at a time is the common edge deployment, and there the dynamic-shape IR is measurably slower
(docs/benchmarks.md). The build checks the copy against the dynamic artifact and times it at batch 1; the report says
which to deploy for which batch.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edgedeploy import fileio
from edgedeploy.errors import UsageError
from edgedeploy.shapes import Dim, dim_of, graph_inputs


def _leading(value: onnx.ValueInfoProto) -> Dim:
    """The leading dim as shapes.dim_of reads it: a positive int, a name, or None (anonymous, -1, 0); 1 for a scalar,
    which has nothing to fix."""
    dims = value.type.tensor_type.shape.dim
    return dim_of(dims[0]) if dims else 1


def static_onnx(path: Path, out: Path, batch: int) -> Path:
    """`path` with the leading (batch) dimension of every input and output fixed to `batch`, shapes re-inferred."""
    model = onnx.load(str(path))
    inputs = [i for i in graph_inputs(model) if not isinstance(_leading(i), int)]  # dynamic: named, anonymous, -1, 0
    if not inputs:
        raise UsageError("the model's inputs have no dynamic leading dimension to fix", where=str(path),
                         fix="drop --static-batch: the graph is static already")
    names = {_leading(i) for i in inputs} - {None}
    # outputs: the batch by name, or an anonymous leading dim; another named one (a detection count) stays dynamic
    outputs = [o for o in model.graph.output if _leading(o) is None or _leading(o) in names]
    for value in [*inputs, *outputs]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    fileio.write_bytes(out, model.SerializeToString())
    return out


def static_ir(xml: Path, out_dir: Path, batch: int) -> Path:
    """An OpenVINO IR (the NNCF-quantized one) reshaped to `batch`, saved as is (no weight compression)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or len(shape) == 0:
            raise UsageError("an input of unknown rank cannot take a static batch", where=str(xml))
        if shape[0].is_dynamic:  # an input whose leading dim is fixed (not a batch) keeps it
            shape[0] = batch
        shapes[port.get_any_name()] = shape
    model.reshape(shapes)
    staged = fileio.staging_dir(out_dir)
    ov.save_model(model, str(staged / "model.xml"), compress_to_fp16=False)
    fileio.replace_dir(staged, out_dir)
    return out_dir / "model.xml"


def batch1_copy(artifact: Path, folder: Path) -> Path | None:
    """The static batch-1 copy of a built artifact (an OpenVINO IR or an ONNX Runtime model) in `folder`; None when
    its batch is static already."""
    artifact = Path(artifact)
    try:
        if artifact.suffix == ".xml":
            return static_ir(artifact, folder, 1)
        folder.mkdir(parents=True, exist_ok=True)
        return static_onnx(artifact, folder / artifact.name, 1)
    except UsageError:
        return None  # no dynamic leading dimension: the artifact serves batch 1 as it is


def make_static(model_path: Path, work_dir: Path, batch: int) -> Path:
    """The static-batch version of what the build stage builds from (an ONNX graph or an OpenVINO IR)."""
    model_path = Path(model_path)
    if model_path.suffix == ".xml":
        return static_ir(model_path, work_dir / "static-ir", batch)
    return static_onnx(model_path, work_dir / f"{model_path.stem}.static.onnx", batch)


__all__ = ["make_static", "static_onnx", "static_ir", "batch1_copy"]
