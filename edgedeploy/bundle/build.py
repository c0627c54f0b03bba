"""`edgedeploy build BUNDLE --target ...`: on the device, build and validate from a bundle with no PyTorch.

Uses only what the device has: edgedeploy, numpy, onnx and the backend's runtime. The bundle is checked against its
manifest first; the graph variant the precision needs comes from the bundle as it was made and checked on the
workstation (deploy.fp16.onnx, deploy.int8.qdq.onnx), except OpenVINO INT8, which NNCF calibrates here from the
bundled samples (keyed like any calibration result, so a rebuild into the same folder reuses it). The output folder
is an ordinary build folder (reference.npz, deploy*.onnx, the artifact, manifest.json, report.*), so
`edgedeploy validate` and `edgedeploy inspect` work on it as on any build.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from edgedeploy import pipeline
from edgedeploy.backends import precision_route, target_kind
from edgedeploy.bundle.manifest import VARIANTS, Bundle, open_bundle
from edgedeploy.config import BuildSpec
from edgedeploy.errors import UsageError
from edgedeploy.outfolder import OutputFolder
from edgedeploy.precision.stage import PrecisionResult, run_precision
from edgedeploy.preprocess import stored_set
from edgedeploy.stagecache import default_root
from edgedeploy.validate.evaluate import Reference
from edgedeploy.validate.gate import load_stored


def build_from_bundle(bundle_dir: Path, out: Path, *, target: str | None = None, precision: str | None = None,
                      strict: bool = False, listener: pipeline.StageListener | None = None,
                      signers: Path | None = None, require_signature: bool = False,
                      data: Path | None = None) -> dict[str, Any]:
    """Check the bundle (its signature first, with `signers`: an allowed_signers file), build `target` at `precision`
    (default: the bundle's), validate against the bundled reference (`strict`: every warning fails too), and replace
    `out` with the result; returns the report. A bundle made from a validation set larger than its tensor sample
    names that set by content hash: `data` is where it is on this device (checked against the hash)."""
    timer = pipeline.StageTimer(listener or pipeline.StageListener())
    wall_start = time.perf_counter()
    with timer.stage("bundle") as t:
        bundle = open_bundle(bundle_dir, signers, require_signature)
        default = bundle.manifest["default"]
        spec = bundle.spec.model_copy(update={"target": target or default["target"],
                                              "precision": precision or default["precision"]})
        if strict:
            spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"strict": True})})
        if spec.precision not in bundle.precisions:
            raise UsageError(f"the bundle holds {', '.join(bundle.precisions)}, not {spec.precision}",
                             where=str(bundle_dir), fix=f"make it with `edgedeploy bundle --precision {spec.precision}`")
        spec = device_spec(spec, bundle)
        backend = pipeline.check_request(spec)
        t.summary = f"{len(bundle.manifest['files'])} files match bundle.json ({bundle.sha256[:12]})" + (
            f", signed by {bundle.signer}" if bundle.signer else "")
    folder = OutputFolder(out)
    spec, folder.keep = pipeline.reused_results(spec, folder)
    with folder:
        staging = folder.staging
        bundled = _uses_bundled_variant(spec)
        for name in ("reference.npz", "optimize.json", VARIANTS["fp32"], *([VARIANTS[spec.precision]] if bundled else [])):
            shutil.copyfile(bundle.path / name, staging / name)
        deploy_path = staging / VARIANTS["fp32"]
        stored = load_stored(staging / "reference.npz")
        data = stored_set(spec.model_copy(update={"validation": spec.validation.model_copy(update={"data": data})}),
                          stored.inputs, stored.targets, stored.labels, stored.dataset, str(staging / "reference.npz"),
                          stored.placement)
        data.source = f"{data.source}, from the bundle" if stored.dataset else data.source.replace(
            "samples)", "samples, from the bundle)")
        reference, labels = Reference(stored.outputs, stored.results), stored.labels

        with timer.stage("precision") as t:
            if bundled:
                path = staging / VARIANTS[spec.precision]
                prec = PrecisionResult(path, {**bundle.manifest["precision"][spec.precision], "from_bundle": True},
                                       [path])
            else:  # nothing to make, or OpenVINO INT8: NNCF on the bundled calibration samples
                prec = run_precision(spec, precision_route(spec), deploy_path, staging, data, pipeline.library_versions())
            t.summary = prec.summary + (" (made on the workstation)" if bundled else "")

        record = {"source": bundle.manifest["source"], "bundle": _origin(bundle), "validation_data": data.source,
                  "optimize": bundle.manifest["optimize"]}
        report = pipeline.build_and_record(spec, backend, folder, timer, deploy_path, prec, data, reference, labels,
                                           record, inputs=[staging / "reference.npz"], wall_start=wall_start)
        folder.commit()
    return report


def device_spec(spec: BuildSpec, bundle: Bundle) -> BuildSpec:
    """The spec with the device's own caches ($XDG_CACHE_HOME/edgedeploy), as the target declares them
    (TargetKind.on_device: TensorRT's timing cache, seeded from the bundle's)."""
    kind = target_kind(spec.target)
    return spec if kind.on_device is None else kind.on_device(spec, default_root(), bundle.timing_cache)


def _uses_bundled_variant(spec) -> bool:
    """The precision stage's backend-neutral ONNX (fp16-cast, Q/DQ: ONNX Runtime, TensorRT) comes ready-made in the
    bundle; a target whose route makes the precision from deploy.onnx (OpenVINO's compression and NNCF, TensorRT 10's
    implicit calibrator on the calibration samples) builds from deploy.onnx."""
    return precision_route(spec).makes_onnx(spec.precision)


def _origin(bundle: Bundle) -> dict[str, Any]:
    m = bundle.manifest
    return {"path": str(bundle.path), "sha256": bundle.sha256, "created": m.get("created"),
            "edgedeploy": m.get("edgedeploy"), "made_with": m.get("made_with"), "signed_by": bundle.signer}


__all__ = ["build_from_bundle", "device_spec"]
