"""Which dataset format a path holds, and opening it: a COCO JSON file, an Ultralytics YOLO `data.yaml` or folder
(`images/` + `labels/`), a folder of class folders (ImageNet style), a Pascal VOC folder (`Annotations/`)."""

from __future__ import annotations

from pathlib import Path

from edgedeploy.data.base import DataSource
from edgedeploy.data.coco import looks_like_coco, open_coco
from edgedeploy.data.imagefolder import looks_like_imagefolder, open_imagefolder
from edgedeploy.data.voc import open_voc
from edgedeploy.data.yolo import open_yolo
from edgedeploy.errors import UsageError

FORMATS = ("coco", "yolo", "imagefolder", "voc")


def detect_format(path: Path) -> str | None:
    """The dataset format of `path`, or None when it is none of FORMATS (an .npz, a plain image folder)."""
    if path.is_file():
        if looks_like_coco(path):
            return "coco"
        return "yolo" if path.suffix.lower() in (".yaml", ".yml") else None
    if not path.is_dir():
        return None
    if (path / "Annotations").is_dir():
        return "voc"
    if (path / "images").is_dir() or any(path.glob("*.yaml")):
        return "yolo"
    return "imagefolder" if looks_like_imagefolder(path) else None


def open_dataset(path: Path, fmt: str = "auto", *, images: Path | None = None, split: str = "val",
                 class_map: Path | None = None, purpose: str = "validation") -> DataSource:
    """The dataset at `path` as a DataSource; `images` is COCO's image folder, `split` YOLO's and VOC's split,
    `class_map` an image-folder class-index map; `purpose` (validation, calibration) names the config section in
    errors."""
    if not path.exists():
        raise UsageError(f"{purpose} data not found", where=str(path), fix=f"check {purpose}.data")
    found = detect_format(path) if fmt == "auto" else fmt
    if found is None:
        raise UsageError("cannot tell the dataset format", where=str(path),
                         fix=f"give a COCO .json, a YOLO data.yaml or folder, a folder of class folders, a VOC "
                             f"folder, or an .npz; or set {purpose}.format to one of {', '.join(FORMATS)}")
    if found == "coco":
        return open_coco(path, images)
    if found == "yolo":
        return open_yolo(path, split)
    if found == "imagefolder":
        return open_imagefolder(path, class_map)
    if found == "voc":
        return open_voc(path, split)
    raise UsageError(f"unknown dataset format {found!r}", fix=f"use one of {', '.join(FORMATS)}")
