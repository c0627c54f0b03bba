"""Detection postprocessing and COCO-style mAP in numpy (no torch).

- :func:`postprocess` turns decoded YOLO predictions ``(B, N, 5 + nc)`` ``[cx, cy, w, h, obj, cls...]`` into per-image
  detections ``(K, 6)`` ``[x1, y1, x2, y2, score, cls]`` with score = obj * best class probability and class-aware
  greedy NMS.
- :func:`evaluate_map` computes mAP the way ``pycocotools.COCOeval`` does for bounding boxes with area range "all"
  and ``maxDets=100``: per image and class the detections are sorted by score (top 100 kept) and greedily matched
  to the unmatched ground truth of highest IoU at each threshold 0.50:0.05:0.95; per class, the detections of all
  images are ranked by score, precision is made monotone and sampled at 101 recall points; AP averages those.
  Classes without ground truth are left out of the mean (a false positive of such a class costs nothing);
  classes with ground truth and no detection count as AP 0.
- :func:`detections_as_targets` turns one model's detections into a ground-truth array, so a backend can be scored
  against the reference model's own detections.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from edgedeploy.data.base import Annotations
from edgedeploy.errors import UsageError
from edgedeploy.numbers import interval, num
from edgedeploy.tasks import decoders
from edgedeploy.tasks.base import Budget, Task, TaskRecord, TaskResults, TaskSection
from edgedeploy.tasks.decoders.base import DecodeSettings, Detections
from edgedeploy.tasks.metrics import bootstrap, coco, errors

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
_MAX_WH = 4096.0  # class offset for batched class-aware NMS
DISAGREEING_IMAGES = 4  # images report.html draws with both models' boxes


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32)
    out = np.empty_like(b)
    out[..., 0] = b[..., 0] - b[..., 2] / 2
    out[..., 1] = b[..., 1] - b[..., 3] / 2
    out[..., 2] = b[..., 0] + b[..., 2] / 2
    out[..., 3] = b[..., 1] + b[..., 3] / 2
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (n, 4) x (m, 4) -> (n, m), float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS; returns kept indices in descending score order (ties keep the lower index first)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_thres]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    pred: np.ndarray, conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 100
) -> list[np.ndarray]:
    """Decoded predictions (B, N, 5+nc) -> per image float32 (K, 6) ``[x1, y1, x2, y2, score, cls]``, by score."""
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 3 or pred.shape[-1] < 6:
        raise ValueError(f"pred must be (B, N, 5+nc), got shape {pred.shape}")
    out: list[np.ndarray] = []
    for p in pred:
        p = p[p[:, 4] > conf_thres]  # objectness first, as YOLOv5/7 do
        cls_prob = p[:, 5:]
        cls = cls_prob.argmax(1)
        score = p[:, 4] * cls_prob[np.arange(len(p)), cls]
        m = score > conf_thres
        boxes, score, cls = xywh_to_xyxy(p[m, :4]), score[m], cls[m]
        if len(boxes) == 0:
            out.append(np.zeros((0, 6), dtype=np.float32))
            continue
        keep = nms(boxes + cls[:, None].astype(np.float32) * _MAX_WH, score, iou_thres)[:max_det]
        out.append(
            np.concatenate((boxes[keep], score[keep, None], cls[keep, None].astype(np.float32)), 1).astype(np.float32)
        )
    return out


def detections_as_targets(detections: list[np.ndarray], score_thres: float = 0.25) -> np.ndarray:
    """Detections (per image (K,6) [x1,y1,x2,y2,score,cls]) with score >= thres -> targets (M,6)
    ``[image_index, class, x1, y1, x2, y2]``."""
    rows = []
    for i, d in enumerate(detections):
        d = np.asarray(d, dtype=np.float32).reshape(-1, 6)
        d = d[d[:, 4] >= score_thres]
        rows.append(np.concatenate((np.full((len(d), 1), i, np.float32), d[:, 5:6], d[:, :4]), 1))
    if not rows:
        return np.zeros((0, 6), dtype=np.float32)
    return np.concatenate(rows, 0).astype(np.float32)


def _match(dt_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """COCO greedy matching for one image/class, detections already sorted by score.

    Returns a bool (T, D) array: detection d is a true positive at IoU threshold t."""
    n_t, n_d, n_g = len(IOU_THRESHOLDS), len(dt_boxes), len(gt_boxes)
    tp = np.zeros((n_t, n_d), dtype=bool)
    if n_d == 0 or n_g == 0:
        return tp
    ious = box_iou(dt_boxes, gt_boxes)
    for ti, thr in enumerate(IOU_THRESHOLDS):
        gt_taken = np.zeros(n_g, dtype=bool)
        floor = min(float(thr), 1 - 1e-10)
        for d in range(n_d):
            cand = np.where(gt_taken, -1.0, ious[d])
            best_iou = cand.max()
            if best_iou < floor:
                continue
            # COCO keeps the last ground truth among equal best IoUs
            best = n_g - 1 - int(np.argmax(cand[::-1] == best_iou))
            gt_taken[best] = True
            tp[ti, d] = True
    return tp


def _average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> np.ndarray:
    """101-point interpolated AP per IoU threshold, COCOeval.accumulate style. tp: (T, D) bool."""
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[:, order]
    fp = ~tp
    tp_sum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(fp, axis=1, dtype=np.float64)
    ap = np.zeros(tp.shape[0], dtype=np.float64)
    for t in range(tp.shape[0]):
        nd = tp.shape[1]
        if nd == 0:
            continue
        rc = tp_sum[t] / n_gt
        pr = tp_sum[t] / (fp_sum[t] + tp_sum[t] + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # monotone non-increasing envelope
        inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
        q = np.where(inds < nd, pr[np.minimum(inds, nd - 1)], 0.0)
        ap[t] = q.mean()
    return ap


def evaluate_map(
    detections: list[np.ndarray], targets: np.ndarray, max_det: int = 100
) -> dict[str, Any]:
    """COCO-style bbox mAP.

    ``detections``: per image ``(K, 6)`` ``[x1, y1, x2, y2, score, cls]`` (image i is ``detections[i]``).
    ``targets``: ``(M, 6)`` ``[image_index, class, x1, y1, x2, y2]``.

    Returns ``{"map50", "map50_95", "ap50_per_class": {cls: AP50}, "ap_per_class": {cls: AP50:95},
    "num_gt", "num_det", "num_images"}``; per-class entries only for classes with ground truth. With no ground
    truth at all, ``map50`` and ``map50_95`` are 0.0.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    dets = [np.asarray(d, dtype=np.float64).reshape(-1, 6) for d in detections]
    n_img = max(len(dets), int(targets[:, 0].max()) + 1 if len(targets) else 0)
    dets += [np.zeros((0, 6))] * (n_img - len(dets))
    gt_classes = np.unique(targets[:, 1].astype(np.int64))

    ap50: dict[int, float] = {}
    ap_all: dict[int, float] = {}
    for c in gt_classes:
        c = int(c)
        tgt_c = targets[targets[:, 1].astype(np.int64) == c]
        n_gt = len(tgt_c)
        tps, scores = [], []
        for i in range(n_img):
            d = dets[i]
            d = d[d[:, 5].astype(np.int64) == c]
            d = d[np.argsort(-d[:, 4], kind="mergesort")][:max_det]
            g = tgt_c[tgt_c[:, 0].astype(np.int64) == i, 2:6]
            tps.append(_match(d[:, :4], g))
            scores.append(d[:, 4])
        tp = np.concatenate(tps, axis=1)
        sc = np.concatenate(scores)
        ap = _average_precision(tp, sc, n_gt)
        ap50[c] = float(ap[0])
        ap_all[c] = float(ap.mean())

    return {
        "map50": float(np.mean(list(ap50.values()))) if ap50 else 0.0,
        "map50_95": float(np.mean(list(ap_all.values()))) if ap_all else 0.0,
        "ap50_per_class": ap50,
        "ap_per_class": ap_all,
        "num_gt": int(len(targets)),
        "num_det": int(sum(len(d) for d in dets)),
        "num_images": int(n_img),
    }


