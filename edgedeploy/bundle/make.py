"""`edgedeploy bundle`: on the workstation, everything a device needs to build and validate without PyTorch.

Runs the stages that need the model source (export with the PyTorch reference, the verified graph passes) and the
precision variants that need calibration or a cast (deploy.fp16.onnx, the calibrated deploy.int8.qdq.onnx), and
writes them with the reference and the calibration samples into a bundle folder (layout in manifest.py). No backend
is built here: a TensorRT plan is tied to the device's GPU and TensorRT version, so the device builds it.

The bundle is written like a build folder (edgedeploy.outfolder): staged next to its final place and swapped in
whole, so a failed or killed run leaves the previous bundle as it was.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

from edgedeploy import __version__, arrayfile, fileio, pipeline
from edgedeploy.backends import precision_route
from edgedeploy.bundle import signature
from edgedeploy.bundle.manifest import CALIBRATION, MANIFEST, SCHEMA, SPEC, TIMING_CACHE, VARIANTS, file_table
from edgedeploy.config import BuildSpec, Precision
from edgedeploy.outfolder import OutputFolder
from edgedeploy.precision.calibration import load_calibration
from edgedeploy.precision.stage import run_precision
from edgedeploy.stagecache import StageCache
from edgedeploy.validate import evaluate as evaluation


def default_precisions(spec: BuildSpec) -> list[str]:
    """fp32 and fp16 always; int8 when the spec names calibration data."""
    has_calibration = spec.calibration.data is not None or spec.calibration.function is not None
    return ["fp32", "fp16"] + (["int8"] if has_calibration else [])


def make_bundle(spec: BuildSpec, out: Path, precisions: list[Precision] | None = None, *, trust_code: bool = False,
                listener: pipeline.StageListener | None = None, cache: StageCache | None = None,
                sign_key: Path | None = None) -> dict[str, Any]:
    """Write the bundle for `spec` into `out` (replaced as a whole); returns its manifest. `cache`: the stage cache
    export and optimize results are reused from (as a build's); `sign_key`: an OpenSSH private key bundle.json is
    signed with (edgedeploy.bundle.signature)."""
    spec = pipeline.resolve_source(spec, trust_code)
    precisions = sorted(set(precisions or default_precisions(spec)) | {"fp32"}, key=list(VARIANTS).index)
    # what a build would refuse before export (missing files, int8 without calibration data), the variants being
    # what the precision stage makes for ONNX Runtime
    pipeline.check_request(spec.model_copy(update={"target": "onnxruntime", "precision": precisions[-1]}))
    timer = pipeline.StageTimer(listener or pipeline.StageListener())
    folder = OutputFolder(out, kind="bundle")
    with folder, tempfile.TemporaryDirectory(prefix="edgedeploy-bundle-") as work:
        staging = folder.staging
        made = pipeline.export_and_optimize(spec, folder, timer, trust_code, cache)
        for raw in (made.raw_path, made.raw_path.with_name(made.raw_path.name + ".data")):
            raw.unlink(missing_ok=True)  # the device builds from deploy.onnx
        deploy_path, data = made.deploy_path, made.data
        with timer.stage("precision") as t:
            variants = _variants(spec, precisions, deploy_path, staging, Path(work), data)
            t.summary = ", ".join(f"{p}: {VARIANTS[p]}" for p in precisions)
        with timer.stage("bundle") as t:
            if "int8" in precisions:
                _write_calibration(spec, staging / CALIBRATION)
            carried = _carry_timing_cache(spec, staging)
            fileio.write_json(staging / SPEC, _device_spec(spec, "int8" in precisions).model_dump(mode="json"))
            manifest = _without_workstation_paths(_manifest(spec, precisions, made, variants, file_table(staging)))
            if carried:
                manifest["tensorrt"] = {"timing_cache": TIMING_CACHE}
            fileio.write_json(staging / MANIFEST, folder.relocate(manifest))
            if sign_key is not None:
                signature.sign(staging / MANIFEST, sign_key)
            size = sum(f["size"] for f in manifest["files"].values())
            t.summary = f"{len(manifest['files'])} files, {size / 1e6:.1f} MB" + (", signed" if sign_key else "")
        folder.commit()
    return manifest


def _variants(spec: BuildSpec, precisions: list[str], deploy_path: Path, staging: Path, work: Path,
              data) -> dict[str, dict[str, Any]]:
    """deploy.fp16.onnx and deploy.int8.qdq.onnx as the precision stage makes them for ONNX Runtime and TensorRT
    (TensorRT 11 builds fp16 from the cast graph; the Q/DQ graph serves both); the calibration cache stays out."""
    info = {"fp32": {"method": "none (fp32 deploy graph)"}}
    check_inputs = evaluation.first(data.inputs, evaluation.RUN_BATCH)
    calibration = spec.calibration.model_copy(update={"cache_dir": spec.calibration.cache_dir or work / "cache"})
    for precision in precisions[1:]:
        variant = spec.model_copy(update={"target": "onnxruntime", "precision": precision, "calibration": calibration})
        result = run_precision(variant, precision_route(variant), deploy_path, staging, data, pipeline.library_versions(), check_inputs)
        if result.model_path.name != VARIANTS[precision]:
            raise RuntimeError(f"the precision stage wrote {result.model_path.name}, not {VARIANTS[precision]}")
        info[precision] = result.info
    return info


def _carry_timing_cache(spec: BuildSpec, staging: Path) -> bool:
    """The spec's TensorRT timing cache, when the file exists, copied into the bundle as bytes (tensorrt.timing.cache;
    a device build combines it into its own cache): the bundle carries the data, never the workstation's path."""
    source = spec.tensorrt.timing_cache
    if source is None or not Path(source).is_file():
        return False
    fileio.write_bytes(staging / TIMING_CACHE, Path(source).read_bytes())
    return True


