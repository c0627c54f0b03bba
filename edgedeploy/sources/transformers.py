"""`model: {transformers: FOLDER}`: a Hugging Face model folder (config.json + model.safetensors), built by the
class its config's `architectures` names, with an attention implementation that torch.export traces (`sdpa`, else
`eager`; model.kwargs attn_implementation chooses). Weights are read from safetensors only (never a pickled
pytorch_model.bin) and no remote code runs. Preprocessing comes from the folder's preprocessor_config.json (size,
rescale factor, mean/std, resample, centre crop), class names from config.json's id2label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedeploy.config import ModelSource
from edgedeploy.fileio import read_input
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.sources.families import package_kind
from edgedeploy.sources.base import Loaded, SourceInfo, require, torch_module, with_named_outputs

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's codes, as image processors store them
_TASKS = [("ForImageClassification", "classification", "classification"),
          ("ForSemanticSegmentation", "segmentation", "semantic-seg"),
          ("ForObjectDetection", "detection", "detr")]


def load(model: ModelSource, trust_code: bool = False) -> Loaded:
    torch = torch_module()
    folder = Path(model.transformers)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UsageError("not a Hugging Face model folder: no config.json", where=str(folder),
                         fix="give the folder save_pretrained wrote (config.json + model.safetensors)")
    if not any(folder.glob("*.safetensors")):
        raise UsageError("the model folder has no .safetensors weights", where=str(folder),
                         fix="save with model.save_pretrained(folder) (safetensors is its default); pickled "
                             "pytorch_model.bin files are not read")
    config = _json(config_file)
    architectures = config.get("architectures") or []
    if not architectures:
        raise UsageError("config.json lists no `architectures`, so the model class is unknown", where=str(config_file),
                         fix="save the model with save_pretrained, which records its class")
    transformers = require("transformers", "transformers")
    model_class = getattr(transformers, architectures[0], None)
    if model_class is None:
        raise UsageError(f"transformers {transformers.__version__} has no class {architectures[0]!r}",
                         where=str(config_file), fix="models that need remote code are not loaded; upgrade "
                                                     "transformers or export the model yourself")
    transformers.utils.logging.disable_progress_bar()  # the build's own progress display is the one shown
    kwargs: dict[str, Any] = {"attn_implementation": "sdpa", **model.kwargs}
    try:
        module = model_class.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                             trust_remote_code=False, **kwargs)
    except (ValueError, ImportError) as e:
        if "attn_implementation" in model.kwargs or "sdpa" not in str(e).lower():
            raise EdgeDeployError(f"transformers cannot load the model ({str(e).splitlines()[0]})",
                                  where=str(folder)) from None
        kwargs["attn_implementation"] = "eager"  # an architecture without an sdpa path
        module = model_class.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                             trust_remote_code=False, **kwargs)
    module.eval()
    module.config.return_dict = True
    preprocess, details, (h, w) = _preprocess(folder, config)
    details["attn_implementation"] = kwargs["attn_implementation"]
    details["architecture"] = architectures[0]
    task, decoder = next(((t, d) for suffix, t, d in _TASKS if architectures[0].endswith(suffix)), (None, None))
    id2label = config.get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else None
    c = int(config.get("num_channels", 3))
    flat, output_names = with_named_outputs(module, (torch.rand(2, c, h, w),))
    return Loaded(flat, output_names, SourceInfo("transformers", (c, h, w), "pixel_values", preprocess, details,
                                                 names, task, decoder))


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(read_input(path, "model config", max_bytes=16 << 20))
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read JSON ({e})", where=str(path)) from None
    if not isinstance(value, dict):
        raise UsageError("the file must hold a JSON object", where=str(path))
    return value


def _preprocess(folder: Path, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int]]:
    """The image processor's recipe as Preprocess keys, what it came from, and the input (H, W)."""
    processor_file = folder / "preprocessor_config.json"
    proc = _json(processor_file) if processor_file.is_file() else {}
    side = int(config.get("image_size") or 224)
    size = proc.get("crop_size") if proc.get("do_center_crop") else proc.get("size")
    if isinstance(size, dict) and "height" in size:
        h, w = int(size["height"]), int(size["width"])
    elif isinstance(size, dict) and "shortest_edge" in size:
        h = w = int(size["shortest_edge"])
    elif isinstance(size, int):
        h = w = size
    else:
        h = w = side
    normalize = proc.get("do_normalize", True)
    mean = proc.get("image_mean", [0.5, 0.5, 0.5]) if normalize else [0.0, 0.0, 0.0]
    std = proc.get("image_std", [0.5, 0.5, 0.5]) if normalize else [1.0, 1.0, 1.0]
    crop = proc.get("do_center_crop") and isinstance(proc.get("size"), dict) and "shortest_edge" in proc["size"]
    preprocess = {"color": "RGB", "scale": float(proc.get("rescale_factor", 1 / 255)) if proc.get("do_rescale", True)
                  else 1.0, "mean": [float(v) for v in mean], "std": [float(v) for v in std], "layout": "NCHW",
                  "resize": "crop" if crop else "resize",
                  "crop_pct": min(1.0, h / int(proc["size"]["shortest_edge"])) if crop else 1.0,
                  "interpolation": _RESAMPLE.get(proc.get("resample", 2), "bilinear")}
    details = {"from": processor_file.name if proc else "config.json image_size (no preprocessor_config.json)",
               "image_processor": proc.get("image_processor_type"), "size": [h, w]}
    return preprocess, details, (h, w)


KIND = package_kind("transformers")
