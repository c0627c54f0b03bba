"""Where detections go wrong, image by image, from the same decoded detections the mAP is computed on: the
confusion matrix of confident detections against the labels (IoU-matched, with a background row and column) and
the images where the artifact's detections differ most from the reference's, as report.json's `task.confusion`
and `task.disagreeing` (both in the coordinates the detections and labels share)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedeploy.data.base import Annotations
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.tasks.decoders.nms import box_iou


def greedy_match(boxes: np.ndarray, scores: np.ndarray, others: np.ndarray, iou_thres: float,
                 allowed: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """(box, other, IoU) pairs: by descending score each box takes the free `other` of highest IoU >= `iou_thres`
    (among those `allowed[box, other]`, when given)."""
    ious = box_iou(boxes, others)
    if allowed is not None:
        ious = np.where(allowed, ious, 0.0)
    taken = np.zeros(len(others), bool)
    pairs = []
    for d in np.argsort(-np.asarray(scores), kind="stable"):
        if not len(others):
            break
        free = np.where(taken, -1.0, ious[d])
        g = int(np.argmax(free))
        if free[g] >= iou_thres:
            taken[g] = True
            pairs.append((int(d), g, float(free[g])))
    return pairs


def confusion_matrix(detections: Sequence[Detections], truth: Sequence[Annotations], num_classes: int,
                     score_thres: float, iou_thres: float = 0.5) -> np.ndarray:
    """(C + 1, C + 1) counts, rows the labelled class, columns the detected one, the last of each "background":
    detections with score >= `score_thres` are matched to labels of any class by IoU (greedy, best score first); a
    matched pair counts at (label class, detected class), a missed label at (class, background), a detection that
    matches no label at (background, class). Every label counts once, so the sum is labels + false positives."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for det, gt in zip(detections, truth):
        keep = det.scores >= score_thres
        boxes, scores, classes = det.boxes[keep], det.scores[keep], det.classes[keep].astype(np.int64)
        labels = np.asarray(gt.classes, np.int64)
        pairs = greedy_match(boxes, scores, gt.boxes, iou_thres)
        matched_d = {d for d, _, _ in pairs}
        matched_g = {g for _, g, _ in pairs}
        for d, g, _ in pairs:
            matrix[labels[g], classes[d]] += 1
        for g in set(range(len(labels))) - matched_g:
            matrix[labels[g], num_classes] += 1
        for d in set(range(len(classes))) - matched_d:
            matrix[num_classes, classes[d]] += 1
    return matrix


def disagreement(a: Detections, b: Detections, score_thres: float, iou_thres: float = 0.5) -> float:
    """How far two models' confident detections of one image are apart: each detection the other has no match for
    (same class, IoU >= `iou_thres`) counts 1, each matched pair 1 - IoU; 0 when they agree box for box."""
    ka, kb = a.scores >= score_thres, b.scores >= score_thres
    same = a.classes[ka][:, None] == b.classes[kb][None, :]
    pairs = greedy_match(a.boxes[ka], a.scores[ka], b.boxes[kb], iou_thres, same)
    unmatched = int(ka.sum()) + int(kb.sum()) - 2 * len(pairs)
    return unmatched + sum(1.0 - iou for _, _, iou in pairs)


def most_disagreeing(artifact: Sequence[Detections], reference: Sequence[Detections], score_thres: float,
                     count: int) -> list[tuple[int, float]]:
    """(image index, disagreement) of the `count` images where the two differ most (ties: the lower index), only
    images where they differ at all."""
    found = [(i, disagreement(a, r, score_thres)) for i, (a, r) in enumerate(zip(artifact, reference))]
    found = [f for f in found if f[1] > 0]
    return sorted(found, key=lambda f: (-f[1], f[0]))[:count]


def confusion_record(detections: Sequence[Detections], truth: Sequence[Annotations], class_names: Sequence[str],
                     score_thres: float, iou_thres: float = 0.5) -> dict[str, Any]:
    """report.json's `task.confusion`: confusion_matrix with its classes (the last `background`) and thresholds."""
    matrix = confusion_matrix(detections, truth, len(class_names), score_thres, iou_thres)
    return {"classes": [*class_names, "background"], "score_thres": score_thres, "iou_thres": iou_thres,
            "matrix": matrix.tolist()}


def _rows(d: Detections, keep: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 1) for v in box] + [round(float(s), 3), int(c)]
            for box, s, c in zip(d.boxes[keep], d.scores[keep], d.classes[keep])]


def disagreeing_images(art_dets: Sequence[Detections], ref_dets: Sequence[Detections],
                       truth: Sequence[Annotations] | None,
                       score_thres: float, count: int) -> list[dict[str, Any]]:
    """The `count` images where the two models' confident detections differ most, each with both sets of boxes
    (and the labels) for report.html to draw."""
    out = []
    for i, amount in most_disagreeing(art_dets, ref_dets, score_thres, count):
        a, r = art_dets[i], ref_dets[i]
        entry: dict[str, Any] = {"image": i, "disagreement": round(amount, 4),
                                 "artifact": _rows(a, a.scores >= score_thres),
                                 "reference": _rows(r, r.scores >= score_thres)}
        if truth is not None:
            entry["labels"] = [[int(c)] + [round(float(v), 1) for v in box]
                               for box, c in zip(truth[i].boxes, truth[i].classes)]
        out.append(entry)
    return out


__all__ = ["confusion_matrix", "confusion_record", "disagreeing_images", "disagreement", "greedy_match",
           "most_disagreeing"]
