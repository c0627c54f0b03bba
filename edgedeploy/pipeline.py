"""The build pipeline: export → optimize → precision → build → validate → report, each stage timed, every artifact
atomic.

Output folder:
    raw.onnx            the exported graph (or a copy of the given .onnx)
    reference.npz       validation inputs and the reference outputs (PyTorch, or the given ONNX run in ONNX Runtime)
    deploy.onnx         the optimized graph every backend builds from
    optimize.json       the verification report of every graph pass
    deploy.fp16.onnx    fp16-cast graph (fp16 for onnxruntime / trt)
    deploy.int8.qdq.onnx  Q/DQ int8 graph (int8 for onnxruntime / trt)
    cache/<kind>/<key>/ calibration results keyed by model + data + settings + versions (NNCF IR, Q/DQ ONNX)
    <target>/           the backend artifact (openvino/model.xml+bin, onnxruntime/model.onnx)
    manifest.json       hashes, settings and library versions
    report.json         every measured figure; report.md the same for people

A build is one transaction (edgedeploy.outfolder): the stages write into a staging folder next to the output folder,
which replaces it only once every file is written, under a lock, so a build that stops (an error, a full disk,
SIGKILL) or runs beside another leaves the previous folder whole. A build that completes replaces it even when a
check fails: its report says why, and the command exits 1.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy import __version__, device, fileio
from edgedeploy.backends import Backend, get_backend
from edgedeploy.config import BuildSpec
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.optimize import OptimizeSettings, load_model, optimize_file
from edgedeploy.onnx_checks import check_io, check_operators
from edgedeploy.outfolder import OutputFolder
from edgedeploy.precision.stage import check_precision_request, run_precision
from edgedeploy.preprocess import ValidationSet, load_validation_set
from edgedeploy.validate import evaluate as evaluation
from edgedeploy.validate.gate import REPORT_SCHEMA, finish_report, write_reports
_LIBRARIES = ("torch", "onnx", "onnxsim", "onnxslim", "onnxruntime", "openvino", "nncf", "numpy", "tensorrt")


class StageListener:
    """Receives stage progress; the CLI shows it with rich, tests and the Python API may ignore it."""

    def start(self, stage: str) -> None: ...

    def done(self, stage: str, seconds: float, summary: str) -> None: ...


@dataclass
class _Timer:
    listener: StageListener
    seconds: dict[str, float] = field(default_factory=dict)
    summary: str = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[_Timer]:
        self.listener.start(name)
        self.summary = ""
        start = time.perf_counter()
        yield self
        self.seconds[name] = time.perf_counter() - start
        self.listener.done(name, self.seconds[name], self.summary)


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_request(spec: BuildSpec) -> Backend:
    """Refuse what cannot be built (missing SDK, unsupported precision, INT8 without calibration data) before any
    minutes are spent on export."""
    backend = get_backend(spec.target)
    if spec.precision not in backend.precisions:
        raise UsageError(f"target {spec.target} builds {', '.join(backend.precisions)}, not {spec.precision}")
    for path, key in ((spec.model.onnx, "model.onnx"), (spec.model.checkpoint, "model.checkpoint"),
                      (spec.validation.data, "validation.data")):
        if path is not None and not Path(path).is_file():
            kind = fileio.file_kind(Path(path).stat().st_mode) if Path(path).exists() else None
            raise UsageError(f"{key} is {kind}, not a file" if kind else f"{key} not found", where=str(path),
                             fix=f"check {key} in the config")
    check_precision_request(spec)
    return backend


def build(spec: BuildSpec, out_dir: Path, *, trust_code: bool = False,
          listener: StageListener | None = None) -> dict[str, Any]:
    """Run every stage for `spec.target` at `spec.precision`; returns the report (also written to out_dir, which
    the finished build replaces as a whole)."""
    backend = check_request(spec)
    folder = OutputFolder(out_dir)
    spec, folder.keep = _reused_results(spec, folder)
    with folder:
        report = _stages(spec, backend, folder, trust_code, listener or StageListener())
        folder.commit()
    return report


def _reused_results(spec: BuildSpec, folder: OutputFolder) -> tuple[BuildSpec, list[str]]:
    """The spec with every cache path inside the output folder moved into the staging folder, and those paths
    (relative) for the staging folder to take over from the previous build: the calibration cache (default
    <out>/cache) and TensorRT's calibrator cache (default next to the plan) with its key file `<cache>.json`."""
    final = Path(os.path.abspath(folder.final))
    kept: list[str] = []

    def into_staging(path: Path | None, default: str | None, key_file: bool = False) -> Path | None:
        if path is None:
            rel = default
        elif Path(os.path.abspath(path)).is_relative_to(final):
            rel = str(Path(os.path.abspath(path)).relative_to(final))
        else:
            return path  # outside the output folder: shared between builds as it is
        if rel is not None:
            kept.extend([rel, f"{rel}.json"] if key_file else [rel])
        return None if path is None else folder.staging / rel

    trt = spec.tensorrt
    calibration = spec.calibration.model_copy(update={"cache_dir": into_staging(spec.calibration.cache_dir, "cache")})
    tensorrt = trt.model_copy(update={
        "calibration_cache": into_staging(trt.calibration_cache, f"trt/int8-{trt.calibrator}.cache", key_file=True),
        "timing_cache": into_staging(trt.timing_cache, None)})
    return spec.model_copy(update={"calibration": calibration, "tensorrt": tensorrt}), kept