# ------------------------------------------------------------------------------------------------- the task
class PrCurve(BaseModel):
    """Precision at COCOeval's 101 recall points, IoU 0.5, averaged over the classes with labels: the curve whose
    area is mAP@0.5, for the artifact and the reference."""

    recall: list[float]
    artifact: list[float]
    reference: list[float]


class Confusion(BaseModel):
    """errors.confusion_matrix of the artifact's confident detections: rows the labelled class, columns the
    detected one, the last of each `background`."""

    classes: list[str]
    score_thres: float
    iou_thres: float
    matrix: list[list[int]]


class DisagreeingImage(BaseModel):
    """One image where the artifact and the reference detect differently (errors.disagreement), with both models'
    confident detections ([x1, y1, x2, y2, score, class]) and the labels ([class, x1, y1, x2, y2]), in
    model-input pixels."""

    image: int
    disagreement: float
    artifact: list[list[float]]
    reference: list[list[float]]
    labels: list[list[float]] | None = None


class DetectionRecord(TaskRecord):
    """report.json's `task` for detection (task_record); the label-based figures only with labels."""

    kind: Literal["detection"]
    output: str | None = None
    decoder: str | None = None
    conf_thres: float | None = None
    iou_thres: float | None = None
    max_det: int | None = None
    map50_vs_reference: float
    map50_95_vs_reference: float | None = None
    reference_map50: float | None = None
    reference_map50_95: float | None = None
    map50: float | None = None
    map50_95: float | None = None
    map50_drop: float | None = None
    map50_95_drop: float | None = None
    map50_ci95: list[float] | None = None
    map50_95_ci95: list[float] | None = None
    map50_drop_ci95: list[float] | None = None
    map50_95_drop_ci95: list[float] | None = None
    images: int | None = None
    bootstrap_resamples: int | None = None
    ap50_per_class: dict[str, float] | None = None
    ap_per_class: dict[str, float] | None = None
    reference_ap50_per_class: dict[str, float] | None = None
    reference_ap_per_class: dict[str, float] | None = None
    pr_curve: PrCurve | None = None
    confusion: Confusion | None = None
    disagreeing: list[DisagreeingImage] | None = None


