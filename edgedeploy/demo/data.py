"""Synthetic detection data for the demo detector: sklearn digits pasted onto noisy 64x64 canvases.

Every image is a 64x64x3 uint8 RGB canvas (a random tint, a random linear gradient and gaussian noise) carrying 1-4
handwritten digits from ``sklearn.datasets.load_digits`` (8x8, ink 0-16, shipped inside scikit-learn: no download).
Each digit is resized bilinearly to a random square size of 12-28 px, given a random colour that contrasts with the
canvas, and alpha-blended by its ink intensity. Digits are placed so their squares overlap little (IoU < 0.1). The
box is the tight bounding box of the pasted ink (alpha >= ``INK_THRESHOLD``), ``x1, y1, x2, y2`` in pixels with
``x2``/``y2`` exclusive (a one-pixel box at column 3 is ``x1=3, x2=4``).

The digit samples are split by index into two disjoint pools: ``"train"`` (samples ``0 .. TRAIN_SAMPLES-1``) and
``"heldout"`` (the rest). Generation is deterministic: the same ``(n_images, pool, seed)`` gives identical bytes.

scikit-learn is imported here only (lazily), never elsewhere in the package.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

IMG_SIZE = 64
NUM_CLASSES = 10
MIN_DIGIT, MAX_DIGIT = 12, 28
MAX_DIGITS_PER_IMAGE = 4
MAX_PLACEMENT_IOU = 0.1
INK_THRESHOLD = 0.2  # alpha at or above which a pixel counts as ink for the tight box
TRAIN_SAMPLES = 1400  # digits 0..1399 -> train pool, 1400..1796 -> held-out pool

Pool = Literal["train", "heldout"]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0).clip(0.0, 1.0)  # (1797, 8, 8) in [0, 1]
    labels = d.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digit_pool(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """The (images (K,8,8) float in [0,1], labels (K,)) of one pool; the two pools are disjoint by sample index."""
    images, labels = _digits()
    if pool == "train":
        return images[:TRAIN_SAMPLES], labels[:TRAIN_SAMPLES]
    if pool == "heldout":
        return images[TRAIN_SAMPLES:], labels[TRAIN_SAMPLES:]
    raise ValueError(f"pool must be 'train' or 'heldout', got {pool!r}")


def _resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a square (h, w) image to (size, size), bilinear, pixel-centre aligned (like align_corners=False)."""
    h, w = img.shape
    ys = (np.arange(size, dtype=np.float64) + 0.5) * (h / size) - 0.5
    xs = (np.arange(size, dtype=np.float64) + 0.5) * (w / size) - 0.5
    ys = ys.clip(0, h - 1)
    xs = xs.clip(0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None]
    wx = (xs - x0)[None, :]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bot = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def _warp_bilinear(img: np.ndarray, size: int, inv: np.ndarray) -> np.ndarray:
    """Sample a (size, size) patch from a square (h, w) image through an inverse affine map about the centre.

    ``inv`` (2x2) maps normalised output coordinates (centred, unit width) to normalised source coordinates;
    samples outside the source are 0 (no ink)."""
    h, w = img.shape
    c = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    sx = (inv[0, 0] * xx + inv[0, 1] * yy + 0.5) * w - 0.5
    sy = (inv[1, 0] * xx + inv[1, 1] * yy + 0.5) * h - 0.5
    padded = np.pad(img, 1)  # zero border: source pixel (y, x) is padded[y + 1, x + 1]
    sx = np.clip(sx + 1, 0, w + 1)
    sy = np.clip(sy + 1, 0, h + 1)
    x0 = np.minimum(np.floor(sx).astype(np.int64), w)
    y0 = np.minimum(np.floor(sy).astype(np.int64), h)
    wx, wy = sx - x0, sy - y0
    out = (
        padded[y0, x0] * (1 - wx) * (1 - wy)
        + padded[y0, x0 + 1] * wx * (1 - wy)
        + padded[y0 + 1, x0] * (1 - wx) * wy
        + padded[y0 + 1, x0 + 1] * wx * wy
    )
    return out.astype(np.float32)