def _stages(spec: BuildSpec, backend: Backend, folder: OutputFolder, trust_code: bool,
            listener: StageListener) -> dict[str, Any]:
    """Every stage, writing into the staging folder; paths in what is recorded name the final folder."""
    out_dir = folder.staging
    timer = _Timer(listener)
    wall_start = time.perf_counter()

    with timer.stage("export") as t:
        given = _onnx_source(spec) if spec.model.onnx is not None else None  # the model's word before the data's
        data = load_validation_set(spec)
        labels = evaluation.load_labels(spec.validation, len(next(iter(data.inputs.values()))))
        raw_path, reference, source = _export(spec, out_dir, data, trust_code, labels, given)
        t.summary = f"{raw_path.name}, reference from {source['reference']} on {data.source}"

    with timer.stage("optimize") as t:
        deploy_path = out_dir / "deploy.onnx"
        settings = OptimizeSettings(keep_outputs=list(spec.optimize.keep_outputs) or None,
                                    drop_outputs=list(spec.optimize.drop_outputs),
                                    simplifier=spec.optimize.simplifier)
        opt_report = optimize_file(raw_path, deploy_path, settings, real_inputs=evaluation.first(data.inputs, evaluation.RUN_BATCH))
        fileio.write_json(out_dir / "optimize.json", folder.relocate(opt_report.to_dict()))
        require_asked_passes(spec, opt_report)
        evaluation.check_threshold_outputs(spec, opt_report.outputs)
        deploy_ops = _op_counts(onnx.load(str(deploy_path)))
        t.summary = f"{sum(deploy_ops.values())} nodes, outputs {', '.join(opt_report.outputs)}"

    with timer.stage("precision") as t:
        prec = run_precision(spec, deploy_path, out_dir, data, library_versions(),
                             check_inputs=evaluation.first(data.inputs, evaluation.RUN_BATCH))
        t.summary = prec.summary

    with timer.stage("build") as t:
        # TensorRT picks deploy.onnx / deploy.fp16.onnx / deploy.int8.qdq.onnx itself (its route depends on its version)
        model_path = deploy_path if spec.target == "trt" else prec.model_path
        built = backend.build(model_path, out_dir / spec.target, spec.precision, _backend_settings(spec))
        t.summary = f"{built.artifact.relative_to(out_dir)}"

    with timer.stage("validate") as t:
        runner = backend.load(built, _backend_settings(spec), spec.validation.latency.threads)
        evaluated = evaluation.evaluate(spec, runner, data.inputs, reference, data.targets, labels)
        checks = evaluated["checks"]
        t.summary = f"{sum(c['passed'] for c in checks)}/{len(checks)} checks passed"
        per_layer = _layer_errors(spec, deploy_path, prec.model_path, data.inputs)

    report = {
        "schema": REPORT_SCHEMA,
        "kind": "build",
        "edgedeploy": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "name": spec.name,
        "target": spec.target,
        "precision": spec.precision,
        "source": source,
        "validation_data": data.source,
        "artifact": {"path": str(built.artifact.relative_to(out_dir)), **built.info},
        "conditions": {**runner.conditions, "machine": platform.machine(), "processor": _cpu_name()},
        "device": device.read_conditions(),
        "optimize": {"outputs": opt_report.outputs, "deploy_ops": deploy_ops,
                     "passes": [{"name": p.name, "status": p.status, "reason": p.reason,
                                 "nodes_before": p.node_count_before, "nodes_after": p.node_count_after,
                                 "max_rel_l2": max((e["rel_l2"] for e in p.errors.values()), default=None)}
                                for p in opt_report.passes]},
        "precision_stage": prec.info,
        "tensors": evaluated["tensors"],
        "task": evaluated["task"],
        "latency": evaluated["latency"],
        "checks": checks,
        "warnings": evaluated["warnings"],
        **({"layer_errors": per_layer} if per_layer else {}),
        "passed": all(c["passed"] for c in checks),
        "stage_seconds": timer.seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "peak_rss_mb": _peak_rss_mb(),
    }
    manifest = {
        "schema": "edgedeploy.manifest/1",
        "edgedeploy": __version__,
        "source": source,
        "spec": spec.model_dump(mode="json"),
        "artifact": {"path": str(built.artifact.relative_to(out_dir)), **built.info},
        "files": {_rel(p, out_dir): fileio.sha256_file(p)
                  for p in [raw_path, out_dir / "reference.npz", deploy_path, *prec.files, *built.files]},
        "precision": prec.info,
        "libraries": library_versions(),
        "python": platform.python_version(),
    }
    report = folder.relocate(finish_report(report, spec))
    fileio.write_json(out_dir / "manifest.json", folder.relocate(manifest))
    write_reports(report, out_dir)  # report.json, report.md, report.html
    return report


