"""Calibration data: one reader for every INT8 route (NNCF on OpenVINO, Q/DQ ONNX, TensorRT's calibrator).

Sources (see calibration/README.md):
- an image folder (jpg/jpeg/png/bmp, read with Pillow as RGB, fitted to the input's H x W and preprocessed with the
  config's `preprocess:` recipe);
- an .npy file (model inputs (N, ...) of a single-input model, or uint8 images (N, H, W, 3));
- an .npz file (`images` uint8 NHWC, or arrays named like the inputs), or a folder of .npy/.npz files;
- a Python callable `package.module:function` returning an iterable of arrays (single-input) or dicts by input name,
  each one sample or a batch.

Selection is deterministic: candidates in sorted file order, and when there are more than `subset_size`, a seeded
choice of `subset_size` of them, kept in that order. The sha256 of exactly the samples used (names, dtypes, shapes,
bytes, in order) keys every calibration result made from them.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import arrayfile, fileio
from edgedeploy.config import BuildSpec, CalibrationSpec, InputSpec, import_callable
from edgedeploy.errors import UsageError
from edgedeploy.preprocess import fit_image, input_hw, preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IMAGE_MAX_PIXELS = 50_000_000  # an 8K frame is 33 Mpx; a calibration image is resized to the model's input anyway
HASH_SCHEMA = b"edgedeploy.calibration/1"


@dataclass
class CalibrationSet:
    """The samples used, in order: each a dict input name -> array with a batch dimension of 1."""

    samples: list[dict[str, np.ndarray]]
    ids: list[str]  # where each sample came from (file name, file[row], function[item])
    sha256: str
    source: str
    format: str
    candidates: int  # samples available before subsetting
    seed: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def stacked(self) -> dict[str, np.ndarray]:
        """All samples as one batch per input."""
        return {k: np.concatenate([s[k] for s in self.samples]) for k in self.samples[0]}

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "size": len(self), "candidates": self.candidates,
                "seed": self.seed, "sha256": self.sha256, "first": self.ids[:3], "last": self.ids[-1:],
                "read_seconds": round(self.seconds, 3)}


def hash_samples(samples: list[dict[str, np.ndarray]], order: list[str]) -> str:
    """sha256 over every sample's tensors (name, dtype, shape, bytes), in sample order and input order."""
    h = hashlib.sha256(HASH_SCHEMA)
    for sample in samples:
        for name in order:
            a = np.ascontiguousarray(sample[name])
            h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def select(count: int, subset_size: int, seed: int) -> list[int]:
    """Indices used out of `count` candidates: all of them, or a seeded subset kept in candidate order."""
    if count <= subset_size:
        return list(range(count))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, subset_size, replace=False))


def load_calibration(spec: BuildSpec, settings: CalibrationSpec | None = None) -> CalibrationSet:
    """Read, select, preprocess and check the calibration set the config names; every problem is a UsageError."""
    settings = settings or spec.calibration
    start = time.perf_counter()
    fmt = resolve_format(settings)
    if fmt == "callable":
        ids, samples, candidates, source = _from_callable(spec, settings)
    else:
        path = Path(settings.data)
        source = str(path)
        if fmt == "images":
            ids, samples, candidates = _from_images(spec, settings, path)
        else:
            ids, samples, candidates = _from_arrays(spec, settings, path, fmt)
    if not samples:
        raise UsageError("calibration set is empty", where=source,
                         fix="point calibration.data at a folder of images or an .npy/.npz with samples")
    order = [i.name for i in spec.inputs]
    return CalibrationSet(samples=samples, ids=ids, sha256=hash_samples(samples, order), source=source, format=fmt,
                          candidates=candidates, seed=settings.seed, seconds=time.perf_counter() - start)


def resolve_format(settings: CalibrationSpec) -> str:
    if settings.function is not None:
        if settings.format not in ("auto", "callable"):
            raise UsageError(f"calibration.format is {settings.format} but calibration.function is given",
                             fix="use format: callable (or auto)")
        return "callable"
    if settings.data is None:
        raise UsageError("INT8 needs calibration data and the config has none",
                         where="calibration", fix="set calibration.data (an image folder, .npy or .npz) or "
                                                  "calibration.function (`module:function`)")
    path = Path(settings.data)
    if not path.exists():
        raise UsageError("calibration data not found", where=str(path), fix="check calibration.data")
    if not path.is_file() and not path.is_dir():
        raise UsageError(f"calibration data is {fileio.file_kind(path.stat().st_mode)}, not a file or a folder",
                         where=str(path), fix="check calibration.data")
    if settings.format != "auto":
        return settings.format
    if path.is_file():
        if path.suffix.lower() in (".npy", ".npz"):
            return path.suffix.lower()[1:]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "images"
        raise UsageError(f"cannot tell the calibration format of a {path.suffix or 'suffix-less'} file",
                         where=str(path), fix="use an image folder, .npy or .npz, or set calibration.format")
    suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
    if suffixes & set(IMAGE_SUFFIXES):
        return "images"
    if ".npz" in suffixes:
        return "npz"
    if ".npy" in suffixes:
        return "npy"
    raise UsageError("calibration set is empty: the folder has no jpg/png images and no .npy/.npz files",
                     where=str(path), fix="point calibration.data at the calibration images")


