"""Turning stored images into model inputs, and loading the real inputs a build is validated on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedeploy import fileio
from edgedeploy.config import BuildSpec, InputSpec, Preprocess
from edgedeploy.data.arrays import read_array_file
from edgedeploy.data.formats import open_dataset
from edgedeploy.data.stream import iter_batches, select
from edgedeploy.data.coco import CocoSource
from edgedeploy.data.transform import Transform, fit
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


Batches = Callable[[int], Iterator[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class DatasetRef:
    """The whole validation set behind a tensor sample: the data's content hash (edgedeploy.data sources'
    fingerprint; an .npz file's sha256) and the records used, in order."""

    sha256: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Placement:
    """Where each sample of a dataset came from, so predictions are written as the dataset's own tools read them:
    its image id, the transform from the original image to the input (scale x, scale y, pad left, pad top,
    original height, width; edgedeploy.data.transform) and the dataset's category id of each class index (COCO)."""

    image_ids: np.ndarray  # (N,) int64
    transforms: np.ndarray  # (N, 6) float64
    category_ids: np.ndarray | None = None  # (C,) int64; None: 1 + the class index

    def transform(self, index: int) -> Transform:
        sx, sy, left, top, h, w = self.transforms[index]
        return Transform(float(sx), float(sy), float(left), float(top), int(h), int(w))


@dataclass
class ValidationSet:
    """The validation data. `inputs` is the tensor sample: every sample of a set of at most
    validation.tensor_samples, else the first that many (their full outputs are kept and compared per output);
    `batches` streams the whole set, read ahead on a background thread for a dataset, so memory stays bounded by
    the sample. `targets` and `labels` cover the whole set."""

    inputs: dict[str, np.ndarray]
    targets: np.ndarray | None  # detection labels (M, 6): image, class, x1, y1, x2, y2 in model-input pixels
    source: str  # where the inputs came from, for the report
    labels: np.ndarray | None = None  # classification labels (N,) when the dataset has them (class folders)
    class_names: list[str] | None = None  # the dataset's classes, when it names them
    count: int | None = None  # samples in the whole set; None: those of `inputs`
    stream: Batches | None = None  # the whole set, `batch` samples at a time; None: `inputs` is the whole set
    dataset: DatasetRef | None = None  # names the whole set when `inputs` hold only its sample
    placement: Placement | None = None  # a dataset's image ids and transforms, for written predictions

    @property
    def size(self) -> int:
        return self.count if self.count is not None else len(next(iter(self.inputs.values())))

    @property
    def sampled(self) -> bool:
        """True when `inputs` hold only the first samples of the set."""
        return self.size > len(next(iter(self.inputs.values())))

    def batches(self, batch: int) -> Iterator[dict[str, np.ndarray]]:
        return (self.stream or data_batches(self.inputs))(batch)


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
    data = ValidationSet(inputs, targets, f"{path.name} ({count} samples)")
    keep = settings.tensor_samples
    if count <= keep:
        return data
    data.inputs, data.count = {k: v[:keep] for k, v in inputs.items()}, count
    data.stream = data_batches(inputs)
    data.dataset = DatasetRef(fileio.sha256_file(path), tuple(range(count)))
    return data


def data_batches(inputs: dict[str, np.ndarray]) -> Batches:
    """Batches of arrays already in memory (an .npz)."""
    def batches(batch: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(next(iter(inputs.values()))), batch):
            yield {k: v[start:start + batch] for k, v in inputs.items()}

    return batches


def load_dataset(spec: BuildSpec) -> ValidationSet:
    """A dataset (COCO, YOLO, class folders, VOC; edgedeploy.data) as a ValidationSet: the images chosen by
    `samples` / `subset` / `seed`, fitted to the input (Ultralytics' letterbox rule, edgedeploy.data.transform) and
    preprocessed; boxes mapped onto the fitted image with each image's own transform, crowd regions left out. One
    pass reads every image for its labels and keeps the first `tensor_samples` inputs; `batches` reads them again."""
    settings = spec.validation
    path = Path(settings.data)
    source = open_validation_source(spec)
    spec_in = spec.inputs[0]
    indices = select(len(source), settings.samples, settings.subset, settings.seed)
    keep = settings.tensor_samples
    inputs, rows, labels, ids, transforms = [], [], [], [], []
    for batch in iter_batches(source, indices, 16, prepare=lambda r: (r.annotations, *fit_record(r, spec))):
        for ann, canvas, t in batch:
            ids.append(ann.image_id if ann.image_id is not None else len(ids) + 1)
            transforms.append([t.scale_x, t.scale_y, t.pad_left, t.pad_top, t.orig_h, t.orig_w])
            if len(inputs) < keep:
                inputs.append(preprocess(canvas[None], spec.preprocess, spec_in.dtype))
            keep_box = ~ann.iscrowd if ann.iscrowd is not None else np.ones(len(ann.classes), bool)
            boxes = ann.boxes[keep_box] * [t.scale_x, t.scale_y, t.scale_x, t.scale_y] + [t.pad_left, t.pad_top] * 2
            rows.append(np.column_stack([np.full(len(boxes), len(labels)), ann.classes[keep_box], boxes]))
            labels.append(-1 if ann.label is None else ann.label)
    stacked = {spec_in.name: np.concatenate(inputs)}
    check_input(spec_in, stacked[spec_in.name], str(path))
    targets = np.concatenate(rows).astype(np.float32) if spec.validation.task == "detection" else None
    has_labels = spec.validation.task == "classification" and min(labels) >= 0
    data = ValidationSet(stacked, targets, f"{path.name} ({source.kind}, {len(indices)} of {len(source)} images)",
                         np.asarray(labels, np.int64) if has_labels else None, source.class_names())
    data.placement = Placement(np.asarray(ids, np.int64), np.asarray(transforms, np.float64).reshape(-1, 6),
                               np.asarray(source.category_ids(), np.int64) if isinstance(source, CocoSource) else None)
    if len(indices) > keep:
        data.count, data.stream = len(indices), dataset_batches(spec, source, indices)
        data.dataset = DatasetRef(source.fingerprint(), tuple(indices))
    return data


