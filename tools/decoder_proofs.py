"""Each decoder on a real architecture from its own package, against that package's own postprocessing.

Run with a Python that has ultralytics, torchvision and transformers (kept outside the project's environment):

    PYTHONPATH=$PWD /path/to/venv-with-models/bin/python tools/decoder_proofs.py

Models are built from their package's configs with random weights (nothing is downloaded), fed seeded random
images, and their outputs read twice: by the package (ultralytics' non_max_suppression / process_mask, the
transformers image processor, torchvision's own post-processing) and by the edgedeploy decoder `choose` picks from
the output shapes (the YOLO heads' tied scores untied the same way for both, see `untied`). The table gives,
per model, the decoder chosen, the detections each side kept and the largest difference. Random weights make
meaningless predictions with realistic layouts, which is what a decoder reads.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")

from edgedeploy.tasks.decoders import DECODERS, choose  # noqa: E402
from edgedeploy.tasks.decoders.base import DecodeSettings  # noqa: E402

CONF, IOU, MAX_DET = 1e-4, 0.7, 300
ROWS: list[tuple] = []


def row(model: str, outputs: dict, decoder: str, theirs: int, ours: int, diff: str) -> None:
    shapes = ", ".join(f"{list(v.shape)}" for v in outputs.values())
    ROWS.append((model, shapes, decoder, theirs, ours, diff))
    print(f"| {model} | {shapes} | {decoder} | {theirs} | {ours} | {diff} |", flush=True)


def untied(torch, y, first: int, count: int):
    """Fresh YOLO heads score candidates alike to 5 digits (bias-only class logits): ties that two NMS
    implementations legitimately break differently. Both sides get the same float64 tensor with seeded noise of
    1e-6 on the `count` score channels from `first`, so the order is well defined; boxes, keypoints and mask
    coefficients are the model's own."""
    y = y.double().clone()
    g = torch.Generator().manual_seed(0)
    y[:, first:first + count] += torch.rand(y[:, first:first + count].shape, generator=g, dtype=torch.float64) * 1e-6
    return y


def ultralytics_cases(torch) -> None:
    from ultralytics import RTDETR, YOLO
    from ultralytics.utils import nms, ops

    size = 320
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for cfg, kpt in (("yolov8n.yaml", None), ("yolo11n.yaml", None), ("yolov8n-seg.yaml", None),
                     ("yolov8n-pose.yaml", (17, 3))):
        torch.manual_seed(0)
        model = YOLO(cfg).model.eval()
        with torch.no_grad():
            y = model(x)[0]
        tensors = list(y) if isinstance(y, (list, tuple)) else [y]
        tensors[0] = untied(torch, tensors[0], 4, 1 if kpt else 80)
        outputs = {f"output{i}": t.numpy() for i, t in enumerate(tensors)}
        nc = 1 if kpt else 80
        shapes = {k: v.shape for k, v in outputs.items()}
        decoder = choose(shapes, nc, kpt_shape=kpt)
        settings = DecodeSettings((size, size), nc, kpt, conf_thres=CONF, iou_thres=IOU, max_det=MAX_DET)
        (ours,) = decoder.decode(outputs, settings)
        theirs = nms.non_max_suppression(tensors[0], CONF, IOU, max_det=MAX_DET, nc=nc,
                                          max_time_img=100.0)[0].numpy()
        diffs = [np.abs(theirs[:, :4] - ours.boxes).max() if len(theirs) == len(ours) else np.inf,
                 np.abs(theirs[:, 4] - ours.scores).max() if len(theirs) == len(ours) else np.inf]
        same_cls = len(theirs) == len(ours) and (theirs[:, 5] == ours.classes).all()
        extra = ""
        if decoder.name == "yolo-seg" and len(theirs) == len(ours):
            coef, boxes = torch.from_numpy(theirs[:, 6:]).float(), torch.from_numpy(theirs[:, :4])
            masks = ops.process_mask(tensors[1][0], coef, boxes, (size, size), upsample=True).numpy().astype(bool)
            extra = f", mask pixels differing {int((masks != ours.masks).sum())} of {masks.size}"
        if decoder.name == "yolo-pose" and len(theirs) == len(ours):
            kp = theirs[:, 6:].reshape(-1, 17, 3)
            extra = f", keypoints max |diff| {np.abs(kp - ours.keypoints).max():.2e}"
        row(cfg.removesuffix(".yaml"), outputs, decoder.name, len(theirs), len(ours),
            f"boxes {diffs[0]:.2e}, scores {diffs[1]:.2e}, classes {'equal' if same_cls else 'DIFFER'}{extra}")
        if cfg == "yolov8n.yaml":  # the case: forced YOLOv5 reading must be refused
            try:
                choose(shapes, nc, forced="yolo-objectness")
                print("!! yolo-objectness accepted a YOLOv8 head", flush=True)
            except Exception as e:  # noqa: BLE001 - the message is the point
                print(f"forced yolo-objectness on yolov8n: {e}", flush=True)
    torch.manual_seed(0)
    model = RTDETR("rtdetr-l.yaml").model.eval()
    with torch.no_grad():
        y = model(x)[0]
    outputs = {"output0": y.numpy()}
    decoder = choose({"output0": y.shape}, 80)
    (ours,) = decoder.decode(outputs, DecodeSettings((size, size), 80, conf_thres=CONF, max_det=MAX_DET))
    # Ultralytics' RT-DETR head already returns its final detections, (B, 300, 6) [x1, y1, x2, y2, score, class]
    p = y[0].numpy()
    p = p[p[:, 4] > CONF]
    p = p[np.argsort(-p[:, 4], kind="stable")][:MAX_DET]
    row("rtdetr-l (ultralytics)", outputs, decoder.name, len(p), len(ours),
        f"boxes {np.abs(p[:, :4] - ours.boxes).max():.2e}, classes "
        f"{'equal' if (p[:, 5] == ours.classes).all() else 'DIFFER'}")


