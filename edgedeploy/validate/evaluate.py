"""Run an artifact on the validation inputs and measure it: tensor metrics, task metric, latency, checks.

Shared by `edgedeploy build` (validate stage) and `edgedeploy validate` (re-run from reference.npz, no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import arrayfile
from edgedeploy.backends.base import Runner
from edgedeploy.config import BuildSpec, ValidationSettings, effective_thresholds
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.preprocess import input_hw
from edgedeploy.data.base import Annotations
from edgedeploy.tasks import decoders
from edgedeploy.tasks.decoders.base import DecodeSettings
from edgedeploy.tasks.metrics import bootstrap, coco
from edgedeploy.validate import classification, latency, metrics, notices
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
    """Classification labels from the validation .npz as (N,) class indices, or None when it has none: `labels`
    (or, failing that, `targets`) as indices (N,) or (N, 1), or one-hot rows (N, C). Any other layout is one
    UsageError naming the array and its shape."""
    if settings.data is None or settings.task != "classification" or settings.format not in ("auto", "npz") or \
            Path(settings.data).suffix.lower() != ".npz":
        return None  # a dataset's labels come with it (preprocess.load_dataset)
    with arrayfile.open_npz(Path(settings.data), "validation data", fix="check validation.data") as data:
        key = next((k for k in ("labels", "targets") if k in data.files), None)
        if key is None:
            return None
        raw = np.asarray(data[key])
    return class_indices(raw, count, key, str(settings.data))


def class_indices(raw: np.ndarray, count: int, key: str, where: str) -> np.ndarray:
    """(N,) int64 class indices from `raw` (see load_labels), the first `count` of them."""
    fix = "store class indices as `labels`, shape (N,) integers"
    if raw.dtype.kind not in "iubf":
        raise UsageError(f"`{key}` holds {raw.dtype} values, not class indices", where=where, fix=fix)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    elif raw.ndim == 2 and raw.shape[1] > 1:
        rows_one_hot = np.isin(raw, (0, 1)).all() and (raw.sum(axis=1) == 1).all()
        if not rows_one_hot:
            layout = " (the detection layout: image, class, box)" if raw.shape[1] == 6 else ""
            raise UsageError(f"`{key}` has shape {list(raw.shape)}{layout}: classification reads one class index "
                             "per sample (or one-hot rows)", where=where, fix=fix)
        raw = raw.argmax(axis=1)
    elif raw.ndim != 1:
        raise UsageError(f"`{key}` has shape {list(raw.shape)}: classification reads one class index per sample",
                         where=where, fix=fix)
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise UsageError(f"`{key}` holds fractional or non-finite values, not class indices", where=where, fix=fix)
    if len(raw) < count:
        raise UsageError(f"`{key}` has {len(raw)} entries for {count} samples", where=where)
    labels = raw[:count].astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise UsageError(f"`{key}` holds the negative class index {labels.min()}", where=where, fix=fix)
    return labels


def task_metrics(settings: ValidationSettings, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 targets: np.ndarray | None = None, labels: np.ndarray | None = None,
                 class_names: list[str] | None = None,
                 input_size: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """The task metric for `settings.task` (None for task `none`); `input_size` (H, W) places normalized boxes and
    masks."""
    if settings.task == "none":
        return None
    if settings.output is not None and (settings.output not in outputs or settings.output not in reference):
        raise UsageError(f"validation.output {settings.output!r} is not an output of the model",
                         fix=f"use one of {sorted(outputs)}")
    if settings.task == "classification":
        name = settings.output or next(iter(outputs))
        classes = int(np.prod(reference[name].shape[1:]))
        if labels is not None and len(labels) and labels.max() >= classes:
            raise UsageError(f"the labels hold class index {labels.max()}, and output {name!r} scores {classes} "
                             "classes", fix="check the labels (0-based class indices) and validation.output")
        return {"output": name, **classification.evaluate(reference[name], outputs[name], labels)}
    return detection_metrics(settings, reference, outputs, targets, class_names, input_size)


def detection_metrics(settings: ValidationSettings, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                      targets: np.ndarray | None, class_names: list[str] | None,
                      input_size: tuple[int, int] | None) -> dict[str, Any]:
    """Detections decoded by the decoder the outputs' shapes fit (or validation.decoder, checked), scored with
    faster-coco-eval against the labels and against the reference's own detections, with the bootstrap interval
    of the drop; boxes stay in model-input pixels (the labels are mapped there), where IoU is the same."""
    names = [settings.output] if settings.output else [n for n in outputs if n in reference]
    read_ref, read_art = {n: reference[n] for n in names}, {n: outputs[n] for n in names}
    nc = settings.num_classes or (len(class_names) if class_names else None)
    if nc is not None and class_names is not None and len(class_names) != nc:
        raise UsageError(f"validation.num_classes is {nc}, the data names {len(class_names)} classes",
                         fix="make them agree (or drop validation.num_classes)")
    decoder = decoders.choose({k: v.shape for k, v in read_art.items()}, nc, settings.decoder, settings.kpt_shape,
                              produces="detections")
    if input_size is None and decoder.name in ("detr", "yolo-seg"):
        raise UsageError(f"decoder {decoder.name} needs the input's height and width",
                         fix="give inputs[0] a static H and W")
    det = settings.detection
    decode = DecodeSettings(input_size=input_size or (0, 0), num_classes=nc, kpt_shape=settings.kpt_shape,
                            conf_thres=det.conf_thres, iou_thres=det.iou_thres, max_det=det.max_det, multi_label=det.multi_label)
    ref_dets, art_dets = decoder.decode(read_ref, decode), decoder.decode(read_art, decode)
    count = len(art_dets)
    seen = [int(c) for d in (*ref_dets, *art_dets) for c in d.classes]
    nc_seen = max([nc or 0, *(c + 1 for c in seen), *(int(t) + 1 for t in (targets[:, 1] if targets is not None
                                                                              else []))], default=1)
    names = class_names or [str(i) for i in range(nc_seen)]
    if len(names) < nc_seen:
        raise UsageError(f"the detections or labels hold class {nc_seen - 1}, the data names {len(names)} classes",
                         fix="check validation.num_classes and the labels")
    out: dict[str, Any] = {"kind": "detection", "output": ", ".join(read_art), "decoder": decoder.name,
                           "conf_thres": det.conf_thres, "iou_thres": det.iou_thres, "max_det": det.max_det}
    sizes = [(0, 0)] * count
    confident = [d.scores >= det.reference_score_thres for d in ref_dets]
    pseudo = [Annotations(d.boxes[k], d.classes[k]) for d, k in zip(ref_dets, confident)]
    cats = list(range(1, len(names) + 1))
    ids = list(range(1, count + 1))
    vs_ref = coco.evaluate(coco.ground_truth(pseudo, sizes, names), coco.results(art_dets, ids, cats), "bbox", names)
    out.update({"map50_vs_reference": vs_ref["map50"], "map50_95_vs_reference": vs_ref["map50_95"]})
    if targets is not None:
        truth = [Annotations(targets[targets[:, 0] == i, 2:6].astype(np.float64),
                             targets[targets[:, 0] == i, 1].astype(np.int64)) for i in range(count)]
        gt = coco.ground_truth(truth, sizes, names)
        ref_map = coco.evaluate(gt, coco.results(ref_dets, ids, cats), "bbox", names)
        art_map = coco.evaluate(gt, coco.results(art_dets, ids, cats), "bbox", names)
        out.update({
            "reference_map50": ref_map["map50"],
            "reference_map50_95": ref_map["map50_95"],
            "map50": art_map["map50"],
            "map50_95": art_map["map50_95"],
            "map50_drop": ref_map["map50"] - art_map["map50"],
            "map50_95_drop": ref_map["map50_95"] - art_map["map50_95"],
            "ap50_per_class": art_map["ap50_per_class"],
            "ap_per_class": art_map["ap_per_class"],
            "reference_ap50_per_class": ref_map["ap50_per_class"],
        })
        if settings.bootstrap:
            out["drop_interval"] = bootstrap.drop_interval(bootstrap.match_all(ref_dets, truth, len(names)),
                                                           bootstrap.match_all(art_dets, truth, len(names)), count,
                                                           settings.bootstrap)
    return out


def batch_sizes(spec: BuildSpec) -> list[int]:
    """The batch sizes an artifact is timed at: the static batch it was built for, else the latency settings'."""
    return [spec.static_batch] if spec.static_batch is not None else list(spec.validation.latency.batch_sizes)