def _random_inverse_affine(rng: np.random.Generator) -> np.ndarray:
    """A mild random digit distortion (training augmentation): rotation +-12 deg, shear +-0.2, aspect 0.8-1.15,
    scaled so the warped digit stays inside its square. Returns the inverse map (output -> source)."""
    theta = np.deg2rad(rng.uniform(-12.0, 12.0))
    shear = rng.uniform(-0.2, 0.2)
    ax = rng.uniform(0.8, 1.15)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    fwd = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([ax, 1.0])
    corners = fwd @ np.array([[-0.5, 0.5, 0.5, -0.5], [-0.5, -0.5, 0.5, 0.5]])
    fwd = fwd / max(1.0, float(np.abs(corners).max()) * 2.0)
    return np.linalg.inv(fwd)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _canvas(rng: np.random.Generator) -> np.ndarray:
    """A float32 (64,64,3) background in [0,255]: tint + linear gradient + gaussian noise."""
    s = IMG_SIZE
    tint = rng.uniform(0.0, 200.0, size=3)
    angle = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1) - 0.5
    ramp = np.cos(angle) * xx + np.sin(angle) * yy  # in about [-0.7, 0.7]
    amp = rng.uniform(-60.0, 60.0, size=3)
    canvas = tint[None, None, :] + ramp[:, :, None] * amp[None, None, :]
    canvas = canvas + rng.normal(0.0, rng.uniform(1.0, 5.0), size=(s, s, 3))
    return canvas.astype(np.float32)


def _digit_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour whose mean differs from the local background mean by at least 70 levels."""
    bg = float(background.mean())
    for _ in range(20):
        c = rng.uniform(0.0, 255.0, size=3)
        if abs(float(c.mean()) - bg) >= 70.0:
            return c
    # fall back to a contrasting grey-ish colour
    base = 235.0 if bg < 128.0 else 20.0
    return np.clip(base + rng.uniform(-20.0, 20.0, size=3), 0.0, 255.0)


def _make_image(
    rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, jitter: bool = False
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    s = IMG_SIZE
    canvas = _canvas(rng)
    n_digits = int(rng.integers(1, MAX_DIGITS_PER_IMAGE + 1))
    squares: list[np.ndarray] = []
    boxes: list[tuple[int, float, float, float, float]] = []
    for _ in range(n_digits):
        size = int(rng.integers(MIN_DIGIT, MAX_DIGIT + 1))
        placed = None
        for _try in range(30):
            x0 = int(rng.integers(0, s - size + 1))
            y0 = int(rng.integers(0, s - size + 1))
            sq = np.array([x0, y0, x0 + size, y0 + size], dtype=np.float64)
            if all(_iou(sq, o) < MAX_PLACEMENT_IOU for o in squares):
                placed = sq
                break
        if placed is None:
            continue
        k = int(rng.integers(0, len(digits)))
        if jitter:
            alpha = _warp_bilinear(digits[k], size, _random_inverse_affine(rng))
        else:
            alpha = _resize_bilinear(digits[k], size)
        ys, xs = np.nonzero(alpha >= INK_THRESHOLD)
        if len(ys) == 0:
            continue
        x0, y0 = int(placed[0]), int(placed[1])
        region = canvas[y0 : y0 + size, x0 : x0 + size]
        colour = _digit_colour(rng, region)
        a = alpha[:, :, None]
        canvas[y0 : y0 + size, x0 : x0 + size] = region * (1.0 - a) + colour[None, None, :] * a
        squares.append(placed)
        boxes.append(
            (int(labels[k]), float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))
        )
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, boxes


def make_detection_set(
    n_images: int, pool: Pool = "train", seed: int = 0, jitter: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n_images`` synthetic detection images from one digit pool.

    ``jitter=True`` (training augmentation only) also distorts each digit with a mild random affine map (rotation,
    shear, aspect) before pasting; the held-out and calibration sets are made without it.

    Returns ``(images, targets)``: images uint8 ``(N, 64, 64, 3)`` RGB, targets float32 ``(M, 6)`` rows
    ``[image_index, class, x1, y1, x2, y2]`` (pixels). Same arguments give identical bytes.
    """
    digits, labels = digit_pool(pool)
    pool_offset = {"train": 0, "heldout": 1}[pool]
    rng = np.random.default_rng([int(seed), pool_offset])
    images = np.empty((n_images, IMG_SIZE, IMG_SIZE, 3), dtype=np.uint8)
    rows: list[tuple[float, ...]] = []
    for i in range(n_images):
        img, boxes = _make_image(rng, digits, labels, jitter)
        images[i] = img
        rows.extend((float(i), float(c), x1, y1, x2, y2) for c, x1, y1, x2, y2 in boxes)
    targets = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
    return images, targets


def to_input(images: np.ndarray) -> np.ndarray:
    """The demo model's preprocessing: uint8 (N,H,W,3) RGB -> float32 (N,3,H,W) in [0,1] (no mean/std)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
