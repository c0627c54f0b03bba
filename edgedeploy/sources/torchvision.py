"""`model: {torchvision: NAME}`: torchvision.models.get_model(NAME, weights=None, **kwargs) (random weights, seeded,
unless model.checkpoint gives a state_dict). Preprocessing comes from the weights enum's transforms (model.weights,
else the architecture's DEFAULT weights: the same resize/crop/mean/std every weights of one architecture share);
class names from model.weights' categories.

Detectors keep their in-model transform and postprocessing out of the graph: torchvision's postprocess selects boxes
by score and runs batched_nms (data-dependent shapes torch.export cannot trace). SSD and RetinaNet are exported as the
network plus the anchor box decoding, for one fixed input size: `boxes` (N, A, 4) xyxy in input pixels and `scores`
(N, A, C); the score threshold, top-k and NMS run after inference (the boxes-scores decoder). Two-stage detectors
(Faster/Mask/Keypoint R-CNN) choose proposals by score inside the network and are refused with that reason."""

from __future__ import annotations

import inspect

from edgedeploy.config import ModelSource
from edgedeploy.errors import UsageError
from edgedeploy.sources.families import package_kind
from edgedeploy.sources.base import Loaded, SourceInfo, require, torch_module, with_named_outputs
from edgedeploy.sources.weights import load_state_dict

_TWO_STAGE = ("fasterrcnn", "maskrcnn", "keypointrcnn")