def transformers_case(torch) -> None:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor

    torch.manual_seed(0)
    config = DetrConfig(use_pretrained_backbone=False, backbone="resnet18", use_timm_backbone=True,
                        num_queries=50)
    model = DetrForObjectDetection(config).eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pixel_values=x)
    outputs = {"logits": out.logits.numpy(), "pred_boxes": out.pred_boxes.numpy()}
    nc = config.num_labels
    decoder = choose({k: v.shape for k, v in outputs.items()}, nc, forced="detr")
    (ours,) = decoder.decode(outputs, DecodeSettings((256, 256), nc, conf_thres=0.0, max_det=100))
    theirs = DetrImageProcessor().post_process_object_detection(out, threshold=0.0, target_sizes=[(256, 256)])[0]
    order = torch.argsort(theirs["scores"], descending=True, stable=True)
    tb, ts, tl = (theirs[k][order].numpy() for k in ("boxes", "scores", "labels"))
    row("DETR (transformers, resnet18)", outputs, decoder.name, len(ts), len(ours),
        f"boxes {np.abs(tb - ours.boxes).max():.2e}, scores {np.abs(ts - ours.scores).max():.2e}, labels "
        f"{'equal' if (tl == ours.classes).all() else 'DIFFER'}")


def torchvision_cases(torch) -> None:
    from torchvision.models import segmentation
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    seg = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21).eval()
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = seg(x)["out"]
    outputs = {"out": logits.numpy()}
    decoder = choose({"out": logits.shape}, 21)
    (ours,) = decoder.decode(outputs, DecodeSettings((160, 160), 21))
    theirs = logits.argmax(1)[0].numpy()
    row("deeplabv3_mobilenet_v3_large (torchvision)", outputs, decoder.name, theirs.size, ours.labels.size,
        f"pixels differing {int((theirs != ours.labels).sum())}")
    torch.manual_seed(0)
    ssd = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91,
                                        score_thresh=0.0).eval()
    with torch.no_grad():
        (det,) = ssd([x[0]])
    outputs = {"boxes": det["boxes"].numpy(), "scores": det["scores"].numpy(), "labels": det["labels"].numpy()}
    decoder = choose({k: v.shape for k, v in outputs.items()}, 91)
    (ours,) = decoder.decode(outputs, DecodeSettings((160, 160), 91, conf_thres=0.0, max_det=300))
    n = min(len(ours), len(det["scores"]))
    row("ssdlite320_mobilenet_v3_large (torchvision)", outputs, decoder.name, len(det["scores"]), len(ours),
        f"boxes {np.abs(det['boxes'].numpy()[:n] - ours.boxes[:n]).max():.2e}")


def timm_case(torch) -> None:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=1000).eval()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    outputs = {"logits": logits.numpy()}
    decoder = choose({"logits": logits.shape}, 1000)
    ours = decoder.decode(outputs, DecodeSettings((96, 96), 1000))
    theirs = logits.topk(5, dim=1).indices.numpy()
    same = all((t == o.classes).all() for t, o in zip(theirs, ours))
    row("resnet18 (timm)", outputs, decoder.name, theirs.size, sum(len(o.classes) for o in ours),
        f"top-5 {'equal' if same else 'DIFFER'}")


def main() -> int:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    start = time.perf_counter()
    print("| model | outputs | decoder chosen | package's detections | ours | largest difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in (ultralytics_cases, transformers_case, torchvision_cases, timm_case):
        try:
            case(torch)
        except ImportError as e:
            print(f"{case.__name__}: not run ({e})")
    print(f"decoders proven: {sorted({r[2] for r in ROWS})}; not covered here: "
          f"{sorted(set(DECODERS) - {r[2] for r in ROWS})}; {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