def decode(settings, outputs: dict[str, np.ndarray], *, class_names: list[str] | None = None,
           input_size: tuple[int, int] | None = None) -> TaskResults:
    """One batch's outputs as per-image detections in model-input pixels, by the decoder their shapes fit (or
    validation.decoder, checked: edgedeploy.tasks.decoders), so a layout is never read as another. Masks are not
    kept: the task scores boxes (and keeps the results of a whole validation set in memory)."""
    names = [settings.output] if settings.output else list(outputs)
    read = {n: outputs[n] for n in names}
    nc = settings.num_classes or (len(class_names) if class_names else None)
    if nc is not None and class_names is not None and len(class_names) != nc:
        raise UsageError(f"validation.num_classes is {nc}, the data names {len(class_names)} classes",
                         fix="make them agree (or drop validation.num_classes)")
    decoder = decoders.choose({k: v.shape for k, v in read.items()}, nc, settings.decoder, settings.kpt_shape,
                              produces="detections")
    if input_size is None and decoder.name in ("detr", "yolo-seg"):
        raise UsageError(f"decoder {decoder.name} needs the input's height and width",
                         fix="give inputs[0] a static H and W")
    det = settings.detection
    decode_settings = DecodeSettings(input_size=input_size or (0, 0), num_classes=nc, kpt_shape=settings.kpt_shape,
                                     conf_thres=det.conf_thres, iou_thres=det.iou_thres, max_det=det.max_det,
                                     multi_label=det.multi_label)
    items = [Detections(d.boxes, d.scores, d.classes, keypoints=d.keypoints)
             for d in decoder.decode(read, decode_settings)]
    info = {"task": "detection", "output": ", ".join(read), "decoder": decoder.name, "num_classes": nc,
            "kpt_shape": list(settings.kpt_shape) if settings.kpt_shape else None,
            "input_size": list(input_size) if input_size else None, "conf_thres": det.conf_thres,
            "iou_thres": det.iou_thres, "max_det": det.max_det, "multi_label": det.multi_label}
    return TaskResults(info, items)