def measure_latency(runner: Runner, inputs: dict[str, np.ndarray], spec: BuildSpec) -> list[dict]:
    return latency.measure_all({"": runner}, inputs, spec.validation.latency, batch_sizes(spec))[""]


def evaluate(spec: BuildSpec, runner: Runner, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
             targets: np.ndarray | None = None, labels: np.ndarray | None = None,
             outputs: dict[str, np.ndarray] | None = None, timings: list[dict] | None = None,
             class_names: list[str] | None = None) -> dict[str, Any]:
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
    hw = input_hw(spec.inputs[0], spec.preprocess)
    task = task_metrics(spec.validation, reference, outputs, targets, labels, class_names,
                        None if None in hw else hw)  # type: ignore[arg-type]
    timings = measure_latency(runner, inputs, spec) if timings is None else timings
    budget, origin = effective_thresholds(spec)
    check_threshold_outputs(spec, tensors)
    checks = threshold_checks(budget, tensors, task, origin)
    warnings = []
    if extra:
        warnings.append(notices.warning("outputs_not_compared", f"{len(extra)} output(s) not compared",
                                        f"outputs without a reference are not compared: {', '.join(extra)}"))
    for name, m in tensors.items():
        if m["reference_nonfinite"]:
            warnings.append(notices.warning(
                "reference_nonfinite", f"NaN/Inf in the reference {name}",
                f"the reference output {name} has {m['reference_nonfinite']} NaN/Inf values (compared only where "
                "both are finite)"))
    return {"tensors": tensors, "task": task, "latency": timings, "checks": checks, "warnings": warnings}


def check_threshold_outputs(spec: BuildSpec, outputs: Iterable[str]) -> None:
    """A per-output budget for an output the model does not have would check nothing: refuse it, naming the key."""
    outputs = list(outputs)
    for precision, t in spec.thresholds.items():
        for name in t.outputs:
            if name not in outputs:
                raise UsageError(f"`thresholds.{precision}.outputs.{name}` names no output of the model",
                                 fix=f"the model's outputs are {', '.join(outputs)}")
