"""Run an artifact on the validation inputs and measure it: tensor metrics, task metric, latency, checks.

Shared by `edgedeploy build` (validate stage) and `edgedeploy validate` (re-run from reference.npz, no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.backends.base import Runner
from edgedeploy.config import BuildSpec, ValidationSettings
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.validate import classification, detection, latency, metrics
from edgedeploy.validate.gate import threshold_checks

RUN_BATCH = 8


def run_all(runner: Runner, inputs: dict[str, np.ndarray], batch: int = RUN_BATCH,
            static: bool = False) -> dict[str, np.ndarray]:
    """Every validation sample through `runner`, `batch` at a time, outputs concatenated. `static`: the artifact
    takes exactly `batch` samples, so a last partial chunk is padded (repeating its samples) and the padding's
    outputs dropped."""
    count = len(next(iter(inputs.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, batch):
        feeds = {k: v[start:start + batch] for k, v in inputs.items() if k in runner.input_names}
        real = len(next(iter(feeds.values())))
        if static and real < batch:
            feeds = first(feeds, batch, repeat=True)
        for name, value in runner.run(feeds).items():
            parts.setdefault(name, []).append(value[:real])
    return {k: np.concatenate(v) for k, v in parts.items()}


def first(inputs: dict[str, np.ndarray], n: int, repeat: bool = False) -> dict[str, np.ndarray]:
    """The first n samples; with `repeat`, tiled up to n when the set is smaller (for latency batches)."""
    out = {}
    for k, v in inputs.items():
        if repeat and len(v) < n:
            v = np.concatenate([v] * (n // len(v) + 1))
        out[k] = np.ascontiguousarray(v[:n])
    return out


def load_labels(settings: ValidationSettings, count: int) -> np.ndarray | None:
    """Classification labels (`labels`, (N,) ints) from the validation .npz, or None when it has none."""
    if settings.data is None:
        return None
    with np.load(Path(settings.data), allow_pickle=False) as data:
        if "labels" not in data.files:
            return None
        labels = np.asarray(data["labels"]).reshape(-1)[:count]
    if len(labels) != count:
        raise UsageError(f"`labels` has {len(labels)} entries for {count} samples", where=str(settings.data))
    return labels.astype(np.int64)


def task_metrics(settings: ValidationSettings, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 targets: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict[str, Any] | None:
    """The task metric for `settings.task` (None for task `none`)."""
    if settings.task == "none":
        return None
    name = settings.output or next(iter(outputs))
    if name not in outputs or name not in reference:
        raise UsageError(f"validation.output {name!r} is not an output of the model",
                         fix=f"use one of {sorted(outputs)}")
    if settings.task == "classification":
        return {"output": name, **classification.evaluate(reference[name], outputs[name], labels)}
    det = settings.detection
    ref_dets = detection.postprocess(reference[name], conf_thres=det.conf_thres, iou_thres=det.iou_thres)
    art_dets = detection.postprocess(outputs[name], conf_thres=det.conf_thres, iou_thres=det.iou_thres)
    vs_ref = detection.evaluate_map(art_dets, detection.detections_as_targets(ref_dets, det.reference_score_thres))
    out: dict[str, Any] = {"kind": "detection", "output": name, "conf_thres": det.conf_thres,
                           "iou_thres": det.iou_thres, "map50_vs_reference": vs_ref["map50"],
                           "map50_95_vs_reference": vs_ref["map50_95"]}
    if targets is not None:
        ref_map = detection.evaluate_map(ref_dets, targets)
        art_map = detection.evaluate_map(art_dets, targets)
        out.update({
            "reference_map50": ref_map["map50"],
            "reference_map50_95": ref_map["map50_95"],
            "map50": art_map["map50"],
            "map50_95": art_map["map50_95"],
            "map50_drop": ref_map["map50"] - art_map["map50"],
            "map50_95_drop": ref_map["map50_95"] - art_map["map50_95"],
            "ap50_per_class": {str(k): v for k, v in art_map["ap50_per_class"].items()},
        })
    return out


def batch_sizes(spec: BuildSpec) -> list[int]:
    """The batch sizes an artifact is timed at: the static batch it was built for, else the latency settings'."""
    return [spec.static_batch] if spec.static_batch is not None else list(spec.validation.latency.batch_sizes)


def measure_latency(runner: Runner, inputs: dict[str, np.ndarray], spec: BuildSpec) -> list[dict]:
    return latency.measure_all({"": runner}, inputs, spec.validation.latency, batch_sizes(spec))[""]


def evaluate(spec: BuildSpec, runner: Runner, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
             targets: np.ndarray | None = None, labels: np.ndarray | None = None,
             outputs: dict[str, np.ndarray] | None = None, timings: list[dict] | None = None) -> dict[str, Any]:
    """Run (unless `outputs` is given) and measure (unless `timings` were measured elsewhere, e.g. in a fresh
    process); returns the report's tensors, task, latency, checks, warnings."""
    if outputs is None:
        static = spec.static_batch is not None
        outputs = run_all(runner, inputs, spec.static_batch or RUN_BATCH, static=static)
    names = [n for n in runner.output_names if n in reference]
    if not names:
        raise EdgeDeployError(f"none of the artifact's outputs {runner.output_names} has a reference "
                              f"(the reference holds {sorted(reference)})",
                              fix="the artifact and reference.npz are from different models; rebuild")
    extra = sorted(set(runner.output_names) - set(reference))
    tensors = metrics.compare_outputs(reference, outputs, names)
    task = task_metrics(spec.validation, reference, outputs, targets, labels)
    timings = measure_latency(runner, inputs, spec) if timings is None else timings
    checks = threshold_checks(spec.thresholds.get(spec.precision), tensors, task)
    warnings = latency.warnings_for(timings)
    if extra:
        warnings.append(f"outputs without a reference are not compared: {', '.join(extra)}")
    for name, m in tensors.items():
        if m["reference_nonfinite"]:
            warnings.append(f"the reference output {name} has {m['reference_nonfinite']} NaN/Inf values "
                            "(compared only where both are finite)")
    return {"tensors": tensors, "task": task, "latency": timings, "checks": checks, "warnings": warnings}
