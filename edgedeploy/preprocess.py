"""Turning stored images into model inputs, and loading the real inputs a build is validated on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy.config import BuildSpec, InputSpec, Preprocess
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
    if recipe.resize == "resize":
        return np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    ratio = min(h / image.shape[0], w / image.shape[1])
    nh, nw = max(1, round(image.shape[0] * ratio)), max(1, round(image.shape[1] * ratio))
    canvas = np.full((h, w, 3), recipe.pad_value, dtype=np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top:top + nh, left:left + nw] = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR))
    return canvas


@dataclass
class ValidationSet:
    inputs: dict[str, np.ndarray]
    targets: np.ndarray | None  # detection labels (M, 6): image, class, x1, y1, x2, y2
    source: str  # where the inputs came from, for the report


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


def load_validation_set(spec: BuildSpec, random_samples: int = 8) -> ValidationSet:
    """Real inputs from `validation.data` (an .npz), else seeded random inputs of the configured shapes."""
    settings = spec.validation
    if settings.data is None:
        rng = np.random.default_rng(0)
        inputs = {}
        for spec_in in spec.inputs:
            shape = [random_samples if isinstance(d, str) else d for d in spec_in.shape]
            inputs[spec_in.name] = rng.random(shape).astype(spec_in.dtype)
        return ValidationSet(inputs, None, f"seeded random ({random_samples} samples)")
    path = Path(settings.data)
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError("validation data not found", where=str(path), fix="check validation.data") from None
    except (ValueError, OSError) as e:
        raise UsageError(f"cannot read validation data as .npz ({e})", where=str(path)) from None
    with data:
        keys = set(data.files)
        n = settings.samples
        if "images" in keys:
            if len(spec.inputs) != 1:
                raise UsageError("`images` feeds a single-input model; give `inputs` keyed by input name",
                                 where=str(path))
            images = data["images"][:n]
            if images.ndim != 4 or images.shape[-1] != 3:
                raise UsageError(f"`images` must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}",
                                 where=str(path))
            inputs = {spec.inputs[0].name: preprocess(images, spec.preprocess, spec.inputs[0].dtype)}
        else:
            missing = [i.name for i in spec.inputs if i.name not in keys]
            if missing:
                raise UsageError(f"no array `images`, nor arrays for inputs {missing} (has {sorted(keys)})",
                                 where=str(path), fix="store raw images as `images` or model inputs by input name")
            inputs = {i.name: data[i.name][:n] for i in spec.inputs}
        targets = data["targets"] if "targets" in keys and spec.validation.task == "detection" else None
    if targets is not None:  # other tasks read their labels elsewhere (evaluate.load_labels)
        if targets.ndim != 2 or targets.shape[1] != 6 or targets.dtype.kind not in "iuf":
            raise UsageError(f"`targets` is {targets.dtype} {list(targets.shape)}; detection needs (M, 6) numbers: "
                             "image index, class, x1, y1, x2, y2", where=str(path))
        targets = targets.astype(np.float32)
    for spec_in in spec.inputs:
        check_input(spec_in, inputs[spec_in.name], str(path))
    count = len(next(iter(inputs.values())))
    if targets is not None:
        targets = targets[targets[:, 0] < count]
    if spec.validation.task == "detection" and targets is None:
        raise UsageError("validation.task is detection but the data has no `targets` (M, 6) array", where=str(path))
    return ValidationSet(inputs, targets, f"{path.name} ({count} samples)")
