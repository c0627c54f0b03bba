"""ImageNet-style classification folders: `root/<class>/<image>`; the class index is the folder's position in the
sorted folder names (torchvision's rule), or its entry in a class-index map:

- a .txt file, one folder name per line (line 1 is class 0), or
- a .json file, either `{"folder": index}` or ImageNet's `{"index": ["folder", "name"]}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.data.base import Annotations, Record
from edgedeploy.data.imagefile import IMAGE_SUFFIXES, hash_files, list_images, read_image
from edgedeploy.errors import UsageError

MAX_MAP_BYTES = 16 << 20


def looks_like_imagefolder(path: Path) -> bool:
    """A folder whose entries are folders that hold images (and no images of its own)."""
    if not path.is_dir() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file()):
        return False
    subs = [p for p in path.iterdir() if p.is_dir()]
    return bool(subs) and all(p.name not in ("images", "labels", "Annotations") for p in subs) and any(
        q.suffix.lower() in IMAGE_SUFFIXES for q in subs[0].iterdir() if q.is_file())


@dataclass
class ImageFolderSource:
    root: Path
    files: list[Path]
    labels: list[int]
    names: list[str]
    kind: str = "imagefolder"

    def __len__(self) -> int:
        return len(self.files)

    def class_names(self) -> list[str]:
        return self.names

    def record(self, index: int) -> Record:
        label = self.labels[index]
        annotations = Annotations(np.zeros((0, 4)), np.zeros(0, np.int64), label=label)
        return Record(self.files[index].relative_to(self.root).as_posix(), read_image(self.files[index]), None,
                      annotations)

    def fingerprint(self) -> str:
        return hash_files("edgedeploy.data.imagefolder/1", self.root, self.files,
                          json.dumps([self.labels, self.names]).encode())


def open_imagefolder(path: str | Path, class_map: str | Path | None = None) -> ImageFolderSource:
    root = Path(path)
    if not root.is_dir():
        raise UsageError("an image-folder dataset is a folder of class folders", where=str(root))
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if class_map is None:
        index = {name: i for i, name in enumerate(folders)}
        names = folders
    else:
        index, names = read_class_map(Path(class_map))
    files, labels = [], []
    for folder in folders:
        if folder not in index:
            raise UsageError(f"class folder {folder!r} is not in the class-index map", where=str(root / folder),
                             fix=f"add it to {class_map} or remove the folder")
        images = list_images(root / folder)
        files.extend(images)
        labels.extend([index[folder]] * len(images))
    if not files:
        raise UsageError("no images in the class folders", where=str(root))
    return ImageFolderSource(root, files, labels, names)


def read_class_map(path: Path) -> tuple[dict[str, int], list[str]]:
    """folder -> class index, and the class names by index, from a .txt or .json map (see the module docstring)."""
    text = fileio.read_input(path, "class-index map", max_bytes=MAX_MAP_BYTES).decode("utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"not valid JSON (line {e.lineno})", where=str(path)) from None
        if not isinstance(doc, dict):
            raise UsageError("a class map is a JSON object", where=str(path))
        if all(isinstance(v, list) and len(v) >= 1 for v in doc.values()):  # {"0": ["n01440764", "tench"]}
            pairs = {str(v[0]): (_index(k, path), str(v[-1])) for k, v in doc.items()}
        elif all(isinstance(v, int) for v in doc.values()):
            pairs = {k: (v, k) for k, v in doc.items()}
        else:
            raise UsageError('a JSON class map is {"folder": index} or {"index": ["folder", "name"]}',
                             where=str(path))
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        pairs = {}
        for number, ln in enumerate(lines):
            if ln in pairs:
                raise UsageError(f"folder {ln!r} is listed twice", where=f"{path}:{number + 1}")
            pairs[ln] = (number, ln)
    count = max(i for i, _ in pairs.values()) + 1
    names = [str(i) for i in range(count)]
    for i, name in pairs.values():
        names[i] = name
    return {k: i for k, (i, _) in pairs.items()}, names


def _index(key: str, path: Path) -> int:
    try:
        value = int(key)
    except ValueError:
        raise UsageError(f"class map key {key!r} is not a class index", where=str(path)) from None
    if value < 0:
        raise UsageError(f"class map key {key!r} is negative", where=str(path))
    return value
