"""COCO mAP through faster-coco-eval (the evaluator COCO numbers come from): ground truth and predictions, both in
original image coordinates, as COCO dicts; AP@[.50:.95], AP@.50 and per-class AP for bbox, segm and keypoints.

Figures are COCO's area range "all" at 100 detections per image and class (20 for keypoints). A class without
ground truth is left out of the mean, as COCOeval leaves it out.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedeploy.data.base import Annotations
from edgedeploy.tasks.decoders.base import Detections

# COCO's 17 person keypoint sigmas (x10, as published); other skeletons get 1/K each (Ultralytics' rule)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # where COCOeval samples precision
COCO_KPT_SIGMAS = [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]


def rle_json(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def encode_masks(masks: np.ndarray) -> list[dict]:
    """(K, H, W) bool -> COCO RLE dicts (JSON-ready)."""
    from faster_coco_eval.core import mask as mask_api

    if len(masks) == 0:
        return []
    return [rle_json(r) for r in mask_api.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))]


def ground_truth(annotations: Sequence[Annotations], sizes: Sequence[tuple[int, int]], class_names: Sequence[str],
                 category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """A COCO ground-truth dict: image i gets id annotations[i].image_id (or i + 1), class k category_ids[k] (or
    k + 1). `sizes` are the original (height, width)."""
    cats = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    images, anns = [], []
    for i, (a, (h, w)) in enumerate(zip(annotations, sizes)):
        image_id = a.image_id if a.image_id is not None else i + 1
        images.append({"id": image_id, "width": int(w), "height": int(h)})
        crowd = a.iscrowd if a.iscrowd is not None else np.zeros(len(a.classes), bool)
        for j, (box, cls) in enumerate(zip(a.boxes, a.classes)):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": cats[int(cls)],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": int(crowd[j])}
            if a.rle is not None and a.rle[j] is not None:
                ann["segmentation"] = a.rle[j]
            elif a.polygons is not None and a.polygons[j]:
                ann["segmentation"] = [p.ravel().tolist() for p in a.polygons[j]]
            if a.keypoints is not None:
                kp = a.keypoints[j]
                ann["keypoints"] = kp.ravel().tolist()
                ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
            anns.append(ann)
    categories = [{"id": c, "name": str(n)} for c, n in zip(cats, class_names)]
    return {"images": images, "annotations": anns, "categories": categories}


def results(detections: Sequence[Detections], image_ids: Sequence[int], category_ids: Sequence[int],
            masks_rle: Sequence[list[dict]] | None = None) -> list[dict[str, Any]]:
    """COCO results-format entries (image_id, category_id, bbox xywh, score[, segmentation][, keypoints]) for
    detections already in original image coordinates. Values are not rounded: rounded scores tie, and ties
    reorder detections, which moves mAP (3e-5 on the demo)."""
    out = []
    for i, (d, image_id) in enumerate(zip(detections, image_ids)):
        for j in range(len(d)):
            x1, y1, x2, y2 = (float(v) for v in d.boxes[j])
            entry = {"image_id": int(image_id), "category_id": int(category_ids[int(d.classes[j])]),
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(d.scores[j])}
            if masks_rle is not None:
                entry["segmentation"] = masks_rle[i][j]
            if d.keypoints is not None:
                entry["keypoints"] = [float(v) for v in d.keypoints[j].ravel()]
            out.append(entry)
    return out


def evaluate(gt: dict[str, Any], dets: list[dict[str, Any]], iou_type: str = "bbox",
             class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """{"map50_95", "map50", "ap_per_class": {name: AP50:95}, "ap50_per_class": {name: AP50}, "pr50": precision at
    RECALL_POINTS at IoU 0.5, averaged over the classes with ground truth} for `iou_type` (bbox, segm or
    keypoints); classes without ground truth are absent from the per-class tables."""
    from faster_coco_eval import COCO, COCOeval_faster

    names = list(class_names) if class_names is not None else [c["name"] for c in gt["categories"]]
    cat_ids = [c["id"] for c in gt["categories"]]
    has_gt = {a["category_id"] for a in gt["annotations"] if not a.get("iscrowd")}
    if not dets:
        per = {names[k]: 0.0 for k, c in enumerate(cat_ids) if c in has_gt}
        return {"map50_95": 0.0, "map50": 0.0, "ap_per_class": per, "ap50_per_class": dict(per),
                "pr50": [0.0] * len(RECALL_POINTS)}
    kwargs: dict[str, Any] = {}
    if iou_type == "keypoints":
        k = len(next(d["keypoints"] for d in dets)) // 3
        kwargs["kpt_oks_sigmas"] = np.array(COCO_KPT_SIGMAS) / 10 if k == 17 else np.full(k, 1 / k)
    logger = logging.getLogger("faster_coco_eval")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO(gt)
            coco_dt = coco_gt.loadRes(dets)
            ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, print_function=lambda *a, **k: None,
                                 **kwargs)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    finally:
        logger.setLevel(level)
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    order = list(ev.params.catIds)
    per, per50, curves = {}, {}, []
    for k, cat in enumerate(cat_ids):
        if cat not in has_gt or cat not in order:
            continue
        p = precision[:, :, order.index(cat), 0, -1]
        per[names[k]] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
        p50 = p[0]
        per50[names[k]] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
        curves.append(np.clip(p50, 0.0, None))
    pr50 = np.mean(curves, axis=0).tolist() if curves else [0.0] * len(RECALL_POINTS)
    return {"map50_95": float(max(ev.stats[0], 0.0)), "map50": float(max(ev.stats[1], 0.0)),
            "ap_per_class": per, "ap50_per_class": per50, "pr50": pr50}
