"""`model: {ultralytics: best.pt | model.yaml}`: an Ultralytics YOLO in the Detect head's export mode (one tensor per
output, as Ultralytics' own ONNX export names them: output0, output1; dynamic batch), its letterbox preprocessing
(the checkpoint's imgsz, pad 114, stride, RGB / 255) and class names from the checkpoint.

An Ultralytics checkpoint is a pickle of the model object. It is read with torch's weights-only unpickler and an
allow-list of the classes such a checkpoint holds (Ultralytics' and torch's nn.Module classes, nothing else); any
other class is refused by name, unless --trust-code. A model yaml is built with seeded random weights. Nothing is
downloaded (YOLO_OFFLINE)."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path

from edgedeploy.config import ModelSource
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.sources.families import package_kind
from edgedeploy.sources.base import Loaded, SourceInfo, require, torch_module, with_named_outputs

_TASKS = {"detect": ("detection", "yolo-anchor-free"), "segment": ("instance-segmentation", "yolo-seg"),
          "pose": ("pose", "yolo-pose"), "classify": ("classification", "classification"), "obb": ("obb", None)}
_KWARGS = {"imgsz"}


def load(model: ModelSource, trust_code: bool = False) -> Loaded:
    torch = torch_module()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    require("ultralytics", "ultralytics")
    unknown = sorted(set(model.kwargs) - _KWARGS)
    if unknown:
        raise UsageError(f"model.kwargs {unknown[0]!r} does not apply to an Ultralytics model", where="model.kwargs",
                         fix="model.kwargs takes imgsz (the input size, default the checkpoint's)")
    path = Path(model.ultralytics)
    if not path.is_file() and path.suffix in (".yaml", ".yml") and _packaged_yaml(path.name):
        path = Path(path.name)  # one of Ultralytics' own model yamls (yolov8n.yaml), read from the package
    elif not path.is_file():
        raise UsageError("Ultralytics model file not found", where=str(path),
                         fix="give a checkpoint (best.pt) or a model yaml (yolov8n.yaml) that exists")
    if path.suffix in (".yaml", ".yml"):
        net, imgsz, source = _from_yaml(torch, path), 640, "model yaml (random weights, seeded)"
    else:
        net, imgsz = _from_checkpoint(torch, path, trust_code)
        source = "checkpoint train_args"
    imgsz = model.kwargs.get("imgsz", imgsz)
    h, w = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else (int(imgsz[0]), int(imgsz[-1]))
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad = False
    net = net.fuse(verbose=False) if hasattr(net, "fuse") else net
    _export_mode(net)
    from ultralytics.nn.tasks import guess_model_task

    kind = guess_model_task(net)
    task, decoder = _TASKS.get(kind, (kind, None))
    head = net.model[-1] if hasattr(net, "model") else None
    if kind == "detect" and getattr(head, "end2end", False):
        decoder = "yolo-end2end"
    stride = int(max(net.stride.tolist())) if hasattr(net, "stride") else 32
    names = getattr(net, "names", None)
    class_names = [str(names[i]) for i in sorted(names)] if isinstance(names, dict) else (
        [str(n) for n in names] if names else None)
    preprocess = {"color": "RGB", "scale": 1 / 255, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                  "layout": "NCHW", "resize": "letterbox", "pad_value": 114}
    if kind == "classify":  # Ultralytics' classify_transforms: shorter side to imgsz, centre crop
        preprocess.update(resize="crop", crop_pct=1.0, interpolation="bilinear")
    details = {"from": f"Ultralytics {source}", "imgsz": [h, w], "stride": stride, "letterbox": "centred, pad 114" if kind != "classify" else None,
               "task": kind}
    flat, output_names = with_named_outputs(net, (torch.rand(2, 3, h, w),), single="output0")
    return Loaded(flat, output_names, SourceInfo("ultralytics", (3, h, w), "images", preprocess, details,
                                                 class_names, task, decoder))


def _packaged_yaml(name: str) -> bool:
    """Whether Ultralytics ships this model yaml (its scale letter dropped: yolov8n.yaml → yolov8.yaml)."""
    import ultralytics

    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(name).stem) + ".yaml"
    root = Path(ultralytics.__file__).parent / "cfg" / "models"
    return any(root.rglob(unified)) or any(root.rglob(name))


def _from_yaml(torch, path: Path):
    from ultralytics.nn.tasks import guess_model_task, yaml_model_load
    from ultralytics.nn import tasks

    torch.manual_seed(0)
    cfg = yaml_model_load(str(path))
    model_class = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
                   "classify": tasks.ClassificationModel, "obb": tasks.OBBModel}.get(guess_model_task(cfg))
    if model_class is None:
        raise UsageError("the model yaml names no Ultralytics task (detect, segment, pose, classify, obb)",
                         where=str(path))
    try:
        return model_class(cfg, verbose=False)
    except Exception as e:  # Ultralytics raises KeyError/ValueError/AttributeError for a malformed yaml
        raise UsageError(f"Ultralytics cannot build the model yaml ({type(e).__name__}: {e})", where=str(path),
                         fix="check the yaml against Ultralytics' model configs") from None


def allowed_classes(torch) -> list[type]:
    """The classes an Ultralytics checkpoint holds: every nn.Module class of ultralytics.nn and of torch.nn."""
    import ultralytics.nn.modules
    import ultralytics.nn.tasks

    found: set[type] = set()
    for package in (ultralytics.nn.modules, torch.nn.modules):
        modules = [package] + [importlib.import_module(i.name)
                               for i in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        for module in [*modules, ultralytics.nn.tasks]:
            found.update(c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, torch.nn.Module))
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _from_checkpoint(torch, path: Path, trust_code: bool):
    try:
        if trust_code:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(allowed_classes(torch)):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError (a refused class), RuntimeError/EOFError (damage)
        text = str(e)
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if refused:
            raise EdgeDeployError(f"the checkpoint holds {refused.group(1)}, which is not among the classes an "
                                  "Ultralytics checkpoint holds; loading it would run code from the file, so it was "
                                  "refused", where=str(path), exit_code=2,
                                  fix="pass --trust-code if you trust the file's origin") from None
        raise EdgeDeployError(f"cannot read the Ultralytics checkpoint ({type(e).__name__})", where=str(path),
                              fix="the file is corrupt, truncated or not an Ultralytics .pt; save it again") from None
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(net, torch.nn.Module):
        raise EdgeDeployError("the checkpoint has no model (`ema` or `model`): not an Ultralytics checkpoint",
                              where=str(path), fix="give the best.pt / last.pt Ultralytics saved")
    args = ckpt.get("train_args") or getattr(net, "args", None) or {}
    imgsz = args.get("imgsz", 640) if isinstance(args, dict) else 640
    return net, imgsz


def _export_mode(net) -> None:
    """Ultralytics' exporter settings on the heads: Detect (and Segment/Pose/OBB) and RT-DETR return inference
    tensors only, for any batch; Classify returns probabilities."""
    from ultralytics.nn.modules import Classify, Detect, RTDETRDecoder

    for m in net.modules():
        if isinstance(m, Classify):
            m.export = True
            m.format = "onnx"
        if isinstance(m, (Detect, RTDETRDecoder)):
            m.dynamic = True
            m.export = True
            m.format = "onnx"
            if hasattr(m, "xyxy"):
                m.xyxy = False


KIND = package_kind("ultralytics")
