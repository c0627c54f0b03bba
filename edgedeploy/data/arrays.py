"""Arrays on disk as data: an .npz (raw `images`, or model inputs by input name, with `targets` / `labels`), an .npy
(raw images or one input's samples), or a folder of either. The one reader of such files for calibration and
validation; every array is read through edgedeploy.arrayfile (no pickles, size and dtype checks)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedeploy import arrayfile, fileio
from edgedeploy.config import InputSpec
from edgedeploy.data.base import Record
from edgedeploy.errors import UsageError


@dataclass
class ArrayFile:
    """One file's samples: `arrays` holds raw uint8 NHWC `images` (`images` True) or one array per model input, all
    with the sample count first; `extra` the other arrays the task reads (`targets`, `labels`)."""

    path: Path
    arrays: dict[str, np.ndarray]
    images: bool
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))


def single_input(inputs: list[InputSpec], what: str, where: str) -> InputSpec:
    if len(inputs) != 1:
        raise UsageError(f"{what} feed a single-input model; this one has {len(inputs)} inputs", where=where,
                         fix="give an .npz with arrays named like the inputs, or a callable returning dicts")
    return inputs[0]


def is_model_input(inputs: list[InputSpec], name: str, header: arrayfile.Header) -> bool:
    """Whether the array `name` is a model input as it is (named like one, with its dtype, rank and fixed sizes)."""
    return any(i.name == name and header.dtype == np.dtype(i.dtype) and len(header.shape) == len(i.shape)
               and all(isinstance(d, str) or d == s for d, s in zip(i.shape, header.shape)) for i in inputs)


def read_array_file(path: Path, fmt: str, inputs: list[InputSpec], what: str, fix: str, *,
                    images_fix: str | None = None, single_sample: bool = True, limit: int | None = None,
                    extra: tuple[str, ...] = ()) -> ArrayFile:
    """The samples of an .npz or .npy file (`fmt`). `fix` is for an unreadable file, `images_fix` (default `fix`)
    for an `images` array of the wrong layout; `single_sample`: an array one rank short of its input is one sample;
    `limit`: read at most that many samples of each array; `extra`: other arrays to read when present."""
    if fmt == "npy":
        spec_in = single_input(inputs, ".npy arrays", str(path))
        a = arrayfile.read_npy(path, what, fix=fix)
        if a.dtype == np.uint8 and np.dtype(spec_in.dtype) != np.uint8 and a.ndim == 4 and a.shape[-1] == 3:
            return ArrayFile(path, {"images": a[:limit]}, True)
        if single_sample and a.ndim == len(spec_in.shape) - 1:
            a = a[None]
        return ArrayFile(path, {spec_in.name: a[:limit]}, False)
    with arrayfile.open_npz(path, what, fix=fix) as data:
        found = {k: data[k] for k in extra if k in data.files}
        if "images" in data.files and not is_model_input(inputs, "images", data.headers["images"]):
            spec_in = single_input(inputs, "`images` arrays", str(path))
            header = data.headers["images"]
            if header.dtype != np.uint8 or len(header.shape) != 4 or header.shape[-1] != 3:
                float_note = (f"; float arrays are not raw images: store them as {spec_in.name!r}, the "
                              f"preprocessed input ({spec_in.dtype}, {list(spec_in.shape)})"
                              if header.dtype.kind == "f" else "")
                raise UsageError(f"`images` must be uint8 (N, H, W, 3), got {header.dtype} {list(header.shape)}"
                                 f"{float_note}", where=str(path), fix=images_fix or fix)
            return ArrayFile(path, {"images": data["images"][:limit]}, True, found)
        missing = [i.name for i in inputs if i.name not in data.files]
        if missing:
            raise UsageError(f"no array `images`, nor arrays for inputs {missing} (has {sorted(data.files)})",
                             where=str(path), fix="store raw images as `images` or model inputs by input name")
        arrays = {}
        for i in inputs:
            a = data[i.name]
            arrays[i.name] = (a[None] if single_sample and a.ndim == len(i.shape) - 1 else a)[:limit]
    return ArrayFile(path, arrays, False, found)


class ArrayFilesSource:
    """The samples of one .npz/.npy file or of every file of that suffix in a folder (sorted by name), in order;
    a record's key is `file[row]`."""

    def __init__(self, path: Path, fmt: str, inputs: list[InputSpec], what: str, fix: str):
        self.kind = fmt
        path = Path(path)
        self.files = [path] if path.is_file() else sorted(p for p in path.iterdir()
                                                          if p.is_file() and p.suffix == f".{fmt}")
        self.units = [read_array_file(f, fmt, inputs, what, fix) for f in self.files]
        for unit in self.units:
            counts = {len(a) for a in unit.arrays.values()}
            if len(counts) != 1:
                raise UsageError(f"inputs have different sample counts {sorted(counts)}", where=str(unit.path))
        self.index = [(u, r) for u, unit in enumerate(self.units) for r in range(len(unit))]

    def __len__(self) -> int:
        return len(self.index)

    def record(self, index: int) -> Record:
        u, r = self.index[index]
        unit = self.units[u]
        key = f"{unit.path.name}[{r}]"
        if unit.images:
            return Record(key, unit.arrays["images"][r], None, None)
        return Record(key, None, {name: a[r] for name, a in unit.arrays.items()}, None)

    def class_names(self) -> list[str] | None:
        return None

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"edgedeploy.data.arrays/1")
        for f in self.files:
            h.update(f"|{f.name}|{fileio.sha256_file(f)}".encode())
        return h.hexdigest()


__all__ = ["ArrayFile", "ArrayFilesSource", "is_model_input", "read_array_file", "single_input"]
