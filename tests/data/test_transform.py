"""edgedeploy.data.transform: letterbox with Ultralytics' rule (scale, centred padding of 114, stride) and resize,
and coordinates mapped back to the original image."""

from __future__ import annotations

import numpy as np
import pytest

from edgedeploy.data.transform import fit
from edgedeploy.errors import UsageError


@pytest.mark.parametrize("h, w, top, left, nh, nw", [
    (480, 640, 80, 0, 480, 640),  # r = 1
    (375, 500, 80, 0, 480, 640),  # r = 1.28
    (333, 500, 107, 0, 426, 640),  # dh = 214 / 2 = 107
    (500, 333, 0, 107, 640, 426),
    (100, 99, 0, 3, 640, 634),  # dw = 6 / 2 = 3
])
def test_letterbox_follows_ultralytics(h, w, top, left, nh, nw):
    image = np.full((h, w, 3), 200, np.uint8)
    canvas, t = fit(image, (640, 640))
    assert canvas.shape == (640, 640, 3)
    assert (t.pad_top, t.pad_left) == (top, left)
    assert t.scale_x == t.scale_y == pytest.approx(min(640 / h, 640 / w))
    inside = (canvas != 114).any(2)
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (top, top + nh, left, left + nw)
    assert (canvas[~inside] == 114).all()


def test_boxes_keypoints_and_masks_round_trip():
    image = np.zeros((300, 500, 3), np.uint8)
    _, t = fit(image, (640, 640))
    boxes = np.array([[10.0, 20, 110, 220], [0, 0, 500, 300]])
    on_canvas = boxes * t.scale_x + [t.pad_left, t.pad_top] * 2
    np.testing.assert_allclose(t.to_original(on_canvas), boxes, atol=1e-9)
    kp = np.array([[[60.0, 70, 2]]])
    canvas_kp = kp.copy()
    canvas_kp[..., :2] = kp[..., :2] * t.scale_x + [t.pad_left, t.pad_top]
    np.testing.assert_allclose(t.keypoints_to_original(canvas_kp), kp)
    mask = np.zeros((1, 640, 640), bool)
    y1, x1, y2, x2 = (np.array([20, 10, 220, 110]) * t.scale_x + [t.pad_top, t.pad_left] * 2).astype(int)
    mask[0, y1:y2, x1:x2] = True
    back = t.masks_to_original(mask)[0]
    assert back.shape == (300, 500)
    expected = np.zeros((300, 500), bool)
    expected[20:220, 10:110] = True
    assert (back != expected).sum() <= 2 * (200 + 100)  # at most a pixel row/column at the edges


def test_stride_rect_resize_and_none():
    image = np.zeros((480, 640, 3), np.uint8)
    canvas, t = fit(image, (640, 640), stride=32)
    assert canvas.shape == (480, 640, 3) and t.pad_top == 0
    canvas, t = fit(np.zeros((470, 640, 3), np.uint8), (640, 640), stride=32)
    assert canvas.shape == (480, 640, 3) and t.pad_top == 5
    canvas, t = fit(image, (320, 320), resize="resize")
    assert canvas.shape == (320, 320, 3) and (t.scale_x, t.scale_y) == (0.5, 320 / 480)
    same, t = fit(image, (480, 640), resize="none")
    assert same is image and t.scale_x == 1
    with pytest.raises(UsageError, match="image is 640x480"):
        fit(image, (320, 320), resize="none")
