"""Architectures straight from timm, torchvision, Ultralytics and Hugging Face transformers through `edgedeploy
build`, one line of spec each, on OpenVINO fp32/fp16/int8 and ONNX Runtime fp32/int8; prints the table.

Every model is made here, nothing is downloaded: random weights (seeded) whose BatchNorm statistics are set by
running generated images through the model (trained-like statistics, so int8 ranges behave like a trained net's),
saved as the checkpoint the spec names (timm/torchvision: a state_dict; Ultralytics: the .pt Ultralytics writes;
transformers: the save_pretrained folder). Validation and calibration data are generated images (smooth colour
fields with shapes) at the model's input size.

    python tools/zoo.py --work /tmp/zoo                                   # every model x every route
    python tools/zoo.py --work /tmp/zoo --models convnext_atto,yolov8n --routes ort-fp32,ov-int8
    python tools/zoo.py --work /tmp/zoo --quick                           # the CI subset (3 models, ORT fp32)

Columns: status (PASS, FAIL with the first failed check, ERROR with the error line), worst rel-L2 over the outputs,
the task metric vs the reference (classification: top-1 agreement), latency at batch 1 relative to torch eager
(< 1: faster than PyTorch), build seconds, peak RSS. WORK/zoo.md and WORK/zoo.json keep the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROUTES = {"ov-fp32": ("openvino", "fp32"), "ov-fp16": ("openvino", "fp16"), "ov-int8": ("openvino", "int8"),
          "ort-fp32": ("onnxruntime", "fp32"), "ort-int8": ("onnxruntime", "int8")}

# name → (model source, spec extras); sizes kept small where the package allows, so the table runs on a laptop
MODELS: dict[str, tuple[dict, dict]] = {
    "convnext_atto": ({"timm": "convnext_atto"}, {}),
    "efficientnet_b0": ({"timm": "efficientnet_b0"}, {}),
    "mobilenetv3_large_100": ({"timm": "mobilenetv3_large_100"}, {}),
    "mobileone_s0": ({"timm": "mobileone_s0"}, {}),
    "repvgg_a0": ({"timm": "repvgg_a0"}, {}),
    "regnety_002": ({"timm": "regnety_002"}, {}),
    "vit_tiny_patch16_224": ({"timm": "vit_tiny_patch16_224"}, {}),
    "deit_tiny_patch16_224": ({"timm": "deit_tiny_patch16_224"}, {}),
    "mobilevit_xxs": ({"timm": "mobilevit_xxs"}, {}),
    "resnet18": ({"torchvision": "resnet18"}, {}),
    "mobilenet_v3_small": ({"torchvision": "mobilenet_v3_small"}, {}),
    "lraspp_mobilenet_v3_large": ({"torchvision": "lraspp_mobilenet_v3_large", "kwargs": {"num_classes": 21}},
                                  {"inputs": [{"name": "images", "shape": ["batch", 3, 256, 256]}]}),
    "ssdlite320_mobilenet_v3_large": ({"torchvision": "ssdlite320_mobilenet_v3_large", "kwargs": {"num_classes": 91}},
                                      {}),
    "yolov8n": ({"ultralytics": "yolov8n.yaml", "kwargs": {"imgsz": 320}}, {}),
    "yolo11n": ({"ultralytics": "yolo11n.yaml", "kwargs": {"imgsz": 320}}, {}),
    "yolov8n-seg": ({"ultralytics": "yolov8n-seg.yaml", "kwargs": {"imgsz": 320}}, {}),
    "yolov8n-pose": ({"ultralytics": "yolov8n-pose.yaml", "kwargs": {"imgsz": 320}}, {}),
    "yolov8n-cls": ({"ultralytics": "yolov8n-cls.yaml", "kwargs": {"imgsz": 224}}, {}),
    "hf-vit-tiny": ({"transformers": "hf-vit-tiny"}, {}),
    "hf-segformer-b0": ({"transformers": "hf-segformer-b0"}, {}),
}
QUICK = ("mobilenetv3_large_100", "yolov8n", "hf-vit-tiny")


def generated_images(count: int, h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour fields with a few filled rectangles: image-like statistics without any data set."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((count, h, w, 3), np.uint8)
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)).copy()
        for _ in range(rng.integers(1, 5)):
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
            y1, x1 = y0 + rng.integers(4, max(5, h // 3)), x0 + rng.integers(4, max(5, w // 3))
            img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
        out[i] = img
    return out


def _hf_folder(work: Path, name: str) -> Path:
    import torch
    import transformers as hf

    folder = work / "models" / name
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    labels = {i: f"class{i}" for i in range(10)}
    if name == "hf-vit-tiny":  # ViT-Tiny/16's shape
        config = hf.ViTConfig(image_size=224, patch_size=16, hidden_size=192, num_hidden_layers=12,
                              num_attention_heads=3, intermediate_size=768, num_labels=10, id2label=labels,
                              label2id={v: k for k, v in labels.items()})
        hf.ViTForImageClassification(config).save_pretrained(folder)
        hf.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
    else:  # SegFormer-B0's shape
        config = hf.SegformerConfig(num_labels=10, id2label=labels, label2id={v: k for k, v in labels.items()})
        hf.SegformerForSemanticSegmentation(config).save_pretrained(folder)
        hf.SegformerImageProcessor(size={"height": 256, "width": 256}).save_pretrained(folder)
    return folder


def _calibrate_bn(module, images: np.ndarray, mean, std, scale) -> None:
    """BatchNorm running statistics from the generated images (cumulative average), the rest in eval mode."""
    import torch

    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    x = (images.astype(np.float32) * scale - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        for start in range(0, len(x), 8):
            module(torch.from_numpy(np.ascontiguousarray(x[start:start + 8].transpose(0, 3, 1, 2))))
    for m in bns:
        m.eval()


def prepare(work: Path, name: str) -> tuple[dict, dict, dict]:
    """The model source with its checkpoint made here, the spec extras, and what the package says (input size)."""
    import torch

    from edgedeploy.config import ModelSource
    from edgedeploy.sources import families

    source, extras = MODELS[name]
    source = dict(source)
    folder = work / "models"
    folder.mkdir(parents=True, exist_ok=True)
    if "transformers" in source:
        source["transformers"] = str(_hf_folder(work, source["transformers"]))
        loaded = families.load(ModelSource(**source))
        return source, extras, {"shape": loaded.info.input_shape}
    if "ultralytics" in source:
        from ultralytics import YOLO

        checkpoint = folder / f"{name}.pt"
        imgsz = source["kwargs"]["imgsz"]
        if not checkpoint.is_file():
            torch.manual_seed(0)
            yolo = YOLO(source["ultralytics"])
            yolo.model.eval()
            _calibrate_bn(yolo.model, generated_images(32, imgsz, imgsz, 7), [0, 0, 0], [1, 1, 1], 1 / 255)
            yolo.save(str(checkpoint))
        source["ultralytics"] = str(checkpoint)
        return source, extras, {"shape": (3, imgsz, imgsz)}
    loaded = families.load(ModelSource(**source))
    c, h, w = loaded.info.input_shape
    if extras.get("inputs"):
        h, w = extras["inputs"][0]["shape"][2:]
    checkpoint = folder / f"{name}.pt"
    if not checkpoint.is_file():
        inner = loaded.module.inner
        p = loaded.info.preprocess
        _calibrate_bn(loaded.module, generated_images(32, h, w, 7), p["mean"], p["std"], p["scale"])
        torch.save(inner.state_dict(), checkpoint)
    source["checkpoint"] = str(checkpoint)
    return source, extras, {"shape": (c, h, w)}


def torch_eager_ms(source: dict, extras: dict, shape, repeats: int = 10) -> float:
    import torch

    from edgedeploy.config import ModelSource
    from edgedeploy.sources import families

    module = families.load(ModelSource(**source)).module
    x = torch.rand(1, *shape)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            start = time.perf_counter()
            module(x)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def write_data(work: Path, name: str, shape) -> tuple[Path, Path]:
    from PIL import Image

    _, h, w = shape
    data = work / "data" / f"{h}x{w}"
    val = data / "val.npz"
    if not val.is_file():
        (data / "calib").mkdir(parents=True, exist_ok=True)
        np.savez(val, images=generated_images(16, h, w, 1))
        for i, img in enumerate(generated_images(64, h, w, 2)):
            Image.fromarray(img).save(data / "calib" / f"{i:03d}.png")
    return val, data / "calib"


def build_row(work: Path, name: str, route: str, source: dict, extras: dict, val: Path, calib: Path,
              eager_ms: float) -> dict:
    import yaml

    target, precision = ROUTES[route]
    out = work / "builds" / name / route
    spec = {"name": name, "model": source, **extras, "target": target, "precision": precision,
            "validation": {"data": str(val), "latency": {"batch_sizes": [1], "iterations": 20, "warmup": 3}},
            "calibration": {"data": str(calib), "min_samples": 64}}
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_path = out.parent / f"{route}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "build", str(spec_path), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    row: dict = {"model": name, "route": route, "seconds": time.perf_counter() - start}
    report_path = out / "report.json"
    if proc.returncode not in (0, 1) or not report_path.is_file():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        error = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "no output")
        return {**row, "status": "ERROR", "why": error[:300]}
    report = json.loads(report_path.read_text())
    failed = [c for c in report["checks"] if not c["passed"] and not c.get("skipped")]
    worst = max((t["rel_l2"] for t in report["tensors"].values()), default=None)
    latency = next((t["median_ms"] for t in report["latency"] if t["batch"] == 1), None)
    task = report.get("task") or {}
    return {**row, "status": "PASS" if report["passed"] else "FAIL",
            "why": "" if report["passed"] else f"{failed[0]['name']} {failed[0].get('value')} vs "
                                               f"{failed[0].get('limit')}" if failed else "warning under --strict",
            "worst_rel_l2": worst, "top1_agreement": task.get("top1_agreement"),
            "latency_ms": latency, "eager_ms": eager_ms,
            "vs_eager": latency / eager_ms if latency and eager_ms else None,
            "build_s": report.get("wall_seconds"), "rss_mb": report.get("peak_rss_mb"),
            "model_type": (report.get("precision_stage", {}).get("settings") or {}).get("model_type")}


def table(rows: list[dict]) -> str:
    head = ("| model | route | status | worst rel-L2 | top-1 agreement | latency vs torch eager | build s | RSS MB |\n"
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n")

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    return head + "".join(
        f"| {r['model']} | {r['route']} | {r['status']}{' ' + r['why'] if r.get('why') else ''} | "
        f"{f(r.get('worst_rel_l2'), '.2e')} | {f(r.get('top1_agreement'), '.3f')} | {f(r.get('vs_eager'), '.2f')} | "
        f"{f(r.get('build_s'), '.0f')} | {f(r.get('rss_mb'), '.0f')} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK)} on ort-fp32 only")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    models = list(QUICK) if args.quick else args.models.split(",")
    routes = ["ort-fp32"] if args.quick else args.routes.split(",")
    unknown = [m for m in models if m not in MODELS] + [r for r in routes if r not in ROUTES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in models:
        try:
            source, extras, info = prepare(args.work, name)
            val, calib = write_data(args.work, name, info["shape"])
            eager = torch_eager_ms(source, extras, info["shape"])
        except Exception as e:  # noqa: BLE001 - one row says why, the table goes on
            rows.extend({"model": name, "route": r, "status": "ERROR", "why": f"preparing: {type(e).__name__}: {e}"[:300]}
                        for r in routes)
            continue
        for route in routes:
            rows.append(build_row(args.work, name, route, source, extras, val, calib, eager))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            (args.work / "zoo.json").write_text(json.dumps(rows, indent=1))
            (args.work / "zoo.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
