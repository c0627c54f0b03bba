"""YOLOv8/v11 instance segmentation (Ultralytics export): detections (B, 4 + nc + nm, N) whose last nm channels are
mask coefficients, and prototypes (B, nm, mh, mw). A detection's mask is sigmoid(coefficients . prototypes),
upsampled bilinearly to the input size, cut to its box, thresholded at 0.5 (Ultralytics' process_mask)."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, Detections, Shapes, describe, static, xywh_to_xyxy
from edgedeploy.tasks.decoders.nms import select_and_nms
from edgedeploy.tasks.decoders.yolo_anchor_free import channels_first


def roles(shapes: Shapes) -> tuple[str, str] | None:
    if len(shapes) != 2:
        return None
    by_rank = {len(s): n for n, s in shapes.items()}
    return (by_rank[3], by_rank[4]) if set(by_rank) == {3, 4} else None


def bilinear_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) weights of bilinear resampling, half-pixel centres (align_corners=False)."""
    src = ((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5).clip(0, size_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = (src - lo).astype(np.float32)
    m = np.zeros((size_out, size_in), np.float32)
    m[np.arange(size_out), lo] += 1 - frac
    m[np.arange(size_out), hi] += frac
    return m


def assemble_masks(coefficients: np.ndarray, protos: np.ndarray, boxes: np.ndarray,
                   size: tuple[int, int]) -> np.ndarray:
    """(K, nm) coefficients x (nm, mh, mw) prototypes -> (K, H, W) bool masks cut to the xyxy boxes."""
    nm, mh, mw = protos.shape
    h, w = size
    logits = (coefficients.astype(np.float32) @ protos.reshape(nm, -1).astype(np.float32)).reshape(-1, mh, mw)
    up = bilinear_matrix(h, mh) @ logits @ bilinear_matrix(w, mw).T  # (K, H, W), sigmoid(x) > 0.5 <=> x > 0
    ys, xs = np.arange(h), np.arange(w)  # a pixel is inside when its index is (Ultralytics' crop_mask)
    inside = ((ys[None, :, None] >= boxes[:, 1, None, None]) & (ys[None, :, None] < boxes[:, 3, None, None])
              & (xs[None, None, :] >= boxes[:, 0, None, None]) & (xs[None, None, :] < boxes[:, 2, None, None]))
    return (up > 0) & inside


class YoloSeg:
    name = "yolo-seg"
    produces = "detections"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = roles(shapes)
        if found is None:
            return (f"{self.name} reads detections (B, 4 + nc + nm, N) and prototypes (B, nm, H, W), the model has "
                    f"{describe(shapes)}")
        pred, protos = found
        nm = static(shapes[protos][1])
        if nm is None:
            return f"{self.name} needs a static prototype count, {protos} is {list(shapes[protos])}"
        why = channels_first(shapes[pred], nm, num_classes, self.name, pred, what=f"4 + nc + {nm}")
        return why

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[Detections]:
        pred_name, proto_name = roles({k: v.shape for k, v in outputs.items()})  # type: ignore[misc]
        pred = np.asarray(outputs[pred_name], np.float64)
        protos = np.asarray(outputs[proto_name])
        nm = protos.shape[1]
        out = []
        for p, proto in zip(pred, protos):
            p = p.T
            dets, coef = select_and_nms(xywh_to_xyxy(p[:, :4]), p[:, 4:-nm], settings.conf_thres,
                                        settings.iou_thres, settings.max_det, settings.multi_label, p[:, -nm:])
            dets.masks = assemble_masks(coef, proto, dets.boxes, settings.input_size)
            out.append(dets)
        return out
