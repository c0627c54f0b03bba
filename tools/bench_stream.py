#!/usr/bin/env python
"""A COCO-val-sized detection set validated by streaming, with a YOLOv8n-sized model on OpenVINO: peak RSS, wall
time against the backend's inference alone, and the reported mAP against faster-coco-eval run independently on the
written predictions. Each phase runs in its own process, so its peak RSS is its own.

    python tools/bench_stream.py --onnx yolov8n.onnx --images 5000 --work /tmp/bench-stream

`--onnx`: a YOLOv8-style detector exported with a dynamic batch (1, 3, 640, 640) -> (B, 84, N), e.g. Ultralytics'
`YOLO("yolov8n.yaml").export(format="onnx", dynamic=True)` (random weights are fine: the figures are time, memory
and agreement between evaluators). Images are synthetic 640x480 JPEGs with 1-8 boxes of 80 classes, in COCO form.
"""

from __future__ import annotations

import argparse
import json
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
TENSOR_SAMPLES = 64  # YOLOv8n's (84, 8400) output is 2.8 MB a sample


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


def compiled(onnx: Path):
    import openvino as ov

    core = ov.Core()
    model = core.compile_model(str(onnx), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return model


def infer_alone(work: Path, onnx: Path, count: int) -> dict:
    model = compiled(onnx)
    request = model.create_infer_request()
    x = np.random.default_rng(0).random((BATCH, 3, SIZE, SIZE), dtype=np.float32)
    request.infer({0: x})  # warm-up
    start = time.perf_counter()
    for _ in range(-(-count // BATCH)):
        request.infer({0: x})
    return {"seconds": time.perf_counter() - start}


def validate(work: Path, onnx: Path, count: int) -> dict:
    from edgedeploy.config import Preprocess
    from edgedeploy.data.coco import open_coco
    from edgedeploy.data.stream import select
    from edgedeploy.tasks.decoders.base import DecodeSettings
    from edgedeploy.tasks.metrics.files import write_coco_results
    from edgedeploy.tasks.scoring import coco_results, detection_scores
    from edgedeploy.tasks.streamed import run_stream

    start = time.perf_counter()
    model = compiled(onnx)
    request = model.create_infer_request()
    name = model.inputs[0].get_any_name()

    def run(feeds):
        request.infer({0: feeds[name]})
        return {"output0": request.get_output_tensor(0).data.copy()}

    source = open_coco(work / "annotations" / "instances_val.json")
    recipe = Preprocess(resize="letterbox")
    # random weights score every candidate about 1.6e-4: a threshold under that keeps ~100 detections per image
    settings = DecodeSettings((SIZE, SIZE), len(source.class_names()), conf_thres=1e-4)
    result = run_stream(source, select(len(source), limit=count), run, name, (SIZE, SIZE), recipe, settings,
                        batch=BATCH, tensor_samples=TENSOR_SAMPLES)
    streamed = time.perf_counter() - start
    scores = detection_scores(result, result, source.class_names(), source.category_ids(), resamples=200)
    write_coco_results(work / "predictions.json", coco_results(result, source.category_ids()))
    return {"seconds": time.perf_counter() - start, "stream_seconds": streamed, "infer_seconds": result.infer_seconds,
            "detections": sum(len(p) for p in result.predictions), "decoder": result.decoder,
            "map50_95": scores["map50_95"], "map50": scores["map50"],
            "map50_95_drop_ci95": scores["map50_95_drop_ci95"]}


def independent(work: Path) -> dict:
    from faster_coco_eval import COCO, COCOeval_faster

    start = time.perf_counter()
    gt = COCO(str(work / "annotations" / "instances_val.json"))
    ev = COCOeval_faster(gt, gt.loadRes(str(work / "predictions.json")), iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {"seconds": time.perf_counter() - start, "map50_95": float(ev.stats[0]), "map50": float(ev.stats[1])}


PHASES = {"data": lambda w, o, n: make_data(w, n) or {}, "infer": infer_alone, "validate": validate,
          "independent": lambda w, o, n: independent(w)}


def phase(name: str, work: Path, onnx: Path, count: int) -> dict:
    """`name` in a fresh process: its result and its peak RSS."""
    out = work / f"{name}.json"
    subprocess.run([sys.executable, __file__, "--phase", name, "--onnx", str(onnx), "--images", str(count),
                    "--work", str(work)], check=True)
    result = json.loads(out.read_text())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, required=True)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgedeploy-bench-stream"))
    ap.add_argument("--phase", choices=sorted(PHASES))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase:
        result = PHASES[args.phase](args.work, args.onnx, args.images)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        (args.work / f"{args.phase}.json").write_text(json.dumps(result))
        return
    if not (args.work / "annotations" / "instances_val.json").is_file():
        phase("data", args.work, args.onnx, args.images)
    infer = phase("infer", args.work, args.onnx, args.images)
    val = phase("validate", args.work, args.onnx, args.images)
    ind = phase("independent", args.work, args.onnx, args.images)
    print("| images | inference alone (s) | validate wall (s) | ratio | validate peak RSS (MB) | mAP50-95 reported "
          "| mAP50-95 faster-coco-eval on predictions.json |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.images} | {infer['seconds']:.1f} | {val['seconds']:.1f} | {val['seconds'] / infer['seconds']:.2f} "
          f"| {val['peak_rss_mb']:.0f} | {val['map50_95']:.6f} | {ind['map50_95']:.6f} |")
    print(json.dumps({"infer": infer, "validate": val, "independent": ind}, indent=1))


if __name__ == "__main__":
    main()
