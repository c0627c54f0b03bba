"""Run an artifact on the validation inputs and measure it: tensor metrics, task metric, latency, checks.

Shared by `edgedeploy build` (validate stage) and `edgedeploy validate` (re-run from reference.npz, no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import arrayfile
from edgedeploy.backends.base import Runner
from edgedeploy.config import BuildSpec, ValidationSettings, budget_key, effective_thresholds
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.preprocess import ValidationSet, input_hw
from edgedeploy.tasks import TASKS
from edgedeploy.tasks.base import TaskResults
from edgedeploy.validate import latency, metrics, notices
from edgedeploy.validate.latency import first
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
    """The task record of `settings.task` (edgedeploy.tasks; None for task `none`); `class_names` are the data's,
    `input_size` (H, W) places normalized boxes and masks."""
    if settings.task == "none":
        return None
    name = settings.output or next(iter(outputs))
    if name not in outputs or name not in reference:
        raise UsageError(f"validation.output {name!r} is not an output of the model",
                         fix=f"use one of {sorted(outputs)}")
    return TASKS[settings.task].evaluate(settings, name, reference, outputs, targets, labels,
                                         class_names=class_names, input_size=input_size)


def batch_sizes(spec: BuildSpec) -> list[int]:
    """The batch sizes an artifact is timed at: the static batch it was built for, else the latency settings'."""
    return [spec.static_batch] if spec.static_batch is not None else list(spec.validation.latency.batch_sizes)


def measure_latency(runner: Runner, inputs: dict[str, np.ndarray], spec: BuildSpec) -> list[dict]:
    return latency.measure_all({"": runner}, inputs, spec.validation.latency, batch_sizes(spec))[""]


@dataclass
class Reference:
    """What an artifact is measured against: the reference's outputs on the tensor sample (every sample of a small
    set) and, for a set larger than its sample, the reference's task results on every sample."""

    outputs: dict[str, np.ndarray]
    results: TaskResults | None = None


@dataclass
class Collected:
    """One model's run over a whole validation set: full outputs of the first samples, task results of all."""

    tensors: dict[str, np.ndarray]
    results: TaskResults | None
    nonfinite: dict[str, tuple[int, int, int]]  # per output over the whole set: NaN, Inf, values


Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Decode = Callable[[dict[str, np.ndarray]], TaskResults]


def collect(run: Run, batches: Iterable[dict[str, np.ndarray]], keep: int, decode: Decode | None = None) -> Collected:
    """`run` over every batch: the outputs of the first `keep` samples kept whole, each batch decoded into task
    results at once (so only those stay of the rest), NaN/Inf counted everywhere."""
    parts: dict[str, list[np.ndarray]] = {}
    nonfinite: dict[str, tuple[int, int, int]] = {}
    results: TaskResults | None = None
    kept = 0
    for feeds in batches:
        outputs = run(feeds)
        if kept < keep:
            for name, value in outputs.items():
                parts.setdefault(name, []).append(np.array(value[:keep - kept]))
            kept += min(len(next(iter(feeds.values()))), keep - kept)
        for name, value in outputs.items():
            nan, inf = (int(np.isnan(value).sum()), int(np.isinf(value).sum())) if value.dtype.kind in "fc" else (0, 0)
            before = nonfinite.get(name, (0, 0, 0))
            nonfinite[name] = (before[0] + nan, before[1] + inf, before[2] + int(value.size))
        if decode is not None:
            batch_results = decode(outputs)
            if results is None:
                results = batch_results
            else:
                results.extend(batch_results)
    return Collected({k: np.concatenate(v) for k, v in parts.items()}, results, nonfinite)


def runner_batches(runner: Runner, static_batch: int | None = None) -> Run:
    """One batch through `runner`; a static artifact's short last batch padded (repeating its samples) and the
    padding's outputs dropped."""
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in feeds.items() if k in runner.input_names}
        real = len(next(iter(feeds.values())))
        if static_batch is not None and real < static_batch:
            feeds = first(feeds, static_batch, repeat=True)
        return {name: value[:real] for name, value in runner.run(feeds).items()}

    return run


def task_decoder(spec: BuildSpec, names: list[str], class_names: list[str] | None) -> Decode | None:
    """One batch's outputs `names` as task results (edgedeploy.tasks), or None for task `none`."""
    if spec.validation.task == "none":
        return None
    task = TASKS[spec.validation.task]
    if spec.validation.output is not None and spec.validation.output not in names:
        raise UsageError(f"validation.output {spec.validation.output!r} is not an output of the model",
                         fix=f"use one of {sorted(names)}")
    hw = input_hw(spec.inputs[0], spec.preprocess)
    size = None if None in hw else hw

    def decode(outputs: dict[str, np.ndarray]) -> TaskResults:
        return task.decode(spec.validation, {n: outputs[n] for n in names}, class_names=class_names,
                           input_size=size)

    return decode


