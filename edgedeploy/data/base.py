"""What every dataset source yields: records (an image or ready inputs, plus its ground truth) read on demand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Annotations:
    """One image's ground truth, in ORIGINAL image pixel coordinates."""

    boxes: np.ndarray  # (M, 4) float64 x1, y1, x2, y2
    classes: np.ndarray  # (M,) int64, 0-based contiguous class index
    polygons: list[list[np.ndarray]] | None = None  # per instance: list of (P, 2) float64 polygons, pixels
    rle: list[dict] | None = None  # per instance COCO RLE when the source has RLE
    keypoints: np.ndarray | None = None  # (M, K, 3) float64 x, y, visibility
    iscrowd: np.ndarray | None = None  # (M,) bool
    label: int | None = None  # classification: the class index
    image_id: int | None = None  # COCO image id when the source has one


@dataclass(frozen=True)
class Record:
    key: str  # stable id: path relative to the dataset root, or "name:<index>"
    image: np.ndarray | None  # uint8 HWC RGB at original size (None for ready-made inputs)
    inputs: dict[str, np.ndarray] | None  # ready model inputs of ONE sample (no batch dim)
    annotations: Annotations | None


class DataSource(Protocol):
    kind: str  # registry name: npz, npy, images, callable, coco, yolo, imagefolder, voc

    def __len__(self) -> int: ...

    def record(self, index: int) -> Record: ...  # file reads and decoding happen here, on demand

    def class_names(self) -> list[str] | None: ...

    def fingerprint(self) -> str: ...  # sha256 of what defines the data (file bytes / annotations)


def empty_annotations(image_id: int | None = None) -> Annotations:
    return Annotations(np.zeros((0, 4)), np.zeros(0, np.int64), image_id=image_id)
