#!/usr/bin/env python
"""Ultralytics YOLO for the head-to-head benchmark (tools/bench.py --models yolov8n,yolo11n): run with a Python that
has ultralytics and torchvision.

    python tools/ultralytics_models.py prep --model yolov8n --work /tmp/bench/yolov8n [--imgsz 320]

`prep` makes everything both contenders start from, offline (nothing is downloaded: the network is built from its
yaml with seeded random weights, saved once as weights.pt; fonts and auto-installs are off): a small generated YOLO
dataset (coloured boxes and ellipses on noise, YOLO labels, data.yaml) whose images calibrate both int8 routes,
validation inputs (val.npz), the PyTorch outputs on them (reference.npy), and Ultralytics' own exports of the same
weights (`model.export(format="onnx")`, `format="openvino"`, `format="openvino", int8=True, data=...`). It prints one
JSON line naming the files. `detector` is the factory an edgedeploy spec names to build the same weights.
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
            cls = int(rng.integers(0, 80))
            colour = rng.integers(96, 256, 3)
            if cls % 2:
                img[y0:y0 + h, x0:x0 + w] = colour
            else:
                mask = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 <= 1
                img[mask] = colour
            boxes.append((cls, (x0 + w / 2) / size, (y0 + h / 2) / size, w / size, h / size))
        labels.append(boxes)
    return images, labels


def prep(model_name: str, work: Path, imgsz: int, calib: int, val: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    _offline(work / "ultralytics-config")
    import torch
    from PIL import Image
    from ultralytics import YOLO

    data = work / "data"
    images, labels = synthetic_images(calib, imgsz, seed=7)
    for split in ("train",):
        (data / "images" / split).mkdir(parents=True, exist_ok=True)
        (data / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, (img, boxes) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(data / "images" / split / f"{i:04d}.png")
            (data / "labels" / split / f"{i:04d}.txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in boxes))
    (data / "data.yaml").write_text(json.dumps({"path": str(data), "train": "images/train", "val": "images/train",
                                                "names": {i: f"class{i}" for i in range(80)}}))
    val_images, _ = synthetic_images(val, imgsz, seed=100)
    np.savez(work / "val.npz", images=val_images)

    torch.manual_seed(0)
    weights = work / "weights.pt"
    if not weights.is_file():
        YOLO(f"{model_name}.yaml").save(str(weights))
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
    return {"weights": str(weights), "calibration": str(data / "images" / "train"), "val": str(work / "val.npz"),
            "inputs": str(work / "inputs.npy"), "reference": str(work / "reference.npy"), "exports": exports,
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
    args = ap.parse_args()
    result = prep(args.model, args.work, args.imgsz, args.calib, args.val)
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
