#!/usr/bin/env python
"""A COCO-val-sized detection set validated the way users run it: `edgedeploy build` (reference from the ONNX model
in ONNX Runtime, OpenVINO fp32 artifact, validate stage) and then `edgedeploy validate` on the built folder, each in
its own process: peak RSS of each, validate's wall time against the artifact's own inference over the same batches
measured alone, and the reported mAP against faster-coco-eval run independently on the predictions.json validate
wrote.

    nice python tools/bench_stream.py --onnx yolov8n.onnx --images 5000 --work /tmp/bench-stream

`--onnx`: a YOLOv8-style detector exported with a dynamic batch (1, 3, 640, 640) -> (B, 84, N), e.g. Ultralytics'
`YOLO("yolov8n.yaml").export(format="onnx", dynamic=True)` (random weights are fine: the figures are time, memory
and agreement between evaluators; the confidence threshold is lowered to 1e-4 so random weights leave detections
to score). Images are synthetic 640x480 JPEGs with 1-8 boxes of 80 classes, in COCO form. The build keeps
`--tensor-samples` full output tensors (YOLOv8n's (84, 8400) output is 2.8 MB a sample, its input 4.9 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 8
SIZE = 640


def make_data(work: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = work / "val"
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict = {"images": [], "annotations": [],
                 "categories": [{"id": i + 1, "name": f"class{i}"} for i in range(80)]}
    for i in range(count):
        image = rng.integers(0, 60, (480, 640, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 9))):
            x, y = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            w, h = int(rng.integers(16, 640 - x)), int(rng.integers(16, 480 - y))
            image[y:y + h, x:x + w] = rng.integers(60, 255, 3)
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": i + 1,
                                       "category_id": int(rng.integers(1, 81)), "bbox": [x, y, w, h],
                                       "area": w * h, "iscrowd": 0})
        name = f"{i:012d}.jpg"
        Image.fromarray(image).save(folder / name, quality=90)
        doc["images"].append({"id": i + 1, "file_name": name, "width": 640, "height": 480})
    (work / "annotations").mkdir(exist_ok=True)
    (work / "annotations" / "instances_val.json").write_text(json.dumps(doc))


def spec_file(work: Path, onnx: Path, tensor_samples: int) -> Path:
    import yaml

    spec = {"name": "bench-stream", "model": {"onnx": str(onnx.resolve())},
            "inputs": [{"name": "images", "shape": ["batch", 3, SIZE, SIZE], "dtype": "float32"}],
            "outputs": ["output0"],
            "preprocess": {"resize": "letterbox", "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1],
                           "layout": "NCHW"},
            "target": "openvino", "precision": "fp32",
            "validation": {"data": str(work / "annotations" / "instances_val.json"), "format": "coco",
                           "images": str(work / "val"), "task": "detection", "tensor_samples": tensor_samples,
                           "detection": {"conf_thres": 1e-4},
                           "latency": {"batch_sizes": [BATCH], "warmup": 1, "iterations": 3}}}
    path = work / "bench-stream.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def build(work: Path, onnx: Path, count: int, tensor_samples: int) -> dict:
    from edgedeploy import pipeline
    from edgedeploy.config import load_spec

    start = time.perf_counter()
    report = pipeline.build(load_spec(spec_file(work, onnx, tensor_samples)), work / "build")
    return {"seconds": time.perf_counter() - start, "stage_seconds": report["stage_seconds"],
            "stage_peak_rss_mb": report["stage_peak_rss_mb"], "map50_95": report["task"]["map50_95"]}


def validate(work: Path, onnx: Path, count: int, tensor_samples: int) -> dict:
    from edgedeploy import revalidate

    start = time.perf_counter()
    report = revalidate.validate_artifact(work / "build", out_dir=work / "validate")
    task = report["task"]
    return {"seconds": time.perf_counter() - start, "data": report["validation_data"], "decoder": task["decoder"],
            "detections": len(json.loads((work / "validate" / "predictions.json").read_text())),
            "map50_95": task["map50_95"], "map50": task["map50"], "map50_95_drop_ci95": task.get("map50_95_drop_ci95"),
            "passed": report["passed"]}


def infer_alone(work: Path, onnx: Path, count: int, tensor_samples: int) -> dict:
    """The built artifact loaded as validate loads it, run on ceil(count / BATCH) batches of one fixed input."""
    from edgedeploy.backends import backend_settings, get_backend
    from edgedeploy.backends.base import BuildResult
    from edgedeploy.validate.gate import read_manifest

    manifest, spec = read_manifest(work / "build")
    built = BuildResult(work / "build" / manifest["artifact"]["path"], [], {})
    runner = get_backend(spec.target).load(built, backend_settings(spec), spec.validation.latency.threads)
    x = np.random.default_rng(0).random((BATCH, 3, SIZE, SIZE), dtype=np.float32)
    runner.run({"images": x})  # warm-up
    start = time.perf_counter()
    for _ in range(-(-count // BATCH)):
        runner.run({"images": x})
    return {"seconds": time.perf_counter() - start}


def independent(work: Path) -> dict:
    from faster_coco_eval import COCO, COCOeval_faster

    start = time.perf_counter()
    gt = COCO(str(work / "annotations" / "instances_val.json"))
    ev = COCOeval_faster(gt, gt.loadRes(str(work / "validate" / "predictions.json")), iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {"seconds": time.perf_counter() - start, "map50_95": float(ev.stats[0]), "map50": float(ev.stats[1])}


PHASES = {"data": lambda w, o, n, t: make_data(w, n) or {}, "build": build, "validate": validate,
          "infer": infer_alone, "independent": lambda w, o, n, t: independent(w)}


def phase(name: str, work: Path, onnx: Path, count: int, tensor_samples: int) -> dict:
    """`name` in a fresh process: its result and its peak RSS."""
    subprocess.run([sys.executable, __file__, "--phase", name, "--onnx", str(onnx), "--images", str(count),
                    "--work", str(work), "--tensor-samples", str(tensor_samples)], check=True)
    return json.loads((work / f"{name}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--tensor-samples", type=int, default=64)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgedeploy-bench-stream"))
    ap.add_argument("--phase", choices=sorted(PHASES))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase:
        result = PHASES[args.phase](args.work, args.onnx, args.images, args.tensor_samples)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        (args.work / f"{args.phase}.json").write_text(json.dumps(result))
        return
    if not (args.work / "annotations" / "instances_val.json").is_file():
        phase("data", args.work, args.onnx, args.images, args.tensor_samples)
    load = os.getloadavg()
    done = {name: phase(name, args.work, args.onnx, args.images, args.tensor_samples)
            for name in ("build", "validate", "infer", "independent")}
    build_, val, infer, ind = (done[k] for k in ("build", "validate", "infer", "independent"))
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; after: "
          + " ".join(f"{v:.1f}" for v in os.getloadavg()))
    print("| images | tensor sample | build peak RSS (MB) | validate peak RSS (MB) | inference alone (s) "
          "| validate wall (s) | ratio | mAP50-95 reported | mAP50-95 faster-coco-eval on predictions.json |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    # the build resets the peak per stage (/proc/self/clear_refs), which ru_maxrss follows: its stages' peaks count
    build_rss = max(build_["peak_rss_mb"], *build_["stage_peak_rss_mb"].values())
    print(f"| {args.images} | {args.tensor_samples} | {build_rss:.0f} | {val['peak_rss_mb']:.0f} "
          f"| {infer['seconds']:.1f} | {val['seconds']:.1f} | {val['seconds'] / infer['seconds']:.2f} "
          f"| {val['map50_95']:.9f} | {ind['map50_95']:.9f} |")
    print(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
