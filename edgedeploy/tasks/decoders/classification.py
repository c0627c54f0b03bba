"""Classifiers: one output (B, C) of scores (logits or probabilities; (B, C, 1, 1) too); the top k classes."""

from __future__ import annotations

import numpy as np

from edgedeploy.tasks.decoders.base import ClassScores, DecodeSettings, Shapes, describe, static


class Classification:
    name = "classification"
    produces = "classification"

    def refusal(self, shapes: Shapes, num_classes: int | None, kpt_shape=None) -> str | None:
        if len(shapes) != 1:
            return f"{self.name} reads one output, the model has {len(shapes)} ({describe(shapes)})"
        name, shape = next(iter(shapes.items()))
        if len(shape) not in (2, 4) or (len(shape) == 4 and (static(shape[2]), static(shape[3])) != (1, 1)):
            return f"{self.name} reads (B, C) scores, {name} is {list(shape)}"
        c = static(shape[1])
        if c is None or c < 2:
            return f"{self.name} reads (B, C) scores with C >= 2 classes, {name} is {list(shape)}"
        if num_classes is not None and c != num_classes:
            return f"{self.name} reads (B, {num_classes}) for {num_classes} classes, {name} is {list(shape)}"
        return None

    def decode(self, outputs: dict[str, np.ndarray], settings: DecodeSettings) -> list[ClassScores]:
        scores = np.asarray(next(iter(outputs.values())), np.float64)
        scores = scores.reshape(len(scores), -1)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :settings.top_k]
        return [ClassScores(t.astype(np.int64), s[t]) for t, s in zip(top, scores)]
