"""What a decoder reads (an output signature: tensor name -> shape) and what it returns per image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgedeploy.errors import UsageError

Shapes = dict[str, tuple[int | str, ...]]


@dataclass
class Detections:
    """One image's detections in MODEL INPUT pixel coordinates (mapped back with data.transform.Transform)."""

    boxes: np.ndarray  # (K, 4) float64 xyxy
    scores: np.ndarray  # (K,)
    classes: np.ndarray  # (K,) int64
    masks: np.ndarray | None = None  # (K, H, W) bool at input size (instance segmentation)
    keypoints: np.ndarray | None = None  # (K, KP, 3) x, y, visibility score (pose)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class ClassScores:
    """One image's classification: the top classes, best first, and their scores."""

    classes: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float64


@dataclass
class LabelMap:
    """One image's semantic segmentation: a class index per input pixel."""

    labels: np.ndarray  # (H, W) int64


@dataclass(frozen=True)
class DecodeSettings:
    """Thresholds default to what COCO evaluation runs at (every detection above 0.001, at most 100 per image)."""

    input_size: tuple[int, int]  # (H, W) of the model input, for normalized boxes and masks
    num_classes: int | None = None
    kpt_shape: tuple[int, int] | None = None
    conf_thres: float = 0.001
    iou_thres: float = 0.6
    max_det: int = 100
    multi_label: bool = False  # one box per class above conf_thres (Ultralytics val), not only its best class
    top_k: int = 5


class Decoder(Protocol):
    name: str
    produces: str  # detections | classification | semantic

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape: tuple[int, int] | None = None) -> str | None:
        """None when the output signature fits, else one sentence naming the shapes and why not."""

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list:
        """One prediction per batch image."""


def describe(shapes: Shapes) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def static(dim: int | str) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def one_output(shapes: Shapes, rank: int) -> tuple[str, tuple] | str:
    """The single output of the given rank, or a refusal sentence."""
    if len(shapes) != 1:
        return f"reads one output, the model has {len(shapes)} ({describe(shapes)})"
    name, shape = next(iter(shapes.items()))
    if len(shape) != rank:
        return f"reads a rank-{rank} output, {name} is {list(shape)}"
    return name, shape


def check_values(ok: bool, decoder: str, what: str) -> None:
    """A layout that fits by shape but not by value (pixel boxes where normalized ones belong, fractional class
    ids) is refused at decode time instead of being scored as garbage."""
    if not ok:
        raise UsageError(f"decoder {decoder}: {what}; the outputs do not have this decoder's layout",
                         fix="set validation.decoder to the model's head (see docs/validation.md)")


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64)
    half = b[..., 2:4] / 2
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def empty_detections() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
