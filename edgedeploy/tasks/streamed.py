"""Running a model over a dataset in batches with bounded memory: records are read, fitted and preprocessed on a
prefetch thread; each batch's outputs are decoded at once and only the per-image task results (detections in
original image coordinates, masks as RLE, keypoints, top-k, label maps) are kept, with the full output tensors of
the first `tensor_samples` images for the per-output error metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgedeploy.config import Preprocess
from edgedeploy.data.base import Annotations, DataSource, Record
from edgedeploy.data.stream import iter_batches
from edgedeploy.data.transform import Transform, fit
from edgedeploy.errors import UsageError
from edgedeploy.preprocess import preprocess
from edgedeploy.tasks.decoders import choose
from edgedeploy.tasks.decoders.base import ClassScores, Decoder, DecodeSettings, Detections, LabelMap
from edgedeploy.tasks.metrics.coco import encode_masks

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Prepared:
    key: str
    input: np.ndarray  # one sample, no batch dimension
    transform: Transform
    annotations: Annotations | None


@dataclass
class StreamResult:
    """Per image, in record order: key, original (height, width), ground truth, prediction; masks as RLE."""

    decoder: str
    keys: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    annotations: list[Annotations | None] = field(default_factory=list)
    predictions: list[Detections | ClassScores | LabelMap] = field(default_factory=list)
    masks_rle: list[list[dict]] | None = None
    tensors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    infer_seconds: float = 0.0
    total_seconds: float = 0.0

    def tensor_sample(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.tensors.items()}


def prepare_record(record: Record, input_name: str, size: tuple[int | None, int | None], recipe: Preprocess,
                   dtype: str, stride: int | None = None) -> Prepared:
    if record.image is None:
        raise UsageError("the task needs images with ground truth; this data holds ready-made inputs",
                         where=record.key, fix="validate from images (COCO, YOLO, image folders, npz `images`)")
    canvas, transform = fit(record.image, size, recipe.resize, recipe.pad_value, stride, where=record.key)
    return Prepared(record.key, preprocess(canvas[None], recipe, dtype)[0], transform, record.annotations)


def run_stream(source: DataSource, indices: Sequence[int], run: Run, input_name: str,
               size: tuple[int | None, int | None], recipe: Preprocess, settings: DecodeSettings,
               decoder: str | None = None, outputs: Sequence[str] | None = None, batch: int = 8,
               static_batch: bool = False, tensor_samples: int = 256, dtype: str = "float32",
               stride: int | None = None, prefetch: int = 2) -> StreamResult:
    """Every record of `indices` through `run`; see the module docstring. `decoder` forces one (checked);
    `outputs` limits the outputs the decoder reads (default: all)."""
    start = time.perf_counter()
    chosen: Decoder | None = None
    result = StreamResult(decoder="")
    batches = iter_batches(source, indices, batch, prefetch,
                           prepare=lambda r: prepare_record(r, input_name, size, recipe, dtype, stride))
    for items in batches:
        feed = np.stack([p.input for p in items])
        real = len(items)
        if static_batch and real < batch:
            feed = np.concatenate([feed, np.repeat(feed[-1:], batch - real, axis=0)])
        t0 = time.perf_counter()
        out = run({input_name: feed})
        result.infer_seconds += time.perf_counter() - t0
        out = {k: v[:real] if np.ndim(v) and len(v) == len(feed) else v for k, v in out.items()}
        read = {k: out[k] for k in (outputs or out)}
        if chosen is None:
            missing = [k for k in read if k not in out]
            if missing:
                raise UsageError(f"validation.output names {missing}, not outputs of the model",
                                 fix=f"use some of {sorted(out)}")
            chosen = choose({k: v.shape for k, v in read.items()}, settings.num_classes, decoder,
                            settings.kpt_shape)
            result.decoder = chosen.name
            result.masks_rle = [] if chosen.name == "yolo-seg" else None
        kept = len(result.keys)
        if kept < tensor_samples:
            for k, v in out.items():
                result.tensors.setdefault(k, []).append(np.asarray(v[:tensor_samples - kept]))
        for p, pred in zip(items, chosen.decode(read, settings)):
            result.keys.append(p.key)
            result.sizes.append((p.transform.orig_h, p.transform.orig_w))
            result.annotations.append(p.annotations)
            result.predictions.append(to_original(pred, p.transform, result.masks_rle))
    result.total_seconds = time.perf_counter() - start
    return result


def to_original(pred, t: Transform, masks_rle: list[list[dict]] | None):
    """A prediction in original image coordinates (masks go to `masks_rle`, the prediction keeps none)."""
    if isinstance(pred, Detections):
        mapped = Detections(t.to_original(pred.boxes), pred.scores, pred.classes,
                            keypoints=None if pred.keypoints is None else t.keypoints_to_original(pred.keypoints))
        if masks_rle is not None:
            masks = pred.masks if pred.masks is not None else np.zeros((0, 1, 1), bool)
            masks_rle.append(encode_masks(t.masks_to_original(masks)))
        return mapped
    if isinstance(pred, LabelMap):
        labels = t.masks_to_original(pred.labels[None])[0]
        return LabelMap(labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.int32))
    return pred
