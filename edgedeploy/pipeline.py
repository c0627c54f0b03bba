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

import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy import __version__, export, fileio
from edgedeploy.backends import (Backend, BuildResult, backend_settings, get_backend, precision_route,
                                 target_kind)
from edgedeploy.config import BuildSpec
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.optimize import NOT_APPLIED, OptimizeSettings, lowest_ir_version, optimize_file
from edgedeploy.onnx_checks import check_io, check_operators
from edgedeploy.ort_runner import OnnxRuntimeRunner, kernel_ops
from edgedeploy.outfolder import OutputFolder
from edgedeploy.precision.stage import PrecisionResult, arrays_sha256, check_precision_request, run_precision
from edgedeploy.preprocess import ValidationSet, load_validation_set
from edgedeploy.sources import families, source_of
from edgedeploy.stagecache import StageCache, export_material, optimize_material
from edgedeploy.static_batch import batch1_copy, make_static, static_onnx
from edgedeploy.validate import evaluate as evaluation
from edgedeploy.validate import metrics
from edgedeploy.validate import latency, notices
from edgedeploy.validate.gate import check, load_stored, model_identity, reference_arrays
from edgedeploy.validate.localize import layer_errors, localize_model
from edgedeploy.validate.predictions import write_predictions
from edgedeploy.validate.record import REPORT_SCHEMA, start_report
from edgedeploy.validate.write import finish_report, write_reports
from edgedeploy.versions import library_versions


class StageListener:
    """Receives stage progress; the CLI shows it with rich, tests and the Python API may ignore it."""

    def start(self, stage: str) -> None: ...

    def done(self, stage: str, seconds: float, summary: str) -> None: ...


@dataclass
class StageTimer:
    """Runs stages under a listener: wall time and peak RSS per stage, and each stage's one-line summary."""

    listener: StageListener
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    summary: str = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[StageTimer]:
        self.listener.start(name)
        self.summary = ""
        _reset_peak_rss()
        start = time.perf_counter()
        yield self
        self.seconds[name] = time.perf_counter() - start
        self.peak_rss_mb[name] = latency.peak_rss_mb()
        self.listener.done(name, self.seconds[name], self.summary)


def _reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: clear_refs 5 resets VmHWM); elsewhere a no-op, and the
    per-stage peaks become the running peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def check_request(spec: BuildSpec) -> Backend:
    """Refuse what cannot be built (missing SDK, unsupported precision, INT8 without calibration data) before any
    minutes are spent on export."""
    kind = target_kind(spec.target)
    if spec.static_batch is not None and (refusal := kind.static_batch_refusal(spec)) is not None:
        raise refusal
    backend = get_backend(spec.target)
    if spec.precision not in backend.precisions:
        raise UsageError(f"target {spec.target} builds {', '.join(backend.precisions)}, not {spec.precision}")
    for path, key in ((spec.model.onnx, "model.onnx"), (spec.model.checkpoint, "model.checkpoint"),
                      (spec.validation.data, "validation.data")):
        if path is not None and not Path(path).is_file():
            kind = fileio.file_kind(Path(path).stat().st_mode) if Path(path).exists() else None
            raise UsageError(f"{key} is {kind}, not a file" if kind else f"{key} not found", where=str(path),
                             fix=f"check {key} in the config")
    check_precision_request(spec, kind.precision_route(spec))
    return backend


def build(spec: BuildSpec, out_dir: Path, *, trust_code: bool = False,
          listener: StageListener | None = None, cache: StageCache | None = None) -> dict[str, Any]:
    """Run every stage for `spec.target` at `spec.precision`; returns the report (also written to out_dir, which
    the finished build replaces as a whole). With a `cache` (the CLI's default, `--no-cache` turns it off), export
    and optimize results are reused by content (edgedeploy.stagecache)."""
    spec = resolve_source(spec, trust_code)
    backend = check_request(spec)
    folder = OutputFolder(out_dir)
    spec, folder.keep = reused_results(spec, folder)
    with folder:
        report = _stages(spec, backend, folder, trust_code, listener or StageListener(), cache)
        folder.commit()
    return report


def resolve_source(spec: BuildSpec, trust_code: bool = False) -> BuildSpec:
    """A package source's inputs and preprocessing filled in (edgedeploy.sources.families); others unchanged."""
    return families.resolve(spec, trust_code)  # a package model is built here: torch and the package imported


