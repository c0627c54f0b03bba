"""YOLOv5/v7 heads: one output (B, N, 5 + nc), rows [cx, cy, w, h, objectness, class scores...] in input pixels,
after sigmoid; score = objectness x class score."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, Detections, Shapes, one_output, static, xywh_to_xyxy
from edgedeploy.tasks.decoders.nms import select_and_nms


class YoloObjectness:
    name = "yolo-objectness"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = one_output(shapes, 3)
        if isinstance(found, str):
            return f"{self.name} {found}"
        name, (_, n, c) = found
        n, c = static(n), static(c)
        if c is None:
            return f"{self.name} needs a static last dimension (5 + classes), {name} has {list(shapes[name])}"
        if num_classes is not None and c != 5 + num_classes:
            return (f"{self.name} reads (B, N, 5 + nc) = (B, N, {5 + num_classes}) for {num_classes} classes, "
                    f"{name} is {list(shapes[name])}")
        if c < 6:
            return f"{self.name} reads (B, N, 5 + nc) with nc >= 1, {name} is {list(shapes[name])}"
        if n is not None and n < c:
            return (f"{self.name} reads (B, N, 5 + nc) with more candidates than channels, {name} is "
                    f"{list(shapes[name])} (channels first: an anchor-free head?)")
        return None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        pred = np.asarray(next(iter(outputs.values())), np.float64)
        out = []
        for p in pred:
            p = p[p[:, 4] > settings.conf_thres]  # objectness first, as YOLOv5/7 do
            dets, _ = select_and_nms(xywh_to_xyxy(p[:, :4]), p[:, 4:5] * p[:, 5:], settings.conf_thres,
                                     settings.iou_thres, settings.max_det, settings.multi_label)
            out.append(dets)
        return out
