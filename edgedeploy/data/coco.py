"""COCO JSON datasets (`instances_*.json`, `person_keypoints_*.json` + an image folder).

Images in ascending image id; categories in ascending id, mapped to contiguous 0-based class indices (the index a
model's class output uses) with their names. Boxes `[x, y, w, h]` become xyxy pixels; polygon and RLE segmentations
and keypoints are kept as the file has them; `iscrowd` is kept so the evaluator ignores crowd regions as COCO does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.data.base import Annotations, Record
from edgedeploy.data.imagefile import hash_files, read_image
from edgedeploy.errors import UsageError

MAX_JSON_BYTES = 2 << 30  # COCO train2017 instances are 450 MB; a larger file is the wrong one


def looks_like_coco(path: Path) -> bool:
    """A .json file whose first KiB mentions `images` (instances files start with info/licenses/images)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b'"images"' in head or b'"annotations"' in head or b'"categories"' in head


@dataclass
class CocoSource:
    """A COCO JSON file and the folder its `file_name`s are relative to."""

    path: Path
    image_root: Path
    images: list[dict]
    categories: list[dict]
    by_image: dict[int, list[dict]]
    raw: bytes = field(repr=False)
    kind: str = "coco"

    def __len__(self) -> int:
        return len(self.images)

    def class_names(self) -> list[str]:
        return [str(c.get("name", c["id"])) for c in self.categories]

    def category_ids(self) -> list[int]:
        """The COCO category id of each class index (for results files)."""
        return [int(c["id"]) for c in self.categories]

    def keypoint_count(self) -> int | None:
        counts = {len(c["keypoints"]) for c in self.categories if isinstance(c.get("keypoints"), list)}
        return counts.pop() if len(counts) == 1 else None

    def image_file(self, index: int) -> Path:
        return self.image_root / self.images[index]["file_name"]

    def record(self, index: int) -> Record:
        info = self.images[index]
        image = read_image(self.image_file(index))
        return Record(info["file_name"], image, None, self.annotations(index))

    def annotations(self, index: int) -> Annotations:
        info = self.images[index]
        class_of = {int(c["id"]): i for i, c in enumerate(self.categories)}
        anns = self.by_image.get(int(info["id"]), [])
        boxes = np.array([[float(v) for v in a["bbox"]] for a in anns], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        classes = np.array([class_of[int(a["category_id"])] for a in anns], np.int64)
        polygons, rles = [], []
        for a in anns:
            seg = a.get("segmentation")
            polygons.append([np.asarray(p, np.float64).reshape(-1, 2) for p in seg] if isinstance(seg, list) else [])
            rles.append(seg if isinstance(seg, dict) else None)
        has_kp = [a for a in anns if "keypoints" in a]
        keypoints = (np.array([a.get("keypoints", []) for a in anns], np.float64).reshape(len(anns), -1, 3)
                     if has_kp and len(has_kp) == len(anns) else None)
        return Annotations(
            boxes=boxes, classes=classes,
            polygons=polygons if any(polygons) else None,
            rle=rles if any(r is not None for r in rles) else None,
            keypoints=keypoints,
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            image_id=int(info["id"]))

    def fingerprint(self) -> str:
        return hash_files("edgedeploy.data.coco/1", self.image_root,
                          [self.image_file(i) for i in range(len(self))], self.raw)


def open_coco(path: str | Path, image_root: str | Path | None = None) -> CocoSource:
    """Read and check a COCO JSON file; every problem is one UsageError naming the file and the entry."""
    path = Path(path)
    raw = fileio.read_input(path, "COCO annotation file", max_bytes=MAX_JSON_BYTES, fix="check validation.data")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        line = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise UsageError(f"not valid JSON{line}: {e}", where=str(path), fix="check the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UsageError("a COCO file is a JSON object with an `images` list", where=str(path),
                         fix="point validation.data at instances_*.json (or another COCO-format file)")
    images = [_check_image(im, i, path) for i, im in enumerate(doc["images"])]
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids):
        raise UsageError("two images have the same id", where=str(path), fix="give every image its own id")
    images.sort(key=lambda im: im["id"])
    categories = sorted((_check_category(c, i, path) for i, c in enumerate(doc.get("categories", []))),
                        key=lambda c: c["id"])
    if not categories:
        raise UsageError("the file has no `categories`", where=str(path), fix="list the classes under categories")
    cat_ids = {c["id"] for c in categories}
    kp_count = {len(c["keypoints"]) for c in categories if isinstance(c.get("keypoints"), list)}
    image_ids = set(ids)
    by_image: dict[int, list[dict]] = {}
    for i, a in enumerate(doc.get("annotations", [])):
        _check_annotation(a, i, path, cat_ids, image_ids, kp_count)
        by_image.setdefault(int(a["image_id"]), []).append(a)
    return CocoSource(path, _image_root(path, images, image_root), images, categories, by_image, raw)


