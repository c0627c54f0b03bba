"""Candidate selection and class-aware greedy NMS in numpy, vectorized over candidates.

Greedy NMS keeps boxes in descending score order, each suppressing the later ones that overlap it by more than the
IoU threshold. A kept box is final once it is kept, so the loop stops after `max_det` keeps: at most `max_det`
vectorized IoU rows, whatever the number of candidates. Classes never suppress each other (boxes are offset per
class, as Ultralytics and torchvision's batched_nms do).
"""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import Detections

MAX_CANDIDATES = 30_000  # Ultralytics' max_nms: the highest-scoring candidates that enter NMS


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, (n, 4) x (m, 4) -> (n, m)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float, max_det: int) -> np.ndarray:
    """Indices kept by class-aware greedy NMS, best first (ties: the lower index first), at most `max_det`."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes + (classes.astype(np.float64) * 2 * span)[:, None]
    alive = np.ones(len(order), bool)
    keep: list[int] = []
    pos = 0
    while len(keep) < max_det:
        rest = np.flatnonzero(alive[pos:])
        if not rest.size:
            break
        pos += int(rest[0])
        i = int(order[pos])
        keep.append(i)
        alive[pos] = False
        later = order[pos + 1:]
        ious = box_iou(shifted[i:i + 1], shifted[later])[0]
        alive[pos + 1:] &= ious <= iou_thres
        pos += 1
    return np.asarray(keep, np.int64)


def select_and_nms(boxes: np.ndarray, class_scores: np.ndarray, conf_thres: float, iou_thres: float, max_det: int,
                   multi_label: bool, extra: np.ndarray | None = None) -> tuple[Detections, np.ndarray | None]:
    """One image: xyxy boxes (N, 4) with per-class scores (N, C) -> detections after thresholding and NMS, and the
    rows of `extra` (N, E) (mask coefficients, keypoints) that go with them."""
    if multi_label:
        rows, cls = np.nonzero(class_scores > conf_thres)
        score = class_scores[rows, cls]
    else:
        cls = class_scores.argmax(1) if class_scores.shape[1] else np.zeros(len(class_scores), np.int64)
        score = class_scores[np.arange(len(class_scores)), cls]
        rows = np.flatnonzero(score > conf_thres)
        cls, score = cls[rows], score[rows]
    if len(score) > MAX_CANDIDATES:
        top = np.argsort(-score, kind="stable")[:MAX_CANDIDATES]
        rows, cls, score = rows[top], cls[top], score[top]
    b = boxes[rows].astype(np.float64)
    keep = nms(b, score, cls, iou_thres, max_det)
    dets = Detections(b[keep], score[keep].astype(np.float64), cls[keep].astype(np.int64))
    return dets, None if extra is None else extra[rows[keep]]
