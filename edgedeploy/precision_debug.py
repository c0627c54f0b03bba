"""`edgedeploy debug precision`: find the layers that lose INT8 accuracy, and keep the fewest of them in float so
the budget holds.

1. **Localise** (edgedeploy.validate.localize) the artifact's quantized graph on the first `samples` validation
   inputs: per layer, the cumulative error and the error the layer adds alone; rank the quantized layers.
2. **Search** (optional): requantize with the k worst layers kept in float, k = 1, 2, 4, … until the int8 checks
   pass, then bisect down to the smallest k that passes. Each trial is quantized by the precision stage itself
   (keyed and cached exactly like a build, so the rebuild reuses it) and checked with the build's own int8 checks
   (task-metric drop and tensor budgets vs the reference) on the artifact's whole validation set.
3. **Rebuild** (optional): a normal `edgedeploy build` with that ignored scope, validated and reported like any build.

OpenVINO artifacts are analysed on OpenVINO (NNCF ignored scope: `int8.ignored_scope.names`, OpenVINO op names);
Q/DQ artifacts (onnxruntime, and trt, whose int8 route builds the same Q/DQ ONNX) on ONNX Runtime
(`int8.qdq.excluded.names`, ONNX node names).

`--target trt` (on the device, with TensorRT) analyses the engine itself: the Q/DQ graph built with every layer output
marked as a network output, compared with deploy.onnx on ONNX Runtime in fp32 (validate.localize.localize_marked).
Its trials keep layers out of int8 by removing their Q/DQ (`int8.qdq.excluded.names`), and on TensorRT 8/10's
weakly typed int8 builds also hold them to fp32 with per-layer precision constraints (`tensorrt.layer_precisions`),
since the FP16 flag would otherwise let TensorRT run them in fp16; TensorRT 11 is strongly typed, so the graph
without those Q/DQ runs them in fp32.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import fileio, pipeline
from edgedeploy.backends import backend_settings, get_backend, precision_route, trt_plan
from edgedeploy.backends.tensorrt import TensorRTBackend, install_hint, probe_runtime
from edgedeploy.config import BuildSpec, Thresholds, effective_thresholds
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.outfolder import FolderLock, OutputFolder, report_path
from edgedeploy.precision.stage import QDQ_ONNX, run_precision
from edgedeploy.validate import evaluate, metrics
from edgedeploy.validate.gate import check_build_folder, load_reference, read_manifest, threshold_checks
from edgedeploy.validate.html import render_precision_debug
from edgedeploy.validate.localize import LayerError, layer_errors, localize_marked, localize_model, rank
from edgedeploy.validate.report import render_precision_debug_markdown
from edgedeploy.versions import library_versions

SCHEMA = "edgedeploy.precision-debug/1"
REPORT_FILE = "precision-debug.json"


@dataclass
class Trial:
    kept_float: list[str]
    passed: bool
    failed_checks: list[str]
    task: dict[str, Any] | None
    tensors: dict[str, dict[str, float]]
    cache: str  # reused | new | rebuilt | refused
    seconds: float


@dataclass
class Artifact:
    """What the analysis needs from a built int8 folder."""

    dir: Path
    spec: BuildSpec
    inputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    targets: np.ndarray | None
    labels: np.ndarray | None
    trt_major: int | None = None  # set: the analysis runs on this TensorRT (`--target trt`), on the engine itself

    @property
    def backend(self) -> str:
        """The backend the analysis runs on: TensorRT with `--target trt`, else OpenVINO for an NNCF-quantized IR and
        ONNX Runtime for Q/DQ graphs."""
        if self.trt_major is not None:
            return "trt"
        return "openvino" if precision_route(self.spec).int8 == "nncf-openvino" else "onnxruntime"

    @property
    def deploy_onnx(self) -> Path:
        return self.dir / "deploy.onnx"

    def quantized_model(self) -> Path:
        path = self.dir / (f"{self.spec.target}/model.xml" if self.backend == "openvino" else QDQ_ONNX)
        if not path.is_file():
            raise UsageError("the artifact's quantized model is missing", where=str(path),
                             fix="rebuild the artifact with --precision int8")
        return path


def load_artifact(artifact_dir: Path, target: str | None = None) -> Artifact:
    """The int8 artifact to analyse; `target` "trt" analyses its TensorRT engine (TensorRT must be installed)."""
    artifact_dir = Path(os.path.realpath(artifact_dir))
    if target not in (None, "trt"):
        raise UsageError(f"--target {target}: debug precision analyses on the artifact's own CPU backend, or on "
                         f"TensorRT with --target trt", fix="leave --target out, or give --target trt")
    version = probe_runtime()["trt_version"] if target == "trt" else None
    if target == "trt" and version is None:
        raise EdgeDeployError(f"debug precision --target trt runs on the device: {install_hint()}",
                              where=str(artifact_dir),
                              fix="run it on the Jetson or GPU machine the engine is for, or leave --target out to "
                                  "analyse the Q/DQ graph on ONNX Runtime here")
    _, spec = read_manifest(artifact_dir)
    if target is not None and spec.target != target:
        raise UsageError(f"--target {target} analyses a TensorRT build; this artifact was built for {spec.target}",
                         where=str(artifact_dir), fix="build it with --target trt --precision int8 on the device")
    if spec.precision != "int8":
        raise UsageError(f"the artifact is {spec.precision}; debug precision analyses int8 builds",
                         where=str(artifact_dir), fix="build it with --precision int8 first")
    route = precision_route(spec)
    if route.int8 == "backend":
        raise UsageError(f"a build quantized by its backend ({route.int8_method}) has no quantized graph to analyse",
                         where=str(artifact_dir), fix=route.int8_fix)
    inputs, reference, targets, labels = load_reference(artifact_dir / "reference.npz", spec)
    count = len(next(iter(inputs.values())))  # the tensor sample: the labels of those samples only
    if targets is not None:
        targets = targets[targets[:, 0] < count]
    trt_major = trt_plan.resolve_major(spec.tensorrt, version) if version is not None else None
    return Artifact(artifact_dir, spec, inputs, reference, targets, None if labels is None else labels[:count],
                    trt_major)


def localize_artifact(art: Artifact, samples: int, threads: int | None = None) -> list[LayerError]:
    feeds = {k: np.ascontiguousarray(v[:samples]) for k, v in art.inputs.items()}
    if art.trt_major is not None:
        return localize_engine(art, feeds, threads)
    return localize_model(art.backend, art.deploy_onnx, art.quantized_model(), feeds, threads)


def localize_engine(art: Artifact, feeds: dict[str, np.ndarray], threads: int | None = None) -> list[LayerError]:
    """The artifact's Q/DQ graph built by TensorRT with every layer output marked as an output, run on `feeds` and
    compared layer by layer with deploy.onnx on ONNX Runtime (fp32)."""
    backend = TensorRTBackend()
    with tempfile.TemporaryDirectory(prefix="edgedeploy-debug-precision.") as work:
        built = backend.build_marked(art.quantized_model(), Path(work) / "trt", "int8", backend_settings(art.spec))
        runner = backend.load(built)
        try:
            return localize_marked(art.deploy_onnx, art.quantized_model(), runner.run, feeds, threads)
        finally:
            runner.close()


def keep_in_float(spec: BuildSpec, layers: list[str], cache_dir: Path, trt_major: int | None = None) -> BuildSpec:
    """`spec` with `layers` added to the scope its int8 route leaves unquantized (accuracy-aware search off: this
    search replaces it), calibration results cached in `cache_dir`. With `trt_major` (a TensorRT build analysed on
    that TensorRT) whose int8 network is weakly typed, the layers are also held to fp32 by per-layer precision
    constraints (`tensorrt.layer_precisions`)."""
    if trt_major is not None and trt_plan.weakly_typed("int8", trt_major, spec.tensorrt):
        held = {**spec.tensorrt.layer_precisions, **{name: "fp32" for name in layers}}
        spec = spec.model_copy(update={"tensorrt": spec.tensorrt.model_copy(update={"layer_precisions": held})})
    int8 = spec.int8
    if precision_route(spec).int8 == "nncf-openvino":
        scope = int8.ignored_scope
        int8 = int8.model_copy(update={"ignored_scope": scope.model_copy(
            update={"names": _merged(scope.names, layers)})})
    else:
        excluded = int8.qdq.excluded
        int8 = int8.model_copy(update={"qdq": int8.qdq.model_copy(update={"excluded": excluded.model_copy(
            update={"names": _merged(excluded.names, layers)})})})
    int8 = int8.model_copy(update={"accuracy_aware": int8.accuracy_aware.model_copy(update={"enabled": False})})
    calibration = spec.calibration.model_copy(update={"cache_dir": spec.calibration.cache_dir or cache_dir})
    return spec.model_copy(update={"int8": int8, "calibration": calibration})


def _merged(existing: list[str], extra: list[str]) -> list[str]:
    return list(existing) + [name for name in extra if name not in existing]


def run_trial(art: Artifact, layers: list[str], budget: Thresholds, threads: int | None = None) -> Trial:
    """Quantize with `layers` kept in float (the precision stage, cached), run the whole validation set, check."""
    start = time.perf_counter()
    spec = keep_in_float(art.spec, layers, art.dir / "cache", art.trt_major)
    backend = get_backend(art.backend)
    settings = backend_settings(spec.model_copy(update={"target": art.backend}))
    with tempfile.TemporaryDirectory(prefix="edgedeploy-debug-precision.") as work:
        prec = run_precision(spec, precision_route(spec), art.deploy_onnx, Path(work), None, library_versions())
        built = backend.build(prec.model_path, Path(work) / art.backend, "int8", settings)
        runner = backend.load(built, settings, threads)
        outputs = evaluate.run_all(runner, art.inputs)
        getattr(runner, "close", lambda: None)()  # TensorRT's device buffers, before the folder goes
    names = [n for n in runner.output_names if n in art.reference]
    tensors = metrics.compare_outputs(art.reference, outputs, names)
    task = evaluate.task_metrics(spec.validation, art.reference, outputs, art.targets, art.labels)
    checks = threshold_checks(budget, tensors, task)
    return Trial(kept_float=list(layers), passed=all(c["passed"] for c in checks),
                 failed_checks=[c["message"] for c in checks if not c["passed"]],
                 task={k: v for k, v in (task or {}).items() if isinstance(v, (int, float, str))} or None,
                 tensors={n: {k: m[k] for k in ("rel_l2", "snr_db", "cosine")} for n, m in tensors.items()},
                 cache=prec.info.get("cache", {}).get("status", "none"), seconds=time.perf_counter() - start)


def search(art: Artifact, ranking: list[str], budget: Thresholds, max_layers: int,
           progress: Callable[[Trial], None] = lambda t: None, threads: int | None = None) -> list[Trial]:
    """Trials, in the order run: as built, then k = 1, 2, 4, … worst layers kept in float until one passes (at most
    `max_layers`), then bisection to the smallest passing k. The answer is the passing trial with the fewest layers."""
    trials: dict[int, Trial] = {}

    def attempt(k: int) -> Trial:
        if k not in trials:
            trials[k] = run_trial(art, ranking[:k], budget, threads)
            progress(trials[k])
        return trials[k]

    if attempt(0).passed:
        return list(trials.values())
    limit = min(max_layers, len(ranking))
    low, k = 0, 1
    while k < limit and not attempt(k).passed:
        low, k = k, 2 * k
    if k >= limit:
        k = limit
        if not attempt(k).passed:
            return list(trials.values())
    high = k
    while high - low > 1:  # trials[low] failed, trials[high] passed
        mid = (low + high) // 2
        low, high = (low, mid) if attempt(mid).passed else (mid, high)
    return list(trials.values())


def best(trials: list[Trial]) -> Trial | None:
    passing = [t for t in trials if t.passed]
    return min(passing, key=lambda t: len(t.kept_float)) if passing else None


def budget_for(spec: BuildSpec, overrides: dict[str, float | None]) -> Thresholds:
    budget, _ = effective_thresholds(spec, "int8")
    return budget.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def scope_snippet(spec: BuildSpec, layers: list[str], trt_major: int | None = None) -> str:
    """The YAML to add to the build config so a build keeps `layers` in float."""
    import yaml

    kept = keep_in_float(spec, layers, Path("cache"), trt_major)
    scoped = kept.int8
    body: dict[str, Any]
    if precision_route(spec).int8 == "nncf-openvino":
        body = {"int8": {"ignored_scope": {"names": scoped.ignored_scope.names}}}
    else:
        body = {"int8": {"qdq": {"excluded": {"names": scoped.qdq.excluded.names}}}}
    if kept.tensorrt.layer_precisions:
        body["tensorrt"] = {"layer_precisions": dict(kept.tensorrt.layer_precisions)}
    return "# layers kept in float by `edgedeploy debug precision`\n" + yaml.safe_dump(body, sort_keys=False)


def write_outputs(report: dict[str, Any], out_dir: Path) -> None:
    fileio.write_json(out_dir / REPORT_FILE, report)
    fileio.write_text(out_dir / "report.md", render_precision_debug_markdown(report))
    fileio.write_text(out_dir / "report.html", render_precision_debug(report))
    if report.get("result") and report["result"].get("snippet"):
        fileio.write_text(out_dir / "keep-float.yaml", report["result"]["snippet"])


def debug_precision(artifact_dir: Path, out_dir: Path | None = None, *, samples: int = 32, do_search: bool = False,
                    max_layers: int = 16, budget_overrides: dict[str, float | None] | None = None,
                    progress: Callable[[str], None] = lambda s: None, target: str | None = None) -> dict[str, Any]:
    """Localise (and with `do_search`, find the fewest layers to keep in float); writes precision-debug.json,
    report.md, report.html (and keep-float.yaml) to `out_dir` (default ARTIFACT_DIR-debug-precision beside it)."""
    start = time.perf_counter()
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, not {samples}")
    check_build_folder(artifact_dir)
    out_dir = report_path(artifact_dir, out_dir, "debug-precision")
    # the artifact's lock, exclusive for the whole run, since the trials write into its calibration cache
    with FolderLock(artifact_dir), OutputFolder(out_dir, kind="report") as folder:
        art = load_artifact(artifact_dir, target)
        report = _analyse(art, samples, do_search, max_layers, budget_overrides or {}, progress)
        report["seconds"] = time.perf_counter() - start
        write_outputs(report, folder.staging)
        folder.commit()
    return report


def _analyse(art: Artifact, samples: int, do_search: bool, max_layers: int,
             budget_overrides: dict[str, float | None], progress: Callable[[str], None]) -> dict[str, Any]:
    threads = art.spec.validation.latency.threads
    progress(f"localising {art.quantized_model().relative_to(art.dir)} on {art.backend}"
             + (" (every layer output marked)" if art.trt_major is not None else ""))
    layers = localize_artifact(art, samples, threads)
    ranked = rank(layers)
    report: dict[str, Any] = {
        "schema": SCHEMA, "artifact_dir": str(art.dir), "name": art.spec.name, "target": art.spec.target,
        "backend": art.backend, "quantized_model": str(art.quantized_model().relative_to(art.dir)),
        "samples": min(samples, len(next(iter(art.inputs.values())))),
        "layers": [lay.to_dict() for lay in layers], "ranking": [lay.layer for lay in ranked],
        "layer_errors": layer_errors(layers),
    }
    if art.trt_major is not None:
        report["tensorrt_major"] = art.trt_major
    if not do_search:
        return report
    budget = budget_for(art.spec, budget_overrides)
    report["budget"] = budget.model_dump(exclude_none=True, exclude={"outputs"})

    def show(t: Trial) -> None:
        progress(f"{len(t.kept_float):>2} in float: {'pass' if t.passed else 'fail'}"
                 + (f", mAP@0.5 drop {t.task['map50_drop']:.4f}" if t.task and "map50_drop" in t.task else "")
                 + f" ({t.cache}, {t.seconds:.1f} s)")

    trials = search(art, [lay.layer for lay in ranked], budget, max_layers, show, threads)
    report["trials"] = [asdict(t) for t in trials]
    found = best(trials)
    report["result"] = {"passed": found is not None, "kept_float": found.kept_float if found else None,
                        "snippet": scope_snippet(art.spec, found.kept_float, art.trt_major) if found else None}
    return report


def rebuild(artifact_dir: Path, kept_float: list[str], out: Path, listener=None,
            trt_major: int | None = None) -> dict[str, Any]:
    """A normal build of the artifact's spec with `kept_float` left unquantized; its calibration result is the
    search's (same key, same cache)."""
    _, spec = read_manifest(Path(artifact_dir))
    if Path(out).resolve() == Path(artifact_dir).resolve():
        raise UsageError("--rebuild must name a new folder, not the artifact being analysed", where=str(out))
    return pipeline.build(keep_in_float(spec, kept_float, Path(artifact_dir) / "cache", trt_major), Path(out),
                          listener=listener)


__all__ = ["debug_precision", "rebuild", "load_artifact", "localize_artifact", "localize_engine", "run_trial", "search",
           "best",
           "keep_in_float", "scope_snippet", "Trial", "Artifact"]
