"""Detectors that output boxes and scores as separate tensors (xyxy boxes in input pixels), in one of four forms:

- dense (SSD/RetinaNet-style, before NMS): boxes (B, N, 4), scores (B, N, C) probabilities; C = nc + 1 means a
  background column first (torchvision SSD), dropped; class-aware NMS here.
- ONNX NonMaxSuppression: boxes (B, N, 4), scores (B, C, N) and the selected indices (M, 3) [batch, class, box].
- TensorRT EfficientNMS: num_dets (B, 1), boxes (B, K, 4), scores (B, K), classes (B, K).
- torchvision after NMS (batch 1): boxes (K, 4), scores (K,), labels (K,).
"""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import (DecodeSettings, Detections, Shapes, check_values, describe, static)
from edgedeploy.tasks.decoders.nms import select_and_nms


def layout(shapes: Shapes, num_classes: int | None) -> tuple[str, dict[str, str]] | str:
    """(form, role -> output name), or a refusal sentence."""
    ranks = sorted(len(s) for s in shapes.values())
    names = list(shapes)
    by_rank = {r: [n for n in names if len(shapes[n]) == r] for r in set(ranks)}
    box4 = [n for n in names if len(shapes[n]) in (2, 3) and static(shapes[n][-1]) == 4]
    if ranks == [3, 3] and len(box4) >= 1:
        boxes = box4[0] if len(box4) == 1 else next((n for n in box4 if "box" in n.lower()), box4[0])
        scores = next(n for n in names if n != boxes)
        if shapes[scores][1] != shapes[boxes][1]:
            return f"reads boxes (B, N, 4) and scores (B, N, C) for the same N, the model has {describe(shapes)}"
        c = static(shapes[scores][2])
        if c is None or (num_classes is not None and c not in (num_classes, num_classes + 1)):
            return (f"reads scores (B, N, nc or nc + 1) for {num_classes} classes, {scores} is "
                    f"{list(shapes[scores])}")
        return "dense", {"boxes": boxes, "scores": scores}
    if ranks == [2, 3, 3] and box4:
        boxes = next(n for n in by_rank[3] if n in box4)
        scores = next(n for n in by_rank[3] if n != boxes)
        selected = by_rank[2][0]
        if static(shapes[selected][1]) != 3 or shapes[scores][2] != shapes[boxes][1]:
            return (f"reads NonMaxSuppression's boxes (B, N, 4), scores (B, C, N) and indices (M, 3), the model "
                    f"has {describe(shapes)}")
        return "onnx-nms", {"boxes": boxes, "scores": scores, "selected": selected}
    if ranks == [2, 2, 2, 3] and box4:
        boxes = box4[0]
        counts = [n for n in by_rank[2] if static(shapes[n][1]) == 1]
        rest = [n for n in by_rank[2] if n not in counts[:1]]
        if len(counts) < 1 or len(rest) != 2:
            return (f"reads EfficientNMS's num_dets (B, 1), boxes (B, K, 4), scores (B, K), classes (B, K), the "
                    f"model has {describe(shapes)}")
        scores = next((n for n in rest if "score" in n.lower()), rest[0])
        classes = next(n for n in rest if n != scores)
        return "efficient-nms", {"count": counts[0], "boxes": boxes, "scores": scores, "classes": classes}
    if ranks == [1, 1, 2] and box4:
        boxes = box4[0]
        ones = by_rank[1]
        scores = next((n for n in ones if "score" in n.lower()), ones[0])
        labels = next(n for n in ones if n != scores)
        return "post-nms", {"boxes": boxes, "scores": scores, "labels": labels}
    return ("reads boxes with scores: (B, N, 4) + (B, N, C); NonMaxSuppression's three outputs; EfficientNMS's "
            f"four; or torchvision's (K, 4) + (K,) + (K,); the model has {describe(shapes)}")


class BoxesScores:
    name = "boxes-scores"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = layout(shapes, num_classes)
        return f"{self.name} {found}" if isinstance(found, str) else None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        form, role = layout({k: v.shape for k, v in outputs.items()}, settings.num_classes)  # type: ignore[misc]
        get = {r: np.asarray(outputs[n]) for r, n in role.items()}
        if form == "post-nms":
            keep = np.flatnonzero(get["scores"] > settings.conf_thres)
            keep = keep[np.argsort(-get["scores"][keep], kind="stable")][:settings.max_det]
            return [Detections(get["boxes"][keep].astype(np.float64), get["scores"][keep].astype(np.float64),
                               get["labels"][keep].astype(np.int64))]
        if form == "efficient-nms":
            out = []
            for n, b, s, c in zip(get["count"][:, 0], get["boxes"], get["scores"], get["classes"]):
                n = int(n)
                keep = np.flatnonzero(s[:n] > settings.conf_thres)[:settings.max_det]
                out.append(Detections(b[keep].astype(np.float64), s[keep].astype(np.float64),
                                      c[keep].astype(np.int64)))
            return out
        boxes = get["boxes"].astype(np.float64)
        if form == "onnx-nms":
            sel = get["selected"].astype(np.int64)
            check_values(bool(len(sel) == 0 or (sel.min() >= 0 and sel[:, 0].max() < len(boxes)
                                                 and sel[:, 2].max() < boxes.shape[1])),
                         self.name, "the selected indices point outside the boxes")
            out = []
            for i, (b, s) in enumerate(zip(boxes, get["scores"])):
                rows = sel[sel[:, 0] == i]
                score = s[rows[:, 1], rows[:, 2]].astype(np.float64)
                keep = np.flatnonzero(score > settings.conf_thres)
                keep = keep[np.argsort(-score[keep], kind="stable")][:settings.max_det]
                out.append(Detections(b[rows[keep, 2]], score[keep], rows[keep, 1]))
            return out
        scores = get["scores"].astype(np.float64)
        if settings.num_classes is not None and scores.shape[-1] == settings.num_classes + 1:
            scores = scores[..., 1:]  # torchvision's background column
        check_values(bool(((scores >= 0) & (scores <= 1)).all()), self.name,
                     "scores outside [0, 1]; the dense form reads probabilities")
        return [select_and_nms(b, s, settings.conf_thres, settings.iou_thres, settings.max_det, True)[0]
                for b, s in zip(boxes, scores)]
