"""Predictions written beside the report so any tool can re-score them: COCO results JSON (faster-coco-eval,
pycocotools, Ultralytics' `--save-json` format) and YOLO txt (one file per image, `class cx cy w h score`
normalized by the original image size)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.tasks.decoders.base import Detections


def write_coco_results(path: Path, entries: list[dict]) -> None:
    fileio.write_text(path, json.dumps(entries, separators=(",", ":")))


def yolo_lines(det: Detections, height: int, width: int) -> str:
    """One image's detections (original pixels) as YOLO txt lines."""
    b = det.boxes
    cx, cy = (b[:, 0] + b[:, 2]) / 2 / width, (b[:, 1] + b[:, 3]) / 2 / height
    w, h = (b[:, 2] - b[:, 0]) / width, (b[:, 3] - b[:, 1]) / height
    rows = np.column_stack([cx, cy, w, h, det.scores])
    return "".join(f"{int(c)} " + " ".join(f"{v:.6f}" for v in r) + "\n" for c, r in zip(det.classes, rows))


def write_yolo_txt(folder: Path, keys: Sequence[str], detections: Sequence[Detections],
                   sizes: Sequence[tuple[int, int]]) -> None:
    """`folder/<image key's stem path>.txt` per image (keys are relative paths, so names stay unique)."""
    for key, det, (h, w) in zip(keys, detections, sizes):
        relative = Path(key.replace(":", "_"))
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"image key {key!r} is not a path inside the dataset")
        target = folder / relative.with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        fileio.write_text(target, yolo_lines(det, h, w))
