"""Ultralytics YOLO datasets: a `data.yaml` (path, train/val/test, names, kpt_shape) or a folder with `images/` and
`labels/`; one label file per image (`images/x.jpg` -> `labels/x.txt`), one object per line, normalized to [0, 1]:

- detect: `class cx cy w h`
- segment: `class x1 y1 x2 y2 ...` (a polygon, at least 3 points; its box is the polygon's extent)
- pose (the yaml has `kpt_shape: [K, 2|3]`): `class cx cy w h` then K points of 2 or 3 values

An image without a label file has no objects (Ultralytics' rule). Images are listed sorted by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edgedeploy import fileio
from edgedeploy.data.base import Annotations, Record
from edgedeploy.data.imagefile import IMAGE_SUFFIXES, hash_files, list_images, read_image
from edgedeploy.errors import UsageError

MAX_YAML_BYTES = 1 << 20
MAX_LABEL_BYTES = 16 << 20
_COORD_SLACK = 1e-3  # Ultralytics' exporters write coordinates rounded to 6 digits, sometimes a hair above 1


@dataclass
class YoloSource:
    root: Path
    files: list[Path]
    names: list[str] | None
    kpt_shape: tuple[int, int] | None
    kind: str = "yolo"

    def __len__(self) -> int:
        return len(self.files)

    def class_names(self) -> list[str] | None:
        return self.names

    def label_file(self, index: int) -> Path:
        return label_path(self.files[index])

    def record(self, index: int) -> Record:
        image = read_image(self.files[index])
        h, w = image.shape[:2]
        return Record(self._key(index), image, None, read_labels(self.label_file(index), w, h, self.names,
                                                                 self.kpt_shape))

    def _key(self, index: int) -> str:
        f = self.files[index]
        return f.relative_to(self.root).as_posix() if f.is_relative_to(self.root) else f.as_posix()

    def fingerprint(self) -> str:
        labels = b"".join(self.label_file(i).read_bytes() + b"\0" if self.label_file(i).is_file() else b"\1"
                          for i in range(len(self)))
        meta = repr((self.names, self.kpt_shape)).encode()
        return hash_files("edgedeploy.data.yolo/1", self.root, self.files, meta + labels)


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path, width: int, height: int, names: list[str] | None,
                kpt_shape: tuple[int, int] | None) -> Annotations:
    """One label file as pixel-coordinate annotations; a bad line is a UsageError naming the file and line."""
    if not path.is_file():
        return Annotations(np.zeros((0, 4)), np.zeros(0, np.int64))
    text = fileio.read_input(path, "label file", max_bytes=MAX_LABEL_BYTES, fix="fix the label file")
    boxes, classes, polygons, keypoints = [], [], [], []
    scale = np.array([width, height], np.float64)
    for number, line in enumerate(text.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            values = np.array([float(v) for v in line.split()], np.float64)
        except ValueError:
            raise UsageError(f"label line {line.strip()[:60]!r} is not numbers", where=where,
                             fix="one object per line: class cx cy w h (normalized)") from None
        cls = _class_id(values[0], names, where)
        coords = values[1:]
        positions = coords
        if kpt_shape is not None and len(coords) != 4 + kpt_shape[0] * kpt_shape[1]:
            k, dim = kpt_shape
            raise UsageError(f"label line has {len(values)} numbers; with kpt_shape [{k}, {dim}] a pose line "
                             f"has {5 + k * dim} (class cx cy w h, then {k} points of {dim} values)",
                             where=where, fix="fix the line or the yaml's kpt_shape")
        if kpt_shape is not None and kpt_shape[1] == 3:
            positions = np.concatenate([coords[:4], coords[4:].reshape(-1, 3)[:, :2].ravel()])  # not visibility
        if not np.isfinite(coords).all() or (positions < -_COORD_SLACK).any() or (positions > 1 + _COORD_SLACK).any():
            raise UsageError("label coordinates outside [0, 1]; YOLO labels are normalized by the image size",
                             where=where, fix="divide x by the image width and y by its height")
        if kpt_shape is not None:
            k, dim = kpt_shape
            points = coords[4:].reshape(k, dim)
            vis = points[:, 2] if dim == 3 else np.where((points == 0).all(1), 0.0, 2.0)
            keypoints.append(np.column_stack([points[:, :2] * scale, vis]))
            boxes.append(_xywh(coords[:4], scale))
            polygons.append([])
        elif len(coords) == 4:
            boxes.append(_xywh(coords, scale))
            polygons.append([])
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            poly = coords.reshape(-1, 2) * scale
            boxes.append(np.concatenate([poly.min(0), poly.max(0)]))
            polygons.append([poly])
        elif len(coords) < 4:
            raise UsageError(f"label line has {len(values)} numbers; a box line has 5 (class cx cy w h)",
                             where=where, fix="fix the line")
        else:
            odd = " an odd number of" if len(coords) % 2 else " too few"
            raise UsageError(f"label line has {len(values)} numbers: a box has 5 (class cx cy w h), a polygon "
                             f"class then x y pairs (at least 3 points); this one has{odd} coordinates "
                             f"({len(coords)})", where=where, fix="fix the line")
        classes.append(cls)
    return Annotations(
        boxes=np.array(boxes, np.float64).reshape(-1, 4),
        classes=np.array(classes, np.int64),
        polygons=polygons if any(polygons) else None,
        keypoints=np.array(keypoints, np.float64).reshape(len(keypoints), *(kpt_shape[0], 3))
        if kpt_shape is not None else None,
        iscrowd=np.zeros(len(classes), bool))


def _class_id(value: float, names: list[str] | None, where: str) -> int:
    if value != int(value) or value < 0:
        raise UsageError(f"class id {value:g} is not a non-negative integer", where=where)
    if names is not None and value >= len(names):
        raise UsageError(f"class id {int(value)} is out of range: the dataset has nc={len(names)} classes "
                         f"(0..{len(names) - 1})", where=where, fix="fix the label or the yaml's names")
    return int(value)


def _xywh(c: np.ndarray, scale: np.ndarray) -> np.ndarray:
    cx, cy, w, h = c
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * np.tile(scale, 2)


def open_yolo(path: str | Path, split: str = "val") -> YoloSource:
    """A `data.yaml` (its `split` entry: a folder, a .txt list of images, or a list of them) or a dataset folder
    (`images/<split>/` or `images/`, with `labels/` beside it; a `data.yaml` inside is read for names)."""
    path = Path(path)
    if path.is_dir():
        yamls = sorted(p for p in path.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        if yamls:
            return open_yolo(yamls[0], split)
        images = path / "images" / split if (path / "images" / split).is_dir() else path / "images"
        if not images.is_dir():
            raise UsageError("a YOLO dataset folder has `images/` (and `labels/`)", where=str(path),
                             fix="point validation.data at the dataset's data.yaml or its folder")
        return YoloSource(path, _checked(list_images(images), images), None, None)
    raw = fileio.read_input(path, "YOLO dataset yaml", max_bytes=MAX_YAML_BYTES, fix="check validation.data")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise UsageError(f"not valid YAML: {e}", where=str(path)) from None
    if not isinstance(doc, dict):
        raise UsageError("a YOLO dataset yaml is a mapping (path, val, names)", where=str(path))
    names = _names(doc, path)
    root = Path(doc.get("path") or ".")
    root = root if root.is_absolute() else (path.parent / root)
    if split not in doc:
        raise UsageError(f"the yaml has no `{split}` entry", where=str(path),
                         fix=f"add `{split}: images/{split}` (or pick another split)")
    entries = doc[split] if isinstance(doc[split], list) else [doc[split]]
    files: list[Path] = []
    for entry in entries:
        files.extend(_split_images(root, str(entry), path))
    kpt = doc.get("kpt_shape")
    if kpt is not None and not (isinstance(kpt, list) and len(kpt) == 2 and all(isinstance(v, int) for v in kpt)
                                and kpt[0] > 0 and kpt[1] in (2, 3)):
        raise UsageError(f"kpt_shape {kpt!r} is not [points, 2 or 3]", where=str(path))
    return YoloSource(root, _checked(files, path), names, tuple(kpt) if kpt else None)


def _names(doc: dict, path: Path) -> list[str] | None:
    names = doc.get("names")
    if names is None:
        return [str(i) for i in range(doc["nc"])] if isinstance(doc.get("nc"), int) else None
    if isinstance(names, dict):  # ids as integers, or as digit strings (a quoted key, or JSON), as Ultralytics reads
        ids = {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in names.items()}
        if len(ids) != len(names) or set(ids) != set(range(len(ids))):
            raise UsageError("`names` keys must be the class ids 0..nc-1", where=str(path))
        names = [ids[k] for k in range(len(ids))]
    if not isinstance(names, list):
        raise UsageError("`names` is a list or a mapping id -> name", where=str(path))
    if isinstance(doc.get("nc"), int) and doc["nc"] != len(names):
        raise UsageError(f"nc is {doc['nc']} but `names` has {len(names)} entries", where=str(path))
    return [str(n) for n in names]


def _split_images(root: Path, entry: str, yaml_path: Path) -> list[Path]:
    target = Path(entry) if Path(entry).is_absolute() else root / entry
    if target.is_dir():
        return list_images(target)
    if target.suffix == ".txt" and target.is_file():
        text = fileio.read_input(target, "image list", max_bytes=MAX_LABEL_BYTES).decode()
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return [Path(ln) if Path(ln).is_absolute() else (target.parent / ln) for ln in lines]
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return [target]
    raise UsageError(f"split entry {entry!r} is neither a folder nor an image list ({target} not found)",
                     where=str(yaml_path), fix="check `path` and the split entries of the yaml")


def _checked(files: list[Path], where: Path) -> list[Path]:
    if not files:
        raise UsageError("the dataset has no images", where=str(where), fix="check the images folder")
    return files