def _write_calibration(spec: BuildSpec, path: Path) -> None:
    """The calibration samples as model inputs, stacked in the order used, so the device reads exactly them (the
    same sha256, so keyed calibration results made from them match)."""
    calib = load_calibration(spec)
    with fileio.atomic_open(path) as f:
        arrayfile.write_npz(f, calib.stacked(), compressed=True)


def _device_spec(spec: BuildSpec, int8: bool) -> BuildSpec:
    """The spec as the device reads it: the model is the bundle's deploy.onnx, validation inputs come from
    reference.npz (a set larger than its tensor sample: from the dataset `build BUNDLE --data` names, checked against
    the content hash reference.npz records), calibration from calibration.npz; workstation paths (checkpoint,
    caches, data, a COCO image folder, a class map) are dropped."""
    calibration = spec.calibration.model_copy(update={
        "data": Path(CALIBRATION) if int8 else None, "function": None, "format": "npz" if int8 else "auto",
        "cache_dir": None})
    tensorrt = spec.tensorrt.model_copy(update={
        "calibration_data": Path(CALIBRATION) if int8 else None, "calibration_cache": None, "timing_cache": None})
    validation = spec.validation.model_copy(update={"data": None, "samples": None, "images": None, "class_map": None})
    return spec.model_copy(update={"model": spec.model.model_validate({"onnx": VARIANTS["fp32"]}),
                                   "validation": validation, "calibration": calibration, "tensorrt": tensorrt})


def _manifest(spec: BuildSpec, precisions: list[str], made: pipeline.Prepared, variants: dict,
              files: dict) -> dict[str, Any]:
    model = onnx.load(str(made.deploy_path), load_external_data=False)
    return {
        "schema": SCHEMA,
        "edgedeploy": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "name": spec.name,
        "precisions": precisions,
        "default": {"target": spec.target, "precision": spec.precision if spec.precision in precisions else "fp32"},
        "graph": {"inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
                  "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
                  "ir_version": model.ir_version},
        "source": made.source,
        "optimize": made.optimize_record(),
        "precision": variants,
        "made_with": {"libraries": pipeline.library_versions(), "python": platform.python_version(),
                      "machine": platform.machine()},
        "files": files,
    }


def _without_workstation_paths(record: Any) -> Any:
    """`record` with every absolute path (the checkpoint, the ONNX source, the calibration folder, a cache) cut to
    its file name: a bundle names no place on the machine that made it; the sha256 beside each identifies the file."""
    if isinstance(record, dict):
        return {k: _without_workstation_paths(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_without_workstation_paths(v) for v in record]
    if isinstance(record, str) and os.path.isabs(record) and "\n" not in record:
        return Path(record).name
    return record


__all__ = ["make_bundle", "default_precisions"]
