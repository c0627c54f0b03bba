"""Fitting an image to the model's input size, and mapping model-input coordinates back to the image.

Letterbox follows Ultralytics' rule (`ultralytics.data.augment.LetterBox` and `ops.scale_boxes`): scale by
r = min(H / h, W / w), resize to round(w r) x round(h r), pad evenly (left = round(dw / 2 - 0.1)) with the pad value
(114); with `stride`, the canvas is the smallest stride multiple around the resized image (rectangular inference,
dynamic input shapes only). Coordinates go back as (x - pad) / r.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgedeploy.errors import UsageError


@dataclass(frozen=True)
class Transform:
    """input = original * scale + pad, per axis; orig_h x orig_w is the image's size."""

    scale_x: float
    scale_y: float
    pad_left: float
    pad_top: float
    orig_h: int
    orig_w: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """(K, 4) xyxy in model-input pixels -> original-image pixels. Not clipped to the image: scores stay those
        of the boxes the model made (clipping moves the demo's mAP@0.5 by 1.4e-4)."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return (b - [self.pad_left, self.pad_top, self.pad_left, self.pad_top]) / [self.scale_x, self.scale_y,
                                                                                    self.scale_x, self.scale_y]

    def keypoints_to_original(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., 2 or 3) x, y[, v] in model-input pixels -> original pixels (v unchanged)."""
        k = np.array(keypoints, np.float64)
        k[..., 0] = (k[..., 0] - self.pad_left) / self.scale_x
        k[..., 1] = (k[..., 1] - self.pad_top) / self.scale_y
        return k

    def masks_to_original(self, masks: np.ndarray) -> np.ndarray:
        """(K, H, W) masks on the input canvas -> (K, orig_h, orig_w), each original pixel taking the canvas pixel
        its centre falls in (nearest)."""
        masks = np.asarray(masks)
        ys = np.floor((np.arange(self.orig_h) + 0.5) * self.scale_y + self.pad_top).astype(np.int64)
        xs = np.floor((np.arange(self.orig_w) + 0.5) * self.scale_x + self.pad_left).astype(np.int64)
        ys = ys.clip(0, masks.shape[-2] - 1)
        xs = xs.clip(0, masks.shape[-1] - 1)
        return masks[..., ys[:, None], xs[None, :]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(image: np.ndarray, size: tuple[int | None, int | None], resize: str = "letterbox", pad_value: int = 114,
        stride: int | None = None, where: str = "image") -> tuple[np.ndarray, Transform]:
    """A uint8 HWC image brought to (H, W) (None: the image's own size): `letterbox` (aspect kept, padded, see the
    module docstring), `resize` (stretched, bilinear) or `none` (a different size is refused); and the Transform
    that maps the canvas's coordinates back."""
    h0, w0 = image.shape[:2]
    h = h0 if size[0] is None else size[0]
    w = w0 if size[1] is None else size[1]
    if resize == "none" or (h, w) == (h0, w0) and stride is None:
        if (h, w) != (h0, w0):
            raise UsageError(f"image is {w0}x{h0} (WxH), the input needs {w}x{h}", where=where,
                             fix="resize the data or set preprocess.resize: resize | letterbox")
        return image, Transform(1.0, 1.0, 0.0, 0.0, h0, w0)
    if resize == "resize":
        return _resized(image, w, h), Transform(w / w0, h / h0, 0.0, 0.0, h0, w0)
    if resize != "letterbox":
        raise UsageError(f"unknown resize mode {resize!r}", fix="use letterbox, resize or none")
    r = min(h / h0, w / w0)
    nw, nh = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = w - nw, h - nh
    if stride is not None:
        dw, dh = dw % stride, dh % stride
    left, top = int(round(dw / 2 - 0.1)), int(round(dh / 2 - 0.1))
    canvas = np.full((nh + dh, nw + dw, image.shape[2]), pad_value, np.uint8)
    canvas[top:top + nh, left:left + nw] = image if (nh, nw) == (h0, w0) else _resized(image, nw, nh)
    return canvas, Transform(r, r, float(left), float(top), h0, w0)


def _resized(image: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR), np.uint8)