def score(settings, reference: TaskResults, artifact: TaskResults, targets: np.ndarray | None,
          labels: np.ndarray | None, *, class_names: list[str] | None = None) -> dict[str, Any]:
    """report.json's `task` for detection from both models' detections of every image: scored with
    faster-coco-eval against the reference's own detections and, with `targets`, against the ground truth for both
    models, with per-class AP, the PR curve at IoU 0.5, the confusion matrix and the bootstrap interval of the drop;
    the images where the two models' detections differ most are kept for report.html. Boxes stay in model-input
    pixels (the targets are mapped there), where IoU is what it is in the image."""
    ref_dets, art_dets = reference.items, artifact.items
    nc, det = artifact.info["num_classes"], settings.detection
    count = len(art_dets)
    seen = [int(c) + 1 for d in (*ref_dets, *art_dets) for c in d.classes]
    seen += [int(c) + 1 for c in (targets[:, 1] if targets is not None else [])]
    nc_seen = max([nc or 0, *seen], default=1)
    names = class_names or [str(i) for i in range(nc_seen)]
    if len(names) < nc_seen:
        raise UsageError(f"the detections or labels hold class {nc_seen - 1}, the data names {len(names)} classes",
                         fix="check validation.num_classes and the labels")
    out: dict[str, Any] = {"kind": "detection", "output": artifact.info["output"],
                           "decoder": artifact.info["decoder"], "conf_thres": det.conf_thres,
                           "iou_thres": det.iou_thres, "max_det": det.max_det}
    sizes = [(0, 0)] * count  # bbox evaluation reads no image size
    confident = [d.scores >= det.reference_score_thres for d in ref_dets]
    pseudo = [Annotations(d.boxes[k], d.classes[k]) for d, k in zip(ref_dets, confident)]
    cats, ids = list(range(1, len(names) + 1)), list(range(1, count + 1))
    vs_ref = coco.evaluate(coco.ground_truth(pseudo, sizes, names), coco.results(art_dets, ids, cats), "bbox", names)
    out.update({"map50_vs_reference": vs_ref["map50"], "map50_95_vs_reference": vs_ref["map50_95"]})
    truth = None
    if targets is not None:
        targets = targets[targets[:, 0] == np.floor(targets[:, 0])]  # rows of no image (a fractional index) out
        rows = np.argsort(targets[:, 0], kind="stable")
        starts = np.searchsorted(targets[rows, 0], np.arange(count + 1))
        truth = [Annotations(targets[rows[a:b], 2:6].astype(np.float64), targets[rows[a:b], 1].astype(np.int64))
                 for a, b in zip(starts[:-1], starts[1:])]
        gt = coco.ground_truth(truth, sizes, names)
        ref_map = coco.evaluate(gt, coco.results(ref_dets, ids, cats), "bbox", names)
        art_map = coco.evaluate(gt, coco.results(art_dets, ids, cats), "bbox", names)
        out.update({
            "reference_map50": ref_map["map50"],
            "reference_map50_95": ref_map["map50_95"],
            "map50": art_map["map50"],
            "map50_95": art_map["map50_95"],
            "map50_drop": ref_map["map50"] - art_map["map50"],
            "map50_95_drop": ref_map["map50_95"] - art_map["map50_95"],
            "ap50_per_class": art_map["ap50_per_class"],
            "ap_per_class": art_map["ap_per_class"],
            "reference_ap50_per_class": ref_map["ap50_per_class"],
            "reference_ap_per_class": ref_map["ap_per_class"],
            "pr_curve": {"recall": coco.RECALL_POINTS.round(2).tolist(),
                         "artifact": [round(v, 4) for v in art_map["pr50"]],
                         "reference": [round(v, 4) for v in ref_map["pr50"]]},
            "confusion": errors.confusion_record(art_dets, truth, names, det.reference_score_thres),
        })
        if settings.bootstrap:
            out.update(bootstrap.drop_interval(bootstrap.match_all(ref_dets, truth, len(names)),
                                               bootstrap.match_all(art_dets, truth, len(names)), count,
                                               settings.bootstrap))
    out["disagreeing"] = errors.disagreeing_images(art_dets, ref_dets, truth, det.reference_score_thres,
                                                   DISAGREEING_IMAGES)
    return out


