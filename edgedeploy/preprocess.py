"""Turning stored images into model inputs, and loading the real inputs a build is validated on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy.config import BuildSpec, InputSpec, Preprocess
from edgedeploy.data.arrays import read_array_file
from edgedeploy.data.formats import open_dataset
from edgedeploy.data.stream import iter_batches, select
from edgedeploy.data.transform import fit
from edgedeploy.errors import UsageError


def preprocess(images: np.ndarray, recipe: Preprocess, dtype: str = "float32") -> np.ndarray:
    """uint8 NHWC RGB images → model input: channel order, scale, mean/std, layout."""
    x = images.astype(np.float32)
    if recipe.color == "BGR":
        x = x[..., ::-1]
    x = (x * recipe.scale - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std, np.float32)
    if recipe.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=dtype)


def to_pictures(inputs: np.ndarray, recipe: Preprocess) -> np.ndarray:
    """Model inputs back to uint8 NHWC RGB pictures (the inverse of `preprocess`, rounded), to draw on."""
    x = np.asarray(inputs, np.float32)
    if recipe.layout == "NCHW":
        x = x.transpose(0, 2, 3, 1)
    x = (x * np.asarray(recipe.std, np.float32) + np.asarray(recipe.mean, np.float32)) / recipe.scale
    if recipe.color == "BGR":
        x = x[..., ::-1]
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def input_hw(spec_in: InputSpec, recipe: Preprocess) -> tuple[int | None, int | None]:
    """The (H, W) an image must have for this input (None for a dynamic dimension)."""
    if len(spec_in.shape) != 4:
        return None, None
    h, w = (spec_in.shape[2], spec_in.shape[3]) if recipe.layout == "NCHW" else (spec_in.shape[1], spec_in.shape[2])
    return (h if isinstance(h, int) else None), (w if isinstance(w, int) else None)


def fit_image(image: np.ndarray, size: tuple[int | None, int | None], recipe: Preprocess,
              where: str = "image") -> np.ndarray:
    """One uint8 HWC image brought to (H, W) by `recipe.resize`: `resize` stretches (bilinear), `letterbox` keeps
    the aspect ratio and pads with `recipe.pad_value` (centred), `none` refuses another size. Same size: unchanged."""
    h, w = size
    h = image.shape[0] if h is None else h
    w = image.shape[1] if w is None else w
    if image.shape[:2] == (h, w):
        return image
    if recipe.resize == "none":
        raise UsageError(f"image is {image.shape[1]}x{image.shape[0]} (WxH), the input needs {w}x{h}",
                         where=where, fix="resize the data or set preprocess.resize: resize | letterbox")
    from PIL import Image

    pil = Image.fromarray(image)
    method = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST}[recipe.interpolation]
    if recipe.resize == "resize":
        return np.asarray(pil.resize((w, h), method), dtype=np.uint8)
    if recipe.resize == "crop":  # shorter side to the crop's size / crop_pct, then the centre H x W
        scale = max(h, w) / recipe.crop_pct / min(image.shape[:2])
        nh, nw = max(h, round(image.shape[0] * scale)), max(w, round(image.shape[1] * scale))
        top, left = (nh - h) // 2, (nw - w) // 2
        return np.asarray(pil.resize((nw, nh), method).crop((left, top, left + w, top + h)), dtype=np.uint8)
    ratio = min(h / image.shape[0], w / image.shape[1])
    nh, nw = max(1, round(image.shape[0] * ratio)), max(1, round(image.shape[1] * ratio))
    canvas = np.full((h, w, 3), recipe.pad_value, dtype=np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = np.asarray(pil.resize((nw, nh), method))
    return canvas


@dataclass
class ValidationSet:
    inputs: dict[str, np.ndarray]
    targets: np.ndarray | None  # detection labels (M, 6): image, class, x1, y1, x2, y2 in model-input pixels
    source: str  # where the inputs came from, for the report
    labels: np.ndarray | None = None  # classification labels (N,) when the dataset has them (class folders)
    class_names: list[str] | None = None  # the dataset's classes, when it names them


def check_input(spec_in: InputSpec, array: np.ndarray, where: str) -> None:
    """Refuse an input whose rank, static dims or dtype differ from the spec, naming the tensor."""
    if array.dtype != np.dtype(spec_in.dtype):
        raise UsageError(f"input {spec_in.name!r} has dtype {array.dtype}, the config says {spec_in.dtype}",
                         where=where, fix="fix inputs[].dtype or the data")
    shape = list(array.shape)
    expected = spec_in.shape
    if len(shape) != len(expected) or any(isinstance(e, int) and e != s for e, s in zip(expected, shape)):
        raise UsageError(f"input {spec_in.name!r} has shape {shape}, the config says {expected}",
                         where=where, fix="fix inputs[].shape or the preprocessing")


def check_targets(targets: np.ndarray, where: str, name: str = "targets") -> None:
    """Detection labels must be (M, 6) numbers: image index, class, x1, y1, x2, y2."""
    if targets.ndim != 2 or targets.shape[1] != 6 or targets.dtype.kind not in "iuf":
        raise UsageError(f"`{name}` must be (M, 6) numbers (image, class, x1, y1, x2, y2), got {targets.dtype} "
                         f"{list(targets.shape)}", where=where, fix="fix the detection labels")
    if targets.dtype.kind == "f" and not np.isfinite(targets).all():
        raise UsageError(f"`{name}` holds NaN or Inf values", where=where, fix="fix the detection labels")


def load_validation_set(spec: BuildSpec, random_samples: int = 8) -> ValidationSet:
    """Real inputs from `validation.data` (an .npz, read as untrusted arrays), else seeded random inputs of the
    configured shapes. `images` holds raw uint8 images, preprocessed here; an array named like an input that already
    has the input's dtype and shape is that input as it is (so float images are never scaled by 1/255 again)."""
    settings = spec.validation
    if settings.data is None:
        rng = np.random.default_rng(0)
        inputs = {}
        for spec_in in spec.inputs:
            shape = [random_samples if isinstance(d, str) else d for d in spec_in.shape]
            inputs[spec_in.name] = rng.random(shape).astype(spec_in.dtype)
        return ValidationSet(inputs, None, f"seeded random ({random_samples} samples)")
    path = Path(settings.data)
    if settings.format != "npz" and not (settings.format == "auto" and path.suffix.lower() == ".npz"):
        return load_dataset(spec)
    found = read_array_file(path, "npz", list(spec.inputs), "validation data", "check validation.data",
                            images_fix="fix the validation data", single_sample=False, limit=settings.samples,
                            extra=("targets",) if settings.task == "detection" else ())
    if found.images:
        inputs = {spec.inputs[0].name: preprocess(found.arrays["images"], spec.preprocess, spec.inputs[0].dtype)}
    else:
        inputs = found.arrays
    # other tasks read their labels elsewhere (evaluate.load_labels)
    targets = found.extra.get("targets")
    for spec_in in spec.inputs:
        check_input(spec_in, inputs[spec_in.name], str(path))
    counts = {name: len(a) for name, a in inputs.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise UsageError(f"the inputs hold different or no sample counts ({counts})", where=str(path),
                         fix="give every input the same number of samples, at least one")
    count = len(next(iter(inputs.values())))
    if targets is not None:
        check_targets(targets, str(path))
        targets = targets.astype(np.float32)
        targets = targets[targets[:, 0] < count]
    if spec.validation.task == "detection" and targets is None:
        raise UsageError("validation.task is detection but the data has no `targets` (M, 6) array", where=str(path))
    return ValidationSet(inputs, targets, f"{path.name} ({count} samples)")


def load_dataset(spec: BuildSpec) -> ValidationSet:
    """A dataset (COCO, YOLO, class folders, VOC; edgedeploy.data) as a ValidationSet: the images chosen by
    `samples` / `subset` / `seed`, fitted to the input (Ultralytics' letterbox rule, edgedeploy.data.transform) and
    preprocessed; boxes mapped onto the fitted image with each image's own transform, crowd regions left out."""
    settings = spec.validation
    path = Path(settings.data)
    source = open_dataset(path, settings.format, images=settings.images, split=settings.split,
                          class_map=settings.class_map)
    if len(spec.inputs) != 1:
        raise UsageError("a dataset feeds a single-input model", where=str(path),
                         fix="give an .npz with arrays named like the inputs")
    spec_in = spec.inputs[0]
    size = input_hw(spec_in, spec.preprocess)
    recipe = spec.preprocess
    indices = select(len(source), settings.samples, settings.subset, settings.seed)
    inputs, rows, labels = [], [], []
    for batch in iter_batches(source, indices, 16):
        for record in batch:
            canvas, t = fit(record.image, size, recipe.resize, recipe.pad_value, recipe.stride, where=record.key)
            inputs.append(preprocess(canvas[None], recipe, spec_in.dtype))
            ann = record.annotations
            keep = ~ann.iscrowd if ann.iscrowd is not None else np.ones(len(ann.classes), bool)
            boxes = ann.boxes[keep] * [t.scale_x, t.scale_y, t.scale_x, t.scale_y] + [t.pad_left, t.pad_top] * 2
            n = len(inputs) - 1
            rows.append(np.column_stack([np.full(len(boxes), n), ann.classes[keep], boxes]))
            labels.append(-1 if ann.label is None else ann.label)
    stacked = {spec_in.name: np.concatenate(inputs)}
    check_input(spec_in, stacked[spec_in.name], str(path))
    targets = np.concatenate(rows).astype(np.float32) if spec.validation.task == "detection" else None
    has_labels = spec.validation.task == "classification" and min(labels) >= 0
    return ValidationSet(stacked, targets, f"{path.name} ({source.kind}, {len(indices)} of {len(source)} images)",
                         np.asarray(labels, np.int64) if has_labels else None, source.class_names())
