"""`model: {timm: NAME}`: timm.create_model(NAME, **kwargs) (random weights, seeded, unless model.checkpoint gives
a state_dict), its preprocessing from the model's pretrained_cfg (input size, mean/std, interpolation, crop_pct) and
ImageNet class names when the classifier has an ImageNet label set's width."""

from __future__ import annotations

from edgedeploy.config import ModelSource
from edgedeploy.errors import UsageError
from edgedeploy.sources.families import package_kind
from edgedeploy.sources.base import Loaded, SourceInfo, require, torch_module, with_named_outputs
from edgedeploy.sources.weights import load_state_dict


def load(model: ModelSource, trust_code: bool = False) -> Loaded:
    torch = torch_module()
    require("timm", "timm")  # one clear line when timm is missing; the import below binds `timm`
    import timm.data

    if not timm.is_model(model.timm):
        close = timm.list_models(f"*{model.timm.split('_')[0]}*")[:8]
        raise UsageError(f"timm has no model {model.timm!r}", where="model.timm",
                         fix=f"one of timm.list_models(): {', '.join(close)}" if close else "see timm.list_models()")
    torch.manual_seed(0)
    try:
        module = timm.create_model(model.timm, pretrained=False, **model.kwargs)
    except TypeError as e:
        raise UsageError(f"timm.create_model({model.timm!r}) failed: {e}", where="model.kwargs") from None
    if model.checkpoint is not None:
        load_state_dict(module, model.checkpoint, trust_code)
    module.eval()
    cfg = timm.data.resolve_model_data_config(module)
    c, h, w = (int(d) for d in cfg["input_size"])
    crop = float(cfg.get("crop_pct") or 1.0)
    preprocess = {"color": "RGB", "scale": 1 / 255, "mean": [float(v) for v in cfg["mean"]],
                  "std": [float(v) for v in cfg["std"]], "layout": "NCHW",
                  "resize": "crop" if crop < 1.0 else "resize", "crop_pct": crop,
                  "interpolation": cfg["interpolation"] if cfg["interpolation"] in ("bilinear", "bicubic", "nearest")
                  else "bilinear"}
    names = None
    subset = timm.data.infer_imagenet_subset(module)
    if subset is not None and model.checkpoint is not None:  # a random classifier has no classes to name
        names = list(timm.data.ImageNetInfo(subset).label_descriptions())
    info = SourceInfo("timm", (c, h, w), "images", preprocess,
                      {"from": "timm pretrained_cfg", **{k: cfg[k] for k in ("interpolation", "crop_pct", "crop_mode")
                                                         if k in cfg}, "input_size": [c, h, w]},
                      names, "classification", "classification")
    flat, output_names = with_named_outputs(module, (torch.rand(2, c, h, w),))
    return Loaded(flat, output_names, info)


KIND = package_kind("timm")
