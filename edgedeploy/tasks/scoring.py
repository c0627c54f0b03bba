"""Task figures from two streamed runs over the same images (the reference model's and the artifact's): each
against the labels, the artifact against the reference's own predictions, and the bootstrap interval of the drop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedeploy.data.base import Annotations

from edgedeploy.tasks.metrics import bootstrap, coco, semantic
from edgedeploy.tasks.streamed import StreamResult


def image_ids(run: StreamResult) -> list[int]:
    return [a.image_id if a is not None and a.image_id is not None else i + 1 for i, a in enumerate(run.annotations)]


def coco_results(run: StreamResult, category_ids: Sequence[int], iou_type: str = "bbox") -> list[dict[str, Any]]:
    return coco.results(run.predictions, image_ids(run), category_ids,  # type: ignore[arg-type]
                        run.masks_rle if iou_type == "segm" else None)


def as_ground_truth(run: StreamResult, score_thres: float) -> list[Annotations]:
    """A run's own detections above `score_thres` as ground truth (to score another run against it)."""
    out = []
    for det, a in zip(run.predictions, run.annotations):
        keep = det.scores >= score_thres  # type: ignore[union-attr]
        kp = det.keypoints[keep] if det.keypoints is not None else None  # type: ignore[union-attr]
        if kp is not None:
            kp = np.concatenate([kp[..., :2], np.where(kp[..., 2:] > 0.5, 2.0, 0.0)], axis=-1)
        out.append(Annotations(det.boxes[keep], det.classes[keep], keypoints=kp,  # type: ignore[union-attr]
                               image_id=None if a is None else a.image_id))
    return out


def iou_types(run: StreamResult, labels: Sequence[Annotations | None]) -> list[str]:
    types = ["bbox"]
    if run.masks_rle is not None and any(a is not None and (a.polygons or a.rle) for a in labels):
        types.append("segm")
    if run.predictions and getattr(run.predictions[0], "keypoints", None) is not None and any(
            a is not None and a.keypoints is not None for a in labels):
        types.append("keypoints")
    return types


def detection_scores(reference: StreamResult, artifact: StreamResult, class_names: Sequence[str],
                     category_ids: Sequence[int] | None = None, reference_score_thres: float = 0.25,
                     resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """mAP@[.5:.95] / mAP@.5 / per-class AP (faster-coco-eval) of both runs vs the labels (when the data has
    them) for bbox and, where the data and decoder have them, segm and keypoints; the artifact vs the reference's
    detections (bbox); the bootstrap interval of the bbox drop."""
    if reference.keys != artifact.keys:
        raise ValueError("the two runs cover different images")
    cats = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    out: dict[str, Any] = {"kind": "detection", "decoder": artifact.decoder, "images": len(artifact.keys)}
    labelled = all(a is not None for a in artifact.annotations)
    if labelled:
        gt = coco.ground_truth(artifact.annotations, artifact.sizes, class_names, cats)  # type: ignore[arg-type]
        for kind in iou_types(artifact, artifact.annotations):
            ref = coco.evaluate(gt, coco_results(reference, cats, kind), kind, class_names)
            art = coco.evaluate(gt, coco_results(artifact, cats, kind), kind, class_names)
            prefix = "" if kind == "bbox" else f"{kind}_"
            out.update({f"{prefix}map50_95": art["map50_95"], f"{prefix}map50": art["map50"],
                        f"{prefix}reference_map50_95": ref["map50_95"], f"{prefix}reference_map50": ref["map50"],
                        f"{prefix}map50_95_drop": ref["map50_95"] - art["map50_95"],
                        f"{prefix}map50_drop": ref["map50"] - art["map50"],
                        f"{prefix}ap_per_class": art["ap_per_class"],
                        f"{prefix}ap50_per_class": art["ap50_per_class"],
                        f"{prefix}reference_ap_per_class": ref["ap_per_class"]})
        if resamples:
            nc = len(class_names)
            ref_m = bootstrap.match_all(reference.predictions, artifact.annotations, nc)  # type: ignore[arg-type]
            art_m = bootstrap.match_all(artifact.predictions, artifact.annotations, nc)  # type: ignore[arg-type]
            out.update(bootstrap.drop_interval(ref_m, art_m, len(artifact.keys), resamples, seed))
    pseudo = as_ground_truth(reference, reference_score_thres)
    vs_ref = coco.evaluate(coco.ground_truth(pseudo, artifact.sizes, class_names, cats),
                           coco_results(artifact, cats), "bbox", class_names)
    out.update({"map50_vs_reference": vs_ref["map50"], "map50_95_vs_reference": vs_ref["map50_95"],
                "reference_score_thres": reference_score_thres})
    return out


def classification_scores(reference: StreamResult, artifact: StreamResult) -> dict[str, Any]:
    """top-1/top-5 vs labels for both runs and top-1 agreement with the reference."""
    ref = [p.classes for p in reference.predictions]  # type: ignore[union-attr]
    art = [p.classes for p in artifact.predictions]  # type: ignore[union-attr]
    out: dict[str, Any] = {"kind": "classification", "images": len(art),
                           "top1_agreement": float(np.mean([a[0] == r[0] for a, r in zip(art, ref)]))}
    labels = [a.label if a is not None else None for a in artifact.annotations]
    if labels and all(v is not None for v in labels):
        for name, preds in (("", art), ("reference_", ref)):
            out[f"{name}top1"] = float(np.mean([p[0] == y for p, y in zip(preds, labels)]))
            out[f"{name}top5"] = float(np.mean([y in p[:5] for p, y in zip(preds, labels)]))
        out["top1_drop"] = out["reference_top1"] - out["top1"]
    return out


def semantic_scores(reference: StreamResult, artifact: StreamResult, num_classes: int,
                    class_names: list[str] | None = None) -> dict[str, Any]:
    """mIoU / pixel accuracy of the artifact's label maps against the reference's."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for r, a in zip(reference.predictions, artifact.predictions):
        matrix += semantic.confusion(r.labels, a.labels, num_classes)  # type: ignore[union-attr]
    s = semantic.scores(matrix, class_names)
    return {"kind": "semantic", "images": len(artifact.keys), "miou_vs_reference": s["miou"],
            "pixel_accuracy_vs_reference": s["pixel_accuracy"], "iou_per_class_vs_reference": s["iou_per_class"]}


