"""Small datasets written by the tests in each format (COCO JSON, YOLO, image-class folders, VOC) from the same
images and boxes, so every reader can be checked against the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def save_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_coco(root: Path, images: np.ndarray, targets: np.ndarray, names: list[str],
               category_ids: list[int] | None = None, extra: dict | None = None) -> Path:
    """images (N, H, W, 3) uint8, targets (M, 6) [image, class, x1, y1, x2, y2] -> root/annotations/x.json and
    root/val/*.png (image ids 1..N in order, categories `category_ids` or 1..C)."""
    cats = category_ids or list(range(1, len(names) + 1))
    doc = {"images": [], "annotations": [], "categories": [{"id": c, "name": n} for c, n in zip(cats, names)]}
    for i, image in enumerate(images):
        name = f"img_{i:05d}.png"
        save_png(root / "val" / name, image)
        doc["images"].append({"id": i + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
    for k, (i, c, x1, y1, x2, y2) in enumerate(targets.tolist()):
        doc["annotations"].append({"id": k + 1, "image_id": int(i) + 1, "category_id": cats[int(c)],
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                   "iscrowd": 0})
    doc.update(extra or {})
    path = root / "annotations" / "instances_val.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def write_yolo(root: Path, images: np.ndarray, targets: np.ndarray, names: list[str]) -> Path:
    """The same set as an Ultralytics dataset: root/data.yaml, images/val/*.png, labels/val/*.txt (normalized)."""
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        save_png(root / "images" / "val" / f"img_{i:05d}.png", image)
        rows = targets[targets[:, 0] == i]
        lines = [f"{int(c)} {(x1 + x2) / 2 / w:.17g} {(y1 + y2) / 2 / h:.17g} {(x2 - x1) / w:.17g} "
                 f"{(y2 - y1) / h:.17g}" for _, c, x1, y1, x2, y2 in rows.tolist()]
        label = root / "labels" / "val" / f"img_{i:05d}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(lines) + ("\n" if lines else ""))
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump({"path": ".", "val": "images/val", "names": dict(enumerate(names))}))
    return path


class ArrayRecords:
    """The npz form of a detection set (images (N, H, W, 3) + targets (M, 6)) as records, in array order."""

    kind = "npz"

    def __init__(self, images: np.ndarray, targets: np.ndarray):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def record(self, index: int):
        from edgedeploy.data.base import Annotations, Record

        rows = self.targets[self.targets[:, 0] == index]
        return Record(f"npz:{index}", self.images[index], None,
                      Annotations(rows[:, 2:].astype(np.float64), rows[:, 1].astype(np.int64)))

    def class_names(self):
        return None

    def fingerprint(self) -> str:
        return ""