def load(model: ModelSource, trust_code: bool = False) -> Loaded:
    torch = torch_module()
    require("torchvision", "torchvision")
    from torchvision import models

    name = model.torchvision
    if name not in models.list_models():
        raise UsageError(f"torchvision has no model {name!r}", where="model.torchvision",
                         fix="one of torchvision.models.list_models()")
    family = _family(models, name)
    if family == "detection" and name.startswith(_TWO_STAGE):
        raise UsageError(f"torchvision's {name} is a two-stage detector: its region-proposal and RoI heads pick "
                         "proposals by score inside the network (data-dependent shapes), which an ONNX graph for "
                         "the edge cannot hold", where="model.torchvision",
                         fix="deploy a one-stage detector (ssdlite320_mobilenet_v3_large, ssd300_vgg16, "
                             "retinanet_resnet50_fpn), or export your own split of the model with model.factory")
    weights = _weights(models, name, model.weights)
    torch.manual_seed(0)
    try:
        kwargs = dict(model.kwargs)
        if "weights_backbone" in inspect.signature(models.get_model_builder(name)).parameters:
            kwargs.setdefault("weights_backbone", None)  # never download ImageNet backbone weights at build time
        module = models.get_model(name, weights=None, **kwargs)
    except TypeError as e:
        raise UsageError(f"torchvision.models.get_model({name!r}) failed: {e}", where="model.kwargs") from None
    if model.checkpoint is not None:
        load_state_dict(module, model.checkpoint, trust_code)
    module.eval()
    categories = list(weights.meta.get("categories") or []) if model.weights and weights is not None else None
    if family == "detection":
        return _detector(torch, module, name, categories)
    transform = weights.transforms() if weights is not None else None
    crop = getattr(transform, "crop_size", None)
    resize = getattr(transform, "resize_size", None)
    size = int((crop or resize or [224])[0])
    mean = [float(v) for v in getattr(transform, "mean", (0.485, 0.456, 0.406))]
    std = [float(v) for v in getattr(transform, "std", (0.229, 0.224, 0.225))]
    interpolation = getattr(getattr(transform, "interpolation", None), "value", "bilinear")
    preprocess = {"color": "RGB", "scale": 1 / 255, "mean": mean, "std": std, "layout": "NCHW",
                  "resize": "crop" if crop and resize else "resize",
                  "crop_pct": float(crop[0]) / float(resize[0]) if crop and resize else 1.0,
                  "interpolation": interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"}
    details = {"from": f"torchvision {weights} transforms" + ("" if model.weights else " (DEFAULT weights' recipe)")
               if weights is not None else "ImageNet defaults (the architecture lists no weights)",
               "resize_size": list(resize) if resize else None, "crop_size": list(crop) if crop else None}
    task, decoder = ("segmentation", "semantic-seg") if family == "segmentation" else (
        "classification", "classification")
    flat, names = with_named_outputs(module, (torch.rand(2, 3, size, size),))
    return Loaded(flat, names, SourceInfo("torchvision", (3, size, size), "images", preprocess, details,
                                          categories, task, decoder))


def _family(models, name: str) -> str:
    for family in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if name in models.list_models(module=getattr(models, family)):
            return family
    return "classification"


def _weights(models, name: str, given: str | None):
    if given is not None:
        try:
            return models.get_weight(given)
        except (ValueError, KeyError, AttributeError) as e:
            raise UsageError(f"torchvision has no weights {given!r} ({e})", where="model.weights",
                             fix=f"one of {', '.join(str(w) for w in models.get_model_weights(name))}") from None
    try:
        return models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        return None


def _detector(torch, module, name: str, categories: list[str] | None) -> Loaded:
    """The network and the anchor decoding of a one-stage detector for its fixed input size."""
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    if not isinstance(module, (SSD, RetinaNet)):
        raise UsageError(f"torchvision's {name} ({type(module).__name__}) has no anchor-decoding export here; SSD and "
                         "RetinaNet have", where="model.torchvision",
                         fix="deploy ssdlite320_mobilenet_v3_large, ssd300_vgg16 or retinanet_resnet50_fpn, or export "
                             "your own split with model.factory")
    transform = module.transform
    size = transform.fixed_size or (transform.min_size[0], transform.min_size[0])
    h, w = int(size[0]), int(size[1])
    softmax = isinstance(module, SSD)  # SSD: softmax with background at index 0; RetinaNet: sigmoid per class

    class DetectorNetwork(torch.nn.Module):
        """Normalized, resized images in; decoded boxes (xyxy, input pixels) and class scores out."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            with torch.no_grad():
                example = torch.zeros(1, 3, h, w)
                feats = self._features(example)
                anchors = inner.anchor_generator(ImageList(example, [(h, w)]), feats)[0]
            self.register_buffer("anchors", anchors)

        def _features(self, x):
            feats = self.inner.backbone(x)
            return list(feats.values()) if isinstance(feats, dict) else [feats]

        def forward(self, x):
            head = self.inner.head(self._features(x))
            deltas = head["bbox_regression"]
            n = deltas.shape[0]
            boxes = self.inner.box_coder.decode_single(deltas.reshape(-1, 4), self.anchors.repeat(n, 1))
            boxes = boxes.reshape(n, -1, 4).clamp(min=0).minimum(torch.tensor([w, h, w, h], dtype=boxes.dtype))
            logits = head["cls_logits"]
            scores = logits.softmax(-1)[..., 1:] if softmax else logits.sigmoid()
            return boxes, scores

    net = DetectorNetwork(module).eval()
    names = categories[1:] if softmax and categories else categories
    preprocess = {"color": "RGB", "scale": 1 / 255, "mean": [float(v) for v in transform.image_mean],
                  "std": [float(v) for v in transform.image_std], "layout": "NCHW", "resize": "resize",
                  "interpolation": "bilinear"}
    details = {"from": f"torchvision {type(module).__name__}.transform (GeneralizedRCNNTransform), fixed {h}x{w}",
               "postprocess": "outside the graph: score threshold, top-k and NMS (torchvision's postprocess_detections"
                              " is data-dependent)", "scores": "softmax, background dropped" if softmax else "sigmoid"}
    return Loaded(net, ["boxes", "scores"], SourceInfo("torchvision", (3, h, w), "images", preprocess, details, names,
                                                      "detection", "boxes-scores"))


KIND = package_kind("torchvision")
