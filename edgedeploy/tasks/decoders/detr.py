"""DETR-family heads (DETR, Deformable DETR, RT-DETR from transformers; Ultralytics RT-DETR): boxes as normalized
[cx, cy, w, h] per query, no NMS.

- two outputs, boxes (B, Q, 4) and logits (B, Q, C): C = nc is sigmoid (RT-DETR, Deformable DETR: the top
  `max_det` query-class pairs), C = nc + 1 is softmax with a last "no object" class (DETR: each query's best real
  class). The number of classes must be known to tell them apart.
- one output (B, Q, 4 + nc) (Ultralytics RT-DETR export): boxes then class scores, sigmoid already applied.
"""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import (DecodeSettings, Detections, Shapes, check_values, describe, static,
                                            xywh_to_xyxy)


def split(shapes: Shapes) -> tuple[str, str] | str:
    """(boxes output, logits output) of a two-output signature, or a refusal."""
    if len(shapes) != 2 or any(len(s) != 3 for s in shapes.values()):
        return f"reads boxes (B, Q, 4) and logits (B, Q, C), the model has {describe(shapes)}"
    names = list(shapes)
    boxes = [n for n in names if static(shapes[n][2]) == 4]
    if len(boxes) == 2:
        boxes = [n for n in names if "box" in n.lower()] or boxes[:1]
    if len(boxes) != 1:
        return f"reads boxes (B, Q, 4) and logits (B, Q, C), the model has {describe(shapes)}"
    logits = next(n for n in names if n != boxes[0])
    qb, ql = shapes[boxes[0]][1], shapes[logits][1]
    if qb != ql:
        return f"reads boxes and logits for the same queries, the model has {describe(shapes)}"
    return boxes[0], logits


class Detr:
    name = "detr"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        if num_classes is None:
            return f"{self.name} needs the number of classes (the data's class names) to read the logits"
        if len(shapes) == 1:
            name, shape = next(iter(shapes.items()))
            if len(shape) != 3 or static(shape[2]) != 4 + num_classes:
                return (f"{self.name} reads one output (B, Q, 4 + nc) = (B, Q, {4 + num_classes}) or boxes and "
                        f"logits, the model has {name} {list(shape)}")
            return None
        found = split(shapes)
        if isinstance(found, str):
            return f"{self.name} {found}"
        c = static(shapes[found[1]][2])
        if c not in (num_classes, num_classes + 1):
            return (f"{self.name} reads logits of {num_classes} (sigmoid) or {num_classes + 1} (softmax with "
                    f"no-object) classes, {found[1]} is {list(shapes[found[1]])}")
        return None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        shapes = {k: v.shape for k, v in outputs.items()}
        if len(outputs) == 1:
            pred = np.asarray(next(iter(outputs.values())), np.float64)
            boxes, probs, softmax = pred[..., :4], pred[..., 4:], False
            check_values(bool(((probs >= 0) & (probs <= 1)).all()), self.name, "class scores outside [0, 1]")
        else:
            box_name, logit_name = split(shapes)  # type: ignore[misc]
            boxes = np.asarray(outputs[box_name], np.float64)
            logits = np.asarray(outputs[logit_name], np.float64)
            softmax = logits.shape[-1] == (settings.num_classes or 0) + 1
            if softmax:
                e = np.exp(logits - logits.max(-1, keepdims=True))
                probs = (e / e.sum(-1, keepdims=True))[..., :-1]
            else:
                probs = 1 / (1 + np.exp(-logits))
        check_values(bool((np.abs(boxes) <= 2).all()), self.name,
                     f"boxes reach {np.abs(boxes).max():.4g}; DETR boxes are normalized to [0, 1]")
        h, w = settings.input_size
        out = []
        for b, p in zip(boxes, probs):
            xyxy = xywh_to_xyxy(b) * [w, h, w, h]
            if softmax:  # each query's best real class
                cls = p.argmax(-1)
                score = p[np.arange(len(p)), cls]
                rows = np.arange(len(p))
            else:  # the best query-class pairs
                flat = p.ravel()
                rows, cls = np.divmod(np.arange(flat.size), p.shape[1])
                score = flat
            keep = np.flatnonzero(score > settings.conf_thres)
            keep = keep[np.argsort(-score[keep], kind="stable")][:settings.max_det]
            out.append(Detections(xyxy[rows[keep]], score[keep], cls[keep].astype(np.int64)))
        return out