def reused_results(spec: BuildSpec, folder: OutputFolder) -> tuple[BuildSpec, list[str]]:
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
            listener: StageListener, cache: StageCache | None) -> dict[str, Any]:
    """Every stage, writing into the staging folder; paths in what is recorded name the final folder."""
    timer = StageTimer(listener)
    wall_start = time.perf_counter()
    made = export_and_optimize(spec, folder, timer, trust_code, cache)
    with timer.stage("precision") as t:
        prec = run_precision(spec, precision_route(spec), made.deploy_path, folder.staging, made.data,
                             library_versions(), check_inputs=evaluation.first(made.data.inputs, evaluation.RUN_BATCH))
        t.summary = prec.summary
    record = {"source": made.source, "validation_data": made.data.source, "optimize": made.optimize_record(),
              "stage_cache": made.reuse}
    return build_and_record(spec, backend, folder, timer, made.deploy_path, prec, made.data, made.reference,
                            made.labels, record, inputs=[made.raw_path, folder.staging / "reference.npz"],
                            wall_start=wall_start)


@dataclass
class Prepared:
    """What the export and optimize stages made in the staging folder, and what every later stage reads."""

    data: ValidationSet
    labels: np.ndarray | None
    raw_path: Path
    reference: evaluation.Reference
    source: dict[str, Any]
    deploy_path: Path
    optimize: dict[str, Any]  # optimize.json's content
    deploy_ops: dict[str, int]
    reuse: dict[str, dict[str, Any]]  # the stage cache's word per stage

    def optimize_record(self) -> dict[str, Any]:
        """The graph passes as report.json (and a bundle's manifest) records them."""
        return {"outputs": self.optimize["outputs"], "deploy_ops": self.deploy_ops,
                "passes": [{"name": p["name"], "status": p["status"], "reason": p["reason"],
                            "nodes_before": p["node_count_before"], "nodes_after": p["node_count_after"],
                            "max_rel_l2": max((e["rel_l2"] for e in p["errors"].values()), default=None)}
                           for p in self.optimize["passes"]]}


def export_and_optimize(spec: BuildSpec, folder: OutputFolder, timer: StageTimer, trust_code: bool,
                        cache: StageCache | None) -> Prepared:
    """The export stage (raw.onnx, reference.npz) and the optimize stage (deploy.onnx, optimize.json) into the
    staging folder, each from the stage cache when it holds them: what a build and a bundle (edgedeploy.bundle.make)
    both start with."""
    out_dir = folder.staging
    reuse: dict[str, dict[str, Any]] = {}
    with timer.stage("export") as t:
        kind = source_of(spec)
        given = kind.read_onnx(spec) if kind.read_onnx is not None else None  # the model's word before the data's
        data = load_validation_set(spec)
        labels = data.labels if data.labels is not None else evaluation.load_labels(spec.validation, data.size)
        raw_path, reference, source, reuse["export"] = _export_stage(spec, out_dir, data, trust_code, labels, given,
                                                                     cache)
        t.summary = f"{raw_path.name}, reference from {source['reference']} on {data.source}" + _reused(reuse["export"])

    with timer.stage("optimize") as t:
        deploy_path = out_dir / "deploy.onnx"
        opt, reuse["optimize"] = _optimize_stage(spec, raw_path, deploy_path, data, cache)
        fileio.write_json(out_dir / "optimize.json", folder.relocate(opt))
        require_asked_passes(spec, opt)
        evaluation.check_threshold_outputs(spec, opt["outputs"])
        deploy_ops = _op_counts(onnx.load(str(deploy_path), load_external_data=False))
        t.summary = f"{sum(deploy_ops.values())} nodes, outputs {', '.join(opt['outputs'])}" + _reused(reuse["optimize"])
    return Prepared(data, labels, raw_path, reference, source, deploy_path, opt, deploy_ops, reuse)