def pack(results: TaskResults) -> dict[str, np.ndarray]:
    """Every image's detections as flat arrays (per-image counts, then boxes, scores, classes, keypoints)."""
    items = results.items
    out = {"counts": np.array([len(d) for d in items], np.int64),
           "boxes": np.concatenate([np.asarray(d.boxes, np.float64).reshape(-1, 4) for d in items] or
                                   [np.zeros((0, 4))]),
           "scores": np.concatenate([np.asarray(d.scores, np.float64) for d in items] or [np.zeros(0)]),
           "classes": np.concatenate([np.asarray(d.classes, np.int64) for d in items] or [np.zeros(0, np.int64)])}
    if items and all(d.keypoints is not None for d in items):
        out["keypoints"] = np.concatenate([np.asarray(d.keypoints, np.float64) for d in items])
    return out


def unpack(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> TaskResults:
    """pack's arrays back as per-image detections (counts that do not add up are a ValueError)."""
    counts = arrays["counts"].astype(np.int64)
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    if counts.min(initial=0) < 0 or any(len(arrays[k]) != total for k in ("boxes", "scores", "classes")) or (
            "keypoints" in arrays and len(arrays["keypoints"]) != total) or arrays["boxes"].shape[1:] != (4,):
        raise ValueError("the stored detections do not add up to their per-image counts")
    kp = arrays.get("keypoints")
    items = [Detections(arrays["boxes"][a:b], arrays["scores"][a:b], arrays["classes"][a:b],
                        keypoints=None if kp is None else kp[a:b]) for a, b in zip(ends - counts, ends)]
    return TaskResults(info, items)


def task_record(settings, name: str, reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                targets: np.ndarray | None, labels: np.ndarray | None, *, class_names: list[str] | None = None,
                input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """report.json's `task` for detection from both models' output tensors (decode, then score)."""
    names = [settings.output] if settings.output else [n for n in outputs if n in reference]
    context = {"class_names": class_names, "input_size": input_size}
    return score(settings, decode(settings, {n: reference[n] for n in names}, **context),
                 decode(settings, {n: outputs[n] for n in names}, **context), targets, labels,
                 class_names=class_names)


CONFUSION_TABLE_CLASSES = 20  # up to this many classes the whole matrix is a table; beyond, its largest errors


def confusion_blocks(c: Confusion) -> list:
    """The confusion matrix as a table, or for many classes the pairs where most labels went wrong."""
    text = (f"Confusion matrix: the artifact's detections with confidence ≥ {num(c.score_thres)} matched to labels of "
            f"any class at IoU ≥ {num(c.iou_thres)}; rows the label, columns the detection (a missed label is in the "
            "background column, a detection matching no label in the background row).")
    if len(c.classes) <= CONFUSION_TABLE_CLASSES + 1:
        return [text, (["label \\ detected", *c.classes],
                       [[name, *[str(v) for v in row]] for name, row in zip(c.classes, c.matrix)])]
    m = np.asarray(c.matrix)
    wrong = [(int(m[i, j]), i, j) for i, j in zip(*np.nonzero(m)) if i != j]
    worst = sorted(wrong, key=lambda w: (-w[0], w[1], w[2]))[:12]
    return [text + f" The {len(worst)} largest of its {len(c.classes) - 1} classes' errors (the whole matrix is in "
                   "report.json and drawn in report.html):",
            (["label", "detected", "count"], [[c.classes[i], c.classes[j], str(n)] for n, i, j in worst])]


def section(task: DetectionRecord, model: str) -> TaskSection:
    title = f"Detection (output {task.output}, decoder {task.decoder or 'yolo-objectness'})"
    if task.map50 is None:
        return TaskSection(title, [f"No labels: mAP@0.5 against the reference's own detections "
                                   f"{num(task.map50_vs_reference)}."])
    blocks: list = [
        (["model", "mAP@0.5", "mAP@0.5:0.95"],
         [["reference", num(task.reference_map50), num(task.reference_map50_95)],
          [model, num(task.map50) + interval(task.map50_ci95), num(task.map50_95) + interval(task.map50_95_ci95)],
          ["drop", num(task.map50_drop) + interval(task.map50_drop_ci95),
           num(task.map50_95_drop) + interval(task.map50_95_drop_ci95)]]),
        *([f"Intervals: 95 %, bootstrap over the {task.images} images ({task.bootstrap_resamples} "
           "resamples, COCOeval's matching with crowd regions; the drop paired on each resample)."]
          if task.images else []),
        f"mAP@0.5 against the reference's own detections: {num(task.map50_vs_reference)} (confidence ≥ "
        f"{num(task.conf_thres)}, NMS IoU {num(task.iou_thres)}; faster-coco-eval)."]
    if task.ap_per_class:
        ap50, ref50 = task.ap50_per_class or {}, task.reference_ap50_per_class or {}
        ref = task.reference_ap_per_class or {}
        blocks.append((["class", "AP@0.5", "AP@0.5 reference", "AP@0.5:0.95", "AP@0.5:0.95 reference"],
                       [[name, num(ap50.get(name)), num(ref50.get(name)), num(ap), num(ref.get(name))]
                        for name, ap in task.ap_per_class.items()]))
    if task.pr_curve is not None:
        pr, at = task.pr_curve, (50, 80, 90)  # indices of recall 0.5, 0.8, 0.9 among COCOeval's 101 points
        blocks.append("Precision at recall 0.5 / 0.8 / 0.9 (IoU 0.5, mean over classes; the curves are in "
                      f"report.html): {model} {' / '.join(num(pr.artifact[i]) for i in at)}, reference "
                      f"{' / '.join(num(pr.reference[i]) for i in at)}.")
    if task.confusion is not None:
        blocks += confusion_blocks(task.confusion)
    if task.disagreeing:
        blocks.append("Images where the artifact and the reference disagree most: " + ", ".join(
            f"#{d.image} ({len(d.artifact)} vs {len(d.reference)} detections, disagreement {num(d.disagreement)})"
            for d in task.disagreeing) + " (drawn in report.html).")
    return TaskSection(title, blocks)


TASK = Task(
    name="detection", evaluate=task_record, record=DetectionRecord, section=section, decode=decode, score=score,
    pack=pack, unpack=unpack,
    budgets=(Budget("max_map50_drop", "map50_drop", "<="), Budget("max_map50_95_drop", "map50_95_drop", "<=")),
    baseline_metrics=("map50", "map50_95", "map50_vs_reference"),
    ranking_metrics=("map50",), summary_metrics=("map50", "map50_vs_reference"), drops={"map50": "map50_drop"},
    labelled_metric="map50",
    no_labels="the validation data has no `targets`, so mAP and its drop were not measured (agreement with the "
              "reference's detections only)",
    short_labels={"map50": "mAP@0.5", "map50_vs_reference": "mAP@0.5 vs reference"},
    labels={"map50": "mAP@0.5", "map50_95": "mAP@0.5:0.95",
            "map50_vs_reference": "mAP@0.5 vs the reference's detections",
            "map50_drop": "mAP@0.5 drop vs the reference", "map50_95_drop": "mAP@0.5:0.95 drop vs the reference"},
)
