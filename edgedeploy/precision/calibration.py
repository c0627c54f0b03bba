"""Calibration data: one reader for every INT8 route (NNCF on OpenVINO, Q/DQ ONNX, TensorRT's calibrator).

Sources (read through edgedeploy.data; see calibration/README.md):
- an image folder (jpg/jpeg/png/bmp, read with Pillow as RGB, fitted to the input's H x W and preprocessed with the
  config's `preprocess:` recipe);
- an .npy file (model inputs (N, ...) of a single-input model, or uint8 images (N, H, W, 3));
- an .npz file (`images` uint8 NHWC, or arrays named like the inputs), or a folder of .npy/.npz files;
- a Python callable `package.module:function` returning an iterable of arrays (single-input) or dicts by input name,
  each one sample or a batch;
- a dataset (COCO JSON, Ultralytics YOLO data.yaml or folder, class folders, Pascal VOC): its images of
  `calibration.split` (YOLO, VOC; default train), read by the same readers validation uses, preprocessed as above.

Selection is deterministic: candidates in sorted file order, and when there are more than `subset_size`, a seeded
choice of `subset_size` of them, kept in that order. The sha256 of exactly the samples used (names, dtypes, shapes,
bytes, in order) keys every calibration result made from them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.config import BuildSpec, CalibrationSpec, InputSpec
from edgedeploy.data import Record, detect_format, iter_batches, open_source, select
from edgedeploy.data.arrays import single_input
from edgedeploy.data.formats import FORMATS as DATASET_FORMATS
from edgedeploy.data.formats import detect_format as detect_dataset
from edgedeploy.data.formats import open_dataset
from edgedeploy.errors import UsageError
from edgedeploy.preprocess import fit_image, input_hw, preprocess

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


def load_calibration(spec: BuildSpec, settings: CalibrationSpec | None = None) -> CalibrationSet:
    """Read (edgedeploy.data), select, preprocess and check the calibration set the config names; every problem is
    a UsageError. Images are decoded and fitted on a background thread ahead of the checks."""
    settings = settings or spec.calibration
    start = time.perf_counter()
    fmt = resolve_format(settings)
    if fmt == "callable":
        target, source = settings.function, settings.function
    else:
        target = Path(settings.data)
        source = str(target)
        if fmt == "images" or fmt in DATASET_FORMATS:
            _single_input(spec, "images", source)
    if fmt in DATASET_FORMATS:
        data = open_dataset(target, fmt, images=settings.images, split=settings.split, purpose="calibration")
    else:
        data = open_source(fmt, target, list(spec.inputs), purpose="calibration",
                           fix="check calibration.data (numeric arrays saved with np.save / np.savez)")
    chosen = select(len(data), subset=settings.subset_size, seed=settings.seed)

    def where(key: str) -> str:  # an image by its path, an array row or a function's item by its key
        if fmt == "images":
            return str(target if target.is_file() else target / key)
        return f"{source}: {key}" if fmt in DATASET_FORMATS else key

    ids, samples = [], []
    def prepare(record: Record) -> tuple[str, dict[str, np.ndarray]]:
        return _sample(spec, record, where(record.key))

    for batch in iter_batches(data, chosen, batch=8, prepare=prepare):
        for key, sample in batch:
            ids.append(key)
            samples.append(sample)
    if not samples:
        raise UsageError("calibration set is empty", where=source,
                         fix="point calibration.data at a folder of images or an .npy/.npz with samples")
    order = [i.name for i in spec.inputs]
    return CalibrationSet(samples=samples, ids=ids, sha256=hash_samples(samples, order), source=source, format=fmt,
                          candidates=len(data), seed=settings.seed, seconds=time.perf_counter() - start)


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
    if settings.format != "auto":
        return settings.format
    path = Path(settings.data)
    if path.exists() and not (path.is_file() and path.suffix.lower() in (".npy", ".npz")):
        dataset = detect_dataset(path)  # a COCO JSON, YOLO yaml/folder, class folders or VOC folder
        if dataset is not None:
            return dataset
    return detect_format(path, "calibration.data")


def _single_input(spec: BuildSpec, what: str, where: str) -> InputSpec:
    return single_input(list(spec.inputs), what, where)


def _sample(spec: BuildSpec, record: Record, where: str) -> tuple[str, dict[str, np.ndarray]]:
    """One record as a checked calibration sample (batch dimension 1): a raw image fitted to the input's size and
    preprocessed with the config's recipe, or ready inputs cast to the inputs' dtypes."""
    if record.image is not None:
        spec_in = spec.inputs[0]
        image = fit_image(record.image, input_hw(spec_in, spec.preprocess), spec.preprocess, where=where)
        sample = {spec_in.name: preprocess(image[None], spec.preprocess, spec_in.dtype)}
    else:
        sample = {i.name: _as_dtype(record.inputs[i.name][None], i, where) for i in spec.inputs}
    for i in spec.inputs:
        _check_sample(i, sample[i.name], where)
    return record.key, sample


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


__all__ = ["CalibrationSet", "load_calibration", "resolve_format", "hash_samples"]
