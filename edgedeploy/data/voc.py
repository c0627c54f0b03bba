"""Pascal VOC: `Annotations/*.xml` (one `<object>` per instance, `<bndbox>` in 1-based inclusive pixels) and
`JPEGImages/`; the split's image ids from `ImageSets/Main/<split>.txt` when it exists, else every xml, sorted.

Boxes become 0-based xyxy (`xmin - 1, ymin - 1, xmax, ymax`, the usual VOC -> COCO conversion); `difficult`
objects are kept as crowd regions (ignored by the evaluator, as the VOC protocol ignores them). Classes: the 20 VOC
classes in their standard order when every name is one of them, else the sorted names found.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.data.base import Annotations, Record
from edgedeploy.data.imagefile import hash_files, read_image
from edgedeploy.errors import UsageError

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
MAX_XML_BYTES = 1 << 20


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass
class VocSource:
    root: Path
    ids: list[str]
    objects: list[list[VocObject]]
    image_files: list[Path]
    names: list[str]
    digest: str
    kind: str = "voc"

    def __len__(self) -> int:
        return len(self.ids)

    def class_names(self) -> list[str]:
        return self.names

    def record(self, index: int) -> Record:
        objs = self.objects[index]
        index_of = {n: i for i, n in enumerate(self.names)}
        annotations = Annotations(
            boxes=np.array([o.box for o in objs], np.float64).reshape(-1, 4),
            classes=np.array([index_of[o.name] for o in objs], np.int64),
            iscrowd=np.array([o.difficult for o in objs], bool))
        return Record(self.image_files[index].relative_to(self.root).as_posix(),
                      read_image(self.image_files[index]), None, annotations)

    def fingerprint(self) -> str:
        return hash_files("edgedeploy.data.voc/1", self.root, self.image_files, self.digest.encode())


def open_voc(path: str | Path, split: str = "val", names: list[str] | None = None) -> VocSource:
    root = Path(path)
    folder = root / "Annotations"
    if not folder.is_dir():
        raise UsageError("a VOC dataset folder has `Annotations/` and `JPEGImages/`", where=str(root))
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if listing.is_file():
        ids = [ln.split()[0] for ln in fileio.read_input(listing, "VOC image set", max_bytes=16 << 20)
               .decode().splitlines() if ln.strip()]
    else:
        ids = sorted(p.stem for p in folder.glob("*.xml"))
    if not ids:
        raise UsageError("no annotations", where=str(folder))
    digest = hashlib.sha256()
    objects, files = [], []
    for ident in ids:
        xml = folder / f"{ident}.xml"
        raw = fileio.read_input(xml, "VOC annotation", max_bytes=MAX_XML_BYTES, fix="check the Annotations folder")
        digest.update(raw)
        filename, objs = parse_xml(raw, xml)
        objects.append(objs)
        files.append(root / "JPEGImages" / (filename or f"{ident}.jpg"))
    found = sorted({o.name for objs in objects for o in objs})
    if names is None:
        names = VOC_CLASSES if set(found) <= set(VOC_CLASSES) else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise UsageError(f"objects named {unknown} are not among the classes {names}", where=str(folder))
    return VocSource(root, ids, objects, files, list(names), digest.hexdigest())


def parse_xml(raw: bytes, where: Path) -> tuple[str | None, list[VocObject]]:
    try:
        tree = ET.fromstring(raw)
    except ET.ParseError as e:
        raise UsageError(f"not valid XML: {e}", where=f"{where}:{e.position[0]}") from None
    filename = tree.findtext("filename")
    if filename is not None and (Path(filename).name != filename or not filename.strip()):
        raise UsageError(f"<filename> {filename!r} is not a file name", where=str(where))
    objs = []
    for i, obj in enumerate(tree.iter("object")):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise UsageError(f"object {i} ({name or 'unnamed'}) has no numeric <bndbox> xmin/ymin/xmax/ymax",
                             where=str(where)) from None
        if not name or xmax < xmin or ymax < ymin:
            raise UsageError(f"object {i} ({name or 'unnamed'}) has no name or an inverted box "
                             f"({xmin}, {ymin}, {xmax}, {ymax})", where=str(where))
        objs.append(VocObject(name, (xmin - 1, ymin - 1, xmax, ymax), (obj.findtext("difficult") or "0").strip()
                              == "1"))
    return filename, objs
