"""NMS-free YOLO exports (YOLOv10, YOLO26, Ultralytics `nms=True`): one output (B, K, 6), rows
[x1, y1, x2, y2, score, class] in input pixels, best first; no NMS."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, Detections, Shapes, check_values, one_output, static


class YoloEnd2End:
    name = "yolo-end2end"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = one_output(shapes, 3)
        if isinstance(found, str):
            return f"{self.name} {found}"
        name, shape = found
        if static(shape[2]) != 6:
            return f"{self.name} reads (B, K, 6) rows [x1, y1, x2, y2, score, class], {name} is {list(shape)}"
        return None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        pred = np.asarray(next(iter(outputs.values())), np.float64)
        cls = pred[..., 5]
        limit = np.inf if settings.num_classes is None else settings.num_classes
        check_values(bool(((cls == np.round(cls)) & (cls >= 0) & (cls < limit)).all()), self.name,
                     f"column 5 holds values that are not class indices below {limit} (e.g. {cls.ravel()[:3]})")
        out = []
        for p in pred:
            p = p[p[:, 4] > settings.conf_thres]
            p = p[np.argsort(-p[:, 4], kind="stable")][:settings.max_det]
            out.append(Detections(p[:, :4], p[:, 4], p[:, 5].astype(np.int64)))
        return out