def require_asked_passes(spec: BuildSpec, report: Any) -> None:
    """Strict for what the config asks for explicitly (outputs to keep/drop, a simplifier): such a pass that was not
    applied fails the build; the default passes only warn, in optimize.json and the report."""
    asked = spec.optimize.model_fields_set
    wanted = {"prune"} if {"keep_outputs", "drop_outputs"} & asked else set()
    if "simplifier" in asked and spec.optimize.simplifier != "none":
        wanted.add("simplify")
    missed = [p for p in report.not_applied() if p.name in wanted]
    if missed:
        p = missed[0]
        raise EdgeDeployError(f"the optimize pass {p.name}, which the config asks for, was {p.status.replace('_', ' ')}: "
                              f"{p.reason}", where="optimize", fix="fix the model or inputs the reason names, or "
                                                                   "remove the request from the config's optimize:")


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:  # a shared calibration cache outside the output folder
        return str(path)


def _export(spec: BuildSpec, out_dir: Path, data: ValidationSet, trust_code: bool,
            labels: np.ndarray | None = None, given: onnx.ModelProto | None = None,
            ) -> tuple[Path, dict[str, np.ndarray], dict[str, Any]]:
    """raw.onnx (a copy of `given`, the checked ONNX source, or the PyTorch export) and the reference outputs."""
    from edgedeploy.backends.onnxruntime import kernel_ops

    raw_path = out_dir / "raw.onnx"
    if given is not None:
        source_file = Path(spec.model.onnx)
        fileio.write_bytes(raw_path, given.SerializeToString())
        reference = _run_onnx_reference(raw_path, data.inputs, where=source_file)
        source = {"kind": "onnx", "file": str(source_file), "sha256": fileio.sha256_file(source_file),
                  "reference": "ONNX Runtime on the given ONNX"}
    else:
        from edgedeploy import export  # torch is imported only here

        module = export.build_module(spec, trust_code)
        export.export_onnx(spec, module, raw_path, data.inputs)
        exported = onnx.load(str(raw_path), load_external_data=False)
        check_io(exported, spec, raw_path)
        check_operators(exported, raw_path, kernel_ops())
        names = spec.outputs or [o.name for o in exported.graph.output]
        reference = export.reference_outputs(module, data.inputs, names)
        checkpoint = spec.model.checkpoint
        source = {"kind": "pytorch", "factory": spec.model.factory, "kwargs": spec.model.kwargs,
                  "checkpoint": str(checkpoint) if checkpoint else None,
                  "sha256": fileio.sha256_file(checkpoint) if checkpoint else None,
                  "reference": "PyTorch eager (fp32)"}
    _check_finite(reference, source.get("file") or source["factory"])
    with fileio.atomic_open(out_dir / "reference.npz") as f:
        np.savez_compressed(f, **{f"input.{k}": v for k, v in data.inputs.items()},
                            **{f"output.{k}": v for k, v in reference.items()},
                            **({"label.targets": data.targets} if data.targets is not None else {}),
                            **({"label.labels": labels} if labels is not None else {}))
    return raw_path, reference, source


