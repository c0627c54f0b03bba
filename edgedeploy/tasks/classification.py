"""Classification task metrics in numpy: agreement with the reference and accuracy against labels.

Definitions (per sample, averaged over the validation set; scores are logits or probabilities, one row per sample):

- ``top1_agreement``: the artifact's argmax equals the reference's argmax.
- ``top5_agreement``: the reference's argmax is among the artifact's 5 highest scores (top-5 accuracy with the
  reference's prediction as the label). With fewer than 5 classes, k is the number of classes.
- ``top1`` / ``top5`` (with labels): the label is the argmax / among the 5 highest scores, for the artifact and for
  the reference (``reference_top1``, ``reference_top5``); ``top1_drop`` = reference top-1 − artifact top-1.

Ties are broken the way ``np.argsort(-scores, kind="stable")`` does (the lower class index first) for both models.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from edgedeploy.errors import UsageError
from edgedeploy.numbers import interval, num
from edgedeploy.tasks.base import Budget, Task, TaskRecord, TaskResults, TaskSection


def _scores(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        x = x.reshape(len(x), -1)
    return x.astype(np.float64)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """(N, C) scores -> (N, min(k, C)) class indices, highest first; NaN sorts last."""
    s = _scores(scores)
    s = np.where(np.isnan(s), -np.inf, s)
    return np.argsort(-s, axis=1, kind="stable")[:, : min(k, s.shape[1])]


def _hit(pred_topk: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    return (pred_topk == np.asarray(wanted).reshape(-1, 1)).any(axis=1)


def accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels for {len(scores)} samples")
    return float(_hit(topk(scores, k), labels).mean()) if len(labels) else 0.0


def agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 1) -> float:
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} candidate rows for {len(reference)} reference rows")
    ref_top1 = topk(reference, 1)[:, 0]
    return float(_hit(topk(candidate, k), ref_top1).mean()) if len(ref_top1) else 0.0


def evaluate(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
    """Every classification figure for the report (see the module docstring)."""
    ref, cand = _scores(reference), _scores(candidate)
    return from_topk(topk(ref, TOP_K), topk(cand, TOP_K), ref.shape[1], labels)


TOP_K = 5  # what the figures read of each sample: its 5 best classes


def from_topk(ref: np.ndarray, cand: np.ndarray, classes: int, labels: np.ndarray | None = None) -> dict[str, Any]:
    """The figures of `evaluate` from each sample's best classes (N, min(5, C)), best first."""
    if len(ref) != len(cand):
        raise ValueError(f"{len(cand)} candidate rows for {len(ref)} reference rows")
    n = len(ref)

    def share(hits: np.ndarray) -> float:
        return float(hits.mean()) if n else 0.0

    out: dict[str, Any] = {
        "kind": "classification",
        "samples": int(n),
        "classes": int(classes),
        "top1_agreement": share(_hit(cand[:, :1], ref[:, 0])),
        "top5_agreement": share(_hit(cand, ref[:, 0])),
        "disagreeing_samples": np.flatnonzero(ref[:, 0] != cand[:, 0])[:20].tolist(),
    }
    out["top1_agreement_ci95"] = wilson(round(out["top1_agreement"] * n), n)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} samples")
        out.update({
            "reference_top1": share(_hit(ref[:, :1], labels)),
            "reference_top5": share(_hit(ref, labels)),
            "top1": share(_hit(cand[:, :1], labels)),
            "top5": share(_hit(cand, labels)),
        })
        out["top1_drop"] = out["reference_top1"] - out["top1"]
        ref_hit, cand_hit = _hit(ref[:, :1], labels), _hit(cand[:, :1], labels)
        out["top1_ci95"] = wilson(int(cand_hit.sum()), len(labels))
        out["top1_drop_ci95"] = paired_drop_interval(ref_hit, cand_hit)
    return out