# --------------------------------------------------------------------------------------------------- readers

def _single_input(spec: BuildSpec, what: str, where: str) -> InputSpec:
    if len(spec.inputs) != 1:
        raise UsageError(f"{what} feed a single-input model; this one has {len(spec.inputs)} inputs", where=where,
                         fix="give an .npz with arrays named like the inputs, or a callable returning dicts")
    return spec.inputs[0]


def _from_images(spec: BuildSpec, settings: CalibrationSpec, path: Path):
    spec_in = _single_input(spec, "images", str(path))
    files = [path] if path.is_file() else sorted(p for p in path.iterdir()
                                                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = [files[i] for i in select(len(files), settings.subset_size, settings.seed)]
    size = input_hw(spec_in, spec.preprocess)
    samples = []
    for f in chosen:
        image = read_image(f)
        image = fit_image(image, size, spec.preprocess, where=str(f))
        x = preprocess(image[None], spec.preprocess, spec_in.dtype)
        _check_sample(spec_in, x, str(f))
        samples.append({spec_in.name: x})
    return [f.name for f in chosen], samples, len(files)


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 HWC RGB; a corrupt or unreadable file, or one of more than IMAGE_MAX_PIXELS pixels
    (checked from its header, before it is decoded: a decompression bomb), is a UsageError naming it."""
    from PIL import Image

    fix = "replace or delete the file"
    too_large = f"more than the {IMAGE_MAX_PIXELS / 1e6:.0f} megapixels a calibration image may have"
    with fileio.open_input(path, "calibration image", fix=fix) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the budget named
        try:
            with Image.open(f) as im:
                pixels = im.width * im.height
                if pixels > IMAGE_MAX_PIXELS:
                    raise UsageError(f"calibration image is {im.width}x{im.height} ({pixels / 1e6:.0f} megapixels), "
                                     f"{too_large}", where=str(path),
                                     fix="downscale it to about the model's input size")
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UsageError, MemoryError):
            raise
        except Image.DecompressionBombError:
            raise UsageError(f"calibration image is {too_large} (its header says so; a decompression bomb?)",
                             where=str(path), fix="downscale it to about the model's input size") from None
        except Exception as e:  # Pillow's decoders raise what they raise on a damaged file; all are the file's
            text = str(e).splitlines()
            raise UsageError(f"unreadable or corrupt calibration image ({type(e).__name__}"
                             f"{': ' + text[0] if text else ''})", where=str(path), fix=fix) from None


def _from_arrays(spec: BuildSpec, settings: CalibrationSpec, path: Path, fmt: str):
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and p.suffix == f".{fmt}")
    units: list[tuple[str, dict[str, np.ndarray], bool]] = []  # (id, arrays, are_images)
    for f in files:
        units.extend(_read_array_file(spec, f, fmt))
    index: list[tuple[int, int]] = [(u, r) for u, (_, arrays, _) in enumerate(units)
                                    for r in range(len(next(iter(arrays.values()))))]
    chosen = [index[i] for i in select(len(index), settings.subset_size, settings.seed)]
    ids, samples = [], []
    for u, r in chosen:
        name, arrays, images = units[u]
        where = f"{name}[{r}]"
        if images:
            spec_in = spec.inputs[0]
            img = fit_image(arrays["images"][r], input_hw(spec_in, spec.preprocess), spec.preprocess, where)
            sample = {spec_in.name: preprocess(img[None], spec.preprocess, spec_in.dtype)}
        else:
            sample = {i.name: _as_dtype(arrays[i.name][r:r + 1], i, where) for i in spec.inputs}
        for i in spec.inputs:
            _check_sample(i, sample[i.name], where)
        ids.append(where)
        samples.append(sample)
    return ids, samples, len(index)


def _read_array_file(spec: BuildSpec, f: Path, fmt: str) -> list[tuple[str, dict[str, np.ndarray], bool]]:
    fix = "check calibration.data (numeric arrays saved with np.save / np.savez)"
    if fmt == "npy":
        spec_in = _single_input(spec, ".npy arrays", str(f))
        a = arrayfile.read_npy(f, "calibration data", fix=fix)
        if _looks_like_images(a, spec_in):
            return [(f.name, {"images": a}, True)]
        if a.ndim == len(spec_in.shape) - 1:
            a = a[None]
        return [(f.name, {spec_in.name: a}, False)]
    with arrayfile.open_npz(f, "calibration data", fix=fix) as loaded:
        keys = set(loaded.files)
        if "images" in keys and not any(i.name == "images" and loaded.headers["images"].dtype == np.dtype(i.dtype)
                                        for i in spec.inputs):
            _single_input(spec, "`images` arrays", str(f))
            header = loaded.headers["images"]
            if len(header.shape) != 4 or header.shape[-1] != 3 or header.dtype != np.uint8:
                raise UsageError(f"`images` must be uint8 (N, H, W, 3), got {header.dtype} {list(header.shape)}",
                                 where=str(f), fix=fix)
            return [(f.name, {"images": loaded["images"]}, True)]
        missing = [i.name for i in spec.inputs if i.name not in keys]
        if missing:
            raise UsageError(f"no array `images`, nor arrays for inputs {missing} (has {sorted(keys)})", where=str(f),
                             fix="store raw images as `images` or model inputs by input name")
        arrays = {}
        for i in spec.inputs:
            a = loaded[i.name]
            arrays[i.name] = a[None] if a.ndim == len(i.shape) - 1 else a
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise UsageError(f"inputs have different sample counts {sorted(counts)}", where=str(f))
        return [(f.name, arrays, False)]


def _looks_like_images(a: np.ndarray, spec_in: InputSpec) -> bool:
    return a.dtype == np.uint8 and np.dtype(spec_in.dtype) != np.uint8 and a.ndim == 4 and a.shape[-1] == 3


def _from_callable(spec: BuildSpec, settings: CalibrationSpec):
    func = import_callable(settings.function, "calibration.function")
    where = f"calibration.function {settings.function}"
    try:
        items = func()
    except Exception as e:
        raise UsageError(f"the calibration function raised {type(e).__name__}: {e}", where=where) from None
    if not isinstance(items, Iterable):
        raise UsageError(f"the calibration function returned a {type(items).__name__}, not an iterable",
                         where=where, fix="return a list/generator of arrays or of dicts keyed by input name")
    rows: list[tuple[str, dict[str, np.ndarray]]] = []
    for k, item in enumerate(items):
        item_where = f"{settings.function}[{k}]"
        if isinstance(item, dict):
            missing = [i.name for i in spec.inputs if i.name not in item]
            if missing:
                raise UsageError(f"sample has no tensors for inputs {missing} (has {sorted(item)})", where=item_where)
            arrays = {i.name: np.asarray(item[i.name]) for i in spec.inputs}
        else:
            spec_in = _single_input(spec, "plain arrays from the calibration function", where)
            arrays = {spec_in.name: np.asarray(item)}
        for i in spec.inputs:
            if arrays[i.name].ndim == len(i.shape) - 1:
                arrays[i.name] = arrays[i.name][None]
        n = len(next(iter(arrays.values())))
        rows += [(f"{item_where}" + (f"[{r}]" if n > 1 else ""), {name: a[r:r + 1] for name, a in arrays.items()})
                 for r in range(n)]
    chosen = [rows[i] for i in select(len(rows), settings.subset_size, settings.seed)]
    samples = []
    for rid, arrays in chosen:
        sample = {i.name: _as_dtype(arrays[i.name], i, rid) for i in spec.inputs}
        for i in spec.inputs:
            _check_sample(i, sample[i.name], rid)
        samples.append(sample)
    return [r for r, _ in chosen], samples, len(rows), settings.function


def _as_dtype(a: np.ndarray, spec_in: InputSpec, where: str) -> np.ndarray:
    want = np.dtype(spec_in.dtype)
    if a.dtype == want:
        return np.ascontiguousarray(a)
    if a.dtype.kind == "f" and want.kind == "f":  # float64 from numpy code is normal; float32 is what runs
        return np.ascontiguousarray(a, dtype=want)
    raise UsageError(f"tensor {spec_in.name!r} has dtype {a.dtype}, the input is {spec_in.dtype}", where=where,
                     fix="convert the calibration data to the input's dtype")


def _check_sample(spec_in: InputSpec, a: np.ndarray, where: str) -> None:
    expected = [1 if isinstance(d, str) else d for d in spec_in.shape]
    expected_text = "[" + ", ".join(str(d) for d in spec_in.shape) + "]"
    if a.ndim != len(expected) or any(isinstance(d, int) and d != s for d, s in zip(spec_in.shape, a.shape)):
        raise UsageError(f"calibration sample tensor {spec_in.name!r} has shape {list(a.shape[1:])} per sample, "
                         f"expected {expected_text} (batch first)", where=where,
                         fix="fix the calibration data or preprocess.resize / inputs[].shape")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise UsageError(f"calibration sample tensor {spec_in.name!r} has NaN or Inf values", where=where)


__all__ = ["CalibrationSet", "load_calibration", "resolve_format", "hash_samples", "select", "read_image", "IMAGE_SUFFIXES"]
