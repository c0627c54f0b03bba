"""A small Hugging Face ViT (3 layers, 32x32 input) trained here on generated data, then int8 on OpenVINO and ONNX Runtime with
`int8.model_type` none vs auto (transformer): the measurement behind transformer-aware INT8 (docs/models.md).

The data: 10 classes of oriented stripe patterns (class k: angle 18°·k, random frequency, phase, colours and
noise), 32x32 RGB. Nothing is downloaded.

    python tools/train_vit.py --work /tmp/vit                                   # train, then the four int8 builds
    python tools/train_vit.py --work /tmp/vit --skip-training --routes ort-int8

Prints one row per build: route, model_type, status, top-1 accuracy (artifact / PyTorch), top-1 agreement, rel-L2.
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
CLASSES, SIZE = 10, 32


def stripes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images = np.empty((count, SIZE, SIZE, 3), np.uint8)
    for i, k in enumerate(labels):
        angle = np.pi * k / CLASSES + rng.normal(0, 0.03)
        freq = rng.uniform(0.15, 0.45)
        wave = np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = (wave[..., None] + 1) / 2 * a + (1 - wave[..., None]) / 2 * b + rng.normal(0, 12, (SIZE, SIZE, 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def train(work: Path, steps: int) -> None:
    import torch
    import transformers as hf

    torch.manual_seed(0)
    labels = {i: f"angle{18 * i}" for i in range(CLASSES)}
    config = hf.ViTConfig(image_size=SIZE, patch_size=8, hidden_size=96, num_hidden_layers=3, num_attention_heads=3,
                          intermediate_size=192, num_labels=CLASSES, id2label=labels,
                          label2id={v: k for k, v in labels.items()})
    model = hf.ViTForImageClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images, targets = stripes(6000, 0)
    x = torch.from_numpy((images.astype(np.float32) / 255 - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(targets)
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()
    model.save_pretrained(work / "vit")
    hf.ViTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(work / "vit")
    val_images, val_labels = stripes(256, 1)
    np.savez(work / "val.npz", images=val_images, labels=val_labels)
    calib, _ = stripes(300, 2)
    np.save(work / "calib.npy", ((calib.astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        vx = torch.from_numpy((val_images.astype(np.float32) / 255 - 0.5) / 0.5).permute(0, 3, 1, 2)
        acc = (model(pixel_values=vx).logits.argmax(-1).numpy() == val_labels).mean()
    print(f"trained {steps} steps in {time.perf_counter() - start:.0f} s, validation top-1 {acc:.3f}")


def build(work: Path, route: str, model_type: str) -> dict:
    import yaml

    target, precision = {"ov-int8": ("openvino", "int8"), "ort-int8": ("onnxruntime", "int8")}[route]
    out = work / "builds" / f"{route}-{model_type}"
    spec = {"name": "vit", "model": {"transformers": str(work / "vit")}, "target": target, "precision": precision,
            "validation": {"data": str(work / "val.npz"), "task": "classification",
                           "latency": {"batch_sizes": [1], "iterations": 10, "warmup": 2}},
            "calibration": {"data": str(work / "calib.npy"), "min_samples": 100},
            "int8": {"model_type": model_type}}
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{route}-{model_type}.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "build", str(path), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if not (out / "report.json").is_file():
        return {"route": route, "model_type": model_type, "status": "ERROR",
                "why": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    r = json.loads((out / "report.json").read_text())
    task = r.get("task") or {}
    return {"route": route, "model_type": model_type, "status": "PASS" if r["passed"] else "FAIL",
            "top1": task.get("top1"), "reference_top1": task.get("reference_top1"),
            "top1_agreement": task.get("top1_agreement"),
            "rel_l2": max(t["rel_l2"] for t in r["tensors"].values()),
            "resolved": (r["precision_stage"].get("settings") or {}).get("model_type", "none")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600, help="AdamW steps of batch 32 (~1 min on one core)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--routes", default="ov-int8,ort-int8")
    parser.add_argument("--model-types", default="none,auto")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.skip_training:
        train(args.work, args.steps)
    rows = []
    for route in args.routes.split(","):
        for model_type in args.model_types.split(","):
            rows.append(build(args.work, route, model_type))
            print(json.dumps(rows[-1]), flush=True)
    (args.work / "int8.json").write_text(json.dumps(rows, indent=1))
    print("| route | int8.model_type (resolved) | status | top-1 artifact / PyTorch | top-1 agreement | rel-L2 |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    for r in rows:
        if r["status"] == "ERROR":
            print(f"| {r['route']} | {r['model_type']} | ERROR {r['why']} | | | |")
            continue
        print(f"| {r['route']} | {r['model_type']} ({r['resolved']}) | {r['status']} | {r['top1']:.3f} / "
              f"{r['reference_top1']:.3f} | {r['top1_agreement']:.3f} | {r['rel_l2']:.3f} |")


if __name__ == "__main__":
    main()
