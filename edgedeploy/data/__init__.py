"""Data sources: the one reader layer calibration and validation read through.

`SOURCES` maps a format name to its opener, `opener(target, inputs, purpose=..., fix=...) -> DataSource`
(edgedeploy.data.base): `target` is a path (a function name for `callable`), `inputs` the model's input specs,
`purpose` (`calibration`, `validation`) and `fix` are for errors, which name the file. `detect_format` tells the format from a path. Adding a format is one module
with its source class and one line here (docs/architecture.md). Records are read on demand; `iter_batches`
(edgedeploy.data.stream) reads them ahead of inference on a background thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgedeploy import fileio
from edgedeploy.config import InputSpec
from edgedeploy.data.arrays import ArrayFilesSource
from edgedeploy.data.base import Annotations, DataSource, Record
from edgedeploy.data.callable import CallableSource
from edgedeploy.data.formats import FORMATS as DATASET_FORMATS
from edgedeploy.data.formats import open_dataset
from edgedeploy.data.images import IMAGE_SUFFIXES, ImageFilesSource
from edgedeploy.data.stream import iter_batches, select
from edgedeploy.errors import UsageError


def _npz(target: str | Path, inputs: list[InputSpec], purpose: str, fix: str) -> DataSource:
    return ArrayFilesSource(Path(target), "npz", inputs, f"{purpose} data", fix)


def _npy(target: str | Path, inputs: list[InputSpec], purpose: str, fix: str) -> DataSource:
    return ArrayFilesSource(Path(target), "npy", inputs, f"{purpose} data", fix)


def _images(target: str | Path, inputs: list[InputSpec], purpose: str, fix: str) -> DataSource:
    return ImageFilesSource(Path(target), what=f"{purpose} image")


def _callable(target: str | Path, inputs: list[InputSpec], purpose: str, fix: str) -> DataSource:
    return CallableSource(str(target), inputs, key=f"{purpose}.function")


def _dataset(fmt: str) -> Callable[..., DataSource]:
    def opener(target: str | Path, inputs: list[InputSpec], purpose: str, fix: str) -> DataSource:
        return open_dataset(Path(target), fmt)

    return opener


SOURCES: dict[str, Callable[..., DataSource]] = {
    "npz": _npz,
    "npy": _npy,
    "images": _images,
    "callable": _callable,
    **{fmt: _dataset(fmt) for fmt in DATASET_FORMATS},  # COCO, YOLO, class folders, VOC (edgedeploy.data.formats)
}


def detect_format(path: Path, key: str) -> str:
    """The format of the data at `path` (a file by its suffix, a folder by the files in it); `key` names the config
    entry in errors."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{key.split('.')[0]} data not found", where=str(path), fix=f"check {key}")
    if not path.is_file() and not path.is_dir():
        raise UsageError(f"{key.split('.')[0]} data is {fileio.file_kind(path.stat().st_mode)}, not a file or a "
                         "folder", where=str(path), fix=f"check {key}")
    if path.is_file():
        if path.suffix.lower() in (".npy", ".npz"):
            return path.suffix.lower()[1:]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "images"
        raise UsageError(f"cannot tell the {key.split('.')[0]} format of a {path.suffix or 'suffix-less'} file",
                         where=str(path), fix=f"use an image folder, .npy or .npz, or set {key.split('.')[0]}.format")
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    if suffixes & set(IMAGE_SUFFIXES):
        return "images"
    if ".npz" in suffixes:
        return "npz"
    if ".npy" in suffixes:
        return "npy"
    raise UsageError(f"{key.split('.')[0]} set is empty: the folder has no jpg/png images and no .npy/.npz files",
                     where=str(path), fix=f"point {key} at the {key.split('.')[0]} images")


def open_source(fmt: str, target: str | Path, inputs: list[InputSpec], *, purpose: str, fix: str) -> DataSource:
    """The source of format `fmt` (a key of SOURCES) over `target`."""
    if fmt not in SOURCES:
        raise UsageError(f"unknown data format {fmt!r}", fix=f"use one of: {', '.join(SOURCES)}")
    return SOURCES[fmt](target, inputs, purpose=purpose, fix=fix)


__all__ = ["Annotations", "DataSource", "Record", "SOURCES", "detect_format", "iter_batches", "open_source",
           "select"]
