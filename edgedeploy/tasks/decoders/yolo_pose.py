"""YOLOv8/v11 pose (Ultralytics export): one output (B, 4 + nc + K x d, N), channels [cx, cy, w, h, class scores,
then K keypoints of (x, y) or (x, y, visibility score)] in input pixels. K and d come from the data's kpt_shape."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, Detections, Shapes, one_output, xywh_to_xyxy
from edgedeploy.tasks.decoders.nms import select_and_nms
from edgedeploy.tasks.decoders.yolo_anchor_free import channels_first


class YoloPose:
    name = "yolo-pose"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = one_output(shapes, 3)
        if isinstance(found, str):
            return f"{self.name} {found}"
        if kpt_shape is None:
            return f"{self.name} needs the keypoint layout (the data's kpt_shape) to read {found[0]}"
        k, d = kpt_shape
        return channels_first(found[1], k * d, num_classes, self.name, found[0], what=f"4 + nc + {k}x{d}")

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        k, d = settings.kpt_shape  # type: ignore[misc]
        pred = np.asarray(next(iter(outputs.values())), np.float64)
        out = []
        for p in pred:
            p = p.T
            dets, kp = select_and_nms(xywh_to_xyxy(p[:, :4]), p[:, 4:-k * d], settings.conf_thres,
                                      settings.iou_thres, settings.max_det, settings.multi_label, p[:, -k * d:])
            kp = kp.reshape(-1, k, d)
            if d == 2:
                kp = np.concatenate([kp, np.ones((len(kp), k, 1))], axis=2)
            dets.keypoints = kp
            out.append(dets)
        return out
