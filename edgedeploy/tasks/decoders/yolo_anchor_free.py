"""YOLOv8/v9/v11/v12 detect heads (Ultralytics export): one output (B, 4 + nc, N), channels [cx, cy, w, h, class
scores...] in input pixels, scores after sigmoid, no objectness."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, Detections, Shapes, one_output, static, xywh_to_xyxy
from edgedeploy.tasks.decoders.nms import select_and_nms


def channels_first(shape: tuple, extra: int, num_classes: int | None, decoder: str, name: str,
                   what: str = "4 + nc") -> str | None:
    """Refusal for a (B, 4 + nc + extra, N) head output, or None."""
    c, n = static(shape[1]), static(shape[2])
    if c is None:
        return f"{decoder} needs a static channel dimension ({what}), {name} has {list(shape)}"
    if num_classes is not None and c != 4 + num_classes + extra:
        return (f"{decoder} reads (B, {what}, N) = (B, {4 + num_classes + extra}, N) for {num_classes} classes, "
                f"{name} is {list(shape)}")
    if c < 5 + extra:
        return f"{decoder} reads (B, {what}, N) with nc >= 1, {name} is {list(shape)}"
    if n is not None and n < c:
        return (f"{decoder} reads (B, {what}, N) with more candidates than channels, {name} is {list(shape)} "
                "(candidates first: a YOLOv5-style head, or a transposed export?)")
    return None


class YoloAnchorFree:
    name = "yolo-anchor-free"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = one_output(shapes, 3)
        if isinstance(found, str):
            return f"{self.name} {found}"
        if kpt_shape is not None:
            return (f"{self.name} reads boxes only, the data has keypoints (kpt_shape {list(kpt_shape)}: yolo-pose "
                    f"reads {found[0]} {list(found[1])})")
        return channels_first(found[1], 0, num_classes, self.name, found[0])

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        pred = np.asarray(next(iter(outputs.values())), np.float64)
        out = []
        for p in pred:
            p = p.T
            dets, _ = select_and_nms(xywh_to_xyxy(p[:, :4]), p[:, 4:], settings.conf_thres, settings.iou_thres,
                                     settings.max_det, settings.multi_label)
            out.append(dets)
        return out