def _entry(kind: str, index: int, item: object) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    return f"{kind} {index}" + (f" (id {ident})" if ident is not None else "")


def _check_image(im: object, i: int, path: Path) -> dict:
    if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
        raise UsageError(f"{_entry('images', i, im)} needs an integer `id` and a `file_name`", where=str(path))
    name = im["file_name"]
    if Path(name).is_absolute() or ".." in Path(name).parts or "\0" in name:
        raise UsageError(f"{_entry('images', i, im)} file_name {name!r} leaves the image folder", where=str(path),
                         fix="use paths relative to the image folder")
    return im


def _check_category(c: object, i: int, path: Path) -> dict:
    if not isinstance(c, dict) or not isinstance(c.get("id"), int):
        raise UsageError(f"{_entry('categories', i, c)} needs an integer `id`", where=str(path))
    return c


def _number_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)


def _check_annotation(a: object, i: int, path: Path, cat_ids: set, image_ids: set, kp_count: set) -> None:
    where, name = str(path), _entry("annotations", i, a)
    if not isinstance(a, dict):
        raise UsageError(f"{name} is not an object", where=where)
    if a.get("image_id") not in image_ids:
        raise UsageError(f"{name} names image_id {a.get('image_id')!r}, which is not in `images`", where=where)
    if a.get("category_id") not in cat_ids:
        raise UsageError(f"{name} names category_id {a.get('category_id')!r}, which is not in `categories`",
                         where=where, fix=f"use one of {sorted(cat_ids)}")
    box = a.get("bbox")
    if not _number_list(box) or len(box) != 4 or box[2] < 0 or box[3] < 0:
        raise UsageError(f"{name} bbox {box!r} is not [x, y, width, height] with width, height >= 0", where=where)
    seg = a.get("segmentation")
    if isinstance(seg, list):
        for p in seg:
            if not _number_list(p) or len(p) % 2 or len(p) < 6:
                count = len(p) if isinstance(p, list) else type(p).__name__
                raise UsageError(f"{name} has a polygon of {count} coordinates; a polygon is x, y pairs, "
                                 "at least 3 points", where=where)
    elif isinstance(seg, dict):
        if not (_number_list(seg.get("size")) and len(seg["size"]) == 2 and isinstance(seg.get("counts"),
                                                                                         (str, list))):
            raise UsageError(f"{name} segmentation is neither polygons nor an RLE {{size, counts}}", where=where)
    elif seg is not None:
        raise UsageError(f"{name} segmentation is {type(seg).__name__}, not polygons or RLE", where=where)
    kps = a.get("keypoints")
    if kps is not None and (not _number_list(kps) or len(kps) % 3 or (kp_count and len(kps) // 3 not in kp_count)):
        raise UsageError(f"{name} keypoints has {len(kps) if isinstance(kps, list) else '?'} values; it is x, y, v "
                         f"triples, {sorted(kp_count)} points per the categories", where=where)


def _image_root(path: Path, images: list[dict], given: str | Path | None) -> Path:
    """The folder `file_name`s are relative to: as given, else the first of the usual COCO layouts that holds the
    first image (next to the json, `../<split>/`, `../images/<split>/`, `../images/`)."""
    if given is not None:
        return Path(given)
    split = path.stem.split("_")[-1]  # instances_val2017 -> val2017
    here = path.parent
    candidates = [here, here / split, here / "images", here / "images" / split, here.parent, here.parent / split,
                  here.parent / "images", here.parent / "images" / split]
    if not images:
        return here
    for root in candidates:
        if (root / images[0]["file_name"]).is_file():
            return root
    tried = ", ".join(str(c) for c in candidates[:4]) + ", ..."
    raise UsageError(f"cannot find image {images[0]['file_name']!r} (tried {tried})", where=str(path),
                     fix="set the image folder (validation.images) or move the images next to the json")
