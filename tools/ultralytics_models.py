#!/usr/bin/env python
"""Ultralytics YOLO for the head-to-head benchmark (tools/bench.py --models yolov8n,yolo11n): run with a Python that
has ultralytics and torchvision.

    python tools/ultralytics_models.py prep --model yolov8n --work /tmp/bench/yolov8n [--imgsz 320]
        [--train-epochs 40 --train-images 256] [--val 128]

`prep` makes everything both contenders start from, offline (nothing is downloaded: the network is built from its
yaml with seeded random weights, saved once as weights.pt, and with --train-epochs trained by Ultralytics on generated
images first; fonts and auto-installs are off): a small generated YOLO dataset (8 classes of coloured boxes and
ellipses on noise, YOLO labels, data.yaml) whose train split calibrates both int8 routes and whose val split both
evaluate on, validation inputs (val.npz), the PyTorch outputs on them (reference.npy), and Ultralytics' own exports of
the same weights (`model.export(format="onnx")`, `format="openvino"`, `format="openvino", int8=True, data=...`), each
scored by Ultralytics' own `yolo val` on the val split. It prints one JSON line naming the files. `detector` is the
factory an edgedeploy spec names to build the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

OFFLINE = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}


def _offline(config_dir: Path | None = None) -> None:
    os.environ.update(OFFLINE)
    if config_dir is not None:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    import ultralytics.data.utils as data_utils

    data_utils.check_font = lambda *a, **k: None  # the dataset check would fetch a font for plots we never draw


def detector(weights: str):
    """The YOLO network of `weights` (a checkpoint `prep` saved), prepared as Ultralytics' exporter prepares it:
    eval, float, Conv+BN fused, the head in export mode (one (batch, 4 + classes, anchors) output), C2f's split
    forward."""
    _offline()
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.modules import C2f, Detect

    model = YOLO(weights).model
    for p in model.parameters():
        p.requires_grad = False
    model = model.eval().float().fuse()
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format, m.shape = True, True, "onnx", None
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    torch.set_grad_enabled(False)
    return model


# 8 of the 80 classes are drawn, each with its own colour (odd classes boxes, even ones ellipses), so that a few
# epochs of training learn them and a trained model's mAP50-95 means something
PALETTE = np.array([[255, 64, 64], [64, 255, 64], [64, 64, 255], [255, 255, 64], [255, 64, 255], [64, 255, 255],
                    [255, 160, 64], [160, 96, 255]])


def synthetic_images(count: int, size: int, seed: int) -> tuple[np.ndarray, list[list[tuple]]]:
    """(count, size, size, 3) uint8 RGB: noise with 1-4 filled boxes or ellipses each; labels (class, cx, cy, w, h)
    normalised, YOLO style."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 96, (count, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    labels = []
    for img in images:
        boxes = []
        for _ in range(rng.integers(1, 5)):
            w, h = rng.integers(size // 10, size // 2, 2)
            x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
            cls = int(rng.integers(0, len(PALETTE)))
            colour = np.clip(PALETTE[cls] + rng.integers(-24, 25, 3), 0, 255)
            if cls % 2:
                img[y0:y0 + h, x0:x0 + w] = colour
            else:
                mask = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 <= 1
                img[mask] = colour
            boxes.append((cls, (x0 + w / 2) / size, (y0 + h / 2) / size, w / size, h / size))
        labels.append(boxes)
    return images, labels


def write_yolo_split(folder: Path, split: str, images: np.ndarray, labels: list[list[tuple]]) -> None:
    from PIL import Image

    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, (img, boxes) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(folder / "images" / split / f"{i:04d}.png")
        (folder / "labels" / split / f"{i:04d}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes))


def train(weights: Path, data: Path, train_images: int, imgsz: int, epochs: int, work: Path) -> float:
    """Ultralytics' own training of the seeded network on `train_images` generated images (their own split, apart
    from the calibration images); the result replaces weights.pt. Returns the seconds it took."""
    import shutil

    from ultralytics import YOLO

    images, labels = synthetic_images(train_images, imgsz, seed=11)
    write_yolo_split(data, "fit", images, labels)
    yaml = data / "fit.yaml"
    yaml.write_text(json.dumps({"path": str(data), "train": "images/fit", "val": "images/fit",
                                "names": {i: f"class{i}" for i in range(80)}}))
    start = time.perf_counter()
    # AdamW at a fixed rate: the `auto` optimizer picks a rate for long COCO-sized runs (1e-4 for 80 classes) that
    # leaves a few hundred steps from scratch with no detections
    YOLO(str(weights)).train(data=str(yaml), epochs=epochs, imgsz=imgsz, batch=16, val=False, plots=False,
                             device="cpu", workers=0, amp=False, seed=0, deterministic=True, optimizer="AdamW",
                             lr0=0.002, warmup_epochs=1, close_mosaic=max(1, epochs // 4),
                             project=str(work / "train"), name="run", exist_ok=True)
    shutil.copy(work / "train" / "run" / "weights" / "last.pt", weights)
    return time.perf_counter() - start


def prep(model_name: str, work: Path, imgsz: int, calib: int, val: int, epochs: int, train_images: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    _offline(work / "ultralytics-config")
    import torch
    from ultralytics import YOLO

    data = work / "data"
    images, labels = synthetic_images(calib, imgsz, seed=7)
    write_yolo_split(data, "train", images, labels)
    (data / "data.yaml").write_text(json.dumps({"path": str(data), "train": "images/train", "val": "images/train",
                                                "names": {i: f"class{i}" for i in range(80)}}))
    val_images, val_labels = synthetic_images(val, imgsz, seed=100)
    np.savez(work / "val.npz", images=val_images)
    (work / "val_labels.json").write_text(json.dumps(val_labels))
    write_yolo_split(data, "val", val_images, val_labels)  # `yolo val` and edgedeploy's validation read these
    val_yaml = data / "val.yaml"
    val_yaml.write_text(json.dumps({"path": str(data), "train": "images/train", "val": "images/val",
                                    "names": {i: f"class{i}" for i in range(80)}}))

    torch.manual_seed(0)
    weights = work / "weights.pt"
    training = work / "training.json"  # how weights.pt was trained, when prep trained it
    if not weights.is_file():
        YOLO(f"{model_name}.yaml").save(str(weights))
        training.unlink(missing_ok=True)
        if epochs:
            seconds = train(weights, data, train_images, imgsz, epochs, work)
            training.write_text(json.dumps({"epochs": epochs, "images": train_images, "seconds": seconds}))
    net = detector(str(weights))
    x = torch.from_numpy(val_images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.inference_mode():
        np.save(work / "reference.npy", torch.cat([net(x[i:i + 8]) for i in range(0, len(x), 8)]).numpy())
    np.save(work / "inputs.npy", x.numpy())
    exports, seconds = {}, {}
    for label, kwargs in (("onnx", {"format": "onnx"}), ("openvino-fp32", {"format": "openvino"}),
                          ("openvino-int8", {"format": "openvino", "int8": True, "data": str(data / "data.yaml")})):
        start = time.perf_counter()
        path = Path(YOLO(str(weights)).export(imgsz=imgsz, device="cpu", **kwargs))
        seconds[label] = time.perf_counter() - start
        exports[label] = str(path if path.suffix == ".onnx" else next(path.glob("*.xml")))
    yolo_val = {}  # Ultralytics' own evaluator on each of its artifacts (`yolo val`), at its own defaults
    for label, artifact in (("pytorch", weights), *exports.items()):
        folder = Path(artifact).parent if label.startswith("openvino") else Path(artifact)
        metrics = YOLO(str(folder), task="detect").val(data=str(val_yaml), imgsz=imgsz, batch=1, device="cpu",
                                                       plots=False, verbose=False, project=str(work / "val-runs"),
                                                       name=label, exist_ok=True)
        yolo_val[label] = {"map50_95": float(metrics.box.map), "map50": float(metrics.box.map50)}
    return {"weights": str(weights), "training": json.loads(training.read_text()) if training.is_file() else None,
            "calibration": str(data / "images" / "train"), "val": str(work / "val.npz"),
            "val_labels": str(work / "val_labels.json"), "val_count": val, "val_yaml": str(val_yaml),
            "yolo_val": yolo_val, "imgsz": imgsz, "inputs": str(work / "inputs.npy"), "reference": str(work / "reference.npy"), "exports": exports,
            "export_seconds": seconds, "ultralytics": __import__("ultralytics").__version__,
            "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prep")
    p.add_argument("--model", required=True, help="yolov8n, yolo11n, ... (the package's yaml of that name)")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--calib", type=int, default=64)
    p.add_argument("--val", type=int, default=32)
    p.add_argument("--train-epochs", type=int, default=0,
                   help="train the seeded network this many epochs with Ultralytics before anything else (only when "
                        "weights.pt is not there yet)")
    p.add_argument("--train-images", type=int, default=512)
    args = ap.parse_args()
    result = prep(args.model, args.work, args.imgsz, args.calib, args.val, args.train_epochs, args.train_images)
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
