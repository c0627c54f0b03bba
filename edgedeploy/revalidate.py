"""`edgedeploy validate ARTIFACT_DIR`: re-run a built artifact on its stored reference, check thresholds (and a
baseline), and write the report beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


from edgedeploy import fileio
from edgedeploy.backends import backend_settings, get_backend
from edgedeploy.backends.base import BuildResult
from edgedeploy.config import BuildSpec, effective_thresholds
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.outfolder import FolderLock, OutputFolder, output_file, report_path
from edgedeploy.preprocess import ValidationSet, stored_set
from edgedeploy.tasks.base import TaskResults
from edgedeploy.validate import evaluate
from edgedeploy.validate import junit as junit_xml
from edgedeploy.validate.gate import (apply_config, artifact_record, baseline_checks, baseline_warnings,
                                      bind_baseline, check_build_folder, integrity_checks, load_baseline,
                                      load_stored, model_identity, read_manifest)
from edgedeploy.validate.predictions import write_predictions
from edgedeploy.validate.record import start_report
from edgedeploy.validate.write import finish_report, write_reports
from edgedeploy.versions import library_versions


def validate_artifact(artifact_dir: Path, *, baseline: Path | None = None, config: Path | None = None,
                      out_dir: Path | None = None, junit: Path | None = None, strict: bool = False,
                      accept_model_change: bool = False) -> dict[str, Any]:
    """Re-run the artifact in `artifact_dir` on its stored reference, check thresholds (and a baseline), write
    report.json / report.md / report.html to `out_dir` (default: ARTIFACT_DIR-validate beside it, so a rebuild does
    not wipe it) and JUnit XML to `junit`; `strict` turns every warning into a failing check. The report folder and
    --junit are checked before anything runs; the build folder is held with a shared lock for the whole run, so no
    build replaces the artifact while it is checked (edgedeploy.outfolder)."""
    start = time.perf_counter()
    check_build_folder(artifact_dir)
    artifact_dir = Path(os.path.realpath(artifact_dir))
    out_dir = report_path(artifact_dir, out_dir, "validate")
    junit = output_file(junit, "--junit", within=out_dir) if junit is not None else None
    with FolderLock(artifact_dir, shared=True), OutputFolder(out_dir, kind="report") as folder:
        report, spec, data, results = _validate(artifact_dir, baseline, config, strict, accept_model_change)
        write_predictions(folder.staging, data, results)
        report["wall_seconds"] = time.perf_counter() - start
        record = write_reports(report, folder.staging, spec, data.inputs)
        if junit is not None and junit.is_relative_to(folder.final):  # part of the report folder's transaction
            fileio.write_text(folder.staging / junit.relative_to(folder.final), junit_xml.to_junit(record))
        folder.commit()
    if junit is not None and not junit.is_relative_to(out_dir):
        fileio.write_text(junit, junit_xml.to_junit(record))
    return report


def _validate(artifact_dir: Path, baseline: Path | None, config: Path | None, strict: bool,
              accept_model_change: bool = False
              ) -> tuple[dict[str, Any], BuildSpec, ValidationSet, TaskResults | None]:
    """The report of one re-run, with the spec it ran under, the set it ran on and its task results."""
    manifest, spec = read_manifest(artifact_dir)
    if config is not None:
        spec = apply_config(spec, config)
    if strict:
        spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"strict": True})})
    base_report = load_baseline(baseline) if baseline is not None else None
    artifact = artifact_record(artifact_dir, manifest)
    backend = get_backend(spec.target)  # a missing SDK is its one-line error
    info = {k: v for k, v in artifact.items() if k != "path"}
    built = BuildResult(artifact=artifact_dir / artifact["path"], files=[], info=info)
    if not built.artifact.is_file():
        raise UsageError("the artifact file is missing", where=str(built.artifact), fix="rebuild the artifact")

    checks = integrity_checks(artifact_dir, manifest)
    changed = "reference.npz" in checks[0]["changed"]
    stored = load_stored(
        artifact_dir / "reference.npz", spec,
        fix="it changed since the build (manifest.json records another hash): rebuild the artifact" if changed
        else "rebuild the artifact")
    data = stored_set(spec, stored.inputs, stored.targets, stored.labels, stored.dataset,
                      str(artifact_dir / "reference.npz"), stored.placement)
    if data.stream is not None:  # the set is read from the dataset: of the stored inputs only a latency batch is used
        data.inputs = stored.inputs = {k: v[:max(evaluate.batch_sizes(spec))].copy() for k, v in data.inputs.items()}
    try:
        runner = backend.load(built, backend_settings(spec), spec.validation.latency.threads)
        result = evaluate.evaluate(spec, runner, data, evaluate.Reference(stored.outputs, stored.results))
    except EdgeDeployError as e:
        if checks[0]["changed"]:  # the likelier cause
            e.fix = (f"{', '.join(checks[0]['changed'])} changed since the build (manifest.json records other "
                     "hashes): rebuild the artifact")
        raise
    report: dict[str, Any] = {
        **start_report("validate", spec, artifact, runner.conditions),
        "source": manifest.get("source", {}),
        "validation_data": data.source,
        "artifact_dir": str(artifact_dir),
        "identity": model_identity(spec, artifact_dir / "deploy.onnx", artifact_dir / "reference.npz"),
        "libraries": library_versions(),
        **({"precision_stage": manifest["precision"]} if manifest.get("precision") else {}),
        **{k: result[k] for k in ("tensors", "task", "latency")},
        "checks": checks + result["checks"],
        "warnings": result["warnings"],
    }
    if base_report is not None:
        report["baseline"] = bind_baseline(report, base_report, baseline, accept_model_change)
        report["checks"] += baseline_checks(report, base_report, spec.regression, effective_thresholds(spec)[0])
        report["warnings"] += baseline_warnings(report)
    finish_report(report, spec)
    return report, spec, data, result["results"]


__all__ = ["validate_artifact"]
