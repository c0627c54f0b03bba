"""Output decoders: model outputs -> per-image predictions, chosen by the outputs' signature.

Each decoder states what it reads (`refusal` returns why a signature does not fit, naming the shapes); `choose`
picks the one that fits, so a layout is never silently read as another (a (B, 84, 8400) YOLOv8 head read as
YOLOv5's (B, N, 5 + nc) scores mAP 0 and passes); `validation.decoder` forces one, still checked.
"""

from __future__ import annotations

from edgedeploy.errors import UsageError
from edgedeploy.tasks.decoders.base import Decoder, Shapes, describe
from edgedeploy.tasks.decoders.boxes_scores import BoxesScores
from edgedeploy.tasks.decoders.classification import Classification
from edgedeploy.tasks.decoders.detr import Detr
from edgedeploy.tasks.decoders.semantic_seg import SemanticSeg
from edgedeploy.tasks.decoders.yolo_anchor_free import YoloAnchorFree
from edgedeploy.tasks.decoders.yolo_end2end import YoloEnd2End
from edgedeploy.tasks.decoders.yolo_objectness import YoloObjectness
from edgedeploy.tasks.decoders.yolo_pose import YoloPose
from edgedeploy.tasks.decoders.yolo_seg import YoloSeg

DECODERS: dict[str, Decoder] = {d.name: d for d in (
    YoloObjectness(), YoloAnchorFree(), YoloEnd2End(), Detr(), BoxesScores(), YoloSeg(), YoloPose(), SemanticSeg(),
    Classification())}

FIX = "set validation.decoder to one of them (docs/validation.md lists the layouts), or validation.output"


def choose(shapes: Shapes, num_classes: int | None, forced: str | None = None,
           kpt_shape: tuple[int, int] | None = None, produces: str | None = None) -> Decoder:
    """The decoder for this output signature: `forced` (refused if the signature does not fit it), else the only one
    that fits (of those producing `produces` when given). None or several fitting is one UsageError listing them."""
    what = f"outputs {describe(shapes)}" + (f" with {num_classes} classes" if num_classes is not None else "")
    if forced is not None:
        if forced not in DECODERS:
            raise UsageError(f"unknown decoder {forced!r}", fix=f"use one of {', '.join(DECODERS)}")
        why = DECODERS[forced].refusal(shapes, num_classes, kpt_shape)
        if why is not None:
            raise UsageError(f"validation.decoder is {forced}, which does not fit the model's {what}: {why}",
                             fix="pick the decoder of the model's head, or check validation.output and the class "
                                 "count")
        return DECODERS[forced]
    pool = [d for d in DECODERS.values() if produces is None or d.produces == produces]
    fits = [d for d in pool if d.refusal(shapes, num_classes, kpt_shape) is None]
    if len(fits) == 1:
        return fits[0]
    if not fits:
        reasons = "; ".join(d.refusal(shapes, num_classes, kpt_shape) or "" for d in pool)
        raise UsageError(f"no decoder reads the model's {what} ({reasons})",
                         fix="check validation.output and the data's class count, or set validation.decoder")
    raise UsageError(f"the model's {what} fit several decoders: {', '.join(d.name for d in fits)}", fix=FIX)