def build_and_record(spec: BuildSpec, backend: Backend, folder: OutputFolder, timer: StageTimer, deploy_path: Path,
                     prec: PrecisionResult, data: ValidationSet, reference: evaluation.Reference,
                     labels: np.ndarray | None, made: dict[str, Any], *, inputs: list[Path],
                     wall_start: float) -> dict[str, Any]:
    """The build and validate stages and the records, the same for a build from the model and one from a bundle
    (edgedeploy.bundle.build): the artifact, its checks against the reference, latency in a fresh process, the
    per-layer INT8 error, then report.json/.md/.html and manifest.json in the staging folder. `made` holds what the
    earlier stages record (source, validation_data, optimize, stage_cache or bundle), `inputs` the files they wrote
    that the manifest hashes besides deploy.onnx, the precision stage's and the artifact's."""
    out_dir = folder.staging
    with timer.stage("build") as t:
        model_path = deploy_path if target_kind(spec.target).builds_from_deploy_graph else prec.model_path
        if spec.static_batch is not None:
            model_path = make_static(model_path, out_dir, spec.static_batch)
        built = backend.build(model_path, out_dir / spec.target, spec.precision, backend_settings(spec))
        batch1 = _batch1_copy(spec, built, out_dir)
        t.summary = f"{built.artifact.relative_to(out_dir)}" + (
            f", static batch {spec.static_batch}" if spec.static_batch is not None else "") + (
            f", batch-1 copy {batch1.artifact.relative_to(out_dir)}" if batch1 is not None else "")

    with timer.stage("validate") as t:
        runner = backend.load(built, backend_settings(spec), spec.validation.latency.threads)
        evaluated = evaluation.evaluate(spec, runner, data, reference, labels, timings=[])
        conditions = runner.conditions
        write_predictions(out_dir, data, evaluated.pop("results"))
        batch1_info = _check_batch1(spec, backend, runner, batch1, data.inputs, out_dir) if batch1 else None
        del runner  # a fresh process times the artifact, with this one's memory and threads released
        timed = _latency_stage(spec, built, deploy_path, data.inputs)
        if batch1_info is not None:
            _time_batch1(spec, built, batch1, data.inputs, batch1_info, evaluated)
        checks = evaluated["checks"]
        t.summary = f"{sum(c['passed'] for c in checks)}/{len(checks)} checks passed"
        per_layer, skipped = _optional_layer_errors(spec, deploy_path, prec.model_path, data.inputs)
        if skipped is not None:
            evaluated["warnings"].append(skipped)

    artifact = {"path": str(built.artifact.relative_to(out_dir)), **built.info,
                **({"batch1": batch1_info} if batch1_info is not None else {})}
    report = {
        **start_report("build", spec, artifact, conditions),
        "identity": model_identity(spec, deploy_path, out_dir / "reference.npz"),
        **made,
        "precision_stage": prec.info,
        "tensors": evaluated["tensors"],
        "task": evaluated["task"],
        "latency": timed["timings"],
        "latency_measurement": {k: v for k, v in timed.items() if k not in ("timings", "layer_profile")},
        **({"layer_profile": timed["layer_profile"]} if "layer_profile" in timed else {}),
        "checks": checks,
        "warnings": evaluated["warnings"],
        **({"layer_errors": per_layer} if per_layer else {}),
        "stage_seconds": timer.seconds,
        "stage_peak_rss_mb": timer.peak_rss_mb,
        "wall_seconds": time.perf_counter() - wall_start,
        "peak_rss_mb": max([*timer.peak_rss_mb.values(), timed["peak_rss_mb"]]),  # this process or its timer
    }
    manifest = {
        "schema": "edgedeploy.manifest/1",
        "edgedeploy": __version__,
        "source": made["source"],
        **({"bundle": made["bundle"]} if "bundle" in made else {}),
        "spec": spec.model_dump(mode="json"),
        "artifact": artifact,
        "files": {_rel(p, out_dir): fileio.sha256_file(p) for p in [*inputs, deploy_path, *prec.files, *built.files,
                                                                     *(batch1.files if batch1 else [])]},
        "precision": prec.info,
        "libraries": library_versions(),
        "python": platform.python_version(),
    }
    report = folder.relocate(finish_report(report, spec))
    fileio.write_json(out_dir / "manifest.json", folder.relocate(manifest))
    write_reports(report, out_dir, spec, data.inputs)  # report.json, report.md, report.html
    return report


BATCH1_MAX_REL_L2 = 1e-5  # the copy runs the same weights: only kernel choice may differ


def _batch1_copy(spec: BuildSpec, built, out_dir: Path):
    """The static batch-1 copy of a dynamic-batch artifact (spec.batch1_artifact; auto: where the target writes one
    by default), as a BuildResult, or None."""
    kind = target_kind(spec.target)
    wanted = spec.batch1_artifact if spec.batch1_artifact != "auto" else kind.batch1_copy_by_default
    if not wanted or spec.static_batch is not None or kind.static_batch_refusal(spec) is not None:
        return None
    path = batch1_copy(built.artifact, built.artifact.parent / "batch1")
    if path is None:
        return None
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return BuildResult(path, files, built.info)