def open_validation_source(spec: BuildSpec):
    """The dataset `validation.data` names (edgedeploy.data), for a single-input model."""
    settings = spec.validation
    path = Path(settings.data)
    source = open_dataset(path, settings.format, images=settings.images, split=settings.split,
                          class_map=settings.class_map)
    if len(spec.inputs) != 1:
        raise UsageError("a dataset feeds a single-input model", where=str(path),
                         fix="give an .npz with arrays named like the inputs")
    return source


def fit_record(record, spec: BuildSpec) -> tuple[np.ndarray, Transform]:
    """A record's image fitted to the (single) input: the canvas and its transform."""
    r = spec.preprocess
    return fit(record.image, input_hw(spec.inputs[0], r), r.resize, r.pad_value, r.stride, where=record.key)


def dataset_batches(spec: BuildSpec, source, indices) -> Batches:
    """The records `indices` of `source` as model inputs, `batch` at a time: decoded, fitted and preprocessed on a
    background thread ahead of inference (edgedeploy.data.stream)."""
    spec_in = spec.inputs[0]

    def prepare(record) -> np.ndarray:
        return preprocess(fit_record(record, spec)[0][None], spec.preprocess, spec_in.dtype)[0]

    def batches(batch: int) -> Iterator[dict[str, np.ndarray]]:
        for items in iter_batches(source, list(indices), batch, prefetch=2, prepare=prepare):
            yield {spec_in.name: np.stack(items)}

    return batches


def stored_set(spec: BuildSpec, inputs: dict[str, np.ndarray], targets: np.ndarray | None,
               labels: np.ndarray | None, dataset: DatasetRef | None, where: str,
               placement: Placement | None = None) -> ValidationSet:
    """The validation set a build stored (reference.npz at `where`): its inputs when they are the whole set, else
    the dataset `validation.data` names, streamed over the records the build used once its content hash is the
    one the build recorded; `inputs` stay the tensor sample."""
    count = len(next(iter(inputs.values())))
    if dataset is None:
        return ValidationSet(inputs, targets, f"{Path(where).name} ({count} samples)", labels, placement=placement)
    settings = spec.validation
    expects = f"the dataset with content hash {dataset.sha256}"
    if settings.data is None:
        raise UsageError(f"{Path(where).name} holds tensors of the first {count} of {len(dataset.indices)} samples; "
                         f"the rest are read from {expects}, and validation.data is not set", where=where,
                         fix="point validation.data at that dataset (`--config` with `validation: {data: PATH}`)")
    path = Path(settings.data)
    if not path.exists():
        raise UsageError(f"validation data not found; the artifact is validated on {expects}", where=str(path),
                         fix="point validation.data at that dataset (`--config` with `validation: {data: PATH}`)")
    npz = settings.format == "npz" or (settings.format == "auto" and path.suffix.lower() == ".npz")
    source = None if npz else open_validation_source(spec)
    found = fileio.sha256_file(path) if npz else source.fingerprint()
    if found != dataset.sha256:
        raise UsageError(f"the validation data is not the build's: its content hash is {found}, the artifact was "
                         f"validated on {expects}", where=str(path),
                         fix="point validation.data at the dataset the artifact was built with (the same images and "
                             "annotations), or rebuild the artifact on this one")
    if npz:  # the first len(indices) samples of the file
        stream = load_validation_set(spec.model_copy(update={"validation": settings.model_copy(
            update={"samples": len(dataset.indices)})})).stream
        if stream is None:
            raise UsageError(f"the validation data holds at most {count} samples; the build used "
                             f"{len(dataset.indices)}", where=str(path), fix="check validation.samples")
    else:
        stream = dataset_batches(spec, source, dataset.indices)
    names = source.class_names() if source is not None else None
    return ValidationSet(inputs, targets, f"{path.name} ({len(dataset.indices)} samples streamed, tensors kept for "
                                          f"the first {count})", labels, names, len(dataset.indices), stream, dataset,
                         placement)
