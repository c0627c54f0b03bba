"""Semantic segmentation: a confusion matrix accumulated image by image (memory bounded by C x C), and from it the
mean IoU over the classes present, per-class IoU and pixel accuracy. Pixels labelled `ignore_index` (255, the
VOC/Cityscapes convention) are not counted."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int,
              ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(C, C) counts: rows are the true class, columns the predicted one."""
    t = np.asarray(truth, np.int64).ravel()
    p = np.asarray(predicted, np.int64).ravel()
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    return np.bincount(t[keep] * num_classes + p[keep].clip(0, num_classes - 1),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(matrix: np.ndarray, class_names: list[str] | None = None) -> dict:
    """mIoU over the classes that occur in the truth or the prediction, per-class IoU, pixel accuracy."""
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    present = union > 0
    iou = np.where(present, inter / np.where(present, union, 1), np.nan)
    names = class_names or [str(i) for i in range(len(matrix))]
    total = matrix.sum()
    return {"miou": float(np.nanmean(iou)) if present.any() else 0.0,
            "pixel_accuracy": float(inter.sum() / total) if total else 0.0,
            "iou_per_class": {names[k]: float(iou[k]) for k in np.flatnonzero(present)}}