def _check_batch1(spec: BuildSpec, backend, runner, batch1, inputs: dict[str, np.ndarray],
                  out_dir: Path) -> dict[str, Any]:
    """The batch-1 copy against the dynamic artifact on up to 8 validation samples, one at a time: the worst rel-L2
    over the outputs (a failed check above BATCH1_MAX_REL_L2)."""
    copy = backend.load(batch1, backend_settings(spec), spec.validation.latency.threads)
    count = min(8, len(next(iter(inputs.values()))))
    worst = 0.0
    for i in range(count):
        feeds = {k: v[i:i + 1] for k, v in inputs.items()}
        a, b = runner.run(feeds), copy.run(feeds)
        worst = max([worst, *(metrics.compare(a[k], b[k])["rel_l2"] for k in a)])
    return {"path": str(batch1.artifact.relative_to(out_dir)), "deploy_for": "batch 1 (static shape)",
            "dynamic_deploy_for": "any batch", "samples_compared": count, "max_rel_l2_vs_dynamic": worst}


def _time_batch1(spec: BuildSpec, built, batch1, inputs: dict[str, np.ndarray], info: dict[str, Any],
                 evaluated: dict[str, Any]) -> None:
    """Time the batch-1 copy and the dynamic artifact at batch 1 in alternating windows of one fresh process (so that
    outside load cannot decide which is faster); its check against the dynamic artifact joins the checks."""
    measured = latency.measure_fresh(spec.model_copy(update={"static_batch": 1}),
                                     {"artifact": batch1, "dynamic": built}, inputs, [1])
    info["latency"] = measured["timings"]["artifact"]
    info["dynamic_latency"] = measured["timings"]["dynamic"]
    info["speedup_vs_dynamic_b1"] = info["dynamic_latency"][0]["median_ms"] / info["latency"][0]["median_ms"]
    worst = info["max_rel_l2_vs_dynamic"]
    evaluated["checks"].append(check("batch1.rel_l2_vs_dynamic", "artifact", worst, BATCH1_MAX_REL_L2, "<="))


def require_asked_passes(spec: BuildSpec, report: dict[str, Any]) -> None:
    """Strict for what the config asks for explicitly (outputs to keep/drop, a simplifier): such a pass that was not
    applied fails the build; the default passes only warn, in optimize.json and the report. `report`: optimize.json's
    content (fresh or from the stage cache)."""
    asked = spec.optimize.model_fields_set
    wanted = {"prune"} if {"keep_outputs", "drop_outputs"} & asked else set()
    if "simplifier" in asked and spec.optimize.simplifier != "none":
        wanted.add("simplify")
    missed = [p for p in report["passes"] if p["name"] in wanted and p["status"] in NOT_APPLIED]
    if missed:
        p = missed[0]
        raise EdgeDeployError(f"the optimize pass {p['name']}, which the config asks for, was "
                              f"{p['status'].replace('_', ' ')}: {p['reason']}", where="optimize",
                              fix="fix the model or inputs the reason names, or remove the request from the config's "
                                  "optimize:")


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:  # a shared calibration cache outside the output folder
        return str(path)


def _reused(entry: dict[str, Any]) -> str:
    return " (cached)" if entry.get("status") == "reused" else ""


def _export_stage(spec: BuildSpec, out_dir: Path, data: ValidationSet, trust_code: bool,
                  labels: np.ndarray | None, given: onnx.ModelProto | None, cache: StageCache | None,
                  ) -> tuple[Path, evaluation.Reference, dict[str, Any], dict[str, Any]]:
    """raw.onnx and reference.npz from the stage cache when an entry has this key, else made (and stored); returns
    them with the source record and the cache's word for the report."""
    kind = source_of(spec)
    source = {**kind.record(spec), "reference": kind.reference}
    material, note = None, "--no-cache"
    if cache is not None:
        material, note = export_material(spec, _data_sha256(spec, data, labels), trust_code)
    if material is None:
        raw_path, reference = _export(spec, out_dir, data, trust_code, labels, given)
        return raw_path, reference, source, {"status": "off", "note": note}
    entry = cache.lookup("export", material)
    raw_path = out_dir / "raw.onnx"
    if entry.reused:
        cache.restore(entry, out_dir, ["raw.onnx", "raw.onnx.data", "reference.npz"])
        stored = load_stored(out_dir / "reference.npz")
        reference = evaluation.Reference(stored.outputs, stored.results)
    else:
        raw_path, reference = _export(spec, out_dir, data, trust_code, labels, given)
        cache.store(entry, [p for p in (raw_path, out_dir / "raw.onnx.data", out_dir / "reference.npz") if p.is_file()])
    return raw_path, reference, source, entry.report()