def _onnx_source(spec: BuildSpec) -> onnx.ModelProto:
    """The user's ONNX file, read without trusting it (external data confined to its folder, the ONNX checker) and
    checked against the config and ONNX Runtime's operators before anything runs it."""
    from edgedeploy.backends.onnxruntime import kernel_ops

    path = Path(spec.model.onnx)
    model = load_model(path)
    check_io(model, spec, path)
    check_operators(model, path, kernel_ops())
    return model


def _run_onnx_reference(path: Path, inputs: dict[str, np.ndarray], where: Path) -> dict[str, np.ndarray]:
    from edgedeploy.backends.onnxruntime import OnnxRuntimeRunner

    return evaluation.run_all(OnnxRuntimeRunner(path, where=where), inputs)


def _check_finite(reference: dict[str, np.ndarray], where: str) -> None:
    """NaN/Inf in the reference itself makes every comparison meaningless, so the build stops here."""
    for name, value in reference.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
            raise EdgeDeployError(f"check {name}.finite failed on the reference: output {name!r} has {nan} NaN and "
                                  f"{inf} Inf of {value.size} values on the validation data", where=where,
                                  fix="the model itself produces them: check its weights, the inputs of its "
                                      "Log/Sqrt/Div/Pow nodes, and the preprocessing")


def _layer_errors(spec: BuildSpec, float_onnx: Path, quantized: Path,
                  inputs: dict[str, np.ndarray]) -> list[dict[str, Any]] | None:
    """Per-layer INT8 error for report.html: the NNCF IR on OpenVINO, the Q/DQ graph (onnxruntime, trt) on ONNX
    Runtime; None for other precisions, TensorRT's calibrator route, or `validation.layer_error_samples: 0`."""
    from edgedeploy.precision.localize import layer_errors, localize_model

    samples = spec.validation.layer_error_samples
    if spec.precision != "int8" or not samples or Path(quantized) == Path(float_onnx):
        return None
    backend = "openvino" if spec.target == "openvino" else "onnxruntime"
    return layer_errors(localize_model(backend, float_onnx, quantized, evaluation.first(inputs, samples),
                                       spec.validation.latency.threads))


def _backend_settings(spec: BuildSpec) -> Any:
    return {"openvino": spec.openvino, "trt": spec.tensorrt}.get(spec.target)


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


__all__ = ["build", "StageListener", "library_versions", "REPORT_SCHEMA"]
