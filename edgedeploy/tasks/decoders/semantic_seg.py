"""Semantic segmentation (torchvision DeepLab/FCN, SegFormer): one output (B, C, h, w) of per-pixel class logits;
the label map is the argmax, brought to the input size (nearest) when the logits are smaller."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import DecodeSettings, LabelMap, Shapes, one_output, static


class SemanticSeg:
    name = "semantic-seg"
    produces = "semantic"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        found = one_output(shapes, 4)
        if isinstance(found, str):
            return f"{self.name} {found}"
        name, shape = found
        c, h, w = (static(d) for d in shape[1:])
        if num_classes is not None and c != num_classes:
            return f"{self.name} reads (B, {num_classes}, H, W) for {num_classes} classes, {name} is {list(shape)}"
        if c is None or c < 2:
            return f"{self.name} reads (B, C, H, W) with C >= 2 classes, {name} is {list(shape)}"
        if h == 1 and w == 1:
            return f"{self.name} reads a per-pixel map, {name} is {list(shape)} (one score per image: classification)"
        return None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[LabelMap]:
        logits = np.asarray(next(iter(outputs.values())))
        labels = logits.argmax(1)
        h, w = settings.input_size
        if labels.shape[1:] != (h, w):
            ys = ((np.arange(h) + 0.5) * labels.shape[1] / h).astype(np.int64)
            xs = ((np.arange(w) + 0.5) * labels.shape[2] / w).astype(np.int64)
            labels = labels[:, ys[:, None], xs[None, :]]
        return [LabelMap(m.astype(np.int64)) for m in labels]
