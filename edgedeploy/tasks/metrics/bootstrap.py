"""Confidence interval of a bbox mAP drop, by bootstrap over images.

Detections are matched to ground truth once per image and class, exactly as COCOeval's evaluateImg does (greedy by
score, the best unmatched ground truth at each IoU threshold 0.50:0.05:0.95, the last of equal IoUs; crowd regions
matched by intersection over the detection's area, any number of times, and the detections on them ignored; 100
detections per image and class). A resample weights each image by how often it was drawn, and AP is accumulated as
COCOeval.accumulate does (monotone precision at 101 recall points) from the weighted counts, so the unweighted
figure is COCO's own (tests/test_task_metrics.py checks it against faster-coco-eval to 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedeploy.data.base import Annotations
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.tasks.decoders.nms import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100


@dataclass
class ClassMatches:
    """One class over all images: each kept detection's image, score and outcome per IoU threshold, and the
    number of (non-crowd) ground-truth boxes per image."""

    image: np.ndarray  # (D,) int64
    score: np.ndarray  # (D,)
    tp: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool: matched to a crowd region
    gt_per_image: np.ndarray  # (I,) int64


def crowd_iou(dets: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Intersection over the detection's area (COCO's IoU with an iscrowd region)."""
    lt = np.maximum(dets[:, None, :2], crowd[None, :, :2])
    rb = np.minimum(dets[:, None, 2:], crowd[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area = np.prod(np.clip(dets[:, 2:] - dets[:, :2], 0, None), axis=-1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area > 0, inter / area, 0.0)


def match_image(boxes: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) true-positive and ignored flags for detections `boxes` sorted by score, against ground truth `gt`
    (non-crowd) and `crowd` boxes of one image and class."""
    t, d = len(IOU_THRESHOLDS), len(boxes)
    tp = np.zeros((t, d), bool)
    ignored = np.zeros((t, d), bool)
    if d == 0:
        return tp, ignored
    ious = box_iou(boxes, gt) if len(gt) else np.zeros((d, 0))
    cious = crowd_iou(boxes, crowd) if len(crowd) else np.zeros((d, 0))
    floor = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)
    taken = np.zeros((t, len(gt)), bool)
    g = len(gt)
    for k in range(d):
        if g:
            cand = np.where(taken, -1.0, ious[k][None, :])  # (T, G)
            best = cand.max(1)
            hit = best >= floor
            last = g - 1 - np.argmax((cand == best[:, None])[:, ::-1], axis=1)  # the last of equal IoUs
            rows = np.flatnonzero(hit)
            taken[rows, last[rows]] = True
            tp[rows, k] = True
        else:
            hit = np.zeros(t, bool)
        if cious.shape[1]:
            ignored[~hit, k] = cious[k].max() >= floor[~hit]
    return tp, ignored


def match_all(detections: Sequence[Detections], annotations: Sequence[Annotations],
              num_classes: int) -> list[ClassMatches]:
    """Per class, every image's matches (detections and annotations in the same coordinates)."""
    n = len(annotations)
    parts: list[list[tuple]] = [[] for _ in range(num_classes)]
    gt_counts = np.zeros((num_classes, n), np.int64)
    for i, (det, ann) in enumerate(zip(detections, annotations)):
        crowd_flags = ann.iscrowd if ann.iscrowd is not None else np.zeros(len(ann.classes), bool)
        for c in set(det.classes.tolist()) | set(ann.classes.tolist()):
            sel = np.flatnonzero(det.classes == c)
            sel = sel[np.argsort(-det.scores[sel], kind="mergesort")][:MAX_DETS]
            is_c = ann.classes == c
            gt, crowd = ann.boxes[is_c & ~crowd_flags], ann.boxes[is_c & crowd_flags]
            gt_counts[c, i] = len(gt)
            tp, ign = match_image(det.boxes[sel], gt, crowd)
            parts[c].append((np.full(len(sel), i), det.scores[sel], tp, ign))
    out = []
    for c in range(num_classes):
        if parts[c]:
            img, score, tp, ign = (np.concatenate(x, axis=-1) for x in zip(*parts[c]))
        else:
            img, score = np.zeros(0, np.int64), np.zeros(0)
            tp = ign = np.zeros((len(IOU_THRESHOLDS), 0), bool)
        out.append(ClassMatches(img.astype(np.int64), score, tp, ign, gt_counts[c]))
    return out


def average_precision(m: ClassMatches, weights: np.ndarray) -> np.ndarray | None:
    """(T,) AP of one class with image weights, or None when it has no (weighted) ground truth."""
    n_gt = float(weights @ m.gt_per_image)
    if n_gt == 0:
        return None
    order = np.argsort(-m.score, kind="mergesort")
    w = weights[m.image[order]].astype(np.float64)
    tp, ign = m.tp[:, order], m.ignored[:, order]
    fp = ~tp & ~ign
    tp_sum = np.cumsum(tp * w, axis=1)
    fp_sum = np.cumsum(fp * w, axis=1)
    ap = np.zeros(len(IOU_THRESHOLDS))
    for t in range(len(IOU_THRESHOLDS)):
        keep = ~ign[t] & (w > 0)
        tps, fps = tp_sum[t][keep], fp_sum[t][keep]
        if not len(tps):
            continue
        rc = tps / n_gt
        pr = tps / (tps + fps + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
        ap[t] = np.where(inds < len(pr), pr[np.minimum(inds, len(pr) - 1)], 0.0).mean()
    return ap


def mean_ap(matches: Sequence[ClassMatches], weights: np.ndarray) -> tuple[float, float]:
    """(mAP@.50, mAP@[.50:.95]) over the classes with ground truth."""
    aps = [a for a in (average_precision(m, weights) for m in matches) if a is not None]
    if not aps:
        return 0.0, 0.0
    stacked = np.stack(aps)
    return float(stacked[:, 0].mean()), float(stacked.mean())


def drop_interval(reference: Sequence[ClassMatches], candidate: Sequence[ClassMatches], images: int,
                  resamples: int = 200, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile intervals over `resamples` draws of the images with replacement, the same draw for both models
    (the drop is paired): the candidate's mAP @.50 and @[.50:.95] and the drops reference - candidate of both; as
    report.json's task keys."""
    rng = np.random.default_rng(seed)
    drops = np.zeros((resamples, 2))
    maps = np.zeros((resamples, 2))
    for r in range(resamples):
        weights = np.bincount(rng.integers(0, images, images), minlength=images).astype(np.float64)
        cand = mean_ap(candidate, weights)
        drops[r] = np.subtract(mean_ap(reference, weights), cand)
        maps[r] = cand
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {"map50_ci95": np.percentile(maps[:, 0], [lo, hi]).tolist(),
            "map50_95_ci95": np.percentile(maps[:, 1], [lo, hi]).tolist(),
            "map50_drop_ci95": np.percentile(drops[:, 0], [lo, hi]).tolist(),
            "map50_95_drop_ci95": np.percentile(drops[:, 1], [lo, hi]).tolist(),
            "images": images, "bootstrap_resamples": resamples}  # type: ignore[dict-item]
