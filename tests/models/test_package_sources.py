"""`model: {timm | torchvision | ultralytics | transformers: ...}` build with no factory module and no
preprocessing typed by hand; what the package says is recorded; Ultralytics checkpoints go through the allow-list;
export failures name their cause. Every model is made here (random weights, seeded): nothing is downloaded."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edgedeploy import export, pipeline
from edgedeploy.config import BuildSpec, ModelSource, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError

QUICK_LATENCY = {"latency": {"batch_sizes": [1], "iterations": 2, "warmup": 1}}


def _build(tmp_path: Path, model: dict, **extra) -> dict:
    spec = {"name": "m", "model": model, "target": "onnxruntime", "validation": QUICK_LATENCY, **extra}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return pipeline.build(load_spec(tmp_path / "spec.yaml"), tmp_path / "out")


@pytest.mark.slow
def test_timm_model_builds_with_its_pretrained_cfg_preprocessing(tmp_path):
    report = _build(tmp_path, {"timm": "convnext_atto"})
    assert report["passed"], report["checks"]
    source = report["source"]
    assert source["kind"] == "timm" and source["preprocess_from"]["from"] == "timm pretrained_cfg"
    assert source["preprocess"]["resize"] == "crop" and source["preprocess"]["crop_pct"] == 0.875
    assert source["preprocess"]["interpolation"] == "bicubic"
    assert report["task"]["top1_agreement"] == 1.0  # the classification task comes from the source
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert '"preprocess_from"' in manifest  # recorded for the bundle and the device too


@pytest.mark.slow
def test_torchvision_segmenter_dict_output_becomes_named_outputs(tmp_path):
    report = _build(tmp_path, {"torchvision": "deeplabv3_mobilenet_v3_large",
                               "kwargs": {"num_classes": 3, "aux_loss": True}},
                    inputs=[{"name": "images", "shape": ["batch", 3, 96, 96]}])
    assert report["passed"], report["checks"]
    assert set(report["tensors"]) == {"out", "aux"}
    assert report["source"]["task"] == "segmentation" and report["source"]["decoder"] == "semantic-seg"


@pytest.mark.slow
def test_torchvision_one_stage_detector_exports_network_and_box_decoding(tmp_path):
    report = _build(tmp_path, {"torchvision": "ssdlite320_mobilenet_v3_large", "kwargs": {"num_classes": 4}})
    assert report["passed"], report["checks"]
    assert list(report["tensors"]) == ["boxes", "scores"]
    assert report["source"]["decoder"] == "boxes-scores"


def test_torchvision_in_model_postprocess_fails_export_with_its_cause(tmp_path):
    """The detector as torchvision returns it (postprocess inside): the error names the data-dependent step."""
    from torchvision.models import get_model

    model = get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=3).eval()
    spec = BuildSpec.model_validate({"model": {"factory": "x:y"},
                                     "inputs": [{"name": "images", "shape": ["batch", 3, 320, 320]}]})
    with pytest.raises(EdgeDeployError) as info:
        export.export_onnx(spec, model, tmp_path / "raw.onnx")
    message = info.value.message
    assert "torch.export cannot trace the model at " in message and "GuardOnDataDependentSymNode" in message
    assert "in postprocess_detections → " in message and "in batched_nms" in message  # torchvision's frames
    assert (tmp_path / "export-error.log").is_file()


def test_two_stage_detectors_are_refused_with_the_reason():
    from edgedeploy.sources import families

    with pytest.raises(UsageError, match="two-stage detector"):
        families.load(ModelSource(torchvision="fasterrcnn_mobilenet_v3_large_320_fpn"))


def _yolo_checkpoint(tmp_path: Path, cfg: str = "yolov8n.yaml") -> Path:
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = tmp_path / "best.pt"
    YOLO(cfg).save(str(path))  # the way Ultralytics writes its checkpoints
    return path


def test_ultralytics_checkpoint_loads_through_the_allow_list(tmp_path):
    from edgedeploy.sources import families

    loaded = families.load(ModelSource(ultralytics=_yolo_checkpoint(tmp_path), kwargs={"imgsz": 160}))
    assert loaded.output_names == ["output0"]  # the Detect head in export mode: one tensor
    assert loaded.info.preprocess["resize"] == "letterbox" and loaded.info.preprocess["pad_value"] == 114
    assert loaded.info.details["stride"] == 32 and len(loaded.info.class_names) == 80
    out = loaded.module(torch.rand(3, 3, 160, 160))
    assert out[0].shape == (3, 84, 525)  # (4 box + 80 class) x anchors of a 160 input


class Payload:
    """A class no Ultralytics checkpoint holds."""


def test_ultralytics_checkpoint_with_a_foreign_class_is_refused_by_name(tmp_path):
    from edgedeploy.sources import families

    ckpt = torch.load(_yolo_checkpoint(tmp_path), weights_only=False)
    ckpt["extra"] = Payload()
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(EdgeDeployError, match=r"holds [\w.]*test_package_sources\.Payload") as info:
        families.load(ModelSource(ultralytics=tmp_path / "bad.pt"))
    assert "--trust-code" in info.value.fix


def test_ultralytics_seg_and_classify_heads_export_like_ultralytics(tmp_path):
    from edgedeploy.sources import families

    seg = families.load(ModelSource(ultralytics="yolov8n-seg.yaml", kwargs={"imgsz": 160}))
    assert seg.output_names == ["output0", "output1"] and seg.info.decoder == "yolo-seg"
    cls = families.load(ModelSource(ultralytics="yolov8n-cls.yaml", kwargs={"imgsz": 64}))
    assert cls.output_names == ["output0"] and cls.info.preprocess["resize"] == "crop"


@pytest.mark.slow
def test_ultralytics_yaml_builds_in_export_mode(tmp_path):
    report = _build(tmp_path, {"ultralytics": "yolov8n.yaml", "kwargs": {"imgsz": 160}})
    assert report["passed"], report["checks"]
    assert list(report["tensors"]) == ["output0"] and report["source"]["decoder"] == "yolo-anchor-free"


def _hf_folder(tmp_path: Path, kind: str) -> Path:
    import transformers as hf

    torch.manual_seed(0)
    folder = tmp_path / kind
    if kind == "vit":
        config = hf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, num_labels=3,
                              id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2})
        hf.ViTForImageClassification(config).save_pretrained(folder)
        hf.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3).save_pretrained(folder)
    else:
        config = hf.SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], decoder_hidden_size=32,
                                    num_labels=4, image_size=64)
        hf.SegformerForSemanticSegmentation(config).save_pretrained(folder)
        hf.SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_transformers_vit_builds_from_its_folder(tmp_path):
    report = _build(tmp_path, {"transformers": str(_hf_folder(tmp_path, "vit"))})
    assert report["passed"], report["checks"]
    assert list(report["tensors"]) == ["logits"]  # ImageClassifierOutput flattened
    source = report["source"]
    assert source["class_names"] == ["cat", "dog", "bird"] and source["preprocess"]["interpolation"] == "bicubic"
    assert source["preprocess_from"]["architecture"] == "ViTForImageClassification"


@pytest.mark.slow
def test_transformers_segformer_builds_from_its_folder(tmp_path):
    report = _build(tmp_path, {"transformers": str(_hf_folder(tmp_path, "segformer"))})
    assert report["passed"], report["checks"]
    assert list(report["tensors"]) == ["logits"] and report["source"]["decoder"] == "semantic-seg"


def test_transformers_folder_without_safetensors_is_refused(tmp_path):
    from edgedeploy.sources import families

    folder = _hf_folder(tmp_path, "vit")
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": np.zeros(3)}))
    with pytest.raises(UsageError, match="no .safetensors weights"):
        families.load(ModelSource(transformers=folder))


@pytest.mark.slow
def test_zoo_quick_subset_passes(tmp_path):
    """tools/zoo.py --quick: a timm CNN, an Ultralytics detector and a transformers ViT, ONNX Runtime fp32."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "tools" / "zoo.py"), "--work", str(tmp_path), "--quick"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "zoo.json").read_text())
    assert len(rows) == 3 and all(r["status"] == "PASS" for r in rows), rows