def reference_results(spec: BuildSpec, reference: Reference, names: list[str],
                      class_names: list[str] | None) -> TaskResults | None:
    """The reference's task results: stored ones (a set larger than its tensor sample), else decoded from its
    outputs."""
    decode = task_decoder(spec, names, class_names)
    if decode is None:
        return None
    return reference.results if reference.results is not None else decode(reference.outputs)


def evaluate(spec: BuildSpec, runner: Runner, data: ValidationSet, reference: Reference,
             labels: np.ndarray | None = None, timings: list[dict] | None = None) -> dict[str, Any]:
    """Stream the whole validation set through the artifact (keeping full outputs for the reference's tensor
    sample, task results for every sample) and measure (latency unless `timings` were measured elsewhere, e.g. in
    a fresh process); returns the report's tensors, task, latency, checks, warnings, and the artifact's task
    results (for predictions.json)."""
    names = [n for n in runner.output_names if n in reference.outputs]
    if not names:
        raise EdgeDeployError(f"none of the artifact's outputs {runner.output_names} has a reference "
                              f"(the reference holds {sorted(reference.outputs)})",
                              fix="the artifact and reference.npz are from different models; rebuild")
    extra = sorted(set(runner.output_names) - set(reference.outputs))
    keep = len(next(iter(reference.outputs.values())))
    decode = task_decoder(spec, [n for n in reference.outputs if n in names], data.class_names)  # as made at export
    got = collect(runner_batches(runner, spec.static_batch), data.batches(spec.static_batch or RUN_BATCH), keep,
                  decode)
    tensors = metrics.compare_outputs(reference.outputs, got.tensors, names)
    task = None
    if decode is not None and got.results is not None:
        ref = reference_results(spec, reference, [n for n in reference.outputs if n in names], data.class_names)
        check_results(ref, got.results)
        labels = data.labels if labels is None else labels
        task = TASKS[spec.validation.task].score(spec.validation, ref, got.results, data.targets, labels,
                                                 class_names=data.class_names)
    timings = measure_latency(runner, data.inputs, spec) if timings is None else timings
    judged_on = budget_key(spec, runner.conditions.get("precision_hint_effective"))
    budget, origin = effective_thresholds(spec, judged_on)
    check_threshold_outputs(spec, tensors)
    checks = threshold_checks(budget, tensors, task, origin)
    for c in checks:
        if c["origin"] in ("default", "config"):
            c["budget"] = judged_on
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
    if data.sampled:
        beyond = {n: sum(got.nonfinite[n][:2]) - m["nan_count"] - m["inf_count"] for n, m in tensors.items()}
        for name, count in beyond.items():
            if count > 0:
                warnings.append(notices.warning(
                    "nonfinite_beyond_sample", f"NaN/Inf in {name} beyond the tensor sample",
                    f"the artifact's output {name} has {count} NaN/Inf values in samples after the first {keep} "
                    "(validation.tensor_samples), whose tensors are not kept"))
    return {"tensors": tensors, "task": task, "latency": timings, "checks": checks, "warnings": warnings,
            "results": got.results}


def check_results(reference: TaskResults, artifact: TaskResults) -> None:
    """The reference's stored task results must cover the same samples, made the same way."""
    if len(reference.items) != len(artifact.items):
        raise EdgeDeployError(f"the reference has task results for {len(reference.items)} samples, the artifact ran "
                              f"on {len(artifact.items)}", fix="validate on the data the artifact was built with")
    if reference.info != artifact.info:
        changed = sorted(k for k in {*reference.info, *artifact.info}
                         if reference.info.get(k) != artifact.info.get(k))
        raise UsageError("the reference's stored task results were made with other settings ("
                         + ", ".join(f"{k}: {reference.info.get(k)!r} then, {artifact.info.get(k)!r} now"
                                     for k in changed) + ")",
                         fix="validate with the build's validation settings, or rebuild: beyond "
                             "validation.tensor_samples the reference keeps task results, not tensors")


def check_threshold_outputs(spec: BuildSpec, outputs: Iterable[str]) -> None:
    """A per-output budget for an output the model does not have would check nothing: refuse it, naming the key."""
    outputs = list(outputs)
    for precision, t in spec.thresholds.items():
        for name in t.outputs:
            if name not in outputs:
                raise UsageError(f"`thresholds.{precision}.outputs.{name}` names no output of the model",
                                 fix=f"the model's outputs are {', '.join(outputs)}")