def wilson(hits: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion (top-1 accuracy from n samples: binomial sampling noise)."""
    if n == 0:
        return [0.0, 1.0]
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def paired_drop_interval(ref_hit: np.ndarray, cand_hit: np.ndarray, z: float = 1.96) -> list[float]:
    """95 % interval of reference top-1 − candidate top-1 measured on the same samples: a normal interval over the
    per-sample differences (only samples where one is right and the other wrong vary); with no such sample, the
    rule of three bounds the share of them (3/n)."""
    d = ref_hit.astype(np.float64) - cand_hit.astype(np.float64)
    n = len(d)
    if n == 0:
        return [-1.0, 1.0]
    discordant = int(np.count_nonzero(d))
    half = z * float(d.std(ddof=1)) / np.sqrt(n) if discordant and n > 1 else 3.0 / n
    return [float(d.mean() - half), float(d.mean() + half)]


# ------------------------------------------------------------------------------------------------- the task
def decode(settings, outputs: dict[str, np.ndarray], **context: Any) -> TaskResults:
    """One batch's scores (validation.output, else the first output) as each sample's 5 best classes."""
    name = settings.output or next(iter(outputs))
    scores = _scores(outputs[name])
    return TaskResults({"task": "classification", "output": name, "classes": int(scores.shape[1])}, list(topk(scores, TOP_K)))


def score(settings, reference: TaskResults, artifact: TaskResults, targets: np.ndarray | None,
          labels: np.ndarray | None, **context: Any) -> dict[str, Any]:
    """report.json's `task` for classification (module docstring), the labels checked against the classes the
    output scores first."""
    name, classes = artifact.info["output"], artifact.info["classes"]
    if labels is not None and len(labels) and labels.max() >= classes:
        raise UsageError(f"the labels hold class index {labels.max()}, and output {name!r} scores {classes} "
                         "classes", fix="check the labels (0-based class indices) and validation.output")
    k = min(TOP_K, classes)
    ref = np.asarray(reference.items, np.int64).reshape(-1, k)
    cand = np.asarray(artifact.items, np.int64).reshape(-1, k)
    return {"output": name, **from_topk(ref, cand, classes, labels)}


def pack(results: TaskResults) -> dict[str, np.ndarray]:
    k = min(TOP_K, results.info["classes"])
    return {"topk": np.asarray(results.items, np.int64).reshape(-1, k)}


def unpack(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> TaskResults:
    if arrays["topk"].ndim != 2:
        raise ValueError("the stored top-k classes are not one row per sample")
    return TaskResults(info, list(arrays["topk"]))


def task_record(settings, name: str, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                targets: np.ndarray | None, labels: np.ndarray | None, **context: Any) -> dict[str, Any]:
    """report.json's `task` for classification from both models' scores of output `name`."""
    settings = settings.model_copy(update={"output": name})
    return score(settings, decode(settings, reference), decode(settings, outputs), targets, labels)


class ClassificationRecord(TaskRecord):
    """The figures of `evaluate` (module docstring); the label-based ones only with labels."""

    kind: Literal["classification"]
    output: str | None = None
    samples: int | None = None
    classes: int | None = None
    top1_agreement: float
    top5_agreement: float | None = None
    top1_agreement_ci95: list[float] | None = None
    disagreeing_samples: list[int] | None = None
    reference_top1: float | None = None
    reference_top5: float | None = None
    top1: float | None = None
    top5: float | None = None
    top1_drop: float | None = None
    top1_ci95: list[float] | None = None
    top1_drop_ci95: list[float] | None = None


def section(task: ClassificationRecord, model: str) -> TaskSection:
    rows = [["top-1 agreement with the reference", num(task.top1_agreement) + interval(task.top1_agreement_ci95)],
            ["top-5 agreement (reference top-1 in artifact top-5)", num(task.top5_agreement)]]
    if task.top1 is not None:
        rows += [["top-1 accuracy: reference / artifact", f"{num(task.reference_top1)} / {num(task.top1)}"
                  + interval(task.top1_ci95)],
                 ["top-5 accuracy: reference / artifact", f"{num(task.reference_top5)} / {num(task.top5)}"],
                 ["top-1 drop", num(task.top1_drop) + interval(task.top1_drop_ci95)]]
    else:
        rows.append(["top-1 accuracy", "not measured (no labels)"])
    return TaskSection(f"Classification (output {task.output}, {task.samples} samples, {task.classes} classes)",
                       [(["metric", "value"], rows)])


TASK = Task(
    name="classification", evaluate=task_record, record=ClassificationRecord, section=section, decode=decode,
    score=score, pack=pack, unpack=unpack,
    budgets=(Budget("max_top1_drop", "top1_drop", "<="), Budget("min_top1_agreement", "top1_agreement", ">=")),
    baseline_metrics=("top1", "top5", "top1_agreement", "top5_agreement"),
    ranking_metrics=("top1", "top1_agreement"), summary_metrics=("top1", "top1_agreement"), drops={"top1": "top1_drop"},
    labelled_metric="top1",
    no_labels="the validation data has no `labels`, so top-1 accuracy and its drop were not measured (top-1 "
              "agreement with the reference only)",
    short_labels={"top1": "top-1", "top1_agreement": "top-1 agreement"},
    labels={"top1": "top-1 accuracy", "top5": "top-5 accuracy", "top1_agreement": "top-1 agreement with the reference",
            "top5_agreement": "top-5 agreement with the reference", "top1_drop": "top-1 drop vs the reference"},
)