def _data_sha256(spec: BuildSpec, data: ValidationSet, labels: np.ndarray | None) -> str:
    """What the reference is made from: the tensor sample and labels (and a dataset's image ids and transforms);
    for a larger set also the dataset, the records used and the settings its stored task results depend on."""
    placed = data.placement
    digest = arrays_sha256({**data.inputs, **_labels(data, labels), **({} if placed is None else {
        "placement.image_ids": placed.image_ids, "placement.transforms": placed.transforms,
        **({} if placed.category_ids is None else {"placement.category_ids": placed.category_ids})})})
    if data.dataset is None:
        return digest
    settings = spec.validation.model_dump(mode="json", include={"task", "output", "decoder", "num_classes",
                                                               "kpt_shape", "detection", "tensor_samples"})
    return fileio.sha256_bytes(json.dumps({"sample": digest, "dataset": data.dataset.sha256,
                                           "indices": list(data.dataset.indices), "settings": settings,
                                           "preprocess": spec.preprocess.model_dump(mode="json")},
                                          sort_keys=True).encode())


def _labels(data: ValidationSet, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    return {**({"label.targets": data.targets} if data.targets is not None else {}),
            **({"label.labels": labels} if labels is not None else {})}


def _optimize_stage(spec: BuildSpec, raw_path: Path, deploy_path: Path, data: ValidationSet,
                    cache: StageCache | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """deploy.onnx and the optimize report (a dict) from the stage cache or made; returns the report and the
    cache's word."""
    settings = OptimizeSettings(keep_outputs=list(spec.optimize.keep_outputs) or None,
                                drop_outputs=list(spec.optimize.drop_outputs), simplifier=spec.optimize.simplifier)
    verify = evaluation.first(data.inputs, evaluation.RUN_BATCH)
    if cache is None:
        opt = optimize_file(raw_path, deploy_path, settings, real_inputs=verify).to_dict()
        opt.update(input_path=raw_path.name, output_path=deploy_path.name)  # beside optimize.json: no machine's path
        return opt, {"status": "off", "note": "--no-cache"}
    material = optimize_material(_sha256_with_data(raw_path), spec.optimize.model_dump(mode="json"),
                                 arrays_sha256(verify))
    entry = cache.lookup("optimize", material)
    if entry.reused:
        cache.restore(entry, deploy_path.parent, ["deploy.onnx"])
        opt = json.loads((entry.dir / "optimize.json").read_text())
    else:
        opt = optimize_file(raw_path, deploy_path, settings, real_inputs=verify).to_dict()
        cache.store(entry, [deploy_path], records={"optimize.json": opt})
    opt.update(input_path=raw_path.name, output_path=deploy_path.name)
    return opt, entry.report()


def _sha256_with_data(path: Path) -> str:
    """sha256 of an ONNX file and its external data file beside it (`<name>.data`, as torch writes it)."""
    digest = fileio.sha256_file(path)
    data = path.with_name(path.name + ".data")
    return digest if not data.is_file() else fileio.sha256_bytes((digest + fileio.sha256_file(data)).encode())


def _latency_stage(spec: BuildSpec, built, deploy_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The artifact timed in a fresh process; an int8 artifact interleaved with the float graph on the same
    backend (static too when the artifact is; TensorRT: not compared, that would take a second engine build), and
    the slower-than-float warning."""
    with tempfile.TemporaryDirectory(prefix="edgedeploy-float-") as tmp:
        artifacts = {"artifact": built}
        if spec.precision == "int8" and target_kind(spec.target).float_latency_reference:
            float_graph = deploy_path
            if spec.static_batch is not None:
                float_graph = static_onnx(deploy_path, Path(tmp) / "float.static.onnx", spec.static_batch)
            artifacts["float"] = BuildResult(float_graph, [], {"precision": "fp32"})
        measured = latency.measure_fresh(spec, artifacts, inputs, evaluation.batch_sizes(spec))
    out: dict[str, Any] = {"timings": measured["timings"]["artifact"], "process": "fresh",
                           "seconds": measured["seconds"], "peak_rss_mb": measured["peak_rss_mb"]}
    if measured.get("layer_profile"):  # backends that time their layers (TensorRT's IProfiler)
        out["layer_profile"] = measured["layer_profile"]
    if "float" in artifacts:
        floats = measured["timings"]["float"]
        out["int8_vs_float"] = latency.int8_vs_float(out["timings"], floats)
    return out


def _export(spec: BuildSpec, out_dir: Path, data: ValidationSet, trust_code: bool,
            labels: np.ndarray | None = None, given: onnx.ModelProto | None = None,
            ) -> tuple[Path, evaluation.Reference]:
    """raw.onnx (a copy of `given`, the checked ONNX source, or the export of the source's torch module) and
    reference.npz: the reference streamed over the whole validation set, its outputs kept for the tensor sample
    and, for a larger set, its task results on every sample."""
    raw_path = out_dir / "raw.onnx"
    if given is not None:
        given.ir_version = lowest_ir_version(given)  # a device's onnxruntime may not read the writer's newest IR
        fileio.write_bytes(raw_path, given.SerializeToString())
        runner = OnnxRuntimeRunner(raw_path, where=Path(spec.model.onnx))
        names, batch = list(runner.output_names), evaluation.RUN_BATCH
        run = evaluation.runner_batches(runner)
    else:
        module = source_of(spec).load(spec, trust_code)
        export.export_onnx(spec, module, raw_path, data.inputs)
        exported = onnx.load(str(raw_path), load_external_data=False)
        check_io(exported, spec, raw_path)
        check_operators(exported, raw_path, kernel_ops())
        names, batch = spec.outputs or [o.name for o in exported.graph.output], export.REFERENCE_BATCH

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return export.reference_outputs(module, feeds, names)

    decode = evaluation.task_decoder(spec, names, data.class_names) if data.sampled else None
    keep = len(next(iter(data.inputs.values())))
    made = evaluation.collect(run, data.batches(batch), keep, decode)
    _check_finite(made.nonfinite, str(spec.model.onnx or spec.model.factory or
                                      getattr(spec.model, spec.model.package())))
    arrays = reference_arrays(data.inputs, made.tensors, _labels(data, labels), spec.validation.task, made.results,
                              data.dataset, data.placement)
    with fileio.atomic_open(out_dir / "reference.npz") as f:
        np.savez_compressed(f, **arrays)
    return raw_path, evaluation.Reference(made.tensors, made.results)


def _check_finite(nonfinite: dict[str, tuple[int, int, int]], where: str) -> None:
    """NaN/Inf in the reference itself makes every comparison meaningless, so the build stops here."""
    for name, (nan, inf, size) in nonfinite.items():
        if nan or inf:
            raise EdgeDeployError(f"check {name}.finite failed on the reference: output {name!r} has {nan} NaN and "
                                  f"{inf} Inf of {size} values on the validation data", where=where,
                                  fix="the model itself produces them: check its weights, the inputs of its "
                                      "Log/Sqrt/Div/Pow nodes, and the preprocessing")


def _optional_layer_errors(spec: BuildSpec, float_onnx: Path, quantized: Path, inputs: dict[str, np.ndarray],
                           ) -> tuple[list[dict[str, Any]] | None, dict[str, str] | None]:
    """The per-layer step is for report.html only: its failure is a warning naming the step and the setting that
    skips it, never the end of a build whose artifact was checked."""
    try:
        return _layer_errors(spec, float_onnx, quantized, inputs), None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a report-only step
        first = (str(e).strip().splitlines() or [""])[0][:300]
        return None, notices.warning(
            "layer_errors_skipped", "per-layer int8 error not measured",
            f"the per-layer error step (report.html's layer plot) failed and was skipped: {type(e).__name__}: "
            f"{first}. The artifact and its checks are unaffected; `validation.layer_error_samples: 0` skips the "
            f"step, `edgedeploy debug precision` measures layers its own way")


def _layer_errors(spec: BuildSpec, float_onnx: Path, quantized: Path,
                  inputs: dict[str, np.ndarray]) -> list[dict[str, Any]] | None:
    """Per-layer INT8 error for report.html: the NNCF IR on OpenVINO, the Q/DQ graph (onnxruntime, trt) on ONNX
    Runtime; None for other precisions, TensorRT's calibrator route, or `validation.layer_error_samples: 0`."""
    samples = spec.validation.layer_error_samples
    if spec.precision != "int8" or not samples or Path(quantized) == Path(float_onnx):
        return None
    backend = "openvino" if precision_route(spec).int8 == "nncf-openvino" else "onnxruntime"
    return layer_errors(localize_model(backend, float_onnx, quantized, evaluation.first(inputs, samples),
                                       spec.validation.latency.threads))


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["build", "StageListener", "library_versions", "REPORT_SCHEMA"]
